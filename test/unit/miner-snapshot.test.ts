// The template miner's checkpoint (processors/templates/miner.ts, `snapshot()`/`restore()`), held to its header's
// contract: a processor that checkpoints the miner goes on after a restart exactly as it would have without one.
// Proved here by cutting a stream anywhere: miner A mines every line without interruption; at each cut k a snapshot
// of the first k lines, written as JSON and read back, is restored into a new miner C (same options), which mines the
// rest. C must give every later line A's template (id and text) with A's counters (evictions, generalisations, size)
// after it, so it generalises at the same line and evicts at the same line; its snapshots at the later cuts and at
// the end must deep-equal A's (the same templates evicted, the same counts, times, labels, LRU and index).
//
// Lines: real ones, as the pipeline's parser makes documents of them (processors/templates/accuracy.ts
// `documentsOf`, each mined with its logger as the group, as `mineDocument` does):
//   - test/fixtures/loghub-OpenStack_2k.log, Loghub's OpenStack 2k sample as collected (each line starts with the
//     name of the file it came from; the parser reads that prefix and CRLF);
//   - samples/hotsos-2022/: nova-compute.log.1.gz (gunzipped; all of it, and its first 4,000 events) and the first
//     1,500 events of each of the three neutron agents' logs (with service and level labels), from a 2022
//     sosreport kept by canonical/hotsos (samples/README.md).
//   Each run asserts that what it is there for happened (evictions, generalisations, labels), else it would prove
//   nothing.
// Then made-up ones: seeded random streams (fast-check, fixed seeds) of statements of a small vocabulary, crowded
// enough that positions generalise, splits hold several patterns and reach MAX_PATTERNS (blocked sibling sets);
// a stream built to fill a split, whose blocked sets then refuse later siblings their signature; and a pair of
// templates whose signatures collide by hash (found by a birthday search over the miner's signature function), the
// one that won the signature evicted before the cut.
// Also: what is not a snapshot of this miner (not an object, null, another version, a field of the wrong type, a
// column of the wrong length, inconsistent indices, the snapshot cut short, random changes) is refused with a
// reason naming the field, without throwing, and the miner is then as new; and a miner keeps its own maxTemplates
// when it restores a snapshot of a miner allowed more (evicting at once, as a new line would).
import { readFileSync } from 'node:fs';
import { setImmediate } from 'node:timers/promises';
import { gunzipSync } from 'node:zlib';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { documentsOf } from '../../processors/templates/accuracy.ts';
import { MAX_PATTERNS, Miner, type MinerOptions, type MinerSnapshot, templateGroup } from '../../processors/templates/miner.ts';

interface Line {
  message: string;
  group: string;
  time?: string;
  labels?: Record<string, string>;
}

/** The snapshot's data as this file reads it (the miner exports it as `unknown`). */
interface Data {
  groups: string[];
  group: number[];
  tokens: (string | string[])[];
  general?: number[][];
  count: number[];
  first: unknown[];
  last: unknown[];
  labels?: unknown[];
  lru: number[];
  once: number;
  patterns: { group: number; tokens: number; order: number[][] }[];
  blocked: [number, number][];
  unregistered: [number, number][];
  evictions: number;
  generalisations: number;
}

const FIXTURES = new URL('../fixtures/', import.meta.url);
const HOTSOS = new URL('../../samples/hotsos-2022/', import.meta.url);

const linesOf = (data: Buffer, path: string, labelled = false): Line[] =>
  documentsOf(data, path).map((d) => ({
    message: d.message,
    group: templateGroup(d),
    time: d['@timestamp'],
    ...(labelled ? { labels: { service: d.service.name, level: d.log.level ?? 'none' } } : {}),
  }));

const LOGHUB = linesOf(readFileSync(new URL('loghub-OpenStack_2k.log', FIXTURES)), '/var/log/nova/OpenStack_2k.log');
const NOVA = linesOf(gunzipSync(readFileSync(new URL('nova-compute.log.1.gz', HOTSOS))), '/var/log/nova/nova-compute.log');
/** The first 1,500 events of each neutron agent, labelled with their service and level. */
const NEUTRON = ['neutron-dhcp-agent', 'neutron-l3-agent', 'neutron-metadata-agent'].flatMap((name) =>
  linesOf(readFileSync(new URL(`${name}.log.1`, HOTSOS)), `/var/log/neutron/${name}.log`, true).slice(0, 1500),
);

/** Mines a line; what it did: the template it got, and the miner's counters after it. */
function step(m: Miner, l: Line): string {
  const t = m.add(l.message, { group: l.group, time: l.time, labels: l.labels });
  return `${t.id} evictions=${m.evictions} generalisations=${m.generalisations} size=${m.size} ${t.text}`;
}

/** The first line at which two runs differ (line numbers from `from`), or undefined. */
function firstDifference(got: readonly string[], want: readonly string[], from = 0): { line: number; got?: string; want?: string } | undefined {
  for (let i = 0; i < Math.max(got.length, want.length); i++) if (got[i] !== want[i]) return { line: from + i, got: got[i], want: want[i] };
  return undefined;
}

/** A snapshot as it is read back from a checkpoint. */
const asJson = (s: MinerSnapshot): MinerSnapshot => JSON.parse(JSON.stringify(s));
const dataOf = (m: Miner): Data => m.snapshot().data as Data;

/** `count` cut points spread over 0..n (both ends), and the lines around `extra` (where something happened). */
function cutsOf(n: number, count: number, extra: number[] = []): number[] {
  const cuts = new Set<number>();
  for (let i = 0; i < count; i++) cuts.add(Math.round((i * n) / (count - 1)));
  for (const k of extra) for (const c of [k - 1, k, k + 1]) if (c >= 0 && c <= n) cuts.add(c);
  return [...cuts].sort((a, b) => a - b);
}

interface Uninterrupted {
  steps: string[];
  final: MinerSnapshot;
  miner: Miner;
  /** Lines after which evictions / generalisations rose. */
  evictedAt: number[];
  generalisedAt: number[];
}

function uninterrupted(lines: readonly Line[], options: MinerOptions): Uninterrupted {
  const miner = new Miner(options);
  const evictedAt: number[] = [];
  const generalisedAt: number[] = [];
  const steps = lines.map((l, i) => {
    const [e, g] = [miner.evictions, miner.generalisations];
    const s = step(miner, l);
    if (miner.evictions > e) evictedAt.push(i);
    if (miner.generalisations > g) generalisedAt.push(i);
    return s;
  });
  return { steps, final: asJson(miner.snapshot()), miner, evictedAt, generalisedAt };
}

/** Expects a miner's snapshot to deep-equal one written as `json` (compared as text first: the same state writes the
 * same text; deep-equal on a difference, for its message). */
function expectState(m: Miner, json: string, what: string): void {
  const got = JSON.stringify(m.snapshot());
  if (got !== json) expect(JSON.parse(got), what).toEqual(JSON.parse(json));
}

/**
 * The contract, at each of `cuts`: a miner restored from the checkpoint of lines[0..k) mines lines[k..] as A mined
 * them. `strict`: C's snapshot is also compared with A's at every later cut (the same state all along), not only at
 * the end. Returns the checkpoints' data.
 */
async function expectCutAnywhere(lines: readonly Line[], options: MinerOptions, cuts: readonly number[], a = uninterrupted(lines, options), strict = true): Promise<Data[]> {
  // B mines the lines as A did and is checkpointed at each cut; taking a snapshot changes nothing.
  const b = new Miner(options);
  const checkpoints = new Map<number, { json: string; taken: MinerSnapshot }>();
  const bSteps: string[] = [];
  let at = 0;
  for (const k of cuts) {
    while (at < k) bSteps.push(step(b, lines[at++]));
    const taken = b.snapshot();
    checkpoints.set(k, { json: JSON.stringify(taken), taken });
  }
  while (at < lines.length) bSteps.push(step(b, lines[at++]));
  expect(firstDifference(bSteps, a.steps), 'a miner checkpointed along the way').toBeUndefined();
  const final = JSON.stringify(a.final);
  for (const [k, { json, taken }] of checkpoints) {
    // The worker's loop gets a turn at each cut: vitest ends the run when its worker does not answer for a minute.
    await setImmediate();
    // A snapshot is a copy: the lines mined after it do not change it.
    expect(JSON.stringify(taken) === json, `the snapshot at ${k} changed after it was taken`).toBe(true);
    const c = new Miner(options);
    expect(c.restore(JSON.parse(json)), `restore at ${k}`).toBeUndefined();
    expectState(c, json, `the snapshot of the miner restored at ${k}`);
    const cSteps: string[] = [];
    for (let i = k; i < lines.length; i++) {
      cSteps.push(step(c, lines[i]));
      const later = strict ? checkpoints.get(i + 1) : undefined;
      if (later) expectState(c, later.json, `restored at ${k}, the state after line ${i}`);
    }
    expect(firstDifference(cSteps, a.steps.slice(k), k), `restored at ${k}`).toBeUndefined();
    expectState(c, final, `restored at ${k}, the final state`);
  }
  return [...checkpoints.values()].map((c) => c.taken.data as Data);
}

describe('a checkpoint restored anywhere in a real stream goes on as the uninterrupted miner', () => {
  it.each([
    ['Loghub OpenStack 2k, default options', LOGHUB, {}],
    ['Loghub OpenStack 2k, maxTemplates 20, distinctValues 2 (evictions and generalisations)', LOGHUB, { maxTemplates: 20, distinctValues: 2 }],
    ['hotsos nova-compute, default options (generalisations)', NOVA, {}],
    ['hotsos nova-compute, its first 4,000 lines, maxTemplates 20 (evictions and generalisations)', NOVA.slice(0, 4000), { maxTemplates: 20 }],
    ['hotsos neutron agents with labels, maxTemplates 60, distinctValues 3', NEUTRON, { maxTemplates: 60, distinctValues: 3 }],
  ] as [string, Line[], MinerOptions][])('%s', async (_, lines, options) => {
    const a = uninterrupted(lines, options);
    // Each run does what it is here for; else the property would hold for want of anything to carry.
    if (options.maxTemplates) expect(a.miner.evictions).toBeGreaterThan(0);
    if (options.distinctValues || lines[0] === NOVA[0]) expect(a.miner.generalisations).toBeGreaterThan(0);
    if (lines === NEUTRON) expect(dataOf(a.miner).labels).toBeDefined();
    // Cuts spread over the stream (~30; 20 in the long one), and around the first generalisations and evictions.
    const long = lines.length > 5000;
    await expectCutAnywhere(lines, options, cutsOf(lines.length, long ? 20 : 30, [...a.generalisedAt.slice(0, long ? 3 : 6), ...a.evictedAt.slice(0, 3)]), a, !long);
  });

  it('checkpointed and restored again and again (a processor restarted every 97 lines) ends as the uninterrupted one', () => {
    const options = { maxTemplates: 40, distinctValues: 3 };
    const lines = [...NOVA.slice(0, 3000), ...NEUTRON.slice(0, 3000)];
    const a = uninterrupted(lines, options);
    expect(a.miner.evictions).toBeGreaterThan(0);
    expect(a.miner.generalisations).toBeGreaterThan(0);
    let m = new Miner(options);
    const steps: string[] = [];
    lines.forEach((l, i) => {
      if (i % 97 === 0) {
        const next = new Miner(options);
        expect(next.restore(asJson(m.snapshot()))).toBeUndefined();
        m = next;
      }
      steps.push(step(m, l));
    });
    expect(firstDifference(steps, a.steps)).toBeUndefined();
    expect(asJson(m.snapshot())).toEqual(a.final);
  });
});

// ---- made-up streams ----

const VOCAB = ['red', 'green', 'blue', 'cyan', 'pink', 'gold', 'grey', 'teal', '42', '<*>'];
const LETTERS = 'abcdefghijklmnopqrstuvwxyz';
/** The position sets a family of statements varies at: the 6 single positions and 15 pairs of positions 2..7. */
const SETS: number[][] = [];
for (let p = 2; p < 8; p++) SETS.push([p]);
for (let p = 2; p < 8; p++) for (let q = p + 1; q < 8; q++) SETS.push([p, q]);

/** A statement of `length` tokens of family `f` (its own two words first, `x` elsewhere) with `values` (indices into
 * the first `vocab` words of VOCAB) at the positions it varies at; `noise` < length puts a word of VOCAB (a colour, a
 * digit: masked; `<*>`) at that position. */
function statement(f: number, vary: readonly number[], vocab: number, values: readonly number[], noise: number, length = 8): string {
  const w = LETTERS[f];
  const tokens = Array.from({ length }, (_, p) => (p === 0 ? `f${w}` : p === 1 ? `g${w}` : vary.includes(p) ? VOCAB[values[p] % vocab] : 'x'));
  if (noise < length) tokens[noise] = VOCAB[values[noise]];
  return tokens.join(' ');
}

const values = fc.array(fc.nat({ max: VOCAB.length - 1 }), { minLength: 12, maxLength: 12 });
const draw = fc.record({ f: fc.nat(), values, noise: fc.nat({ max: 40 }) });

/** Families of statements across two groups and two lengths, any options. */
const mixedStream = fc
  .record({
    maxTemplates: fc.integer({ min: 1, max: 60 }),
    distinctValues: fc.integer({ min: 2, max: 4 }),
    families: fc.array(
      fc.record({ group: fc.constantFrom('nova.compute.manager', 'neutron.agent.l3'), vary: fc.nat({ max: SETS.length - 1 }), vocab: fc.integer({ min: 2, max: 8 }), short: fc.boolean() }),
      { minLength: 1, maxLength: 26, size: 'max' },
    ),
    lines: fc.array(draw, { minLength: 1, maxLength: 120, size: 'max' }),
  })
  .map(({ maxTemplates, distinctValues, families, lines }) => ({
    options: { maxTemplates, distinctValues },
    lines: lines.map(({ f, values, noise }): Line => {
      const i = f % families.length;
      const fam = families[i];
      return { message: statement(i, SETS[fam.vary], fam.vocab, values, noise, fam.short ? 6 : 8), group: fam.group };
    }),
  }));

/** The 45 pairs of positions 2..11 of a 12-token statement. */
const PAIRS: number[][] = [];
for (let p = 2; p < 12; p++) for (let q = p + 1; q < 12; q++) PAIRS.push([p, q]);

/** One split crowded by 26 families, each generalising its own pair of positions (and either one on the way): past
 * MAX_PATTERNS patterns, sibling sets are blocked. */
const crowdedStream = fc
  .record({
    maxTemplates: fc.integer({ min: 20, max: 120 }),
    vocab: fc.constantFrom(2, 3, 4),
    lines: fc.array(fc.record({ f: fc.nat({ max: 25 }), values, noise: fc.nat({ max: 199 }) }), { minLength: 120, maxLength: 180, size: 'max' }),
  })
  .map(({ maxTemplates, vocab, lines }) => ({
    options: { maxTemplates, distinctValues: 2 },
    lines: lines.map(({ f, values, noise }): Line => ({ message: statement(f, PAIRS[(f * 7) % PAIRS.length], vocab, values, noise, 12), group: 'nova.compute.manager' })),
  }));

/** A property that fails is shrunk for at most this long (each run mines a stream at every cut: shrinking one to the
 * end could take many minutes); the failure is reported with the smallest stream found by then. */
const SHRINK_LIMIT = fc.interruptAfterTimeLimit(30_000);

describe('a checkpoint restored anywhere in a random stream goes on as the uninterrupted miner', () => {
  /** What the runs held at some point: each kind of state the snapshot carries beside the templates. */
  const coverage = () => ({ runs: 0, evictions: 0, generalisations: 0, general: 0, patternOrder: 0, blocked: 0, unregistered: 0 });
  /** Runs the property at every cut (or `cuts` spread), and counts what the run held at the cuts. */
  async function everyCut(seen: ReturnType<typeof coverage>, lines: readonly Line[], options: MinerOptions, cuts = lines.length + 1): Promise<void> {
    const a = uninterrupted(lines, options);
    const held = await expectCutAnywhere(lines, options, cutsOf(lines.length, cuts), a, false);
    seen.runs++;
    if (a.miner.evictions > 0) seen.evictions++;
    if (a.miner.generalisations > 0) seen.generalisations++;
    if (held.some((d) => d.general !== undefined)) seen.general++;
    if (held.some((d) => d.patterns.length > 0)) seen.patternOrder++;
    if (held.some((d) => d.blocked.length > 0)) seen.blocked++;
    if (held.some((d) => d.unregistered.length > 0)) seen.unregistered++;
  }

  it('statements of families across groups and lengths, any options: every cut', async () => {
    const seen = coverage();
    await fc.assert(
      fc.asyncProperty(mixedStream, async ({ options, lines }) => {
        await everyCut(seen, lines, options);
      }),
      { seed: 20240611, numRuns: 25, plugins: [SHRINK_LIMIT] },
    );
    expect(seen.evictions).toBeGreaterThan(5);
    expect(seen.generalisations).toBeGreaterThan(5);
    expect(seen.patternOrder).toBeGreaterThan(3);
  });

  it(`one split crowded past MAX_PATTERNS (${MAX_PATTERNS}) patterns: blocked sibling sets; 40 cuts a stream`, async () => {
    const seen = coverage();
    await fc.assert(
      fc.asyncProperty(crowdedStream, async ({ options, lines }) => {
        await everyCut(seen, lines, options, 40);
      }),
      { seed: 42, numRuns: 12, plugins: [SHRINK_LIMIT] },
    );
    expect(seen.blocked).toBeGreaterThan(3);
    expect(seen.generalisations).toBe(seen.runs);
    expect(seen.evictions).toBeGreaterThan(3);
  });

  it('the sibling sets of a full split: blocked, then refusing later siblings, with and without evictions', async () => {
    // Every family in order, each pair of values: 16 patterns, then each new one blocked; a sibling that comes to
    // a blocked set is refused its signature. With a small maxTemplates, evictions empty some sets.
    const lines: Line[] = [];
    const at = (f: number, first: number, second: number) => [0, 0, 0, 0, 0, 0, 0, 0].map((_, p) => (p === SETS[f][1] ? second : first));
    for (let f = 0; f < SETS.length; f++) for (const b of [0, 1]) for (const a of [0, 1]) lines.push({ message: statement(f, SETS[f], 2, at(f, a, b), 99), group: 'nova.compute.manager' });
    // The blocked sets' later siblings (family q's `fq gq x x <*> x red x` and `… green x` are blocked at position
    // 6): `42` (masked: `<*>`) at the family's first position, a third value at its second.
    for (let f = 16; f < SETS.length; f++) {
      const [p, q] = SETS[f];
      const values = [2, 2, 2, 2, 2, 2, 2, 2].map((v, i) => (i === p ? VOCAB.indexOf('42') : v));
      lines.push({ message: statement(f, [q], 3, values, p), group: 'nova.compute.manager' });
    }
    for (const options of [{ distinctValues: 2 }, { distinctValues: 2, maxTemplates: 24 }, { distinctValues: 2, maxTemplates: 18 }]) {
      const a = uninterrupted(lines, options);
      if (options.maxTemplates) expect(a.miner.evictions).toBeGreaterThan(0);
      const held = await expectCutAnywhere(lines, options, cutsOf(lines.length, lines.length + 1), a, false);
      expect(held.filter((d) => d.blocked.length > 0).length, `blocked, ${JSON.stringify(options)}`).toBeGreaterThan(0);
      expect(held.filter((d) => d.unregistered.length > 0).length, `unregistered, ${JSON.stringify(options)}`).toBeGreaterThan(0);
    }
  });

  it('a signature won by hash collision, the winner evicted before the cut: the loser stays unregistered', async () => {
    // `open umsk now` and `shut ruc down` (group `nova.compute`) have one signature at position 0 by a hash
    // collision, found by a birthday search over the miner's signature function. The first holds it; the second is
    // refused it. Once the first is evicted, the siblings of the second (`halt ruc down`, …) take the signature
    // without it: three of them generalise at the third. A miner rebuilt from the templates alone would register
    // `shut ruc down` there, and generalise a line early, taking it in.
    const g = 'nova.compute';
    const messages = ['open umsk now', 'shut ruc down', 'shut ruc down', 'a', 'a b', 'a b c', 'halt ruc down', 'stop ruc down', 'quit ruc down', 'shut ruc down', 'kill ruc down'];
    const lines = messages.map((message): Line => ({ message, group: message.startsWith('a') ? 'filler' : g }));
    const options = { maxTemplates: 4, distinctValues: 3 };
    const a = uninterrupted(lines, options);
    // The premise: the collision (the second template is refused its position 0), and the winner's eviction.
    const m = new Miner(options);
    lines.slice(0, 2).forEach((l) => m.add(l.message, { group: l.group }));
    expect(dataOf(m).unregistered, 'the hash collision (the signature function changed? find another pair)').toEqual([[1, 0]]);
    lines.slice(2, 6).forEach((l) => m.add(l.message, { group: l.group }));
    expect(m.match('open umsk now', g)).toBeUndefined();
    expect(m.match('shut ruc down', g)?.text).toBe('shut ruc down');
    expect(dataOf(m).unregistered).toHaveLength(1);
    // Generalised at the third sibling, `shut ruc down` kept apart.
    expect(a.generalisedAt).toEqual([8]);
    expect(a.steps[9]).toMatch(/ shut ruc down$/);
    expect(a.steps[10]).toMatch(/ <\*> ruc down$/);
    await expectCutAnywhere(lines, options, cutsOf(lines.length, lines.length + 1), a);
  });
});

// ---- refusals ----

/** A probe: lines that generalise (distinctValues 3) and evict (maxTemplates 6) in a new miner. */
const PROBE: Line[] = [
  ...['alpha', 'beta', 'gamma', 'delta'].map((w) => ({ message: `probe ${w} done`, group: 'probe' })),
  ...['a', 'a b', 'a b c', 'a b c d', 'a b c d e', 'a b c d e f'].map((message) => ({ message, group: 'filler' })),
  { message: 'probe epsilon done', group: 'probe' },
];
const PROBE_OPTIONS = { maxTemplates: 6, distinctValues: 3 };

/** The miner behaves as a new one: nothing held, and the probe mined as a new miner mines it. */
function expectAsNew(m: Miner): void {
  const fresh = new Miner(PROBE_OPTIONS);
  expect([m.size, m.evictions, m.generalisations]).toEqual([0, 0, 0]);
  expect(asJson(m.snapshot())).toEqual(asJson(fresh.snapshot()));
  const want = PROBE.map((l) => step(fresh, l));
  expect(fresh.evictions).toBeGreaterThan(0);
  expect(fresh.generalisations).toBeGreaterThan(0);
  expect(PROBE.map((l) => step(m, l))).toEqual(want);
  expect(asJson(m.snapshot())).toEqual(asJson(fresh.snapshot()));
}

/** A snapshot with every part: general positions, several patterns in a split, blocked sets, unregistered
 * positions, labels and times (the crowded families, then the probe's group). */
const RICH_OPTIONS = { maxTemplates: 500, distinctValues: 2 };
function richSnapshot(): MinerSnapshot {
  const m = new Miner(RICH_OPTIONS);
  for (let f = 0; f < SETS.length; f++)
    for (const v of [0, 1, 2])
      for (const w of [0, 1]) {
        const values = [v, v, v, v, v, v, v, v].map((x, p) => (p === SETS[f][1] ? w : x));
        m.add(statement(f, SETS[f], 3, values, 99), { group: 'nova.compute.manager', time: `2022-02-04T10:0${v}:0${w}.000Z`, labels: { service: 'nova-compute', level: 'INFO' } });
      }
  m.add('when 2022-02-04 10:08:19', { group: 'probe', time: '2022-02-04 10:08:19' });
  const s = asJson(m.snapshot());
  const d = s.data as Data;
  expect(d.general?.length).toBeGreaterThan(0);
  expect(d.patterns.length).toBeGreaterThan(0);
  expect(d.blocked.length).toBeGreaterThan(0);
  expect(d.unregistered.length).toBeGreaterThan(0);
  expect(d.labels).toBeDefined();
  return s;
}

describe('restore refuses what is not a snapshot of this miner: a reason naming the field, never a throw, the miner as new', () => {
  let good: MinerSnapshot;
  beforeAll(() => {
    good = richSnapshot();
  });
  /** A copy of the good snapshot's data, changed. */
  const altered = (change: (d: Data) => void): MinerSnapshot => {
    const s = structuredClone(good);
    change(s.data as Data);
    return s;
  };

  it('takes the good one, whole', () => {
    const m = new Miner(RICH_OPTIONS);
    expect(m.restore(structuredClone(good))).toBeUndefined();
    expect(asJson(m.snapshot())).toEqual(good);
  });

  const cases: [string, () => unknown, RegExp][] = [
    ['undefined', () => undefined, /^expected an object \{ v, data \}, got undefined/],
    ['null', () => null, /^expected an object \{ v, data \}, got null/],
    ['a string', () => JSON.stringify(good), /^expected an object \{ v, data \}, got string/],
    ['a number', () => 1, /^expected an object \{ v, data \}, got number/],
    ['an array', () => [good], /^expected an object \{ v, data \}, got an array/],
    ['no version', () => ({ data: good.data }), /^v: /],
    ['another version', () => ({ ...good, v: 2 }), /^v: version 2 /],
    ['the version as text', () => ({ ...good, v: '1' }), /^v: /],
    ['no data', () => ({ v: good.v }), /^data: /],
    ['data not an object', () => ({ v: good.v, data: [] }), /^data: /],
    ['an unknown field', () => altered((d) => Object.assign(d, { extra: 1 })), /^data\.extra: unknown field/],
    ['groups of the wrong type', () => altered((d) => Object.assign(d, { groups: 'nova' })), /^data\.groups: /],
    ['evictions of the wrong type', () => altered((d) => Object.assign(d, { evictions: '3' })), /^data\.evictions: /],
    ['a negative count', () => altered((d) => (d.count[2] = -1)), /^data\.count\[2\]: /],
    ['a time of the wrong type', () => altered((d) => (d.first[1] = true)), /^data\.first\[1\]: /],
    ['a token list of the wrong type', () => altered((d) => (d.tokens[0] = 7 as never)), /^data\.tokens\[0\]: /],
    ['a token holding U+0002', () => altered((d) => (d.tokens[0] = ['a\u0002b'])), /^data\.tokens\[0\]/],
    ['a count column one short', () => altered((d) => d.count.pop()), /^data\.count: expected one entry per template/],
    ['a first column one long', () => altered((d) => d.first.push(null)), /^data\.first: expected one entry per template/],
    ['a labels column one short', () => altered((d) => d.labels!.pop()), /^data\.labels: expected one entry per template/],
    ['a general column one short', () => altered((d) => d.general!.pop()), /^data\.general: expected one entry per template/],
    ['a group out of range', () => altered((d) => (d.group[0] = d.groups.length)), /^data\.group\[0\]: /],
    ['a general position that is not <*>', () => altered((d) => (d.general![d.general!.findIndex((g) => g.length > 0)] = [0])), /^data\.general\[\d+\]: /],
    [
      'a template twice',
      () =>
        altered((d) => {
          // A template without generalised positions made the same as another.
          const j = d.group.findIndex((_, i) => i > 0 && !d.general?.[i].length);
          d.group[j] = d.group[0];
          d.tokens[j] = d.tokens[0];
        }),
      /^data\.tokens\[\d+\]: the template appears twice/,
    ],
    ['an LRU that lists a template twice', () => altered((d) => (d.lru[0] = d.lru[1])), /^data\.lru: /],
    ['an LRU one short', () => altered((d) => d.lru.pop()), /^data\.lru: /],
    ['more seen once than templates', () => altered((d) => (d.once = d.group.length + 1)), /^data\.once: /],
    ['a blocked set at a <*> position', () => altered((d) => (d.blocked[0] = [d.blocked[0][0], d.general![d.blocked[0][0]]?.[0] ?? 99])), /^data\.blocked\[0\]: /],
    ['an unregistered position past the template', () => altered((d) => (d.unregistered[0] = [d.unregistered[0][0], 64])), /^data\.unregistered\[0\]: /],
    ['an unregistered template that is not there', () => altered((d) => (d.unregistered[0] = [d.group.length, 0])), /^data\.unregistered\[0\]: /],
    ['a pattern order that is not the split', () => altered((d) => d.patterns[0].order.pop()), /^data\.patterns\[0\]: /],
    [
      'the columns cut short (the first half of each)',
      () =>
        altered((d) => {
          const half = Math.floor(d.group.length / 2);
          for (const k of ['group', 'tokens', 'general', 'count', 'first', 'last', 'labels'] as const) d[k]?.splice(half);
        }),
      /^data\.(lru|once|blocked|unregistered|patterns)\b/,
    ],
  ];

  it.each(cases)('%s', (_, make, reason) => {
    for (const m of [new Miner(PROBE_OPTIONS), withState()]) {
      let got: string | undefined;
      expect(() => (got = m.restore(make()))).not.toThrow();
      expect(got).toMatch(reason);
      expectAsNew(m);
    }
  });

  it('the snapshot cut short after any of its fields: refused, naming a missing field', () => {
    const keys = Object.keys(good.data as Data);
    for (let n = 0; n < keys.length; n++) {
      const data = Object.fromEntries(keys.slice(0, n).map((k) => [k, (good.data as Record<string, unknown>)[k]]));
      const m = withState();
      let got: string | undefined;
      expect(() => (got = m.restore({ v: good.v, data }))).not.toThrow();
      const named = /^data\.(\w+): required/.exec(got ?? '');
      expect(named, `cut after ${n} fields: ${got}`).not.toBeNull();
      expect(keys.slice(n)).toContain(named![1]);
      expectAsNew(m);
    }
  });

  it('a snapshot changed anywhere, at random: never a throw; refused, the miner is as new; taken, it mines on within its bound', async () => {
    // Paths into the good snapshot, and values to put there.
    const paths: (string | number)[][] = [];
    const walk = (x: unknown, path: (string | number)[]) => {
      paths.push(path);
      if (Array.isArray(x)) x.forEach((y, i) => walk(y, [...path, i]));
      else if (x && typeof x === 'object') for (const [k, y] of Object.entries(x)) walk(y, [...path, k]);
    };
    walk(good, []);
    const value = fc.oneof(
      fc.constantFrom(undefined, null, 0, 1, 2, 3, -1, 1.5, 63, 64, 1e9, '', 'x', '<*>', 'a b', '2022-02-04T10:00:00.000Z', [], {}, [0], [0, 0], [[0]], [[2, 3]]),
      fc.jsonValue({ maxDepth: 2 }),
    );
    let taken = 0;
    await fc.assert(
      fc.asyncProperty(fc.nat({ max: paths.length - 1 }), value, fc.boolean(), async (p, v, remove) => {
        await setImmediate();
        const s = structuredClone(good) as unknown as Record<string | number, unknown>;
        const path = paths[p];
        let state: unknown = s;
        if (path.length === 0) state = v;
        else {
          let at = s;
          for (const k of path.slice(0, -1)) at = at[k] as Record<string | number, unknown>;
          const last = path.at(-1)!;
          if (remove && Array.isArray(at) && typeof last === 'number') at.splice(last, 1);
          else if (remove) delete at[last];
          else at[last] = v;
        }
        const m = new Miner(RICH_OPTIONS);
        let got: string | undefined;
        expect(() => (got = m.restore(state))).not.toThrow();
        if (got !== undefined) {
          expect([m.size, m.evictions, m.generalisations]).toEqual([0, 0, 0]);
          return;
        }
        taken++;
        for (let f = 0; f < SETS.length; f++) m.add(statement(f, SETS[f], 4, [3, 3, 3, 3, 3, 3, 3, 3], 99), { group: 'nova.compute.manager' });
        for (const l of PROBE) m.add(l.message, { group: l.group });
        expect(m.size).toBeLessThanOrEqual(RICH_OPTIONS.maxTemplates);
        const again = new Miner(RICH_OPTIONS);
        expect(again.restore(asJson(m.snapshot()))).toBeUndefined();
      }),
      { seed: 99, numRuns: 400, plugins: [SHRINK_LIMIT] },
    );
    expect(taken).toBeGreaterThan(0);
  });

  /** A miner that holds something (a restored snapshot, then lines), about to be given a bad snapshot. */
  function withState(): Miner {
    const m = new Miner(PROBE_OPTIONS);
    expect(m.restore(structuredClone(good))).toBeUndefined();
    for (const l of PROBE) m.add(l.message, { group: l.group });
    expect(m.size).toBeGreaterThan(0);
    return m;
  }
});

// ---- bounds ----

describe("a restored miner keeps its own maxTemplates (the snapshot's miner was allowed more)", () => {
  it('evicts down to its bound at once, as a new line would (the LRU order: seen once first), counts them, and stays within it', () => {
    const big = new Miner({ maxTemplates: 150 });
    const cut = 8000;
    NOVA.slice(0, cut).forEach((l) => step(big, l));
    expect(big.size).toBe(150);
    const s = asJson(big.snapshot());
    const d = s.data as Data;
    const keyOf = (i: number) => `${d.groups[d.group[i]]} ${[d.tokens[i]].flat().join(' ')}`;
    const small = new Miner({ maxTemplates: 20 });
    expect(small.restore(s)).toBeUndefined();
    expect(small.size).toBe(20);
    expect(small.evictions).toBe(big.evictions + 130);
    expect(small.generalisations).toBe(big.generalisations);
    // The ones kept: the last 20 that eviction would take (LRU: the segment of templates seen once first).
    const kept = dataOf(small);
    const keptKeys = kept.group.map((_, i) => `${kept.groups[kept.group[i]]} ${[kept.tokens[i]].flat().join(' ')}`);
    expect(new Set(keptKeys)).toEqual(new Set(d.lru.slice(-20).map(keyOf)));
    // It mines on within its bound, and as a miner restored from its own snapshot does.
    const twin = new Miner({ maxTemplates: 20 });
    expect(twin.restore(asJson(small.snapshot()))).toBeUndefined();
    for (const l of NOVA.slice(cut)) {
      expect(step(small, l)).toBe(step(twin, l));
      expect(small.size).toBeLessThanOrEqual(20);
    }
    expect(asJson(small.snapshot())).toEqual(asJson(twin.snapshot()));
  });

  it('a snapshot of a miner allowed fewer is taken whole, and the miner grows to its own bound', () => {
    const few = new Miner({ maxTemplates: 20 });
    NOVA.slice(0, 3000).forEach((l) => step(few, l));
    const many = new Miner({ maxTemplates: 100 });
    expect(many.restore(asJson(few.snapshot()))).toBeUndefined();
    expect(asJson(many.snapshot())).toEqual(asJson(few.snapshot()));
    let most = 0;
    for (const l of NOVA.slice(3000)) {
      step(many, l);
      most = Math.max(most, many.size);
    }
    expect(most).toBe(100);
  });
});
