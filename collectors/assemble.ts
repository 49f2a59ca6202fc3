// Bytes → events, the part of collection that needs no I/O: split lines (CRLF, a cap on line length, bytes that
// are not text), take off envelopes (CRI, syslog, journald, …) and join CRI partial lines, fold multi-line
// events (tracebacks, exception-prefixed lines, XML dumps) into the event that started them, cap an event's
// size, and mask secrets. The collector, `stackwatch parse` and `stackwatch replay` all use it, so the
// pipeline and the offline tools see the same events.
import { isUtf8 } from 'node:buffer';
import { isOsloStart, lineKind, unwrap, type Envelope } from '../core/log-formats.ts';
import { redact } from './redact.ts';

export interface AssembledEvent {
  /** Byte offset of the event's first line in the (decompressed) file. */
  offset: number;
  /** The event's text without envelopes: its first line, then its continuation lines, joined by "\n". */
  text: string;
  envelope?: Envelope;
  /** The event was longer than the cap and was cut. */
  truncated?: true;
  /** The raw lines as read (envelopes included), when asked for. */
  original?: string;
}

export interface UnusableLine {
  offset: number;
  reason: string;
  bytes: Buffer;
}

export interface AssemblerOptions {
  /** An event (all its lines) is cut at this many bytes and marked truncated. */
  maxEventBytes: number;
  keepOriginal?: boolean;
}

export const DEFAULT_MAX_EVENT_BYTES = 1024 * 1024;

interface Pending {
  offset: number;
  parts: string[];
  raw?: string[];
  bytes: number;
  envelope?: Envelope;
  truncated?: true;
  /** Cut at the cap: the rest of the event's lines are dropped. */
  full?: true;
}

/** Folds lines into events. Events come out one behind: an event is complete when the next one starts, or on flush(). */
export class EventAssembler {
  private pending?: Pending;
  private partial?: { offset: number; text: string; raw: string };
  /** The stream has shown oslo.log events: from then on only oslo event lines start events. */
  private oslo = false;

  constructor(
    private readonly opts: AssemblerOptions,
    private readonly emit: (e: AssembledEvent) => void,
  ) {}

  /** Offset of the first byte that is not yet part of an emitted event (where a restart must resume). */
  get pendingOffset(): number | undefined {
    return this.partial?.offset ?? this.pending?.offset;
  }

  push(offset: number, line: string, lineTruncated = false): void {
    const u = unwrap(line);
    let text = lineTruncated ? dropCutToken(u.text) : u.text;
    let raw = line;
    if (u.envelope?.partial) {
      // CRI splits long lines into "P" pieces; the "F" piece ends the line.
      if (this.partial) {
        this.partial.text += text;
        this.partial.raw += '\n' + line;
      } else this.partial = { offset, text, raw: line };
      return;
    }
    if (this.partial) {
      offset = this.partial.offset;
      text = this.partial.text + text;
      raw = this.partial.raw + '\n' + line;
      this.partial = undefined;
    }
    const p = this.pending;
    if (!this.oslo && isOsloStart(text)) this.oslo = true;
    if (p === undefined || lineKind(text, this.oslo) === 'start') {
      this.flush();
      this.pending = { offset, parts: [text], bytes: text.length, envelope: u.envelope, ...(lineTruncated ? { truncated: true } : {}) };
      if (this.opts.keepOriginal) this.pending.raw = [raw];
      if (text.length > this.opts.maxEventBytes) this.cut(this.pending);
      return;
    }
    if (p.full) return; // cut at the cap: the rest of the event is dropped
    p.parts.push(text);
    p.raw?.push(raw);
    p.bytes += text.length + 1;
    if (lineTruncated) p.truncated = true;
    if (p.bytes > this.opts.maxEventBytes) this.cut(p);
  }

  private cut(p: Pending): void {
    const full = p.parts.join('\n');
    const max = this.opts.maxEventBytes;
    const joined = /\s/.test(full.charAt(max)) ? full.slice(0, max) : dropCutToken(full.slice(0, max));
    p.parts = [joined];
    p.bytes = joined.length;
    p.truncated = true;
    p.full = true;
  }

  flush(): void {
    const p = this.pending;
    if (!p) return;
    this.pending = undefined;
    const text = p.parts.length === 1 ? p.parts[0] : p.parts.join('\n');
    const event: AssembledEvent = { offset: p.offset, text: redact(text) };
    if (p.envelope) event.envelope = p.envelope;
    if (p.truncated) event.truncated = true;
    if (p.raw) event.original = redact(p.raw.join('\n'));
    this.emit(event);
  }
}

/** Drops the token a cut went through: half a secret would no longer be recognised by the masking. */
function dropCutToken(text: string): string {
  const ws = Math.max(text.lastIndexOf(' '), text.lastIndexOf('\n'), text.lastIndexOf('\t'));
  return ws >= 0 && text.length - ws <= 4096 ? text.slice(0, ws + 1) : text.slice(0, Math.max(0, text.length - 4096));
}

/** Splits a byte stream into lines with their byte offsets. Lines longer than the cap are cut (the rest up to
 * the newline is skipped); lines that are not valid UTF-8 text, or hold NUL bytes, are handed to `reject`. */
export class LineSplitter {
  private carry?: Buffer;
  private carryOffset: number;
  private skipping = false;
  /** File offset up to which every byte belongs to a line already handed on. */
  consumed: number;

  constructor(
    startOffset: number,
    private readonly maxLineBytes: number,
    private readonly onLine: (offset: number, text: string, truncated: boolean) => void,
    private readonly reject: (u: UnusableLine) => void,
  ) {
    this.consumed = startOffset;
    this.carryOffset = startOffset;
  }

  /** `chunk` holds the bytes that follow everything written before. */
  write(chunk: Buffer): void {
    let buf = chunk;
    let base = this.carryOffset + (this.carry?.length ?? 0);
    if (this.carry) {
      buf = Buffer.concat([this.carry, chunk]);
      base = this.carryOffset;
      this.carry = undefined;
    }
    let start = 0;
    if (this.skipping) {
      const nl = buf.indexOf(0x0a);
      if (nl < 0) {
        this.carryOffset = base + buf.length;
        return;
      }
      this.skipping = false;
      start = nl + 1;
      this.consumed = base + start;
    }
    const last = buf.lastIndexOf(0x0a);
    if (last >= start) {
      this.lines(buf, start, last, base);
      start = last + 1;
      this.consumed = base + start;
    }
    // What follows the last newline waits for the rest of its line, unless it is already too long.
    if (start < buf.length) {
      const rest = buf.subarray(start);
      if (rest.length > this.maxLineBytes) {
        this.line(rest, 0, this.maxLineBytes, base + start, true);
        this.skipping = true;
        this.carryOffset = base + buf.length;
      } else {
        this.carry = Buffer.from(rest); // a copy: the caller may reuse its buffer
        this.carryOffset = base + start;
      }
    } else this.carryOffset = base + buf.length;
  }

  /** End of a file that will not grow (gzip, offline parsing): its last line needs no newline. */
  end(): void {
    if (this.carry && this.carry.length > 0) {
      this.line(this.carry, 0, this.carry.length, this.carryOffset, false);
      this.consumed = this.carryOffset + this.carry.length;
    }
    this.carry = undefined;
  }

  /** The complete lines of buf[start, lastNewline]. */
  private lines(buf: Buffer, start: number, lastNewline: number, base: number): void {
    const region = buf.subarray(start, lastNewline);
    if (region.indexOf(0) < 0 && isUtf8(region)) {
      // Fast path: the whole region is text. Decode once; byte offsets equal character offsets when it is ASCII.
      const s = region.toString('utf8');
      const ascii = s.length === region.length;
      let pos = 0;
      let bytePos = start;
      while (pos <= s.length) {
        let nl = s.indexOf('\n', pos);
        if (nl < 0) nl = s.length;
        let end = nl;
        if (end > pos && s.charCodeAt(end - 1) === 13) end--;
        const text = s.slice(pos, end);
        const lineBytes = ascii ? nl - pos : Buffer.byteLength(s.slice(pos, nl));
        if (lineBytes > this.maxLineBytes) this.line(buf, bytePos, bytePos + this.maxLineBytes, base + bytePos, true);
        else if (end > pos) this.onLine(base + bytePos, text, false);
        bytePos += lineBytes + 1;
        pos = nl + 1;
      }
      return;
    }
    for (let s = start; s <= lastNewline; ) {
      let nl = buf.indexOf(0x0a, s);
      if (nl < 0 || nl > lastNewline) nl = lastNewline;
      const end = nl > s && buf[nl - 1] === 0x0d ? nl - 1 : nl;
      if (end - s > this.maxLineBytes) this.line(buf, s, s + this.maxLineBytes, base + s, true);
      else this.line(buf, s, end, base + s, false);
      s = nl + 1;
    }
  }

  private line(buf: Buffer, s: number, e: number, offset: number, truncated: boolean): void {
    if (e <= s) return;
    const bytes = buf.subarray(s, e);
    if (bytes.indexOf(0) >= 0) return this.reject({ offset, reason: 'NUL byte in line: not text', bytes: Buffer.from(bytes) });
    if (!isUtf8(bytes)) {
      // A cut line may end inside a multi-byte character: trim to the last whole character before judging.
      let cut = bytes.length;
      if (truncated) while (cut > 0 && cut > bytes.length - 4 && (bytes[cut - 1] & 0xc0) === 0x80) cut--;
      const trimmed = truncated && cut > 0 && (bytes[cut - 1] & 0xc0) === 0xc0 ? cut - 1 : cut;
      if (!truncated || !isUtf8(bytes.subarray(0, trimmed))) {
        return this.reject({ offset, reason: 'invalid UTF-8 in line', bytes: Buffer.from(bytes) });
      }
      return this.onLine(offset, bytes.toString('utf8', 0, trimmed).replace(/\r$/, ''), truncated);
    }
    this.onLine(offset, bytes.toString('utf8').replace(/\r$/, ''), truncated);
  }
}
