// compute-host-drift: the name nova-compute registers under is not the machine's stable name. In containers,
// nova took the container's hostname (its ID) as `host`; after every restart a new compute service and node
// appeared and the old one went down. Read from nova's own log lines on each machine (host.name):
//   - a compute host name that looks like a container ID or a pod name;
//   - the machine's compute host missing from nova's database (ComputeHostNotFound, "No compute node record"),
//     sustained — resolved when nova creates the record again. A compute host's first registration is not drift:
//     nova-compute's first start logs that its record is missing and creates it moments later. So the finding is
//     held until it has lasted `span_s` (`first_start_s` while the machine never had a record and nova said only
//     "If this is the first time this service is starting…"), and dropped if the record appears before;
//   - a record created under a name other than the one the machine had (a rename, or an FQDN/short-name flip),
//     "Hostname has changed from A to B", and "Possible rename detected" (nova 2023.1+, logged by oslo.service).
// Lines are recognised by their content (the templates of Kilo to 2025.1), whatever logger or wrapper carried them:
// the engine routes them by literals.
// And from the compute API (the OpenStack API collector's health events, GET /os-services): a new nova-compute
// service row whose host looks like a container ID or pod name appearing while an older nova-compute row goes
// down (within `api_window_s` of each other). The first list of a cloud is what exists, not drift; a new row with
// no old one going down is a compute host's first start. The API alert's group is the log alert's for the same
// rename when the old compute host name is the machine's name (nova's default `host`): host.name = the old host,
// kind `renamed`, compute_host = the new one — one alert per cause, whichever source saw it first.
// Every alert names the old and the new name where there are two.
import { z } from 'zod';
import { stableId, type Alert, type LogDocument, type OpenstackHealthEvent } from '../core/events.ts';
import { alertTransition, defineDetector } from './detector.ts';
import { addEvidence, closingEvidence, FiringGroups, restoreState, slide, untracked } from './kit.ts';
import { KeyedState, keyedData, Time, time, type Evicted } from './state.ts';

/** The version of the state's shape (snapshot, restore). */
const STATE_VERSION = 1;

const Params = z.strictObject({
  /** "Not found" lines within this window that make the missing-host alert fire. */
  /** `span_s`: the first and the last of them at least this far apart. A compute host's first start logs
   * ComputeHostNotFound three times within a second, then creates its record: normal, not drift.
   * `first_start_s`: the same for a machine never seen with a record whose lines so far are only nova's first-start
   * warnings ("If this is the first time this service is starting on this host…"): a first start that waits on
   * placement or libvirt retries the record every minute. */
  missing: z
    .strictObject({
      count: z.number().int().positive(),
      window_s: z.number().positive(),
      span_s: z.number().nonnegative().default(60),
      first_start_s: z.number().nonnegative().default(300),
    })
    .default({ count: 3, window_s: 600, span_s: 60, first_start_s: 300 }),
  /** From the API: the new row's appearance and the old row's going down at most this far apart (seconds). */
  api_window_s: z.number().positive().default(900),
  evidence_max: z.number().int().positive().default(20),
});

/** "Compute node record created for H:N with uuid: U" (Pike on); "Compute_service record created for H:N" before. */
const CREATED = /Compute(?: node|_service) record created for (?<host>[^\s:]+):(?<node>\S+)/;
/** nova's "not found" messages, each naming the host (`name`); one alternation of them was too large an automaton
 * for recheck to prove linear, so they are several regexes and the leftmost match wins. ComputeHostNotFound counts
 * with its exception's name only: nova-compute's own lines carry it ("…ComputeHostNotFound_Remote: Compute host X
 * could not be found."), the API's answer about some other host does not ("HTTP exception thrown: Compute host …"). */
const MISSING = [
  /ComputeHostNotFound(?:_Remote)?: Compute host (?<name>\S+?) could not be found/,
  // The manager's "No compute node record for host H" (to Ocata and every periodic run since; the name may end the
  // line) and its first-start warning "No compute node record found for host H. If this is the first time …".
  /No compute node record (?:found )?for host (?<name>[^\s:]+?)[:.]?(?:\s|$)/,
  // The resource tracker's "No compute node record for H:N".
  /No compute node record for (?<name>[^\s:]+):\S/,
  /Compute node (?<name>\S+) not found in the database/,
  // 2023.1 on: "Compute nodes ['<uuid>'] for host H were not found in the database." (no bracket inside the list:
  // with "[^\]]*" a line repeating the message's start took quadratic time)
  /Compute nodes \[[^[\]]*\] for host (?<name>\S+) were not found in the database/,
];
/** nova's own words for a start that may be the first: not evidence of drift by themselves. */
const FIRST_START = 'If this is the first time this service is starting';
const HOSTNAME_CHANGED = /Hostname has changed from (?<old>\S+) to (?<new>\S+?)\./;
/** nova's refusal (2023.1 on); "Possible rename detected" alone is other software's words too. */
const RENAME_REFUSED = 'Possible rename detected, refusing to start';
/** The names nova gives in it, when it gives them. */
const RENAME_NAMES = /has host '(?<old>[^']*)' but my host is '(?<new>[^']*)'/;
const RENAME_HOST = /nodes in the database for host (?<host>\S+) to persist locally/;
/** What routes a line here, whatever its logger: the constant parts of the templates above. */
const LITERALS = ['record created for', 'No compute node record', 'not found in the database', 'ComputeHostNotFound', 'Possible rename detected', 'Hostname has changed from'];

/** Kubernetes' random name suffix (pod names): consonants and digits that spell no word. */
const POD_SUFFIX = /^[bcdfghjklmnpqrstvwxz2456789]{5}$/;

/** A Docker container ID (12 or 64 hex digits) or a Kubernetes pod name of a DaemonSet (<name>-<5 chars>) or a
 * Deployment (<name>-<hash>-<5 chars>): names that change with every restart. A StatefulSet's <name>-<n> is stable.
 * The suffix needs a letter: "rack-24567" is a machine's name. */
export function looksEphemeral(name: string): boolean {
  const short = name.split('.')[0];
  if (/^(?:[0-9a-f]{12}|[0-9a-f]{64})$/.test(short)) return true;
  const parts = short.split('-');
  const suffix = parts[parts.length - 1];
  return parts.length >= 2 && POD_SUFFIX.test(suffix) && /[a-z]/.test(suffix) && parts.every((x) => /^[a-z0-9]+$/.test(x));
}

/** "compute-0" vs "compute-0.localdomain": the same machine under its short and its full name. */
function sameShortName(a: string, b: string): boolean {
  return a.split('.')[0] === b.split('.')[0];
}

// The state, as a checkpoint holds it (Time: event times in ms).

const Machine = z.strictObject({
  /** The compute host name this machine last registered or was known by. */
  known: z.string().optional(),
  /** It was seen with a record (one created): its record missing again is no first start. */
  registered: z.boolean().optional(),
});
type Machine = z.output<typeof Machine>;

/** A nova-compute service row as the API lists it. */
const ApiRow = z.strictObject({
  cloud: z.string(),
  host: z.string(),
  state: z.enum(['up', 'down']),
  /** When it first appeared (ms); undefined for rows in the cloud's first list (they were there already). */
  appearedAt: Time.optional(),
  /** When it was seen going from up to down (ms). */
  wentDownAt: Time.optional(),
});
type ApiRow = z.output<typeof ApiRow>;

const Missing = z.strictObject({
  times: z.array(Time),
  /** Every line so far was a first-start warning ("If this is the first time …"). */
  firstStartOnly: z.boolean().optional(),
  /** `count` lines were seen within the window, not yet `span_s` apart: the first of them that made the count. */
  reached: z.strictObject({ at: z.string(), evidence: z.string() }).optional(),
  firing: z.strictObject({ startedAt: z.string(), evidence: z.array(z.string()) }).optional(),
});
type Missing = z.output<typeof Missing>;

/** A one-off finding that fired (it stays open: no line ends it). */
const Flagged = z.strictObject({
  host: z.string(),
  service: z.string(),
  kind: z.string(),
  computeHost: z.string(),
  startedAt: z.string(),
  evidence: z.array(z.string()),
});
type Flagged = z.output<typeof Flagged>;

const State = z.strictObject({ machines: keyedData(Machine), missing: keyedData(Missing), flagged: keyedData(Flagged), rows: keyedData(ApiRow) });

const optionalTime = (ms: number | undefined) => (ms === undefined ? undefined : time(ms));

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
    function resolveFlagged(at: string, dropped: readonly Evicted<Flagged>[]): Alert[] {
      return dropped.map(({ value: f }) =>
        alertTransition(rule, {
          status: 'resolved',
          group: { 'host.name': f.host, kind: f.kind, compute_host: f.computeHost },
          at,
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
      return [...resolveFlagged(doc['@timestamp'], flagged.set(key, f, now)), alert(doc, 'firing', kind, computeHost, doc['@timestamp'], message, [doc.event.id])];
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

    // From the API: the nova-compute rows of each cloud by id. A cloud none of whose rows is known gives its first
    // list: the baseline (a cloud whose list had no nova-compute row has nothing to compare with either).
    const rows = new KeyedState<ApiRow>(rule.id, missing.limits);

    function onApi(e: OpenstackHealthEvent): Alert[] {
      if (!e.services) return []; // not read: nothing is known to have changed
      const at = e['@timestamp'];
      const now = Date.parse(at);
      const cloud = e.cloud.name;
      const first = ![...rows.entries()].some(([, r]) => r.cloud === cloud);
      const listed = new Set<string>();
      for (const s of e.services) {
        if (s.binary !== 'nova-compute') continue;
        const key = `${cloud}\0${s.id}`;
        listed.add(key);
        const prev = rows.get(key);
        const row: ApiRow = prev ?? { cloud, host: s.host, state: s.state, appearedAt: first ? undefined : now };
        if (prev && prev.state === 'up' && s.state === 'down') row.wentDownAt = now;
        if (s.state === 'up') row.wentDownAt = undefined;
        row.state = s.state;
        rows.set(key, row, now);
      }
      for (const [key, r] of [...rows.entries()]) if (r.cloud === cloud && !listed.has(key)) rows.delete(key);
      if (first) return [];

      const out: Alert[] = [];
      const mine = [...rows.entries()].filter(([, r]) => r.cloud === cloud).map(([, r]) => r);
      for (const fresh of mine) {
        if (fresh.appearedAt === undefined || now - fresh.appearedAt > p.api_window_s * 1000 || !looksEphemeral(fresh.host)) continue;
        for (const old of mine) {
          if (old === fresh || old.host === fresh.host || old.wentDownAt === undefined) continue;
          if (old.appearedAt !== undefined && old.appearedAt >= fresh.appearedAt) continue;
          if (Math.abs(old.wentDownAt - fresh.appearedAt) > p.api_window_s * 1000) continue;
          const key = `${old.host}\0renamed\0${fresh.host}`;
          if (flagged.has(key)) continue;
          const evidence = stableId(cloud, at, old.host, fresh.host);
          const message = `nova-compute registered a new compute host ${fresh.host}, which looks like a container ID or pod name; the old one, ${old.host}, goes down (cloud ${cloud}, compute API)`;
          out.push(...resolveFlagged(at, flagged.set(key, { host: old.host, service: 'nova-compute', kind: 'renamed', computeHost: fresh.host, startedAt: at, evidence: [evidence] }, now)));
          out.push(
            alertTransition(rule, {
              status: 'firing',
              group: { 'host.name': old.host, kind: 'renamed', compute_host: fresh.host },
              at,
              startedAt: at,
              host: old.host,
              service: 'nova-compute',
              message,
              evidence: [evidence],
            }),
          );
        }
      }
      return out;
    }

    /** How long a missing record must last before it is drift: a first start gets longer to create it. */
    function holdS(m: Machine, x: Missing): number {
      return !m.registered && x.firstStartOnly ? p.missing.first_start_s : p.missing.span_s;
    }

    return {
      accepts: { kinds: ['log', 'openstack-health'], literals: LITERALS },
      state: () => machines.size + missing.size + flagged.size + rows.size,
      snapshot: () => ({
        v: STATE_VERSION,
        data: {
          machines: machines.snapshot((m) => ({ known: m.known, registered: m.registered })),
          missing: missing.snapshot((x) => ({
            times: x.times.map(time),
            firstStartOnly: x.firstStartOnly,
            reached: x.reached && { at: x.reached.at, evidence: x.reached.evidence },
            firing: x.firing && { startedAt: x.firing.startedAt, evidence: [...x.firing.evidence] },
          })),
          flagged: flagged.snapshot((f) => ({ host: f.host, service: f.service, kind: f.kind, computeHost: f.computeHost, startedAt: f.startedAt, evidence: [...f.evidence] })),
          rows: rows.snapshot((r) => ({ cloud: r.cloud, host: r.host, state: r.state, appearedAt: optionalTime(r.appearedAt), wentDownAt: optionalTime(r.wentDownAt) })),
        } satisfies z.input<typeof State>,
      }),
      restore: (state) =>
        restoreState(rule, state, STATE_VERSION, State, (data) => {
          // Findings past the rule's cap (a snapshot of a larger one) are not resolved: restore has no transitions to
          // give. They are counted as evictions.
          machines.load(data.machines);
          missing.load(data.missing);
          flagged.load(data.flagged);
          rows.load(data.rows);
          return undefined;
        }),
      on: (e) => (e.kind === 'log' ? onLog(e.doc) : e.kind === 'openstack-health' ? onApi(e) : []),
    };

    function onLog(doc: LogDocument): Alert[] {
      const text = doc.message;
      // Only the templates' lines: the engine routes by literals, a rule's own tests may not.
      if (!LITERALS.some((l) => text.includes(l))) return [];
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
      if (text.includes(RENAME_REFUSED)) {
        const names = RENAME_NAMES.exec(text)?.groups;
        const name = names?.new || RENAME_HOST.exec(text)?.groups!.host || m.known || doc.host.name;
        const was = names?.old || m.known;
        out.push(
          ...once(doc, now, 'rename-refused', name, `nova-compute on ${doc.host.name} refused to start as ${name}: possible rename detected${was ? ` (its node belongs to ${was})` : ''}`),
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
        // The record exists again: the missing-host alert of that name ends. One that was missing long enough but
        // logged nothing meanwhile (a replay, a stuck nova-compute) is an outage that fired and ended now.
        const key = `${doc.host.name}\0${name}`;
        const x = missing.get(key);
        // Missing long enough to be drift, not a first start's moment: it fired and ended now.
        if (x && !x.firing && x.reached && now - x.times[0] >= holdS(m, x) * 1000) {
          x.firing = { startedAt: x.reached.at, evidence: [x.reached.evidence] };
          out.push(
            alert(
              doc,
              'firing',
              'missing',
              name,
              x.reached.at,
              `compute host ${name} (nova-compute on ${doc.host.name}) was missing from nova's database since ${x.reached.at}: ComputeHostNotFound`,
              [x.reached.evidence],
            ),
          );
        }
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
        m.registered = true;
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
        state.firstStartOnly = (state.firstStartOnly ?? true) && text.includes(FIRST_START);
        state.times = slide(state.times, now, p.missing.window_s);
        if (state.times.length >= p.missing.count) state.reached ??= { at, evidence: doc.event.id };
        if (state.times.length >= p.missing.count && now - state.times[0] >= holdS(m, state) * 1000) {
          state.firing = { startedAt: at, evidence: [doc.event.id] };
          out.push(alert(doc, 'firing', 'missing', name, at, `compute host ${name} (nova-compute on ${doc.host.name}) is missing from nova's database: ComputeHostNotFound`, [doc.event.id]));
        }
        out.push(...keepMissing(doc, key, state, now));
      }
      return out;
    }
  },
});
