// Kafka or Elasticsearch unreachable at start: a clear error line per attempt and retries with backoff,
// not a crash loop; meanwhile the status server answers (alive, not ready: starting); SIGTERM still stops it
// promptly.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { freePort } from '../../bench/measure.ts';
import { stackwatch, testSetup, waitFor } from './harness.ts';

const CLOSED = '127.0.0.1:9'; // discard port: nothing listens there
const t = testSetup('unreachable');
afterAll(() => t.cleanup());

async function expectRetrying(env: Record<string, string>, pattern: RegExp) {
  const port = await freePort();
  const configFile = join(t.dir, `unreachable-${port}.yaml`);
  writeFileSync(configFile, stringify({ ...t.raw, status_server: { listen: `127.0.0.1:${port}` } }));
  const cli = stackwatch(['run', '--role', 'processor', '--config', configFile], env);
  const lines = await waitFor(
    'three failed attempts',
    async () => {
      const failed = cli
        .stderr()
        .split('\n')
        .filter((l) => pattern.test(l));
      return failed.length >= 3 && failed;
    },
    30_000,
  );
  expect(cli.child.exitCode).toBeNull(); // still running, waiting for the service
  const entry = JSON.parse(lines[0]);
  expect(entry).toMatchObject({ level: 'error', attempt: 1 });
  expect(entry.msg).toMatch(/ECONNREFUSED.*retrying in \d+(\.\d)?s$/);
  expect(entry.hint).toBeTruthy();
  expect(cli.stderr()).not.toMatch(/^\s+at /m); // no stack traces
  // Alive, and not ready, saying why: what a Kubernetes probe or a load balancer reads meanwhile.
  expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
  const ready = await fetch(`http://127.0.0.1:${port}/readyz`);
  expect({ status: ready.status, body: await ready.text() }).toEqual({ status: 503, body: 'run: starting: connecting to Kafka and Elasticsearch\n' });
  cli.child.kill('SIGTERM');
  const { code } = await cli.exited;
  expect(code).not.toBeNull(); // exited by itself on SIGTERM, not killed
}

describe('services unreachable at start', () => {
  it('Elasticsearch: retries with backoff and says which URL', async () => {
    await expectRetrying({ STACKWATCH_ES_URL: `http://${CLOSED}` }, /connect to Elasticsearch http:\/\/127\.0\.0\.1:9 failed/);
  });

  it('Kafka: retries with backoff and says which brokers', async () => {
    await expectRetrying({ STACKWATCH_KAFKA_BROKERS: CLOSED }, /\(Kafka 127\.0\.0\.1:9\) failed/);
  });
});
