// The one contract of a notifier. A notifier is a name (its key under `notify:`), a config schema next to its
// code, and a factory `create(config, context)` that makes the notifiers of a configured section (a list section,
// like webhooks, makes one per entry). A notifier delivers alert transitions or throws: the dispatcher
// (notifiers/dispatch.ts) does everything else alike for every notifier — silences, no transition sent twice,
// quick retries then the retry topic, the metrics — and re-sends firing alerts to a notifier that declares it.
// The registry (notifiers/index.ts) lists the factories; the `notify:` section of the configuration is built
// from it.
import type { z } from 'zod';
import type { Alert } from '../core/events.ts';
import type { Logger } from '../core/log.ts';

export interface Notifier {
  /** Unique among the configured notifiers: what was sent, and the retry topic's messages, are kept by it. */
  readonly name: string;
  /** Delivers the transitions, or throws (the dispatcher retries, then parks them in the retry topic). */
  send(alerts: Alert[]): Promise<void>;
  start?(): void;
  stop?(): void;
  /** Re-sending, declared: the dispatcher sends every alert firing now (silenced or not) to this notifier again
   * this often. For a receiver that keeps no state, like a chat room; absent for one that keeps it itself. */
  readonly resend?: { readonly interval_s: number };
}

/** What a notifier is made with besides its section of the configuration. It counts nothing itself: the
 * dispatcher counts every notifier's deliveries alike (component `notify-<name>`). */
export interface NotifierContext {
  log: Logger;
  /** notify.renotify_interval_s: how often a notifier that re-sends sends the firing alerts again. */
  renotifyIntervalS: number;
}

export interface NotifierFactory<N extends string = string, S extends z.ZodType = z.ZodType> {
  /** The key under `notify:` in the configuration: alertmanager, pagerduty, webhooks. */
  readonly name: N;
  /** The section's schema, optional or with a default: a notifier left out of the configuration is off. */
  readonly config: S;
  /** Environment variables that override a field of the section: STACKWATCH_ALERTMANAGER_URL → url. */
  readonly env?: Readonly<Record<string, string>>;
  /** The smallest section that delivers to `url` (an HTTP endpoint): what the compliance test
   * (test/unit/compliance-notifiers.test.ts) runs every notifier with. */
  example(url: string): z.input<S>;
  /** The secrets of a validated section, masked in every log line from then on. */
  secrets?(config: NonNullable<z.output<S>>): (string | undefined)[];
  /** The notifiers of a configured section (none for an empty list). */
  create(config: NonNullable<z.output<S>>, ctx: NotifierContext): Notifier[];
}

/** A factory, with its name kept as a literal type (the configuration's type is built from the names). */
export function defineNotifier<const N extends string, S extends z.ZodType>(factory: NotifierFactory<N, S>): NotifierFactory<N, S> {
  return factory;
}

/** POSTs JSON; anything but a 2xx answer is an error with the status and the start of the body. */
export async function postJson(url: string, body: unknown, headers: Record<string, string> = {}): Promise<void> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
  if (!res.ok) throw new Error(`HTTP ${res.status} from ${url}: ${(await res.text()).slice(0, 200)}`);
}
