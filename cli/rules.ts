// `stackwatch rules test`: runs every rule's own tests (rules/<id>.test.yaml), like `promtool test rules`.
import { ConfigError } from '../core/config.ts';
import { DEFAULT_RULES_DIR } from '../processors/detect.ts';
import { runRuleTests } from '../processors/rule-tests.ts';
import type { Command } from './index.ts';
import { parseOptions } from './options.ts';

export const rulesCommand: Command = {
  name: 'rules',
  help: `Usage: stackwatch rules test [--rules-dir DIR]

Validates every rule file (rules/<id>.yaml) and runs its tests (rules/<id>.test.yaml: log lines and the
alert transitions they must cause) through the pipeline's own parsing and detection. Exits 1 if any fails.

Options:
  --rules-dir DIR   the rules to test (default: the rules shipped with stackwatch)`,

  async main(args) {
    const { values, positionals } = parseOptions(args, { 'rules-dir': { type: 'string', default: DEFAULT_RULES_DIR } }, true);
    if (positionals[0] !== 'test' || positionals.length > 1) throw new ConfigError('rules: expected "stackwatch rules test" (see stackwatch rules --help)');
    const results = await runRuleTests(values['rules-dir']);
    let failed = 0;
    for (const r of results) {
      process.stdout.write(`${r.problems.length === 0 ? 'PASS' : 'FAIL'}  ${r.rule}: ${r.name}\n`);
      for (const p of r.problems) process.stdout.write(`        ${p}\n`);
      if (r.problems.length > 0) failed++;
    }
    process.stdout.write(`${results.length - failed} passed, ${failed} failed\n`);
    return failed === 0 ? 0 : 1;
  },
};
