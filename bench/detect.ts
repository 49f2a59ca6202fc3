// Benchmark `detect`: the detection stage in this process, without the stack.
//   - throughput: the corpus' lines parsed (parseLogEvent) and run through every shipped rule: events/s, and the
//     time detection adds per event on top of parsing;
//   - hostile lines: each case of test/fixtures/hostile/rules/ (a line built against one shipped rule: repeated
//     prefixes, long runs, near misses) at 1 MiB through parsing and every shipped rule, the worst time per rule,
//     on the fast path (proved regexes on irregexp, as shipped) and with every regex on the linear engines (as an
//     unproved user regex runs). Target (issue 11): ≤ 1 s for any such line through every shipped rule.
import { readFileSync } from 'node:fs';
import { DetectionEngine } from '../detectors/engine.ts';
import { loadRules } from '../detectors/rules.ts';
import { parseLogEvent } from '../processors/parse-log.ts';
import { buildCorpus } from './corpus.ts';
import { hostileCases, runHostile } from './hostile-rules.ts';
import { fmt, machine, median, progress, table, type Benchmark } from './measure.ts';

export const TARGET_HOSTILE_MS = 1000;
const HOSTILE_BYTES = 1 << 20;
/** Lines of the throughput run, at most (the whole corpus would take minutes in one process). */
const MAX_LINES = 300_000;

async function throughput(lines: string[], runs: number): Promise<{ parseS: number[]; detectS: number[] }> {
  const rules = loadRules();
  const parseS: number[] = [];
  const detectS: number[] = [];
  for (let run = 1; run <= runs; run++) {
    const engine = await DetectionEngine.create(rules);
    let offset = 0;
    const docs = [];
    let start = performance.now();
    for (const text of lines) {
      docs.push({
        kind: 'log' as const,
        doc: parseLogEvent({ v: 1, host: 'bench', path: '/var/log/nova/nova-compute.log', file_id: 'bench', offset, text, read_at: '2026-11-25T10:00:00.000Z' }, { timezone: 'UTC' }),
      });
      offset += text.length + 1;
    }
    parseS.push((performance.now() - start) / 1000);
    start = performance.now();
    let alerts = 0;
    for (const e of docs) alerts += engine.on(e).length;
    detectS.push((performance.now() - start) / 1000);
    progress(`detect: run ${run}/${runs}: parse ${fmt(parseS.at(-1)!, 2)} s, detect ${fmt(detectS.at(-1)!, 2)} s, ${alerts} alert transitions`);
  }
  return { parseS, detectS };
}

async function hostile(fastPath: boolean): Promise<Map<string, { ms: number; parseMs: number; name: string }>> {
  const rules = loadRules();
  const worst = new Map<string, { ms: number; parseMs: number; name: string }>();
  for (const c of hostileCases()) {
    let best = Infinity;
    let parseMs = 0;
    for (let i = 0; i < 3; i++) {
      const r = runHostile(await DetectionEngine.create(rules, { fastPath }), c, HOSTILE_BYTES);
      if (r.ms < best) [best, parseMs] = [r.ms, r.parseMs];
    }
    progress(`detect: hostile ${c.name} (${fastPath ? 'fast path' : 'linear engines'}): ${fmt(best)} ms`);
    if (best > (worst.get(c.rule)?.ms ?? -1)) worst.set(c.rule, { ms: best, parseMs, name: c.name });
  }
  return worst;
}

export const detectBench: Benchmark = {
  name: 'detect',
  summary: 'parse + every shipped rule in-process: events/s on the corpus; 1 MiB hostile lines, worst per rule (≤ 1 s)',
  async run({ runs, minLines }) {
    const corpus = await buildCorpus(Math.min(minLines, MAX_LINES), progress);
    const lines = readFileSync(corpus.path, 'utf8').split('\n').slice(0, Math.min(minLines, MAX_LINES));
    if (lines.at(-1) === '') lines.pop();
    const { parseS, detectS } = await throughput(lines, runs);
    const fast = await hostile(true);
    const linear = await hostile(false);
    const m = machine();
    const worstOf = (w: Map<string, { ms: number }>) => Math.max(...[...w.values()].map((x) => x.ms));
    const ok = worstOf(fast) <= TARGET_HOSTILE_MS;
    const report = [
      `== detect: ${lines.length.toLocaleString('en-US')} corpus lines, ${runs} run(s); ${m.cpuModel}, ${m.cpus} CPU(s), Node ${m.node}`,
      table([
        ['stage', 'best s', 'median s', 'events/s (best)', 'µs/event (best)'],
        ['parse', fmt(Math.min(...parseS), 2), fmt(median(parseS), 2), fmt(lines.length / Math.min(...parseS), 0), fmt((1e6 * Math.min(...parseS)) / lines.length, 2)],
        [
          'detect (every shipped rule)',
          fmt(Math.min(...detectS), 2),
          fmt(median(detectS), 2),
          fmt(lines.length / Math.min(...detectS), 0),
          fmt((1e6 * Math.min(...detectS)) / lines.length, 2),
        ],
      ]),
      '',
      `hostile 1 MiB lines (test/fixtures/hostile/rules/), parse + every shipped rule, the worst case of each rule (best of 3):`,
      table([
        ['rule', 'as shipped: worst case', 'ms', 'of which parse', 'linear engines: worst case', 'ms'],
        ...[...fast].map(([rule, w]) => [rule, w.name, fmt(w.ms), fmt(w.parseMs), linear.get(rule)?.name ?? '', fmt(linear.get(rule)?.ms ?? NaN)]),
      ]),
      `verdict: worst ${fmt(worstOf(fast))} ms as shipped (target ≤ ${TARGET_HOSTILE_MS} ms): ${ok ? 'met' : 'NOT met'}; ${fmt(worstOf(linear))} ms with every regex on the linear engines`,
    ].join('\n');
    return { report, ok: true };
  },
};
