// Silences (maintenance windows) and the mapping of alerts to what each notifier takes.
import { describe, expect, it } from 'vitest';
import { validateConfig } from '../../core/config.ts';
import type { Alert } from '../../core/events.ts';
import { silencedBy } from '../../notifiers/dispatch.ts';
import { toAlertmanager } from '../../notifiers/alertmanager.ts';
import { toPagerDuty } from '../../notifiers/pagerduty.ts';

const base = { kafka: { brokers: ['k:9092'] }, elasticsearch: { url: 'http://e:9200' } };
const alert = (over: Partial<Alert['alert']> = {}, at = '2026-12-01T23:00:00.000Z'): Alert => ({
  '@timestamp': at,
  rule: { id: 'amqp-connection-lost', name: 'AMQP connection lost' },
  alert: { id: 'abc', status: 'firing', severity: 'page', started_at: at, runbook: 'r', group: {}, ...over },
  host: { name: 'compute-07' },
  service: { name: 'nova-compute' },
  message: 'm',
  evidence: { event_ids: [] },
});

describe('silences', () => {
  const cfg = validateConfig(
    {
      ...base,
      notify: {
        silences: [
          { matchers: { 'host.name': 'compute-0*', 'rule.id': 'amqp-connection-lost' }, starts_at: '2026-12-01T22:00:00Z', ends_at: '2026-12-02T02:00:00Z', comment: 'RabbitMQ upgrade' },
        ],
      },
    },
    'f.yaml',
    {},
  );

  it('silences matching alerts inside the window only', () => {
    expect(silencedBy(alert(), cfg.notify.silences)?.comment).toBe('RabbitMQ upgrade');
    expect(silencedBy(alert({}, '2026-12-02T03:00:00.000Z'), cfg.notify.silences)).toBeUndefined();
    expect(silencedBy({ ...alert(), host: { name: 'compute-17' } }, cfg.notify.silences)).toBeUndefined();
  });

  it('rejects a silence with an unknown matcher or a bad time, naming the field', () => {
    expect(() => validateConfig({ ...base, notify: { silences: [{ matchers: { pod: 'x' }, starts_at: '2026-12-01T22:00:00Z', ends_at: '2026-12-02T02:00:00Z' }] } }, 'f.yaml', {})).toThrow(
      /^f\.yaml: notify\.silences\[0\]\.matchers\.pod: /,
    );
    expect(() => validateConfig({ ...base, notify: { silences: [{ matchers: { 'host.name': 'x' }, starts_at: 'tonight', ends_at: '2026-12-02T02:00:00Z' }] } }, 'f.yaml', {})).toThrow(
      'f.yaml: notify.silences[0].starts_at: expected an ISO 8601 time like 2026-11-25T22:00:00Z',
    );
  });
});

describe('notifier payloads', () => {
  it('maps severities to PagerDuty and resolves by the same dedup key', () => {
    expect(toPagerDuty(alert(), 'k')).toMatchObject({ event_action: 'trigger', dedup_key: 'abc', payload: { severity: 'critical', source: 'compute-07' } });
    expect(toPagerDuty(alert({ severity: 'warning' }), 'k').payload!.severity).toBe('warning');
    expect(toPagerDuty(alert({ status: 'resolved' }), 'k')).toEqual({ routing_key: 'k', event_action: 'resolve', dedup_key: 'abc' });
  });

  it('gives Alertmanager an end time only for a resolved alert', () => {
    expect(toAlertmanager(alert()).endsAt).toBeUndefined();
    expect(toAlertmanager(alert({ status: 'resolved', ended_at: '2026-12-01T23:30:00.000Z' })).endsAt).toBe('2026-12-01T23:30:00.000Z');
    expect(toAlertmanager(alert()).labels).toEqual({ alertname: 'amqp-connection-lost', alert_id: 'abc', severity: 'page', host: 'compute-07', service: 'nova-compute' });
  });
});
