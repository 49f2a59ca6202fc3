// What every benchmark shares: timed child processes pinned to one core (wall time by the clock, peak RSS by GNU
// time), Debian tools installed on first use, the machine's description, and the table.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { createServer } from 'node:net';
import { join } from 'node:path';

export const MiB = 2 ** 20;
const GNU_TIME = '/usr/bin/time';

export function progress(s: string): void {
  process.stderr.write(`bench: ${s}\n`);
}

function have(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

/**
 * Makes sure `command` exists, installing Debian package `pkg` if it does not (apt-get install, and apt-get update
 * first only when the install fails for want of a package list). Throws with what to do when it cannot.
 */
export function ensureDebianTool(command: string, pkg: string): void {
  if (command.startsWith('/') ? existsSync(command) : have(command)) return;
  aptInstall([pkg], command);
}

/**
 * Installs Debian packages `pkgs` (for `why`, said in the progress line) with apt-get, as root or through `sudo -n`;
 * apt-get update only when the install fails for want of a package list. Another apt-get holding the dpkg lock is
 * waited for (5 minutes) instead of failing. `noServices`: the packages' daemons must not be started by their
 * maintainer scripts (rsyslog's would take over the machine's logging): a /usr/sbin/policy-rc.d that exits 101
 * ("action forbidden") is put in place for the install, when there is none, and removed after it, whatever happened.
 */
export function aptInstall(pkgs: string[], why: string, opts: { noServices?: boolean } = {}): void {
  const root = process.getuid?.() === 0;
  const sudo = root ? [] : have('sudo') ? ['sudo', '-n'] : null;
  if (!sudo || !have('apt-get')) throw new Error(`${why} is missing: install the Debian package(s) ${pkgs.join(' ')} (apt-get install ${pkgs.join(' ')})`);
  const as = (argv: string[], input?: string) =>
    spawnSync(sudo[0] ?? argv[0], [...sudo.slice(1), ...(sudo.length ? argv : argv.slice(1))], {
      input,
      stdio: [input === undefined ? 'ignore' : 'pipe', 'ignore', 'inherit'],
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    }).status === 0;
  const apt = (...args: string[]) => as(['apt-get', '-o', 'DPkg::Lock::Timeout=300', ...args]);
  let policy = false;
  if (opts.noServices && !existsSync(POLICY_RC_D)) {
    if (!as(['sh', '-c', `cat > ${POLICY_RC_D} && chmod 755 ${POLICY_RC_D}`], '#!/bin/sh\n# stackwatch bench: no daemon started by apt-get\nexit 101\n'))
      throw new Error(`could not write ${POLICY_RC_D} (to install ${pkgs.join(' ')} without starting their daemons)`);
    policy = true;
  }
  try {
    progress(`installing ${pkgs.join(' ')} (for ${why})`);
    if (!apt('install', '-y', '-q', ...pkgs)) {
      progress('apt-get update');
      if (!apt('update', '-q') || !apt('install', '-y', '-q', ...pkgs)) throw new Error(`could not install ${pkgs.join(' ')}: run apt-get install ${pkgs.join(' ')}`);
    }
  } finally {
    if (policy) as(['rm', '-f', POLICY_RC_D]);
  }
}
const POLICY_RC_D = '/usr/sbin/policy-rc.d';

export interface Run {
  seconds: number;
  /** Peak resident set size of the measured process, bytes. */
  maxRss: number;
  userSeconds: number;
  sysSeconds: number;
  exitCode: number;
  stderr: string;
}

export interface TimedCommand {
  argv: string[];
  /** File read as standard input (default: none). */
  stdinFile?: string;
  cwd?: string;
  /** CPU the command is pinned to (default 0); null: not pinned. */
  cpu?: number | null;
}

/**
 * Runs a command with stdout to /dev/null, pinned to one CPU by taskset, under GNU time (peak RSS, CPU time);
 * wall time is taken by our own monotonic clock around it.
 */
export async function timed(cmd: TimedCommand): Promise<Run> {
  const dir = mkdtempSync(join(tmpdir(), 'stackwatch-bench-'));
  const timeFile = join(dir, 'time');
  const cpu = cmd.cpu === undefined ? 0 : cmd.cpu;
  const argv = [GNU_TIME, '-o', timeFile, '-f', '%e %M %U %S', ...(cpu === null ? [] : ['taskset', '-c', String(cpu)]), ...cmd.argv];
  const stdin = cmd.stdinFile ? openSync(cmd.stdinFile, 'r') : 'ignore';
  const devnull = openSync('/dev/null', 'w');
  try {
    const start = process.hrtime.bigint();
    const child = spawn(argv[0], argv.slice(1), { cwd: cmd.cwd, stdio: [stdin, devnull, 'pipe'] });
    let stderr = '';
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (s: string) => {
      if (stderr.length < 1 << 20) stderr += s;
    });
    const exitCode = await new Promise<number>((resolve, reject) => {
      child.on('error', reject);
      child.on('close', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
    });
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    // GNU time writes "Command exited with non-zero status N" before the format line when the command failed.
    const last = readFileSync(timeFile, 'utf8').trim().split('\n').pop() ?? '';
    const [, maxRssKiB, user, sys] = last.split(' ').map(Number);
    return { seconds, maxRss: maxRssKiB * 1024, userSeconds: user, sysSeconds: sys, exitCode, stderr };
  } finally {
    if (typeof stdin === 'number') closeSync(stdin);
    closeSync(devnull);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Runs a command (not timed) and counts the lines of its standard output; keeps the first line. */
export async function countOutputLines(argv: string[], opts: { stdinFile?: string; cwd?: string } = {}) {
  const stdin = opts.stdinFile ? openSync(opts.stdinFile, 'r') : 'ignore';
  try {
    const child = spawn(argv[0], argv.slice(1), { cwd: opts.cwd, stdio: [stdin, 'pipe', 'pipe'] });
    let lines = 0;
    let first = '';
    let stderr = '';
    child.stdout!.on('data', (b: Buffer) => {
      if (first === '' || !first.includes('\n')) first += b.subarray(0, 64 * 1024).toString('utf8');
      for (let i = b.indexOf(0x0a); i >= 0; i = b.indexOf(0x0a, i + 1)) lines++;
    });
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (s: string) => {
      if (stderr.length < 1 << 20) stderr += s;
    });
    const exitCode = await new Promise<number>((resolve, reject) => {
      child.on('error', reject);
      child.on('close', (code) => resolve(code ?? 1));
    });
    return { lines, firstLine: first.split('\n')[0], exitCode, stderr };
  } finally {
    if (typeof stdin === 'number') closeSync(stdin);
  }
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export interface Machine {
  cpus: number;
  cpuModel: string;
  node: string;
  kernel: string;
}

export function machine(): Machine {
  let cpuModel = 'unknown';
  try {
    cpuModel = /^model name\s*:\s*(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? cpuModel;
  } catch {
    /* not Linux */
  }
  let cpus = availableParallelism();
  try {
    cpus = Number(execFileSync('nproc', { encoding: 'utf8' }).trim());
  } catch {
    /* keep Node's count */
  }
  let kernel = '';
  try {
    kernel = execFileSync('uname', ['-sr'], { encoding: 'utf8' }).trim();
  } catch {
    /* no uname */
  }
  return { cpus, cpuModel, node: process.version, kernel };
}

export function debianVersion(pkg: string): string {
  try {
    return execFileSync('dpkg-query', ['-W', '-f', '${Version}', pkg], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return 'unknown';
  }
}

/** A plain-text table: the first row is the header; numbers are right-aligned. */
export function table(rows: (string | number)[][]): string {
  const cells = rows.map((r) => r.map(String));
  const widths = cells[0].map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: string[], i: number) =>
    r
      .map((c, j) => (i > 0 && j > 0 && /^[\d.,]+( \w+)?$/.test(c) ? c.padStart(widths[j]) : c.padEnd(widths[j])))
      .join('  ')
      .trimEnd();
  return [line(cells[0], 0), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.slice(1).map((r, i) => line(r, i + 1))].join('\n');
}

export function fmt(n: number, digits = 1): string {
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

export interface BenchOptions {
  /** Timed runs of each tool. */
  runs: number;
  /** Lines of the corpus, at least. */
  minLines: number;
}

/** One benchmark of `npm run bench`: prints its progress on stderr and returns its report (table and verdict). */
export interface Benchmark {
  name: string;
  summary: string;
  /** `ok`: every tool ran (the verdict against the targets is in the report; missing one is not a failure). */
  run(opts: BenchOptions): Promise<{ report: string; ok: boolean }>;
}

/** A process's resident memory now and at its peak (VmRSS, VmHWM of /proc/<pid>/status), in bytes; undefined once it is gone. */
export function procStatus(pid: number): { rss: number; hwm: number } | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? 0) * 1024;
    return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
  } catch {
    return undefined;
  }
}

/** The first line of an entry point (`#!/usr/bin/env -S [NAME=VALUE …] node [options]`), read once per entry point
 * (every spawned process asks): the environment it sets before node and node's options. */
function entryLine(bin: string): { env: Record<string, string>; args: string[] } {
  let line = entryLines.get(bin);
  if (!line) {
    const words = readFileSync(bin, 'utf8')
      .split('\n', 1)[0]
      .replace(/^#!\S*\s*/, '')
      .split(/\s+/)
      .filter(Boolean);
    const at = words.indexOf('node');
    const env: Record<string, string> = {};
    for (const w of words.slice(0, Math.max(0, at))) {
      const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(w);
      if (m) env[m[1]] = m[2];
    }
    line = { env, args: words.slice(at + 1) };
    entryLines.set(bin, line);
  }
  return line;
}
const entryLines = new Map<string, { env: Record<string, string>; args: string[] }>();

const STACKWATCH_BIN = new URL('../bin/stackwatch.mjs', import.meta.url).pathname;

/** The node options on the first line of bin/stackwatch.mjs (`#!/usr/bin/env -S node --max-old-space-size=…`), or
 * of another entry point (`bin`, a path): what `stackwatch` runs with, for whoever starts it as `node [options]
 * bin/stackwatch.mjs` (benchmarks, tests). */
export function stackwatchNodeArgs(bin = STACKWATCH_BIN): string[] {
  return entryLine(bin).args;
}

/** The environment the first line of an entry point sets before node (stackwatch-collector's MALLOC_ARENA_MAX), for
 * whoever starts it as `node [options] bin/…`. */
export function stackwatchNodeEnv(bin = STACKWATCH_BIN): Record<string, string> {
  return entryLine(bin).env;
}

/** A TCP port free on loopback now (for a status server or a proxy a benchmark or test starts), chosen below
 * Linux's ephemeral range (32768-60999): a port from that range, what listen(0) gives, can be taken before the
 * process told to listen there starts, by the local end of any outgoing connection (a Kafka client's, say). */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = 30_000 + Math.floor(Math.random() * 2700);
    const srv = createServer();
    const free = await new Promise<boolean>((resolve) => {
      srv.once('error', () => resolve(false));
      srv.listen(port, '127.0.0.1', () => resolve(true));
    });
    if (free) {
      await new Promise<void>((r) => srv.close(() => r()));
      return port;
    }
  }
  throw new Error('no free port in 30000-32699 on 127.0.0.1');
}
