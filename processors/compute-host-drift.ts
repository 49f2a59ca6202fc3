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
import type { Alert, LogDocument } from '../core/events.ts';
import { alertTransition, ruleParams, slide, type Detector, type Rule } from './detect.ts';

const Params = z.strictObject({
  /** "Not found" lines within this window that make the missing-host alert fire. */
  missing: z.strictObject({ count: z.number().int().positive(), window_s: z.number().positive() }).default({ count: 3, window_s: 600 }),
  evidence_max: z.number().int().positive().default(20),
});

const CREATED = /Compute node record created for (?<host>[^\s:]+):(?<node>\S+) with uuid/;
const MISSING = /Compute host (?<a>\S+?) could not be found|No compute node record (?:found )?for (?:host )?(?<b>[^\s:]+?)[:.]? |Compute node (?<c>\S+) not found in the database/;
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
  missing: Map<string, { times: number[]; firing?: { startedAt: string; evidence: string[] } }>;
  flagged: Set<string>;
}

export function createDetector(rule: Rule): Detector {
  const p = ruleParams(rule, Params);
  const machines = new Map<string, Machine>();

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

  /** A one-off finding: fires, and stays as evidence for the operator (there is no line that ends it). */
  function once(m: Machine, doc: LogDocument, kind: string, computeHost: string, message: string): Alert[] {
    const key = `${kind}\0${computeHost}`;
    if (m.flagged.has(key)) return [];
    m.flagged.add(key);
    return [alert(doc, 'firing', kind, computeHost, doc['@timestamp'], message, [doc.event.id])];
  }

  return {
    loggers: ['nova.'],
    onLog(doc) {
      const text = doc.message;
      // The templates all name a compute host or a rename: a cheap test first.
      if (!text.includes('ompute') && !text.includes('ename') && !text.includes('ostname')) return [];
      let m = machines.get(doc.host.name);
      if (!m) machines.set(doc.host.name, (m = { missing: new Map(), flagged: new Set() }));
      const out: Alert[] = [];
      const at = doc['@timestamp'];
      const now = Date.parse(at);

      const changed = HOSTNAME_CHANGED.exec(text);
      if (changed) {
        const { old, new: fresh } = changed.groups!;
        out.push(...once(m, doc, 'renamed', fresh, `nova-compute on ${doc.host.name}: hostname changed from ${old} to ${fresh}; nova will register a new compute host`));
      }
      if (RENAME_REFUSED.test(text)) {
        out.push(...once(m, doc, 'rename-refused', m.known ?? doc.host.name, `nova-compute on ${doc.host.name} refused to start: possible rename detected (known as ${m.known ?? 'unknown'})`));
      }

      const created = CREATED.exec(text);
      if (created) {
        const name = created.groups!.host;
        if (looksEphemeral(name)) out.push(...once(m, doc, 'ephemeral-name', name, `nova-compute on ${doc.host.name} registered as ${name}, which looks like a container ID or pod name: it will change on restart`));
        if (m.known && m.known !== name) {
          const flip = sameShortName(m.known, name);
          out.push(
            ...once(m, doc, flip ? 'fqdn-flip' : 'renamed', name,
              flip
                ? `nova-compute on ${doc.host.name} registered as ${name}, before as ${m.known}: the same machine under its short and full name`
                : `nova-compute on ${doc.host.name} registered a new compute host ${name}; the old one, ${m.known}, goes down`),
          );
        }
        // The record exists again: the missing-host alert of that name ends.
        const missing = m.missing.get(name);
        if (missing?.firing) {
          out.push(alert(doc, 'resolved', 'missing', name, missing.firing.startedAt, `compute host ${name} has a record again (created at ${at})`, [...missing.firing.evidence, doc.event.id].slice(-p.evidence_max)));
        }
        m.missing.delete(name);
        m.known = name;
        return out;
      }

      const miss = MISSING.exec(text);
      if (miss) {
        const name = miss.groups!.a ?? miss.groups!.b ?? miss.groups!.c;
        if (looksEphemeral(name)) out.push(...once(m, doc, 'ephemeral-name', name, `nova-compute on ${doc.host.name} runs as ${name}, which looks like a container ID or pod name: it will change on restart`));
        if (m.known && m.known !== name && !m.flagged.has(`renamed\0${name}`)) {
          const flip = sameShortName(m.known, name);
          out.push(...once(m, doc, flip ? 'fqdn-flip' : 'renamed', name, `nova-compute on ${doc.host.name} now runs as ${name}, before as ${m.known}${flip ? ' (short and full name of one machine)' : ''}`));
        }
        m.known ??= name;
        let state = m.missing.get(name);
        if (!state) m.missing.set(name, (state = { times: [] }));
        if (state.firing) {
          if (state.firing.evidence.length < p.evidence_max) state.firing.evidence.push(doc.event.id);
          return out;
        }
        state.times = slide(state.times, now, p.missing.window_s);
        if (state.times.length >= p.missing.count) {
          state.firing = { startedAt: at, evidence: [doc.event.id] };
          out.push(alert(doc, 'firing', 'missing', name, at, `compute host ${name} (nova-compute on ${doc.host.name}) is missing from nova's database: ComputeHostNotFound`, [doc.event.id]));
        }
      }
      return out;
    },
  };
}
