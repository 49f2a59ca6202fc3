// KeyedState (detectors/state.ts), what every detector remembers per key: it expires by event time and is capped,
// the least recently touched first, counted; an entry with an open alert never expires and goes last. The detectors
// held to it are tested in detector-bounds.test.ts.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { counterValue } from '../../core/metrics.ts';
import { KeyedState } from '../../detectors/state.ts';

describe('KeyedState', () => {
  type Op = { key: number; open: boolean; dt: number };
  const ops = fc.array(fc.record({ key: fc.integer({ min: 0, max: 60 }), open: fc.boolean(), dt: fc.integer({ min: 0, max: 40_000 }) }), { maxLength: 300 });

  it('stays within its cap and its idle time, drops the least recently touched quiet entry first, open ones last, and counts every drop', async () => {
    let n = 0;
    await fc.assert(
      fc.asyncProperty(ops, fc.integer({ min: 1, max: 12 }), async (list: Op[], max) => {
        const rule = `prop-${n++}`;
        const idleS = 60;
        const s = new KeyedState<{ open: boolean }>(rule, { max_entries: max, idle_s: idleS }, (v) => v.open);
        const touched: string[] = []; // keys, least recently touched first
        const seen = new Map<string, number>();
        let now = 0;
        let dropped = 0;
        for (const op of list) {
          now += op.dt;
          const key = String(op.key);
          const evicted = s.set(key, { open: op.open }, now);
          dropped += evicted.length;
          if (touched.includes(key)) touched.splice(touched.indexOf(key), 1);
          touched.push(key);
          seen.set(key, now);
          const order = [...touched];
          expect(s.get(key)).toEqual({ open: op.open });
          expect(s.size).toBeLessThanOrEqual(max);
          for (const e of evicted) {
            expect(e.key).not.toBe(key);
            expect(s.has(e.key)).toBe(false);
            if (e.reason === 'idle') expect(e.value.open).toBe(false);
            touched.splice(touched.indexOf(e.key), 1);
          }
          const quietLeft = [...s.entries()].filter(([k, v]) => !v.open && k !== key).map(([k]) => k);
          // No quiet entry is idle for longer than idle_s of event time.
          for (const k of quietLeft) expect(seen.get(k)!).toBeGreaterThanOrEqual(now - idleS * 1000);
          // An open entry went over the cap only when no quiet entry but the one just stored was left.
          if (evicted.some((e) => e.reason === 'cap' && e.value.open)) expect(quietLeft).toEqual([]);
          // A quiet entry dropped over the cap was touched before every quiet entry that stays.
          for (const e of evicted.filter((x) => x.reason === 'cap' && !x.value.open)) {
            for (const k of quietLeft) expect(order.indexOf(e.key)).toBeLessThan(order.indexOf(k));
          }
        }
        expect(await counterValue('evictions', { rule })).toBe(dropped);
      }),
      { numRuns: 200 },
    );
  });

  it('expires by the time of the event being handled, not by the newest ever seen: one line dated 9999 does not wipe the state for good', () => {
    const s = new KeyedState<number>('far-future', { max_entries: 100, idle_s: 60 });
    s.set('a', 1, Date.UTC(2026, 0, 1));
    expect(s.set('far', 2, Date.UTC(9999, 0, 1)).map((e) => e.key)).toEqual(['a']);
    s.set('b', 3, Date.UTC(2026, 0, 1, 0, 1));
    expect(s.set('c', 4, Date.UTC(2026, 0, 1, 0, 2)).map((e) => e.key)).toEqual([]);
    expect([...s.entries()].map(([k]) => k)).toEqual(['far', 'b', 'c']);
  });
});
