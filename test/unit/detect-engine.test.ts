// The engine's routing: a line no rule cares about reaches no detector, however many rules there are.
import { describe, expect, it } from 'vitest';
import type { LogDocument } from '../../core/events.ts';
import type { Detector } from '../../detectors/detector.ts';
import { DetectionEngine } from '../../detectors/engine.ts';
import type { Rule } from '../../detectors/rules.ts';

const doc = (logger: string, message: string): LogDocument => ({
  '@timestamp': '2022-02-04T09:37:50.159Z',
  message,
  log: { logger, level: 'INFO', file: { path: '/var/log/x.log' }, offset: 0 },
  host: { name: 'h' },
  service: { name: 's' },
  event: { id: 'e' },
});

function patternRule(i: number): Rule {
  return {
    id: `r${i}`,
    name: `rule ${i}`,
    detector: 'pattern',
    severity: 'warning',
    runbook: 'x',
    match_by: ['host.name'],
    params: { loggers: [`nova.compute${i}`], fire: `boom${i}`, message: 'm' },
  };
}

async function engineWith(rules: Rule[]) {
  const engine = await DetectionEngine.create(rules);
  // Count the detectors an event reaches: wrap every detector's on.
  let calls = 0;
  for (const list of (engine as unknown as { byLogger: Map<string, { detector: Detector }[]> }).byLogger.values()) {
    for (const entry of list) {
      const inner = entry.detector.on.bind(entry.detector);
      entry.detector.on = (e) => (calls++, inner(e));
    }
  }
  return { engine, calls: () => calls };
}

describe('detection engine routing', () => {
  it.each([1, 10, 200])('with %i rules, a line of another logger reaches no detector', async (n) => {
    const { engine, calls } = await engineWith(Array.from({ length: n }, (_, i) => patternRule(i)));
    for (let i = 0; i < 1000; i++) engine.on({ kind: 'log', doc: doc('neutron.agent.l3.agent', 'routine work') });
    expect(calls()).toBe(0);
  });

  it("a line of a rule's logger reaches that rule only, and fires it", async () => {
    const { engine, calls } = await engineWith(Array.from({ length: 50 }, (_, i) => patternRule(i)));
    const alerts = engine.on({ kind: 'log', doc: doc('nova.compute7.manager', 'boom7 happened') });
    expect(calls()).toBe(1);
    expect(alerts.map((a) => a.rule.id)).toEqual(['r7']);
  });
});
