// Processor state checkpoints (state/store.ts) on a log in memory: chunks and their assembly, the manifest's schema,
// double buffering (a save cut after any of its messages leaves the previous checkpoint whole), saves of the changed
// parts only, tombstones, and the problems a damaged checkpoint is reported with. test/integration/state-store.test.ts
// runs the same store on the real Kafka.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { setImmediate } from 'node:timers/promises';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { InMessage, KeyedMessage } from '../../core/kafka.ts';
import { assemblePart, CHUNK_BYTES, chunkKey, encodePart, manifestKey, splitUtf8, StateStore, type Manifest, type StateLog } from '../../state/store.ts';

/** A compacted topic's log as a list: what was sent, in order. */
class MemoryLog implements StateLog {
  readonly messages: KeyedMessage[] = [];
  /** How many more messages are taken before a send fails (a broker gone in the middle of a save). */
  acceptOnly = Infinity;
  reads = 0;

  async send(messages: KeyedMessage[]): Promise<void> {
    for (const m of messages) {
      if (this.acceptOnly <= 0) throw new Error('broker gone');
      this.acceptOnly--;
      this.messages.push(m);
    }
  }

  async read<A>(start: () => A, add: (acc: A, m: InMessage) => void): Promise<A> {
    this.reads++;
    const acc = start();
    this.messages.forEach((m, i) => add(acc, { offset: String(i), ...m }));
    return acc;
  }

  async close(): Promise<void> {}

  /** The latest value of each key, as compaction leaves the log. */
  latest(): Map<string, string> {
    const out = new Map<string, string>();
    for (const m of this.messages) m.value === null ? out.delete(m.key) : out.set(m.key, m.value);
    return out;
  }

  manifest(owner: string): Manifest {
    return JSON.parse(this.latest().get(manifestKey(owner))!);
  }
}

const LOGHUB = readFileSync(new URL('../fixtures/loghub-OpenStack_2k.log', import.meta.url), 'utf8')
  .split('\n')
  .filter(Boolean);

/** A detector's state as KeyedState.snapshot gives it, of `entries` entries: keys and values from Loghub's real
 * OpenStack lines (each ~300 bytes), with some non-ASCII text so that chunk boundaries fall inside characters. */
function detectorState(entries: number): { v: number; data: unknown } {
  const keys = Array.from({ length: entries }, (_, i) => `${LOGHUB[i % LOGHUB.length].slice(0, 60)}#${i}`);
  const values = keys.map((_, i) => ({ line: LOGHUB[(i * 7) % LOGHUB.length], note: i % 3 === 0 ? 'réseau coupé € 🔥' : '' }));
  return { v: 1, data: { keys, seen: keys.map((_, i) => 1_494_892_800_000 + i), values, open: 0 } };
}

const BIG = detectorState(8_000); // ~3.3 MB of JSON
const OFFSETS = { 'stackwatch.logs': { '0': '1200', '1': '998', '2': '1034' }, 'stackwatch.health': { '0': '17' } };

describe('chunks', () => {
  it('cuts text into pieces of at most the limit in UTF-8 bytes, never inside a character, that join to the text', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 200 }), fc.integer({ min: 4, max: 40 }), (text, max) => {
        const pieces = splitUtf8(text, max);
        expect(pieces.join('')).toBe(text);
        for (const p of pieces) {
          expect(Buffer.byteLength(p)).toBeLessThanOrEqual(max);
          expect(p.length).toBeGreaterThan(0);
        }
      }),
    );
    // '€' is 3 bytes: a cut after 4 bytes would fall inside the second one.
    expect(splitUtf8('a€€b', 4)).toEqual(['a€', '€b']);
  });

  it('writes a 3 MB part as chunks of at most 512 KiB that assemble back to the same value', () => {
    const { entry, messages } = encodePart('p1', 'B', 'engine', 7, BIG);
    const json = JSON.stringify(BIG);
    expect(entry).toMatchObject({ slot: 'B', seq: 7, n: Math.ceil(Buffer.byteLength(json) / CHUNK_BYTES), bytes: Buffer.byteLength(json) });
    expect(entry.n).toBeGreaterThanOrEqual(6);
    expect(messages.map((m) => m.key)).toEqual(Array.from({ length: entry.n }, (_, i) => `p1|B|engine|${i}`));
    for (const [i, m] of messages.entries()) {
      const [header, text] = [m.value!.slice(0, m.value!.indexOf('\n')), m.value!.slice(m.value!.indexOf('\n') + 1)];
      expect(JSON.parse(header)).toEqual({ seq: 7, part: 'engine', i, n: entry.n });
      expect(Buffer.byteLength(text)).toBeLessThanOrEqual(CHUNK_BYTES);
    }
    const values = new Map(messages.map((m) => [m.key, m.value!]));
    expect(assemblePart('p1', 'engine', entry, values)).toEqual({ value: BIG });
  });
});

describe('save and load', () => {
  it('loads what was saved: the parts, the offsets, the save number and time', async () => {
    const log = new MemoryLog();
    const store = new StateStore(log);
    const parts = { engine: BIG, correlator: { v: 1, data: { open: [] } }, miner: { v: 2, data: { templates: LOGHUB.slice(0, 50) } } };
    const saved = await store.save('processor-1', { offsets: OFFSETS, parts });
    const jsonBytes = Object.values(parts).reduce((n, v) => n + Buffer.byteLength(JSON.stringify(v)), 0);
    expect(saved.bytes).toBe(jsonBytes);
    expect(saved.chunks).toBe(log.messages.length - 1); // and the manifest
    expect(log.messages.at(-1)!.key).toBe('processor-1|manifest');

    const loaded = await new StateStore(log).load('processor-1');
    expect(loaded.problems).toEqual([]);
    expect(loaded.checkpoint).toEqual({ owner: 'processor-1', seq: 1, at: expect.stringMatching(/^\d{4}-\d\d-\d\dT/), offsets: OFFSETS, parts });
  });

  it('writes only the changed parts, to the other slot, and keeps the others as they were', async () => {
    const log = new MemoryLog();
    const store = new StateStore(log);
    await store.save('p1', { offsets: OFFSETS, parts: { engine: BIG, correlator: { v: 1, data: 'c1' }, miner: { v: 1, data: 'm1' } } });
    const before = log.messages.length;
    const first = log.manifest('p1');

    const offsets2 = { 'stackwatch.logs': { '0': '1300', '1': '998', '2': '1034' } };
    // Given with the others' values, as a caller that snapshots everything may: only the changed one is written.
    const saved = await store.save('p1', { offsets: offsets2, parts: { engine: BIG, correlator: { v: 1, data: 'c2' }, miner: { v: 1, data: 'm1' } }, changed: ['correlator'] });
    expect(saved.chunks).toBe(1);
    expect(log.messages.slice(before).map((m) => m.key)).toEqual(['p1|B|correlator|0', 'p1|manifest']);
    const second = log.manifest('p1');
    expect(second.seq).toBe(2);
    expect(second.parts.engine).toEqual(first.parts.engine); // not written again: slot A, save 1
    expect(second.parts.correlator).toMatchObject({ slot: 'B', seq: 2, n: 1 });

    // Nothing changed but the offsets: the manifest alone.
    const third = await store.save('p1', { offsets: OFFSETS, parts: {}, changed: [] });
    expect(third).toMatchObject({ chunks: 0, bytes: 0 });
    expect(log.messages.length).toBe(before + 3);

    const loaded = await new StateStore(log).load('p1');
    expect(loaded.problems).toEqual([]);
    expect(loaded.checkpoint).toMatchObject({ seq: 3, offsets: OFFSETS, parts: { engine: BIG, correlator: { v: 1, data: 'c2' }, miner: { v: 1, data: 'm1' } } });
  });

  it('removes a part named changed without a value, and deletes the chunks no manifest needs any more', async () => {
    const log = new MemoryLog();
    const store = new StateStore(log);
    const small = { v: 1, data: 'small' };
    await store.save('p1', { offsets: OFFSETS, parts: { engine: BIG, miner: BIG } }); // both in A
    await store.save('p1', { offsets: OFFSETS, parts: { engine: BIG }, changed: ['engine'] }); // engine in B
    const n = log.manifest('p1').parts.engine.n;
    const before = log.messages.length;
    // engine back to A with one chunk: A's chunks 2..n are stale; miner is gone: all its chunks are.
    await store.save('p1', { offsets: OFFSETS, parts: { engine: small }, changed: ['engine', 'miner'] });
    const written = log.messages.slice(before);
    expect(written.filter((m) => m.value !== null).map((m) => m.key)).toEqual(['p1|A|engine|0', 'p1|manifest']);
    expect(written.filter((m) => m.value === null).map((m) => m.key)).toEqual([
      ...Array.from({ length: n - 1 }, (_, i) => `p1|A|engine|${i + 1}`),
      ...Array.from({ length: n }, (_, i) => `p1|A|miner|${i}`),
    ]);
    expect(written.findIndex((m) => m.value === null)).toBeGreaterThan(written.findIndex((m) => m.key === 'p1|manifest')); // after the manifest
    // What compaction leaves: the manifest, engine's one chunk in A and its previous version in B.
    expect([...log.latest().keys()].filter((k) => k.startsWith('p1|A|'))).toEqual(['p1|A|engine|0']);
    const loaded = await new StateStore(log).load('p1');
    expect(loaded).toEqual({ checkpoint: expect.objectContaining({ seq: 3, parts: { engine: small } }), problems: [] });
  });

  it('leaves the previous checkpoint whole when a save is cut after any of its messages; the next save goes on from there', async () => {
    const reference = new MemoryLog();
    await new StateStore(reference).save('p1', { offsets: OFFSETS, parts: { engine: BIG, miner: { v: 1, data: 'm1' } } });
    const previous = await new StateStore(reference).load('p1');
    const next = { engine: detectorState(9_000), miner: { v: 1, data: 'm2' } };
    const messagesOfSave = encodePart('p1', 'B', 'engine', 2, next.engine).messages.length + 2;
    for (let cut = 0; cut < messagesOfSave; cut++) {
      // The worker's loop gets a turn at each cut (MemoryLog's promises are settled at once: no turn otherwise), as
      // vitest ends the run when its worker does not answer for a minute.
      await setImmediate();
      const log = new MemoryLog();
      log.messages.push(...reference.messages);
      const store = new StateStore(log);
      await store.load('p1');
      log.acceptOnly = cut;
      await expect(store.save('p1', { offsets: {}, parts: next })).rejects.toThrow('broker gone');
      expect(log.messages.length, `cut after ${cut}`).toBe(reference.messages.length + cut);
      expect(await new StateStore(log).load('p1'), `cut after ${cut}`).toEqual(previous);

      // The same store, Kafka back: the interrupted save's number is not used again.
      log.acceptOnly = Infinity;
      await store.save('p1', { offsets: {}, parts: next });
      const loaded = await new StateStore(log).load('p1');
      expect(loaded.problems).toEqual([]);
      expect(loaded.checkpoint).toMatchObject({ seq: cut === 0 ? 2 : 3, parts: next });
    }
  });

  it('reads the log before the first save of an owner it has not loaded, and goes on from its checkpoint', async () => {
    const log = new MemoryLog();
    await new StateStore(log).save('p1', { offsets: OFFSETS, parts: { engine: { v: 1, data: 'e1' }, miner: { v: 1, data: 'm1' } } });
    const store = new StateStore(log);
    const reads = log.reads;
    await store.save('p1', { offsets: OFFSETS, parts: {}, changed: [] });
    expect(log.reads).toBe(reads + 1);
    await store.save('p1', { offsets: OFFSETS, parts: { miner: { v: 1, data: 'm3' } }, changed: ['miner'] });
    expect(log.reads).toBe(reads + 1);
    expect(log.manifest('p1')).toMatchObject({ seq: 3, parts: { engine: { slot: 'A', seq: 1 }, miner: { slot: 'B', seq: 3 } } });
  });

  it('keeps owners apart, even when one name starts with the other; list() shows each', async () => {
    const log = new MemoryLog();
    const store = new StateStore(log);
    await store.save('processor-1', { offsets: OFFSETS, parts: { engine: { v: 1, data: 'one' } } });
    await store.save('processor-10', { offsets: {}, parts: { engine: { v: 1, data: 'ten' }, miner: { v: 1, data: 'x'.repeat(100) } } });
    await store.save('processor-1', { offsets: OFFSETS, parts: { engine: { v: 1, data: 'one again' } } });
    const other = new StateStore(log);
    expect((await other.load('processor-1')).checkpoint).toMatchObject({ seq: 2, parts: { engine: { v: 1, data: 'one again' } } });
    expect((await other.load('processor-10')).checkpoint).toMatchObject({ seq: 1, parts: { engine: { v: 1, data: 'ten' } } });
    expect(await other.load('processor-2')).toEqual({ problems: [] });
    log.messages.push({ key: 'broken|manifest', value: '{"v":1}' });

    const listed = await other.list();
    expect(listed.problems).toEqual(['broken/manifest: owner: required']);
    expect(listed.checkpoints).toEqual([
      { owner: 'processor-1', seq: 2, at: expect.any(String), offsets: OFFSETS, parts: [{ name: 'engine', bytes: 26, chunks: 1 }] },
      {
        owner: 'processor-10',
        seq: 1,
        at: expect.any(String),
        offsets: {},
        parts: [
          { name: 'engine', bytes: 20, chunks: 1 },
          { name: 'miner', bytes: 117, chunks: 1 },
        ],
      },
    ]);
  });

  it('refuses, before writing anything, names with |, values that are not JSON and offsets that are not offsets', async () => {
    const log = new MemoryLog();
    const store = new StateStore(log);
    await expect(store.save('a|b', { offsets: {}, parts: {} })).rejects.toThrow('state owner "a|b": expected 1 to 200 characters other than |');
    await expect(store.load('')).rejects.toThrow('state owner "": expected 1 to 200 characters other than |');
    await expect(store.save('p1', { offsets: {}, parts: { 'x|y': 1 } })).rejects.toThrow('state part "x|y"');
    await expect(store.save('p1', { offsets: {}, parts: { engine: undefined } })).rejects.toThrow('state part p1/engine: cannot be saved as JSON: it is undefined');
    await expect(store.save('p1', { offsets: {}, parts: { engine: { n: 1n } } })).rejects.toThrow(/state part p1\/engine: cannot be saved as JSON: .*BigInt/);
    await expect(store.save('p1', { offsets: { logs: { zero: '1' } }, parts: {} })).rejects.toThrow('state checkpoint of p1: offsets.logs.zero: expected a partition number');
    await expect(store.save('p1', { offsets: { logs: { '0': '-1' } }, parts: {} })).rejects.toThrow('state checkpoint of p1: offsets.logs.0: expected an offset (digits)');
    expect(log.messages).toEqual([]);
  });
});

describe('a damaged checkpoint', () => {
  /** A log with one checkpoint of p1: engine (several chunks), correlator, miner. */
  async function saved(): Promise<{ log: MemoryLog; manifest: Manifest }> {
    const log = new MemoryLog();
    await new StateStore(log).save('p1', { offsets: OFFSETS, parts: { engine: BIG, correlator: { v: 1, data: 'c' }, miner: { v: 1, data: 'm' } } });
    return { log, manifest: log.manifest('p1') };
  }

  it('is loaded without the parts that fail their checks, each named with the reason', async () => {
    const cases: [string, string, (log: MemoryLog, m: Manifest) => void, RegExp][] = [
      ['a missing chunk', 'engine', (log) => log.messages.push({ key: 'p1|A|engine|2', value: null }), /^p1\/engine: chunk 3 of \d+ \(p1\|A\|engine\|2\) missing$/],
      [
        'a chunk of another save',
        'engine',
        (log) => log.messages.push({ key: 'p1|A|engine|0', value: encodePart('p1', 'A', 'engine', 5, BIG).messages[0].value }),
        /^p1\/engine: chunk 1 of \d+ \(p1\|A\|engine\|0\) is from save 5, the manifest's part from save 1/,
      ],
      ['a value that is not a chunk', 'engine', (log) => log.messages.push({ key: 'p1|A|engine|1', value: 'garbage' }), /^p1\/engine: chunk 2 of \d+ .* is not a chunk \(no header line\)$/],
      [
        'a chunk header that does not validate',
        'engine',
        (log) => log.messages.push({ key: 'p1|A|engine|1', value: '{"seq":1,"part":"engine","i":-1,"n":7}\n{}' }),
        /^p1\/engine: chunk 2 of \d+ .* is not a chunk \(header i: Too small: expected number to be >=0\)$/,
      ],
      [
        'a chunk of its part under another index',
        'engine',
        (log) => log.messages.push({ key: 'p1|A|engine|1', value: encodePart('p1', 'A', 'engine', 1, BIG).messages[3].value }),
        /^p1\/engine: chunk 2 of (\d+) .* says it is chunk 4 of \1 of part engine$/,
      ],
      [
        'changed text',
        'correlator',
        (log) => {
          const value = log.latest().get('p1|A|correlator|0')!;
          log.messages.push({ key: 'p1|A|correlator|0', value: value.replace('"c"', '"d"') });
        },
        /^p1\/correlator: its 18 bytes do not match the manifest's sha256 \(of 18 bytes\)$/,
      ],
      [
        'text that is not JSON (with a matching checksum)',
        'miner',
        (log, m) => {
          const bad = '{"v":1,';
          log.messages.push({ key: 'p1|B|miner|0', value: `${JSON.stringify({ seq: 2, part: 'miner', i: 0, n: 1 })}\n${bad}` });
          const entry = { slot: 'B', seq: 2, n: 1, bytes: bad.length, sha256: sha256(bad) };
          log.messages.push({ key: 'p1|manifest', value: JSON.stringify({ ...m, seq: 2, parts: { ...m.parts, miner: entry } }) });
        },
        /^p1\/miner: not JSON: /,
      ],
    ];
    for (const [what, damaged, damage, problem] of cases) {
      const { log, manifest } = await saved();
      damage(log, manifest);
      const loaded = await new StateStore(log).load('p1');
      expect(loaded.problems, what).toEqual([expect.stringMatching(problem)]);
      const expected = { engine: BIG, correlator: { v: 1, data: 'c' }, miner: { v: 1, data: 'm' } } as Record<string, unknown>;
      delete expected[damaged];
      expect(loaded.checkpoint?.parts, what).toEqual(expected);
      expect(loaded.checkpoint?.offsets, what).toEqual(OFFSETS);
    }
  });

  it('has no checkpoint when its manifest is unusable, and a problem naming the field', async () => {
    const cases: [string | null, string[]][] = [
      [null, []], // deleted: as on a first start
      ['{"v":1,', [expect.stringMatching(/^p1\/manifest: not JSON: /)]],
      [JSON.stringify({ v: 2 }), ['p1/manifest: v: Invalid input: expected 1']],
      ['MANIFEST', ['p1/manifest: parts.engine.sha256: expected a sha256 in hex']],
      ['OTHER-OWNER', ['p1/manifest: owner: expected "p1", got "p2"']],
    ];
    for (const [value, problems] of cases) {
      const { log, manifest } = await saved();
      const replaced =
        value === 'MANIFEST'
          ? JSON.stringify({ ...manifest, parts: { ...manifest.parts, engine: { ...manifest.parts.engine, sha256: 'abc' } } })
          : value === 'OTHER-OWNER'
            ? JSON.stringify({ ...manifest, owner: 'p2' })
            : value;
      log.messages.push({ key: manifestKey('p1'), value: replaced });
      expect(await new StateStore(log).load('p1'), String(value)).toEqual({ problems });
    }
  });

  it('does not keep a damaged part: the next save writes it again, or drops it', async () => {
    const { log } = await saved();
    log.messages.push({ key: chunkKey('p1', 'A', 'correlator', 0), value: null });
    log.messages.push({ key: chunkKey('p1', 'A', 'miner', 0), value: null });
    const store = new StateStore(log);
    expect((await store.load('p1')).problems).toHaveLength(2);
    // Neither named changed: correlator has a value and is written, miner has none and is dropped.
    await store.save('p1', { offsets: OFFSETS, parts: { correlator: { v: 1, data: 'fresh' } }, changed: [] });
    const loaded = await new StateStore(log).load('p1');
    expect(loaded).toEqual({ checkpoint: expect.objectContaining({ parts: { engine: BIG, correlator: { v: 1, data: 'fresh' } } }), problems: [] });
  });
});

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}
