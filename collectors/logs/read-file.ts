// Reads a whole log file (plain or gzip) into events, streaming, for the offline tools (`parse`, `detect`, `replay`):
// the same splitting, folding and masking as the collector, without checkpoints.
//
// A file that cannot be read all the way still gives every complete line read before the problem: the events are
// yielded first, then a FileReadError names the file and says where reading stopped (a missing file, a directory,
// no permission, a read error, damaged gzip data, a file that shrank while it was read).
import { open, type FileHandle } from 'node:fs/promises';
import { fileErrorReason } from '../../core/secrets.ts';
import { EventAssembler, LineSplitter, type AssembledEvent, type UnusableLine } from './assemble.ts';
import { gunzip, GzipError, type GzipSource } from './gunzip.ts';
import { fingerprint } from '../openstack-logs.ts';

export interface ReadOptions {
  maxEventBytes: number;
  keepOriginal?: boolean;
  /** Called with the compressed bytes read so far, for progress bars. */
  onBytes?: (n: number) => void;
  /** A problem that lost nothing (trailing garbage after a .gz file's last member), as a line naming the file. */
  onWarning?: (message: string) => void;
}

export interface FileEvents {
  fileId: string;
  events: AssembledEvent[];
  unusable: UnusableLine[];
}

/** A file that could not be read (all the way). The message starts with the file's path. */
export class FileReadError extends Error {
  constructor(
    readonly file: string,
    detail: string,
  ) {
    super(`${file}: ${detail}`);
  }
}

/** Bytes per read (and gunzip's pieces are as big). Small on purpose: LineSplitter decodes a piece into one string
 * and its lines are slices of it, and the CPU time grows with that string's size (40 MB of nova-compute lines
 * through readLogFile: 0.51 s in 64 KiB reads, 0.70 s in 128 KiB, 0.97 s in 256 KiB, 3.1 s in 1 MiB; from about
 * 1,031,913 bytes up Node makes it an external string, the worst case; LineSplitter now decodes at most 64 KiB at
 * once whatever it is given, but 1 MiB reads cut that way were still slower: 22.3 against 25.6 MiB/s). */
const READ_BYTES = 64 * 1024;
/** Bytes per read of a plain file, into one buffer used again and again: LineSplitter takes them 64 KiB at a time
 * whatever it is given (and no longer copies them), and each read is a round trip through libuv's thread pool (816
 * reads of 64 KiB took 55 ms of CPU for 51 MiB, 204 of 256 KiB 21-26 ms). */
const PLAIN_READ_BYTES = 256 * 1024;
/** The file's identity is the fingerprint of its first line (at most this many bytes): openstack-logs.ts. */
const ID_BYTES = 1024;

/** Yields the file's events in batches (at most about `batchSize` each, in file order); throws FileReadError after
 * the last batch if the file could not be read to its end. */
export async function* readLogFile(path: string, opts: ReadOptions, batchSize = 5000): AsyncGenerator<FileEvents> {
  const file = await LogFile.open(path);
  try {
    let events: AssembledEvent[] = [];
    let unusable: UnusableLine[] = [];
    const assembler = new EventAssembler({ maxEventBytes: opts.maxEventBytes, keepOriginal: opts.keepOriginal }, (e) => events.push(e));
    const splitter = new LineSplitter(
      0,
      opts.maxEventBytes,
      (o, t, cut, plain) => assembler.push(o, t, cut, plain),
      (u) => unusable.push(u),
    );
    // The identity needs the first ID_BYTES of text, whatever size the first pieces come in.
    const head: Buffer[] = [];
    let fileId: string | undefined;
    const identify = () => {
      const text = Buffer.concat(head.splice(0));
      fileId = fingerprint(text.subarray(0, ID_BYTES), true)!;
      splitter.write(text);
    };
    const bytes = path.endsWith('.gz') ? gunzip(file, (w) => opts.onWarning?.(`${path}: ${w}`)) : file.chunks();
    let failure: FileReadError | undefined;
    try {
      for await (const chunk of bytes) {
        if (fileId === undefined) {
          head.push(Buffer.from(chunk)); // a copy: the next read may reuse the chunk's memory
          if (head.reduce((n, b) => n + b.length, 0) >= ID_BYTES) identify();
        } else splitter.write(chunk);
        opts.onBytes?.(file.pos);
        if (fileId !== undefined && events.length + unusable.length >= batchSize) {
          yield { fileId, events, unusable };
          events = [];
          unusable = [];
        }
      }
    } catch (err) {
      failure = readFailure(path, err, () => splitter.consumed);
    }
    if (head.length > 0) identify();
    // After a failure the bytes after the last newline are part of a line that was cut: it is not an event.
    if (!failure) splitter.end();
    assembler.flush();
    if (fileId !== undefined && (events.length > 0 || unusable.length > 0)) yield { fileId, events, unusable };
    if (failure) throw failure;
  } finally {
    await file.close();
  }
}

/** The FileReadError for what stopped the reading; anything else is a bug and is thrown as it is. */
function readFailure(path: string, err: unknown, linesEnd: () => number): FileReadError {
  if (err instanceof FileReadError) return err;
  if (err instanceof GzipError) return new FileReadError(path, `damaged gzip data: ${err.message}; complete lines up to decompressed byte ${linesEnd()} were read`);
  throw err;
}

/** An open log file: sequential reads (a GzipSource), re-reads for gzip salvage, and the checks that a file read
 * to its end really was: a regular file that ends before its size at open shrank while it was read. */
class LogFile implements GzipSource {
  /** Bytes read so far (the next byte to read). */
  pos = 0;
  readonly reread?: GzipSource['reread'];

  private constructor(
    readonly path: string,
    private readonly fh: FileHandle,
    /** Size at open, for a regular file (a pipe or device has none). */
    private readonly size: number | undefined,
  ) {
    if (size !== undefined) this.reread = (start, end) => this.range(start, end);
  }

  static async open(path: string): Promise<LogFile> {
    let fh: FileHandle;
    try {
      fh = await open(path, 'r');
    } catch (err) {
      throw new FileReadError(path, `cannot read: ${fileErrorReason(err)}`);
    }
    try {
      const st = await fh.stat();
      // open() succeeds on a directory; its first read would fail with EISDIR.
      if (st.isDirectory()) throw new FileReadError(path, 'cannot read: is a directory');
      return new LogFile(path, fh, st.isFile() ? st.size : undefined);
    } catch (err) {
      await fh.close();
      throw err instanceof FileReadError ? err : new FileReadError(path, `cannot read: ${fileErrorReason(err)}`);
    }
  }

  async next(into?: Buffer): Promise<Buffer> {
    const buf = into ?? Buffer.allocUnsafe(READ_BYTES);
    const n = await this.read(buf, this.size === undefined ? null : this.pos);
    this.pos += n;
    if (n === 0 && this.size !== undefined && this.pos < this.size) {
      const now = await this.fh.stat().then(
        (s) => `${s.size} bytes now`,
        () => 'its size now unknown',
      );
      throw new FileReadError(this.path, `the file shrank while it was read (truncated under us?): ${this.size} bytes at open, ${this.pos} bytes read, ${now}; the rest is not read`);
    }
    return buf.subarray(0, n);
  }

  /** The file's bytes, read into one buffer again and again: a piece is valid until the next is asked for
   * (LineSplitter copies what it keeps; a new buffer per read, outside the heap, cost as much as the copy). */
  async *chunks(): AsyncGenerator<Buffer> {
    const buf = Buffer.allocUnsafe(PLAIN_READ_BYTES);
    for (let b = await this.next(buf); b.length > 0; b = await this.next(buf)) yield b;
  }

  private async *range(start: number, end: number): AsyncGenerator<Buffer> {
    for (let at = start; at < end;) {
      const buf = Buffer.allocUnsafe(Math.min(READ_BYTES, end - at));
      const n = await this.read(buf, at);
      if (n === 0) return;
      at += n;
      yield buf.subarray(0, n);
    }
  }

  private async read(buf: Buffer, position: number | null): Promise<number> {
    try {
      return (await this.fh.read(buf, 0, buf.length, position)).bytesRead;
    } catch (err) {
      throw new FileReadError(this.path, `cannot read at byte ${position ?? this.pos}: ${fileErrorReason(err)}`);
    }
  }

  close(): Promise<void> {
    return this.fh.close();
  }
}
