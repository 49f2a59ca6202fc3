// The one way a collector's data gets into Kafka. An emission is sent topic by topic in requests of at most
// `batchMaxLines` messages and BATCH_MAX_BYTES (a request stays well under the topic's max.message.bytes), each
// request retried with backoff until acknowledged (or `attempts` times, for a poll that is read again at its next
// tick), never past the abort signal; then what could not be used goes to the dead-letter topic; and only then is
// the emission's commit run (the checkpoint or state saved), so a crash re-reads and never skips. The received,
// sent and error counts are kept here, the same way for every collector. After each request, the buffers kafkajs
// left behind are released early where node allows it (core/memory.ts).
import { batches } from '../core/batch.ts';
import type { OutMessage, TopicProducer } from '../core/kafka.ts';
import { logger, type Logger } from '../core/log.ts';
import { releaseDeadBuffers } from '../core/memory.ts';
import { checkpointSaved, componentMetrics, type ComponentMetrics } from '../core/metrics.ts';
import { retry } from '../core/retry.ts';
import type { CollectorContext, Emission, Message, TopicKind } from './collector.ts';
import { CollectorState } from './state.ts';

const BATCH_MAX_BYTES = 512 * 1024;
const BATCH_MAX_LINES = 5000;

export interface EmitOptions {
  signal?: AbortSignal;
  /** Give up after this many attempts per request (default: retry until acknowledged or aborted). */
  attempts?: number;
  /** Largest number of messages in one request. */
  batchMaxLines?: number;
  /** Where the messages come from, for the retry log line: a file's path. */
  of?: string;
}

export class Emitter {
  readonly log: Logger;
  readonly metrics: ComponentMetrics;

  constructor(
    readonly component: string,
    private readonly producer: Pick<TopicProducer, 'send'>,
    private readonly topics: Readonly<Partial<Record<TopicKind, string>>>,
  ) {
    this.log = logger(component);
    this.metrics = componentMetrics(component);
  }

  /** Sends the emission and runs its commit once Kafka has acknowledged all of it; throws (nothing committed)
   * when a request is not acknowledged. */
  async emit(e: Emission, opts: EmitOptions = {}): Promise<void> {
    const count = e.records.reduce((n, r) => n + (r.events ?? r.messages.length), 0);
    if (count > 0) this.metrics.received(count);
    for (const r of e.records) await this.send(r.topic, r.messages, opts);
    const rejected = e.rejected ?? [];
    if (rejected.length > 0) {
      await this.send(
        'dead_letter',
        rejected.map((r) => ({ key: r.key, value: r.letter })),
        opts,
      );
      const byStage = new Map<string, number>();
      for (const r of rejected) byStage.set(r.stage, (byStage.get(r.stage) ?? 0) + 1);
      for (const [stage, n] of byStage) this.metrics.error(stage, n);
    }
    if (count > 0) this.metrics.sent(count);
    if (e.commit && e.commit() !== false) checkpointSaved(this.component);
  }

  private async send(kind: TopicKind, messages: Message[], opts: EmitOptions): Promise<void> {
    if (messages.length === 0) return;
    const topic = this.topics[kind];
    if (topic === undefined) throw new Error(`${this.component}: no Kafka topic for ${kind} messages`);
    const out: OutMessage[] = messages.map((m) => ({ key: m.key, value: m.json ?? JSON.stringify(m.value) }));
    for (const batch of batches(out, opts.batchMaxLines ?? BATCH_MAX_LINES, BATCH_MAX_BYTES, (m) => m.value.length)) {
      await retry(() => this.producer.send(topic, batch), {
        what: `send ${batch.length} message(s)${opts.of ? ` of ${opts.of}` : ''} to Kafka topic ${topic}`,
        log: this.log,
        hint: opts.attempts === undefined ? 'the collector waits and resumes from its checkpoint; check the Kafka brokers' : 'check the Kafka brokers; the next poll reads the source again',
        ...(opts.attempts !== undefined ? { maxAttempts: opts.attempts } : {}),
        ...(opts.signal ? { signal: opts.signal } : {}),
      });
      releaseDeadBuffers();
    }
  }
}

/** The context of a collector named `component` that sends through `producer` to `topics` (kafka.topics). */
export function collectorContext(component: string, producer: Pick<TopicProducer, 'send'>, topics: Readonly<Partial<Record<TopicKind, string>>>): CollectorContext {
  const emitter = new Emitter(component, producer, topics);
  return { emitter, state: new CollectorState(component), log: emitter.log, metrics: emitter.metrics };
}
