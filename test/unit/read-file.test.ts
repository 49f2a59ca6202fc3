// Reading whole files for the offline tools (collectors/logs/read-file.ts, collectors/logs/gunzip.ts): every file error names
// the file, and damage never costs the complete lines before it. The damaged .gz files are made here from the real
// bundled log (samples/hotsos-2022/nova-compute.log.1.gz), as test/fixtures/hostile/files/README.md explains.
import { execFileSync } from 'node:child_process';
import { createWriteStream, mkdirSync, mkdtempSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { constants, gunzipSync, gzipSync, inflateRawSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { readLogFile } from '../../collectors/logs/read-file.ts';

const SAMPLE = new URL('../../samples/hotsos-2022/nova-compute.log.1.gz', import.meta.url).pathname;
const gz = readFileSync(SAMPLE);
const plain = gunzipSync(gz);
const dir = mkdtempSync(join(tmpdir(), 'stackwatch-read-file-'));
const SYNC = { finishFlush: constants.Z_SYNC_FLUSH };

function write(name: string, bytes: Buffer | string): string {
  const p = join(dir, name);
  writeFileSync(p, bytes);
  return p;
}

/** Every event of the file (offset and text), and the error that ended the reading, if any. */
async function readAll(path: string, batchSize = 5000): Promise<{ events: { offset: number; text: string }[]; error?: Error; warnings: string[] }> {
  const events: { offset: number; text: string }[] = [];
  const warnings: string[] = [];
  try {
    for await (const b of readLogFile(path, { maxEventBytes: 1024 * 1024, onWarning: (w) => warnings.push(w) }, batchSize)) {
      events.push(...b.events.map((e) => ({ offset: e.offset, text: e.text })));
    }
  } catch (error) {
    return { events, error: error as Error, warnings };
  }
  return { events, warnings };
}

/** The events of the complete lines of `text` (up to its last newline), read as a plain file: what a damaged file
 * must still give. */
async function eventsOfCompleteLines(text: Buffer): Promise<{ offset: number; text: string }[]> {
  const complete = text.subarray(0, text.lastIndexOf(0x0a) + 1);
  return (await readAll(write(`complete-${complete.length}.log`, complete))).events;
}

/** The error that ended the reading: it must have come, and name the file first. */
function errorOf(r: { error?: Error }, path: string): Error {
  expect(r.error?.message.startsWith(`${path}: `)).toBe(true);
  return r.error!;
}

/** Where the deflate data of the sample starts: its header carries the original file name (FNAME) only. */
function deflateStart(b: Buffer): number {
  expect(b[3]).toBe(0x08);
  return b.indexOf(0, 10) + 1;
}

describe('readLogFile: files that cannot be read name the file', () => {
  it('a missing file, a directory', async () => {
    const missing = join(dir, 'no-such.log');
    expect(errorOf(await readAll(missing), missing).message).toBe(`${missing}: cannot read: no such file`);
    const sub = join(dir, 'a-directory.log');
    mkdirSync(sub);
    expect(errorOf(await readAll(sub), sub).message).toBe(`${sub}: cannot read: is a directory`);
    expect(errorOf(await readAll(`${sub}.gz`), `${sub}.gz`).message).toMatch(/no such file/);
  });

  it('a file that is not gzip although named .gz', async () => {
    const p = write('plain-named.log.gz', plain.subarray(0, 4096));
    const e = errorOf(await readAll(p), p);
    expect(e.message).toBe(`${p}: damaged gzip data: not in gzip format at compressed byte 0, after 0 decompressed bytes; complete lines up to decompressed byte 0 were read`);
  });
});

describe('readLogFile: damaged .gz files give every complete line before the damage', () => {
  it('reads a whole real .gz file as its decompressed text', async () => {
    const r = await readAll(SAMPLE);
    expect(r.error).toBeUndefined();
    expect(r.events).toEqual(await eventsOfCompleteLines(plain));
  });

  it('truncated: the complete lines zlib can decode, and where it stopped', async () => {
    for (const cut of [Math.floor(gz.length / 3), Math.floor((gz.length * 2) / 3), gz.length - 4]) {
      const p = write(`truncated-${cut}.log.gz`, gz.subarray(0, cut));
      const decodable = gunzipSync(gz.subarray(0, cut), SYNC);
      const r = await readAll(p, 100);
      expect(r.events).toEqual(await eventsOfCompleteLines(decodable));
      expect(r.events.length).toBeGreaterThan(0);
      const e = errorOf(r, p);
      expect(e.message).toContain(`${p}: damaged gzip data: unexpected end of file`);
      expect(e.message).toContain(`at compressed byte ${cut}`);
      expect(e.message).toContain(`after ${decodable.length} decompressed bytes`);
      expect(e.message).toContain(`complete lines up to decompressed byte ${decodable.lastIndexOf(0x0a) + 1} were read`);
    }
  });

  it('trailing garbage (gzip -d: "trailing garbage ignored"): every line, and a warning', async () => {
    const p = write('trailing-garbage.log.gz', Buffer.concat([gz, Buffer.from('this is not gzip\n')]));
    const r = await readAll(p);
    expect(r.error).toBeUndefined();
    expect(r.events).toEqual(await eventsOfCompleteLines(plain));
    expect(r.warnings).toEqual([`${p}: trailing garbage ignored from compressed byte ${gz.length} (after ${plain.length} decompressed bytes, all of them read)`]);
  });

  it('zero padding after the last member is accepted silently, as gzip and zlib do', async () => {
    const r = await readAll(write('zero-padded.log.gz', Buffer.concat([gz, Buffer.alloc(4096)])));
    expect(r.error).toBeUndefined();
    expect(r.warnings).toEqual([]);
    expect(r.events).toEqual(await eventsOfCompleteLines(plain));
  });

  it('concatenated members (cat a.gz b.gz, split even inside a line) read as one text', async () => {
    const mid = Math.floor(plain.length / 2) + 7; // not on a line boundary
    const p = write('concatenated.log.gz', Buffer.concat([gzipSync(plain.subarray(0, mid)), gzipSync(plain.subarray(mid, mid + 100)), gzipSync(plain.subarray(mid + 100))]));
    const r = await readAll(p);
    expect(r.error).toBeUndefined();
    expect(r.events).toEqual(await eventsOfCompleteLines(plain));
  });

  it('corrupt in the middle (a zlib data error): everything decodable before the damaged byte, and where', async () => {
    const header = deflateStart(gz);
    // The first damage (64 bytes of 0xff: invalid Huffman codes, mostly) that zlib rejects as invalid data, at least a
    // fifth into the file; searched for, not hard-coded.
    let damaged: Buffer | undefined;
    let at = 0;
    for (let k = 8; k < 40 && !damaged; k++) {
      at = header + Math.floor(((gz.length - header) * k) / 41);
      const bad = Buffer.from(gz);
      bad.fill(0xff, at, at + 64);
      try {
        gunzipSync(bad);
      } catch (err) {
        if (!/check/.test((err as Error).message)) damaged = bad; // not the CRC check at the end: a data error
      }
    }
    expect(damaged).toBeDefined();
    const p = write('corrupt-middle.log.gz', damaged!);
    const r = await readAll(p, 100);
    const e = errorOf(r, p);
    const stop = Number(/at compressed byte (\d+)/.exec(e.message)?.[1]);
    expect(stop).toBeGreaterThanOrEqual(at);
    // Every complete line decodable from the bytes before the damage was read ...
    const beforeDamage = await eventsOfCompleteLines(inflateRawSync(damaged!.subarray(header, at), SYNC));
    expect(beforeDamage.length).toBeGreaterThan(0);
    expect(r.events.slice(0, beforeDamage.length)).toEqual(beforeDamage);
    // ... and exactly what zlib decodes before the byte it rejects (nothing of zlib's last call is dropped).
    expect(r.events).toEqual(await eventsOfCompleteLines(inflateRawSync(damaged!.subarray(header, stop), SYNC)));
    expect(e.message).toMatch(new RegExp(`^${p}: damaged gzip data: .+ at compressed byte ${stop}, after \\d+ decompressed bytes`));
  });

  it('a CRC error (damage zlib decodes as other text) is reported after the data, naming the member', async () => {
    const bad = Buffer.from(gz);
    bad[Math.floor(gz.length / 2)] ^= 0x01;
    const p = write('crc.log.gz', bad);
    const r = await readAll(p);
    expect(errorOf(r, p).message).toMatch(new RegExp(`^${p}: damaged gzip data: CRC or length check failed: member 1 .* is corrupt at compressed byte ${gz.length - 8}`));
    expect(r.events.length).toBeGreaterThan(1000);
  });
});

describe('readLogFile: a file that shrinks while it is read', () => {
  it('is reported with its size at open and the bytes read, after the events read before', async () => {
    const lines = plain.subarray(0, plain.lastIndexOf(0x0a) + 1);
    const big = Buffer.concat(Array.from({ length: 5 }, () => lines)); // ~19 MiB: many reads of 1 MiB
    const p = write('shrinking.log', big);
    const events: number[] = [];
    let error: Error | undefined;
    try {
      for await (const b of readLogFile(p, { maxEventBytes: 1024 * 1024 }, 10)) {
        if (events.length === 0) truncateSync(p, 4096); // copytruncate, or a rotation gone wrong, under us
        events.push(...b.events.map((e) => e.offset));
      }
    } catch (err) {
      error = err as Error;
    }
    expect(events.length).toBeGreaterThan(0);
    expect(error).toBeDefined();
    const m = /(\d+) bytes at open, (\d+) bytes read, 4096 bytes now/.exec(error!.message);
    expect(error!.message.startsWith(`${p}: the file shrank while it was read`)).toBe(true);
    expect(Number(m?.[1])).toBe(big.length);
    expect(Number(m?.[2])).toBeLessThan(big.length);
  });
});

describe('readLogFile: pipes (parse <(zcat …), /dev/stdin)', () => {
  it('reads a plain or gzip stream that has no size and cannot be read again', async () => {
    for (const [name, bytes] of [
      ['pipe.log', plain],
      ['pipe.log.gz', Buffer.concat([gz, Buffer.from('garbage')])],
    ] as const) {
      const fifo = join(dir, name);
      execFileSync('mkfifo', [fifo]);
      const writing = new Promise<void>((resolve) => createWriteStream(fifo).end(bytes, () => resolve()));
      const r = await readAll(fifo);
      await writing;
      expect(r.error).toBeUndefined();
      expect(r.events).toEqual(await eventsOfCompleteLines(plain));
      expect(r.warnings).toHaveLength(name.endsWith('.gz') ? 1 : 0);
    }
  });
});
