// The detection engine. Rules are data: one YAML file per rule in rules/, validated at start-up (errors name the
// file and the field). A rule names the detector that evaluates it; a stateful detector is one file in
// processors/ that exports `createDetector`, so adding a detector means adding a file.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseDocument } from 'yaml';
import { z } from 'zod';
import { ConfigError } from '../core/config.ts';
import { Severity, stableId, type Alert, type CephHealthEvent, type LogDocument, type MetricEvent, type ZabbixProblemEvent } from '../core/events.ts';

export const DEFAULT_RULES_DIR = new URL('../rules/', import.meta.url).pathname;

export const Rule = z.strictObject({
  id: z.string().regex(/^[a-z0-9][a-z0-9-]*$/, { error: 'expected a lower-case id like amqp-connection-lost' }),
  name: z.string().min(1),
  /** The file processors/<detector>.ts that evaluates this rule. */
  detector: z.string().regex(/^[a-z0-9-]+$/, { error: 'expected a detector file name like amqp-connection-lost' }),
  severity: Severity,
  runbook: z.string().min(1),
  /** Fields of an event that make one alert (one group): `host.name`, `service.name`, or a detector's own
   * capture (`code`, `broker`, …). */
  match_by: z.array(z.string().min(1)).min(1).default(['host.name', 'service.name']),
  /** Detector-specific settings, validated by the detector's own schema. */
  params: z.record(z.string(), z.unknown()).default({}),
});
export type Rule = z.infer<typeof Rule> & {
  /** The rule's file, for error messages. */
  file?: string;
};

export interface Detector {
  /** Logger prefixes this detector reads (`oslo.messaging._drivers`); absent: every event. The engine hands an
   * event only to the detectors that read its logger, so rules cost nothing on lines they do not care about. */
  loggers?: string[];
  /** Literal texts: an event whose message contains one of them reaches the detector whatever its logger. The
   * engine tests all detectors' literals in one scan. */
  literals?: string[];
  /** Called with every event (keep it cheap): for detectors that infer recovery from a service's other lines. */
  onAny?(doc: LogDocument): Alert[];
  /** Events arrive in order per file; time is the events' own time, never the wall clock. Absent: the
   * detector reads no logs. */
  onLog?(doc: LogDocument): Alert[];
  /** Metric names this detector reads (exact names); the engine hands it only those samples. */
  metrics?: string[];
  onMetric?(m: MetricEvent): Alert[];
  /** Ceph health events (the whole standing set of checks at one time). */
  onCephHealth?(e: CephHealthEvent): Alert[];
  /** Problems from the Zabbix collector, opened and resolved. */
  onZabbixProblem?(e: ZabbixProblemEvent): Alert[];
}
export type DetectorFactory = (rule: Rule) => Detector;

/** A rule parameter that is a regular expression: invalid ones are refused at start-up with the reason. */
export function regexParam(flags = '') {
  return z.string().transform((src, ctx) => {
    try {
      return new RegExp(src, flags);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: `not a valid regular expression: ${(err as Error).message}` });
      return z.NEVER;
    }
  });
}

/** Validates a rule's `params` with the detector's schema; errors name the rule file and the field. */
export function ruleParams<S extends z.ZodType>(rule: Rule, schema: S): z.infer<S> {
  const r = schema.safeParse(rule.params);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  throw new ConfigError(`${rule.file ?? rule.id}: params.${issue.path.join('.') || '(all)'}: ${issue.message}`);
}

/** The evidence times (ms) still inside a sliding window of `windowS` seconds ending at `now`, with `now` added:
 * its length is the count a threshold compares against. */
export function slide(times: number[], now: number, windowS: number): number[] {
  return [...times.filter((t) => now - t < windowS * 1000), now];
}

/** The value of a dotted field path of an event (`host.name`), as text. */
export function fieldValue(doc: LogDocument, path: string): string | undefined {
  let v: unknown = doc;
  for (const key of path.split('.')) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<string, unknown>)[key];
  }
  return v === undefined || v === null ? undefined : String(v);
}

export function loadRules(dir: string = DEFAULT_RULES_DIR): Rule[] {
  const files = readdirSync(dir).filter((f) => /\.ya?ml$/.test(f) && !f.endsWith('.test.yaml')).sort();
  return files.map((file) => {
    const path = join(dir, file);
    const doc = parseDocument(readFileSync(path, 'utf8'));
    if (doc.errors.length > 0) throw new ConfigError(`${path}: invalid YAML: ${doc.errors[0].message.split('\n')[0]}`);
    const result = Rule.safeParse(doc.toJS());
    if (!result.success) {
      const issue = result.error.issues[0];
      throw new ConfigError(`${path}: ${issue.path.join('.') || '(top level)'}: ${issue.message}`);
    }
    return { ...result.data, file: path };
  });
}

/** First segment of a logger name, the routing key: "oslo.messaging._drivers.impl_rabbit" → "oslo". */
function loggerRoot(logger: string): string {
  const dot = logger.indexOf('.');
  return dot < 0 ? logger : logger.slice(0, dot);
}

export class DetectionEngine {
  /** Detectors by the first segment of the logger prefixes they read. */
  private readonly byLogger = new Map<string, { prefixes: string[]; detector: Detector }[]>();
  /** Detectors that read every event, and those that want to hear of every event besides. */
  private readonly everything: Detector[] = [];
  private readonly watchers: Detector[] = [];
  /** Detectors that read every logger but only events with one of their literals, and one scan for them all. */
  private readonly byLiteral: { literals: string[]; detector: Detector }[] = [];
  private readonly anyLiteral?: RegExp;
  /** Detectors by the metric names they read. */
  private readonly byMetric = new Map<string, Detector[]>();
  private readonly health: Detector[] = [];
  private readonly problems: Detector[] = [];

  private constructor(detectors: Detector[]) {
    for (const d of detectors) {
      for (const name of d.onMetric ? (d.metrics ?? []) : []) this.byMetric.set(name, [...(this.byMetric.get(name) ?? []), d]);
      if (d.onCephHealth) this.health.push(d);
      if (d.onZabbixProblem) this.problems.push(d);
      if (!d.onLog) continue;
      if (d.onAny) this.watchers.push(d);
      if (d.literals) this.byLiteral.push({ literals: d.literals, detector: d });
      if (!d.loggers) {
        if (!d.literals) this.everything.push(d);
        continue;
      }
      for (const root of new Set(d.loggers.map(loggerRoot))) {
        const list = this.byLogger.get(root) ?? [];
        list.push({ prefixes: d.loggers.filter((p) => loggerRoot(p) === root), detector: d });
        this.byLogger.set(root, list);
      }
    }
    const all = this.byLiteral.flatMap((x) => x.literals);
    if (all.length > 0) this.anyLiteral = new RegExp(all.map((l) => l.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|'));
  }

  static async create(rules: Rule[]): Promise<DetectionEngine> {
    const detectors: Detector[] = [];
    for (const rule of rules) {
      let mod: { createDetector?: DetectorFactory };
      try {
        // A template with the file pattern, so the bundler (esbuild) includes every detector as a chunk.
        mod = await import(/* @vite-ignore */ `./${rule.detector}.ts`);
      } catch {
        throw new ConfigError(`${rule.file ?? rule.id}: detector: no detector named ${rule.detector} (processors/${rule.detector}.ts)`);
      }
      if (typeof mod.createDetector !== 'function') {
        throw new ConfigError(`${rule.file ?? rule.id}: detector: processors/${rule.detector}.ts exports no createDetector`);
      }
      detectors.push(mod.createDetector(rule));
    }
    return new DetectionEngine(detectors);
  }

  onLog(doc: LogDocument): Alert[] {
    const out: Alert[] = [];
    for (const d of this.watchers) out.push(...d.onAny!(doc));
    for (const d of this.everything) out.push(...d.onLog!(doc));
    const logger = doc.log.logger;
    const byLogger = logger === undefined ? undefined : this.byLogger.get(loggerRoot(logger));
    const reached = new Set<Detector>();
    if (byLogger) {
      for (const { prefixes, detector } of byLogger) {
        if (prefixes.some((p) => logger!.startsWith(p))) {
          reached.add(detector);
          out.push(...detector.onLog!(doc));
        }
      }
    }
    if (this.anyLiteral?.test(doc.message)) {
      for (const { literals, detector } of this.byLiteral) {
        if (!reached.has(detector) && literals.some((l) => doc.message.includes(l))) out.push(...detector.onLog!(doc));
      }
    }
    return out;
  }

  onMetric(m: MetricEvent): Alert[] {
    const readers = this.byMetric.get(m.metric.name);
    return readers ? readers.flatMap((d) => d.onMetric!(m)) : [];
  }

  onCephHealth(e: CephHealthEvent): Alert[] {
    return this.health.flatMap((d) => d.onCephHealth!(e));
  }

  onZabbixProblem(e: ZabbixProblemEvent): Alert[] {
    return this.problems.flatMap((d) => d.onZabbixProblem!(e));
  }
}

/** The stable id of an alert: rule + its group, so the same outage always carries the same id. */
export function alertId(rule: Rule, group: Record<string, string>): string {
  return stableId(rule.id, ...Object.keys(group).sort().map((k) => `${k}=${group[k]}`));
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
      group: t.group,
    },
    host: { name: t.host },
    service: { name: t.service },
    message: t.message,
    evidence: { event_ids: t.evidence },
  };
}

/** The id of an alert transition's document in the alerts index (a replay overwrites it). */
export function alertDocumentId(a: Alert): string {
  return stableId(a.alert.id, a.alert.started_at, a.alert.status);
}
