// Rules are data: one YAML file per rule in rules/, validated at start-up (errors name the file and the field).
// A rule names the detector that evaluates it (detectors/index.ts) and carries that detector's params, validated
// by the detector's own schema.
//
// Rule regexes run in time linear in the line (core/regex.ts): irregexp for those a proofs file lists as proved
// by recheck (`stackwatch rules prove`), RE2 and V8's linear engine for the others; what cannot be linear
// (lookaround, backreferences) is refused at load.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseDocument } from 'yaml';
import { z } from 'zod';
import { ConfigError } from '../core/config.ts';
import { Severity } from '../core/events.ts';
import { logger } from '../core/log.ts';
import { LinearRegex, LinearRegexError, proofKey } from '../core/regex.ts';
import { dottedIssue } from '../core/schema.ts';
import { StateLimits } from './state.ts';

export const DEFAULT_RULES_DIR = new URL('../rules/', import.meta.url).pathname;

export const Rule = z.strictObject({
  id: z.string().regex(/^[a-z0-9][a-z0-9-]*$/, { error: 'expected a lower-case id like amqp-connection-lost' }),
  name: z.string().min(1),
  /** The detector that evaluates this rule: a name of the registry, detectors/index.ts. */
  detector: z.string().regex(/^[a-z0-9-]+$/, { error: 'expected a detector file name like amqp-connection-lost' }),
  severity: Severity,
  runbook: z.string().min(1),
  /** Fields of an event that make one alert (one group): `host.name`, `service.name`, or a detector's own
   * capture (`code`, `broker`, …). */
  match_by: z.array(z.string().min(1)).min(1).default(['host.name', 'service.name']),
  /** Detector-specific settings, validated by the detector's own schema. */
  params: z.record(z.string(), z.unknown()).default({}),
  /** Bounds of what the detector remembers for this rule (detectors/state.ts); absent: the defaults. */
  state: StateLimits.optional(),
});
export type Rule = z.infer<typeof Rule> & {
  /** The rule's file, for error messages. */
  file?: string;
  /** Regexes proved linear by recheck (keys of core/regex.ts proofKey): they run on irregexp. */
  proofs?: ReadonlySet<string>;
};

/** `field: message` of a zod failure, the field dotted as the rule files' readers write it (`params.fire`,
 * `tests.0.alerts`). */
export function ruleIssue(error: z.ZodError, fallback: string): string {
  return dottedIssue(error, fallback);
}

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

/** The regexes of the rules whose params are being validated (the engine collects them while it creates its
 * detectors), and whether proved ones take the fast path (always, but for benchmarks and tests of the linear
 * engines). */
let collecting: RuleRegex[] | undefined;
let fastPath = true;

/** Runs `fn` (that validates rules' params) collecting their regexes into `into`; `fast: false` keeps every regex
 * on the linear engines, proved or not. */
export function collectingRegexes<T>(into: RuleRegex[], fast: boolean, fn: () => T): T {
  collecting = into;
  fastPath = fast;
  try {
    return fn();
  } finally {
    collecting = undefined;
    fastPath = true;
  }
}

/** Validates a rule's `params` with the detector's schema; errors name the rule file and the field. Regexes the
 * rule's proofs list move to the fast path. */
export function ruleParams<S extends z.ZodType>(rule: Rule, schema: S): z.infer<S> {
  const r = schema.safeParse(rule.params);
  if (!r.success) throw new ConfigError(`${rule.file ?? rule.id}: params.${ruleIssue(r.error, '(all)')}`);
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
    if (!result.success) throw new ConfigError(`${path}: ${ruleIssue(result.error, '(top level)')}`);
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
  if (!r.success) throw new ConfigError(`${path}: ${ruleIssue(r.error, '(top level)')}`);
  return new Set(r.data.proofs.map((p) => p.regex));
}

let shipped: Set<string> | undefined;
/** The proofs shipped with the rules: a regex proved once is proved wherever its rule file lives. */
function shippedProofs(): Set<string> {
  const path = join(DEFAULT_RULES_DIR, PROOFS_FILE);
  shipped ??= existsSync(path) ? readProofs(path) : new Set();
  return shipped;
}
