// Bounded detector state, through the engine: what a detector remembers per key is capped per rule (the oldest
// first) and expires by event time, every eviction counted; an open alert is never dropped silently (it goes last,
// resolved with the reason). The AMQP detector used to keep every connection uuid it saw: 1.6M of them took 524 MB.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { setImmediate } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import type { Alert, LogDocument } from '../../core/events.ts';
import { counterValue } from '../../core/metrics.ts';
import { DetectionEngine } from '../../detectors/engine.ts';
import { loadRules, type Rule } from '../../detectors/rules.ts';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

function heapAfterGc(): number {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

const doc = (at: number, logger: string, message: string, service = 'nova-compute'): LogDocument => ({
  '@timestamp': new Date(at).toISOString(),
  message,
  log: { logger, level: 'ERROR', file: { path: `/var/log/nova/${service}.log` }, offset: 0 },
  host: { name: 'compute-1' },
  service: { name: service },
  event: { id: `e${at}` },
});

const uuid = (i: number) => `${i.toString(16).padStart(8, '0')}-0000-4000-8000-${(i * 7919).toString(16).padStart(12, '0').slice(-12)}`;

describe('the AMQP detector with 1.6M distinct connection uuids', () => {
  it('keeps its state at the cap, counts every eviction, and its heap stays small', async () => {
    // The shipped rule under an id of this test's own: its eviction counter starts at 0.
    const [shipped] = loadRules().filter((r) => r.id === 'amqp-connection-lost');
    const rule = { ...shipped, id: 'amqp-1.6m-uuids' };
    const engine = await DetectionEngine.create([rule]);
    const before = heapAfterGc();
    const start = Date.UTC(2022, 1, 4, 9, 37, 50);
    const alerts: Alert[] = [];
    const N = 1_600_000;
    for (let i = 0; i < N; i++) {
      // A turn of the event loop now and then: 1.6 million events in one synchronous block passed a minute on a
      // loaded machine, and vitest ends a run whose worker does not answer for that long ("Timeout calling onTaskUpdate").
      if (i % 100_000 === 0) await setImmediate();
      alerts.push(
        ...engine.on({
          kind: 'log',
          doc: doc(start + i, 'oslo.messaging._drivers.impl_rabbit', `[${uuid(i)}] AMQP server on 10.5.0.5:5672 is unreachable: [Errno 111] ECONNREFUSED. Trying again in 1 seconds.`),
        }),
      );
    }
    const growth = heapAfterGc() - before;
    // 524 MB before; 10,000 entries are a few MB. Generous: other tests' garbage is not ours to count.
    expect(growth).toBeLessThan(64 * 2 ** 20);
    // One outage (one open alert) and the cap's worth of its lost connections.
    expect(engine.stateSizes().get(rule.id)).toBe(10_000 + 1);
    expect(await counterValue('evictions', { rule: rule.id })).toBe(N - 10_000);
    expect(alerts.map((a) => a.alert.status)).toEqual(['firing']);
    // The outage still resolves when a connection reconnects and the service stays up.
    const end = start + N;
    const after = [
      ...engine.on({ kind: 'log', doc: doc(end, 'oslo.messaging._drivers.impl_rabbit', 'Reconnected to AMQP server on 10.5.0.5:5672 via [amqp] client with port 40522.') }),
      ...engine.on({ kind: 'log', doc: doc(end + 10_000, 'nova.compute.manager', 'still working') }),
    ];
    expect(after.map((a) => a.alert.status)).toEqual(['resolved']);
    expect(engine.stateSizes().get(rule.id)).toBe(1); // the reply-path grace of the reconnect
  }, 300_000);
});

describe('open alerts are never evicted silently', () => {
  /** A pattern rule whose every line with a new code is a new group that fires at once. */
  const rule = (max: number, count = 1): Rule => ({
    id: `codes-${max}-${count}`,
    name: 'codes',
    detector: 'pattern',
    severity: 'warning',
    runbook: 'x',
    match_by: ['host.name', 'code'],
    params: { fire: 'failure (?<code>C\\d+)', threshold: { count, window_s: 3600 }, message: 'failure {code}' },
    state: { max_entries: max, idle_s: 86_400 },
  });

  it('past the cap, the oldest open alert resolves with the reason; every alert that fired is resolved or still held', async () => {
    const engine = await DetectionEngine.create([rule(100)]);
    const alerts: Alert[] = [];
    for (let i = 0; i < 1000; i++) alerts.push(...engine.on({ kind: 'log', doc: doc(Date.UTC(2026, 0, 1) + i * 1000, 'nova.compute.manager', `failure C${i}`) }));
    const firing = alerts.filter((a) => a.alert.status === 'firing');
    const resolved = alerts.filter((a) => a.alert.status === 'resolved');
    expect(firing).toHaveLength(1000);
    expect(resolved).toHaveLength(900);
    expect(resolved[0].alert.group).toEqual({ 'host.name': 'compute-1', code: 'C0' });
    expect(resolved.every((a) => /no longer tracked: the rule holds at most 100 groups/.test(a.message))).toBe(true);
    expect(engine.stateSizes().get('codes-100-1')).toBe(100);
    const open = new Set(firing.map((a) => a.alert.id));
    for (const a of resolved) open.delete(a.alert.id);
    expect(open.size).toBe(100);
  });

  it('while quiet state can go, an open alert stays', async () => {
    const engine = await DetectionEngine.create([rule(10, 2)]);
    const t0 = Date.UTC(2026, 0, 1);
    const first = [...engine.on({ kind: 'log', doc: doc(t0, 'nova.compute.manager', 'failure C0') }), ...engine.on({ kind: 'log', doc: doc(t0 + 1, 'nova.compute.manager', 'failure C0') })];
    expect(first.map((a) => a.alert.status)).toEqual(['firing']);
    // 1000 groups seen once each (quiet: below their threshold) push each other out, never the open one.
    const later: Alert[] = [];
    for (let i = 1; i <= 1000; i++) later.push(...engine.on({ kind: 'log', doc: doc(t0 + 1000 + i, 'nova.compute.manager', `failure C${i}`) }));
    expect(later).toEqual([]);
    expect(engine.stateSizes().get('codes-10-2')).toBe(10);
    expect(engine.on({ kind: 'log', doc: doc(t0 + 5000, 'nova.compute.manager', 'failure C0') })).toEqual([]); // still firing: no new alert
  });

  it('the Ceph checks of log lines are bounded the same way', async () => {
    const [ceph] = loadRules().filter((r) => r.id === 'ceph-health');
    const engine = await DetectionEngine.create([{ ...ceph, state: { max_entries: 50, idle_s: 86_400 } }]);
    const alerts: Alert[] = [];
    for (let i = 0; i < 200; i++) {
      const line = doc(Date.UTC(2026, 0, 1) + i, 'ceph', `mon.a (mon.0) ${i} : cluster [WRN] Health check failed: check ${i} (CODE_${i})`, 'ceph');
      alerts.push(...engine.on({ kind: 'log', doc: line }));
    }
    expect(alerts.filter((a) => a.alert.status === 'firing')).toHaveLength(200);
    expect(alerts.filter((a) => a.alert.status === 'resolved' && a.message.includes('no longer tracked'))).toHaveLength(150);
    expect(engine.stateSizes().get('ceph-health')).toBe(50);
  });

  it("a rule's state limits are validated with the rule: errors name the file and the field", () => {
    const dir = mkdtempSync(join(tmpdir(), 'stackwatch-rules-'));
    try {
      writeFileSync(join(dir, 'r.yaml'), 'id: r\nname: r\ndetector: pattern\nseverity: warning\nrunbook: x\nstate: { max_entries: 0 }\nparams: { fire: x, message: m }\n');
      expect(() => loadRules(dir)).toThrow(`${join(dir, 'r.yaml')}: state.max_entries:`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('idle state expires by event time', () => {
  it('a group not seen for idle_s goes, counted as idle', async () => {
    const r: Rule = {
      id: 'idle-groups',
      name: 'idle',
      detector: 'pattern',
      severity: 'warning',
      runbook: 'x',
      match_by: ['host.name', 'code'],
      params: { fire: 'failure (?<code>C\\d+)', threshold: { count: 3, window_s: 60 }, message: 'm' },
      state: { max_entries: 1000, idle_s: 60 },
    };
    const engine = await DetectionEngine.create([r]);
    const before = await counterValue('evictions', { rule: 'idle-groups', reason: 'idle' });
    const t0 = Date.UTC(2026, 0, 1);
    for (let i = 0; i < 10; i++) engine.on({ kind: 'log', doc: doc(t0 + i, 'nova.compute.manager', `failure C${i}`) });
    expect(engine.stateSizes().get('idle-groups')).toBe(10);
    engine.on({ kind: 'log', doc: doc(t0 + 120_000, 'nova.compute.manager', 'failure C99') });
    expect(engine.stateSizes().get('idle-groups')).toBe(1);
    expect((await counterValue('evictions', { rule: 'idle-groups', reason: 'idle' })) - before).toBe(10);
  });
});
