// service-silent: a stream that normally speaks and stops, judged by the wall clock (vi's fake clock here).
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { Alert, PipelineEvent } from '../../core/events.ts';
import { createDetector } from '../../detectors/engine.ts';
import { loadRules, type Rule } from '../../detectors/rules.ts';

const SHIPPED = loadRules().find((r) => r.id === 'service-silent')!;
const T0 = Date.parse('2026-12-02T12:00:00Z');

function log(at: number, service = 'nova-compute', host = 'compute1'): PipelineEvent {
  return {
    kind: 'log',
    doc: {
      '@timestamp': new Date(at).toISOString(),
      message: 'periodic task',
      log: { level: 'INFO', logger: 'nova.compute.manager', file: { path: `/var/log/nova/${service}.log` }, offset: 0 },
      host: { name: host },
      service: { name: service },
      event: { id: `e${at}` },
    },
  };
}

/** Feeds one event every `everyS` seconds for `count` events, the clock following. */
function speak(d: ReturnType<typeof createDetector>, count: number, everyS: number, service?: string): Alert[] {
  const out: Alert[] = [];
  for (let i = 0; i < count; i++) {
    vi.setSystemTime(Date.now() + everyS * 1000);
    out.push(...d.on(log(Date.now(), service)));
  }
  return out;
}

describe('service-silent', () => {
  beforeEach(() => {
    vi.useFakeTimers();
    vi.setSystemTime(T0);
  });
  afterEach(() => vi.useRealTimers());

  it('fires when a service that logs every 30 s is silent past max(min_silence_s, 4 × its longest gap), and resolves when it speaks', () => {
    const d = createDetector(SHIPPED);
    expect(speak(d, 60, 30)).toEqual([]);
    vi.setSystemTime(Date.now() + 599_000);
    expect(d.tick!(Date.now())).toEqual([]); // 600 s (min_silence_s) not yet
    vi.setSystemTime(Date.now() + 2_000);
    const [fired, ...more] = d.tick!(Date.now());
    expect(more).toEqual([]);
    expect(fired).toMatchObject({ rule: { id: 'service-silent' }, alert: { status: 'firing', severity: 'warning', group: { 'host.name': 'compute1', 'service.name': 'nova-compute' } } });
    expect(fired.message).toMatch(/nova-compute on compute1 has been silent for 601 s; it normally speaks at least every 30 s/);
    expect(d.tick!(Date.now() + 60_000)).toEqual([]); // once
    vi.setSystemTime(Date.now() + 60_000);
    const [resolved] = d.on(log(Date.now()));
    expect(resolved.alert).toMatchObject({ status: 'resolved', id: fired.alert.id });
  });

  it('scales with the stream: a service with 10-minute gaps is not silent after 15 minutes', () => {
    const d = createDetector(SHIPPED);
    speak(d, 60, 600);
    vi.setSystemTime(Date.now() + 15 * 60_000);
    expect(d.tick!(Date.now())).toEqual([]);
    vi.setSystemTime(Date.now() + 26 * 60_000); // past 4 × 10 min
    expect(d.tick!(Date.now()).map((a) => a.alert.status)).toEqual(['firing']);
  });

  it('does not judge a stream before it has shown min_events events', () => {
    const d = createDetector(SHIPPED);
    speak(d, 10, 30);
    vi.setSystemTime(Date.now() + 3_600_000);
    expect(d.tick!(Date.now())).toEqual([]);
  });

  it('never judges old data (a replay, a backfill): its events are older than max_lag_s at arrival', () => {
    const d = createDetector(SHIPPED);
    const year = 365 * 86_400_000;
    for (let i = 0; i < 100; i++) d.on(log(T0 - year + i * 30_000));
    vi.setSystemTime(Date.now() + 86_400_000);
    expect(d.tick!(Date.now())).toEqual([]);
  });

  it('keeps streams apart: the silent one fires, the one that speaks does not', () => {
    const rule: Rule = { ...SHIPPED, params: { ...SHIPPED.params, min_events: 5, min_silence_s: 60 } };
    const d = createDetector(rule);
    for (let i = 0; i < 10; i++) {
      vi.setSystemTime(Date.now() + 10_000);
      d.on(log(Date.now(), 'nova-compute'));
      d.on(log(Date.now(), 'nova-api'));
    }
    for (let i = 0; i < 12; i++) {
      vi.setSystemTime(Date.now() + 10_000);
      d.on(log(Date.now(), 'nova-api'));
    }
    expect(d.tick!(Date.now()).map((a) => a.service.name)).toEqual(['nova-compute']);
  });
});
