// The offline commands meet hostile files (issue 11, "Files" and "Config"): every file error names its file, one bad
// file never costs another file's events, a closed pipe ends the command quietly, `detect` reports unusable lines
// as `parse` does, and a config file that YAML cannot expand or that is too big is a one-line config error.
// Inputs: test/fixtures/hostile/files/ (README.md there), and files made here from the real bundled logs.
import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { run, stackwatch } from './run.ts';

const BIN = new URL('../../bin/stackwatch.mjs', import.meta.url).pathname;
const DIST = new URL('../../dist/index.js', import.meta.url).pathname;
const FILES = new URL('../fixtures/hostile/files/', import.meta.url).pathname;
const SAMPLES = new URL('../../samples/hotsos-2022/', import.meta.url).pathname;
const env = { ...process.env, STACKWATCH_CONFIG: '' };
// Bounded (run.ts): a config that is wrongly accepted makes `run` connect and run on; it must fail, not hang the suite.
const cli = (...args: string[]) => stackwatch(args, { timeoutMs: 60_000 });
const dir = mkdtempSync(join(tmpdir(), 'stackwatch-hostile-'));
chmodSync(dir, 0o755); // read by an unprivileged user below

const lines = (text: string) => text.split('\n').filter(Boolean);

/** Starts the command with its output a pipe of ours: the child, its stderr so far, and its exit (code or signal). */
function startCli(args: string[]) {
  const child = spawn(process.execPath, [BIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<number | string>((resolve) => child.on('exit', (code, signal) => resolve(code ?? signal!)));
  return { child, stderr: () => stderr, exited };
}

/** Runs the command, reads its first line of output and closes the pipe, as `| head -1` does. */
async function firstLineThenClose(args: string[]): Promise<{ status: number | string; stderr: string; first: string }> {
  const { child, stderr, exited } = startCli(args);
  let first = '';
  await new Promise<void>((resolve) => {
    child.stdout.on('data', (d) => {
      first += d;
      if (first.includes('\n')) {
        child.stdout.destroy();
        resolve();
      }
    });
    child.stdout.on('end', resolve);
  });
  return { status: await exited, stderr: stderr(), first: first.split('\n')[0] };
}

describe('stackwatch parse and detect: one bad file never costs another file its events', () => {
  it("parse prints every readable file's documents, names each bad file (missing, a directory, damaged .gz) and exits 1", async () => {
    const ok = `${FILES}ok.log`;
    const missing = join(dir, 'missing.log');
    const directory = join(dir, 'a-directory');
    mkdirSync(directory);
    const gz = readFileSync(`${SAMPLES}nova-compute.log.1.gz`);
    const truncated = join(dir, 'truncated.log.gz');
    writeFileSync(truncated, gz.subarray(0, gz.length >> 1));
    const alone = await cli('parse', '--host', 'h', ok);
    expect(alone.status).toBe(0);
    const r = await cli('parse', '--host', 'h', missing, ok, directory, truncated, ok);
    expect(r.status).toBe(1);
    const docs = lines(r.stdout);
    // ok.log's documents, twice, around the truncated file's complete lines.
    const okDocs = lines(alone.stdout).map((l) => JSON.parse(l).message);
    expect(docs.slice(0, okDocs.length).map((l) => JSON.parse(l).message)).toEqual(okDocs);
    expect(docs.slice(-okDocs.length).map((l) => JSON.parse(l).message)).toEqual(okDocs);
    expect(docs.length).toBeGreaterThan(2 * okDocs.length + 1000);
    const err = lines(r.stderr);
    expect(err).toContain(`stackwatch parse: ${missing}: cannot read: no such file`);
    expect(err).toContain(`stackwatch parse: ${directory}: cannot read: is a directory`);
    expect(err.find((l) => l.startsWith(`stackwatch parse: ${truncated}: damaged gzip data: unexpected end of file at compressed byte ${gz.length >> 1}`))).toBeDefined();
    expect(err.at(-1)).toMatch(/3 of 5 file\(s\) not read to the end/);
  });

  it('a file it has no permission to read is named (EACCES), and the next file is read', async () => {
    const secret = join(dir, 'no-permission.log');
    writeFileSync(secret, readFileSync(`${FILES}ok.log`));
    chmodSync(secret, 0o000);
    let r;
    if (process.getuid?.() === 0) {
      // root reads any file: run as nobody. The bundle is built first (as root; nobody may not write dist/) and run
      // directly, so a source edited meanwhile cannot make nobody try to rebuild it.
      expect((await cli('--help')).status).toBe(0);
      const script = `const { main } = await import(${JSON.stringify(DIST)}); process.exitCode = await main(${JSON.stringify(['parse', secret, `${FILES}ok.log`])});`;
      r = await run(process.execPath, ['--input-type=module', '-e', script], { env, uid: 65534, gid: 65534, timeoutMs: 60_000 });
    } else r = await cli('parse', secret, `${FILES}ok.log`);
    expect(r.stderr).toContain(`stackwatch parse: ${secret}: cannot read: permission denied`);
    expect(lines(r.stdout).length).toBe(lines((await cli('parse', `${FILES}ok.log`)).stdout).length);
    expect(r.status).toBe(1);
  });

  it('detect runs the rules over the readable files, names the bad one and exits 1', async () => {
    const agent = `${SAMPLES}neutron-dhcp-agent.log.1`;
    const alone = await cli('detect', '--host', 'h', agent);
    expect(alone.status).toBe(0);
    const missing = join(dir, 'gone.log');
    const r = await cli('detect', '--host', 'h', missing, agent);
    expect(r.status).toBe(1);
    expect(r.stdout).toBe(alone.stdout);
    expect(r.stdout).toContain('amqp-connection-lost');
    expect(r.stderr).toContain(`stackwatch detect: ${missing}: cannot read: no such file`);
    expect(r.stderr).toMatch(/1 file\(s\) not read to the end/);
  });
});

describe('stackwatch detect reports unusable lines as parse does', () => {
  it('names the file, the byte offset and the reason of each, and counts them', async () => {
    const file = `${FILES}not-text.log`;
    const p = await cli('parse', file);
    const d = await cli('detect', file);
    expect(d.status).toBe(0);
    const reports = (stderr: string) => lines(stderr).filter((l) => l.startsWith('{'));
    expect(reports(p.stderr)).toHaveLength(2);
    expect(reports(d.stderr)).toEqual(reports(p.stderr));
    const bytes = readFileSync(file);
    for (const r of reports(d.stderr).map((l) => JSON.parse(l))) {
      expect(r.file).toBe(file);
      expect(bytes[r.offset - 1]).toBe(0x0a); // a line's first byte
      expect(r.reason).toMatch(/UTF-8|NUL/);
    }
    expect(d.stderr).toMatch(/, 2 unusable line\(s\) \(reported above\)/);
  });

  it('parse refuses an event cap that caps nothing, naming the option', async () => {
    const r = await cli('parse', '--max-event-bytes', String(2 ** 40), `${FILES}ok.log`);
    expect(r.status).toBe(2);
    expect(r.stderr).toBe('stackwatch: --max-event-bytes: expected a whole number from 1 to 16777216 (16 MiB)\n');
  });

  it('detect refuses a time zone that does not exist, naming the option', async () => {
    const r = await cli('detect', '--timezone', 'Mars/Olympus', `${FILES}ok.log`);
    expect(r.status).toBe(2);
    expect(r.stderr).toBe('stackwatch: --timezone: unknown time zone "Mars/Olympus" (expected an IANA name like UTC or Europe/Berlin)\n');
  });
});

/** Runs the command with its output a pipe closed before it starts, as `| true` leaves it: its status and stderr. */
async function intoClosedPipe(args: string[]): Promise<{ status: number | string; stderr: string }> {
  const { child, stderr, exited } = startCli(args);
  // Closed now, in the tick of the spawn: the command cannot have written before (node takes ~0.1 s to start).
  child.stdout.destroy();
  return { status: await exited, stderr: stderr() };
}

describe('a closed output pipe (| head -1) ends the command quietly', () => {
  it("--help, and every command's --help, into a closed pipe: status 0, nothing on stderr (no EPIPE stack trace)", async () => {
    const usage = (await cli('--help')).stdout;
    const commands = [...usage.matchAll(/^ {2}([a-z-]+) {2,}/gm)].map((m) => m[1]);
    expect(commands).toContain('parse');
    expect(commands.length).toBeGreaterThan(8);
    for (const args of [['--help'], ...commands.map((c) => [c, '--help'])]) {
      expect({ args, ...(await intoClosedPipe(args)) }).toEqual({ args, status: 0, stderr: '' });
    }
  });

  it('parse big.log | head -1: status 0, nothing on stderr', async () => {
    const text = gunzipSync(readFileSync(`${SAMPLES}nova-compute.log.1.gz`));
    const big = join(dir, 'big.log');
    writeFileSync(big, Buffer.concat([text, text, text])); // ~12 MB of log, ~25 MB of documents
    const r = await firstLineThenClose(['parse', big]);
    expect(JSON.parse(r.first).message).toBeDefined();
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  it('detect big.log | head -1: status 0, nothing on stderr', async () => {
    // A Ceph health check that fails and clears 20,000 times: 40,000 alert transitions, some 20 MB of output.
    const ceph = join(dir, 'ceph.log');
    const at = (i: number) => new Date(Date.UTC(2022, 1, 9) + i * 1000).toISOString().replace('T', ' ').replace('Z', '000');
    const text = Array.from({ length: 20_000 }, (_, i) => [
      `${at(2 * i)} mon.a (mon.0) ${2 * i} : cluster [WRN] Health check failed: 1 osds down (OSD_DOWN)`,
      `${at(2 * i + 1)} mon.a (mon.0) ${2 * i + 1} : cluster [INF] Health check cleared: OSD_DOWN (was: 1 osds down)`,
    ]).flat();
    writeFileSync(ceph, text.join('\n') + '\n');
    const r = await firstLineThenClose(['detect', ceph]);
    expect(JSON.parse(r.first).rule.id).toBe('ceph-health');
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });
});

describe('config files that YAML cannot expand, or that are too big, are config errors (exit 2, one line naming the file)', { timeout: 90_000 }, () => {
  it('billion laughs ("Excessive alias count")', async () => {
    const file = `${FILES}config-billion-laughs.yaml`;
    const r = await cli('run', '--config', file);
    expect(r.status).toBe(2);
    expect(r.stderr).toBe(`stackwatch: ${file}: invalid YAML: too many aliases (over 100 expansions: a "billion laughs" document?)\n`);
  });

  it('an alias whose anchor is never set, with its line', async () => {
    const file = `${FILES}config-unknown-alias.yaml`;
    const line =
      readFileSync(file, 'utf8')
        .split('\n')
        .findIndex((l) => l.trim() === 'brokers: *broker') + 1;
    const r = await cli('run', '--config', file);
    expect(r.status).toBe(2);
    expect(r.stderr).toBe(`stackwatch: ${file}:${line}: invalid YAML: Unresolved alias (the anchor must be set before the alias): broker\n`);
  });

  it('a time zone that does not exist, naming the field', async () => {
    const file = `${FILES}config-mars-timezone.yaml`;
    const r = await cli('run', '--config', file);
    expect(r.status).toBe(2);
    expect(r.stderr).toBe(`stackwatch: ${file}: processor.timezone: expected an IANA time zone like UTC or Europe/Berlin\n`);
  });

  it('a config file over 1 MiB is refused by its size', async () => {
    const file = join(dir, 'huge.yaml');
    writeFileSync(file, `kafka:\n  brokers: [${Array.from({ length: 100_000 }, () => '"127.0.0.1:9092"').join(', ')}]\nelasticsearch:\n  url: http://127.0.0.1:9200\n`);
    const r = await cli('run', '--config', file);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(new RegExp(`^stackwatch: ${file}: the config file is \\d+ bytes; the limit is 1048576 bytes \\(1 MiB\\)\\n$`));
  });
});
