// kafkajs 2.2.4 against the real Kafka 4.1 broker (KRaft): produce, consume in a group, commit, resume.
import { KafkaJSNonRetriableError } from 'kafkajs';
import { afterAll, describe, expect, it } from 'vitest';
import { deleteTopics, ensureTopics, GroupConsumer, groupProgress, kafkaClient, TopicProducer } from '../../core/kafka.ts';
import { testSetup, waitFor } from './harness.ts';

const t = testSetup('kafka');
afterAll(() => t.cleanup());

describe('kafkajs 2.2.4 against Kafka 4.1', () => {
  it('produces, consumes in a group, commits, and a restarted group member resumes after the commit', async () => {
    const topic = t.cfg.kafka.topics.logs;
    await ensureTopics(t.cfg.kafka, [topic]);
    const producer = await TopicProducer.connect(t.cfg.kafka, 'test');
    const first = Array.from({ length: 50 }, (_, i) => ({ key: `k${i % 5}`, value: `first-${i}` }));
    await producer.send(topic, first);

    const seen: string[] = [];
    const consumer = await GroupConsumer.start(t.cfg.kafka, {
      groupId: t.cfg.kafka.consumer_group,
      topics: [topic],
      component: 'test',
      onBatch: async (b) => void seen.push(...b.messages.map((m) => m.value!)),
    });
    await waitFor('50 messages consumed', async () => seen.length >= 50);
    await waitFor('offsets committed', async () => {
      const p = await groupProgress(t.cfg.kafka, t.cfg.kafka.consumer_group, topic);
      return p.reduce((s, x) => s + x.committed, 0) === 50 && p;
    });
    await consumer.stop();
    expect(seen.sort()).toEqual(first.map((m) => m.value).sort());

    // Same group again: only what was produced after the commit arrives.
    await producer.send(topic, [
      { key: 'k1', value: 'second-0' },
      { key: 'k2', value: 'second-1' },
    ]);
    const resumed: string[] = [];
    const again = await GroupConsumer.start(t.cfg.kafka, {
      groupId: t.cfg.kafka.consumer_group,
      topics: [topic],
      component: 'test',
      onBatch: async (b) => void resumed.push(...b.messages.map((m) => m.value!)),
    });
    await waitFor('the two new messages', async () => resumed.length >= 2);
    await new Promise((r) => setTimeout(r, 500));
    await again.stop();
    await producer.disconnect();
    expect(resumed.sort()).toEqual(['second-0', 'second-1']);
  });

  it('does not commit a batch whose handler failed: it is delivered again', async () => {
    const topic = `${t.cfg.kafka.topics.logs}.retry`;
    await ensureTopics(t.cfg.kafka, [topic], undefined, 1);
    const producer = await TopicProducer.connect(t.cfg.kafka, 'test');
    await producer.send(topic, [{ key: 'a', value: 'only' }]);
    let calls = 0;
    const consumer = await GroupConsumer.start(t.cfg.kafka, {
      groupId: `${t.cfg.kafka.consumer_group}-retry`,
      topics: [topic],
      component: 'test',
      onBatch: async () => {
        if (++calls === 1) throw new Error('downstream refused');
      },
    });
    await waitFor('the batch delivered a second time', async () => calls >= 2, 60_000);
    await waitFor('committed after the successful delivery', async () => {
      const [p] = await groupProgress(t.cfg.kafka, `${t.cfg.kafka.consumer_group}-retry`, topic);
      return p.committed === 1;
    });
    await consumer.stop();
    await producer.disconnect();
  });

  it('runs again by itself after kafkajs gave up on the consumer (a non-retriable error): the batch comes again, then is committed', async () => {
    // kafkajs stops a consumer for good on a non-retriable error (a broker restarted at the wrong moment gives
    // "Failed to find group coordinator"), the process staying up: GroupConsumer connects and runs it again.
    const topic = `${t.cfg.kafka.topics.logs}.rerun`;
    const group = `${t.cfg.kafka.consumer_group}-rerun`;
    await ensureTopics(t.cfg.kafka, [topic], undefined, 1);
    const producer = await TopicProducer.connect(t.cfg.kafka, 'test');
    await producer.send(topic, [{ key: 'a', value: 'only' }]);
    let calls = 0;
    const consumer = await GroupConsumer.start(t.cfg.kafka, {
      groupId: group,
      topics: [topic],
      component: 'test',
      onBatch: async () => {
        if (++calls === 1) throw new KafkaJSNonRetriableError('Failed to find group coordinator (made up)');
      },
    });
    await waitFor('the batch delivered again after the consumer ran again', async () => calls >= 2, 60_000);
    await waitFor('committed after the successful delivery', async () => {
      const [p] = await groupProgress(t.cfg.kafka, group, topic);
      return p.committed === 1;
    });
    expect(consumer.reruns).toBe(1);
    // Still consuming: a message sent now arrives.
    await producer.send(topic, [{ key: 'a', value: 'after' }]);
    await waitFor('a later message consumed', async () => calls >= 3, 60_000);
    await consumer.stop();
    await producer.disconnect();
  });

  it('creates topics once when processes race to create them, and gives up at once, saying why, on a name Kafka refuses', async () => {
    // A collector and a processor start together and both create the same topics: neither fails.
    const topics = [`${t.cfg.kafka.topics.logs}.race-a`, `${t.cfg.kafka.topics.logs}.race-b`];
    await Promise.all(Array.from({ length: 4 }, () => ensureTopics(t.cfg.kafka, topics)));
    const admin = kafkaClient(t.cfg.kafka, '-admin').admin();
    await admin.connect();
    const meta = await admin.fetchTopicMetadata({ topics });
    await admin.disconnect();
    await deleteTopics(t.cfg.kafka, topics);
    expect(meta.topics.map((m) => [m.name, m.partitions.length]).sort()).toEqual(topics.map((n) => [n, 3]).sort());

    // A refusal no retry can change is not retried for ever: the error names the topics and the reason.
    const startedAt = Date.now();
    const refused = ensureTopics(t.cfg.kafka, [`${t.cfg.kafka.topics.logs}.${'x'.repeat(260)}`]);
    await expect(refused).rejects.toThrow(/create topics swtest\..*: refused: .*invalid topic/i);
    expect(Date.now() - startedAt).toBeLessThan(10_000);
  });
});
