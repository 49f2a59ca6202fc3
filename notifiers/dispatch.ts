// Delivery of alert transitions to the notifiers (notifiers/index.ts): silences, no transition sent twice to one
// notifier, firing alerts sent again to the notifiers that declare re-sending, and nothing lost when a notifier is
// down. A send that fails a few quick attempts goes to the retry topic; a worker in the same process takes it
// from there, with backoff, until the notifier takes it. The retry topic's offsets are committed only after a
// delivery or after the notification was put back, so a crash loses no notification.
import type { Config } from '../core/config.ts';
import { deadLetter, NotificationRetry, type Alert } from '../core/events.ts';
import { GroupConsumer, type InBatch, type TopicProducer } from '../core/kafka.ts';
import { errorText, logger } from '../core/log.ts';
import { componentMetrics, type ComponentMetrics } from '../core/metrics.ts';
import { backoffDelay, sleep } from '../core/retry.ts';
import { alertDocumentId } from '../detectors/detector.ts';
import type { Notifier } from './notifier.ts';

type Silence = Config['notify']['silences'][number];

export function silencedBy(a: Alert, silences: Silence[]): Silence | undefined {
  const t = Date.parse(a['@timestamp']);
  const value: Record<string, string> = { 'rule.id': a.rule.id, 'host.name': a.host.name, 'service.name': a.service.name, severity: a.alert.severity };
  return silences.find(
    (s) =>
      t >= Date.parse(s.starts_at) &&
      t < Date.parse(s.ends_at) &&
      Object.entries(s.matchers).every(([k, want]) => (want.endsWith('*') ? value[k].startsWith(want.slice(0, -1)) : value[k] === want)),
  );
}

/** What a notifier took: a transition, at a severity (an incident paged again at a higher one is news). */
function sentKey(a: Alert): string {
  return `${alertDocumentId(a)}/${a.alert.severity}`;
}

const QUICK_ATTEMPTS = 3;
// A page waits at most a minute after its notifier is back: a pager is not a mailbox.
const RETRY_MAX_DELAY_MS = 60_000;
const SENT_MEMORY = 10_000;

export class NotificationDispatcher {
  private readonly log = logger('notify');
  private readonly metrics = componentMetrics('notify');
  /** Each notifier's deliveries, counted alike whatever the notifier: component `notify-<name>`. */
  private readonly perNotifier = new Map<string, ComponentMetrics>();
  /** Per notifier, the transitions it took (bounded): a replayed batch does not notify twice. */
  private readonly sent = new Map<string, Set<string>>();
  private readonly firing = new Map<string, Alert>();
  private readonly timers: NodeJS.Timeout[] = [];
  private worker?: GroupConsumer;

  constructor(
    private readonly cfg: Config,
    private readonly notifiers: Notifier[],
    private readonly producer: TopicProducer,
    private readonly signal?: AbortSignal,
  ) {}

  async start(): Promise<void> {
    for (const n of this.notifiers) n.start?.();
    for (const n of this.notifiers) {
      if (!n.resend) continue;
      const timer = setInterval(() => {
        const alerts = [...this.firing.values()];
        if (alerts.length > 0) n.send(alerts).catch(() => {});
      }, n.resend.interval_s * 1000);
      timer.unref();
      this.timers.push(timer);
    }
    if (this.notifiers.length === 0) return;
    this.worker = await GroupConsumer.start(this.cfg.kafka, {
      groupId: `${this.cfg.kafka.consumer_group}-notify-retry`,
      topics: [this.cfg.kafka.topics.notify_retry],
      component: 'notify-retry',
      onBatch: (b) => this.retryBatch(b),
      signal: this.signal,
    });
  }

  async stop(): Promise<void> {
    for (const timer of this.timers.splice(0)) clearInterval(timer);
    for (const n of this.notifiers) n.stop?.();
    await this.worker?.stop();
  }

  /** Sends the transitions to every notifier; what a notifier does not take now goes to the retry topic. Returns
   * when every transition is delivered or safely in Kafka. */
  async dispatch(alerts: Alert[]): Promise<void> {
    for (const a of alerts) {
      if (a.alert.status === 'firing') this.firing.set(a.alert.id, a);
      else this.firing.delete(a.alert.id);
    }
    const loud = alerts.filter((a) => {
      const s = silencedBy(a, this.cfg.notify.silences);
      if (s) this.metrics.discarded('silenced');
      return !s;
    });
    for (const n of this.notifiers) {
      const fresh = loud.filter((a) => !this.wasSent(n.name, a));
      if (fresh.length === 0) continue;
      this.metrics.received(fresh.length);
      this.of(n.name).received(fresh.length);
      let lastError = '';
      for (let attempt = 1; attempt <= QUICK_ATTEMPTS; attempt++) {
        try {
          await n.send(fresh);
          this.markSent(n.name, fresh);
          this.metrics.sent(fresh.length);
          this.of(n.name).sent(fresh.length);
          lastError = '';
          break;
        } catch (err) {
          lastError = errorText(err);
          if (attempt < QUICK_ATTEMPTS) await sleep(backoffDelay(attempt, 250, 2000), this.signal);
        }
      }
      if (lastError) await this.postpone(n.name, fresh, 1, lastError);
    }
  }

  private of(notifier: string): ComponentMetrics {
    let m = this.perNotifier.get(notifier);
    if (!m) this.perNotifier.set(notifier, (m = componentMetrics(`notify-${notifier}`)));
    return m;
  }

  private wasSent(notifier: string, a: Alert): boolean {
    return this.sent.get(notifier)?.has(sentKey(a)) ?? false;
  }

  private markSent(notifier: string, alerts: Alert[]): void {
    let set = this.sent.get(notifier);
    if (!set) this.sent.set(notifier, (set = new Set()));
    for (const a of alerts) set.add(sentKey(a));
    if (set.size > SENT_MEMORY) for (const id of [...set].slice(0, set.size - SENT_MEMORY)) set.delete(id);
  }

  private async postpone(notifier: string, alerts: Alert[], attempt: number, lastError: string): Promise<void> {
    const delay = backoffDelay(attempt, 1000, RETRY_MAX_DELAY_MS);
    const retry: NotificationRetry = { notifier, alerts, attempt, not_before: new Date(Date.now() + delay).toISOString(), last_error: lastError };
    await this.producer.send(this.cfg.kafka.topics.notify_retry, [{ key: notifier, value: JSON.stringify(retry) }]);
    this.metrics.error('deliver');
    this.of(notifier).error('deliver');
    this.log.error(`${notifier} did not take ${alerts.length} alert transition(s): ${lastError}; retrying in ${Math.round(delay / 1000)}s (attempt ${attempt})`, {
      hint: `check the ${notifier} endpoint; nothing is lost, the notifications wait in ${this.cfg.kafka.topics.notify_retry}`,
    });
  }

  private async retryBatch(batch: InBatch): Promise<void> {
    for (const m of batch.messages) {
      const parsed = NotificationRetry.safeParse(JSON.parse(m.value ?? 'null'));
      const notifier = parsed.success ? this.notifiers.find((n) => n.name === parsed.data.notifier) : undefined;
      if (!parsed.success || !notifier) {
        const reason = parsed.success ? `no notifier named ${parsed.data.notifier} is configured` : 'not a notification retry';
        await this.producer.send(this.cfg.kafka.topics.dead_letter, [{ key: 'notify-retry', value: JSON.stringify(deadLetter('notify-retry', reason, m.value ?? '')) }]);
        continue;
      }
      const r = parsed.data;
      // Wait for its time, keeping the group membership alive.
      for (let wait = Date.parse(r.not_before) - Date.now(); wait > 0; wait = Date.parse(r.not_before) - Date.now()) {
        await sleep(Math.min(wait, 1000), this.signal);
        await batch.heartbeat();
      }
      const fresh = r.alerts.filter((a) => !this.wasSent(notifier.name, a));
      try {
        if (fresh.length > 0) await notifier.send(fresh);
        this.markSent(notifier.name, fresh);
        this.metrics.sent(fresh.length);
        this.of(notifier.name).sent(fresh.length);
      } catch (err) {
        await this.postpone(notifier.name, fresh, r.attempt + 1, errorText(err));
      }
    }
  }
}
