// Benchmark `peer`: stackwatch's log pipeline against the one an operator would build instead with rsyslog (Debian's
// rsyslog, rsyslog-kafka, rsyslog-elasticsearch: imfile → omkafka, imkafka → mmnormalize → omelasticsearch), on the
// same machine, the same corpus (bench/corpus.ts, split into files as `throughput` does), the same local Kafka and
// Elasticsearch (scripts/stack.sh). Three measurements per tool, run side by side (rsyslog, then stackwatch, stage
// by stage, so that each pair shares a window of this VM's drifting speed):
//
//   collector    files → Kafka: done when every message is in the topic (rsyslog: the topic's end offsets reach
//                the messages imfile makes of the files, one a record) or every file is checkpointed to its size
//                (stackwatch: its checkpoints move only once Kafka acknowledged; one record may hold many events,
//                so records say nothing about events there)
//   processor    that topic → Elasticsearch, by a consumer group of its own from the beginning: done when the
//                primaries' index_total of the run's index reaches the expected documents
//   end to end   both processes at once on a fresh topic and index, until the last document
//
// Measured per stage: wall time (first output → done, as `throughput`, and start → done), CPU seconds of every
// process involved (utime + stime of /proc/<pid>/stat from its start, or over the stage for the Kafka and
// Elasticsearch JVMs), peak RSS (VmHWM). Exactly-once: the stage's index must hold exactly the expected documents;
// stackwatch's (deterministic ids) none with _version > 1; rsyslog's omelasticsearch lets Elasticsearch make the
// ids, so a count equal to the messages is the check it allows (a document sent twice is two documents).
//
// The two tools do not make the same events of the lines: rsyslog's imfile starts a message at every line that
// matches startmsg.regex (oslo.log repeats the header on every traceback line, so each is a message), stackwatch
// folds tracebacks and other continuations into the event that started them. Hence CPU per input line (same work
// in) beside CPU per event (each tool's own unit).
//
// STACKWATCH_BENCH_BUSY=1: a CPU burner (node spinning, nice 0) on the last CPU during the measurements, for the
// figures on a busy machine; by default the machine is left quiet.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { loadavg, setPriority } from 'node:os';
import { dirname, join } from 'node:path';
import { stringify } from 'yaml';
import { validateConfig, type Config } from '../core/config.ts';
import type { Client } from '../core/elastic.ts';
import { deleteTopics, ensureTopics, kafkaClient } from '../core/kafka.ts';
import { buildCorpus, ROOT } from './corpus.ts';
import { aptInstall, debianVersion, ensureDebianTool, fmt, machine, MiB, progress, stackwatchNodeArgs, table, type Benchmark } from './measure.ts';
import {
  balancedNames,
  BIN,
  countEvents,
  deadChild,
  deleteIndices,
  deleteTemplates,
  indexTotal,
  pipelineConfig,
  Sampler,
  sleep,
  spawnChild,
  spawnStackwatch,
  splitIntoFiles,
  pipelineBenchSetup,
  stackWatched,
  stopChildren,
  verify,
  type Child,
  type Watched,
} from './throughput.ts';

const FILES = 6;
const HOST = 'bench-peer';
const RSYSLOGD = '/usr/sbin/rsyslogd';
const RSYSLOG_PACKAGES = ['rsyslog', 'rsyslog-kafka', 'rsyslog-elasticsearch'];
const RULEBASE = join(ROOT, 'bench', 'oslo.rulebase');
/** imfile's startmsg.regex (POSIX ERE): a line that starts an oslo.log record (date, time, pid). Every other line
 * continues the message before it. The same pattern, as a JS regex, counts the messages to expect. */
const START_MSG = '^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:.]+ [0-9]+ ';
/** Messages per batch through rsyslog's queues and per _bulk request: stackwatch's sink sends 2,000 (bulk_max_docs). */
const BATCH = 2000;
/** Messages a queue holds, 10 batches: room for the input to go on while a batch is out, not a backlog in memory
 * (rsyslog's default main queue holds 100,000 messages: the processor's two queues then grew to 760 MiB of RSS). */
const QUEUE = 10 * BATCH;
/** What a message or event may be: stackwatch caps an event at 1 MiB; rsyslog's default (8 KiB) would cut the
 * corpus' longest messages (12 KB: XML dumps), and imfile would make a second message of the rest. */
const MAX_MESSAGE = '1m';
/** After a stage is done: how long more output is waited for before it is counted (a late duplicate shows). */
const SETTLE_MS = 2000;

type Tool = 'rsyslog' | 'stackwatch';
type Stage = 'collector' | 'processor' | 'end to end';

interface Check {
  ok: boolean;
  text: string;
}

interface StageResult {
  tool: Tool;
  /** What the tables call it, when not its tool's name: a baseline checkout of stackwatch. */
  label?: string;
  stage: Stage;
  /** Messages (rsyslog) or events (stackwatch) the tool made of the lines. */
  events: number;
  lines: number;
  /** First output (a Kafka record, a checkpoint, a document) → done. */
  seconds: number;
  /** The first process started → done. */
  total: number;
  /** The tool's own processes: CPU seconds from their start to done, peak RSS. */
  procs: { label: string; cpu: number; peakRss: number }[];
  /** The stack's JVMs: CPU seconds over the stage. */
  kafka?: number;
  es?: number;
  /** Every other process's CPU over the stage (others' tests and benchmarks, this one's sampling), % of one CPU. */
  others: number;
  checks: Check[];
  notes: string[];
}

// ---- rsyslog ---------------------------------------------------------------------------------------------

/** The pids of the processes named rsyslogd running now. */
function rsyslogdPids(): number[] {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .filter((d) => {
      try {
        return readFileSync(`/proc/${d}/comm`, 'utf8').trim() === 'rsyslogd';
      } catch {
        return false; // gone meanwhile
      }
    })
    .map(Number);
}

/** Installs Debian's rsyslog with its Kafka and Elasticsearch modules when they are missing, without ever starting
 * the system's daemon (see aptInstall); returns what the report should say about it. */
function ensureRsyslog(): string[] {
  const installed = (pkg: string) => spawnSync('dpkg-query', ['-W', '-f', '${Status}', pkg], { encoding: 'utf8' }).stdout?.trim() === 'install ok installed';
  const missing = RSYSLOG_PACKAGES.filter((p) => !installed(p));
  if (missing.length === 0 && existsSync(RSYSLOGD)) return [];
  const before = new Set(rsyslogdPids());
  aptInstall(missing.length > 0 ? missing : RSYSLOG_PACKAGES, "the peer benchmark's rsyslog pipeline", { noServices: true });
  // policy-rc.d forbids it, but a package that starts its daemon some other way would leave the system's rsyslogd
  // running (and reading /dev/log): stopped at once, by pid, and said in the report.
  const started = rsyslogdPids().filter((p) => !before.has(p));
  for (const pid of started) process.kill(pid, 'SIGTERM');
  return [
    `installed ${missing.join(' ')} with apt-get${started.length === 0 ? ' (no rsyslogd started by it)' : ''}`,
    ...(started.length > 0 ? [`WARNING: the install started the system's rsyslogd (pid ${started.join(', ')}); stopped`] : []),
  ];
}

/** The messages imfile makes of the files with startmsg.regex START_MSG: one per matching line, and one for the
 * text before a file's first match (checked against imfile once: 2 files, one starting with a continuation line). */
function rsyslogMessages(paths: string[]): Map<string, number> {
  const start = new RegExp(START_MSG);
  const per = new Map<string, number>();
  for (const path of paths) {
    const text = readFileSync(path, 'latin1');
    let n = 0;
    for (let at = 0; at < text.length;) {
      const nl = text.indexOf('\n', at);
      const end = nl < 0 ? text.length : nl;
      if (at === 0 || start.test(text.slice(at, Math.min(end, at + 200)))) n++;
      at = end + 1;
    }
    per.set(path, n);
  }
  return per;
}

/** Where an rsyslog run that stalled short lost its messages: the topic's records, and the documents per file
 * against the messages of each (the `file` field of the documents). */
async function rsyslogShortfall(es: Client, records: () => Promise<number>, perFile: Map<string, number>, index?: string): Promise<string[]> {
  const out = [`the topic holds ${(await records()).toLocaleString('en')} records`];
  if (index) {
    await es.indices.refresh({ index, ignore_unavailable: true });
    const r = await es.search({ index, size: 0, aggs: { files: { terms: { field: 'file.keyword', size: 1000 } } } });
    const got = new Map((r.aggregations as { files: { buckets: { key: string; doc_count: number }[] } }).files.buckets.map((b) => [b.key, b.doc_count]));
    const short = [...perFile].filter(([path, n]) => got.get(path) !== n).map(([path, n]) => `${path}: ${got.get(path) ?? 0} documents for ${n} messages`);
    out.push(short.length > 0 ? `short: ${short.join(', ')}` : 'every file has its documents');
  }
  return out;
}

interface RsyslogCommon {
  /** The instance's own directory: its state files (workDirectory), its pid file, its own messages. */
  dir: string;
  broker: string;
  topic: string;
}

/** What every instance shares: its own work directory, the message size, and its own messages (start, errors of its
 * modules) into a file of its own (processInternalMessages: not to the system's /dev/log). */
function rsyslogGlobals(dir: string): string[] {
  return [
    `global(workDirectory="${dir}" maxMessageSize="${MAX_MESSAGE}" processInternalMessages="on")`,
    `main_queue(queue.type="LinkedList" queue.size="${QUEUE}" queue.dequeueBatchSize="${BATCH}")`,
  ];
}

const internalLog = (dir: string) => [`*.* action(type="omfile" file="${join(dir, 'rsyslogd.log')}")`];

/** Stage 1: imfile, one input per file, multi-line by startmsg.regex → omkafka, as JSON with host, file and msg.
 * readTimeout: a file's last message has no next start line to end it; after 1 s of quiet it is sent as it is. */
export function rsyslogCollectorConf(o: RsyslogCommon & { files: string[] }): string {
  const common = `tag="openstack:" ruleset="ship" readMode="0" freshStartTail="off" addMetadata="on" escapeLF="off" readTimeout="1"`;
  return [
    ...rsyslogGlobals(o.dir),
    'module(load="imfile")',
    'module(load="omkafka")',
    'template(name="kafkaJson" type="list" option.jsonf="on") {',
    '  property(outname="host" name="hostname" format="jsonf")',
    '  property(outname="file" name="$!metadata!filename" format="jsonf")',
    '  property(outname="msg" name="msg" format="jsonf")',
    '}',
    // No key: librdkafka's partitioner spreads the records over the topic's 3 partitions.
    `ruleset(name="ship") {`,
    `  action(type="omkafka" broker=["${o.broker}"] topic="${o.topic}" template="kafkaJson" partitions.auto="on")`,
    '}',
    ...o.files.map((f) => `input(type="imfile" file="${f}" ${common} startmsg.regex="${START_MSG}")`),
    ...internalLog(o.dir),
    '',
  ].join('\n');
}

/** Stage 2: imkafka (a group of its own, from the beginning) → mmjsonparse → mmnormalize → omelasticsearch.
 *
 * imkafka hands the record over as it is (msg and rawmsg are both the JSON text; no syslog parsing: no tag, no
 * hostname), so mmnormalize with useRawMsg="on" (or on msg) would match the rulebase against the JSON envelope,
 * which no rule starts like. So mmjsonparse reads the raw record (useRawMsg; no @cee cookie) into $!host, $!file and
 * $!msg, and mmnormalize applies bench/oslo.rulebase to $!msg (its `variable`), adding the header fields
 * (date, time, msec, pid, level, logger, context, message) beside them, or unparsed-data. The document is $!all-json
 * with @timestamp (the record's own time from its header, UTC as stackwatch reads it; the reception time when it
 * has none) and received_at; the index is Elasticsearch's dynamic mapping (rsyslog installs no template). */
export function rsyslogProcessorConf(o: RsyslogCommon & { group: string; esHost: string; esPort: string; index: string }): string {
  return [
    ...rsyslogGlobals(o.dir),
    'module(load="imkafka")',
    'module(load="mmjsonparse")',
    'module(load="mmnormalize")',
    'module(load="omelasticsearch")',
    'template(name="received" type="list") { property(name="timegenerated" dateFormat="rfc3339") }',
    'template(name="esDoc" type="list") {',
    '  constant(value="{\\"@timestamp\\":\\"") property(name="$.ts")',
    '  constant(value="\\",\\"received_at\\":\\"") property(name="timegenerated" dateFormat="rfc3339")',
    // $!all-json without its opening brace: the fields above come first in the same object.
    '  constant(value="\\",") property(name="$!all-json" position.from="2")',
    '}',
    `ruleset(name="index" queue.type="LinkedList" queue.size="${QUEUE}" queue.dequeueBatchSize="${BATCH}") {`,
    '  action(type="mmjsonparse" cookie="" useRawMsg="on")',
    `  action(type="mmnormalize" ruleBase="${RULEBASE}" variable="$!msg")`,
    '  if $!date != "" then { set $.ts = $!date & "T" & $!time & "." & $!msec & "Z"; } else { set $.ts = exec_template("received"); }',
    // Bulk mode, one _bulk request per dequeued batch (BATCH, as stackwatch's sink); a queue of its own so that
    // parsing goes on while a request is out; retried without end while Elasticsearch is away. Documents it
    // rejects are not retried (retryfailures off, the default): they are written to errorFile and missing.
    `  action(type="omelasticsearch" server="${o.esHost}" serverport="${o.esPort}" esVersion.major="8" searchIndex="${o.index}" template="esDoc"`,
    `         bulkmode="on" errorFile="${join(o.dir, 'es-errors.json')}" action.resumeRetryCount="-1"`,
    `         queue.type="LinkedList" queue.size="${QUEUE}" queue.dequeueBatchSize="${BATCH}")`,
    '}',
    `input(type="imkafka" broker=["${o.broker}"] topic="${o.topic}" consumergroup="${o.group}" confParam=["auto.offset.reset=smallest"] ruleset="index")`,
    ...internalLog(o.dir),
    '',
  ].join('\n');
}

/** Writes the config into the instance's directory and has rsyslogd check it (-N1); returns what starts it, in the
 * foreground with its own pid file: never the system's configuration or pid file. */
function rsyslogd(label: string, dir: string, conf: string): () => Child {
  mkdirSync(dir, { recursive: true });
  const file = join(dir, 'rsyslog.conf');
  writeFileSync(file, conf);
  const check = spawnSync(RSYSLOGD, ['-N1', '-f', file], { encoding: 'utf8' });
  if (check.status !== 0) throw new Error(`rsyslogd -N1 -f ${file}: ${(check.stderr || check.stdout).trim().split('\n').slice(-5).join(' | ')}`);
  return () => spawnChild(label, RSYSLOGD, ['-n', '-f', file, '-i', join(dir, 'rsyslogd.pid')]);
}

/** What an instance said about itself beyond its start and stop (module errors, suspended actions), and the
 * documents Elasticsearch refused. */
function rsyslogTrouble(dir: string): string[] {
  const read = (f: string) => (existsSync(join(dir, f)) ? readFileSync(join(dir, f), 'utf8').trim() : '');
  const said = read('rsyslogd.log')
    .split('\n')
    .filter((l) => l && !/origin software="rsyslogd".*\] (start|exiting on signal)/.test(l));
  const refused = read('es-errors.json');
  return [
    ...(said.length > 0 ? [`${said.length} message(s) of its own, the first: ${said[0].slice(0, 300)}`] : []),
    ...(refused ? [`errorFile: ${refused.split('\n').length} failed _bulk reply/replies: ${refused.slice(0, 300)}`] : []),
  ];
}

// ---- stackwatch ------------------------------------------------------------------------------------------

/** Bytes of the files up to which the collector's checkpoints say Kafka acknowledged everything (the checkpoint
 * files of collectors/state.ts: per file identity, its path and offset). */
function checkpointed(dir: string, sizes: Map<string, number>): number {
  const at = new Map<string, number>();
  let names: string[] = [];
  try {
    names = readdirSync(dir).filter((n) => n.endsWith('.checkpoints.json'));
  } catch {
    return 0; // no checkpoint yet
  }
  for (const name of names) {
    try {
      const saved = JSON.parse(readFileSync(join(dir, name), 'utf8')) as { files?: Record<string, { path: string; offset: number }> };
      for (const cp of Object.values(saved.files ?? {})) at.set(cp.path, Math.max(at.get(cp.path) ?? 0, cp.offset));
    } catch {
      // replaced while read (they are written by rename): the next poll reads the new one
    }
  }
  return [...sizes].reduce((sum, [path, size]) => sum + Math.min(size, at.get(path) ?? 0), 0);
}

/** A stackwatch pipeline of the run (`tag`): its config files (collector, processor) and its parsed config. */
function stackwatchSetup(env: Record<string, string>, tag: string, dir: string) {
  const raw = pipelineConfig(env, tag, dir, HOST);
  const cfg = validateConfig(structuredClone(raw), 'peer benchmark', {});
  const collector = join(dir, `collector-${tag}.yaml`);
  const processor = join(dir, `processor-${tag}.yaml`);
  writeFileSync(collector, stringify({ ...raw, kafka: { ...raw.kafka, client_id: `swbench-${tag}-collector` } }));
  // The processor as `throughput` runs it: state checkpoints on (unless STACKWATCH_BENCH_CHECKPOINT=off), on a
  // topic of the run's own.
  const checkpoint = { enabled: process.env.STACKWATCH_BENCH_CHECKPOINT !== 'off', topic: `swbench.${tag}.state`, instance: 'p1' };
  writeFileSync(processor, stringify({ ...raw, kafka: { ...raw.kafka, client_id: `swbench-${tag}-1` }, processor: { checkpoint } }));
  return { cfg, collector, processor, checkpoints: raw.collectors.openstack_logs.checkpoint_dir };
}

/** The collector as a compute host runs it: `stackwatch-collector` (bin/stackwatch-collector.mjs, with its node
 * options), or `stackwatch run --role collector` in a baseline checkout older than it. */
const collectorBin = (bin: string) => join(dirname(bin), 'stackwatch-collector.mjs');
const swCollector = (files: string, bin = BIN) =>
  existsSync(collectorBin(bin))
    ? spawnStackwatch('stackwatch collector', ['--config', files], [], collectorBin(bin))
    : spawnStackwatch('stackwatch collector', ['run', '--role', 'collector', '--config', files], [], bin);
const swProcessor = (files: string, bin = BIN) => spawnStackwatch('stackwatch processor', ['run', '--role', 'processor', '--config', files], [], bin);

/** STACKWATCH_BENCH_BASELINE=DIR: another checkout of stackwatch (a git worktree of an older commit, with its
 * node_modules) whose pipeline is measured too, after this checkout's: before and after a change, in one run. */
function baseline(): { dir: string; bin: string; label: string } | undefined {
  const dir = process.env.STACKWATCH_BENCH_BASELINE;
  if (!dir) return undefined;
  const bin = join(dir, 'bin', 'stackwatch.mjs');
  if (!existsSync(bin)) throw new Error(`STACKWATCH_BENCH_BASELINE=${dir}: no bin/stackwatch.mjs there`);
  const commit = spawnSync('git', ['-C', dir, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).stdout?.trim() || dir;
  return { dir, bin, label: `stackwatch ${commit} (baseline)` };
}

// ---- measuring -------------------------------------------------------------------------------------------

/** Samples the processes `start` starts (and the stack's JVMs) until `count` reaches `expected`; then `check` adds
 * the checks and notes (after SETTLE_MS, the processes still running: a late duplicate shows), and the processes are
 * stopped. `trouble` adds what the tool said about itself to an error. */
async function measure(
  o: { tool: Tool; label?: string; stage: Stage; events: number; lines: number; pids: { es?: number; kafka?: number }; expected: number; what: string; trouble?: () => Promise<string[]> },
  start: () => Child[],
  count: () => Promise<number>,
  check: (r: StageResult) => Promise<void>,
): Promise<StageResult> {
  const t0 = performance.now();
  const children = start();
  try {
    return await sampled(o, children, count, check, t0);
  } finally {
    await stopChildren(children, 30_000);
  }
}

async function sampled(o: Parameters<typeof measure>[0], children: Child[], count: () => Promise<number>, check: (r: StageResult) => Promise<void>, t0: number): Promise<StageResult> {
  const watched: Watched[] = children.map((c) => ({ label: c.label, pid: c.child.pid!, peakRss: 0, cpu: [] }));
  const stack = stackWatched(o.pids);
  const sampler = new Sampler(count, [...watched, ...stack]);
  progress(`peer: ${o.tool} ${o.stage}: ${children.map((c) => `${c.label} pid ${c.child.pid}`).join(', ')}; waiting for ${o.expected.toLocaleString('en')} ${o.what}`);
  sampler.start();
  try {
    await sampler.waitFor(o.expected, () => deadChild(children), o.what);
  } catch (err) {
    const said = (await o.trouble?.().catch((e: Error) => [`(no diagnosis: ${e.message})`])) ?? [];
    throw new Error(`${(err as Error).message}${said.length > 0 ? `; ${said.join('; ')}` : ''}`);
  } finally {
    await sampler.stop();
  }
  const w = sampler.window(o.expected);
  const over = (p: Watched) => (p.cpu[w.i1] ?? NaN) - (p.cpu[0] ?? NaN);
  const jvm = (label: string) => stack.find((p) => p.label === label);
  // Everyone else's CPU over the stage: the machine's busy time (/proc/stat) less ours and the JVMs'.
  const [a, b] = [sampler.samples[0], sampler.samples[w.i1]];
  const elapsed = (b.t - a.t) / 1000;
  const machineBusy = ((b.cpu.busy - a.cpu.busy) / Math.max(1, b.cpu.total - a.cpu.total)) * machine().cpus * elapsed;
  const ours = [...watched, ...stack].reduce((sum, p) => sum + over(p), 0);
  const r: StageResult = {
    tool: o.tool,
    ...(o.label ? { label: o.label } : {}),
    stage: o.stage,
    events: o.events,
    lines: o.lines,
    seconds: w.seconds,
    total: (sampler.samples[w.i1].t - t0) / 1000,
    // Our processes are new: their CPU time at done is what the stage cost them, start-up included.
    procs: watched.map((p) => ({ label: p.label, cpu: p.cpu[w.i1] ?? NaN, peakRss: p.peakRss })),
    kafka: jvm('kafka') && over(jvm('kafka')!),
    es: jvm('elasticsearch') && over(jvm('elasticsearch')!),
    others: (100 * Math.max(0, machineBusy - ours)) / elapsed,
    checks: [],
    notes: [],
  };
  await sleep(SETTLE_MS);
  await check(r);
  return r;
}

/** Documents in the index: exactly `expected`; for stackwatch, none written twice (deterministic ids). */
async function indexChecks(es: Client, pattern: string, r: StageResult): Promise<void> {
  const v = await verify(es, pattern);
  const name = `${r.label ?? r.tool} ${r.stage}`;
  if (r.tool === 'stackwatch') {
    r.checks.push({
      ok: v.count === r.events && v.maxVersion <= 1 && v.overOne === 0 && v.indexTotal === v.count,
      text: `${name}: ${v.count.toLocaleString('en')} documents for ${r.events.toLocaleString('en')} events, max _version ${v.maxVersion}, ${v.overOne} with _version ≥ 2, ${v.indexTotal.toLocaleString('en')} index operations`,
    });
  } else {
    r.checks.push({
      ok: v.count === r.events && v.indexTotal === v.count,
      text: `${name}: ${v.count.toLocaleString('en')} documents for ${r.events.toLocaleString('en')} messages, ${v.indexTotal.toLocaleString('en')} index operations (ids made by Elasticsearch: the count is the check)`,
    });
  }
}

const us = (seconds: number | undefined, n: number) => (seconds === undefined || !Number.isFinite(seconds) ? '?' : fmt((1e6 * seconds) / n, 1));

function stageTable(results: StageResult[]): string {
  const rows: (string | number)[][] = [
    [
      'tool',
      'events',
      'input lines',
      'wall s',
      'start→done s',
      'lines/s',
      'CPU s',
      'CPU µs/line',
      'CPU µs/event',
      'Kafka µs/line',
      'Kafka µs/event',
      'ES µs/line',
      'ES µs/event',
      'peak RSS MiB',
      "others' CPU %",
    ],
  ];
  for (const r of results) {
    const cpu = r.procs.reduce((s, p) => s + p.cpu, 0);
    rows.push([
      `${r.label ?? r.tool} ${r.procs.length > 1 ? '(collector + processor)' : ''}`.trim(),
      `${r.events.toLocaleString('en')} ${r.tool === 'rsyslog' ? 'messages' : 'events'}`,
      r.lines.toLocaleString('en'),
      fmt(r.seconds, 1),
      fmt(r.total, 1),
      fmt(r.lines / r.seconds, 0),
      fmt(cpu, 1),
      us(cpu, r.lines),
      us(cpu, r.events),
      us(r.kafka, r.lines),
      us(r.kafka, r.events),
      us(r.es, r.lines),
      us(r.es, r.events),
      r.procs.map((p) => fmt(p.peakRss / MiB, 0)).join(' / '),
      fmt(r.others, 0),
    ]);
  }
  return table(rows);
}

/** The issue's goals (issue 16), against rsyslog in the same run: CPU per input line of the collector at most 2×
 * rsyslog's and its peak RSS at most 100 MiB; the processor's at most rsyslog's; end to end, done before it. */
const GOALS: Record<Stage, { cpu?: number; rssMiB?: number; ahead?: true }> = {
  collector: { cpu: 2, rssMiB: 100 },
  processor: { cpu: 1 },
  'end to end': { ahead: true },
};

/** Each stackwatch's CPU per input line against rsyslog's, and the stage's goals met or not. */
function ratio(results: StageResult[]): string[] {
  const cpuPerLine = (r: StageResult) => r.procs.reduce((s, p) => s + p.cpu, 0) / r.lines;
  const rs = results.find((x) => x.tool === 'rsyslog');
  return results
    .filter((r) => r.tool === 'stackwatch')
    .map((r) => {
      const x = rs ? cpuPerLine(r) / cpuPerLine(rs) : NaN;
      const goal = GOALS[r.stage];
      const verdicts: string[] = [];
      if (goal.cpu !== undefined && Number.isFinite(x)) verdicts.push(`CPU ≤ ${goal.cpu}× rsyslog's: ${x <= goal.cpu ? 'met' : 'NOT met'}`);
      if (goal.rssMiB !== undefined) {
        const rss = Math.max(...r.procs.map((p) => p.peakRss / MiB));
        verdicts.push(`peak RSS ≤ ${goal.rssMiB} MiB: ${rss <= goal.rssMiB ? 'met' : `NOT met (${fmt(rss, 0)} MiB)`}`);
      }
      if (goal.ahead && rs) verdicts.push(`done before rsyslog (start→done ${fmt(r.total, 1)} s against ${fmt(rs.total, 1)} s): ${r.total < rs.total ? 'met' : 'NOT met'}`);
      return `ratio ${r.label ?? r.tool} / rsyslog, CPU per input line of the tool's own process(es): ${Number.isFinite(x) ? `${fmt(x, 2)}×` : '?'}${verdicts.length ? `; goals: ${verdicts.join(', ')}` : ''}`;
    });
}

// ---- the benchmark -------------------------------------------------------------------------------------

export const peerBench: Benchmark = {
  name: 'peer',
  summary: 'stackwatch vs rsyslog (imfile → omkafka, imkafka → mmnormalize → omelasticsearch) per stage and end to end: CPU per line, wall, RSS',
  async run({ minLines }) {
    const started = Date.now();
    // What else ran: this VM is shared (others' tests and benchmarks load its CPUs and the same Elasticsearch).
    const loadBefore = loadavg()[0];
    const setupNotes = ensureRsyslog();
    const busy = process.env.STACKWATCH_BENCH_BUSY === '1';
    if (busy) ensureDebianTool('taskset', 'util-linux');
    const { env, run, dir, pids, admin, es } = pipelineBenchSetup('peer', 'peer');
    const kafka = kafkaClient(admin.kafka, '-bench-admin').admin();
    await kafka.connect();
    const records = async (topic: string) => (await kafka.fetchTopicOffsets(topic)).reduce((s, e) => s + Number(e.high), 0);
    const esUrl = new URL(env.STACKWATCH_ES_URL);
    const children: Child[] = [];
    const swConfigs: Config[] = [];
    const results: StageResult[] = [];
    const failures: Check[] = [];
    let burner: Child | undefined;
    let corpusLine = '';
    try {
      const corpus = await buildCorpus(minLines, (s) => progress(`peer: ${s}`));
      const paths = balancedNames(join(dir, 'logs'), HOST, FILES);
      splitIntoFiles(readFileSync(corpus.path), paths);
      const sizes = new Map(paths.map((p) => [p, statSync(p).size]));
      const bytes = [...sizes.values()].reduce((a, b) => a + b, 0);
      const lines = corpus.lines;
      const perFile = rsyslogMessages(paths);
      const messages = [...perFile.values()].reduce((a, b) => a + b, 0);
      progress('peer: counting the events stackwatch makes of the files (its own reader, untimed)');
      const { events, unusable } = await countEvents(paths);
      corpusLine =
        `corpus: ${fmt(bytes / MiB, 0)} MiB, ${lines.toLocaleString('en')} lines (${corpus.rounds} × the bundled logs) in ${FILES} files → ` +
        `rsyslog ${messages.toLocaleString('en')} messages (a message per line matching startmsg.regex), stackwatch ${events.toLocaleString('en')} events (multi-line folded)` +
        (unusable > 0 ? `, ${unusable} unusable line(s)` : '');
      progress(`peer: ${corpusLine}`);

      if (busy) {
        const cpu = machine().cpus - 1;
        burner = spawnChild('cpu burner', 'taskset', ['-c', String(cpu), process.execPath, '-e', 'for (;;);']);
        children.push(burner);
        try {
          setPriority(burner.child.pid!, 0);
        } catch {
          // our own niceness is inherited; only raising it back to 0 can be refused
        }
        progress(`peer: busy machine: a CPU burner (pid ${burner.child.pid}) on CPU ${cpu}`);
      }

      const broker = env.STACKWATCH_KAFKA_BROKERS;
      const rs = (tag: string) => ({ topic: `swbench.${run}-${tag}.logs`, index: `swbench-${run}-${tag}-logs`, group: `swbench-${run}-${tag}` });
      const rsMain = rs('rs');
      const rsE2e = rs('rs-e2e');
      // This checkout's stackwatch, and the baseline's if one is given: each with topics and indices of its own.
      const base0 = baseline();
      const sides = [{ tag: 'sw', bin: BIN, label: undefined as string | undefined }, ...(base0 ? [{ tag: 'sw-base', bin: base0.bin, label: base0.label }] : [])].map((x) => ({
        ...x,
        main: stackwatchSetup(env, `${run}-${x.tag}`, dir),
        e2e: stackwatchSetup(env, `${run}-${x.tag}-e2e`, dir),
        collected: false,
      }));
      if (base0) spawnSync(process.execPath, [base0.bin, '--help'], { stdio: 'ignore', cwd: base0.dir }); // its bundle, built here
      swConfigs.push(...sides.flatMap((x) => [x.main.cfg, x.e2e.cfg]));
      await ensureTopics(admin.kafka, [rsMain.topic, rsE2e.topic, ...sides.flatMap((x) => [...Object.values(x.main.cfg.kafka.topics), ...Object.values(x.e2e.cfg.kafka.topics)])]);
      const collectorConf = (name: string, topic: string) => rsyslogCollectorConf({ dir: join(dir, name), broker, topic, files: paths });
      const processorConf = (name: string, t: typeof rsMain) =>
        rsyslogProcessorConf({ dir: join(dir, name), broker, topic: t.topic, group: t.group, esHost: esUrl.hostname, esPort: esUrl.port, index: t.index });
      const base = { lines, pids };
      const rsBase = { ...base, tool: 'rsyslog' as const, events: messages, expected: messages };
      const swBase = { ...base, tool: 'stackwatch' as const, events };
      const swOf = (label: string | undefined) => ({ ...swBase, ...(label ? { label } : {}) });
      // One stage of one tool: measured, checked, its processes stopped; a failure is reported, not thrown.
      const stage = async (name: string, go: () => Promise<StageResult>) => {
        progress(`peer: ${name} …`);
        try {
          const r = await go();
          results.push(r);
          progress(`peer: ${name}: ${fmt(r.seconds, 1)} s, ${fmt(r.lines / r.seconds, 0)} lines/s, CPU ${r.procs.map((p) => `${p.label} ${fmt(p.cpu, 1)} s`).join(', ')}`);
          return true;
        } catch (err) {
          failures.push({ ok: false, text: `${name}: ${(err as Error).message}` });
          progress(`peer: ${name}: FAILED: ${(err as Error).message}`);
          return false;
        }
      };

      // Stage 1: files → Kafka.
      const rsCollected = await stage('rsyslog collector (imfile → omkafka)', () => {
        const d = join(dir, 'rs-collector');
        const start = rsyslogd('rsyslogd (imfile → omkafka)', d, collectorConf('rs-collector', rsMain.topic));
        return measure(
          { ...rsBase, stage: 'collector', what: 'Kafka records', trouble: async () => rsyslogTrouble(d) },
          () => [start()],
          () => records(rsMain.topic),
          async (r) => {
            const n = await records(rsMain.topic);
            r.checks.push({ ok: n === messages, text: `rsyslog collector: ${n.toLocaleString('en')} Kafka records for ${messages.toLocaleString('en')} messages` });
            r.notes.push(...rsyslogTrouble(d));
          },
        );
      });
      for (const side of sides) {
        const sw = side.main;
        side.collected = await stage(`${side.label ?? 'stackwatch'} collector`, () =>
          measure(
            { ...swOf(side.label), stage: 'collector', expected: bytes, what: 'bytes checkpointed' },
            () => [swCollector(sw.collector, side.bin)],
            async () => checkpointed(sw.checkpoints, sizes),
            async (r) => {
              const at = checkpointed(sw.checkpoints, sizes);
              r.checks.push({
                ok: at === bytes,
                text: `${side.label ?? 'stackwatch'} collector: checkpoints at ${at.toLocaleString('en')} of ${bytes.toLocaleString('en')} bytes (Kafka acknowledged every event of the files)`,
              });
              r.notes.push(`${(await records(sw.cfg.kafka.topics.logs)).toLocaleString('en')} Kafka records for ${events.toLocaleString('en')} events`);
            },
          ),
        );
      }

      // Stage 2: that topic → Elasticsearch.
      if (rsCollected)
        await stage('rsyslog processor (imkafka → mmnormalize → omelasticsearch)', async () => {
          const d = join(dir, 'rs-processor');
          const start = rsyslogd('rsyslogd (imkafka → omelasticsearch)', d, processorConf('rs-processor', rsMain));
          const r = await measure(
            {
              ...rsBase,
              stage: 'processor',
              what: 'documents',
              trouble: async () => [...rsyslogTrouble(d), ...(await rsyslogShortfall(es, () => records(rsMain.topic), perFile, rsMain.index))],
            },
            () => [start()],
            () => indexTotal(es, `${rsMain.index}*`),
            async (r) => {
              await indexChecks(es, rsMain.index, r);
              r.notes.push(...rsyslogTrouble(d));
            },
          );
          await deleteIndices(es, rsMain.index); // not beside the next stages' indices
          return r;
        });
      else failures.push({ ok: false, text: 'rsyslog processor: not run (its collector stage failed)' });
      for (const side of sides) {
        const sw = side.main;
        if (side.collected)
          await stage(`${side.label ?? 'stackwatch'} processor`, async () => {
            const pattern = `${sw.cfg.elasticsearch.indices.logs}-*`;
            const r = await measure(
              { ...swOf(side.label), stage: 'processor', expected: events, what: 'documents' },
              () => [swProcessor(sw.processor, side.bin)],
              () => indexTotal(es, pattern),
              (r) => indexChecks(es, pattern, r),
            );
            for (const kind of Object.values(sw.cfg.elasticsearch.indices)) await deleteIndices(es, `${kind}-*`);
            return r;
          });
        else failures.push({ ok: false, text: `${side.label ?? 'stackwatch'} processor: not run (its collector stage failed)` });
      }

      // End to end: both processes at once, fresh topic and index.
      await stage('rsyslog end to end', () => {
        const dc = join(dir, 'rs-e2e-collector');
        const dp = join(dir, 'rs-e2e-processor');
        const said = () => [...rsyslogTrouble(dc), ...rsyslogTrouble(dp)];
        const trouble = async () => [...said(), ...(await rsyslogShortfall(es, () => records(rsE2e.topic), perFile, rsE2e.index))];
        const collector = rsyslogd('rsyslogd collector', dc, collectorConf('rs-e2e-collector', rsE2e.topic));
        const processor = rsyslogd('rsyslogd processor', dp, processorConf('rs-e2e-processor', rsE2e));
        return measure(
          { ...rsBase, stage: 'end to end', what: 'documents', trouble },
          () => [collector(), processor()],
          () => indexTotal(es, `${rsE2e.index}*`),
          async (r) => {
            await indexChecks(es, rsE2e.index, r);
            r.notes.push(...said());
          },
        );
      });
      for (const side of sides) {
        const swE2e = side.e2e;
        await stage(`${side.label ?? 'stackwatch'} end to end`, () => {
          const pattern = `${swE2e.cfg.elasticsearch.indices.logs}-*`;
          return measure(
            { ...swOf(side.label), stage: 'end to end', expected: events, what: 'documents' },
            () => [swCollector(swE2e.collector, side.bin), swProcessor(swE2e.processor, side.bin)],
            () => indexTotal(es, pattern),
            (r) => indexChecks(es, pattern, r),
          );
        });
      }
    } finally {
      await stopChildren(children, 10_000);
      // Everything of the run: consumer groups (first: once the topics are gone, this admin's metadata names
      // partitions no broker hosts, and listGroups fails on them), topics, indices, stackwatch's index templates.
      const cleanup = (what: string) => (err: Error) => progress(`peer: could not delete ${what}: ${err.message}`);
      const groups = (await kafka.listGroups().catch((err: Error) => (cleanup('the consumer groups')(err), { groups: [] }))).groups
        .map((g) => g.groupId)
        .filter((g) => g.startsWith(`swbench-${run}-`));
      if (groups.length > 0) await kafka.deleteGroups(groups).catch(cleanup(`the consumer groups ${groups.join(', ')}`));
      const topics = (await kafka.listTopics().catch(() => [])).filter((t) => t.startsWith(`swbench.${run}-`));
      if (topics.length > 0) await deleteTopics(admin.kafka, topics).catch(cleanup(`the topics ${topics.join(', ')}`));
      await kafka.disconnect();
      await deleteIndices(es, `swbench-${run}-*`);
      for (const cfg of swConfigs) await deleteTemplates(es, Object.values(cfg.elasticsearch.indices));
      await es.close();
      rmSync(dir, { recursive: true, force: true });
    }

    const m = machine();
    const loadAfter = loadavg()[0];
    const byStage = (s: Stage) => results.filter((r) => r.stage === s);
    const checks = [...results.flatMap((r) => r.checks), ...failures];
    const report = [
      `== peer: ${peerBench.summary}`,
      '',
      `machine: ${m.cpus} CPUs, ${m.cpuModel}, ${m.kernel}; Node ${m.node}; ${busy ? 'BUSY: a CPU burner spinning on one CPU throughout' : 'quiet (nothing else started by the benchmark)'}; load average (1 min) ${fmt(loadBefore, 2)} at the start, ${fmt(loadAfter, 2)} at the end`,
      `rsyslog ${debianVersion('rsyslog')} (Debian; omkafka/imkafka on librdkafka ${debianVersion('librdkafka1')}, mmnormalize on liblognorm ${debianVersion('liblognorm5')}); stack: scripts/stack.sh's Kafka (1 broker, 3 partitions per topic) and Elasticsearch (1 node), shared with other users`,
      `rsyslog: imfile (an input per file, startmsg.regex "${START_MSG}", readTimeout 1 s) → omkafka (JSON host/file/msg, no key); imkafka → mmjsonparse (the raw record) → mmnormalize (bench/oslo.rulebase on $!msg) → omelasticsearch (bulkmode, 1 worker, Elasticsearch's dynamic mapping); LinkedList queues of ${QUEUE.toLocaleString('en')} messages, batches of ${BATCH.toLocaleString('en')}; maxMessageSize ${MAX_MESSAGE}`,
      `stackwatch: stackwatch-collector (node ${stackwatchNodeArgs(collectorBin(BIN)).join(' ')}) / stackwatch run --role processor (node ${stackwatchNodeArgs().join(' ')}), configured as the throughput benchmark's (processor state checkpoints ${process.env.STACKWATCH_BENCH_CHECKPOINT === 'off' ? 'off' : 'on'})`,
      corpusLine,
      "wall s: first output (a Kafka record or a checkpoint; a document) → done; start→done: from the first process started. CPU: of the tool's own process(es), from their start (utime + stime, every thread); Kafka and ES: their JVMs over the stage. Per line: per input line; per event: per message (rsyslog) or event (stackwatch). Others' CPU: the machine's busy time over the stage less that of the processes above, in % of one CPU",
      ...setupNotes,
      ...(['collector', 'processor', 'end to end'] as Stage[]).flatMap((s) => {
        const rs = byStage(s);
        if (rs.length === 0) return [];
        const what = { collector: 'files → Kafka', processor: 'Kafka → Elasticsearch', 'end to end': 'files → Kafka → Elasticsearch, both processes at once' }[s];
        return [
          '',
          `-- ${s} (${what})`,
          stageTable(rs),
          ...ratio(rs),
          ...rs.flatMap((r) => [
            ...(r.procs.length > 1 ? [`  ${r.label ?? r.tool}: ${r.procs.map((p) => `${p.label} ${fmt(p.cpu, 1)} s CPU, peak RSS ${fmt(p.peakRss / MiB, 0)} MiB`).join('; ')}`] : []),
            ...r.notes.map((n) => `  ${r.label ?? r.tool}: ${n}`),
          ]),
        ];
      }),
      '',
      ...checks.map((c) => `check: ${c.ok ? 'OK    ' : 'FAILED'} ${c.text}`),
      `(bench took ${Math.round((Date.now() - started) / 1000)} s)`,
    ].join('\n');
    return { report, ok: checks.every((c) => c.ok) };
  },
};
