// How the unit tests run a command: asynchronously, never with spawnSync. spawnSync keeps the worker's event loop for
// the child's whole life, and vitest fails the whole run, every test passed or not, when a worker does not answer it
// for a minute ("[vitest-worker]: Timeout calling onTaskUpdate"). A command of half a second alone takes that long
// beside the integration tests and the live OpenStack (the unit tests ran 35-60 times slower there at nice 10).
import { spawn, type SpawnOptions } from 'node:child_process';

/** What spawnSync returns, as far as the tests use it. */
export interface Ran {
  /** The exit code; null when a signal ended the command. */
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions extends Pick<SpawnOptions, 'cwd' | 'env' | 'uid' | 'gid'> {
  /** Ends the command with SIGKILL after this long (a command that hangs must fail its test, not the suite). */
  timeoutMs?: number;
}

/** Runs `file` with `args` to its end: its status, signal and output (UTF-8). Rejects only if it cannot start. */
export function run(file: string, args: string[], opts: RunOptions = {}): Promise<Ran> {
  const { timeoutMs = 120_000, ...spawnOpts } = opts;
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { ...spawnOpts, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout!.on('data', (d: Buffer) => out.push(d));
    child.stderr!.on('data', (d: Buffer) => err.push(d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (status, signal) => {
      clearTimeout(timer);
      resolve({ status, signal, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') });
    });
  });
}

const BIN = new URL('../../bin/stackwatch.mjs', import.meta.url).pathname;

/** `stackwatch ARGS...` (bin/stackwatch.mjs under this node), with no config file from the environment unless `env` has one. */
export function stackwatch(args: string[], opts: RunOptions = {}): Promise<Ran> {
  return run(process.execPath, [BIN, ...args], { ...opts, env: opts.env ?? { ...process.env, STACKWATCH_CONFIG: '' } });
}
