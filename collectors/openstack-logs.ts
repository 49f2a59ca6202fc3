// The OpenStack log collector: finds the configured files (globs), reads what was appended since the last
// checkpoint, folds multi-line events, masks secrets (collectors/assemble.ts) and produces each event to Kafka
// (key: host + file) through the emitter (collectors/emitter.ts). The checkpoint advances only after Kafka
// acknowledged the events, so a restart neither loses nor repeats one.
//
// A file is known by the hash of its first line (its "file id"), not its name: a renamed or copied file keeps
// its id, so it is not read twice, and the event ids derived from it stay the same. An open file is followed by
// its inode: after a rotation by rename the old file is read to its end before it is let go; a file truncated
// in place (copytruncate) is read again from its start.
import { createHash } from 'node:crypto';
import { createReadStream, fstatSync, statSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { hostname } from 'node:os';
import { createGunzip } from 'node:zlib';
import { globSync } from 'tinyglobby';
import { z } from 'zod';
import { durationMs, MAX_EVENT_BYTES_LIMIT, positiveInt } from '../core/config-fields.ts';
import { deadLetter, encodeLogBatches, type RawLogEvent } from '../core/events.ts';
import { errorText, type Logger } from '../core/log.ts';
import type { ComponentMetrics } from '../core/metrics.ts';
import { sleep } from '../core/retry.ts';
import { defineCollector, type CollectorContext, type StreamCollector } from './collector.ts';
import { EventAssembler, LineSplitter, type AssembledEvent, type UnusableLine } from './logs/assemble.ts';
import type { CheckpointStore } from './state.ts';

export const COMPONENT = 'openstack-logs';

/** `collectors.openstack_logs`. */
export const OpenstackLogsConfig = z.strictObject({
  paths: z.array(z.string().min(1), { error: 'expected an array of file paths or globs' }).min(1, { error: 'expected at least one path or glob' }),
  poll_interval_ms: durationMs.default(200),
  /** How often the paths are matched again, to find new files and rotated ones (each poll reads on in the files
   * already followed): matching walks the directories, which an idle collector did five times a second. */
  scan_interval_ms: durationMs.default(1000),
  /** Where checkpoints (file identity + offset acknowledged by Kafka) are kept. */
  checkpoint_dir: z.string().min(1).default('/var/lib/stackwatch'),
  /** host.name of the events; defaults to this machine's name. */
  host_name: z.string().min(1).default(hostname()),
  /** Largest number of events read before they are sent, and in one Kafka record (a record holds a batch of one
   * file's events, at most RECORD_MAX_BYTES of them). */
  batch_max_lines: positiveInt.default(5000),
  /** An event (with all its continuation lines) is cut at this size and marked truncated. */
  max_event_bytes: positiveInt.max(MAX_EVENT_BYTES_LIMIT, { error: `expected at most ${MAX_EVENT_BYTES_LIMIT} (16 MiB)` }).default(1024 * 1024),
  /** A multi-line event still open after this long without new lines is sent as it is. */
  multiline_flush_ms: durationMs.default(500),
  /** Keep the raw lines (envelopes included) in event.original. */
  keep_original: z.boolean().default(false),
  /** Where a file without a checkpoint that is there when the collector starts is read from: `beginning` (nothing
   * lost: a first start ships the history) or `end` (only what is written from now on: rsyslog imfile's
   * freshStartTail, Filebeat's tail_files) — for a host whose history is already elsewhere, or a cloud that ran
   * before stackwatch watched it. The skipped part is checkpointed at once, so a restart does not read it either.
   * Files that appear later (a rotation's successor) are always read from their beginning, and so are files that
   * have a checkpoint. */
  start_at: z.enum(['beginning', 'end']).default('beginning'),
});
export type OpenstackLogsConfig = z.infer<typeof OpenstackLogsConfig>;

const READ_CHUNK = 1024 * 1024;
/** A Kafka record holds one file's events up to about this much JSON (a larger event has a record of its own).
 * One record per event cost the collector most of its CPU (kafkajs encodes each record, and makes garbage doing
 * so); at this size a record holds several hundred events, and the emitter's requests (512 KiB) two of them. */
export const RECORD_MAX_BYTES = 64 * 1024;
const FINGERPRINT_BYTES = 1024;

/** The file id: a hash of the first line (or first KiB); undefined until the file has that much, unless
 * `whole` says the file will not grow (then a short file is known by all it has). */
export function fingerprint(head: Buffer, whole = false): string | undefined {
  const nl = head.indexOf(0x0a);
  if (nl < 0 && head.length < FINGERPRINT_BYTES && !whole) return undefined;
  const end = nl < 0 ? FINGERPRINT_BYTES : Math.min(nl, FINGERPRINT_BYTES);
  return createHash('sha256').update(head.subarray(0, end)).digest('base64url').slice(0, 22);
}

/** One file being followed: where its bytes stand, and the events read but not yet acknowledged. */
class Followed {
  fd?: FileHandle;
  fileId?: string;
  /** Next byte to read. */
  pos = 0;
  splitter!: LineSplitter;
  assembler!: EventAssembler;
  outbox: AssembledEvent[] = [];
  rejected: UnusableLine[] = [];
  lastData = Date.now();
  done = false;

  constructor(
    public path: string,
    readonly gz: boolean,
  ) {}

  /** Starts reading at `offset` with fresh line and event state. */
  reset(offset: number, cfg: OpenstackLogsConfig): void {
    this.pos = offset;
    this.outbox = [];
    this.rejected = [];
    this.assembler = new EventAssembler({ maxEventBytes: cfg.max_event_bytes, keepOriginal: cfg.keep_original }, (e) => this.outbox.push(e));
    this.splitter = new LineSplitter(
      offset,
      cfg.max_event_bytes,
      (o, text, cut, plain) => this.assembler.push(o, text, cut, plain),
      (u) => this.rejected.push(u),
    );
  }

  /** Where a restart must resume: nothing before it is unsent, nothing after it was acknowledged. */
  get resumeOffset(): number {
    return Math.min(this.splitter.consumed, this.assembler.pendingOffset ?? Infinity);
  }
}

export class OpenstackLogCollector implements StreamCollector {
  private readonly log: Logger;
  private readonly metrics: ComponentMetrics;
  /** Followed files by inode (dev:ino). */
  private readonly files = new Map<string, Followed>();
  private readonly store: CheckpointStore;
  /** True during the first pass over the globs: the files found then are the ones `start_at` applies to. */
  private firstPass = true;
  private readBuffer?: Buffer;
  /** The files the paths matched at the last scan (dev:ino → path), and when that was. */
  private matched = new Map<string, string>();
  private scannedAt = -Infinity;

  constructor(
    private readonly cfg: OpenstackLogsConfig,
    private readonly ctx: CollectorContext,
  ) {
    this.log = ctx.log;
    this.metrics = ctx.metrics;
    this.store = ctx.state.checkpoints(cfg.checkpoint_dir, cfg.host_name);
  }

  /** One pass over every configured file; returns the number of events acknowledged by Kafka. `rescan`: match the
   * paths again first (else the files of the last scan are read on). */
  async pollOnce(signal?: AbortSignal, rescan = true): Promise<number> {
    if (rescan || this.firstPass) {
      const matched = new Map<string, string>(); // dev:ino → path
      for (const path of globSync(this.cfg.paths, { absolute: true, onlyFiles: true, expandDirectories: false })) {
        try {
          const st = statSync(path);
          matched.set(`${st.dev}:${st.ino}`, path);
        } catch {
          // vanished between glob and stat: rotation in progress
        }
      }
      this.matched = matched;
      this.scannedAt = Date.now();
    }
    const current = this.matched;
    let sent = 0;
    // First the files renamed away from the globs (rotated) or deleted: their last lines come before what their
    // successors hold. Read to the end through the open handle, then let go.
    for (const [key, f] of this.files) {
      if (current.has(key)) continue;
      if (f.fd && !f.done) sent += await this.guard(f, () => this.readPlain(f, signal, true), signal);
      await f.fd?.close();
      this.files.delete(key);
    }
    for (const [key, path] of current) {
      if (signal?.aborted) break; // shutdown: no more files; the next start goes on from the checkpoints
      let f = this.files.get(key);
      if (!f) this.files.set(key, (f = new Followed(path, path.endsWith('.gz'))));
      f.path = path;
      const followed = f;
      if (!f.done) sent += await this.guard(f, () => (followed.gz ? this.readGzip(followed, signal) : this.readPlain(followed, signal)), signal);
    }
    this.firstPass = false;
    return sent;
  }

  async run(signal: AbortSignal): Promise<void> {
    try {
      while (!signal.aborted) {
        await this.pollOnce(signal, Date.now() - this.scannedAt >= this.cfg.scan_interval_ms);
        await sleep(this.cfg.poll_interval_ms, signal).catch(() => {});
      }
    } finally {
      for (const f of this.files.values()) await f.fd?.close();
      this.files.clear();
    }
  }

  private async guard(f: Followed, read: () => Promise<number>, signal?: AbortSignal): Promise<number> {
    try {
      return await read();
    } catch (err) {
      if (signal?.aborted) throw err;
      this.metrics.error('read');
      this.log.error(`cannot read ${f.path}: ${errorText(err)}`, { hint: 'check the file permissions of the collector user' });
      return 0;
    }
  }

  /** Identifies the file and finds its checkpoint; false while the file has no complete first line. `tail`: where
   * the file's last complete line ends (`start_at: end`; a compressed file has none and is skipped whole). */
  private identify(f: Followed, head: Buffer, tail?: number): boolean {
    const id = fingerprint(head);
    if (id === undefined) return false;
    f.fileId = id;
    let cp = this.store.get(id);
    if (cp === undefined && this.firstPass && this.cfg.start_at === 'end') {
      cp = { path: f.path, offset: tail ?? 0, ...(f.gz ? { done: true } : {}) };
      this.store.set(id, cp);
      this.store.save();
      this.log.info(`${f.path}: start_at end, ${f.gz ? 'a compressed file present at the start is skipped' : `reading from byte ${cp.offset}`}`);
    }
    f.reset(cp?.offset ?? 0, this.cfg);
    f.done = cp?.done === true;
    return true;
  }

  /** Where the last complete line of an open file ends (its size if it ends with a newline). */
  private async lastLineEnd(fd: FileHandle, size: number): Promise<number> {
    const n = Math.min(size, READ_CHUNK);
    const buf = Buffer.alloc(n);
    await fd.read(buf, 0, n, size - n);
    const nl = buf.lastIndexOf(0x0a);
    return nl < 0 ? size - n : size - n + nl + 1;
  }

  private async readPlain(f: Followed, signal?: AbortSignal, final = false): Promise<number> {
    f.fd ??= await open(f.path, 'r');
    // fstat(2) itself, not through the thread pool: a few microseconds, at every poll of every file.
    const { size } = fstatSync(f.fd.fd);
    if (f.fileId !== undefined && size < f.pos) {
      // Truncated in place (copytruncate): what follows is new content with a new identity.
      // Reported, not silent: copytruncate rotation does this, and so does a file cut by hand; lines written
      // between the last read and the cut are in the rotated copy (or gone).
      this.log.warn(`${f.path} shrank from ${f.pos} to ${size} bytes while followed; reading it from the start`, {
        hint: 'copytruncate rotation, or the file was cut; lines written between the last read and the cut are only in the rotated copy',
      });
      this.metrics.error('file_shrank');
      f.fileId = undefined;
    }
    if (f.fileId === undefined) {
      const head = Buffer.alloc(Math.min(size, FINGERPRINT_BYTES));
      await f.fd.read(head, 0, head.length, 0);
      const tail = this.firstPass && this.cfg.start_at === 'end' ? await this.lastLineEnd(f.fd, size) : undefined;
      if (!this.identify(f, head, tail)) return 0;
    }
    let sent = 0;
    // One read buffer for every file and poll (the files are read one after another; the line splitter copies what
    // it keeps): a megabyte outside the heap per file and poll, even with nothing to read, was garbage that only a
    // full collection frees.
    const chunk = (this.readBuffer ??= Buffer.allocUnsafe(READ_CHUNK));
    while (f.pos < size) {
      // Shutdown: read no further (a rotated file is still read to its end: its name may match no glob at the next
      // start). What was read is sent and checkpointed below; the next start reads on from there.
      if (signal?.aborted && !final) break;
      const { bytesRead } = await f.fd.read(chunk, 0, Math.min(READ_CHUNK, size - f.pos), f.pos);
      if (bytesRead === 0) break;
      f.pos += bytesRead;
      f.lastData = Date.now();
      f.splitter.write(chunk.subarray(0, bytesRead));
      if (f.outbox.length >= this.cfg.batch_max_lines) sent += await this.ship(f, signal);
    }
    if (final) {
      f.splitter.end();
      f.assembler.flush();
    } else if (f.assembler.pendingOffset !== undefined && Date.now() - f.lastData >= this.cfg.multiline_flush_ms) {
      f.assembler.flush(); // a quiet file: the last event will get no more continuation lines
    }
    return sent + (await this.ship(f, signal));
  }

  private async readGzip(f: Followed, signal?: AbortSignal): Promise<number> {
    let sent = 0;
    let at = 0; // decompressed position
    let stopped = false;
    const stream = createReadStream(f.path).pipe(createGunzip());
    try {
      for await (const piece of stream as AsyncIterable<Buffer>) {
        if (signal?.aborted) {
          stopped = true; // shutdown: what was read is sent and checkpointed, the file is not done
          break;
        }
        let data = piece;
        if (f.fileId === undefined) {
          if (!this.identify(f, data.subarray(0, FINGERPRINT_BYTES))) throw new Error('no complete first line in the first chunk');
          if (f.done) return 0;
        }
        if (at + data.length <= f.pos) {
          at += data.length;
          continue; // before the checkpoint: sent already
        }
        if (at < f.pos) data = data.subarray(f.pos - at);
        at = Math.max(at, f.pos) + data.length;
        f.splitter.write(data);
        if (f.outbox.length >= this.cfg.batch_max_lines) sent += await this.ship(f, signal);
      }
    } finally {
      stream.destroy();
    }
    if (stopped) return f.fileId === undefined ? sent : sent + (await this.ship(f, signal));
    f.splitter.end();
    f.assembler.flush();
    f.done = true;
    return sent + (await this.ship(f, signal));
  }

  /** Sends what the file's assembler produced, then moves its checkpoint (once Kafka acknowledged all of it). */
  private async ship(f: Followed, signal?: AbortSignal): Promise<number> {
    const events = f.outbox;
    const rejected = f.rejected;
    f.outbox = [];
    f.rejected = [];
    const key = `${this.cfg.host_name}:${f.path}`;
    const readAt = new Date().toISOString();
    const offset = f.resumeOffset;
    const done = f.done && f.gz;
    const fileId = f.fileId!;
    const path = f.path;
    await this.ctx.emitter.emit(
      {
        records: [
          {
            topic: 'logs',
            messages: encodeLogBatches({ host: this.cfg.host_name, path, file_id: fileId, read_at: readAt }, events, this.cfg.batch_max_lines, RECORD_MAX_BYTES).map((json) => ({
              key,
              json,
            })),
            events: events.length,
          },
        ],
        rejected: rejected.map((u) => ({ key, stage: 'unusable_line', letter: deadLetter(COMPONENT, `${u.reason} (${path} at byte ${u.offset})`, u.bytes.toString('base64'), undefined) })),
        commit: () => {
          const previous = this.store.get(fileId);
          if (previous && previous.offset === offset && previous.path === path && (previous.done ?? false) === done) return false;
          this.store.set(fileId, { path, offset, ...(done ? { done } : {}) });
          this.store.save();
        },
      },
      { batchMaxLines: this.cfg.batch_max_lines, of: path, ...(signal ? { signal } : {}) },
    );
    const truncated = events.filter((e) => e.truncated).length;
    if (truncated > 0) this.metrics.discarded('truncated_event', truncated);
    return events.length;
  }
}

export function toRawEvent(e: AssembledEvent, host: string, path: string, fileId: string, readAt: string): RawLogEvent {
  const raw: RawLogEvent = { v: 1, host, path, file_id: fileId, offset: e.offset, text: e.text, read_at: readAt };
  if (e.envelope) raw.envelope = e.envelope;
  if (e.truncated) raw.truncated = true;
  if (e.flags) raw.flags = e.flags;
  if (e.original !== undefined) raw.original = e.original;
  return raw;
}

export const openstackLogs = defineCollector({
  name: 'openstack_logs',
  component: COMPONENT,
  config: OpenstackLogsConfig,
  topics: ['logs'],
  example: (dir) => ({ paths: [`${dir}/logs/*.log`], checkpoint_dir: dir, host_name: 'compute-1' }),
  create: (config, ctx) => new OpenstackLogCollector(config, ctx),
});
