// Checkpoints of the incident correlator (incidents/correlator.ts: snapshot, restore). A correlator restored from a
// snapshot taken at any point, read back from JSON, goes on exactly as the one it was taken from: every incident
// document and every page after the cut is the same. Checked at every cut point of the bundled sosreport's real
// alerts (as `stackwatch detect` and a backfilling processor feed them), of made-up sequences that merge, escalate,
// hold and settle, and of random ones. A snapshot that is not one is refused with the reason, and the correlator
// starts empty.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DEFAULT_MAX_EVENT_BYTES } from '../../collectors/logs/assemble.ts';
import { readLogFile } from '../../collectors/logs/read-file.ts';
import { toRawEvent } from '../../collectors/openstack-logs.ts';
import type { Alert, Severity } from '../../core/events.ts';
import { DetectionEngine } from '../../detectors/engine.ts';
import { loadRules } from '../../detectors/rules.ts';
import { IncidentCorrelator, type CorrelatorOptions, type IncidentChange } from '../../incidents/correlator.ts';
import { loadIncidentRules } from '../../incidents/rules.ts';
import { parseLogEvent } from '../../processors/parse-log.ts';
import { alert, T0 } from './made-up-alerts.ts';

const SAMPLES = new URL('../../samples/hotsos-2022/', import.meta.url).pathname;
const SHIPPED = loadIncidentRules();

/** The alert transitions `stackwatch detect --host compute4` raises on the bundled sosreport, in the files' order:
 * its steps (cli/detect.ts) in process, so that no bundle is built. */
async function sosreportAlerts(): Promise<Alert[]> {
  const engine = await DetectionEngine.create(loadRules());
  const alerts: Alert[] = [];
  for (const file of ['nova-compute.log.1.gz', ...['dhcp', 'l3', 'metadata'].map((n) => `neutron-${n}-agent.log.1`)]) {
    const path = `${SAMPLES}${file}`;
    for await (const batch of readLogFile(path, { maxEventBytes: DEFAULT_MAX_EVENT_BYTES }, 500)) {
      for (const e of batch.events) {
        const doc = parseLogEvent(toRawEvent(e, 'compute4', path, batch.fileId, '2026-01-01T00:00:00.000Z'), { timezone: 'UTC' });
        alerts.push(...engine.on({ kind: 'log', doc }));
      }
    }
  }
  alerts.push(...engine.tick(Date.now()));
  return alerts;
}

/** One step of a feed: alert transitions at `now`, the clock's turn, or the end of a `detect` run. */
type Step = { alerts: Alert[]; now: number } | { tick: number } | { flush: number };

/** What a step gives: its changes (for a flush, the incidents still firing too, as documents without a page). */
function apply(c: IncidentCorrelator, step: Step): IncidentChange[] {
  if ('alerts' in step) return c.onAlerts(step.alerts, step.now);
  if ('tick' in step) return c.tick(step.tick);
  const { changes, stillFiring } = c.flush(step.flush);
  return [...changes, ...stillFiring.map((incident) => ({ incident, filedAt: incident.incident.started_at }))];
}

/** As `detect` feeds them (cli/detect.ts, correlate): in time order, each at its own time, the clock ticked first. */
function asDetect(alerts: Alert[]): Step[] {
  const sorted = alerts.map((a, i) => ({ a, i, t: Date.parse(a['@timestamp']) })).sort((x, y) => x.t - y.t || x.i - y.i);
  return [...sorted.flatMap(({ a, t }): Step[] => [{ tick: t }, { alerts: [a], now: t }]), { flush: sorted.at(-1)?.t ?? 0 }];
}

/** As a processor backfilling files gets them: the files one after another, each in its own order, 20 ms apart, the
 * wall clock years on; then a second's ticks until everything settled (test/unit/incidents.test.ts). */
function asBackfill(alerts: Alert[], order: string[]): Step[] {
  let now = Date.parse('2026-12-02T12:00:00Z');
  const steps: Step[] = [];
  for (const service of order) for (const a of alerts.filter((x) => x.service.name === service)) steps.push({ alerts: [a], now: (now += 20) });
  for (let t = now; t <= now + 15_000; t += 1000) steps.push({ tick: t });
  return steps;
}

const roundTrip = (c: IncidentCorrelator): unknown => JSON.parse(JSON.stringify(c.snapshot()));

/** Feeds `steps` to a new correlator, cutting before step `cut` (none: undefined): returns every change, and the
 * snapshot taken at the cut. */
function feed(steps: Step[], opts: CorrelatorOptions, cut?: number): { changes: IncidentChange[]; snapshot?: unknown; final: unknown } {
  const copy = structuredClone(steps);
  let c = new IncidentCorrelator(SHIPPED, opts);
  const changes: IncidentChange[] = [];
  let snapshot: unknown;
  copy.forEach((step, i) => {
    if (i === cut) {
      snapshot = roundTrip(c);
      c = new IncidentCorrelator(SHIPPED, opts);
      expect(c.restore(snapshot)).toBeUndefined();
    }
    changes.push(...apply(c, step));
  });
  if (cut === copy.length) snapshot = roundTrip(c);
  return { changes, snapshot, final: c.snapshot() };
}

/** Cuts before every step (and after the last): each gives the same changes, change by change, as no cut, and ends
 * in the same state. Returns the snapshots taken at the cuts. */
function expectEveryCutExact(steps: Step[], opts: CorrelatorOptions): unknown[] {
  const whole = feed(steps, opts);
  const snapshots: unknown[] = [];
  for (let cut = 0; cut <= steps.length; cut++) {
    const r = feed(steps, opts, cut);
    expect(r.changes, `cut before step ${cut} of ${steps.length}`).toEqual(whole.changes);
    expect(r.final, `cut before step ${cut}: the state at the end`).toEqual(whole.final);
    snapshots.push(r.snapshot);
  }
  return snapshots;
}

type Incidents = { incidents: { members: { indexed: boolean; firing: boolean }[]; detached?: unknown[]; paged: boolean; pagedSeverity?: string }[] };
const dataOf = (s: unknown) => (s as { data: Incidents }).data;

describe('a restored correlator goes on as the one it was taken from: the bundled sosreport (2022, compute4)', async () => {
  const alerts = await sosreportAlerts();

  it('raises the alerts the incident tests rely on', () => {
    // The outages of 4 and 9 February, the reply storm and the missing host: enough to merge, page and escalate.
    expect(alerts.filter((a) => a.alert.status === 'firing').length).toBeGreaterThanOrEqual(15);
  });

  it('as `detect` feeds them (min_duration 60 s): at every cut point', () => {
    const snapshots = expectEveryCutExact(asDetect(alerts), { minDurationS: 60 });
    // The cuts fall while incidents are open, paged and escalated (paged again at severity page).
    const incidents = snapshots.flatMap((s) => dataOf(s).incidents);
    expect(incidents.some((i) => i.paged && i.pagedSeverity === 'page')).toBe(true);
    expect(incidents.some((i) => !i.paged && i.members.some((m) => m.firing))).toBe(true);
  });

  it.each([[['neutron-dhcp-agent', 'neutron-l3-agent', 'neutron-metadata-agent', 'nova-compute']], [['nova-compute', 'neutron-l3-agent', 'neutron-dhcp-agent', 'neutron-metadata-agent']]])(
    'as a backfilling processor gets them (settle_s 10), files in the order %j: at every cut point',
    (order) => {
      expectEveryCutExact(asBackfill(alerts, order), { minDurationS: 60, settleS: 10 });
    },
  );
});

/** Each alert at its own time, the clock ticked first (as `detect`), then ticks every `every` s to `end`. */
function live(alerts: Alert[], end: number, every = 30): Step[] {
  const steps: Step[] = alerts.flatMap((a): Step[] => [{ tick: Date.parse(a['@timestamp']) }, { alerts: [a], now: Date.parse(a['@timestamp']) }]);
  for (let s = 0; s <= end; s += every) steps.push({ tick: T0 + s * 1000 });
  return steps;
}

const storm = { kind: 'reply-path-dead' };

describe('a restored correlator goes on as the one it was taken from: made-up sequences, at every cut point', () => {
  it('merging: a storm filed alone, then the outage it followed, arriving late (a backfill, settle_s 10)', () => {
    const now = T0 + 365 * 86_400_000;
    const steps: Step[] = [
      { alerts: [alert({ s: 150, group: storm, service: 'neutron-dhcp-agent' })], now },
      { alerts: [alert({ s: 0 }), alert({ s: 5, service: 'neutron-l3-agent' })], now: now + 2000 },
      { alerts: [alert({ s: 100, status: 'resolved', since: 0 })], now: now + 4000 },
      { alerts: [alert({ s: 400, status: 'resolved', since: 150, group: storm, service: 'neutron-dhcp-agent' })], now: now + 6000 },
      { alerts: [alert({ s: 420, status: 'resolved', since: 5, service: 'neutron-l3-agent' })], now: now + 8000 },
      ...Array.from({ length: 20 }, (_, i): Step => ({ tick: now + 9000 + i * 1000 })),
    ];
    expectEveryCutExact(steps, { minDurationS: 60, settleS: 10 });
    expect(feed(steps, { minDurationS: 60, settleS: 10 }).changes.some((c) => c.incident.incident.merged_into)).toBe(true);
  });

  it('escalation: a paged outage that a reply storm at severity page joins is paged again', () => {
    const steps = live(
      [
        alert({ s: 0 }),
        alert({ s: 90, group: storm, service: 'neutron-l3-agent', severity: 'page' }),
        alert({ s: 300, status: 'resolved', since: 0 }),
        alert({ s: 400, status: 'resolved', since: 90, group: storm, service: 'neutron-l3-agent', severity: 'page' }),
      ],
      1200,
    );
    expectEveryCutExact(steps, { minDurationS: 60 });
    const pages = feed(steps, { minDurationS: 60 }).changes.flatMap((c) => (c.page?.alert.status === 'firing' ? [c.page.alert.severity] : []));
    expect(pages).toEqual(['critical', 'page']);
  });

  it('hold: a loss within hold_s is the same incident, one after it a new page', () => {
    const steps = live([alert({ s: 0 }), alert({ s: 10, status: 'resolved', since: 0 }), alert({ s: 300 }), alert({ s: 310, status: 'resolved', since: 300 }), alert({ s: 2000 })], 3000, 60);
    expectEveryCutExact(steps, { minDurationS: 0 });
  });

  it('settling: an old incident decided only after settle_s without a change, another stream joining it meanwhile', () => {
    const now = T0 + 365 * 86_400_000;
    const steps: Step[] = [
      { alerts: [alert({ s: 0, service: 'neutron-dhcp-agent' }), alert({ s: 100, status: 'resolved', since: 0, service: 'neutron-dhcp-agent' })], now },
      { tick: now + 2000 },
      { alerts: [alert({ s: 5, service: 'nova-compute' }), alert({ s: 200, status: 'resolved', since: 5 })], now: now + 4000 },
      ...Array.from({ length: 16 }, (_, i): Step => ({ tick: now + 5000 + i * 1000 })),
    ];
    expectEveryCutExact(steps, { minDurationS: 60, settleS: 10 });
  });

  it('two occurrences of one alert merged into another incident: the index keeps the one the merge left it on', () => {
    // The same reply storm fires twice within its hold (one incident, not paged), then an outage of the host opens
    // and pages, and a later alert shows the storm to be its: the storm's incident is merged into the outage's.
    const steps = live(
      [
        alert({ s: 0, group: storm, service: 'a' }),
        alert({ s: 10, status: 'resolved', since: 0, group: storm, service: 'a' }),
        alert({ s: 20, group: storm, service: 'a' }),
        alert({ s: 30 }),
        alert({ s: 200, group: storm, service: 'b' }),
        alert({ s: 400, status: 'resolved', since: 20, group: storm, service: 'a' }),
        alert({ s: 500, status: 'resolved', since: 30 }),
        alert({ s: 600, status: 'resolved', since: 200, group: storm, service: 'b' }),
      ],
      2000,
    );
    const snapshots = expectEveryCutExact(steps, { minDurationS: 60 });
    expect(snapshots.some((s) => dataOf(s).incidents.some((i) => i.members.some((m) => !m.indexed)))).toBe(true);
  });

  it('one occurrence filed twice (a duplicate firing), then merged: the index entry left without its incident is kept', () => {
    // A storm (incident A, not paged) ends and fires again with the same start while a paged outage is open: the
    // duplicate goes into the outage, which then absorbs A, whose occurrence replaces it under the same key.
    const steps = live(
      [
        alert({ s: 0, group: storm, service: 'a' }),
        alert({ s: 1, status: 'resolved', since: 0, group: storm, service: 'a' }),
        alert({ s: 5 }),
        alert({ s: 100, since: 0, group: storm, service: 'a' }),
        alert({ s: 200, status: 'resolved', since: 0, group: storm, service: 'a' }),
        alert({ s: 300, status: 'resolved', since: 5 }),
      ],
      2000,
    );
    const snapshots = expectEveryCutExact(steps, { minDurationS: 60 });
    expect(snapshots.some((s) => dataOf(s).incidents.some((i) => i.detached))).toBe(true);
  });

  it('random sequences of the shipped rules (as test/unit/incidents.test.ts draws them), at every cut point', () => {
    const arb = fc.array(
      fc.record({
        host: fc.constantFrom('h1', 'h2'),
        service: fc.constantFrom('nova-compute', 'neutron-l3-agent', 'cinder-volume'),
        rule: fc.constantFrom('amqp-connection-lost', 'compute-host-drift', 'ceph-health', 'new-error-pattern', 'other'),
        kind: fc.constantFrom(undefined, 'reply-path-dead', 'missing'),
        severity: fc.constantFrom<Severity>('warning', 'critical', 'page'),
        start: fc.integer({ min: 0, max: 3_000 }),
        length: fc.integer({ min: 0, max: 1_500 }),
      }),
      { maxLength: 14 },
    );
    fc.assert(
      fc.property(arb, fc.integer({ min: 0, max: 120 }), fc.constantFrom(0, 10), (specs, minDurationS, settleS) => {
        const transitions: Alert[] = [];
        for (const x of specs) {
          const group = { ...(x.kind ? { kind: x.kind } : {}), compute_host: x.host };
          const o = { rule: x.rule, host: x.host, service: x.service, severity: x.severity, group };
          transitions.push(alert({ s: x.start, ...o }), alert({ s: x.start + x.length, status: 'resolved', since: x.start, ...o }));
        }
        const steps = settleS === 0 ? asDetect(transitions) : transitions.map((a, i): Step => ({ alerts: [a], now: T0 + 10_000_000 + i * 3000 }));
        expectEveryCutExact(steps, { minDurationS, settleS });
      }),
      { numRuns: 40 },
    );
  });
});

describe('the incident rules are those of now', () => {
  const steps = live([alert({ s: 0 }), alert({ s: 60, group: storm, service: 'neutron-l3-agent' }), alert({ s: 100, host: 'compute2', group: storm })], 200);

  it('restores an incident whose rule is gone as an incident of no rule: its id, alerts and page kept, and resolved', () => {
    const c = new IncidentCorrelator(SHIPPED, { minDurationS: 60 });
    const before = steps.flatMap((s) => apply(c, s));
    const stormIncident = before.find((x) => x.incident.incident.rule === 'amqp-reply-storm')!.incident.incident;
    const snapshot = roundTrip(c);
    const restored = new IncidentCorrelator(
      SHIPPED.filter((r) => r.id !== 'amqp-reply-storm'),
      { minDurationS: 60 },
    );
    expect(restored.restore(snapshot)).toBeUndefined();
    expect(restored.size).toBe(c.size);
    expect(restored.restoreNotes).toEqual([`incident ${stormIncident.id}: no incident rule amqp-reply-storm any more: restored as an incident of no rule`]);
    // Its end resolves it, under its id, with no hold: the pager that has it open hears of it.
    const end = restored.onAlerts([alert({ s: 300, status: 'resolved', since: 100, host: 'compute2', group: storm })], T0 + 300_000);
    const resolved = end.findLast((x) => x.incident.incident.id === stormIncident.id)!;
    expect(resolved.incident.incident).toMatchObject({ status: 'resolved', paged: true, alert_ids: stormIncident.alert_ids });
    expect(resolved.incident.incident.rule).toBeUndefined();
    expect(resolved.page?.alert).toMatchObject({ id: stormIncident.id, status: 'resolved' });
    // The incident of a rule still there goes on under it.
    expect(restored.onAlerts([alert({ s: 310, status: 'resolved', since: 0 })], T0 + 310_000)[0].incident.incident.rule).toBe('amqp-broker-unreachable');
  });

  it("takes a rule's new hold_s when the rule changed", () => {
    const c = new IncidentCorrelator(SHIPPED, { minDurationS: 0 });
    for (const s of live([alert({ s: 0 }), alert({ s: 10, status: 'resolved', since: 0 })], 60)) apply(c, s);
    const shorter = SHIPPED.map((r) => (r.id === 'amqp-broker-unreachable' ? { ...r, hold_s: 100 } : r));
    const restored = new IncidentCorrelator(shorter, { minDurationS: 0 });
    expect(restored.restore(roundTrip(c))).toBeUndefined();
    expect(restored.tick(T0 + 111_000).map((x) => x.incident.incident.status)).toEqual(['resolved']);
    expect(c.tick(T0 + 111_000)).toEqual([]); // the shipped rule's 600 s hold
  });
});

describe('a snapshot that is not one', () => {
  const steps = live([alert({ s: 0 }), alert({ s: 60, group: storm, service: 'neutron-l3-agent' }), alert({ s: 120, host: 'compute2' })], 150);
  const taken = () => {
    const c = new IncidentCorrelator(SHIPPED, { minDurationS: 60 });
    for (const s of structuredClone(steps)) apply(c, s);
    return roundTrip(c) as { v: number; data: { open: number; incidents: Record<string, unknown>[] } };
  };
  const rest = live([alert({ s: 200, status: 'resolved', since: 0 }), alert({ s: 260 }), alert({ s: 300, host: 'compute3' })], 2000);

  /** Refused with `reason`, and the correlator is empty and goes on as a new one. */
  function expectRefused(snapshot: unknown, reason: RegExp): void {
    const c = new IncidentCorrelator(SHIPPED, { minDurationS: 60 });
    for (const s of structuredClone(steps)) apply(c, s); // it held incidents before: they go too
    expect(c.restore(snapshot)).toMatch(reason);
    expect(c.size).toBe(0);
    const fresh = new IncidentCorrelator(SHIPPED, { minDurationS: 60 });
    const copy = structuredClone(rest);
    expect(structuredClone(rest).flatMap((s) => apply(c, s))).toEqual(copy.flatMap((s) => apply(fresh, s)));
  }

  it.each<[string, (s: ReturnType<typeof taken>) => unknown, RegExp]>([
    ['not an object', () => 'x', /^expected an object \{ v, data \}, got string$/],
    ['null', () => null, /got null/],
    ['another version', (s) => ({ ...s, v: 2 }), /^v: version 2 is not this correlator's \(1\)$/],
    ['no data', (s) => ({ v: s.v }), /^data: required$/],
    ['incidents not a list', (s) => ({ v: 1, data: { ...s.data, incidents: {} } }), /^data\.incidents: /],
    [
      'a firing count that is not a count',
      (s) => ({ v: 1, data: { ...s.data, incidents: [{ ...s.data.incidents[0], firing: 'two' }, ...s.data.incidents.slice(1)] } }),
      /^data\.incidents\[0\]\.firing: /,
    ],
    [
      'an alert without its id',
      (s) => ({ v: 1, data: { ...s.data, incidents: [{ ...s.data.incidents[0], first: { ...(s.data.incidents[0].first as object), alert: {} } }] } }),
      /^data\.incidents\[0\]\.first\.alert\.id: /,
    ],
    ['an unknown field', (s) => ({ v: 1, data: { ...s.data, extra: 1 } }), /^data\.extra: unknown field$/],
    ['an incident twice', (s) => ({ v: 1, data: { open: 2, incidents: [s.data.incidents[0], s.data.incidents[0]] } }), /^data\.incidents\[1\]\.id: the incident .* appears twice$/],
    ['incidents missing', (s) => ({ v: 1, data: { ...s.data, incidents: s.data.incidents.slice(1) } }), /^data\.incidents: expected 2 incidents, got 1$/],
  ])('%s', (_, make, reason) => expectRefused(make(taken()), reason));

  it('cut short anywhere (the first n values kept, in the order they are written): refused', () => {
    const s = taken();
    expect(s.data.open).toBe(2);
    const leaves = countLeaves(s);
    for (let n = 0; n < leaves; n++) expectRefused(truncate(s, n), /./);
  });

  it('with any value replaced by another: never throws, and a refused one leaves the correlator new', () => {
    const s = taken();
    const leaves = countLeaves(s);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: leaves - 1 }), fc.jsonValue({ maxDepth: 2 }), (n, value) => {
        const c = new IncidentCorrelator(SHIPPED, { minDurationS: 60 });
        const reason = c.restore(replaceLeaf(s, n, value));
        if (reason !== undefined) expect(c.size).toBe(0);
        structuredClone(rest).forEach((step) => apply(c, step));
      }),
      { numRuns: 300 },
    );
  });
});

function countLeaves(v: unknown): number {
  if (v === null || typeof v !== 'object') return 1;
  return Object.values(v).reduce<number>((n, x) => n + countLeaves(x), 0);
}

/** `v` with only its first `n` leaf values (strings, numbers, booleans, null), in the order JSON writes them: what a
 * writer cut short leaves of it. */
function truncate(v: unknown, n: number): unknown {
  let left = n;
  const cut = (x: unknown): unknown => {
    if (x === null || typeof x !== 'object') return left-- > 0 ? x : undefined;
    const out: [string, unknown][] = [];
    for (const [k, child] of Object.entries(x)) {
      if (left <= 0) break;
      const kept = cut(child);
      if (kept !== undefined) out.push([k, kept]);
    }
    return Array.isArray(x) ? out.map(([, c]) => c) : Object.fromEntries(out);
  };
  return cut(v);
}

/** `v` with its n-th leaf value replaced. */
function replaceLeaf(v: unknown, n: number, value: unknown): unknown {
  let i = 0;
  const walk = (x: unknown): unknown => {
    if (x === null || typeof x !== 'object') return i++ === n ? value : x;
    if (Array.isArray(x)) return x.map(walk);
    return Object.fromEntries(Object.entries(x).map(([k, c]) => [k, walk(c)]));
  };
  return walk(v);
}
