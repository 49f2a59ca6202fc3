// The real AMQP failure generator for integration tests: real oslo.messaging RPC servers and clients
// (scripts/amqp-harness/harness.py on Debian's python3) against a real RabbitMQ node of the tests' own
// (`scripts/stack.sh start rabbitmq`: 127.0.0.1:29672, node stackwatch@localhost, never the host's node on 5672, which
// the live OpenStack uses), and real outages of it.
//
//   ensureHarnessInstalled()                 apt-installs python3-oslo.messaging + python3-oslo.log once
//   startHarness({ mode, service, logFile, topic, ... })   one harness process; stop() ends it (SIGTERM)
//   rabbitOutage(seconds, 'stop_app' | 'close_connections')  the node down for a while, ALWAYS restored
//   ensureRabbitRunning()                    start_app, or start the node (scripts/stack.sh), and wait for its port
//   blackholeProxy()                         a TCP proxy whose existing connections can be made silently dead
//   waitForLine(file, regex, timeoutMs)      poll a log file for a line
//   acquireRabbitLock() / releaseRabbitLock() one test run at a time faults the node
//
// The node is restored after rabbitOutage() by a `finally`, by a process 'exit' hook, and by a detached watchdog
// that runs `rabbitmqctl start_app` if this process dies (even by SIGKILL) while it is down. Harness
// processes are killed by stop(), by the 'exit' hook, and stop by themselves when their parent dies.
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { inject } from 'vitest';

const execFileAsync = promisify(execFile);

export const HARNESS_DIR = new URL('../../scripts/amqp-harness/', import.meta.url).pathname;
const STACK_SH = new URL('../../scripts/stack.sh', import.meta.url).pathname;
/** Debian's python: the only one that sees Debian's python3-oslo.* packages (a pyenv python3 may come first on PATH). */
export const PYTHON = '/usr/bin/python3';

/** The tests' RabbitMQ node, as `scripts/stack.sh env` gives it (the integration projects' global setup). */
export interface RabbitNode {
  url: string;
  host: string;
  port: number;
  /** rabbitmqctl and its environment: the node's name and the home that holds its Erlang cookie. */
  ctl: string;
  ctlArgs: string[];
  env: NodeJS.ProcessEnv;
}

let node: RabbitNode | undefined;
export function rabbitNode(): RabbitNode {
  if (node) return node;
  const s = inject('stack');
  const url = s.STACKWATCH_RABBITMQ_URL;
  if (!url) throw new Error('STACKWATCH_RABBITMQ_URL is not set: scripts/stack.sh env gives it (an older .stack?)');
  const u = new URL(url);
  node = {
    url,
    host: u.hostname,
    port: Number(u.port),
    ctl: s.STACKWATCH_RABBITMQ_CTL,
    ctlArgs: ['-n', s.STACKWATCH_RABBITMQ_NODE],
    env: { ...process.env, HOME: s.STACKWATCH_RABBITMQ_HOME },
  };
  return node;
}

// ---------------------------------------------------------------------------------------------------- install

let installed = false;

/** Installs the real client library once per test process (no-op when Debian's python3 already imports it). */
export function ensureHarnessInstalled(): void {
  if (installed) return;
  execFileSync(`${HARNESS_DIR}install.sh`, [], { stdio: ['ignore', 'inherit', 'inherit'], timeout: 600_000 });
  installed = true;
}

// ---------------------------------------------------------------------------------------------------- harness

export interface HarnessOptions {
  mode: 'server' | 'client';
  /** The service the logger shows, e.g. nova-compute (server), nova-api (client). */
  service: string;
  logFile: string;
  topic: string;
  transportUrl?: string;
  /** [oslo_messaging_rabbit] heartbeat_timeout_threshold; 0 disables heartbeats. Default 60 (oslo's). */
  heartbeatTimeout?: number;
  /** client: an RPC call every S seconds, each with this timeout. */
  callInterval?: number;
  callTimeout?: number;
  /** client: start with this many calls at once, so the connection pool holds idle connections. */
  burst?: number;
  /** [oslo_messaging_rabbit] rabbit_interval_max (retry intervals grow by 1 s up to it). Default 3. */
  retryMax?: number;
  /** server: RPC target server name (nova: the host). */
  serverName?: string;
  /** server: seconds to sleep before answering. */
  replyDelay?: number;
  extraArgs?: string[];
}

export interface Harness {
  logFile: string;
  /** stdout + stderr of the python process (empty unless it crashed). */
  outFile: string;
  pid: number;
  /** Resolves when the process has exited; rejects never. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM, then SIGKILL after 15 s. Resolves once the process is gone. */
  stop(): Promise<void>;
}

const live = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const child of live) {
      try {
        child.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
    if (outageInProgress) restoreRabbitSync();
    releaseRabbitLock();
  });
}

export function harnessArgs(o: HarnessOptions): string[] {
  const args = [`${HARNESS_DIR}harness.py`, o.mode, '--service', o.service, '--log-file', o.logFile, '--topic', o.topic];
  args.push('--transport-url', o.transportUrl ?? rabbitNode().url);
  if (o.heartbeatTimeout !== undefined) args.push('--heartbeat-timeout', String(o.heartbeatTimeout));
  if (o.callInterval !== undefined) args.push('--call-interval', String(o.callInterval));
  if (o.callTimeout !== undefined) args.push('--call-timeout', String(o.callTimeout));
  if (o.burst !== undefined) args.push('--burst', String(o.burst));
  if (o.retryMax !== undefined) args.push('--retry-max', String(o.retryMax));
  if (o.serverName !== undefined) args.push('--server-name', o.serverName);
  if (o.replyDelay !== undefined) args.push('--reply-delay', String(o.replyDelay));
  return [...args, ...(o.extraArgs ?? [])];
}

/** Starts one harness process (server or client). Its log lines go to o.logFile, written by oslo.log. */
export function startHarness(o: HarnessOptions): Harness {
  installExitHook();
  const outFile = `${o.logFile}.out`;
  const out = openSync(outFile, 'a');
  const child = spawn(PYTHON, harnessArgs(o), { stdio: ['ignore', out, out] });
  closeSync(out);
  live.add(child);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => {
      live.delete(child);
      resolve({ code, signal });
    });
    child.once('error', () => {
      live.delete(child);
      resolve({ code: null, signal: null });
    });
  });
  return {
    logFile: o.logFile,
    outFile,
    pid: child.pid ?? -1,
    exited,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

// ---------------------------------------------------------------------------------------------------- RabbitMQ

export type OutageMethod = 'stop_app' | 'close_connections';

export interface OutageTimes {
  /** Epoch ms: when the outage began (stop_app invoked / first close_all_connections). */
  began: number;
  /** Epoch ms: stop_app returned (the app is down), or the first close_all_connections returned. */
  down: number;
  /** Epoch ms: start_app invoked (stop_app) / last close_all_connections returned. */
  restoring: number;
  /** Epoch ms: start_app returned and the node's AMQP port accepts connections again. */
  restored: number;
}

let outageInProgress = false;

/** `rabbitmqctl -n NODE ARGS...` as [file, ...args], for the node of the tests (its cookie: rabbitNode().env). */
function ctlArgv(args: string[]): [string, ...string[]] {
  const n = rabbitNode();
  return [n.ctl, ...n.ctlArgs, ...args];
}

function rabbitmqctl(args: string[], timeoutMs = 60_000): Promise<string> {
  const [file, ...argv] = ctlArgv(args);
  return execFileAsync(file, argv, { env: rabbitNode().env, timeout: timeoutMs }).then((r) => r.stdout);
}

/** Starts the node (not just its app) with scripts/stack.sh, which waits until it accepts connections. */
function startNodeSync(timeoutMs = 90_000): void {
  execFileSync(STACK_SH, ['start', 'rabbitmq'], { stdio: ['ignore', 'ignore', 'inherit'], timeout: timeoutMs });
}

function restoreRabbitSync(): void {
  const [file, ...argv] = ctlArgv(['start_app']);
  try {
    execFileSync(file, argv, { env: rabbitNode().env, stdio: 'ignore', timeout: 60_000 });
  } catch {
    // the node itself is down: start it
    try {
      startNodeSync();
    } catch {
      // nothing more can be done from an exit hook
    }
  }
}

/**
 * A detached shell that outlives this process: if this process dies (even SIGKILL) before the outage is over, it
 * runs `rabbitmqctl start_app`. It is killed (by its pid) once the node has been restored normally.
 */
function startRestoreWatchdog(): ChildProcess {
  const ctl = ctlArgv(['start_app'])
    .map((a) => `'${a}'`)
    .join(' ');
  const script = `while kill -0 ${process.pid} 2>/dev/null; do sleep 1; done; ${ctl} >/dev/null 2>&1`;
  const dog = spawn('/bin/sh', ['-c', script], { detached: true, stdio: 'ignore', env: rabbitNode().env });
  dog.unref();
  return dog;
}

export function tcpReachable(host = rabbitNode().host, port = rabbitNode().port, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host, port });
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(timeoutMs, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

async function waitForPort(timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await tcpReachable())) {
    if (Date.now() > deadline) throw new Error(`RabbitMQ: nothing listens on ${rabbitNode().host}:${rabbitNode().port} after ${timeoutMs} ms`);
    await sleep(100);
  }
}

/** Makes sure the node runs and accepts AMQP connections: start_app, or starts the node if it is down. */
export async function ensureRabbitRunning(timeoutMs = 90_000): Promise<void> {
  if (await tcpReachable()) return;
  try {
    await rabbitmqctl(['start_app'], timeoutMs);
  } catch {
    // "unable to perform an operation on node": the node is down, not just its app
    startNodeSync(timeoutMs);
  }
  await waitForPort(timeoutMs);
}

/**
 * A real outage of the tests' RabbitMQ node of about `seconds`:
 * - 'stop_app': `rabbitmqctl stop_app`, wait, `rabbitmqctl start_app` (connections refused meanwhile; non-durable
 *   queues, such as the reply queues, are gone afterwards);
 * - 'close_connections': `rabbitmqctl close_all_connections` every 0.5 s for `seconds` (clients are kicked off
 *   and reconnect at once; queues survive).
 * The node is always restored before this returns or throws.
 */
export async function rabbitOutage(seconds: number, how: OutageMethod = 'stop_app'): Promise<OutageTimes> {
  await ensureRabbitRunning();
  installExitHook();
  const dog = startRestoreWatchdog();
  outageInProgress = true;
  const began = Date.now();
  const t: Partial<OutageTimes> = { began };
  try {
    if (how === 'stop_app') {
      await rabbitmqctl(['stop_app']);
      t.down = Date.now();
      await sleep(Math.max(0, began + seconds * 1000 - Date.now()));
    } else {
      const until = began + seconds * 1000;
      do {
        await rabbitmqctl(['close_all_connections', 'stackwatch amqp-harness outage']);
        t.down ??= Date.now();
        await sleep(500);
      } while (Date.now() < until);
    }
  } finally {
    t.restoring = Date.now();
    await ensureRabbitRunning();
    t.restored = Date.now();
    outageInProgress = false;
    try {
      if (dog.pid) process.kill(dog.pid);
    } catch {
      // already gone
    }
  }
  return t as OutageTimes;
}

/** Names of the queues in the node's default vhost. */
export async function listQueues(): Promise<string[]> {
  const out = await rabbitmqctl(['list_queues', '-q', '--no-table-headers', 'name']);
  return out
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '');
}

/** Deletes queues by name (a test's own: its topic queues, its clients' reply queues); missing ones are fine. */
export async function deleteQueues(names: string[]): Promise<void> {
  await Promise.all(names.map((name) => rabbitmqctl(['delete_queue', '-q', name]).catch(() => {})));
}

// ---------------------------------------------------------------------------------------------------- host lock

/**
 * The tests' node has a fixed port, so it is one per host: two test runs faulting it at once (another checkout,
 * `npm test` while a single file runs) see each other's outages. Tests that fault it hold this lock: a file created exclusively, holding the
 * owner's pid; a lock whose owner is dead is taken over.
 */
export const RABBIT_LOCK = join(tmpdir(), 'stackwatch-amqp-harness.lock');
let lockHeld = false;

export async function acquireRabbitLock(timeoutMs = 140_000): Promise<void> {
  if (lockHeld) return;
  installExitHook();
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const fd = openSync(RABBIT_LOCK, 'wx');
      writeSync(fd, String(process.pid));
      closeSync(fd);
      lockHeld = true;
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    let owner: number;
    try {
      owner = Number(readFileSync(RABBIT_LOCK, 'utf8').trim());
    } catch {
      continue; // released meanwhile
    }
    const justCreated = !owner && Date.now() - statMtime(RABBIT_LOCK) < 5_000; // its pid is being written
    if (!justCreated && (!owner || !alive(owner))) {
      try {
        unlinkSync(RABBIT_LOCK); // stale: its owner is gone
      } catch {
        // someone else took it over first
      }
      continue;
    }
    if (Date.now() > deadline) throw new Error(`RabbitMQ is being faulted by another test run (pid ${owner}, lock ${RABBIT_LOCK})`);
    await sleep(500);
  }
}

export function releaseRabbitLock(): void {
  if (!lockHeld) return;
  lockHeld = false;
  try {
    if (readFileSync(RABBIT_LOCK, 'utf8').trim() === String(process.pid)) unlinkSync(RABBIT_LOCK);
  } catch {
    // already gone
  }
}

function statMtime(file: string): number {
  try {
    return statSync(file).mtimeMs;
  } catch {
    return 0;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

// ---------------------------------------------------------------------------------------------------- half-dead TCP

export interface BlackholeProxy {
  port: number;
  /** transport_url through the proxy. */
  url: string;
  /** Connections currently forwarded (not blackholed). */
  active(): number;
  /**
   * Every connection open now stops carrying bytes in both directions, without FIN or RST: both ends keep a
   * socket that looks open (the half-dead TCP connection of a dropped conntrack entry or a dead NAT). New
   * connections are forwarded as before. Returns how many connections were silenced.
   */
  blackhole(): number;
  close(): Promise<void>;
}

/** A TCP proxy to the tests' RabbitMQ node whose existing connections can be made silently dead. */
export async function blackholeProxy(target = { host: rabbitNode().host, port: rabbitNode().port }): Promise<BlackholeProxy> {
  const pairs = new Set<[Socket, Socket]>();
  const dead: Socket[] = [];
  const server = createServer((down) => {
    const up = connect(target);
    const pair: [Socket, Socket] = [down, up];
    pairs.add(pair);
    down.pipe(up);
    up.pipe(down);
    const end = () => {
      pairs.delete(pair);
      down.destroy();
      up.destroy();
    };
    down.on('error', end).on('close', end);
    up.on('error', end).on('close', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    url: `rabbit://guest:guest@127.0.0.1:${port}/`,
    active: () => pairs.size,
    blackhole() {
      let n = 0;
      for (const pair of pairs) {
        const [down, up] = pair;
        down.unpipe(up);
        up.unpipe(down);
        down.pause();
        up.pause();
        down.removeAllListeners('data');
        up.removeAllListeners('data');
        pairs.delete(pair);
        dead.push(down, up);
        n++;
      }
      return n;
    },
    async close() {
      for (const [down, up] of pairs) {
        down.destroy();
        up.destroy();
      }
      for (const s of dead) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

// ---------------------------------------------------------------------------------------------------- log files

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export function readLines(file: string): string[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l !== '');
}

/** Polls `file` until a line matches; returns that line. Throws after timeoutMs with the file's tail. */
export async function waitForLine(file: string, regex: RegExp, timeoutMs: number, everyMs = 100): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const hit = readLines(file).find((l) => regex.test(l));
    if (hit !== undefined) return hit;
    if (Date.now() > deadline) {
      const tail = readLines(file).slice(-15).join('\n');
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${regex} in ${file}; last lines:\n${tail}`);
    }
    await sleep(everyMs);
  }
}

/** The time of an oslo.log line (`2026-11-25 21:37:50.159 …`, local time, as oslo.log writes it) in epoch ms. */
export function osloLineTime(line: string): number {
  const m = /^(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d\.\d{3}) /.exec(line);
  if (!m) throw new Error(`not an oslo.log line: ${line}`);
  return new Date(`${m[1]}T${m[2]}`).getTime();
}
