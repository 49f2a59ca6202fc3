// The source of dashboards/kibana/stackwatch.ndjson: stackwatch's Kibana saved objects (data views, saved searches,
// visualizations, dashboards) in Kibana 8.x export format, written as readable objects here and stringified the way
// Kibana exports them. Regenerate after a change (test/unit/dashboards.test.ts fails while the file is stale):
//
//   npx tsx dashboards/kibana/build.ts
//
// Every query is Lucene (query_string), so test/integration/saved-searches.test.ts runs each against real indexed
// data. Field names are the index templates' (sinks/index-templates/); the unit test checks every one.
import { writeFileSync } from 'node:fs';

export const NDJSON_FILE = new URL('stackwatch.ndjson', import.meta.url);

/** The oldest Kibana whose export format this is (coreMigrationVersion); newer ones migrate on import. */
export const CORE_MIGRATION_VERSION = '8.8.0';
export const TYPE_MIGRATION_VERSION: Record<string, string> = {
  'index-pattern': '8.0.0',
  search: '8.0.0',
  visualization: '8.5.0',
  dashboard: '8.7.0',
};
const PANEL_VERSION = '8.8.0';

export interface Reference {
  id: string;
  name: string;
  type: string;
}

export interface SavedObject {
  attributes: Record<string, unknown>;
  coreMigrationVersion: string;
  id: string;
  managed: boolean;
  references: Reference[];
  type: string;
  typeMigrationVersion: string;
}

function savedObject(type: string, id: string, attributes: Record<string, unknown>, references: Reference[] = []): SavedObject {
  return { attributes, coreMigrationVersion: CORE_MIGRATION_VERSION, id, managed: false, references, type, typeMigrationVersion: TYPE_MIGRATION_VERSION[type] };
}

// ---------------------------------------------------------------------------------------------------------------
// Data views: one per index kind, over its daily indices (the default prefixes; `stackwatch setup --kibana`
// rewrites the titles to the configured ones).

export const DATA_VIEWS = {
  logs: { id: 'stackwatch-logs', title: 'stackwatch-logs-*', name: 'stackwatch logs' },
  alerts: { id: 'stackwatch-alerts', title: 'stackwatch-alerts-*', name: 'stackwatch alerts' },
  incidents: { id: 'stackwatch-incidents', title: 'stackwatch-incidents-*', name: 'stackwatch incidents' },
  metrics: { id: 'stackwatch-metrics', title: 'stackwatch-metrics-*', name: 'stackwatch metrics' },
  dead_letter: { id: 'stackwatch-dead-letter', title: 'stackwatch-dead-letter-*', name: 'stackwatch dead letters' },
} as const;
type View = keyof typeof DATA_VIEWS;

function dataView(kind: View, fieldFormats: Record<string, unknown> = {}): SavedObject {
  const v = DATA_VIEWS[kind];
  return savedObject('index-pattern', v.id, {
    allowNoIndex: true,
    fieldAttrs: '{}',
    fieldFormatMap: JSON.stringify(fieldFormats),
    fields: '[]',
    name: v.name,
    runtimeFieldMap: '{}',
    sourceFilters: '[]',
    timeFieldName: '@timestamp',
    title: v.title,
    typeMeta: '{}',
  });
}

const INDEX_REF = 'kibanaSavedObjectMeta.searchSourceJSON.index';

function searchSource(query: string, withIndex: boolean): { searchSourceJSON: string } {
  return {
    searchSourceJSON: JSON.stringify({
      query: { query, language: 'lucene' },
      filter: [],
      ...(withIndex ? { indexRefName: INDEX_REF } : {}),
    }),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Saved searches: what an SRE reaches for first. Each answers one question (README: "Which search answers which
// question"); the integration test checks each returns exactly the events it promises.

export interface SearchDef {
  id: string;
  view: View;
  title: string;
  description: string;
  query: string;
  columns: string[];
  sort: [string, 'asc' | 'desc'][];
}

/** The rabbit driver's loss lines across oslo.messaging releases (the amqp-connection-lost rule's evidence). */
export const AMQP_LOSS =
  'message:("is unreachable" OR "Connection failed" OR "closed the connection" OR "recoverable connection/channel error" OR "Too many heartbeats missed" OR "Connection reset by peer")';
export const AMQP_RECONNECT = 'message:("Reconnected to AMQP server" OR "Connected to AMQP server")';
const AMQP_LOGGERS = 'log.logger:(oslo.messaging._drivers* OR oslo_messaging._drivers*)';

export const SEARCHES: SearchDef[] = [
  {
    id: 'stackwatch-errors-by-service',
    view: 'logs',
    title: 'stackwatch: errors by service',
    description: 'Which services log errors, and what? Every ERROR, CRITICAL or FATAL log event, grouped by service (newest first within each).',
    query: 'log.level:(ERROR OR CRITICAL OR FATAL)',
    columns: ['service.name', 'host.name', 'log.logger', 'message'],
    sort: [
      ['service.name', 'asc'],
      ['@timestamp', 'desc'],
    ],
  },
  {
    id: 'stackwatch-amqp-connection-events',
    view: 'logs',
    title: 'stackwatch: AMQP connection events',
    description:
      'When did a service lose its RabbitMQ connection, and when did it get it back? oslo.messaging\'s rabbit driver: "AMQP server … is unreachable", "Connection failed", closed or reset connections, missed heartbeats, and "Reconnected to AMQP server" — the evidence of the amqp-connection-lost alerts.',
    query: `${AMQP_LOGGERS} AND (${AMQP_LOSS} OR ${AMQP_RECONNECT})`,
    columns: ['service.name', 'host.name', 'log.level', 'message'],
    sort: [['@timestamp', 'desc']],
  },
  {
    id: 'stackwatch-tracebacks',
    view: 'logs',
    title: 'stackwatch: tracebacks',
    description: 'Which exceptions were raised, where? Every log event that carries a Python traceback (error.stack_trace).',
    query: '_exists_:error.stack_trace',
    columns: ['service.name', 'host.name', 'message', 'error.stack_trace'],
    sort: [['@timestamp', 'desc']],
  },
  {
    id: 'stackwatch-request-across-services',
    view: 'logs',
    title: 'stackwatch: one request across services',
    description:
      'What happened to this request, in every service it went through? Log events that carry an OpenStack request id, oldest first. To follow one request, add its id in quotes to the query: (…) AND "req-0a1b…" — the id is searched in openstack.request_id, openstack.global_request_id and the message; nova-api, nova-conductor, nova-compute and the others log the same id for one API call.',
    query: '_exists_:openstack.request_id OR _exists_:openstack.global_request_id',
    columns: ['openstack.request_id', 'service.name', 'host.name', 'log.level', 'message'],
    sort: [['@timestamp', 'asc']],
  },
  {
    id: 'stackwatch-compute-host-events',
    view: 'logs',
    title: 'stackwatch: compute host events',
    description:
      "Did a compute host lose its record or change its name? nova's lines about compute host records: created, not found in the database (ComputeHostNotFound), hostname changed, rename detected — the evidence of the compute-host-drift alerts.",
    query:
      'message:"Compute node record created" OR message:"No compute node record" OR message:("Compute node" AND "not found in the database") OR message:("Compute host" AND "could not be found") OR message:"Hostname has changed" OR message:"Possible rename detected"',
    columns: ['host.name', 'service.name', 'log.level', 'message'],
    sort: [['@timestamp', 'desc']],
  },
  {
    id: 'stackwatch-db-errors',
    view: 'logs',
    title: 'stackwatch: database errors',
    description:
      'Is the database (MariaDB/Galera) failing the services? oslo.db connection errors and deadlocks, Galera\'s "WSREP has not yet prepared node" (1047), lost connections — the log evidence of the db-sync-lag alerts.',
    query:
      'message:("WSREP has not yet prepared node" OR "Deadlock found when trying to get lock" OR "wsrep aborted transaction" OR "SQL connection failed" OR "Lost connection to MySQL server" OR "MySQL server has gone away" OR "Can\'t connect to MySQL server") OR message:(*DBConnectionError* OR *DBDeadlock*)',
    columns: ['service.name', 'host.name', 'log.level', 'message'],
    sort: [['@timestamp', 'desc']],
  },
  {
    id: 'stackwatch-alerts',
    view: 'alerts',
    title: 'stackwatch: alert transitions',
    description: 'What fired, and when did it resolve? Every alert transition stackwatch raised (firing and resolved), with the rule, severity and, once resolved, how long it lasted.',
    query: 'alert.status:(firing OR resolved)',
    columns: ['rule.id', 'alert.status', 'alert.severity', 'host.name', 'service.name', 'alert.duration_s', 'message'],
    sort: [['@timestamp', 'desc']],
  },
  {
    id: 'stackwatch-incidents',
    view: 'incidents',
    title: 'stackwatch: incidents',
    description:
      'What broke, as the on-call engineer was paged for it? One row per incident (the alerts of one cause), its latest state: cause, whether it paged, the services and hosts it touched, and how long it lasted. Open one for its alerts, timeline, first evidence and runbook.',
    query: '_exists_:incident.id',
    columns: ['incident.cause', 'incident.status', 'incident.paged', 'incident.severity', 'incident.services', 'incident.hosts', 'incident.duration_s', 'message'],
    sort: [['@timestamp', 'desc']],
  },
  {
    id: 'stackwatch-dead-letters',
    view: 'dead_letter',
    title: 'stackwatch: dead letters',
    description: 'What could stackwatch not process, and why? Events a component put in the dead-letter topic, with the reason (the payload is in the document).',
    query: '_exists_:reason',
    columns: ['component', 'reason', 'source.topic', 'source.offset'],
    sort: [['@timestamp', 'desc']],
  },
];

function savedSearch(s: SearchDef): SavedObject {
  return savedObject(
    'search',
    s.id,
    {
      columns: s.columns,
      description: s.description,
      grid: {},
      hideChart: false,
      isTextBasedQuery: false,
      kibanaSavedObjectMeta: searchSource(s.query, true),
      sort: s.sort,
      timeRestore: false,
      title: s.title,
    },
    [{ id: DATA_VIEWS[s.view].id, name: INDEX_REF, type: 'index-pattern' }],
  );
}

// ---------------------------------------------------------------------------------------------------------------
// Visualizations: aggregation-based (histogram, line, pie, table, metric), plus markdown notes and two Vega-Lite
// charts for capacity (days until full needs a least-squares fit, which no aggregation does).

type Agg = { id: string; enabled: true; type: string; schema: string; params: Record<string, unknown> };

const count = (id = '1', label?: string): Agg => ({ id, enabled: true, type: 'count', schema: 'metric', params: label ? { customLabel: label } : {} });
const metricAgg = (id: string, type: 'avg' | 'max' | 'min' | 'sum' | 'cardinality', field: string, label: string): Agg => ({
  id,
  enabled: true,
  type,
  schema: 'metric',
  params: { field, customLabel: label },
});
const dateHistogram = (id: string, schema = 'segment'): Agg => ({
  id,
  enabled: true,
  type: 'date_histogram',
  schema,
  params: { field: '@timestamp', useNormalizedEsInterval: true, scaleMetricValues: false, interval: 'auto', drop_partials: false, min_doc_count: 1, extended_bounds: {} },
});
const terms = (id: string, schema: string, field: string, label: string, size = 10, orderBy = '1'): Agg => ({
  id,
  enabled: true,
  type: 'terms',
  schema,
  params: { field, orderBy, order: 'desc', size, otherBucket: false, otherBucketLabel: 'Other', missingBucket: false, missingBucketLabel: 'Missing', customLabel: label },
});

function xyParams(type: 'histogram' | 'line', valueLabel: string, metricId = '1'): Record<string, unknown> {
  return {
    type,
    grid: { categoryLines: false },
    categoryAxes: [
      { id: 'CategoryAxis-1', type: 'category', position: 'bottom', show: true, style: {}, scale: { type: 'linear' }, labels: { show: true, filter: true, truncate: 100 }, title: {} },
    ],
    valueAxes: [
      {
        id: 'ValueAxis-1',
        name: 'LeftAxis-1',
        type: 'value',
        position: 'left',
        show: true,
        style: {},
        scale: { type: 'linear', mode: 'normal' },
        labels: { show: true, rotate: 0, filter: false, truncate: 100 },
        title: { text: valueLabel },
      },
    ],
    seriesParams: [
      {
        show: true,
        type: type === 'histogram' ? 'histogram' : 'line',
        mode: type === 'histogram' ? 'stacked' : 'normal',
        data: { label: valueLabel, id: metricId },
        valueAxis: 'ValueAxis-1',
        drawLinesBetweenPoints: true,
        lineWidth: 2,
        interpolate: 'linear',
        showCircles: true,
        circlesRadius: 1,
      },
    ],
    addTooltip: true,
    detailedTooltip: true,
    palette: { type: 'palette', name: 'default' },
    addLegend: true,
    legendPosition: 'right',
    fittingFunction: 'linear',
    times: [],
    addTimeMarker: false,
    truncateLegend: true,
    maxLegendLines: 1,
    labels: {},
    thresholdLine: { show: false, value: 10, width: 1, style: 'full', color: '#E7664C' },
  };
}

const tableParams = {
  perPage: 10,
  showPartialRows: false,
  showMetricsAtAllLevels: false,
  showToolbar: true,
  showTotal: false,
  totalFunc: 'sum',
  percentageCol: '',
  autoFitRowToContent: false,
};

const metricParams = {
  addTooltip: true,
  addLegend: false,
  type: 'metric',
  metric: {
    percentageMode: false,
    useRanges: false,
    colorSchema: 'Green to Red',
    metricColorMode: 'None',
    colorsRange: [{ from: 0, to: 10000 }],
    labels: { show: true },
    invertColors: false,
    style: { bgFill: '#000', bgColor: false, labelColor: false, subText: '', fontSize: 60 },
  },
};

const pieParams = {
  type: 'pie',
  addTooltip: true,
  legendDisplay: 'show',
  legendPosition: 'right',
  isDonut: true,
  nestedLegend: false,
  distinctColors: true,
  truncateLegend: true,
  maxLegendLines: 1,
  palette: { type: 'palette', name: 'default' },
  labels: { show: true, values: true, last_level: true, truncate: 100, position: 'default', valuesFormat: 'percent', percentDecimals: 1 },
};

interface VisDef {
  id: string;
  title: string;
  description?: string;
  /** The data view (an aggregation-based chart) — absent for markdown and Vega. */
  view?: View;
  query?: string;
  visType: string;
  aggs: Agg[];
  params: Record<string, unknown>;
}

function visualization(v: VisDef): SavedObject {
  return savedObject(
    'visualization',
    v.id,
    {
      description: v.description ?? '',
      kibanaSavedObjectMeta: searchSource(v.query ?? '', v.view !== undefined),
      title: v.title,
      uiStateJSON: '{}',
      version: 1,
      visState: JSON.stringify({ title: v.title, type: v.visType, aggs: v.aggs, params: v.params }),
    },
    v.view ? [{ id: DATA_VIEWS[v.view].id, name: INDEX_REF, type: 'index-pattern' }] : [],
  );
}

/** A count over time, one stacked series per value of `field`. */
function countOverTime(id: string, title: string, view: View, query: string, field: string, label: string, description?: string): VisDef {
  return { id, title, description, view, query, visType: 'histogram', aggs: [count('1'), dateHistogram('2'), terms('3', 'group', field, label, 10)], params: xyParams('histogram', 'Count') };
}

/** The largest sample of a metric per interval, one line per value of `split`. */
function metricOverTime(id: string, title: string, metric: string, valueLabel: string, split: string, splitLabel: string, description?: string): VisDef {
  return {
    id,
    title,
    description,
    view: 'metrics',
    query: `metric.name:"${metric}"`,
    visType: 'line',
    aggs: [metricAgg('1', 'max', 'metric.value', valueLabel), dateHistogram('2'), terms('3', 'group', split, splitLabel, 20, '1')],
    params: xyParams('line', valueLabel),
  };
}

function markdown(id: string, title: string, text: string): VisDef {
  return { id, title, visType: 'markdown', aggs: [], params: { fontSize: 12, openLinksInNewTab: false, markdown: text } };
}

// Capacity (Vega-Lite): the same series as `stackwatch trends` — a <resource>.used / <resource>.total metric pair
// per host.name and labels (pool, fs) — read as daily maxima over the dashboard's time range.
export const CAPACITY_QUERY = {
  index: DATA_VIEWS.metrics.title,
  body: {
    size: 0,
    query: {
      bool: {
        must: ['%dashboard_context-must_clause%'],
        must_not: ['%dashboard_context-must_not_clause%'],
        filter: [
          '%dashboard_context-filter_clause%',
          { range: { '@timestamp': { '%timefilter%': true } } },
          { bool: { should: [{ wildcard: { 'metric.name': '*.used' } }, { wildcard: { 'metric.name': '*.total' } }], minimum_should_match: 1 } },
        ],
      },
    },
    aggs: {
      series: {
        composite: {
          size: 10000,
          sources: [
            { metric: { terms: { field: 'metric.name' } } },
            { host: { terms: { field: 'host.name' } } },
            { pool: { terms: { field: 'labels.pool', missing_bucket: true } } },
            { fs: { terms: { field: 'labels.fs', missing_bucket: true } } },
            { day: { date_histogram: { field: '@timestamp', fixed_interval: '1d' } } },
          ],
        },
        aggs: { value: { max: { field: 'metric.value' } } },
      },
    },
  },
};

/** Turns the composite buckets into one row per series and day: used, total, percent. */
const CAPACITY_ROWS = [
  { calculate: "replace(datum.key.metric, regexp('[.](used|total)$'), '')", as: 'resource' },
  { calculate: "test(regexp('[.]used$'), datum.key.metric) ? 'used' : 'total'", as: 'kind' },
  { calculate: "datum.key.host + (datum.key.pool ? '/' + datum.key.pool : '') + (datum.key.fs ? ' ' + datum.key.fs : '')", as: 'where' },
  { calculate: "datum.resource + ' ' + datum.where", as: 'series' },
  { calculate: 'datum.key.day', as: 'day' },
  { calculate: 'datum.value.value', as: 'v' },
  { pivot: 'kind', value: 'v', groupby: ['series', 'resource', 'where', 'day'] },
  { filter: 'isValid(datum.used)' },
];

export const DAYS_TO_FULL_SPEC = {
  $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
  title: 'Days until full (least squares of the daily peaks in the time range)',
  data: { url: CAPACITY_QUERY, format: { property: 'aggregations.series.buckets' } },
  transform: [
    ...CAPACITY_ROWS,
    { calculate: 'datum.day / 86400000', as: 't' },
    {
      joinaggregate: [
        { op: 'mean', field: 't', as: 'mean_t' },
        { op: 'mean', field: 'used', as: 'mean_used' },
      ],
      groupby: ['series'],
    },
    { calculate: '(datum.t - datum.mean_t) * (datum.used - datum.mean_used)', as: 'sxy' },
    { calculate: '(datum.t - datum.mean_t) * (datum.t - datum.mean_t)', as: 'sxx' },
    {
      aggregate: [
        { op: 'sum', field: 'sxy', as: 'sxy' },
        { op: 'sum', field: 'sxx', as: 'sxx' },
        { op: 'argmax', field: 't', as: 'last' },
        { op: 'max', field: 'total', as: 'max_total' },
        { op: 'count', as: 'days' },
      ],
      groupby: ['series', 'resource', 'where'],
    },
    { calculate: 'datum.sxx > 0 ? datum.sxy / datum.sxx : null', as: 'growth_per_day' },
    { calculate: 'datum.last.used', as: 'used' },
    { calculate: 'isValid(datum.last.total) ? datum.last.total : datum.max_total', as: 'total' },
    { filter: 'isValid(datum.total) && datum.total > 0' },
    { calculate: 'round(datum.used / datum.total * 1000) / 10', as: 'percent_used' },
    { calculate: 'datum.used >= datum.total ? 0 : (datum.growth_per_day > 0 ? (datum.total - datum.used) / datum.growth_per_day : null)', as: 'days_until_full' },
    { calculate: "isValid(datum.days_until_full) ? format(datum.days_until_full, '.1f') + ' d' : (datum.days < 2 ? 'too little history' : 'never (not growing)')", as: 'label' },
    { calculate: 'isValid(datum.days_until_full) ? datum.days_until_full : 1e9', as: 'order' },
  ],
  layer: [
    {
      mark: { type: 'bar', tooltip: true },
      encoding: {
        y: { field: 'series', type: 'nominal', sort: { field: 'order', op: 'min', order: 'ascending' }, title: null },
        x: { field: 'days_until_full', type: 'quantitative', title: 'days until full' },
        color: { field: 'resource', type: 'nominal', title: 'resource' },
        tooltip: [
          { field: 'series', type: 'nominal', title: 'series' },
          { field: 'used', type: 'quantitative', title: 'used (last day)', format: ',.0f' },
          { field: 'total', type: 'quantitative', title: 'total', format: ',.0f' },
          { field: 'percent_used', type: 'quantitative', title: '% used' },
          { field: 'growth_per_day', type: 'quantitative', title: 'growth per day', format: ',.2f' },
          { field: 'label', type: 'nominal', title: 'days until full' },
          { field: 'days', type: 'quantitative', title: 'days of samples' },
        ],
      },
    },
    {
      mark: { type: 'text', align: 'left', dx: 4 },
      encoding: {
        y: { field: 'series', type: 'nominal', sort: { field: 'order', op: 'min', order: 'ascending' } },
        x: { value: 4 },
        text: { field: 'label', type: 'nominal' },
      },
    },
  ],
};

export const USAGE_SPEC = {
  $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
  title: 'Usage, % of total (daily peak)',
  data: { url: CAPACITY_QUERY, format: { property: 'aggregations.series.buckets' } },
  transform: [...CAPACITY_ROWS, { filter: 'isValid(datum.total) && datum.total > 0' }, { calculate: 'datum.used / datum.total * 100', as: 'percent_used' }],
  mark: { type: 'line', point: true, tooltip: true },
  encoding: {
    x: { field: 'day', type: 'temporal', title: null },
    y: { field: 'percent_used', type: 'quantitative', title: '% used', scale: { domain: [0, 100] } },
    color: { field: 'series', type: 'nominal', title: 'series' },
  },
};

function vega(id: string, title: string, spec: object, description: string): VisDef {
  return { id, title, description, visType: 'vega', aggs: [], params: { spec: JSON.stringify(spec, null, 2) } };
}

const FIRING = 'alert.status:firing';
const RESOLVED = 'alert.status:resolved';
const DB_ERRORS = SEARCHES.find((s) => s.id === 'stackwatch-db-errors')!.query;
const COMPUTE_EVENTS = SEARCHES.find((s) => s.id === 'stackwatch-compute-host-events')!.query;

export const VISUALIZATIONS: VisDef[] = [
  // Alerts overview
  { id: 'stackwatch-alerts-fired', title: 'Alerts fired', view: 'alerts', query: FIRING, visType: 'metric', aggs: [count('1', 'Alerts fired')], params: metricParams },
  {
    id: 'stackwatch-alerts-mttr',
    title: 'Mean time to resolve',
    description: 'Mean alert.duration_s of the alerts resolved in the time range (firing until resolved).',
    view: 'alerts',
    query: RESOLVED,
    visType: 'metric',
    aggs: [metricAgg('1', 'avg', 'alert.duration_s', 'Mean time to resolve')],
    params: metricParams,
  },
  countOverTime('stackwatch-alerts-fired-by-rule', 'Alerts fired by rule', 'alerts', FIRING, 'rule.id', 'Rule'),
  {
    id: 'stackwatch-alerts-by-severity',
    title: 'Alerts fired by severity',
    view: 'alerts',
    query: FIRING,
    visType: 'pie',
    aggs: [count('1'), terms('2', 'segment', 'alert.severity', 'Severity', 5)],
    params: pieParams,
  },
  {
    id: 'stackwatch-alerts-rule-severity',
    title: 'Firing by rule and severity',
    view: 'alerts',
    query: FIRING,
    visType: 'table',
    aggs: [count('1', 'Alerts fired'), terms('2', 'bucket', 'rule.id', 'Rule', 20), terms('3', 'bucket', 'alert.severity', 'Severity', 5)],
    params: tableParams,
  },
  {
    id: 'stackwatch-alerts-time-to-resolve',
    title: 'Time to resolve by rule',
    view: 'alerts',
    query: RESOLVED,
    visType: 'table',
    aggs: [
      count('1', 'Resolved'),
      metricAgg('2', 'avg', 'alert.duration_s', 'Mean time to resolve'),
      metricAgg('3', 'max', 'alert.duration_s', 'Longest'),
      terms('4', 'bucket', 'rule.id', 'Rule', 20),
    ],
    params: tableParams,
  },
  // Incidents
  {
    id: 'stackwatch-incidents-paged',
    title: 'Incidents paged',
    view: 'incidents',
    query: 'incident.paged:true',
    visType: 'metric',
    aggs: [count('1', 'Incidents paged')],
    params: metricParams,
  },
  {
    id: 'stackwatch-incidents-short',
    title: 'Short incidents, not paged',
    description: 'Incidents that ended before their min_duration_s (a forced close, a broker restart the services rode through): kept, never paged.',
    view: 'incidents',
    query: 'incident.paged:false AND incident.status:resolved',
    visType: 'metric',
    aggs: [count('1', 'Not paged')],
    params: metricParams,
  },
  countOverTime('stackwatch-incidents-by-cause', 'Paged incidents by cause', 'incidents', 'incident.paged:true', 'incident.cause', 'Cause'),
  {
    id: 'stackwatch-incidents-cause-table',
    title: 'Incidents by cause: how many, how long, how wide',
    view: 'incidents',
    query: 'incident.status:resolved',
    visType: 'table',
    aggs: [
      count('1', 'Incidents'),
      metricAgg('2', 'avg', 'incident.duration_s', 'Mean duration'),
      metricAgg('3', 'max', 'incident.duration_s', 'Longest'),
      metricAgg('4', 'cardinality', 'incident.alert_ids', 'Alerts'),
      terms('5', 'bucket', 'incident.cause', 'Cause', 20),
    ],
    params: tableParams,
  },
  {
    id: 'stackwatch-incidents-by-host',
    title: 'Paged incidents by host',
    view: 'incidents',
    query: 'incident.paged:true',
    visType: 'table',
    aggs: [count('1', 'Incidents'), terms('2', 'bucket', 'incident.hosts', 'Host', 20), terms('3', 'bucket', 'incident.cause', 'Cause', 10)],
    params: tableParams,
  },
  // Log patterns (log.template, mined by the processor)
  {
    id: 'stackwatch-patterns-new',
    title: 'New error patterns',
    description: 'Error templates a service had never shown (new-error-pattern) and known ones running far above their rate (error-rate-spike).',
    view: 'alerts',
    query: `rule.id:(new-error-pattern OR error-rate-spike) AND ${FIRING}`,
    visType: 'table',
    aggs: [count('1', 'Alerts'), terms('2', 'bucket', 'service.name', 'Service', 20), terms('3', 'bucket', 'message.keyword', 'Error', 20)],
    params: tableParams,
  },
  {
    id: 'stackwatch-patterns-top-errors',
    title: 'Top error templates per service',
    view: 'logs',
    query: 'log.level:(ERROR OR CRITICAL)',
    visType: 'table',
    aggs: [count('1', 'Lines'), terms('2', 'bucket', 'service.name', 'Service', 20), terms('3', 'bucket', 'log.template.text.keyword', 'Template', 10)],
    params: tableParams,
  },
  countOverTime('stackwatch-patterns-error-templates', 'Error lines by template', 'logs', 'log.level:(ERROR OR CRITICAL)', 'log.template.text.keyword', 'Template'),
  {
    id: 'stackwatch-patterns-distinct',
    title: 'Distinct templates per service',
    description: 'How many different message templates each service logged in the time range: a jump is new behaviour.',
    view: 'logs',
    query: '_exists_:log.template.id',
    visType: 'table',
    aggs: [metricAgg('1', 'cardinality', 'log.template.id', 'Templates'), terms('2', 'bucket', 'service.name', 'Service', 30)],
    params: tableParams,
  },
  // AMQP health
  countOverTime('stackwatch-amqp-losses', 'AMQP connection losses by service', 'logs', `${AMQP_LOGGERS} AND ${AMQP_LOSS}`, 'service.name', 'Service'),
  countOverTime('stackwatch-amqp-reconnects', 'AMQP reconnects by service', 'logs', `${AMQP_LOGGERS} AND ${AMQP_RECONNECT}`, 'service.name', 'Service'),
  countOverTime('stackwatch-amqp-alerts', 'AMQP outages (alerts fired) by service', 'alerts', `rule.id:amqp-connection-lost AND ${FIRING}`, 'service.name', 'Service'),
  {
    id: 'stackwatch-amqp-outage-duration',
    title: 'AMQP outages: time to reconnect by service',
    view: 'alerts',
    query: `rule.id:amqp-connection-lost AND ${RESOLVED}`,
    visType: 'table',
    aggs: [
      count('1', 'Outages'),
      metricAgg('2', 'avg', 'alert.duration_s', 'Mean duration'),
      metricAgg('3', 'max', 'alert.duration_s', 'Longest'),
      terms('4', 'bucket', 'service.name', 'Service', 20),
      terms('5', 'bucket', 'host.name', 'Host', 50),
    ],
    params: tableParams,
  },
  // Compute hosts and drift
  countOverTime('stackwatch-compute-host-events-by-host', 'Compute host events by host', 'logs', COMPUTE_EVENTS, 'host.name', 'Host'),
  {
    id: 'stackwatch-compute-drift-alerts',
    title: 'Compute host drift alerts',
    view: 'alerts',
    query: `rule.id:compute-host-drift AND ${FIRING}`,
    visType: 'table',
    aggs: [
      count('1', 'Alerts fired'),
      terms('2', 'bucket', 'host.name', 'Machine', 50),
      terms('3', 'bucket', 'alert.group.kind', 'Kind', 10),
      terms('4', 'bucket', 'alert.group.compute_host', 'Compute host name', 20),
    ],
    params: tableParams,
  },
  metricOverTime('stackwatch-compute-vcpu-used', 'vCPUs used by hypervisor', 'compute.vcpu.used', 'vCPUs used', 'host.name', 'Hypervisor'),
  metricOverTime('stackwatch-compute-memory-used', 'Memory used by hypervisor', 'compute.memory.used', 'Memory used (bytes)', 'host.name', 'Hypervisor'),
  // DB sync
  metricOverTime('stackwatch-db-replication-lag', 'Replication lag (seconds behind master)', 'db.replication.seconds_behind_master', 'Seconds behind master', 'host.name', 'Replica'),
  metricOverTime('stackwatch-db-wsrep-recv-queue', 'Galera receive queue', 'db.wsrep.local_recv_queue', 'wsrep_local_recv_queue', 'host.name', 'Node'),
  metricOverTime('stackwatch-db-wsrep-flow-control', 'Galera flow control paused', 'db.wsrep.flow_control_paused', 'wsrep_flow_control_paused', 'host.name', 'Node'),
  countOverTime('stackwatch-db-errors-by-service', 'Database errors by service', 'logs', DB_ERRORS, 'service.name', 'Service'),
  {
    id: 'stackwatch-db-sync-alerts',
    title: 'Database sync alerts',
    view: 'alerts',
    query: 'rule.id:db-sync-lag',
    visType: 'table',
    aggs: [
      count('1', 'Transitions'),
      metricAgg('2', 'max', 'alert.duration_s', 'Longest (s)'),
      terms('3', 'bucket', 'host.name', 'Host', 50),
      terms('4', 'bucket', 'service.name', 'Service', 20),
      terms('5', 'bucket', 'alert.status', 'Status', 2),
    ],
    params: tableParams,
  },
  // Ceph health
  metricOverTime('stackwatch-ceph-status', 'Ceph health status (0 OK, 1 WARN, 2 ERR)', 'ceph.health.status', 'Health (worst in interval)', 'host.name', 'Cluster'),
  metricOverTime('stackwatch-ceph-checks', 'Ceph health checks over time (1 WARN, 2 ERR)', 'ceph.health.check', 'Check severity', 'labels.code', 'Check code'),
  {
    id: 'stackwatch-ceph-check-alerts',
    title: 'Ceph health check alerts by code',
    view: 'alerts',
    query: 'rule.id:ceph-health',
    visType: 'table',
    aggs: [
      count('1', 'Transitions'),
      metricAgg('2', 'max', 'alert.duration_s', 'Longest (s)'),
      terms('3', 'bucket', 'alert.group.code', 'Check code', 30),
      terms('4', 'bucket', 'alert.severity', 'Severity', 5),
      terms('5', 'bucket', 'alert.status', 'Status', 2),
    ],
    params: tableParams,
  },
  metricOverTime('stackwatch-ceph-pool-percent', 'Ceph pool usage (%)', 'ceph.pool.percent_used', '% used', 'labels.pool', 'Pool'),
  // Capacity trends
  vega(
    'stackwatch-capacity-days-to-full',
    'Capacity: days until full',
    DAYS_TO_FULL_SPEC,
    'Per capacity series (<resource>.used / <resource>.total per host, pool or file system): the last daily peak, the total, the growth per day (least-squares line through the daily peaks of the time range) and the days until the usage reaches the total.',
  ),
  vega('stackwatch-capacity-usage', 'Capacity: usage over time', USAGE_SPEC, 'Daily peak usage of each capacity series, in % of its total.'),
  markdown(
    'stackwatch-capacity-notes',
    'Capacity: how to read this',
    [
      '**Days until full** = (total − used) / growth per day, the growth being the slope of a least-squares line through the daily peaks of each series in the time range — widen the range for a steadier forecast.',
      '',
      'The exact figures, over every raw sample: `stackwatch trends --window 30d` (also `--format csv|json`).',
      '',
      'Series: `compute.vcpu`, `compute.memory`, `compute.disk` per hypervisor (Zabbix), `ceph.pool` per pool and `ceph.cluster` (Ceph collector).',
    ].join('\n'),
  ),
];

// ---------------------------------------------------------------------------------------------------------------
// Dashboards: panels laid out in rows on Kibana's 48-column grid.

interface PanelDef {
  ref: string;
  type: 'visualization' | 'search';
  w: number;
  h: number;
}

interface DashboardDef {
  id: string;
  title: string;
  description: string;
  timeFrom: string;
  rows: PanelDef[][];
}

const vis = (ref: string, w: number, h = 15): PanelDef => ({ ref, type: 'visualization', w, h });
const search = (ref: string, w = 48, h = 20): PanelDef => ({ ref, type: 'search', w, h });

export const DASHBOARDS: DashboardDef[] = [
  {
    id: 'stackwatch-dashboard-incidents',
    title: 'stackwatch: incidents',
    description: 'One page per cause: the incidents the pager got, the short ones it was spared, by cause and host, next to the alerts they hold.',
    timeFrom: 'now-7d',
    rows: [
      [vis('stackwatch-incidents-paged', 12, 8), vis('stackwatch-incidents-short', 12, 8), vis('stackwatch-alerts-fired', 12, 8), vis('stackwatch-alerts-mttr', 12, 8)],
      [vis('stackwatch-incidents-by-cause', 48)],
      [vis('stackwatch-incidents-cause-table', 28), vis('stackwatch-incidents-by-host', 20)],
      [search('stackwatch-incidents')],
    ],
  },
  {
    id: 'stackwatch-dashboard-patterns',
    title: 'stackwatch: log patterns',
    description: 'What the services say, as templates (log.template): new error patterns, the top error templates per service, and how many templates each logs.',
    timeFrom: 'now-7d',
    rows: [
      [vis('stackwatch-patterns-new', 24), vis('stackwatch-patterns-top-errors', 24)],
      [vis('stackwatch-patterns-error-templates', 32), vis('stackwatch-patterns-distinct', 16)],
    ],
  },
  {
    id: 'stackwatch-dashboard-alerts',
    title: 'stackwatch: alerts overview',
    description: 'What fired, by rule and severity, and how long alerts took to resolve.',
    timeFrom: 'now-7d',
    rows: [
      [vis('stackwatch-alerts-fired', 12, 8), vis('stackwatch-alerts-mttr', 12, 8), vis('stackwatch-alerts-by-severity', 24, 8)],
      [vis('stackwatch-alerts-fired-by-rule', 48)],
      [vis('stackwatch-alerts-rule-severity', 24), vis('stackwatch-alerts-time-to-resolve', 24)],
      [search('stackwatch-alerts')],
    ],
  },
  {
    id: 'stackwatch-dashboard-amqp',
    title: 'stackwatch: AMQP health',
    description: 'RabbitMQ connection losses and reconnects per service, and the outages they added up to.',
    timeFrom: 'now-24h',
    rows: [
      [vis('stackwatch-amqp-losses', 24), vis('stackwatch-amqp-reconnects', 24)],
      [vis('stackwatch-amqp-alerts', 24), vis('stackwatch-amqp-outage-duration', 24)],
      [search('stackwatch-amqp-connection-events')],
    ],
  },
  {
    id: 'stackwatch-dashboard-compute',
    title: 'stackwatch: compute hosts and drift',
    description: "nova-compute host records and name drift per machine, and the hypervisors' usage.",
    timeFrom: 'now-7d',
    rows: [
      [vis('stackwatch-compute-host-events-by-host', 24), vis('stackwatch-compute-drift-alerts', 24)],
      [vis('stackwatch-compute-vcpu-used', 24), vis('stackwatch-compute-memory-used', 24)],
      [search('stackwatch-compute-host-events')],
    ],
  },
  {
    id: 'stackwatch-dashboard-db',
    title: 'stackwatch: DB sync',
    description: "Replica lag and Galera flow control from Zabbix, database errors in the services' logs, and the db-sync-lag alerts.",
    timeFrom: 'now-24h',
    rows: [
      [vis('stackwatch-db-replication-lag', 24), vis('stackwatch-db-errors-by-service', 24)],
      [vis('stackwatch-db-wsrep-recv-queue', 16), vis('stackwatch-db-wsrep-flow-control', 16), vis('stackwatch-db-sync-alerts', 16)],
      [search('stackwatch-db-errors')],
    ],
  },
  {
    id: 'stackwatch-dashboard-ceph',
    title: 'stackwatch: Ceph health',
    description: 'Ceph health status and the check codes standing over time, their alerts, and pool usage.',
    timeFrom: 'now-7d',
    rows: [
      [vis('stackwatch-ceph-status', 24), vis('stackwatch-ceph-checks', 24)],
      [vis('stackwatch-ceph-check-alerts', 24), vis('stackwatch-ceph-pool-percent', 24)],
    ],
  },
  {
    id: 'stackwatch-dashboard-capacity',
    title: 'stackwatch: capacity trends',
    description: 'Usage and days until full per capacity series (hypervisor vCPU, memory and disk; Ceph pools and cluster).',
    timeFrom: 'now-30d',
    rows: [[vis('stackwatch-capacity-days-to-full', 32, 20), vis('stackwatch-capacity-notes', 16, 20)], [vis('stackwatch-capacity-usage', 48, 18)]],
  },
];

function dashboard(d: DashboardDef): SavedObject {
  const panels: Record<string, unknown>[] = [];
  const references: Reference[] = [];
  let y = 0;
  let n = 0;
  for (const row of d.rows) {
    let x = 0;
    for (const p of row) {
      const i = String(++n);
      panels.push({
        version: PANEL_VERSION,
        type: p.type,
        gridData: { x, y, w: p.w, h: p.h, i },
        panelIndex: i,
        embeddableConfig: { enhancements: {} },
        panelRefName: `panel_${i}`,
      });
      references.push({ id: p.ref, name: `${i}:panel_${i}`, type: p.type });
      x += p.w;
    }
    y += Math.max(...row.map((p) => p.h));
  }
  return savedObject(
    'dashboard',
    d.id,
    {
      description: d.description,
      kibanaSavedObjectMeta: { searchSourceJSON: JSON.stringify({ query: { query: '', language: 'lucene' }, filter: [] }) },
      optionsJSON: JSON.stringify({ useMargins: true, syncColors: false, syncCursor: true, syncTooltips: false, hidePanelTitles: false }),
      panelsJSON: JSON.stringify(panels),
      refreshInterval: { pause: true, value: 60000 },
      timeFrom: d.timeFrom,
      timeRestore: true,
      timeTo: 'now',
      title: d.title,
      version: 1,
    },
    references,
  );
}

// ---------------------------------------------------------------------------------------------------------------

export function buildSavedObjects(): SavedObject[] {
  return [
    dataView('logs'),
    dataView('alerts', { 'alert.duration_s': { id: 'duration', params: { inputFormat: 'seconds', outputFormat: 'humanizePrecise', outputPrecision: 1 } } }),
    dataView('incidents', { 'incident.duration_s': { id: 'duration', params: { inputFormat: 'seconds', outputFormat: 'humanizePrecise', outputPrecision: 1 } } }),
    dataView('metrics'),
    dataView('dead_letter'),
    ...SEARCHES.map(savedSearch),
    ...VISUALIZATIONS.map(visualization),
    ...DASHBOARDS.map(dashboard),
  ];
}

export function toNdjson(objects: SavedObject[]): string {
  return objects.map((o) => JSON.stringify(o)).join('\n') + '\n';
}

if (import.meta.url === `file://${process.argv[1]}`) {
  writeFileSync(NDJSON_FILE, toNdjson(buildSavedObjects()));
  process.stdout.write(`wrote ${NDJSON_FILE.pathname}\n`);
}
