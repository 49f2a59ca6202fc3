// Kafka or Elasticsearch unreachable at start: a clear error line per attempt and retries with backoff,
// not a crash loop; SIGTERM still stops it promptly.
import { afterAll, describe, expect, it } from 'vitest';
import { stackwatch, testSetup, waitFor } from './harness.ts';

const CLOSED = '127.0.0.1:9'; // discard port: nothing listens there
const t = testSetup('unreachable');
afterAll(() => t.cleanup());

async function expectRetrying(env: Record<string, string>, pattern: RegExp) {
  const cli = stackwatch(['run', '--role', 'processor', '--config', t.configFile], env);
  const lines = await waitFor('three failed attempts', async () => {
    const failed = cli.stderr().split('\n').filter((l) => pattern.test(l));
    return failed.length >= 3 && failed;
  }, 30_000);
  expect(cli.child.exitCode).toBeNull(); // still running, waiting for the service
  const entry = JSON.parse(lines[0]);
  expect(entry).toMatchObject({ level: 'error', attempt: 1 });
  expect(entry.msg).toMatch(/ECONNREFUSED.*retrying in \d+(\.\d)?s$/);
  expect(entry.hint).toBeTruthy();
  expect(cli.stderr()).not.toMatch(/^\s+at /m); // no stack traces
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
