// Gzip files (RFC 1952) decompressed the way `gzip -d` reads them, without losing what zlib's own gunzip stream
// loses. Measured on Node 20 (createGunzip): trailing garbage after the last member ("trailing garbage ignored"
// for `gzip -d`) fails with "incorrect header check", and a data error fails the whole call to zlib, so the output
// zlib had already made in that call (up to chunkSize bytes of complete lines) is never emitted; neither error says
// where in the file it happened. Here each member's header and trailer are read by hand and only the deflate data
// goes through zlib (inflateRaw), so:
//   - concatenated members are read one after another, trailing zero bytes (padding) are ignored, and other
//     trailing bytes are a warning: everything before them was read;
//   - a truncated file yields everything zlib could decode from the bytes that are there;
//   - a data error yields everything decodable before the byte zlib rejects: the failed call's input is fed again
//     in ever smaller pieces, down to single bytes (salvage(), an error-path cost of a few re-reads of the member);
//   - a CRC or length mismatch is reported after the member's data (zlib finds most corruption only there);
//   - every error says where: the compressed byte and the decompressed byte it stopped at.
import { createInflateRaw, crc32, inflateRawSync, type InflateRaw } from 'node:zlib';

/** Compressed bytes given to zlib per call. It bounds the output of one call (at most ~1032 times this, for a
 * gzip bomb of zeros); a call costs ~35 µs, and reading a real log is as fast as with createGunzip. */
const INPUT_SLICE = 64 * 1024;
/** Decompressed bytes per piece yielded: small pieces split into lines faster (read-file.ts, READ_BYTES). */
const OUTPUT_PIECE = 64 * 1024;
/** Longest gzip header accepted (FEXTRA is at most 64 KiB; FNAME and FCOMMENT are short in practice). */
const MAX_HEADER = 128 * 1024;

export interface GzipSource {
  /** The next bytes of the file; an empty buffer at its end. */
  next(): Promise<Buffer>;
  /** The bytes [start, end) again (for salvage after a data error); absent when the source cannot be re-read (a
   * pipe): then the output of the failed zlib call is lost, and the error says so. */
  reread?(start: number, end: number): AsyncIterable<Buffer>;
}

/** Where and why decompression stopped. Everything decoded before `compressedOffset` has been yielded. */
export class GzipError extends Error {
  constructor(
    readonly reason: string,
    /** Byte of the .gz file where the damage was found. */
    readonly compressedOffset: number,
    /** Decompressed bytes yielded before it (the offset in the decompressed file). */
    readonly decompressedOffset: number,
  ) {
    super(`${reason} at compressed byte ${compressedOffset}, after ${decompressedOffset} decompressed bytes`);
  }
}

/** Sequential reading with look-ahead over a GzipSource: headers and trailers are parsed from what is buffered. */
class Cursor {
  private buf: Buffer = Buffer.alloc(0);
  /** File offset of buf[0]. */
  pos = 0;
  private eof = false;
  constructor(private readonly source: GzipSource) {}

  /** At least `n` buffered bytes if the file has them (fewer only at its end). */
  async peek(n: number): Promise<Buffer> {
    while (this.buf.length < n && !this.eof) {
      const more = await this.source.next();
      if (more.length === 0) this.eof = true;
      else this.buf = this.buf.length === 0 ? more : Buffer.concat([this.buf, more]);
    }
    return this.buf.subarray(0, n);
  }

  skip(n: number): void {
    this.buf = this.buf.subarray(n);
    this.pos += n;
  }
}

/** Decompressed bytes of every member, in order; throws GzipError at damage, after yielding all that came before. */
export async function* gunzip(source: GzipSource, onWarning: (message: string) => void = () => {}): AsyncGenerator<Buffer> {
  const cur = new Cursor(source);
  let out = 0;
  for (let member = 0; ; member++) {
    const start = cur.pos;
    const head = await cur.peek(MAX_HEADER);
    if (member > 0) {
      if (head.length === 0) return;
      if (head[0] !== 0x1f || (head.length > 1 && head[1] !== 0x8b)) {
        await trailing(cur, out, onWarning);
        return;
      }
    }
    const header = headerLength(head);
    if (typeof header === 'string') throw new GzipError(header, start, out);
    cur.skip(header);
    const body = cur.pos;
    let crc = 0;
    let size = 0;
    for await (const piece of inflateMember(cur, source, out)) {
      crc = crc32(piece, crc);
      size += piece.length;
      out += piece.length;
      yield piece;
    }
    const trailer = await cur.peek(8);
    if (trailer.length < 8) throw new GzipError('unexpected end of file (in the gzip trailer)', cur.pos + trailer.length, out);
    if (trailer.readUInt32LE(0) !== crc >>> 0 || trailer.readUInt32LE(4) !== size % 2 ** 32) {
      throw new GzipError(`CRC or length check failed: member ${member + 1} (deflate data from compressed byte ${body}) is corrupt`, cur.pos, out);
    }
    cur.skip(8);
  }
}

/** After the last member: zero bytes are padding (gzip and zlib accept them silently), anything else is a warning. */
async function trailing(cur: Cursor, out: number, onWarning: (message: string) => void): Promise<void> {
  const from = cur.pos;
  for (;;) {
    const b = await cur.peek(INPUT_SLICE);
    if (b.length === 0) return;
    const nonZero = b.findIndex((x) => x !== 0);
    if (nonZero >= 0) {
      onWarning(`trailing garbage ignored from compressed byte ${cur.pos + nonZero} (after ${out} decompressed bytes, all of them read)`);
      return;
    }
    cur.skip(b.length);
    if (cur.pos - from > 1 << 30) return; // a gigabyte of padding: not worth reading further
  }
}

/** Length of the gzip header at the start of `b`, or why it is not one. */
export function headerLength(b: Buffer): number | string {
  if (b.length < 10) return b.length === 0 || (b[0] === 0x1f && (b.length < 2 || b[1] === 0x8b)) ? 'unexpected end of file (in a gzip header)' : 'not in gzip format';
  if (b[0] !== 0x1f || b[1] !== 0x8b) return 'not in gzip format';
  if (b[2] !== 8) return `unknown compression method ${b[2]}`;
  const flags = b[3];
  if (flags & 0xe0) return 'reserved gzip header flags set';
  let p = 10;
  if (flags & 4) p = p + 2 > b.length ? Infinity : p + 2 + b.readUInt16LE(p); // FEXTRA
  for (const bit of [8, 16]) {
    // FNAME, FCOMMENT: zero-terminated
    if (flags & bit && p !== Infinity) {
      const z = b.indexOf(0, p);
      p = z < 0 ? Infinity : z + 1;
    }
  }
  if (flags & 2) p += 2; // FHCRC
  if (p <= b.length) return p;
  return b.length >= MAX_HEADER ? `gzip header longer than ${MAX_HEADER} bytes` : 'unexpected end of file (in a gzip header)';
}

/** The member's deflate data through zlib; the cursor ends on the member's trailer. */
async function* inflateMember(cur: Cursor, source: GzipSource, before: number): AsyncGenerator<Buffer> {
  const body = cur.pos;
  // A member whose deflate data is all in the first slice (a log shipper's member per flush: thousands of them) is
  // decoded at once: a stream per member costs ~60 µs. Anything else (a longer member, one that decodes to more
  // than a piece, damage) takes the streaming path, from the start of the member.
  const small = whole(await cur.peek(INPUT_SLICE));
  if (small) {
    if (small.output.length > 0) yield small.output;
    cur.skip(small.consumed);
    return;
  }
  const z = inflater();
  let given = 0;
  try {
    for (;;) {
      const input = await cur.peek(INPUT_SLICE);
      // zlib has already given all it could decode from what was there (it holds nothing back between calls).
      if (input.length === 0) throw new GzipError('unexpected end of file', cur.pos, before + given);
      const at = cur.pos;
      const r = await z.write(input);
      for (const b of r.output) yield b;
      given += r.outputBytes;
      if (r.error) {
        // zlib dropped what it decoded in the failed call: decode [at, at + input.length) again, piece by piece.
        if (!source.reread) {
          const lost = `in compressed bytes ${at} to ${at + input.length} (what zlib decoded of them is lost: a pipe cannot be read again)`;
          throw new GzipError(`${r.error.message} ${lost}`, at, before + given);
        }
        const stop = yield* salvage(source.reread.bind(source), body, at, at + input.length, given);
        throw new GzipError(stop.reason, stop.at, before + stop.given);
      }
      cur.skip(r.consumed);
      if (r.consumed < input.length) return; // the deflate stream ended inside this input: the rest is the trailer
    }
  } finally {
    z.close();
  }
}

/** The deflate stream at the start of `input` decoded in one call, if it ends within `input` and decodes to at most
 * OUTPUT_PIECE bytes. */
function whole(input: Buffer): { output: Buffer; consumed: number } | undefined {
  try {
    // With `info`, zlib also says how much input the stream took (Node's types do not know the option).
    const r = inflateRawSync(input, { info: true, maxOutputLength: OUTPUT_PIECE } as object) as unknown as { buffer: Buffer; engine: { bytesWritten: number } };
    return { output: r.buffer, consumed: r.engine.bytesWritten };
  } catch {
    return undefined;
  }
}

interface WriteResult {
  consumed: number;
  output: Buffer[];
  outputBytes: number;
  error?: Error;
}

/** zlib's raw inflater, one awaited call at a time: what each input consumed and produced. */
function inflater() {
  const z: InflateRaw = createInflateRaw({ chunkSize: OUTPUT_PIECE });
  let output: Buffer[] = [];
  let outputBytes = 0;
  let settle: ((err?: Error) => void) | undefined;
  // The output of a call is pushed before the call's callback runs (flowing mode: 'data' is emitted in push).
  z.on('data', (b: Buffer) => {
    output.push(b);
    outputBytes += b.length;
  });
  // A data error destroys the stream: the write callback is not called, only 'error' is emitted.
  z.on('error', (err) => settle?.(err));
  return {
    write(input: Buffer): Promise<WriteResult> {
      const before = z.bytesWritten;
      return new Promise((resolve) => {
        settle = (err) => {
          settle = undefined;
          resolve({ consumed: z.bytesWritten - before, output, outputBytes, ...(err ? { error: err } : {}) });
          output = [];
          outputBytes = 0;
        };
        z.write(input, (err) => settle?.(err ?? undefined));
      });
    },
    close: () => z.destroy(),
  };
}

/** Decodes the member again from `body`, feeding [from, to) (where zlib failed) in pieces 64 times smaller each
 * round until the failing piece is one byte; yields the output beyond the `given` bytes already yielded. Returns the
 * byte zlib rejects, the member's output yielded up to it, and zlib's reason. */
async function* salvage(
  reread: NonNullable<GzipSource['reread']>,
  body: number,
  from: number,
  to: number,
  given: number,
): AsyncGenerator<Buffer, { at: number; given: number; reason: string }> {
  let reason = 'invalid compressed data';
  for (;;) {
    const piece = Math.max(1, Math.ceil((to - from) / 64));
    const z = inflater();
    let made = 0;
    try {
      let failed: { at: number; reason: string } | undefined;
      let abs = body; // file offset of chunk[0]
      for await (const chunk of reread(body, to)) {
        // Input before `from` decodes as before (in any pieces); from `from` on it goes in `piece`-sized pieces.
        for (let off = 0; off < chunk.length && !failed;) {
          const at = abs + off;
          const len = Math.min(chunk.length - off, at < from ? Math.min(from - at, INPUT_SLICE) : piece);
          const r = await z.write(chunk.subarray(off, off + len));
          for (const b of r.output) {
            const fresh = b.subarray(Math.min(b.length, Math.max(0, given - made)));
            made += b.length;
            if (fresh.length > 0) {
              given += fresh.length;
              yield fresh;
            }
          }
          if (r.error) failed = { at, reason: (reason = r.error.message) };
          off += len;
        }
        abs += chunk.length;
        if (failed) break;
      }
      if (!failed) return { at: to, given, reason };
      if (piece === 1) return { at: failed.at, given, reason: failed.reason };
      from = failed.at;
      to = Math.min(to, failed.at + piece);
    } finally {
      z.close();
    }
  }
}
