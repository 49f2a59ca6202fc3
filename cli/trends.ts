// `stackwatch trends`: capacity trends for planners — per hypervisor, Ceph pool and cluster, how much is used, how
// fast it grows (least-squares slope over a window) and how many days are left until it is full. Reads only
// Elasticsearch (the metric samples the collectors indexed); needs no Kafka.
import { ConfigError } from '../core/config.ts';
import { esClient } from '../core/elastic.ts';
import { errorText } from '../core/log.ts';
import { DAY_MS, DEFAULT_MIN_HISTORY_DAYS, DEFAULT_MIN_SAMPLES, humanDuration, parseDays, queryTrends, type Trend } from './trends-query.ts';
import type { Command } from './index.ts';
import { parseOptions, readConfig } from './options.ts';

export const trendsCommand: Command = {
  name: 'trends',
  help: `Usage: stackwatch trends [--window 30d] [--resource NAME]... [--host NAME]... [--format table|csv|json]
                         [--min-history 1d] [--min-samples 3] [--config FILE]

Capacity trends for planners. For every capacity series in Elasticsearch — a <resource>.used / <resource>.total
metric pair (compute.vcpu, compute.memory, compute.disk per hypervisor; ceph.pool per pool; ceph.cluster) and
its host.name and labels — prints the usage now (last sample), the total, the growth per day and the days until
it is full. The growth is the slope of the exact least-squares line through every .used sample in the window;
the days until full count from the last sample: (total - used) / growth, "full" when used ≥ total, "never" when
usage is flat or shrinking. A series with too little history gets no forecast, with the reason.

Options:
  --window DURATION       how far back from now to read samples (default 30d; 12h, 2w, 90d, …)
  --resource NAME         only this resource: compute.vcpu, ceph.pool, or a prefix such as compute
                          (repeatable, or comma-separated)
  --host NAME             only this host.name: a hypervisor, a Ceph cluster (repeatable, or comma-separated)
  --format FORMAT         table (default): aligned columns, bytes in KiB…TiB, a sparkline of the window
                          csv: a header row, then raw numbers (bytes as bytes, days with full precision)
                          json: one JSON array of objects (the csv columns plus labels as an object)
  --min-history DURATION  forecast only when the .used samples span at least this long (default 1d)
  --min-samples N         forecast only from at least N .used samples (default 3)
  --config FILE           configuration file (default: $STACKWATCH_CONFIG or /etc/stackwatch/stackwatch.yaml);
                          only elasticsearch (url, credentials, indices.metrics) is used

Columns (csv/json names): resource, host (host/pool in the table), labels, unit, samples, first, last (first and
last .used sample), used, total, percent_used, growth_per_day (units per day), days_until_full (a number,
"never", or empty/null when there is no forecast), full_by (the date it is full at that pace), reason (why
there is no forecast).

Exit status: 0 (also when there are no capacity metrics: a message says so), 1 when Elasticsearch cannot be
read, 2 for a bad option or configuration.`,

  async main(args) {
    const { values } = parseOptions(args, {
      config: { type: 'string' },
      window: { type: 'string', default: '30d' },
      resource: { type: 'string', multiple: true },
      host: { type: 'string', multiple: true },
      format: { type: 'string', default: 'table' },
      'min-history': { type: 'string', default: `${DEFAULT_MIN_HISTORY_DAYS}d` },
      'min-samples': { type: 'string', default: String(DEFAULT_MIN_SAMPLES) },
    });
    const window = parseDays(values.window);
    if (window === undefined || !(window > 0)) throw new ConfigError(`--window: expected a duration such as 30d, 12h or 2w, got ${JSON.stringify(values.window)}`);
    const minHistory = parseDays(values['min-history']);
    if (minHistory === undefined) throw new ConfigError(`--min-history: expected a duration such as 1d or 12h, got ${JSON.stringify(values['min-history'])}`);
    const minSamples = Number(values['min-samples']);
    if (!/^\d+$/.test(values['min-samples']) || minSamples < 2) throw new ConfigError(`--min-samples: expected a whole number ≥ 2, got ${JSON.stringify(values['min-samples'])}`);
    const format = values.format;
    if (format !== 'table' && format !== 'csv' && format !== 'json') throw new ConfigError(`--format: expected one of table, csv, json, got ${JSON.stringify(format)}`);
    const list = (v: string[] | undefined) =>
      v
        ?.flatMap((x) => x.split(','))
        .map((x) => x.trim())
        .filter(Boolean);
    const resources = list(values.resource);
    const hosts = list(values.host);

    const cfg = readConfig(values.config);
    const prefix = cfg.elasticsearch.indices.metrics;
    const es = esClient(cfg.elasticsearch);
    let trends: Trend[];
    try {
      trends = await queryTrends(es, prefix, { window, resources, hosts, minHistoryDays: minHistory, minSamples });
    } catch (err) {
      throw new Error(elasticsearchError(cfg.elasticsearch.url, err));
    } finally {
      await es.close().catch(() => {});
    }

    if (trends.length === 0) {
      const filters = [resources?.length ? `resource ${resources.join(', ')}` : '', hosts?.length ? `host ${hosts.join(', ')}` : ''].filter(Boolean);
      const msg = `no capacity metrics (<resource>.used / <resource>.total) in ${prefix}-* over the last ${humanDuration(window * DAY_MS)}${filters.length ? ` for ${filters.join(' and ')}` : ''}`;
      if (format === 'table') process.stdout.write(`${msg}\n`);
      else process.stderr.write(`stackwatch trends: ${msg}\n`);
    }
    if (format === 'json') process.stdout.write(renderJson(trends) + '\n');
    else if (format === 'csv') process.stdout.write(renderCsv(trends));
    else if (trends.length > 0) process.stdout.write(renderTable(trends));
    return 0;
  },
};

function elasticsearchError(url: string, err: unknown): string {
  const name = (err as Error | undefined)?.name;
  if (name === 'ConnectionError' || name === 'TimeoutError' || name === 'NoLivingConnectionsError') {
    return `cannot reach Elasticsearch at ${url}: ${errorText(err)}; check elasticsearch.url (or STACKWATCH_ES_URL)`;
  }
  return `reading the metric samples from Elasticsearch ${url} failed: ${errorText(err)}`;
}

// ---------------------------------------------------------------------------------------------------------------
// Rendering

const BYTE_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];

/** 1.5 TiB, 812.0 GiB, 512 B. */
export function formatBytes(bytes: number): string {
  const abs = Math.abs(bytes);
  let k = 0;
  while (k < BYTE_UNITS.length - 1 && abs >= 1024 ** (k + 1)) k++;
  return k === 0 ? `${trimNumber(bytes)} B` : `${(bytes / 1024 ** k).toFixed(1)} ${BYTE_UNITS[k]}`;
}

function trimNumber(x: number): string {
  return Number.isInteger(x) ? String(x) : String(Number(x.toFixed(2)));
}

/** A value in its unit for people: bytes in binary units, anything else as a number and its unit. */
export function formatValue(value: number | undefined, unit: string | undefined): string {
  if (value === undefined) return '-';
  if (unit === 'bytes' || unit === 'B') return formatBytes(value);
  return unit ? `${trimNumber(value)} ${unit}` : trimNumber(value);
}

function formatGrowth(t: Trend): string {
  if (t.growthPerDay === undefined) return '-';
  const g = t.growthPerDay;
  const text = formatValue(g, t.unit);
  return g > 0 ? `+${text}` : text;
}

function formatDays(t: Trend): string {
  if (t.reason !== undefined) return '-';
  if (t.daysUntilFull === undefined) return 'never';
  if (t.daysUntilFull === 0) return 'full';
  return t.daysUntilFull < 10 ? t.daysUntilFull.toFixed(1) : String(Math.round(t.daysUntilFull));
}

/** host, host/pool for a Ceph pool, then any other labels as k=v. */
export function seriesName(t: Pick<Trend, 'host' | 'labels'>): string {
  const others = Object.keys(t.labels)
    .filter((k) => k !== 'pool')
    .map((k) => `${k}=${t.labels[k]}`);
  return [`${t.host}${t.labels.pool !== undefined ? `/${t.labels.pool}` : ''}`, ...others].join(' ');
}

/** The table: aligned columns (numbers right-aligned), then a note for each series without a forecast. */
export function renderTable(trends: readonly Trend[]): string {
  const header = ['RESOURCE', 'HOST/POOL', 'USED', 'TOTAL', '%USED', 'GROWTH/DAY', 'DAYS TO FULL', 'TREND'];
  const right = [false, false, true, true, true, true, true, false];
  const rows = trends.map((t) => [
    t.resource,
    seriesName(t),
    formatValue(t.used, t.unit),
    formatValue(t.total, t.unit),
    t.percentUsed === undefined ? '-' : `${t.percentUsed.toFixed(1)}%`,
    formatGrowth(t),
    formatDays(t),
    t.sparkline,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => [...r[i]].length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => {
        const pad = ' '.repeat(widths[i] - [...c].length);
        return i === cells.length - 1 ? c : right[i] ? pad + c : c + pad;
      })
      .join('  ')
      .trimEnd();
  const out = [line(header), ...rows.map(line)];
  const notes = trends.filter((t) => t.reason !== undefined);
  if (notes.length > 0) out.push('', ...notes.map((t) => `note: ${t.resource} ${seriesName(t)}: ${t.reason}`));
  return out.join('\n') + '\n';
}

export const CSV_COLUMNS = [
  'resource',
  'host',
  'labels',
  'unit',
  'samples',
  'first',
  'last',
  'used',
  'total',
  'percent_used',
  'growth_per_day',
  'days_until_full',
  'full_by',
  'reason',
] as const;

type Row = { [K in (typeof CSV_COLUMNS)[number]]: K extends 'labels' ? Record<string, string> : string | number | null };

function daysValue(t: Trend): number | 'never' | null {
  if (t.reason !== undefined) return null;
  return t.daysUntilFull ?? 'never';
}

/** One object per series, snake_case, raw numbers; absent values are null. */
export function toRecord(t: Trend): Row {
  return {
    resource: t.resource,
    host: t.host,
    labels: t.labels,
    unit: t.unit ?? null,
    samples: t.samples,
    first: t.first ?? null,
    last: t.last ?? null,
    used: t.used ?? null,
    total: t.total ?? null,
    percent_used: t.percentUsed ?? null,
    growth_per_day: t.growthPerDay ?? null,
    days_until_full: daysValue(t),
    full_by: t.fullBy ?? null,
    reason: t.reason ?? null,
  };
}

export function renderJson(trends: readonly Trend[]): string {
  return JSON.stringify(trends.map(toRecord), null, 2);
}

function csvField(v: string | number | null): string {
  if (v === null) return '';
  const s = String(v);
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** A header row, then one row per series; labels as k=v;k=v; numbers unrounded. */
export function renderCsv(trends: readonly Trend[]): string {
  const lines = [CSV_COLUMNS.join(',')];
  for (const t of trends) {
    const r = toRecord(t);
    const labels = Object.entries(t.labels)
      .map(([k, v]) => `${k}=${v}`)
      .join(';');
    lines.push(CSV_COLUMNS.map((c) => csvField(c === 'labels' ? labels : r[c])).join(','));
  }
  return lines.join('\n') + '\n';
}
