// The admin calls that read a consumer group (the processor's lag, the adoption's member list): kafkajs does not
// wait out a group coordinator that is still loading after a broker start (GROUP_LOAD_IN_PROGRESS; a CI-like run's
// kill-replay failed on it), so core/kafka.ts retries those passing states, and only those: a topic that is not
// there yet is no reason to wait 15 s on every metrics scrape.
import kafkajs from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { coordinatorRetry } from '../../core/kafka.ts';
import { retry } from '../../core/retry.ts';

const protocolError = (type: string, code: number, retriable: boolean) => new kafkajs.KafkaJSProtocolError({ type, code, retriable, message: `${type} (test)` } as unknown as Error);

/** A call that fails `failures` times with `err`, then answers; how many times it was called. */
async function calls(err: Error, failures: number): Promise<{ calls: number; result?: string; thrown?: unknown }> {
  let n = 0;
  try {
    const result = await retry(async () => {
      n++;
      if (n <= failures) throw err;
      return 'answered';
    }, coordinatorRetry('test call'));
    return { calls: n, result };
  } catch (thrown) {
    return { calls: n, thrown };
  }
}

describe('coordinatorRetry', () => {
  it('waits out a coordinator that is loading or moving, then answers', async () => {
    for (const [type, code] of [
      ['GROUP_LOAD_IN_PROGRESS', 14],
      ['GROUP_COORDINATOR_NOT_AVAILABLE', 15],
      ['NOT_COORDINATOR_FOR_GROUP', 16],
    ] as const) {
      expect(await calls(protocolError(type, code, true), 1)).toEqual({ calls: 2, result: 'answered' });
    }
  }, 20_000);

  it('throws any other error at once, retriable or not (a topic not there yet, a refused request)', async () => {
    const unknownTopic = protocolError('UNKNOWN_TOPIC_OR_PARTITION', 3, true);
    expect(await calls(unknownTopic, 1)).toEqual({ calls: 1, thrown: unknownTopic });
    const plain = new Error('connect ECONNREFUSED 127.0.0.1:9092');
    expect(await calls(plain, 1)).toEqual({ calls: 1, thrown: plain });
  });

  it('gives up after six attempts, with the last error', async () => {
    const loading = protocolError('GROUP_LOAD_IN_PROGRESS', 14, true);
    expect(coordinatorRetry('x').maxAttempts).toBe(6);
    const got = await calls(loading, 100);
    expect(got).toEqual({ calls: 6, thrown: loading });
  }, 60_000);
});
