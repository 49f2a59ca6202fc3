// core/retry.ts: what every call to a service that may be down goes through — one log line per failed attempt,
// backoff, no end unless told (maxAttempts, giveUp, the shutdown signal) — and errorText for kafkajs's
// per-topic aggregate errors.
import { describe, expect, it } from 'vitest';
import { errorText, logger, setLogSink } from '../../core/log.ts';
import { Aborted, retry } from '../../core/retry.ts';

function collecting(): { lines: () => any[]; restore: () => void } {
  const out: string[] = [];
  const restore = setLogSink((l) => out.push(l));
  return { lines: () => out.map((l) => JSON.parse(l)), restore };
}

const fast = { initialDelayMs: 1, maxDelayMs: 2 };

describe('retry', () => {
  it('tries again until the call succeeds, logging each failure with its attempt and the hint', async () => {
    const logs = collecting();
    try {
      let calls = 0;
      const v = await retry(
        async () => {
          if (++calls < 3) throw new Error('connect ECONNREFUSED 127.0.0.1:9');
          return 'ok';
        },
        { what: 'connect to X', log: logger('test'), hint: 'check X', ...fast },
      );
      expect({ v, calls }).toEqual({ v: 'ok', calls: 3 });
      expect(logs.lines().map((l) => [l.attempt, l.msg.replace(/[\d.]+s$/, 'Ns'), l.hint])).toEqual([
        [1, 'connect to X failed: connect ECONNREFUSED 127.0.0.1:9; retrying in Ns', 'check X'],
        [2, 'connect to X failed: connect ECONNREFUSED 127.0.0.1:9; retrying in Ns', 'check X'],
      ]);
    } finally {
      logs.restore();
    }
  });

  it('gives up at once on an error giveUp names, and after maxAttempts on any other', async () => {
    const logs = collecting();
    try {
      let calls = 0;
      const refused = Object.assign(new Error('Topic authorization failed'), { permanent: true });
      await expect(
        retry(
          async () => {
            calls++;
            throw refused;
          },
          { what: 'create topics', log: logger('test'), giveUp: (e) => (e as { permanent?: boolean }).permanent === true, ...fast },
        ),
      ).rejects.toBe(refused);
      expect(calls).toBe(1);
      expect(logs.lines()).toEqual([]); // nothing said "retrying"

      calls = 0;
      await expect(
        retry(
          async () => {
            calls++;
            throw new Error('timed out');
          },
          { what: 'x', log: logger('test'), maxAttempts: 4, ...fast },
        ),
      ).rejects.toThrow('timed out');
      expect(calls).toBe(4);
    } finally {
      logs.restore();
    }
  });

  it('stops waiting when the shutdown signal fires', async () => {
    const logs = collecting();
    try {
      const ctl = new AbortController();
      const pending = retry(
        async () => {
          throw new Error('down');
        },
        { what: 'x', log: logger('test'), initialDelayMs: 60_000, signal: ctl.signal },
      );
      setTimeout(() => ctl.abort(), 20);
      await expect(pending).rejects.toBeInstanceOf(Aborted);
    } finally {
      logs.restore();
    }
  });
});

describe('errorText of kafkajs aggregate errors', () => {
  it('names each topic\'s own error, not just "Topic creation errors"', () => {
    // The shape of kafkajs's KafkaJSAggregateError of KafkaJSCreateTopicError (not a JavaScript AggregateError).
    const err = Object.assign(new Error('Topic creation errors'), {
      errors: [
        Object.assign(new Error('The request attempted to perform an operation on an invalid topic'), { topic: 'bad topic', type: 'INVALID_TOPIC_EXCEPTION' }),
        Object.assign(new Error('Topic authorization failed'), { topic: 'other' }),
      ],
    });
    expect(errorText(err)).toBe('Topic creation errors: bad topic: The request attempted to perform an operation on an invalid topic; other: Topic authorization failed');
  });
});
