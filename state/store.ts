// Processor state checkpoints in a compacted Kafka topic (issue 15): the processor's parts of state (the detector
// engine's, the incident correlator's, the template miner's snapshots, each a JSON value of a few KB to ~10 MB)
// together with the Kafka offsets that state reflects, so that a restarted processor resumes exactly there.
//
// Compaction keeps the latest value of each key, and one save is many messages, so a crash in the middle of a save
// must leave the previous checkpoint whole. Each part has two slots, A and B. A save writes each changed part, as
// chunks of at most 512 KiB of its JSON (keys `owner|slot|part|i`), to the slot the current manifest does not
// reference, and the manifest (`owner|manifest`: each part's slot, save number, chunk count, size and sha256) last.
// Until the manifest is acked, the current one names only slots the save did not touch; once it is, the stale chunks
// past a part's new count are deleted (tombstones). A part that did not change keeps its manifest entry and is not
// written again: one detector's change costs that detector's chunks and the manifest.
//
// One writer per owner (a processor instance): two processes saving under one owner overwrite each other's slots
// (load then reports the parts whose save numbers or checksums do not match). Memory: a read keeps the latest value
// of each of one owner's keys (up to both slots of each part) and skips everything else.
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { CompactedTopic, type InMessage, type KafkaConfig, type KeyedMessage } from '../core/kafka.ts';
import { errorText } from '../core/log.ts';
import { issueText } from '../core/schema.ts';

/** Most bytes of a part's JSON in one chunk (one Kafka message). */
export const CHUNK_BYTES = 512 * 1024;

/** The settings of a state topic the store creates. A load reads the whole log, the part not compacted yet included,
 * so the log is kept near its compacted size: segments (only closed ones are compacted) roll after 10 minutes or
 * 64 MiB instead of 7 days or 1 GiB, and compaction starts once 10 % of the log is superseded instead of 50 %. */
const STATE_TOPIC_SETTINGS: Record<string, string> = {
  'segment.ms': String(10 * 60_000),
  'segment.bytes': String(64 * 1024 * 1024),
  'min.cleanable.dirty.ratio': '0.1',
};

const SLOTS = ['A', 'B'] as const;
type Slot = (typeof SLOTS)[number];

/** Owner and part names: they are parts of message keys, which `|` separates. */
const Name = z.string().regex(/^[^|]{1,200}$/, { error: 'expected 1 to 200 characters other than |' });
const SaveNumber = z.number().int().positive();
/** A record whose keys are `key`, saying `expected` of a key that is not (zod's own words are "Invalid key in record"). */
const recordOf = <K extends z.ZodType<string>, V extends z.ZodType>(key: K, value: V, expected: string) =>
  z.record(key, value, { error: (issue) => (issue.code === 'invalid_key' ? expected : undefined) });
const Offsets = recordOf(
  z.string().min(1),
  recordOf(z.string().regex(/^\d+$/), z.string().regex(/^\d+$/, { error: 'expected an offset (digits)' }), 'expected a partition number'),
  'expected a topic name',
);
/** Per topic, per partition, the next offset to read. */
export type Offsets = z.infer<typeof Offsets>;

/** Where a part of a checkpoint is and how to check it. */
const PartEntry = z.strictObject({
  slot: z.enum(SLOTS),
  /** The save that wrote it: every one of its chunks carries this number. */
  seq: SaveNumber,
  /** How many chunks. */
  n: z.number().int().positive(),
  /** UTF-8 bytes of its JSON. */
  bytes: z.number().int().nonnegative(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/, { error: 'expected a sha256 in hex' }),
});
type PartEntry = z.infer<typeof PartEntry>;

/** The value of `owner|manifest`: the one message that makes a checkpoint. */
export const Manifest = z.strictObject({
  v: z.literal(1),
  owner: Name,
  seq: SaveNumber,
  at: z.iso.datetime({ offset: true, error: 'expected an ISO 8601 time' }),
  offsets: Offsets,
  parts: recordOf(Name, PartEntry, 'expected a part name: 1 to 200 characters other than |'),
});
export type Manifest = z.infer<typeof Manifest>;

/** The first line of a chunk's value; the chunk's text follows the newline. */
const ChunkHeader = z.strictObject({ seq: SaveNumber, part: Name, i: z.number().int().nonnegative(), n: z.number().int().positive() });
type ChunkHeader = z.infer<typeof ChunkHeader>;

export interface Checkpoint {
  owner: string;
  /** The save's number, one more than any before it under this owner. */
  seq: number;
  /** When it was saved (ISO 8601). */
  at: string;
  offsets: Offsets;
  /** Each part's value, as it was saved. */
  parts: Record<string, unknown>;
}

export interface Loaded {
  /** Absent when the owner never saved, or its manifest is unusable (then a problem says why). */
  checkpoint?: Checkpoint;
  /** Each names the owner and the part (or `manifest`) and what is wrong; a part named here is not in `parts`. */
  problems: string[];
}

export interface SaveInput {
  offsets: Offsets;
  /** The parts' values. A part the current checkpoint has, left out here and not named in `changed`, is kept as it is. */
  parts: Record<string, unknown>;
  /** The parts that changed since the last save (a name without a value in `parts`: the part is removed). Default:
   * every part, which makes the checkpoint exactly `parts`. Parts new to the checkpoint, and parts the last load
   * found damaged, are written (or dropped) whether named or not. */
  changed?: string[];
}

export interface Saved {
  /** Bytes of JSON written (the parts written, not the ones kept). */
  bytes: number;
  /** Chunk messages written. */
  chunks: number;
  ms: number;
}

export interface CheckpointSummary {
  owner: string;
  seq: number;
  at: string;
  offsets: Offsets;
  parts: { name: string; bytes: number; chunks: number }[];
}

export interface Listed {
  /** By owner. */
  checkpoints: CheckpointSummary[];
  /** Manifests that do not parse, each naming the owner and the field. */
  problems: string[];
}

/** Where checkpoints are kept: a compacted topic (CompactedTopic), or a list in memory in the unit tests. */
export interface StateLog {
  send(messages: KeyedMessage[]): Promise<void>;
  read<A>(start: () => A, add: (acc: A, m: InMessage) => void, signal?: AbortSignal): Promise<A>;
  close(): Promise<void>;
}

/** What a store knows of an owner's checkpoint in the topic: what its next save starts from. */
interface Known {
  manifest?: Manifest;
  /** The highest save number in the topic under this owner, an interrupted save's included. */
  seq: number;
  /** Parts of the manifest that failed verification: the next save writes them again or drops them. */
  failed: Set<string>;
  /** Keys of the owner's chunks in the topic. */
  chunks: Set<string>;
}

interface SavePlan {
  seq: number;
  manifest: Manifest;
  /** In the order they are to be sent. */
  chunks: KeyedMessage[];
  /** Keys of the chunks the new manifest does not need, to delete once it is acked. */
  tombstones: string[];
  bytes: number;
}

export const manifestKey = (owner: string) => `${owner}|manifest`;
export const chunkKey = (owner: string, slot: Slot, part: string, i: number) => `${owner}|${slot}|${part}|${i}`;

/** A chunk key of `owner`, taken apart; undefined for any other key. */
function parseChunkKey(owner: string, key: string): { slot: Slot; part: string; i: number } | undefined {
  const [o, slot, part, i, ...rest] = key.split('|');
  if (o !== owner || rest.length > 0 || (slot !== 'A' && slot !== 'B') || part === undefined || !/^\d+$/.test(i ?? '')) return undefined;
  return { slot, part, i: Number(i) };
}

function checkName(what: string, value: string): void {
  const r = Name.safeParse(value);
  if (!r.success) throw new Error(`state ${what} ${JSON.stringify(value)}: ${r.error.issues[0].message}`);
}

/** The text cut into pieces of at most `max` UTF-8 bytes, never inside a character. */
export function splitUtf8(text: string, max = CHUNK_BYTES): string[] {
  const buf = Buffer.from(text, 'utf8');
  const out: string[] = [];
  for (let start = 0; start < buf.length;) {
    let end = Math.min(start + max, buf.length);
    while (end < buf.length && (buf[end] & 0xc0) === 0x80) end--; // 10xxxxxx: a character's continuation byte
    out.push(buf.toString('utf8', start, end));
    start = end;
  }
  return out;
}

/** A part's value as chunk messages for `slot`, and its manifest entry. */
export function encodePart(owner: string, slot: Slot, part: string, seq: number, value: unknown): { entry: PartEntry; messages: KeyedMessage[] } {
  let json: string | undefined;
  try {
    json = JSON.stringify(value);
  } catch (err) {
    throw new Error(`state part ${owner}/${part}: cannot be saved as JSON: ${errorText(err)}`);
  }
  if (json === undefined) throw new Error(`state part ${owner}/${part}: cannot be saved as JSON: it is ${typeof value}`);
  const texts = splitUtf8(json);
  const n = texts.length;
  const messages = texts.map((text, i) => ({ key: chunkKey(owner, slot, part, i), value: `${JSON.stringify({ seq, part, i, n } satisfies ChunkHeader)}\n${text}` }));
  const bytes = Buffer.byteLength(json);
  return { entry: { slot, seq, n, bytes, sha256: createHash('sha256').update(json, 'utf8').digest('hex') }, messages };
}

/** A chunk message's value taken apart, or why it cannot be. */
function parseChunk(raw: string): { header: ChunkHeader; text: string } | { problem: string } {
  const nl = raw.indexOf('\n');
  if (nl < 0) return { problem: 'not a chunk (no header line)' };
  let header: unknown;
  try {
    header = JSON.parse(raw.slice(0, nl));
  } catch (err) {
    return { problem: `not a chunk (header: ${errorText(err)})` };
  }
  const r = ChunkHeader.safeParse(header);
  return r.success ? { header: r.data, text: raw.slice(nl + 1) } : { problem: `not a chunk (header ${issueText(r.error)})` };
}

/** A part's value from its chunks in `values`, checked against its manifest entry, or a problem naming owner/part. */
export function assemblePart(owner: string, part: string, e: PartEntry, values: ReadonlyMap<string, string>): { value: unknown } | { problem: string } {
  const at = `${owner}/${part}`;
  const hash = createHash('sha256');
  const texts: string[] = [];
  for (let i = 0; i < e.n; i++) {
    const key = chunkKey(owner, e.slot, part, i);
    const which = `chunk ${i + 1} of ${e.n} (${key})`;
    const raw = values.get(key);
    if (raw === undefined) return { problem: `${at}: ${which} missing` };
    const chunk = parseChunk(raw);
    if ('problem' in chunk) return { problem: `${at}: ${which} is ${chunk.problem}` };
    const h = chunk.header;
    if (h.seq !== e.seq) return { problem: `${at}: ${which} is from save ${h.seq}, the manifest's part from save ${e.seq} (overwritten by another save)` };
    if (h.part !== part || h.i !== i || h.n !== e.n) return { problem: `${at}: ${which} says it is chunk ${h.i + 1} of ${h.n} of part ${h.part}` };
    hash.update(chunk.text, 'utf8');
    texts.push(chunk.text);
  }
  const json = texts.join('');
  if (hash.digest('hex') !== e.sha256) return { problem: `${at}: its ${Buffer.byteLength(json)} bytes do not match the manifest's sha256 (of ${e.bytes} bytes)` };
  try {
    return { value: JSON.parse(json) };
  } catch (err) {
    return { problem: `${at}: not JSON: ${errorText(err)}` };
  }
}

/** A manifest's value parsed and validated, or a problem naming the owner and the field. */
function parseManifest(owner: string, raw: string): { manifest: Manifest } | { problem: string } {
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch (err) {
    return { problem: `${owner}/manifest: not JSON: ${errorText(err)}` };
  }
  const r = Manifest.safeParse(json);
  if (!r.success) return { problem: `${owner}/manifest: ${issueText(r.error)}` };
  if (r.data.owner !== owner) return { problem: `${owner}/manifest: owner: expected ${JSON.stringify(owner)}, got ${JSON.stringify(r.data.owner)}` };
  return { manifest: r.data };
}

/** The owner's checkpoint from the latest values of its keys, each part verified; and what the next save starts from. */
function readCheckpoint(owner: string, values: ReadonlyMap<string, string>): { loaded: Loaded; known: Known } {
  const known: Known = { seq: 0, failed: new Set(), chunks: new Set() };
  for (const [key, raw] of values) {
    if (!parseChunkKey(owner, key)) continue;
    known.chunks.add(key);
    const chunk = parseChunk(raw);
    if ('header' in chunk) known.seq = Math.max(known.seq, chunk.header.seq);
  }
  const raw = values.get(manifestKey(owner));
  if (raw === undefined) return { loaded: { problems: [] }, known };
  const parsed = parseManifest(owner, raw);
  if ('problem' in parsed) return { loaded: { problems: [parsed.problem] }, known };
  const m = parsed.manifest;
  known.manifest = m;
  known.seq = Math.max(known.seq, m.seq);
  const checkpoint: Checkpoint = { owner, seq: m.seq, at: m.at, offsets: m.offsets, parts: {} };
  const problems: string[] = [];
  for (const [part, entry] of Object.entries(m.parts)) {
    const got = assemblePart(owner, part, entry, values);
    if ('value' in got) checkpoint.parts[part] = got.value;
    else {
      problems.push(got.problem);
      known.failed.add(part);
    }
  }
  return { loaded: { checkpoint, problems }, known };
}

/** What a save writes: the changed parts' chunks to the slots the current manifest does not reference, the new
 * manifest, and the tombstones of the chunks the new manifest does not need (in a slot it references, past the
 * part's chunk count; of a part it no longer has). Throws, before anything is written, on a name or value that
 * cannot be saved. */
function planSave(owner: string, known: Known, input: SaveInput, at: string): SavePlan {
  const seq = known.seq + 1;
  const old = known.manifest?.parts ?? {};
  const changed = new Set(input.changed ?? [...Object.keys(input.parts), ...Object.keys(old)]);
  for (const part of known.failed) changed.add(part);
  const parts: Record<string, PartEntry> = {};
  const chunks: KeyedMessage[] = [];
  let bytes = 0;
  for (const part of new Set([...Object.keys(old), ...Object.keys(input.parts)])) {
    checkName('part', part);
    if (old[part] && !changed.has(part)) parts[part] = old[part];
    else if (Object.hasOwn(input.parts, part)) {
      const encoded = encodePart(owner, old[part]?.slot === 'A' ? 'B' : 'A', part, seq, input.parts[part]);
      parts[part] = encoded.entry;
      chunks.push(...encoded.messages);
      bytes += encoded.entry.bytes;
    }
  }
  const manifest = Manifest.safeParse({ v: 1, owner, seq, at, offsets: input.offsets, parts } satisfies Manifest);
  if (!manifest.success) throw new Error(`state checkpoint of ${owner}: ${issueText(manifest.error)}`);
  const tombstones = [...known.chunks].filter((key) => {
    const k = parseChunkKey(owner, key)!;
    const entry = parts[k.part];
    return !entry || (entry.slot === k.slot && k.i >= entry.n);
  });
  return { seq, manifest: manifest.data, chunks, tombstones, bytes };
}

/** What the store knows once `plan` is acked whole. */
function afterSave(known: Known, plan: SavePlan): Known {
  const chunks = new Set(known.chunks);
  for (const m of plan.chunks) chunks.add(m.key);
  for (const key of plan.tombstones) chunks.delete(key);
  return { manifest: plan.manifest, seq: plan.seq, failed: new Set(), chunks };
}

/** Every owner's checkpoint from the latest manifests (by key), parts not verified. */
function listCheckpoints(manifests: ReadonlyMap<string, string>): Listed {
  const out: Listed = { checkpoints: [], problems: [] };
  for (const [key, raw] of manifests) {
    const parsed = parseManifest(key.slice(0, key.indexOf('|')), raw);
    if ('problem' in parsed) {
      out.problems.push(parsed.problem);
      continue;
    }
    const { owner, seq, at, offsets, parts } = parsed.manifest;
    out.checkpoints.push({ owner, seq, at, offsets, parts: Object.entries(parts).map(([name, e]) => ({ name, bytes: e.bytes, chunks: e.n })) });
  }
  out.checkpoints.sort((a, b) => (a.owner < b.owner ? -1 : a.owner > b.owner ? 1 : 0));
  return out;
}

/** Opens (creating it if missing) the compacted topic checkpoints are kept in. */
export function openStateTopic(cfg: KafkaConfig, topic: string, signal?: AbortSignal): Promise<CompactedTopic> {
  return CompactedTopic.open(cfg, topic, 'state-store', STATE_TOPIC_SETTINGS, signal);
}

/** Checkpoints of any number of owners in one log. Its calls run one at a time, in the order they were made. */
export class StateStore {
  /** Per owner, what the last load or save left in the topic; forgotten when a save fails, so that the next one
   * reads what Kafka has rather than trust what it may or may not have taken. */
  private readonly known = new Map<string, Known>();
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly log: StateLog,
    private readonly signal?: AbortSignal,
  ) {}

  /** A store on the compacted topic `opts.topic`, created when missing (one partition, cleanup.policy=compact,
   * max.message.bytes=MAX_MESSAGE_BYTES). An existing topic that is not compacted is refused, the error naming it
   * and the setting. Waits, retrying, until Kafka answers (or `signal` aborts). */
  static async open(cfg: KafkaConfig, opts: { topic: string; signal?: AbortSignal }): Promise<StateStore> {
    return new StateStore(await openStateTopic(cfg, opts.topic, opts.signal), opts.signal);
  }

  /** Writes a checkpoint of `owner`; resolves once Kafka has acked all of it. If it throws, the previous checkpoint
   * is still the one a load gets (or this one, if only the deletion of stale chunks failed). */
  async save(owner: string, input: SaveInput): Promise<Saved> {
    checkName('owner', owner);
    return this.exclusive(async () => {
      const started = performance.now();
      const known = this.known.get(owner) ?? (await this.read(owner)).known;
      const plan = planSave(owner, known, input, new Date().toISOString());
      this.known.delete(owner);
      await this.log.send(plan.chunks);
      await this.log.send([{ key: manifestKey(owner), value: JSON.stringify(plan.manifest) }]);
      await this.log.send(plan.tombstones.map((key) => ({ key, value: null })));
      this.known.set(owner, afterSave(known, plan));
      return { bytes: plan.bytes, chunks: plan.chunks.length, ms: Math.round(performance.now() - started) };
    });
  }

  /** The owner's latest checkpoint, read from the start of the log to its end when the read began. Damage is reported
   * in `problems`, never thrown; throws only when Kafka cannot be read (after retrying). */
  async load(owner: string): Promise<Loaded> {
    checkName('owner', owner);
    return this.exclusive(async () => (await this.read(owner)).loaded);
  }

  /** Every owner's latest checkpoint, as its manifest describes it (the parts are not read). */
  list(): Promise<Listed> {
    return this.exclusive(async () => listCheckpoints(await this.latest((key) => key.endsWith('|manifest') && key.indexOf('|') === key.length - '|manifest'.length)));
  }

  /** Waits for the calls in progress, then disconnects. */
  async close(): Promise<void> {
    await this.queue;
    await this.log.close();
  }

  private async read(owner: string): Promise<{ loaded: Loaded; known: Known }> {
    const prefix = `${owner}|`;
    const got = readCheckpoint(owner, await this.latest((key) => key.startsWith(prefix)));
    this.known.set(owner, got.known);
    return got;
  }

  /** The latest value of each key `keep` takes: a tombstone removes the key, other keys are not kept. */
  private latest(keep: (key: string) => boolean): Promise<Map<string, string>> {
    return this.log.read(
      () => new Map<string, string>(),
      (acc, m) => {
        if (m.key === null || !keep(m.key)) return;
        if (m.value === null) acc.delete(m.key);
        else acc.set(m.key, m.value);
      },
      this.signal,
    );
  }

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => {});
    return run;
  }
}
