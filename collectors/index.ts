// The registry of collectors. A new collector is one file in collectors/ that exports its factory
// (collectors/collector.ts), plus its line here: the configuration's `collectors:` section, its environment
// variables and secrets, and what `stackwatch run` starts are all built from this list.
import type { z } from 'zod';
import type { TopicProducer } from '../core/kafka.ts';
import { ceph } from './ceph.ts';
import { isPolling, type Collector, type CollectorFactory, type TopicKind } from './collector.ts';
import { collectorContext, type Emitter } from './emitter.ts';
import { openstackApi } from './openstack-api.ts';
import { openstackLogs } from './openstack-logs.ts';
import { runScheduled } from './schedule.ts';
import { zabbix } from './zabbix.ts';

export const COLLECTORS = [openstackLogs, zabbix, ceph, openstackApi] as const;

/** Every factory, its config type erased (to loop over the registry). */
export const collectorFactories: readonly CollectorFactory[] = COLLECTORS;

/** The fields of the `collectors:` section: each collector's config, optional, under its name. */
export type CollectorsShape = { [F in (typeof COLLECTORS)[number] as F['name']]: z.ZodOptional<F['config']> };

export function collectorsShape(): CollectorsShape {
  return Object.fromEntries(COLLECTORS.map((f) => [f.name, f.config.optional()])) as CollectorsShape;
}

/** The environment variables of the collectors: variable → path in the configuration. */
export function collectorEnv(): Record<string, string[]> {
  return Object.fromEntries(collectorFactories.flatMap((f) => Object.entries(f.env ?? {}).map(([name, field]) => [name, ['collectors', f.name, field]])));
}

/** The secrets of the configured collectors (`section` is the validated `collectors:`). */
export function collectorSecrets(section: Record<string, unknown>): (string | undefined)[] {
  return collectorFactories.flatMap((f) => (section[f.name] === undefined ? [] : (f.secrets?.(section[f.name]) ?? [])));
}

/** Runs a created collector until the signal aborts: a stream collector runs itself, a poller runs on its schedule. */
export function runCollector(collector: Collector, emitter: Emitter, signal: AbortSignal): Promise<void> {
  return isPolling(collector) ? runScheduled(collector, emitter, signal) : collector.run(signal);
}

/** Creates `factory`'s collector for `config`, sending through `producer` to `topics` (kafka.topics), and runs it
 * until the signal aborts. A collector that cannot be created (an unreadable state file) throws at once. */
export function startCollector<N extends string, S extends z.ZodType>(
  factory: CollectorFactory<N, S>,
  config: z.output<S>,
  producer: Pick<TopicProducer, 'send'>,
  topics: Readonly<Partial<Record<TopicKind, string>>>,
  signal: AbortSignal,
): Promise<void> {
  const ctx = collectorContext(factory.component, producer, topics);
  return runCollector(factory.create(config, ctx), ctx.emitter, signal);
}
