// `npx tsx bench/stages.ts [RUNS]`: where `stackwatch parse`'s time goes, stage by stage, on the whole bench corpus.
// Each stage is `stackwatch parse` stopped after one more step, in a process of its own pinned to CPU 0 (as the
// parse benchmark pins both tools), its CPU time the best of RUNS (default 2); the difference between two stages is
// what the step costs. Beside them, the floor: a program that reads the same file, cuts its lines, reads the oslo
// header by hand and writes a small JSON document per line with nothing else (no folding, masking, ECS mapping or
// template), and liblognorm's lognormalizer (the parse benchmark's peer).
//
//   read        read, cut lines, fold multi-line events, mask secrets (collectors/logs)
//   parse       + the ECS document (processors/parse-log.ts)
//   mine        + the template (processors/templates)
//   json        + the document's JSON, written to /dev/null: all of `stackwatch parse`
//
// A stage runs as a child, `--stage NAME FILE` (through tsx, as bench/templates.ts runs its own), timed by measure.ts's
// `timed` (GNU time, pinned to CPU 0); it writes how many events or lines it made on stderr. The same modules as the
// bundle, compiled by esbuild either way.
import { closeSync, createWriteStream, openSync, readSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BytesOutput } from '../cli/parse.ts';
import { readLogFile } from '../collectors/logs/read-file.ts';
import { toRawEvent } from '../collectors/openstack-logs.ts';
import { logDocumentJson, parseLogEvent } from '../processors/parse-log.ts';
import { Miner, mineDocument } from '../processors/templates/miner.ts';
import { BENCH_DIR, buildCorpus, ROOT } from './corpus.ts';
import { ensureDebianTool, fmt, progress, table, timed, type Run } from './measure.ts';

const STAGES = ['read', 'parse', 'mine', 'json'] as const;
type Stage = (typeof STAGES)[number];

/** One stage over `path`, in this process: the events counted. */
async function runStage(stage: Stage, path: string): Promise<number> {
  const upTo = STAGES.indexOf(stage);
  const out = new BytesOutput(createWriteStream('/dev/null'));
  const miner = new Miner();
  const opts = { timezone: 'UTC' };
  const readAt = new Date().toISOString();
  let events = 0;
  for await (const batch of readLogFile(path, { maxEventBytes: 1 << 20, keepOriginal: false, onWarning: () => {} }, 500)) {
    for (const e of batch.events) {
      events++;
      if (upTo < 1) continue;
      const doc = parseLogEvent(toRawEvent(e, 'bench', path, batch.fileId, readAt), opts);
      if (upTo >= 2) mineDocument(miner, doc);
      if (upTo >= 3) out.line(logDocumentJson(doc));
    }
    if (out.full) await out.flush();
  }
  await out.flush();
  return events;
}

/** The floor (see the header), in this process: the lines written. */
function runFloor(path: string): number {
  const fd = openSync(path, 'r');
  const out = openSync('/dev/null', 'w');
  const buf = Buffer.allocUnsafe(256 * 1024);
  let carry = Buffer.alloc(0);
  let lines = 0;
  let parts: string[] = [];
  let size = 0;
  const flush = () => {
    writeSync(out, parts.join(''));
    parts = [];
    size = 0;
  };
  for (let n = readSync(fd, buf, 0, buf.length, null); n > 0; n = readSync(fd, buf, 0, buf.length, null)) {
    const data = carry.length > 0 ? Buffer.concat([carry, buf.subarray(0, n)]) : buf.subarray(0, n);
    let from = 0;
    for (let nl = data.indexOf(10, from); nl >= 0; nl = data.indexOf(10, from)) {
      const line = data.toString('latin1', from, nl);
      from = nl + 1;
      lines++;
      // "YYYY-MM-DD hh:mm:ss.mmm PID LEVEL logger message", read by position and blanks, unchecked.
      const a = line.indexOf(' ', 24);
      const b = line.indexOf(' ', a + 1);
      const c = line.indexOf(' ', b + 1);
      const doc = `{"@timestamp":"${line.slice(0, 10)}T${line.slice(11, 23)}Z","message":${JSON.stringify(line.slice(c + 1))},"log":{"level":${JSON.stringify(line.slice(a + 1, b))},"logger":${JSON.stringify(line.slice(b + 1, c))}},"process":{"pid":${Number(line.slice(24, a)) || 0}}}\n`;
      parts.push(doc);
      size += doc.length;
      if (size > 1 << 16) flush();
    }
    carry = Buffer.from(data.subarray(from));
  }
  flush();
  closeSync(fd);
  closeSync(out);
  return lines;
}

/** CPU seconds (user + system) of a run. */
const cpu = (r: Run) => r.userSeconds + r.sysSeconds;

/** What a stage's child wrote last on stderr: its count. */
const count = (r: Run) => Number(r.stderr.trim().split('\n').at(-1));

async function main(): Promise<void> {
  if (process.argv[2] === '--stage') {
    const [stage, path] = process.argv.slice(3);
    const n = stage === 'floor' ? runFloor(path) : await runStage(stage as Stage, path);
    process.stderr.write(`${n}\n`);
    return;
  }
  const runs = Math.max(1, Number(process.argv[2] ?? 2));
  ensureDebianTool('time', 'time');
  ensureDebianTool('lognormalizer', 'liblognorm-utils');
  const corpus = await buildCorpus(1_000_000, progress);
  const self = fileURLToPath(import.meta.url);
  const rows: (string | number)[][] = [['stage', 'what it adds', 'items', 'CPU s (best)', 'step s', 'µs per line']];
  /** The run of least CPU of a stage's child over `path`. */
  const best = async (stage: string, path: string): Promise<Run> => {
    let b: Run | undefined;
    for (let i = 0; i < runs; i++) {
      progress(`stages: ${stage} run ${i + 1}/${runs} …`);
      const r = await timed({ argv: [process.execPath, '--import', 'tsx', self, '--stage', stage, path], cwd: ROOT });
      if (r.exitCode !== 0) throw new Error(`stage ${stage}: exit ${r.exitCode}: ${r.stderr.slice(-2000)}`);
      if (!b || cpu(r) < cpu(b)) b = r;
    }
    return b!;
  };
  const what: Record<string, string> = {
    start: 'node, tsx and the modules, an empty file',
    read: 'read, cut, fold, mask secrets',
    parse: 'ECS document',
    mine: 'template',
    json: 'JSON, written',
  };
  const empty = join(BENCH_DIR, 'empty.log');
  writeFileSync(empty, '');
  const start = cpu(await best('read', empty));
  let before = start;
  rows.push(['start', what.start, 0, fmt(start, 2), '', '']);
  for (const s of STAGES) {
    const r = await best(s, corpus.path);
    const used = cpu(r);
    rows.push([s, what[s], count(r).toLocaleString('en-US'), fmt(used, 2), fmt(used - before, 2), fmt(((used - before) / corpus.lines) * 1e6, 2)]);
    before = used;
  }
  const floorRun = await best('floor', corpus.path);
  const floor = cpu(floorRun);
  rows.push([
    'floor',
    'read, cut, header, JSON: nothing else',
    count(floorRun).toLocaleString('en-US'),
    fmt(floor, 2),
    fmt(floor - start, 2),
    fmt(((floor - start) / corpus.lines) * 1e6, 2),
  ]);
  let ln = Infinity;
  for (let i = 0; i < runs; i++) ln = Math.min(ln, cpu(await timed({ argv: ['lognormalizer', '-r', 'bench/oslo.rulebase', '-e', 'json', '-H'], stdinFile: corpus.path, cwd: ROOT })));
  rows.push(['lognormalizer', 'liblognorm with oslo.rulebase', corpus.lines.toLocaleString('en-US'), fmt(ln, 2), '', fmt((ln / corpus.lines) * 1e6, 2)]);
  process.stdout.write(
    `step s: a stage's CPU less the one before it (the floor's: less the start)\n` +
      `stackwatch's steps after the start: ${fmt(before - start, 2)} s; the floor's: ${fmt(floor - start, 2)} s; lognormalizer's: ${fmt(ln, 2)} s\n`,
  );
  process.stdout.write(`stackwatch parse by stage: ${corpus.path} (${corpus.lines.toLocaleString('en-US')} lines), pinned to CPU 0, best of ${runs}\n${table(rows)}\n`);
}

await main();
