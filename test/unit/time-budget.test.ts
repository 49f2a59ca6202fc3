// The per-event time budget (processors/time-budget.ts): an event whose parsing and detection take longer than the
// budget is counted and dead-lettered by the processor, and reported by `stackwatch detect`. Time comes from a fake
// clock that the injected slow detector advances: no timing luck.
import { describe, expect, it } from 'vitest';
import { DeadLetter, type Alert, type LogEvent, type RawLogEvent } from '../../core/events.ts';
import { componentMetrics, counterValue } from '../../core/metrics.ts';
import type { Detector } from '../../detectors/detector.ts';
import { DetectionEngine } from '../../detectors/engine.ts';
import { parseLogEvent } from '../../processors/parse-log.ts';
import { runVerdicts, type Verdict } from '../../processors/processor.ts';
import { detectTimed, TimeBudget } from '../../processors/time-budget.ts';

/** A clock that moves only when told. */
function fakeClock() {
  let now = 0;
  return { clock: () => now, advance: (ms: number) => void (now += ms) };
}

const raw = (text: string): RawLogEvent => ({ v: 1, host: 'compute-1', path: '/var/log/nova/nova-compute.log', file_id: 'f', offset: 42, text, read_at: '2026-11-25T10:00:00.000Z' });
const LINE = '2022-02-04 09:37:50.159 21562 ERROR nova.compute.manager [-] slow work';

/** A detector that takes `ms` of the fake clock on lines containing "slow", and raises one alert. */
function slowDetector(advance: (ms: number) => void, ms: number): Detector {
  return {
    accepts: { kinds: ['log'] },
    on({ doc }: LogEvent): Alert[] {
      if (!doc.message.includes('slow')) return [];
      advance(ms);
      return [{ rule: { id: 'slow', name: 'slow' } } as Alert];
    },
  };
}

describe("the processor's per-event time budget", () => {
  it('dead-letters and counts an event whose parsing and detection together took longer, and keeps its alerts', async () => {
    const { clock, advance } = fakeClock();
    const budget = new TimeBudget(250, clock);
    const engine = DetectionEngine.of({ slow: slowDetector(advance, 200) });
    const metrics = componentMetrics('processor');
    const before = await counterValue('errors', { component: 'processor', stage: 'time_budget' });
    // As the processor does: decoding (parse) timed, detection run after indexing.
    const verdict = (text: string, parseMs: number): Verdict => {
      const { value: doc, ms } = budget.time(() => (advance(parseMs), parseLogEvent(raw(text), { timezone: 'UTC' })));
      return { detect: () => engine.on({ kind: 'log', doc }), spentMs: ms, payload: () => JSON.stringify(raw(text)), source: { topic: 'logs', partition: 0, offset: '7' } };
    };
    const { alerts, overBudget } = runVerdicts(
      [
        verdict(LINE, 100), // 100 + 200 > 250: over
        verdict(LINE.replace('slow', 'quick'), 100), // 100: within
        verdict(LINE, 10), // 10 + 200: within
        verdict(LINE.replace('slow', 'quick'), 251), // parsing alone over
      ],
      budget,
      metrics,
    );
    expect(alerts).toHaveLength(2);
    expect(overBudget).toHaveLength(2);
    for (const d of overBudget) {
      expect(DeadLetter.safeParse(d).success).toBe(true);
      expect(d).toMatchObject({ component: 'processor', source: { topic: 'logs', partition: 0, offset: '7' } });
    }
    expect(overBudget[0].reason).toMatch(/over the per-event time budget: parsing and detection took 300 ms of CPU, more than processor\.event_time_budget_ms \(250 ms\)/);
    expect(overBudget[1].reason).toMatch(/took 251 ms/);
    expect(JSON.parse(overBudget[0].payload)).toMatchObject({ text: LINE, offset: 42 });
    expect((await counterValue('errors', { component: 'processor', stage: 'time_budget' })) - before).toBe(2);
  });

  it('counts, and does not send back, a message of the dead-letter topic that is over the budget', async () => {
    const { clock, advance } = fakeClock();
    const budget = new TimeBudget(1, clock);
    const counted: string[] = [];
    const { overBudget } = runVerdicts([{ detect: () => (advance(5), []), spentMs: 0 }], budget, { error: (stage) => void counted.push(stage) });
    expect(overBudget).toEqual([]);
    expect(counted).toEqual(['time_budget']);
  });

  it('takes its budget from processor.event_time_budget_ms, 1000 ms unless set', () => {
    expect(new TimeBudget().budgetMs).toBe(1000);
    expect(new TimeBudget(5).over(5)).toBe(false);
    expect(new TimeBudget(5).over(5.001)).toBe(true);
  });
});

describe("stackwatch detect's per-event time budget", () => {
  it('reports an event over the budget with what it took, and still returns its alerts', () => {
    const { clock, advance } = fakeClock();
    const budget = new TimeBudget(250, clock, 'the per-event time budget');
    const engine = DetectionEngine.of({ slow: slowDetector(advance, 300) });
    const slow = detectTimed(engine, raw(LINE), { timezone: 'UTC' }, budget);
    expect(slow.alerts).toHaveLength(1);
    expect(slow.overBudget).toMatch(/took 300 ms of CPU, more than the per-event time budget \(250 ms\)/);
    const quick = detectTimed(engine, raw(LINE.replace('slow', 'quick')), { timezone: 'UTC' }, budget);
    expect(quick).toEqual({ alerts: [] });
  });
});

describe("a run of events timed by the wall clock (the processor's batches)", () => {
  /** A CPU clock and a wall clock that move only when told: `work` moves both, `wait` only the wall clock. */
  function twoClocks() {
    let cpu = 0;
    let wall = 0;
    return { cpu: () => cpu, wall: () => wall, work: (ms: number) => void ((cpu += ms), (wall += ms)), wait: (ms: number) => void (wall += ms) };
  }

  it('gives an event that used the CPU its CPU time, and one that waited for a core next to nothing', () => {
    const c = twoClocks();
    const budget = new TimeBudget(1000, c.cpu, 'processor.event_time_budget_ms', c.wall);
    const run = budget.run();
    const cpu = [
      run.time(() => c.work(0.02)).ms, // an ordinary event
      run.time(() => (c.work(0.03), c.wait(1200))).ms, // preempted for 1.2 s: 0.03 ms of CPU
      run.time(() => c.work(1500)).ms, // a regex that is not linear
      ...Array.from({ length: 1000 }, () => run.time(() => c.work(0.05)).ms),
      run.time(() => (c.work(700), c.wait(600))).ms, // 700 ms of CPU, 1.3 s of wall time
    ];
    expect(budget.over(cpu[1])).toBe(false);
    expect(cpu[1]).toBeCloseTo(0.03, 6);
    expect(budget.over(cpu[2])).toBe(true);
    expect(cpu[2]).toBeGreaterThan(1400);
    expect(cpu[0]).toBeCloseTo(0.02, 6);
    expect(cpu.at(-1)).toBeCloseTo(700, 6); // the 1000 events before it took 50 ms of CPU, and as much wall time
  });

  it('dead-letters in runVerdicts what used the CPU, not what waited', () => {
    const c = twoClocks();
    const budget = new TimeBudget(250, c.cpu, 'processor.event_time_budget_ms', c.wall);
    const verdict = (fn: () => void): Verdict => ({ detect: () => (fn(), []), spentMs: 0, payload: () => 'p', source: { topic: 'logs', partition: 0, offset: '1' } });
    const { overBudget } = runVerdicts([verdict(() => c.wait(400)), verdict(() => c.work(300)), verdict(() => c.work(1))], budget, { error: () => {} });
    expect(overBudget).toHaveLength(1);
    expect(overBudget[0].reason).toMatch(/took 300 ms of CPU/);
  });
});

describe("the budget's own clock", () => {
  it('counts the CPU an event costs, not the wall time the process spent waiting for a core', () => {
    const budget = new TimeBudget(20);
    // Blocked for 120 ms without using the CPU (what a preempted process looks like from inside): within budget.
    const blocked = budget.time(() => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 120));
    expect(blocked.value).toBe('timed-out');
    expect(blocked.ms).toBeLessThan(15);
    expect(budget.over(blocked.ms)).toBe(false);
    // Busy until the process has used 40 ms of CPU (however long a loaded machine takes to give it): over the budget.
    // (Busy for a fixed wall time got 19.6 ms of CPU once, on a machine loaded six-fold.)
    const busy = budget.time(() => {
      const start = process.cpuUsage();
      let spins = 0;
      while (process.cpuUsage(start).user < 40_000) spins++;
      return spins;
    });
    expect(busy.value).toBeGreaterThan(0);
    expect(busy.ms).toBeGreaterThanOrEqual(35);
    expect(budget.over(busy.ms)).toBe(true);
  });
});
