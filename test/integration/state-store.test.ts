// Processor state checkpoints (state/store.ts) in a compacted topic of the real Kafka: the topic it creates, a round
// trip of a 3 MB part and small ones, saves of the changed parts only (counted in the topic), a save cut after some
// chunks, a damaged chunk, two owners side by side. test/unit/state-store.test.ts covers the same logic in memory.
import kafkajs from 'kafkajs';
import { afterAll, describe, expect, it } from 'vitest';
import { deleteTopics, ensureTopics, kafkaClient, MAX_MESSAGE_BYTES, type InMessage, type KeyedMessage } from '../../core/kafka.ts';
import { CHUNK_BYTES, openStateTopic, StateStore, type Offsets, type StateLog } from '../../state/store.ts';
import { testSetup } from './harness.ts';

const t = testSetup('state');
const topics: string[] = [];
/** A topic name of this test run's own (deleted afterwards). */
const topicName = (name: string) => {
  topics.push(`swtest.${t.run}.${name}`);
  return topics[topics.length - 1];
};
afterAll(async () => {
  await deleteTopics(t.cfg.kafka, topics).catch(() => {});
  await t.cleanup();
});

/** A detector's state as KeyedState.snapshot gives it, `entries` entries of ~220 bytes (some not ASCII). */
function detectorState(entries: number, tag = ''): { v: number; data: unknown } {
  const keys = Array.from({ length: entries }, (_, i) => `req-${i.toString(16).padStart(8, '0')}-4c1c-8d0c-62455d58bfca${tag}`);
  const values = keys.map((k, i) => ({ host: `compute${i % 40}`, last: `AMQP server on 10.0.0.${i % 250}:5672 is unreachable: [Errno 111] ECONNREFUSED ${k}`, note: 'réseau coupé € 🔥' }));
  return { v: 1, data: { keys, seen: keys.map((_, i) => 1_494_892_800_000 + i * 1000), values, open: 3 } };
}

/** Every message of the topic, as Kafka holds it. */
async function messages(topic: string): Promise<InMessage[]> {
  const reader = await openStateTopic(t.cfg.kafka, topic);
  try {
    return await reader.read(
      () => [] as InMessage[],
      (acc, m) => void acc.push(m),
    );
  } finally {
    await reader.close();
  }
}

const OFFSETS: Offsets = { [t.cfg.kafka.topics.logs]: { '0': '51230', '1': '49877', '2': '50112' }, [t.cfg.kafka.topics.health]: { '0': '310' } };

describe('state checkpoints in a compacted Kafka topic', () => {
  it('creates a missing topic: one partition, compacted, taking 8 MiB batches, segments rolled for compaction; an empty one loads nothing', async () => {
    const topic = topicName('state-new');
    const store = await StateStore.open(t.cfg.kafka, { topic });
    const admin = kafkaClient(t.cfg.kafka, '-test-admin').admin();
    await admin.connect();
    try {
      const meta = await admin.fetchTopicMetadata({ topics: [topic] });
      expect(meta.topics[0].partitions).toHaveLength(1);
      const described = await admin.describeConfigs({ resources: [{ type: kafkajs.ConfigResourceTypes.TOPIC, name: topic }], includeSynonyms: false });
      const settings = Object.fromEntries(described.resources[0].configEntries.map((e) => [e.configName, e.configValue]));
      expect(settings).toMatchObject({
        'cleanup.policy': 'compact',
        'max.message.bytes': String(MAX_MESSAGE_BYTES),
        'segment.ms': '600000',
        'segment.bytes': String(64 * 1024 * 1024),
        'min.cleanable.dirty.ratio': '0.1',
      });
    } finally {
      await admin.disconnect();
    }
    expect(await store.load('processor-1')).toEqual({ problems: [] });
    expect(await store.list()).toEqual({ checkpoints: [], problems: [] });
    await store.close();
  });

  it('refuses a topic that is not compacted, or takes smaller batches than 8 MiB, naming the topic and the setting', async () => {
    const plain = topicName('state-plain');
    await ensureTopics(t.cfg.kafka, [plain], undefined, 1);
    await expect(StateStore.open(t.cfg.kafka, { topic: plain })).rejects.toThrow(`Kafka topic ${plain} has cleanup.policy=delete; it needs cleanup.policy=compact`);

    // Compacted, created by hand with the broker's default max.message.bytes (1 MiB).
    const small = topicName('state-small-batches');
    const admin = kafkaClient(t.cfg.kafka, '-test-admin').admin();
    await admin.connect();
    await admin.createTopics({ topics: [{ topic: small, numPartitions: 1, configEntries: [{ name: 'cleanup.policy', value: 'compact' }] }], waitForLeaders: true });
    await admin.disconnect();
    await expect(StateStore.open(t.cfg.kafka, { topic: small })).rejects.toThrow(
      `Kafka topic ${small} has max.message.bytes=1048588; it needs at least ${MAX_MESSAGE_BYTES}: kafka-configs.sh --alter --entity-type topics --entity-name ${small} --add-config max.message.bytes=${MAX_MESSAGE_BYTES}`,
    );
  });

  it('loads what was saved (a 3 MB part in chunks, small parts) through a new connection; saves only the changed parts', async () => {
    const topic = topicName('state-roundtrip');
    const store = await StateStore.open(t.cfg.kafka, { topic });
    const parts = { engine: detectorState(14_000), correlator: { v: 1, data: { open: [{ id: 'inc-1', rule: 'amqp-outage' }] } }, miner: { v: 3, data: { templates: ['<*> GET <*>'] } } };
    const saved = await store.save('processor-1', { offsets: OFFSETS, parts });
    const engineBytes = Buffer.byteLength(JSON.stringify(parts.engine));
    expect(engineBytes).toBeGreaterThan(3_000_000);
    expect(saved.chunks).toBe(Math.ceil(engineBytes / CHUNK_BYTES) + 2);
    await store.close();

    const again = await StateStore.open(t.cfg.kafka, { topic });
    const loaded = await again.load('processor-1');
    expect(loaded.problems).toEqual([]);
    expect(loaded.checkpoint).toEqual({ owner: 'processor-1', seq: 1, at: expect.any(String), offsets: OFFSETS, parts });

    // One part changed: its one chunk and the manifest are all the save writes.
    const before = await messages(topic);
    const correlator = { v: 1, data: { open: [] } };
    const offsets: Offsets = { ...OFFSETS, [t.cfg.kafka.topics.logs]: { '0': '51900', '1': '49877', '2': '50112' } };
    expect(await again.save('processor-1', { offsets, parts: { ...parts, correlator }, changed: ['correlator'] })).toMatchObject({ chunks: 1 });
    const after = await messages(topic);
    expect(after.slice(before.length).map((m) => m.key)).toEqual(['processor-1|B|correlator|0', 'processor-1|manifest']);
    await again.close();

    const third = await StateStore.open(t.cfg.kafka, { topic });
    expect(await third.load('processor-1')).toEqual({ checkpoint: { owner: 'processor-1', seq: 2, at: expect.any(String), offsets, parts: { ...parts, correlator } }, problems: [] });
    await third.close();
  });

  it('keeps the previous checkpoint when a save is cut after some of its chunks, and reports a damaged chunk by its part', async () => {
    const topic = topicName('state-crash');
    const first = { engine: detectorState(14_000, '-first'), miner: { v: 3, data: { templates: ['<*> GET <*>'] } } };
    const store = await StateStore.open(t.cfg.kafka, { topic });
    await store.save('processor-1', { offsets: OFFSETS, parts: first });
    await store.close();

    // The same save, its messages sent to Kafka until three of the engine's chunks are: then the process "dies".
    const kafka = await openStateTopic(t.cfg.kafka, topic);
    const cut: StateLog = {
      send: async (ms: KeyedMessage[]) => {
        await kafka.send(ms.slice(0, 3));
        throw new Error('killed after 3 chunks');
      },
      read: (start, add) => kafka.read(start, add),
      close: () => kafka.close(),
    };
    const dying = new StateStore(cut);
    await expect(dying.save('processor-1', { offsets: {}, parts: { engine: detectorState(14_000, '-second'), miner: first.miner } })).rejects.toThrow('killed after 3 chunks');
    await dying.close();
    const written = (await messages(topic)).slice(-3);
    expect(written.map((m) => [m.key, m.value!.slice(0, m.value!.indexOf('\n'))])).toEqual(
      [0, 1, 2].map((i) => [
        `processor-1|B|engine|${i}`,
        JSON.stringify({ seq: 2, part: 'engine', i, n: Math.ceil(Buffer.byteLength(JSON.stringify(detectorState(14_000, '-second'))) / CHUNK_BYTES) }),
      ]),
    );

    const restarted = await StateStore.open(t.cfg.kafka, { topic });
    expect(await restarted.load('processor-1')).toEqual({ checkpoint: { owner: 'processor-1', seq: 1, at: expect.any(String), offsets: OFFSETS, parts: first }, problems: [] });

    // A chunk of the current checkpoint overwritten with something else: that part is reported, the other loaded.
    const damager = await openStateTopic(t.cfg.kafka, topic);
    await damager.send([{ key: 'processor-1|A|engine|4', value: 'not a chunk' }]);
    await damager.close();
    const damaged = await restarted.load('processor-1');
    expect(damaged.problems).toEqual([expect.stringMatching(/^processor-1\/engine: chunk 5 of \d+ \(processor-1\|A\|engine\|4\) is not a chunk \(no header line\)$/)]);
    expect(damaged.checkpoint?.parts).toEqual({ miner: first.miner });
    expect(damaged.checkpoint?.offsets).toEqual(OFFSETS);
    await restarted.close();
  });

  it('keeps two owners apart in one topic, and lists both', async () => {
    const topic = topicName('state-owners');
    const [one, two] = await Promise.all([StateStore.open(t.cfg.kafka, { topic }), StateStore.open(t.cfg.kafka, { topic })]);
    const small = (owner: string, i: number) => ({ v: 1, data: { owner, i } });
    const tenParts = (owner: string) => Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`detector-${i}`, small(owner, i)]));
    await Promise.all([one.save('processor-1', { offsets: OFFSETS, parts: tenParts('processor-1') }), two.save('processor-2', { offsets: {}, parts: tenParts('processor-2') })]);
    await one.save('processor-1', { offsets: OFFSETS, parts: { 'detector-3': small('processor-1', 33) }, changed: ['detector-3'] });
    await Promise.all([one.close(), two.close()]);

    const reader = await StateStore.open(t.cfg.kafka, { topic });
    const p1 = await reader.load('processor-1');
    const p2 = await reader.load('processor-2');
    expect(p1).toEqual({ checkpoint: expect.objectContaining({ seq: 2, parts: { ...tenParts('processor-1'), 'detector-3': small('processor-1', 33) } }), problems: [] });
    expect(p2).toEqual({ checkpoint: expect.objectContaining({ seq: 1, offsets: {}, parts: tenParts('processor-2') }), problems: [] });
    const listed = await reader.list();
    expect(listed.problems).toEqual([]);
    expect(listed.checkpoints.map((c) => [c.owner, c.seq, c.parts.length, c.parts.every((p) => p.chunks === 1)])).toEqual([
      ['processor-1', 2, 10, true],
      ['processor-2', 1, 10, true],
    ]);
    await reader.close();
  });
});
