// Processor state checkpoints (state/store.ts) in a compacted topic of the real Kafka: the topic it creates, a round
// trip of a 3 MB part and small ones, saves of the changed parts only (counted in the topic), a save cut after some
// chunks, a damaged chunk, two owners side by side; and `stackwatch run --role processor` started on a checkpoint
// damaged several ways at once, and on a state topic that does not exist yet (issue 15: it starts, says so once,
// rebuilds what it can). test/unit/state-store.test.ts covers the same logic in memory.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import kafkajs from 'kafkajs';
import { afterAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import type { RawLogEvent } from '../../core/events.ts';
import { deleteTopics, ensureTopics, kafkaClient, MAX_MESSAGE_BYTES, TopicProducer, type InMessage, type KeyedMessage } from '../../core/kafka.ts';
import { DetectionEngine } from '../../detectors/engine.ts';
import { loadRules } from '../../detectors/rules.ts';
import { IncidentCorrelator } from '../../incidents/correlator.ts';
import { loadIncidentRules } from '../../incidents/rules.ts';
import { parseLogEvent } from '../../processors/parse-log.ts';
import { Miner } from '../../processors/templates/miner.ts';
import { CHUNK_BYTES, chunkKey, openStateTopic, StateStore, type Loaded, type Offsets, type StateLog } from '../../state/store.ts';
import { countDocs, REPO, stackwatch, testSetup, waitFor, type Cli } from './harness.ts';

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

const SAMPLE = join(REPO, 'samples/hotsos-2022/neutron-l3-agent.log.1');
/** The sample's single-line oslo.log events (full header, a [...] context block), in order. */
const SAMPLE_LINES = readFileSync(SAMPLE, 'utf8')
  .split('\n')
  .filter((l) => /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3} \d+ [A-Z]+ \S+ \[/.test(l));
const ERROR_LINE = SAMPLE_LINES.find((l) => l.includes(' ERROR neutron.agent.l3.agent [-] An interface driver must be specified'))!;

/** A line of the sample as the collector sends it from `host` (the sample's own file, at its `i`-th event). */
function rawEvent(host: string, text: string, i: number): RawLogEvent {
  return { v: 1, host, path: '/var/log/neutron/neutron-l3-agent.log', file_id: `sample-${host}`, offset: i * 1000, text, read_at: new Date().toISOString() };
}

/** The first `n` INFO/DEBUG events of the sample (no error: no rule fires on them), produced from `host` into this
 * run's logs topic. */
async function produceSampleEvents(host: string, n: number): Promise<void> {
  const texts = SAMPLE_LINES.filter((l) => !/ (ERROR|WARNING|CRITICAL) /.test(l)).slice(0, n);
  expect(texts).toHaveLength(n);
  await ensureTopics(t.cfg.kafka, [t.cfg.kafka.topics.logs, t.cfg.kafka.topics.dead_letter]);
  const producer = await TopicProducer.connect(t.cfg.kafka, 'state-test');
  try {
    await producer.send(
      t.cfg.kafka.topics.logs,
      texts.map((text, i) => ({ key: `${host}:neutron-l3-agent.log`, value: JSON.stringify(rawEvent(host, text, i)) })),
    );
  } finally {
    await producer.disconnect();
  }
}

/** A configuration file for a processor of its own: this run's topics and indices, its consumer group `group`,
 * its checkpoint `<group>/<instance>` in `stateTopic`, saved twice a second. Returns the file and the owner. */
function processorConfig(name: string, group: string, instance: string, stateTopic: string): { file: string; owner: string } {
  const file = join(t.dir, `${name}.yaml`);
  const processor = { ...t.raw.processor, checkpoint: { ...t.raw.processor?.checkpoint, topic: stateTopic, instance, interval_ms: 500 } };
  writeFileSync(file, stringify({ ...t.raw, kafka: { ...t.raw.kafka, consumer_group: group }, processor }));
  return { file, owner: `${group}/${instance}` };
}

/** The processor's JSON log lines on stderr (other lines skipped). */
function logLines(cli: Cli): { level: string; msg: string; problems?: string[] }[] {
  return cli
    .stderr()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l));
}

/** The owner's checkpoint in `topic`, read through a store of its own. */
async function loadCheckpoint(topic: string, owner: string): Promise<Loaded> {
  const store = await StateStore.open(t.cfg.kafka, { topic });
  try {
    return await store.load(owner);
  } finally {
    await store.close();
  }
}

/** `waiting`, failing at once if the processor exits first (its stderr in the error). */
function whileUp<T>(cli: Cli, waiting: Promise<T>): Promise<T> {
  const exited = cli.exited.then((e) => {
    throw new Error(`the processor exited (${JSON.stringify(e)}): ${cli.stderr()}`);
  });
  return Promise.race([waiting, exited]);
}

/** Logs documents of `host` in Elasticsearch. */
const hostDocs = (host: string) => countDocs(t.es, `${t.cfg.elasticsearch.indices.logs}-*`, { term: { 'host.name': host } });

/** Waits, while the processor is up, until `events` logs documents of `host` are indexed. */
const indexedAll = (cli: Cli, host: string, events: number) =>
  whileUp(
    cli,
    waitFor(
      () => `${events} events of ${host} indexed; stderr: ${cli.stderr()}`,
      async () => (await hostDocs(host)) === events,
      90_000,
      500,
    ),
  );

/** Waits, while the processor is up, for a checkpoint of `owner` in `topic` that `ok` takes (`what` it is, for the
 * failure message); returns it. */
const savedAs = (cli: Cli, topic: string, owner: string, what: string, ok: (loaded: Loaded) => boolean) =>
  whileUp(
    cli,
    waitFor(
      () => `${what}; stderr: ${cli.stderr()}`,
      async () => {
        const loaded = await loadCheckpoint(topic, owner);
        return ok(loaded) && loaded;
      },
      60_000,
      500,
    ),
  );

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

  it('a processor started on a checkpoint damaged several ways: stays up, says so in one line, restores the part that loads, saves a clean one', async () => {
    const { file, owner } = processorConfig('processor-damaged', t.cfg.kafka.consumer_group, 'damaged-1', t.cfg.processor.checkpoint.topic);
    const host = `${t.host}-damaged`;
    // Real rule states: the shipped rules' engine, fed the sample's error line (new-error-pattern learns its template).
    const engine = await DetectionEngine.create(loadRules());
    engine.on({ kind: 'log', doc: parseLogEvent(rawEvent(host, ERROR_LINE, 500), { timezone: 'UTC' }) });
    const real = engine.snapshot();
    const learnt = (real['new-error-pattern'].data as { templates: { keys: string[] } }).templates.keys;
    expect(learnt).toHaveLength(1);
    const parts = {
      'rule:new-error-pattern': real['new-error-pattern'], // the one part that loads
      'rule:service-silent': real['service-silent'], // its chunk overwritten below
      'rule:amqp-connection-lost': { detector: 'amqp-connection-lost', v: 99, data: {} }, // a version it does not read
      'rule:no-such-rule': { detector: 'zabbix-problem', v: 1, data: {} }, // a rule gone from the rules
      incidents: { v: 1, data: { open: 1, incidents: [{ id: 'inc-1' }] } }, // not an incidents snapshot
      templates: 'garbage',
      outbox: [{ not: 'a page' }], // a page that is not an alert: left out, named
    };
    const store = await StateStore.open(t.cfg.kafka, { topic: t.cfg.processor.checkpoint.topic });
    await store.save(owner, { offsets: {}, parts });
    await store.close();
    const damager = await openStateTopic(t.cfg.kafka, t.cfg.processor.checkpoint.topic);
    await damager.send([{ key: chunkKey(owner, 'A', 'rule:service-silent', 0), value: 'not a chunk' }]);
    await damager.close();
    const damaged = await loadCheckpoint(t.cfg.processor.checkpoint.topic, owner);
    expect(damaged.checkpoint?.seq).toBe(1);
    expect(damaged.problems).toEqual([expect.stringContaining(`${owner}/rule:service-silent: chunk 1 of 1 `)]);

    const EVENTS = 12;
    await produceSampleEvents(host, EVENTS);
    const cli = stackwatch(['run', '--role', 'processor', '--config', file], { STACKWATCH_LOG_LEVEL: 'info' });
    try {
      await indexedAll(cli, host, EVENTS);
      // A new checkpoint, written over the damaged one: every part of it loads.
      const rebuilt = await savedAs(cli, t.cfg.processor.checkpoint.topic, owner, 'a checkpoint after save 1', (l) => (l.checkpoint?.seq ?? 0) > 1);
      expect(cli.child.exitCode).toBeNull(); // still up
      expect(rebuilt.problems).toEqual([]);
      const got = rebuilt.checkpoint!;
      expect(got.seq).toBeGreaterThan(damaged.checkpoint!.seq);
      expect(Object.keys(got.parts).sort()).toEqual([...Object.keys(real).map((id) => `rule:${id}`), 'incidents', 'outbox', 'templates'].sort());
      // The part that loaded was restored, not started anew: the template it had learnt is still there.
      expect((got.parts['rule:new-error-pattern'] as { data: { templates: { keys: string[] } } }).data.templates.keys).toEqual(learnt);
      // And the processor's own restores take every part of it.
      const rules = Object.fromEntries(Object.entries(got.parts).flatMap(([name, v]) => (name.startsWith('rule:') ? [[name.slice(5), v]] : [])));
      expect((await DetectionEngine.create(loadRules())).restore(rules).discarded).toEqual([]);
      expect(new IncidentCorrelator(loadIncidentRules(t.cfg.incidents.rules_dir, true), { minDurationS: 0 }).restore(got.parts.incidents)).toBeUndefined();
      const miner = new Miner();
      expect(miner.restore(got.parts.templates)).toBeUndefined();
      expect(miner.size).toBeGreaterThan(0); // the templates of the events indexed
    } finally {
      cli.child.kill('SIGTERM');
    }
    expect(await cli.exited).toEqual({ code: 0, signal: null });

    const lines = logLines(cli);
    const said = lines.filter((l) => l.msg.startsWith(`state checkpoint ${owner}`));
    expect(said.map((l) => [l.level, l.msg])).toEqual([
      ['info', `state checkpoint ${owner} (topic ${t.cfg.processor.checkpoint.topic}): save 1: 1 rule(s), 0 open incident(s), 0 log template(s), 0 page(s) not sent yet`],
      ['warn', `state checkpoint ${owner}: 6 part(s) not restored, started empty`],
    ]);
    expect(lines.filter((l) => l.level === 'warn' && l.msg.includes('not restored'))).toHaveLength(1);
    const problems = said[1].problems!;
    expect(problems).toEqual([
      expect.stringMatching(new RegExp(`^${owner}/rule:service-silent: chunk 1 of 1 \\(${owner}\\|A\\|rule:service-silent\\|0\\) is not a chunk \\(no header line\\)$`)),
      expect.stringMatching(/^rule amqp-connection-lost: state\.v: version 99 is not this detector's \(1\)$/),
      expect.stringMatching(/^rule no-such-rule: no such rule any more/),
      expect.stringMatching(/^incidents: data\.incidents\[0\]\./),
      'templates: expected an object { v, data }, got string',
      expect.stringMatching(/^outbox: 1 of 1 pages left out \(page 0: @timestamp /),
    ]);
  }, 240_000);

  it('a processor whose state topic does not exist yet creates it, says "none yet" once, and saves', async () => {
    const topic = topicName('state-missing');
    const { file, owner } = processorConfig('processor-fresh', `${t.cfg.kafka.consumer_group}-fresh`, 'fresh-1', topic);
    const host = `${t.host}-fresh`;
    const topicExists = async () => {
      const admin = kafkaClient(t.cfg.kafka, '-test-admin').admin();
      await admin.connect();
      try {
        return (await admin.listTopics()).includes(topic);
      } finally {
        await admin.disconnect();
      }
    };
    expect(await topicExists()).toBe(false);
    const EVENTS = 5;
    await produceSampleEvents(host, EVENTS);
    const cli = stackwatch(['run', '--role', 'processor', '--config', file], { STACKWATCH_LOG_LEVEL: 'info' });
    try {
      await indexedAll(cli, host, EVENTS);
      // Created by the processor (a StateStore of the test's own would create it too: none opened it yet).
      expect(await topicExists()).toBe(true);
      const saved = await savedAs(cli, topic, owner, `a checkpoint of ${owner} in ${topic}`, (l) => l.checkpoint !== undefined);
      expect(saved.problems).toEqual([]);
      expect(Object.keys(saved.checkpoint!.parts)).toEqual(expect.arrayContaining(['rule:new-error-pattern', 'incidents', 'templates', 'outbox']));
    } finally {
      cli.child.kill('SIGTERM');
    }
    expect(await cli.exited).toEqual({ code: 0, signal: null });
    const said = logLines(cli).filter((l) => l.msg.startsWith(`state checkpoint ${owner}`));
    expect(said.map((l) => [l.level, l.msg])).toEqual([['info', `state checkpoint ${owner} (topic ${topic}): none yet`]]);
  }, 240_000);
});
