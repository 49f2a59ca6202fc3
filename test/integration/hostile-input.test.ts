// 100k hostile lines through the real collector, Kafka, processor and Elasticsearch: random bytes, invalid
// UTF-8, NUL bytes, a 10 MB line, CRLF, half a line at the end. Nothing crashes; every line that is not text is
// in the dead-letter topic with its reason; every real event is in Elasticsearch; the counters say so.
import { isUtf8 } from 'node:buffer';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { OpenstackLogCollector } from '../../collectors/openstack-logs.ts';
import { DeadLetter } from '../../core/events.ts';
import { ensureTopics, GroupConsumer, groupProgress, TopicProducer } from '../../core/kafka.ts';
import { counterValue } from '../../core/metrics.ts';
import { startProcessor } from '../../processors/processor.ts';
import { countDocs, testSetup, waitFor } from './harness.ts';

const REAL = [
  '2022-02-04 09:37:50.159 21562 ERROR oslo.messaging._drivers.impl_rabbit [req-30b3bc7c-90c2-4c1c-8d0c-62455d58bfca - - - - -] Connection failed: [Errno 111] ECONNREFUSED (retrying in 2.0 seconds): ConnectionRefusedError: [Errno 111] ECONNREFUSED',
  '2022-02-04 09:40:51.131 29295 INFO os_vif [-] Loaded VIF plugins: linux_bridge, noop, ovs',
];
const TRACE = '2022-02-04 10:21:58.881 284971 ERROR nova.compute.manager Traceback (most recent call last):';

/** A small deterministic PRNG (mulberry32), so a failure can be reproduced. */
function prng(seed: number) {
  return () => {
    seed |= 0;
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function hostileCorpus(lines: number) {
  const rand = prng(42);
  const parts: Buffer[] = [];
  let starts = 0;
  let unusable = 0;
  for (let i = 0; i < lines; i++) {
    const r = rand();
    let line: Buffer;
    if (i === 5000) {
      // 10 MB on one line, starting like a real event: one event, cut at the cap.
      line = Buffer.concat([Buffer.from(REAL[1] + ' '), Buffer.alloc(10 * 1024 * 1024, 'A')]);
      starts++;
    } else if (r < 0.4) {
      line = Buffer.from(REAL[i % 2]);
      starts++;
    } else if (r < 0.5) line = Buffer.from(TRACE); // a continuation: folds into the event before it
    else if (r < 0.7) {
      // random bytes (no line breaks): text or not, as Node's own UTF-8 validator judges
      line = Buffer.from(Array.from({ length: 1 + Math.floor(rand() * 300) }, () => {
        let b = Math.floor(rand() * 256);
        while (b === 0x0a || b === 0x0d) b = Math.floor(rand() * 256);
        return b;
      }));
    } else if (r < 0.8) line = Buffer.concat([Buffer.from('2022-02-04 09:37:50.159 1 INFO x [-] bad '), Buffer.from([0xc3, 0x28, 0xff])]);
    else if (r < 0.9) line = Buffer.from(`${REAL[0]}\0with a NUL`);
    else {
      line = Buffer.from(REAL[1] + '\r'); // CRLF
      starts++;
    }
    if (!isUtf8(line) || line.includes(0)) unusable++;
    parts.push(line, Buffer.from('\n'));
  }
  parts.push(Buffer.from(REAL[0].slice(0, 50))); // half a line at the end: a tailing collector waits for the rest
  return { data: Buffer.concat(parts), starts, unusable };
}

const t = testSetup('hostile');
const ctl = new AbortController();
afterAll(async () => {
  ctl.abort();
  await t.cleanup();
});

describe('100k hostile lines', () => {
  it('keeps every real event, dead-letters every line that is not text with its reason, and counts them', async () => {
    const corpus = hostileCorpus(100_000);
    const logs = join(t.dir, 'logs');
    mkdirSync(logs);
    writeFileSync(join(logs, 'nova-compute.log'), corpus.data);

    const processor = await startProcessor(t.cfg, { signal: ctl.signal });
    await ensureTopics(t.cfg.kafka, [t.cfg.kafka.topics.logs, t.cfg.kafka.topics.dead_letter]);
    const producer = await TopicProducer.connect(t.cfg.kafka, 'openstack-logs');
    const collector = new OpenstackLogCollector(t.cfg.collectors.openstack_logs!, {
      topic: t.cfg.kafka.topics.logs,
      deadLetterTopic: t.cfg.kafka.topics.dead_letter,
      producer,
    });
    const before = await counterValue('errors', { component: 'openstack-logs', stage: 'unusable_line' });
    // Two polls: the second one sends the last complete event once the file has been quiet for the flush interval.
    await collector.pollOnce();
    await new Promise((r) => setTimeout(r, t.cfg.collectors.openstack_logs!.multiline_flush_ms + 100));
    await collector.pollOnce();
    await producer.disconnect();

    const dead: DeadLetter[] = [];
    const dlq = await GroupConsumer.start(t.cfg.kafka, {
      groupId: `${t.cfg.kafka.consumer_group}-dlq-reader`,
      topics: [t.cfg.kafka.topics.dead_letter],
      component: 'test',
      onBatch: async (b) => void dead.push(...b.messages.map((m) => DeadLetter.parse(JSON.parse(m.value!)))),
    });
    await waitFor(`${corpus.unusable} dead letters`, async () => dead.length >= corpus.unusable, 60_000);
    await dlq.stop();
    expect(dead).toHaveLength(corpus.unusable);
    expect(new Set(dead.map((d) => d.reason.replace(/ \(.*$/, '')))).toEqual(new Set(['invalid UTF-8 in line', 'NUL byte in line: not text']));
    expect(dead[0].reason).toMatch(/nova-compute\.log at byte \d+\)$/);
    expect(Buffer.from(dead[0].payload, 'base64').length).toBeGreaterThan(0); // the original bytes, kept
    expect((await counterValue('errors', { component: 'openstack-logs', stage: 'unusable_line' })) - before).toBe(corpus.unusable);

    const index = `${t.cfg.elasticsearch.indices.logs}-*`;
    await waitFor('every offset committed', async () => {
      const p = await groupProgress(t.cfg.kafka, t.cfg.kafka.consumer_group, t.cfg.kafka.topics.logs);
      return p.every((x) => x.committed === x.end);
    }, 90_000);
    expect(await countDocs(t.es, index)).toBe(corpus.starts);
    const cut = await t.es.search({ index, query: { term: { 'log.flags': 'truncated' } } });
    expect(cut.hits.hits).toHaveLength(1);
    expect((cut.hits.hits[0]._source as { message: string }).message.length).toBeLessThanOrEqual(1024 * 1024);
    await processor.stop();
  });
});
