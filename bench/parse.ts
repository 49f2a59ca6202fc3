// Benchmark `parse`: stackwatch's parse stage (multi-line folding + redaction + ECS JSON, `stackwatch parse`) against
// rsyslog's normaliser engine liblognorm (`lognormalizer`, the engine behind mmnormalize) extracting the same
// oslo.log header fields (bench/oslo.rulebase) from the same corpus of ≥ 1M real lines, each pinned to one core.
// Targets: ≥ 40 MiB/s per core, peak RSS ≤ 200 MiB (issue 3); ≥ 0.7× liblognorm's speed (issue 16, which relaxed issue 3's 1×).
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { buildCorpus, corpusHead, ROOT, type Corpus } from './corpus.ts';
import { countOutputLines, debianVersion, ensureDebianTool, fmt, machine, median, MiB, progress, table, timed, type Benchmark, type Run } from './measure.ts';

export const TARGET_MIB_S = 40;
/** stackwatch parse against liblognorm on the same corpus (issue 16). */
export const LIBLOGNORM_RATIO = 0.7;
export const TARGET_RSS_MIB = 200;
const RULEBASE = join(ROOT, 'bench', 'oslo.rulebase');
const STACKWATCH = ['node', join(ROOT, 'bin', 'stackwatch.mjs'), 'parse', '--host', 'bench'];
const LOGNORMALIZER = ['lognormalizer', '-r', RULEBASE, '-e', 'json'];

interface Side {
  tool: string;
  runs: Run[];
  /** Documents (stackwatch: events after multi-line folding) or parsed records (lognormalizer). */
  out?: number;
  outNote?: string;
  error?: string;
}

function tail(s: string, lines = 15): string {
  return s.trimEnd().split('\n').slice(-lines).join('\n');
}

/** Runs a side `runs` times; stops at the first failure. */
async function measure(side: Side, runs: number, argv: string[], corpus: Corpus, stdin: boolean): Promise<void> {
  for (let i = 1; i <= runs; i++) {
    progress(`${side.tool}: run ${i}/${runs} …`);
    const r = await timed({ argv, stdinFile: stdin ? corpus.path : undefined, cwd: ROOT });
    if (r.exitCode !== 0) {
      side.error = `exit code ${r.exitCode}\n${tail(r.stderr)}`;
      progress(`${side.tool}: failed (${side.error.split('\n')[0]})`);
      return;
    }
    side.runs.push(r);
    progress(`${side.tool}: run ${i}/${runs}: ${fmt(r.seconds, 2)} s, ${fmt(corpus.bytes / MiB / r.seconds)} MiB/s, peak RSS ${fmt(r.maxRss / MiB)} MiB`);
  }
}

function isJsonObject(line: string): boolean {
  try {
    const v: unknown = JSON.parse(line);
    return typeof v === 'object' && v !== null;
  } catch {
    return false;
  }
}

/** lognormalizer on the first lines of the corpus: proves the rulebase extracts the fields; returns what to show. */
function checkRulebase(corpus: Corpus): string {
  const sample = corpusHead(corpus, 3000);
  const r = spawnSync(LOGNORMALIZER[0], [...LOGNORMALIZER.slice(1), '-H'], { input: readFileSync(sample), encoding: 'utf8', cwd: ROOT });
  if (r.status !== 0) throw new Error(`lognormalizer failed on a sample: ${tail(r.stderr ?? '')}`);
  const records = r.stdout
    .trimEnd()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, string>);
  const withContext = records.find((x) => x.context && x.context !== '-' && x.logger && x.date);
  const noContext = records.find((x) => x.message && x.logger && !('context' in x));
  const unparsed = records.find((x) => 'unparsed-data' in x);
  const fields = ['date', 'time', 'msec', 'pid', 'level', 'logger', 'context', 'message'];
  if (!withContext || fields.some((f) => !(f in withContext))) throw new Error(`bench/oslo.rulebase extracts no complete header from the sample: ${r.stdout.slice(0, 500)}`);
  const summary = /(\d+) records processed, (\d+) parsed, (\d+) unparsed/.exec(r.stderr ?? '');
  return [
    `lognormalizer check on the corpus' first 3000 lines${summary ? ` (${summary[2]} parsed, ${summary[3]} unparsed)` : ''}:`,
    `  header with [context]: ${JSON.stringify(withContext)}`,
    ...(noContext ? [`  header without it:     ${JSON.stringify(noContext)}`] : []),
    ...(unparsed ? [`  continuation line:     ${JSON.stringify(unparsed)}`] : []),
  ].join('\n');
}

export const parseBench: Benchmark = {
  name: 'parse',
  summary: 'stackwatch parse vs rsyslog liblognorm (lognormalizer) on ≥ 1M real oslo.log lines, one core',

  async run({ runs, minLines }) {
    ensureDebianTool('/usr/bin/time', 'time');
    ensureDebianTool('taskset', 'util-linux');
    ensureDebianTool('lognormalizer', 'liblognorm-utils');

    const corpus = await buildCorpus(minLines, progress);
    const inMiB = corpus.bytes / MiB;
    progress(`corpus: ${fmt(inMiB)} MiB, ${corpus.lines.toLocaleString('en-US')} lines`);
    const check = checkRulebase(corpus);

    const sw: Side = { tool: 'stackwatch parse', runs: [] };
    const ln: Side = { tool: 'lognormalizer', runs: [] };

    // stackwatch: stdout to /dev/null; the documents are counted once more, untimed.
    await measure(sw, runs, [...STACKWATCH, corpus.path], corpus, false);
    if (!sw.error) {
      progress('stackwatch parse: counting its output documents (untimed) …');
      const c = await countOutputLines([...STACKWATCH, corpus.path], { cwd: ROOT });
      if (c.exitCode !== 0) sw.error = `exit code ${c.exitCode}\n${tail(c.stderr)}`;
      else if (!isJsonObject(c.firstLine)) sw.error = `its output is not NDJSON: ${c.firstLine.slice(0, 300)}`;
      else {
        sw.out = c.lines;
        const unusable = /(\d+) unusable line/.exec(c.stderr)?.[1];
        sw.outNote = `${c.lines.toLocaleString('en-US')} NDJSON documents (events after multi-line folding)${unusable ? `, ${unusable} unusable lines` : ''}`;
      }
    }

    // lognormalizer: corpus on stdin, JSON to /dev/null; -H prints the record counts on stderr at no cost.
    await measure(ln, runs, [...LOGNORMALIZER, '-H'], corpus, true);
    const counts = /(\d+) records processed, (\d+) parsed, (\d+) unparsed/.exec(ln.runs[0]?.stderr ?? '');
    if (counts) {
      ln.out = Number(counts[2]);
      ln.outNote = `${Number(counts[1]).toLocaleString('en-US')} JSON records: ${Number(counts[2]).toLocaleString('en-US')} parsed headers, ${Number(counts[3]).toLocaleString('en-US')} unparsed (continuation lines)`;
    }

    // The table: best and median run of each tool.
    const rows: (string | number)[][] = [['tool', 'run', 'input MiB', 'lines', 'out', 'seconds', 'MiB/s', 'lines/s', 'out/s', 'peak RSS MiB']];
    for (const side of [sw, ln]) {
      if (side.runs.length === 0) {
        rows.push([side.tool, 'FAILED', fmt(inMiB), corpus.lines, '-', '-', '-', '-', '-', '-']);
        continue;
      }
      const best = side.runs.reduce((a, b) => (b.seconds < a.seconds ? b : a));
      const med = { seconds: median(side.runs.map((r) => r.seconds)), maxRss: median(side.runs.map((r) => r.maxRss)) };
      for (const [label, r] of [
        ['best', best],
        [`median of ${side.runs.length}`, med],
      ] as const) {
        rows.push([
          side.tool,
          label,
          fmt(inMiB),
          corpus.lines.toLocaleString('en-US'),
          side.out?.toLocaleString('en-US') ?? '?',
          fmt(r.seconds, 2),
          fmt(inMiB / r.seconds),
          Math.round(corpus.lines / r.seconds).toLocaleString('en-US'),
          side.out ? Math.round(side.out / r.seconds).toLocaleString('en-US') : '?',
          fmt(r.maxRss / MiB),
        ]);
      }
    }

    const m = machine();
    const lines: string[] = [
      `== parse: ${this.summary}`,
      '',
      `machine: ${m.cpus} CPUs (nproc), ${m.cpuModel}, ${m.kernel}; Node ${m.node}; liblognorm-utils ${debianVersion('liblognorm-utils')}; each tool pinned to CPU 0 (taskset -c 0)`,
      `corpus:  ${relative(process.cwd(), corpus.path)}: ${fmt(inMiB)} MiB, ${corpus.lines.toLocaleString('en-US')} lines = ${corpus.rounds} × the bundled real logs (${corpus.sources.join(', ')})`,
      `stackwatch:    ${STACKWATCH.map((a) => relative(ROOT, a) || a).join(' ')} CORPUS > /dev/null`,
      `lognormalizer: ${LOGNORMALIZER.map((a) => (a.startsWith('/') ? relative(ROOT, a) : a)).join(' ')} -H < CORPUS > /dev/null`,
      '',
      table(rows),
      '',
      ...(sw.outNote ? [`out (stackwatch):    ${sw.outNote}`] : []),
      ...(ln.outNote ? [`out (lognormalizer): ${ln.outNote}`] : []),
      check,
      '',
    ];
    for (const side of [sw, ln]) if (side.error) lines.push(`${side.tool} FAILED: ${side.error}`, '');

    // Verdict, on the medians (the peak RSS on the worst run).
    if (sw.runs.length > 0) {
      const swMiBs = inMiB / median(sw.runs.map((r) => r.seconds));
      const swRss = Math.max(...sw.runs.map((r) => r.maxRss)) / MiB;
      const verdict = (ok: boolean) => (ok ? 'MET   ' : 'MISSED');
      lines.push('verdict (medians; RSS: the highest of the runs):');
      lines.push(`  ${verdict(swMiBs >= TARGET_MIB_S)} ≥ ${TARGET_MIB_S} MiB/s per core: stackwatch ${fmt(swMiBs)} MiB/s`);
      if (ln.runs.length > 0) {
        const lnMiBs = inMiB / median(ln.runs.map((r) => r.seconds));
        lines.push(`  ${verdict(swMiBs >= LIBLOGNORM_RATIO * lnMiBs)} ≥ ${LIBLOGNORM_RATIO}× rsyslog's liblognorm: ${fmt(swMiBs)} vs ${fmt(lnMiBs)} MiB/s (× ${fmt(swMiBs / lnMiBs, 2)})`);
      }
      lines.push(`  ${verdict(swRss <= TARGET_RSS_MIB)} peak RSS ≤ ${TARGET_RSS_MIB} MiB: stackwatch ${fmt(swRss)} MiB`);
      if (swMiBs < TARGET_MIB_S || swRss > TARGET_RSS_MIB) lines.push('  where the time goes: npx tsx bench/profile.ts (CPU profile of stackwatch parse on 200k lines, top functions)');
    }
    return { report: lines.join('\n'), ok: !sw.error && !ln.error };
  },
};
