// The detector contract. A detector is one file in detectors/ that exports a definition: its name (what a rule's
// `detector:` says), the zod schema of its rules' `params`, and `create(params, context)`, which makes the
// detector of one rule. The registry (detectors/index.ts) lists the definitions; the engine (detectors/engine.ts)
// validates each rule's params with its detector's schema and hands the detector only the events it accepts.
import type { z } from 'zod';
import { stableId, type Alert, type EventKind, type LogDocument, type PipelineEvent } from '../core/events.ts';
import type { Logger } from '../core/log.ts';
import type { ComponentMetrics } from '../core/metrics.ts';
import type { Rule } from './rules.ts';

/** A detector's state as plain JSON data, with the version of its shape. */
export interface DetectorState {
  /** The version of `data`'s shape (each detector file's STATE_VERSION): a detector refuses a shape it does not
   * know rather than guess at it. */
  v: number;
  data: unknown;
}

/** What a detector reads. The engine routes by it, so rules cost nothing on events they do not care about. */
export interface Accepts {
  /** The event kinds the engine hands the detector (at least one). */
  kinds: readonly EventKind[];
  /** Logger prefixes of the log events it reads (`oslo.messaging._drivers`); absent: every logger (or, with
   * `literals`, only events that contain one of them). */
  loggers?: string[];
  /** Literal texts: a log event whose message contains one of them reaches the detector whatever its logger. The
   * engine tests all detectors' literals in one scan. */
  literals?: string[];
  /** Metric names it reads (exact names); the engine hands it only those samples. */
  metrics?: string[];
}

export interface Detector {
  accepts: Accepts;
  /** An event of a kind it accepts (a detector of one kind declares the parameter as that kind's event, e.g.
   * `on({ doc }: LogEvent)`). Events arrive in order per source; time is the events' own time, never the wall
   * clock. */
  on(event: PipelineEvent): Alert[];
  /** Called with every log event, routed or not (keep it cheap): for detectors that infer recovery from a
   * service's other lines. */
  onAny?(doc: LogDocument): Alert[];
  /** Entries of state the detector holds now (bounded by the rule's `state`; counted on /metrics). */
  state?(): number;
  /** The wall clock's turn (ms), every second in a running processor: for what only the absence of events shows
   * (a service gone silent). Never called by `stackwatch detect`. */
  tick?(now: number): Alert[];
  /** Everything the detector holds (open alerts, windows, evidence, counters), as JSON-serialisable data. A running
   * processor checkpoints it, so that a new process goes on where the old one stopped: the same transitions, none
   * lost, none sent twice. It is a copy: later events do not change it. */
  snapshot?(): DetectorState;
  /** Takes back what snapshot() returned, in a detector just made from the same rule. Returns undefined when it took it,
   *  or why it discarded it (an unknown version, data that does not parse): the detector then starts empty. The
   *  reason names the rule and the field; nothing of a discarded state is kept. */
  restore?(state: DetectorState): string | undefined;
}

/** What a detector is made with besides its params: its rule, and the logger and metrics every component has. */
export interface DetectorContext {
  rule: Rule;
  log: Logger;
  metrics: ComponentMetrics;
}

export interface DetectorDefinition<S extends z.ZodType = z.ZodType> {
  /** The name rules use in `detector:`; the file's name. */
  name: string;
  /** The schema of its rules' `params`; errors name the rule file and the field (`params.fire`). */
  params: S;
  /** Params of a minimal rule, for the compliance test of a detector that no shipped rule uses. */
  example?: Record<string, unknown>;
  create(params: z.infer<S>, context: DetectorContext): Detector;
}

/** A detector definition, its create typed by its params schema. */
export function defineDetector<S extends z.ZodType>(d: DetectorDefinition<S>): DetectorDefinition<S> {
  return d;
}

/** The stable id of an alert: rule + its group, so the same outage always carries the same id. */
export function alertId(rule: Rule, group: Record<string, string>): string {
  return stableId(
    rule.id,
    ...Object.keys(group)
      .sort()
      .map((k) => `${k}=${group[k]}`),
  );
}

export interface TransitionInput {
  status: 'firing' | 'resolved';
  group: Record<string, string>;
  at: string;
  startedAt: string;
  host: string;
  service: string;
  message: string;
  evidence: string[];
  /** Context beside the group (not part of the alert's identity): what incident rules may group by. */
  labels?: Record<string, string>;
}

export function alertTransition(rule: Rule, t: TransitionInput): Alert {
  const resolved = t.status === 'resolved';
  return {
    '@timestamp': t.at,
    rule: { id: rule.id, name: rule.name },
    alert: {
      id: alertId(rule, t.group),
      status: t.status,
      severity: rule.severity,
      started_at: t.startedAt,
      ...(resolved ? { ended_at: t.at, duration_s: (Date.parse(t.at) - Date.parse(t.startedAt)) / 1000 } : {}),
      runbook: rule.runbook,
      group: { ...t.group },
      ...(t.labels ? { labels: { ...t.labels } } : {}),
    },
    host: { name: t.host },
    service: { name: t.service },
    message: t.message,
    // Copies: detectors keep adding to their evidence lists and groups, and an alert must stay what it was when it
    // was raised (the processor indexes a batch's alerts after the whole batch went through the detectors).
    evidence: { event_ids: [...t.evidence] },
  };
}

/** The id of an alert transition's document in the alerts index (a replay overwrites it). */
export function alertDocumentId(a: Alert): string {
  return stableId(a.alert.id, a.alert.started_at, a.alert.status);
}
