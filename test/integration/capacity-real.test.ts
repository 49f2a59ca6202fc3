// Capacity for planners, end to end on the real services: a hypervisor's vCPU, memory and disk use and totals,
// as Zabbix items of a host in the real Zabbix 6.0 (ten days of history given to its trapper), read by the Zabbix
// collector → Kafka → processor → the metrics index → `stackwatch trends`, whose growth per day and days until
// full must be the exact least-squares answer for the series Zabbix holds.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { ZabbixApi } from '../../collectors/zabbix/api.ts';
import { collectorContext } from '../../collectors/emitter.ts';
import { pollOnce } from '../../collectors/schedule.ts';
import { ZabbixCollector } from '../../collectors/zabbix.ts';
import { ensureTopics, TopicProducer } from '../../core/kafka.ts';
import { startProcessor } from '../../processors/processor.ts';
import { countDocs, REPO, stackwatch, testSetup, waitFor } from './harness.ts';
import { zabbixSend } from './zabbix-sender.ts';

const zabbixSh = (...args: string[]) => execFileSync(join(REPO, 'scripts/zabbix.sh'), args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 300_000 });
const GROUP = 'Stackwatch capacity test';
const DAY = 86_400;

const t = testSetup('capacity', (raw) => {
  raw.collectors = {};
});
const ctl = new AbortController();
let env: Record<string, string> = {};
let api: ZabbixApi;
let hostid: string | undefined;

beforeAll(async () => {
  zabbixSh('start');
  env = Object.fromEntries(
    zabbixSh('env')
      .trim()
      .split('\n')
      .map((l) => l.split(/=(.*)/s).slice(0, 2) as [string, string]),
  );
  api = await ZabbixApi.connect({ url: env.STACKWATCH_ZABBIX_URL, username: env.STACKWATCH_ZABBIX_USER, password: env.STACKWATCH_ZABBIX_PASSWORD, request_timeout_ms: 30_000 });
}, 300_000);

afterAll(async () => {
  ctl.abort();
  if (hostid) await api.call('host.delete', [hostid], z.unknown()).catch(() => {});
  await api?.close();
  await t.cleanup();
});

/** Least squares by the textbook formula on (days, value) pairs: slope per day. */
function slope(points: [number, number][]): number {
  const n = points.length;
  const mx = points.reduce((s, p) => s + p[0], 0) / n;
  const my = points.reduce((s, p) => s + p[1], 0) / n;
  const sxy = points.reduce((s, p) => s + (p[0] - mx) * (p[1] - my), 0);
  const sxx = points.reduce((s, p) => s + (p[0] - mx) ** 2, 0);
  return sxy / sxx;
}

describe('capacity trends from a real Zabbix', () => {
  it("ten days of a hypervisor's usage in Zabbix → the metrics index → stackwatch trends with the exact forecast", async () => {
    const Ids = z.array(z.object({ groupid: z.string() }));
    let groups = await api.call('hostgroup.get', { filter: { name: [GROUP] }, output: ['groupid'] }, Ids);
    if (groups.length === 0) {
      await api.call('hostgroup.create', { name: GROUP }, z.unknown());
      groups = await api.call('hostgroup.get', { filter: { name: [GROUP] }, output: ['groupid'] }, Ids);
    }
    // Zabbix keeps its database between runs (PostgreSQL is the machine's): a host an earlier run left in the group
    // (stopped before its afterAll) would add its ten days to this poll's (a CI run read 328 samples for 164).
    const stale = await api.call('host.get', { groupids: [groups[0].groupid], output: ['hostid', 'host'] }, z.array(z.object({ hostid: z.string(), host: z.string() })));
    if (stale.length > 0) {
      console.log(`capacity: deleting ${stale.length} host(s) an earlier run left in "${GROUP}": ${stale.map((h) => h.host).join(', ')}`);
      await api.call(
        'host.delete',
        stale.map((h) => h.hostid),
        z.unknown(),
      );
    }
    const host = `cap-${t.run}`.slice(0, 60);
    await api.call('host.create', { host, groups: [{ groupid: groups[0].groupid }] }, z.unknown());
    hostid = (await api.call('host.get', { filter: { host: [host] }, output: ['hostid'] }, z.array(z.object({ hostid: z.string() }))))[0].hostid;
    const keys = { 'compute.vcpu.used': '', 'compute.vcpu.total': '', 'compute.memory.used': 'B', 'compute.memory.total': 'B' };
    await api.call(
      'item.create',
      Object.entries(keys).map(([key_, units]) => ({ hostid, name: key_, key_, type: 2, value_type: 0, units, history: '90d', trends: '0' })),
      z.unknown(),
    );
    zabbixSh('reload');

    // Ten days, every 6 hours: vCPUs used growing with noise, memory growing steadily; totals fixed.
    const now = Math.floor(Date.now() / 1000);
    const start = now - 10 * DAY;
    const noise = [0.4, -0.7, 0.2, 0.9, -0.3, -0.5, 0.6, 0.1, -0.8, 0.3];
    const vcpu: [number, number][] = [];
    const values: { host: string; key: string; value: string; clock: number }[] = [];
    for (let i = 0; i <= 40; i++) {
      const clock = start + i * 6 * 3600;
      const used = 20 + 1.5 * (i / 4) + noise[i % noise.length];
      vcpu.push([(clock - start) / DAY, used]);
      values.push(
        { host, key: 'compute.vcpu.used', value: used.toFixed(3), clock },
        { host, key: 'compute.vcpu.total', value: '64', clock },
        { host, key: 'compute.memory.used', value: String((200 + 4 * (i / 4)) * 2 ** 30), clock },
        { host, key: 'compute.memory.total', value: String(512 * 2 ** 30), clock },
      );
    }
    // The trapper accepts the items once its configuration cache has them.
    await waitFor(
      'the trapper to accept the new items',
      async () => (await zabbixSend(env.STACKWATCH_ZABBIX_TRAPPER_HOST, Number(env.STACKWATCH_ZABBIX_TRAPPER_PORT), values.slice(0, 1))).processed === 1,
      30_000,
      1000,
    );
    const sent = await zabbixSend(env.STACKWATCH_ZABBIX_TRAPPER_HOST, Number(env.STACKWATCH_ZABBIX_TRAPPER_PORT), values.slice(1));
    expect(sent.failed).toBe(0);
    await waitFor(
      '164 values in Zabbix history',
      async () => Number(await api.call('history.get', { hostids: [hostid], history: 0, countOutput: true }, z.string())) >= values.length,
      30_000,
      1000,
    );

    // One poll reads the ten days (all from history: trends_after_s is longer than the range).
    const { topics } = t.cfg.kafka;
    await ensureTopics(t.cfg.kafka, [topics.metrics, topics.health, topics.dead_letter]);
    await startProcessor(t.cfg, { signal: ctl.signal });
    const producer = await TopicProducer.connect(t.cfg.kafka, 'zabbix-collector');
    const ctx = collectorContext('zabbix-collector', producer, topics);
    const collector = new ZabbixCollector(
      {
        url: env.STACKWATCH_ZABBIX_URL,
        username: env.STACKWATCH_ZABBIX_USER,
        password: env.STACKWATCH_ZABBIX_PASSWORD,
        schedule: '*/30 * * * * *',
        host_groups: [GROUP],
        backfill_s: 11 * DAY,
        trends_after_s: 30 * DAY,
        batch_items: 1000,
        request_timeout_ms: 30_000,
        checkpoint_dir: join(t.dir, 'checkpoints'),
      },
      ctx,
    );
    expect((await pollOnce(collector, ctx.emitter)).samples).toBe(values.length);
    await producer.disconnect();
    await waitFor(`${values.length} samples in the metrics index`, async () => (await countDocs(t.es, `${t.cfg.elasticsearch.indices.metrics}-*`)) === values.length, 30_000);

    const cli = stackwatch(['trends', '--config', t.configFile, '--window', '30d', '--host', host, '--format', 'json']);
    let out = '';
    cli.child.stdout!.on('data', (d) => (out += d));
    expect((await cli.exited).code).toBe(0);
    const rows = JSON.parse(out) as { resource: string; host: string; used: number; total: number; growth_per_day: number; days_until_full: number | string }[];
    const vcpuRow = rows.find((r) => r.resource === 'compute.vcpu')!;
    const expected = slope(vcpu);
    expect(Math.abs(vcpuRow.growth_per_day - expected) / expected).toBeLessThan(1e-9);
    const lastUsed = Number(vcpu.at(-1)![1].toFixed(3));
    expect(vcpuRow).toMatchObject({ host, used: lastUsed, total: 64 });
    expect(Math.abs((vcpuRow.days_until_full as number) - (64 - lastUsed) / expected)).toBeLessThan(1e-6);
    const mem = rows.find((r) => r.resource === 'compute.memory')!;
    expect(mem.growth_per_day / 2 ** 30).toBeCloseTo(4, 9);
    expect(mem.days_until_full as number).toBeCloseTo((512 - 240) / 4, 6);
  }, 180_000);
});
