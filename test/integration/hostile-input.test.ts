// Hostile input through the real collector, Kafka, processor and Elasticsearch.
//  - 100k hostile lines: random bytes, invalid UTF-8, NUL bytes, a 10 MB line, CRLF, half a line at the end.
//    Nothing crashes; every line that is not text is in the dead-letter topic with its reason; every real event is
//    in Elasticsearch; the counters say so.
//  - The hostile corpus (test/fixtures/hostile/: one file per case of issue 11), with event.original kept: every
//    event the offline reader makes of each file is indexed exactly once (same file, same offset), every line that
//    is not text is a dead letter, and no secret seeded in the corpus survives anywhere in Elasticsearch or the
//    dead-letter topic.
import { isUtf8 } from 'node:buffer';
import { copyFileSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { collectorContext } from '../../collectors/emitter.ts';
import { OpenstackLogCollector } from '../../collectors/openstack-logs.ts';
import { readLogFile } from '../../collectors/logs/read-file.ts';
import { DeadLetter } from '../../core/events.ts';
import { ensureTopics, GroupConsumer, groupProgress, TopicProducer } from '../../core/kafka.ts';
import { counterValue } from '../../core/metrics.ts';
import { startProcessor } from '../../processors/processor.ts';
import { seededSecrets } from '../unit/seeded-secrets.ts';
import { countDocs, testSetup, waitFor, type TestSetup } from './harness.ts';

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
    } else if (r < 0.5)
      line = Buffer.from(TRACE); // a continuation: folds into the event before it
    else if (r < 0.7) {
      // random bytes (no line breaks): text or not, as Node's own UTF-8 validator judges
      line = Buffer.from(
        Array.from({ length: 1 + Math.floor(rand() * 300) }, () => {
          let b = Math.floor(rand() * 256);
          while (b === 0x0a || b === 0x0d) b = Math.floor(rand() * 256);
          return b;
        }),
      );
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

/** The collector over the test's log folder, twice: the second poll sends what was still open once the files have
 * been quiet for the flush interval. */
async function collectAll(t: TestSetup): Promise<void> {
  await ensureTopics(t.cfg.kafka, [t.cfg.kafka.topics.logs, t.cfg.kafka.topics.dead_letter]);
  const producer = await TopicProducer.connect(t.cfg.kafka, 'openstack-logs');
  const collector = new OpenstackLogCollector(t.cfg.collectors.openstack_logs!, collectorContext('openstack-logs', producer, t.cfg.kafka.topics));
  await collector.pollOnce();
  await new Promise((r) => setTimeout(r, t.cfg.collectors.openstack_logs!.multiline_flush_ms + 100));
  await collector.pollOnce();
  await producer.disconnect();
}

/** The dead-letter topic's letters, once `n` have come. */
async function deadLetters(t: TestSetup, n: number): Promise<DeadLetter[]> {
  const dead: DeadLetter[] = [];
  const dlq = await GroupConsumer.start(t.cfg.kafka, {
    groupId: `${t.cfg.kafka.consumer_group}-dlq-reader`,
    topics: [t.cfg.kafka.topics.dead_letter],
    component: 'test',
    onBatch: async (b) => void dead.push(...b.messages.map((m) => DeadLetter.parse(JSON.parse(m.value!)))),
  });
  await waitFor(`${n} dead letters`, async () => dead.length >= n, 60_000);
  await dlq.stop();
  return dead;
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
    const before = await counterValue('errors', { component: 'openstack-logs', stage: 'unusable_line' });
    await collectAll(t);
    const dead = await deadLetters(t, corpus.unusable);
    expect(dead).toHaveLength(corpus.unusable);
    expect(new Set(dead.map((d) => d.reason.replace(/ \(.*$/, '')))).toEqual(new Set(['invalid UTF-8 in line', 'NUL byte in line: not text']));
    expect(dead[0].reason).toMatch(/nova-compute\.log at byte \d+\)$/);
    expect(Buffer.from(dead[0].payload, 'base64').length).toBeGreaterThan(0); // the original bytes, kept
    expect((await counterValue('errors', { component: 'openstack-logs', stage: 'unusable_line' })) - before).toBe(corpus.unusable);

    const index = `${t.cfg.elasticsearch.indices.logs}-*`;
    await waitFor(
      'every offset committed',
      async () => {
        const p = await groupProgress(t.cfg.kafka, t.cfg.kafka.consumer_group, t.cfg.kafka.topics.logs);
        return p.every((x) => x.committed === x.end);
      },
      90_000,
    );
    expect(await countDocs(t.es, index)).toBe(corpus.starts);
    const cut = await t.es.search({ index, query: { term: { 'log.flags': 'truncated' } } });
    expect(cut.hits.hits).toHaveLength(1);
    expect((cut.hits.hits[0]._source as { message: string }).message.length).toBeLessThanOrEqual(1024 * 1024);
    await processor.stop();
  });
});

const CORPUS = new URL('../fixtures/hostile/', import.meta.url).pathname;

function logFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return logFiles(path);
    return name.endsWith('.log') ? [path] : [];
  });
}

const tc = testSetup('hostile-corpus', (raw) => {
  raw.collectors.openstack_logs.keep_original = true;
});
afterAll(() => tc.cleanup());

describe('the hostile corpus through the real pipeline', () => {
  it('indexes every event once, dead-letters every line that is not text, and leaks no seeded secret', async () => {
    const logs = join(tc.dir, 'logs');
    mkdirSync(logs);
    // The collector knows a file by its first line (a rotated or copied file is not read twice): of files that
    // begin alike, only the first is taken.
    const firstLines = new Set<string>();
    const files = logFiles(CORPUS)
      .filter((src) => {
        const first = readFileSync(src).subarray(0, 1024).toString('latin1').split('\n')[0];
        return !firstLines.has(first) && firstLines.add(first);
      })
      .map((src) => {
        const dst = join(logs, relative(CORPUS, src).replaceAll('/', '--'));
        copyFileSync(src, dst);
        return dst;
      });
    expect(files.length).toBeGreaterThan(15);

    // What the offline reader (the same assembler) makes of each file: the pipeline must agree exactly.
    const expected = new Set<string>();
    let unusable = 0;
    for (const f of files) {
      for await (const batch of readLogFile(f, { maxEventBytes: tc.cfg.collectors.openstack_logs!.max_event_bytes, keepOriginal: true })) {
        for (const e of batch.events) expected.add(`${f}@${e.offset}`);
        unusable += batch.unusable.length;
      }
    }

    const processor = await startProcessor(tc.cfg, { signal: ctl.signal });
    await collectAll(tc);
    const dead = await deadLetters(tc, unusable);
    expect(dead).toHaveLength(unusable);

    await waitFor(
      'every offset committed',
      async () => {
        const p = await groupProgress(tc.cfg.kafka, tc.cfg.kafka.consumer_group, tc.cfg.kafka.topics.logs);
        return p.length > 0 && p.every((x) => x.committed === x.end);
      },
      90_000,
    );
    await processor.stop();

    const index = `${tc.cfg.elasticsearch.indices.logs}-*`;
    await tc.es.indices.refresh({ index });
    const res = await tc.es.search<Record<string, any>>({ index, size: 10_000, query: { match_all: {} } });
    const docs = res.hits.hits.map((h) => h._source!);
    const got = docs.map((d) => `${d.log.file.path}@${d.log.offset}`);
    expect(new Set(got).size).toBe(got.length); // none twice
    expect([...new Set(got)].sort()).toEqual([...expected].sort()); // none lost, none made up

    // No seeded secret, nor a telling piece of one (16 characters of a long one), in any field of any document
    // or dead letter.
    const secrets = seededSecrets(readFileSync);
    expect(secrets.length).toBeGreaterThan(10);
    const strings: string[] = dead.flatMap((d) => [d.reason, Buffer.from(d.payload, 'base64').toString('utf8')]);
    const collect = (v: unknown): void => {
      if (typeof v === 'string') strings.push(v);
      else if (v && typeof v === 'object') for (const x of Object.values(v)) collect(x);
    };
    collect(docs);
    const hay = strings.join('\0');
    const pieces = (s: string) => (s.length < 24 ? [s] : Array.from({ length: Math.floor(s.length / 16) }, (_, i) => s.slice(i * 16, i * 16 + 16)));
    const leaked = secrets.filter((s) => pieces(s).some((p) => p.trim().length >= 4 && hay.includes(p)));
    expect(leaked).toEqual([]);
  });
});
