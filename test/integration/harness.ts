// What the integration tests share: the real stack's addresses, a configuration with names of its own per
// test (topics, consumer group, indices), polling helpers, and the stackwatch CLI as a child process.
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { inject } from 'vitest';
import { stringify } from 'yaml';
import { validateConfig, type Config } from '../../core/config.ts';
import { esClient, type Client } from '../../core/elastic.ts';
import { removeIndexTemplates } from '../../sinks/index-setup.ts';
import { deleteTopics, GroupConsumer, groupProgress } from '../../core/kafka.ts';
import { messageEvents } from '../../processors/decode.ts';
import { loadIncidentRules } from '../../incidents/rules.ts';
import { stackwatchNodeArgs, stackwatchNodeEnv } from '../../bench/measure.ts';

export const REPO = new URL('../../', import.meta.url).pathname;
export const stack = () => inject('stack');

export interface TestSetup {
  run: string;
  dir: string;
  host: string;
  raw: Record<string, any>;
  cfg: Config;
  configFile: string;
  es: Client;
  cleanup(): Promise<void>;
}

/** The shipped incident rules (rules/incidents/) with hold_s at most `holdS`, in a folder of `dir`. */
export function testIncidentRules(dir: string, holdS = 3): string {
  const out = join(dir, 'incident-rules');
  mkdirSync(out, { recursive: true });
  for (const r of loadIncidentRules()) {
    const { file: _file, ...rule } = r;
    writeFileSync(join(out, `${r.id}.yaml`), stringify({ ...rule, hold_s: Math.min(rule.hold_s, holdS) }));
  }
  return out;
}

/** A configuration whose topics, group, indices and host name belong to this test alone. */
export function testSetup(name: string, patch: (raw: Record<string, any>) => void = () => {}): TestSetup {
  const env = stack();
  const run = `${name}-${Date.now().toString(36)}${Math.floor(Math.random() * 1e4)}`;
  const dir = mkdtempSync(join(tmpdir(), `stackwatch-${name}-`));
  const host = `itest-${run}`;
  const raw: Record<string, any> = {
    kafka: {
      brokers: [env.STACKWATCH_KAFKA_BROKERS],
      topics: {
        logs: `swtest.${run}.logs`,
        dead_letter: `swtest.${run}.dead-letter`,
        notify_retry: `swtest.${run}.notify-retry`,
        metrics: `swtest.${run}.metrics`,
        health: `swtest.${run}.health`,
      },
      consumer_group: `swtest-${run}`,
    },
    elasticsearch: {
      url: env.STACKWATCH_ES_URL,
      indices: {
        logs: `swtest-${run}-logs`,
        alerts: `swtest-${run}-alerts`,
        incidents: `swtest-${run}-incidents`,
        metrics: `swtest-${run}-metrics`,
        dead_letter: `swtest-${run}-dead-letter`,
        inventory: `swtest-${run}-inventory`,
      },
    },
    notify: { alertmanager: { url: env.STACKWATCH_ALERTMANAGER_URL } },
    // Pages at once, and the shipped incident rules with their holds cut to seconds: tests wait for a resolution
    // seconds after the fault ends, not the minutes an on-call engineer is spared flapping pages with.
    incidents: { min_duration_s: 0, rules_dir: testIncidentRules(dir) },
    collectors: { openstack_logs: { paths: [join(dir, 'logs', '*.log')], checkpoint_dir: join(dir, 'checkpoints'), host_name: host, poll_interval_ms: 100 } },
    // A free port each: tests run `stackwatch run` side by side with the demo or an operator's own.
    status_server: { listen: '127.0.0.1:0' },
    // The processor's state checkpoints in a topic of the test's own (a restart reads only its own history).
    processor: { checkpoint: { topic: `swtest.${run}.state` } },
  };
  patch(raw);
  const cfg = validateConfig(structuredClone(raw), 'test configuration', {});
  const configFile = join(dir, 'stackwatch.yaml');
  writeFileSync(configFile, stringify(raw));
  const es = esClient(cfg.elasticsearch);
  return {
    run,
    dir,
    host,
    raw,
    cfg,
    configFile,
    es,
    async cleanup() {
      if (process.env.STACKWATCH_TEST_KEEP === '1') {
        // What the test wrote stays for a look afterwards: its topics and indices are named after `run`.
        console.log(`kept: topics swtest.${run}.*, indices swtest-${run}-*`);
        return es.close();
      }
      // By name: Elasticsearch 8 refuses wildcard deletes (action.destructive_requires_name).
      const names = Object.keys(await es.indices.get({ index: `swtest-${run}-*`, allow_no_indices: true, ignore_unavailable: true }).catch(() => ({})));
      if (names.length > 0) await es.indices.delete({ index: names }).catch(() => {});
      await removeIndexTemplates(es, cfg.elasticsearch).catch(() => {});
      await es.close();
      await deleteTopics(cfg.kafka, [...Object.values(cfg.kafka.topics), cfg.processor.checkpoint.topic]).catch(() => {});
    },
  };
}

/** The path of a program a test needs from the machine (promtool, say). Tests never install anything: an
 * apt-get from inside a test fails when another holds the dpkg lock; scripts/test-deps.sh installs it before
 * the tests start (npm test and .ci/run run it). Missing, it fails at once naming that command. */
export function requireTool(name: string): string {
  try {
    return execFileSync('sh', ['-c', 'command -v "$1"', 'sh', name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    throw new Error(`${name} is not installed (not on PATH): run \`sudo scripts/test-deps.sh install\` first (npm test and .ci/run do, before the tests start)`);
  }
}

/** Polls `probe` until it gives a value (not undefined or false). On timeout the error says what was awaited —
 * `what` may be a function, to describe the state at that moment — and the probe's error, if its last try threw. */
export async function waitFor<T>(what: string | (() => string), probe: () => Promise<T | undefined | false>, timeoutMs = 30_000, everyMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined && v !== false) return v as T;
      last = undefined; // an error of an earlier try says nothing of now
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      const said = typeof what === 'function' ? what() : what;
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${said}${last ? ` (last error: ${String(last)})` : ''}`);
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export async function countDocs(es: Client, index: string, query: object = { match_all: {} }): Promise<number> {
  // A refresh behind heavy indexing on two loaded cores has taken over the client's default 30 s.
  await es.indices.refresh({ index, ignore_unavailable: true, allow_no_indices: true }, { requestTimeout: 120_000 });
  return (await es.count({ index, query, ignore_unavailable: true, allow_no_indices: true }, { requestTimeout: 120_000 })).count;
}

/** Every document id in the indices, read with a point in time (search_after over _shard_doc): for tests that
 * check nothing is missing or doubled. */
export async function allIds(es: Client, index: string): Promise<string[]> {
  const ids: string[] = [];
  const pit = await es.openPointInTime({ index, keep_alive: '2m' });
  try {
    let after: unknown[] | undefined;
    for (;;) {
      const res = await es.search({
        pit: { id: pit.id, keep_alive: '2m' },
        size: 10_000,
        sort: ['_shard_doc'],
        _source: false,
        track_total_hits: false,
        ...(after ? { search_after: after as never } : {}),
      });
      const hits = res.hits.hits;
      if (hits.length === 0) break;
      for (const h of hits) ids.push(h._id!);
      after = hits[hits.length - 1].sort;
    }
  } finally {
    await es.closePointInTime({ id: pit.id }).catch(() => {});
  }
  return ids;
}

export interface WebhookAlert {
  status: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  startsAt: string;
  endsAt: string;
}

/** Alerts the pager webhook received from Alertmanager, for one host. */
export async function pagedAlerts(host: string): Promise<WebhookAlert[]> {
  const res = await fetch(`${stack().STACKWATCH_WEBHOOK_URL}/received`);
  const { items } = (await res.json()) as { items: { body: { alerts?: WebhookAlert[] } }[] };
  // The webhook is shared: other tests' own notifiers post there too, their alerts without Alertmanager's labels.
  return items.flatMap((i) => i.body?.alerts ?? []).filter((a) => a?.labels?.host === host);
}

export interface Cli {
  child: ChildProcess;
  stderr(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Runs `stackwatch ARGS...` as a child process, as an operator would. `nice` lowers its CPU priority (nice(1) execs it: the pid is the CLI's own), for tests that run
 * many pipelines beside JVMs that must start in time on two cores. `bin`: another entry point (stackwatch-collector),
 * with the node options and the environment of its first line. */
export function stackwatch(args: string[], env: Record<string, string> = {}, opts: { nice?: number; bin?: 'stackwatch' | 'stackwatch-collector' } = {}): Cli {
  const bin = join(REPO, `bin/${opts.bin ?? 'stackwatch'}.mjs`);
  const argv = [...stackwatchNodeArgs(bin), bin, ...args];
  const [cmd, cmdArgs] = opts.nice === undefined ? [process.execPath, argv] : ['nice', ['-n', String(opts.nice), process.execPath, ...argv]];
  const child = spawn(cmd, cmdArgs, {
    env: { ...process.env, ...stackwatchNodeEnv(bin), STACKWATCH_KAFKA_BROKERS: '', STACKWATCH_ES_URL: '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  child.stdout!.resume();
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  return { child, stderr: () => err, exited };
}

/** `stackwatch state ARGS` on a test's configuration, as an operator runs it with no processor: its standard output. */
export async function stateCli(t: TestSetup, ...args: string[]): Promise<string> {
  const { stdout } = await promisify(execFile)(process.execPath, [...stackwatchNodeArgs(), join(REPO, 'bin/stackwatch.mjs'), 'state', '--config', t.configFile, ...args], {
    env: { ...process.env, STACKWATCH_KAFKA_BROKERS: '', STACKWATCH_ES_URL: '' },
    timeout: 60_000,
  });
  return stdout;
}

/** The alert transitions of rule `ruleId` in a test's alerts indices (at most 200), each with its document id. */
export async function ruleAlerts(t: TestSetup, ruleId: string): Promise<any[]> {
  const index = `${t.cfg.elasticsearch.indices.alerts}-*`;
  await t.es.indices.refresh({ index, ignore_unavailable: true, allow_no_indices: true });
  const res = await t.es.search({ index, size: 200, ignore_unavailable: true, allow_no_indices: true, query: { term: { 'rule.id': ruleId } } });
  return res.hits.hits.map((h) => ({ id: h._id, ...(h._source as any) }));
}

/** The log events in the test's logs topic (a record holds a batch of a file's events), counted as the processor
 * takes them out; with `upTo` (partition → offset), only those of the records before it (a group's committed
 * offsets). Read by a consumer group of its own from the beginning. */
export async function logEventsInKafka(t: TestSetup, upTo?: Map<number, number>): Promise<number> {
  const topic = t.cfg.kafka.topics.logs;
  const groupId = `${t.cfg.kafka.consumer_group}-event-counter-${Date.now().toString(36)}`;
  let events = 0;
  const reader = await GroupConsumer.start(t.cfg.kafka, {
    groupId,
    topics: [topic],
    component: 'event-counter',
    onBatch: async (b) => {
      for (const m of b.messages) {
        if (upTo && Number(m.offset) >= (upTo.get(b.partition) ?? 0)) continue;
        events += messageEvents('logs', JSON.parse(m.value ?? 'null')).events.length;
      }
    },
  });
  try {
    await waitFor(`every record of ${topic} counted`, async () => (await groupProgress(t.cfg.kafka, groupId, topic)).every((p) => p.committed === p.end), 60_000);
  } finally {
    await reader.stop();
  }
  return events;
}
