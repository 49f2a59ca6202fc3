// Lines built to be hostile to the shipped rules (test/fixtures/hostile/rules/*.json, one case a file): a real
// line's head, a unit repeated to the size asked for (repeated prefixes, long runs, near misses), a tail. Shared by
// the `detect` benchmark and test/unit/hostile-rules.test.ts, which hold them to linear time.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Alert } from '../core/events.ts';
import type { DetectionEngine } from '../detectors/engine.ts';
import { parseLogEvent } from '../processors/parse-log.ts';

export const HOSTILE_RULES_DIR = new URL('../test/fixtures/hostile/rules/', import.meta.url).pathname;

export interface HostileCase {
  name: string;
  about: string;
  /** The shipped rule the line is built against. */
  rule: string;
  /** `log` (default): a log line of `path`; `zabbix-problem`: a Zabbix problem's name; `openstack-health`: what
   * `field` names of an OpenStack API poll — a console probe's error, or the host of a new nova-compute row. */
  kind?: 'log' | 'zabbix-problem' | 'openstack-health';
  field?: 'probe-error' | 'service-host';
  path?: string;
  head: string;
  unit: string;
  tail: string;
  /** The alert group the line must fire, when it is a match. */
  fires?: Record<string, string>;
}

export function hostileCases(): HostileCase[] {
  return readdirSync(HOSTILE_RULES_DIR)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => ({ name: f.replace(/\.json$/, ''), ...(JSON.parse(readFileSync(join(HOSTILE_RULES_DIR, f), 'utf8')) as Omit<HostileCase, 'name'>) }));
}

/** The case's line, `bytes` long or a unit less (UTF-16 units: the cases are ASCII). */
export function hostileLine(c: HostileCase, bytes: number): string {
  const n = Math.max(1, Math.floor((bytes - c.head.length - c.tail.length) / c.unit.length));
  return c.head + c.unit.repeat(n) + c.tail;
}

/** Parses the case's line as the pipeline does and runs it through the engine: the alerts and the time taken. */
export function runHostile(engine: DetectionEngine, c: HostileCase, bytes: number): { alerts: Alert[]; ms: number; parseMs: number } {
  const line = hostileLine(c, bytes);
  const start = performance.now();
  if (c.kind === 'zabbix-problem') {
    const alerts = engine.on({
      v: 1,
      kind: 'zabbix-problem',
      '@timestamp': '2026-11-25T10:00:00Z',
      host: { name: 'db-1' },
      labels: {},
      problem: { eventid: '1', name: line, severity: 4, status: 'open', started_at: '2026-11-25T10:00:00Z', acknowledged: false },
    });
    return { alerts, ms: performance.now() - start, parseMs: 0 };
  }
  if (c.kind === 'openstack-health') {
    // Two polls: all is well, then the hostile value (a probe that failed with it, or a new compute row named it
    // while the old one went down: what the drift and service-down detectors look at).
    const service = (id: string, host: string, state: 'up' | 'down') => ({ id, binary: 'nova-compute', host, state, status: 'enabled' as const, forced_down: false });
    const poll = (at: string, hostile: boolean) => ({
      v: 1 as const,
      kind: 'openstack-health' as const,
      '@timestamp': at,
      cloud: { name: 'hostile' },
      services: hostile && c.field === 'service-host' ? [service('1', 'compute-1', 'down'), service('2', line, 'up')] : [service('1', 'compute-1', 'up')],
      probes: [
        {
          name: 'console',
          target: 'canary',
          ok: !(hostile && c.field === 'probe-error'),
          started_at: at,
          duration_s: 64,
          ...(hostile && c.field === 'probe-error' ? { error: line, http_status: 500 } : {}),
        },
      ],
    });
    const alerts = [...engine.on(poll('2026-11-25T10:00:00Z', false)), ...engine.on(poll('2026-11-25T10:00:30Z', true)), ...engine.on(poll('2026-11-25T10:01:00Z', true))];
    return { alerts, ms: performance.now() - start, parseMs: 0 };
  }
  const doc = parseLogEvent({ v: 1, host: 'hostile', path: c.path!, file_id: c.name, offset: 0, text: line, read_at: '2026-11-25T10:00:00.000Z' }, { timezone: 'UTC' });
  const parsed = performance.now();
  const alerts = engine.on({ kind: 'log', doc });
  return { alerts, ms: performance.now() - start, parseMs: parsed - start };
}
