// The per-event time budget. Every regex that meets a line runs in linear time, and a 1 MiB line built to be
// hostile parses and runs through every shipped rule in well under a second; an event that still takes longer
// (a detector's bug, a parser's regression, a rule nobody proved) is the evidence that a promise broke. JavaScript
// cannot stop a running regex, so the budget does not cut the work short: it measures it (parse + detect) and
// reports the event instead of letting it pass unseen: counted (stackwatch_component_errors_total{stage=
// "time_budget"}) and sent to the dead-letter topic with the time it took, by the processor; reported on stderr by
// `stackwatch detect`. The event itself is still indexed and its alerts still sent: dropping a real alert
// because it was slow would be the worse failure.
//
// The default, 1000 ms, is the bound the issue sets for the worst 1 MiB line. Lower would report legitimate
// events on a busy machine (a GC pause costs tens of milliseconds), and a spurious dead letter is a false alarm.
//
// The clock is the process's CPU time (user + system), not the wall clock: what a non-linear regex costs is CPU,
// while the wall clock also counts the time slices other processes took. On a machine with two cores and a load
// of ten (a CI run: Kafka, Elasticsearch, a live OpenStack and a dozen test processes), an event that cost 3 ms of
// CPU can span more than a second of wall time, and the wall clock once dead-lettered such an event. Reading the CPU
// clock around every event cost the processor a fifth of its CPU (a system call, 2 µs, four times an event), so
// the processor times its batches as runs (BudgetRun): the wall clock per event, the CPU clock only after a slow one.
import type { Alert, RawLogEvent } from '../core/events.ts';
import type { DetectionEngine } from '../detectors/engine.ts';
import { parseLogEvent, type ParseOptions } from './parse-log.ts';

export const DEFAULT_EVENT_BUDGET_MS = 1000;

/** Milliseconds from some origin; tests pass a fake one. */
export type Clock = () => number;

/** This process's CPU time (user + system) in milliseconds: about 0.7 µs a call. */
export const cpuClock: Clock = () => {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
};

/** Milliseconds of the wall clock: about 0.06 µs a call, against 2 µs for the CPU clock (a getrusage system call). */
export const wallClock: Clock = () => performance.now();

export class TimeBudget {
  /** The wall clock of runs (see run()); a budget given a clock of its own (a test's) uses it for both. */
  private readonly wall: Clock;

  constructor(
    readonly budgetMs: number = DEFAULT_EVENT_BUDGET_MS,
    private readonly clock: Clock = cpuClock,
    /** Where the budget is set, for the reason. */
    private readonly setting = 'processor.event_time_budget_ms',
    wall?: Clock,
  ) {
    this.wall = wall ?? (clock === cpuClock ? wallClock : clock);
  }

  /** Runs `fn`, with the milliseconds of CPU it took (two readings of the CPU clock). */
  time<T>(fn: () => T): { value: T; ms: number } {
    const start = this.clock();
    const value = fn();
    return { value, ms: this.clock() - start };
  }

  /** A run of many timed events in one go (a batch's decoding, its detection), for which reading the CPU clock
   * twice per event would cost more than the events themselves (it was a fifth of the processor's CPU time). */
  run(): BudgetRun {
    return new BudgetRun(this.clock, this.wall, this.budgetMs / 2);
  }

  over(ms: number): boolean {
    return ms > this.budgetMs;
  }

  /** Why an event is reported: what it took against the budget, and where the budget is set. */
  reason(ms: number): string {
    return `over the per-event time budget: parsing and detection took ${Math.round(ms)} ms of CPU, more than ${this.setting} (${this.budgetMs} ms); the event was indexed and its alerts sent, but a line should never take this long: a rule or parser is not linear on it`;
  }
}

/** Events timed by the wall clock, the CPU clock read only after an event whose wall time was over half the
 * budget (a candidate; an event over the budget has a part, its decoding or its detection, that is). A
 * candidate's CPU time is then bounded from both sides: at most its wall time (one thread), and at least the CPU
 * time since the last reading less the wall time of everything else since then (which cannot have used more CPU
 * than wall time). It is given the lower bound: an event that used the CPU for longer than the budget shows it
 * (what else ran since the last reading takes microseconds an event), one that spent its wall time waiting for a
 * core (a loaded machine) does not. The other events are given their wall time, which is under half the budget. */
export class BudgetRun {
  private cpuMark: number;
  private wallMark: number;

  constructor(
    private readonly cpuClock: Clock,
    private readonly wall: Clock,
    private readonly candidateMs: number,
  ) {
    this.cpuMark = cpuClock();
    this.wallMark = wall();
  }

  /** Runs `fn`, with the milliseconds of CPU it took (as above). */
  time<T>(fn: () => T): { value: T; ms: number } {
    const start = this.wall();
    const value = fn();
    const end = this.wall();
    const ms = end - start;
    if (ms <= this.candidateMs) return { value, ms };
    const cpu = this.cpuClock();
    const lower = cpu - this.cpuMark - (end - this.wallMark - ms);
    [this.cpuMark, this.wallMark] = [cpu, end];
    return { value, ms: Math.min(ms, Math.max(0, lower)) };
  }
}
/** `stackwatch detect`'s step for one event: parse, detect, and the reason to report when the two took more than
 * the budget (undefined within it). */
export function detectTimed(engine: DetectionEngine, raw: RawLogEvent, opts: ParseOptions, budget: TimeBudget): { alerts: Alert[]; overBudget?: string } {
  const { value: alerts, ms } = budget.time(() => engine.on({ kind: 'log', doc: parseLogEvent(raw, opts) }));
  return budget.over(ms) ? { alerts, overBudget: budget.reason(ms) } : { alerts };
}
