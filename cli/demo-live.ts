// `stackwatch demo --live`: the seed's broken VNC console, on a real small OpenStack (scripts/openstack.sh)
// watched by one `stackwatch run`, told step by step with timestamps: nova-compute restarted with heartbeats off,
// its AMQP path silently black-holed, a user's console URL request failing, the pages arriving at the pager,
// the path restored and both alerts resolving. The cloud is put back as it was in a finally (Ctrl-C and the
// overall timeout included); the exit status is 0 only when both pages fired and resolved.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { ConfigError, validateConfig, type Config } from '../core/config.ts';
import { esClient } from '../core/elastic.ts';
import { deleteTopics } from '../core/kafka.ts';
import { startLocalStack } from '../core/local-stack.ts';
import { errorText } from '../core/log.ts';
import { Aborted, sleep } from '../core/retry.ts';
import { parseOptions } from './options.ts';

const REPO = new URL('..', import.meta.url).pathname;
const OPENSTACK = join(REPO, 'scripts', 'openstack.sh');
const BIN = join(REPO, 'bin', 'stackwatch.mjs');
/** The name the demo's stackwatch gives the cloud: host.name of its logs, the `cloud` label of the API's alerts. */
export const LIVE_HOST = 'stackwatch-demo-cloud';
/** The cloud's own log files by name (the directory also holds the script's: dbsync.log, cloud.log, …). */
const LOG_FILES = ['nova-*.log', 'keystone.log', 'glance-api.log', 'neutron-server.log', 'placement.log'];
/** scripts/openstack.sh's settings read when a service starts: none of them may leak into a restore. */
const CLOUD_SETTINGS = ['SW_OS_AMQP_HEARTBEAT', 'SW_OS_COMPUTE_HOST', 'SW_OS_COMPUTE_NODENAME', 'SW_OS_PROXY_HEADERS', 'SW_OS_RPC_TIMEOUT'];
const DEFAULT_TIMEOUT_MIN = 45;

/** The lines of `stackwatch demo --help` about --live (demo.ts shows them under its own). */
export const LIVE_HELP = `  --live          the seed's story on a real small OpenStack Zed instead of the replay: starts the local
                  stack and the cloud (scripts/openstack.sh start; the first time it installs Debian's
                  OpenStack packages, about 5 minutes, and creates the databases, about 4 more), runs one
                  stackwatch on the cloud's logs and API, restarts nova-compute with AMQP heartbeats off,
                  black-holes its AMQP path, shows a console URL request failing, the pages arriving and
                  resolving when the path is back, then puts the cloud back (proxy pass, nova-compute with its
                  default settings; also on Ctrl-C). Exit status 0 only when both pages fired and resolved.
                  Run it while no live test uses the cloud: it breaks the cloud on purpose
  --seed-timing   (with --live) also restart nova-api with rpc_response_timeout = 60 (oslo's default), so
                  the console request fails after about 64 s as in the seed (default: the cloud's 10 s)
  --timeout MIN   (with --live) give up after MIN minutes, the cloud's first install included (default ${DEFAULT_TIMEOUT_MIN})`;

export interface LiveOptions {
  keepTopic: boolean;
  seedTiming: boolean;
  timeoutMs: number;
}

/** `demo --live`'s options (--live itself already taken off by demo.ts). */
export function liveOptions(args: string[]): LiveOptions {
  const { values } = parseOptions(args, {
    'keep-topic': { type: 'boolean', default: false },
    'seed-timing': { type: 'boolean', default: false },
    timeout: { type: 'string', default: String(DEFAULT_TIMEOUT_MIN) },
  });
  const minutes = Number(values.timeout);
  if (!Number.isFinite(minutes) || minutes <= 0 || minutes > 24 * 60) throw new ConfigError(`--timeout: expected minutes between 0 and 1440, got ${JSON.stringify(values.timeout)}`);
  return { keepTopic: values['keep-topic']!, seedTiming: values['seed-timing']!, timeoutMs: Math.round(minutes * 60_000) };
}

/** `export NAME=VALUE` lines (scripts/openstack.sh env) as a record. */
export function parseExports(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^export ([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (m) env[m[1]] = m[2].replace(/^'(.*)'$/, '$1');
  }
  return env;
}

/** The configuration of the demo's `stackwatch run`: the cloud's log files read from their end (its history is
 * not this story's), the API collector every 5 s with the console probe of the canary server (a probe may wait
 * out nova's whole RPC timeout and retries), the demo's own topics and consumer group, the default indices
 * (where an operator looks), and a free port for /metrics beside any other stackwatch. */
export function liveConfig(p: { run: string; work: string; stack: Record<string, string>; cloud: Record<string, string> }): Record<string, unknown> {
  const prefix = `stackwatch.demo-live-${p.run}`;
  return {
    kafka: {
      brokers: (p.stack.STACKWATCH_KAFKA_BROKERS ?? '127.0.0.1:29092').split(','),
      topics: {
        logs: `${prefix}.logs`,
        dead_letter: `${prefix}.dead-letter`,
        notify_retry: `${prefix}.notify-retry`,
        metrics: `${prefix}.metrics`,
        health: `${prefix}.health`,
      },
      consumer_group: `stackwatch-demo-live-${p.run}`,
    },
    // The run's state checkpoints in a topic of its own, deleted with the others.
    processor: { checkpoint: { topic: `${prefix}.state` } },
    elasticsearch: { url: p.stack.STACKWATCH_ES_URL ?? 'http://127.0.0.1:29200' },
    notify: { alertmanager: { url: p.stack.STACKWATCH_ALERTMANAGER_URL ?? 'http://127.0.0.1:29094' } },
    collectors: {
      openstack_logs: {
        paths: LOG_FILES.map((f) => join(p.cloud.STACKWATCH_OS_LOG_DIR, f)),
        checkpoint_dir: join(p.work, 'checkpoints'),
        host_name: LIVE_HOST,
        poll_interval_ms: 200,
        start_at: 'end',
      },
      openstack_api: {
        auth_url: p.cloud.OS_AUTH_URL,
        username: p.cloud.OS_USERNAME,
        password: p.cloud.OS_PASSWORD,
        project_name: p.cloud.OS_PROJECT_NAME,
        ...(p.cloud.OS_REGION_NAME ? { region_name: p.cloud.OS_REGION_NAME } : {}),
        cloud_name: LIVE_HOST,
        schedule: '*/5 * * * * *',
        timeout_ms: 15_000,
        probes: { token: true, console: { server: p.cloud.STACKWATCH_OS_CANARY_NAME ?? 'stackwatch-canary', timeout_ms: 150_000 } },
      },
    },
    status_server: { listen: '127.0.0.1:0' },
  };
}

/** An alert as Alertmanager's webhook delivers it. */
export interface PagedAlert {
  status: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  startsAt: string;
  receivedAt: string;
}

/** The pages of this story: alerts the pager got whose host is the cloud's (the demo's host name or the compute
 * host) or whose cloud label is, that started after `from` (Alertmanager's startsAt is the alert's own). */
export function storyPages(items: { received_at: string; body: { alerts?: Omit<PagedAlert, 'receivedAt'>[] } }[], hosts: string[], from: number): PagedAlert[] {
  const ours = new Set(hosts);
  return items.flatMap((i) =>
    (i.body.alerts ?? []).filter((a) => (ours.has(a.labels.host) || ours.has(a.labels.cloud)) && Date.parse(a.startsAt) >= from - 5_000).map((a) => ({ ...a, receivedAt: i.received_at })),
  );
}

/** Where the story stands: each of the two pages fired (and for nova-compute, for amqp-connection-lost) and resolved. */
export function pageState(pages: PagedAlert[]): { amqpFired: boolean; amqpResolved: boolean; consoleFired: boolean; consoleResolved: boolean } {
  const amqp = (status: string) => pages.some((a) => a.labels.alertname === 'amqp-connection-lost' && a.labels.service === 'nova-compute' && a.status === status);
  const console = (status: string) => pages.some((a) => a.labels.alertname === 'console-probe-failing' && a.status === status);
  return { amqpFired: amqp('firing'), amqpResolved: amqp('resolved'), consoleFired: console('firing'), consoleResolved: console('resolved') };
}

// ------------------------------------------------------------------------------------------------ the screen

/** When the demo started (runLiveDemo sets it): the screen's `+m:ss`. */
let t0 = Date.now();
const clock = (ms = Date.now()) => new Date(ms).toISOString().slice(11, 19);
const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
function elapsed(at = Date.now()): string {
  const s = Math.max(0, Math.round((at - t0) / 1000));
  return `+${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

let progressShown = false;
function clearProgress(): void {
  if (progressShown) process.stdout.write('\r\x1b[K');
  progressShown = false;
}
function say(line = ''): void {
  clearProgress();
  process.stdout.write(line + '\n');
}
/** A step of the story: its wall-clock time (UTC) and the time since the demo started. */
function step(line: string): void {
  say(`${clock()} ${elapsed().padStart(6)}  ${line}`);
}
/** The line that says what it waits for, rewritten in place on a terminal, every 30 s otherwise. */
let lastPlainProgress = 0;
function progress(line: string): void {
  if (process.stdout.isTTY) {
    process.stdout.write(`\r\x1b[K${clock()} ${elapsed().padStart(6)}  ... ${line}`);
    progressShown = true;
  } else if (Date.now() - lastPlainProgress >= 30_000) {
    lastPlainProgress = Date.now();
    say(`${clock()} ${elapsed().padStart(6)}  ... ${line}`);
  }
}

// ------------------------------------------------------------------------------------------------- processes

/** Runs scripts/openstack.sh (its output indented on screen and kept in `logFile`); rejects with its output's
 * tail. Own process group: a Ctrl-C reaches the demo, which decides (a restore is never cut short). */
function openstackSh(args: string[], env: NodeJS.ProcessEnv, logFile: string, signal?: AbortSignal, show = true): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(OPENSTACK, args, { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const log = createWriteStream(logFile, { flags: 'a' });
    log.write(`\n$ scripts/openstack.sh ${args.join(' ')}   (${new Date().toISOString()})\n`);
    let out = '';
    let partial = '';
    const take = (d: Buffer) => {
      log.write(d);
      out = (out + d.toString()).slice(-64_000);
      if (!show) return;
      const lines = (partial + d.toString()).split('\n');
      partial = lines.pop()!;
      for (const l of lines) say(`                   | ${l}`);
    };
    child.stdout!.on('data', take);
    child.stderr!.on('data', take);
    const onAbort = () => child.pid && process.kill(-child.pid, 'SIGTERM');
    signal?.addEventListener('abort', onAbort, { once: true });
    child.on('error', (err) => reject(err));
    child.on('close', (code, sig) => {
      signal?.removeEventListener('abort', onAbort);
      log.end();
      if (show && partial) say(`                   | ${partial}`);
      if (signal?.aborted) return reject(new Aborted());
      if (code === 0) return resolve(out);
      const tail = out.trimEnd().split('\n').slice(-25).join('\n');
      reject(new Error(`scripts/openstack.sh ${args.join(' ')} failed (${sig ?? `exit ${code}`}); its last lines (all of it in ${logFile}):\n${tail}`));
    });
  });
}

/** The `openstack` CLI as a user types it, timed; never throws (a failing request is the story). */
function openstackCli(args: string[], env: NodeJS.ProcessEnv, timeoutMs = 200_000): Promise<{ ok: boolean; out: string; ms: number }> {
  const started = Date.now();
  return new Promise((resolve) => {
    const child = spawn('openstack', args, { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let out = '';
    child.stdout!.on('data', (d) => (out += d));
    child.stderr!.on('data', (d) => (out += d));
    const timer = setTimeout(() => child.pid && process.kill(-child.pid, 'SIGKILL'), timeoutMs);
    child.on('error', (err) => resolve({ ok: false, out: errorText(err), ms: Date.now() - started }));
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ ok: code === 0, out: out.trim(), ms: Date.now() - started });
    });
  });
}

/** An error that ends a wait at once (the demo's stackwatch died): no point waiting out the timeout. */
class Fatal extends Error {}

/** Polls `probe` until it gives a value, showing `what` (and `status()`) on the progress line. */
async function waitUntil<T>(what: string, probe: () => Promise<T | undefined | false>, timeoutMs: number, signal: AbortSignal, status: () => string = () => '', everyMs = 2000): Promise<T> {
  const started = Date.now();
  for (;;) {
    // A probe's error is a try that failed (Elasticsearch busy, say), unless it is fatal.
    const v = await probe().catch((err) => {
      if (err instanceof Fatal) throw err;
      return undefined;
    });
    if (v !== undefined && v !== false) {
      clearProgress();
      return v as T;
    }
    const waited = Date.now() - started;
    if (waited > timeoutMs) {
      clearProgress();
      throw new Error(`gave up after ${secs(waited)} waiting for ${what}${status() ? ` (${status()})` : ''}`);
    }
    progress(`${what}: ${Math.round(waited / 1000)} s${status() ? `; ${status()}` : ''}`);
    await sleep(everyMs, signal);
  }
}

function tail(file: string, lines: number): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(nothing written)';
  }
}

// ------------------------------------------------------------------------------------------------- the story

export async function runLiveDemo(args: string[]): Promise<number> {
  const opts = liveOptions(args);
  t0 = Date.now();
  const ctl = new AbortController();
  let why: 'interrupted' | 'timeout' | undefined;
  let restoring = false;
  const onSignal = (sig: string) => () => {
    if (why) {
      if (restoring) say(`${sig}: still putting the cloud back (nova-compute restarting); it ends by itself in a minute or two`);
      return;
    }
    why = 'interrupted';
    say(`\n${sig}: stopping the story; the cloud is put back first`);
    ctl.abort();
  };
  const onInt = onSignal('SIGINT');
  const onTerm = onSignal('SIGTERM');
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onTerm);
  const deadline = setTimeout(() => {
    why ??= 'timeout';
    say(`\nThe demo's time is up (--timeout ${opts.timeoutMs / 60_000} min); the cloud is put back first`);
    ctl.abort();
  }, opts.timeoutMs);
  const { signal } = ctl;

  const work = mkdtempSync(join(tmpdir(), 'stackwatch-demo-live-'));
  const scriptLog = join(work, 'openstack-sh.log');
  const pipelineLog = join(work, 'stackwatch-run.log');
  // Settings of the caller's shell must not leak into the cloud (e.g. an exported SW_OS_COMPUTE_HOST): every
  // restart here says what it sets, and the restore sets nothing.
  const baseEnv: NodeJS.ProcessEnv = { ...process.env };
  for (const k of CLOUD_SETTINGS) delete baseEnv[k];

  let cloudTouched = false;
  let apiRestarted = false;
  let pipeline: ChildProcess | undefined;
  let pipelineExit: Promise<unknown> | undefined;
  let cfg: Config | undefined;
  let cloud: Record<string, string> = {};
  let stack: Record<string, string> = {};
  let result = { amqpFired: false, amqpResolved: false, consoleFired: false, consoleResolved: false };
  let failure: unknown;
  let computeHost = 'os-compute-1';
  let cliEnv: NodeJS.ProcessEnv = baseEnv;

  try {
    step('Starting the local stack (Kafka, Elasticsearch, Alertmanager, the pager webhook) with scripts/stack.sh ...');
    stack = startLocalStack();
    if (!stack.STACKWATCH_WEBHOOK_URL) throw new Error('scripts/stack.sh env named no STACKWATCH_WEBHOOK_URL: the demo shows the pages the pager webhook received');

    const installed = spawnSync('dpkg-query', ['-W', '-f=${db:Status-Status}', 'python3-nova'], { encoding: 'utf8' }).stdout === 'installed';
    step(
      installed
        ? 'Starting the small OpenStack Zed (scripts/openstack.sh start: about 1 minute when it is down, seconds when it runs) ...'
        : "Installing and starting the small OpenStack Zed (scripts/openstack.sh start): this first time it installs Debian's OpenStack packages (about 5 minutes, ~600 MB) and creates the databases and the canary server (about 4 minutes more) ...",
    );
    const startedCloud = Date.now();
    await openstackSh(['start'], baseEnv, scriptLog, signal).catch((err) => {
      if (err instanceof Aborted) throw err;
      throw new Error(`the cloud failed to start: ${errorText(err)}`);
    });
    cloud = parseExports(await openstackSh(['env'], baseEnv, scriptLog, signal, false));
    computeHost = cloud.STACKWATCH_OS_COMPUTE_HOST ?? 'os-compute-1';
    cliEnv = { ...baseEnv, ...cloud };
    step(`The cloud is up (${secs(Date.now() - startedCloud)}); logs in ${cloud.STACKWATCH_OS_LOG_DIR}, canary server ${cloud.STACKWATCH_OS_CANARY_NAME}.`);

    const run = Date.now().toString(36);
    mkdirSync(join(work, 'checkpoints'));
    const raw = liveConfig({ run, work, stack, cloud });
    cfg = validateConfig(structuredClone(raw), 'demo --live configuration', {});
    const configFile = join(work, 'stackwatch.yaml');
    writeFileSync(configFile, stringify(raw), { mode: 0o600 });
    // OS_* of the caller's shell would override the configured API collector (that is what they are for), and
    // STACKWATCH_* the stack's addresses: the demo's child sees neither.
    const childEnv: NodeJS.ProcessEnv = { ...baseEnv, STACKWATCH_LOG_LEVEL: 'info' };
    for (const k of Object.keys(childEnv)) if (k.startsWith('OS_') || (k.startsWith('STACKWATCH_') && k !== 'STACKWATCH_LOG_LEVEL' && k !== 'STACKWATCH_HOME')) delete childEnv[k];
    step(`Starting stackwatch: npx stackwatch run --config ${configFile}`);
    say(`                   (logs of ${LOG_FILES.join(', ')} from their end; the API every 5 s with a console probe of the canary; its own log: ${pipelineLog})`);
    const out = createWriteStream(pipelineLog);
    pipeline = spawn(process.execPath, [BIN, 'run', '--config', configFile], { env: childEnv, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    pipeline.stdout!.pipe(out, { end: false });
    pipeline.stderr!.pipe(out, { end: false });
    pipelineExit = new Promise((resolve) => pipeline!.on('exit', (code, sig) => resolve(sig ?? code)));
    let pipelineDied: string | undefined;
    void pipelineExit.then((how) => (pipelineDied = `stackwatch run exited (${how}); its last lines:\n${tail(pipelineLog, 20)}`));
    const alive = () => {
      if (pipelineDied && !signal.aborted) throw new Fatal(pipelineDied);
    };

    const es = esClient(cfg.elasticsearch);
    const metrics = `${cfg.elasticsearch.indices.metrics}-*`;
    const since = new Date().toISOString();
    try {
      await waitUntil(
        "stackwatch's first console probe in Elasticsearch",
        async () => {
          alive();
          await es.indices.refresh({ index: metrics, ignore_unavailable: true, allow_no_indices: true });
          const r = await es.count({
            index: metrics,
            ignore_unavailable: true,
            allow_no_indices: true,
            query: { bool: { filter: [{ term: { 'metric.name': 'openstack.probe.success' } }, { range: { '@timestamp': { gte: since } } }] } },
          });
          return r.count > 0;
        },
        240_000,
        signal,
      );
    } finally {
      await es.close();
    }
    step('stackwatch is watching: the console probe of the canary answers, its result is in Elasticsearch.');

    // ---- the seed's story
    cloudTouched = true;
    if (opts.seedTiming) {
      step("nova-api restarted with rpc_response_timeout = 60 (the seed's 64 s): SW_OS_RPC_TIMEOUT=60 scripts/openstack.sh restart nova-api");
      apiRestarted = true;
      await openstackSh(['restart', 'nova-api'], { ...baseEnv, SW_OS_RPC_TIMEOUT: '60' }, scriptLog, signal);
    }
    step('nova-compute restarted with AMQP heartbeats off, as in the seed: SW_OS_AMQP_HEARTBEAT=0 scripts/openstack.sh restart nova-compute');
    await openstackSh(['restart', 'nova-compute'], { ...baseEnv, SW_OS_AMQP_HEARTBEAT: '0' }, scriptLog, signal);
    await waitComputeUp(computeHost, cliEnv, signal);
    step(`nova-compute is up as ${computeHost} (heartbeat_timeout_threshold = 0); a few console probes that work with it ...`);
    await sleep(10_000, signal);
    alive();

    step('Its AMQP path goes silent (sockets stay open, every byte dropped): scripts/openstack.sh fault amqp blackhole');
    await openstackSh(['fault', 'amqp', 'blackhole'], baseEnv, scriptLog, signal);
    const brokenAt = Date.now();

    const canary = cloud.STACKWATCH_OS_CANARY_NAME ?? 'stackwatch-canary';
    step(`A user asks for the canary's console: openstack console url show ${canary}`);
    const user = await openstackCli(['console', 'url', 'show', canary], cliEnv);
    if (signal.aborted) throw new Aborted();
    step(`  ${user.ok ? 'it worked (unexpected: nova-compute still answers)' : 'it FAILED'} after ${secs(user.ms)}: ${lastLines(user.out, 2)}`);

    let restoredAt: number | undefined;
    const hosts = [LIVE_HOST, computeHost];
    const seen = new Set<string>();
    let pages: PagedAlert[] = [];
    const readPages = async (): Promise<PagedAlert[]> => {
      const res = await fetch(`${stack.STACKWATCH_WEBHOOK_URL}/received`, { signal: AbortSignal.timeout(10_000) });
      const body = (await res.json()) as { items: { received_at: string; body: { alerts?: Omit<PagedAlert, 'receivedAt'>[] } }[] };
      pages = storyPages(body.items, hosts, brokenAt);
      for (const a of pages) {
        const key = `${a.status} ${a.labels.alertname} ${JSON.stringify(a.labels)} ${a.startsAt}`;
        if (seen.has(key)) continue;
        seen.add(key);
        const at = Date.parse(a.receivedAt);
        const what = a.annotations.summary ?? a.annotations.description ?? '';
        const who = [a.labels.service && `service=${a.labels.service}`, a.labels.host && `host=${a.labels.host}`].filter(Boolean).join(' ');
        const ref = a.status === 'firing' ? `${secs(at - brokenAt)} after the black-hole` : restoredAt ? `${secs(at - restoredAt)} after the path came back` : '';
        // Stamped with the time the pager got it (it may have come while the user's request was still hanging).
        say(`${clock(at)} ${elapsed(at).padStart(6)}  PAGE ${a.status.toUpperCase()} ${a.labels.alertname} ${who} (${ref}): ${what}`);
      }
      return pages;
    };
    const summary = () => {
      const s = pageState(pages);
      return `amqp-connection-lost(nova-compute) ${s.amqpResolved ? 'resolved' : s.amqpFired ? 'firing' : 'not yet'}, console-probe-failing ${s.consoleResolved ? 'resolved' : s.consoleFired ? 'firing' : 'not yet'}`;
    };

    await waitUntil(
      'the pages (Alertmanager -> pager webhook)',
      async () => {
        alive();
        const s = pageState(await readPages());
        return s.amqpFired && s.consoleFired;
      },
      420_000,
      signal,
      summary,
    );
    result = pageState(pages);
    step(`Both pages arrived, the last ${secs(Date.now() - brokenAt)} after the black-hole.`);

    step('The path is restored (connections reset, then pass): scripts/openstack.sh fault amqp reset');
    await openstackSh(['fault', 'amqp', 'reset'], baseEnv, scriptLog, signal);
    restoredAt = Date.now();
    await waitUntil(
      'both alerts to resolve',
      async () => {
        alive();
        const s = pageState(await readPages());
        return s.amqpResolved && s.consoleResolved;
      },
      420_000,
      signal,
      summary,
    ).finally(() => (result = pageState(pages)));
    step(`Both alerts resolved, ${secs(Date.now() - restoredAt)} after the path came back.`);

    step(`The user tries again: openstack console url show ${canary}`);
    const user2 = await openstackCli(['console', 'url', 'show', canary], cliEnv);
    step(`  ${user2.ok ? 'it works' : 'it still FAILS'} after ${secs(user2.ms)}: ${user2.ok ? consoleUrl(user2.out) : lastLines(user2.out, 2)}`);
  } catch (err) {
    failure = err;
  } finally {
    clearTimeout(deadline);
    if (cloudTouched) {
      restoring = true;
      step('Putting the cloud back as it was: the AMQP proxy to pass, nova-compute restarted with its default settings ...');
      const restore = async (what: string, fn: () => Promise<unknown>) => {
        try {
          await fn();
        } catch (err) {
          say(`  could not ${what}: ${errorText(err)}`);
          failure ??= err;
        }
      };
      await restore('set the AMQP proxy to pass (scripts/openstack.sh fault amqp pass)', () => openstackSh(['fault', 'amqp', 'pass'], baseEnv, scriptLog, undefined, false));
      await restore('restart nova-compute (scripts/openstack.sh restart nova-compute)', () => openstackSh(['restart', 'nova-compute'], baseEnv, scriptLog));
      if (apiRestarted) await restore('restart nova-api (scripts/openstack.sh restart nova-api)', () => openstackSh(['restart', 'nova-api'], baseEnv, scriptLog));
      await restore(`see nova-compute up as ${computeHost}`, () => waitComputeUp(computeHost, cliEnv, new AbortController().signal));
      step('The cloud is back in its default state.');
      restoring = false;
    }
    if (pipeline?.pid && pipeline.exitCode === null && pipeline.signalCode === null) {
      pipeline.kill('SIGTERM');
      await Promise.race([pipelineExit, sleep(40_000)]);
    }
    if (cfg && !opts.keepTopic) await deleteTopics(cfg.kafka, [...Object.values(cfg.kafka.topics), cfg.processor.checkpoint.topic]).catch(() => {});
    process.off('SIGINT', onInt);
    process.off('SIGTERM', onTerm);
  }

  const ok = result.amqpFired && result.amqpResolved && result.consoleFired && result.consoleResolved && failure === undefined;
  say();
  if (why === 'interrupted') say('Interrupted: the story was cut short.');
  else if (failure !== undefined && !(failure instanceof Aborted)) say(`The demo failed: ${errorText(failure)}`);
  say(
    `Pages: amqp-connection-lost for nova-compute ${result.amqpFired ? 'fired' : 'did not fire'}${result.amqpResolved ? ' and resolved' : ''}; console-probe-failing ${result.consoleFired ? 'fired' : 'did not fire'}${result.consoleResolved ? ' and resolved' : ''}.`,
  );
  if (cfg) {
    const es = cfg.elasticsearch.url;
    const { logs, alerts, metrics } = cfg.elasticsearch.indices;
    say(`
Where to look:
  Logs      ${es}/${logs}-*/_search?q=host.name:${LIVE_HOST}%20AND%20service.name:nova-compute%20AND%20log.level:ERROR
  Alerts    ${es}/${alerts}-*/_search?q=rule.id:(amqp-connection-lost%20OR%20console-probe-failing)
  Probes    ${es}/${metrics}-*/_search?q=metric.name:openstack.probe.*
  Pager     ${cfg.notify.alertmanager?.url ?? ''}/#/alerts (Alertmanager) and ${stack.STACKWATCH_WEBHOOK_URL}/received (the pager webhook)
  Kibana    npx stackwatch setup --kibana http://<kibana>:5601 imports the dashboards and saved searches
  The cloud ${cloud.STACKWATCH_OS_LOG_DIR ?? 'its log dir: scripts/openstack.sh --help'} (its logs); scripts/openstack.sh status
  The demo  ${work} (stackwatch's configuration and log, scripts/openstack.sh's output)
The stack and the cloud keep running for you to explore; stop them with: scripts/openstack.sh stop; scripts/stack.sh stop`);
  }
  if (why === 'interrupted') return 130;
  return ok ? 0 : 1;
}

/** The url row of `openstack console url show`'s table (the whole output if there is none). */
export function consoleUrl(table: string): string {
  const row = table.split('\n').find((l) => l.replace(/^[|\s]+/, '').startsWith('url '));
  return row
    ? (row
        .split('|')
        .filter((c) => c.trim() !== '')
        .map((c) => c.trim())[1] ?? row.trim())
    : lastLines(table, 6);
}

function lastLines(text: string, n: number): string {
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  return lines.slice(-n).join(' | ') || '(no output)';
}

/** nova-compute up on its host, as the API lists it. */
async function waitComputeUp(host: string, env: NodeJS.ProcessEnv, signal: AbortSignal): Promise<void> {
  await waitUntil(
    `nova-compute up as ${host}`,
    async () => {
      const r = await openstackCli(['compute', 'service', 'list', '--service', 'nova-compute', '-f', 'json'], env, 60_000);
      if (!r.ok) return false;
      return (JSON.parse(r.out) as { Host: string; State: string }[]).some((s) => s.Host === host && s.State === 'up');
    },
    180_000,
    signal,
  );
}
