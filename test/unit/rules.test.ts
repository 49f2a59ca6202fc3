// Every rule's own tests (rules/<id>.test.yaml), run as `stackwatch rules test` runs them.
import { describe, expect, it } from 'vitest';
import { loadRules } from '../../detectors/rules.ts';
import { runRuleTests } from '../../processors/rule-tests.ts';

const results = await runRuleTests();

describe('rules/*.test.yaml', () => {
  it('covers every rule with at least one test', () => {
    const tested = new Set(results.map((r) => r.rule));
    expect(
      loadRules()
        .map((r) => r.id)
        .filter((id) => !tested.has(id)),
    ).toEqual([]);
  });

  it.each(results.map((r) => [`${r.rule}: ${r.name}`, r] as const))('%s', (_, r) => {
    expect(r.problems).toEqual([]);
  });
});
