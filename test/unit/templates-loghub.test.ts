// Issue 14's accuracy target: templates of Loghub's OpenStack 2k sample against its published ground truth, the
// original labels and Loghub-2.0's corrected ones. The file as collected (file-name prefix, CRLF) goes through the
// pipeline's own parser; each message is mined with its logger as the first split (processors/templates/).
// Published anchors (Loghub, Loghub-2.0): Drain GA 0.733 / 0.752, PA 0.018 / 0.029; the best published PA,
// LogPPT's, 0.906.
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { documentsOf, groupingAccuracy, mine, misses, normaliseTemplate, parseCsv, parsingAccuracy, score } from '../../processors/templates/accuracy.ts';
import { Miner, templateGroup } from '../../processors/templates/miner.ts';

const FIX = new URL('../fixtures/', import.meta.url);
const docs = documentsOf(readFileSync(new URL('loghub-OpenStack_2k.log', FIX)), '/var/log/nova/OpenStack_2k.log');
const LABELS = {
  original: parseCsv(readFileSync(new URL('loghub-OpenStack_2k.log_structured.csv', FIX), 'utf8')),
  corrected: parseCsv(readFileSync(new URL('loghub/OpenStack_2k.log_structured_corrected.csv', FIX), 'utf8')),
};
const truth = (set: keyof typeof LABELS) => LABELS[set].map((r) => r.EventTemplate);

describe("Loghub's OpenStack 2k, mined as the processor mines it", () => {
  const mined = mine(docs);

  it("reads the dataset's 2,000 lines and messages, both label sets line by line", () => {
    expect(docs).toHaveLength(2000);
    for (const rows of Object.values(LABELS)) {
      expect(rows).toHaveLength(2000);
      expect(docs.map((d) => d.message)).toEqual(rows.map((r) => r.Content));
    }
    // The label sets group the lines alike; they differ in how some templates are written.
    expect(groupingAccuracy(truth('original'), truth('corrected'))).toBe(1);
    expect(parsingAccuracy(truth('original'), truth('corrected'), (t) => t)).toBeLessThan(0.5);
  });

  it.each(['original', 'corrected'] as const)('%s labels: GA 1.0 and PA 1.0, online (as documents carry them) and once all lines are mined', (set) => {
    for (const predicted of [mined.online, mined.final]) {
      expect(misses(truth(set), predicted)).toEqual([]);
      expect(score(truth(set), predicted)).toMatchObject({ GA: 1, PA: 1 });
    }
  });

  it('PA without the variable-run normalisation (blanks only): what each label set writes differently', () => {
    // The original labels write a float `<*>.<*>` (1,187 lines) where the miner writes `<*>`, as the corrected ones
    // do; both write a date and a time `<*>-<*>-<*> <*>:<*>:<*>` and a uuid glued to a word `<*>-<*>-<*>-<*>-<*>` (23 lines).
    expect(score(truth('original'), mined.final).strictPA).toBeGreaterThanOrEqual(0.395);
    expect(score(truth('corrected'), mined.final).strictPA).toBeGreaterThanOrEqual(0.9885);
  });

  it("the normalisation never changes the miner's text, and makes the two label sets' 43 templates the same", () => {
    for (const t of mined.final) expect(normaliseTemplate(t.text)).toBe(t.text);
    const norm = (set: keyof typeof LABELS) => [...new Set(truth(set).map(normaliseTemplate))].sort();
    expect(norm('original')).toHaveLength(43);
    expect(norm('original')).toEqual(norm('corrected'));
  });

  it('43 templates, of 44 held: the HTTP access template comes from two loggers (nova-api and the metadata API)', () => {
    expect(new Set(mined.final.map((t) => t.id)).size).toBe(43);
    expect(mined.miner.size).toBe(44);
    expect(mined.miner.generalisations).toBe(0);
  });

  it('gives every line the same template whatever the order of the lines', () => {
    const ids = mined.final.map((t) => t.id);
    fc.assert(
      fc.property(fc.shuffledSubarray([...docs.keys()], { minLength: docs.length }), (order) => {
        const m = new Miner();
        for (const i of order) m.add(docs[i].message, { group: templateGroup(docs[i]) });
        expect(docs.map((d) => m.match(d.message, templateGroup(d))?.id)).toEqual(ids);
      }),
      { numRuns: 5 },
    );
  });
});
