// The one contract of a collector. A collector is a name (its key under `collectors:`), a config schema next to
// its code, and a factory `create(config, context)`; the context hands it the emitter (the one way into Kafka:
// batches, retries, dead letters, and the checkpoint only after the acknowledgement), its state, a logger and the metrics,
// all named after the component. A collector either streams (tails files, runs until the signal aborts) or polls
// on a schedule: a poller returns what it read and the scheduler (collectors/schedule.ts) emits it. The registry
// (collectors/index.ts) lists the factories; `run` and the configuration are built from it.
import type { z } from 'zod';
import type { DeadLetter } from '../core/events.ts';
import type { TopicKind } from '../core/kafka.ts';
import type { Logger } from '../core/log.ts';
import type { ComponentMetrics } from '../core/metrics.ts';
import type { Emitter } from './emitter.ts';
import type { CollectorState } from './state.ts';

/** The Kafka topics a collector may emit to, by kind: keys of `kafka.topics`. */
export type { TopicKind };

/** One Kafka message: `value` is encoded as JSON by the emitter, or `json` is that encoding already (a batch of
 * log events written straight as text); `key` picks the partition. */
export type Message = { key: string; value: unknown; json?: undefined } | { key: string; json: string; value?: undefined };

/** Something read that cannot be used: it goes to the dead-letter topic and counts once as an error of `stage`. */
export interface Rejected {
  key: string;
  stage: string;
  letter: DeadLetter;
}

/** What a collector read in one go, handed to the emitter as a whole. */
export interface Emission {
  /** Messages per topic kind, sent in this order; `events`: how many events the messages hold (counted in the
   * metrics), when a message holds more than one (a batch of log events). */
  records: { topic: Exclude<TopicKind, 'dead_letter'>; messages: Message[]; events?: number }[];
  rejected?: Rejected[];
  /** Runs only once Kafka has acknowledged every message of the emission: saves the checkpoint or the state.
   * false: there was nothing new to save. */
  commit?: () => boolean | void;
}

/** What a collector is given to do its work. */
export interface CollectorContext {
  emitter: Emitter;
  /** Its checkpoints and state files, named after the component (saved by an emission's commit). */
  state: CollectorState;
  log: Logger;
  metrics: ComponentMetrics;
}

/** Follows its sources and emits through the context's emitter until the signal aborts; resolves once what it
 * opened is closed. */
export interface StreamCollector {
  run(signal: AbortSignal): Promise<void>;
}

/** Reads its source on a schedule. A poll returns what it read; the scheduler emits it. */
export interface PollingCollector<E extends Emission = Emission> {
  /** A node-cron schedule (collectors/schedule.ts cronSchedule). */
  readonly schedule: string;
  /** What an operator should check when a poll fails. */
  readonly hint: string;
  poll(signal?: AbortSignal): Promise<E>;
  /** What of a failed poll's error is kept in the dead-letter topic (a malformed answer, with its reason). */
  failed?(err: unknown): Rejected[];
  /** Releases what the polls opened (a session); called once the schedule has stopped. */
  close?(): Promise<void>;
}

export type Collector = StreamCollector | PollingCollector;

export const isPolling = (c: Collector): c is PollingCollector => 'poll' in c;

export interface CollectorFactory<N extends string = string, S extends z.ZodType = z.ZodType> {
  /** The key under `collectors:` in the configuration: openstack_logs. */
  readonly name: N;
  /** The name in metrics (component="…"), log lines, dead letters and the Kafka client id: openstack-logs. */
  readonly component: string;
  readonly config: S;
  /** The topic kinds it emits to (the dead-letter topic is always added): `run` makes sure they exist. */
  readonly topics: readonly Exclude<TopicKind, 'dead_letter'>[];
  /** Environment variables that override a field of a configured collector: STACKWATCH_ZABBIX_URL → url. */
  readonly env?: Readonly<Record<string, string>>;
  /** A small working section for this collector, its state kept under `stateDir`: what the compliance test
   * (test/unit/compliance-collectors.test.ts) runs, and an example for the reader. */
  example(stateDir: string): Record<string, unknown>;
  /** The secrets of a validated configuration, masked in every log line from then on. */
  secrets?(config: z.output<S>): (string | undefined)[];
  create(config: z.output<S>, ctx: CollectorContext): Collector;
}

/** A factory, with its name kept as a literal type (the configuration's type is built from the names). */
export function defineCollector<const N extends string, S extends z.ZodType>(factory: CollectorFactory<N, S>): CollectorFactory<N, S> {
  return factory;
}
