// The configuration: one YAML file, one zod schema, validated once at start-up. The schema is the type.
// Environment variables override URLs and secrets, so a config file can be shared without them.
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import cron from 'node-cron';
import { parseDocument } from 'yaml';
import { z } from 'zod';

export const DEFAULT_CONFIG_PATH = '/etc/stackwatch/stackwatch.yaml';

const hostPort = z.string().regex(/^[A-Za-z0-9._\-[\]:]+:\d{1,5}$/, { error: 'expected host:port' });
const httpUrl = z.url({ protocol: /^https?$/, error: 'expected an http(s) URL' });
const positiveInt = z.number().int().positive();

const KafkaSection = z.strictObject({
  brokers: z.array(hostPort, { error: 'expected an array of host:port' }).min(1, { error: 'expected at least one host:port' }),
  client_id: z.string().min(1).default('stackwatch'),
  topics: z
    .strictObject({
      logs: z.string().min(1).default('stackwatch.logs'),
      dead_letter: z.string().min(1).default('stackwatch.dead-letter'),
      /** Notifications a notifier could not take yet, retried with backoff until delivered. */
      notify_retry: z.string().min(1).default('stackwatch.notify-retry'),
      /** Metric samples from the Zabbix and Ceph collectors (MetricEvent). */
      metrics: z.string().min(1).default('stackwatch.metrics'),
      /** Ceph health (CephHealthEvent), Zabbix problems and host inventory: state, not samples. */
      health: z.string().min(1).default('stackwatch.health'),
    })
    .prefault({}),
  consumer_group: z.string().min(1).default('stackwatch-processor'),
  connection_timeout_ms: positiveInt.default(3000),
  /** A processor that dies is noticed by the group after this long, and its partitions move on. */
  session_timeout_ms: positiveInt.default(10_000),
});

const ElasticsearchSection = z.strictObject({
  url: httpUrl,
  username: z.string().optional(),
  password: z.string().optional(),
  api_key: z.string().optional(),
  indices: z
    .strictObject({
      /** Daily indices `<prefix>-YYYY.MM.DD`, chosen by the event's own timestamp. */
      logs: z.string().min(1).default('stackwatch-logs'),
      alerts: z.string().min(1).default('stackwatch-alerts'),
      /** Daily indices of metric samples (capacity, replication lag, Ceph usage): what `stackwatch trends` reads. */
      metrics: z.string().min(1).default('stackwatch-metrics'),
      /** Daily indices of the dead-letter topic's events (what could not be processed, and why), for Kibana. */
      dead_letter: z.string().min(1).default('stackwatch-dead-letter'),
    })
    .prefault({}),
  bulk_max_docs: positiveInt.default(2000),
  request_timeout_ms: positiveInt.default(30_000),
});

const AlertmanagerSection = z.strictObject({
  url: httpUrl,
  /** Firing alerts are posted again this often so Alertmanager does not time them out (its resolve_timeout is 5m). */
  resend_interval_s: positiveInt.default(60),
});

const NotifySection = z.strictObject({
  pagerduty: z
    .strictObject({
      routing_key: z.string().min(1, { error: 'expected the integration key of a PagerDuty Events API v2 service' }),
      url: httpUrl.default('https://events.pagerduty.com/v2/enqueue'),
    })
    .optional(),
  webhooks: z
    .array(
      z.strictObject({
        name: z.string().regex(/^[a-z0-9-]+$/, { error: 'expected a short name like chatops' }),
        url: httpUrl,
        headers: z.record(z.string(), z.string()).default({}),
      }),
    )
    .default([]),
  /** Maintenance windows: alerts that match every matcher, with a timestamp inside the window, are indexed
   * but not sent. Matchers: rule.id, host.name, service.name, severity; a value ending in * matches a prefix. */
  silences: z
    .array(
      z.strictObject({
        matchers: z.partialRecord(z.enum(['rule.id', 'host.name', 'service.name', 'severity']), z.string().min(1)),
        starts_at: z.iso.datetime({ offset: true, error: 'expected an ISO 8601 time like 2026-11-25T22:00:00Z' }),
        ends_at: z.iso.datetime({ offset: true, error: 'expected an ISO 8601 time like 2026-11-25T23:00:00Z' }),
        comment: z.string().optional(),
      }),
    )
    .default([]),
  /** Firing alerts are sent to the webhooks again this often. */
  renotify_interval_s: positiveInt.default(3600),
});

const OpenstackLogsCollector = z.strictObject({
  paths: z.array(z.string().min(1), { error: 'expected an array of file paths or globs' }).min(1, { error: 'expected at least one path or glob' }),
  poll_interval_ms: positiveInt.default(200),
  /** Where checkpoints (file identity + offset acknowledged by Kafka) are kept. */
  checkpoint_dir: z.string().min(1).default('/var/lib/stackwatch'),
  /** host.name of the events; defaults to this machine's name. */
  host_name: z.string().min(1).default(hostname()),
  /** Largest batch of events sent to Kafka in one request. */
  batch_max_lines: positiveInt.default(5000),
  /** An event (with all its continuation lines) is cut at this size and marked truncated. */
  max_event_bytes: positiveInt.default(1024 * 1024),
  /** A multi-line event still open after this long without new lines is sent as it is. */
  multiline_flush_ms: positiveInt.default(500),
  /** Keep the raw lines (envelopes included) in event.original. */
  keep_original: z.boolean().default(false),
});

/** A node-cron schedule (seconds field first when there are six fields): refused at start-up if invalid. */
const cronSchedule = z.string().refine((v) => cron.validate(v), { error: 'expected a cron expression like "*/30 * * * * *" (every 30 s)' });

/** How a Zabbix item key becomes a metric: `key` is a glob over item keys (`*` any text); the first mapping
 * that matches an item wins. */
const ItemMapping = z.strictObject({
  key: z.string().min(1),
  /** The metric name; `{key}` keeps the item key itself (for items created under stackwatch's names). */
  metric: z.string().regex(/^(?:\{key\}|[a-z0-9_]+(?:\.[a-z0-9_]+)+)$/, { error: 'expected a dotted metric name like db.replication.seconds_behind_master, or {key}' }),
  unit: z.string().optional(),
  /** Multiply the value (e.g. 1024 for KiB → bytes). */
  scale: z.number().positive().default(1),
  /** Labels of the samples, with `{1}`, `{2}` … for the key's parameters: { fs: "{1}" }. */
  labels: z.record(z.string(), z.string()).default({}),
});
export type ItemMapping = z.infer<typeof ItemMapping>;

const ZabbixCollector = z.strictObject({
  /** The frontend's JSON-RPC endpoint, …/api_jsonrpc.php. */
  url: httpUrl,
  /** user.login; or an API token (Zabbix 5.4+), better: it needs no session. */
  username: z.string().min(1).optional(),
  password: z.string().optional(),
  token: z.string().min(1).optional(),
  schedule: cronSchedule.default('*/30 * * * * *'),
  /** Only hosts in these host groups (names); absent: every monitored host. */
  host_groups: z.array(z.string().min(1)).optional(),
  /** Item keys to collect and their metric names; the defaults cover replica lag, Galera and capacity. */
  items: z.array(ItemMapping).optional(),
  /** On the first poll, read this far back (seconds); older than `trends_after_s` is read from trends. */
  backfill_s: positiveInt.default(600),
  /** Ranges older than this (seconds) are read from trends (hourly averages) instead of history. */
  trends_after_s: positiveInt.default(86_400),
  /** Item ids per history.get call. */
  batch_items: positiveInt.default(1000),
  request_timeout_ms: positiveInt.default(30_000),
  checkpoint_dir: z.string().min(1).default('/var/lib/stackwatch'),
});

const CephCollector = z.strictObject({
  /** The ceph command and its connection options, as an argv: e.g. [ceph, --connect-timeout, "5"], or
   * [ssh, mon-1, ceph], or [cephadm, shell, --, ceph]. `status -f json` etc. are appended. */
  command: z.array(z.string().min(1)).min(1).default(['ceph', '--connect-timeout', '10']),
  /** The cluster's name in events and alerts (host.name). */
  cluster_name: z.string().min(1).default('ceph'),
  schedule: cronSchedule.default('*/15 * * * * *'),
  /** A command that has not answered after this long is killed and counted as a failed poll. */
  timeout_ms: positiveInt.default(20_000),
});

export const ConfigSchema = z.strictObject({
  kafka: KafkaSection,
  elasticsearch: ElasticsearchSection,
  alertmanager: AlertmanagerSection.optional(),
  notify: NotifySection.prefault({}),
  collectors: z
    .strictObject({
      openstack_logs: OpenstackLogsCollector.optional(),
      zabbix: ZabbixCollector.optional(),
      ceph: CephCollector.optional(),
    })
    .prefault({}),
  processor: z
    .strictObject({
      /** oslo.log timestamps carry no zone: the zone they were written in (IANA name). */
      timezone: z.string().default('UTC'),
    })
    .prefault({}),
  rules_dir: z.string().optional(),
  /** On SIGTERM, in-flight work is finished and committed within this many seconds; after that the process
   * exits anyway (what was not committed is read again by the next start: nothing is lost). */
  shutdown_timeout_s: positiveInt.default(30),
  /** The process's own HTTP endpoint: /metrics (Prometheus), /healthz (alive), /readyz (connected and working). */
  status_server: z
    .strictObject({
      /** host:port to listen on; port 0 picks a free one (logged at info level). */
      listen: z.string().regex(/^[A-Za-z0-9._\-[\]:]+:\d{1,5}$/, { error: 'expected host:port like 127.0.0.1:9465' }).default('127.0.0.1:9465'),
      enabled: z.boolean().default(true),
    })
    .prefault({}),
});

export type Config = z.infer<typeof ConfigSchema>;

/** A configuration problem, reported as one line that names the file and the field. */
export class ConfigError extends Error {}

/** Environment variables that override the file. Lists are comma-separated. The collectors' variables apply
 * to a collector the file configures (so one can keep its secrets out of the file). */
export const ENV_OVERRIDES: Record<string, string[]> = {
  STACKWATCH_KAFKA_BROKERS: ['kafka', 'brokers'],
  STACKWATCH_ES_URL: ['elasticsearch', 'url'],
  STACKWATCH_ES_USERNAME: ['elasticsearch', 'username'],
  STACKWATCH_ES_PASSWORD: ['elasticsearch', 'password'],
  STACKWATCH_ES_API_KEY: ['elasticsearch', 'api_key'],
  STACKWATCH_ALERTMANAGER_URL: ['alertmanager', 'url'],
  STACKWATCH_PAGERDUTY_ROUTING_KEY: ['notify', 'pagerduty', 'routing_key'],
  STACKWATCH_ZABBIX_URL: ['collectors', 'zabbix', 'url'],
  STACKWATCH_ZABBIX_USER: ['collectors', 'zabbix', 'username'],
  STACKWATCH_ZABBIX_PASSWORD: ['collectors', 'zabbix', 'password'],
  STACKWATCH_ZABBIX_TOKEN: ['collectors', 'zabbix', 'token'],
};

function applyEnv(raw: Record<string, unknown>, env: NodeJS.ProcessEnv): void {
  for (const [name, path] of Object.entries(ENV_OVERRIDES)) {
    const value = env[name];
    if (value === undefined || value === '') continue;
    // A collector's overrides fill in a collector the file configures; they never switch one on.
    if (path[0] === 'collectors' && (raw.collectors as Record<string, unknown> | undefined)?.[path[1]] === undefined) continue;
    let node = raw;
    for (const key of path.slice(0, -1)) {
      if (typeof node[key] !== 'object' || node[key] === null) node[key] = {};
      node = node[key] as Record<string, unknown>;
    }
    const leaf = path[path.length - 1];
    node[leaf] = leaf === 'brokers' ? value.split(',').map((s) => s.trim()).filter(Boolean) : value;
  }
}

function fieldName(path: PropertyKey[]): string {
  return path.reduce<string>((acc, key) => (typeof key === 'number' ? `${acc}[${key}]` : acc ? `${acc}.${String(key)}` : String(key)), '');
}

/** Validates an already-parsed object (env overrides applied); `source` names it in errors. */
export function validateConfig(raw: unknown, source: string, env: NodeJS.ProcessEnv = process.env): Config {
  const obj = raw === null || raw === undefined ? {} : raw;
  if (typeof obj !== 'object' || Array.isArray(obj)) throw new ConfigError(`${source}: expected a mapping at the top level`);
  applyEnv(obj as Record<string, unknown>, env);
  const result = ConfigSchema.safeParse(obj);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const field = fieldName(issue.path);
  let message = issue.message;
  if (issue.code === 'unrecognized_keys') {
    const keys = (issue as { keys: string[] }).keys;
    return fail(source, keys.map((k) => (field ? `${field}.${k}` : k)).join(', '), 'unknown field');
  }
  if (issue.code === 'invalid_type' && message.startsWith('Invalid input: expected') && message.endsWith('received undefined')) {
    message = 'required';
  }
  return fail(source, field || '(top level)', message);
}

function fail(source: string, field: string, message: string): never {
  throw new ConfigError(`${source}: ${field}: ${message}`);
}

export function loadConfig(path: string, env: NodeJS.ProcessEnv = process.env): Config {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : String(code ?? err);
    throw new ConfigError(`${path}: cannot read config: ${why} (pass --config FILE or set STACKWATCH_CONFIG)`);
  }
  const doc = parseDocument(text, { prettyErrors: true });
  if (doc.errors.length > 0) {
    const e = doc.errors[0];
    const line = e.linePos?.[0]?.line;
    throw new ConfigError(`${path}${line ? `:${line}` : ''}: invalid YAML: ${e.message.split('\n')[0]}`);
  }
  return validateConfig(doc.toJS(), path, env);
}
