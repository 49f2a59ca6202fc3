// PagerDuty Events API v2: a trigger per firing transition, a resolve per resolved one, deduplicated by the
// alert's stable id — for a page, the incident's id (incidents/correlator.ts): one PagerDuty incident per cause, and
// a replay or a retry never opens a second one.
import { z } from 'zod';
import type { Alert } from '../core/events.ts';
import { filePath, httpUrl, secretOf } from '../core/config-fields.ts';
import { defineNotifier, postJson, type Notifier } from './notifier.ts';

export const PAGERDUTY_EVENTS_URL = 'https://events.pagerduty.com/v2/enqueue';

export const PagerDutyConfig = z
  .strictObject({
    routing_key: z.string().min(1, { error: 'expected the integration key of a PagerDuty Events API v2 service' }).optional(),
    routing_key_file: filePath.optional(),
    url: httpUrl.default(PAGERDUTY_EVENTS_URL),
  })
  .transform((v, ctx) => {
    const routingKey = secretOf(ctx, 'routing_key', v.routing_key, v.routing_key_file);
    if (routingKey === undefined) {
      if (v.routing_key === undefined && v.routing_key_file === undefined) ctx.addIssue({ code: 'custom', message: 'required (or routing_key_file)', path: ['routing_key'], input: v });
      return z.NEVER;
    }
    return { ...v, routing_key: routingKey };
  });
export type PagerDutyConfig = z.output<typeof PagerDutyConfig>;

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
      custom_details: { runbook: a.alert.runbook, group: a.alert.group, evidence_event_ids: a.evidence.event_ids, ...(a.incident ? { incident: a.incident } : {}) },
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

export const pagerduty = defineNotifier({
  name: 'pagerduty',
  config: PagerDutyConfig.optional(),
  env: { STACKWATCH_PAGERDUTY_ROUTING_KEY: 'routing_key', STACKWATCH_PAGERDUTY_ROUTING_KEY_FILE: 'routing_key_file' },
  example: (url) => ({ routing_key: '0123456789abcdef0123456789abcdef', url }),
  secrets: (config) => [config.routing_key],
  create: (config) => [new PagerDutyNotifier(config.routing_key, config.url)],
});
