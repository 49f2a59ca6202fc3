// Two processors' detector state made one (state/merge.ts), as a processor adopting a departed one's checkpoint does
// (processors/checkpoint.ts). The property, on the bundled 2022 sosreport with every shipped rule: its four files
// split over two "partitions" (two engines, each reading its files; the clock turning in both), cut anywhere; then
// either both engines go on with their own files, or one engine restored from the merge of both snapshots goes on
// with all of them. The two give the same transitions. (The sosreport's groups are each one service's: each lies in
// one partition, as a host's file does in the logs topic.) And the merge itself: keyed entries by key, the later
// seen kept, open ones filed last; maps of sets joined; clocks the later; a shape it does not know kept as ours.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setImmediate } from 'node:timers/promises';
import { gunzipSync } from 'node:zlib';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { EventAssembler } from '../../collectors/logs/assemble.ts';
import { toRawEvent } from '../../collectors/openstack-logs.ts';
import type { Alert, PipelineEvent } from '../../core/events.ts';
import { DetectionEngine } from '../../detectors/engine.ts';
import { loadRules } from '../../detectors/rules.ts';
import { decodeMessage } from '../../processors/decode.ts';
import { mergeData, mergeIncidents, mergeRules } from '../../state/merge.ts';

const SAMPLES = new URL('../../samples/hotsos-2022/', import.meta.url).pathname;
const RULES = loadRules();

interface Op {
  at: number;
  /** The partition of its file (0 or 1); absent: the clock's turn. */
  partition?: number;
  event?: PipelineEvent;
}

/** The sosreport's events in time order, each with its file's partition (files alternate), and the clock's turn
 * once a minute of event time and a day after the last event. */
const hotsos: Op[] = (() => {
  const files = readdirSync(SAMPLES).sort();
  const events: { e: PipelineEvent; p: number; i: number; t: number }[] = [];
  files.forEach((f, p) => {
    const data = readFileSync(join(SAMPLES, f));
    const text = (f.endsWith('.gz') ? gunzipSync(data) : data).toString('utf8');
    const path = `/var/log/x/${f.replace(/\.log.*$/, '.log')}`;
    const assembler = new EventAssembler({ maxEventBytes: 1 << 20 }, (a) => {
      const raw = toRawEvent(a, 'compute4', path, `test:${path}`, '2000-01-01T00:00:00.000Z');
      const e = decodeMessage('logs', raw, { timezone: 'UTC', source: { topic: 'logs', partition: p % 2, offset: String(a.offset) } }).event;
      if (e && e.kind === 'log') events.push({ e, p: p % 2, i: events.length, t: Date.parse(e.doc['@timestamp']) });
    });
    let offset = 0;
    for (const line of text.split('\n')) {
      if (line !== '') assembler.push(offset, line);
      offset += Buffer.byteLength(line) + 1;
    }
    assembler.flush();
  });
  events.sort((a, b) => a.t - b.t || a.i - b.i);
  const out: Op[] = [];
  let ticked = -Infinity;
  for (const { e, p, t } of events) {
    if (t - ticked >= 60_000) out.push({ at: (ticked = t) });
    out.push({ at: t, partition: p, event: e });
  }
  out.push({ at: events[events.length - 1].t + 86_400_000 });
  return out;
})();

/** An op in `engine` (events of `partition` only, when given; the clock's turn always): its transitions. */
function apply(engine: DetectionEngine, op: Op, partition?: number): Alert[] {
  vi.setSystemTime(op.at);
  if (!op.event) return structuredClone(engine.tick(op.at));
  if (partition !== undefined && op.partition !== partition) return [];
  return structuredClone(engine.on(op.event));
}

/** The transitions of `each` op, in order. The worker's loop gets a turn every 500 ops: vitest ends the run when its
 * worker does not answer for a minute, and a run of the property takes a quarter of a second on a quiet machine. */
async function eachOp(ops: readonly Op[], each: (op: Op) => Alert[]): Promise<Alert[]> {
  const out: Alert[] = [];
  for (let i = 0; i < ops.length; i++) {
    if (i % 500 === 499) await setImmediate();
    out.push(...each(ops[i]));
  }
  return out;
}

const asJson = <T>(x: T): T => JSON.parse(JSON.stringify(x)) as T;
const key = (a: Alert) => JSON.stringify([a.alert.id, a.alert.status, a['@timestamp'], a.alert.started_at, a.message]);

describe('two processors’ detector state made one', () => {
  beforeAll(() => {
    vi.useFakeTimers({ toFake: ['Date'] });
  });
  afterAll(() => vi.useRealTimers());

  it('the 2022 sosreport over two partitions, cut anywhere: the merged state goes on as the two would have (fast-check)', async () => {
    expect(new Set(hotsos.map((o) => o.partition)).size, 'both partitions and the clock').toBe(3);
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: hotsos.length - 1 }), async (k) => {
        const [a, b] = [await DetectionEngine.create(RULES), await DetectionEngine.create(RULES)];
        await eachOp(hotsos.slice(0, k), (op) => [...apply(a, op, 0), ...apply(b, op, 1)]);
        const [sa, sb] = [asJson(a.snapshot()), asJson(b.snapshot())];
        // Both go on, each with its own partition.
        const [a2, b2] = [await DetectionEngine.create(RULES), await DetectionEngine.create(RULES)];
        expect(a2.restore(sa).discarded).toEqual([]);
        expect(b2.restore(sb).discarded).toEqual([]);
        const apart = await eachOp(hotsos.slice(k), (op) => [...apply(a2, op, 0), ...apply(b2, op, 1)]);
        // One goes on with both, from the merge (b adopting a, as the survivor does).
        const merged = await DetectionEngine.create(RULES);
        expect(merged.restore(mergeRules(sb, sa)).discarded).toEqual([]);
        const together = await eachOp(hotsos.slice(k), (op) => apply(merged, op));
        expect(together.map(key).sort()).toEqual(apart.map(key).sort());
        return true;
      }),
      { numRuns: 6, seed: 15 },
    );
  });

  it('a cut while an outage is open in one partition: the merged engine resolves it as its own processor would have', async () => {
    // The first firing transition of the whole run, and a cut just after it.
    const whole = await DetectionEngine.create(RULES);
    const k = hotsos.findIndex((op) => apply(whole, op).some((x) => x.alert.status === 'firing')) + 1;
    expect(k).toBeGreaterThan(0);
    const [a, b] = [await DetectionEngine.create(RULES), await DetectionEngine.create(RULES)];
    const before = hotsos.slice(0, k).flatMap((op) => [...apply(a, op, 0), ...apply(b, op, 1)]);
    const open = before.filter((x) => x.alert.status === 'firing');
    expect(open.length).toBeGreaterThan(0);
    // The departed processor is the one whose partition the outage is in; the survivor adopts its state.
    const [departed, survivor] = hotsos[k - 1].partition === 0 ? [a, b] : [b, a];
    const merged = await DetectionEngine.create(RULES);
    merged.restore(mergeRules(asJson(survivor.snapshot()), asJson(departed.snapshot())));
    const after = hotsos.slice(k).flatMap((op) => apply(merged, op));
    for (const f of open)
      expect(
        after.some((x) => x.alert.id === f.alert.id && x.alert.status === 'resolved' && x.alert.started_at === f.alert.started_at),
        f.message,
      ).toBe(true);
  });

  it('the merge by shape: keyed entries by key (the later seen kept, open ones last), maps of sets joined, clocks the later, other shapes ours', () => {
    const ours = {
      groups: { keys: ['x', 'y', 'z'], seen: [10, 20, 30], values: ['x1', 'y1', 'z1'], open: 1 },
      firingAt: [['k', ['a']]],
      settling: ['s1'],
      clock: 100,
      miner: { version: 1, templates: [{ group: 'g', tokens: ['a'] }] },
      other: { some: 'shape' },
    };
    // The miner of theirs holds ours' template and one more: the union.
    const bothMiners = {
      version: 1,
      templates: [
        { group: 'g', tokens: ['a'] },
        { group: 'g', tokens: ['b'] },
      ],
    };
    const theirs = {
      groups: { keys: ['w', 'y', 'z'], seen: [5, 25, 1], values: ['w2', 'y2', 'z2'], open: 2 },
      firingAt: [
        ['k', ['b']],
        ['m', ['c']],
      ],
      settling: ['s1', 's2'],
      clock: 200,
      miner: bothMiners,
      other: { another: 'one' },
    };
    expect(mergeData(ours, theirs)).toEqual({
      // w (quiet, 5) and x (quiet, 10), then the open ones: z (ours, seen 30 > 1) and y (theirs, 25 > 20; open there).
      groups: { keys: ['w', 'x', 'y', 'z'], seen: [5, 10, 25, 30], values: ['w2', 'x1', 'y2', 'z1'], open: 2 },
      firingAt: [
        ['k', ['a', 'b']],
        ['m', ['c']],
      ],
      settling: ['s1', 's2'],
      clock: 200,
      miner: bothMiners,
      other: { some: 'shape' },
    });
    // Rules: one only they hold is taken; one of another detector or version stays ours.
    expect(
      mergeRules(
        { r1: { detector: 'd', v: 1, data: { clock: 1 } }, r2: { detector: 'd', v: 1, data: { clock: 1 } } },
        { r1: { detector: 'd', v: 2, data: { clock: 9 } }, r2: { detector: 'd', v: 1, data: { clock: 9 } }, r3: { detector: 'e', v: 1, data: {} } },
      ),
    ).toEqual({ r1: { detector: 'd', v: 1, data: { clock: 1 } }, r2: { detector: 'd', v: 1, data: { clock: 9 } }, r3: { detector: 'e', v: 1, data: {} } });
    // Incidents: both sets, one both hold as ours; another version is refused.
    expect(mergeIncidents({ v: 1, data: { open: 1, incidents: [{ id: 'i1', n: 'ours' }] } }, { v: 1, data: { open: 2, incidents: [{ id: 'i1', n: 'theirs' }, { id: 'i2' }] } })).toEqual({
      v: 1,
      data: { open: 2, incidents: [{ id: 'i1', n: 'ours' }, { id: 'i2' }] },
    });
    expect(mergeIncidents({ v: 1, data: { open: 0, incidents: [] } }, { v: 2, data: { open: 0, incidents: [] } })).toBeUndefined();
  });
});
