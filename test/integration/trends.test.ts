// `stackwatch trends` against the real Elasticsearch: known capacity series indexed into daily indices, the CLI's
// growth per day and days until full checked against the exact least-squares answer computed here, independently
// (the textbook closed form on the raw samples).
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { dailyIndex } from '../../core/elastic.ts';
import { installIndexTemplates } from '../../sinks/index-setup.ts';
import { metricDocument, type MetricEvent } from '../../core/events.ts';
import { stackwatch, testSetup } from './harness.ts';

const DAY = 86_400_000;
const HOUR = 3_600_000;
const TiB = 2 ** 40;
const GiB = 2 ** 30;

const t = testSetup('trends');
const prefix = t.cfg.elasticsearch.indices.metrics;
const NOW = Date.now();
const CMP1 = `${t.host}-cmp1`;
const CMP2 = `${t.host}-cmp2`;
const CMP3 = `${t.host}-cmp3`;
const CEPH = `${t.host}-ceph`;

/** A deterministic pseudo-random stream (mulberry32). */
function rng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}
const rand = rng(7);

const events: MetricEvent[] = [];
function sample(host: string, name: string, ms: number, value: number, unit: string, labels: Record<string, string> = {}) {
  events.push({ v: 1, '@timestamp': new Date(ms).toISOString(), source: name.startsWith('ceph') ? 'ceph' : 'zabbix', host: { name: host }, metric: { name, value, unit }, labels });
}

// compute.vcpu on cmp1: hourly for 14 days, +1.5 vCPU/day with noise, 64 vCPUs; plus samples from 40 days ago,
// outside the 30-day window, that must not count.
const vcpu: { t: number; v: number }[] = [];
for (let i = 0; i < 14 * 24; i++) {
  const ms = NOW - 14 * DAY + i * HOUR + Math.floor(rand() * 60_000);
  const v = Math.round(20 + 1.5 * (i / 24) + (rand() - 0.5) * 6);
  vcpu.push({ t: Date.parse(new Date(ms).toISOString()), v });
  sample(CMP1, 'compute.vcpu.used', ms, v, 'vcpu');
  sample(CMP1, 'compute.vcpu.total', ms, 64, 'vcpu');
}
for (let i = 0; i < 24; i++) sample(CMP1, 'compute.vcpu.used', NOW - 40 * DAY + i * HOUR, 60, 'vcpu');

// ceph.pool "volumes": every 5 minutes for 20 days (5760 samples: more than one page), ~200 GiB/day on 30 TiB.
const pool: { t: number; v: number }[] = [];
for (let i = 0; i < 20 * 288; i++) {
  const ms = NOW - 20 * DAY + i * 300_000;
  const v = Math.round(30 * TiB + 200 * GiB * (i / 288) + (rand() - 0.5) * 50 * GiB);
  pool.push({ t: ms, v });
  sample(CEPH, 'ceph.pool.used', ms, v, 'bytes', { pool: 'volumes' });
  if (i % 12 === 0) sample(CEPH, 'ceph.pool.total', ms, 100 * TiB, 'bytes', { pool: 'volumes' });
}
// ceph.pool "images": shrinking → never full.
for (let i = 0; i < 10; i++) {
  const ms = NOW - 10 * DAY + i * DAY;
  sample(CEPH, 'ceph.pool.used', ms, 5 * TiB - i * 10 * GiB, 'bytes', { pool: 'images' });
  sample(CEPH, 'ceph.pool.total', ms, 100 * TiB, 'bytes', { pool: 'images' });
}
// compute.disk on cmp2: two samples three hours apart → too short to forecast.
sample(CMP2, 'compute.disk.used', NOW - 5 * HOUR, 100 * GiB, 'bytes');
sample(CMP2, 'compute.disk.used', NOW - 2 * HOUR, 110 * GiB, 'bytes');
sample(CMP2, 'compute.disk.total', NOW - 2 * HOUR, 2 * TiB, 'bytes');
// compute.memory on cmp3: overcommitted → full now.
for (let i = 0; i < 5; i++) {
  sample(CMP3, 'compute.memory.used', NOW - (5 - i) * DAY, 520 * GiB + i * GiB, 'bytes');
  sample(CMP3, 'compute.memory.total', NOW - (5 - i) * DAY, 512 * GiB, 'bytes');
}
// Not a capacity metric: ignored.
for (let i = 0; i < 5; i++) sample(CMP1, 'db.replication.seconds_behind_master', NOW - i * HOUR, 3, 's');

/** The textbook closed form on the raw samples, time in days since the first: the exact least-squares answer. */
function exactSlope(points: { t: number; v: number }[]): number {
  const n = points.length;
  const xs = points.map((p) => (p.t - points[0].t) / DAY);
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = points.reduce((a, p) => a + p.v, 0) / n;
  let sxy = 0;
  let sxx = 0;
  for (let i = 0; i < n; i++) {
    sxy += (xs[i] - mx) * (points[i].v - my);
    sxx += (xs[i] - mx) ** 2;
  }
  return sxy / sxx;
}

const rel = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);

async function trends(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const cli = stackwatch(['trends', '--config', t.configFile, ...args]);
  let stdout = '';
  cli.child.stdout!.on('data', (d) => (stdout += d));
  const { code } = await cli.exited;
  return { code, stdout, stderr: cli.stderr() };
}

beforeAll(async () => {
  await installIndexTemplates(t.es, t.cfg.elasticsearch);
  const operations = events.flatMap((e) => {
    const doc = metricDocument(e);
    return [{ index: { _index: dailyIndex(prefix, doc['@timestamp']), _id: doc.event.id } }, doc];
  });
  for (let i = 0; i < operations.length; i += 10_000) {
    const res = await t.es.bulk({ operations: operations.slice(i, i + 10_000) });
    expect(res.errors, JSON.stringify(res.items.find((x) => x.index?.error))).toBe(false);
  }
  await t.es.indices.refresh({ index: `${prefix}-*` });
  const indices = Object.keys(await t.es.indices.get({ index: `${prefix}-*` }));
  expect(indices.length).toBeGreaterThan(20); // daily indices
});

afterAll(async () => {
  await t.cleanup();
});

describe('stackwatch trends', () => {
  it('forecasts every series with the exact least-squares growth and days until full (json)', async () => {
    const r = await trends('--format', 'json');
    expect(r.code, r.stderr).toBe(0);
    const rows = JSON.parse(r.stdout) as Record<string, any>[];
    const find = (resource: string, host: string, pool?: string) => rows.find((x) => x.resource === resource && x.host === host && x.labels.pool === pool);
    expect(rows.map((x) => `${x.resource} ${x.host} ${x.labels.pool ?? ''}`.trim())).toEqual([
      `ceph.pool ${CEPH} images`,
      `ceph.pool ${CEPH} volumes`,
      `compute.disk ${CMP2}`,
      `compute.memory ${CMP3}`,
      `compute.vcpu ${CMP1}`,
    ]);

    const v = find('compute.vcpu', CMP1)!;
    const vSlope = exactSlope(vcpu);
    const vLast = vcpu[vcpu.length - 1];
    expect(v.samples).toBe(vcpu.length); // the samples from 40 days ago are outside the window
    expect(rel(v.growth_per_day, vSlope)).toBeLessThan(1e-9);
    expect(rel(v.days_until_full, (64 - vLast.v) / vSlope)).toBeLessThan(1e-9);
    expect(v).toMatchObject({ unit: 'vcpu', used: vLast.v, total: 64, last: new Date(vLast.t).toISOString(), reason: null });
    expect(v.percent_used).toBeCloseTo((vLast.v / 64) * 100, 10);
    expect(Date.parse(v.full_by)).toBeCloseTo(vLast.t + v.days_until_full * DAY, -1);

    const p = find('ceph.pool', CEPH, 'volumes')!;
    const pSlope = exactSlope(pool);
    const pLast = pool[pool.length - 1];
    expect(p.samples).toBe(pool.length);
    expect(rel(p.growth_per_day, pSlope)).toBeLessThan(1e-9);
    expect(rel(p.days_until_full, (100 * TiB - pLast.v) / pSlope)).toBeLessThan(1e-9);
    expect(p).toMatchObject({ unit: 'bytes', used: pLast.v, total: 100 * TiB, labels: { pool: 'volumes' } });

    expect(find('ceph.pool', CEPH, 'images')).toMatchObject({ days_until_full: 'never', reason: null });
    expect(rel(find('ceph.pool', CEPH, 'images')!.growth_per_day, -10 * GiB)).toBeLessThan(1e-9);
    expect(find('compute.memory', CMP3)).toMatchObject({ days_until_full: 0, reason: null });
    expect(find('compute.disk', CMP2)).toMatchObject({
      samples: 2,
      growth_per_day: null,
      days_until_full: null,
      used: 110 * GiB,
      reason: 'history too short to forecast: 2 samples over 3 h; need ≥ 3 samples over ≥ 1 d',
    });
  });

  it('prints an aligned table with human units, sparklines and the reason for a missing forecast', async () => {
    const r = await trends('--window', '30d');
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.split('\n');
    expect(lines[0]).toMatch(/^RESOURCE +HOST\/POOL +USED +TOTAL +%USED +GROWTH\/DAY +DAYS TO FULL +TREND$/);
    const volumes = lines.find((l) => l.includes(`${CEPH}/volumes`))!;
    // 20 days of samples in a 30-day window drawn 20 characters wide: the first third is blank
    expect(volumes).toMatch(/ 100\.0 TiB +\d+\.\d% +\+\d+\.\d GiB +\d+ {2}( {6,7}[▁▂▃▄▅▆▇█]{13,14})$/);
    expect(lines.find((l) => l.includes(`${CEPH}/images`))).toMatch(/ never /);
    expect(lines.find((l) => l.startsWith('compute.memory'))).toMatch(/ full /);
    expect(lines.find((l) => l.startsWith('compute.vcpu'))).toMatch(/ \d+ vcpu +64 vcpu /);
    expect(r.stdout).toContain(`note: compute.disk ${CMP2}: history too short to forecast: 2 samples over 3 h; need ≥ 3 samples over ≥ 1 d`);
    // columns line up: TREND starts at the same place on every row
    const at = lines[0].indexOf('TREND');
    for (const l of lines.slice(1, 6)) expect([...l.slice(0, at)].length).toBe(at);
  });

  it('filters by resource (prefix) and host, and writes csv', async () => {
    const r = await trends('--resource', 'compute', '--host', `${CMP1},${CMP3}`, '--format', 'csv');
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines[0]).toBe('resource,host,labels,unit,samples,first,last,used,total,percent_used,growth_per_day,days_until_full,full_by,reason');
    expect(lines.slice(1).map((l) => l.split(',').slice(0, 2).join(' '))).toEqual([`compute.memory ${CMP3}`, `compute.vcpu ${CMP1}`]);
    const vcpuRow = lines[2].split(',');
    expect(rel(Number(vcpuRow[10]), exactSlope(vcpu))).toBeLessThan(1e-9);

    const pools = await trends('--resource', 'ceph.pool', '--format', 'json', '--min-history', '30d');
    const rows = JSON.parse(pools.stdout) as Record<string, any>[];
    expect(rows.map((x) => x.labels.pool)).toEqual(['images', 'volumes']);
    expect(rows[1].reason).toMatch(/^history too short to forecast: 5760 samples over 20 d; need ≥ 30 d$/);
  });

  it('says so when there are no capacity metrics, and exits 0', async () => {
    const r = await trends('--resource', 'nothing.here');
    expect(r).toMatchObject({ code: 0, stderr: '' });
    expect(r.stdout).toBe(`no capacity metrics (<resource>.used / <resource>.total) in ${prefix}-* over the last 30 d for resource nothing.here\n`);

    const empty = join(t.dir, 'empty.yaml');
    writeFileSync(empty, stringify({ ...t.raw, elasticsearch: { ...t.raw.elasticsearch, indices: { metrics: `swtest-${t.run}-none` } } }));
    const cli = stackwatch(['trends', '--config', empty, '--format', 'json']);
    let stdout = '';
    cli.child.stdout!.on('data', (d) => (stdout += d));
    expect((await cli.exited).code).toBe(0);
    expect(stdout).toBe('[]\n');
    expect(cli.stderr()).toMatch(/^stackwatch trends: no capacity metrics .* in swtest-.*-none-\* over the last 30 d\n$/);
  });

  it('fails with one line and exit 1 when Elasticsearch is unreachable', async () => {
    const cli = stackwatch(['trends', '--config', t.configFile], { STACKWATCH_ES_URL: 'http://127.0.0.1:9' });
    const { code } = await cli.exited;
    expect(code).toBe(1);
    expect(cli.stderr()).toMatch(/^stackwatch: cannot reach Elasticsearch at http:\/\/127\.0\.0\.1:9: .*ECONNREFUSED.*; check elasticsearch\.url \(or STACKWATCH_ES_URL\)\n$/);
  });

  it('rejects a bad option with exit 2', async () => {
    const r = await trends('--window', 'forever');
    expect(r.code).toBe(2);
    expect(r.stderr).toBe('stackwatch: --window: expected a duration such as 30d, 12h or 2w, got "forever"\n');
  });
});
