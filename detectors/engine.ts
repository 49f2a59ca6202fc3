// The detection engine: one detector per rule (made by the detector the rule names, detectors/index.ts), and one
// entry, `on(event)`, that hands an event to the detectors that accept its kind. Routing is what keeps many rules
// cheap: a log event reaches only the detectors of its logger (a map by the logger's first segment) or of a
// literal it contains (one scan for all detectors' literals); a metric sample only those that read its name.
// Detector state is bounded (detectors/state.ts).
import { ConfigError } from '../core/config.ts';
import type { Alert, EventKind, LogEvent, MetricSample, PipelineEvent } from '../core/events.ts';
import { logger } from '../core/log.ts';
import { componentMetrics } from '../core/metrics.ts';
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
    return new DetectionEngine(detectors, regexes);
  }

  /** An engine of detectors made elsewhere (tests, tools), by rule id. */
  static of(detectors: Record<string, Detector>): DetectionEngine {
    return new DetectionEngine(new Map(Object.entries(detectors)));
  }

  /** Entries of state each rule's detector holds now. */
  stateSizes(): Map<string, number> {
    const out = new Map<string, number>();
    for (const [id, d] of this.byRule) if (d.state) out.set(id, d.state());
    return out;
  }

  /** The alert transitions an event causes, from the detectors that accept its kind. */
  on(event: PipelineEvent): Alert[] {
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
