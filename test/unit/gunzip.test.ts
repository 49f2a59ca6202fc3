// collectors/logs/gunzip.ts by itself: gzip members, cuts anywhere, trailing bytes (fast-check), and a damaged stream that
// cannot be read again. The real-file cases are in read-file.test.ts.
import { gzipSync, inflateRawSync, constants } from 'node:zlib';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { gunzip, GzipError, headerLength, type GzipSource } from '../../collectors/logs/gunzip.ts';

const SYNC = { finishFlush: constants.Z_SYNC_FLUSH };

/** An in-memory GzipSource, handing out the bytes in pieces of `piece`. */
function memory(bytes: Buffer, piece: number, rereadable = true): GzipSource {
  let pos = 0;
  return {
    async next() {
      const b = bytes.subarray(pos, pos + piece);
      pos += b.length;
      return b;
    },
    ...(rereadable
      ? {
          async *reread(start: number, end: number) {
            for (let p = start; p < end; p += piece) yield bytes.subarray(p, Math.min(end, p + piece));
          },
        }
      : {}),
  };
}

async function decompress(source: GzipSource): Promise<{ out: Buffer; error?: GzipError }> {
  const parts: Buffer[] = [];
  try {
    for await (const b of gunzip(source)) parts.push(b);
  } catch (err) {
    if (!(err instanceof GzipError)) throw err;
    return { out: Buffer.concat(parts), error: err };
  }
  return { out: Buffer.concat(parts) };
}

describe('gunzip (property): members and truncation', () => {
  // Text of a few lines, and how it is cut into gzip members.
  const members = fc.array(
    fc.array(fc.stringMatching(/^[ -~]{0,80}$/), { minLength: 1, maxLength: 30 }).map((ls) => Buffer.from(ls.join('\n') + '\n')),
    { minLength: 1, maxLength: 4 },
  );

  it('concatenated members decompress to their concatenation, whatever the read size', async () => {
    await fc.assert(
      fc.asyncProperty(members, fc.integer({ min: 1, max: 5000 }), async (parts, piece) => {
        const r = await decompress(memory(Buffer.concat(parts.map((p) => gzipSync(p))), piece));
        expect(r.error).toBeUndefined();
        expect(r.out.equals(Buffer.concat(parts))).toBe(true);
      }),
      { numRuns: 60 },
    );
  });

  it('a file cut anywhere gives exactly what the bytes before the cut decode to, and says where it stopped', async () => {
    await fc.assert(
      fc.asyncProperty(members, fc.double({ min: 0, max: 1, noNaN: true }), fc.integer({ min: 1, max: 5000 }), async (parts, where, piece) => {
        const zipped = parts.map((p) => gzipSync(p));
        const whole = Buffer.concat(zipped);
        const cut = Math.min(whole.length - 1, Math.floor(where * whole.length));
        // The oracle, member by member: whole members before the cut, then what zlib decodes of the cut one.
        let expected = Buffer.alloc(0);
        for (let i = 0, start = 0; i < zipped.length; start += zipped[i].length, i++) {
          if (start + zipped[i].length <= cut) expected = Buffer.concat([expected, parts[i]]);
          else {
            const header = headerLength(zipped[i]) as number;
            if (cut - start > header) expected = Buffer.concat([expected, inflateRawSync(zipped[i].subarray(header, cut - start), SYNC)]);
            break;
          }
        }
        const r = await decompress(memory(whole.subarray(0, cut), piece));
        expect(r.out.equals(expected)).toBe(true);
        // A cut exactly between members is a complete file; anywhere else it is an unexpected end.
        const between = zipped.reduce<number[]>((acc, z) => [...acc, (acc.at(-1) ?? 0) + z.length], [0]).includes(cut) && cut > 0;
        if (between) expect(r.error).toBeUndefined();
        else {
          expect(r.error?.reason).toMatch(/^unexpected end of file/);
          expect(r.error?.decompressedOffset).toBe(expected.length);
        }
      }),
      { numRuns: 150 },
    );
  });

  it('trailing bytes after the last member: zeros are padding, anything else a warning, and nothing is lost', async () => {
    await fc.assert(
      fc.asyncProperty(members, fc.uint8Array({ minLength: 1, maxLength: 300 }), async (parts, tail) => {
        const whole = Buffer.concat(parts.map((p) => gzipSync(p)));
        const warnings: string[] = [];
        const out: Buffer[] = [];
        let error: unknown;
        try {
          for await (const b of gunzip(memory(Buffer.concat([whole, Buffer.from(tail)]), 997), (w) => warnings.push(w))) out.push(b);
        } catch (err) {
          error = err;
        }
        expect(Buffer.concat(out).equals(Buffer.concat(parts))).toBe(true);
        if (tail[0] === 0x1f) return; // the start of another member: damaged if it is not one (gzip -d agrees)
        expect(error).toBeUndefined();
        expect(warnings).toHaveLength(tail.every((b) => b === 0) ? 0 : 1);
      }),
      { numRuns: 100 },
    );
  });
});

describe('gunzip: a data error in the middle', () => {
  // Log-like text big enough for several deflate blocks.
  const text = fc
    .array(fc.tuple(fc.integer({ min: 0, max: 59 }), fc.constantFrom('INFO', 'WARNING', 'ERROR'), fc.stringMatching(/^[a-z ]{5,60}$/)), { minLength: 200, maxLength: 2000 })
    .map((ls) => Buffer.from(ls.map(([s, level, msg]) => `2022-02-04 09:37:${String(s).padStart(2, '0')}.031 21562 ${level} nova.compute [-] ${msg}\n`).join('')));

  it("yields exactly what zlib decodes before the byte it rejects (property: nothing of zlib's failed call is lost)", async () => {
    let dataErrors = 0;
    await fc.assert(
      fc.asyncProperty(
        text,
        fc.double({ min: 0.05, max: 0.95, noNaN: true }),
        fc.integer({ min: 1, max: 80 }),
        fc.integer({ min: 100, max: 70_000 }),
        async (plain, where, length, piece) => {
          const bad = gzipSync(plain);
          const header = headerLength(bad) as number;
          const at = header + Math.floor(where * (bad.length - 8 - header));
          bad.fill(0xff, at, Math.min(at + length, bad.length - 8));
          const r = await decompress(memory(bad, piece));
          if (!r.error || /CRC/.test(r.error.reason)) return; // decoded as other text: only the CRC tells
          if (/unexpected end/.test(r.error.reason)) return; // the damage ran into the end
          dataErrors++;
          expect(r.error.compressedOffset).toBeGreaterThanOrEqual(at);
          expect(r.out.equals(inflateRawSync(bad.subarray(header, r.error.compressedOffset), SYNC))).toBe(true);
          expect(r.error.decompressedOffset).toBe(r.out.length);
        },
      ),
      { numRuns: 40 },
    );
    expect(dataErrors).toBeGreaterThan(5); // the property was really exercised
  });

  it('from a pipe (no second read) the error says which compressed bytes lost their output', async () => {
    const plain = Buffer.from(Array.from({ length: 5000 }, (_, i) => `2022-02-04 09:37:50.031 21562 INFO nova.compute [-] line ${i * 7919}\n`).join(''));
    const bad = gzipSync(plain);
    const header = headerLength(bad) as number;
    bad.fill(0xff, header + 2000, header + 2064);
    const r = await decompress(memory(bad, 1 << 20, false));
    expect(r.error?.message).toMatch(
      /^invalid .* in compressed bytes (\d+) to (\d+) \(what zlib decoded of them is lost: a pipe cannot be read again\) at compressed byte \1, after \d+ decompressed bytes$/,
    );
    // With a second read, the same damage loses nothing.
    const again = await decompress(memory(bad, 1 << 20));
    expect(again.out.length).toBeGreaterThanOrEqual(r.out.length);
    expect(again.out.equals(inflateRawSync(bad.subarray(header, again.error!.compressedOffset), SYNC))).toBe(true);
  });
});
