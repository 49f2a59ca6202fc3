// `stackwatch rules test`: runs every rule's own tests (rules/<id>.test.yaml), like `promtool test rules`.
// `stackwatch rules prove`: proves the rules' regexes linear with recheck, for the fast path (core/regex.ts).
import { ConfigError } from '../core/config.ts';
import { DetectionEngine } from '../detectors/engine.ts';
import { proveRules, writeProofs } from '../detectors/rule-proofs.ts';
import { DEFAULT_RULES_DIR, loadRules, PROOFS_FILE } from '../detectors/rules.ts';
import { runRuleTests } from '../processors/rule-tests.ts';
import type { Command } from './index.ts';
import { parseOptions } from './options.ts';

export const rulesCommand: Command = {
  name: 'rules',
  help: `Usage: stackwatch rules test [--rules-dir DIR]
       stackwatch rules prove [--rules-dir DIR]

test    Validates every rule file (rules/<id>.yaml) and runs its tests (rules/<id>.test.yaml: log lines and the
        alert transitions they must cause) through the pipeline's own parsing and detection. Exits 1 if any
        fails. Notes the regexes that run on the slower linear engines (not proved, see prove).
prove   Every rule regex runs in time linear in the line. Those recheck (the ReDoS checker, a development
        dependency) proves linear run on V8's own engine, the fast path; this writes them to
        DIR/${PROOFS_FILE}, which the processor reads. The others run on RE2 and V8's linear engine, slower per
        line: the reason is printed (e.g. "polynomial": a crafted line makes V8's engine slow). Exits 1 if any
        regex is not proved.

Options:
  --rules-dir DIR   the rules (default: the rules shipped with stackwatch)`,

  async main(args) {
    const { values, positionals } = parseOptions(args, { 'rules-dir': { type: 'string', default: DEFAULT_RULES_DIR } }, true);
    const dir = values['rules-dir'];
    if (positionals.length !== 1 || !['test', 'prove'].includes(positionals[0])) {
      throw new ConfigError('rules: expected "stackwatch rules test" or "stackwatch rules prove" (see stackwatch rules --help)');
    }
    if (positionals[0] === 'prove') return prove(dir);
    const results = await runRuleTests(dir);
    let failed = 0;
    for (const r of results) {
      process.stdout.write(`${r.problems.length === 0 ? 'PASS' : 'FAIL'}  ${r.rule}: ${r.name}\n`);
      for (const p of r.problems) process.stdout.write(`        ${p}\n`);
      if (r.problems.length > 0) failed++;
    }
    for (const r of (await DetectionEngine.create(loadRules(dir))).regexes) {
      if (r.regex.path === 'linear') process.stdout.write(`NOTE  ${r.rule.id}: ${r.field} ${r.regex} is not proved linear: it runs on the slower linear engines (stackwatch rules prove)\n`);
    }
    process.stdout.write(`${results.length - failed} passed, ${failed} failed\n`);
    return failed === 0 ? 0 : 1;
  },
};

async function prove(dir: string): Promise<number> {
  const { verdicts, file } = await proveRules(dir);
  for (const v of verdicts) {
    process.stdout.write(
      `${v.status === 'proved' ? 'PROVED' : 'SLOWER'}  ${v.where} ${v.regex}: ${v.status === 'proved' ? v.detail : `${v.status}: ${v.detail}; runs on RE2 and V8's linear engine`}\n`,
    );
  }
  process.stdout.write(`${file.proofs.length} regex(es) proved linear, written to ${writeProofs(dir, file)}\n`);
  return verdicts.every((v) => v.status === 'proved') ? 0 : 1;
}
