// The only file that imports kafkajs. kafkajs is unmaintained since 2023; keeping it behind this module means
// a switch to @confluentinc/kafka-javascript (KafkaJS-compatible API) touches one file.
import { Kafka, logLevel, Partitioners, type Admin, type Consumer, type ICustomPartitioner, type Producer, type LogEntry, type KafkaConfig as KafkaJsConfig } from 'kafkajs';
import type { Config } from './config.ts';
import { errorText, logger, type Logger } from './log.ts';
import { retry } from './retry.ts';

export type KafkaConfig = Config['kafka'];
/** The topics the collectors produce to and the processor consumes, by their key in `kafka.topics` (the retry
 * topic is the notifiers' own). Written out, not derived from Config: the config's type is built from the
 * collectors, which use this one. */
export type TopicKind = 'logs' | 'metrics' | 'health' | 'dead_letter';

export interface OutMessage {
  key: string;
  value: string;
}

export interface InMessage {
  offset: string;
  key: string | null;
  value: string | null;
}

export interface InBatch {
  topic: string;
  partition: number;
  messages: InMessage[];
  /** Keeps the group membership alive during long work; throws when the group is rebalancing. */
  heartbeat(): Promise<void>;
}

const kafkaLog = logger('kafkajs');
/** Topics accept record batches up to this size: one event may be up to 1 MiB of text, escaped as JSON. */
export const MAX_MESSAGE_BYTES = 8 * 1024 * 1024;
/** How much a consumer fetches per partition at a time. */
const FETCH_BYTES_PER_PARTITION = 2 * 1024 * 1024;

function logCreator() {
  // kafkajs retries on its own and is loud about it; our components log the failures that matter.
  return ({ level, log }: LogEntry) => {
    const { message, ...rest } = log;
    if (level <= logLevel.ERROR) kafkaLog.debug(message, rest);
  };
}

/** kafkajs's `ssl` and `sasl` from kafka.ssl and kafka.sasl (their files were read when the config was loaded). */
export function kafkaSecurityOptions(cfg: KafkaConfig): Pick<KafkaJsConfig, 'ssl' | 'sasl'> {
  const out: Pick<KafkaJsConfig, 'ssl' | 'sasl'> = {};
  if (cfg.ssl) {
    const { ca, cert, key, reject_unauthorized } = cfg.ssl;
    out.ssl = { rejectUnauthorized: reject_unauthorized, ...(ca ? { ca: [ca] } : {}), ...(cert ? { cert } : {}), ...(key ? { key } : {}) };
  }
  if (cfg.sasl) out.sasl = { mechanism: cfg.sasl.mechanism, username: cfg.sasl.username, password: cfg.sasl.password } as KafkaJsConfig['sasl'];
  return out;
}

export function kafkaClient(cfg: KafkaConfig, clientSuffix = ''): Kafka {
  return new Kafka({
    clientId: cfg.client_id + clientSuffix,
    brokers: cfg.brokers,
    ...kafkaSecurityOptions(cfg),
    connectionTimeout: cfg.connection_timeout_ms,
    logLevel: logLevel.ERROR,
    logCreator,
    retry: { initialRetryTime: 300, retries: 5 },
  });
}

const brokerHint = 'check that the brokers in kafka.brokers (or STACKWATCH_KAFKA_BROKERS) are up and reachable';

async function connectWithRetry<T extends { connect(): Promise<void> }>(thing: T, cfg: KafkaConfig, log: Logger, what: string, signal?: AbortSignal): Promise<T> {
  await retry(() => thing.connect(), { what: `${what} (Kafka ${cfg.brokers.join(',')})`, log, hint: brokerHint, signal });
  return thing;
}

/** A refusal by the broker that trying again cannot change (authorization, an invalid topic setting): a protocol
 * error (it has a `type`) that Kafka marks not retriable. Time-outs, a controller busy or moving, a leader not
 * elected yet, a broker gone mid-way (kafkajs's own errors, without a `type`) are worth another try. */
function permanent(err: unknown): boolean {
  const errors = (err as { errors?: unknown[] }).errors ?? [err]; // createTopics reports one error per topic
  return errors.some((e) => {
    const { type, retriable } = e as { type?: string; retriable?: boolean };
    return type !== undefined && type !== 'TOPIC_ALREADY_EXISTS' && retriable === false;
  });
}

/** Creates the topics that do not exist yet (idempotent; several processes may race to create the same ones).
 * A controller that answers slowly (createTopics times out after 5 s, a loaded broker takes longer) or not yet
 * is tried again with backoff, listing the topics anew each time; only a permanent refusal gives up. */
export async function ensureTopics(cfg: KafkaConfig, topics: string[], signal?: AbortSignal, partitions = 3): Promise<void> {
  const log = logger('kafka-admin');
  const admin: Admin = await connectWithRetry(kafkaClient(cfg, '-admin').admin(), cfg, log, 'connect admin', signal);
  const what = `create topics ${topics.join(', ')} (Kafka ${cfg.brokers.join(',')})`;
  try {
    await retry(
      async () => {
        const existing = new Set(await admin.listTopics());
        const missing = topics.filter((t) => !existing.has(t));
        if (missing.length === 0) return;
        await admin.createTopics({
          topics: missing.map((topic) => ({ topic, numPartitions: partitions, configEntries: [{ name: 'max.message.bytes', value: String(MAX_MESSAGE_BYTES) }] })),
          waitForLeaders: true,
        });
      },
      { what, log, hint: brokerHint, signal, giveUp: permanent },
    );
  } catch (err) {
    throw permanent(err) ? new Error(`${what}: refused: ${errorText(err)}`) : err;
  } finally {
    await admin.disconnect();
  }
}

export async function deleteTopics(cfg: KafkaConfig, topics: string[]): Promise<void> {
  const admin = kafkaClient(cfg, '-admin').admin();
  await admin.connect();
  try {
    await admin.deleteTopics({ topics });
  } finally {
    await admin.disconnect();
  }
}

/** Per partition: the group's committed offset and the end of the log (lag = end - committed). */
export async function groupProgress(cfg: KafkaConfig, groupId: string, topic: string): Promise<{ partition: number; committed: number; end: number }[]> {
  const admin = kafkaClient(cfg, '-admin').admin();
  await admin.connect();
  try {
    const [committed] = await admin.fetchOffsets({ groupId, topics: [topic] });
    const ends = await admin.fetchTopicOffsets(topic);
    return ends.map((e) => {
      const c = committed.partitions.find((p) => p.partition === e.partition);
      return { partition: e.partition, committed: Math.max(0, Number(c?.offset ?? 0)), end: Number(e.high) };
    });
  } finally {
    await admin.disconnect();
  }
}

/** kafkajs's default (Java-compatible, murmur2) partitioner, remembering each key's partition: a collector sends
 * thousands of messages under one key (host:path), and hashing each one was 6 % of its CPU time. Keyless
 * messages are spread as before. */
export const cachingPartitioner: ICustomPartitioner = () => {
  const partitioner = Partitioners.DefaultPartitioner();
  const known = new Map<string, number>();
  return (args) => {
    const key = args.message.key;
    if (typeof key !== 'string') return partitioner(args);
    const at = `${args.topic}\0${args.partitionMetadata.length}\0${key}`;
    let partition = known.get(at);
    if (partition === undefined) {
      partition = partitioner(args);
      if (known.size >= 10_000) known.clear(); // bounded: keys are files, not events
      known.set(at, partition);
    }
    return partition;
  };
};

/** A producer that returns only when every broker in the ISR has the messages (acks=all). */
export class TopicProducer {
  private constructor(private readonly producer: Producer) {}

  static async connect(cfg: KafkaConfig, component: string, signal?: AbortSignal): Promise<TopicProducer> {
    const producer = kafkaClient(cfg, `-${component}`).producer({ allowAutoTopicCreation: false, createPartitioner: cachingPartitioner });
    await connectWithRetry(producer, cfg, logger(component), 'connect producer', signal);
    return new TopicProducer(producer);
  }

  async send(topic: string, messages: OutMessage[]): Promise<void> {
    if (messages.length === 0) return;
    await this.producer.send({ topic, acks: -1, messages });
  }

  async disconnect(): Promise<void> {
    await this.producer.disconnect();
  }
}

export interface ConsumeOptions {
  groupId: string;
  topics: string[];
  component: string;
  /** Called once per fetched batch, in offset order per partition. The batch's offsets are committed only
   * after it returns; if it throws, nothing is committed and the batch is delivered again. */
  onBatch(batch: InBatch): Promise<void>;
  signal?: AbortSignal;
}

/** A consumer in a group that commits a batch's offsets only after `onBatch` finished with it. */
export class GroupConsumer {
  /** Set by stop(): no new batch is started (an unstarted batch is simply fetched again by the next owner). */
  private stopping = false;
  /** The batches being processed now (one per partition at most). */
  private readonly inFlight = new Set<Promise<void>>();

  private constructor(
    private readonly consumer: Consumer,
    private readonly topics: string[],
  ) {}

  static async start(cfg: KafkaConfig, opts: ConsumeOptions): Promise<GroupConsumer> {
    const consumer = kafkaClient(cfg, `-${opts.component}`).consumer({
      groupId: opts.groupId,
      sessionTimeout: cfg.session_timeout_ms,
      heartbeatInterval: Math.max(500, Math.floor(cfg.session_timeout_ms / 5)),
      allowAutoTopicCreation: false,
      // Small fetches keep memory flat (a batch is held as bytes, text, objects and documents at once); a message
      // larger than this still comes through (the broker returns a first oversized batch whole).
      maxBytesPerPartition: FETCH_BYTES_PER_PARTITION,
    });
    const self = new GroupConsumer(consumer, opts.topics);
    const log = logger(opts.component);
    // kafkajs gives up on some errors and stops consuming while the process stays up: say so, loudly.
    consumer.on(consumer.events.CRASH, ({ payload }) => {
      if (self.stopping) return;
      const level = payload.restart ? 'warn' : 'error';
      log[level](`Kafka consumer ${payload.restart ? 'restarts' : 'stopped for good'} after an error: ${errorText(payload.error)}`, {
        group: opts.groupId,
        hint: payload.restart ? 'nothing to do if it recurs rarely' : 'restart stackwatch; check the broker and the processor log above',
      });
    });
    await connectWithRetry(consumer, cfg, log, 'connect consumer', opts.signal);
    await retry(() => consumer.subscribe({ topics: opts.topics, fromBeginning: true }), {
      what: `subscribe to ${opts.topics.join(',')}`,
      log,
      hint: brokerHint,
      signal: opts.signal,
    });
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      eachBatch: async ({ batch, heartbeat, resolveOffset, isRunning, isStale }) => {
        if (self.stopping || !isRunning() || isStale() || batch.messages.length === 0) return;
        const work = (async () => {
          await opts.onBatch({
            topic: batch.topic,
            partition: batch.partition,
            heartbeat,
            messages: batch.messages.map((m) => ({
              offset: m.offset,
              key: m.key ? m.key.toString('utf8') : null,
              value: m.value ? m.value.toString('utf8') : null,
            })),
          });
          const last = batch.messages[batch.messages.length - 1].offset;
          try {
            await consumer.commitOffsets([{ topic: batch.topic, partition: batch.partition, offset: (BigInt(last) + 1n).toString() }]);
          } catch (err) {
            // A refused commit (UNKNOWN_MEMBER_ID: the batch outlasted session_timeout_ms) comes wrapped in a
            // KafkaJSNonRetriableError, on which kafkajs stops the consumer for good, silently. Thrown bare,
            // kafkajs re-joins the group and the batch is delivered again.
            throw (err as { cause?: unknown }).cause ?? err;
          }
          resolveOffset(last);
        })();
        self.inFlight.add(work);
        try {
          await work;
        } finally {
          self.inFlight.delete(work);
        }
      },
    });
    return self;
  }

  /** Drains, then leaves the group: no new batch starts, the batches in hand finish and their offsets are
   * committed, and only then does the consumer disconnect. (kafkajs ignores commits once its own stop has begun,
   * so disconnecting first would leave the last batch uncommitted, and the next owner would process it again.) */
  async stop(): Promise<void> {
    this.stopping = true;
    this.consumer.pause(this.topics.map((topic) => ({ topic })));
    await Promise.allSettled([...this.inFlight]);
    await this.consumer.disconnect();
  }
}
