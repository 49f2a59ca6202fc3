// Every saved search of dashboards/kibana/stackwatch.ndjson against real indexed data. `stackwatch setup`, then real
// OpenStack logs through the real pipeline (`stackwatch replay` → Kafka → processor → Elasticsearch: Loghub's nova
// day split into its services, the hotsos 2022 RabbitMQ outage, oslo.messaging's own logs of a stopped RabbitMQ,
// Galera 1047 errors), the alerts the processor raises from them, metric samples and a dead letter. Then each saved
// search's Lucene query goes through Elasticsearch's query_string, as Kibana sends it, and must return exactly the
// events it promises — computed here independently from the documents themselves. The visualisations' queries and
// aggregations, and the Vega charts' request, run against the same data.
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeIndexTemplates } from '../../sinks/index-setup.ts';
import type { Alert, MetricEvent } from '../../core/events.ts';
import { TopicProducer } from '../../core/kafka.ts';
import { startProcessor, type RunningProcessor } from '../../processors/processor.ts';
import { countDocs, REPO, stackwatch, testSetup, waitFor } from './harness.ts';

type Json = Record<string, any>;

const NDJSON = readFileSync(join(REPO, 'dashboards/kibana/stackwatch.ndjson'), 'utf8');
const OBJECTS: Json[] = NDJSON.split('\n')
  .filter(Boolean)
  .map((l) => JSON.parse(l));
const VIEW_KIND: Record<string, 'logs' | 'alerts' | 'incidents' | 'metrics' | 'dead_letter'> = {
  'stackwatch-logs': 'logs',
  'stackwatch-alerts': 'alerts',
  'stackwatch-incidents': 'incidents',
  'stackwatch-metrics': 'metrics',
  'stackwatch-dead-letter': 'dead_letter',
};
const sourceOf = (o: Json) => JSON.parse(o.attributes.kibanaSavedObjectMeta.searchSourceJSON);
const viewOf = (o: Json) => VIEW_KIND[o.references.find((r: Json) => r.name === 'kibanaSavedObjectMeta.searchSourceJSON.index')?.id];
const SEARCHES = OBJECTS.filter((o) => o.type === 'search').map((o) => ({
  id: o.id as string,
  query: sourceOf(o).query.query as string,
  kind: viewOf(o),
  columns: o.attributes.columns as string[],
  sort: o.attributes.sort as [string, string][],
}));

/** One request of Loghub's nova day, logged by nova-api and then nova-compute. */
const REQUEST_ID = 'req-06631678-1e19-4e4e-bddf-a588d8ea6217';

// ---------------------------------------------------------------------------------------------------------------
// What each saved search promises, written from the documents, independently of its Lucene query.

/** A phrase as Elasticsearch's standard analyzer matches it: the words in order, case-insensitive, anything that is
 * not a letter, digit or underscore between them. */
const phrase = (p: string) => new RegExp(`(?<![\\w.])${p.split(/\W+/).filter(Boolean).join('\\W+')}(?![\\w])`, 'i');
const anyPhrase =
  (...ps: string[]) =>
  (m: string) =>
    ps.some((p) => phrase(p).test(m));
/** A token (dotted names are one token) containing `s`, as `*s*` matches it. */
const tokenContains = (s: string) => (m: string) => m.split(/[^\w.]+/).some((tok) => tok.toLowerCase().includes(s.toLowerCase()));

const amqpLoss = anyPhrase('is unreachable', 'Connection failed', 'closed the connection', 'recoverable connection/channel error', 'Too many heartbeats missed', 'Connection reset by peer');
const amqpReconnect = anyPhrase('Reconnected to AMQP server', 'Connected to AMQP server');

const PROMISES: Record<string, (d: Json) => boolean> = {
  'stackwatch-errors-by-service': (d) => ['ERROR', 'CRITICAL', 'FATAL'].includes(d.log?.level),
  'stackwatch-amqp-connection-events': (d) => /^oslo[._]messaging\._drivers/.test(d.log?.logger ?? '') && (amqpLoss(d.message) || amqpReconnect(d.message)),
  'stackwatch-tracebacks': (d) => typeof d.error?.stack_trace === 'string',
  'stackwatch-request-across-services': (d) => Boolean(d.openstack?.request_id || d.openstack?.global_request_id),
  'stackwatch-compute-host-events': (d) =>
    anyPhrase('Compute node record created', 'No compute node record', 'Hostname has changed', 'Possible rename detected')(d.message) ||
    (phrase('Compute node').test(d.message) && phrase('not found in the database').test(d.message)) ||
    (phrase('Compute host').test(d.message) && phrase('could not be found').test(d.message)),
  'stackwatch-db-errors': (d) =>
    anyPhrase(
      'WSREP has not yet prepared node',
      'Deadlock found when trying to get lock',
      'wsrep aborted transaction',
      'SQL connection failed',
      'Lost connection to MySQL server',
      'MySQL server has gone away',
      "Can't connect to MySQL server",
    )(d.message) ||
    tokenContains('DBConnectionError')(d.message) ||
    tokenContains('DBDeadlock')(d.message),
  'stackwatch-alerts': (d) => d.alert?.status === 'firing' || d.alert?.status === 'resolved',
  'stackwatch-dead-letters': (d) => typeof d.reason === 'string',
  'stackwatch-incidents': (d) => typeof d.incident?.id === 'string' && Array.isArray(d.incident.alert_ids),
};

/** How many events each search must at least find in this data (so a promise that is trivially empty fails). */
const AT_LEAST: Record<string, number> = {
  'stackwatch-errors-by-service': 100,
  'stackwatch-amqp-connection-events': 50,
  'stackwatch-tracebacks': 20,
  'stackwatch-request-across-services': 1000,
  'stackwatch-compute-host-events': 5,
  'stackwatch-db-errors': 10,
  'stackwatch-alerts': 3,
  'stackwatch-dead-letters': 1,
  'stackwatch-incidents': 2,
};

// ---------------------------------------------------------------------------------------------------------------

const t = testSetup('searches');
const ctl = new AbortController();
let processor: RunningProcessor | undefined;
const raised: Alert[] = [];
const index = (kind: keyof typeof t.cfg.elasticsearch.indices) => `${t.cfg.elasticsearch.indices[kind]}-*`;

/** Every hit of a query, paged through a point in time (some of these answers are tens of thousands of events). */
async function* scan(idx: string, query: Json, source: boolean): AsyncGenerator<{ _id: string; _source?: Json }> {
  const pit = await t.es.openPointInTime({ index: idx, keep_alive: '1m' });
  try {
    let after: unknown[] | undefined;
    for (;;) {
      const res = await t.es.search({
        pit: { id: pit.id, keep_alive: '1m' },
        size: 10_000,
        _source: source,
        sort: [{ _shard_doc: 'asc' }] as never,
        query,
        ...(after ? { search_after: after as never } : {}),
      });
      for (const h of res.hits.hits) yield { _id: h._id!, _source: h._source as Json | undefined };
      if (res.hits.hits.length < 10_000) return;
      after = res.hits.hits.at(-1)!.sort;
    }
  } finally {
    await t.es.closePointInTime({ id: pit.id }).catch(() => {});
  }
}

/** Every document of an index, by _id. */
async function allDocs(idx: string): Promise<Map<string, Json>> {
  const out = new Map<string, Json>();
  for await (const h of scan(idx, { match_all: {} }, true)) out.set(h._id, h._source!);
  return out;
}

/** The ids a Lucene query returns, the way Kibana sends it (query_string, analyze_wildcard). */
async function lucene(idx: string, query: string): Promise<Set<string>> {
  const out = new Set<string>();
  for await (const h of scan(idx, { query_string: { query, analyze_wildcard: true } }, false)) out.add(h._id);
  return out;
}

const docs: Record<string, Map<string, Json>> = {};

beforeAll(async () => {
  const setup = stackwatch(['setup', '--config', t.configFile]);
  expect((await setup.exited).code, setup.stderr()).toBe(0);

  // Real logs, as files a collector would read.
  const dir = join(t.dir, 'replay');
  const files: string[] = [];
  const loghub = readFileSync(join(REPO, 'test/fixtures/loghub-OpenStack_2k.log'), 'utf8').split('\n').filter(Boolean);
  mkdirSync(join(dir, 'loghub'), { recursive: true });
  for (const service of ['nova-api', 'nova-compute', 'nova-scheduler']) {
    // Loghub puts each line's source file first: split the day back into its services' files (CRLF kept).
    const file = join(dir, 'loghub', `${service}.log`);
    writeFileSync(
      file,
      loghub
        .filter((l) => l.startsWith(`${service}.log`))
        .map((l) => l.replace(/^\S+ /, '') + '\n')
        .join(''),
    );
    files.push(file);
  }
  mkdirSync(join(dir, 'stop-app'));
  for (const f of ['nova-api.log', 'nova-compute.log']) {
    copyFileSync(join(REPO, 'test/fixtures/oslo-messaging-real/stop-app', f), join(dir, 'stop-app', f));
    files.push(join(dir, 'stop-app', f));
  }
  files.push(
    join(REPO, 'test/fixtures/formats/proxysql-galera-1047-2018.log'),
    join(REPO, 'test/fixtures/formats/trillian-klog-galera-1047-2017.log'),
    join(REPO, 'samples/hotsos-2022/nova-compute.log.1.gz'),
    join(REPO, 'samples/hotsos-2022/neutron-l3-agent.log.1'),
  );

  processor = await startProcessor(t.cfg, { signal: ctl.signal, onProcessed: (info) => raised.push(...info.alerts) });
  const replay = stackwatch(['replay', '--config', t.configFile, '--no-process', ...files]);
  const { code } = await replay.exited;
  expect(code, replay.stderr()).toBe(0);
  const produced = Number(/replay: (\d+) events produced/.exec(replay.stderr())?.[1]);
  expect(produced).toBeGreaterThan(15_000);

  // Metric samples as the Zabbix and Ceph collectors produce them, over the last ten days.
  const producer = await TopicProducer.connect(t.cfg.kafka, 'test');
  const day = 86_400_000;
  const noon = Date.parse(new Date().toISOString().slice(0, 10) + 'T12:00:00Z') - day;
  const at = (ms: number) => new Date(ms).toISOString();
  const m = (time: number, host: string, name: string, value: number, labels: Record<string, string> = {}, unit?: string): MetricEvent => ({
    v: 1,
    '@timestamp': at(time),
    source: name.startsWith('ceph') ? 'ceph' : 'zabbix',
    host: { name: host },
    metric: { name, value, ...(unit ? { unit } : {}) },
    labels,
  });
  const metrics: MetricEvent[] = [];
  for (let d = 0; d < 10; d++) {
    const time = noon - (9 - d) * day;
    metrics.push(
      m(time, 'cmp-1', 'compute.vcpu.used', 10 + 2 * d),
      m(time, 'cmp-1', 'compute.vcpu.total', 100),
      m(time, 'cmp-1', 'compute.memory.used', 64e9 + 1e9 * d, {}, 'bytes'),
      m(time, 'cmp-1', 'compute.memory.total', 256e9, {}, 'bytes'),
      m(time, 'ceph-test', 'ceph.pool.used', 1e12 + 1e11 * d, { pool: 'rbd' }, 'bytes'),
      m(time, 'ceph-test', 'ceph.pool.total', 1e13, { pool: 'rbd' }, 'bytes'),
      m(time, 'ceph-test', 'ceph.pool.percent_used', 10 + d, { pool: 'rbd' }, 'percent'),
      m(time, 'ceph-test', 'ceph.health.status', d === 5 ? 1 : 0),
      m(time, 'db-1', 'db.wsrep.local_recv_queue', d * 3),
      m(time, 'db-1', 'db.wsrep.flow_control_paused', d === 5 ? 0.2 : 0),
    );
    if (d === 5) metrics.push(m(time, 'ceph-test', 'ceph.health.check', 1, { code: 'OSD_DOWN' }));
  }
  // Replica lag above 30 s for longer than 30 s, then back: a db-sync-lag alert, fired and resolved.
  [0, 45, 55, 75, 85, 2].forEach((v, i) => metrics.push(m(noon + i * 10_000, 'db-replica', 'db.replication.seconds_behind_master', v, { master_host: 'db-1' }, 's')));
  await producer.send(
    t.cfg.kafka.topics.metrics,
    metrics.map((x) => ({ key: x.host.name, value: JSON.stringify(x) })),
  );
  // Something that is not a log event: the processor dead-letters it, and indexes the dead letter.
  await producer.send(t.cfg.kafka.topics.logs, [{ key: 'x', value: 'this is not JSON' }]);
  await producer.disconnect();

  await waitFor(`${produced} log events in Elasticsearch`, async () => (await countDocs(t.es, index('logs'))) === produced, 170_000, 1000);
  await waitFor(`${metrics.length} metric samples`, async () => (await countDocs(t.es, index('metrics'))) === metrics.length, 60_000);
  await waitFor('the dead letter', async () => (await countDocs(t.es, index('dead_letter'))) >= 1, 60_000);
  // Alerts are indexed with the batch that raised them, before its offsets are committed: they are in by now.
  await waitFor('the alerts the processor raised', async () => raised.length > 0 && (await countDocs(t.es, index('alerts'))) > 0, 60_000);
  // The processor stopped before the documents are read: its wall clock files incidents on its own (min_duration_s),
  // and one filed after this read was an "extra" hit of stackwatch-incidents in a run.
  await processor.stop();
  processor = undefined;
  await t.es.indices.refresh({ index: `${t.cfg.elasticsearch.indices.incidents}-*,${t.cfg.elasticsearch.indices.alerts}-*`, ignore_unavailable: true, allow_no_indices: true });
  for (const kind of ['logs', 'alerts', 'incidents', 'metrics', 'dead_letter'] as const) docs[kind] = await allDocs(index(kind));
}, 300_000);

afterAll(async () => {
  ctl.abort();
  await processor?.stop().catch(() => {});
  await removeIndexTemplates(t.es, t.cfg.elasticsearch).catch(() => {});
  await t.cleanup();
});

describe('saved searches on real indexed data', () => {
  it('covers every saved search of the file', () => {
    expect(SEARCHES.map((s) => s.id).sort()).toEqual(Object.keys(PROMISES).sort());
  });

  for (const id of Object.keys(PROMISES)) {
    it(`${id} returns exactly the events it promises`, async () => {
      const s = SEARCHES.find((x) => x.id === id)!;
      const all = docs[s.kind];
      const expected = new Set([...all].filter(([, d]) => PROMISES[id](d)).map(([k]) => k));
      const got = await lucene(index(s.kind), s.query);
      const missing = [...expected]
        .filter((k) => !got.has(k))
        .slice(0, 3)
        .map((k) => all.get(k)?.message ?? all.get(k)?.reason);
      const extra = [...got]
        .filter((k) => !expected.has(k))
        .slice(0, 3)
        .map((k) => all.get(k)?.message ?? all.get(k)?.reason);
      expect({ missing, extra }).toEqual({ missing: [], extra: [] });
      expect(got.size).toBe(expected.size);
      expect(got.size).toBeGreaterThanOrEqual(AT_LEAST[id]);
    });
  }

  it('columns and sort fields exist in the real indices, and the sort fields are sortable', async () => {
    for (const s of SEARCHES) {
      const caps = await t.es.fieldCaps({ index: index(s.kind), fields: [...s.columns, ...s.sort.map(([f]) => f)] });
      for (const c of s.columns) expect(caps.fields[c], `${s.id}: column ${c}`).toBeDefined();
      for (const [f] of s.sort)
        expect(
          Object.values(caps.fields[f] ?? {}).every((c) => c.aggregatable),
          `${s.id}: sort ${f}`,
        ).toBe(true);
    }
  });

  it('errors by service: ERROR lines of several services, nothing below ERROR', async () => {
    const s = SEARCHES.find((x) => x.id === 'stackwatch-errors-by-service')!;
    const res = await t.es.search({
      index: index('logs'),
      size: 0,
      query: { query_string: { query: s.query } },
      aggs: { services: { terms: { field: 'service.name' } }, levels: { terms: { field: 'log.level' } } },
    });
    const services = (res.aggregations!.services as Json).buckets.map((b: Json) => b.key);
    expect(services).toEqual(expect.arrayContaining(['nova-compute', 'neutron-l3-agent', 'nova-api']));
    const levels = (res.aggregations!.levels as Json).buckets.map((b: Json) => b.key);
    expect(levels).toContain('ERROR');
    for (const l of levels) expect(['ERROR', 'CRITICAL', 'FATAL']).toContain(l);
  });

  it('AMQP connection events: the losses and the reconnects, of nova and neutron', async () => {
    const s = SEARCHES.find((x) => x.id === 'stackwatch-amqp-connection-events')!;
    const ids = await lucene(index('logs'), s.query);
    const events = [...ids].map((k) => docs.logs.get(k)!);
    expect(events.some((d) => /Reconnected to AMQP server on 127\.0\.0\.1:5672/.test(d.message))).toBe(true);
    expect(events.some((d) => /AMQP server on 127\.0\.0\.1:5672 is unreachable/.test(d.message))).toBe(true);
    expect(events.some((d) => d.service.name === 'neutron-l3-agent' && /Connection failed/.test(d.message))).toBe(true);
    expect(new Set(events.map((d) => d.service.name))).toEqual(new Set(['nova-api', 'nova-compute', 'neutron-l3-agent']));
  });

  it('one request across services: the documented workflow — the request id, quoted — gives its lines in nova-api and nova-compute', async () => {
    const s = SEARCHES.find((x) => x.id === 'stackwatch-request-across-services')!;
    const expected = [...docs.logs].filter(([, d]) => d.openstack?.request_id === REQUEST_ID || d.openstack?.global_request_id === REQUEST_ID || d.message.includes(REQUEST_ID));
    expect(expected.length).toBe(6);
    for (const query of [`(${s.query}) AND "${REQUEST_ID}"`, `"${REQUEST_ID}"`]) {
      const res = await t.es.search({ index: index('logs'), size: 100, query: { query_string: { query, analyze_wildcard: true } }, sort: s.sort.map(([f, o]) => ({ [f]: o })) as never });
      const hits = res.hits.hits.map((h) => h._source as Json);
      expect(res.hits.hits.map((h) => h._id).sort(), query).toEqual(expected.map(([k]) => k).sort());
      expect(hits.map((h) => h.service.name)).toEqual(['nova-api', 'nova-compute', 'nova-compute', 'nova-compute', 'nova-compute', 'nova-compute']);
      expect(hits[0].message).toContain('"DELETE /v2/54fadb412c4e40cdbaed9335e4c35a9e/servers/78dc1847-8848-49cc-933e-9239b12c9dcf HTTP/1.1"');
      expect(hits[1].message).toContain('Terminating instance');
    }
  });

  it("compute host events: the hotsos compute host lost from nova's database and created again", async () => {
    const s = SEARCHES.find((x) => x.id === 'stackwatch-compute-host-events')!;
    const events = [...(await lucene(index('logs'), s.query))].map((k) => docs.logs.get(k)!);
    expect(events.some((d) => /No compute node record (found )?for host compute4\.mylab\.home/.test(d.message))).toBe(true);
    expect(events.some((d) => /Compute node record created for compute4\.mylab\.home/.test(d.message))).toBe(true);
  });

  it('database errors: the Galera 1047 and lost-connection errors of both real logs', async () => {
    const s = SEARCHES.find((x) => x.id === 'stackwatch-db-errors')!;
    const events = [...(await lucene(index('logs'), s.query))].map((k) => docs.logs.get(k)!);
    expect(new Set(events.map((d) => d.service.name))).toEqual(new Set(['proxysql-galera-1047-2018', 'trillian-klog-galera-1047-2017']));
    expect(events.some((d) => /1047, WSREP has not yet prepared node/.test(d.message))).toBe(true);
    expect(events.some((d) => /2013: Lost connection to MySQL server/.test(d.message))).toBe(true);
  });

  it('alert transitions: the alerts the pipeline raised from these logs and metrics, all of them', async () => {
    const rules = new Set([...docs.alerts.values()].map((a) => a.rule.id));
    for (const rule of ['amqp-connection-lost', 'compute-host-drift', 'db-sync-lag']) expect([...rules], rule).toContain(rule);
    expect([...docs.alerts.values()].some((a) => a.alert.status === 'resolved' && a.alert.duration_s > 0)).toBe(true);
  });

  it('dead letters: the message that was not a log event, with the reason', async () => {
    const s = SEARCHES.find((x) => x.id === 'stackwatch-dead-letters')!;
    const letters = [...(await lucene(index('dead_letter'), s.query))].map((k) => docs.dead_letter.get(k)!);
    expect(letters.some((d) => d.component === 'processor' && /undecodable message/.test(d.reason) && d.payload === 'this is not JSON')).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// The visualisations: their queries, their aggregations (as Kibana would ask Elasticsearch), the Vega request.

/** A classic visualization's aggregations as an Elasticsearch request: buckets nested in order, metrics inside. */
function esAggs(aggs: Json[]): Json | undefined {
  let inner: Json = {};
  for (const a of aggs.filter((x) => x.schema === 'metric' && x.type !== 'count')) inner[a.id] = { [a.type]: { field: a.params.field } };
  for (const a of aggs.filter((x) => x.schema !== 'metric').reverse()) {
    const body =
      a.type === 'terms'
        ? { terms: { field: a.params.field, size: a.params.size } }
        : a.type === 'date_histogram'
          ? { date_histogram: { field: a.params.field, fixed_interval: '1d', min_doc_count: 1 } }
          : { [a.type]: a.params };
    inner = { [a.id]: { ...body, ...(Object.keys(inner).length ? { aggs: inner } : {}) } };
  }
  return Object.keys(inner).length ? inner : undefined;
}

/** Visualisations whose query must find something in this data. */
const MUST_FIND = [
  'stackwatch-alerts-fired',
  'stackwatch-alerts-mttr',
  'stackwatch-alerts-fired-by-rule',
  'stackwatch-amqp-losses',
  'stackwatch-amqp-reconnects',
  'stackwatch-amqp-alerts',
  'stackwatch-amqp-outage-duration',
  'stackwatch-compute-host-events-by-host',
  'stackwatch-compute-drift-alerts',
  'stackwatch-compute-vcpu-used',
  'stackwatch-compute-memory-used',
  'stackwatch-db-replication-lag',
  'stackwatch-db-wsrep-recv-queue',
  'stackwatch-db-wsrep-flow-control',
  'stackwatch-db-errors-by-service',
  'stackwatch-db-sync-alerts',
  'stackwatch-ceph-status',
  'stackwatch-ceph-checks',
  'stackwatch-ceph-pool-percent',
];

describe('visualisations on real indexed data', () => {
  const visualizations = OBJECTS.filter((o) => o.type === 'visualization');

  it('every aggregation-based visualisation: its query and aggregations run, and find what they show', async () => {
    let ran = 0;
    for (const v of visualizations) {
      const state = JSON.parse(v.attributes.visState);
      const kind = viewOf(v);
      if (!kind) continue;
      const query = sourceOf(v).query.query as string;
      const res = await t.es.search({
        index: index(kind),
        size: 0,
        track_total_hits: true,
        query: query ? { query_string: { query, analyze_wildcard: true } } : { match_all: {} },
        aggs: esAggs(state.aggs),
      });
      const total = typeof res.hits.total === 'number' ? res.hits.total : res.hits.total!.value;
      if (MUST_FIND.includes(v.id)) expect(total, `${v.id}: ${query}`).toBeGreaterThan(0);
      ran++;
    }
    expect(ran).toBeGreaterThanOrEqual(MUST_FIND.length);
  });

  it('the AMQP charts split what the saved search finds into losses and reconnects', async () => {
    const q = (id: string) => sourceOf(visualizations.find((v) => v.id === id)!).query.query as string;
    const losses = await lucene(index('logs'), q('stackwatch-amqp-losses'));
    const reconnects = await lucene(index('logs'), q('stackwatch-amqp-reconnects'));
    const all = await lucene(index('logs'), SEARCHES.find((s) => s.id === 'stackwatch-amqp-connection-events')!.query);
    expect(new Set([...losses, ...reconnects])).toEqual(all);
    expect([...losses].filter((k) => reconnects.has(k))).toEqual([]);
  });

  it("the capacity charts' Vega request runs and returns the capacity series by day", async () => {
    for (const id of ['stackwatch-capacity-days-to-full', 'stackwatch-capacity-usage']) {
      const spec = JSON.parse(JSON.parse(visualizations.find((v) => v.id === id)!.attributes.visState).params.spec);
      expect(spec.data.url.index).toBe('stackwatch-metrics-*');
      // What Kibana puts in place of the dashboard's context and time range.
      const body = JSON.parse(
        JSON.stringify(spec.data.url.body)
          .replace('"%dashboard_context-must_clause%"', '{"match_all":{}}')
          .replace('"%dashboard_context-must_not_clause%"', '{"match_none":{}}')
          .replace('"%dashboard_context-filter_clause%"', '{"match_all":{}}')
          .replace('{"%timefilter%":true}', JSON.stringify({ gte: 'now-30d', lte: 'now' })),
      );
      const res = await t.es.search({ index: index('metrics'), ...body });
      const buckets = (res.aggregations as Json)[spec.data.format.property.split('.')[1]].buckets as Json[];
      const series = new Set(buckets.map((b) => `${b.key.metric} ${b.key.host} ${b.key.pool ?? ''}`));
      expect(series).toEqual(
        new Set([
          'compute.vcpu.used cmp-1 ',
          'compute.vcpu.total cmp-1 ',
          'compute.memory.used cmp-1 ',
          'compute.memory.total cmp-1 ',
          'ceph.pool.used ceph-test rbd',
          'ceph.pool.total ceph-test rbd',
        ]),
      );
      // One bucket per series and day, with the day's peak.
      expect(buckets.length).toBe(60);
      const vcpu = buckets.filter((b) => b.key.metric === 'compute.vcpu.used').map((b) => b.value.value);
      expect(vcpu).toEqual([10, 12, 14, 16, 18, 20, 22, 24, 26, 28]);
    }
  });
});
