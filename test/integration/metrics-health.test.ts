// Metric samples and health events through the real stack: produced to their Kafka topics as the collectors
// produce them → processor → metrics index in Elasticsearch, db-sync-lag and ceph-health alerts → Alertmanager →
// the pager webhook; malformed ones → the dead-letter topic with the reason. (The collectors themselves against
// real Zabbix and Ceph servers: zabbix-real.test.ts, ceph-real.test.ts.)
import { afterAll, describe, expect, it } from 'vitest';
import { metricId, type CephHealthEvent, type MetricEvent } from '../../core/events.ts';
import { ensureTopics, GroupConsumer, TopicProducer } from '../../core/kafka.ts';
import { startProcessor } from '../../processors/processor.ts';
import { countDocs, pagedAlerts, testSetup, waitFor } from './harness.ts';

const t = testSetup('metrics');
const ctl = new AbortController();
afterAll(async () => {
  ctl.abort();
  await t.cleanup();
});

describe('metric and health events', () => {
  it('index the samples, page replica lag and a Ceph check, resolve both, and dead-letter what is not an event', async () => {
    const { topics } = t.cfg.kafka;
    await ensureTopics(t.cfg.kafka, [topics.metrics, topics.health, topics.dead_letter]);
    const producer = await TopicProducer.connect(t.cfg.kafka, 'test');
    await startProcessor(t.cfg, { signal: ctl.signal });

    // Replica lag rising past 30 s for 30 s, one sample every 10 s (ending about now, so Alertmanager takes
    // the alert as current); later it falls back to 0. Firing is awaited at the pager before the fall is sent:
    // Alertmanager only tells a receiver an alert resolved if it told it the alert fired.
    const t0 = Date.now() - 60_000;
    const sample = (at: number, value: number): MetricEvent => ({
      v: 1,
      '@timestamp': new Date(at).toISOString(),
      source: 'zabbix',
      host: { name: t.host },
      metric: { name: 'db.replication.seconds_behind_master', value, unit: 's' },
      labels: {},
    });
    const rising = [0, 20, 40, 60, 80, 90].map((v, i) => sample(t0 + i * 10_000, v));
    const send = (samples: MetricEvent[]) =>
      producer.send(
        topics.metrics,
        samples.map((s) => ({ key: s.host.name, value: JSON.stringify(s) })),
      );
    await send(rising);
    await producer.send(topics.metrics, [
      { key: 'x', value: '{"v":1,"metric":"no"}' },
      { key: 'x', value: 'not json at all' },
    ]);

    const cluster = `${t.host}-ceph`;
    const health = (at: number, checks: CephHealthEvent['checks']): CephHealthEvent => ({
      v: 1,
      kind: 'ceph-health',
      '@timestamp': new Date(at).toISOString(),
      cluster: { name: cluster },
      status: checks.length ? 'HEALTH_WARN' : 'HEALTH_OK',
      checks,
    });
    const osdDown = { code: 'OSD_DOWN', severity: 'HEALTH_WARN' as const, summary: '1 osds down', detail: ['osd.1 is down'], muted: false };
    await producer.send(topics.health, [{ key: cluster, value: JSON.stringify(health(Date.now(), [osdDown])) }]);

    const paged = async () => [...(await pagedAlerts(t.host)), ...(await pagedAlerts(cluster))];
    const has = (a: Awaited<ReturnType<typeof paged>>, rule: string, status: string) => a.find((x) => x.labels.alertname === rule && x.status === status);
    const firing = await waitFor(
      'firing lag and OSD_DOWN alerts at the webhook',
      async () => {
        const a = await paged();
        return has(a, 'db-sync-lag', 'firing') && has(a, 'ceph-health', 'firing') ? a : undefined;
      },
      30_000,
      300,
    );
    const lagAlert = has(firing, 'db-sync-lag', 'firing')!;
    expect(lagAlert.labels).toMatchObject({ host: t.host, service: 'mariadb', severity: 'warning' });
    // Over 30 from the sample at +20 s (40), sustained for 30 s at the sample at +50 s: the alert starts there.
    expect(Date.parse(lagAlert.startsAt)).toBe(t0 + 50_000);
    expect(has(firing, 'ceph-health', 'firing')!.labels).toMatchObject({ host: cluster, code: 'OSD_DOWN', severity: 'warning' });

    await send([sample(Date.now(), 0), sample(Date.now() + 1000, 0)]);
    await producer.send(topics.health, [{ key: cluster, value: JSON.stringify(health(Date.now(), [])) }]);
    await waitFor(
      'resolved lag and OSD_DOWN alerts at the webhook',
      async () => {
        const a = await paged();
        return has(a, 'db-sync-lag', 'resolved') && has(a, 'ceph-health', 'resolved');
      },
      30_000,
      300,
    );

    // Every sample in the metrics index, under its deterministic id.
    const index = `${t.cfg.elasticsearch.indices.metrics}-*`;
    await waitFor('8 metric documents', async () => (await countDocs(t.es, index)) === 8, 30_000);
    const ids = (await t.es.search({ index, size: 20, _source: false })).hits.hits.map((h) => h._id);
    expect(ids).toHaveLength(8);
    expect(ids).toEqual(expect.arrayContaining(rising.map(metricId)));

    // The two malformed messages, each with its reason.
    const dead: string[] = [];
    const consumer = await GroupConsumer.start(t.cfg.kafka, {
      groupId: `${t.run}-dlq`,
      topics: [topics.dead_letter],
      component: 'test',
      onBatch: async (b) => void dead.push(...b.messages.map((m) => JSON.parse(m.value ?? '{}').reason)),
    });
    await waitFor('two dead letters', async () => dead.length >= 2, 20_000);
    await consumer.stop();
    await producer.disconnect();
    expect(dead.sort()).toEqual([expect.stringMatching(/^undecodable message: .*is not valid JSON/), expect.stringMatching(/^undecodable message: not a metric event: @timestamp: /)]);
    // …and in Elasticsearch, for Kibana, with the topic and offset they came from.
    const dlIndex = `${t.cfg.elasticsearch.indices.dead_letter}-*`;
    await waitFor('two dead letters in Elasticsearch', async () => (await countDocs(t.es, dlIndex)) === 2, 20_000);
    const docs = (await t.es.search<{ component: string; source: { topic: string } }>({ index: dlIndex })).hits.hits.map((h) => h._source!);
    expect(docs.every((d) => d.component === 'processor' && d.source.topic === topics.metrics)).toBe(true);
  });
});
