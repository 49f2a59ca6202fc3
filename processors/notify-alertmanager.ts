// Sends alert transitions to Alertmanager's v2 API. Firing alerts are posted again every resend interval
// (like Prometheus does), because Alertmanager resolves an alert it has not heard of for resolve_timeout.
import type { Alert } from '../core/events.ts';
import { errorText, logger } from '../core/log.ts';
import { componentMetrics } from '../core/metrics.ts';
import { retry } from '../core/retry.ts';

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
    },
    annotations: { summary: a.message, runbook: a.alert.runbook, rule_name: a.rule.name },
    startsAt: a.alert.started_at,
    ...(a.alert.status === 'resolved' ? { endsAt: a.alert.ended_at ?? a['@timestamp'] } : {}),
  };
}

export class AlertmanagerNotifier {
  private readonly log = logger('notify-alertmanager');
  private readonly metrics = componentMetrics('notify-alertmanager');
  private readonly firing = new Map<string, AlertmanagerPayload>();
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly url: string,
    private readonly resendIntervalS = 60,
    private readonly signal?: AbortSignal,
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

  async notify(alerts: Alert[]): Promise<void> {
    if (alerts.length === 0) return;
    const payloads = alerts.map((a) => {
      const p = toAlertmanager(a);
      if (a.alert.status === 'firing') this.firing.set(a.alert.id, p);
      else this.firing.delete(a.alert.id);
      return p;
    });
    this.metrics.received(payloads.length);
    try {
      await retry(() => this.post(payloads), {
        what: `post ${payloads.length} alert(s) to Alertmanager ${this.url}`,
        log: this.log,
        hint: 'check alertmanager.url (or STACKWATCH_ALERTMANAGER_URL); the alerts are in the alerts index meanwhile',
        maxAttempts: 5,
        signal: this.signal,
      });
      this.metrics.sent(payloads.length);
    } catch (err) {
      this.metrics.error('post', payloads.length);
      this.log.error(`gave up posting alerts to Alertmanager: ${errorText(err)}`, { alerts: payloads.map((p) => p.labels.alert_id) });
    }
  }

  private async post(payloads: AlertmanagerPayload[]): Promise<void> {
    const res = await fetch(new URL('/api/v2/alerts', this.url), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(payloads),
      signal: AbortSignal.timeout(10_000),
    });
    if (!res.ok) throw new Error(`HTTP ${res.status}: ${(await res.text()).slice(0, 200)}`);
  }
}
