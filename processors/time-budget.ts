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
// CPU can span more than a second of wall time, and the wall clock once dead-lettered such an event.
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

export class TimeBudget {
  constructor(
    readonly budgetMs: number = DEFAULT_EVENT_BUDGET_MS,
    private readonly clock: Clock = cpuClock,
    /** Where the budget is set, for the reason. */
    private readonly setting = 'processor.event_time_budget_ms',
  ) {}

  /** Runs `fn`, with the milliseconds it took. */
  time<T>(fn: () => T): { value: T; ms: number } {
    const start = this.clock();
    const value = fn();
    return { value, ms: this.clock() - start };
  }

  over(ms: number): boolean {
    return ms > this.budgetMs;
  }

  /** Why an event is reported: what it took against the budget, and where the budget is set. */
  reason(ms: number): string {
    return `over the per-event time budget: parsing and detection took ${Math.round(ms)} ms of CPU, more than ${this.setting} (${this.budgetMs} ms); the event was indexed and its alerts sent, but a line should never take this long: a rule or parser is not linear on it`;
  }
}

/** `stackwatch detect`'s step for one event: parse, detect, and the reason to report when the two took more than
 * the budget (undefined within it). */
export function detectTimed(engine: DetectionEngine, raw: RawLogEvent, opts: ParseOptions, budget: TimeBudget): { alerts: Alert[]; overBudget?: string } {
  const { value: alerts, ms } = budget.time(() => engine.on({ kind: 'log', doc: parseLogEvent(raw, opts) }));
  return budget.over(ms) ? { alerts, overBudget: budget.reason(ms) } : { alerts };
}
