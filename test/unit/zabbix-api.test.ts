// The Zabbix client's authentication against the rules of each server version (6.0, 6.4, 7.0, 7.2), replayed from
// the answers those versions give (test/fixtures/zabbix-api/README.md). Zabbix 6.0 itself is tested for real in
// test/integration/zabbix-real.test.ts.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { authPlacement, parseVersion, ZabbixApi, ZabbixApiError } from '../../collectors/zabbix/api.ts';

const FIXTURES = new URL('../fixtures/zabbix-api/', import.meta.url);
const errors = JSON.parse(readFileSync(new URL('auth-errors.json', FIXTURES), 'utf8')) as Record<string, { code: number; message: string; data: string }>;
const versions = JSON.parse(readFileSync(new URL('versions.json', FIXTURES), 'utf8')) as Record<string, string>;

interface Seen {
  method: string;
  params: Record<string, unknown>;
  bodyAuth?: string;
  header?: string;
}

/** A Zabbix frontend of one version: the authentication rules of that version, a session that can lapse. */
function fakeZabbix(version: string, opts: { token?: string } = {}) {
  const [major, minor] = parseVersion(version);
  const v = major * 10 + minor;
  const seen: Seen[] = [];
  let sessions = new Set<string>();
  let next = 1;
  const fetchImpl = (async (_url: string, init: RequestInit) => {
    const req = JSON.parse(String(init.body)) as { method: string; params: Record<string, unknown>; auth?: string; id: number };
    const header = (init.headers as Record<string, string>).authorization;
    seen.push({ method: req.method, params: req.params, bodyAuth: req.auth, header });
    const answer = (body: object) => new Response(JSON.stringify({ jsonrpc: '2.0', ...body, id: req.id }), { status: 200 });
    const fail = (name: string) => answer({ error: errors[name] });
    if (v >= 72 && 'auth' in req) return fail('auth_param_removed');
    if (req.method === 'apiinfo.version') return req.auth ? fail('apiinfo_with_auth') : answer({ result: version });
    if (req.method === 'user.login') {
      if (v >= 64 && 'user' in req.params) return fail('user_param_removed');
      if ((req.params.username ?? req.params.user) !== 'Admin' || req.params.password !== 'zabbix') return fail('login_failed');
      const sid = `session${next++}`;
      sessions.add(sid);
      return answer({ result: sid });
    }
    // Bearer is read from 6.4 on; the body's auth until 7.0.
    const credential = (v >= 64 && header?.startsWith('Bearer ') ? header.slice(7) : undefined) ?? (v < 72 ? req.auth : undefined);
    if (!credential) return fail('not_authorised');
    if (credential !== opts.token && !sessions.has(credential)) return fail(credential.startsWith('session') ? 'session_terminated' : 'not_authorised');
    if (req.method === 'user.logout') {
      sessions.delete(credential);
      return answer({ result: true });
    }
    return answer({ result: [{ hostid: '10084', host: 'Zabbix server' }] });
  }) as typeof fetch;
  return { fetchImpl, seen, expireSessions: () => (sessions = new Set()) };
}

const Hosts = z.array(z.object({ hostid: z.string(), host: z.string() }));
const cfg = (extra: object) => ({ url: 'http://zabbix.test/api_jsonrpc.php', request_timeout_ms: 1000, ...extra });

describe('Zabbix API authentication by server version', () => {
  it('places the credential in the body up to 6.2 and in a Bearer header from 6.4', () => {
    expect(authPlacement(parseVersion('6.0.36'))).toBe('body');
    expect(authPlacement(parseVersion('6.2.9'))).toBe('body');
    expect(authPlacement(parseVersion('6.4.21'))).toBe('header');
    expect(authPlacement(parseVersion('7.2.6'))).toBe('header');
  });

  it.each(Object.entries(versions))('%s: logs in with username and password, calls, renews a lapsed session, logs out', async (_, version) => {
    const server = fakeZabbix(version);
    const api = await ZabbixApi.connect(cfg({ username: 'Admin', password: 'zabbix' }), server.fetchImpl);
    expect(api.version).toBe(version);
    expect(await api.call('host.get', {}, Hosts)).toEqual([{ hostid: '10084', host: 'Zabbix server' }]);
    server.expireSessions();
    expect(await api.call('host.get', {}, Hosts)).toHaveLength(1);
    await api.close();

    const methods = server.seen.map((s) => s.method);
    expect(methods).toEqual(['apiinfo.version', 'user.login', 'host.get', 'host.get', 'user.login', 'host.get', 'user.logout']);
    // apiinfo.version and user.login never carry a credential; username, never the removed `user`.
    expect(server.seen.slice(0, 2).every((s) => s.bodyAuth === undefined && s.header === undefined)).toBe(true);
    expect(server.seen[1].params).toEqual({ username: 'Admin', password: 'zabbix' });
    const calls = server.seen.filter((s) => s.method === 'host.get');
    if (authPlacement(parseVersion(version)) === 'body') expect(calls.every((s) => s.bodyAuth?.startsWith('session') && s.header === undefined)).toBe(true);
    else expect(calls.every((s) => s.header?.startsWith('Bearer session') && s.bodyAuth === undefined)).toBe(true);
  });

  it.each(Object.entries(versions))('%s: an API token needs no login and is never sent to apiinfo.version', async (_, version) => {
    const server = fakeZabbix(version, { token: 'a1b2c3' });
    const api = await ZabbixApi.connect(cfg({ token: 'a1b2c3' }), server.fetchImpl);
    await api.call('host.get', {}, Hosts);
    await api.close();
    expect(server.seen.map((s) => s.method)).toEqual(['apiinfo.version', 'host.get']);
  });

  it('a wrong password is an error that says so, and a revoked token is not retried with a login', async () => {
    const server = fakeZabbix('7.2.6', { token: 'good' });
    await expect(ZabbixApi.connect(cfg({ username: 'Admin', password: 'nope' }), server.fetchImpl)).rejects.toThrow(/user\.login: Invalid params\. Incorrect user name or password/);
    const api = await ZabbixApi.connect(cfg({ token: 'revoked' }), server.fetchImpl);
    await expect(api.call('host.get', {}, Hosts)).rejects.toThrow(/Not authorized/);
    expect(server.seen.filter((s) => s.method === 'user.login')).toHaveLength(1);
  });

  it('what zabbix-promise does (user.login with `user`, auth in the body) fails on 6.4 and 7.2 as documented', async () => {
    for (const [version, why] of [
      ['6.4.21', /unexpected parameter "user"/],
      ['7.2.6', /unexpected parameter "auth"/],
    ] as const) {
      const server = fakeZabbix(version);
      const res = await server.fetchImpl('x', {
        method: 'POST',
        headers: {},
        body: JSON.stringify({ jsonrpc: '2.0', method: 'user.login', params: { user: 'Admin', password: 'zabbix' }, auth: null, id: 1 }),
      });
      expect(((await res.json()) as { error: { data: string } }).error.data).toMatch(why);
    }
  });

  it('answers that are not JSON-RPC, HTTP errors and results of the wrong shape are clear errors', async () => {
    const answers: [number, string, RegExp][] = [
      [200, '<html>login page</html>', /not JSON \(is .* the frontend's api_jsonrpc\.php\?\)/],
      [502, 'Bad gateway', /HTTP 502/],
      [200, JSON.stringify({ jsonrpc: '2.0', result: 42, id: 1 }), /apiinfo\.version: unexpected result at \(top level\)/],
      [200, JSON.stringify({ hello: 'world' }), /not a JSON-RPC 2\.0 answer/],
    ];
    for (const [status, body, why] of answers) {
      const fetchImpl = (async () => new Response(body, { status })) as typeof fetch;
      const err = await ZabbixApi.connect(cfg({ token: 't' }), fetchImpl).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ZabbixApiError);
      expect((err as Error).message).toMatch(why);
    }
  });

  it('a server that does not answer in time is an error naming the timeout', async () => {
    const fetchImpl = ((_: string, init: RequestInit) =>
      new Promise((_, reject) => init.signal!.addEventListener('abort', () => reject(new DOMException('aborted', 'AbortError'))))) as typeof fetch;
    await expect(ZabbixApi.connect({ ...cfg({ token: 't' }), request_timeout_ms: 50 }, fetchImpl)).rejects.toThrow(/no answer from .* within 50 ms/);
  });
});
