// compute-host-drift: the name nova-compute registers under is not the machine's stable name. In containers,
// nova took the container's hostname (its ID) as `host`; after every restart a new compute service and node
// appeared and the old one went down. Read from nova's own log lines on each machine (host.name):
//   - a compute host name that looks like a container ID or a pod name;
//   - the machine's compute host missing from nova's database (ComputeHostNotFound, "No compute node record"),
//     sustained — resolved when nova creates the record again;
//   - a record created under a name other than the one the machine had (a rename, or an FQDN/short-name flip),
//     "Hostname has changed from A to B", and "Possible rename detected" (nova 2023.1+).
// Every alert names the old and the new name where there are two.
import { z } from 'zod';
import type { Alert, LogDocument, LogEvent } from '../core/events.ts';
import { alertTransition, defineDetector } from './detector.ts';
import { addEvidence, closingEvidence, FiringGroups, slide, untracked } from './kit.ts';
import { KeyedState, type Evicted } from './state.ts';

const Params = z.strictObject({
  /** "Not found" lines within this window that make the missing-host alert fire. */
  missing: z.strictObject({ count: z.number().int().positive(), window_s: z.number().positive() }).default({ count: 3, window_s: 600 }),
  evidence_max: z.number().int().positive().default(20),
});

const CREATED = /Compute node record created for (?<host>[^\s:]+):(?<node>\S+) with uuid/;
/** nova's "not found" messages, each naming the host (`name`); one alternation of the three was too large an
 * automaton for recheck to prove linear, so they are three regexes and the leftmost match wins. */
const MISSING = [
  /Compute host (?<name>\S+?) could not be found/,
  /No compute node record (?:found )?for (?:host )?(?<name>[^\s:]+?)[:.]? /,
  /Compute node (?<name>\S+) not found in the database/,
];
const HOSTNAME_CHANGED = /Hostname has changed from (?<old>\S+) to (?<new>\S+?)\./;
const RENAME_REFUSED = /Possible rename detected/;

/** A Docker container ID (12 or 64 hex digits) or a Kubernetes pod name (<name>-<hash>-<5 chars>). */
export function looksEphemeral(name: string): boolean {
  const short = name.split('.')[0];
  return /^(?:[0-9a-f]{12}|[0-9a-f]{64})$/.test(short) || /^[a-z0-9]+(?:-[a-z0-9]+)*-[a-z0-9]{8,10}-[a-z0-9]{5}$/.test(short);
}

/** "compute-0" vs "compute-0.localdomain": the same machine under its short and its full name. */
function sameShortName(a: string, b: string): boolean {
  return a.split('.')[0] === b.split('.')[0];
}

interface Machine {
  /** The compute host name this machine last registered or was known by. */
  known?: string;
}

interface Missing {
  times: number[];
  firing?: { startedAt: string; evidence: string[] };
}

/** A one-off finding that fired (it stays open: no line ends it). */
interface Flagged {
  host: string;
  service: string;
  kind: string;
  computeHost: string;
  startedAt: string;
  evidence: string[];
}

/** The leftmost "not found" message of a line and the host it names. */
function missingHost(text: string): string | undefined {
  let best: RegExpExecArray | undefined;
  for (const re of MISSING) {
    const m = re.exec(text);
    if (m && (!best || m.index < best.index)) best = m;
  }
  return best?.groups!.name;
}

export const detector = defineDetector({
  name: 'compute-host-drift',
  params: Params,
  create(p, { rule }) {
    // Machines by host.name; what log lines name (compute hosts missing, findings made) by machine and name, each
    // bounded on its own: hostile lines can name any number of compute hosts.
    const missing = new FiringGroups<Missing>(rule, (x) => x.firing !== undefined);
    const flagged = new FiringGroups<Flagged>(rule, () => true);
    const machines = new KeyedState<Machine>(rule.id, missing.limits);
    const evictedWhy = (what: string) => untracked(missing.limits, what);

    function alert(doc: LogDocument, status: 'firing' | 'resolved', kind: string, computeHost: string, startedAt: string, message: string, evidence: string[]): Alert {
      return alertTransition(rule, {
        status,
        group: { 'host.name': doc.host.name, kind, compute_host: computeHost },
        at: doc['@timestamp'],
        startedAt,
        host: doc.host.name,
        service: doc.service.name,
        message,
        evidence,
      });
    }

    /** Findings dropped to stay within state.max_entries: resolved with the reason, not forgotten silently. */
    function resolveFlagged(doc: LogDocument, dropped: readonly Evicted<Flagged>[]): Alert[] {
      return dropped.map(({ value: f }) =>
        alertTransition(rule, {
          status: 'resolved',
          group: { 'host.name': f.host, kind: f.kind, compute_host: f.computeHost },
          at: doc['@timestamp'],
          startedAt: f.startedAt,
          host: f.host,
          service: f.service,
          message: `${f.kind} ${f.computeHost} on ${f.host}${evictedWhy('findings')}`,
          evidence: f.evidence,
        }),
      );
    }

    /** A one-off finding: fires, and stays as evidence for the operator (there is no line that ends it). */
    function once(doc: LogDocument, now: number, kind: string, computeHost: string, message: string): Alert[] {
      const key = `${doc.host.name}\0${kind}\0${computeHost}`;
      if (flagged.has(key)) return [];
      const f: Flagged = { host: doc.host.name, service: doc.service.name, kind, computeHost, startedAt: doc['@timestamp'], evidence: [doc.event.id] };
      return [...resolveFlagged(doc, flagged.set(key, f, now)), alert(doc, 'firing', kind, computeHost, doc['@timestamp'], message, [doc.event.id])];
    }

    /** Stores a missing-host state; those dropped while firing resolve with the reason. */
    function keepMissing(doc: LogDocument, key: string, x: Missing, now: number): Alert[] {
      return missing.keep(key, x, now, (k, v) => {
        const [host, name] = k.split('\0');
        return alertTransition(rule, {
          status: 'resolved',
          group: { 'host.name': host, kind: 'missing', compute_host: name },
          at: doc['@timestamp'],
          startedAt: v.firing!.startedAt,
          host,
          service: doc.service.name,
          message: `compute host ${name} (nova-compute on ${host})${evictedWhy('missing hosts')}`,
          evidence: v.firing!.evidence,
        });
      });
    }

    return {
      accepts: { kinds: ['log'], loggers: ['nova.'] },
      state: () => machines.size + missing.size + flagged.size,
      on({ doc }: LogEvent) {
        const text = doc.message;
        // The templates all name a compute host or a rename: a cheap test first.
        if (!text.includes('ompute') && !text.includes('ename') && !text.includes('ostname')) return [];
        const at = doc['@timestamp'];
        const now = Date.parse(at);
        const m = machines.get(doc.host.name) ?? {};
        machines.set(doc.host.name, m, now);
        const out: Alert[] = [];
        const flaggedAs = (kind: string, name: string) => flagged.has(`${doc.host.name}\0${kind}\0${name}`);

        const changed = HOSTNAME_CHANGED.exec(text);
        if (changed) {
          const { old, new: fresh } = changed.groups!;
          out.push(...once(doc, now, 'renamed', fresh, `nova-compute on ${doc.host.name}: hostname changed from ${old} to ${fresh}; nova will register a new compute host`));
        }
        if (RENAME_REFUSED.test(text)) {
          out.push(
            ...once(doc, now, 'rename-refused', m.known ?? doc.host.name, `nova-compute on ${doc.host.name} refused to start: possible rename detected (known as ${m.known ?? 'unknown'})`),
          );
        }

        const created = CREATED.exec(text);
        if (created) {
          const name = created.groups!.host;
          if (looksEphemeral(name))
            out.push(
              ...once(doc, now, 'ephemeral-name', name, `nova-compute on ${doc.host.name} registered as ${name}, which looks like a container ID or pod name: it will change on restart`),
            );
          if (m.known && m.known !== name) {
            const flip = sameShortName(m.known, name);
            out.push(
              ...once(
                doc,
                now,
                flip ? 'fqdn-flip' : 'renamed',
                name,
                flip
                  ? `nova-compute on ${doc.host.name} registered as ${name}, before as ${m.known}: the same machine under its short and full name`
                  : `nova-compute on ${doc.host.name} registered a new compute host ${name}; the old one, ${m.known}, goes down`,
              ),
            );
          }
          // The record exists again: the missing-host alert of that name ends.
          const key = `${doc.host.name}\0${name}`;
          const x = missing.get(key);
          if (x?.firing) {
            out.push(
              alert(
                doc,
                'resolved',
                'missing',
                name,
                x.firing.startedAt,
                `compute host ${name} has a record again (created at ${at})`,
                closingEvidence(x.firing.evidence, doc.event.id, p.evidence_max),
              ),
            );
          }
          missing.delete(key);
          m.known = name;
          return out;
        }

        const name = missingHost(text);
        if (name !== undefined) {
          if (looksEphemeral(name))
            out.push(...once(doc, now, 'ephemeral-name', name, `nova-compute on ${doc.host.name} runs as ${name}, which looks like a container ID or pod name: it will change on restart`));
          if (m.known && m.known !== name && !flaggedAs('renamed', name)) {
            const flip = sameShortName(m.known, name);
            out.push(
              ...once(
                doc,
                now,
                flip ? 'fqdn-flip' : 'renamed',
                name,
                `nova-compute on ${doc.host.name} now runs as ${name}, before as ${m.known}${flip ? ' (short and full name of one machine)' : ''}`,
              ),
            );
          }
          m.known ??= name;
          const key = `${doc.host.name}\0${name}`;
          const state = missing.get(key) ?? { times: [] };
          if (state.firing) {
            addEvidence(state.firing.evidence, doc.event.id, p.evidence_max);
            return [...out, ...keepMissing(doc, key, state, now)];
          }
          state.times = slide(state.times, now, p.missing.window_s);
          if (state.times.length >= p.missing.count) {
            state.firing = { startedAt: at, evidence: [doc.event.id] };
            out.push(
              alert(doc, 'firing', 'missing', name, at, `compute host ${name} (nova-compute on ${doc.host.name}) is missing from nova's database: ComputeHostNotFound`, [doc.event.id]),
            );
          }
          out.push(...keepMissing(doc, key, state, now));
        }
        return out;
      },
    };
  },
});
