// `npx tsx bench/profile.ts [LINES] [TOP]`: where `stackwatch parse` spends its time. Runs it under `node --cpu-prof`
// on the first LINES (default 200000) lines of the bench corpus and prints the TOP (default 10) functions by self
// time. `npx tsx bench/profile.ts --summarise FILE.cpuprofile [TOP]` summarises an existing profile.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join, relative } from 'node:path';
import { BENCH_DIR, buildCorpus, corpusHead, ROOT } from './corpus.ts';
import { fmt, progress } from './measure.ts';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** The top functions by self time (µs), aggregated over the profile's nodes by function and place. */
export function summariseProfile(path: string, top = 10): string {
  const p = JSON.parse(readFileSync(path, 'utf8')) as CpuProfile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  // timeDeltas[i] is the time between sample i-1 and i: attribute it to sample i's node.
  for (let i = 0; i < p.samples.length; i++) self.set(p.samples[i], (self.get(p.samples[i]) ?? 0) + (p.timeDeltas[i] ?? 0));
  const agg = new Map<string, number>();
  const byFile = new Map<string, number>();
  let total = 0;
  for (const [id, us] of self) {
    const f = byId.get(id)!.callFrame;
    const url = f.url.startsWith('file://') ? relative(ROOT, new URL(f.url).pathname) : f.url;
    // .ts files run transformed by tsx: their line numbers are those of the generated code, so none is shown.
    const where = !url ? '' : url.endsWith('.ts') ? url : `${url}:${f.lineNumber + 1}`;
    const key = `${f.functionName || '(anonymous)'}  ${where}`.trim();
    agg.set(key, (agg.get(key) ?? 0) + us);
    const file = url.endsWith('.ts') ? url : url.startsWith('node:') ? 'node: (Node internals)' : url ? url.replace(/\/[^/]*$/, '/…') : f.functionName;
    byFile.set(file, (byFile.get(file) ?? 0) + us);
    total += us;
  }
  const line = ([k, us]: [string, number], i: number) => `${String(i + 1).padStart(3)}. ${fmt((100 * us) / total).padStart(5)}%  ${fmt(us / 1e3, 0).padStart(6)} ms  ${k}`;
  return [
    `top ${top} functions by self time (of ${fmt(total / 1e3, 0)} ms sampled):`,
    ...[...agg]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(line),
    `self time by file:`,
    ...[...byFile]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(line),
  ].join('\n');
}

const args = process.argv.slice(2);
if (args[0] === '--summarise') {
  if (!args[1]?.endsWith('.cpuprofile')) throw new Error('usage: bench/profile.ts --summarise FILE.cpuprofile [TOP]');
  console.log(summariseProfile(args[1], Number(args[2] ?? 10)));
} else {
  const lines = Number(args[0] ?? 200_000);
  const top = Number(args[1] ?? 10);
  const corpus = await buildCorpus(undefined, progress);
  const head = corpusHead(corpus, lines);
  const dir = join(BENCH_DIR, 'profile');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  progress(`profiling stackwatch parse on ${lines.toLocaleString('en-US')} lines …`);
  const r = spawnSync('node', ['--cpu-prof', '--cpu-prof-dir', dir, join(ROOT, 'bin', 'stackwatch.mjs'), 'parse', '--host', 'bench', head], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  if (r.status !== 0) throw new Error(`stackwatch parse exited with ${r.status}`);
  const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
  if (!file) throw new Error(`no .cpuprofile in ${dir}`);
  console.log(`${relative(process.cwd(), join(dir, file))}\n${summariseProfile(join(dir, file), top)}`);
}
