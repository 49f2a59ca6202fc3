// The benchmark corpus: the real OpenStack logs bundled in the repo, concatenated verbatim (tracebacks, XML dumps
// and all) as many times as it takes to pass a line count. Built once and cached under `.stack/bench/`
// (git-ignored); the cache key is a hash of the sources, so a changed sample rebuilds it.
import { createHash } from 'node:crypto';
import { createWriteStream, existsSync, readFileSync, renameSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
export const BENCH_DIR = join(ROOT, '.stack', 'bench');

/** Where the corpus lines come from, with how each file is turned into plain oslo.log lines. */
const SOURCES: { path: string; kind: 'gzip' | 'plain' | 'loghub' }[] = [
  { path: 'samples/hotsos-2022/nova-compute.log.1.gz', kind: 'gzip' },
  { path: 'samples/hotsos-2022/neutron-dhcp-agent.log.1', kind: 'plain' },
  { path: 'samples/hotsos-2022/neutron-l3-agent.log.1', kind: 'plain' },
  { path: 'samples/hotsos-2022/neutron-metadata-agent.log.1', kind: 'plain' },
  // Loghub's OpenStack sample: CRLF, and each line starts with the name of the file it came from.
  { path: 'test/fixtures/loghub-OpenStack_2k.log', kind: 'loghub' },
];

export interface Corpus {
  path: string;
  bytes: number;
  lines: number;
  /** How many times the bundled logs were repeated. */
  rounds: number;
  /** Lines (and bytes) of one round, i.e. of the bundled logs once. */
  roundLines: number;
  roundBytes: number;
  sources: string[];
}

function ensureNewline(b: Buffer): Buffer {
  return b.length === 0 || b[b.length - 1] === 0x0a ? b : Buffer.concat([b, Buffer.from('\n')]);
}

/** Strips Loghub's first field (the source file name) and the CR of each line; keeps the rest verbatim. */
function loghubToPlain(b: Buffer): Buffer {
  const text = b.toString('latin1'); // byte-preserving round trip
  const out: string[] = [];
  for (let line of text.split('\n')) {
    if (line.endsWith('\r')) line = line.slice(0, -1);
    if (line === '') continue;
    const sp = line.indexOf(' ');
    out.push(sp < 0 ? line : line.slice(sp + 1));
  }
  return Buffer.from(out.join('\n') + '\n', 'latin1');
}

function countLines(b: Buffer): number {
  let n = 0;
  for (let i = b.indexOf(0x0a); i >= 0; i = b.indexOf(0x0a, i + 1)) n++;
  return n;
}

/** One round: every source once, as plain text ending in a newline. */
function oneRound(): Buffer {
  const parts = SOURCES.map(({ path, kind }) => {
    const raw = readFileSync(join(ROOT, path));
    if (kind === 'gzip') return ensureNewline(gunzipSync(raw));
    if (kind === 'loghub') return loghubToPlain(raw);
    return ensureNewline(raw);
  });
  return Buffer.concat(parts);
}

/** Builds (or finds in the cache) a corpus of at least `minLines` real lines. */
export async function buildCorpus(minLines = 1_000_000, log: (s: string) => void = () => {}): Promise<Corpus> {
  const round = oneRound();
  const roundLines = countLines(round);
  const rounds = Math.ceil(minLines / roundLines);
  const key = createHash('sha256').update(round).update(`v1 ${rounds}`).digest('hex').slice(0, 12);
  const path = join(BENCH_DIR, `corpus-${rounds}x-${key}.log`);
  const meta: Corpus = {
    path,
    bytes: round.length * rounds,
    lines: roundLines * rounds,
    rounds,
    roundLines,
    roundBytes: round.length,
    sources: SOURCES.map((s) => s.path),
  };
  if (existsSync(path) && existsSync(`${path}.json`)) {
    log(`corpus: cached ${relative(process.cwd(), path)}`);
    return meta;
  }
  log(`corpus: building ${relative(process.cwd(), path)} (${rounds} × the bundled logs, ${roundLines} lines each)`);
  mkdirSync(BENCH_DIR, { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  const out = createWriteStream(tmp);
  for (let i = 0; i < rounds; i++) {
    if (!out.write(round)) await new Promise<void>((r) => out.once('drain', () => r()));
  }
  await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
  renameSync(tmp, path);
  writeFileSync(`${path}.json`, JSON.stringify(meta, null, 2) + '\n');
  return meta;
}

/** The first `lines` lines of the corpus, as a file of its own (for profiles and output checks). */
export function corpusHead(corpus: Corpus, lines: number): string {
  const path = `${corpus.path}.head-${lines}`;
  if (existsSync(path)) return path;
  const round = oneRound();
  const parts: Buffer[] = [];
  let left = lines;
  while (left > 0) {
    let end = 0;
    let n = 0;
    while (n < left && end < round.length) {
      end = round.indexOf(0x0a, end) + 1;
      n++;
    }
    parts.push(round.subarray(0, end));
    left -= n;
  }
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, Buffer.concat(parts));
  renameSync(tmp, path);
  return path;
}

// `tsx bench/corpus.ts [MIN_LINES]`: build the corpus alone and say what it is.
if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const c = await buildCorpus(Number(process.argv[2] ?? 1_000_000), (s) => console.error(s));
  console.log(`${c.path}: ${(c.bytes / 2 ** 20).toFixed(1)} MiB, ${c.lines} lines (${c.rounds} × ${c.roundLines})`);
}
