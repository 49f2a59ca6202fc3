// The Zabbix collector's poll logic against an in-memory Zabbix (the API's shapes as Zabbix 6.0 returns them;
// test/integration/zabbix-real.test.ts runs the same collector against a real Zabbix 6.0 server).
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { collectorContext } from '../../collectors/emitter.ts';
import { pollOnce, runScheduled } from '../../collectors/schedule.ts';
import { DEFAULT_ITEMS, keyParams, mapItem, ZabbixCollector, type ZabbixConfig } from '../../collectors/zabbix.ts';
import { DeadLetter, HealthEvent, MetricEvent } from '../../core/events.ts';

interface FakeItem {
  itemid: string;
  hostid: string;
  key_: string;
  value_type: string;
  units?: string;
}

/** A Zabbix 6.0 API in memory: hosts, items, history by value type, trends, problems and events. */
function fakeZabbix() {
  const db = {
    hosts: [
      { hostid: '10501', host: 'db-replica', name: 'db-replica', status: '0', interfaces: [{ ip: '127.0.0.1', dns: '' }], groups: [{ name: 'Databases' }] },
      { hostid: '10502', host: 'compute-1', name: 'compute-1', status: '0', interfaces: [{ ip: '10.0.0.11', dns: '' }], groups: [{ name: 'Hypervisors' }] },
    ] as Record<string, unknown>[],
    items: [
      { itemid: '1', hostid: '10501', key_: 'mysql.replication.seconds_behind_master["10.0.0.5"]', value_type: '3' },
      { itemid: '2', hostid: '10502', key_: 'vfs.fs.size[/var/lib/nova,used]', value_type: '3', units: 'B' },
      { itemid: '3', hostid: '10502', key_: 'vfs.fs.size[/var/lib/nova,total]', value_type: '3', units: 'B' },
      { itemid: '4', hostid: '10502', key_: 'system.cpu.switches', value_type: '3' },
      { itemid: '5', hostid: '10502', key_: 'compute.vcpu.used', value_type: '0' },
    ] as FakeItem[],
    history: [] as { itemid: string; clock: string; ns: string; value: string }[],
    trends: [] as { itemid: string; clock: string; num: string; value_avg: string }[],
    problems: [] as Record<string, string | object>[],
    events: [] as { eventid: string; clock: string; r_eventid: string; hosts: { hostid: string; host: string }[] }[],
  };
  const calls: { method: string; params: Record<string, any> }[] = [];
  const fetchImpl = (async (_: string, init: RequestInit) => {
    const req = JSON.parse(String(init.body)) as { method: string; params: Record<string, any>; id: number };
    calls.push({ method: req.method, params: req.params });
    const p = req.params;
    const inIds = (ids: string[] | undefined, id: string) => !ids || ids.includes(id);
    const result = ((): unknown => {
      switch (req.method) {
        case 'apiinfo.version':
          return '6.0.14';
        case 'user.login':
          return 'sid';
        case 'host.get':
          return db.hosts;
        case 'item.get':
          return db.items.filter((i) => p.hostids.includes(i.hostid) && p.filter.value_type.includes(i.value_type)).map((i) => ({ units: '', ...i }));
        case 'history.get': {
          const types = new Map(db.items.map((i) => [i.itemid, i.value_type]));
          return db.history
            .filter((h) => p.itemids.includes(h.itemid) && types.get(h.itemid) === String(p.history) && (Number.isNaN(+h.clock) || (+h.clock >= p.time_from && +h.clock <= p.time_till)))
            .sort((a, b) => +a.clock - +b.clock);
        }
        case 'trend.get':
          return db.trends.filter((t) => p.itemids.includes(t.itemid) && +t.clock >= p.time_from && +t.clock <= p.time_till);
        case 'problem.get':
          return db.problems;
        case 'event.get':
          return db.events.filter((e) => inIds(p.eventids, e.eventid));
        default:
          throw new Error(`fake zabbix: no method ${req.method}`);
      }
    })();
    return new Response(JSON.stringify({ jsonrpc: '2.0', result, id: req.id }));
  }) as typeof fetch;
  return { db, calls, fetchImpl };
}

function collectorWith(zabbix: ReturnType<typeof fakeZabbix>, clock: { now: number }, extra: Partial<ZabbixConfig> = {}, dir = mkdtempSync(join(tmpdir(), 'sw-zbx-'))) {
  const sent: { topic: string; value: string }[] = [];
  const cfg: ZabbixConfig = {
    url: 'http://zabbix.test/api_jsonrpc.php',
    username: 'Admin',
    password: 'zabbix',
    schedule: '*/30 * * * * *',
    backfill_s: 600,
    trends_after_s: 86_400,
    batch_items: 1000,
    request_timeout_ms: 1000,
    checkpoint_dir: dir,
    ...extra,
  };
  const producer = { send: async (topic: string, messages: { value: string | Buffer | null }[]) => void sent.push(...messages.map((m) => ({ topic, value: String(m.value) }))) };
  const ctx = collectorContext('zabbix-collector', producer, { metrics: 'm', health: 'h', dead_letter: 'd' });
  const collector = new ZabbixCollector(cfg, ctx, { fetch: zabbix.fetchImpl, now: () => clock.now * 1000 });
  const c = { pollOnce: (signal?: AbortSignal) => pollOnce(collector, ctx.emitter, signal) };
  const of = (topic: string) => sent.filter((s) => s.topic === topic).map((s) => JSON.parse(s.value));
  return {
    c,
    dir,
    metrics: () => of('m').map((m) => MetricEvent.parse(m)),
    health: () => of('h').map((h) => HealthEvent.parse(h)),
    dead: () => of('d').map((d) => DeadLetter.parse(d)),
    reset: () => (sent.length = 0),
  };
}

describe('item keys', () => {
  it('splits bracketed parameters, quoted ones keep their commas', () => {
    expect(keyParams('vfs.fs.size[/,total]')).toEqual(['/', 'total']);
    expect(keyParams('mysql.replication.seconds_behind_master["tcp://db:3306","zbx","a,b"]')).toEqual(['tcp://db:3306', 'zbx', 'a,b']);
    expect(keyParams('system.cpu.switches')).toEqual([]);
  });

  it('maps keys by the first matching glob, with parameters in the labels; unmapped keys are not collected', () => {
    const item = (key_: string) => ({ itemid: '1', hostid: '1', key_, value_type: '3' as const, units: 'B' });
    expect(mapItem(item('vfs.fs.size[/var/lib/nova,used]'), DEFAULT_ITEMS)).toMatchObject({ metric: 'compute.disk.used', unit: 'bytes', labels: { fs: '/var/lib/nova' } });
    expect(mapItem(item('mysql.replication.seconds_behind_master["10.0.0.5"]'), DEFAULT_ITEMS)).toMatchObject({
      metric: 'db.replication.seconds_behind_master',
      labels: { master_host: '10.0.0.5' },
    });
    expect(mapItem(item('db.wsrep.local_state'), DEFAULT_ITEMS)).toMatchObject({ metric: 'db.wsrep.local_state', unit: 'B' });
    expect(mapItem(item('db.thing[x]'), DEFAULT_ITEMS)).toBeUndefined(); // {key} with brackets is no metric name
    expect(mapItem(item('system.cpu.switches'), DEFAULT_ITEMS)).toBeUndefined();
  });
});

describe('ZabbixCollector.pollOnce', () => {
  it('sends each value once: the backfill first, then only what is new; the checkpoint survives a restart', async () => {
    const z = fakeZabbix();
    const clock = { now: 1_800_000_000 };
    const t0 = clock.now;
    z.db.history.push(
      { itemid: '1', clock: String(t0 - 700), ns: '0', value: '1' }, // older than the backfill: not read
      { itemid: '1', clock: String(t0 - 20), ns: '5000000', value: '12' },
      { itemid: '2', clock: String(t0 - 20), ns: '0', value: '1073741824' },
      { itemid: '4', clock: String(t0 - 20), ns: '0', value: '999' }, // unmapped
      { itemid: '5', clock: String(t0 - 10), ns: '0', value: '7.5' },
    );
    const a = collectorWith(z, clock);
    const first = await a.c.pollOnce();
    expect(first).toMatchObject({ hosts: 2, items: 4, samples: 3 });
    expect(a.metrics().map((m) => [m.host.name, m.metric.name, m.metric.value, m['@timestamp']])).toEqual([
      ['compute-1', 'compute.vcpu.used', 7.5, new Date((t0 - 10) * 1000).toISOString()],
      ['db-replica', 'db.replication.seconds_behind_master', 12, new Date((t0 - 20) * 1000 + 5).toISOString()],
      ['compute-1', 'compute.disk.used', 1073741824, new Date((t0 - 20) * 1000).toISOString()],
    ]);
    // Inventory of both hosts, once.
    expect(
      a
        .health()
        .filter((h) => h.kind === 'inventory')
        .map((h) => h.kind === 'inventory' && [h.host.name, h.host.ip, h.host.groups]),
    ).toEqual([
      ['db-replica', ['127.0.0.1'], ['Databases']],
      ['compute-1', ['10.0.0.11'], ['Hypervisors']],
    ]);

    clock.now += 30;
    z.db.history.push({ itemid: '1', clock: String(clock.now - 5), ns: '0', value: '40' });
    a.reset();
    expect((await a.c.pollOnce()).samples).toBe(1);
    expect(a.metrics().map((m) => m.metric.value)).toEqual([40]);
    expect(a.health()).toEqual([]); // the inventory did not change

    // A new process with the same checkpoint directory sends nothing twice.
    clock.now += 30;
    z.db.history.push({ itemid: '1', clock: String(clock.now - 5), ns: '0', value: '45' });
    const b = collectorWith(z, clock, {}, a.dir);
    await b.c.pollOnce();
    expect(b.metrics().map((m) => m.metric.value)).toEqual([45]);
  });

  it('reads history in batches of batch_items item ids per value type, and old ranges from trends', async () => {
    const z = fakeZabbix();
    const clock = { now: 1_800_000_000 };
    z.db.items = Array.from({ length: 25 }, (_, i) => ({ itemid: String(100 + i), hostid: '10501', key_: `db.test.item${i}`, value_type: i % 5 === 0 ? '0' : '3' }));
    z.db.trends.push({ itemid: '100', clock: String(clock.now - 3 * 86_400), num: '60', value_avg: '3.5' });
    z.db.history.push({ itemid: '101', clock: String(clock.now - 60), ns: '0', value: '9' });
    const a = collectorWith(z, clock, { batch_items: 10, backfill_s: 7 * 86_400 });
    await a.c.pollOnce();
    const history = z.calls.filter((c) => c.method === 'history.get');
    // 5 float items (one batch), 20 unsigned items (two batches of 10).
    expect(history.map((c) => [c.params.history, c.params.itemids.length])).toEqual([
      [0, 5],
      [3, 10],
      [3, 10],
    ]);
    expect(z.calls.filter((c) => c.method === 'trend.get')).toHaveLength(3);
    expect(
      a
        .metrics()
        .map((m) => [m.metric.name, m.metric.value])
        .sort(),
    ).toEqual([
      ['db.test.item0', 3.5],
      ['db.test.item1', 9],
    ]);
  });

  it('a malformed value or record goes to the dead-letter topic with the reason; the rest goes on', async () => {
    const z = fakeZabbix();
    const clock = { now: 1_800_000_000 };
    z.db.history.push({ itemid: '1', clock: String(clock.now - 20), ns: '0', value: 'NaN-ish' });
    z.db.history.push({ itemid: '5', clock: String(clock.now - 20), ns: '0', value: '3' });
    z.db.history.push({ itemid: '2', clock: 'yesterday', ns: '0', value: '1' } as never);
    const a = collectorWith(z, clock);
    const s = await a.c.pollOnce();
    expect(s.deadLettered).toBe(2);
    expect(a.dead().map((d) => d.reason)).toEqual([
      expect.stringMatching(/^history\.get: clock: /),
      expect.stringMatching(/item 1 \(mysql\.replication\.seconds_behind_master\["10\.0\.0\.5"\]\): value "NaN-ish" is not a number/),
    ]);
    expect(a.metrics().map((m) => m.metric.value)).toEqual([3]);
  });

  it("a problem is sent open once, then resolved with Zabbix's resolution time, also after it left problem.get", async () => {
    const z = fakeZabbix();
    const clock = { now: 1_800_000_000 };
    const problem = {
      eventid: '900',
      objectid: '1',
      name: 'MySQL: Service is down',
      severity: '4',
      clock: String(clock.now - 100),
      r_eventid: '0',
      r_clock: '0',
      acknowledged: '0',
      tags: [{ tag: 'service', value: 'mariadb' }],
    };
    z.db.problems = [problem];
    z.db.events = [{ eventid: '900', clock: problem.clock, r_eventid: '0', hosts: [{ hostid: '10501', host: 'db-replica' }] }];
    const a = collectorWith(z, clock);
    await a.c.pollOnce();
    clock.now += 30;
    await a.c.pollOnce(); // still open: nothing new
    const problems = () => a.health().filter((h) => h.kind === 'zabbix-problem');
    expect(problems()).toHaveLength(1);
    expect(problems()[0]).toMatchObject({ host: { name: 'db-replica' }, problem: { eventid: '900', status: 'open', severity: 4 }, labels: { service: 'mariadb' } });

    // Resolved and gone from problem.get before the next poll: found through event.get.
    z.db.problems = [];
    z.db.events = [
      { eventid: '900', clock: problem.clock, r_eventid: '901', hosts: [{ hostid: '10501', host: 'db-replica' }] },
      { eventid: '901', clock: String(clock.now - 10), r_eventid: '0', hosts: [] },
    ];
    clock.now += 600;
    await a.c.pollOnce();
    expect(problems()).toHaveLength(2);
    expect(problems()[1]).toMatchObject({ problem: { eventid: '900', status: 'resolved', ended_at: new Date((clock.now - 610) * 1000).toISOString() } });
  });
});

describe('ZabbixCollector.run against a hostile or broken Zabbix', () => {
  it('a malformed answer fails the poll without a crash: dead letter with the reason and the answer, counted; a later poll works', async () => {
    const z = fakeZabbix();
    const clock = { now: 1_800_000_000 };
    z.db.history.push({ itemid: '5', clock: String(clock.now - 5), ns: '0', value: '1' });
    const good = z.fetchImpl;
    const answers = ['<html><body>502 Bad Gateway</body></html>', '{"jsonrpc":"2.0","result":{"not":"a list"},"id":3}', '{"jsonrpc":"2.0","res'];
    const hostile = (async (url: string, init: RequestInit) => {
      const body = JSON.parse(String(init.body)) as { method: string; id: number };
      if (body.method === 'host.get' && answers.length > 0) {
        const a = answers.shift()!;
        return new Response(a.replace('"id":3', `"id":${body.id}`));
      }
      return good(url, init);
    }) as typeof fetch;
    const dir = mkdtempSync(join(tmpdir(), 'sw-zbx-'));
    const sent: { topic: string; value: string }[] = [];
    const producer = { send: async (topic: string, messages: { value: string | Buffer | null }[]) => void sent.push(...messages.map((m) => ({ topic, value: String(m.value) }))) };
    const cfg: ZabbixConfig = {
      url: 'http://zabbix.test/api_jsonrpc.php',
      token: 't',
      schedule: '* * * * * *',
      backfill_s: 600,
      trends_after_s: 86_400,
      batch_items: 1000,
      request_timeout_ms: 1000,
      checkpoint_dir: dir,
    };
    const ctx = collectorContext('zabbix-collector', producer, { metrics: 'm', health: 'h', dead_letter: 'd' });
    const c = new ZabbixCollector(cfg, ctx, { fetch: hostile, now: () => clock.now * 1000 });
    const ctl = new AbortController();
    const { counterValue } = await import('../../core/metrics.ts');
    const { setLogSink } = await import('../../core/log.ts');
    const logged: string[] = [];
    const restore = setLogSink((l) => logged.push(l));
    const before = await counterValue('errors', { component: 'zabbix-collector', stage: 'poll' });
    const running = runScheduled(c, ctx.emitter, ctl.signal);
    try {
      // Three bad polls (one a second), then a good one.
      await new Promise<void>((resolve, reject) => {
        const deadline = Date.now() + 8000;
        const t = setInterval(() => {
          if (sent.some((s) => s.topic === 'm')) resolve(clearInterval(t));
          else if (Date.now() > deadline) reject(new Error(`no good poll; sent: ${JSON.stringify(sent.map((s) => s.topic))}`));
        }, 50);
      });
    } finally {
      ctl.abort();
      await running;
      restore();
    }
    const dead = sent.filter((s) => s.topic === 'd').map((s) => DeadLetter.parse(JSON.parse(s.value)));
    expect(dead.map((d) => d.reason)).toEqual([
      expect.stringMatching(/^host\.get: the answer is not JSON/),
      expect.stringMatching(/^host\.get: unexpected result at \(top level\): /),
      expect.stringMatching(/^host\.get: the answer is not JSON/),
    ]);
    expect(dead[0].payload).toContain('502 Bad Gateway');
    expect((await counterValue('errors', { component: 'zabbix-collector', stage: 'poll' })) - before).toBe(3);
    expect(logged.filter((l) => l.includes('poll failed'))).toHaveLength(3);
    expect(MetricEvent.parse(JSON.parse(sent.find((s) => s.topic === 'm')!.value)).metric.value).toBe(1);
  }, 15_000);
});
