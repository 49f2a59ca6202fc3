// The registry of notifiers. A new notifier is one file in notifiers/ that exports its factory
// (notifiers/notifier.ts), plus its line here: the configuration's `notify:` section, its environment variables
// and secrets, and the notifiers the processor's dispatcher delivers to are all built from this list.
import type { Config } from '../core/config.ts';
import { logger } from '../core/log.ts';
import { alertmanager } from './alertmanager.ts';
import type { Notifier, NotifierFactory } from './notifier.ts';
import { pagerduty } from './pagerduty.ts';
import { webhooks } from './webhook.ts';

export const NOTIFIERS = [alertmanager, pagerduty, webhooks] as const;

/** Every factory, its config type erased (to loop over the registry). */
export const notifierFactories: readonly NotifierFactory[] = NOTIFIERS;

/** The notifiers' fields of the `notify:` section: each notifier's section schema under its name. */
export type NotifiersShape = { [F in (typeof NOTIFIERS)[number] as F['name']]: F['config'] };

export function notifiersShape(): NotifiersShape {
  return Object.fromEntries(NOTIFIERS.map((f) => [f.name, f.config])) as NotifiersShape;
}

/** The environment variables of the notifiers: variable → path in the configuration. */
export function notifierEnv(): Record<string, string[]> {
  return Object.fromEntries(notifierFactories.flatMap((f) => Object.entries(f.env ?? {}).map(([name, field]) => [name, ['notify', f.name, field]])));
}

/** The secrets of the configured notifiers (`section` is the validated `notify:`). */
export function notifierSecrets(section: Record<string, unknown>): (string | undefined)[] {
  return notifierFactories.flatMap((f) => (section[f.name] === undefined ? [] : (f.secrets?.(section[f.name] as object) ?? [])));
}

/** The notifiers of a validated configuration, in the registry's order. */
export function notifiersFromConfig(cfg: Config): Notifier[] {
  const section = cfg.notify as Record<string, unknown>;
  return notifierFactories.flatMap((f) =>
    section[f.name] === undefined ? [] : f.create(section[f.name] as object, { log: logger(`notify-${f.name}`), renotifyIntervalS: cfg.notify.renotify_interval_s }),
  );
}
