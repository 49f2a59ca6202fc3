// Exponential backoff with jitter for talking to services that may be down: a clear line per failed
// attempt, no crash loop, and an AbortSignal so shutdown is never stuck behind a sleep.
import { errorText, type Logger } from './log.ts';

export interface RetryOptions {
  /** What is being attempted, for the log line: "connect to Kafka 127.0.0.1:9092". */
  what: string;
  log: Logger;
  /** What an operator should check when it keeps failing. */
  hint?: string;
  initialDelayMs?: number;
  maxDelayMs?: number;
  /** Give up after this many attempts (default: never). */
  maxAttempts?: number;
  /** Errors that no retry can fix: thrown at once. */
  giveUp?: (err: unknown) => boolean;
  signal?: AbortSignal;
}

export class Aborted extends Error {
  constructor() {
    super('aborted');
  }
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new Aborted());
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(new Aborted());
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

export function backoffDelay(attempt: number, initialDelayMs: number, maxDelayMs: number): number {
  const base = Math.min(maxDelayMs, initialDelayMs * 2 ** (attempt - 1));
  return Math.round(base / 2 + (Math.random() * base) / 2);
}

export async function retry<T>(fn: (attempt: number) => Promise<T>, opts: RetryOptions): Promise<T> {
  const initial = opts.initialDelayMs ?? 500;
  const max = opts.maxDelayMs ?? 30_000;
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      if (opts.signal?.aborted) throw new Aborted();
      if (opts.maxAttempts !== undefined && attempt >= opts.maxAttempts) throw err;
      if (opts.giveUp?.(err)) throw err;
      const delay = backoffDelay(attempt, initial, max);
      opts.log.error(`${opts.what} failed: ${errorText(err)}; retrying in ${(delay / 1000).toFixed(1)}s`, {
        attempt,
        ...(opts.hint ? { hint: opts.hint } : {}),
      });
      await sleep(delay, opts.signal);
    }
  }
}
