// What stackwatch keeps in Elasticsearch for the indices it writes: index templates, the read alias over each
// kind's daily indices, and retention (`stackwatch setup`, and every processor at start).
//
// Per daily index kind (logs, alerts, incidents, metrics, dead_letter; `<prefix>` is elasticsearch.indices.<kind>):
//   component template `<prefix>@settings`  shards, replicas, refresh, default search fields, ILM policy name
//   component template `<prefix>@mappings`  explicit ECS mappings (sinks/index-templates/stackwatch-base.json
//                                           merged with stackwatch-<kind>.json)
//   component template `<prefix>@custom`    optional, never written by stackwatch: a site's own additions (more
//                                           replicas, a field) survive every setup and upgrade
//   index template     `<prefix>`           composable, for `<prefix>-*`, composed of the three, priority 200,
//                                           alias `<prefix>` over every daily index
//   ILM policy         `<prefix>`           hot, then delete N days after the index was created (for live data,
//                                           its day) — only on a cluster with ILM (index lifecycle management)
// The inventory is one index, not daily: `<name>` is elasticsearch.indices.inventory and the index itself (a
// document per host, overwritten as the host changes). Its index template matches that one name and has the same
// three components, no alias (the index has the name) and no ILM policy: retention never deletes it.
//
// Every object carries `_meta.hash` of its content: an object whose hash matches is left alone, so running setup
// (or starting a processor) twice changes nothing.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { errors } from '@elastic/elasticsearch';
import { esReason, statusOf, type Client, type ElasticsearchConfig } from '../core/elastic.ts';
import { logger } from '../core/log.ts';

// ---------------------------------------------------------------------------------------------------------------
// Template bodies

export type IndexKind = keyof ElasticsearchConfig['indices'];
/** The kinds written to daily indices `<prefix>-YYYY.MM.DD`: each has a read alias and a retention. */
export type DailyKind = Exclude<IndexKind, 'inventory'>;
export const DAILY_KINDS: readonly DailyKind[] = ['logs', 'alerts', 'incidents', 'metrics', 'dead_letter'];
export const INDEX_KINDS: readonly IndexKind[] = [...DAILY_KINDS, 'inventory'];

export function isDaily(kind: IndexKind): kind is DailyKind {
  return kind !== 'inventory';
}

// Relative to the repository root, not to this file: the same URL resolves from sinks/ (tsx, vitest) and from the
// bundle in dist/.
const TEMPLATE_DIR = new URL('../sinks/index-templates/', import.meta.url);
const ILM_DIR = new URL('../sinks/ilm/', import.meta.url);

/** Priority of stackwatch's index templates: above the built-in ones (100), below a site's own overrides. */
export const TEMPLATE_PRIORITY = 200;

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- JSON from Elasticsearch or our own files, read by key and checked where it matters
type Json = Record<string, any>;

function readJson(url: URL): Json {
  return JSON.parse(readFileSync(url, 'utf8')) as Json;
}

/** Merges mappings: properties recursively (b wins on a conflict), dynamic_templates concatenated (a's first). */
export function mergeMappings(a: Json, b: Json): Json {
  const out: Json = { ...a };
  for (const [k, v] of Object.entries(b)) {
    if (k === 'dynamic_templates') out[k] = [...(a[k] ?? []), ...v];
    else if (k === 'properties') out[k] = mergeProperties(a[k] ?? {}, v);
    else out[k] = v;
  }
  return out;
}

const isObject = (def: Json) => def.type === undefined || def.type === 'object';

function mergeProperties(a: Json, b: Json): Json {
  const out: Json = { ...a };
  for (const [name, def] of Object.entries<Json>(b)) {
    const prev = out[name] as Json | undefined;
    out[name] = prev && isObject(prev) && isObject(def) ? mergeMappings(prev, def) : def;
  }
  return out;
}

export interface KindTemplate {
  settings: Json;
  mappings: Json;
  description: string;
}

/** The settings and mappings of one index kind, from sinks/index-templates/ (base + kind). */
export function kindTemplate(kind: IndexKind): KindTemplate {
  const base = readJson(new URL('stackwatch-base.json', TEMPLATE_DIR));
  const own = readJson(new URL(`stackwatch-${kind}.json`, TEMPLATE_DIR));
  return {
    settings: { ...base.template.settings, ...own.template.settings },
    mappings: mergeMappings(base.template.mappings, own.template.mappings ?? {}),
    description: own._meta?.description ?? `stackwatch ${kind}`,
  };
}

/** Default retention of a kind in days: the delete phase of sinks/ilm/stackwatch-<kind>.json. */
export function defaultRetentionDays(kind: DailyKind): number {
  const days = parseDays(ilmPolicyFile(kind).policy?.phases?.delete?.min_age);
  if (days === undefined) throw new Error(`sinks/ilm/stackwatch-${kind}.json: the delete phase needs a min_age in days, like "30d"`);
  return days;
}

export function ilmPolicyFile(kind: DailyKind): Json {
  return readJson(new URL(`stackwatch-${kind}.json`, ILM_DIR));
}

/** "30d" → 30; ILM's other units (h, m, s) are converted; anything else is undefined. */
export function parseDays(minAge: unknown): number | undefined {
  const m = typeof minAge === 'string' ? /^(\d+(?:\.\d+)?)(d|h|m|s|ms)$/.exec(minAge) : null;
  if (!m) return undefined;
  const per = { d: 1, h: 24, m: 1440, s: 86_400, ms: 86_400_000 }[m[2] as 'd'];
  return Number(m[1]) / per;
}

/** Stable JSON (object keys sorted): the same content always gives the same text. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v && typeof v === 'object') {
    return `{${Object.keys(v)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((v as Json)[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v);
}

function withHash(body: Json, description: string): Json {
  const hash = createHash('sha256').update(canonical(body)).digest('hex').slice(0, 16);
  return { ...body, _meta: { managed_by: 'stackwatch', description, hash } };
}

export interface KindObjects {
  kind: IndexKind;
  prefix: string;
  settings: { name: string; body: Json };
  mappings: { name: string; body: Json };
  /** The composable template. */
  template: { name: string; body: Json };
}

/** Exactly what goes into the cluster for one kind. `ilm`: name the ILM policy `<prefix>` in the settings (never
 * for the inventory, which is not daily). */
export function kindObjects(kind: IndexKind, prefix: string, ilm: boolean, source: (kind: IndexKind) => KindTemplate = kindTemplate): KindObjects {
  const t = source(kind);
  const settings: Json = { ...t.settings };
  // Age counts from the index's creation (ILM's default), not from the day in its name: live data is deleted N days
  // after its day all the same, and old logs replayed for a post-mortem stay N days instead of vanishing at once.
  if (ilm && isDaily(kind)) settings['index.lifecycle.name'] = prefix;
  const template = isDaily(kind)
    ? {
        body: {
          index_patterns: [`${prefix}-*`],
          template: { aliases: { [prefix]: {} } },
        },
        description: `${t.description}; daily indices ${prefix}-YYYY.MM.DD, read alias ${prefix}; add your own settings and mappings in the component template ${prefix}@custom`,
      }
    : {
        body: { index_patterns: [prefix] },
        description: `${t.description}; the one index ${prefix}, not daily and never pruned; add your own settings and mappings in the component template ${prefix}@custom`,
      };
  return {
    kind,
    prefix,
    settings: { name: `${prefix}@settings`, body: withHash({ template: { settings } }, `stackwatch ${kind}: index settings`) },
    mappings: { name: `${prefix}@mappings`, body: withHash({ template: { mappings: t.mappings } }, t.description) },
    template: {
      name: prefix,
      body: withHash(
        {
          index_patterns: template.body.index_patterns,
          priority: TEMPLATE_PRIORITY,
          composed_of: [`${prefix}@settings`, `${prefix}@mappings`, `${prefix}@custom`],
          ignore_missing_component_templates: [`${prefix}@custom`],
          ...('template' in template.body ? { template: template.body.template } : {}),
        },
        template.description,
      ),
    },
  };
}

/** The ILM policy of a kind with its delete phase at `days`. */
export function ilmPolicy(kind: DailyKind, days: number): Json {
  const file = ilmPolicyFile(kind).policy;
  const policy = structuredClone(file) as Json;
  policy.phases.delete.min_age = `${days}d`;
  policy._meta = { ...policy._meta, managed_by: 'stackwatch', description: `stackwatch ${kind}: daily indices stay in the hot phase, and are deleted ${days} days after they were created` };
  return policy;
}

// ---------------------------------------------------------------------------------------------------------------
// Fields

/** The fields an index kind maps explicitly, path → Elasticsearch type, multi-fields included (`message.keyword`).
 * Subtrees that take any name through a dynamic template with a path_match appear as `labels.*` → `keyword`.
 * Objects are not listed, only their leaves. */
export function mappedFields(kind: IndexKind): Record<string, string> {
  const { mappings } = kindTemplate(kind);
  const out: Record<string, string> = {};
  flattenProperties(mappings.properties ?? {}, '', out);
  for (const dt of mappings.dynamic_templates ?? []) {
    const [spec] = Object.values(dt) as Json[];
    if (typeof spec.path_match === 'string' && spec.mapping?.type) out[spec.path_match] = spec.mapping.type;
  }
  return out;
}

export function flattenProperties(props: Json, prefix: string, out: Record<string, string>): Record<string, string> {
  for (const [name, def] of Object.entries<Json>(props)) {
    const path = prefix + name;
    if (def.properties) flattenProperties(def.properties, `${path}.`, out);
    if (def.type && def.type !== 'object' && def.type !== 'nested') {
      out[path] = def.type;
      for (const [sub, sdef] of Object.entries<Json>(def.fields ?? {})) out[`${path}.${sub}`] = sdef.type;
    }
  }
  return out;
}

/** The type of `field` in a kind's mappings (a concrete name or one under a dynamic `x.*` subtree). */
export function fieldType(fields: Record<string, string>, field: string): string | undefined {
  if (fields[field]) return fields[field];
  for (const [path, type] of Object.entries(fields)) {
    if (path.endsWith('.*') && field.startsWith(path.slice(0, -1)) && field.length > path.length - 1) return type;
  }
  return undefined;
}

const NUMERIC = new Set(['long', 'integer', 'short', 'byte', 'double', 'float', 'half_float', 'scaled_float', 'unsigned_long']);

/** Two mappings of one field that Kibana and the dashboards treat alike (numbers are numbers, dates are dates). */
export function compatibleTypes(a: string, b: string): boolean {
  if (a === b) return true;
  if (NUMERIC.has(a) && NUMERIC.has(b)) return true;
  return (a === 'date' || a === 'date_nanos') && (b === 'date' || b === 'date_nanos');
}

// ---------------------------------------------------------------------------------------------------------------
// Setup

export type SetupResultKind = 'created' | 'updated' | 'unchanged';

export interface SetupAction {
  what: 'ILM policy' | 'component template' | 'index template' | 'alias' | 'mapping' | 'index settings';
  name: string;
  result: SetupResultKind;
  detail?: string;
}

export interface IlmSupport {
  /** true: the cluster has ILM; false: it has not; undefined: it could not tell (no privilege). */
  available: boolean | undefined;
  reason?: string;
}

export interface SetupOptions {
  /** Check the existing daily indices too: mappings against the templates (conflicts, missing fields added),
   * the read alias (added where missing) and, with ILM, their policy. `stackwatch setup` does; a starting
   * processor does not. */
  existingIndices?: boolean;
  /** A retention policy the user may not read or write is a warning, not an error (a starting processor). */
  retentionBestEffort?: boolean;
  /** Retention in days per kind, written into the ILM policies. A kind not named keeps its policy as it is (an
   * SRE may have tuned it), or gets the default of sinks/ilm/ when it has none. */
  retention?: Partial<Record<DailyKind, number>>;
  /** Where the settings and mappings come from (default: sinks/index-templates/); for tests. */
  templates?: (kind: IndexKind) => KindTemplate;
}

export interface MappingConflict {
  index: string;
  field: string;
  actual: string;
  expected: string;
}

export interface SetupResult {
  actions: SetupAction[];
  ilm: IlmSupport;
  /** The retention (days) of each daily kind's ILM policy, when the cluster has ILM. */
  retention: Partial<Record<DailyKind, number>>;
  conflicts: MappingConflict[];
}

/** Something the cluster refused, or a state setup cannot fix by itself: the message names the index and field. */
export class SetupError extends Error {}

/** Probes for ILM: GET _ilm/status answers on a cluster that has it; the minimal distribution has no handler. */
export async function ilmSupport(client: Client): Promise<IlmSupport> {
  try {
    await client.ilm.getStatus();
    return { available: true };
  } catch (err) {
    if (!(err instanceof errors.ResponseError)) throw err;
    const status = err.statusCode ?? 0;
    if (status === 401 || status === 403) return { available: undefined, reason: `GET _ilm/status was refused (${status}): the user needs the read_ilm and manage_ilm cluster privileges` };
    if ([400, 404, 405, 410, 501].includes(status) || /no handler|Incorrect HTTP method|failed to find action/.test(String(err.body ? JSON.stringify(err.body) : err.message))) {
      return { available: false, reason: `GET _ilm/status answered ${status}` };
    }
    throw err;
  }
}

async function getOrUndefined<T>(fn: () => Promise<T>): Promise<T | undefined> {
  try {
    return await fn();
  } catch (err) {
    if (statusOf(err) === 404) return undefined;
    throw err;
  }
}

/** The field an Elasticsearch mapping error is about: "declared on field [message]", "mapper [host.name] …". */
export function fieldOfReason(reason: string): string | undefined {
  const m = /(?:field|mapper|property) \[([^\]]+)\]/.exec(reason);
  return m?.[1];
}

/** `indices`: what the object is for, as the message names it (`indices <prefix>-*`, or `index <name>`). */
function refused(what: string, name: string, indices: string, err: unknown): SetupError {
  const reason = esReason(err);
  const field = fieldOfReason(reason);
  return new SetupError(`Elasticsearch refused the ${what} ${name} (${indices}${field ? `, field ${field}` : ''}): ${reason}`, { cause: err });
}

async function putIfChanged(client: Client, what: 'component template' | 'index template', name: string, indices: string, body: Json, existing: Json | undefined): Promise<SetupAction> {
  if (existing?._meta?.hash === body._meta.hash) return { what, name, result: 'unchanged' };
  try {
    if (what === 'component template') await client.cluster.putComponentTemplate({ name, ...body } as never);
    else await client.indices.putIndexTemplate({ name, ...body } as never);
  } catch (err) {
    throw refused(what, name, indices, err);
  }
  return { what, name, result: existing ? 'updated' : 'created' };
}

/** Creates or updates everything stackwatch keeps in the cluster (see the top of this file). Idempotent: what is
 * already as it should be is left alone and reported unchanged. Throws a SetupError for what the cluster refuses;
 * conflicting mappings of existing indices are returned (setup reports them and fails). */
export async function setupElasticsearch(client: Client, cfg: ElasticsearchConfig, opts: SetupOptions = {}): Promise<SetupResult> {
  const ilm = await ilmSupport(client);
  const kinds = INDEX_KINDS.map((kind) => ({ kind, prefix: cfg.indices[kind] }));
  const result: SetupResult = { actions: [], ilm, retention: {}, conflicts: [] };

  const current = await Promise.all(
    kinds.map(async ({ prefix }) => {
      const [settings, mappings, template] = await Promise.all([
        getOrUndefined(() => client.cluster.getComponentTemplate({ name: `${prefix}@settings` })),
        getOrUndefined(() => client.cluster.getComponentTemplate({ name: `${prefix}@mappings` })),
        getOrUndefined(() => client.indices.getIndexTemplate({ name: prefix })),
      ]);
      return {
        settings: settings?.component_templates[0]?.component_template as Json | undefined,
        mappings: mappings?.component_templates[0]?.component_template as Json | undefined,
        template: template?.index_templates[0]?.index_template as Json | undefined,
      };
    }),
  );

  for (const [i, { kind, prefix }] of kinds.entries()) {
    const now = current[i];
    // Whether the indices get an ILM policy: what the cluster says, or — when it would not say — what the
    // settings already installed say, so a processor without ILM privileges never undoes what setup did. The
    // inventory never does: it is not daily and nothing expires.
    const useIlm = isDaily(kind) && (ilm.available ?? Boolean(now.settings?.template?.settings?.index?.lifecycle?.name));
    const objs = kindObjects(kind, prefix, useIlm, opts.templates);

    if (useIlm && ilm.available && isDaily(kind)) {
      try {
        result.actions.push(await ensurePolicy(client, kind, prefix, opts.retention?.[kind], result));
      } catch (err) {
        const status = statusOf(err instanceof SetupError ? err.cause : err);
        if (!opts.retentionBestEffort || (status !== 401 && status !== 403)) throw err;
        logger('elasticsearch').warn(
          `cannot check the ILM policy ${prefix} (${esReason(err instanceof SetupError ? err.cause : err)}): run \`stackwatch setup\` as a user with the manage_ilm privilege`,
        );
      }
    }
    const indices = isDaily(kind) ? `indices ${prefix}-*` : `index ${prefix}`;
    result.actions.push(await putIfChanged(client, 'component template', objs.settings.name, indices, objs.settings.body, now.settings));
    result.actions.push(await putIfChanged(client, 'component template', objs.mappings.name, indices, objs.mappings.body, now.mappings));
    const template = await putIfChanged(client, 'index template', objs.template.name, indices, objs.template.body, now.template);
    result.actions.push(isDaily(kind) ? template : { ...template, detail: `the one index ${prefix}, not daily` });
    if (opts.existingIndices) await checkExistingIndices(client, (opts.templates ?? kindTemplate)(kind), prefix, result, useIlm && ilm.available === true, isDaily(kind));
  }
  return result;
}

async function ensurePolicy(client: Client, kind: DailyKind, prefix: string, days: number | undefined, result: SetupResult): Promise<SetupAction> {
  const existing = await getOrUndefined(() => client.ilm.getLifecycle({ name: prefix }));
  const current = existing?.[prefix]?.policy as Json | undefined;
  const currentDays = parseDays(current?.phases?.delete?.min_age);
  if (current && (days === undefined || days === currentDays)) {
    result.retention[kind] = currentDays;
    return { what: 'ILM policy', name: prefix, result: 'unchanged', detail: currentDays !== undefined ? `delete after ${currentDays}d` : 'no delete phase' };
  }
  const want = days ?? defaultRetentionDays(kind);
  try {
    await client.ilm.putLifecycle({ name: prefix, policy: ilmPolicy(kind, want) as never });
  } catch (err) {
    throw refused('ILM policy', prefix, `indices ${prefix}-*`, err);
  }
  result.retention[kind] = want;
  return { what: 'ILM policy', name: prefix, result: current ? 'updated' : 'created', detail: `delete after ${want}d` };
}

const DAILY = (prefix: string) => new RegExp(`^${prefix.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}-(\\d{4})\\.(\\d{2})\\.(\\d{2})$`);

/** Existing indices of a kind: their mappings against the template (conflicts reported, missing fields added),
 * the read alias (added where missing) and, with ILM, the lifecycle policy (set where an index has none). For a kind
 * that is not daily (the inventory), the one index named `prefix`: its mappings only. */
async function checkExistingIndices(client: Client, template: KindTemplate, prefix: string, result: SetupResult, ilm: boolean, daily: boolean): Promise<void> {
  if (!daily) {
    const mappings = await client.indices.getMapping({ index: prefix, ignore_unavailable: true, allow_no_indices: true, expand_wildcards: 'open' }).catch((err) => {
      if (statusOf(err) === 404) return {};
      throw err;
    });
    if (Object.keys(mappings).includes(prefix)) await checkMappings(client, template, prefix, [prefix], mappings, result);
    return;
  }
  // An index named like the alias would make every new daily index fail to be created.
  const same = await client.indices.get({ index: prefix, ignore_unavailable: true, allow_no_indices: true }).catch((err) => {
    if (statusOf(err) === 404) return {};
    throw err;
  });
  if (Object.keys(same).includes(prefix)) {
    throw new SetupError(
      `an index named ${prefix} exists: stackwatch needs that name for the alias over the daily indices ${prefix}-*; reindex it into a daily index (or delete it), then run setup again`,
    );
  }

  const mappings = await client.indices.getMapping({ index: `${prefix}-*`, ignore_unavailable: true, allow_no_indices: true, expand_wildcards: 'open' });
  const dailyName = DAILY(prefix);
  const indices = Object.keys(mappings)
    .filter((name) => dailyName.test(name))
    .sort();
  if (indices.length === 0) return;
  await checkMappings(client, template, `${prefix}-*`, indices, mappings, result);

  const aliased = await client.indices.getAlias({ name: prefix, index: `${prefix}-*`, ignore_unavailable: true, allow_no_indices: true }).catch((err) => {
    if (statusOf(err) === 404) return {};
    throw err;
  });
  const without = indices.filter((index) => !(aliased as Json)[index]?.aliases?.[prefix]);
  if (without.length > 0) {
    await client.indices.updateAliases({ actions: without.map((index) => ({ add: { index, alias: prefix } })) });
    result.actions.push({ what: 'alias', name: prefix, result: 'updated', detail: `added to ${without.length} existing ${without.length === 1 ? 'index' : 'indices'}` });
  } else {
    result.actions.push({ what: 'alias', name: prefix, result: 'unchanged', detail: `on ${indices.length} ${indices.length === 1 ? 'index' : 'indices'}` });
  }

  if (!ilm) return;
  // Indices created before the policy existed: managed from now on (one that has a policy of its own keeps it).
  const settings = (await client.indices.getSettings({
    index: `${prefix}-*`,
    name: 'index.lifecycle.name',
    ignore_unavailable: true,
    allow_no_indices: true,
    expand_wildcards: 'open',
  })) as Json;
  const unmanaged = indices.filter((index) => !settings[index]?.settings?.index?.lifecycle?.name);
  for (const part of chunks(unmanaged, 50)) {
    try {
      await client.indices.putSettings({ index: part.join(','), settings: { 'index.lifecycle.name': prefix } });
    } catch (err) {
      throw refused('lifecycle settings of the existing index', part.join(', '), `indices ${prefix}-*`, err);
    }
  }
  if (unmanaged.length > 0) {
    result.actions.push({
      what: 'index settings',
      name: `${prefix}-*`,
      result: 'updated',
      detail: `ILM policy ${prefix} set on ${unmanaged.length} existing ${unmanaged.length === 1 ? 'index' : 'indices'}`,
    });
  }
}

/** The mappings of existing `indices` (of one kind, reported as `pattern`) against the template: conflicts
 * reported, missing fields added by a mapping update. */
async function checkMappings(client: Client, template: KindTemplate, pattern: string, indices: string[], mappings: Json, result: SetupResult): Promise<void> {
  const desired = template.mappings;
  const want = flattenProperties(desired.properties ?? {}, '', {});
  const missingIn: string[] = [];
  const added = new Set<string>();
  for (const index of indices) {
    const have = flattenProperties((mappings[index].mappings?.properties as Json) ?? {}, '', {});
    let conflicted = false;
    let missing = false;
    const conflict = (field: string, actual: string, expected: string) => {
      if (!result.conflicts.some((c) => c.index === index && c.field === field)) result.conflicts.push({ index, field, actual, expected });
      conflicted = true;
    };
    for (const [field, expected] of Object.entries(want)) {
      const actual = have[field];
      if (actual !== undefined) {
        if (!compatibleTypes(actual, expected)) conflict(field, actual, expected);
        continue;
      }
      // Mapped as an object where we want a value, or as a value where we want an object: a conflict too.
      if (Object.keys(have).some((f) => f.startsWith(`${field}.`))) {
        conflict(field, 'object', expected);
        continue;
      }
      const parts = field.split('.');
      const leaf = parts
        .slice(1)
        .map((_, i) => parts.slice(0, i + 1).join('.'))
        .find((p) => have[p] !== undefined && want[p] === undefined);
      if (leaf) {
        conflict(leaf, have[leaf], 'object');
        continue;
      }
      // A new field, or a new multi-field of an existing one: added by a mapping update.
      missing = true;
      added.add(field);
    }
    if (missing && !conflicted) missingIn.push(index);
  }
  if (missingIn.length > 0) {
    for (const part of chunks(missingIn, 50)) {
      try {
        await client.indices.putMapping({ index: part.join(','), ...desired } as never);
      } catch (err) {
        const reason = esReason(err);
        const field = fieldOfReason(reason);
        throw new SetupError(
          `Elasticsearch refused to add the missing fields to the existing index${part.length > 1 ? 'es' : ''} ${part.join(', ')}${field ? ` (field ${field})` : ''}: ${reason}`,
        );
      }
    }
    const fields = [...added].sort();
    const named = fields.length > 8 ? `${fields.slice(0, 8).join(', ')} and ${fields.length - 8} more fields` : fields.join(', ');
    result.actions.push({ what: 'mapping', name: pattern, result: 'updated', detail: `${named} added to ${missingIn.length} existing ${missingIn.length === 1 ? 'index' : 'indices'}` });
  }
}

function chunks<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** Installs (or updates) the index templates (and, on a cluster with ILM, a missing retention policy) for the
 * configured index prefixes. Idempotent, and quick when nothing changed: the processor calls it at start-up. */
export async function installIndexTemplates(client: Client, cfg: ElasticsearchConfig): Promise<void> {
  await setupElasticsearch(client, cfg, { retentionBestEffort: true });
}

/** Removes stackwatch's templates (and policies) of a configuration: the composable templates first, then their
 * components. For tests and for uninstalling; the indices stay. */
export async function removeIndexTemplates(client: Client, cfg: ElasticsearchConfig): Promise<void> {
  const ignore404 = (err: unknown) => {
    if (statusOf(err) !== 404) throw err;
  };
  for (const kind of INDEX_KINDS) {
    const prefix = cfg.indices[kind];
    await client.indices.deleteIndexTemplate({ name: prefix }).catch(ignore404);
    await client.cluster.deleteComponentTemplate({ name: `${prefix}@settings` }).catch(ignore404);
    await client.cluster.deleteComponentTemplate({ name: `${prefix}@mappings` }).catch(ignore404);
    // The inventory has no policy: a policy by its name is not stackwatch's.
    if (!isDaily(kind)) continue;
    await client.ilm.deleteLifecycle({ name: prefix }).catch((err) => {
      if (![400, 404, 405].includes(statusOf(err) ?? 0)) throw err;
    });
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Retention without ILM

export interface PrunedIndex {
  kind: DailyKind;
  index: string;
  /** The day in its name (YYYY-MM-DD). */
  day: string;
  /** Days since the later of its day and its creation. */
  ageDays: number;
}

/** The age in days of a daily index of `prefix` for retention: from the later of its day (the date in its name) and
 * its creation, so live data ages from its day and old logs replayed today from today — ILM's rule (from creation)
 * for every index that was created on or after its day. Undefined for an index that is not a daily index. */
export function dailyIndexAge(prefix: string, index: string, createdMs: number, nowMs: number): { day: string; ageDays: number } | undefined {
  const m = DAILY(prefix).exec(index);
  if (!m) return undefined;
  const day = `${m[1]}-${m[2]}-${m[3]}`;
  const start = Date.parse(`${day}T00:00:00Z`);
  if (Number.isNaN(start)) return undefined;
  return { day, ageDays: (nowMs - Math.max(start, Number.isFinite(createdMs) ? createdMs : start)) / 86_400_000 };
}

/** The daily indices older than their kind's retention (see dailyIndexAge). Deletes them unless `dryRun`. The
 * inventory is not daily: never pruned. */
export async function pruneDailyIndices(client: Client, cfg: ElasticsearchConfig, retention: Record<DailyKind, number>, opts: { dryRun?: boolean; now?: Date } = {}): Promise<PrunedIndex[]> {
  const now = (opts.now ?? new Date()).getTime();
  const out: PrunedIndex[] = [];
  for (const kind of DAILY_KINDS) {
    const prefix = cfg.indices[kind];
    const rows = (await client.cat.indices({ index: `${prefix}-*`, h: 'index,creation.date', format: 'json', expand_wildcards: 'open' }).catch((err) => {
      if (statusOf(err) === 404) return [];
      throw err;
    })) as { index?: string; 'creation.date'?: string }[];
    const old: PrunedIndex[] = [];
    for (const row of rows) {
      const age = row.index ? dailyIndexAge(prefix, row.index, Number(row['creation.date']), now) : undefined;
      if (age && age.ageDays >= retention[kind]) old.push({ kind, index: row.index!, ...age });
    }
    old.sort((a, b) => a.index.localeCompare(b.index));
    if (!opts.dryRun) for (const part of chunks(old, 50)) await client.indices.delete({ index: part.map((p) => p.index).join(',') });
    out.push(...old);
  }
  return out;
}
