// Proofs that the regexes on the fast path are linear, checked with recheck (the ReDoS checker, automaton mode):
// every regex literal of the detectors' code (irregexp runs them on every line they read), and every regex the
// shipped proofs file lists (irregexp runs those too). recheck is slow (up to seconds a regex): this file runs them
// all at once.
import { readFileSync } from 'node:fs';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { DetectionEngine } from '../../detectors/engine.ts';
import { loadRecheck, prove, proveRules } from '../../detectors/rule-proofs.ts';
import { DEFAULT_RULES_DIR, loadRules, PROOFS_FILE, readProofs } from '../../detectors/rules.ts';

/** The code that meets log lines in the detection stage. */
const FILES = [
  'core/regex.ts',
  'detectors/engine.ts',
  'detectors/rules.ts',
  'detectors/kit.ts',
  'detectors/state.ts',
  'processors/time-budget.ts',
  'detectors/pattern.ts',
  'detectors/ceph-health.ts',
  'detectors/amqp-connection-lost.ts',
  'detectors/client-ip-masked.ts',
  'detectors/compute-host-drift.ts',
  'detectors/db-sync-lag.ts',
  'detectors/zabbix-problem.ts',
];

/** Every regex literal of a source file, as [source, flags, line]. */
function regexLiterals(file: string): [string, string, number][] {
  const sf = ts.createSourceFile(file, readFileSync(new URL(`../../${file}`, import.meta.url), 'utf8'), ts.ScriptTarget.Latest, true);
  const out: [string, string, number][] = [];
  const visit = (n: ts.Node) => {
    if (n.kind === ts.SyntaxKind.RegularExpressionLiteral) {
      const text = n.getText(sf);
      const end = text.lastIndexOf('/');
      out.push([text.slice(1, end), text.slice(end + 1).replace(/[gy]/g, ''), sf.getLineAndCharacterOfPosition(n.getStart(sf)).line + 1]);
    }
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return out;
}

const recheck = await loadRecheck();

describe("the detectors' own regexes", () => {
  const literals = FILES.flatMap((f) => regexLiterals(f).map(([source, flags, line]) => ({ where: `${f}:${line}`, source, flags })));

  it('are found (the scan works)', () => {
    expect(literals.filter((l) => l.where.startsWith('detectors/amqp-connection-lost.ts')).length).toBeGreaterThan(5);
  });

  it("include the one the engine builds from the rules' literals (an alternation of escaped literals), proved too", async () => {
    const anyLiteral = (await DetectionEngine.create(loadRules())) as unknown as { anyLiteral: RegExp };
    expect(anyLiteral.anyLiteral.source).toContain('Health check ');
    expect(await prove(recheck, anyLiteral.anyLiteral.source, '', 300_000)).toMatchObject({ status: 'proved' });
  }, 600_000);

  it('are all proved linear by recheck', async () => {
    // 300 s each, not the CLI's 60: all are checked at once, and on a loaded machine (the unit tests run beside
    // the live OpenStack's) one took over 60 s.
    const verdicts = await Promise.all(literals.map(async (l) => ({ ...l, ...(await prove(recheck, l.source, l.flags, 300_000)) })));
    expect(verdicts.filter((v) => v.status !== 'proved').map((v) => `${v.where} /${v.source}/${v.flags}: ${v.status}: ${v.detail}`)).toEqual([]);
  }, 600_000);
});

describe(`rules/${PROOFS_FILE}`, () => {
  it('lists every regex of the shipped rules: they all run on the fast path', async () => {
    const engine = await DetectionEngine.create(loadRules());
    expect(engine.regexes.length).toBeGreaterThan(0);
    expect(engine.regexes.filter((r) => r.regex.path !== 'fast').map((r) => `${r.rule.id}: ${r.field}`)).toEqual([]);
  });

  it('holds only what recheck proves, and what `stackwatch rules prove` writes', async () => {
    const listed = [...readProofs(`${DEFAULT_RULES_DIR}${PROOFS_FILE}`)];
    const { verdicts, file } = await proveRules(DEFAULT_RULES_DIR, recheck);
    expect(verdicts.filter((v) => v.status !== 'proved')).toEqual([]);
    expect(file.proofs.map((p) => p.regex).sort()).toEqual(listed.sort());
  }, 600_000);
});
