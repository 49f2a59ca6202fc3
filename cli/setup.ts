// `stackwatch setup`: creates or updates, idempotently, what stackwatch needs in Elasticsearch — component and
// composable index templates for every index kind, the read alias over each kind's daily indices, retention (ILM
// when the cluster has it; otherwise `--prune`) — and, with --kibana, imports the dashboards into Kibana.
import { readFileSync } from 'node:fs';
import { maskUrlCredentials } from '../core/secrets.ts';
import { ConfigError, type Config } from '../core/config.ts';
import { esClient } from '../core/elastic.ts';
import { DAILY_KINDS, defaultRetentionDays, pruneDailyIndices, setupElasticsearch, type DailyKind, type SetupAction, type SetupResult } from '../sinks/index-setup.ts';
import { errorText } from '../core/log.ts';
import type { Command } from './index.ts';
import { parseOptions, readConfig } from './options.ts';

// Relative to the repository root, not to this file: the same URL resolves from cli/ and from the bundle in dist/.
export const KIBANA_NDJSON = new URL('../dashboards/kibana/stackwatch.ndjson', import.meta.url);

/** The data view titles in the NDJSON (the default prefixes), rewritten to the configured ones on import. */
const DEFAULT_PREFIX: Record<DailyKind, string> = {
  logs: 'stackwatch-logs',
  alerts: 'stackwatch-alerts',
  incidents: 'stackwatch-incidents',
  metrics: 'stackwatch-metrics',
  dead_letter: 'stackwatch-dead-letter',
};

const KIND_NAMES: Record<DailyKind, string> = { logs: 'logs', alerts: 'alerts', incidents: 'incidents', metrics: 'metrics', dead_letter: 'dead_letter' };

export const setupCommand: Command = {
  name: 'setup',
  help: `Usage: stackwatch setup [--config FILE] [--retention KIND=DAYS]... [--prune [--dry-run]]
                        [--kibana URL [--kibana-space SPACE]]

Creates or updates what stackwatch needs in Elasticsearch, and changes nothing that is already right (run it
after every upgrade; running it twice changes nothing the second time). Per daily index kind — logs, alerts,
incidents, metrics, dead_letter, each with daily indices <prefix>-YYYY.MM.DD (elasticsearch.indices.<kind>):
  component templates <prefix>@settings and <prefix>@mappings (explicit ECS mappings), and the composable index
    template <prefix> for <prefix>-* built from them and from <prefix>@custom when it exists — put your own
    settings (replicas, …) and fields there: setup never touches it;
  the alias <prefix> over all the kind's daily indices (added by the template; setup adds it to older indices);
  retention: on a cluster with ILM (index lifecycle management), the ILM policy <prefix>: delete a daily index
    N days after it was created — for live data, N days after its day; old logs replayed today stay N days (set
    on the existing daily indices too). Without ILM (e.g. Elasticsearch's minimal distribution), setup says so:
    run \`stackwatch setup --prune\` daily from cron instead.
The host inventory (elasticsearch.indices.inventory) is one index, not daily: the same three templates for that
one name, no alias, no retention (neither ILM nor --prune ever deletes it).
It checks the existing indices against the templates: a missing field is added; a field mapped with another
type is an error naming the index and the field (the index needs a reindex).

Options:
  --config FILE         configuration file (default: $STACKWATCH_CONFIG or /etc/stackwatch/stackwatch.yaml); only
                        elasticsearch (url, credentials, indices, retention_days) is used
  --retention KIND=DAYS
                        days to keep a kind's daily indices (repeatable or comma-separated: logs=14,metrics=365;
                        KIND: logs, alerts, metrics, dead_letter), over elasticsearch.retention_days of the
                        configuration. Written into the ILM policy; a kind named in neither keeps its policy as it is (or gets the default when it has none: logs 30, alerts 365,
                        metrics 180, dead_letter 30 — sinks/ilm/). Also what --prune uses.
  --prune               delete the daily indices older than their kind's retention: whose day (in their name)
                        and whose creation are both N days ago or more — ILM's rule (for clusters without ILM;
                        with ILM it does nothing)
  --dry-run             with --prune: list the indices it would delete, delete nothing
  --kibana URL          also import the Kibana dashboards, saved searches and data views
                        (dashboards/kibana/stackwatch.ndjson) through Kibana's saved objects API, overwriting
                        earlier versions, and report each object's result; data view titles follow the configured
                        index prefixes. Credentials: STACKWATCH_KIBANA_API_KEY, or STACKWATCH_KIBANA_USERNAME and
                        STACKWATCH_KIBANA_PASSWORD, else elasticsearch's own
  --kibana-space SPACE  import into this Kibana space (default: the default space)

Exit status: 0 when everything is in place, 1 when Elasticsearch or Kibana refused something or an existing
index has a conflicting mapping (the message names the index and field), 2 for a bad option or configuration.`,

  async main(args) {
    const { values } = parseOptions(args, {
      config: { type: 'string' },
      retention: { type: 'string', multiple: true },
      prune: { type: 'boolean', default: false },
      'dry-run': { type: 'boolean', default: false },
      kibana: { type: 'string' },
      'kibana-space': { type: 'string' },
    });
    const asked = parseRetention(values.retention ?? []);
    if (values['dry-run'] && !values.prune) throw new ConfigError('--dry-run: only with --prune');
    const kibana = values.kibana === undefined ? undefined : kibanaUrl(values.kibana, values['kibana-space']);
    if (values['kibana-space'] !== undefined && kibana === undefined) throw new ConfigError('--kibana-space: only with --kibana URL');
    const cfg = readConfig(values.config);
    // The configuration's retention, with --retention over it.
    const retention = { ...cfg.elasticsearch.retention_days, ...asked };
    const out = (line = '') => process.stdout.write(line + '\n');

    const es = esClient(cfg.elasticsearch);
    let failed = false;
    try {
      out(`Elasticsearch ${cfg.elasticsearch.url}`);
      let result: SetupResult;
      try {
        result = await setupElasticsearch(es, cfg.elasticsearch, { existingIndices: true, retention });
      } catch (err) {
        throw new Error(elasticsearchError(cfg.elasticsearch.url, err));
      }
      for (const a of result.actions) out(formatAction(a));
      for (const c of result.conflicts) {
        failed = true;
        process.stderr.write(
          `stackwatch setup: mapping conflict: index ${c.index}, field ${c.field}: mapped as ${c.actual}, stackwatch maps it as ${c.expected}; ` +
            `searches and dashboards on ${c.field} do not work on this index. Reindex it into an index created from the template ` +
            `(POST _reindex), or delete it; new daily indices get the right mapping\n`,
        );
      }
      const effective = retentionDays(retention, result);
      out(retentionText(result, effective, cfg));
      out(summary(result.actions));

      if (values.prune) {
        if (result.ilm.available) out('Prune: nothing to do, ILM deletes the old daily indices on this cluster.');
        else {
          const pruned = await pruneDailyIndices(es, cfg.elasticsearch, effective, { dryRun: values['dry-run'] });
          const verb = values['dry-run'] ? 'would delete' : 'deleted';
          for (const p of pruned) out(`  ${verb.padEnd(12)} ${p.index}  (${Math.floor(p.ageDays)} days old, ${KIND_NAMES[p.kind]} keep ${effective[p.kind]})`);
          const n = `${pruned.length} ${pruned.length === 1 ? 'index' : 'indices'}`;
          if (pruned.length === 0) out('Prune: no daily index is older than its retention.');
          else out(values['dry-run'] ? `Prune (dry run): ${n} would be deleted.` : `Prune: ${n} deleted.`);
        }
      }
    } finally {
      await es.close().catch(() => {});
    }

    if (kibana) {
      out('');
      if (!(await importIntoKibana(kibana, cfg, out))) failed = true;
    }
    return failed ? 1 : 0;
  },
};

// ---------------------------------------------------------------------------------------------------------------
// Options

export function parseRetention(values: string[]): Partial<Record<DailyKind, number>> {
  const out: Partial<Record<DailyKind, number>> = {};
  for (const item of values
    .flatMap((v) => v.split(','))
    .map((v) => v.trim())
    .filter(Boolean)) {
    const m = /^([a-z_-]+)=(\d+)d?$/.exec(item);
    const kind = m?.[1].replace('-', '_') as DailyKind | undefined;
    if (!m || !kind || !DAILY_KINDS.includes(kind) || Number(m[2]) < 1) {
      throw new ConfigError(`--retention: expected KIND=DAYS with KIND one of ${DAILY_KINDS.join(', ')} and DAYS ≥ 1, got ${JSON.stringify(item)}`);
    }
    out[kind] = Number(m[2]);
  }
  return out;
}

function kibanaUrl(url: string, space: string | undefined): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new ConfigError(`--kibana: expected an http(s) URL like https://kibana:5601, got ${JSON.stringify(maskUrlCredentials(url))}`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new ConfigError(`--kibana: expected an http(s) URL, got ${JSON.stringify(maskUrlCredentials(url))}`);
  // The URL is printed in every line about Kibana: credentials go elsewhere.
  if (u.username || u.password) {
    throw new ConfigError('--kibana: no credentials in the URL, please: set STACKWATCH_KIBANA_API_KEY, or STACKWATCH_KIBANA_USERNAME and STACKWATCH_KIBANA_PASSWORD');
  }
  if (space !== undefined && !/^[a-z0-9_-]+$/.test(space)) throw new ConfigError(`--kibana-space: expected a space id (a-z, 0-9, _ and -), got ${JSON.stringify(space)}`);
  return `${u.href.replace(/\/+$/, '')}${space && space !== 'default' ? `/s/${space}` : ''}`;
}

// ---------------------------------------------------------------------------------------------------------------
// Report

function formatAction(a: SetupAction): string {
  const detail = a.what === 'index template' ? (a.detail ?? `${a.name}-*, alias ${a.name}`) : (a.detail ?? '');
  return `  ${a.result.padEnd(10)} ${a.what.padEnd(19)} ${a.name}${detail ? `  (${detail})` : ''}`;
}

function summary(actions: SetupAction[]): string {
  const n = (r: string) => actions.filter((a) => a.result === r).length;
  const changed = n('created') + n('updated');
  if (changed === 0) return `Setup: nothing to change (${actions.length} unchanged).`;
  return `Setup: ${n('created')} created, ${n('updated')} updated, ${n('unchanged')} unchanged.`;
}

/** The retention of each kind: the ILM policy's when there is one, else --retention, else the default. */
function retentionDays(asked: Partial<Record<DailyKind, number>>, result: SetupResult): Record<DailyKind, number> {
  return Object.fromEntries(DAILY_KINDS.map((k) => [k, result.retention[k] ?? asked[k] ?? defaultRetentionDays(k)])) as Record<DailyKind, number>;
}

function retentionText(result: SetupResult, days: Record<DailyKind, number>, cfg: Config): string {
  const list = DAILY_KINDS.map((k) => `${KIND_NAMES[k]} ${days[k]} d`).join(', ');
  if (result.ilm.available === true) {
    return `Retention: ILM policies ${DAILY_KINDS.map((k) => `${cfg.elasticsearch.indices[k]} (${days[k]} d)`).join(', ')}: a daily index is deleted that many days after it was created.`;
  }
  if (result.ilm.available === undefined) {
    return [
      `Retention: cannot tell whether this cluster has ILM (${result.ilm.reason}); the templates keep the lifecycle settings they had.`,
      `  Run setup as a user with the manage_ilm privilege, or delete old daily indices with \`stackwatch setup --prune\` (${list}).`,
    ].join('\n');
  }
  return [
    'Retention: this cluster has no ILM (index lifecycle management): retention is not set up.',
    "  Daily indices are named by their events' day (<prefix>-YYYY.MM.DD): run `stackwatch setup --prune` once a day",
    `  from cron to delete those older than their retention, counted from their day and their creation (${list};`,
    "  change with --retention KIND=DAYS), or use Elasticsearch's default distribution, which has ILM.",
  ].join('\n');
}

function elasticsearchError(url: string, err: unknown): string {
  const name = (err as Error | undefined)?.name;
  if (name === 'ConnectionError' || name === 'TimeoutError' || name === 'NoLivingConnectionsError') {
    return `cannot reach Elasticsearch at ${url}: ${errorText(err)}; check elasticsearch.url (or STACKWATCH_ES_URL)`;
  }
  if (name === 'ResponseError') return `Elasticsearch ${url}: ${errorText(err)}`;
  return errorText(err);
}

// ---------------------------------------------------------------------------------------------------------------
// Kibana

/** The NDJSON with the data views (and the Vega charts' index) on the configured index prefixes. */
export function kibanaObjects(cfg: Config): string {
  let text = readFileSync(KIBANA_NDJSON, 'utf8');
  for (const kind of DAILY_KINDS) {
    const prefix = cfg.elasticsearch.indices[kind];
    if (prefix !== DEFAULT_PREFIX[kind]) text = text.split(`${DEFAULT_PREFIX[kind]}-*`).join(`${prefix}-*`);
  }
  return text;
}

interface ImportResponse {
  success?: boolean;
  successCount?: number;
  successResults?: { id: string; type: string; meta?: { title?: string }; overwrite?: boolean; destinationId?: string }[];
  errors?: { id: string; type: string; title?: string; meta?: { title?: string }; error?: { type?: string; message?: string; references?: { type: string; id: string }[] } }[];
  message?: string;
  error?: string;
  statusCode?: number;
}

function kibanaAuth(cfg: Config): string | undefined {
  const env = process.env;
  if (env.STACKWATCH_KIBANA_API_KEY) return `ApiKey ${env.STACKWATCH_KIBANA_API_KEY}`;
  const user = env.STACKWATCH_KIBANA_USERNAME ?? cfg.elasticsearch.username;
  const password = env.STACKWATCH_KIBANA_USERNAME ? env.STACKWATCH_KIBANA_PASSWORD : cfg.elasticsearch.password;
  if (user) return `Basic ${Buffer.from(`${user}:${password ?? ''}`).toString('base64')}`;
  if (cfg.elasticsearch.api_key) return `ApiKey ${cfg.elasticsearch.api_key}`;
  return undefined;
}

/** POST /api/saved_objects/_import?overwrite=true with the NDJSON as a multipart file; one line per object. */
export async function importIntoKibana(base: string, cfg: Config, out: (line?: string) => void): Promise<boolean> {
  const ndjson = kibanaObjects(cfg);
  const count = ndjson.split('\n').filter(Boolean).length;
  out(`Kibana ${base}: importing ${count} saved objects (dashboards/kibana/stackwatch.ndjson)`);
  const form = new FormData();
  form.append('file', new Blob([ndjson], { type: 'application/ndjson' }), 'stackwatch.ndjson');
  const auth = kibanaAuth(cfg);
  let res: Response;
  try {
    res = await fetch(`${base}/api/saved_objects/_import?overwrite=true`, {
      method: 'POST',
      headers: { 'kbn-xsrf': 'stackwatch', ...(auth ? { authorization: auth } : {}) },
      body: form,
      signal: AbortSignal.timeout(120_000),
    });
  } catch (err) {
    process.stderr.write(`stackwatch setup: cannot reach Kibana at ${base}: ${errorText((err as Error).cause ?? err)}; check the --kibana URL\n`);
    return false;
  }
  const text = await res.text();
  let body: ImportResponse;
  try {
    body = JSON.parse(text) as ImportResponse;
  } catch {
    process.stderr.write(`stackwatch setup: Kibana ${base} answered ${res.status} with something that is not JSON: ${text.slice(0, 200)}\n`);
    return false;
  }
  if (!res.ok) {
    const hint =
      res.status === 401
        ? ' (set STACKWATCH_KIBANA_USERNAME/STACKWATCH_KIBANA_PASSWORD or STACKWATCH_KIBANA_API_KEY)'
        : res.status === 403
          ? ' (the user needs the saved objects management privilege)'
          : '';
    process.stderr.write(`stackwatch setup: Kibana ${base} refused the import: ${res.status} ${body.error ?? ''}${body.message ? `: ${body.message}` : ''}${hint}\n`);
    return false;
  }
  const rows: string[][] = [];
  let created = 0;
  let overwritten = 0;
  for (const r of body.successResults ?? []) {
    if (r.overwrite) overwritten++;
    else created++;
    rows.push([r.overwrite ? 'overwritten' : 'created', r.type, r.id, r.meta?.title ?? '']);
  }
  for (const e of body.errors ?? []) {
    const what = e.error?.type ?? 'error';
    const refs = e.error?.references?.length ? `: ${e.error.references.map((r) => `${r.type} ${r.id}`).join(', ')}` : e.error?.message ? `: ${e.error.message}` : '';
    rows.push([`error`, e.type, e.id, `${e.meta?.title ?? e.title ?? ''} — ${what}${refs}`]);
  }
  const w = [0, 1, 2].map((i) => Math.max(0, ...rows.map((r) => r[i].length)));
  for (const r of rows) out(`  ${r[0].padEnd(w[0])}  ${r[1].padEnd(w[1])}  ${r[2].padEnd(w[2])}  ${r[3]}`.trimEnd());
  const errorsN = body.errors?.length ?? 0;
  out(`Kibana: ${created + overwritten} imported (${created} created, ${overwritten} overwritten), ${errorsN} ${errorsN === 1 ? 'error' : 'errors'}.`);
  if (errorsN > 0 || body.success === false) {
    process.stderr.write(`stackwatch setup: Kibana did not import ${errorsN} of ${count} saved objects (listed above)\n`);
    return false;
  }
  return true;
}
