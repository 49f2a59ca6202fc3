// The detection engine. Rules are data: one YAML file per rule in rules/, validated at start-up (errors name the
// file and the field). A rule names the detector that evaluates it; a stateful detector is one file in
// processors/ that exports `createDetector`, so adding a detector means adding a file.
//
// Rule regexes run in time linear in the line (core/regex.ts): irregexp for those a proofs file lists as proved
// by recheck (`stackwatch rules prove`), RE2 and V8's linear engine for the others; what cannot be linear
// (lookaround, backreferences) is refused at load. Detector state is bounded (processors/state.ts).
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseDocument } from 'yaml';
import { z } from 'zod';
import { ConfigError } from '../core/config.ts';
import { Severity, stableId, type Alert, type CephHealthEvent, type LogDocument, type MetricEvent, type ZabbixProblemEvent } from '../core/events.ts';
import { logger } from '../core/log.ts';
import { LinearRegex, LinearRegexError, proofKey } from '../core/regex.ts';
import { StateLimits } from './state.ts';

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
  /** Bounds of what the detector remembers for this rule (processors/state.ts); absent: the defaults. */
  state: StateLimits.optional(),
});
export type Rule = z.infer<typeof Rule> & {
  /** The rule's file, for error messages. */
  file?: string;
  /** Regexes proved linear by recheck (keys of core/regex.ts proofKey): they run on irregexp. */
  proofs?: ReadonlySet<string>;
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
  /** Entries of state the detector holds now (bounded by the rule's `state`; counted on /metrics). */
  state?(): number;
}
export type DetectorFactory = (rule: Rule) => Detector;

/** A rule parameter that is a regular expression, run in linear time (core/regex.ts): invalid ones, and those no
 * linear engine can run, are refused at start-up with the reason. */
export function regexParam(flags = '') {
  return z.string().transform((src, ctx) => {
    try {
      return new LinearRegex(src, flags);
    } catch (err) {
      if (!(err instanceof LinearRegexError)) throw err;
      ctx.addIssue({ code: 'custom', message: err.message });
      return z.NEVER;
    }
  });
}

/** A regex of a rule's params, where it is (`params.fire`). */
export interface RuleRegex {
  rule: Rule;
  field: string;
  regex: LinearRegex;
}

/** The regexes of the rules whose detectors are being created (DetectionEngine.create collects them), and
 * whether proved ones take the fast path (always, but for benchmarks and tests of the linear engines). */
let collecting: RuleRegex[] | undefined;
let fastPath = true;

/** Validates a rule's `params` with the detector's schema; errors name the rule file and the field. Regexes the
 * rule's proofs list move to the fast path. */
export function ruleParams<S extends z.ZodType>(rule: Rule, schema: S): z.infer<S> {
  const r = schema.safeParse(rule.params);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new ConfigError(`${rule.file ?? rule.id}: params.${issue.path.join('.') || '(all)'}: ${issue.message}`);
  }
  for (const [field, regex] of regexesIn(r.data, 'params')) {
    const key = proofKey(regex.source, regex.flags);
    if (fastPath && (rule.proofs?.has(key) || shippedProofs().has(key))) regex.proven();
    collecting?.push({ rule, field, regex });
  }
  return r.data;
}

/** The regexes in parsed params, with their paths. */
function* regexesIn(v: unknown, path: string): Generator<[string, LinearRegex]> {
  if (v instanceof LinearRegex) yield [path, v];
  else if (Array.isArray(v)) for (let i = 0; i < v.length; i++) yield* regexesIn(v[i], `${path}.${i}`);
  else if (v !== null && typeof v === 'object') for (const [k, x] of Object.entries(v)) yield* regexesIn(x, `${path}.${k}`);
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

/** Largest rule file read (checked before reading): a rule is a few KiB. */
export const MAX_RULE_FILE_BYTES = 256 * 1024;
/** A rule directory's proofs that its regexes are linear (written by `stackwatch rules prove`). */
export const PROOFS_FILE = 'regex-proofs.json';

const log = logger('rules');
/** Rule directories already reported empty (once a process is enough). */
const warnedEmpty = new Set<string>();

/** A YAML file of the rules directory, size-capped, parsed; every error names the file. */
export function readYamlFile(path: string): unknown {
  let size: number;
  try {
    const st = statSync(path);
    if (!st.isFile()) throw new ConfigError(`${path}: not a regular file`);
    size = st.size;
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(`${path}: cannot read: ${(err as Error).message}`);
  }
  if (size > MAX_RULE_FILE_BYTES) throw new ConfigError(`${path}: ${size} bytes, more than a rule file may have (${MAX_RULE_FILE_BYTES} bytes)`);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`${path}: cannot read: ${(err as Error).message}`);
  }
  const doc = parseDocument(text);
  if (doc.errors.length > 0) throw new ConfigError(`${path}: invalid YAML: ${doc.errors[0].message.split('\n')[0]}`);
  try {
    // toJS expands aliases: one that expands too often (an alias bomb) throws here
    return doc.toJS();
  } catch (err) {
    throw new ConfigError(`${path}: invalid YAML: ${(err as Error).message.split('\n')[0]}`);
  }
}

/** The files of a rules directory, sorted; the error names the directory. */
export function ruleDirFiles(dir: string): string[] {
  try {
    return readdirSync(dir).sort();
  } catch (err) {
    throw new ConfigError(`${dir}: cannot read the rules directory: ${(err as Error).message}`);
  }
}

export function loadRules(dir: string = DEFAULT_RULES_DIR): Rule[] {
  const names = ruleDirFiles(dir);
  const files = names.filter((f) => /\.ya?ml$/.test(f) && !f.endsWith('.test.yaml'));
  const proofs = names.includes(PROOFS_FILE) ? readProofs(join(dir, PROOFS_FILE)) : undefined;
  if (files.length === 0 && !warnedEmpty.has(dir)) {
    warnedEmpty.add(dir);
    log.warn(`no rules in ${dir}: no alert will fire; put rule files (<id>.yaml) there or point rules_dir at them`, { rules_dir: dir });
  }
  const byId = new Map<string, string>();
  return files.map((file) => {
    const path = join(dir, file);
    const result = Rule.safeParse(readYamlFile(path));
    if (!result.success) {
      const issue = result.error.issues[0];
      throw new ConfigError(`${path}: ${issue.path.join('.') || '(top level)'}: ${issue.message}`);
    }
    const other = byId.get(result.data.id);
    if (other) throw new ConfigError(`${path}: id: ${result.data.id} is already the id of ${other}; every rule needs its own (alerts are told apart by it)`);
    byId.set(result.data.id, path);
    return { ...result.data, file: path, ...(proofs ? { proofs } : {}) };
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Proofs: which rule regexes recheck proved linear. A file of data, so that a process never runs recheck.

export const ProofsFile = z.strictObject({
  /** What proved them (recheck's version and mode), for the reader. */
  checker: z.string(),
  /** Each proved regex (`/source/flags`) and the complexity recheck found (constant, linear, safe). */
  proofs: z.array(z.strictObject({ regex: z.string(), complexity: z.string() })),
});

/** The proved regexes of a proofs file (keys of proofKey); errors name the file. */
export function readProofs(path: string): Set<string> {
  let data: unknown;
  try {
    if (statSync(path).size > MAX_RULE_FILE_BYTES) throw new Error(`more than ${MAX_RULE_FILE_BYTES} bytes`);
    data = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new ConfigError(`${path}: cannot read the regex proofs: ${(err as Error).message}`);
  }
  const r = ProofsFile.safeParse(data);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new ConfigError(`${path}: ${issue.path.join('.') || '(top level)'}: ${issue.message}`);
  }
  return new Set(r.data.proofs.map((p) => p.regex));
}

let shipped: Set<string> | undefined;
/** The proofs shipped with the rules: a regex proved once is proved wherever its rule file lives. */
function shippedProofs(): Set<string> {
  const path = join(DEFAULT_RULES_DIR, PROOFS_FILE);
  shipped ??= existsSync(path) ? readProofs(path) : new Set();
  return shipped;
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

  private constructor(
    /** Each rule's detector (its id → the detector), for the state the rules hold. */
    private readonly byRule: Map<string, Detector>,
    /** The rules' regexes, where they are and which path runs them. */
    readonly regexes: RuleRegex[] = [],
  ) {
    const detectors = [...byRule.values()];
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

  /** The rules' detectors; `fastPath: false` runs every regex on the linear engines, proved or not (to measure them). */
  static async create(rules: Rule[], opts: { fastPath?: boolean } = {}): Promise<DetectionEngine> {
    const detectors = new Map<string, Detector>();
    const regexes: RuleRegex[] = [];
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
      if (detectors.has(rule.id)) throw new ConfigError(`${rule.file ?? rule.id}: id: a second rule with the id ${rule.id}`);
      collecting = regexes;
      fastPath = opts.fastPath ?? true;
      try {
        detectors.set(rule.id, mod.createDetector(rule));
      } finally {
        collecting = undefined;
        fastPath = true;
      }
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
