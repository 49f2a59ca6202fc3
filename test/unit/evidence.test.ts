// Evidence from outside our fixtures (test/fixtures/evidence/, README there): every case runs through its shipped
// rule the pipeline's way and must fire (for the expected group) or stay silent. A case marked `known_miss` is one
// the detectors get wrong today: the test asserts they still do, so a fix fails it until the marker is removed.
// EVIDENCE_SET=tuning,tuning-2 (or any comma-separated list of sets) runs those only: while the detectors are tuned,
// the held-out set is not run (it is run once, at the end: see the README).
import { describe, expect, it } from 'vitest';
import { EVIDENCE_RULES, EVIDENCE_SETS, evidenceSets, judge, loadEvidence } from '../../bench/evidence.ts';

const only = process.env.EVIDENCE_SET === undefined ? undefined : evidenceSets(process.env.EVIDENCE_SET);

describe.each(EVIDENCE_RULES)('evidence for %s', (rule) => {
  const cases = loadEvidence(rule).filter((c) => only === undefined || only.includes(c.set));

  it('has cases of both outcomes in both sets', () => {
    const all = loadEvidence(rule);
    for (const set of EVIDENCE_SETS)
      for (const outcome of ['fires', 'silent'] as const)
        expect(
          all.some((c) => c.set === set && c.expect === outcome),
          `${set} ${outcome}`,
        ).toBe(true);
  });

  it.each(cases.map((c) => [`${c.set} ${c.id}: ${c.known_miss ? `still wrong (${c.expect} expected)` : c.expect}`, c] as const))('%s', async (_, c) => {
    const v = await judge(rule, c);
    if (c.known_miss) expect(v.correct, `${c.id} is marked known_miss (${c.known_miss}) but the rule now gets it right (${v.why}): remove the marker`).toBe(false);
    else expect(v.correct, `${c.id}: ${v.why}`).toBe(true);
  });
});
