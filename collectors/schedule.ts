// Runs a collector's poll on its node-cron schedule until the signal aborts: never two polls at once (a slow
// Zabbix or a hung `ceph` skips ticks instead of stacking them), a failed poll is logged once and counted, and
// the next tick tries again. Resolves after the poll in flight (if any) has finished.
import cron from 'node-cron';
import { errorText, type Logger } from '../core/log.ts';
import type { ComponentMetrics } from '../core/metrics.ts';

export interface ScheduleOptions {
  schedule: string;
  name: string;
  log: Logger;
  metrics: ComponentMetrics;
  signal: AbortSignal;
  /** Poll once at start, not only at the first tick. */
  immediately?: boolean;
  /** What an operator should check when a poll fails. */
  hint: string;
}

export async function runScheduled(poll: (signal: AbortSignal) => Promise<void>, opts: ScheduleOptions): Promise<void> {
  let running: Promise<void> | undefined;
  let skipped = 0;
  const tick = () => {
    if (opts.signal.aborted) return;
    if (running) {
      skipped++;
      opts.metrics.discarded('poll_overlap');
      opts.log.warn(`${opts.name}: the previous poll is still running; this tick is skipped`, { skipped, hint: 'the schedule is shorter than a poll takes' });
      return;
    }
    running = poll(opts.signal)
      .catch((err) => {
        if (opts.signal.aborted) return;
        opts.metrics.error('poll');
        opts.log.error(`${opts.name}: poll failed: ${errorText(err)}; trying again at the next tick`, { hint: opts.hint });
      })
      .finally(() => {
        running = undefined;
      });
  };
  // Our own overlap guard (above) rather than node-cron's noOverlap, so a skipped tick is counted and logged.
  const task = cron.schedule(opts.schedule, tick, { name: opts.name });
  if (opts.immediately !== false) tick();
  await new Promise<void>((resolve) => {
    if (opts.signal.aborted) resolve();
    else opts.signal.addEventListener('abort', () => resolve(), { once: true });
  });
  await task.stop();
  await task.destroy?.();
  await running;
}
