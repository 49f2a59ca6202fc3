// `stackwatch replay` on the real stack: a gzip backfill through Kafka into Elasticsearch, with progress on a
// non-terminal; replaying the same file again adds nothing.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { countDocs, REPO, stackwatch, testSetup } from './harness.ts';

const SAMPLE = join(REPO, 'samples/hotsos-2022/nova-compute.log.1.gz');
const EVENTS = gunzipSync(readFileSync(SAMPLE))
  .toString('utf8')
  .split('\n')
  .filter((l) => /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3} \d+ [A-Z]+ \S+ \[/.test(l)).length;

const t = testSetup('replay');
afterAll(() => t.cleanup());

async function replay() {
  const cli = stackwatch(['replay', '--config', t.configFile, SAMPLE]);
  const { code } = await cli.exited;
  expect(code, cli.stderr()).toBe(0);
  return cli.stderr();
}

describe('stackwatch replay', () => {
  it('backfills a gzip file into Elasticsearch, and a second replay adds nothing', async () => {
    const first = await replay();
    expect(first).toMatch(/^replay: 100% {2}\d+ events {2}[\d.]+\/[\d.]+ MiB {2}[\d,]+ events\/s {2}done in \d+:\d\d$/m);
    expect(first).toContain(`replay: ${EVENTS} events produced to ${t.cfg.kafka.topics.logs}`);
    expect(first).toContain('replay: everything is in Elasticsearch');
    const index = `${t.cfg.elasticsearch.indices.logs}-*`;
    expect(await countDocs(t.es, index)).toBe(EVENTS);

    await replay();
    expect(await countDocs(t.es, index)).toBe(EVENTS);
    const traces = await countDocs(t.es, index, { exists: { field: 'error.stack_trace' } });
    expect(traces).toBeGreaterThan(50);
    const amqp = await t.es.search({ index, size: 1, query: { match_phrase: { message: 'Connection failed: [Errno 111] ECONNREFUSED' } } });
    expect(amqp.hits.hits[0]._source).toMatchObject({ service: { name: 'nova-compute' }, host: { name: t.host }, log: { level: 'ERROR' } });
  });
});
