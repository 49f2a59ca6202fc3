// The index templates and ILM policies (sinks/) and the Kibana saved objects (dashboards/). No Kibana runs here, so the
// validator checks the NDJSON as thoroughly as Kibana's import would and more: every line a well-formed saved object
// of an allowed type, stringified attributes that parse, valid panel grids, references that resolve inside the
// file, and every field any search or visualisation uses mapped in our templates with a type that fits its use.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { buildSavedObjects, NDJSON_FILE, toNdjson } from '../../dashboards/kibana/build.ts';
import { kibanaObjects, parseRetention } from '../../cli/setup.ts';
import { validateConfig } from '../../core/config.ts';
import {
  compatibleTypes,
  DAILY_KINDS,
  dailyIndexAge,
  defaultRetentionDays,
  fieldOfReason,
  fieldType,
  ilmPolicy,
  ilmPolicyFile,
  INDEX_KINDS,
  isDaily,
  kindObjects,
  kindTemplate,
  mappedFields,
  parseDays,
  type IndexKind,
} from '../../sinks/index-setup.ts';
import { deadLetter, metricDocument, type Alert, type InventoryEvent, type RawLogEvent } from '../../core/events.ts';
import { parseLogEvent } from '../../processors/parse-log.ts';

const NDJSON = readFileSync(NDJSON_FILE, 'utf8');

// ---------------------------------------------------------------------------------------------------------------
// The validator

type Json = Record<string, any>;

const GRID_COLUMNS = 48;
const ALLOWED_TYPES = ['index-pattern', 'search', 'visualization', 'dashboard', 'lens'];
const TOP_KEYS = new Set([
  'attributes',
  'coreMigrationVersion',
  'id',
  'managed',
  'references',
  'type',
  'typeMigrationVersion',
  'created_at',
  'updated_at',
  'version',
  'namespaces',
  'originId',
]);
const SEMVER = /^\d+\.\d+\.\d+$/;

/** Data view title (the default prefixes) → the index kind whose template maps it. */
const KIND_OF_TITLE: Record<string, IndexKind> = {
  'stackwatch-logs-*': 'logs',
  'stackwatch-alerts-*': 'alerts',
  'stackwatch-incidents-*': 'incidents',
  'stackwatch-metrics-*': 'metrics',
  'stackwatch-dead-letter-*': 'dead_letter',
};

/** Types the minimal Elasticsearch distribution (the one the tests run) knows. */
const MINIMAL_ES_TYPES = new Set(['text', 'keyword', 'date', 'long', 'integer', 'short', 'byte', 'double', 'float', 'half_float', 'boolean', 'ip', 'object', 'nested']);

const NUMERIC = new Set(['long', 'integer', 'short', 'byte', 'double', 'float', 'half_float', 'scaled_float']);
const AGGREGATABLE = (t: string) => t === 'keyword' || t === 'date' || t === 'boolean' || t === 'ip' || NUMERIC.has(t);

/** What a field's use needs of its type. */
const USES: Record<string, (t: string) => boolean> = {
  terms: AGGREGATABLE,
  cardinality: AGGREGATABLE,
  date_histogram: (t) => t === 'date',
  avg: (t) => NUMERIC.has(t),
  max: (t) => NUMERIC.has(t),
  min: (t) => NUMERIC.has(t),
  sum: (t) => NUMERIC.has(t),
  sort: (t) => t !== 'text',
  wildcard: (t) => t === 'keyword',
  range: (t) => t === 'date' || NUMERIC.has(t),
  column: () => true,
  query: () => true,
};

/** Bucket schemas per classic visualization type ("metric" is everywhere but markdown and vega). */
const SCHEMAS: Record<string, string[]> = {
  histogram: ['metric', 'segment', 'group', 'split'],
  line: ['metric', 'segment', 'group', 'split'],
  area: ['metric', 'segment', 'group', 'split'],
  pie: ['metric', 'segment', 'split'],
  table: ['metric', 'bucket', 'split'],
  metric: ['metric', 'group'],
  markdown: [],
  vega: [],
};
const METRIC_AGGS = new Set(['count', 'avg', 'max', 'min', 'sum', 'cardinality', 'top_hits', 'median', 'percentiles']);

/** Field names a Lucene query uses: `field:value`, `field:(…)`, `_exists_:field`; quoted text is skipped. */
export function luceneFields(query: string): string[] {
  const out: string[] = [];
  let i = 0;
  while (i < query.length) {
    const c = query[i];
    if (c === '"') {
      i = query.indexOf('"', i + 1);
      if (i < 0) break;
      i++;
      continue;
    }
    if (c === '\\') {
      i += 2;
      continue;
    }
    const m = /^[A-Za-z_@][\w.@*-]*/.exec(query.slice(i));
    if (m && (i === 0 || /[\s(+-]/.test(query[i - 1]))) {
      const after = i + m[0].length;
      if (query[after] === ':') {
        if (m[0] === '_exists_') {
          const f = /^[\w.@]+/.exec(query.slice(after + 1));
          if (f) out.push(f[0]);
        } else out.push(m[0]);
      }
      i = after;
      continue;
    }
    i++;
  }
  return out;
}

/** Quotes and parentheses balance (outside quotes): what Lucene's parser needs before anything else. */
function luceneBalanced(query: string): boolean {
  let depth = 0;
  let quoted = false;
  for (let i = 0; i < query.length; i++) {
    const c = query[i];
    if (c === '\\') i++;
    else if (c === '"') quoted = !quoted;
    else if (!quoted && c === '(') depth++;
    else if (!quoted && c === ')' && --depth < 0) return false;
  }
  return depth === 0 && !quoted;
}

/** Every `field` key (and wildcard/range keys) of an Elasticsearch request body, with what uses it. */
function bodyFields(node: unknown, use = 'query', out: { field: string; use: string }[] = []): { field: string; use: string }[] {
  if (Array.isArray(node)) for (const n of node) bodyFields(n, use, out);
  else if (node && typeof node === 'object') {
    for (const [k, v] of Object.entries(node as Json)) {
      if (k === 'field' && typeof v === 'string') out.push({ field: v, use });
      else if ((k === 'wildcard' || k === 'range' || k === 'term' || k === 'terms') && v && typeof v === 'object' && !('field' in v)) {
        for (const f of Object.keys(v)) out.push({ field: f, use: k === 'wildcard' ? 'wildcard' : k === 'range' ? 'range' : 'query' });
      } else if (['terms', 'date_histogram', 'max', 'min', 'avg', 'sum', 'cardinality'].includes(k)) bodyFields(v, k, out);
      else bodyFields(v, use, out);
    }
  }
  return out;
}

export function validateSavedObjects(text: string): string[] {
  const problems: string[] = [];
  const objects: Json[] = [];
  const lines = text.split('\n');
  if (lines[lines.length - 1] !== '') problems.push('the file does not end with a newline');
  lines.forEach((line, n) => {
    if (line === '' && n === lines.length - 1) return;
    try {
      const o = JSON.parse(line);
      if (!o || typeof o !== 'object' || Array.isArray(o)) throw new Error('not an object');
      objects.push({ ...o, __line: n + 1 });
    } catch (err) {
      problems.push(`line ${n + 1}: not a JSON object: ${(err as Error).message}`);
    }
  });

  const byKey = new Map<string, Json>();
  for (const o of objects) {
    const at = `line ${o.__line} (${o.type} ${o.id})`;
    for (const k of Object.keys(o)) if (k !== '__line' && !TOP_KEYS.has(k)) problems.push(`${at}: unknown key ${k}`);
    if (!ALLOWED_TYPES.includes(o.type)) problems.push(`${at}: type ${o.type} is not one of ${ALLOWED_TYPES.join(', ')}`);
    if (typeof o.id !== 'string' || !/^[A-Za-z0-9_.:-]+$/.test(o.id)) problems.push(`${at}: bad id`);
    if (!o.attributes || typeof o.attributes !== 'object') problems.push(`${at}: no attributes`);
    if (!SEMVER.test(o.coreMigrationVersion ?? '')) problems.push(`${at}: coreMigrationVersion is not a version`);
    if (!SEMVER.test(o.typeMigrationVersion ?? '')) problems.push(`${at}: typeMigrationVersion is not a version`);
    if (o.managed !== false) problems.push(`${at}: managed must be false (SREs edit these)`);
    if (!Array.isArray(o.references)) problems.push(`${at}: references is not an array`);
    else {
      const names = new Set<string>();
      for (const r of o.references) {
        if (typeof r?.id !== 'string' || typeof r?.name !== 'string' || typeof r?.type !== 'string') problems.push(`${at}: malformed reference ${JSON.stringify(r)}`);
        else if (names.has(r.name)) problems.push(`${at}: reference name ${r.name} twice`);
        names.add(r?.name);
      }
    }
    if (typeof o.attributes?.title !== 'string' || o.attributes.title === '') problems.push(`${at}: no title`);
    const key = `${o.type}:${o.id}`;
    if (byKey.has(key)) problems.push(`${at}: duplicate of line ${byKey.get(key)!.__line}`);
    byKey.set(key, o);
  }

  // Every reference resolves inside the file.
  for (const o of objects) {
    for (const r of o.references ?? []) {
      if (r?.type && !byKey.has(`${r.type}:${r.id}`)) problems.push(`line ${o.__line} (${o.type} ${o.id}): reference ${r.name} → ${r.type} ${r.id} is not in the file`);
    }
  }

  const parse = (o: Json, name: string, value: unknown): Json | undefined => {
    if (typeof value !== 'string') {
      problems.push(`line ${o.__line} (${o.type} ${o.id}): ${name} is not a string`);
      return undefined;
    }
    try {
      return JSON.parse(value);
    } catch (err) {
      problems.push(`line ${o.__line} (${o.type} ${o.id}): ${name} does not parse: ${(err as Error).message}`);
      return undefined;
    }
  };

  const fieldsOf = (kind: IndexKind) => mappedFields(kind);
  const check = (o: Json, kind: IndexKind | undefined, field: string, use: string) => {
    const at = `line ${o.__line} (${o.type} ${o.id})`;
    if (!kind) return problems.push(`${at}: field ${field} used without a data view`);
    const type = fieldType(fieldsOf(kind), field);
    if (!type) problems.push(`${at}: field ${field} (${use}) is not in the ${kind} template`);
    else if (!USES[use](type)) problems.push(`${at}: field ${field} is ${type} in the ${kind} template, which does not fit ${use}`);
  };
  const checkQuery = (o: Json, kind: IndexKind | undefined, query: unknown, language: unknown, what: string) => {
    const at = `line ${o.__line} (${o.type} ${o.id})`;
    if (language !== 'lucene') problems.push(`${at}: ${what} language is ${language}, not lucene`);
    if (typeof query !== 'string') return problems.push(`${at}: ${what} query is not a string`);
    if (!luceneBalanced(query)) problems.push(`${at}: ${what} query has unbalanced quotes or parentheses: ${query}`);
    for (const f of luceneFields(query)) check(o, kind, f, 'query');
  };

  /** The data view an object's search source points at, and its kind. */
  const viewOf = (o: Json, source: Json | undefined): IndexKind | undefined => {
    if (!source?.indexRefName) return undefined;
    const ref = (o.references ?? []).find((r: Json) => r.name === source.indexRefName);
    if (!ref) {
      problems.push(`line ${o.__line} (${o.type} ${o.id}): indexRefName ${source.indexRefName} names no reference`);
      return undefined;
    }
    if (ref.type !== 'index-pattern') problems.push(`line ${o.__line} (${o.type} ${o.id}): ${ref.name} is a ${ref.type}, not a data view`);
    const view = byKey.get(`index-pattern:${ref.id}`);
    return view ? KIND_OF_TITLE[view.attributes.title] : undefined;
  };

  for (const o of objects) {
    const at = `line ${o.__line} (${o.type} ${o.id})`;
    const a = o.attributes ?? {};
    if (o.type === 'index-pattern') {
      const kind = KIND_OF_TITLE[a.title];
      if (!kind) problems.push(`${at}: title ${a.title} is not one of the index patterns stackwatch writes (${Object.keys(KIND_OF_TITLE).join(', ')})`);
      for (const k of ['fieldAttrs', 'fieldFormatMap', 'fields', 'runtimeFieldMap', 'sourceFilters', 'typeMeta']) if (k in a) parse(o, k, a[k]);
      if (a.timeFieldName !== '@timestamp') problems.push(`${at}: time field is ${a.timeFieldName}, not @timestamp`);
      else if (kind && fieldType(fieldsOf(kind), a.timeFieldName) !== 'date') problems.push(`${at}: time field ${a.timeFieldName} is not a date in the ${kind} template`);
      const formats = 'fieldFormatMap' in a ? parse(o, 'fieldFormatMap', a.fieldFormatMap) : {};
      if (kind) for (const f of Object.keys(formats ?? {})) check(o, kind, f, 'column');
      if (typeof a.name !== 'string' || a.name === '') problems.push(`${at}: no name`);
    }

    if (o.type === 'search') {
      const source = parse(o, 'kibanaSavedObjectMeta.searchSourceJSON', a.kibanaSavedObjectMeta?.searchSourceJSON);
      const kind = viewOf(o, source);
      if (!kind) problems.push(`${at}: a saved search needs a data view`);
      checkQuery(o, kind, source?.query?.query, source?.query?.language, 'the');
      if (!Array.isArray(a.columns) || a.columns.length === 0) problems.push(`${at}: no columns`);
      for (const c of a.columns ?? []) check(o, kind, c, 'column');
      if (!Array.isArray(a.sort)) problems.push(`${at}: sort is not an array`);
      for (const s of a.sort ?? []) {
        if (!Array.isArray(s) || s.length !== 2 || !['asc', 'desc'].includes(s[1])) problems.push(`${at}: sort entry ${JSON.stringify(s)} is not [field, asc|desc]`);
        else check(o, kind, s[0], 'sort');
      }
    }

    if (o.type === 'visualization') {
      const source = parse(o, 'kibanaSavedObjectMeta.searchSourceJSON', a.kibanaSavedObjectMeta?.searchSourceJSON);
      parse(o, 'uiStateJSON', a.uiStateJSON);
      const visState = parse(o, 'visState', a.visState);
      if (!visState) continue;
      if (visState.title !== a.title) problems.push(`${at}: visState.title differs from the title`);
      const schemas = SCHEMAS[visState.type];
      if (!schemas) {
        problems.push(`${at}: visualization type ${visState.type} is not one of ${Object.keys(SCHEMAS).join(', ')}`);
        continue;
      }
      const kind = viewOf(o, source);
      const aggs: Json[] = visState.aggs ?? [];
      if (visState.type === 'vega') {
        let spec: Json | undefined;
        try {
          spec = JSON.parse(visState.params?.spec);
        } catch (err) {
          problems.push(`${at}: the Vega spec does not parse as JSON: ${(err as Error).message}`);
        }
        if (!spec) continue;
        if (!/vega(-lite)?\/v5\.json$/.test(spec.$schema ?? '')) problems.push(`${at}: the Vega spec has no v5 $schema`);
        const urls = [spec.data, ...(Array.isArray(spec.data) ? spec.data : [])].filter((d) => d?.url?.index);
        if (urls.length === 0) problems.push(`${at}: the Vega spec queries no index`);
        for (const d of urls) {
          const vkind = KIND_OF_TITLE[d.url.index];
          if (!vkind) problems.push(`${at}: the Vega spec queries ${d.url.index}, not a stackwatch data view`);
          if (d.url['%timefield%'] !== undefined) check(o, vkind, d.url['%timefield%'], 'date_histogram');
          for (const { field, use } of bodyFields(d.url.body)) check(o, vkind, field, use);
          if (!d.url['%context%'] && !JSON.stringify(d.url.body).includes('%timefilter%')) problems.push(`${at}: the Vega query ignores the dashboard's time range`);
        }
        continue;
      }
      if (visState.type === 'markdown') {
        if (typeof visState.params?.markdown !== 'string' || visState.params.markdown === '') problems.push(`${at}: empty markdown`);
        continue;
      }
      if (!kind) problems.push(`${at}: an aggregation-based visualization needs a data view`);
      checkQuery(o, kind, source?.query?.query, source?.query?.language, 'the');
      const ids = new Set<string>();
      const metricIds = new Set<string>();
      for (const agg of aggs) {
        if (ids.has(agg.id)) problems.push(`${at}: agg id ${agg.id} twice`);
        ids.add(agg.id);
        if (!schemas.includes(agg.schema)) problems.push(`${at}: agg ${agg.id} has schema ${agg.schema}, not one of ${schemas.join(', ')} for ${visState.type}`);
        if (agg.schema === 'metric') {
          if (!METRIC_AGGS.has(agg.type)) problems.push(`${at}: agg ${agg.id} (${agg.type}) is not a metric aggregation`);
          metricIds.add(agg.id);
        } else if (METRIC_AGGS.has(agg.type)) problems.push(`${at}: metric aggregation ${agg.id} in bucket schema ${agg.schema}`);
        const field = agg.params?.field;
        if (agg.type !== 'count' && agg.type !== 'filters') {
          if (typeof field !== 'string') problems.push(`${at}: agg ${agg.id} (${agg.type}) has no field`);
          else check(o, kind, field, USES[agg.type] ? agg.type : 'query');
        }
        if (agg.type === 'filters') for (const f of agg.params?.filters ?? []) checkQuery(o, kind, f.input?.query, f.input?.language, `filter ${f.label}`);
      }
      if (metricIds.size === 0) problems.push(`${at}: no metric aggregation`);
      for (const agg of aggs) {
        if (agg.type === 'terms' && agg.params?.orderBy !== '_key' && !metricIds.has(agg.params?.orderBy))
          problems.push(`${at}: terms agg ${agg.id} orders by ${agg.params?.orderBy}, not a metric agg`);
      }
      if (['histogram', 'line', 'area'].includes(visState.type)) {
        const p = visState.params ?? {};
        if (p.type !== visState.type) problems.push(`${at}: params.type ${p.type} differs from ${visState.type}`);
        const axes = new Set((p.valueAxes ?? []).map((v: Json) => v.id));
        if (!Array.isArray(p.categoryAxes) || p.categoryAxes.length === 0) problems.push(`${at}: no category axis`);
        for (const s of p.seriesParams ?? []) {
          if (!metricIds.has(s.data?.id)) problems.push(`${at}: series ${JSON.stringify(s.data)} names no metric agg`);
          if (!axes.has(s.valueAxis)) problems.push(`${at}: series uses value axis ${s.valueAxis}, which is not defined`);
        }
        if (!aggs.some((agg) => agg.schema === 'segment' && agg.type === 'date_histogram')) problems.push(`${at}: an over-time chart without a date_histogram x-axis`);
      }
    }

    if (o.type === 'dashboard') {
      parse(o, 'optionsJSON', a.optionsJSON);
      const source = parse(o, 'kibanaSavedObjectMeta.searchSourceJSON', a.kibanaSavedObjectMeta?.searchSourceJSON);
      if (source?.query) checkQuery(o, undefined, source.query.query, source.query.language, 'the dashboard');
      if (a.timeRestore && (typeof a.timeFrom !== 'string' || typeof a.timeTo !== 'string')) problems.push(`${at}: timeRestore without timeFrom/timeTo`);
      const panels = parse(o, 'panelsJSON', a.panelsJSON);
      if (!Array.isArray(panels)) {
        problems.push(`${at}: panelsJSON is not an array`);
        continue;
      }
      if (panels.length === 0) problems.push(`${at}: no panels`);
      const indexes = new Set<string>();
      const used = new Set<string>();
      const boxes: { i: string; x: number; y: number; w: number; h: number }[] = [];
      for (const p of panels) {
        const g = p.gridData ?? {};
        const where = `${at} panel ${p.panelIndex}`;
        if (typeof p.panelIndex !== 'string' || indexes.has(p.panelIndex)) problems.push(`${where}: panelIndex missing or repeated`);
        indexes.add(p.panelIndex);
        if (g.i !== p.panelIndex) problems.push(`${where}: gridData.i ${g.i} differs from panelIndex`);
        const ints = ['x', 'y', 'w', 'h'].every((k) => Number.isInteger(g[k]));
        if (!ints) problems.push(`${where}: gridData x, y, w, h are not all integers`);
        else if (g.x < 0 || g.y < 0 || g.w < 1 || g.h < 1 || g.x + g.w > GRID_COLUMNS)
          problems.push(`${where}: grid position ${JSON.stringify(g)} is outside the ${GRID_COLUMNS}-column grid`);
        else boxes.push({ i: p.panelIndex, x: g.x, y: g.y, w: g.w, h: g.h });
        if (!SEMVER.test(p.version ?? '')) problems.push(`${where}: no version`);
        if (typeof p.type !== 'string') problems.push(`${where}: no type`);
        if (typeof p.panelRefName !== 'string') {
          problems.push(`${where}: no panelRefName`);
          continue;
        }
        const refName = `${p.panelIndex}:${p.panelRefName}`;
        const ref = (o.references ?? []).find((r: Json) => r.name === refName);
        if (!ref) problems.push(`${where}: no reference named ${refName}`);
        else {
          used.add(refName);
          if (ref.type !== p.type) problems.push(`${where}: panel type ${p.type} but its reference is a ${ref.type}`);
        }
      }
      for (let i = 0; i < boxes.length; i++) {
        for (let j = i + 1; j < boxes.length; j++) {
          const [p, q] = [boxes[i], boxes[j]];
          if (p.x < q.x + q.w && q.x < p.x + p.w && p.y < q.y + q.h && q.y < p.y + p.h) problems.push(`${at}: panels ${p.i} and ${q.i} overlap`);
        }
      }
      for (const r of o.references ?? []) if (!used.has(r.name)) problems.push(`${at}: reference ${r.name} is used by no panel`);
    }
  }
  return problems;
}

const objects = () =>
  NDJSON.split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Json);
const mutate = (fn: (objs: Json[]) => void): string => {
  const objs = objects();
  fn(objs);
  return objs.map((o) => JSON.stringify(o)).join('\n') + '\n';
};
const attr = (o: Json, key: string, fn: (v: Json) => void) => {
  const v = JSON.parse(o.attributes[key]);
  fn(v);
  o.attributes[key] = JSON.stringify(v);
};
const find = (objs: Json[], type: string, id?: string) => objs.find((o) => o.type === type && (id === undefined || o.id === id))!;

// ---------------------------------------------------------------------------------------------------------------

describe('Kibana saved objects (dashboards/kibana/stackwatch.ndjson)', () => {
  it('is what dashboards/kibana/build.ts generates (run `npx tsx dashboards/kibana/build.ts` after a change)', () => {
    expect(NDJSON).toBe(toNdjson(buildSavedObjects()));
  });

  it('passes the validator: well-formed objects, parsable attributes, valid grids, resolvable references, mapped fields', () => {
    expect(validateSavedObjects(NDJSON)).toEqual([]);
  });

  it('has a data view per index kind, with @timestamp as its time field', () => {
    const views = objects().filter((o) => o.type === 'index-pattern');
    expect(views.map((v) => v.attributes.title).sort()).toEqual(Object.keys(KIND_OF_TITLE).sort());
    for (const v of views) expect(v.attributes.timeFieldName).toBe('@timestamp');
  });

  it('has the saved searches an SRE reaches for first, in Lucene', () => {
    const searches = objects().filter((o) => o.type === 'search');
    expect(searches.map((s) => s.id)).toEqual(
      expect.arrayContaining([
        'stackwatch-errors-by-service',
        'stackwatch-amqp-connection-events',
        'stackwatch-tracebacks',
        'stackwatch-request-across-services',
        'stackwatch-compute-host-events',
        'stackwatch-db-errors',
      ]),
    );
    for (const s of searches) {
      expect(JSON.parse(s.attributes.kibanaSavedObjectMeta.searchSourceJSON).query.language).toBe('lucene');
      expect(s.attributes.description.length).toBeGreaterThan(40);
    }
  });

  it('has the eight dashboards', () => {
    const titles = objects()
      .filter((o) => o.type === 'dashboard')
      .map((d) => d.attributes.title);
    expect(titles).toEqual([
      'stackwatch: incidents',
      'stackwatch: log patterns',
      'stackwatch: alerts overview',
      'stackwatch: AMQP health',
      'stackwatch: compute hosts and drift',
      'stackwatch: DB sync',
      'stackwatch: Ceph health',
      'stackwatch: capacity trends',
    ]);
  });

  it('reads Lucene field names right', () => {
    expect(luceneFields('log.level:(ERROR OR CRITICAL) AND message:"a: b" OR _exists_:error.stack_trace')).toEqual(['log.level', 'message', 'error.stack_trace']);
    expect(luceneFields('"req-1 x:y" AND -host.name:h1 +service.name:nova')).toEqual(['host.name', 'service.name']);
    expect(luceneFields('message:(*DBDeadlock* OR "Can\'t connect")')).toEqual(['message']);
  });

  describe('the validator catches', () => {
    const cases: [string, () => string, RegExp][] = [
      ['a line that is not JSON', () => NDJSON.replace('\n', '\n{oops\n'), /line 2: not a JSON object/],
      ['an unknown type', () => mutate((o) => (find(o, 'search').type = 'canvas-workpad')), /type canvas-workpad is not one of/],
      ['a stringified attribute that does not parse', () => mutate((o) => (find(o, 'visualization').attributes.visState = '{"title":')), /visState does not parse/],
      ['a reference to an object not in the file', () => mutate((o) => (find(o, 'dashboard').references[0].id = 'gone')), /is not in the file/],
      ['a panel outside the grid', () => mutate((o) => attr(find(o, 'dashboard'), 'panelsJSON', (p) => (p[0].gridData.w = 49))), /outside the 48-column grid/],
      [
        'overlapping panels',
        () =>
          mutate((o) =>
            attr(find(o, 'dashboard'), 'panelsJSON', (p) => {
              p[1].gridData.x = p[0].gridData.x;
              p[1].gridData.y = p[0].gridData.y;
            }),
          ),
        /overlap/,
      ],
      ['a panel without its reference', () => mutate((o) => (find(o, 'dashboard').references = find(o, 'dashboard').references.slice(1))), /no reference named 1:panel_1/],
      ['an unknown field in a search column', () => mutate((o) => (find(o, 'search').attributes.columns = ['service.nmae'])), /field service.nmae \(column\) is not in the logs template/],
      [
        'an unknown field in a query',
        () =>
          mutate((o) => {
            const s = find(o, 'search');
            s.attributes.kibanaSavedObjectMeta.searchSourceJSON = s.attributes.kibanaSavedObjectMeta.searchSourceJSON.replace('log.level:', 'log.severity:');
          }),
        /field log.severity \(query\) is not in the logs template/,
      ],
      [
        'a terms aggregation on a text field',
        () => mutate((o) => attr(find(o, 'visualization', 'stackwatch-alerts-fired-by-rule'), 'visState', (v) => (v.aggs[2].params.field = 'message'))),
        /field message is text in the alerts template, which does not fit terms/,
      ],
      [
        'an average of a keyword',
        () => mutate((o) => attr(find(o, 'visualization', 'stackwatch-alerts-mttr'), 'visState', (v) => (v.aggs[0].params.field = 'rule.id'))),
        /field rule.id is keyword in the alerts template, which does not fit avg/,
      ],
      ['a time field that is not a date', () => mutate((o) => (find(o, 'index-pattern').attributes.timeFieldName = 'event.id')), /time field is event.id, not @timestamp/],
      [
        'a KQL query',
        () =>
          mutate(
            (o) =>
              (find(o, 'search').attributes.kibanaSavedObjectMeta.searchSourceJSON =
                '{"query":{"query":"a","language":"kuery"},"filter":[],"indexRefName":"kibanaSavedObjectMeta.searchSourceJSON.index"}'),
          ),
        /language is kuery, not lucene/,
      ],
      [
        'unbalanced parentheses',
        () =>
          mutate((o) => {
            const s = find(o, 'search');
            s.attributes.kibanaSavedObjectMeta.searchSourceJSON = s.attributes.kibanaSavedObjectMeta.searchSourceJSON.replace('(ERROR', '((ERROR');
          }),
        /unbalanced quotes or parentheses/,
      ],
      [
        'a Vega query on an unmapped field',
        () => mutate((o) => attr(find(o, 'visualization', 'stackwatch-capacity-usage'), 'visState', (v) => (v.params.spec = v.params.spec.replace('"metric.value"', '"metric.val"')))),
        /field metric.val \(max\) is not in the metrics template/,
      ],
      ['a duplicate object', () => NDJSON + NDJSON.split('\n')[0] + '\n', /duplicate of line 1/],
    ];
    for (const [name, make, problem] of cases) {
      it(name, () => {
        const problems = validateSavedObjects(make());
        expect(problems.join('\n')).toMatch(problem);
      });
    }
  });

  it('`stackwatch setup --kibana` points the data views and the Vega charts at the configured prefixes', () => {
    const cfg = validateConfig({ kafka: { brokers: ['k:9092'] }, elasticsearch: { url: 'http://es:9200', indices: { logs: 'os-logs', metrics: 'os-metrics' } } }, 'test', {});
    const text = kibanaObjects(cfg);
    const views = text
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l))
      .filter((o) => o.type === 'index-pattern');
    expect(views.map((v) => v.attributes.title).sort()).toEqual(['os-logs-*', 'os-metrics-*', 'stackwatch-alerts-*', 'stackwatch-dead-letter-*', 'stackwatch-incidents-*']);
    expect(text).not.toContain('stackwatch-metrics-*');
    expect(text).toContain('os-metrics-*');
    expect(text.split('\n').length).toBe(NDJSON.split('\n').length);
  });
});

describe('index templates (sinks/index-templates/)', () => {
  for (const kind of INDEX_KINDS) {
    it(`${kind}: explicit mappings in types the minimal Elasticsearch has, @timestamp a date, ids keywords`, () => {
      const fields = mappedFields(kind);
      expect(fields['@timestamp']).toBe('date');
      for (const [path, type] of Object.entries(fields)) expect(MINIMAL_ES_TYPES.has(type), `${path}: ${type}`).toBe(true);
      for (const [path, type] of Object.entries(fields)) if (/(^|\.)(id|request_id|event_ids)$/.test(path)) expect(type, path).toBe('keyword');
      const { mappings, settings } = kindTemplate(kind);
      expect(mappings.dynamic).toBeDefined();
      expect(settings.number_of_shards).toBe(1);
    });
  }

  it('messages are text with a keyword sub-field', () => {
    for (const kind of ['logs', 'alerts'] as const) {
      expect(mappedFields(kind).message).toBe('text');
      expect(mappedFields(kind)['message.keyword']).toBe('keyword');
    }
    expect(mappedFields('dead_letter')['reason.keyword']).toBe('keyword');
  });

  it('maps every field the pipeline writes (a real parsed log line, an alert, a metric sample, a dead letter)', () => {
    const line =
      '2017-05-16 00:02:21.664 2931 INFO nova.compute.manager [req-06631678-1e19-4e4e-bddf-a588d8ea6217 113d3a99c3da401fbd62cc2caa5b96d2 54fadb412c4e40cdbaed9335e4c35a9e - - -] [instance: 78dc1847-8848-49cc-933e-9239b12c9dcf] Terminating instance\nTraceback (most recent call last):\n  File "x.py", line 1';
    const raw: RawLogEvent = {
      v: 1,
      host: 'cmp-1',
      path: '/var/log/nova/nova-compute.log',
      file_id: 'f',
      offset: 0,
      text: line,
      read_at: '2017-05-16T00:02:22.000Z',
      truncated: true,
      original: line,
    };
    const log = { ...parseLogEvent(raw, { timezone: 'UTC' }), event: { ...parseLogEvent(raw, { timezone: 'UTC' }).event, ingested: '2017-05-16T00:02:23.000Z' } };
    const alert: Alert = {
      '@timestamp': '2022-02-04T10:21:58.740Z',
      rule: { id: 'compute-host-drift', name: 'Compute host drift' },
      alert: {
        id: 'a1',
        status: 'resolved',
        severity: 'warning',
        started_at: '2022-02-04T10:21:58.740Z',
        ended_at: '2022-02-04T10:52:01.397Z',
        duration_s: 1802.6,
        runbook: 'Pin the compute host name',
        group: { 'host.name': 'compute4', kind: 'missing', compute_host: 'compute4.mylab.home' },
      },
      host: { name: 'compute4' },
      service: { name: 'nova-compute' },
      message: 'compute host missing',
      evidence: { event_ids: ['x.1'] },
    };
    const metric = metricDocument(
      { v: 1, '@timestamp': '2026-11-25T10:00:00Z', source: 'ceph', host: { name: 'ceph' }, metric: { name: 'ceph.pool.used', value: 1, unit: 'bytes' }, labels: { pool: 'rbd' } },
      '2026-11-25T10:00:01Z',
    );
    const dead = deadLetter('processor', 'undecodable message', '{', { topic: 't', partition: 0, offset: '1' });
    const docs: [IndexKind, object][] = [
      ['logs', log],
      ['alerts', alert],
      ['metrics', metric],
      ['dead_letter', dead],
    ];
    for (const [kind, doc] of docs) {
      const fields = mappedFields(kind);
      const leaves: string[] = [];
      const walk = (v: unknown, path: string) => {
        if (v && typeof v === 'object' && !Array.isArray(v)) for (const [k, x] of Object.entries(v)) walk(x, path ? `${path}.${k}` : k);
        else leaves.push(path);
      };
      walk(doc, '');
      for (const leaf of leaves) expect(fieldType(fields, leaf), `${kind}: ${leaf}`).toBeDefined();
    }
  });

  it("the composable template is composed of the settings, the mappings and the site's optional @custom", () => {
    const o = kindObjects('logs', 'os-logs', false);
    expect(o.template.name).toBe('os-logs');
    expect(o.template.body).toMatchObject({
      index_patterns: ['os-logs-*'],
      composed_of: ['os-logs@settings', 'os-logs@mappings', 'os-logs@custom'],
      ignore_missing_component_templates: ['os-logs@custom'],
      template: { aliases: { 'os-logs': {} } },
      _meta: { managed_by: 'stackwatch' },
    });
    expect(o.settings.body.template.settings['index.lifecycle.name']).toBeUndefined();
    const withIlm = kindObjects('logs', 'os-logs', true);
    expect(withIlm.settings.body.template.settings['index.lifecycle.name']).toBe('os-logs');
    // Retention counts from creation: a replay of old logs is not deleted at once.
    expect(withIlm.settings.body.template.settings['index.lifecycle.parse_origination_date']).toBeUndefined();
    // The content hash: the same content gives the same hash (idempotence), another content another one.
    expect(kindObjects('logs', 'os-logs', false).settings.body._meta.hash).toBe(o.settings.body._meta.hash);
    expect(withIlm.settings.body._meta.hash).not.toBe(o.settings.body._meta.hash);
    expect(o.mappings.body._meta.hash).toBe(withIlm.mappings.body._meta.hash);
  });

  it('the inventory: one index by its name, no alias, no ILM policy, every field of an inventory event mapped', () => {
    const o = kindObjects('inventory', 'sw-inventory', true);
    expect(o.template.body.index_patterns).toEqual(['sw-inventory']);
    expect(o.template.body.template).toBeUndefined();
    expect(o.template.body.composed_of).toEqual(['sw-inventory@settings', 'sw-inventory@mappings', 'sw-inventory@custom']);
    expect(o.settings.body.template.settings['index.lifecycle.name']).toBeUndefined();
    expect(isDaily('inventory')).toBe(false);
    expect(DAILY_KINDS).not.toContain('inventory');
    const inventory: InventoryEvent = {
      v: 1,
      kind: 'inventory',
      '@timestamp': '2026-11-25T10:00:00Z',
      source: 'zabbix',
      host: { name: 'cmp-1', id: '10084', ip: ['10.0.0.5'], groups: ['Compute'], status: 'enabled' },
    };
    const fields = mappedFields('inventory');
    for (const leaf of ['v', 'kind', '@timestamp', 'source', 'host.name', 'host.id', 'host.ip', 'host.groups', 'host.status', 'event.ingested'])
      expect(fieldType(fields, leaf), leaf).toBeDefined();
    expect(Object.keys(inventory.host).sort()).toEqual(['groups', 'id', 'ip', 'name', 'status']);
    expect(fields['host.ip']).toBe('ip');
  });

  it('merges the base into every kind', () => {
    for (const kind of INDEX_KINDS) {
      const f = mappedFields(kind);
      expect(f['host.name']).toBe('keyword');
      expect(f['event.id']).toBe('keyword');
      expect(f['labels.*']).toBe('keyword');
    }
    expect(mappedFields('logs')['event.original']).toBe('keyword');
    expect(mappedFields('logs')['event.ingested']).toBe('date');
    expect(fieldType(mappedFields('metrics'), 'labels.anything')).toBe('keyword');
    expect(fieldType(mappedFields('alerts'), 'alert.group.zabbix.eventid')).toBe('keyword');
  });

  it('types compatible for Kibana: number with number, date with date_nanos, not text with keyword', () => {
    expect(compatibleTypes('long', 'integer')).toBe(true);
    expect(compatibleTypes('date', 'date_nanos')).toBe(true);
    expect(compatibleTypes('text', 'keyword')).toBe(false);
  });

  it('names the field of an Elasticsearch mapping error', () => {
    expect(fieldOfReason('mapper_parsing_exception: The mapper type [match_only_text] declared on field [message] does not exist.')).toBe('message');
    expect(fieldOfReason('illegal_argument_exception: mapper [host.name] cannot be changed from type [text] to [keyword]')).toBe('host.name');
  });
});

describe('ILM policies (sinks/ilm/)', () => {
  for (const kind of DAILY_KINDS) {
    it(`${kind}: hot, then delete after the default retention`, () => {
      const { policy } = ilmPolicyFile(kind);
      expect(Object.keys(policy.phases)).toEqual(['hot', 'delete']);
      expect(policy.phases.hot.min_age).toBe('0ms');
      expect(policy.phases.delete.actions).toEqual({ delete: {} });
      expect(Object.keys(policy).sort()).toEqual(['_meta', 'phases']);
      const days = defaultRetentionDays(kind);
      expect(days).toBeGreaterThanOrEqual(7);
      expect(ilmPolicy(kind, 14).phases.delete.min_age).toBe('14d');
      expect(ilmPolicy(kind, days).phases).toEqual(policy.phases);
      for (const phase of Object.values<Json>(policy.phases)) expect(parseDays(phase.min_age)).toBeDefined();
    });
  }

  it('ages a daily index from the later of its day and its creation (retention without ILM)', () => {
    const t = (iso: string) => Date.parse(iso);
    // Live data: created as its day began; 30 days old 30 days after its day.
    expect(dailyIndexAge('sw-logs', 'sw-logs-2026.01.01', t('2026-01-01T00:00:05Z'), t('2026-01-31T00:00:05Z'))).toEqual({ day: '2026-01-01', ageDays: 30 });
    // Old logs replayed today: as old as the replay.
    expect(dailyIndexAge('sw-logs', 'sw-logs-2020.01.01', t('2026-11-25T12:00:00Z'), t('2026-11-26T12:00:00Z'))?.ageDays).toBe(1);
    // Events from the future (a skewed clock): young until their day has passed.
    expect(dailyIndexAge('sw-logs', 'sw-logs-2027.01.01', t('2026-11-25T00:00:00Z'), t('2026-12-31T00:00:00Z'))!.ageDays).toBeLessThan(0);
    // Only the kind's own daily indices.
    for (const name of ['sw-logs-notadate', 'sw-logs-2026.1.1', 'sw-logs-2026.01.01-reindexed', 'other-2026.01.01', 'sw-logsx-2026.01.01']) {
      expect(dailyIndexAge('sw-logs', name, 0, Date.now()), name).toBeUndefined();
    }
    expect(dailyIndexAge('sw.x', 'swyx-2026.01.01', 0, Date.now())).toBeUndefined();
    expect(dailyIndexAge('sw.x', 'sw.x-2026.01.01', t('2026-01-01T00:00:00Z'), t('2026-01-02T00:00:00Z'))?.ageDays).toBe(1);
  });

  it('reads retention options', () => {
    expect(parseRetention(['logs=14', 'metrics=365d,dead-letter=7'])).toEqual({ logs: 14, metrics: 365, dead_letter: 7 });
    expect(() => parseRetention(['traces=3'])).toThrow(/--retention: expected KIND=DAYS/);
    expect(() => parseRetention(['logs=0'])).toThrow(/DAYS ≥ 1/);
  });
});
