// The OpenStack APIs stackwatch reads (keystone v3, nova), typed: every response is validated with zod before
// anyone reads it, and every error names the endpoint and the field.
//
// Authentication is keystone v3's POST /v3/auth/tokens, by password (user + project, each with its domain) or by
// application credential (id + secret: no project, the credential is scoped already). The token comes back in the
// X-Subject-Token header and the service catalog in the body; the token is cached and renewed a margin before its
// expires_at, and once on a 401 (revoked, keystone's keys rotated). Endpoints are taken from the catalog by service
// type, interface (public by default) and region.
//
// Requests go through node:http(s) rather than fetch: a private CA file (and `verify: false` for a lab) is an
// agent option there, with no extra dependency. Each request has its own timeout and follows the caller's
// AbortSignal.
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { request as httpsRequest, Agent as HttpsAgent } from 'node:https';
import { z } from 'zod';
import { dottedIssue } from '../../core/schema.ts';

export interface OpenstackApiConfig {
  auth_url: string;
  username?: string;
  password?: string;
  user_domain_name: string;
  project_name?: string;
  project_domain_name: string;
  application_credential_id?: string;
  application_credential_secret?: string;
  region_name?: string;
  interface: 'public' | 'internal' | 'admin';
  verify: boolean;
  /** The CA bundle's PEM text (read at start-up from ca_file). */
  ca?: string;
  /** Each request's own limit (the console probe passes its own, longer one). */
  timeout_ms: number;
}

/** What went wrong, named by the call (`POST /v3/auth/tokens`, `GET compute /os-services`). */
export class OpenstackApiError extends Error {
  constructor(
    message: string,
    /** The HTTP status, when an answer came. */
    readonly status?: number,
    /** The service's own fault message (nova's `computeFault.message`, keystone's `error.message`). */
    readonly fault?: string,
    /** The answer as received, when it was malformed (for the dead-letter topic). */
    readonly payload?: string,
    /** No answer within the timeout. */
    readonly timedOut = false,
  ) {
    super(message);
  }
}

// ------------------------------------------------------------------------------------------ the answers

/** The part of POST /v3/auth/tokens we read: when the token expires, and the catalog. */
export const TokenBody = z.object({
  token: z.object({
    expires_at: z.string().refine((s) => !Number.isNaN(Date.parse(s)), { error: 'expected an ISO 8601 time' }),
    issued_at: z.string().optional(),
    methods: z.array(z.string()).default([]),
    project: z.object({ id: z.string(), name: z.string() }).optional(),
    catalog: z
      .array(
        z.object({
          type: z.string(),
          name: z.string().optional(),
          endpoints: z.array(z.object({ interface: z.string(), region: z.string().nullish(), region_id: z.string().nullish(), url: z.string() })),
        }),
      )
      .default([]),
  }),
});
export type TokenBody = z.infer<typeof TokenBody>;

/** GET /os-services at microversion 2.53+ (ids are UUIDs; `zone` since 2.0, `forced_down` since 2.11). */
export const NovaService = z.object({
  id: z.union([z.string(), z.number()]).transform(String),
  binary: z.string(),
  host: z.string(),
  zone: z.string().nullish(),
  state: z.enum(['up', 'down']),
  status: z.enum(['enabled', 'disabled']),
  updated_at: z.string().nullable(),
  forced_down: z.boolean().default(false),
  disabled_reason: z.string().nullish(),
});
export type NovaService = z.infer<typeof NovaService>;
export const ServicesBody = z.object({ services: z.array(NovaService) });

/** GET /os-hypervisors/detail at 2.53 (the capacity fields were removed at 2.88, hence optional). */
export const NovaHypervisor = z.object({
  id: z.union([z.string(), z.number()]).transform(String),
  hypervisor_hostname: z.string(),
  hypervisor_type: z.string().optional(),
  state: z.enum(['up', 'down']),
  status: z.enum(['enabled', 'disabled']),
  service: z.object({ host: z.string(), id: z.union([z.string(), z.number()]).transform(String).optional() }),
  vcpus: z.number().optional(),
  vcpus_used: z.number().optional(),
  memory_mb: z.number().optional(),
  memory_mb_used: z.number().optional(),
  local_gb: z.number().optional(),
  local_gb_used: z.number().optional(),
  running_vms: z.number().optional(),
});
export type NovaHypervisor = z.infer<typeof NovaHypervisor>;
export const HypervisorsBody = z.object({
  hypervisors: z.array(NovaHypervisor),
  hypervisors_links: z.array(z.object({ href: z.string(), rel: z.string() })).optional(),
});

/** POST /servers/{id}/remote-consoles (2.6+). */
export const RemoteConsoleBody = z.object({ remote_console: z.object({ protocol: z.string(), type: z.string(), url: z.string() }) });

/** GET /servers?name=…: only the ids and names. */
export const ServersBody = z.object({ servers: z.array(z.object({ id: z.string(), name: z.string() })) });

/** nova's fault body `{"computeFault": {"code": 500, "message": …}}` (the key depends on the status:
 * badRequest, itemNotFound, conflictingRequest, …), keystone's `{"error": {"code", "message", "title"}}`. */
const FaultBody = z.record(z.string(), z.object({ message: z.string(), code: z.number().optional() }).loose());

/** The exception class in nova's "Unexpected API Error … <class 'oslo_messaging.exceptions.MessagingTimeout'>",
 * or the first line of its message. No regex: this text comes from the API. */
export function faultSummary(message: string): string {
  const open = message.indexOf("<class '");
  if (open >= 0) {
    const end = message.indexOf("'>", open);
    if (end > open) {
      const cls = message.slice(open + 8, end);
      return cls.slice(cls.lastIndexOf('.') + 1);
    }
  }
  const line = message.split('\n')[0].trim();
  return line.length > 200 ? `${line.slice(0, 200)}…` : line;
}

/** The fault message of an error answer, when it has the usual shape. */
export function faultMessage(text: string): string | undefined {
  try {
    const r = FaultBody.safeParse(JSON.parse(text));
    if (!r.success) return undefined;
    const first = Object.values(r.data)[0];
    return first?.message;
  } catch {
    return undefined;
  }
}

// ------------------------------------------------------------------------------------------ HTTP

export interface HttpAnswer {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
}

/** Answers beyond this are not read (a hypervisor list of thousands of hosts is far below it). */
const MAX_BODY_BYTES = 32 * 1024 * 1024;

/** One request; rejects with an OpenstackApiError naming `what` when no answer comes. */
export function httpCall(
  what: string,
  url: string,
  opts: { method: string; headers: Record<string, string>; body?: string; timeoutMs: number; signal?: AbortSignal; agent?: HttpsAgent },
): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const timeout = AbortSignal.timeout(opts.timeoutMs);
    const signal = opts.signal ? AbortSignal.any([opts.signal, timeout]) : timeout;
    const headers = { ...opts.headers, ...(opts.body !== undefined ? { 'content-length': String(Buffer.byteLength(opts.body)) } : {}) };
    const make = u.protocol === 'https:' ? httpsRequest : httpRequest;
    const req = make(u, { method: opts.method, headers, signal, ...(u.protocol === 'https:' && opts.agent ? { agent: opts.agent } : {}) }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > MAX_BODY_BYTES) {
          req.destroy(new OpenstackApiError(`${what}: more than ${MAX_BODY_BYTES} bytes from ${u.origin}`));
          return;
        }
        chunks.push(c);
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', fail);
    });
    function fail(err: Error) {
      if (err instanceof OpenstackApiError) return reject(err);
      if (timeout.aborted) return reject(new OpenstackApiError(`${what}: no answer from ${u.origin} within ${opts.timeoutMs} ms`, undefined, undefined, undefined, true));
      if (opts.signal?.aborted) return reject(new OpenstackApiError(`${what}: aborted`));
      const code = (err as NodeJS.ErrnoException).code;
      reject(new OpenstackApiError(`${what}: cannot reach ${u.origin}: ${code ? `${code} ` : ''}${err.message}`));
    }
    req.on('error', fail);
    req.end(opts.body);
  });
}

// ------------------------------------------------------------------------------------------ the client

/** Renew a token this long before it expires (a poll must not start with a token that lapses mid-way). */
export const RENEW_MARGIN_MS = 120_000;

interface Session {
  token: string;
  /** When to get a new one (Unix ms, our clock). */
  renewAt: number;
  catalog: TokenBody['token']['catalog'];
}

export interface Timed<T> {
  value: T;
  durationMs: number;
}

/** The compute API microversion asked for: UUID ids for services and hypervisors (2.53) and the hypervisors'
 * capacity fields (removed at 2.88); Zed accepts up to 2.93. */
export const COMPUTE_MICROVERSION = '2.53';

export class OpenstackApi {
  private session?: Session;
  private renewing?: Promise<Timed<Session>>;
  private readonly agent?: HttpsAgent;

  constructor(
    private readonly cfg: OpenstackApiConfig,
    /** The clock (Unix ms), for tests. */
    private readonly now: () => number = Date.now,
  ) {
    if (cfg.ca !== undefined || !cfg.verify) this.agent = new HttpsAgent({ ...(cfg.ca !== undefined ? { ca: cfg.ca } : {}), rejectUnauthorized: cfg.verify });
  }

  /** POST /v3/auth/tokens: a new token and catalog, cached; timed (the `token` probe). */
  async authenticate(signal?: AbortSignal): Promise<Timed<Session>> {
    const what = 'POST /v3/auth/tokens';
    const c = this.cfg;
    const identity = c.application_credential_id
      ? { methods: ['application_credential'], application_credential: { id: c.application_credential_id, secret: c.application_credential_secret } }
      : { methods: ['password'], password: { user: { name: c.username, domain: { name: c.user_domain_name }, password: c.password } } };
    const auth = c.application_credential_id ? { identity } : { identity, scope: { project: { name: c.project_name, domain: { name: c.project_domain_name } } } };
    const started = this.now();
    const res = await httpCall(what, `${trimSlashes(c.auth_url)}/auth/tokens`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify({ auth }),
      timeoutMs: c.timeout_ms,
      signal,
      agent: this.agent,
    });
    const durationMs = this.now() - started;
    if (res.status !== 201 && res.status !== 200) {
      const fault = faultMessage(res.text);
      throw new OpenstackApiError(`${what}: HTTP ${res.status} from ${c.auth_url}${fault ? `: ${fault}` : ''}`, res.status, fault, res.text);
    }
    const token = res.headers['x-subject-token'];
    if (typeof token !== 'string' || token === '') throw new OpenstackApiError(`${what}: no X-Subject-Token header in the answer from ${c.auth_url}`, res.status);
    const body = parseJson(what, res.text, TokenBody);
    // When to renew, on our clock: the token's lifetime by keystone's own two times (no clock skew), less the
    // margin, and at least half of it (a short-lived token is not renewed at every request).
    const expiresAt = Date.parse(body.token.expires_at);
    const issuedAt = body.token.issued_at !== undefined && !Number.isNaN(Date.parse(body.token.issued_at)) ? Date.parse(body.token.issued_at) : started;
    const lifetime = Math.max(0, expiresAt - issuedAt);
    this.session = { token, renewAt: started + Math.max(lifetime - RENEW_MARGIN_MS, lifetime / 2), catalog: body.token.catalog };
    return { value: this.session, durationMs };
  }

  /** The cached token, renewed when it is about to expire; requests made at once share one renewal. */
  async current(signal?: AbortSignal): Promise<Session> {
    if (this.session && this.session.renewAt > this.now()) return this.session;
    this.renewing ??= this.authenticate(signal).finally(() => (this.renewing = undefined));
    return (await this.renewing).value;
  }

  /** The catalog's URL of a service type for the configured interface and region. */
  endpoint(type: string): string {
    const s = this.session;
    if (!s) throw new OpenstackApiError(`catalog: not authenticated`);
    const service = s.catalog.find((e) => e.type === type);
    if (!service) throw new OpenstackApiError(`catalog: no service of type ${type} (types: ${s.catalog.map((e) => e.type).join(', ') || 'none'})`);
    const region = this.cfg.region_name;
    const ep = service.endpoints.find((e) => e.interface === this.cfg.interface && (region === undefined || e.region_id === region || e.region === region));
    if (!ep) {
      throw new OpenstackApiError(
        `catalog: ${type}: no ${this.cfg.interface} endpoint${region ? ` in region ${region}` : ''} (has: ${service.endpoints.map((e) => `${e.interface}@${e.region_id ?? e.region ?? '-'}`).join(', ')})`,
      );
    }
    return trimSlashes(ep.url);
  }

  /** A compute API call, validated; a 401 renews the token once. Returns the value and how long the call took. */
  async compute<S extends z.ZodType>(method: 'GET' | 'POST', path: string, schema: S, opts: { body?: unknown; timeoutMs?: number; signal?: AbortSignal } = {}): Promise<Timed<z.infer<S>>> {
    const what = `${method} compute ${path}`;
    for (let attempt = 0; ; attempt++) {
      const session = await this.current(opts.signal);
      const url = `${this.endpoint('compute')}${path}`;
      const started = this.now();
      const res = await httpCall(what, url, {
        method,
        headers: {
          'x-auth-token': session.token,
          accept: 'application/json',
          'openstack-api-version': `compute ${COMPUTE_MICROVERSION}`,
          'x-openstack-nova-api-version': COMPUTE_MICROVERSION,
          ...(opts.body !== undefined ? { 'content-type': 'application/json' } : {}),
        },
        ...(opts.body !== undefined ? { body: JSON.stringify(opts.body) } : {}),
        timeoutMs: opts.timeoutMs ?? this.cfg.timeout_ms,
        signal: opts.signal,
        agent: this.agent,
      });
      const durationMs = this.now() - started;
      if (res.status === 401 && attempt === 0) {
        // Revoked or expired early: one new token (unless a request beside this one got it already), then again.
        if (this.session?.token === session.token) this.session = undefined;
        continue;
      }
      if (res.status < 200 || res.status >= 300) {
        const fault = faultMessage(res.text);
        throw new OpenstackApiError(`${what}: HTTP ${res.status}${fault ? `: ${faultSummary(fault)}` : ''}`, res.status, fault, res.text);
      }
      return { value: parseJson(what, res.text, schema), durationMs };
    }
  }

  /** Forgets the token (nothing to release server-side: tokens expire by themselves). */
  close(): void {
    this.session = undefined;
    this.agent?.destroy();
  }
}

/** The URL without its trailing slashes (a loop: the catalog's text meets no regex). */
function trimSlashes(url: string): string {
  let end = url.length;
  while (end > 0 && url[end - 1] === '/') end--;
  return url.slice(0, end);
}

function parseJson<S extends z.ZodType>(what: string, text: string, schema: S): z.infer<S> {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new OpenstackApiError(`${what}: the answer is not JSON: ${text.slice(0, 120)}`, undefined, undefined, text);
  }
  const r = schema.safeParse(json);
  if (!r.success) throw new OpenstackApiError(`${what}: unexpected answer at ${dottedIssue(r.error)}`, undefined, undefined, text);
  return r.data;
}
