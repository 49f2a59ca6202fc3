// The walking skeleton end to end on the real stack: real oslo.log lines appended to a tailed file →
// collector → Kafka → processor → Elasticsearch, and the AMQP loss → Alertmanager → the pager webhook.
import { appendFileSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ensureTopics, TopicProducer } from '../../core/kafka.ts';
import { startCollector } from '../../collectors/index.ts';
import { openstackLogs } from '../../collectors/openstack-logs.ts';
import { startProcessor } from '../../processors/processor.ts';
import { countDocs, pagedAlerts, testSetup, waitFor } from './harness.ts';

// neutron-server, Icehouse 2014: RabbitMQ refusing connections (two "is unreachable" lines, one outage).
const lines = readFileSync(new URL('../fixtures/oslo-messaging-icehouse-2014.log', import.meta.url), 'utf8')
  .split('\n')
  .filter(Boolean);

const t = testSetup('pipeline');
const ctl = new AbortController();
afterAll(async () => {
  ctl.abort();
  await t.cleanup();
});

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
