// The only file that imports kafkajs. kafkajs is unmaintained since 2023; keeping it behind this module means
// a switch to @confluentinc/kafka-javascript (KafkaJS-compatible API) touches one file.
import { randomUUID } from 'node:crypto';
import kafkajs, {
  CompressionTypes,
  Kafka,
  logLevel,
  Partitioners,
  type Admin,
  type Consumer,
  type ConsumerRunConfig,
  type ICustomPartitioner,
  type Producer,
  type LogEntry,
  type KafkaConfig as KafkaJsConfig,
} from 'kafkajs';
import type { Config } from './config.ts';
import { errorText, logger, type Logger } from './log.ts';
import { Aborted, retry } from './retry.ts';

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
/** A consumer that kafkajs gave up on runs again after this long (GroupConsumer). */
const RERUN_DELAY_MS = 2000;

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

/** Creates the topics that do not exist yet (idempotent; several processes may race to create the same ones),
 * with `settings` (topic configs) beside max.message.bytes; topics that exist are left as they are.
 * A controller that answers slowly (createTopics times out after 5 s, a loaded broker takes longer) or not yet
 * is tried again with backoff, listing the topics anew each time; only a permanent refusal gives up. */
export async function ensureTopics(cfg: KafkaConfig, topics: string[], signal?: AbortSignal, partitions = 3, settings: Record<string, string> = {}): Promise<void> {
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
          topics: missing.map((topic) => ({
            topic,
            numPartitions: partitions,
            configEntries: Object.entries({ 'max.message.bytes': String(MAX_MESSAGE_BYTES), ...settings }).map(([name, value]) => ({ name, value })),
          })),
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

/** The group coordinator's passing states (a broker just started, a coordinator moving), which kafkajs's admin calls
 * do not wait out themselves. */
const COORDINATOR_PASSING = new Set(['GROUP_LOAD_IN_PROGRESS', 'GROUP_COORDINATOR_NOT_AVAILABLE', 'NOT_COORDINATOR_FOR_GROUP']);

/** Retries of an admin call while the group coordinator is in a passing state: about 15 s, then its error. */
export function coordinatorRetry(what: string) {
  return {
    what,
    log: logger('kafka-admin'),
    hint: brokerHint,
    maxAttempts: 6,
    giveUp: (err: unknown) => !COORDINATOR_PASSING.has((err as { type?: string }).type ?? ''),
  };
}

/** Per partition: the group's committed offset and the end of the log (lag = end - committed). */
export async function groupProgress(cfg: KafkaConfig, groupId: string, topic: string): Promise<{ partition: number; committed: number; end: number }[]> {
  const admin = kafkaClient(cfg, '-admin').admin();
  await admin.connect();
  try {
    // kafkajs does not retry the offset fetch itself: a broker that has just started answers "the coordinator is
    // loading" (GROUP_LOAD_IN_PROGRESS) for a few seconds, and a CI-like run failed on it. The group coordinator's
    // passing states are tried again, for about 15 s; anything else (a topic not there yet) is thrown at once.
    const [committed] = await retry(() => admin.fetchOffsets({ groupId, topics: [topic] }), coordinatorRetry(`fetch the committed offsets of group ${groupId} on ${topic}`));
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
  /** `false`: the batches' offsets are not committed after them; the caller commits with `commit()` (a processor
   * that checkpoints its state commits the offsets that state reflects, and only after it is saved). */
  commitEachBatch?: boolean;
  /** After each join of the group: the partitions this member was given (topic → partitions). */
  onAssigned?(assigned: Map<string, number[]>): void;
  /** Appended to the consumer's client id (`<client_id>-<component><clientTag>`), which the group's other members
   * see (members()): a processor's instance, so that they can tell which checkpoints' owners are still in the group. */
  clientTag?: string;
  signal?: AbortSignal;
}

/** A consumer in a group that commits a batch's offsets only after `onBatch` finished with it. */
export class GroupConsumer {
  /** Set by stop(): no new batch is started (an unstarted batch is simply fetched again by the next owner). */
  private stopping = false;
  /** The batches being processed now (one per partition at most). */
  private readonly inFlight = new Set<Promise<void>>();
  /** The timer of a run again after kafkajs gave up (see start), and how many such runs there were. */
  private rerun: NodeJS.Timeout | undefined;
  reruns = 0;

  private constructor(
    private readonly consumer: Consumer,
    private readonly topics: string[],
    private readonly client: Kafka,
    private readonly groupId: string,
  ) {}

  static async start(cfg: KafkaConfig, opts: ConsumeOptions): Promise<GroupConsumer> {
    const client = kafkaClient(cfg, `-${opts.component}${opts.clientTag ?? ''}`);
    const consumer = client.consumer({
      groupId: opts.groupId,
      sessionTimeout: cfg.session_timeout_ms,
      heartbeatInterval: Math.max(500, Math.floor(cfg.session_timeout_ms / 5)),
      allowAutoTopicCreation: false,
      // Small fetches keep memory flat (a batch is held as bytes, text, objects and documents at once); a message
      // larger than this still comes through (the broker returns a first oversized batch whole).
      maxBytesPerPartition: FETCH_BYTES_PER_PARTITION,
    });
    const self = new GroupConsumer(consumer, opts.topics, client, opts.groupId);
    const log = logger(opts.component);
    // kafkajs restarts its consumer after most errors, but gives up on some and stops consuming for good while the
    // process stays up: a broker restarted at the wrong moment ("Failed to find group coordinator", a commit refused
    // in a rebalance). A processor must not sit idle until a human notices: it connects and runs again itself.
    consumer.on(consumer.events.CRASH, ({ payload }) => {
      if (self.stopping) return;
      log[payload.restart ? 'warn' : 'error'](`Kafka consumer ${payload.restart ? 'restarts' : 'stopped'} after an error: ${errorText(payload.error)}`, {
        group: opts.groupId,
        hint: payload.restart ? 'nothing to do if it recurs rarely' : `started again in ${RERUN_DELAY_MS / 1000} s; check the broker if it recurs`,
      });
      if (!payload.restart) self.rerun = setTimeout(() => void rerun(), RERUN_DELAY_MS);
    });
    /** Runs the consumer again after kafkajs gave up on it (it has disconnected by then): connects, with retries,
     * and runs it as at the start (its subscription is kept). The batches it had not committed come again. */
    const rerun = async (): Promise<void> => {
      if (self.stopping) return;
      try {
        await connectWithRetry(consumer, cfg, log, 'connect consumer again', opts.signal);
        if (self.stopping) return;
        await consumer.run(runConfig);
        self.reruns++;
        log.warn(`Kafka consumer running again (group ${opts.groupId})`, { reruns: self.reruns });
      } catch (err) {
        if (self.stopping || opts.signal?.aborted) return;
        log.error(`Kafka consumer not running again yet: ${errorText(err)}`, { hint: `tried again in ${RERUN_DELAY_MS / 1000} s` });
        self.rerun = setTimeout(() => void rerun(), RERUN_DELAY_MS);
      }
    };
    await connectWithRetry(consumer, cfg, log, 'connect consumer', opts.signal);
    await retry(() => consumer.subscribe({ topics: opts.topics, fromBeginning: true }), {
      what: `subscribe to ${opts.topics.join(',')}`,
      log,
      hint: brokerHint,
      signal: opts.signal,
    });
    consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
      const assigned = new Map(Object.entries(payload.memberAssignment).map(([topic, parts]) => [topic, [...parts]]));
      opts.onAssigned?.(assigned);
    });
    const runConfig: ConsumerRunConfig = {
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
          if (opts.commitEachBatch !== false) await self.commit([{ topic: batch.topic, partition: batch.partition, offset: (BigInt(last) + 1n).toString() }]);
          resolveOffset(last);
        })();
        self.inFlight.add(work);
        try {
          await work;
        } finally {
          self.inFlight.delete(work);
        }
      },
    };
    await consumer.run(runConfig);
    return self;
  }

  /** Commits offsets (the next offset to read, per topic and partition) for the group. A refused commit
   * (UNKNOWN_MEMBER_ID: a batch outlasted session_timeout_ms) comes wrapped in a KafkaJSNonRetriableError, on which
   * kafkajs stops the consumer for good, silently: it is thrown bare, so that kafkajs re-joins the group and the
   * uncommitted batches are delivered again. */
  async commit(offsets: { topic: string; partition: number; offset: string }[]): Promise<void> {
    if (offsets.length === 0) return;
    try {
      await this.consumer.commitOffsets(offsets);
    } catch (err) {
      throw (err as { cause?: unknown }).cause ?? err;
    }
  }

  /** The client ids of the group's members now (DescribeGroups): who else is in the group. Throws when Kafka does not
   * answer. */
  async members(): Promise<string[]> {
    const admin = this.client.admin();
    await admin.connect();
    try {
      // A coordinator still loading after a broker start is waited for, as in groupProgress.
      const { groups } = await retry(() => admin.describeGroups([this.groupId]), coordinatorRetry(`describe group ${this.groupId}`));
      return (groups[0]?.members ?? []).map((m) => m.clientId);
    } finally {
      await admin.disconnect();
    }
  }

  /** Drains, then leaves the group: no new batch starts, the batches in hand finish and their offsets are
   * committed (`beforeLeave` too: a last checkpoint and its commit), and only then does the consumer disconnect.
   * (kafkajs ignores commits once its own stop has begun, so disconnecting first would leave the last batch
   * uncommitted, and the next owner would process it again.) */
  async stop(beforeLeave?: () => Promise<void>): Promise<void> {
    this.stopping = true;
    clearTimeout(this.rerun);
    this.consumer.pause(this.topics.map((topic) => ({ topic })));
    await Promise.allSettled([...this.inFlight]);
    try {
      await beforeLeave?.();
    } finally {
      await this.consumer.disconnect();
    }
  }
}

/** A message of a compacted topic: Kafka keeps the latest value of each key; a null value (a tombstone) removes it. */
export interface KeyedMessage {
  key: string;
  value: string | null;
}

/** Uncompressed bytes per produce request to a compacted topic: half of what a record batch may hold, so that a
 * batch fits even when gzip gains nothing. */
const COMPACTED_SEND_BYTES = MAX_MESSAGE_BYTES / 2;
/** A read of a compacted topic that gets no message for this long is given up and tried again. */
const READ_STALL_MS = 30_000;

/**
 * A compacted topic (cleanup.policy=compact: the latest value of each key is kept for good), for state that must
 * outlive the process (state/store.ts). Writes are acked by all in-sync replicas, gzip-compressed, and idempotent:
 * kafkajs's retries neither duplicate nor reorder them. A read goes from the start of the topic to the end it had
 * when the read began.
 */
export class CompactedTopic {
  private constructor(
    private readonly cfg: KafkaConfig,
    readonly topic: string,
    private readonly client: Kafka,
    private readonly admin: Admin,
    private readonly producer: Producer,
    private readonly log: Logger,
  ) {}

  /** Creates the topic when missing (one partition, compacted, with `settings`) and connects. A topic that exists
   * but is not compacted, or refuses batches of MAX_MESSAGE_BYTES, is refused with an error naming the setting. */
  static async open(cfg: KafkaConfig, topic: string, component: string, settings: Record<string, string>, signal?: AbortSignal): Promise<CompactedTopic> {
    await ensureTopics(cfg, [topic], signal, 1, { ...settings, 'cleanup.policy': 'compact' });
    const log = logger(component);
    const client = kafkaClient(cfg, `-${component}`);
    const admin = await connectWithRetry(client.admin(), cfg, log, 'connect admin', signal);
    try {
      const described = await retry(
        () => admin.describeConfigs({ resources: [{ type: kafkajs.ConfigResourceTypes.TOPIC, name: topic, configNames: ['cleanup.policy', 'max.message.bytes'] }], includeSynonyms: false }),
        { what: `describe topic ${topic} (Kafka ${cfg.brokers.join(',')})`, log, hint: brokerHint, signal, giveUp: permanent },
      );
      const setting = (name: string) => described.resources[0]?.configEntries.find((e) => e.configName === name)?.configValue;
      const alter = (name: string, value: string) => `kafka-configs.sh --alter --entity-type topics --entity-name ${topic} --add-config ${name}=${value}`;
      if (setting('cleanup.policy') !== 'compact') {
        throw new Error(
          `Kafka topic ${topic} has cleanup.policy=${setting('cleanup.policy')}; it needs cleanup.policy=compact (otherwise Kafka deletes what it holds by age): ${alter('cleanup.policy', 'compact')}, or name another topic`,
        );
      }
      if (!(Number(setting('max.message.bytes')) >= MAX_MESSAGE_BYTES)) {
        throw new Error(
          `Kafka topic ${topic} has max.message.bytes=${setting('max.message.bytes')}; it needs at least ${MAX_MESSAGE_BYTES}: ${alter('max.message.bytes', String(MAX_MESSAGE_BYTES))}`,
        );
      }
      const producer = client.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false });
      await connectWithRetry(producer, cfg, log, 'connect producer', signal);
      return new CompactedTopic(cfg, topic, client, admin, producer, log);
    } catch (err) {
      await admin.disconnect();
      throw err;
    }
  }

  /** Sends the messages in order; returns when all of them are acked. */
  async send(messages: KeyedMessage[]): Promise<void> {
    let batch: KeyedMessage[] = [];
    let bytes = 0;
    for (const m of messages) {
      const size = Buffer.byteLength(m.key) + (m.value === null ? 0 : Buffer.byteLength(m.value));
      if (batch.length > 0 && bytes + size > COMPACTED_SEND_BYTES) {
        await this.sendBatch(batch);
        [batch, bytes] = [[], 0];
      }
      batch.push(m);
      bytes += size;
    }
    if (batch.length > 0) await this.sendBatch(batch);
  }

  private async sendBatch(messages: KeyedMessage[]): Promise<void> {
    await this.producer.send({ topic: this.topic, acks: -1, compression: CompressionTypes.GZIP, messages });
  }

  /** Every message from the start of the topic up to the end offsets (high watermarks) it had when the read began, in
   * offset order, folded into what `start()` returns. A read that fails (a broker gone mid-way, no progress for
   * READ_STALL_MS) starts again with a new `start()`; after 5 attempts the error is thrown. */
  read<A>(start: () => A, add: (acc: A, m: InMessage) => void, signal?: AbortSignal): Promise<A> {
    return retry(
      async () => {
        const acc = start();
        await this.readOnce((m) => add(acc, m), signal);
        return acc;
      },
      { what: `read topic ${this.topic} (Kafka ${this.cfg.brokers.join(',')})`, log: this.log, hint: brokerHint, signal, maxAttempts: 5 },
    );
  }

  private async readOnce(onMessage: (m: InMessage) => void, signal?: AbortSignal): Promise<void> {
    const ends = new Map<number, bigint>();
    for (const p of await this.admin.fetchTopicOffsets(this.topic)) if (BigInt(p.high) > BigInt(p.low)) ends.set(p.partition, BigInt(p.high));
    if (ends.size === 0) return;
    // kafkajs reads only as a member of a group: one of its own, which commits nothing and is deleted afterwards.
    const groupId = `${this.cfg.client_id}-read-${randomUUID()}`;
    const consumer = this.client.consumer({ groupId, allowAutoTopicCreation: false, maxBytesPerPartition: FETCH_BYTES_PER_PARTITION });
    let stall: NodeJS.Timeout | undefined;
    let onAbort = () => {};
    try {
      await consumer.connect();
      await consumer.subscribe({ topics: [this.topic], fromBeginning: true });
      await new Promise<void>((resolve, reject) => {
        const progress = () => {
          clearTimeout(stall);
          stall = setTimeout(() => reject(new Error(`no message for ${READ_STALL_MS / 1000} s, ${ends.size} partition(s) not read to their end`)), READ_STALL_MS);
        };
        progress();
        onAbort = () => reject(new Aborted());
        if (signal?.aborted) onAbort();
        signal?.addEventListener('abort', onAbort, { once: true });
        consumer.on(consumer.events.CRASH, ({ payload }) => reject(payload.error));
        consumer
          .run({
            autoCommit: false,
            eachBatch: async ({ batch }) => {
              const end = ends.get(batch.partition);
              if (end === undefined) return;
              progress();
              try {
                for (const m of batch.messages) {
                  // A message at or past the end was written after the read began (compaction may have removed the
                  // ones just before the end): the partition is read.
                  if (BigInt(m.offset) >= end) break;
                  onMessage({ offset: m.offset, key: m.key ? m.key.toString('utf8') : null, value: m.value ? m.value.toString('utf8') : null });
                }
              } catch (err) {
                reject(err);
                return;
              }
              const last = batch.messages.at(-1);
              if (last && BigInt(last.offset) + 1n >= end) ends.delete(batch.partition);
              if (ends.size === 0) resolve();
            },
          })
          .catch(reject);
      });
    } finally {
      clearTimeout(stall);
      signal?.removeEventListener('abort', onAbort);
      await consumer.disconnect().catch(() => {});
      await this.admin.deleteGroups([groupId]).catch((err) => this.log.debug(`delete the reading group ${groupId}: ${errorText(err)}`));
    }
  }

  async close(): Promise<void> {
    await this.producer.disconnect();
    await this.admin.disconnect();
  }
}
