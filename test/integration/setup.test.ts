// `stackwatch setup` on the real (minimal) Elasticsearch: twice, the second run changing nothing; older indices
// brought in line (missing fields, the alias); conflicting mappings and refused templates as errors naming the
// index and the field; retention without ILM (the message, `--prune`) and — through a proxy that adds ILM's API
// to the real cluster — with it; `--kibana` against a local server that speaks Kibana's saved objects import API.
import { createServer, request as httpRequest, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import type { Client } from '../../core/elastic.ts';
import { DAILY_KINDS, installIndexTemplates, kindTemplate, pruneDailyIndices, removeIndexTemplates, setupElasticsearch, SetupError } from '../../sinks/index-setup.ts';
import { stack, stackwatch, testSetup, type TestSetup } from './harness.ts';

async function run(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const cli = stackwatch(args);
  let stdout = '';
  cli.child.stdout!.on('data', (d) => (stdout += d));
  const { code } = await cli.exited;
  return { code, stdout, stderr: cli.stderr() };
}

/** What stackwatch keeps in the cluster for a configuration: templates and components, as Elasticsearch has them. */
async function clusterState(t: TestSetup): Promise<unknown> {
  const out: Record<string, unknown> = {};
  for (const prefix of Object.values(t.cfg.elasticsearch.indices)) {
    out[prefix] = (await t.es.indices.getIndexTemplate({ name: prefix })).index_templates;
    out[`${prefix}@settings`] = (await t.es.cluster.getComponentTemplate({ name: `${prefix}@settings` })).component_templates;
    out[`${prefix}@mappings`] = (await t.es.cluster.getComponentTemplate({ name: `${prefix}@mappings` })).component_templates;
  }
  return out;
}

const setups: TestSetup[] = [];
function fresh(name: string, patch?: (raw: Record<string, any>) => void): TestSetup {
  const t = testSetup(name, patch);
  setups.push(t);
  return t;
}

const servers: Server[] = [];
async function listen(server: Server): Promise<string> {
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

afterAll(async () => {
  // These tests create no Kafka topics: their indices and templates are all there is to remove.
  for (const t of setups) {
    await removeIndexTemplates(t.es, t.cfg.elasticsearch).catch(() => {});
    const names = Object.keys(await t.es.indices.get({ index: `swtest-${t.run}-*`, allow_no_indices: true, ignore_unavailable: true }).catch(() => ({})));
    if (names.length > 0) await t.es.indices.delete({ index: names }).catch(() => {});
    await t.es.close();
  }
  for (const s of servers) (s.closeAllConnections(), s.close());
});

const today = new Date().toISOString().slice(0, 10).replace(/-/g, '.');

describe('stackwatch setup on Elasticsearch', () => {
  it('creates templates and aliases, brings an older index in line, and a second run changes nothing', async () => {
    const t = fresh('setup');
    const logs = t.cfg.elasticsearch.indices.logs;
    // An index from before: some fields, no message.keyword, no alias.
    const older = `${logs}-2026.01.01`;
    await t.es.indices.create({ index: older, mappings: { properties: { message: { type: 'text' }, host: { properties: { name: { type: 'keyword' } } } } } });

    const first = await run(['setup', '--config', t.configFile]);
    expect(first.code, first.stderr).toBe(0);
    for (const prefix of Object.values(t.cfg.elasticsearch.indices)) {
      expect(first.stdout).toContain(`  created    component template  ${prefix}@settings`);
      expect(first.stdout).toContain(`  created    component template  ${prefix}@mappings`);
    }
    for (const kind of DAILY_KINDS) {
      const prefix = t.cfg.elasticsearch.indices[kind];
      expect(first.stdout).toContain(`  created    index template      ${prefix}  (${prefix}-*, alias ${prefix})`);
    }
    const inventory = t.cfg.elasticsearch.indices.inventory;
    expect(first.stdout).toContain(`  created    index template      ${inventory}  (the one index ${inventory}, not daily)`);
    expect(first.stdout).toMatch(new RegExp(`updated +mapping +${logs}-\\*  \\(@timestamp, error\\.stack_trace, .* and \\d+ more fields added to 1 existing index\\)`));
    expect(first.stdout).toContain(`  updated    alias               ${logs}  (added to 1 existing index)`);
    expect(first.stdout).toContain('Retention: this cluster has no ILM (index lifecycle management): retention is not set up.');
    expect(first.stdout).toContain('`stackwatch setup --prune`');
    expect(first.stdout).toMatch(/^Setup: 18 created, 2 updated, 0 unchanged\.$/m);
    const before = await clusterState(t);

    const second = await run(['setup', '--config', t.configFile]);
    expect(second.code, second.stderr).toBe(0);
    expect(second.stdout).not.toMatch(/^ {2}(created|updated) /m);
    expect(second.stdout).toContain(`  unchanged  alias               ${logs}  (on 1 index)`);
    expect(second.stdout).toMatch(/^Setup: nothing to change \(19 unchanged\)\.$/m);
    expect(await clusterState(t)).toEqual(before);

    // A processor starting changes nothing either.
    await installIndexTemplates(t.es, t.cfg.elasticsearch);
    expect(await clusterState(t)).toEqual(before);

    // The older index got the missing fields and the alias; a new daily index gets both from the template.
    const mapping = (await t.es.indices.getMapping({ index: older }))[older].mappings as any;
    expect(mapping.properties.message.fields.keyword.type).toBe('keyword');
    expect(mapping.properties.openstack.properties.request_id.type).toBe('keyword');
    await t.es.index({ index: `${logs}-${today}`, document: { '@timestamp': new Date().toISOString(), message: 'hello', host: { name: 'h1' } }, refresh: true });
    const created = (await t.es.indices.get({ index: `${logs}-${today}` }))[`${logs}-${today}`];
    expect(Object.keys(created.aliases ?? {})).toEqual([logs]);
    expect((created.mappings as any).properties.host.properties.name.type).toBe('keyword');
    expect(created.settings?.index?.number_of_shards).toBe('1');
    expect((await t.es.count({ index: logs })).count).toBe(1);
  });

  it('refuses to paper over a conflicting mapping: names the index and the field, and fails', async () => {
    const t = fresh('setup-conflict');
    const index = `${t.cfg.elasticsearch.indices.logs}-2026.02.03`;
    // Dynamic mapping, as if written before the templates existed: host.name and log are text.
    await t.es.index({ index, document: { '@timestamp': '2026-02-03T00:00:00Z', host: { name: 'cmp-1' }, log: 'free text', message: 'x' }, refresh: true });

    const res = await run(['setup', '--config', t.configFile]);
    expect(res.code).toBe(1);
    expect(res.stderr).toContain(`stackwatch setup: mapping conflict: index ${index}, field host.name: mapped as text, stackwatch maps it as keyword`);
    expect(res.stderr).toContain(`stackwatch setup: mapping conflict: index ${index}, field log: mapped as text, stackwatch maps it as object`);
    expect(res.stderr).toContain('Reindex it');
    // The templates are in place all the same: new daily indices are right.
    expect(res.stdout).toContain(`created    index template      ${t.cfg.elasticsearch.indices.logs}`);
  });

  it('reports a template the cluster refuses, naming the indices and the field', async () => {
    const t = fresh('setup-refused');
    // A mapping type the minimal distribution does not have.
    const templates = (kind: Parameters<typeof kindTemplate>[0]) => {
      const k = kindTemplate(kind);
      if (kind === 'logs') k.mappings.properties.message = { type: 'match_only_text' };
      return k;
    };
    const logs = t.cfg.elasticsearch.indices.logs;
    const err = await setupElasticsearch(t.es, t.cfg.elasticsearch, { templates }).catch((e) => e);
    expect(err).toBeInstanceOf(SetupError);
    expect(err.message).toMatch(
      new RegExp(
        `^Elasticsearch refused the component template ${logs}@mappings \\(indices ${logs}-\\*, field message\\): mapper_parsing_exception: The mapper type \\[match_only_text\\] declared on field \\[message\\] does not exist`,
      ),
    );

    // Through the command: another template already claims the same indices at the same priority.
    const alerts = t.cfg.elasticsearch.indices.alerts;
    await t.es.indices.putIndexTemplate({ name: `${alerts}-legacy`, index_patterns: [`${alerts}-*`], priority: 200 });
    try {
      const res = await run(['setup', '--config', t.configFile]);
      expect(res.code).toBe(1);
      expect(res.stderr).toContain(
        `stackwatch: Elasticsearch refused the index template ${alerts} (indices ${alerts}-*): illegal_argument_exception: index template [${alerts}] has index patterns [${alerts}-*] matching patterns from existing templates [${alerts}-legacy]`,
      );
    } finally {
      await t.es.indices.deleteIndexTemplate({ name: `${alerts}-legacy` });
    }
  });

  it('--prune deletes the daily indices older than their retention, counted from their day and their creation', async () => {
    const t = fresh('setup-prune');
    const { logs, metrics } = t.cfg.elasticsearch.indices;
    expect((await run(['setup', '--config', t.configFile])).code).toBe(0);
    for (const index of [`${logs}-2020.01.01`, `${logs}-${today}`, `${logs}-notadate`, `${metrics}-2020.01.01`]) await t.es.indices.create({ index });

    // Logs of 2020 replayed today are not deleted at once: they stay for the retention, like today's.
    const dry = await run(['setup', '--config', t.configFile, '--prune', '--dry-run', '--retention', 'logs=30']);
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toContain('Prune: no daily index is older than its retention.');
    const real = await run(['setup', '--config', t.configFile, '--prune', '--retention', 'logs=30']);
    expect(real.code, real.stderr).toBe(0);
    expect(real.stdout).toContain('Prune: no daily index is older than its retention.');
    const all = () => t.es.indices.get({ index: `${logs}-*,${metrics}-*` }).then((r) => Object.keys(r).sort());
    expect(await all()).toEqual([`${logs}-2020.01.01`, `${logs}-${today}`, `${logs}-notadate`, `${metrics}-2020.01.01`]);

    // 31 days on: the logs kept 30 days go, the metrics kept 180 stay, what is not a daily index is never touched.
    const later = new Date(Date.now() + 31 * 86_400_000);
    const retention = { logs: 30, alerts: 365, incidents: 365, metrics: 180, dead_letter: 30 };
    const listed = await pruneDailyIndices(t.es, t.cfg.elasticsearch, retention, { dryRun: true, now: later });
    expect(listed.map((p) => p.index)).toEqual([`${logs}-2020.01.01`, `${logs}-${today}`]);
    expect(listed.every((p) => p.ageDays >= 30 && p.ageDays < 32)).toBe(true);
    expect(await all()).toHaveLength(4);
    await pruneDailyIndices(t.es, t.cfg.elasticsearch, retention, { now: later });
    expect(await all()).toEqual([`${logs}-notadate`, `${metrics}-2020.01.01`]);
  });

  it('rejects bad options', async () => {
    const t = fresh('setup-options');
    const bad = await run(['setup', '--config', t.configFile, '--retention', 'traces=3']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--retention: expected KIND=DAYS');
    expect((await run(['setup', '--config', t.configFile, '--dry-run'])).stderr).toContain('--dry-run: only with --prune');
    expect((await run(['setup', '--config', t.configFile, '--kibana', 'ftp://x'])).stderr).toContain('--kibana: expected an http(s) URL');
  });
});

// ---------------------------------------------------------------------------------------------------------------
// A cluster with ILM: the real Elasticsearch behind a proxy that answers ILM's API itself (the minimal distribution
// has none) and keeps the lifecycle settings the real cluster would refuse.

interface IlmProxy {
  url: string;
  policies: Map<string, any>;
  /** Lifecycle settings per component template, as setup sent them. */
  lifecycle: Map<string, Record<string, unknown>>;
  /** Lifecycle settings per existing index, as setup sent them. */
  indexLifecycle: Map<string, Record<string, unknown>>;
  /** Answer GET _ilm/status with this status (403: a user without ILM privileges). */
  statusCode: number;
  /** Answer the policy API with this status (403: a user who may read ILM's status but not manage policies). */
  policyStatus: number;
}

async function ilmProxy(esUrl: string): Promise<IlmProxy> {
  const target = new URL(esUrl);
  const proxy: IlmProxy = { url: '', policies: new Map(), lifecycle: new Map(), indexLifecycle: new Map(), statusCode: 200, policyStatus: 200 };
  const server = createServer(async (req, res) => {
    const body = await readBody(req);
    const url = new URL(req.url!, 'http://x');
    const json = (status: number, value: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json', 'x-elastic-product': 'Elasticsearch' });
      res.end(JSON.stringify(value));
    };
    if (url.pathname === '/_ilm/status') {
      return proxy.statusCode === 200
        ? json(200, { operation_mode: 'RUNNING' })
        : json(proxy.statusCode, { error: { type: 'security_exception', reason: 'action [cluster:admin/ilm/operation_mode/get] is unauthorized' }, status: proxy.statusCode });
    }
    const policy = /^\/_ilm\/policy\/([^/]+)$/.exec(url.pathname);
    if (policy) {
      const name = decodeURIComponent(policy[1]);
      if (proxy.policyStatus !== 200)
        return json(proxy.policyStatus, { error: { type: 'security_exception', reason: 'action [cluster:admin/ilm/put] is unauthorized' }, status: proxy.policyStatus });
      if (req.method === 'PUT') {
        proxy.policies.set(name, JSON.parse(body.toString()).policy);
        return json(200, { acknowledged: true });
      }
      if (req.method === 'DELETE') {
        proxy.policies.delete(name);
        return json(200, { acknowledged: true });
      }
      const p = proxy.policies.get(name);
      return p
        ? json(200, { [name]: { version: 1, modified_date: '2026-01-01T00:00:00.000Z', policy: p } })
        : json(404, { error: { type: 'resource_not_found_exception', reason: `Lifecycle policy not found: ${name}` }, status: 404 });
    }
    // Index settings: lifecycle settings are kept here (the real cluster would refuse them), the rest goes on.
    const indexSettings = /^\/([^_/][^/]*)\/_settings(?:\/([^/]+))?$/.exec(url.pathname);
    if (indexSettings && req.method === 'PUT') {
      const parsed = JSON.parse(body.toString());
      const settings = parsed.settings ?? parsed;
      const kept = Object.fromEntries(Object.entries(settings).filter(([k]) => k.startsWith('index.lifecycle.')));
      for (const index of decodeURIComponent(indexSettings[1]).split(',')) proxy.indexLifecycle.set(index, kept);
      if (Object.keys(settings).every((k) => k.startsWith('index.lifecycle.'))) return json(200, { acknowledged: true });
    }
    let forward = body;
    const component = /^\/_component_template\/([^/]+)$/.exec(url.pathname);
    if (component && req.method === 'PUT') {
      const name = decodeURIComponent(component[1]);
      const parsed = JSON.parse(body.toString());
      const settings = parsed.template?.settings ?? {};
      const kept = Object.fromEntries(Object.entries(settings).filter(([k]) => k.startsWith('index.lifecycle.')));
      for (const k of Object.keys(kept)) delete settings[k];
      if (Object.keys(kept).length > 0) proxy.lifecycle.set(name, kept);
      else proxy.lifecycle.delete(name);
      forward = Buffer.from(JSON.stringify(parsed));
    }
    const upstream = httpRequest(
      {
        host: target.hostname,
        port: target.port,
        method: req.method,
        path: req.url,
        headers: { ...req.headers, host: target.host, 'content-length': String(forward.length), 'accept-encoding': 'identity' },
      },
      async (up) => {
        let payload = await readBody(up);
        if (indexSettings && req.method === 'GET' && up.statusCode === 200) {
          // Elasticsearch leaves out the indices without the requested setting: add those that have it here.
          const parsed = JSON.parse(payload.toString());
          const pattern = new RegExp(
            `^(${decodeURIComponent(indexSettings[1])
              .split(',')
              .map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*'))
              .join('|')})$`,
          );
          for (const [index, kept] of proxy.indexLifecycle) {
            if (pattern.test(index)) (((parsed[index] ??= {}).settings ??= {}).index ??= {}).lifecycle = { name: kept['index.lifecycle.name'] };
          }
          payload = Buffer.from(JSON.stringify(parsed));
        }
        if (component && req.method === 'GET' && up.statusCode === 200) {
          // Give back what a cluster with ILM would: the component with its lifecycle settings.
          const parsed = JSON.parse(payload.toString());
          for (const c of parsed.component_templates ?? []) {
            const kept = proxy.lifecycle.get(c.name);
            if (!kept) continue;
            const index = ((c.component_template.template.settings ??= {}).index ??= {});
            index.lifecycle = { name: kept['index.lifecycle.name'] };
          }
          payload = Buffer.from(JSON.stringify(parsed));
        }
        const headers = { ...up.headers, 'content-length': String(payload.length) };
        delete headers['transfer-encoding'];
        res.writeHead(up.statusCode!, headers);
        res.end(payload);
      },
    );
    upstream.on('error', (err) => json(502, { error: String(err) }));
    upstream.end(forward);
  });
  proxy.url = await listen(server);
  return proxy;
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

describe('stackwatch setup on a cluster with ILM', () => {
  it('creates an ILM policy per index kind, names it in the settings, changes it only when asked', async () => {
    const proxy = await ilmProxy(stack().STACKWATCH_ES_URL);
    const t = fresh('setup-ilm', (raw) => (raw.elasticsearch.url = proxy.url));
    const { logs, alerts, incidents, metrics, dead_letter } = t.cfg.elasticsearch.indices;
    // A daily index from before: setup puts it under the policy too.
    await t.es.indices.create({ index: `${logs}-2026.01.01` });

    const first = await run(['setup', '--config', t.configFile]);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toContain(`  updated    index settings      ${logs}-*  (ILM policy ${logs} set on 1 existing index)`);
    expect(proxy.indexLifecycle.get(`${logs}-2026.01.01`)).toEqual({ 'index.lifecycle.name': logs });
    expect(first.stdout).toContain(`  created    ILM policy          ${logs}  (delete after 30d)`);
    expect(first.stdout).toContain(`  created    ILM policy          ${alerts}  (delete after 365d)`);
    expect(first.stdout).toContain(`  created    ILM policy          ${metrics}  (delete after 180d)`);
    expect(first.stdout).toContain(`Retention: ILM policies ${logs} (30 d), ${alerts} (365 d), ${incidents} (365 d), ${metrics} (180 d), ${dead_letter} (30 d)`);
    expect(proxy.policies.get(logs)).toMatchObject({ phases: { hot: { min_age: '0ms' }, delete: { min_age: '30d', actions: { delete: {} } } } });
    expect(proxy.lifecycle.get(`${logs}@settings`)).toEqual({ 'index.lifecycle.name': logs });

    const second = await run(['setup', '--config', t.configFile, '--prune']);
    expect(second.code, second.stderr).toBe(0);
    expect(second.stdout).toMatch(/^Setup: nothing to change \(24 unchanged\)\.$/m);
    expect(second.stdout).toContain(`  unchanged  ILM policy          ${logs}  (delete after 30d)`);
    expect(second.stdout).toContain('Prune: nothing to do, ILM deletes the old daily indices on this cluster.');

    const changed = await run(['setup', '--config', t.configFile, '--retention', 'logs=7']);
    expect(changed.stdout).toContain(`  updated    ILM policy          ${logs}  (delete after 7d)`);
    expect(changed.stdout).toMatch(/^Setup: 0 created, 1 updated, 23 unchanged\.$/m);
    expect(proxy.policies.get(logs).phases.delete.min_age).toBe('7d');

    // A processor whose user may not read ILM keeps what setup installed, and touches no policy.
    proxy.statusCode = 403;
    const es: Client = t.es;
    await installIndexTemplates(es, t.cfg.elasticsearch);
    expect(proxy.lifecycle.get(`${logs}@settings`)).toEqual({ 'index.lifecycle.name': logs });
    const unprivileged = await run(['setup', '--config', t.configFile]);
    expect(unprivileged.stdout).toContain('Retention: cannot tell whether this cluster has ILM (GET _ilm/status was refused (403)');
    expect(unprivileged.stdout).toMatch(/^Setup: nothing to change \(19 unchanged\)\.$/m);

    // A processor that may see ILM but not manage policies starts all the same (a warning, no policy).
    proxy.statusCode = 200;
    proxy.policyStatus = 403;
    proxy.policies.delete(metrics);
    await installIndexTemplates(es, t.cfg.elasticsearch);
    expect(proxy.policies.has(metrics)).toBe(false);
    // setup itself fails on it, naming the policy.
    const refusedPolicy = await run(['setup', '--config', t.configFile]);
    expect(refusedPolicy.code).toBe(1);
    expect(refusedPolicy.stderr).toContain('403');
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Kibana: a local server implementing POST /api/saved_objects/_import the way Kibana documents it.

interface FakeKibana {
  url: string;
  /** Objects imported so far, by type:id, per space. */
  stored: Map<string, any>;
  requests: { path: string; xsrf?: string; authorization?: string }[];
  /** Ids the server answers with an error. */
  reject: Set<string>;
}

const KIBANA_TYPES = new Set(['index-pattern', 'search', 'visualization', 'dashboard', 'lens', 'config', 'tag']);

/** The file part of a multipart/form-data body. */
function multipartFile(body: Buffer, contentType: string): { filename: string; content: string } | undefined {
  const boundary = /boundary=(?:"([^"]+)"|([^;]+))/.exec(contentType);
  if (!boundary) return undefined;
  const delimiter = `--${boundary[1] ?? boundary[2]}`;
  for (const part of body.toString('utf8').split(delimiter)) {
    const headerEnd = part.indexOf('\r\n\r\n');
    if (headerEnd < 0) continue;
    const headers = part.slice(0, headerEnd);
    const name = /name="([^"]+)"/.exec(headers)?.[1];
    const filename = /filename="([^"]+)"/.exec(headers)?.[1];
    if (name === 'file' && filename) return { filename, content: part.slice(headerEnd + 4).replace(/\r\n$/, '') };
  }
  return undefined;
}

async function fakeKibana(): Promise<FakeKibana> {
  const kibana: FakeKibana = { url: '', stored: new Map(), requests: [], reject: new Set() };
  const server = createServer(async (req, res) => {
    const body = await readBody(req);
    const url = new URL(req.url!, 'http://x');
    kibana.requests.push({ path: url.pathname + url.search, xsrf: req.headers['kbn-xsrf'] as string | undefined, authorization: req.headers.authorization });
    const json = (status: number, value: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(value));
    };
    const route = /^(?:\/s\/([a-z0-9_-]+))?\/api\/saved_objects\/_import$/.exec(url.pathname);
    if (!route || req.method !== 'POST') return json(404, { statusCode: 404, error: 'Not Found', message: 'Not Found' });
    if (!req.headers['kbn-xsrf']) return json(400, { statusCode: 400, error: 'Bad Request', message: 'Request must contain a kbn-xsrf header.' });
    const file = multipartFile(body, String(req.headers['content-type'] ?? ''));
    if (!file) return json(415, { statusCode: 415, error: 'Unsupported Media Type', message: 'Unsupported Media Type' });
    if (!file.filename.endsWith('.ndjson')) return json(400, { statusCode: 400, error: 'Bad Request', message: `Invalid file extension ${file.filename}` });
    const overwrite = url.searchParams.get('overwrite') === 'true';
    const space = route[1] ?? 'default';
    const objects = file.content
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l));
    const inFile = new Set(objects.map((o) => `${o.type}:${o.id}`));
    const successResults: unknown[] = [];
    const errors: unknown[] = [];
    for (const o of objects) {
      const key = `${space}/${o.type}:${o.id}`;
      const meta = { title: o.attributes?.title };
      if (!KIBANA_TYPES.has(o.type)) errors.push({ id: o.id, type: o.type, meta, error: { type: 'unsupported_type' } });
      else if (kibana.reject.has(o.id)) errors.push({ id: o.id, type: o.type, meta, error: { type: 'unknown', message: 'simulated failure', statusCode: 500 } });
      else {
        const missing = (o.references ?? []).filter((r: any) => !inFile.has(`${r.type}:${r.id}`) && !kibana.stored.has(`${space}/${r.type}:${r.id}`));
        if (missing.length > 0) errors.push({ id: o.id, type: o.type, meta, error: { type: 'missing_references', references: missing.map((r: any) => ({ type: r.type, id: r.id })) } });
        else if (kibana.stored.has(key) && !overwrite) errors.push({ id: o.id, type: o.type, meta, error: { type: 'conflict' } });
        else {
          successResults.push({ id: o.id, type: o.type, meta: { ...meta, icon: 'x' }, ...(kibana.stored.has(key) ? { overwrite: true } : {}) });
          kibana.stored.set(key, o);
        }
      }
    }
    json(200, { success: errors.length === 0, successCount: successResults.length, successResults, ...(errors.length ? { errors } : {}) });
  });
  kibana.url = await listen(server);
  return kibana;
}

describe('stackwatch setup --kibana', () => {
  it('imports every saved object through the saved objects API, overwriting, and reports each one', async () => {
    const kibana = await fakeKibana();
    const t = fresh('setup-kibana', (raw) => {
      raw.elasticsearch.username = 'sre';
      raw.elasticsearch.password = 'secret';
    });
    // Credentials for an Elasticsearch without security are ignored by it; Kibana gets them.
    const total = (await import('node:fs'))
      .readFileSync(new URL('../../dashboards/kibana/stackwatch.ndjson', import.meta.url), 'utf8')
      .split('\n')
      .filter(Boolean).length;

    const first = await run(['setup', '--config', t.configFile, '--kibana', `${kibana.url}/`]);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toContain(`Kibana ${kibana.url}: importing ${total} saved objects (dashboards/kibana/stackwatch.ndjson)`);
    expect(first.stdout).toMatch(new RegExp(`^  created +index-pattern +stackwatch-logs +${t.cfg.elasticsearch.indices.logs}-\\*$`, 'm'));
    expect(first.stdout).toMatch(/^ {2}created +dashboard +stackwatch-dashboard-alerts +stackwatch: alerts overview$/m);
    expect(first.stdout).toMatch(/^ {2}created +search +stackwatch-request-across-services +stackwatch: one request across services$/m);
    expect(first.stdout).toContain(`Kibana: ${total} imported (${total} created, 0 overwritten), 0 errors.`);
    expect(kibana.requests.at(-1)).toEqual({ path: '/api/saved_objects/_import?overwrite=true', xsrf: 'stackwatch', authorization: `Basic ${Buffer.from('sre:secret').toString('base64')}` });
    // The data views (and the Vega charts) point at this configuration's indices.
    expect(kibana.stored.get('default/index-pattern:stackwatch-logs').attributes.title).toBe(`${t.cfg.elasticsearch.indices.logs}-*`);
    expect(kibana.stored.get('default/index-pattern:stackwatch-dead-letter').attributes.title).toBe(`${t.cfg.elasticsearch.indices.dead_letter}-*`);
    expect(kibana.stored.get('default/visualization:stackwatch-capacity-days-to-full').attributes.visState).toContain(`${t.cfg.elasticsearch.indices.metrics}-*`);

    const again = await run(['setup', '--config', t.configFile, '--kibana', kibana.url]);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/^ {2}overwritten +index-pattern +stackwatch-logs +\S+-logs-\*$/m);
    expect(again.stdout).toContain(`Kibana: ${total} imported (0 created, ${total} overwritten), 0 errors.`);
    expect(again.stdout).toMatch(/^Setup: nothing to change/m);
  });

  it('imports into a space, and fails when Kibana refuses an object, naming it', async () => {
    const kibana = await fakeKibana();
    kibana.reject.add('stackwatch-dashboard-ceph');
    const t = fresh('setup-kibana-space');
    const res = await run(['setup', '--config', t.configFile, '--kibana', kibana.url, '--kibana-space', 'ops']);
    expect(res.code).toBe(1);
    expect(kibana.requests.at(-1)?.path).toBe('/s/ops/api/saved_objects/_import?overwrite=true');
    expect(res.stdout).toMatch(/^ {2}error +dashboard +stackwatch-dashboard-ceph +stackwatch: Ceph health — unknown: simulated failure$/m);
    expect(res.stdout).toMatch(/, 1 error\.$/m);
    expect(res.stderr).toContain('stackwatch setup: Kibana did not import 1 of');

    const down = await run(['setup', '--config', t.configFile, '--kibana', 'http://127.0.0.1:9']);
    expect(down.code).toBe(1);
    expect(down.stderr).toContain('stackwatch setup: cannot reach Kibana at http://127.0.0.1:9');
  });
});
