// PagerDuty Events API v2: a trigger per firing transition, a resolve per resolved one, deduplicated by the
// alert's stable id (so a replay or a retry never opens a second incident).
import type { Alert } from '../core/events.ts';
import { postJson, type Notifier } from './notify.ts';

export const PAGERDUTY_EVENTS_URL = 'https://events.pagerduty.com/v2/enqueue';

/** stackwatch severities → PagerDuty's four. */
const SEVERITY: Record<Alert['alert']['severity'], 'critical' | 'error' | 'warning' | 'info'> = {
  page: 'critical',
  critical: 'error',
  warning: 'warning',
  info: 'info',
};

export function toPagerDuty(a: Alert, routingKey: string) {
  if (a.alert.status === 'resolved') return { routing_key: routingKey, event_action: 'resolve' as const, dedup_key: a.alert.id };
  return {
    routing_key: routingKey,
    event_action: 'trigger' as const,
    dedup_key: a.alert.id,
    payload: {
      summary: a.message.slice(0, 1024),
      source: a.host.name,
      severity: SEVERITY[a.alert.severity],
      timestamp: a.alert.started_at,
      component: a.service.name,
      group: a.rule.id,
      class: a.rule.name,
      custom_details: { runbook: a.alert.runbook, group: a.alert.group, evidence_event_ids: a.evidence.event_ids },
    },
  };
}

export class PagerDutyNotifier implements Notifier {
  readonly name = 'pagerduty';

  constructor(
    private readonly routingKey: string,
    private readonly url = PAGERDUTY_EVENTS_URL,
  ) {}

  async send(alerts: Alert[]): Promise<void> {
    // The Events API takes one event per request.
    for (const a of alerts) await postJson(this.url, toPagerDuty(a, this.routingKey));
  }
}
