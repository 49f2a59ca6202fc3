// Made-up alert transitions for the incident tests (incidents.test.ts, incidents-snapshot.test.ts): the fields the
// incident rules read, at second `s` of T0.
import type { Alert, Severity } from '../../core/events.ts';

export const T0 = Date.parse('2026-01-01T00:00:00Z');
export const at = (s: number) => new Date(T0 + s * 1000).toISOString();

/** An alert transition at second `s` of T0 (`since`: the second it started), its id from its rule and group. */
export function alert(o: {
  s: number;
  status?: 'firing' | 'resolved';
  since?: number;
  rule?: string;
  host?: string;
  service?: string;
  severity?: Severity;
  group?: Record<string, string>;
  labels?: Record<string, string>;
}): Alert {
  const host = o.host ?? 'compute1';
  const service = o.service ?? 'nova-compute';
  const group = { 'host.name': host, 'service.name': service, ...o.group };
  const rule = o.rule ?? 'amqp-connection-lost';
  const status = o.status ?? 'firing';
  const since = o.since ?? o.s;
  return {
    '@timestamp': at(o.s),
    rule: { id: rule, name: rule },
    alert: {
      id: `${rule}|${JSON.stringify(group)}`,
      status,
      severity: o.severity ?? 'critical',
      started_at: at(since),
      ...(status === 'resolved' ? { ended_at: at(o.s), duration_s: o.s - since } : {}),
      runbook: `runbook of ${rule}`,
      group,
      ...(o.labels ? { labels: o.labels } : {}),
    },
    host: { name: host },
    service: { name: service },
    message: `${service} on ${host}`,
    evidence: { event_ids: [`e-${rule}-${o.s}`] },
  };
}
