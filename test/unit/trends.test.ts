// Capacity trends: the least-squares line against the textbook formula, days until full, sparklines and the
// table / csv / json the planners read.
import { describe, expect, it } from 'vitest';
import { formatBytes, renderCsv, renderJson, renderTable, seriesName } from '../../cli/trends.ts';
import { capacityName, DAY_MS, daysUntilFull, humanDuration, LeastSquares, leastSquares, parseDays, sparkline, type Trend } from '../../cli/trends-query.ts';

const T0 = Date.UTC(2025, 0, 1, 0, 0, 0);

/** The textbook closed form on the raw numbers: b = (nΣxy − ΣxΣy) / (nΣx² − (Σx)²), a = (Σy − bΣx) / n. */
function textbook(xs: number[], ys: number[]): { slope: number; intercept: number } {
  const n = xs.length;
  let sx = 0,
    sy = 0,
    sxy = 0,
    sxx = 0;
  for (let i = 0; i < n; i++) {
    sx += xs[i];
    sy += ys[i];
    sxy += xs[i] * ys[i];
    sxx += xs[i] * xs[i];
  }
  const slope = (n * sxy - sx * sy) / (n * sxx - sx * sx);
  return { slope, intercept: (sy - slope * sx) / n };
}

/** A deterministic pseudo-random stream (mulberry32). */
function rng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const rel = (a: number, b: number) => Math.abs(a - b) / Math.max(Math.abs(b), 1e-300);

describe('least squares', () => {
  it('recovers an exact line at irregular times: slope per day, intercept at the first sample', () => {
    const days = [0, 0.25, 1, 1.5, 4, 9.75];
    const fit = leastSquares(days.map((d) => ({ t: T0 + d * DAY_MS, v: 100 + 5 * d })))!;
    expect(fit.n).toBe(6);
    expect(fit.slope).toBeCloseTo(5, 12);
    expect(fit.intercept).toBeCloseTo(100, 10);
    expect(fit.t0).toBe(T0);
  });

  it('matches the hand-computed fit of a small noisy series', () => {
    // x = 0..4 days, y = 1 3 2 5 4: Σx=10 Σy=15 Σxy=38 Σx²=30 → b = (5·38 − 10·15)/(5·30 − 100) = 0.8, a = (15 − 8)/5 = 1.4
    const fit = leastSquares([1, 3, 2, 5, 4].map((v, i) => ({ t: T0 + i * DAY_MS, v })))!;
    expect(fit.slope).toBeCloseTo(0.8, 12);
    expect(fit.intercept).toBeCloseTo(1.4, 12);
  });

  it('matches the textbook formula on a long noisy series', () => {
    const rand = rng(42);
    const xs: number[] = [];
    const ys: number[] = [];
    let t = 0;
    for (let i = 0; i < 5000; i++) {
      t += 0.001 + rand() * 0.01; // irregular polls, ~28 days in all
      xs.push(t);
      ys.push(300 + 2.5 * t + (rand() - 0.5) * 40);
    }
    const ls = new LeastSquares();
    for (let i = 0; i < xs.length; i++) ls.add(T0 + xs[i] * DAY_MS, ys[i]);
    const fit = ls.fit()!;
    const want = textbook(
      xs.map((x) => x - xs[0]),
      ys,
    );
    expect(rel(fit.slope, want.slope)).toBeLessThan(1e-9);
    expect(rel(fit.intercept, want.intercept)).toBeLessThan(1e-9);
    expect(fit.slope).toBeGreaterThan(2); // and it is the trend that was put in
    expect(fit.slope).toBeLessThan(3);
  });

  it('keeps its precision on byte-sized values (centred sums)', () => {
    // 1 PiB growing 1 GiB a day: the raw sums Σy² would be ~1e32, far beyond double precision.
    const base = 2 ** 50;
    const fit = leastSquares(Array.from({ length: 2000 }, (_, i) => ({ t: T0 + i * 300_000, v: base + 2 ** 30 * ((i * 300_000) / DAY_MS) })))!;
    expect(rel(fit.slope, 2 ** 30)).toBeLessThan(1e-9);
    expect(rel(fit.intercept, base)).toBeLessThan(1e-12);
  });

  it('has no line with fewer than two distinct times', () => {
    expect(leastSquares([])).toBeUndefined();
    expect(leastSquares([{ t: T0, v: 1 }])).toBeUndefined();
    expect(
      leastSquares([
        { t: T0, v: 1 },
        { t: T0, v: 2 },
      ]),
    ).toBeUndefined();
  });
});

describe('days until full', () => {
  it('divides the headroom by the growth', () => {
    expect(daysUntilFull(60, 100, 4)).toBe(10);
    expect(daysUntilFull(99.5, 100, 2)).toBe(0.25);
  });
  it('is 0 when already full, whatever the growth', () => {
    expect(daysUntilFull(100, 100, 1)).toBe(0);
    expect(daysUntilFull(120, 100, -3)).toBe(0);
    expect(daysUntilFull(0, 0, 0)).toBe(0);
  });
  it('is never (undefined) when usage is flat or shrinking', () => {
    expect(daysUntilFull(50, 100, 0)).toBeUndefined();
    expect(daysUntilFull(50, 100, -0.5)).toBeUndefined();
    expect(daysUntilFull(50, 100, NaN)).toBeUndefined();
  });
});

describe('sparkline', () => {
  it('uses the eight block characters from the smallest to the largest value', () => {
    expect(sparkline([0, 1, 2, 3, 4, 5, 6, 7], 8)).toBe('▁▂▃▄▅▆▇█');
    expect(sparkline([7, 0, 7], 10)).toBe('█▁█');
  });
  it('averages into width buckets', () => {
    // 0..15 in pairs → 0.5, 2.5, … 14.5: a ramp again
    expect(
      sparkline(
        Array.from({ length: 16 }, (_, i) => i),
        8,
      ),
    ).toBe('▁▂▃▄▅▆▇█');
    // 1000 points into 10 buckets of 100: first half low, second half high
    expect(
      sparkline(
        Array.from({ length: 1000 }, (_, i) => (i < 500 ? 1 : 9)),
        10,
      ),
    ).toBe('▁▁▁▁▁█████');
    expect([
      ...sparkline(
        Array.from({ length: 999 }, (_, i) => Math.sin(i)),
        7,
      ),
    ]).toHaveLength(7);
  });
  it('draws a flat series as a flat line', () => {
    expect(sparkline([5, 5, 5, 5], 10)).toBe('▄▄▄▄');
    expect(
      sparkline(
        Array.from({ length: 100 }, () => 2 ** 40),
        5,
      ),
    ).toBe('▄▄▄▄▄');
  });
  it('shows gaps (NaN) as spaces and handles nothing', () => {
    expect(sparkline([0, NaN, 7], 3)).toBe('▁ █');
    expect(sparkline([], 5)).toBe('');
    expect(sparkline([1, 2], 0)).toBe('');
  });
});

describe('names and durations', () => {
  it('splits capacity metric names', () => {
    expect(capacityName('compute.vcpu.used')).toEqual({ resource: 'compute.vcpu', kind: 'used' });
    expect(capacityName('ceph.pool.total')).toEqual({ resource: 'ceph.pool', kind: 'total' });
    expect(capacityName('db.replication.seconds_behind_master')).toBeUndefined();
    expect(capacityName('.used')).toBeUndefined();
  });
  it('parses durations into days and prints them for people', () => {
    expect(parseDays('30d')).toBe(30);
    expect(parseDays('12h')).toBe(0.5);
    expect(parseDays('2w')).toBe(14);
    expect(parseDays('90min')).toBeCloseTo(90 / 1440, 12);
    expect(parseDays('7')).toBe(7);
    expect(parseDays('soon')).toBeUndefined();
    expect(humanDuration(3 * 3_600_000)).toBe('3 h');
    expect(humanDuration(DAY_MS)).toBe('1 d');
    expect(humanDuration(45 * 60_000)).toBe('45 min');
    expect(humanDuration(1.5 * DAY_MS)).toBe('1.5 d');
  });
});

const TRENDS: Trend[] = [
  {
    resource: 'ceph.pool',
    host: 'ceph-prod',
    labels: { pool: 'volumes' },
    unit: 'bytes',
    samples: 2880,
    first: '2025-01-01T00:00:00.000Z',
    last: '2025-01-10T23:55:00.000Z',
    used: 40 * 2 ** 40,
    total: 50 * 2 ** 40,
    percentUsed: 80,
    growthPerDay: 0.5 * 2 ** 40,
    daysUntilFull: 20,
    fullBy: '2025-01-30T23:55:00.000Z',
    sparkline: '▁▂▃▄▅▆▇█',
  },
  {
    resource: 'compute.vcpu',
    host: 'cmp-01',
    labels: {},
    unit: 'vcpu',
    samples: 10,
    used: 80,
    total: 96,
    percentUsed: (80 / 96) * 100,
    growthPerDay: -0.25,
    sparkline: '█▆▄▂',
  },
  {
    resource: 'compute.vcpu',
    host: 'cmp-02',
    labels: {},
    unit: 'vcpu',
    samples: 2,
    used: 10,
    total: 96,
    percentUsed: (10 / 96) * 100,
    reason: 'history too short to forecast: 2 samples over 3 h; need ≥ 3 samples over ≥ 1 d',
    sparkline: '▁█',
  },
];

describe('rendering', () => {
  it('formats bytes in binary units', () => {
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(1536)).toBe('1.5 KiB');
    expect(formatBytes(812 * 2 ** 30)).toBe('812.0 GiB');
    expect(formatBytes(1.5 * 2 ** 40)).toBe('1.5 TiB');
    expect(formatBytes(-3 * 2 ** 30)).toBe('-3.0 GiB');
  });

  it('names a Ceph pool host/pool', () => {
    expect(seriesName({ host: 'ceph-prod', labels: { pool: 'volumes' } })).toBe('ceph-prod/volumes');
    expect(seriesName({ host: 'cmp-01', labels: {} })).toBe('cmp-01');
    expect(seriesName({ host: 'cmp-01', labels: { az: 'nova', pool: 'x' } })).toBe('cmp-01/x az=nova');
  });

  it('renders an aligned table with human units and a note for the series without a forecast', () => {
    expect(renderTable(TRENDS)).toBe(
      [
        'RESOURCE      HOST/POOL              USED     TOTAL  %USED  GROWTH/DAY  DAYS TO FULL  TREND',
        'ceph.pool     ceph-prod/volumes  40.0 TiB  50.0 TiB  80.0%  +512.0 GiB            20  ▁▂▃▄▅▆▇█',
        'compute.vcpu  cmp-01              80 vcpu   96 vcpu  83.3%  -0.25 vcpu         never  █▆▄▂',
        'compute.vcpu  cmp-02              10 vcpu   96 vcpu  10.4%           -             -  ▁█',
        '',
        'note: compute.vcpu cmp-02: history too short to forecast: 2 samples over 3 h; need ≥ 3 samples over ≥ 1 d',
        '',
      ].join('\n'),
    );
  });

  it('renders csv with a header row and raw numbers', () => {
    const lines = renderCsv(TRENDS).trimEnd().split('\n');
    expect(lines[0]).toBe('resource,host,labels,unit,samples,first,last,used,total,percent_used,growth_per_day,days_until_full,full_by,reason');
    expect(lines[1]).toBe(
      `ceph.pool,ceph-prod,pool=volumes,bytes,2880,2025-01-01T00:00:00.000Z,2025-01-10T23:55:00.000Z,${40 * 2 ** 40},${50 * 2 ** 40},80,${0.5 * 2 ** 40},20,2025-01-30T23:55:00.000Z,`,
    );
    expect(lines[2]).toBe(`compute.vcpu,cmp-01,,vcpu,10,,,80,96,${(80 / 96) * 100},-0.25,never,,`);
    expect(lines[3]).toBe(`compute.vcpu,cmp-02,,vcpu,2,,,10,96,${(10 / 96) * 100},,,,history too short to forecast: 2 samples over 3 h; need ≥ 3 samples over ≥ 1 d`);
    expect(renderCsv([{ ...TRENDS[1], host: 'a,"b"' }]).split('\n')[1]).toMatch(/^compute\.vcpu,"a,""b""",/);
    expect(renderCsv([])).toBe(`${lines[0]}\n`);
  });

  it('renders json as one array, never and no-forecast told apart', () => {
    const rows = JSON.parse(renderJson(TRENDS));
    expect(rows).toHaveLength(3);
    expect(rows[0]).toMatchObject({ resource: 'ceph.pool', labels: { pool: 'volumes' }, growth_per_day: 0.5 * 2 ** 40, days_until_full: 20, reason: null });
    expect(rows[1]).toMatchObject({ days_until_full: 'never', growth_per_day: -0.25, reason: null });
    expect(rows[2]).toMatchObject({ days_until_full: null, growth_per_day: null, reason: expect.stringMatching(/^history too short/) });
    expect(renderJson([])).toBe('[]');
  });
});
