import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { toRawEvent } from '../../collectors/openstack-logs.ts';
import { loadConfig, validateConfig } from '../../core/config.ts';
import { setLogSink } from '../../core/log.ts';
import { parseLogEvent } from '../../processors/parse-log.ts';
import { errorOf } from './config-error.ts';

const dir = mkdtempSync(join(tmpdir(), 'stackwatch-config-'));
function file(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}
const good = {
  kafka: { brokers: ['127.0.0.1:9092', 'kafka-2.example:9093'] },
  elasticsearch: { url: 'http://127.0.0.1:9200' },
  notify: { alertmanager: { url: 'http://127.0.0.1:9093' } },
  collectors: { openstack_logs: { paths: ['/var/log/nova/*.log'] } },
};
const noEnv = {};

describe('config', () => {
  it('loads the example file shipped in the repository', () => {
    const cfg = loadConfig(new URL('../../config/stackwatch.example.yaml', import.meta.url).pathname, noEnv);
    expect(cfg.kafka.brokers).toEqual(['127.0.0.1:29092']);
    expect(cfg.kafka.topics.logs).toBe('stackwatch.logs');
    expect(cfg.collectors.openstack_logs?.paths).toContain('/var/log/nova/*.log');
  });

  it('fills defaults for what a minimal file leaves out', () => {
    const cfg = validateConfig(structuredClone(good), 'x.yaml', noEnv);
    expect(cfg.kafka.topics).toEqual({
      logs: 'stackwatch.logs',
      dead_letter: 'stackwatch.dead-letter',
      notify_retry: 'stackwatch.notify-retry',
      metrics: 'stackwatch.metrics',
      health: 'stackwatch.health',
    });
    expect(cfg.elasticsearch.indices.logs).toBe('stackwatch-logs');
    expect(cfg.processor.timezone).toBe('UTC');
    expect(cfg.collectors.openstack_logs?.poll_interval_ms).toBe(200);
  });

  it('reads the deprecated top-level alertmanager as notify.alertmanager, with a warning naming both', () => {
    const lines: string[] = [];
    const restore = setLogSink((line) => lines.push(line));
    try {
      const { notify: _, ...rest } = structuredClone(good);
      const cfg = validateConfig({ ...rest, alertmanager: { url: 'http://am:9093' } }, 'old.yaml', noEnv);
      expect(cfg.notify.alertmanager).toEqual({ url: 'http://am:9093', resend_interval_s: 60 });
      expect('alertmanager' in cfg).toBe(false);
      // The environment variable overrides the old place as it did.
      const fromEnv = validateConfig({ ...rest, alertmanager: { url: 'http://am:9093' } }, 'old.yaml', { STACKWATCH_ALERTMANAGER_URL: 'http://am-2:9093' });
      expect(fromEnv.notify.alertmanager?.url).toBe('http://am-2:9093');
    } finally {
      restore();
    }
    expect(lines.some((l) => /old\.yaml: the top-level alertmanager is deprecated: move it under notify \(notify\.alertmanager/.test(l))).toBe(true);
    const both = { ...structuredClone(good), alertmanager: { url: 'http://am:9093' } };
    expect(errorOf(() => validateConfig(both, 'both.yaml', noEnv))).toMatch(/^both\.yaml: alertmanager: set notify\.alertmanager or the deprecated top-level alertmanager, not both/);
    // The new place takes STACKWATCH_ALERTMANAGER_URL too, and switches Alertmanager on.
    const { notify: _n, ...none } = structuredClone(good);
    expect(validateConfig(none, 'x.yaml', { STACKWATCH_ALERTMANAGER_URL: 'http://am-3:9093' }).notify.alertmanager?.url).toBe('http://am-3:9093');
  });

  it('names the field of a bad collector schedule or item mapping, and fills the Zabbix and Ceph defaults', () => {
    const base = structuredClone(good) as Record<string, any>;
    base.collectors = { zabbix: { url: 'http://zbx/api_jsonrpc.php', token: 't', schedule: 'every minute' } };
    expect(errorOf(() => validateConfig(structuredClone(base), 'x.yaml', noEnv))).toMatch(/^x\.yaml: collectors\.zabbix\.schedule: expected a cron expression/);
    base.collectors.zabbix.schedule = '*/10 * * * * *';
    base.collectors.zabbix.items = [{ key: 'vfs.fs.size[*,used]', metric: 'Disk Used' }];
    expect(errorOf(() => validateConfig(structuredClone(base), 'x.yaml', noEnv))).toMatch(/^x\.yaml: collectors\.zabbix\.items\[0\]\.metric: expected a dotted metric name/);
    delete base.collectors.zabbix.items;
    base.collectors.ceph = {};
    const cfg = validateConfig(structuredClone(base), 'x.yaml', noEnv);
    expect(cfg.collectors.zabbix).toMatchObject({ schedule: '*/10 * * * * *', backfill_s: 600, batch_items: 1000 });
    expect(cfg.collectors.ceph).toMatchObject({ command: ['ceph', '--connect-timeout', '10'], cluster_name: 'ceph', schedule: '*/15 * * * * *' });
  });

  it('collector variables fill in a configured collector and never switch one on', () => {
    const env = { STACKWATCH_ZABBIX_PASSWORD: 's3cret', STACKWATCH_ZABBIX_USER: 'monitor' };
    expect(validateConfig(structuredClone(good), 'x.yaml', env).collectors.zabbix).toBeUndefined();
    const withZabbix = { ...structuredClone(good), collectors: { zabbix: { url: 'http://zbx/api_jsonrpc.php' } } };
    expect(validateConfig(withZabbix, 'x.yaml', env).collectors.zabbix).toMatchObject({ username: 'monitor', password: 's3cret' });
  });

  it('names the field when brokers is not a list of host:port', () => {
    const p = file('brokers-string.yaml', 'kafka:\n  brokers: localhost\nelasticsearch:\n  url: http://x:9200\n');
    expect(errorOf(() => loadConfig(p, noEnv))).toBe(`${p}: kafka.brokers: expected an array of host:port`);
    const q = file('brokers-noport.yaml', 'kafka:\n  brokers: [localhost]\nelasticsearch:\n  url: http://x:9200\n');
    expect(errorOf(() => loadConfig(q, noEnv))).toBe(`${q}: kafka.brokers[0]: expected host:port`);
  });

  it('names a missing required section, a bad URL, a wrong type and an unknown field', () => {
    expect(errorOf(() => validateConfig({ kafka: good.kafka }, 'f.yaml', noEnv))).toBe('f.yaml: elasticsearch: required');
    expect(errorOf(() => validateConfig({ ...good, elasticsearch: { url: 'not a url' } }, 'f.yaml', noEnv))).toBe('f.yaml: elasticsearch.url: expected an http(s) URL');
    expect(errorOf(() => validateConfig({ ...good, collectors: { openstack_logs: { paths: ['/x'], poll_interval_ms: -5 } } }, 'f.yaml', noEnv))).toMatch(
      /^f\.yaml: collectors\.openstack_logs\.poll_interval_ms: /,
    );
    expect(errorOf(() => validateConfig({ ...good, kafka: { ...good.kafka, brokerz: [] } }, 'f.yaml', noEnv))).toBe('f.yaml: kafka.brokerz: unknown field');
    expect(errorOf(() => validateConfig({ ...good, collectors: { openstack_logs: { paths: [] } } }, 'f.yaml', noEnv))).toBe(
      'f.yaml: collectors.openstack_logs.paths: expected at least one path or glob',
    );
  });

  it('reports a missing file and broken YAML with the file name and line, without a stack trace', () => {
    expect(errorOf(() => loadConfig(join(dir, 'nope.yaml'), noEnv))).toMatch(/nope\.yaml: cannot read config: no such file/);
    const p = file('broken.yaml', 'kafka:\n  brokers: [a:1\nelasticsearch: {}\n');
    expect(errorOf(() => loadConfig(p, noEnv))).toMatch(new RegExp(`^${p}:\\d+: invalid YAML`));
  });

  it('lets environment variables override URLs and secrets', () => {
    const cfg = validateConfig(structuredClone(good), 'f.yaml', {
      STACKWATCH_KAFKA_BROKERS: 'k1:9092, k2:9092',
      STACKWATCH_ES_URL: 'https://es.internal:9200',
      STACKWATCH_ES_PASSWORD: 's3cret',
      STACKWATCH_ES_USERNAME: 'elastic',
    });
    expect(cfg.kafka.brokers).toEqual(['k1:9092', 'k2:9092']);
    expect(cfg.elasticsearch.url).toBe('https://es.internal:9200');
    expect(cfg.elasticsearch.password).toBe('s3cret');
    // An override is validated like the file.
    expect(errorOf(() => validateConfig(structuredClone(good), 'f.yaml', { STACKWATCH_KAFKA_BROKERS: 'nohostport' }))).toBe('f.yaml: kafka.brokers[0]: expected host:port');
  });
});

const HOSTILE = new URL('../fixtures/hostile/files/', import.meta.url).pathname;

/** `good` with one field set: `at` is the field's path, as the error names it. */
function withField(at: string, value: unknown): Record<string, any> {
  const raw = structuredClone(good) as Record<string, any>;
  const keys = at.replace(/\[(\d+)\]/g, '.$1').split('.');
  let node = raw;
  for (const [i, k] of keys.slice(0, -1).entries()) node = node[k] ??= /^\d+$/.test(keys[i + 1]) ? [] : {};
  node[keys.at(-1)!] = value;
  return raw;
}

describe('config: every field refuses nonsense, naming the field', () => {
  // Each of these was accepted before (issue 11, "Config and rules").
  const webhook = (name: string, headers: Record<string, string> = {}) => ({ name, url: 'http://hooks.example/x', headers });
  const cases: [string, string, unknown, RegExp][] = [
    ['a time zone that does not exist', 'processor.timezone', 'Mars/Olympus', /expected an IANA time zone/],
    ['an empty time zone', 'processor.timezone', '', /expected an IANA time zone/],
    ['a broker port above 65535', 'kafka.brokers[0]', 'kafka-1:99999', /the port from 1 to 65535/],
    ['broker port 0', 'kafka.brokers[0]', 'kafka-1:0', /the port from 1 to 65535/],
    ['a status port above 65535', 'status_server.listen', '127.0.0.1:70000', /the port from 0 to 65535/],
    ['a timeout no timer can hold (it would fire after 1 ms)', 'kafka.connection_timeout_ms', 3_000_000_000, /at most 2147483647 ms/],
    ['a flush interval no timer can hold', 'collectors.openstack_logs.multiline_flush_ms', 2 ** 31, /at most 2147483647 ms/],
    ['a shutdown deadline no timer can hold', 'shutdown_timeout_s', 3_000_000, /at most 2147483 s/],
    ['a fractional interval', 'notify.renotify_interval_s', 1.5, /expected a whole number/],
    ['an event cap that caps nothing (the heap is 512 MiB)', 'collectors.openstack_logs.max_event_bytes', 2 ** 30, /at most 16777216/],
    ['a topic name Kafka refuses', 'kafka.topics.logs', 'stackwatch logs', /expected a Kafka topic name/],
    ['the dead-letter topic the logs topic (the processor would read its own dead letters)', 'kafka.topics.dead_letter', 'stackwatch.logs', /is also the topic of logs/],
    ['an index name Elasticsearch refuses', 'elasticsearch.indices.logs', 'Stackwatch-Logs', /lowercase/],
    [
      "an index prefix inside another kind's pattern (stackwatch-logs-* would hold the alerts)",
      'elasticsearch.indices.alerts',
      'stackwatch-logs-alerts',
      /overlaps the index prefix of logs/,
    ],
    ['an empty API key', 'elasticsearch.api_key', '', /non-empty/],
    ['an empty password', 'elasticsearch.password', '', /non-empty/],
    ['an empty rules directory name', 'rules_dir', '', /non-empty/],
    ['two webhooks of one name (the second would never be sent to)', 'notify.webhooks', [webhook('chatops'), webhook('chatops')], /already webhooks\[0\]'s/],
    ['a header value with a line break', 'notify.webhooks', [webhook('chatops', { 'X-Token': 'a\r\nX-Injected: 1' })], /without line breaks/],
    ['a header name with a space', 'notify.webhooks', [webhook('chatops', { 'X Token': 'a' })], /HTTP header name/],
    ['a silence that ends before it starts', 'notify.silences', [{ matchers: { 'host.name': 'h' }, starts_at: '2026-11-25T23:00:00Z', ends_at: '2026-11-25T22:00:00Z' }], /after starts_at/],
    ['an empty Zabbix password', 'collectors.zabbix', { url: 'http://zbx/api_jsonrpc.php', username: 'u', password: '' }, /non-empty/],
  ];
  const fieldOf: Record<string, string> = {
    'notify.webhooks': 'notify.webhooks\\[\\d\\]\\.(?:name|headers\\.X[- ]Token)',
    'notify.silences': 'notify.silences\\[0\\]\\.ends_at',
    'collectors.zabbix': 'collectors.zabbix.password',
    'kafka.brokers[0]': 'kafka.brokers\\[0\\]',
    'kafka.topics.dead_letter': 'kafka.topics.(?:dead_letter|logs)',
    'elasticsearch.indices.alerts': 'elasticsearch.indices.(?:alerts|logs)',
  };
  it.each(cases)('%s', (_, at, value, message) => {
    const error = errorOf(() => validateConfig(withField(at, value), 'x.yaml', noEnv));
    expect(error).toMatch(new RegExp(`^x\\.yaml: ${fieldOf[at] ?? at.replace(/[.[\]]/g, '\\$&')}: `));
    expect(error).toMatch(message);
  });

  it('accepts the edges of what is valid', () => {
    const raw = structuredClone(good) as Record<string, any>;
    raw.kafka.brokers = ['kafka-1:1', 'kafka-2:65535'];
    raw.kafka.connection_timeout_ms = 2 ** 31 - 1;
    raw.status_server = { listen: '127.0.0.1:0' };
    raw.processor = { timezone: 'Europe/Berlin' };
    raw.elasticsearch.indices = { logs: 'sw-logs', alerts: 'sw-alerts', metrics: 'sw-metrics', dead_letter: 'sw-logs_dead' };
    raw.notify = { webhooks: [webhook('a', { 'X-Token': 't' }), webhook('b')], silences: [{ matchers: {}, starts_at: '2026-11-25T22:00:00Z', ends_at: '2026-11-25T22:00:01Z' }] };
    const cfg = validateConfig(raw, 'x.yaml', noEnv);
    expect(cfg.processor.timezone).toBe('Europe/Berlin');
    expect(cfg.status_server.listen).toBe('127.0.0.1:0');
  });

  it('a time zone is accepted exactly when zone-less timestamps can be read in it (property)', () => {
    const zones = Intl.supportedValuesOf('timeZone');
    const zone = fc.oneof(
      fc.constantFrom(...zones, 'UTC', 'Mars/Olympus', 'Europe/Atlantis', 'GMT+25', '+01:00'),
      fc.constantFrom(...zones).chain((z) => fc.constantFrom(z.toLowerCase(), `${z}/x`, z.replace('/', ' '), `${z} `)),
      fc.string({ maxLength: 20 }),
    );
    fc.assert(
      fc.property(zone, (timezone) => {
        let refused: string | undefined;
        try {
          validateConfig(withField('processor.timezone', timezone), 'x.yaml', noEnv);
        } catch (err) {
          refused = (err as Error).message;
        }
        let readable = true;
        try {
          const raw = toRawEvent(
            { offset: 0, text: '2022-02-04 09:37:50.031 21562 INFO os_vif [-] Loaded VIF plugins' },
            'h',
            '/var/log/nova/nova-compute.log',
            'id',
            '2022-02-04T10:00:00.000Z',
          );
          readable = typeof parseLogEvent(raw, { timezone })['@timestamp'] === 'string';
        } catch {
          readable = false;
        }
        if (refused !== undefined) expect(refused).toMatch(/^x\.yaml: processor\.timezone: expected an IANA time zone/);
        expect(refused === undefined).toBe(readable);
      }),
      { numRuns: 300 },
    );
  });
});

describe('config files: YAML alias errors and size', () => {
  it('an unknown alias and a billion-laughs document are config errors naming the file', () => {
    const unknown = `${HOSTILE}config-unknown-alias.yaml`;
    expect(errorOf(() => loadConfig(unknown, noEnv))).toMatch(new RegExp(`^${unknown}:\\d+: invalid YAML: Unresolved alias .*: broker$`));
    const laughs = `${HOSTILE}config-billion-laughs.yaml`;
    expect(errorOf(() => loadConfig(laughs, noEnv))).toBe(`${laughs}: invalid YAML: too many aliases (over 100 expansions: a "billion laughs" document?)`);
  });

  it('YAML warnings (an unknown tag) are errors with the line, not quietly strings', () => {
    const p = file('tag.yaml', 'kafka:\n  brokers: [127.0.0.1:9092]\nelasticsearch:\n  url: !secret http://x:9200\n');
    expect(errorOf(() => loadConfig(p, noEnv))).toMatch(new RegExp(`^${p}:4: invalid YAML: Unresolved tag: !secret`));
  });

  it('a file over 1 MiB is refused by its size before it is read; a pipe after 1 MiB', async () => {
    const big = file('big.yaml', `# ${'x'.repeat(2 << 20)}\nkafka:\n  brokers: [127.0.0.1:9092]\nelasticsearch:\n  url: http://x:9200\n`);
    expect(errorOf(() => loadConfig(big, noEnv))).toBe(`${big}: the config file is ${statSync(big).size} bytes; the limit is 1048576 bytes (1 MiB)`);
    // A pipe has no size: reading stops after 1 MiB + 1 byte. The writer is another process (loadConfig blocks).
    const fifo = join(dir, 'config.fifo');
    spawnSync('mkfifo', [fifo]);
    const writer = spawn(process.execPath, ['-e', `try { require('fs').writeFileSync(${JSON.stringify(fifo)}, '#'.repeat(3 << 20)) } catch {}`]);
    const exited = new Promise((resolve) => writer.on('exit', resolve));
    expect(errorOf(() => loadConfig(fifo, noEnv))).toBe(`${fifo}: the config file is more than 1048576 bytes; the limit is 1048576 bytes (1 MiB)`);
    await exited;
  });
});
