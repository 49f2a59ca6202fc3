// Detector state that survives a restart: every rule's detector state taken from an engine (snapshot), written as
// JSON and read back into a new engine of the same rules (restore), goes on exactly as the engine it came from would
// have. The property, for every detector of the registry: a stream of real events run without a break gives the same
// alert transitions as the stream run up to a cut, snapshotted, restored into a freshly created engine and run to its
// end — for every cut of the small streams (the rules' own tests, the evidence fixtures) and for cuts around every
// transition and at random (fast-check) of the bundled 2022 sosreport. The clock (tick) turns at the same points in
// both runs, and the wall clock (service-silent's) is vi's fake one, set to each event's time.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setImmediate } from 'node:timers/promises';
import { gunzipSync } from 'node:zlib';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { loadEvidence, EVIDENCE_RULES } from '../../bench/evidence.ts';
import { EventAssembler } from '../../collectors/logs/assemble.ts';
import { toRawEvent } from '../../collectors/openstack-logs.ts';
import type { Alert, PipelineEvent } from '../../core/events.ts';
import { logger } from '../../core/log.ts';
import { componentMetrics, counterValue } from '../../core/metrics.ts';
import type { TopicKind } from '../../core/kafka.ts';
import type { Detector, DetectorState } from '../../detectors/detector.ts';
import { DetectionEngine } from '../../detectors/engine.ts';
import { DETECTORS } from '../../detectors/index.ts';
import { DEFAULT_RULES_DIR, loadRules, readYamlFile, ruleDirFiles, ruleParams, type Rule } from '../../detectors/rules.ts';
import { KeyedState, keyedData } from '../../detectors/state.ts';
import { decodeMessage } from '../../processors/decode.ts';

const SAMPLES = new URL('../../samples/hotsos-2022/', import.meta.url).pathname;
const SHIPPED = loadRules();

/** Rules of the `pattern` detector, which no shipped rule uses: two that fire and resolve on the sosreport's lines,
 * one by its quiet with a regex group that takes part in no match (undefined in its captures), one by a line. */
const PATTERN_RULES: Rule[] = [
  {
    id: 'snapshot-pattern-refused',
    name: 'connection refused',
    detector: 'pattern',
    severity: 'warning',
    runbook: 'none',
    match_by: ['host.name', 'service.name', 'errno'],
    params: {
      fire: String.raw`Connection failed: \[Errno (?<errno>\d+)\] (?<reset>ECONNRESET)?`,
      threshold: { count: 3, window_s: 60 },
      quiet_resolve_s: 120,
      severity_from: { group: 'errno', map: { '111': 'critical' } },
      message: '{service.name} on {host.name}: connection refused (errno {errno}, {reset})',
      evidence_max: 5,
    },
  },
  {
    id: 'snapshot-pattern-timeout',
    name: 'RPC timeouts',
    detector: 'pattern',
    severity: 'warning',
    runbook: 'none',
    match_by: ['host.name', 'service.name'],
    params: {
      contains: ['MessagingTimeout', 'Synchronizing state complete', 'Agent has just been revived'],
      fire: 'MessagingTimeout',
      resolve: 'Synchronizing state complete|Agent has just been revived',
      threshold: { count: 2, window_s: 300 },
      message: '{service.name} on {host.name}: RPC calls time out',
    },
  },
];
const RULES = [...SHIPPED, ...PATTERN_RULES];
/** The same rules holding at most 3 entries of each kind, idle after 30 min: state is evicted all the time, and
 * a restored state must evict as the one it came from would have. */
const TIGHT = RULES.map((r) => ({ ...r, state: { max_entries: 3, idle_s: 1800 } }));

/** Each rule's params, validated once. re2-wasm never frees a regex it compiled (core/regex.ts keeps them for the
 * process's life): its 16 MB fill up after about 280 engines of the shipped rules, so the streams cut at every op
 * make their engines of detectors made from params validated once (`engineOf`), and only the long stream's few
 * cuts go through DetectionEngine.create itself. */
const validated = new Map<Rule, unknown>();

/** A new detector of a rule, as createDetector makes it (its params validated once per rule). */
function made(rule: Rule): Detector {
  const def = DETECTORS[rule.detector];
  if (!validated.has(rule)) validated.set(rule, ruleParams(rule, def.params));
  return def.create(validated.get(rule), { rule, log: logger(`detector.${def.name}`), metrics: componentMetrics(`detector.${def.name}`) });
}

/** A new engine of the rules, routing as DetectionEngine.create's does (the same constructor). */
function engineOf(rules: Rule[]): DetectionEngine {
  return DetectionEngine.of(Object.fromEntries(rules.map((r) => [r.id, made(r)])));
}

/** One step of a stream: an event, or the clock's turn; `at` is the wall clock then (ms). */
interface Op {
  at: number;
  event?: PipelineEvent;
}

function eventTime(e: PipelineEvent): number {
  return Date.parse(e.kind === 'log' ? e.doc['@timestamp'] : e.kind === 'metric' ? e.sample['@timestamp'] : e['@timestamp']);
}

/** Log lines as the pipeline makes events of them: the collector's assembly, then the processor's decoding. */
function logEvents(host: string, path: string, text: string): PipelineEvent[] {
  const out: PipelineEvent[] = [];
  const assembler = new EventAssembler({ maxEventBytes: 1 << 20 }, (e) => {
    const event = decode('logs', toRawEvent(e, host, path, `test:${path}`, '2000-01-01T00:00:00.000Z'), e.offset);
    if (event) out.push(event);
  });
  let offset = 0;
  for (const line of text.split('\n')) {
    if (line !== '') assembler.push(offset, line);
    offset += Buffer.byteLength(line) + 1;
  }
  assembler.flush();
  return out;
}

function decode(kind: TopicKind, value: unknown, offset = 0): PipelineEvent | undefined {
  return decodeMessage(kind, value, { timezone: 'UTC', source: { topic: `test:${kind}`, partition: 0, offset: String(offset) } }).event;
}

/** Events as ops, the wall clock at each event's own time, and the clock's turn (tick) before an event once
 * `tickEveryS` of it passed since the last, and at `end` (ms) after the last event when given. */
function ops(events: PipelineEvent[], tickEveryS: number, end?: number): Op[] {
  const out: Op[] = [];
  let at = 0;
  let ticked = -Infinity;
  for (const event of events) {
    const t = eventTime(event);
    if (Number.isFinite(t)) at = t;
    if (at - ticked >= tickEveryS * 1000) {
      out.push({ at });
      ticked = at;
    }
    out.push({ at, event });
  }
  if (end !== undefined) out.push({ at: end });
  return out;
}

/** The bundled sosreport (4 services, 2022-02-04..10), its files' events merged in time order as one host's. */
const hotsos = (() => {
  const events = readdirSync(SAMPLES).flatMap((f) => {
    const data = readFileSync(join(SAMPLES, f));
    return logEvents('compute4', `/var/log/x/${f.replace(/\.log.*$/, '.log')}`, (f.endsWith('.gz') ? gunzipSync(data) : data).toString('utf8'));
  });
  const keyed = events.map((e, i) => ({ e, i, t: eventTime(e) }));
  keyed.sort((a, b) => a.t - b.t || a.i - b.i);
  const list = keyed.map((k) => k.e);
  return ops(list, 60, eventTime(list[list.length - 1]) + 86_400_000);
})();

/** What the rules' own tests give (rules/<id>.test.yaml), as processors/rule-tests.ts feeds it: per test, the logs,
 * then the metric samples, Ceph health events, Zabbix problems and OpenStack API health events. */
let ruleTestCache: { name: string; ops: Op[] }[] | undefined;
function ruleTestStreams(): { name: string; ops: Op[] }[] {
  return (ruleTestCache ??= readRuleTests());
}

function readRuleTests(): { name: string; ops: Op[] }[] {
  type T = {
    name: string;
    host?: string;
    logs?: { file: string; lines: string }[];
    metrics?: { at: string; host: string; name: string; value: number; labels?: Record<string, string> }[];
    ceph_health?: { at: string; cluster?: string; status: string; checks?: unknown[] }[];
    zabbix_problems?: ({ at: string; host: string } & Record<string, unknown>)[];
    openstack_health?: ({ at: string; cloud?: string } & Record<string, unknown>)[];
  };
  const out: { name: string; ops: Op[] }[] = [];
  for (const f of ruleDirFiles(DEFAULT_RULES_DIR).filter((n) => n.endsWith('.test.yaml'))) {
    for (const t of (readYamlFile(join(DEFAULT_RULES_DIR, f)) as { tests: T[] }).tests) {
      const events: (PipelineEvent | undefined)[] = (t.logs ?? []).flatMap((l) => logEvents(t.host ?? 'test-host', l.file, l.lines));
      for (const m of t.metrics ?? [])
        events.push(decode('metrics', { v: 1, '@timestamp': m.at, source: 'test', host: { name: m.host }, metric: { name: m.name, value: m.value }, labels: m.labels ?? {} }));
      for (const h of t.ceph_health ?? [])
        events.push(decode('health', { v: 1, kind: 'ceph-health', '@timestamp': h.at, cluster: { name: h.cluster ?? 'ceph' }, status: h.status, checks: h.checks ?? [] }));
      for (const { at, host, ...problem } of t.zabbix_problems ?? [])
        events.push(decode('health', { v: 1, kind: 'zabbix-problem', '@timestamp': at, host: { name: host }, problem, labels: {} }));
      for (const { at, cloud, ...rest } of t.openstack_health ?? [])
        events.push(decode('health', { v: 1, kind: 'openstack-health', '@timestamp': at, cloud: { name: cloud ?? 'openstack' }, ...rest }));
      const list = events.filter((e) => e !== undefined);
      // The clock turns before every event, and a day after the last: what only time settles settles.
      out.push({ name: `${f} ${t.name}`, ops: ops(list, 0, Math.max(...list.map(eventTime).filter(Number.isFinite)) + 86_400_000) });
    }
  }
  return out;
}

/** The evidence fixtures (test/fixtures/evidence/), each case one stream, the clock turned after it as `judge` does. */
function evidenceStreams(): { name: string; ops: Op[] }[] {
  return EVIDENCE_RULES.flatMap((rule) => loadEvidence(rule).map((c) => ({ name: `${rule} ${c.id}`, ops: ops(logEvents(c.host, c.file, c.lines), 0, Date.parse('2100-01-01T00:00:00Z')) })));
}

/** The transitions of one op, copied as they are when sent (a detector may add evidence to an alert it returned). */
function apply(engine: DetectionEngine, op: Op): Alert[] {
  vi.setSystemTime(op.at);
  return structuredClone(op.event ? engine.on(op.event) : engine.tick(op.at));
}

/** What every detector did across the streams checked: transitions, and state held at a cut. */
const coverage = { alerts: new Set<string>(), state: new Set<string>() };
const detectorOf = new Map(RULES.map((r) => [r.id, r.detector]));

/**
 * The property: `ops` run without a break, and the same ops snapshotted at each cut of `cuts` (which changes
 * nothing), restored from JSON into a new engine of the same rules that runs the rest, give the same transitions;
 * the restored engine's state is the snapshot it took, and at the end the state of the engine never stopped.
 */
async function checkCuts(rules: Rule[], list: Op[], cuts: Iterable<number>, make: (rules: Rule[]) => DetectionEngine | Promise<DetectionEngine> = engineOf): Promise<void> {
  const whole = await make(rules);
  const expected = list.map((op) => apply(whole, op));
  const end = JSON.stringify(whole.snapshot());
  const at = new Set(cuts);
  const observed = await make(rules);
  const snapshots = new Map<number, string>();
  const seen: Alert[][] = [];
  list.forEach((op, i) => {
    if (at.has(i)) {
      snapshots.set(i, JSON.stringify(observed.snapshot()));
      for (const [id, n] of observed.stateSizes()) if (n > 0) coverage.state.add(detectorOf.get(id) ?? id);
    }
    seen.push(apply(observed, op));
  });
  if (at.has(list.length)) snapshots.set(list.length, JSON.stringify(observed.snapshot()));
  expect(seen).toEqual(expected);
  for (const a of expected.flat()) coverage.alerts.add(detectorOf.get(a.rule.id) ?? a.rule.id);
  for (const [k, json] of snapshots) {
    await breathe();
    const restored = await make(rules);
    const result = restored.restore(JSON.parse(json));
    expect(result.discarded, `cut ${k}`).toEqual([]);
    expect(JSON.stringify(restored.snapshot()), `the state restored at cut ${k} is the snapshot`).toBe(json);
    const rest = list.slice(k).map((op) => apply(restored, op));
    expect(rest.flat(), `transitions after cut ${k} of ${list.length}`).toEqual(expected.slice(k).flat());
    expect(JSON.stringify(restored.snapshot()), `the state at the end, after cut ${k}`).toBe(end);
  }
}

/** A turn of the event loop for vitest's messages. A cut replays up to 20,000 ops and nothing in it waits on I/O
 * (an engine made with `await` resolves at once), so without this a test is one synchronous block of tens of seconds;
 * on a loaded machine it passed a minute, and vitest ended the run ("Timeout calling onTaskUpdate") though every
 * test passed. */
const breathe = () => setImmediate();

/** Cuts of a long stream: evenly spaced, and just before and after each op that gave transitions (up to `max` of them). */
function cutsOf(rules: Rule[], list: Op[], even: number, max: number): number[] {
  const engine = engineOf(rules);
  const busy = list.map((op, i) => [i, apply(engine, op).length] as const).filter(([, n]) => n > 0);
  const step = Math.max(1, Math.ceil(busy.length / max));
  const around = busy.filter((_, j) => j % step === 0).flatMap(([i]) => [i, i + 1]);
  const spaced = Array.from({ length: even + 1 }, (_, j) => Math.round((j * list.length) / even));
  return [...new Set([...spaced, ...around])].sort((a, b) => a - b);
}

/** A fresh detector of a rule with what it does with `list` (its transitions), for comparing two. */
function feed(d: Detector, rule: Rule, list: Op[]): Alert[] {
  const engine = DetectionEngine.of({ [rule.id]: d });
  return list.flatMap((op) => apply(engine, op));
}

describe('detector state survives a restart', () => {
  beforeAll(() => {
    vi.useFakeTimers({ toFake: ['Date'] });
  });
  afterAll(() => vi.useRealTimers());

  it('the rules’ own tests, with the shipped rules and tight ones: the same transitions whatever the cut, at every cut', async () => {
    for (const { name, ops: list } of ruleTestStreams()) {
      const every = Array.from({ length: list.length + 1 }, (_, i) => i);
      for (const rules of [RULES, TIGHT]) {
        try {
          await checkCuts(rules, list, every);
        } catch (err) {
          throw new Error(`${name} (${rules === TIGHT ? 'tight' : 'shipped'} rules): ${(err as Error).message}`);
        }
      }
    }
  });

  it('the evidence fixtures: the same transitions whatever the cut, at every cut', async () => {
    for (const { name, ops: list } of evidenceStreams()) {
      try {
        await checkCuts(
          RULES,
          list,
          Array.from({ length: list.length + 1 }, (_, i) => i),
        );
      } catch (err) {
        throw new Error(`${name}: ${(err as Error).message}`);
      }
    }
  });

  // Each cut runs the rest of the day (20,000 ops, 0.4 s): a few dozen cuts, not all.
  it.each([
    ['shipped', RULES, 6, 10],
    ['tight', TIGHT, 4, 6],
  ] as const)('the 2022 sosreport (%s rules): the same transitions cut around transitions and evenly', async (_, rules, even, around) => {
    await checkCuts(rules, hotsos, cutsOf(rules, hotsos, even, around), (r) => DetectionEngine.create(r));
  });

  it('the 2022 sosreport: the same transitions cut anywhere (fast-check)', async () => {
    const whole = await DetectionEngine.create(RULES);
    const expected = hotsos.map((op) => apply(whole, op));
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: hotsos.length }), async (k) => {
        const before = await DetectionEngine.create(RULES);
        const first = hotsos.slice(0, k).map((op) => apply(before, op));
        const after = await DetectionEngine.create(RULES);
        expect(after.restore(JSON.parse(JSON.stringify(before.snapshot()))).discarded).toEqual([]);
        const rest = hotsos.slice(k).map((op) => apply(after, op));
        expect([...first, ...rest].flat()).toEqual(expected.flat());
      }),
      { numRuns: 3 },
    );
  });

  it('every detector of the registry was held to it: each gave transitions and held state at a cut', () => {
    const names = Object.keys(DETECTORS).sort();
    expect([...coverage.alerts].filter((n) => names.includes(n)).sort()).toEqual(names);
    expect([...coverage.state].filter((n) => names.includes(n)).sort()).toEqual(names);
  });

  it('the size of each rule’s state after the whole sosreport', async () => {
    const engine = await DetectionEngine.create(SHIPPED);
    for (const op of hotsos) apply(engine, op);
    const whole = await DetectionEngine.create(RULES);
    const sizes = Object.fromEntries(Object.entries(engine.snapshot()).map(([id, s]) => [id, Buffer.byteLength(JSON.stringify(s))]));
    const transitions: Record<string, number> = {};
    for (const op of hotsos) for (const a of apply(whole, op)) transitions[a.rule.id] = (transitions[a.rule.id] ?? 0) + 1;
    console.log(
      `snapshot bytes per rule after the 2022 sosreport (${hotsos.length} ops): ${JSON.stringify(sizes)}; all: ${Buffer.byteLength(JSON.stringify(engine.snapshot()))}; transitions: ${JSON.stringify(transitions)}`,
    );
    expect(Object.keys(sizes).sort()).toEqual(SHIPPED.map((r) => r.id).sort());
  });
});

const rulesOf = new Map<string, Rule>();

/** The detector's shipped rule, else a rule of its params example (as compliance-detectors.test.ts makes it); the
 * same object for the same arguments (its params validated once). */
function ruleOf(name: string, state?: Rule['state']): Rule {
  const key = `${name} ${JSON.stringify(state)}`;
  const def = DETECTORS[name];
  const shipped = SHIPPED.find((r) => r.detector === name);
  const rule: Rule = shipped
    ? { ...shipped }
    : { id: `snapshot-${name}`, name, detector: name, severity: 'warning', runbook: 'none', match_by: ['host.name', 'service.name'], params: def.example! };
  if (!rulesOf.has(key)) rulesOf.set(key, state ? { ...rule, state } : rule);
  return rulesOf.get(key)!;
}

/** Events that leave every kind of detector holding state for `host`: an OpenStack service down and a console
 * probe failing, Ceph checks standing, a Zabbix problem open. */
function openProblems(host: string, i: number): Op[] {
  const at = new Date(Date.UTC(2026, 0, 1) + i * 60_000).toISOString();
  const list = [
    decode('health', {
      v: 1,
      kind: 'openstack-health',
      '@timestamp': at,
      cloud: { name: host },
      services: [{ id: '1', binary: 'nova-compute', host: `${host}-compute`, state: 'down', status: 'enabled', forced_down: false }],
      probes: [{ name: 'console', target: 'canary', ok: false, started_at: at, duration_s: 64, error: 'HTTP 500: MessagingTimeout' }],
    }),
    // The checks of the hosts before stand still: a status event lists every check that stands.
    decode('health', {
      v: 1,
      kind: 'ceph-health',
      '@timestamp': at,
      cluster: { name: 'ceph' },
      status: 'HEALTH_WARN',
      checks: Array.from({ length: i + 1 }, (_, j) => ({ code: `OSD_DOWN_${j}`, severity: 'HEALTH_WARN', summary: `osd.${j} down` })),
    }),
    decode('health', {
      v: 1,
      kind: 'zabbix-problem',
      '@timestamp': at,
      host: { name: host },
      problem: { eventid: `${host}-1`, name: 'Zabbix agent is not available', severity: 4, status: 'open', started_at: at, acknowledged: false },
      labels: {},
    }),
  ];
  return list.filter((e) => e !== undefined).map((event) => ({ at: Date.parse(at), event }));
}

/** What gives a detector state: its rule's own tests, a line that fires the pattern example, the sosreport's
 * first hours, and open problems of every kind. */
function streamFor(rule: Rule): Op[] {
  const own = ruleTestStreams()
    .filter((s) => s.name.startsWith(`${rule.id}.test.yaml `))
    .flatMap((s) => s.ops.slice(0, -1));
  const boom = ops(logEvents('h', '/var/log/nova/nova-compute.log', '2022-02-04 09:00:00.000 1 ERROR nova.compute.manager [-] boom'), 0);
  return [...own, ...boom, ...hotsos.slice(0, 3000), ...openProblems('cloud-1', 0)];
}

describe('snapshot and restore, detector by detector', () => {
  beforeAll(() => {
    vi.useFakeTimers({ toFake: ['Date'] });
  });
  afterAll(() => vi.useRealTimers());

  const names = Object.keys(DETECTORS);

  it.each(names)('%s: holds state after events, and can snapshot and restore it', (name) => {
    const rule = ruleOf(name);
    const d = made(rule);
    const fresh = made(rule);
    feed(d, rule, streamFor(rule));
    expect(d.state?.() ?? 0, 'the events gave it state').toBeGreaterThan(0);
    // A detector that holds state and cannot hand it over loses it on every restart.
    expect(typeof d.snapshot, 'snapshot').toBe('function');
    expect(typeof d.restore, 'restore').toBe('function');
    const s = JSON.parse(JSON.stringify(d.snapshot!())) as DetectorState;
    expect(JSON.stringify(s), 'the snapshot holds what it holds').not.toBe(JSON.stringify(fresh.snapshot!()));
    expect(fresh.restore!(s)).toBeUndefined();
    expect(fresh.state!()).toBe(d.state!());
    expect(JSON.stringify(fresh.snapshot!())).toBe(JSON.stringify(s));
  });

  /** Corruptions of a good snapshot: another version, data of the wrong shape, truncated. */
  function corruptions(s: DetectorState): [string, DetectorState][] {
    const data = s.data as Record<string, unknown>;
    const keys = Object.keys(data);
    const out: [string, DetectorState][] = [
      ['a newer version', { v: s.v + 1, data }],
      ['no version', { data } as DetectorState],
      ['data that is text', { v: s.v, data: 'garbage' }],
      ['data null', { v: s.v, data: null }],
      ['data an empty object', { v: s.v, data: {} }],
      ['data an array', { v: s.v, data: [data] }],
      ['an unknown field', { v: s.v, data: { ...data, extra: 1 } }],
      ['the last field cut', { v: s.v, data: Object.fromEntries(keys.slice(0, -1).map((k) => [k, data[k]])) }],
    ];
    // A column of a keyed state cut short (the data truncated), and a value of the wrong type deep inside.
    const json = JSON.stringify(s.data);
    const cut = JSON.parse(json) as Record<string, unknown>;
    const keyed = findKeyed(cut).find((k) => k.values.length > 0);
    if (keyed) {
      keyed.values.pop();
      out.push(['a column cut short', { v: s.v, data: cut }]);
      const wrong = JSON.parse(json) as Record<string, unknown>;
      const w = findKeyed(wrong).find((k) => k.values.length > 0)!;
      w.seen[0] = 'yesterday' as never;
      out.push(['a time that is text', { v: s.v, data: wrong }]);
      const dup = JSON.parse(json) as Record<string, unknown>;
      const d2 = findKeyed(dup).find((k) => k.values.length > 0)!;
      (d2.keys.push(d2.keys[0]), d2.seen.push(d2.seen[0]), d2.values.push(d2.values[0]));
      out.push(['a key twice', { v: s.v, data: dup }]);
    }
    return out;
  }

  it.each(names)('%s: a corrupt snapshot is discarded with the rule and the field, and the detector works as a fresh one', (name) => {
    const rule = ruleOf(name);
    const list = streamFor(rule);
    const d = made(rule);
    feed(d, rule, list);
    const good = JSON.parse(JSON.stringify(d.snapshot!())) as DetectorState;
    const reference = made(rule);
    const want = feed(reference, rule, list);
    const wantState = JSON.stringify(reference.snapshot!());
    for (const [what, bad] of corruptions(good)) {
      const x = made(rule);
      const reason = x.restore!(bad);
      expect(reason, what).toMatch(new RegExp(`^${rule.id}: state(\\.v|\\.data\\S*)?: \\S`));
      expect(JSON.stringify(x.snapshot!()), `${what}: nothing of it kept`).toBe(JSON.stringify(made(rule).snapshot!()));
      expect(feed(x, rule, list), `${what}: works as a fresh one`).toEqual(want);
      expect(JSON.stringify(x.snapshot!())).toBe(wantState);
    }
  });

  it.each(names)('%s: whatever part of a snapshot is changed to whatever JSON, restore never throws and never half-restores (fast-check)', (name) => {
    const rule = ruleOf(name);
    const d = made(rule);
    feed(d, rule, streamFor(rule).slice(0, 400));
    const json = JSON.stringify(d.snapshot!());
    const empty = JSON.stringify(made(rule).snapshot!());
    const paths = leafPaths(JSON.parse(json));
    const more = streamFor(rule).slice(400, 700);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: paths.length - 1 }), fc.jsonValue({ maxDepth: 2 }), (i, value) => {
        const s = JSON.parse(json) as DetectorState;
        set(s as unknown as Record<string, unknown>, paths[i], value);
        const x = made(rule);
        const reason = x.restore!(s);
        if (reason !== undefined) {
          expect(reason).toMatch(new RegExp(`^${rule.id}: `));
          expect(JSON.stringify(x.snapshot!())).toBe(empty);
        } else {
          // Data of the right shape, if not of any real run: the detector goes on with it.
          JSON.stringify(x.snapshot!());
          feed(x, rule, more);
        }
      }),
      { numRuns: 150 },
    );
  });
});

describe('the engine', () => {
  it('discards the state of a rule it no longer has, of a rule now of another detector, and of a malformed entry, naming each; a rule the snapshot lacks starts empty', async () => {
    const old = await DetectionEngine.create(RULES);
    for (const op of hotsos.slice(0, 2000)) if (op.event) old.on(op.event);
    const snap = JSON.parse(JSON.stringify(old.snapshot())) as Record<string, { detector: string; v: number; data: unknown }>;
    snap['gone-rule'] = { ...snap['ceph-health'] };
    snap['zabbix-problem'] = { ...snap['zabbix-problem'], detector: 'ceph-health' };
    snap['console-probe-failing'] = { v: 1 } as never;
    delete snap['service-silent'];
    const engine = await DetectionEngine.create(RULES);
    const result = engine.restore(snap);
    expect(result.discarded.map((d) => d.rule).sort()).toEqual(['console-probe-failing', 'gone-rule', 'zabbix-problem']);
    for (const d of result.discarded) expect(d.reason).toMatch(new RegExp(`^${d.rule}: `));
    expect(result.discarded.find((d) => d.rule === 'gone-rule')!.reason).toMatch(/no such rule/);
    expect(result.discarded.find((d) => d.rule === 'zabbix-problem')!.reason).toMatch(/now of detector zabbix-problem/);
    expect(result.discarded.find((d) => d.rule === 'console-probe-failing')!.reason).toMatch(/detector: required|detector/);
    expect(result.restored.sort()).toEqual(
      RULES.map((r) => r.id)
        .filter((id) => !['zabbix-problem', 'console-probe-failing', 'service-silent'].includes(id))
        .sort(),
    );
    expect(engine.stateSizes().get('service-silent')).toBe(0);
    expect(engine.restore('not a snapshot').discarded).toHaveLength(1);
    expect(engine.restore(null).discarded).toHaveLength(1);
  });
});

describe('bounds after a restore', () => {
  it('a KeyedState loaded with more entries than its cap keeps the newest, quiet ones dropped first, open ones last, each drop counted', async () => {
    const isOpen = (v: { open: boolean }) => v.open;
    const big = new KeyedState<{ open: boolean }>('snapshot-bound-big', { max_entries: 100, idle_s: 86_400 }, isOpen);
    for (let i = 0; i < 12; i++) big.set(`k${i}`, { open: i % 3 === 0 }, 1000 * i);
    const data = keyedData(z.strictObject({ open: z.boolean() })).parse(JSON.parse(JSON.stringify(big.snapshot((v) => ({ ...v })))));
    const small = new KeyedState<{ open: boolean }>('snapshot-bound-5', { max_entries: 5, idle_s: 86_400 }, isOpen);
    const dropped = small.load(data);
    expect(small.size).toBe(5);
    expect(dropped.map((e) => `${e.key} ${e.reason}`)).toEqual(['k1 cap', 'k2 cap', 'k4 cap', 'k5 cap', 'k7 cap', 'k8 cap', 'k10 cap']);
    expect([...small.entries()].map(([k]) => k)).toEqual(['k11', 'k0', 'k3', 'k6', 'k9']);
    expect(await counterValue('evictions', { rule: 'snapshot-bound-5', reason: 'cap' })).toBe(7);
    // And it goes on as a state of 5 does: the next entry drops the oldest quiet one, then the oldest open one.
    expect(small.set('k12', { open: false }, 13_000).map((e) => e.key)).toEqual(['k11']);
    expect(small.set('k13', { open: false }, 14_000).map((e) => e.key)).toEqual(['k12']);
    expect(small.set('k14', { open: true }, 15_000).map((e) => e.key)).toEqual(['k13']);
    expect(small.set('k15', { open: true }, 16_000).map((e) => e.key)).toEqual(['k0']);
  });

  it.each(Object.keys(DETECTORS))('%s: a snapshot of more entries than the rule’s state.max_entries restores to at most the cap, counted as evictions', async (name) => {
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      const big = ruleOf(name, { max_entries: 10_000, idle_s: 1e9 });
      const d = made(big);
      // Many groups: the rule's own events and the sosreport, under many host names.
      // Ceph status events clear the checks they do not list: left out, the checks of every host stand.
      const list = streamFor(big).filter((op) => op.event?.kind !== 'ceph-health');
      for (let h = 0; h < 8; h++) feed(d, big, [...list.map((op) => ({ ...op, event: op.event && renamed(op.event, `h${h}`) })), ...openProblems(`h${h}`, h)]);
      const snap = JSON.parse(JSON.stringify(d.snapshot!())) as DetectorState;
      const cap = 3;
      // The same rule with a smaller cap, under an id of its own: its eviction counter starts at 0.
      const small = { ...ruleOf(name, { max_entries: cap, idle_s: 1e9 }), id: `snapshot-bound-${name}` };
      const x = made(small);
      expect(x.restore!(snap)).toBeUndefined();
      const before = findKeyed(snap.data);
      const after = findKeyed(x.snapshot!().data);
      expect(
        before.some((k) => k.keys.length > cap),
        'the snapshot holds more than the cap',
      ).toBe(true);
      for (const k of after) expect(k.keys.length).toBeLessThanOrEqual(cap);
      const counted = await counterValue('evictions', { rule: small.id, reason: 'cap' });
      const total = (ks: { keys: unknown[] }[]) => ks.reduce((n, k) => n + k.keys.length, 0);
      // At least what the states past the cap held beyond it; at most all that went (a group dropped takes its
      // nested entries, its connections, with it).
      expect(counted).toBeGreaterThanOrEqual(findKeyed(snap.data, true).reduce((n, k) => n + Math.max(0, k.keys.length - cap), 0));
      expect(counted).toBeLessThanOrEqual(total(before) - total(after));
      // And it goes on.
      feed(x, small, list.slice(0, 200));
    } finally {
      vi.useRealTimers();
    }
  });
});

/** An event as another host's (log and metric hosts, a Zabbix problem's host and id, an OpenStack cloud's name). */
function renamed(e: PipelineEvent, host: string): PipelineEvent {
  switch (e.kind) {
    case 'log': {
      // Ceph's checks by code: the code the host's own.
      const message = e.doc.message
        .replace(/\(([A-Z0-9_]+)\)$/, `($1_${host.toUpperCase()})`)
        .replace(/Health check cleared: ([A-Z0-9_]+)/, `Health check cleared: $1_${host.toUpperCase()}`);
      return { ...e, doc: { ...e.doc, message, host: { name: `${host}-${e.doc.host.name}` }, service: { name: `${host}-${e.doc.service.name}` } } };
    }
    case 'metric':
      return { ...e, sample: { ...e.sample, host: { name: `${host}-${e.sample.host.name}` } } };
    case 'zabbix-problem':
      return { ...e, host: { name: `${host}-${e.host.name}` }, problem: { ...e.problem, eventid: `${host}-${e.problem.eventid}` } };
    case 'openstack-health':
      return { ...e, cloud: { name: `${host}-${e.cloud.name}` } };
    default:
      return e;
  }
}

type Keyed = { keys: string[]; seen: unknown[]; values: unknown[]; open: number };

/** The KeyedState snapshots in a detector's state data (nested ones too, unless `top`). */
function findKeyed(data: unknown, top = false): Keyed[] {
  const out: Keyed[] = [];
  const walk = (v: unknown, nested: boolean) => {
    if (v === null || typeof v !== 'object') return;
    const o = v as Record<string, unknown>;
    if (Array.isArray(o.keys) && Array.isArray(o.seen) && Array.isArray(o.values) && typeof o.open === 'number') {
      if (!(top && nested)) out.push(o as unknown as Keyed);
      for (const x of o.values as unknown[]) walk(x, true);
      return;
    }
    for (const x of Object.values(o)) walk(x, nested);
  };
  walk(data, false);
  return out;
}

/** Every path to a value in a JSON tree (objects and arrays too, not only leaves). */
function leafPaths(v: unknown, path: (string | number)[] = []): (string | number)[][] {
  const out: (string | number)[][] = path.length > 0 ? [path] : [];
  if (v !== null && typeof v === 'object') for (const [k, x] of Object.entries(v)) out.push(...leafPaths(x, [...path, Array.isArray(v) ? Number(k) : k]));
  return out;
}

function set(root: Record<string, unknown>, path: (string | number)[], value: unknown): void {
  let o = root as Record<string | number, unknown>;
  for (const k of path.slice(0, -1)) o = o[k] as Record<string | number, unknown>;
  o[path[path.length - 1]] = value;
}
