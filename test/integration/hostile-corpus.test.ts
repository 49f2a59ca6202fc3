// The hostile corpus (test/fixtures/hostile/: one file per case of issue 11) through the real collector, Kafka,
// processor and Elasticsearch, with event.original kept: every event the offline reader makes of each file is
// indexed exactly once (same file, same offset), every line that is not text is a dead letter, and no secret
// seeded in the corpus survives anywhere in Elasticsearch or the dead-letter topic.
import { copyFileSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readLogFile } from '../../collectors/read-file.ts';
import { OpenstackLogCollector } from '../../collectors/openstack-logs.ts';
import { DeadLetter } from '../../core/events.ts';
import { ensureTopics, GroupConsumer, groupProgress, TopicProducer } from '../../core/kafka.ts';
import { startProcessor } from '../../processors/processor.ts';
import { seededSecrets } from '../unit/seeded-secrets.ts';
import { testSetup, waitFor } from './harness.ts';

const CORPUS = new URL('../fixtures/hostile/', import.meta.url).pathname;

function logFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return logFiles(path);
    return name.endsWith('.log') ? [path] : [];
  });
}

const t = testSetup('hostile-corpus', (raw) => {
  raw.collectors.openstack_logs.keep_original = true;
});
const ctl = new AbortController();
afterAll(async () => {
  ctl.abort();
  await t.cleanup();
});

describe('the hostile corpus through the real pipeline', () => {
  it('indexes every event once, dead-letters every line that is not text, and leaks no seeded secret', async () => {
    const logs = join(t.dir, 'logs');
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
      for await (const batch of readLogFile(f, { maxEventBytes: t.cfg.collectors.openstack_logs!.max_event_bytes, keepOriginal: true })) {
        for (const e of batch.events) expected.add(`${f}@${e.offset}`);
        unusable += batch.unusable.length;
      }
    }

    const processor = await startProcessor(t.cfg, { signal: ctl.signal });
    await ensureTopics(t.cfg.kafka, [t.cfg.kafka.topics.logs, t.cfg.kafka.topics.dead_letter]);
    const producer = await TopicProducer.connect(t.cfg.kafka, 'openstack-logs');
    const collector = new OpenstackLogCollector(t.cfg.collectors.openstack_logs!, {
      topic: t.cfg.kafka.topics.logs,
      deadLetterTopic: t.cfg.kafka.topics.dead_letter,
      producer,
    });
    // Two polls: the second sends what was still open once the files have been quiet for the flush interval.
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
    await waitFor(`${unusable} dead letters`, async () => dead.length >= unusable, 60_000);
    await dlq.stop();
    expect(dead).toHaveLength(unusable);

    await waitFor('every offset committed', async () => {
      const p = await groupProgress(t.cfg.kafka, t.cfg.kafka.consumer_group, t.cfg.kafka.topics.logs);
      return p.length > 0 && p.every((x) => x.committed === x.end);
    }, 90_000);
    await processor.stop();

    const index = `${t.cfg.elasticsearch.indices.logs}-*`;
    await t.es.indices.refresh({ index });
    const res = await t.es.search<Record<string, any>>({ index, size: 10_000, query: { match_all: {} } });
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
