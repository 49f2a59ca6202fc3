// The OpenStack log collector: finds the configured files (globs), reads what was appended since the last
// checkpoint, and produces each line to Kafka (key: host + file). The checkpoint advances only after Kafka
// acknowledged the lines, so a restart neither loses nor repeats a line.
//
// A file is known by the hash of its first line (its "file id"), not its name: a renamed or copied file keeps
// its id, so it is not read twice, and the event ids derived from it stay the same.
import { createHash } from 'node:crypto';
import { closeSync, openSync, readFileSync, readSync, statSync, type Stats } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { globSync } from 'tinyglobby';
import type { Config } from '../core/config.ts';
import type { RawLogEvent } from '../core/events.ts';
import type { TopicProducer } from '../core/kafka.ts';
import { errorText, logger } from '../core/log.ts';
import { componentMetrics } from '../core/metrics.ts';
import { retry, sleep } from '../core/retry.ts';
import { CheckpointStore } from './checkpoints.ts';

export const COMPONENT = 'openstack-logs';
type CollectorConfig = NonNullable<Config['collectors']['openstack_logs']>;

const READ_CHUNK = 4 * 1024 * 1024;
const FINGERPRINT_BYTES = 1024;
const BATCH_MAX_BYTES = 512 * 1024;

interface Tracked {
  path: string;
  ino: number;
  fileId?: string;
  offset: number;
  /** A .gz file is read whole once (backfill); it does not grow. */
  gz: boolean;
  done: boolean;
}

export interface CollectorOptions {
  topic: string;
  producer: TopicProducer;
}

/** The file id: a hash of the first line (or first KiB); undefined until the file has that much. */
export function fingerprint(head: Buffer): string | undefined {
  const nl = head.indexOf(0x0a);
  if (nl < 0 && head.length < FINGERPRINT_BYTES) return undefined;
  const end = nl < 0 ? FINGERPRINT_BYTES : Math.min(nl, FINGERPRINT_BYTES);
  return createHash('sha256').update(head.subarray(0, end)).digest('base64url').slice(0, 22);
}

/** Splits the complete lines of `buf` (which starts at file offset `base`); returns them and the bytes used. */
export function splitLines(buf: Buffer, base: number, final: boolean): { lines: { offset: number; text: string }[]; used: number } {
  const lines: { offset: number; text: string }[] = [];
  let start = 0;
  for (let nl = buf.indexOf(0x0a); nl >= 0; nl = buf.indexOf(0x0a, start)) {
    const end = nl > start && buf[nl - 1] === 0x0d ? nl - 1 : nl;
    if (end > start) lines.push({ offset: base + start, text: buf.toString('utf8', start, end) });
    start = nl + 1;
  }
  // The last line of a finished (.gz) file, or a chunk with no newline at all (a line longer than the chunk).
  if (start < buf.length && (final || (start === 0 && buf.length >= READ_CHUNK))) {
    lines.push({ offset: base + start, text: buf.toString('utf8', start) });
    start = buf.length;
  }
  return { lines, used: start };
}

export class OpenstackLogCollector {
  private readonly log = logger(COMPONENT);
  private readonly metrics = componentMetrics(COMPONENT);
  private readonly tracked = new Map<string, Tracked>();
  private readonly gzCache = new Map<string, Buffer>();
  private readonly store: CheckpointStore;

  constructor(
    private readonly cfg: CollectorConfig,
    private readonly opts: CollectorOptions,
  ) {
    this.store = new CheckpointStore(cfg.checkpoint_dir, `${COMPONENT}-${cfg.host_name}`);
  }

  /** One pass over every configured file; returns the number of lines acknowledged by Kafka. */
  async pollOnce(signal?: AbortSignal): Promise<number> {
    let sent = 0;
    for (const path of globSync(this.cfg.paths, { absolute: true, onlyFiles: true, expandDirectories: false })) {
      let st: Stats;
      try {
        st = statSync(path);
      } catch {
        continue; // vanished between glob and stat: rotation in progress
      }
      let t = this.tracked.get(path);
      if (!t || t.ino !== st.ino) {
        t = { path, ino: st.ino, offset: 0, gz: path.endsWith('.gz'), done: false };
        this.tracked.set(path, t);
      }
      if (t.done) continue;
      try {
        sent += await this.readFile(t, st.size, signal);
      } catch (err) {
        if (signal?.aborted) throw err;
        this.metrics.error('read');
        this.log.error(`cannot read ${path}: ${errorText(err)}`, { hint: 'check the file permissions of the collector user' });
      }
    }
    return sent;
  }

  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      await this.pollOnce(signal);
      await sleep(this.cfg.poll_interval_ms, signal).catch(() => {});
    }
  }

  private content(t: Tracked): { size: number; read(from: number, len: number): Buffer } {
    if (t.gz) {
      let data = this.gzCache.get(t.path);
      if (!data) this.gzCache.set(t.path, (data = gunzipSync(readFileSync(t.path))));
      const buf = data;
      return { size: buf.length, read: (from, len) => buf.subarray(from, from + len) };
    }
    return {
      size: -1,
      read: (from, len) => {
        const fd = openSync(t.path, 'r');
        try {
          const buf = Buffer.allocUnsafe(len);
          const n = readSync(fd, buf, 0, len, from);
          return buf.subarray(0, n);
        } finally {
          closeSync(fd);
        }
      },
    };
  }

  private async readFile(t: Tracked, statSize: number, signal?: AbortSignal): Promise<number> {
    const src = this.content(t);
    const size = t.gz ? src.size : statSize;
    if (size < t.offset) {
      // Truncated in place (copytruncate): what follows is new content with a new identity.
      this.log.info(`${t.path} was truncated; reading it from the start`);
      t.fileId = undefined;
      t.offset = 0;
    }
    if (t.fileId === undefined) {
      const id = fingerprint(src.read(0, Math.min(size, FINGERPRINT_BYTES)));
      if (id === undefined) return 0; // not even one complete line yet
      t.fileId = id;
      const cp = this.store.get(id);
      t.offset = cp ? Math.min(cp.offset, size) : 0;
    }
    let sent = 0;
    while (t.offset < size) {
      const buf = src.read(t.offset, Math.min(READ_CHUNK, size - t.offset));
      const { lines, used } = splitLines(buf, t.offset, t.gz);
      if (used === 0) break; // an incomplete last line: wait for its end
      await this.send(t, lines, signal);
      t.offset += used;
      this.store.set(t.fileId, { path: t.path, offset: t.offset, ...(t.gz && t.offset >= size ? { done: true } : {}) });
      this.store.save();
      sent += lines.length;
    }
    if (t.gz && t.offset >= size) {
      t.done = true;
      this.gzCache.delete(t.path);
    }
    return sent;
  }

  private async send(t: Tracked, lines: { offset: number; text: string }[], signal?: AbortSignal): Promise<void> {
    const key = `${this.cfg.host_name}:${t.path}`;
    const readAt = new Date().toISOString();
    this.metrics.received(lines.length);
    // Requests stay well under the topic's max.message.bytes: by count and by bytes.
    let batch: { key: string; value: string }[] = [];
    let bytes = 0;
    const batches: (typeof batch)[] = [batch];
    for (const { offset, text } of lines) {
      const event: RawLogEvent = { v: 1, host: this.cfg.host_name, path: t.path, file_id: t.fileId!, offset, line: text, read_at: readAt };
      const value = JSON.stringify(event);
      if (batch.length > 0 && (batch.length >= this.cfg.batch_max_lines || bytes + value.length > BATCH_MAX_BYTES)) {
        batches.push((batch = []));
        bytes = 0;
      }
      batch.push({ key, value });
      bytes += value.length;
    }
    for (const messages of batches) {
      await retry(() => this.opts.producer.send(this.opts.topic, messages), {
        what: `send ${messages.length} line(s) of ${t.path} to Kafka topic ${this.opts.topic}`,
        log: this.log,
        hint: 'the collector waits and resumes from its checkpoint; check the Kafka brokers',
        signal,
      });
      this.metrics.sent(messages.length);
    }
  }
}
