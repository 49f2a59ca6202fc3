// Kill the processor (SIGKILL) after Elasticsearch accepted a batch but before Kafka committed it, restart it:
// the batch is delivered again and overwrites its documents (same ids) — nothing missing, nothing doubled.
import { cpSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ensureTopics, groupProgress, TopicProducer } from '../../core/kafka.ts';
import { collectorContext } from '../../collectors/emitter.ts';
import { OpenstackLogCollector } from '../../collectors/openstack-logs.ts';
import { countDocs, REPO, stackwatch, testSetup, waitFor } from './harness.ts';

const SAMPLE = join(REPO, 'samples/hotsos-2022/neutron-l3-agent.log.1');
// Events of the sample: its lines that start an oslo.log event (full header and a [...] context block).
const EVENTS = readFileSync(SAMPLE, 'utf8')
  .split('\n')
  .filter((l) => /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3} \d+ [A-Z]+ \S+ \[/.test(l)).length;

const t = testSetup('crash');
afterAll(() => t.cleanup());

describe('processor killed before it commits', () => {
  it('replays the uncommitted batch on restart: every event exactly once in Elasticsearch', async () => {
    const logs = join(t.dir, 'logs');
    mkdirSync(logs);
    cpSync(SAMPLE, join(logs, 'neutron-l3-agent.log'));
    await ensureTopics(t.cfg.kafka, [t.cfg.kafka.topics.logs, t.cfg.kafka.topics.dead_letter]);
    const producer = await TopicProducer.connect(t.cfg.kafka, 'openstack-logs');
    const collector = new OpenstackLogCollector(t.cfg.collectors.openstack_logs!, collectorContext('openstack-logs', producer, t.cfg.kafka.topics));
    let sent = await collector.pollOnce();
    await new Promise((r) => setTimeout(r, t.cfg.collectors.openstack_logs!.multiline_flush_ms + 50));
    sent += await collector.pollOnce(); // the file's last event, once the file has been quiet
    await producer.disconnect();
    expect(sent).toBe(EVENTS);

    const index = `${t.cfg.elasticsearch.indices.logs}-*`;
    const doomed = stackwatch(['run', '--role', 'processor', '--config', t.configFile], { STACKWATCH_FAILPOINTS: 'processor.before-commit=1' });
    const first = await doomed.exited;
    expect(first.signal).toBe('SIGKILL');
    const beforeRestart = await countDocs(t.es, index);
    expect(beforeRestart).toBeGreaterThan(0); // the batch reached Elasticsearch ...
    const uncommitted = await groupProgress(t.cfg.kafka, t.cfg.kafka.consumer_group, t.cfg.kafka.topics.logs);
    expect(uncommitted.reduce((s, p) => s + p.committed, 0)).toBe(0); // ... but its offsets were never committed

    const survivor = stackwatch(['run', '--role', 'processor', '--config', t.configFile]);
    await waitFor(
      'all offsets committed',
      async () => {
        const p = await groupProgress(t.cfg.kafka, t.cfg.kafka.consumer_group, t.cfg.kafka.topics.logs);
        return p.every((x) => x.committed === x.end) && p;
      },
      60_000,
    );
    survivor.child.kill('SIGTERM');
    const second = await survivor.exited;
    expect(second.code).toBe(0);

    expect(await countDocs(t.es, index)).toBe(EVENTS);
    // The documents of the killed batch were written twice, by id: version 2, not a second copy.
    const dups = await t.es.search({ index, size: 0, aggs: { ids: { terms: { field: 'event.id', min_doc_count: 2, size: 10 } } } });
    expect((dups.aggregations!.ids as { buckets: unknown[] }).buckets).toEqual([]);
    const v2 = await t.es.search({ index, size: 1, version: true, query: { match_all: {} } });
    expect(v2.hits.hits[0]._version).toBe(2);
  });
});
