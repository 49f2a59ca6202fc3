// Benchmark `throughput` (issue "Scale-out"): sustained events/s of the whole pipeline on the real local stack —
// log files → `stackwatch run --role collector` → Kafka → `stackwatch run --role processor` (1, then 2 processes in
// one consumer group) → Elasticsearch — side by side with the ceiling: the same documents (same ids, same batch
// size as the sink, same index templates) sent straight to Elasticsearch with `_bulk` by 1 and 2 concurrent senders.
//
// Each side is timed the same way, on Elasticsearch's side: the primaries' `indexing.index_total` of the run's
// indices, polled every 200 ms (no refresh needed, so the poll does not disturb indexing), from the first poll that
// sees a document to the first that sees them all; rate = documents indexed in between / seconds. Every run then
// checks that the index holds exactly the source events, each with `_version` 1 and `index_total` equal to the
// count: no event was indexed twice. Peak RSS of each stackwatch process: /proc/<pid>/status (VmRSS, VmHWM) every
// 200 ms. The corpus (bench/corpus.ts) is split into 6 files at event starts, named so that their Kafka keys
// (host:path) put 2 files on each of the topic's 3 partitions.
//
// Targets: pipeline ≥ 80 % of the ceiling; peak RSS ≤ 200 MiB per process.
// STACKWATCH_BENCH_CPU_PROF=DIR runs the collector and processor processes with `node --cpu-prof --cpu-prof-dir DIR`;
// The stackwatch processes run with the node options of bin/stackwatch.mjs's first line, as `stackwatch` does;
// STACKWATCH_BENCH_NODE_ARGS="--max-old-space-size=384 …" adds options after them (experiments; the later wins).
// STACKWATCH_BENCH_CHECKPOINT=off runs the processors without state checkpoints (processor.checkpoint.enabled
// false): the cost of checkpointing is the difference (each processor has its own checkpoint, `p<i>`, on a topic of
// the run's own).
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AssignerProtocol, Partitioners } from 'kafkajs';
import { stringify } from 'yaml';
import { DEFAULT_MAX_EVENT_BYTES } from '../collectors/logs/assemble.ts';
import { fingerprint, toRawEvent } from '../collectors/openstack-logs.ts';
import { readLogFile } from '../collectors/logs/read-file.ts';
import { batches } from '../core/batch.ts';
import { validateConfig, type Config } from '../core/config.ts';
import { dailyIndex, esClient, type Client } from '../core/elastic.ts';
import { installIndexTemplates } from '../sinks/index-setup.ts';
import { deleteTopics, ensureTopics, kafkaClient } from '../core/kafka.ts';
import { startLocalStack } from '../core/local-stack.ts';
import { parseLogEvent } from '../processors/parse-log.ts';
import { buildCorpus, ROOT } from './corpus.ts';
import { fmt, freePort, machine, MiB, procStatus, progress, stackwatchNodeArgs, stackwatchNodeEnv, table, type Benchmark } from './measure.ts';

const TARGET_SHARE = 0.8;
const TARGET_RSS_MIB = 200;
const FILES = 6;
const PARTITIONS = 3; // what ensureTopics gives every topic
const BULK_MAX_DOCS = 2000; // the sink's default (elasticsearch.bulk_max_docs)
const BULK_MAX_BYTES = 8 * 1024 * 1024; // the sink's MAX_BATCH_BYTES
const POLL_MS = 200;
const STALL_MS = 120_000;
const HOST = 'bench-throughput';
export const BIN = join(ROOT, 'bin', 'stackwatch.mjs');
const STACK_SH = join(ROOT, 'scripts', 'stack.sh');
/** An oslo.log line that starts an event (full header and a [...] context block). */
const EVENT_START = /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3} \d+ [A-Z]+ \S+ \[/;
const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---- the source files --------------------------------------------------------------------------------------

/** The partition kafkajs' default (Java-compatible murmur2) partitioner gives a key. */
export function partitionOf(key: string, partitions = PARTITIONS): number {
  const partitionMetadata = Array.from({ length: partitions }, (_, i) => ({ partitionErrorCode: 0, partitionId: i, leader: 0, replicas: [0], isr: [0] }));
  return Partitioners.DefaultPartitioner()({ topic: 'any', partitionMetadata, message: { key, value: null } });
}

/** `count` file names in `dir` whose collector keys (host:path) spread evenly over the partitions. */
export function balancedNames(dir: string, host: string, count: number, partitions = PARTITIONS, stem = 'openstack'): string[] {
  const per = new Map<number, string[]>();
  for (let i = 0; [...per.values()].reduce((s, v) => s + v.length, 0) < count; i++) {
    const path = join(dir, `${stem}-${i}.log`);
    const p = partitionOf(`${host}:${path}`, partitions);
    const have = per.get(p) ?? [];
    if (have.length < Math.ceil(count / partitions)) per.set(p, [...have, path]);
  }
  // Interleave the partitions, so that the file order says nothing about the partition.
  const out: string[] = [];
  for (let k = 0; out.length < count; k++) for (let p = 0; p < partitions; p++) if (per.get(p)?.[k] && out.length < count) out.push(per.get(p)![k]);
  return out;
}

/** Offset of the first line at or after `from` that starts an event (the text's length if none does). */
function nextEventStart(buf: Buffer, from: number): number {
  let at = 0;
  if (from > 0) {
    const nl = buf.indexOf(0x0a, from - 1);
    if (nl < 0) return buf.length;
    at = nl + 1;
  }
  while (at < buf.length) {
    const end = buf.indexOf(0x0a, at);
    if (EVENT_START.test(buf.toString('latin1', at, Math.min(end < 0 ? buf.length : end, at + 200)))) return at;
    if (end < 0) break;
    at = end + 1;
  }
  return buf.length;
}

/** Splits `text` at event starts into `paths.length` parts of about the same size, each with a first line no
 * other part has (the collector knows a file by the hash of its first line). */
export function splitIntoFiles(text: Buffer, paths: string[]): void {
  const starts = [0];
  const ids = new Set([fingerprint(text.subarray(0, 1024), true)]);
  for (let i = 1; i < paths.length; i++) {
    let at = nextEventStart(text, Math.max(starts[i - 1] + 1, Math.floor((i * text.length) / paths.length)));
    while (at < text.length && ids.has(fingerprint(text.subarray(at, at + 1024), true))) at = nextEventStart(text, at + 1);
    if (at >= text.length) throw new Error('cannot split the corpus into files with distinct first lines');
    ids.add(fingerprint(text.subarray(at, at + 1024), true));
    starts.push(at);
  }
  starts.push(text.length);
  paths.forEach((p, i) => writeFileSync(p, text.subarray(starts[i], starts[i + 1])));
}

interface Doc {
  index: string; // daily suffix only: `YYYY.MM.DD`
  id: string;
  body: string;
}

/** The documents the pipeline makes of the files: the collector's events (readLogFile folds and masks as it
 * does), parsed by the processor's parser. */
async function documentsOf(paths: string[], host: string): Promise<{ docs: Doc[]; unusable: number }> {
  const docs: Doc[] = [];
  let unusable = 0;
  const readAt = new Date().toISOString();
  for (const path of paths) {
    for await (const batch of readLogFile(path, { maxEventBytes: DEFAULT_MAX_EVENT_BYTES }, 5000)) {
      for (const e of batch.events) {
        const doc = parseLogEvent(toRawEvent(e, host, path, batch.fileId, readAt), { timezone: 'UTC' });
        docs.push({ index: dailyIndex('', doc['@timestamp']).slice(1), id: doc.event.id, body: JSON.stringify(doc) });
      }
      unusable += batch.unusable.length;
    }
  }
  return { docs, unusable };
}

/** The events the collector makes of the files (readLogFile folds as it does), without parsing them: what a
 * pipeline run must end with in Elasticsearch, one document each, whatever the Kafka records hold. */
export async function countEvents(paths: string[]): Promise<{ events: number; unusable: number }> {
  let events = 0;
  let unusable = 0;
  for (const path of paths) {
    for await (const batch of readLogFile(path, { maxEventBytes: DEFAULT_MAX_EVENT_BYTES }, 5000)) {
      events += batch.events.length;
      unusable += batch.unusable.length;
    }
  }
  return { events, unusable };
}

// ---- measuring -------------------------------------------------------------------------------------------

/** Documents indexed into the indices matching `pattern` so far (primaries, every index operation counted). */
export async function indexTotal(es: Client, pattern: string): Promise<number> {
  const s = await es.indices.stats({ index: pattern, metric: 'indexing', expand_wildcards: 'open' });
  return s._all?.primaries?.indexing?.index_total ?? 0;
}

/** CPU seconds (user + system) a process has used so far. */
function procCpu(pid: number): number | undefined {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
    return (Number(rest[11]) + Number(rest[12])) / CLK_TCK; // fields 14 and 15: utime, stime
  } catch {
    return undefined;
  }
}

/** Busy and total jiffies of the whole machine (/proc/stat). */
function machineCpu(): { busy: number; total: number } {
  const v = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const total = v.reduce((a, b) => a + b, 0);
  return { busy: total - v[3] - (v[4] ?? 0), total };
}

export interface Watched {
  label: string;
  pid: number;
  peakRss: number;
  cpu: number[]; // per sample
}

interface Sample {
  t: number; // ms, monotonic
  indexed: number;
  cpu: { busy: number; total: number };
}

/** Polls a progress count (Elasticsearch's index_total of the run's indices; for `peer` also Kafka's end offsets or
 * checkpointed bytes) and the watched processes every POLL_MS until stopped; a failed poll repeats the last count, so samples and CPU readings stay aligned. */
export class Sampler {
  readonly samples: Sample[] = [];
  private stopped = false;
  private loop?: Promise<void>;
  private error?: Error;

  constructor(
    private readonly count: () => Promise<number>,
    readonly watched: Watched[],
  ) {}

  start(): void {
    this.loop = (async () => {
      while (!this.stopped) {
        const t0 = performance.now();
        for (const w of this.watched) {
          const s = procStatus(w.pid);
          if (s) w.peakRss = Math.max(w.peakRss, s.rss, s.hwm);
          w.cpu.push(procCpu(w.pid) ?? w.cpu[w.cpu.length - 1] ?? 0);
        }
        const indexed = await this.count().catch((err: Error) => {
          this.error = err;
          return this.last();
        });
        this.samples.push({ t: t0, indexed, cpu: machineCpu() });
        await sleep(Math.max(0, POLL_MS - (performance.now() - t0)));
      }
    })();
  }

  last(): number {
    return this.samples[this.samples.length - 1]?.indexed ?? 0;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }

  /** Waits until the count reaches `expected` (documents indexed); throws when nothing moved for STALL_MS or `failed`
   * says so; `what` names the count in that error. */
  async waitFor(expected: number, failed: () => string | undefined = () => undefined, what = 'documents'): Promise<void> {
    let lastMove = Date.now();
    let last = -1;
    for (;;) {
      const now = this.last();
      if (now >= expected) return;
      if (now !== last) [last, lastMove] = [now, Date.now()];
      const why = failed();
      if (why) throw new Error(why);
      if (Date.now() - lastMove > STALL_MS) throw new Error(`stalled at ${now}/${expected} ${what} for ${STALL_MS / 1000} s${this.error ? ` (last poll error: ${this.error.message})` : ''}`);
      await sleep(POLL_MS);
    }
  }

  /** From the first sample that saw a document to the first that saw `expected`. */
  window(expected: number): { i0: number; i1: number; seconds: number; rate: number } {
    const i0 = this.samples.findIndex((s) => s.indexed > 0);
    const i1 = this.samples.findIndex((s) => s.indexed >= expected);
    if (i0 < 0 || i1 < 0) throw new Error('no complete run in the samples');
    const seconds = (this.samples[i1].t - this.samples[i0].t) / 1000;
    const docs = this.samples[i1].indexed - this.samples[i0].indexed;
    return { i0, i1, seconds, rate: seconds > 0 ? docs / seconds : NaN };
  }

  /** CPU use over the window: the machine's (in % of all CPUs) and each watched process's (in % of one CPU). */
  cpu(w: { i0: number; i1: number; seconds: number }): { machine: number; procs: number[] } {
    const a = this.samples[w.i0].cpu;
    const b = this.samples[w.i1].cpu;
    return {
      machine: (100 * (b.busy - a.busy)) / Math.max(1, b.total - a.total),
      procs: this.watched.map((p) => (100 * ((p.cpu[w.i1] ?? 0) - (p.cpu[w.i0] ?? 0))) / w.seconds),
    };
  }

  /** CPU time per event (µs) of each watched process over the whole sampled run. */
  perEvent(events: number): number[] {
    return this.watched.map((p) => (1e6 * ((p.cpu[p.cpu.length - 1] ?? 0) - (p.cpu[0] ?? 0))) / events);
  }
}

interface Verified {
  count: number;
  maxVersion: number;
  overOne: number;
  indexTotal: number;
}

/** Count, highest `_version`, documents with `_version` ≥ 2, and index operations of the indices. */
export async function verify(es: Client, pattern: string): Promise<Verified> {
  await es.indices.refresh({ index: pattern, allow_no_indices: true, ignore_unavailable: true });
  const r = await es.search({
    index: pattern,
    size: 0,
    track_total_hits: true,
    aggs: { max_version: { max: { field: '_version' } }, over_one: { range: { field: '_version', ranges: [{ from: 2 }] } } },
  });
  const total = typeof r.hits.total === 'number' ? r.hits.total : (r.hits.total?.value ?? 0);
  const aggs = r.aggregations as { max_version: { value: number | null }; over_one: { buckets: { doc_count: number }[] } };
  return { count: total, maxVersion: aggs.max_version.value ?? 0, overOne: aggs.over_one.buckets[0]?.doc_count ?? 0, indexTotal: await indexTotal(es, pattern) };
}

export async function deleteIndices(es: Client, pattern: string): Promise<void> {
  const names = Object.keys(await es.indices.get({ index: pattern, allow_no_indices: true, ignore_unavailable: true }).catch(() => ({})));
  if (names.length > 0) await es.indices.delete({ index: names }).catch(() => {});
}

export async function deleteTemplates(es: Client, prefixes: string[]): Promise<void> {
  for (const name of prefixes) {
    await es.indices.deleteIndexTemplate({ name }).catch(() => {});
    for (const part of ['settings', 'mappings']) await es.cluster.deleteComponentTemplate({ name: `${name}@${part}` }).catch(() => {});
  }
}

// ---- the ceiling: straight to Elasticsearch ------------------------------------------------------------

interface ModeResult {
  mode: string;
  events: number;
  seconds: number;
  rate: number;
  procs: { label: string; peakRss: number; cpu: number }[];
  machineCpu: number;
  stackCpu: { es?: number; kafka?: number };
  /** CPU µs per event over the whole run, by process label (collector, processor N, elasticsearch, kafka). */
  perEvent: Map<string, number>;
  verified: Verified;
  notes: string[];
}

/** The pids of the local stack's Elasticsearch and Kafka (scripts/stack.sh status). */
export function stackPids(): { es?: number; kafka?: number } {
  try {
    const out = execFileSync(STACK_SH, ['status', 'elasticsearch', 'kafka'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    const pid = (svc: string) => Number(new RegExp(`^${svc}\\s+up\\s+pid=(\\d+)`, 'm').exec(out)?.[1]) || undefined;
    return { es: pid('elasticsearch'), kafka: pid('kafka') };
  } catch (err) {
    const out = String((err as { stdout?: string }).stdout ?? '');
    const pid = (svc: string) => Number(new RegExp(`^${svc}\\s+up\\s+pid=(\\d+)`, 'm').exec(out)?.[1]) || undefined;
    return { es: pid('elasticsearch'), kafka: pid('kafka') };
  }
}

export function stackWatched(pids: { es?: number; kafka?: number }): Watched[] {
  return [...(pids.es ? [{ label: 'elasticsearch', pid: pids.es, peakRss: 0, cpu: [] }] : []), ...(pids.kafka ? [{ label: 'kafka', pid: pids.kafka, peakRss: 0, cpu: [] }] : [])];
}

async function ceiling(es: Client, cfg: Config, docs: Doc[], senders: number, pids: { es?: number; kafka?: number }): Promise<ModeResult> {
  const prefix = cfg.elasticsearch.indices.logs;
  const pattern = `${prefix}-*`;
  await installIndexTemplates(es, cfg.elasticsearch);
  // The sink's request bodies: action line + pre-serialised document, in batches of bulk_max_docs / 8 MiB.
  const requests: string[][] = [];
  for (const b of batches(docs, BULK_MAX_DOCS, BULK_MAX_BYTES, (d) => d.body.length)) {
    requests.push(b.flatMap((d) => [JSON.stringify({ index: { _index: `${prefix}-${d.index}`, _id: d.id } }), d.body]));
  }
  const sampler = new Sampler(() => indexTotal(es, pattern), stackWatched(pids));
  sampler.start();
  let next = 0;
  let retried = 0;
  const sender = async () => {
    while (next < requests.length) {
      let operations = requests[next++];
      for (let attempt = 1; operations.length > 0; attempt++) {
        const res = await es.bulk<string>({ operations });
        const again: string[] = [];
        res.items.forEach((item, i) => {
          const r = item.index!;
          if (!r.error) return;
          if (r.status !== 429 && r.status < 500) throw new Error(`Elasticsearch rejected a document: ${r.status} ${r.error.type}: ${r.error.reason}`);
          again.push(operations[2 * i], operations[2 * i + 1]);
        });
        retried += again.length / 2;
        operations = again;
        if (again.length > 0) await sleep(Math.min(10_000, 250 * 2 ** attempt));
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: senders }, sender));
    await sampler.waitFor(docs.length);
  } finally {
    await sampler.stop();
  }
  const w = sampler.window(docs.length);
  const cpu = sampler.cpu(w);
  const verified = await verify(es, pattern);
  await deleteIndices(es, pattern);
  const stackCpu = Object.fromEntries(sampler.watched.map((p, i) => [p.label === 'elasticsearch' ? 'es' : 'kafka', cpu.procs[i]]));
  return {
    mode: `_bulk direct, ${senders} sender${senders > 1 ? 's' : ''}`,
    events: docs.length,
    seconds: w.seconds,
    rate: w.rate,
    procs: [],
    machineCpu: cpu.machine,
    stackCpu,
    perEvent: new Map(sampler.perEvent(docs.length).map((us, i) => [sampler.watched[i].label, us])),
    verified,
    notes: retried > 0 ? [`${retried} document(s) retried after 429/5xx`] : [],
  };
}

// ---- the pipeline: stackwatch processes ----------------------------------------------------------------

/** A process the benchmark started: its exit once it exited, the last 64 KiB of its stderr. */
export interface Child {
  label: string;
  child: ChildProcess;
  stderr(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  exit?: { code: number | null; signal: NodeJS.Signals | null };
  port?: number;
}

export function spawnStackwatch(label: string, args: string[], nodeArgs: string[] = [], bin = BIN): Child {
  const extra = (process.env.STACKWATCH_BENCH_NODE_ARGS ?? '').split(/\s+/).filter(Boolean);
  // As `stackwatch` runs (with its first line's node options and environment); the experiment's options come after,
  // and win. The config file says where Kafka and Elasticsearch are; no override from the caller's environment.
  return spawnChild(label, process.execPath, [...stackwatchNodeArgs(bin), ...extra, ...nodeArgs, bin, ...args], {
    ...stackwatchNodeEnv(bin),
    STACKWATCH_KAFKA_BROKERS: '',
    STACKWATCH_ES_URL: '',
    STACKWATCH_FAILPOINTS: '',
    KAFKAJS_NO_PARTITIONER_WARNING: '1',
  });
}

/** Starts `command` in the repository (stdout ignored, stderr kept), with `env` over ours. */
export function spawnChild(label: string, command: string, args: string[], env: Record<string, string> = {}): Child {
  const child = spawn(command, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (d: string) => {
    err = (err + d).slice(-64 * 1024);
  });
  const c: Child = { label, child, stderr: () => err, exited: undefined as never };
  c.exited = new Promise((resolve) =>
    child.on('exit', (code, signal) => {
      c.exit = { code, signal };
      resolve(c.exit);
    }),
  );
  return c;
}

/** Why the run cannot go on: the first of `children` that exited, with the end of its stderr. */
export function deadChild(children: Child[]): string | undefined {
  const dead = children.find((c) => c.exit);
  return dead ? `${dead.label} exited (${dead.exit!.code ?? dead.exit!.signal}): ${dead.stderr().trim().split('\n').slice(-5).join(' | ')}` : undefined;
}

/** SIGTERM to the children still running, SIGKILL to those still there after `graceMs`. */
export async function stopChildren(children: Child[], graceMs = 60_000): Promise<void> {
  for (const c of children) if (!c.exit) c.child.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([Promise.all(children.map((c) => c.exited)), new Promise((r) => (timer = setTimeout(r, graceMs)))]);
  clearTimeout(timer);
  for (const c of children) if (!c.exit) c.child.kill('SIGKILL');
}

interface ProcessorFigures {
  received: number;
  /** _bulk requests of the sink and the seconds spent in them (stackwatch_elasticsearch_bulk_duration_seconds). */
  bulks: number;
  bulkSeconds: number;
  /** V8 heap size (total) and memory outside it (Buffers), at the end of the run. */
  heapTotal: number;
  external: number;
}

/** What a processor's /metrics says it did. */
async function processorFigures(port: number): Promise<ProcessorFigures | undefined> {
  try {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const value = (re: RegExp) => Number(re.exec(text)?.[1] ?? 0);
    return {
      received: value(/^stackwatch_component_received_events_total\{component="processor"\} (\S+)$/m),
      bulks: value(/^stackwatch_elasticsearch_bulk_duration_seconds_count\{component="elasticsearch-sink"\} (\S+)$/m),
      bulkSeconds: value(/^stackwatch_elasticsearch_bulk_duration_seconds_sum\{component="elasticsearch-sink"\} (\S+)$/m),
      heapTotal: value(/^stackwatch_nodejs_heap_size_total_bytes (\S+)$/m),
      external: value(/^stackwatch_nodejs_external_memory_bytes (\S+)$/m),
    };
  } catch {
    return undefined;
  }
}

/** The logs-topic partitions each member of the group holds (by client id), once the group is stable with `members`. */
async function waitForAssignment(cfg: Config, members: number, timeoutMs = 90_000): Promise<Map<string, number[]>> {
  const admin = kafkaClient(cfg.kafka, '-bench-admin').admin();
  await admin.connect();
  try {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const { groups } = await admin.describeGroups([cfg.kafka.consumer_group]);
      const g = groups[0];
      if (g?.state === 'Stable' && g.members.length === members) {
        const out = new Map<string, number[]>();
        for (const m of g.members) {
          const a = AssignerProtocol.MemberAssignment.decode(m.memberAssignment);
          out.set(m.clientId, [...(a?.assignment[cfg.kafka.topics.logs] ?? [])].sort());
        }
        if ([...out.values()].reduce((s, p) => s + p.length, 0) === PARTITIONS) return out;
      }
      if (Date.now() > deadline)
        throw new Error(`consumer group ${cfg.kafka.consumer_group} not stable with ${members} member(s) after ${timeoutMs / 1000} s (state ${g?.state}, ${g?.members.length ?? 0} members)`);
      await sleep(250);
    }
  } finally {
    await admin.disconnect();
  }
}

/** The configuration (as written to the YAML files) of a pipeline run `tag`: topics, consumer group, indices and
 * checkpoints of its own, the collector on `dir`/logs/*.log as `host`. */
export function pipelineConfig(env: Record<string, string>, tag: string, dir: string, host = HOST) {
  return {
    kafka: {
      brokers: [env.STACKWATCH_KAFKA_BROKERS],
      client_id: `swbench-${tag}`,
      topics: { logs: `swbench.${tag}.logs`, dead_letter: `swbench.${tag}.dlq`, notify_retry: `swbench.${tag}.retry`, metrics: `swbench.${tag}.metrics`, health: `swbench.${tag}.health` },
      consumer_group: `swbench-${tag}`,
    },
    elasticsearch: {
      url: env.STACKWATCH_ES_URL,
      indices: { logs: `swbench-${tag}-logs`, alerts: `swbench-${tag}-alerts`, metrics: `swbench-${tag}-metrics`, dead_letter: `swbench-${tag}-dead-letter` },
    },
    // No alertmanager and no notifiers: the corpus' alerts are indexed, not paged (the stack is shared).
    collectors: { openstack_logs: { paths: [join(dir, 'logs', '*.log')], checkpoint_dir: join(dir, `checkpoints-${tag}`), host_name: host } },
    status_server: { enabled: false },
  };
}

async function pipeline(env: Record<string, string>, run: string, dir: string, expected: number, processors: number, pids: { es?: number; kafka?: number }): Promise<ModeResult> {
  const tag = `${run}-p${processors}`;
  const raw = pipelineConfig(env, tag, dir);
  const cfg = validateConfig(structuredClone(raw), 'throughput benchmark', {});
  const es = esClient(cfg.elasticsearch);
  const pattern = `${cfg.elasticsearch.indices.logs}-*`;
  const children: Child[] = [];
  const profDir = process.env.STACKWATCH_BENCH_CPU_PROF;
  try {
    await ensureTopics(cfg.kafka, Object.values(cfg.kafka.topics));
    for (let i = 1; i <= processors; i++) {
      const port = await freePort();
      const file = join(dir, `processor-${tag}-${i}.yaml`);
      const checkpoint = { enabled: process.env.STACKWATCH_BENCH_CHECKPOINT !== 'off', topic: `swbench.${tag}.state`, instance: `p${i}` };
      writeFileSync(file, stringify({ ...raw, kafka: { ...raw.kafka, client_id: `swbench-${tag}-${i}` }, processor: { checkpoint }, status_server: { listen: `127.0.0.1:${port}` } }));
      const nodeArgs = profDir ? ['--cpu-prof', '--cpu-prof-dir', profDir, '--cpu-prof-name', `processor-${tag}-${i}.cpuprofile`] : [];
      const c = spawnStackwatch(`processor ${i}`, ['run', '--role', 'processor', '--config', file], nodeArgs);
      c.port = port;
      children.push(c);
    }
    const failed = () => deadChild(children);
    const assignment = await Promise.race([
      waitForAssignment(cfg, processors),
      (async () => {
        while (!failed()) await sleep(200);
        throw new Error(failed());
      })(),
    ]);
    const collectorFile = join(dir, `collector-${tag}.yaml`);
    writeFileSync(collectorFile, stringify({ ...raw, kafka: { ...raw.kafka, client_id: `swbench-${tag}-collector` } }));
    progress(
      `throughput: ${processors} processor(s) in group ${cfg.kafka.consumer_group}: ${children.map((_, i) => `processor ${i + 1} has partitions ${assignment.get(`swbench-${tag}-${i + 1}-processor`)?.join(',') || '-'}`).join('; ')}`,
    );
    const collector = spawnStackwatch(
      'collector',
      ['run', '--role', 'collector', '--config', collectorFile],
      profDir ? ['--cpu-prof', '--cpu-prof-dir', profDir, '--cpu-prof-name', `collector-${tag}.cpuprofile`] : [],
    );
    children.unshift(collector);

    const watched: Watched[] = children.map((c) => ({ label: c.label, pid: c.child.pid!, peakRss: 0, cpu: [] }));
    const sampler = new Sampler(() => indexTotal(es, pattern), [...watched, ...stackWatched(pids)]);
    sampler.start();
    const producedAt: { t: number } = { t: NaN };
    const admin = kafkaClient(cfg.kafka, '-bench-admin').admin();
    await admin.connect();
    const t0 = performance.now();
    // When the collector had everything in Kafka: tells a slow collector from a slow processor.
    const kafkaWatch = (async () => {
      while (Number.isNaN(producedAt.t) && !collector.exit) {
        const ends = await admin.fetchTopicOffsets(cfg.kafka.topics.logs).catch(() => []);
        if (ends.reduce((s, e) => s + Number(e.high), 0) >= expected) producedAt.t = performance.now();
        else await sleep(500);
      }
    })();
    let figures: (ProcessorFigures | undefined)[] = [];
    try {
      await sampler.waitFor(expected, failed);
      figures = await Promise.all(children.slice(1).map((c) => processorFigures(c.port!)));
    } finally {
      await sampler.stop();
      producedAt.t = Number.isNaN(producedAt.t) ? -1 : producedAt.t;
      await kafkaWatch;
      await admin.disconnect();
      await stopChildren(children);
    }
    const exits = children.filter((c) => c.exit?.code !== 0).map((c) => `${c.label} exited with ${c.exit?.code ?? c.exit?.signal}`);
    const w = sampler.window(expected);
    const cpu = sampler.cpu(w);
    const verified = await verify(es, pattern);
    const deadLetters = await es.count({ index: `${cfg.elasticsearch.indices.dead_letter}-*`, allow_no_indices: true, ignore_unavailable: true }).then(
      (r) => r.count,
      () => 0,
    );
    const firstDocAt = (sampler.samples[w.i0].t - t0) / 1000;
    const notes = [
      `logs partitions: ${children
        .slice(1)
        .map((_, i) => `processor ${i + 1} ${assignment.get(`swbench-${tag}-${i + 1}-processor`)?.join(',') || '-'}`)
        .join('; ')}`,
      `events received per processor: ${figures.map((f, i) => `processor ${i + 1} ${f?.received ?? '?'}`).join(', ')}`,
      `_bulk requests per processor (log documents and alerts): ${figures
        .map((f, i) => (f ? `processor ${i + 1} ${f.bulks} taking ${fmt(f.bulkSeconds, 1)} s (mean ${fmt((1000 * f.bulkSeconds) / Math.max(1, f.bulks), 0)} ms)` : `processor ${i + 1} ?`))
        .join(', ')}`,
      `memory at the end per processor: ${figures.map((f, i) => (f ? `processor ${i + 1} V8 heap ${fmt(f.heapTotal / MiB, 0)} MiB, external ${fmt(f.external / MiB, 0)} MiB` : `processor ${i + 1} ?`)).join(', ')}`,
      `collector start → first document indexed ${fmt(firstDocAt, 1)} s; all events in Kafka after ${producedAt.t > 0 ? `${fmt((producedAt.t - t0) / 1000, 1)} s` : '?'}, all indexed after ${fmt((sampler.samples[w.i1].t - t0) / 1000, 1)} s`,
      ...(deadLetters > 0 ? [`${deadLetters} dead letter(s) indexed`] : []),
      ...exits,
    ];
    const stackCpu: { es?: number; kafka?: number } = {};
    sampler.watched.forEach((p, i) => {
      if (p.label === 'elasticsearch') stackCpu.es = cpu.procs[i];
      if (p.label === 'kafka') stackCpu.kafka = cpu.procs[i];
    });
    return {
      mode: `pipeline, ${processors} processor${processors > 1 ? 's' : ''}`,
      events: expected,
      seconds: w.seconds,
      rate: w.rate,
      procs: watched.map((p, i) => ({ label: p.label, peakRss: p.peakRss, cpu: cpu.procs[i] })),
      machineCpu: cpu.machine,
      stackCpu,
      perEvent: new Map(sampler.perEvent(expected).map((us, i) => [sampler.watched[i].label, us])),
      verified,
      notes,
    };
  } finally {
    for (const c of children) if (!c.exit) c.child.kill('SIGKILL');
    for (const kind of Object.values(cfg.elasticsearch.indices)) await deleteIndices(es, `${kind}-*`);
    await deleteTemplates(es, Object.values(cfg.elasticsearch.indices));
    await es.close();
    await deleteTopics(cfg.kafka, [...Object.values(cfg.kafka.topics), `swbench.${tag}.state`]).catch(() => {});
    await deleteGroups(cfg, [cfg.kafka.consumer_group, `${cfg.kafka.consumer_group}-notify-retry`]);
  }
}

/** What the throughput target leaves for stackwatch on this machine: at TARGET_SHARE of the ceiling, every event
 * may take cpus / rate of CPU time, for everything on the machine — and all run on the same CPUs. */
function cpuBudget(results: ModeResult[], ceil: number, cpus: number): string {
  const target = TARGET_SHARE * ceil;
  const budget = (cpus * 1e6) / target;
  const atCeiling = results.find((r) => r.procs.length === 0 && r.rate === ceil)?.perEvent.get('elasticsearch');
  const best = results.filter((r) => r.procs.length > 0).sort((a, b) => b.rate - a.rate)[0];
  if (!best || atCeiling === undefined) return 'CPU budget: not measured';
  const parts = [...best.perEvent].filter(([, v]) => Number.isFinite(v));
  const spent = parts.reduce((sum, [, v]) => sum + v, 0);
  return (
    `CPU budget: ${TARGET_SHARE * 100} % of the ceiling (${fmt(target, 0)} events/s) on ${cpus} CPUs leaves ${fmt(budget, 0)} µs of CPU per event ` +
    `for everything on the machine; Elasticsearch alone took ${fmt(atCeiling, 0)} µs at the ceiling, leaving ${fmt(budget - atCeiling, 0)} µs for ` +
    `the collector, Kafka and the processors together. The best pipeline run (${best.mode}) spent ${fmt(spent, 0)} µs per event: ` +
    parts.map(([label, v]) => `${label} ${fmt(v, 0)}`).join(', ')
  );
}

export async function deleteGroups(cfg: Config, groups: string[]): Promise<void> {
  const admin = kafkaClient(cfg.kafka, '-bench-admin').admin();
  try {
    await admin.connect();
    await admin.deleteGroups(groups).catch(() => {});
  } finally {
    await admin.disconnect();
  }
}

// ---- the benchmark -------------------------------------------------------------------------------------

/** What a pipeline benchmark starts with: the local stack, the run's name (`<id>-<time>`), a temporary directory
 * with `logs/`, the bundle built (by the first `stackwatch` when a source changed: here, not inside a measurement
 * or by two processes at once), the stack's pids, a configuration for its admin calls and an Elasticsearch client. */
export function pipelineBenchSetup(id: string, name: string) {
  const env = startLocalStack('ignore');
  const run = `${id}-${Date.now().toString(36)}`;
  const dir = realpathSync(mkdtempSync(join(tmpdir(), `stackwatch-${name}-`)));
  mkdirSync(join(dir, 'logs'));
  spawnSync(process.execPath, [BIN, '--help'], { stdio: 'ignore', cwd: ROOT });
  const admin = validateConfig({ kafka: { brokers: [env.STACKWATCH_KAFKA_BROKERS] }, elasticsearch: { url: env.STACKWATCH_ES_URL } }, `${name} benchmark`, {});
  return { env, run, dir, pids: stackPids(), admin, es: esClient(admin.elasticsearch) };
}

export const throughputBench: Benchmark = {
  name: 'throughput',
  summary: `file → Kafka → 1 and 2 processor processes → Elasticsearch, events/s against the direct _bulk ceiling (target ≥ ${TARGET_SHARE * 100} %, RSS ≤ ${TARGET_RSS_MIB} MiB)`,
  async run({ minLines }) {
    const { env, run, dir, pids, es } = pipelineBenchSetup('tp', 'throughput');
    const started = Date.now();
    const results: ModeResult[] = [];
    let corpusLine = '';
    let expected = 0;
    try {
      const corpus = await buildCorpus(minLines, (s) => progress(`throughput: ${s}`));
      const paths = balancedNames(join(dir, 'logs'), HOST, FILES);
      splitIntoFiles(readFileSync(corpus.path), paths);
      progress(`throughput: parsing the ${FILES} files as the pipeline does (for the ceiling's documents and the expected count)`);
      let { docs, unusable } = await documentsOf(paths, HOST);
      expected = docs.length;
      corpusLine = `corpus: ${fmt(corpus.bytes / MiB, 0)} MiB, ${corpus.lines.toLocaleString('en')} lines (${corpus.rounds} × the bundled logs) in ${FILES} files, 2 per partition of ${PARTITIONS} → ${expected.toLocaleString('en')} events (multi-line folded)${unusable > 0 ? `, ${unusable} unusable line(s) (dead letters)` : ''}; documents ${fmt(docs.reduce((s, d) => s + d.body.length, 0) / MiB, 0)} MiB of JSON`;
      progress(`throughput: ${expected} events`);

      for (const senders of [1, 2]) {
        const tag = `${run}-c${senders}`;
        const cfg = validateConfig(
          {
            kafka: { brokers: [env.STACKWATCH_KAFKA_BROKERS] },
            elasticsearch: {
              url: env.STACKWATCH_ES_URL,
              indices: { logs: `swbench-${tag}-logs`, alerts: `swbench-${tag}-alerts`, metrics: `swbench-${tag}-metrics`, dead_letter: `swbench-${tag}-dead-letter` },
            },
          },
          'throughput benchmark',
          {},
        );
        progress(`throughput: ceiling, ${senders} _bulk sender(s) …`);
        try {
          const r = await ceiling(es, cfg, docs, senders, pids);
          results.push(r);
          progress(`throughput: ceiling, ${senders} sender(s): ${fmt(r.rate, 0)} docs/s over ${fmt(r.seconds, 1)} s`);
        } finally {
          await deleteIndices(es, `swbench-${tag}-logs-*`);
          await deleteTemplates(es, Object.values(cfg.elasticsearch.indices));
        }
      }
      docs = []; // the pipeline runs do not need them: let the bench process shrink
      for (const processors of [1, 2]) {
        progress(`throughput: pipeline, collector + ${processors} processor process(es) …`);
        const r = await pipeline(env, run, dir, expected, processors, pids);
        results.push(r);
        progress(`throughput: pipeline, ${processors} processor(s): ${fmt(r.rate, 0)} events/s over ${fmt(r.seconds, 1)} s`);
      }
    } finally {
      await es.close();
      rmSync(dir, { recursive: true, force: true });
    }

    const ceil = Math.max(...results.filter((r) => r.procs.length === 0).map((r) => r.rate));
    const m = machine();
    const rows: (string | number)[][] = [['mode', 'events', 'seconds', 'events/s', '% of ceiling', 'peak RSS MiB (collector / processors)', 'max _version']];
    for (const r of results) {
      rows.push([
        r.mode,
        r.events.toLocaleString('en'),
        fmt(r.seconds, 1),
        fmt(r.rate, 0),
        fmt((100 * r.rate) / ceil, 0),
        r.procs.length === 0 ? '-' : r.procs.map((p) => fmt(p.peakRss / MiB, 0)).join(' / '),
        String(r.verified.maxVersion),
      ]);
    }
    const cpuRows: (string | number)[][] = [['mode', 'machine CPU %', 'elasticsearch % (µs/event)', 'kafka % (µs/event)', 'collector % (µs/event)', 'processors % (µs/event)']];
    const us = (r: ModeResult, label: string) => (r.perEvent.has(label) ? ` (${fmt(r.perEvent.get(label)!, 0)})` : '');
    for (const r of results) {
      cpuRows.push([
        r.mode,
        fmt(r.machineCpu, 0),
        r.stackCpu.es === undefined ? '?' : `${fmt(r.stackCpu.es, 0)}${us(r, 'elasticsearch')}`,
        r.stackCpu.kafka === undefined ? '?' : `${fmt(r.stackCpu.kafka, 0)}${us(r, 'kafka')}`,
        r.procs.length === 0 ? '-' : `${fmt(r.procs[0].cpu, 0)}${us(r, 'collector')}`,
        r.procs.length === 0
          ? '-'
          : r.procs
              .slice(1)
              .map((p) => `${fmt(p.cpu, 0)}${us(r, p.label)}`)
              .join(' / '),
      ]);
    }
    const pipelines = results.filter((r) => r.procs.length > 0);
    const best = Math.max(...pipelines.map((r) => r.rate));
    const peakRss = Math.max(...pipelines.flatMap((r) => r.procs.map((p) => p.peakRss)));
    const checks = results.map((r) => {
      const okCount = r.verified.count === r.events;
      const once = r.verified.maxVersion <= 1 && r.verified.overOne === 0 && r.verified.indexTotal === r.verified.count;
      return { r, ok: okCount && once };
    });
    const report = [
      `== throughput: ${throughputBench.summary}`,
      '',
      `machine: ${m.cpus} CPUs, ${m.cpuModel}, ${m.kernel}; Node ${m.node}; stack: Kafka 4.1.1 (1 broker, ${PARTITIONS} partitions per topic), Elasticsearch 8.19.21 (1 node), shared with other users' tests`,
      corpusLine,
      `timing: Elasticsearch's indexing.index_total of the run's indices every ${POLL_MS} ms, first document → last; rate = documents indexed in between / seconds. Batches of ${BULK_MAX_DOCS} (the sink's bulk_max_docs); same ids and index templates on both sides`,
      '',
      table(rows),
      '',
      "CPU over the measured window (machine: % of all CPUs busy, anyone's; processes: % of one CPU), and CPU time per event over the whole run:",
      table(cpuRows),
      '',
      ...pipelines.flatMap((r) => [`${r.mode}:`, ...r.notes.map((n) => `  ${n}`)]),
      ...results.filter((r) => r.procs.length === 0 && r.notes.length > 0).flatMap((r) => [`${r.mode}: ${r.notes.join('; ')}`]),
      '',
      ...checks.map(
        ({ r, ok }) =>
          `check: ${ok ? 'OK    ' : 'FAILED'} ${r.mode}: ${r.verified.count.toLocaleString('en')} documents for ${r.events.toLocaleString('en')} events, max _version ${r.verified.maxVersion}, ${r.verified.overOne} with _version ≥ 2, ${r.verified.indexTotal.toLocaleString('en')} index operations`,
      ),
      `verdict: ${best >= TARGET_SHARE * ceil ? 'MET   ' : 'MISSED'} pipeline ≥ ${TARGET_SHARE * 100} % of the _bulk ceiling: best ${fmt(best, 0)} events/s = ${fmt((100 * best) / ceil, 0)} % of ${fmt(ceil, 0)} docs/s (${pipelines.map((r) => `${r.mode.replace('pipeline, ', '')}: ${fmt((100 * r.rate) / ceil, 0)} %`).join(', ')})`,
      `verdict: ${peakRss <= TARGET_RSS_MIB * MiB ? 'MET   ' : 'MISSED'} peak RSS ≤ ${TARGET_RSS_MIB} MiB per process: highest ${fmt(peakRss / MiB, 0)} MiB`,
      cpuBudget(results, ceil, m.cpus),
      `(bench took ${Math.round((Date.now() - started) / 1000)} s)`,
    ].join('\n');
    return { report, ok: checks.every((c) => c.ok) };
  },
};
