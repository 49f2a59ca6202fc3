// What the offline commands (`parse`, `detect`, `replay`) share about their output: buffered stdout that ends quietly
// when its reader goes away, one bad file never stopping the others, and the same report of unusable lines.
import type { AssembledEvent, UnusableLine } from '../collectors/logs/assemble.ts';
import { FileReadError, readLogFile, type ReadOptions } from '../collectors/logs/read-file.ts';

/** Buffered stdout: lines are collected synchronously and written in large pieces; the writer waits only when
 * the reader is slower than we are. When the reader goes away (EPIPE: `stackwatch parse big.log | head -1`) the
 * output is `closed`, nothing more is written, and the command stops reading and exits 0, as `head` expects. */
export class Output {
  private buf: string[] = [];
  private size = 0;
  /** The reader is gone, or writing failed: stop producing output. */
  closed = false;
  /** A write error other than EPIPE (disk full, say): the command fails with it. */
  failure?: Error;

  constructor(private readonly out: NodeJS.WritableStream = process.stdout) {
    // Without a listener, EPIPE is an uncaught exception: a stack trace and exit status 1.
    out.on('error', (err: NodeJS.ErrnoException) => {
      this.closed = true;
      if (err.code !== 'EPIPE') this.failure ??= err;
    });
  }

  /** The buffer is full: flush() should be awaited. */
  get full(): boolean {
    return this.size >= 1 << 20;
  }

  /** True when the buffer is full and flush() should be awaited. */
  line(s: string): boolean {
    if (this.closed) return false;
    this.buf.push(s);
    this.size += s.length + 1;
    return this.size >= 1 << 20;
  }

  async flush(): Promise<void> {
    // One flat string (join with a trailing empty piece), not a concatenation: write() would flatten it first.
    if (this.buf.length > 0) this.buf.push('');
    const text = this.buf.join('\n');
    this.buf = [];
    this.size = 0;
    if (this.closed || text === '') return;
    if (!this.out.write(text)) await drained(this.out);
  }
}

/** Resolves when a stream whose write() returned false may be written again: at 'drain', or at 'error' ('drain'
 * never comes to a stream that failed). */
export function drained(stream: NodeJS.WritableStream): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = () => {
      stream.off('drain', done);
      stream.off('error', done);
      resolve();
    };
    stream.on('drain', done);
    stream.on('error', done);
  });
}

/** Reads each file with `read`, in order. A file that cannot be read (FileReadError: missing, a directory, no
 * permission, damaged gzip, shrank while read) is reported on stderr, one line naming it, and the next file is
 * read; whatever `read` already did with its events stands. Stops early when `stop()` says so (the output is
 * closed). Returns how many files failed. */
export async function forEachFile(command: string, paths: string[], read: (path: string, index: number) => Promise<void>, stop: () => boolean = () => false): Promise<number> {
  let failed = 0;
  for (const [index, path] of paths.entries()) {
    if (stop()) break;
    try {
      await read(path, index);
    } catch (err) {
      if (!(err instanceof FileReadError)) throw err;
      failed++;
      process.stderr.write(`stackwatch ${command}: ${err.message}\n`);
    }
  }
  return failed;
}

/** Lines that are not text (invalid UTF-8, NUL bytes), one JSON object per line on stderr: file, byte offset, reason,
 * length. The pipeline sends them to its dead-letter topic. */
export function reportUnusable(path: string, unusable: UnusableLine[]): void {
  for (const u of unusable) process.stderr.write(`${JSON.stringify({ file: path, offset: u.offset, reason: u.reason, bytes: u.bytes.length })}\n`);
}

/** A warning that lost nothing (trailing garbage after a .gz file's last member), on stderr. */
export const warnTo = (command: string) => (message: string) => process.stderr.write(`stackwatch ${command}: warning: ${message}\n`);

export const EXIT_STATUS_HELP = `Exit status: 0 when every file was read to its end; 1 when a file could not be (missing, a directory, no
permission, damaged gzip data, shrank while read): each such file is named on stderr with where reading stopped,
and every other file's events are still read; 2 for a usage or configuration error. A closed output (| head)
ends the command quietly with status 0.`;

/** Every event of every file, in batches, handed to `each` (which writes to `out`): what `parse` and `detect` share.
 * Files that cannot be read are named on stderr and the next is read (forEachFile); unusable lines are reported.
 * Returns the counts, or undefined when the reader of the output went away (the command then exits 0). */
export async function eachEvent(
  command: string,
  paths: string[],
  out: Output,
  read: Omit<ReadOptions, 'onWarning'>,
  each: (e: AssembledEvent, path: string, fileId: string) => void,
): Promise<{ events: number; unusable: number; failed: number } | undefined> {
  let events = 0;
  let unusable = 0;
  const failed = await forEachFile(
    command,
    paths,
    async (path) => {
      for await (const batch of readLogFile(path, { ...read, onWarning: warnTo(command) }, 500)) {
        for (const e of batch.events) each(e, path, batch.fileId);
        if (out.full) await out.flush();
        reportUnusable(path, batch.unusable);
        events += batch.events.length;
        unusable += batch.unusable.length;
        if (out.closed) return;
      }
    },
    () => out.closed,
  );
  await out.flush();
  if (out.failure) throw out.failure;
  return out.closed ? undefined : { events, unusable, failed };
}
