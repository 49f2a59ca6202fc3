// Runs a polling collector on its node-cron schedule until the signal aborts: never two polls at once (a slow
// Zabbix or a hung `ceph` skips ticks instead of stacking them), each poll's emission handed to the emitter, a
// failed poll logged once and counted, and the next tick tries again. Resolves after the poll in flight (if
// any) has finished and the collector has closed what it opened.
import cron from 'node-cron';
import { z } from 'zod';
import { errorText } from '../core/log.ts';
import type { Emission, PollingCollector } from './collector.ts';
import type { Emitter } from './emitter.ts';

/** A node-cron schedule (seconds field first when there are six fields): refused at start-up if invalid. */
export const cronSchedule = z.string().refine((v) => cron.validate(v), { error: 'expected a cron expression like "*/30 * * * * *" (every 30 s)' });

/** A poll's messages are state, read again at the next tick: a few attempts, then the poll fails rather than
 * holding up the next ones. */
export const POLL_SEND_ATTEMPTS = 3;

/** One poll, emitted: resolves with what it read once Kafka has acknowledged it and the state is saved. A failed
 * poll's dead letters (a malformed answer) are sent on a best-effort basis before the error is thrown. */
export async function pollOnce<E extends Emission>(collector: PollingCollector<E>, emitter: Emitter, signal?: AbortSignal): Promise<E> {
  let emission: E;
  try {
    emission = await collector.poll(signal);
  } catch (err) {
    const rejected = signal?.aborted ? [] : (collector.failed?.(err) ?? []);
    if (rejected.length > 0) await emitter.emit({ records: [], rejected }, { attempts: 1 }).catch(() => {});
    throw err;
  }
  await emitter.emit(emission, { attempts: POLL_SEND_ATTEMPTS, ...(signal ? { signal } : {}) });
  return emission;
}

/** Polls at once, then at every tick of the schedule, until the signal aborts. */
export async function runScheduled(collector: PollingCollector, emitter: Emitter, signal: AbortSignal): Promise<void> {
  const { component: name, log, metrics } = emitter;
  let running: Promise<void> | undefined;
  let skipped = 0;
  const tick = () => {
    if (signal.aborted) return;
    if (running) {
      skipped++;
      metrics.discarded('poll_overlap');
      log.warn(`${name}: the previous poll is still running; this tick is skipped`, { skipped, hint: 'the schedule is shorter than a poll takes' });
      return;
    }
    running = pollOnce(collector, emitter, signal)
      .then(() => {})
      .catch((err) => {
        if (signal.aborted) return;
        metrics.error('poll');
        log.error(`${name}: poll failed: ${errorText(err)}; trying again at the next tick`, { hint: collector.hint });
      })
      .finally(() => {
        running = undefined;
      });
  };
  // Our own overlap guard (above) rather than node-cron's noOverlap, so a skipped tick is counted and logged.
  const task = cron.schedule(collector.schedule, tick, { name });
  try {
    tick();
    await new Promise<void>((resolve) => {
      if (signal.aborted) resolve();
      else signal.addEventListener('abort', () => resolve(), { once: true });
    });
  } finally {
    await task.stop();
    await task.destroy?.();
    await running;
    await collector.close?.();
  }
}
