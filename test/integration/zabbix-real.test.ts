// The Zabbix collector against a real Zabbix 6.0 server (Debian's packages, scripts/zabbix.sh) fed by a real
// MariaDB replica: replication lag made for real (MASTER_DELAY) rises in the replica's SHOW SLAVE STATUS → the
// feeder pushes it to the Zabbix trapper → the collector reads it from history.get → Kafka → processor →
// db-sync-lag fires → Alertmanager → the pager webhook; the lag falls → resolved. Inventory and the problems
// Zabbix's own triggers open reach the health topic.
import { execFileSync } from 'node:child_process';
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCollector } from '../../collectors/index.ts';
import { zabbix } from '../../collectors/zabbix.ts';
import { HealthEvent, type MetricEvent } from '../../core/events.ts';
import { ensureTopics, GroupConsumer, TopicProducer } from '../../core/kafka.ts';
import { startProcessor } from '../../processors/processor.ts';
import { pagedAlerts, REPO, testSetup, waitFor } from './harness.ts';

const zabbixSh = (...args: string[]) => execFileSync(join(REPO, 'scripts/zabbix.sh'), args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 300_000 });
let env: Record<string, string> = {};

// The rule as shipped, with the lag threshold lowered so the test needs seconds of real lag, not minutes:
// rules are data, so a test copy of the rules directory is all it takes.
function rulesWithLagThreshold(dir: string, above: number, forS: number): string {
  const rules = join(dir, 'rules');
  cpSync(join(REPO, 'rules'), rules, { recursive: true });
  const file = join(rules, 'db-sync-lag.yaml');
  const text = readFileSync(file, 'utf8').replace(
    '{ name: db.replication.seconds_behind_master, above: 30, for_s: 30 }',
    `{ name: db.replication.seconds_behind_master, above: ${above}, for_s: ${forS} }`,
  );
  if (!text.includes(`above: ${above}, for_s: ${forS}`)) throw new Error('rules/db-sync-lag.yaml changed: update this test');
  writeFileSync(file, text);
  return rules;
}

const t = testSetup('zabbix', (raw) => {
  raw.collectors = {};
});
const ctl = new AbortController();

beforeAll(() => {
  zabbixSh('start');
  env = Object.fromEntries(
    zabbixSh('env')
      .trim()
      .split('\n')
      .map((l) => l.split(/=(.*)/s).slice(0, 2) as [string, string]),
  );
  zabbixSh('lag', 'off');
}, 300_000);

afterAll(async () => {
  ctl.abort();
  try {
    zabbixSh('lag', 'off', '--no-wait');
  } finally {
    await t.cleanup();
  }
});

describe('Zabbix collector on a real Zabbix 6.0', () => {
  it('replica lag made for real pages db-sync-lag through Alertmanager, and resolves when the replica catches up', async () => {
    const since = Date.now();
    const { topics } = t.cfg.kafka;
    const cfg = {
      ...t.cfg,
      rules_dir: rulesWithLagThreshold(t.dir, 5, 4),
      collectors: {
        zabbix: {
          url: env.STACKWATCH_ZABBIX_URL,
          username: env.STACKWATCH_ZABBIX_USER,
          password: env.STACKWATCH_ZABBIX_PASSWORD,
          schedule: '*/2 * * * * *',
          host_groups: ['Stackwatch databases'],
          backfill_s: 60,
          trends_after_s: 86_400,
          batch_items: 1000,
          request_timeout_ms: 10_000,
          checkpoint_dir: join(t.dir, 'checkpoints'),
        },
      },
    };
    await ensureTopics(cfg.kafka, [topics.metrics, topics.health, topics.dead_letter]);
    await startProcessor(cfg, { signal: ctl.signal });
    const producer = await TopicProducer.connect(cfg.kafka, 'zabbix-collector');
    const running = startCollector(zabbix, cfg.collectors.zabbix, producer, topics, ctl.signal);

    // What the collector puts on the health topic (inventory, problems), read back from Kafka.
    const health: HealthEvent[] = [];
    const consumer = await GroupConsumer.start(cfg.kafka, {
      groupId: `${t.run}-health`,
      topics: [topics.health],
      component: 'test',
      onBatch: async (b) => void health.push(...b.messages.map((m) => HealthEvent.parse(JSON.parse(m.value!)))),
    });

    const host = env.STACKWATCH_ZABBIX_HOST;
    const ours = async () => (await pagedAlerts(host)).filter((a) => a.labels.alertname === 'db-sync-lag' && Date.parse(a.startsAt) >= since - 5000);

    zabbixSh('lag', 'on', '8');
    const firing = await waitFor('db-sync-lag firing at the pager', async () => (await ours()).find((a) => a.status === 'firing'), 90_000, 500);
    expect(firing.labels).toMatchObject({ host, service: 'mariadb', severity: 'warning' });
    expect(firing.annotations.summary).toMatch(/db\.replication\.seconds_behind_master is \d+ \(above 5 for 4 s or more\)/);

    zabbixSh('lag', 'off');
    const resolved = await waitFor('db-sync-lag resolved at the pager', async () => (await ours()).find((a) => a.status === 'resolved'), 60_000, 500);
    expect(Date.parse(resolved.endsAt)).toBeGreaterThan(Date.parse(resolved.startsAt));

    // The samples in Elasticsearch: the rise and the fall, as the replica reported them.
    const index = `${cfg.elasticsearch.indices.metrics}-*`;
    await t.es.indices.refresh({ index });
    const res = await t.es.search<{ metric: MetricEvent['metric']; '@timestamp': string }>({
      index,
      size: 500,
      query: { bool: { filter: [{ term: { 'metric.name': 'db.replication.seconds_behind_master' } }, { term: { 'host.name': host } }] } },
      sort: [{ '@timestamp': 'asc' }],
    });
    const values = res.hits.hits.map((h) => h._source!.metric.value);
    expect(Math.max(...values)).toBeGreaterThan(5);
    expect(values.at(-1)).toBe(0);
    // Each sample once: Zabbix's clock is the id, and the collector never re-sends what Kafka acknowledged.
    const times = res.hits.hits.map((h) => h._source!['@timestamp']);
    expect(new Set(times).size).toBe(times.length);

    // The inventory of the replica host, as Zabbix knows it.
    const inventory = health.find((h) => h.kind === 'inventory' && h.host.name === host);
    expect(inventory).toMatchObject({ host: { ip: ['127.0.0.1'], groups: ['Stackwatch databases'], status: 'enabled' } });
    // Zabbix's own lag trigger (> 30 s) never opened at 8 s of lag; nothing else was broken either.
    expect(health.filter((h) => h.kind === 'zabbix-problem' && h.problem.name.includes('replication lag'))).toEqual([]);

    ctl.abort();
    await running;
    await consumer.stop();
    await producer.disconnect();
  }, 240_000);
});
