// The detection engine: one detector per rule (made by the detector the rule names, detectors/index.ts), and one
// entry, `on(event)`, that hands an event to the detectors that accept its kind. Routing is what keeps many rules
// cheap: a log event reaches only the detectors of its logger (a map by the logger's first segment) or of a
// literal it contains (one scan for all detectors' literals); a metric sample only those that read its name.
// Detector state is bounded (detectors/state.ts), and can be checkpointed: `snapshot()` gives every rule's as JSON
// data, `restore()` takes it back in a new engine of the same rules, which then goes on as the old one would have.
import { z } from 'zod';
import { ConfigError } from '../core/config.ts';
import type { Alert, EventKind, LogEvent, MetricSample, PipelineEvent } from '../core/events.ts';
import { logger } from '../core/log.ts';
import { componentMetrics } from '../core/metrics.ts';
import { dottedIssue } from '../core/schema.ts';
import type { Detector } from './detector.ts';
import { DETECTORS } from './index.ts';
import { collectingRegexes, ruleParams, type Rule, type RuleRegex } from './rules.ts';

/** First segment of a logger name, the routing key: "oslo.messaging._drivers.impl_rabbit" → "oslo". */
function loggerRoot(logger: string): string {
  const dot = logger.indexOf('.');
  return dot < 0 ? logger : logger.slice(0, dot);
}

/** An empty list to spread (never returned: callers may add to what they get). */
const NONE: never[] = [];

/** A rule's detector state in an engine's snapshot: the detector that holds it, and its state (Detector.snapshot). */
const RuleState = z.strictObject({ detector: z.string(), v: z.number(), data: z.unknown() });
export type RuleState = z.infer<typeof RuleState>;

/** What `restore` did with a snapshot: the rules whose state it took, and those whose state it discarded, and why
 * (those rules' detectors start empty). */
export interface Restored {
  restored: string[];
  discarded: { rule: string; reason: string }[];
}

/** The detector a rule names, made with the rule's params; errors name the rule file and the field. */
export function createDetector(rule: Rule): Detector {
  const def = Object.hasOwn(DETECTORS, rule.detector) ? DETECTORS[rule.detector] : undefined;
  if (!def) throw new ConfigError(`${rule.file ?? rule.id}: detector: no detector named ${rule.detector} (detectors/${rule.detector}.ts)`);
  const params = ruleParams(rule, def.params);
  return def.create(params, { rule, log: logger(`detector.${def.name}`), metrics: componentMetrics(`detector.${def.name}`) });
}

export class DetectionEngine {
  /** Log detectors by the first segment of the logger prefixes they read. */
  private readonly byLogger = new Map<string, { prefixes: string[]; detector: Detector }[]>();
  /** Log detectors that read every event, and those that want to hear of every event besides. */
  private readonly everything: Detector[] = [];
  private readonly watchers: Detector[] = [];
  /** Log detectors that read every logger but only events with one of their literals, and one scan for them all. */
  private readonly byLiteral: { literals: string[]; detector: Detector }[] = [];
  private readonly anyLiteral?: RegExp;
  /** Metric detectors by the metric names they read, and those that read every sample. */
  private readonly byMetric = new Map<string, Detector[]>();
  private readonly allMetrics: Detector[] = [];
  /** Detectors of the other kinds (health, inventory), by kind. */
  private readonly byKind = new Map<EventKind, Detector[]>();

  private constructor(
    /** Each rule's detector (its id → the detector), for the state the rules hold. */
    private readonly byRule: Map<string, Detector>,
    /** The rules' regexes, where they are and which path runs them. */
    readonly regexes: RuleRegex[] = [],
    /** The name of each rule's detector (its id → the name), which a snapshot records. */
    private readonly detectorNames = new Map<string, string>(),
  ) {
    for (const d of byRule.values()) {
      for (const kind of new Set(d.accepts.kinds)) {
        if (kind === 'log') this.routeLogs(d);
        else if (kind === 'metric') {
          if (!d.accepts.metrics) this.allMetrics.push(d);
          for (const name of new Set(d.accepts.metrics)) this.byMetric.set(name, [...(this.byMetric.get(name) ?? []), d]);
        } else this.byKind.set(kind, [...(this.byKind.get(kind) ?? []), d]);
      }
    }
    const all = this.byLiteral.flatMap((x) => x.literals);
    if (all.length > 0) this.anyLiteral = new RegExp(all.map((l) => l.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|'));
  }

  private routeLogs(d: Detector): void {
    const { loggers, literals } = d.accepts;
    if (d.onAny) this.watchers.push(d);
    if (literals) this.byLiteral.push({ literals, detector: d });
    if (!loggers) {
      if (!literals) this.everything.push(d);
      return;
    }
    for (const root of new Set(loggers.map(loggerRoot))) {
      const list = this.byLogger.get(root) ?? [];
      list.push({ prefixes: loggers.filter((p) => loggerRoot(p) === root), detector: d });
      this.byLogger.set(root, list);
    }
  }

  /** The rules' detectors; `fastPath: false` runs every regex on the linear engines, proved or not (to measure them). */
  static async create(rules: Rule[], opts: { fastPath?: boolean } = {}): Promise<DetectionEngine> {
    const detectors = new Map<string, Detector>();
    const regexes: RuleRegex[] = [];
    for (const rule of rules) {
      if (detectors.has(rule.id)) throw new ConfigError(`${rule.file ?? rule.id}: id: a second rule with the id ${rule.id}`);
      detectors.set(
        rule.id,
        collectingRegexes(regexes, opts.fastPath ?? true, () => createDetector(rule)),
      );
    }
    return new DetectionEngine(detectors, regexes, new Map(rules.map((r) => [r.id, r.detector])));
  }

  /** An engine of detectors made elsewhere (tests, tools), by rule id (their snapshots name the rule id as the
   * detector: no rule says which it is). */
  static of(detectors: Record<string, Detector>): DetectionEngine {
    return new DetectionEngine(new Map(Object.entries(detectors)));
  }

  /** Every rule's detector state, by rule id, as JSON data, for a checkpoint; rules whose detector keeps none are
   * absent. A copy: later events do not change it. */
  snapshot(): Record<string, RuleState> {
    const out: Record<string, RuleState> = {};
    for (const [id, d] of this.byRule) if (d.snapshot) out[id] = { detector: this.detectorNames.get(id) ?? id, ...d.snapshot() };
    return out;
  }

  /**
   * Takes back a snapshot (as `snapshot` gave it, read back from JSON) into this engine, just created from the rules
   * of now: each rule's detector takes its state, or discards it with the reason (an unknown version, data that
   * does not parse, a rule now of another detector or gone from the rules). A rule the snapshot lacks, and one whose
   * state was discarded, starts empty. Never throws on what the snapshot holds.
   */
  restore(snapshot: unknown): Restored {
    const out: Restored = { restored: [], discarded: [] };
    if (snapshot === null || typeof snapshot !== 'object' || Array.isArray(snapshot)) {
      out.discarded.push({ rule: '*', reason: `the snapshot is not an object of rule states by rule id (got ${Array.isArray(snapshot) ? 'an array' : String(snapshot)})` });
      return out;
    }
    for (const [id, value] of Object.entries(snapshot)) {
      const discard = (reason: string) => out.discarded.push({ rule: id, reason: `${id}: ${reason}` });
      const d = this.byRule.get(id);
      const name = this.detectorNames.get(id) ?? id;
      const parsed = RuleState.safeParse(value);
      if (!d) discard('no such rule any more (removed or renamed): its state is dropped');
      else if (!parsed.success) discard(`state: ${dottedIssue(parsed.error, '(top level)')}`);
      else if (parsed.data.detector !== name) discard(`state of detector ${parsed.data.detector}, but the rule is now of detector ${name}`);
      else if (!d.restore) discard(`detector ${name} keeps no state`);
      else {
        let reason: string | undefined;
        try {
          reason = d.restore({ v: parsed.data.v, data: parsed.data.data });
        } catch (err) {
          reason = `${id}: restore failed: ${(err as Error).message}`;
        }
        if (reason === undefined) out.restored.push(id);
        else out.discarded.push({ rule: id, reason });
      }
    }
    return out;
  }

  /** Entries of state each rule's detector holds now. */
  stateSizes(): Map<string, number> {
    const out = new Map<string, number>();
    for (const [id, d] of this.byRule) if (d.state) out.set(id, d.state());
    return out;
  }

  /** The newest event time seen, as its text (compared as text: every event's is an ISO time in UTC), and how far
   * behind the wall clock it was when it came (ms). */
  private newest = '';
  private newestLagMs: number | undefined;

  /** How far behind the wall clock the newest event seen was when it came (ms): seconds for live data, more for old
   * data (a replay, a backfill, a backlog read after an outage); undefined before the first event. */
  get lag(): number | undefined {
    return this.newestLagMs;
  }

  private sawTime(at: string): void {
    if (at <= this.newest) return;
    const t = Date.parse(at);
    if (!Number.isFinite(t)) return;
    this.newest = at;
    this.newestLagMs = Date.now() - t;
  }

  /** The wall clock's turn: the transitions of the detectors that watch for what does not come. */
  tick(now: number): Alert[] {
    const out: Alert[] = [];
    for (const d of this.byRule.values()) if (d.tick) out.push(...d.tick(now));
    return out;
  }

  /** The alert transitions an event causes, from the detectors that accept its kind. */
  on(event: PipelineEvent): Alert[] {
    this.sawTime(event.kind === 'log' ? event.doc['@timestamp'] : event.kind === 'metric' ? event.sample['@timestamp'] : event['@timestamp']);
    switch (event.kind) {
      case 'log':
        return this.onLog(event);
      case 'metric':
        return this.onMetric(event);
      default: {
        const readers = this.byKind.get(event.kind);
        return readers ? readers.flatMap((d) => d.on(event)) : [];
      }
    }
  }

  private onLog(event: LogEvent): Alert[] {
    const doc = event.doc;
    const out: Alert[] = [];
    for (const d of this.watchers) out.push(...d.onAny!(doc));
    for (const d of this.everything) out.push(...d.on(event));
    const logger = doc.log.logger;
    const byLogger = logger === undefined ? undefined : this.byLogger.get(loggerRoot(logger));
    const reached = new Set<Detector>();
    if (byLogger) {
      for (const { prefixes, detector } of byLogger) {
        if (prefixes.some((p) => logger!.startsWith(p))) {
          reached.add(detector);
          out.push(...detector.on(event));
        }
      }
    }
    if (this.anyLiteral?.test(doc.message)) {
      for (const { literals, detector } of this.byLiteral) {
        if (!reached.has(detector) && literals.some((l) => doc.message.includes(l))) out.push(...detector.on(event));
      }
    }
    return out;
  }

  private onMetric(event: MetricSample): Alert[] {
    const readers = this.byMetric.get(event.sample.metric.name);
    if (!readers && this.allMetrics.length === 0) return [];
    return [...this.allMetrics, ...(readers ?? NONE)].flatMap((d) => d.on(event));
  }
}
