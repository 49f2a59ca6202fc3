// `npm run bench [-- [NAME...] [--runs N] [--lines N]]`: the benchmarks, one after another; progress on stderr,
// the reports (tables, machine, verdicts) on stdout. Not a test: it measures and reports. Exit code 1 only when a
// tool could not be run. A new benchmark is one module exporting a `Benchmark`, added to BENCHMARKS.
import { parseArgs } from 'node:util';
import { type Benchmark, progress } from './measure.ts';
import { alertLatencyBench } from './alert-latency.ts';
import { detectBench } from './detect.ts';
import { parseBench } from './parse.ts';
import { peerBench } from './peer.ts';
import { stateBench } from './state.ts';
import { templatesBench } from './templates.ts';
import { throughputBench } from './throughput.ts';
import { zabbixPollBench } from './zabbix-poll.ts';

const BENCHMARKS: Benchmark[] = [parseBench, detectBench, templatesBench, alertLatencyBench, zabbixPollBench, stateBench, throughputBench, peerBench];

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    runs: { type: 'string', default: '3' },
    lines: { type: 'string', default: '1000000' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (values.help) {
  console.log(
    [
      'Usage: npm run bench -- [NAME...] [--runs N] [--lines N]',
      '  --runs N    timed runs of each tool (default 3: the table shows the best and the median)',
      '  --lines N   corpus lines, at least (default 1000000)',
      'Benchmarks:',
      ...BENCHMARKS.map((b) => `  ${b.name.padEnd(10)} ${b.summary}`),
    ].join('\n'),
  );
  process.exit(0);
}
const runs = Number(values.runs);
const minLines = Number(values.lines);
if (!Number.isInteger(runs) || runs < 1 || !Number.isInteger(minLines) || minLines < 1) {
  console.error('bench: --runs and --lines take a positive whole number');
  process.exit(2);
}
const unknown = positionals.filter((n) => !BENCHMARKS.some((b) => b.name === n));
if (unknown.length > 0) {
  console.error(`bench: unknown benchmark ${unknown.join(', ')} (have: ${BENCHMARKS.map((b) => b.name).join(', ')})`);
  process.exit(2);
}

let ok = true;
const started = Date.now();
for (const b of BENCHMARKS.filter((x) => positionals.length === 0 || positionals.includes(x.name))) {
  progress(`== ${b.name}: ${b.summary}`);
  try {
    const r = await b.run({ runs, minLines });
    console.log(r.report);
    ok &&= r.ok;
  } catch (err) {
    console.log(`== ${b.name}: FAILED: ${(err as Error).message}`);
    ok = false;
  }
}
progress(`done in ${Math.round((Date.now() - started) / 1000)} s`);
process.exitCode = ok ? 0 : 1;
