// Sends alert transitions to Alertmanager's v2 API. Firing alerts are posted again every resend interval
// (like Prometheus does), because Alertmanager resolves an alert it has not heard of for resolve_timeout. It
// re-sends by itself rather than through the dispatcher's declared re-sending: what it posts again is what it
// holds as Alertmanager knows it (labels, a relabelled alert's old label set ended), not the alerts as they fired.
import { z } from 'zod';
import type { Alert } from '../core/events.ts';
import { durationS, httpUrl } from '../core/config-fields.ts';
import { defineNotifier, postJson, type Notifier } from './notifier.ts';

export const AlertmanagerConfig = z.strictObject({
  url: httpUrl,
  /** Firing alerts are posted again this often so Alertmanager does not time them out (its resolve_timeout is 5m). */
  resend_interval_s: durationS.default(60),
});
export type AlertmanagerConfig = z.output<typeof AlertmanagerConfig>;

export interface AlertmanagerPayload {
  labels: Record<string, string>;
  annotations: Record<string, string>;
  startsAt: string;
  endsAt?: string;
}

export function toAlertmanager(a: Alert): AlertmanagerPayload {
  return {
    labels: {
      alertname: a.rule.id,
      alert_id: a.alert.id,
      severity: a.alert.severity,
      host: a.host.name,
      service: a.service.name,
      // The rest of the alert's group (a Ceph check's code, a Zabbix event id), for routing and silences.
      ...Object.fromEntries(
        Object.entries(a.alert.group)
          .filter(([k]) => k !== 'host.name' && k !== 'service.name')
          .map(([k, v]) => [k.replace(/[^A-Za-z0-9_]/g, '_'), v]),
      ),
    },
    annotations: {
      summary: a.message,
      runbook: a.alert.runbook,
      rule_name: a.rule.name,
      // An incident's cause and reach (annotations, not labels: they grow as alerts join, and Alertmanager knows an
      // alert by its labels).
      ...(a.incident?.cause ? { incident_cause: a.incident.cause } : {}),
      ...(a.incident?.services ? { incident_services: a.incident.services.join(', ') } : {}),
      ...(a.incident?.hosts ? { incident_hosts: a.incident.hosts.join(', ') } : {}),
      ...(a.incident?.alert_ids ? { incident_alerts: String(a.incident.alert_ids.length) } : {}),
    },
    startsAt: a.alert.started_at,
    ...(a.alert.status === 'resolved' ? { endsAt: a.alert.ended_at ?? a['@timestamp'] } : {}),
  };
}

export class AlertmanagerNotifier implements Notifier {
  readonly name = 'alertmanager';
  private readonly firing = new Map<string, AlertmanagerPayload>();
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly url: string,
    private readonly resendIntervalS = 60,
  ) {}

  start(): void {
    this.timer = setInterval(() => {
      if (this.firing.size > 0) this.post([...this.firing.values()]).catch(() => {});
    }, this.resendIntervalS * 1000);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  async send(alerts: Alert[]): Promise<void> {
    const payloads = alerts.flatMap((a) => {
      const p = toAlertmanager(a);
      const before = this.firing.get(a.alert.id);
      if (a.alert.status === 'firing') this.firing.set(a.alert.id, p);
      else this.firing.delete(a.alert.id);
      // Alertmanager knows an alert by its labels: when the severity changed, the old label set ends now.
      const relabelled = before && a.alert.status === 'firing' && before.labels.severity !== p.labels.severity;
      return relabelled ? [{ ...before, endsAt: a['@timestamp'] }, p] : [p];
    });
    await this.post(payloads);
  }

  private post(payloads: AlertmanagerPayload[]): Promise<void> {
    return postJson(new URL('/api/v2/alerts', this.url).href, payloads);
  }
}

export const alertmanager = defineNotifier({
  name: 'alertmanager',
  config: AlertmanagerConfig.optional(),
  env: { STACKWATCH_ALERTMANAGER_URL: 'url' },
  example: (url) => ({ url }),
  create: (config) => [new AlertmanagerNotifier(config.url, config.resend_interval_s)],
});
