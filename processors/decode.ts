// The decode table: for each topic the processor consumes, the schema of its messages and what one becomes — the
// document to index, if any, and the event the detectors get, if any. The processor and the rule tests decode
// through this one table, so a rule test sees exactly what the pipeline would, and every event kind a collector
// produces has its consumer here.
import type { z } from 'zod';
import type { Config } from '../core/config.ts';
import type { TopicKind } from '../core/kafka.ts';
import { DeadLetter, HealthEvent, inventoryDocument, metricDocument, MetricEvent, RawLogBatch, RawLogEvent, stableId, unbatchLogs, type PipelineEvent } from '../core/events.ts';
import { dottedIssue } from '../core/schema.ts';
import { parseLogEvent } from './parse-log.ts';
import { mineDocument, type Miner } from './templates/miner.ts';

/** A document to index: into the daily index of the `elasticsearch.indices` prefix `index` for the time `daily`,
 * or, without `daily`, into the one index of that name (a document per host, overwritten). */
export interface Indexed {
  index: keyof Config['elasticsearch']['indices'];
  daily?: string;
  id: string;
  doc: unknown;
}

/** What a message becomes. */
export interface Decoded {
  document?: Indexed;
  event?: PipelineEvent;
}

export interface DecodeContext {
  /** Time zone of log timestamps that carry none (processor.timezone). */
  timezone: string;
  /** When the batch was taken in (ISO 8601), for the documents that record it. */
  ingested?: string;
  /** Where the message is in Kafka. */
  source: { topic: string; partition: number; offset: string };
  /** The processor's template miner: log documents get `log.template` from it (without one, they have none). */
  templates?: Miner;
}

interface Entry<S extends z.ZodType> {
  schema: S;
  /** What a message of the topic is, for the error of one that is not. */
  what: string;
  decode(value: z.infer<S>, ctx: DecodeContext): Decoded;
}

const entry = <S extends z.ZodType>(e: Entry<S>): Entry<S> => e;

export const DECODE_TABLE = {
  logs: entry({
    schema: RawLogEvent,
    what: 'a raw log event',
    decode(raw, ctx) {
      const doc = parseLogEvent(raw, { timezone: ctx.timezone });
      if (ctx.templates) mineDocument(ctx.templates, doc);
      return { document: { index: 'logs', daily: doc['@timestamp'], id: doc.event.id, doc }, event: { kind: 'log', doc } };
    },
  }),
  metrics: entry({
    schema: MetricEvent,
    what: 'a metric event',
    decode(sample, ctx) {
      const doc = metricDocument(sample, ctx.ingested);
      return { document: { index: 'metrics', daily: sample['@timestamp'], id: doc.event.id, doc }, event: { kind: 'metric', sample } };
    },
  }),
  health: entry({
    schema: HealthEvent,
    what: 'a health event',
    decode(event, ctx) {
      if (event.kind !== 'inventory') return { event };
      // The host's current inventory: one document per host, a newer inventory overwrites it.
      const doc = inventoryDocument(event, ctx.ingested);
      return { document: { index: 'inventory', id: doc.event.id, doc }, event };
    },
  }),
  dead_letter: entry({
    schema: DeadLetter,
    what: 'a dead letter',
    // Into Kibana's reach: the dead letters of every component, under the id of their place in the topic.
    decode: (d, ctx) => ({ document: { index: 'dead_letter', daily: d['@timestamp'], id: stableId(ctx.source.topic, ctx.source.partition, ctx.source.offset), doc: d } }),
  }),
} satisfies Record<TopicKind, Entry<z.ZodType>>;

/** The events a message of a topic of `kind` holds: the message itself, or the events of a batch (a record of a
 * file's log events, RawLogBatch), each to be decoded on its own. Throws for a batch that is not one, naming the
 * field. */
export function messageEvents(kind: TopicKind, value: unknown): { events: unknown[]; batched: boolean } {
  if (kind !== 'logs' || (value as { v?: unknown } | null)?.v !== 2) return { events: [value], batched: false };
  const parsed = RawLogBatch.safeParse(value);
  if (!parsed.success) throw new Error(`not a batch of raw log events: ${dottedIssue(parsed.error)}`);
  return { events: unbatchLogs(parsed.data), batched: true };
}

/** Decodes one message of a topic of `kind`; throws for a message that is not what its topic carries, naming the
 * field (`not a metric event: @timestamp: …`). */
export function decodeMessage(kind: TopicKind, value: unknown, ctx: DecodeContext): Decoded {
  const e: Entry<z.ZodType> = DECODE_TABLE[kind];
  const parsed = e.schema.safeParse(value);
  if (!parsed.success) throw new Error(`not ${e.what}: ${dottedIssue(parsed.error)}`);
  return e.decode(parsed.data, ctx);
}
