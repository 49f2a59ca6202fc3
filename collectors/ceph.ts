// The Ceph collector: on its schedule, runs `ceph status`, `ceph health detail` and `ceph df` (all `-f json`)
// through the configured command (plain `ceph`, `ssh mon-1 ceph`, `cephadm shell -- ceph`, …), and produces
//   - one CephHealthEvent per poll (topic health): the status and every standing check with its severity,
//     summary and detail lines — what the ceph-health detector turns into alerts;
//   - metric samples (topic metrics): pool and cluster capacity (the `<resource>.used` / `.total` pairs that
//     `stackwatch trends` reads), OSD and PG counts, degraded objects, and the health as numbers for dashboards.
// Every sample of a poll carries the poll's time. A command that fails (non-zero exit, timeout, output that is
// not the JSON we expect) becomes one dead letter with the reason and the output; the other commands' results
// still go out, except that a failed `health detail` never produces a health event: "could not ask" must not
// read as "all clear" (and resolve every standing alert). A poll returns all this; the scheduler emits it.
import { spawn } from 'node:child_process';
import { z } from 'zod';
import { durationMs } from '../core/config-fields.ts';
import { deadLetter, type CephHealthEvent, type DeadLetter, type MetricEvent } from '../core/events.ts';
import { errorText, type Logger } from '../core/log.ts';
import { dottedIssue } from '../core/schema.ts';
import { defineCollector, type CollectorContext, type Emission, type PollingCollector, type Rejected } from './collector.ts';
import { cronSchedule } from './schedule.ts';

export const COMPONENT = 'ceph-collector';

/** `collectors.ceph`. */
export const CephConfig = z.strictObject({
  /** The ceph command and its connection options, as an argv: e.g. [ceph, --connect-timeout, "5"], or
   * [ssh, mon-1, ceph], or [cephadm, shell, --, ceph]. `status -f json` etc. are appended. */
  command: z.array(z.string().min(1)).min(1).default(['ceph', '--connect-timeout', '10']),
  /** The cluster's name in events and alerts (host.name). */
  cluster_name: z.string().min(1).default('ceph'),
  schedule: cronSchedule.default('*/15 * * * * *'),
  /** A command that has not answered after this long is killed and counted as a failed poll. */
  timeout_ms: durationMs.default(20_000),
});
export type CephConfig = z.infer<typeof CephConfig>;

/** The three questions a poll asks; the configured command's argv comes first. */
export const CEPH_COMMANDS = {
  status: ['status', '-f', 'json'],
  health: ['health', 'detail', '-f', 'json'],
  df: ['df', '-f', 'json'],
} as const;
export type CephCommand = keyof typeof CEPH_COMMANDS;

/** How a command is named in reasons and logs: "ceph health detail -f json". */
export const commandName = (c: CephCommand) => `ceph ${CEPH_COMMANDS[c].join(' ')}`;

/** Output beyond this is not kept (a `ceph df` of thousands of pools is far below it). */
const MAX_OUTPUT_BYTES = 16 * 1024 * 1024;
/** After the timeout's SIGKILL, how long to wait for the pipes to close before giving up on them. */
const KILL_GRACE_MS = 1000;

// ------------------------------------------------------------------------------------------ running a command

export interface CommandResult {
  stdout: string;
  stderr: string;
  /** Exit code; null when killed by a signal or never started. */
  code: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  /** The abort signal ended it (shutdown): not a failure of the cluster. */
  aborted: boolean;
  /** The output passed MAX_OUTPUT_BYTES and the command was killed. */
  overflow: boolean;
  /** It could not be started (ENOENT, EACCES). */
  spawnError?: Error;
  durationMs: number;
}

/** Runs argv with no shell and no stdin, capturing stdout and stderr; kills its whole process group (a wrapper
 * script's children too) after `timeoutMs` or when `signal` aborts. Never rejects. */
export function runCommand(argv: readonly string[], timeoutMs: number, signal?: AbortSignal): Promise<CommandResult> {
  const started = Date.now();
  return new Promise((resolve) => {
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let size = 0;
    let timedOut = false;
    let aborted = false;
    let overflow = false;
    let done = false;
    let spawnError: Error | undefined;
    let exit: { code: number | null; signal: NodeJS.Signals | null } = { code: null, signal: null };
    let timer: NodeJS.Timeout | undefined;
    let grace: NodeJS.Timeout | undefined;

    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      clearTimeout(grace);
      signal?.removeEventListener('abort', onAbort);
      child.stdout?.destroy();
      child.stderr?.destroy();
      resolve({
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        code: exit.code,
        signal: exit.signal,
        timedOut,
        aborted,
        overflow,
        ...(spawnError ? { spawnError } : {}),
        durationMs: Date.now() - started,
      });
    };
    const killGroup = () => {
      if (child.pid === undefined) return;
      try {
        process.kill(-child.pid, 'SIGKILL'); // the group: `ssh`, a wrapper script and what it started
      } catch {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      }
    };
    const kill = () => {
      killGroup();
      // A grandchild that left the group may hold the pipes open: do not wait for it forever.
      grace ??= setTimeout(finish, KILL_GRACE_MS);
    };
    const onAbort = () => {
      aborted = true;
      kill();
    };

    // detached: its own process group, so the timeout can kill everything it started.
    const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const collect = (into: Buffer[]) => (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_OUTPUT_BYTES) {
        if (!overflow) {
          overflow = true;
          kill();
        }
        return;
      }
      into.push(chunk);
    };
    child.stdout.on('data', collect(out));
    child.stderr.on('data', collect(err));
    child.on('error', (e) => {
      spawnError = e;
      finish();
    });
    child.on('exit', (code, sig) => {
      exit = { code, signal: sig };
      clearTimeout(timer);
      // The pipes close right after, unless something the command started still holds them: that is left over
      // (a daemonised helper of a wrapper), killed with the group when the grace is over.
      grace ??= setTimeout(() => {
        killGroup();
        finish();
      }, KILL_GRACE_MS);
    });
    child.on('close', finish);
    timer = setTimeout(() => {
      timedOut = true;
      kill();
    }, timeoutMs);
    if (signal?.aborted) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });
  });
}

// ------------------------------------------------------------------------------------------ parsing the output

export type Parsed<T> = { ok: true; value: T; skipped: string[] } | { ok: false; error: string };

/** The JSON document in a command's stdout. The CLI starts its JSON with a newline, and wrappers (ssh banners,
 * `cephadm shell`'s "Inferring fsid …", deprecation warnings) may print lines before it: the document starts at
 * the first line that starts with `{`, and must run to the end (anything after it is an error). */
export function extractJson(stdout: string): Parsed<unknown> {
  if (stdout.trim() === '') return { ok: false, error: 'empty output' };
  const lines = stdout.split('\n');
  const first = lines.findIndex((l) => l.trimStart().startsWith('{'));
  if (first < 0) return { ok: false, error: `no JSON object in the output (first line: ${clip(lines.find((l) => l.trim() !== '') ?? '')})` };
  const text = lines.slice(first).join('\n');
  try {
    return { ok: true, value: JSON.parse(text), skipped: lines.slice(0, first).filter((l) => l.trim() !== '') };
  } catch (err) {
    return { ok: false, error: `not JSON: ${(err as Error).message}` };
  }
}

const num = z.number();
const HealthStatus = z.enum(['HEALTH_OK', 'HEALTH_WARN', 'HEALTH_ERR']);

/** `ceph health detail -f json` (Luminous and later; `muted` since Octopus). Only what we use; extra fields pass. */
export const HealthDetailJson = z.object({
  status: HealthStatus,
  checks: z
    .record(
      z.string(),
      z.object({
        severity: z.enum(['HEALTH_WARN', 'HEALTH_ERR']),
        summary: z.object({ message: z.string() }),
        detail: z.array(z.object({ message: z.string() })).default([]),
        muted: z.boolean().default(false),
      }),
    )
    .default({}),
});
export type HealthDetailJson = z.infer<typeof HealthDetailJson>;

const OsdCounts = z.object({ num_osds: num, num_up_osds: num, num_in_osds: num });

/** `ceph status -f json`: the OSD and PG counts. The osdmap is nested one level deeper before Octopus. */
export const StatusJson = z.object({
  fsid: z.string().optional(),
  osdmap: z.union([OsdCounts, z.object({ osdmap: OsdCounts }).transform((o) => o.osdmap)]),
  pgmap: z.object({
    num_pgs: num,
    num_objects: num.optional(),
    /** Present only while some objects are degraded / misplaced (Ceph leaves zeros out). */
    degraded_objects: num.optional(),
    misplaced_objects: num.optional(),
    pgs_by_state: z.array(z.object({ state_name: z.string(), count: num })).default([]),
  }),
  /** Whether an mgr is active: without one, `ceph df` still answers (from the monitor) but no longer changes. */
  mgrmap: z.object({ available: z.boolean() }).optional(),
});
export type StatusJson = z.infer<typeof StatusJson>;

/** `ceph df -f json`. Nautilus changed the pool stats: `stored` (logical bytes) appeared, `bytes_used` became
 * raw bytes (with replicas) and `percent_used` a ratio 0..1; before (Luminous, Mimic) `bytes_used` was the
 * logical bytes and `percent_used` a percentage; Jewel had no `percent_used`. Likewise the cluster's raw usage
 * is `total_used_raw_bytes` since Nautilus and `total_used_bytes` before. */
export const DfJson = z.object({
  stats: z.object({
    total_bytes: num,
    total_avail_bytes: num.optional(),
    total_used_bytes: num.optional(),
    total_used_raw_bytes: num.optional(),
  }),
  pools: z.array(
    z.object({
      name: z.string(),
      id: num,
      stats: z.object({ stored: num.optional(), bytes_used: num, max_avail: num, percent_used: num.optional(), objects: num }),
    }),
  ),
});
export type DfJson = z.infer<typeof DfJson>;

function validate<S extends z.ZodType>(schema: S, value: unknown): Parsed<z.infer<S>> {
  const r = schema.safeParse(value);
  if (r.success) return { ok: true, value: r.data, skipped: [] };
  return { ok: false, error: `unexpected JSON: ${dottedIssue(r.error)}` };
}

function parseWith<S extends z.ZodType>(schema: S, stdout: string): Parsed<z.infer<S>> {
  const json = extractJson(stdout);
  if (!json.ok) return json;
  const v = validate(schema, json.value);
  return v.ok ? { ...v, skipped: json.skipped } : v;
}

export const parseHealthDetail = (stdout: string) => parseWith(HealthDetailJson, stdout);
export const parseStatus = (stdout: string) => parseWith(StatusJson, stdout);
export const parseDf = (stdout: string) => parseWith(DfJson, stdout);

// ------------------------------------------------------------------------------------------ events and samples

export interface Sample {
  name: string;
  value: number;
  unit?: string;
  labels?: Record<string, string>;
}

export function healthEvent(h: HealthDetailJson, cluster: string, at: string, fsid?: string): CephHealthEvent {
  return {
    v: 1,
    kind: 'ceph-health',
    '@timestamp': at,
    cluster: { name: cluster, ...(fsid ? { fsid } : {}) },
    status: h.status,
    checks: Object.entries(h.checks).map(([code, c]) => ({
      code,
      severity: c.severity,
      summary: c.summary.message,
      detail: c.detail.map((d) => d.message),
      muted: c.muted,
    })),
  };
}

const HEALTH_VALUE = { HEALTH_OK: 0, HEALTH_WARN: 1, HEALTH_ERR: 2 } as const;

/** ceph.health.status (0 OK, 1 WARN, 2 ERR) and ceph.health.check per standing check (1 warn, 2 err). */
export function healthSamples(h: HealthDetailJson): Sample[] {
  return [
    { name: 'ceph.health.status', value: HEALTH_VALUE[h.status] },
    ...Object.entries(h.checks).map(([code, c]) => ({ name: 'ceph.health.check', value: HEALTH_VALUE[c.severity], labels: { code } })),
  ];
}

/** OSDs up / in / total, PGs, the degraded and misplaced objects (0 when Ceph leaves them out), and whether an
 * mgr is active (1/0). */
export function statusSamples(s: StatusJson): Sample[] {
  const out: Sample[] = [
    { name: 'ceph.osd.total', value: s.osdmap.num_osds },
    { name: 'ceph.osd.up', value: s.osdmap.num_up_osds },
    { name: 'ceph.osd.in', value: s.osdmap.num_in_osds },
    { name: 'ceph.pg.total', value: s.pgmap.num_pgs },
    { name: 'ceph.pg.active_clean', value: s.pgmap.pgs_by_state.filter((p) => p.state_name === 'active+clean').reduce((n, p) => n + p.count, 0) },
    { name: 'ceph.objects.degraded', value: s.pgmap.degraded_objects ?? 0 },
    { name: 'ceph.objects.misplaced', value: s.pgmap.misplaced_objects ?? 0 },
  ];
  if (s.pgmap.num_objects !== undefined) out.push({ name: 'ceph.objects.total', value: s.pgmap.num_objects });
  if (s.mgrmap) out.push({ name: 'ceph.mgr.available', value: s.mgrmap.available ? 1 : 0 });
  return out;
}

/** Per pool: used (logical bytes stored), max_avail, total = used + max_avail, percent_used (Ceph's own
 * figure, as a percentage 0..100: its ratio ×100 since Nautilus), objects; and the cluster's raw bytes. */
export function dfSamples(d: DfJson): Sample[] {
  const out: Sample[] = [];
  for (const p of d.pools) {
    const s = p.stats;
    const nautilus = s.stored !== undefined;
    const used = nautilus ? s.stored! : s.bytes_used;
    const total = used + s.max_avail;
    const percent = s.percent_used === undefined ? (total > 0 ? (used / total) * 100 : 0) : nautilus ? s.percent_used * 100 : s.percent_used;
    const labels = { pool: p.name };
    out.push(
      { name: 'ceph.pool.used', value: used, unit: 'bytes', labels },
      { name: 'ceph.pool.max_avail', value: s.max_avail, unit: 'bytes', labels },
      { name: 'ceph.pool.total', value: total, unit: 'bytes', labels },
      { name: 'ceph.pool.percent_used', value: percent, unit: 'percent', labels },
      { name: 'ceph.pool.objects', value: s.objects, labels },
    );
  }
  const rawUsed = d.stats.total_used_raw_bytes ?? d.stats.total_used_bytes;
  if (rawUsed !== undefined) out.push({ name: 'ceph.cluster.used', value: rawUsed, unit: 'bytes' });
  out.push({ name: 'ceph.cluster.total', value: d.stats.total_bytes, unit: 'bytes' });
  if (d.stats.total_avail_bytes !== undefined) out.push({ name: 'ceph.cluster.avail', value: d.stats.total_avail_bytes, unit: 'bytes' });
  return out;
}

export function metricEvents(samples: Sample[], cluster: string, at: string): MetricEvent[] {
  return samples.map((s) => ({
    v: 1,
    '@timestamp': at,
    source: 'ceph',
    host: { name: cluster },
    metric: { name: s.name, value: s.value, ...(s.unit ? { unit: s.unit } : {}) },
    labels: s.labels ?? {},
  }));
}

// ------------------------------------------------------------------------------------------ the collector

/** What one poll produced: the events, and (as an emission) their messages. */
export interface PollResult extends Emission {
  at: string;
  health?: CephHealthEvent;
  metrics: MetricEvent[];
  deadLetters: DeadLetter[];
}

interface Failure {
  command: CephCommand;
  reason: string;
  hint: string;
  payload: string;
}

const HINTS = {
  timeout: 'the monitors did not answer in time: check `ceph -s` from this host, the mon daemons and the network to them, and collectors.ceph.timeout_ms',
  exit: 'run the same command by hand as the collector user: check collectors.ceph.command (conf, keyring, --connect-timeout, ssh access)',
  unreachable: 'the ceph CLI reached no monitor within its --connect-timeout: check the mon addresses (mon host in the conf, -m), the network to them and the mon daemons',
  spawn: 'collectors.ceph.command[0] is not installed or not executable by the collector user',
  output: 'the command printed something other than the JSON expected (a wrapper banner on stdout, a Ceph version this collector does not know?): the dead letter holds the output',
};

function clip(s: string, max = 300): string {
  const t = s.trim();
  return t.length > max ? `${t.slice(0, max)}…` : t;
}

/** The line of stderr that says what went wrong: the last non-empty one (Ceph prints its log noise first,
 * the error — "timed out", "[errno 13] RADOS permission denied", a traceback's exception — last). */
function stderrLine(stderr: string): string {
  const lines = stderr
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  return clip(lines.at(-1) ?? '(no output on stderr)');
}

function outputOf(r: CommandResult): string {
  return r.stderr.trim() === '' ? r.stdout : `${r.stdout}${r.stdout.endsWith('\n') || r.stdout === '' ? '' : '\n'}--- stderr ---\n${r.stderr}`;
}

/** Why a finished command's result is unusable, or undefined when it exited 0 (its output is parsed next). */
export function commandFailure(command: CephCommand, r: CommandResult, timeoutMs: number): Omit<Failure, 'command'> | undefined {
  const name = commandName(command);
  if (r.spawnError) return { reason: `${name}: cannot run the command: ${errorText(r.spawnError)}`, hint: HINTS.spawn, payload: '' };
  if (r.timedOut) return { reason: `${name}: timed out after ${timeoutMs} ms`, hint: HINTS.timeout, payload: outputOf(r) };
  if (r.overflow) return { reason: `${name}: more than ${MAX_OUTPUT_BYTES} bytes of output`, hint: HINTS.output, payload: outputOf(r) };
  if (r.code !== 0) {
    const how = r.code === null ? `killed by ${r.signal ?? 'a signal'}` : `exit ${r.code}`;
    const line = stderrLine(r.stderr);
    // The CLI's own --connect-timeout: Pacific prints "timed out"; older releases prefix an errno and "RADOS".
    const hint = /^(\[errno 110\] )?(RADOS )?timed out\b/i.test(line) ? HINTS.unreachable : HINTS.exit;
    return { reason: `${name}: ${how}: ${line}`, hint, payload: outputOf(r) };
  }
  return undefined;
}

export class CephCollector implements PollingCollector<PollResult> {
  readonly schedule: string;
  readonly hint = 'check the Kafka brokers (a failed command is a dead letter, not a failed poll)';
  private readonly log: Logger;
  /** Commands failing at the last poll, so their recovery is logged once. */
  private readonly failing = new Set<CephCommand>();

  constructor(
    private readonly cfg: CephConfig,
    ctx: CollectorContext,
  ) {
    this.log = ctx.log;
    this.schedule = cfg.schedule;
  }

  /** Runs one command and parses its output; a failure is returned, never thrown. */
  private async ask<T>(command: CephCommand, parse: (stdout: string) => Parsed<T>, signal?: AbortSignal): Promise<{ value: T } | { failure: Failure } | { aborted: true }> {
    const argv = [...this.cfg.command, ...CEPH_COMMANDS[command]];
    const r = await runCommand(argv, this.cfg.timeout_ms, signal);
    if (r.aborted) return { aborted: true };
    const failed = commandFailure(command, r, this.cfg.timeout_ms);
    if (failed) return { failure: { command, ...failed } };
    const parsed = parse(r.stdout);
    if (!parsed.ok) return { failure: { command, reason: `${commandName(command)}: ${parsed.error}`, hint: HINTS.output, payload: outputOf(r) } };
    if (parsed.skipped.length > 0) this.log.debug(`${commandName(command)}: skipped ${parsed.skipped.length} line(s) before the JSON`, { first: clip(parsed.skipped[0]) });
    return { value: parsed.value };
  }

  /** One poll: the three commands (at once), then the health event, the samples and the dead letters (each
   * counted as an error of its command). A poll cut short by the signal returns nothing to send. */
  async poll(signal?: AbortSignal): Promise<PollResult> {
    const at = new Date().toISOString();
    const cluster = this.cfg.cluster_name;
    const [status, health, df] = await Promise.all([this.ask('status', parseStatus, signal), this.ask('health', parseHealthDetail, signal), this.ask('df', parseDf, signal)]);
    const result: PollResult = { at, metrics: [], deadLetters: [], records: [] };
    if (signal?.aborted) return result;

    const samples: Sample[] = [];
    const failures: Failure[] = [];
    let fsid: string | undefined;
    if ('value' in status) {
      fsid = status.value.fsid || undefined;
      samples.push(...statusSamples(status.value));
    }
    if ('value' in health) {
      result.health = healthEvent(health.value, cluster, at, fsid);
      samples.push(...healthSamples(health.value));
    }
    if ('value' in df) samples.push(...dfSamples(df.value));
    for (const [command, r] of [
      ['status', status],
      ['health', health],
      ['df', df],
    ] as const) {
      if ('failure' in r) failures.push(r.failure);
      else if ('value' in r && this.failing.delete(command)) this.log.info(`${commandName(command)}: answering again`);
    }
    result.metrics = metricEvents(samples, cluster, at);

    const key = cluster;
    const rejected: Rejected[] = [];
    for (const f of failures) {
      this.failing.add(f.command);
      this.log.warn(f.reason, { cluster, command: [...this.cfg.command, ...CEPH_COMMANDS[f.command]].join(' '), hint: f.hint });
      const letter = deadLetter(COMPONENT, f.reason, f.payload);
      result.deadLetters.push(letter);
      rejected.push({ key, stage: f.command, letter });
    }
    result.records = [
      { topic: 'health', messages: result.health ? [{ key, value: result.health }] : [] },
      { topic: 'metrics', messages: result.metrics.map((m) => ({ key, value: m })) },
    ];
    result.rejected = rejected;
    return result;
  }
}

export const ceph = defineCollector({
  name: 'ceph',
  component: COMPONENT,
  config: CephConfig,
  topics: ['metrics', 'health'],
  example: () => ({ command: ['ceph', '--connect-timeout', '2'], cluster_name: 'ceph', timeout_ms: 5000 }),
  create: (config, ctx) => new CephCollector(config, ctx),
});
