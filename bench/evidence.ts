// Evidence from outside our fixtures (test/fixtures/evidence/<rule>.yaml, README there): real lines of other
// releases, deployment tools and bug reports, each case run through its shipped rule the pipeline's way (assembly,
// parsing, engine: alertsFor of processors/rule-tests.ts). Prints per rule and per set: cases, correct, recall on
// `fires` cases and false alarms on `silent` ones, and every case the rule gets wrong.
//
//   npx tsx bench/evidence.ts                 # the tuning set
//   npx tsx bench/evidence.ts --set heldout   # the held-out set (run once, at the end: see the README)
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
export type EvidenceSet = 'tuning' | 'heldout';

export const EvidenceCase = z.strictObject({
  id: z.string().regex(/^[a-z0-9][a-z0-9.-]*$/),
  set: z.enum(['tuning', 'heldout']),
  source: z.string().min(1),
  kind: z.enum(['verbatim', 'template']),
  release: z.string().optional(),
  wrapper: z.enum(['oslo', 'journald', 'syslog', 'cri', 'docker', 'kolla', 'kubectl-prefix']).optional(),
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

export interface Verdict {
  rule: string;
  case: EvidenceCase;
  /** The rule's outcome matches the case's expectation. */
  correct: boolean;
  /** What the rule did: its firing transitions. */
  firing: Alert[];
  why: string;
}

function matches(a: Alert, group: Record<string, string>): boolean {
  return Object.entries(group).every(([k, v]) => (k === 'host.name' ? a.host.name : k === 'service.name' ? a.service.name : a.alert.group[k]) === v);
}

const show = (a: Alert) => `${JSON.stringify({ host: a.host.name, service: a.service.name, ...a.alert.group })} at ${a['@timestamp']}`;

/** Runs one case through its shipped rule (a fresh engine per case) and judges the outcome. */
export async function judge(rule: string, c: EvidenceCase): Promise<Verdict> {
  const engine = await DetectionEngine.create(loadRules().filter((r) => r.id === rule));
  const alerts = alertsFor(engine, c.host, c.file, c.lines);
  const firing = alerts.filter((a) => a.alert.status === 'firing');
  if (c.expect === 'silent') {
    return { rule, case: c, firing, correct: firing.length === 0, why: firing.length === 0 ? 'silent' : `false alarm: ${firing.map(show).join('; ')}` };
  }
  const hit = firing.find((a) => matches(a, c.group!));
  const why = hit ? `fired: ${show(hit)}` : firing.length > 0 ? `fired for another group: ${firing.map(show).join('; ')}` : 'missed: no firing alert';
  return { rule, case: c, firing, correct: hit !== undefined, why };
}

export interface Score {
  cases: number;
  correct: number;
  fires: number;
  caught: number;
  silent: number;
  falseAlarms: number;
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
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { set: { type: 'string', default: 'tuning' } } });
  const sets: EvidenceSet[] = values.set === 'all' ? ['tuning', 'heldout'] : values.set === 'heldout' ? ['heldout'] : values.set === 'tuning' ? ['tuning'] : [];
  if (sets.length === 0) throw new Error('--set: tuning, heldout or all');
  const rows: string[][] = [['rule', 'set', 'cases', 'correct', 'recall (fires)', 'false alarms (silent)']];
  const wrong: string[] = [];
  for (const rule of EVIDENCE_RULES) {
    for (const set of sets) {
      const verdicts: Verdict[] = [];
      for (const c of loadEvidence(rule).filter((x) => x.set === set)) verdicts.push(await judge(rule, c));
      const s = score(verdicts);
      rows.push([rule, set, String(s.cases), String(s.correct), `${s.caught}/${s.fires}`, `${s.falseAlarms}/${s.silent}`]);
      for (const v of verdicts.filter((x) => !x.correct))
        wrong.push(`${rule} ${set} ${v.case.id} (expect ${v.case.expect}): ${v.why}${v.case.known_miss ? ` [known_miss: ${v.case.known_miss}]` : ''}`);
    }
  }
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  for (const r of rows) process.stdout.write(r.map((cell, i) => cell.padEnd(widths[i])).join('  ') + '\n');
  process.stdout.write(wrong.length > 0 ? `\nwrong:\n${wrong.map((w) => `  ${w}`).join('\n')}\n` : '\nevery case right\n');
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
