// The Zabbix collector: on its schedule (node-cron, never two polls at once) it reads, through the Zabbix API,
//   - the host inventory (hosts, their addresses and groups) → inventory events, when a host changes;
//   - the values of the mapped items since the last poll → metric events (history.get, batched by item ids and
//     value type; ranges older than `trends_after_s` from trend.get's hourly averages);
//   - the problems Zabbix has open, and their resolution → problem events.
// A poll returns what it read; the scheduler emits it, and the per-item clocks and the open problems are saved
// only after Kafka has acknowledged the events, so a crash re-reads, never skips; a re-read sample has the same
// document id (the sample's own time), so nothing doubles.
import { z } from 'zod';
import { durationMs, filePath, httpUrl, nonEmpty, positiveInt, secretOf } from '../core/config-fields.ts';
import { deadLetter, type HealthEvent, type InventoryEvent, type MetricEvent, type ZabbixProblemEvent } from '../core/events.ts';
import type { Logger } from '../core/log.ts';
import { dottedIssue } from '../core/schema.ts';
import { defineCollector, type CollectorContext, type Emission, type PollingCollector, type Rejected } from './collector.ts';
import { cronSchedule } from './schedule.ts';
import type { StateFile } from './state.ts';
import { atLeast, ZabbixApi, ZabbixApiError, ZEvent, ZHistory, ZHost, ZItem, ZProblem, ZTrend, type ZabbixApiConfig } from './zabbix/api.ts';

export const COMPONENT = 'zabbix-collector';

/** How a Zabbix item key becomes a metric: `key` is a glob over item keys (`*` any text); the first mapping
 * that matches an item wins. */
export const ItemMapping = z.strictObject({
  key: z.string().min(1),
  /** The metric name; `{key}` keeps the item key itself (for items created under stackwatch's names). */
  metric: z.string().regex(/^(?:\{key\}|[a-z0-9_]+(?:\.[a-z0-9_]+)+)$/, { error: 'expected a dotted metric name like db.replication.seconds_behind_master, or {key}' }),
  unit: nonEmpty.optional(),
  /** Multiply the value (e.g. 1024 for KiB → bytes). */
  scale: z.number().positive().default(1),
  /** Labels of the samples, with `{1}`, `{2}` … for the key's parameters: { fs: "{1}" }. */
  labels: z.record(z.string(), z.string()).default({}),
});
export type ItemMapping = z.infer<typeof ItemMapping>;

/** `collectors.zabbix`. */
export const ZabbixConfig = z
  .strictObject({
    /** The frontend's JSON-RPC endpoint, …/api_jsonrpc.php. */
    url: httpUrl,
    /** user.login; or an API token (Zabbix 5.4+), better: it needs no session. */
    username: nonEmpty.optional(),
    password: nonEmpty.optional(),
    password_file: filePath.optional(),
    token: nonEmpty.optional(),
    token_file: filePath.optional(),
    schedule: cronSchedule.default('*/30 * * * * *'),
    /** Only hosts in these host groups (names); absent: every monitored host. */
    host_groups: z.array(z.string().min(1)).optional(),
    /** Item keys to collect and their metric names; the defaults cover replica lag, Galera and capacity. */
    items: z.array(ItemMapping).optional(),
    /** On the first poll, read this far back (seconds); older than `trends_after_s` is read from trends. */
    backfill_s: positiveInt.default(600),
    /** Ranges older than this (seconds) are read from trends (hourly averages) instead of history. */
    trends_after_s: positiveInt.default(86_400),
    /** Item ids per history.get call. */
    batch_items: positiveInt.default(1000),
    request_timeout_ms: durationMs.default(30_000),
    checkpoint_dir: z.string().min(1).default('/var/lib/stackwatch'),
  })
  .transform((v, ctx) => {
    const password = secretOf(ctx, 'password', v.password, v.password_file);
    const token = secretOf(ctx, 'token', v.token, v.token_file);
    const { password: _p, token: _t, ...rest } = v;
    return { ...rest, ...(password !== undefined ? { password } : {}), ...(token !== undefined ? { token } : {}) };
  });
export type ZabbixConfig = z.output<typeof ZabbixConfig>;

/** Item keys stackwatch reads when the configuration names none: replica lag from Zabbix's "MySQL by Zabbix
 * agent 2" template, filesystem capacity from "Linux by Zabbix agent", and items created under stackwatch's
 * own names (db.*, compute.*: trapper items, UserParameters, calculated items). */
export const DEFAULT_ITEMS: ItemMapping[] = [
  { key: 'mysql.replication.seconds_behind_master[*]', metric: 'db.replication.seconds_behind_master', unit: 's', scale: 1, labels: { master_host: '{1}' } },
  { key: 'vfs.fs.size[*,total]', metric: 'compute.disk.total', unit: 'bytes', scale: 1, labels: { fs: '{1}' } },
  { key: 'vfs.fs.size[*,used]', metric: 'compute.disk.used', unit: 'bytes', scale: 1, labels: { fs: '{1}' } },
  { key: 'vm.memory.size[total]', metric: 'compute.memory.total', unit: 'bytes', scale: 1, labels: {} },
  { key: 'db.*', metric: '{key}', scale: 1, labels: {} },
  { key: 'compute.*', metric: '{key}', scale: 1, labels: {} },
];

/** The parameters inside an item key's brackets: `vfs.fs.size[/,total]` → ["/", "total"]. Quoted parameters
 * keep their commas. */
export function keyParams(key: string): string[] {
  const open = key.indexOf('[');
  if (open < 0 || !key.endsWith(']')) return [];
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (const ch of key.slice(open + 1, -1)) {
    if (ch === '"') quoted = !quoted;
    else if (ch === ',' && !quoted) {
      out.push(cur.trim());
      cur = '';
    } else cur += ch;
  }
  out.push(cur.trim());
  return out;
}

export interface MappedItem {
  item: ZItem;
  metric: string;
  unit?: string;
  scale: number;
  labels: Record<string, string>;
}

/** The mapping that takes an item, first match wins; undefined: the item is not collected. */
export function mapItem(item: ZItem, mappings: ItemMapping[]): MappedItem | undefined {
  for (const m of mappings) {
    const glob = new RegExp(`^${m.key.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*')}$`);
    if (!glob.test(item.key_)) continue;
    const params = keyParams(item.key_);
    const fill = (s: string) => s.replace(/\{(\d+)\}/g, (_, n: string) => params[Number(n) - 1] ?? '');
    const metric = m.metric === '{key}' ? item.key_ : m.metric;
    if (!/^[a-z0-9_]+(?:\.[a-z0-9_]+)+$/.test(metric)) return undefined; // a key that is no metric name (has brackets)
    return { item, metric, unit: m.unit ?? (item.units || undefined), scale: m.scale, labels: Object.fromEntries(Object.entries(m.labels).map(([k, v]) => [k, fill(v)])) };
  }
  return undefined;
}

const State = z.object({
  v: z.literal(1),
  /** Per item id: the (clock, ns) of the last value sent. */
  items: z.record(z.string(), z.tuple([z.number(), z.number()])),
  /** When the last poll's history read ended (Unix seconds). */
  till: z.number().optional(),
  /** Problems sent as open, not yet as resolved. */
  open: z.record(z.string(), z.object({ host: z.string(), name: z.string(), severity: z.number(), clock: z.number(), tags: z.record(z.string(), z.string()) })),
  /** A fingerprint of each host's inventory as last sent. */
  hosts: z.record(z.string(), z.string()).default({}),
});
type State = z.infer<typeof State>;

/** For tests. */
export interface ZabbixTestHooks {
  /** The API, for tests with recorded responses; default: fetch. */
  fetch?: typeof fetch;
  /** The clock (Unix ms), for tests. */
  now?: () => number;
}

export interface PollSummary {
  hosts: number;
  items: number;
  samples: number;
  problems: number;
  deadLettered: number;
  apiCalls: number;
}

/** One poll's events (the emission) and what it found. */
export type ZabbixPoll = Emission & PollSummary;

const iso = (clock: number, ns = 0) => new Date(clock * 1000 + Math.floor(ns / 1e6)).toISOString();

export class ZabbixCollector implements PollingCollector<ZabbixPoll> {
  readonly schedule: string;
  readonly hint: string;
  private readonly log: Logger;
  private readonly stateFile: StateFile<typeof State>;
  private state: State;
  private api?: ZabbixApi;
  private readonly mappings: ItemMapping[];

  constructor(
    private readonly cfg: ZabbixConfig,
    ctx: CollectorContext,
    private readonly opts: ZabbixTestHooks = {},
  ) {
    this.log = ctx.log;
    this.schedule = cfg.schedule;
    this.hint = `check collectors.zabbix.url (${cfg.url}) and the credentials (STACKWATCH_ZABBIX_TOKEN or STACKWATCH_ZABBIX_USER/PASSWORD)`;
    this.mappings = cfg.items ?? DEFAULT_ITEMS;
    this.stateFile = ctx.state.file(cfg.checkpoint_dir, new URL(cfg.url).host.replace(/[^A-Za-z0-9.-]/g, '_'), State);
    this.state = this.stateFile.load() ?? { v: 1, items: {}, open: {}, hosts: {} };
  }

  private apiConfig(): ZabbixApiConfig {
    return { url: this.cfg.url, username: this.cfg.username, password: this.cfg.password, token: this.cfg.token, request_timeout_ms: this.cfg.request_timeout_ms };
  }

  /** One poll: inventory, item values, problems. Returns the events; the state is saved by the emission's
   * commit, once Kafka has acknowledged them. A malformed answer from Zabbix fails the poll (nothing is saved,
   * the next tick reads the range again). */
  async poll(signal?: AbortSignal): Promise<ZabbixPoll> {
    const api = (this.api ??= await ZabbixApi.connect(this.apiConfig(), this.opts.fetch, signal));
    let apiCalls = 0;
    const call = <S extends z.ZodType>(method: string, params: unknown, schema: S) => {
      apiCalls++;
      return api.call(method, params, schema, signal);
    };
    const dead: ReturnType<typeof deadLetter>[] = [];
    /** Validates a list element by element: a malformed element is dead-lettered, the others go on. */
    const each = <S extends z.ZodType>(list: unknown[], schema: S, what: string): z.infer<S>[] =>
      list.flatMap((el) => {
        const r = schema.safeParse(el);
        if (r.success) return [r.data];
        dead.push(deadLetter(COMPONENT, `${what}: ${dottedIssue(r.error, '(element)')}`, JSON.stringify(el)));
        return [];
      });
    const nowS = Math.floor((this.opts.now?.() ?? Date.now()) / 1000);
    const v = api.versionParts;

    // Hosts: inventory, and the scope of the item and problem reads.
    let groupids: string[] | undefined;
    if (this.cfg.host_groups) {
      const groups = await call('hostgroup.get', { output: ['groupid', 'name'], filter: { name: this.cfg.host_groups } }, z.array(z.object({ groupid: z.string(), name: z.string() })));
      groupids = groups.map((g) => g.groupid);
      if (groupids.length === 0) throw new Error(`collectors.zabbix.host_groups: no host group named ${this.cfg.host_groups.join(', ')} in Zabbix`);
    }
    const hosts = each(
      await call(
        'host.get',
        {
          output: ['hostid', 'host', 'name', 'status'],
          selectInterfaces: ['ip', 'dns'],
          // selectGroups was renamed selectHostGroups in 6.2 (and the old name removed in 7.0).
          ...(atLeast(v, 6, 2) ? { selectHostGroups: ['name'] } : { selectGroups: ['name'] }),
          ...(groupids ? { groupids } : {}),
        },
        z.array(z.unknown()),
      ),
      ZHost,
      'host.get',
    );
    const hostById = new Map(hosts.map((h) => [h.hostid, h]));
    const health: HealthEvent[] = [];
    const seenHosts: Record<string, string> = {};
    for (const h of hosts) {
      const inv: InventoryEvent = {
        v: 1,
        kind: 'inventory',
        '@timestamp': iso(nowS),
        source: 'zabbix',
        host: {
          name: h.host,
          id: h.hostid,
          ip: [...new Set(h.interfaces.map((i) => i.ip).filter((ip) => ip !== ''))],
          groups: (h.hostgroups ?? h.groups ?? []).map((g) => g.name).sort(),
          status: h.status === '0' ? 'enabled' : 'disabled',
        },
      };
      const fingerprint = JSON.stringify(inv.host);
      seenHosts[h.hostid] = fingerprint;
      if (this.state.hosts[h.hostid] !== fingerprint) health.push(inv);
    }

    // Items and their values since the last poll.
    const monitored = hosts.filter((h) => h.status === '0').map((h) => h.hostid);
    const items =
      monitored.length === 0
        ? []
        : each(
            await call(
              'item.get',
              { output: ['itemid', 'hostid', 'key_', 'value_type', 'units'], hostids: monitored, monitored: true, filter: { value_type: ['0', '3'] } },
              z.array(z.unknown()),
            ),
            ZItem,
            'item.get',
          );
    const mapped = items.map((i) => mapItem(i, this.mappings)).filter((m): m is MappedItem => m !== undefined);
    const samples: MetricEvent[] = [];
    const last: State['items'] = {};
    const fallbackFrom = this.state.till !== undefined ? Math.max(this.state.till - 60, nowS - this.cfg.backfill_s) : nowS - this.cfg.backfill_s;
    const from = (m: MappedItem) => this.state.items[m.item.itemid]?.[0] ?? fallbackFrom;
    const trendsBefore = nowS - this.cfg.trends_after_s;

    const emit = (m: MappedItem, clock: number, ns: number, raw: string) => {
      const value = Number(raw) * m.scale;
      if (!Number.isFinite(value)) {
        dead.push(deadLetter(COMPONENT, `item ${m.item.itemid} (${m.item.key_}): value ${JSON.stringify(raw.slice(0, 40))} is not a number`, raw));
        return;
      }
      const host = hostById.get(m.item.hostid)?.host ?? m.item.hostid;
      samples.push({ v: 1, '@timestamp': iso(clock, ns), source: 'zabbix', host: { name: host }, metric: { name: m.metric, value, ...(m.unit ? { unit: m.unit } : {}) }, labels: m.labels });
    };

    // Batches of items of one value type whose ranges start close together (most start at the last poll).
    for (const valueType of ['0', '3']) {
      const ofType = mapped.filter((m) => m.item.value_type === valueType).sort((a, b) => from(a) - from(b));
      for (let i = 0; i < ofType.length; i += this.cfg.batch_items) {
        const batch = ofType.slice(i, i + this.cfg.batch_items);
        const byId = new Map(batch.map((m) => [m.item.itemid, m]));
        const timeFrom = from(batch[0]);
        if (timeFrom < trendsBefore) {
          // The old part from trends (hourly averages), the recent part from history.
          const trends = each(
            await call('trend.get', { output: ['itemid', 'clock', 'value_avg', 'num'], itemids: [...byId.keys()], time_from: timeFrom, time_till: trendsBefore - 1 }, z.array(z.unknown())),
            ZTrend,
            'trend.get',
          );
          for (const t of trends) {
            const m = byId.get(t.itemid);
            const clock = Number(t.clock);
            if (!m || clock < from(m)) continue;
            emit(m, clock, 0, t.value_avg);
          }
        }
        const history = each(
          await call(
            'history.get',
            { output: 'extend', history: Number(valueType), itemids: [...byId.keys()], time_from: Math.max(timeFrom, trendsBefore), time_till: nowS, sortfield: 'clock', sortorder: 'ASC' },
            z.array(z.unknown()),
          ),
          ZHistory,
          'history.get',
        );
        for (const h of history) {
          const m = byId.get(h.itemid);
          if (!m) continue;
          const clock = Number(h.clock);
          const ns = Number(h.ns);
          const seen = last[h.itemid] ?? this.state.items[h.itemid];
          if (seen && (clock < seen[0] || (clock === seen[0] && ns <= seen[1]))) continue; // sent already
          emit(m, clock, ns, h.value);
          last[h.itemid] = [clock, ns];
        }
      }
    }

    // Problems: the open ones, and the resolution of those we sent as open.
    const problems: ZabbixProblemEvent[] = [];
    const open = { ...this.state.open };
    const current =
      monitored.length === 0
        ? []
        : each(
            await call('problem.get', { output: 'extend', selectTags: 'extend', recent: true, hostids: monitored, sortfield: ['eventid'], sortorder: 'ASC' }, z.array(z.unknown())),
            ZProblem,
            'problem.get',
          );
    const unknownHost = current.filter((p) => !open[p.eventid]).map((p) => p.eventid);
    const gone = Object.keys(open).filter((id) => !current.some((p) => p.eventid === id));
    const events =
      unknownHost.length + gone.length === 0
        ? []
        : each(
            await call('event.get', { output: ['eventid', 'clock', 'r_eventid'], eventids: [...unknownHost, ...gone], selectHosts: ['hostid', 'host'] }, z.array(z.unknown())),
            ZEvent,
            'event.get',
          );
    const eventById = new Map(events.map((e) => [e.eventid, e]));
    const problemEvent = (eventid: string, o: State['open'][string], ended?: number): ZabbixProblemEvent => ({
      v: 1,
      kind: 'zabbix-problem',
      '@timestamp': iso(ended ?? o.clock),
      host: { name: o.host },
      problem: {
        eventid,
        name: o.name,
        severity: o.severity,
        status: ended !== undefined ? 'resolved' : 'open',
        started_at: iso(o.clock),
        ...(ended !== undefined ? { ended_at: iso(ended) } : {}),
        acknowledged: false,
      },
      labels: o.tags,
    });
    for (const p of current) {
      const known = open[p.eventid];
      const o = known ?? {
        host: eventById.get(p.eventid)?.hosts[0]?.host ?? 'unknown',
        name: p.name,
        severity: Number(p.severity),
        clock: Number(p.clock),
        tags: Object.fromEntries(p.tags.map((t) => [t.tag, t.value])),
      };
      const resolved = p.r_eventid !== '0';
      if (!known && !resolved) {
        problems.push(problemEvent(p.eventid, o));
        open[p.eventid] = o;
      } else if (known && resolved) {
        problems.push(problemEvent(p.eventid, o, Number(p.r_clock)));
        delete open[p.eventid];
      }
    }
    // Sent as open, no longer listed: resolved long enough ago to have left problem.get, or deleted.
    const resolutions = gone.map((id) => eventById.get(id)?.r_eventid).filter((r): r is string => r !== undefined && r !== '0');
    const rEvents = resolutions.length === 0 ? [] : each(await call('event.get', { output: ['eventid', 'clock'], eventids: resolutions }, z.array(z.unknown())), ZEvent, 'event.get');
    for (const id of gone) {
      const rid = eventById.get(id)?.r_eventid;
      const rclock = rEvents.find((e) => e.eventid === rid)?.clock;
      problems.push(problemEvent(id, open[id], rclock !== undefined ? Number(rclock) : nowS));
      delete open[id];
    }
    health.push(...problems);

    // Into Kafka (acks=all), then the state.
    const state: State = { v: 1, items: { ...this.state.items, ...last }, till: nowS, open, hosts: seenHosts };
    return {
      records: [
        { topic: 'metrics', messages: samples.map((m) => ({ key: m.host.name, value: m })) },
        { topic: 'health', messages: health.map((h) => ({ key: 'host' in h ? h.host.name : 'zabbix', value: h })) },
      ],
      rejected: dead.map((letter) => ({ key: COMPONENT, stage: 'dead_letter', letter })),
      commit: () => {
        if (dead.length > 0) this.log.warn(`${dead.length} malformed Zabbix record(s) sent to the dead-letter topic`, { first_reason: dead[0].reason });
        this.state = state;
        this.stateFile.save(state);
      },
      hosts: hosts.length,
      items: mapped.length,
      samples: samples.length,
      problems: problems.length,
      deadLettered: dead.length,
      apiCalls,
    };
  }

  /** A malformed answer is kept in the dead-letter topic with the reason. */
  failed(err: unknown): Rejected[] {
    if (!(err instanceof ZabbixApiError) || err.payload === undefined) return [];
    return [{ key: COMPONENT, stage: 'dead_letter', letter: deadLetter(COMPONENT, err.message, err.payload) }];
  }

  async close(): Promise<void> {
    await this.api?.close();
    this.api = undefined;
  }
}

export const zabbix = defineCollector({
  name: 'zabbix',
  component: COMPONENT,
  config: ZabbixConfig,
  topics: ['metrics', 'health'],
  // Applied to a collector the file configures (they never switch one on); a `_FILE` variable and its plain twin
  // exclude each other.
  env: {
    STACKWATCH_ZABBIX_PASSWORD_FILE: 'password_file',
    STACKWATCH_ZABBIX_TOKEN_FILE: 'token_file',
    STACKWATCH_ZABBIX_URL: 'url',
    STACKWATCH_ZABBIX_USER: 'username',
    STACKWATCH_ZABBIX_PASSWORD: 'password',
    STACKWATCH_ZABBIX_TOKEN: 'token',
  },
  example: (dir) => ({ url: 'http://127.0.0.1:1/api_jsonrpc.php', token: 'example-api-token', checkpoint_dir: dir }),
  secrets: (c) => [c.password, c.token],
  create: (config, ctx) => new ZabbixCollector(config, ctx),
});
