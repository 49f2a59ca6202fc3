// The Zabbix JSON-RPC API, 6.0 LTS to 7.x, typed: every response is validated with zod before anyone reads it.
//
// Authentication changed twice, so the client asks `apiinfo.version` first (never authenticated) and then:
//   - user.login takes `username` (5.4+; the old `user` was removed in 6.4);
//   - a session id or API token goes in the body's `auth` field up to 7.0, and in an `Authorization: Bearer`
//     header from 6.4; 7.2 no longer accepts `auth` in the body. So: body up to 6.2, header from 6.4.
// The chosen package zabbix-promise (2.0.2) logs in with `user` and always sends body auth: it cannot reach
// 6.4+/7.2+ and is not used (see the README's "Zabbix" section).
import { z } from 'zod';
import { dottedIssue } from '../../core/schema.ts';

export interface ZabbixApiConfig {
  url: string;
  username?: string;
  password?: string;
  token?: string;
  request_timeout_ms: number;
}

export class ZabbixApiError extends Error {
  constructor(
    message: string,
    readonly code?: number,
    readonly data?: string,
    /** The answer as received, when it was malformed (for the dead-letter topic). */
    readonly payload?: string,
  ) {
    super(message);
  }
}

type Fetch = typeof fetch;

const RpcResponse = z.union([
  z.object({ jsonrpc: z.literal('2.0'), result: z.unknown(), id: z.number() }),
  z.object({
    jsonrpc: z.literal('2.0'),
    error: z.object({ code: z.number(), message: z.string(), data: z.string().optional() }),
    id: z.number().nullable(),
  }),
]);

/** "6.0.36" → [6, 0]. */
export function parseVersion(v: string): [number, number] {
  const m = /^(\d+)\.(\d+)/.exec(v);
  if (!m) throw new ZabbixApiError(`apiinfo.version: unexpected version ${JSON.stringify(v)}`);
  return [Number(m[1]), Number(m[2])];
}

export function atLeast(v: [number, number], major: number, minor: number): boolean {
  return v[0] > major || (v[0] === major && v[1] >= minor);
}

/** Where the credential goes for this server version. */
export function authPlacement(v: [number, number]): 'body' | 'header' {
  return atLeast(v, 6, 4) ? 'header' : 'body';
}

/** Session expired or token revoked: worth one new login. */
function isAuthError(e: ZabbixApiError): boolean {
  return /re-login|not authori[sz]ed|session terminated|invalid session/i.test(`${e.message} ${e.data ?? ''}`);
}

export class ZabbixApi {
  private id = 0;
  private session?: string;

  private constructor(
    private readonly cfg: ZabbixApiConfig,
    readonly version: string,
    private readonly fetchImpl: Fetch,
  ) {}

  get versionParts(): [number, number] {
    return parseVersion(this.version);
  }

  /** Asks the version, then logs in (unless a token is configured). */
  static async connect(cfg: ZabbixApiConfig, fetchImpl: Fetch = fetch, signal?: AbortSignal): Promise<ZabbixApi> {
    if (!cfg.token && !cfg.username) throw new ZabbixApiError('collectors.zabbix: set token, or username and password');
    const bare = new ZabbixApi(cfg, '0.0', fetchImpl);
    const version = await bare.rpc('apiinfo.version', {}, z.string(), { auth: false, signal });
    const api = new ZabbixApi(cfg, version, fetchImpl);
    if (!cfg.token) await api.login(signal);
    return api;
  }

  private async login(signal?: AbortSignal): Promise<void> {
    this.session = undefined;
    this.session = await this.rpc('user.login', { username: this.cfg.username, password: this.cfg.password ?? '' }, z.string(), { auth: false, signal });
  }

  /** Calls a method and validates its result; a lapsed session is renewed once. */
  async call<S extends z.ZodType>(method: string, params: unknown, schema: S, signal?: AbortSignal): Promise<z.infer<S>> {
    try {
      return await this.rpc(method, params, schema, { auth: true, signal });
    } catch (err) {
      if (!(err instanceof ZabbixApiError) || this.cfg.token || !isAuthError(err)) throw err;
      await this.login(signal);
      return this.rpc(method, params, schema, { auth: true, signal });
    }
  }

  async close(): Promise<void> {
    if (!this.session) return;
    await this.rpc('user.logout', [], z.unknown(), { auth: true }).catch(() => {});
    this.session = undefined;
  }

  private async rpc<S extends z.ZodType>(method: string, params: unknown, schema: S, opts: { auth: boolean; signal?: AbortSignal }): Promise<z.infer<S>> {
    const credential = opts.auth ? (this.cfg.token ?? this.session) : undefined;
    const placement = authPlacement(parseVersion(this.version));
    const body: Record<string, unknown> = { jsonrpc: '2.0', method, params, id: ++this.id };
    const headers: Record<string, string> = { 'content-type': 'application/json-rpc' };
    if (credential && placement === 'body') body.auth = credential;
    if (credential && placement === 'header') headers.authorization = `Bearer ${credential}`;

    const timeout = AbortSignal.timeout(this.cfg.request_timeout_ms);
    const signal = opts.signal ? AbortSignal.any([opts.signal, timeout]) : timeout;
    let res: Response;
    try {
      res = await this.fetchImpl(this.cfg.url, { method: 'POST', headers, body: JSON.stringify(body), signal });
    } catch (err) {
      if (timeout.aborted) throw new ZabbixApiError(`${method}: no answer from ${this.cfg.url} within ${this.cfg.request_timeout_ms} ms`);
      throw new ZabbixApiError(
        `${method}: cannot reach ${this.cfg.url}: ${(err as Error).cause ? String(((err as Error).cause as Error).message ?? (err as Error).cause) : (err as Error).message}`,
      );
    }
    const text = await res.text();
    if (!res.ok) throw new ZabbixApiError(`${method}: HTTP ${res.status} from ${this.cfg.url}: ${text.slice(0, 200)}`, undefined, undefined, text);
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      throw new ZabbixApiError(`${method}: the answer is not JSON (is ${this.cfg.url} the frontend's api_jsonrpc.php?): ${text.slice(0, 120)}`, undefined, undefined, text);
    }
    const envelope = RpcResponse.safeParse(json);
    if (!envelope.success) throw new ZabbixApiError(`${method}: not a JSON-RPC 2.0 answer: ${text.slice(0, 200)}`, undefined, undefined, text);
    if ('error' in envelope.data) {
      const e = envelope.data.error;
      throw new ZabbixApiError(`${method}: ${e.message}${e.data ? ` ${e.data}` : ''}`, e.code, e.data);
    }
    const result = schema.safeParse(envelope.data.result);
    if (!result.success) throw new ZabbixApiError(`${method}: unexpected result at ${dottedIssue(result.error)}`, undefined, undefined, text);
    return result.data;
  }
}

// The results stackwatch reads, as Zabbix returns them (numbers as strings).
const numeric = z.string().regex(/^-?\d+(\.\d+)?(e[+-]?\d+)?$/i);

export const ZHost = z.object({
  hostid: z.string(),
  host: z.string(),
  name: z.string().optional(),
  status: z.enum(['0', '1']),
  interfaces: z.array(z.object({ ip: z.string(), dns: z.string().optional() })).default([]),
  /** `groups` up to 6.0 (selectGroups), `hostgroups` from 6.2 (selectHostGroups). */
  groups: z.array(z.object({ name: z.string() })).optional(),
  hostgroups: z.array(z.object({ name: z.string() })).optional(),
});
export type ZHost = z.infer<typeof ZHost>;

export const ZItem = z.object({
  itemid: z.string(),
  hostid: z.string(),
  key_: z.string(),
  /** 0 float, 1 character, 2 log, 3 unsigned, 4 text (5 binary in 7.x). */
  value_type: z.enum(['0', '1', '2', '3', '4', '5']),
  units: z.string().default(''),
});
export type ZItem = z.infer<typeof ZItem>;

export const ZHistory = z.object({ itemid: z.string(), clock: numeric, ns: numeric.default('0'), value: z.string() });
export type ZHistory = z.infer<typeof ZHistory>;

export const ZTrend = z.object({ itemid: z.string(), clock: numeric, value_avg: numeric, num: numeric.optional() });
export type ZTrend = z.infer<typeof ZTrend>;

export const ZProblem = z.object({
  eventid: z.string(),
  objectid: z.string(),
  name: z.string(),
  severity: z.enum(['0', '1', '2', '3', '4', '5']),
  clock: numeric,
  r_eventid: z.string().default('0'),
  r_clock: numeric.default('0'),
  acknowledged: z.enum(['0', '1']).default('0'),
  tags: z.array(z.object({ tag: z.string(), value: z.string() })).default([]),
});
export type ZProblem = z.infer<typeof ZProblem>;

export const ZEvent = z.object({
  eventid: z.string(),
  clock: numeric,
  r_eventid: z.string().default('0'),
  hosts: z.array(z.object({ hostid: z.string(), host: z.string() })).default([]),
});
export type ZEvent = z.infer<typeof ZEvent>;
