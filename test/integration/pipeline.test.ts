// The walking skeleton end to end on the real stack: real oslo.log lines appended to a tailed file →
// collector → Kafka → processor → Elasticsearch, and the AMQP loss → Alertmanager → the pager webhook.
import { appendFileSync, cpSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ensureTopics, TopicProducer } from '../../core/kafka.ts';
import { startCollector } from '../../collectors/index.ts';
import { openstackLogs } from '../../collectors/openstack-logs.ts';
import { startProcessor } from '../../processors/processor.ts';
import { parse, stringify } from 'yaml';
import { countDocs, pagedAlerts, REPO, testSetup, waitFor } from './harness.ts';

// neutron-server, Icehouse 2014: RabbitMQ refusing connections (two "is unreachable" lines, one outage).
const lines = readFileSync(new URL('../fixtures/oslo-messaging-icehouse-2014.log', import.meta.url), 'utf8')
  .split('\n')
  .filter(Boolean);

const t = testSetup('pipeline');
// The service-silent rule learning in seconds: 20 events, silent after 4 s (shipped: 50 events, 10 minutes).
const quiet = testSetup('silence', (raw) => {
  const rules = join(raw.collectors.openstack_logs.checkpoint_dir, '..', 'rules');
  cpSync(join(REPO, 'rules'), rules, { recursive: true });
  const file = join(rules, 'service-silent.yaml');
  const rule = parse(readFileSync(file, 'utf8'));
  writeFileSync(file, stringify({ ...rule, params: { ...rule.params, min_events: 20, min_silence_s: 4 } }));
  raw.rules_dir = rules;
});
const ctl = new AbortController();
afterAll(async () => {
  ctl.abort();
  await t.cleanup();
  await quiet.cleanup();
});

/** An oslo.log line of nova-compute, stamped now (UTC). */
const osloNow = (n: number) => `${new Date().toISOString().replace('T', ' ').slice(0, 23)} 4242 INFO nova.compute.manager [req-${n} - - - - -] periodic task ${n}`;

describe('log line to Elasticsearch and Alertmanager', () => {
  it('indexes appended lines with parsed fields within seconds and pages exactly one AMQP alert', async () => {
    const logs = join(t.dir, 'logs');
    mkdirSync(logs);
    const file = join(logs, 'neutron-server.log');
    appendFileSync(file, lines.slice(0, 2).join('\n') + '\n');

    const processor = await startProcessor(t.cfg, { signal: ctl.signal });
    await ensureTopics(t.cfg.kafka, [t.cfg.kafka.topics.logs]);
    const producer = await TopicProducer.connect(t.cfg.kafka, 'openstack-logs');
    const collecting = startCollector(openstackLogs, t.cfg.collectors.openstack_logs!, producer, t.cfg.kafka.topics, ctl.signal).catch(() => {});

    // The rest arrives while the collector tails the file, the last line in two writes.
    const rest = lines.slice(2).join('\n') + '\n';
    appendFileSync(file, rest.slice(0, -20));
    await new Promise((r) => setTimeout(r, 300));
    appendFileSync(file, rest.slice(-20));
    const appendedAt = Date.now();

    const index = `${t.cfg.elasticsearch.indices.logs}-*`;
    await waitFor(`${lines.length} documents`, async () => (await countDocs(t.es, index)) === lines.length, 20_000);
    const seconds = (Date.now() - appendedAt) / 1000;
    expect(seconds).toBeLessThan(20);

    const res = await t.es.search({ index, size: 100, sort: [{ 'log.offset': 'asc' }] });
    const docs = res.hits.hits.map((h) => h._source as any);
    expect(docs.map((d) => d.message)).toEqual(lines.map((l) => l.replace(/^.*? \[-\] /, '')));
    const unreachable = docs.find((d) => d.message.includes('is unreachable'));
    expect(unreachable).toMatchObject({
      '@timestamp': '2014-08-15T01:36:33.198Z',
      log: { level: 'ERROR', logger: 'oslo.messaging._drivers.impl_rabbit' },
      process: { pid: 19576 },
      host: { name: t.host },
      service: { name: 'neutron-server' },
    });
    expect(res.hits.hits.every((h) => h._id === (h._source as any).event.id)).toBe(true);

    const paged = await waitFor('the AMQP alert at the pager webhook', async () => {
      const a = await pagedAlerts(t.host);
      return a.length > 0 && a;
    });
    // Both loss lines belong to one outage: Alertmanager must not have been told twice.
    await new Promise((r) => setTimeout(r, 3000));
    expect(await pagedAlerts(t.host)).toHaveLength(1);
    expect(paged[0]).toMatchObject({
      status: 'firing',
      labels: { alertname: 'amqp-connection-lost', severity: 'critical', service: 'neutron-server', host: t.host },
      startsAt: '2014-08-15T01:36:33.198Z',
    });
    expect(paged[0].annotations.summary).toContain('127.0.0.1:5671');

    const alerts = await countDocs(t.es, `${t.cfg.elasticsearch.indices.alerts}-*`, { term: { 'rule.id': 'amqp-connection-lost' } });
    expect(alerts).toBe(1);

    ctl.abort();
    await collecting;
    await producer.disconnect();
    await processor.stop();
  });
});

describe('a service that stops logging', () => {
  it('pages service-silent by the wall clock while nothing arrives, and resolves when it speaks again', async () => {
    const logs = join(quiet.dir, 'logs');
    mkdirSync(logs, { recursive: true });
    const file = join(logs, 'nova-compute.log');
    const ctl = new AbortController(); // the first test aborted the file's own
    const processor = await startProcessor(quiet.cfg, { signal: ctl.signal });
    await ensureTopics(quiet.cfg.kafka, [quiet.cfg.kafka.topics.logs]);
    const producer = await TopicProducer.connect(quiet.cfg.kafka, 'openstack-logs');
    const collecting = startCollector(openstackLogs, quiet.cfg.collectors.openstack_logs!, producer, quiet.cfg.kafka.topics, ctl.signal).catch(() => {});
    for (let n = 0; n < 30; n++) {
      appendFileSync(file, `${osloNow(n)}\n`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const lastLine = Date.now();
    expect(await pagedAlerts(quiet.host), 'nothing pages while it speaks').toEqual([]);
    const fired = await waitFor(
      'service-silent firing at the pager',
      async () => (await pagedAlerts(quiet.host)).find((a) => a.labels.alertname === 'service-silent' && a.status === 'firing'),
      60_000,
      250,
    );
    const firedAfter = Date.now() - lastLine;
    expect(fired.labels).toMatchObject({ service: 'nova-compute', host: quiet.host, severity: 'warning', incident: 'host-silent' });
    expect(firedAfter, 'not before min_silence_s').toBeGreaterThanOrEqual(4_000);
    appendFileSync(file, `${osloNow(99)}\n`);
    const spokeAt = Date.now();
    await waitFor(
      'service-silent resolved at the pager',
      async () => (await pagedAlerts(quiet.host)).some((a) => a.labels.alertname === 'service-silent' && a.status === 'resolved'),
      60_000,
      250,
    );
    console.log(
      `service-silent: paged ${(firedAfter / 1000).toFixed(1)} s after the last line (min_silence_s 4), resolved ${((Date.now() - spokeAt) / 1000).toFixed(1)} s after it spoke again`,
    );
    const alerts = await countDocs(quiet.es, `${quiet.cfg.elasticsearch.indices.alerts}-*`, { term: { 'rule.id': 'service-silent' } });
    expect(alerts).toBe(2);
    ctl.abort();
    await collecting;
    await producer.disconnect();
    await processor.stop();
  });
});
