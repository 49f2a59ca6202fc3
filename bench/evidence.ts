// Evidence from outside our fixtures (test/fixtures/evidence/<rule>.yaml, README there): real lines of other
// releases, deployment tools and bug reports, each case run through its shipped rule the pipeline's way (assembly,
// parsing, engine: alertsFor of processors/rule-tests.ts). Prints per rule and per set: cases, correct, recall on
// `fires` cases and false alarms on `silent` ones, and every case the rule gets wrong.
//
//   npx tsx bench/evidence.ts                   # the tuning sets (tuning, tuning-2)
//   npx tsx bench/evidence.ts --set tuning-2    # one set, or a comma-separated list
//   npx tsx bench/evidence.ts --set heldout-2   # the held-out set (run once, at the end: see the README)
//   npx tsx bench/evidence.ts --set all
//
// test/unit/evidence.test.ts uses the same loading and judging.
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import type { Alert } from '../core/events.ts';
import { DetectionEngine } from '../detectors/engine.ts';
import { loadRules } from '../detectors/rules.ts';
import { alertsFor } from '../processors/rule-tests.ts';

export const EVIDENCE_RULES = ['amqp-connection-lost', 'compute-host-drift', 'db-sync-lag', 'client-ip-masked'] as const;
/** `tuning`: tuned on from the start; `tuning-2`: the first held-out set, spent by its one run and tuned on since;
 * `heldout-2`: the held-out set of the second collection, run once at the end (README). */
export const EVIDENCE_SETS = ['tuning', 'tuning-2', 'heldout-2'] as const;
export type EvidenceSet = (typeof EVIDENCE_SETS)[number];
/** What may be run at will. */
export const TUNING_SETS: readonly EvidenceSet[] = ['tuning', 'tuning-2'];

export const EvidenceCase = z.strictObject({
  id: z.string().regex(/^[a-z0-9][a-z0-9.-]*$/),
  set: z.enum(EVIDENCE_SETS),
  source: z.string().min(1),
  kind: z.enum(['verbatim', 'template']),
  release: z.string().optional(),
  wrapper: z.enum(['oslo', 'journald', 'syslog', 'cri', 'docker', 'kolla', 'kubectl-prefix', 'tail']).optional(),
  host: z.string().default('evidence-host'),
  /** The path the lines are read as (it names the service, as the collector's file does). */
  file: z.string().min(1),
  lines: z.string().min(1),
  expect: z.enum(['fires', 'silent']),
  /** For `fires`: host.name and service.name are compared with the alert's host and service, any other key with
   * the alert's group. */
  group: z.record(z.string(), z.string()).optional(),
  note: z.string().optional(),
  /** The shipped detectors get this case wrong today, and why. */
  known_miss: z.string().min(1).optional(),
});
export type EvidenceCase = z.infer<typeof EvidenceCase>;

const dir = new URL('../test/fixtures/evidence/', import.meta.url);

export function loadEvidence(rule: string): EvidenceCase[] {
  const cases = z
    .array(EvidenceCase)
    .min(1)
    .parse(parseYaml(readFileSync(new URL(`${rule}.yaml`, dir), 'utf8')));
  for (const c of cases) {
    if (c.expect === 'fires' && !c.group) throw new Error(`${rule}.yaml: ${c.id}: a fires case names its expected group`);
    if (c.expect === 'silent' && c.group) throw new Error(`${rule}.yaml: ${c.id}: a silent case has no group`);
  }
  const ids = cases.map((c) => c.id);
  const dup = ids.find((id, i) => ids.indexOf(id) !== i);
  if (dup) throw new Error(`${rule}.yaml: duplicate case id ${dup}`);
  return cases;
}

/** `all`, or a comma-separated list of set names. */
export function evidenceSets(spec: string): EvidenceSet[] {
  if (spec === 'all') return [...EVIDENCE_SETS];
  const sets = spec.split(',').map((s) => s.trim());
  const bad = sets.filter((s) => !(EVIDENCE_SETS as readonly string[]).includes(s));
  if (bad.length > 0 || sets.length === 0) throw new Error(`--set: ${EVIDENCE_SETS.join(', ')}, a comma-separated list of them, or all (not ${bad.join(', ')})`);
  return sets as EvidenceSet[];
}

/** An alert that fired and resolved within this long pages nobody: incidents.min_duration_s's default
 * (core/config.ts), the time an incident must have fired before the notifiers get it. */
export const PAGE_AFTER_S = 60;

/** When the case is over: its time runs on after its last line (engine.tick), so that what only time settles (a
 * reconnect that stayed up) settles, as the clock of a running processor settles it. */
const AFTER_THE_CASE = Date.parse('2100-01-01T00:00:00Z');

export interface Verdict {
  rule: string;
  case: EvidenceCase;
  /** The rule's outcome matches the case's expectation. */
  correct: boolean;
  /** What the rule did: its firing transitions. */
  firing: Alert[];
  /** A `silent` case's alerts that fired and resolved within PAGE_AFTER_S: recorded, paging nobody. */
  short: Alert[];
  why: string;
}

function matches(a: Alert, group: Record<string, string>): boolean {
  return Object.entries(group).every(([k, v]) => (k === 'host.name' ? a.host.name : k === 'service.name' ? a.service.name : a.alert.group[k]) === v);
}

const show = (a: Alert) => `${JSON.stringify({ host: a.host.name, service: a.service.name, ...a.alert.group })} at ${a['@timestamp']}`;

/** Runs one case through its shipped rule (a fresh engine per case) and judges the outcome. A `silent` case is right
 * when nothing would page: no alert fired, or each one that did resolved within PAGE_AFTER_S (a failover's short
 * alert: recorded, kept from the pager by the incidents' min_duration_s). */
export async function judge(rule: string, c: EvidenceCase): Promise<Verdict> {
  const engine = await DetectionEngine.create(loadRules().filter((r) => r.id === rule));
  const alerts = alertsFor(engine, c.host, c.file, c.lines);
  // An engine without a clock (before detectors had one) has nothing to settle.
  alerts.push(...((engine as { tick?: (now: number) => Alert[] }).tick?.(AFTER_THE_CASE) ?? []));
  const firing = alerts.filter((a) => a.alert.status === 'firing');
  if (c.expect === 'silent') {
    const short = firing.filter((f) =>
      alerts.some((r) => r.alert.status === 'resolved' && r.alert.id === f.alert.id && r.alert.started_at === f.alert.started_at && (r.alert.duration_s ?? Infinity) < PAGE_AFTER_S),
    );
    const paging = firing.filter((f) => !short.includes(f));
    const why =
      paging.length > 0
        ? `false alarm: ${paging.map(show).join('; ')}`
        : short.length > 0
          ? `short alert, not paged: ${short.map((a) => `${show(a)}, resolved within ${PAGE_AFTER_S}s`).join('; ')}`
          : 'silent';
    return { rule, case: c, firing, short, correct: paging.length === 0, why };
  }
  const hit = firing.find((a) => matches(a, c.group!));
  const why = hit ? `fired: ${show(hit)}` : firing.length > 0 ? `fired for another group: ${firing.map(show).join('; ')}` : 'missed: no firing alert';
  return { rule, case: c, firing, short: [], correct: hit !== undefined, why };
}

export interface Score {
  cases: number;
  correct: number;
  fires: number;
  caught: number;
  silent: number;
  falseAlarms: number;
  /** Silent cases judged right with a short alert (see judge). */
  short: number;
}

export function score(verdicts: Verdict[]): Score {
  const fires = verdicts.filter((v) => v.case.expect === 'fires');
  const silent = verdicts.filter((v) => v.case.expect === 'silent');
  return {
    cases: verdicts.length,
    correct: verdicts.filter((v) => v.correct).length,
    fires: fires.length,
    caught: fires.filter((v) => v.correct).length,
    silent: silent.length,
    falseAlarms: silent.filter((v) => !v.correct).length,
    short: silent.filter((v) => v.correct && v.short.length > 0).length,
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { set: { type: 'string', default: TUNING_SETS.join(',') } } });
  const sets = evidenceSets(values.set);
  const rows: string[][] = [['rule', 'set', 'cases', 'correct', 'recall (fires)', 'false alarms (silent)', 'short alerts (silent, not paged)']];
  const wrong: string[] = [];
  for (const rule of EVIDENCE_RULES) {
    for (const set of sets) {
      const verdicts: Verdict[] = [];
      for (const c of loadEvidence(rule).filter((x) => x.set === set)) verdicts.push(await judge(rule, c));
      const s = score(verdicts);
      rows.push([rule, set, String(s.cases), String(s.correct), `${s.caught}/${s.fires}`, `${s.falseAlarms}/${s.silent}`, `${s.short}/${s.silent}`]);
      for (const v of verdicts.filter((x) => !x.correct || x.short.length > 0))
        wrong.push(`${rule} ${set} ${v.case.id} (expect ${v.case.expect}): ${v.why}${v.case.known_miss ? ` [known_miss: ${v.case.known_miss}]` : ''}`);
    }
  }
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  for (const r of rows) process.stdout.write(r.map((cell, i) => cell.padEnd(widths[i])).join('  ') + '\n');
  process.stdout.write(wrong.length > 0 ? `\nwrong, or right with a short alert:\n${wrong.map((w) => `  ${w}`).join('\n')}\n` : '\nevery case right, none with a short alert\n');
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
