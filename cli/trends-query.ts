// Capacity trends (`stackwatch trends`): per capacity series, the current usage, the growth per day from an exact
// least-squares line through the samples of a window, and the days until the usage reaches the total.
//
// Capacity metrics come in pairs `<resource>.used` / `<resource>.total` in one unit (compute.vcpu.used /
// compute.vcpu.total per hypervisor, ceph.pool.used / ceph.pool.total per pool, …). A series is
// (resource, host.name, labels): the line is fitted through its `.used` samples, the total is its last `.total`
// sample. The samples are read raw (a point-in-time search paged with search_after, sorted by time) and folded
// into running sums as they arrive, so memory is bounded per series whatever the number of samples.
import type { estypes } from '@elastic/elasticsearch';
import type { Client } from '../core/elastic.ts';

export const DAY_MS = 86_400_000;

/** Defaults of the forecast's preconditions (see TrendOptions). */
export const DEFAULT_MIN_SAMPLES = 3;
export const DEFAULT_MIN_HISTORY_DAYS = 1;
export const DEFAULT_SPARK_WIDTH = 20;

// ---------------------------------------------------------------------------------------------------------------
// Least squares

export interface LineFit {
  n: number;
  /** Growth per day (units of the value per day). */
  slope: number;
  /** The line's value at the first sample's time (t = 0). */
  intercept: number;
  /** Time of the first sample (ms since the epoch): t = 0 of the line. */
  t0: number;
}

/** Ordinary least squares of value on time, fed one sample at a time in O(1) memory. Times are taken in days
 * since the first sample and values relative to the first value, and the sums are kept centred on the running
 * means (Welford's co-moment updates), so neither large epoch times nor large byte counts cost precision the way
 * Σt² - n·mean(t)² would. */
export class LeastSquares {
  n = 0;
  private t0 = 0;
  /** The first value: values are kept relative to it too, so a petabyte pool growing by gigabytes keeps its digits. */
  private v0 = 0;
  private meanT = 0;
  private meanV = 0;
  /** Σ (t - mean t)² */
  private sxx = 0;
  /** Σ (t - mean t)(v - mean v) */
  private sxy = 0;

  /** Adds a sample: `timeMs` in ms since the epoch, in any order. */
  add(timeMs: number, value: number): void {
    if (this.n === 0) {
      this.t0 = timeMs;
      this.v0 = value;
    }
    const t = (timeMs - this.t0) / DAY_MS;
    const v = value - this.v0;
    this.n++;
    const dt = t - this.meanT;
    this.meanT += dt / this.n;
    this.meanV += (v - this.meanV) / this.n;
    this.sxx += dt * (t - this.meanT);
    this.sxy += dt * (v - this.meanV);
  }

  /** The line, or undefined when it is not determined (fewer than two distinct times). */
  fit(): LineFit | undefined {
    if (this.n < 2 || !(this.sxx > 0)) return undefined;
    const slope = this.sxy / this.sxx;
    return { n: this.n, slope, intercept: this.v0 + (this.meanV - slope * this.meanT), t0: this.t0 };
  }
}

/** Least-squares line through (time in ms, value) points; slope per day, intercept at the first point's time. */
export function leastSquares(points: readonly { t: number; v: number }[]): LineFit | undefined {
  const ls = new LeastSquares();
  for (const p of points) ls.add(p.t, p.v);
  return ls.fit();
}

/** Days until `currentUsed` reaches `total` growing `slopePerDay`: 0 when already full, undefined ("never") when
 * the usage is not growing. */
export function daysUntilFull(currentUsed: number, total: number, slopePerDay: number): number | undefined {
  if (currentUsed >= total) return 0;
  if (!(slopePerDay > 0)) return undefined;
  return (total - currentUsed) / slopePerDay;
}

// ---------------------------------------------------------------------------------------------------------------
// Sparkline

export const SPARK_CHARS = '▁▂▃▄▅▆▇█';

/** A sparkline of at most `width` characters, scaled from the smallest to the largest value. More values than
 * `width` are averaged into `width` consecutive buckets of (nearly) equal size; fewer give one character each. A
 * flat series is a flat line at mid height (▄). NaN marks a gap (no data): a space, left out of averages. */
export function sparkline(values: readonly number[], width: number = DEFAULT_SPARK_WIDTH): string {
  const w = Math.floor(width);
  if (values.length === 0 || w <= 0) return '';
  let points: number[] = values.slice();
  if (values.length > w) {
    points = [];
    for (let i = 0; i < w; i++) {
      const from = Math.floor((i * values.length) / w);
      const to = Math.floor(((i + 1) * values.length) / w);
      let sum = 0;
      let n = 0;
      for (let j = from; j < to; j++) {
        if (Number.isFinite(values[j])) {
          sum += values[j];
          n++;
        }
      }
      points.push(n > 0 ? sum / n : NaN);
    }
  }
  const finite = points.filter((v) => Number.isFinite(v));
  if (finite.length === 0) return ' '.repeat(points.length);
  const min = Math.min(...finite);
  const max = Math.max(...finite);
  const span = max - min;
  const flat = !(span > Math.max(Math.abs(min), Math.abs(max)) * 1e-12);
  return points
    .map((v) => {
      if (!Number.isFinite(v)) return ' ';
      if (flat) return SPARK_CHARS[3];
      return SPARK_CHARS[Math.min(7, Math.max(0, Math.round(((v - min) / span) * 7)))];
    })
    .join('');
}

// ---------------------------------------------------------------------------------------------------------------
// Durations

/** "3 h", "45 min", "1.5 d": a duration for people. */
export function humanDuration(ms: number): string {
  const trim = (x: number) => String(Number(x.toFixed(1)));
  if (ms < 60_000) return `${trim(ms / 1000)} s`;
  if (ms < 3_600_000) return `${trim(ms / 60_000)} min`;
  if (ms < DAY_MS) return `${trim(ms / 3_600_000)} h`;
  return `${trim(ms / DAY_MS)} d`;
}

const DURATION_UNITS: Record<string, number> = { m: 1 / 1440, min: 1 / 1440, h: 1 / 24, d: 1, w: 7 };

/** "30d", "12h", "2w", "90min" (or a bare number of days) → days; undefined when it is none of these. */
export function parseDays(text: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(m|min|h|d|w)?\s*$/i.exec(text);
  if (!m) return undefined;
  const days = Number(m[1]) * DURATION_UNITS[(m[2] ?? 'd').toLowerCase()];
  return Number.isFinite(days) ? days : undefined;
}

// ---------------------------------------------------------------------------------------------------------------
// The series and their forecast

export interface Trend {
  /** The metric name without `.used` / `.total`: compute.vcpu, ceph.pool, … */
  resource: string;
  /** host.name: the hypervisor, the Ceph cluster. */
  host: string;
  /** The rest of the series' identity (labels.pool for Ceph pools). */
  labels: Record<string, string>;
  unit?: string;
  /** `.used` samples in the window (the points of the line). */
  samples: number;
  /** Time of the first and last `.used` sample (ISO 8601). */
  first?: string;
  last?: string;
  /** The last `.used` sample. */
  used?: number;
  /** The last `.total` sample. */
  total?: number;
  /** used / total × 100. */
  percentUsed?: number;
  /** Slope of the least-squares line through the `.used` samples, units per day. */
  growthPerDay?: number;
  /** Intercept of that line at the first sample's time. */
  intercept?: number;
  /** Days from the last `.used` sample until used reaches total at growthPerDay; 0 when already full; undefined
   * when not growing ("never") or when there is no forecast (then `reason` says why). */
  daysUntilFull?: number;
  /** When it is full at that pace (ISO 8601), if it will be. */
  fullBy?: string;
  /** Why there is no forecast (history too short, no total, unit mismatch, total 0). */
  reason?: string;
  /** The `.used` samples over the whole window, one character per window/width (the same time axis on every
   * series: a character is the average of the samples in its stretch of time, a space a stretch without any). */
  sparkline: string;
}

export interface TrendOptions {
  /** Days back from `now` to read. */
  window: number;
  /** Resources to read: `compute.vcpu`, or a prefix of whole name parts (`compute` = every compute.*). */
  resources?: string[];
  /** host.name values to read (exact). */
  hosts?: string[];
  now?: Date;
  /** Forecast only with at least this many `.used` samples (default 3)… */
  minSamples?: number;
  /** …spread over at least this many days (default 1). */
  minHistoryDays?: number;
  /** Characters of the sparkline (default 20). */
  sparkWidth?: number;
  /** Samples per page (default 5000). */
  pageSize?: number;
}

interface Series {
  resource: string;
  host: string;
  labels: Record<string, string>;
  fit: LeastSquares;
  usedN: number;
  firstMs: number;
  lastMs: number;
  used?: number;
  usedUnit?: string;
  total?: number;
  totalUnit?: string;
  sparkSum: Float64Array;
  sparkN: Uint32Array;
}

interface SampleSource {
  host?: { name?: string };
  metric?: { name?: string; value?: number; unit?: string };
  labels?: Record<string, unknown>;
}

/** `<resource>.used` / `<resource>.total` → its parts; undefined for any other name. */
export function capacityName(name: string): { resource: string; kind: 'used' | 'total' } | undefined {
  if (name.endsWith('.used') && name.length > 5) return { resource: name.slice(0, -5), kind: 'used' };
  if (name.endsWith('.total') && name.length > 6) return { resource: name.slice(0, -6), kind: 'total' };
  return undefined;
}

function resourceMatches(resource: string, wanted: readonly string[] | undefined): boolean {
  return !wanted || wanted.length === 0 || wanted.some((w) => resource === w || resource.startsWith(`${w}.`));
}

function stringLabels(raw: Record<string, unknown> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of Object.keys(raw ?? {}).sort()) {
    const v = raw![k];
    if (v !== null && v !== undefined) out[k] = String(v);
  }
  return out;
}

function nameQuery(resources: readonly string[] | undefined): object {
  if (!resources || resources.length === 0) {
    return { bool: { should: [{ wildcard: { 'metric.name': '*.used' } }, { wildcard: { 'metric.name': '*.total' } }], minimum_should_match: 1 } };
  }
  return {
    bool: {
      should: [{ terms: { 'metric.name': resources.flatMap((r) => [`${r}.used`, `${r}.total`]) } }, ...resources.map((r) => ({ prefix: { 'metric.name': `${r}.` } }))],
      minimum_should_match: 1,
    },
  };
}

/** Reads every capacity series with samples in the window from the daily indices `<indexPrefix>-*` and forecasts
 * each. Sorted by resource, host, labels. */
export async function queryTrends(es: Client, indexPrefix: string, opts: TrendOptions): Promise<Trend[]> {
  const nowMs = (opts.now ?? new Date()).getTime();
  const windowMs = opts.window * DAY_MS;
  const fromMs = nowMs - windowMs;
  const width = Math.max(1, Math.floor(opts.sparkWidth ?? DEFAULT_SPARK_WIDTH));
  const pageSize = opts.pageSize ?? 5000;
  const filter: object[] = [{ range: { '@timestamp': { gte: fromMs, lte: nowMs, format: 'epoch_millis' } } }, nameQuery(opts.resources)];
  if (opts.hosts && opts.hosts.length > 0) filter.push({ terms: { 'host.name': opts.hosts } });

  const series = new Map<string, Series>();
  const pit = await es.openPointInTime({ index: `${indexPrefix}-*`, keep_alive: '2m', ignore_unavailable: true });
  let pitId = pit.id;
  try {
    let after: estypes.SortResults | undefined;
    for (;;) {
      const res = await es.search<SampleSource>({
        size: pageSize,
        pit: { id: pitId, keep_alive: '2m' },
        query: { bool: { filter } },
        sort: [{ '@timestamp': { order: 'asc' } }],
        _source: ['host.name', 'metric.name', 'metric.value', 'metric.unit', 'labels'],
        track_total_hits: false,
        ...(after ? { search_after: after } : {}),
      });
      if (res.pit_id) pitId = res.pit_id;
      const hits = res.hits.hits;
      for (const hit of hits) {
        const src = hit._source;
        const t = Number(hit.sort?.[0]);
        const name = src?.metric?.name;
        const value = src?.metric?.value;
        if (!src || typeof name !== 'string' || typeof value !== 'number' || !Number.isFinite(value) || !Number.isFinite(t)) continue;
        const cap = capacityName(name);
        if (!cap || !resourceMatches(cap.resource, opts.resources)) continue;
        const host = src.host?.name ?? '';
        const labels = stringLabels(src.labels);
        const key = JSON.stringify([cap.resource, host, labels]);
        let s = series.get(key);
        if (!s) {
          s = { resource: cap.resource, host, labels, fit: new LeastSquares(), usedN: 0, firstMs: t, lastMs: t, sparkSum: new Float64Array(width), sparkN: new Uint32Array(width) };
          series.set(key, s);
        }
        if (cap.kind === 'used') {
          s.fit.add(t, value);
          if (s.usedN === 0) s.firstMs = t;
          s.usedN++;
          s.lastMs = t;
          s.used = value;
          if (src.metric?.unit) s.usedUnit = src.metric.unit;
          const b = Math.min(width - 1, Math.max(0, Math.floor(((t - fromMs) / windowMs) * width)));
          s.sparkSum[b] += value;
          s.sparkN[b]++;
        } else {
          s.total = value;
          if (src.metric?.unit) s.totalUnit = src.metric.unit;
        }
      }
      if (hits.length < pageSize) break;
      after = hits[hits.length - 1].sort;
    }
  } finally {
    await es.closePointInTime({ id: pitId }).catch(() => {});
  }

  const minSamples = opts.minSamples ?? DEFAULT_MIN_SAMPLES;
  const minHistoryDays = opts.minHistoryDays ?? DEFAULT_MIN_HISTORY_DAYS;
  const out = [...series.values()].map((s) => forecast(s, minSamples, minHistoryDays));
  const cmp = (x: string, y: string) => (x < y ? -1 : x > y ? 1 : 0);
  return out.sort((a, b) => cmp(a.resource, b.resource) || cmp(a.host, b.host) || cmp(JSON.stringify(a.labels), JSON.stringify(b.labels)));
}

function forecast(s: Series, minSamples: number, minHistoryDays: number): Trend {
  const buckets: number[] = [];
  for (let i = 0; i < s.sparkN.length; i++) buckets.push(s.sparkN[i] > 0 ? s.sparkSum[i] / s.sparkN[i] : NaN);
  const t: Trend = {
    resource: s.resource,
    host: s.host,
    labels: s.labels,
    samples: s.usedN,
    sparkline: s.usedN > 0 ? sparkline(buckets, buckets.length) : '',
  };
  const unit = s.usedUnit ?? s.totalUnit;
  if (unit !== undefined) t.unit = unit;
  if (s.usedN > 0) {
    t.first = new Date(s.firstMs).toISOString();
    t.last = new Date(s.lastMs).toISOString();
    t.used = s.used;
  }
  if (s.total !== undefined) t.total = s.total;
  if (t.used !== undefined && t.total !== undefined && t.total > 0) t.percentUsed = (t.used / t.total) * 100;

  const spanMs = s.usedN > 0 ? s.lastMs - s.firstMs : 0;
  const fewSamples = s.usedN < minSamples;
  const shortSpan = spanMs < minHistoryDays * DAY_MS;
  const line = fewSamples || shortSpan ? undefined : s.fit.fit();
  if (line) {
    t.growthPerDay = line.slope;
    t.intercept = line.intercept;
  }

  if (s.usedN === 0) t.reason = `no ${s.resource}.used samples in the window`;
  else if (s.usedUnit !== undefined && s.totalUnit !== undefined && s.usedUnit !== s.totalUnit)
    t.reason = `unit mismatch: ${s.resource}.used in ${s.usedUnit}, ${s.resource}.total in ${s.totalUnit}`;
  else if (fewSamples || shortSpan || !line) {
    const need = [fewSamples ? `≥ ${minSamples} samples` : '', shortSpan ? `≥ ${humanDuration(minHistoryDays * DAY_MS)}` : ''].filter(Boolean).join(' over ');
    t.reason = `history too short to forecast: ${s.usedN} sample${s.usedN === 1 ? '' : 's'} over ${humanDuration(spanMs)}; need ${need || 'samples at two different times'}`;
  } else if (s.total === undefined) t.reason = `no ${s.resource}.total samples in the window`;
  else if (!(s.total > 0)) t.reason = `${s.resource}.total is ${s.total}`;
  else {
    const days = daysUntilFull(s.used!, s.total, line.slope);
    if (days !== undefined) {
      t.daysUntilFull = days;
      const fullMs = s.lastMs + days * DAY_MS;
      if (Number.isFinite(fullMs) && Math.abs(fullMs) <= 8.64e15) t.fullBy = new Date(fullMs).toISOString();
    }
  }
  return t;
}
