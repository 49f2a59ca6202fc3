// The configuration: one YAML file, one zod schema, validated once at start-up. The schema is the type.
// Environment variables override URLs and secrets, so a config file can be shared without them.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { hostname } from 'node:os';
import { parseDocument, visit, type Document } from 'yaml';
import { z } from 'zod';
import { collectorEnv, collectorSecrets, collectorsShape } from '../collectors/index.ts';
import { notifierEnv, notifierSecrets, notifiersShape } from '../notifiers/index.ts';
import { logger } from './log.ts';
import { fieldPath, firstIssue } from './schema.ts';
import { fileErrorReason, readPemFile, registerSecret, splitUrlCredentials } from './secrets.ts';
import { durationMs, durationS, filePath, hostPort, hostPortOf, httpUrl, nonEmpty, positiveInt, readFor, secretOf, timeZone, type Ctx } from './config-fields.ts';

export { isTimeZone, MAX_EVENT_BYTES_LIMIT, timeZone } from './config-fields.ts';

export const DEFAULT_CONFIG_PATH = '/etc/stackwatch/stackwatch.yaml';

/** Largest configuration file read: a config is a few KiB; the cap is checked before reading (a 96 MB file used to
 * take 3 GB of memory before its error). */
export const MAX_CONFIG_BYTES = 1024 * 1024;

/** Kafka's own rule for topic names. */
const topicName = z
  .string()
  .regex(/^[A-Za-z0-9._-]{1,249}$/, { error: 'expected a Kafka topic name: 1 to 249 of A-Z a-z 0-9 . _ -' })
  .refine((v) => v !== '.' && v !== '..', { error: 'expected a Kafka topic name other than . and ..' });
/** Daily indices are `<prefix>-YYYY.MM.DD`: Elasticsearch wants them lowercase, without \ / * ? " < > | , # : or
 * spaces, not starting with - _ + (or . for hidden indices). */
const indexPrefix = z.string().regex(/^[a-z0-9][a-z0-9._-]{0,199}$/, { error: 'expected an index name prefix: lowercase a-z 0-9 . _ -, starting with a letter or digit' });

/** Values that must differ across the keys of a section (two kinds of data sharing one topic or index mix). */
function distinct(ctx: Ctx, values: Record<string, string>, what: string, overlaps: (a: string, b: string) => boolean = (a, b) => a === b): void {
  const keys = Object.keys(values);
  for (const [i, a] of keys.entries()) {
    for (const b of keys.slice(0, i)) {
      if (overlaps(values[a], values[b]) || overlaps(values[b], values[a])) {
        ctx.addIssue({
          code: 'custom',
          message: `${JSON.stringify(values[a])} ${values[a] === values[b] ? 'is also' : 'overlaps'} the ${what} of ${b}: each kind needs its own`,
          path: [a],
          input: values[a],
        });
      }
    }
  }
}

/** Kafka TLS: the section's presence switches TLS on (an empty `ssl: {}` trusts the system CAs). */
const KafkaSsl = z
  .strictObject({
    /** PEM CA certificate(s) the brokers' certificates are checked against (default: the system CAs). */
    ca_file: filePath.optional(),
    /** PEM client certificate and its private key, for brokers that require TLS client authentication. */
    cert_file: filePath.optional(),
    key_file: filePath.optional(),
    /** false only for a test setup: the brokers' certificates are not checked (logged as a warning). */
    reject_unauthorized: z.boolean().default(true),
  })
  .transform((v, ctx) => {
    if ((v.cert_file === undefined) !== (v.key_file === undefined)) {
      ctx.addIssue({ code: 'custom', message: 'cert_file and key_file go together', path: [v.cert_file ? 'key_file' : 'cert_file'], input: v });
    }
    const ca = v.ca_file === undefined ? undefined : readFor(ctx, ['ca_file'], v.ca_file, (p) => readPemFile(p, 'certificate'));
    const cert = v.cert_file === undefined ? undefined : readFor(ctx, ['cert_file'], v.cert_file, (p) => readPemFile(p, 'certificate'));
    const key = v.key_file === undefined ? undefined : readFor(ctx, ['key_file'], v.key_file, (p) => readPemFile(p, 'private key'));
    return { ...v, ...(ca !== undefined ? { ca } : {}), ...(cert !== undefined ? { cert } : {}), ...(key !== undefined ? { key } : {}) };
  });

/** Kafka SASL authentication (over TLS with kafka.ssl: SASL_SSL; without: SASL_PLAINTEXT). */
const KafkaSasl = z
  .strictObject({
    mechanism: z.enum(['plain', 'scram-sha-256', 'scram-sha-512'], { error: 'expected plain, scram-sha-256 or scram-sha-512' }),
    username: nonEmpty,
    password: nonEmpty.optional(),
    password_file: filePath.optional(),
  })
  .transform((v, ctx) => {
    const password = secretOf(ctx, 'password', v.password, v.password_file);
    if (password === undefined) {
      if (v.password === undefined && v.password_file === undefined) ctx.addIssue({ code: 'custom', message: 'required (or password_file)', path: ['password'], input: v });
      return z.NEVER;
    }
    return { ...v, password };
  });

/** Elasticsearch TLS (an https:// url): the CA to verify the cluster's certificate with. */
const ElasticsearchTls = z
  .strictObject({
    /** PEM CA certificate(s) the cluster's HTTP certificate is checked against (default: the system CAs). */
    ca_file: filePath.optional(),
    /** false only for a test setup: the cluster's certificate is not checked (logged as a warning). */
    reject_unauthorized: z.boolean().default(true),
  })
  .transform((v, ctx) => {
    const ca = v.ca_file === undefined ? undefined : readFor(ctx, ['ca_file'], v.ca_file, (p) => readPemFile(p, 'certificate'));
    return { ...v, ...(ca !== undefined ? { ca } : {}) };
  });

const KafkaSection = z.strictObject({
  brokers: z.array(hostPort, { error: 'expected an array of host:port' }).min(1, { error: 'expected at least one host:port' }),
  client_id: nonEmpty.default('stackwatch'),
  /** One topic per kind: a processor reading its own dead letters as logs would loop. */
  topics: z
    .strictObject({
      logs: topicName.default('stackwatch.logs'),
      dead_letter: topicName.default('stackwatch.dead-letter'),
      /** Notifications a notifier could not take yet, retried with backoff until delivered. */
      notify_retry: topicName.default('stackwatch.notify-retry'),
      /** Metric samples from the Zabbix and Ceph collectors (MetricEvent). */
      metrics: topicName.default('stackwatch.metrics'),
      /** Ceph health (CephHealthEvent), Zabbix problems and host inventory: state, not samples. */
      health: topicName.default('stackwatch.health'),
    })
    .superRefine((v, ctx) => distinct(ctx, v, 'topic'))
    .prefault({}),
  consumer_group: nonEmpty.default('stackwatch-processor'),
  connection_timeout_ms: durationMs.default(3000),
  /** A processor that dies is noticed by the group after this long, and its partitions move on. */
  session_timeout_ms: durationMs.default(10_000),
  ssl: KafkaSsl.optional(),
  sasl: KafkaSasl.optional(),
});

const ElasticsearchSection = z
  .strictObject({
    url: httpUrl,
    /** Basic authentication; or api_key (the "encoded" value of POST /_security/api_key), which wins. */
    username: nonEmpty.optional(),
    password: nonEmpty.optional(),
    password_file: filePath.optional(),
    api_key: nonEmpty.optional(),
    api_key_file: filePath.optional(),
    tls: ElasticsearchTls.optional(),
    /** Index name prefixes. Each kind's indices are found as `<prefix>-*` (templates, retention, searches), so no
     * prefix may start with another one and a dash: `stackwatch-*` would take in `stackwatch-alerts-*`. */
    indices: z
      .strictObject({
        /** Daily indices `<prefix>-YYYY.MM.DD`, chosen by the event's own timestamp. */
        logs: indexPrefix.default('stackwatch-logs'),
        alerts: indexPrefix.default('stackwatch-alerts'),
        /** Daily indices of incidents (the alerts of one cause), by the day each started. */
        incidents: indexPrefix.default('stackwatch-incidents'),
        /** Daily indices of metric samples (capacity, replication lag, Ceph usage): what `stackwatch trends` reads. */
        metrics: indexPrefix.default('stackwatch-metrics'),
        /** Daily indices of the dead-letter topic's events (what could not be processed, and why), for Kibana. */
        dead_letter: indexPrefix.default('stackwatch-dead-letter'),
        /** One index by this very name, not daily: a document per host, its current Zabbix inventory (the id is the
         * host). Never pruned by retention. */
        inventory: indexPrefix.default('stackwatch-inventory'),
      })
      .superRefine((v, ctx) => distinct(ctx, v, 'index prefix', (a, b) => a === b || a.startsWith(`${b}-`)))
      .prefault({}),
    /** Days each kind of index is kept (`stackwatch setup`: the ILM policy, or what `setup --prune` deletes);
     * absent kinds keep the defaults (logs 30, alerts 365, incidents 365, metrics 180, dead_letter 30). */
    retention_days: z.partialRecord(z.enum(['logs', 'alerts', 'incidents', 'metrics', 'dead_letter']), positiveInt).default({}),
    bulk_max_docs: positiveInt.default(2000),
    request_timeout_ms: durationMs.default(30_000),
  })
  .transform((v, ctx) => {
    const password = secretOf(ctx, 'password', v.password, v.password_file);
    const apiKey = secretOf(ctx, 'api_key', v.api_key, v.api_key_file);
    // Credentials written into the URL move to username/password: the URL appears in log lines and errors.
    const split = splitUrlCredentials(v.url);
    let username = v.username || undefined;
    let pass = password;
    if (split.username !== undefined || split.password !== undefined) {
      if (username !== undefined || pass !== undefined) {
        ctx.addIssue({ code: 'custom', message: 'credentials both in the URL and in username/password: keep one (better: username and password_file)', path: ['url'], input: split.url });
      }
      username = split.username;
      pass = split.password;
    }
    if (pass !== undefined && username === undefined && apiKey === undefined) {
      ctx.addIssue({ code: 'custom', message: 'required with a password (or use api_key)', path: ['username'], input: v });
    }
    const { username: _u, password: _p, api_key: _k, ...rest } = v;
    return {
      ...rest,
      url: split.url,
      ...(username !== undefined ? { username } : {}),
      ...(pass !== undefined ? { password: pass } : {}),
      ...(apiKey !== undefined ? { api_key: apiKey } : {}),
    };
  });

/** Where alerts go: each notifier's section (notifiers/index.ts lists them; each schema is next to its notifier),
 * and what applies to all of them. */
const NotifySection = z.strictObject({
  ...notifiersShape(),
  /** Maintenance windows: alerts that match every matcher, with a timestamp inside the window, are indexed
   * but not sent. Matchers: rule.id, host.name, service.name, severity; a value ending in * matches a prefix. */
  silences: z
    .array(
      z
        .strictObject({
          matchers: z.partialRecord(z.enum(['rule.id', 'host.name', 'service.name', 'severity']), z.string().min(1)),
          starts_at: z.iso.datetime({ offset: true, error: 'expected an ISO 8601 time like 2026-11-25T22:00:00Z' }),
          ends_at: z.iso.datetime({ offset: true, error: 'expected an ISO 8601 time like 2026-11-25T23:00:00Z' }),
          comment: z.string().optional(),
        })
        .refine((v) => Date.parse(v.ends_at) > Date.parse(v.starts_at), { error: 'expected a time after starts_at', path: ['ends_at'] }),
    )
    .default([]),
  /** Firing alerts are sent to the webhooks again this often. */
  renotify_interval_s: durationS.default(3600),
});

export const ConfigSchema = z.strictObject({
  kafka: KafkaSection,
  elasticsearch: ElasticsearchSection,
  notify: NotifySection.prefault({}),
  /** Each collector's section is its own schema, next to its code (collectors/index.ts lists them). */
  collectors: z.strictObject(collectorsShape()).prefault({}),
  processor: z
    .strictObject({
      /** oslo.log timestamps carry no zone: the zone they were written in (IANA name). */
      timezone: timeZone.default('UTC'),
      /** An event whose parsing and detection take more CPU time than this is counted and dead-lettered (processors/time-budget.ts). */
      event_time_budget_ms: positiveInt.default(1000),
      /** The detectors' and incidents' state, checkpointed with the offsets it reflects (state/store.ts), so that a
       * restarted processor goes on exactly where it was: no page missed, none sent twice. */
      checkpoint: z
        .strictObject({
          enabled: z.boolean().default(true),
          /** The compacted topic that holds the checkpoints (created if missing). */
          topic: topicName.default('stackwatch.state'),
          /** This processor's checkpoint among those of the topic: `<consumer_group>/<instance>`. Processors of one
           * group each need their own, stable across restarts (as Kafka's static membership does): the host name by
           * default (a StatefulSet's pod name, a VM's name); set it where the host name changes on restart. */
          instance: z
            .string()
            .regex(/^[^|]{1,100}$/, { error: 'expected 1 to 100 characters other than |' })
            .default(() => hostname().slice(0, 100) || 'processor'),
          /** How often the state is saved and the offsets committed; the pages of the events since then go out
           * right after (an outbox): a page waits at most this long. */
          interval_ms: durationMs.default(1000),
        })
        .prefault({}),
    })
    .prefault({}),
  rules_dir: nonEmpty.optional(),
  /** Alerts of one cause become one incident, and the notifiers get incidents (incidents/correlator.ts). */
  incidents: z
    .strictObject({
      /** An incident pages once it has been firing this long: a connection back within seconds, a broker restart
       * that the services ride through, are kept as short incidents and page nobody (Prometheus' `for:`). An
       * incident rule's own min_duration_s wins. */
      min_duration_s: z.number().nonnegative().max(86_400).default(60),
      /** The incident rules (default: the `incidents` folder of rules_dir). */
      rules_dir: nonEmpty.optional(),
      /** Data from the past (a backfill, a collector catching up after an outage) comes with its deadlines long
       * gone and its files in any order: such an incident is paged or resolved only after this long without a
       * change, so the alerts of the same cause from the other files still join it. Live data is not delayed. */
      settle_s: z.number().nonnegative().max(3600).default(10),
    })
    .prefault({}),
  /** On SIGTERM, in-flight work is finished and committed within this many seconds; after that the process
   * exits anyway (what was not committed is read again by the next start: nothing is lost). */
  shutdown_timeout_s: durationS.default(30),
  /** The process's own HTTP endpoint: /metrics (Prometheus), /healthz (alive), /readyz (connected and working). */
  status_server: z
    .strictObject({
      /** host:port to listen on; port 0 picks a free one (logged at info level). */
      listen: hostPortOf(0, 'expected host:port like 127.0.0.1:9465').default('127.0.0.1:9465'),
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
  STACKWATCH_ES_PASSWORD_FILE: ['elasticsearch', 'password_file'],
  STACKWATCH_ES_API_KEY_FILE: ['elasticsearch', 'api_key_file'],
  STACKWATCH_ES_CA_FILE: ['elasticsearch', 'tls', 'ca_file'],
  STACKWATCH_KAFKA_CA_FILE: ['kafka', 'ssl', 'ca_file'],
  STACKWATCH_KAFKA_SASL_MECHANISM: ['kafka', 'sasl', 'mechanism'],
  STACKWATCH_KAFKA_SASL_USERNAME: ['kafka', 'sasl', 'username'],
  STACKWATCH_KAFKA_SASL_PASSWORD: ['kafka', 'sasl', 'password'],
  STACKWATCH_KAFKA_SASL_PASSWORD_FILE: ['kafka', 'sasl', 'password_file'],
  /** A processor's checkpoint name in its group (a StatefulSet sets it from the pod's name). */
  STACKWATCH_PROCESSOR_INSTANCE: ['processor', 'checkpoint', 'instance'],
  // Each notifier's own (STACKWATCH_ALERTMANAGER_URL, STACKWATCH_PAGERDUTY_ROUTING_KEY …), declared by its factory.
  ...notifierEnv(),
  // Each collector's own (STACKWATCH_ZABBIX_URL …), declared by its factory.
  ...collectorEnv(),
};

function applyEnv(raw: Record<string, unknown>, env: NodeJS.ProcessEnv, source: string): void {
  for (const [name, path] of Object.entries(ENV_OVERRIDES)) {
    const value = env[name];
    if (value === undefined || value === '') continue;
    if (name.endsWith('_FILE') && ENV_OVERRIDES[name.slice(0, -5)] && env[name.slice(0, -5)]) {
      fail(source, fieldPath(ENV_OVERRIDES[name.slice(0, -5)]), `set ${name.slice(0, -5)} or ${name}, not both`);
    }
    // A collector's overrides fill in a collector the file configures; they never switch one on.
    if (path[0] === 'collectors' && (raw.collectors as Record<string, unknown> | undefined)?.[path[1]] === undefined) continue;
    let node = raw;
    for (const key of path.slice(0, -1)) {
      if (typeof node[key] !== 'object' || node[key] === null) node[key] = {};
      node = node[key] as Record<string, unknown>;
    }
    const leaf = path[path.length - 1];
    node[leaf] =
      leaf === 'brokers'
        ? value
            .split(',')
            .map((s) => s.trim())
            .filter(Boolean)
        : value;
    // The variable overrides the file's value and its `_file` twin alike (they exclude each other).
    if (leaf.endsWith('_file')) delete node[leaf.slice(0, -5)];
    else delete node[`${leaf}_file`];
  }
}

/** Validates an already-parsed object (env overrides applied); `source` names it in errors. */
export function validateConfig(raw: unknown, source: string, env: NodeJS.ProcessEnv = process.env): Config {
  const obj = raw === null || raw === undefined ? {} : raw;
  if (typeof obj !== 'object' || Array.isArray(obj)) throw new ConfigError(`${source}: expected a mapping at the top level`);
  moveDeprecatedAlertmanager(obj as Record<string, unknown>, source);
  applyEnv(obj as Record<string, unknown>, env, source);
  const result = ConfigSchema.safeParse(obj);
  if (result.success) {
    registerConfigSecrets(result.data);
    warnInsecure(result.data);
    return result.data;
  }
  const { field, message } = firstIssue(result.error);
  return fail(source, field, message);
}

/** The top-level `alertmanager:` of older configuration files: still read, as notify.alertmanager, with a
 * warning. Moved before the environment is applied, so STACKWATCH_ALERTMANAGER_URL overrides it as before. */
function moveDeprecatedAlertmanager(raw: Record<string, unknown>, source: string): void {
  if (!('alertmanager' in raw)) return;
  const notify = raw.notify ?? {};
  // A notify: that is not a mapping is the schema's to report.
  if (typeof notify !== 'object' || Array.isArray(notify)) return;
  if ((notify as Record<string, unknown>).alertmanager !== undefined) {
    fail(source, 'alertmanager', 'set notify.alertmanager or the deprecated top-level alertmanager, not both (remove alertmanager)');
  }
  logger('config').warn(`${source}: the top-level alertmanager is deprecated: move it under notify (notify.alertmanager, the same fields)`);
  raw.notify = { ...notify, alertmanager: raw.alertmanager };
  delete raw.alertmanager;
}

function fail(source: string, field: string, message: string): never {
  throw new ConfigError(`${source}: ${field}: ${message}`);
}

/** Every secret of the configuration is masked in log lines and error texts from now on (core/secrets.ts). */
function registerConfigSecrets(cfg: Config): void {
  const es = cfg.elasticsearch;
  registerSecret(es.password);
  if (es.username && es.password) registerSecret(Buffer.from(`${es.username}:${es.password}`).toString('base64'));
  if (es.api_key) {
    registerSecret(es.api_key);
    // The encoded key is base64 of "id:key": the key alone is a secret too (the id is not).
    const decoded = Buffer.from(es.api_key, 'base64').toString('utf8');
    if (/^[\x21-\x7e]+:[\x21-\x7e]+$/.test(decoded)) registerSecret(decoded.slice(decoded.indexOf(':') + 1));
  }
  registerSecret(cfg.kafka.sasl?.password);
  for (const secret of collectorSecrets(cfg.collectors)) registerSecret(secret);
  for (const secret of notifierSecrets(cfg.notify)) registerSecret(secret);
}

const isLoopback = (host: string) => /^(localhost|127(?:\.\d+){3}|\[::1\])$/i.test(host);

/** Loud warnings for a configuration that works but is not safe: TLS not verified, credentials in clear text. */
function warnInsecure(cfg: Config): void {
  const log = logger('config');
  const es = cfg.elasticsearch;
  const esUrl = new URL(es.url);
  if (es.tls && !es.tls.reject_unauthorized) {
    log.warn(
      `elasticsearch.tls.reject_unauthorized is false: the certificate of ${es.url} is NOT verified; anyone on the network path can impersonate the cluster and read the credentials and the data`,
      {
        hint: "set elasticsearch.tls.ca_file (or STACKWATCH_ES_CA_FILE) to the CA that signed the cluster's certificate, and remove reject_unauthorized",
      },
    );
  }
  if (es.tls && esUrl.protocol === 'http:') {
    log.warn(`elasticsearch.tls is set but elasticsearch.url is ${es.url}: plain HTTP, TLS is not used`, { hint: 'use an https:// URL' });
  }
  if ((es.password || es.api_key) && esUrl.protocol === 'http:' && !isLoopback(esUrl.hostname)) {
    log.warn(`the Elasticsearch credentials are sent to ${es.url} in clear text (plain HTTP)`, { hint: 'use an https:// URL (and elasticsearch.tls.ca_file)' });
  }
  const k = cfg.kafka;
  if (k.ssl && !k.ssl.reject_unauthorized) {
    log.warn(
      `kafka.ssl.reject_unauthorized is false: the certificates of the brokers ${k.brokers.join(',')} are NOT verified; anyone on the network path can impersonate them and read the events and the credentials`,
      {
        hint: "set kafka.ssl.ca_file to the CA that signed the brokers' certificates, and remove reject_unauthorized",
      },
    );
  }
  if (k.sasl?.mechanism === 'plain' && !k.ssl && !k.brokers.every((b) => isLoopback(b.replace(/:\d+$/, '')))) {
    log.warn(`kafka.sasl: the PLAIN password is sent to the brokers ${k.brokers.join(',')} in clear text (no kafka.ssl)`, {
      hint: 'configure kafka.ssl (SASL_SSL), or use scram-sha-256/scram-sha-512',
    });
  }
}

export function loadConfig(path: string, env: NodeJS.ProcessEnv = process.env): Config {
  const text = readConfigText(path);
  const doc = parseDocument(text, { prettyErrors: true });
  // Warnings are mistakes too (an unknown tag like !foo would quietly become a string).
  const problem = doc.errors[0] ?? doc.warnings[0];
  if (problem) {
    const line = problem.linePos?.[0]?.line;
    throw new ConfigError(`${path}${line ? `:${line}` : ''}: invalid YAML: ${problem.message.split('\n')[0]}`);
  }
  return validateConfig(yamlValue(doc, text, path), path, env);
}

/** The file's text, at most MAX_CONFIG_BYTES: a bigger file is refused by its size before a byte is read, and a pipe
 * or device (which has no size) after MAX_CONFIG_BYTES + 1 bytes. */
function readConfigText(path: string): string {
  const cannot = (err: unknown) => new ConfigError(`${path}: cannot read config: ${fileErrorReason(err)} (pass --config FILE or set STACKWATCH_CONFIG)`);
  const tooBig = (size: string) => new ConfigError(`${path}: the config file is ${size}; the limit is ${MAX_CONFIG_BYTES} bytes (1 MiB)`);
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    throw cannot(err);
  }
  try {
    const st = fstatSync(fd);
    if (st.isDirectory()) throw cannot(Object.assign(new Error('is a directory'), { code: 'EISDIR' }));
    if (st.size > MAX_CONFIG_BYTES) throw tooBig(`${st.size} bytes`);
    const buf = Buffer.alloc(MAX_CONFIG_BYTES + 1);
    let n = 0;
    for (let got = -1; got !== 0 && n < buf.length; n += got) {
      try {
        got = readSync(fd, buf, n, buf.length - n, null);
      } catch (err) {
        throw cannot(err);
      }
    }
    if (n > MAX_CONFIG_BYTES) throw tooBig(`more than ${MAX_CONFIG_BYTES} bytes`);
    return buf.toString('utf8', 0, n);
  } finally {
    closeSync(fd);
  }
}

/** The document as plain values. Aliases are resolved here, and their errors (an unknown alias, a billion-laughs
 * document) are thrown by the yaml library as plain errors: they become config errors naming the file. */
function yamlValue(doc: Document, text: string, path: string): unknown {
  try {
    return doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    let line: number | undefined;
    visit(doc, {
      Alias(_, node) {
        if (node.resolve(doc) === undefined && node.range) {
          line = text.slice(0, node.range[0]).split('\n').length;
          return visit.BREAK;
        }
      },
    });
    const why = (err as Error).message.startsWith('Excessive alias count') ? 'too many aliases (over 100 expansions: a "billion laughs" document?)' : (err as Error).message;
    throw new ConfigError(`${path}${line ? `:${line}` : ''}: invalid YAML: ${why}`);
  }
}
