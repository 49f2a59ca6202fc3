// The command line as an operator meets it: help on every command, one-line config errors with exit code 2.
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { stackwatchNodeArgs, stackwatchNodeEnv } from '../../bench/measure.ts';
import { run as runCommand, stackwatch } from './run.ts';

const BIN = new URL('../../bin/stackwatch.mjs', import.meta.url).pathname;
const cli = (...args: string[]) => stackwatch(args);

describe('stackwatch CLI', () => {
  it('lists its commands in --help', async () => {
    const r = await cli('--help');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^Usage: stackwatch <command>/);
    expect(r.stdout).toMatch(/^ {2}run +run the pipeline/m);
    expect(r.stdout).toMatch(/^ {2}demo +replay bundled real OpenStack logs/m);
  });

  it("runs as an executable with its bounded heap (the first line's node options)", async () => {
    const probe = join(mkdtempSync(join(tmpdir(), 'stackwatch-cli-')), 'heap.cjs');
    writeFileSync(probe, "process.stderr.write(`heap limit ${require('v8').getHeapStatistics().heap_size_limit / 1048576}\\n`);\n");
    const r = await runCommand(BIN, ['--help'], { env: { ...process.env, NODE_OPTIONS: `--require ${probe}` } });
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^Usage: stackwatch <command>/);
    const limit = Number(/heap limit (\d+)/.exec(r.stderr)?.[1]);
    expect(limit).toBeGreaterThanOrEqual(512); // --max-old-space-size=512, plus the young generation
    expect(limit).toBeLessThan(1024); // not the default (a quarter of the machine's memory)
  });

  it('stackwatch-collector is `run --role collector` with its memory options (the first line), and refuses --role', async () => {
    const collector = new URL('../../bin/stackwatch-collector.mjs', import.meta.url).pathname;
    const probe = join(mkdtempSync(join(tmpdir(), 'stackwatch-cli-')), 'options.cjs');
    writeFileSync(probe, 'process.stderr.write(`options ${JSON.stringify({ execArgv: process.execArgv, gc: typeof globalThis.gc, arenas: process.env.MALLOC_ARENA_MAX })}\\n`);\n');
    const r = await runCommand(collector, ['--help'], { env: { ...process.env, NODE_OPTIONS: `--require ${probe}` } });
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^stackwatch-collector \[--config FILE\]: stackwatch run --role collector/);
    expect(r.stdout).toMatch(/^Usage: stackwatch run /m);
    const seen = JSON.parse(/options (.*)/.exec(r.stderr)![1]) as { execArgv: string[]; gc: string; arenas?: string };
    expect(seen.execArgv).toEqual(expect.arrayContaining(['--max-old-space-size=512', '--max-semi-space-size=1', '--expose-gc']));
    expect(seen.gc).toBe('function');
    // glibc's one malloc arena, set by the first line's environment (and given by the benchmarks' and tests' reader).
    expect(seen.arenas).toBe('1');
    expect(stackwatchNodeEnv(collector)).toEqual({ MALLOC_ARENA_MAX: '1' });
    expect(stackwatchNodeArgs(collector)).toEqual(['--max-old-space-size=512', '--max-semi-space-size=1', '--expose-gc']);
    const refused = await runCommand(collector, ['--role', 'processor']);
    expect(refused.status).toBe(2);
    expect(refused.stderr).toMatch(/^stackwatch-collector: --role is not an option here/);
  });

  it.each(['run', 'parse', 'replay', 'detect', 'rules', 'demo'])('has --help for %s', async (command) => {
    const r = await cli(command, '--help');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^Usage: stackwatch ${command}`));
  });

  it('rejects an unknown command and an unknown option', async () => {
    const r = await cli('frobnicate');
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/^stackwatch: unknown command "frobnicate"/);
    const o = await cli('run', '--rol', 'x');
    expect(o.status).toBe(2);
    expect(o.stderr.trim().split('\n')).toHaveLength(1);
    expect(o.stderr).toMatch(/--rol/);
  });

  it('exits 2 with one line naming the file and the field for an invalid config', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'stackwatch-cli-'));
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, 'kafka:\n  brokers: localhost\nelasticsearch:\n  url: http://127.0.0.1:9200\n');
    const r = await cli('run', '--config', file);
    expect(r.status).toBe(2);
    expect(r.stderr).toBe(`stackwatch: ${file}: kafka.brokers: expected an array of host:port\n`);
  });

  it('exits 2 naming the missing default config file', async () => {
    const r = await cli('run', '--config', '/nonexistent/stackwatch.yaml');
    expect(r.status).toBe(2);
    expect(r.stderr).toBe('stackwatch: /nonexistent/stackwatch.yaml: cannot read config: no such file (pass --config FILE or set STACKWATCH_CONFIG)\n');
  });

  it('rejects a bad --role naming the option', async () => {
    const r = await cli('run', '--role', 'everything', '--config', '/dev/null');
    expect(r.status).toBe(2);
    expect(r.stderr).toBe('stackwatch: --role: expected one of all, collector, processor, got "everything"\n');
  });
});

describe('stackwatch parse', () => {
  it('prints one ECS document per event of a gzip file, tracebacks folded', async () => {
    const sample = new URL('../../samples/hotsos-2022/nova-compute.log.1.gz', import.meta.url).pathname;
    const r = await cli('parse', '--host', 'compute-9', sample);
    expect(r.status).toBe(0);
    const docs = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    const lines = gunzipSync(readFileSync(sample)).toString('utf8').split('\n');
    const starts = lines.filter((l) => /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3} \d+ [A-Z]+ \S+ \[/.test(l));
    expect(docs).toHaveLength(starts.length);
    expect(docs[0]).toMatchObject({ '@timestamp': '2022-02-04T09:37:50.031Z', host: { name: 'compute-9' }, service: { name: 'nova-compute' }, log: { level: 'INFO', logger: 'os_vif' } });
    const traced = docs.filter((d) => d.error?.stack_trace?.startsWith('Traceback (most recent call last):'));
    expect(traced.length).toBeGreaterThan(50);
    expect(traced[0].error.stack_trace).not.toMatch(/^\d{4}-\d{2}-\d{2} /m); // exception prefixes taken off
  });

  it('reports lines that are not text on stderr and keeps going', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'stackwatch-parse-'));
    const file = join(dir, 'nova-api.log');
    writeFileSync(
      file,
      Buffer.concat([Buffer.from('2022-02-04 09:37:50.031 1 INFO nova.api [-] one\n'), Buffer.from([0xff, 0xfe, 0x0a]), Buffer.from('2022-02-04 09:37:51.031 1 INFO nova.api [-] two\n')]),
    );
    const r = await cli('parse', file);
    expect(r.status).toBe(0);
    expect(
      r.stdout
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l).message),
    ).toEqual(['one', 'two']);
    expect(r.stderr).toContain('"reason":"invalid UTF-8 in line"');
  });
});

describe('stackwatch detect and rules test', () => {
  it('finds the 2022 AMQP outage (one alert per service) and the missing compute host in the bundled sosreport logs', async () => {
    const dir = new URL('../../samples/hotsos-2022/', import.meta.url).pathname;
    const files = ['nova-compute.log.1.gz', 'neutron-dhcp-agent.log.1', 'neutron-l3-agent.log.1', 'neutron-metadata-agent.log.1'].map((f) => dir + f);
    const r = await cli('detect', '--host', 'compute4', ...files);
    expect(r.status).toBe(0);
    const alerts = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    // (The new error templates of the outages fire too: test/unit/templates*.test.ts.)
    const firing = new Set(alerts.filter((a) => a.alert.status === 'firing' && !a.alert.group.kind && a.rule.id !== 'new-error-pattern').map((a) => `${a.rule.id} ${a.service.name}`));
    expect([...firing].sort()).toEqual([
      'amqp-connection-lost neutron-dhcp-agent',
      'amqp-connection-lost neutron-l3-agent',
      'amqp-connection-lost neutron-metadata-agent',
      'amqp-connection-lost nova-compute',
    ]);
    expect(alerts.some((a) => a.rule.id === 'compute-host-drift' && a.alert.group.compute_host === 'compute4.mylab.home')).toBe(true);
    expect(r.stderr).toMatch(new RegExp(`19950 events from 4 file\\(s\\), ${alerts.length} alert transition\\(s\\)`));
  });

  it("runs the rules' own tests and fails on a broken expectation", async () => {
    const ok = await cli('rules', 'test');
    expect(ok.status).toBe(0);
    expect(ok.stdout).toMatch(/^PASS {2}amqp-connection-lost: /m);
    expect(ok.stdout).toMatch(/^\d+ passed, 0 failed$/m);
    const dir = mkdtempSync(join(tmpdir(), 'stackwatch-rules-'));
    const rules = new URL('../../rules/', import.meta.url).pathname;
    for (const f of ['ceph-health.yaml', 'ceph-health.test.yaml']) {
      writeFileSync(join(dir, f), readFileSync(rules + f, 'utf8').replace('severity: critical, group: { code: OSD_FULL }', 'severity: warning, group: { code: OSD_FULL }'));
    }
    const bad = await cli('rules', 'test', '--rules-dir', dir);
    expect(bad.status).toBe(1);
    expect(bad.stdout).toContain('alert 1: severity is "critical", expected "warning"');
  });
});

describe('bin/stackwatch.mjs where esbuild is not installed (npm ci --omit=dev, npm prune --omit=dev)', () => {
  // A copy of the launcher and the build script beside a one-module bundle, out of reach of this checkout's
  // node_modules: nothing can build there.
  const root = mkdtempSync(join(tmpdir(), 'stackwatch-no-build-'));
  for (const f of ['bin/stackwatch.mjs', 'bin/launch.mjs', 'scripts/build.mjs']) {
    mkdirSync(join(root, f, '..'), { recursive: true });
    copyFileSync(new URL(`../../${f}`, import.meta.url), join(root, f));
  }
  const source = join(root, 'cli', 'index.ts');
  const bundle = (builtAt: number) => {
    mkdirSync(join(root, 'cli'), { recursive: true });
    writeFileSync(source, '');
    utimesSync(source, new Date(builtAt - 60_000), new Date(builtAt - 60_000));
    mkdirSync(join(root, 'dist'), { recursive: true });
    writeFileSync(join(root, 'dist', 'index.js'), "export async function main(args) { process.stdout.write(`bundle ran ${args.join(' ')}\\n`); return 0; }\n");
    writeFileSync(join(root, 'dist', 'inputs.json'), JSON.stringify({ startedAt: builtAt, inputs: ['cli/index.ts'] }));
  };
  const run = () => runCommand(process.execPath, [join(root, 'bin', 'stackwatch.mjs'), 'x']);
  const error = 'stackwatch: dist/ is missing or older than the sources, and esbuild (a development dependency) is not installed: run `npm run build`';

  it('runs an up-to-date bundle', async () => {
    bundle(Date.now());
    const r = await run();
    expect(r.stdout).toBe('bundle ran x\n');
    expect(r.status).toBe(0);
  });

  it('refuses a bundle older than a source, in one line', async () => {
    bundle(Date.now());
    utimesSync(source, new Date(), new Date(Date.now() + 1000));
    const r = await run();
    expect(r.stdout).toBe('');
    expect(r.stderr.split('\n')).toHaveLength(2); // one line and its newline
    expect(r.stderr).toContain(error);
    expect(r.status).toBe(1);
  });

  it('refuses a missing bundle, in one line', async () => {
    rmSync(join(root, 'dist'), { recursive: true, force: true });
    const r = await run();
    expect(r.stderr).toContain(error);
    expect(r.status).toBe(1);
  });
});
