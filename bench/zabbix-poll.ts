// One poll cycle of the Zabbix collector over 10,000 items, against the real Zabbix 6.0 server of
// scripts/zabbix.sh: inventory, item.get, history.get in batches, problem.get, and the samples into Kafka (acks=all).
// Set up once (idempotent): a host "bench-10k" with 10,000 trapper items, each given values through the trapper.
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { ZabbixApi } from '../collectors/zabbix/api.ts';
import { collectorContext } from '../collectors/emitter.ts';
import { pollOnce } from '../collectors/schedule.ts';
import { ZabbixCollector, type ZabbixConfig } from '../collectors/zabbix.ts';
import { validateConfig } from '../core/config.ts';
import { deleteTopics, ensureTopics, TopicProducer } from '../core/kafka.ts';
import { startLocalStack } from '../core/local-stack.ts';
import { debianVersion, fmt, machine, progress, table, type Benchmark } from './measure.ts';
import { zabbixSend } from '../test/integration/zabbix-sender.ts';

const ITEMS = 10_000;
const HOST = 'bench-10k';
const GROUP = 'Stackwatch bench';
const RUNS = 5;
const ZABBIX_SH = new URL('../scripts/zabbix.sh', import.meta.url).pathname;

async function ensureBenchItems(api: ZabbixApi): Promise<void> {
  const Id = z.array(z.object({ groupid: z.string() }));
  let groups = await api.call('hostgroup.get', { filter: { name: [GROUP] }, output: ['groupid'] }, Id);
  if (groups.length === 0) await api.call('hostgroup.create', { name: GROUP }, z.unknown());
  groups = await api.call('hostgroup.get', { filter: { name: [GROUP] }, output: ['groupid'] }, Id);
  let hosts = await api.call('host.get', { filter: { host: [HOST] }, output: ['hostid'] }, z.array(z.object({ hostid: z.string() })));
  if (hosts.length === 0) {
    await api.call('host.create', { host: HOST, groups: [{ groupid: groups[0].groupid }] }, z.unknown());
    hosts = await api.call('host.get', { filter: { host: [HOST] }, output: ['hostid'] }, z.array(z.object({ hostid: z.string() })));
  }
  const hostid = hosts[0].hostid;
  const have = await api.call('item.get', { hostids: [hostid], countOutput: true }, z.string());
  for (let i = Number(have); i < ITEMS; i += 1000) {
    const items = Array.from({ length: Math.min(1000, ITEMS - i) }, (_, k) => ({
      hostid,
      name: `bench item ${i + k}`,
      key_: `db.bench.i${String(i + k).padStart(5, '0')}`,
      type: 2, // Zabbix trapper
      value_type: 0, // numeric float
      history: '1d',
      trends: '0',
    }));
    progress(`zabbix-poll: creating items ${i}–${i + items.length - 1}`);
    await api.call('item.create', items, z.unknown());
  }
}

export const zabbixPollBench: Benchmark = {
  name: 'zabbix-poll',
  summary: `one Zabbix collector poll of ${ITEMS.toLocaleString('en')} items on the real Zabbix 6.0 (target ≤ 5 s)`,
  async run() {
    const env = startLocalStack('ignore');
    execFileSync(ZABBIX_SH, ['start'], { stdio: ['ignore', 'ignore', 'inherit'] });
    const zenv = Object.fromEntries(
      execFileSync(ZABBIX_SH, ['env'], { encoding: 'utf8' })
        .trim()
        .split('\n')
        .map((l) => l.split(/=(.*)/s).slice(0, 2)),
    );
    const api = await ZabbixApi.connect({ url: zenv.STACKWATCH_ZABBIX_URL, username: zenv.STACKWATCH_ZABBIX_USER, password: zenv.STACKWATCH_ZABBIX_PASSWORD, request_timeout_ms: 120_000 });
    await ensureBenchItems(api);
    execFileSync(ZABBIX_SH, ['reload'], { stdio: 'ignore' });
    await new Promise((r) => setTimeout(r, 2000));

    // One fresh value per item (the trapper takes them in batches), then wait until history holds them all.
    const clock = Math.floor(Date.now() / 1000);
    for (let i = 0; i < ITEMS; i += 2000) {
      const data = Array.from({ length: Math.min(2000, ITEMS - i) }, (_, k) => ({
        host: HOST,
        key: `db.bench.i${String(i + k).padStart(5, '0')}`,
        value: String(Math.random() * 100),
        clock,
      }));
      const reply = await zabbixSend(zenv.STACKWATCH_ZABBIX_TRAPPER_HOST, Number(zenv.STACKWATCH_ZABBIX_TRAPPER_PORT), data);
      if (reply.failed > 0) progress(`zabbix-poll: trapper said ${reply.info}`);
    }
    const hostid = (await api.call('host.get', { filter: { host: [HOST] }, output: ['hostid'] }, z.array(z.object({ hostid: z.string() }))))[0].hostid;
    for (let waited = 0; ; waited += 1000) {
      const n = Number(await api.call('history.get', { hostids: [hostid], history: 0, time_from: clock, countOutput: true }, z.string()));
      if (n >= ITEMS) break;
      if (waited > 60_000) throw new Error(`only ${n} of ${ITEMS} values reached Zabbix history`);
      await new Promise((r) => setTimeout(r, 1000));
    }
    await api.close();

    const run = `bench-${Date.now().toString(36)}`;
    const cfg = validateConfig(
      {
        kafka: { brokers: ['x:1'], topics: { metrics: `swbench.${run}.metrics`, health: `swbench.${run}.health`, dead_letter: `swbench.${run}.dlq` } },
        elasticsearch: { url: 'http://x:1' },
      },
      'zabbix-poll benchmark',
      env,
    );
    const topics = { metrics: cfg.kafka.topics.metrics, health: cfg.kafka.topics.health, dead_letter: cfg.kafka.topics.dead_letter };
    await ensureTopics(cfg.kafka, Object.values(topics));
    const producer = await TopicProducer.connect(cfg.kafka, 'zabbix-collector');
    const rows: string[][] = [];
    const times: number[] = [];
    try {
      for (let r = 1; r <= RUNS; r++) {
        // A fresh checkpoint each run: every run reads all 10,000 values, as the first poll after a start does.
        const zcfg: ZabbixConfig = {
          url: zenv.STACKWATCH_ZABBIX_URL,
          username: zenv.STACKWATCH_ZABBIX_USER,
          password: zenv.STACKWATCH_ZABBIX_PASSWORD,
          schedule: '*/30 * * * * *',
          host_groups: [GROUP],
          backfill_s: Math.floor(Date.now() / 1000) - clock + 60,
          trends_after_s: 86_400,
          batch_items: 1000,
          request_timeout_ms: 60_000,
          checkpoint_dir: mkdtempSync(join(tmpdir(), 'sw-zbx-bench-')),
        };
        const ctx = collectorContext('zabbix-collector', producer, topics);
        const collector = new ZabbixCollector(zcfg, ctx);
        const t0 = performance.now();
        const s = await pollOnce(collector, ctx.emitter);
        const ms = performance.now() - t0;
        times.push(ms);
        rows.push([String(r), fmt(ms / 1000, 2), String(s.items), String(s.samples), String(s.apiCalls), fmt(s.samples / (ms / 1000), 0)]);
        progress(`zabbix-poll: run ${r}: ${(ms / 1000).toFixed(2)} s, ${s.samples} samples`);
        if (s.samples < ITEMS) throw new Error(`run ${r} read ${s.samples} samples, expected ${ITEMS}`);
      }
    } finally {
      await producer.disconnect();
      await deleteTopics(cfg.kafka, Object.values(topics)).catch(() => {});
    }
    const sorted = [...times].sort((a, b) => a - b);
    const median = sorted[Math.floor(sorted.length / 2)] / 1000;
    const m = machine();
    const report = [
      `== zabbix-poll: ${zabbixPollBench.summary}`,
      '',
      `machine: ${m.cpus} CPUs, ${m.cpuModel}, ${m.kernel}; Node ${m.node}; Zabbix ${debianVersion('zabbix-server-pgsql')} (Debian) on PostgreSQL ${debianVersion('postgresql-15')}, php -S frontend; samples into Kafka 4.1.1 (acks=all)`,
      `each run: a fresh checkpoint, so the poll reads every item's value (inventory, item.get, history.get by 1,000 ids, problem.get, produce)`,
      '',
      table([['run', 'seconds', 'items', 'samples', 'API calls', 'samples/s'], ...rows]),
      `median ${median.toFixed(2)} s, best ${(sorted[0] / 1000).toFixed(2)} s — target ≤ 5 s: ${median <= 5 ? 'met' : 'MISSED'}`,
    ].join('\n');
    return { report, ok: true };
  },
};
