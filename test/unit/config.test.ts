import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, validateConfig } from '../../core/config.ts';

const dir = mkdtempSync(join(tmpdir(), 'stackwatch-config-'));
function file(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}
const good = {
  kafka: { brokers: ['127.0.0.1:9092', 'kafka-2.example:9093'] },
  elasticsearch: { url: 'http://127.0.0.1:9200' },
  alertmanager: { url: 'http://127.0.0.1:9093' },
  collectors: { openstack_logs: { paths: ['/var/log/nova/*.log'] } },
};
const noEnv = {};

function errorOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error('expected a ConfigError');
}

describe('config', () => {
  it('loads the example file shipped in the repository', () => {
    const cfg = loadConfig(new URL('../../config/stackwatch.example.yaml', import.meta.url).pathname, noEnv);
    expect(cfg.kafka.brokers).toEqual(['127.0.0.1:29092']);
    expect(cfg.kafka.topics.logs).toBe('stackwatch.logs');
    expect(cfg.collectors.openstack_logs?.paths).toContain('/var/log/nova/*.log');
  });

  it('fills defaults for what a minimal file leaves out', () => {
    const cfg = validateConfig(structuredClone(good), 'x.yaml', noEnv);
    expect(cfg.kafka.topics).toEqual({ logs: 'stackwatch.logs', dead_letter: 'stackwatch.dead-letter', notify_retry: 'stackwatch.notify-retry', metrics: 'stackwatch.metrics', health: 'stackwatch.health' });
    expect(cfg.elasticsearch.indices.logs).toBe('stackwatch-logs');
    expect(cfg.processor.timezone).toBe('UTC');
    expect(cfg.collectors.openstack_logs?.poll_interval_ms).toBe(200);
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
    expect(errorOf(() => validateConfig({ ...good, elasticsearch: { url: 'not a url' } }, 'f.yaml', noEnv))).toBe(
      'f.yaml: elasticsearch.url: expected an http(s) URL',
    );
    expect(
      errorOf(() => validateConfig({ ...good, collectors: { openstack_logs: { paths: ['/x'], poll_interval_ms: -5 } } }, 'f.yaml', noEnv)),
    ).toMatch(/^f\.yaml: collectors\.openstack_logs\.poll_interval_ms: /);
    expect(errorOf(() => validateConfig({ ...good, kafka: { ...good.kafka, brokerz: [] } }, 'f.yaml', noEnv))).toBe(
      'f.yaml: kafka.brokerz: unknown field',
    );
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
    expect(errorOf(() => validateConfig(structuredClone(good), 'f.yaml', { STACKWATCH_KAFKA_BROKERS: 'nohostport' }))).toBe(
      'f.yaml: kafka.brokers[0]: expected host:port',
    );
  });
});
