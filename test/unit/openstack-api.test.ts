// The OpenStack API collector against a local keystone + nova made of nova's and keystone's own API samples
// (test/fixtures/openstack-api/): the schemas take the real shapes and name the field of a bad one; a poll turns
// the answers into one health event and the metric samples; a failed console probe is data, a failed
// authentication a failed poll, a malformed service list a dead letter and never an empty list, a list that times out
// or gets an HTTP error counted and absent, not a dead letter (no data to keep); a 401 renews the token.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { OpenstackApiCollector, openstackApi, type OpenstackApiConfig } from '../../collectors/openstack-api.ts';
import { faultSummary, HypervisorsBody, RemoteConsoleBody, ServicesBody, TokenBody } from '../../collectors/openstack/api.ts';
import { collectorContext } from '../../collectors/emitter.ts';
import { validateConfig } from '../../core/config.ts';
import { OpenstackHealthEvent } from '../../core/events.ts';
import { setLogSink } from '../../core/log.ts';
import { counterValue } from '../../core/metrics.ts';
import { dottedIssue } from '../../core/schema.ts';

const FIX = new URL('../fixtures/openstack-api/', import.meta.url).pathname;
const fixture = (name: string) => JSON.parse(readFileSync(FIX + name, 'utf8'));

/** nova-api's answer when the RPC to nova-compute timed out (nova/api/openstack/wsgi.py, "Unexpected API Error"). */
const MESSAGING_TIMEOUT = {
  computeFault: {
    code: 500,
    message: "Unexpected API Error. Please report this at http://bugs.launchpad.net/nova/ and attach the Nova API log if possible.\n<class 'oslo_messaging.exceptions.MessagingTimeout'>",
  },
};

describe('the schemas take the real samples', () => {
  it('keystone tokens, nova services, hypervisors and consoles', () => {
    expect(TokenBody.parse(fixture('keystone-auth-password-project-scoped.json')).token.catalog.find((c) => c.type === 'compute')).toBeDefined();
    expect(TokenBody.parse(fixture('keystone-auth-application-credential.json')).token.methods).toEqual(['application_credential']);
    const services = ServicesBody.parse(fixture('nova-services-list-v2.53.json')).services;
    expect(services.map((s) => `${s.binary}@${s.host}:${s.state}/${s.status}`)).toContain('nova-scheduler@host2:down/enabled');
    const h = HypervisorsBody.parse(fixture('nova-hypervisors-detail-v2.53.json')).hypervisors[0];
    expect([h.hypervisor_hostname, h.service.host, h.vcpus, h.memory_mb_used]).toEqual(['host2', 'host1', 2, 512]);
    expect(RemoteConsoleBody.parse(fixture('nova-create-vnc-console-v2.6.json')).remote_console.type).toBe('novnc');
  });

  it('a bad answer is named by its field', () => {
    const bad = fixture('nova-services-list-v2.53.json');
    bad.services[2].state = 'sideways';
    const r = ServicesBody.safeParse(bad);
    expect(r.success).toBe(false);
    expect(dottedIssue(r.error!)).toMatch(/^services\.2\.state: /);
  });

  it("nova's fault names the exception class", () => {
    expect(faultSummary(MESSAGING_TIMEOUT.computeFault.message)).toBe('MessagingTimeout');
    expect(faultSummary('Instance abc could not be found.')).toBe('Instance abc could not be found.');
  });
});

// ------------------------------------------------------------------------------------------ a local cloud

interface Cloud {
  server: Server;
  url: string;
  calls: string[];
  auths: number;
  /** Per path prefix, what to answer instead of the sample. */
  override: Map<string, (res: ServerResponse) => void>;
  tokens: Set<string>;
}

let cloud: Cloud;

function tokenBody(base: string) {
  const t = fixture('keystone-auth-password-project-scoped.json');
  t.token.issued_at = new Date().toISOString();
  t.token.expires_at = new Date(Date.now() + 3_600_000).toISOString();
  for (const s of t.token.catalog) if (s.type === 'compute') for (const e of s.endpoints) e.url = `${base}/compute/v2.1`;
  return t;
}

beforeAll(async () => {
  cloud = { server: createServer(), url: '', calls: [], auths: 0, override: new Map(), tokens: new Set() };
  cloud.server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      const path = req.url ?? '';
      cloud.calls.push(`${req.method} ${path}`);
      const send = (status: number, value: unknown, headers: Record<string, string> = {}) => {
        res.writeHead(status, { 'content-type': 'application/json', ...headers });
        res.end(JSON.stringify(value));
      };
      for (const [prefix, answer] of cloud.override) if (path.startsWith(prefix)) return answer(res);
      if (path === '/v3/auth/tokens') {
        const auth = JSON.parse(body).auth;
        if (auth.identity.password?.user.password !== 'pw') return send(401, { error: { code: 401, message: 'The request you have made requires authentication.', title: 'Unauthorized' } });
        const token = `tok-${++cloud.auths}`;
        cloud.tokens.add(token);
        return send(201, tokenBody(cloud.url), { 'x-subject-token': token });
      }
      if (!cloud.tokens.has(String(req.headers['x-auth-token']))) return send(401, { error: { code: 401, message: 'unauthorized' } });
      if (req.headers['openstack-api-version'] !== 'compute 2.53') return send(400, { badRequest: { code: 400, message: 'microversion' } });
      if (path === '/compute/v2.1/os-services') return send(200, fixture('nova-services-list-v2.53.json'));
      if (path === '/compute/v2.1/os-hypervisors/detail') {
        const h = fixture('nova-hypervisors-detail-v2.53.json');
        delete h.hypervisors_links; // one page here
        return send(200, h);
      }
      if (path.startsWith('/compute/v2.1/servers?name=')) return send(200, { servers: [{ id: '9168b536-cd40-4630-b43f-b259807c6e87', name: 'canary', links: [] }] });
      if (path === '/compute/v2.1/servers/9168b536-cd40-4630-b43f-b259807c6e87/remote-consoles') return send(200, fixture('nova-create-vnc-console-v2.6.json'));
      send(404, { itemNotFound: { code: 404, message: `no ${path}` } });
    });
  });
  await new Promise<void>((r) => cloud.server.listen(0, '127.0.0.1', r));
  cloud.url = `http://127.0.0.1:${(cloud.server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((r) => cloud.server.close(() => r())));
beforeEach(() => {
  cloud.calls = [];
  cloud.override.clear();
});

function config(extra: Record<string, unknown> = {}): OpenstackApiConfig {
  const section = { auth_url: `${cloud.url}/v3`, username: 'stackwatch', password: 'pw', project_name: 'admin', cloud_name: 'lab', timeout_ms: 2000, ...extra };
  return validateConfig({ kafka: { brokers: ['127.0.0.1:1'] }, elasticsearch: { url: 'http://127.0.0.1:1' }, collectors: { openstack_api: section } }, 'test', {}).collectors
    .openstack_api as OpenstackApiConfig;
}

const collector = (cfg: OpenstackApiConfig) => new OpenstackApiCollector(cfg, collectorContext('openstack-api-collector', { send: async () => {} }, {}));

describe('a poll', () => {
  it('one health event with the services, hypervisors and probes, and the samples', async () => {
    const c = collector(config({ probes: { console: { server: 'canary' } } }));
    const r = await c.poll();
    await c.close();
    const e = OpenstackHealthEvent.parse(r.health);
    expect(e.cloud.name).toBe('lab');
    expect(e.services).toHaveLength(4);
    expect(e.services!.find((s) => s.host === 'host2' && s.binary === 'nova-scheduler')).toMatchObject({ state: 'down', status: 'enabled', forced_down: false });
    expect(e.hypervisors).toEqual([{ id: '1bb62a04-c576-402c-8147-9e89757a09e3', hostname: 'host2', service_host: 'host1', state: 'up', status: 'enabled' }]);
    expect(e.probes.map((p) => [p.name, p.ok])).toEqual([
      ['token', true],
      ['console', true],
    ]);
    const m = (name: string, labels: Record<string, string> = {}) => r.metrics.find((x) => x.metric.name === name && JSON.stringify(x.labels) === JSON.stringify(labels));
    // Enabled services only: host2's scheduler is down, the disabled ones are down or up on purpose.
    expect(m('openstack.services.down')?.metric.value).toBe(1);
    expect(m('openstack.services.up')?.metric.value).toBe(0);
    expect(m('compute.memory.used', { cloud: 'lab' })).toMatchObject({ host: { name: 'host2' }, metric: { value: 512 * 1024 * 1024, unit: 'bytes' } });
    expect(m('compute.vcpu.total', { cloud: 'lab' })?.metric.value).toBe(2);
    expect(m('openstack.probe.success', { probe: 'console', target: 'canary' })?.metric.value).toBe(1);
    expect(r.records.map((x) => [x.topic, x.messages.length])).toEqual([
      ['health', 1],
      ['metrics', r.metrics.length],
    ]);
    expect(r.rejected).toEqual([]);
  });

  it('a console probe that fails is data: the HTTP status and nova’s fault, and the poll succeeds', async () => {
    cloud.override.set('/compute/v2.1/servers/9168b536-cd40-4630-b43f-b259807c6e87/remote-consoles', (res) => {
      res.writeHead(500, { 'content-type': 'application/json' });
      res.end(JSON.stringify(MESSAGING_TIMEOUT));
    });
    const c = collector(config({ probes: { token: false, console: { server: '9168b536-cd40-4630-b43f-b259807c6e87' } } }));
    const r = await c.poll();
    await c.close();
    expect(r.health.probes).toEqual([expect.objectContaining({ name: 'console', ok: false, error: 'HTTP 500: MessagingTimeout', http_status: 500 })]);
    expect(r.metrics.find((x) => x.metric.name === 'openstack.probe.success')?.metric.value).toBe(0);
    expect(r.health.services).toHaveLength(4);
  });

  it('a console probe slower than a request is reported at a later poll, once', async () => {
    let release!: () => void;
    const answered = new Promise<void>((r) => (release = r));
    cloud.override.set('/compute/v2.1/servers/9168b536-cd40-4630-b43f-b259807c6e87/remote-consoles', (res) => {
      void answered.then(() => {
        res.writeHead(500, { 'content-type': 'application/json' });
        res.end(JSON.stringify(MESSAGING_TIMEOUT));
      });
    });
    const c = collector(config({ timeout_ms: 300, probes: { token: false, console: { server: '9168b536-cd40-4630-b43f-b259807c6e87', timeout_ms: 10_000 } } }));
    const first = await c.poll();
    expect(first.health.probes).toEqual([]);
    expect(first.health.services).toHaveLength(4); // the services stay fresh while the probe hangs
    release();
    await new Promise((r) => setTimeout(r, 100));
    const second = await c.poll();
    const third = await c.poll();
    await c.close();
    // The first probe's result, with its own start time (during the first poll), reported once; the second poll
    // also started and finished a probe of its own.
    const early = (p: { started_at: string }) => p.started_at < second.at;
    expect(second.health.probes.filter(early)).toEqual([expect.objectContaining({ name: 'console', ok: false, error: 'HTTP 500: MessagingTimeout' })]);
    expect(third.health.probes.filter(early)).toEqual([]);
  });

  it('a failed authentication is a failed poll; only a malformed answer of keystone is a dead letter', async () => {
    const c = collector(config({ password: 'wrong' }));
    const err = await c.poll().catch((e: Error) => e);
    expect(String(err)).toMatch(/POST \/v3\/auth\/tokens: HTTP 401 .*requires authentication/);
    expect(c.failed(err)).toEqual([]); // the schedule logs and counts a failed poll; a 401 has no data to keep
    await c.close();
    cloud.override.set('/v3/auth/tokens', (res) => {
      res.writeHead(201, { 'content-type': 'application/json', 'x-subject-token': 'tok-x' });
      res.end('{"token": {"catalog": "not a list"}}');
    });
    const c2 = collector(config());
    const err2 = await c2.poll().catch((e: Error) => e);
    expect(c2.failed(err2)).toEqual([
      expect.objectContaining({ stage: 'auth', letter: expect.objectContaining({ component: 'openstack-api-collector', payload: '{"token": {"catalog": "not a list"}}' }) }),
    ]);
    await c2.close();
  });

  it('a list that times out or gets an HTTP error is counted and absent, and no dead letter', async () => {
    cloud.override.set('/compute/v2.1/os-services', (res) => {
      res.writeHead(500, { 'content-type': 'application/json' });
      res.end(JSON.stringify(MESSAGING_TIMEOUT));
    });
    cloud.override.set('/compute/v2.1/os-hypervisors', () => {}); // never answers
    const stage = (what: string) => counterValue('errors', { component: 'openstack-api-collector', stage: what });
    const before = [await stage('services'), await stage('hypervisors')];
    const restore = setLogSink(() => {});
    const c = collector(config({ timeout_ms: 300 }));
    const r = await c.poll();
    await c.close();
    restore();
    expect(r.health.services).toBeUndefined();
    expect(r.health.hypervisors).toBeUndefined();
    expect(r.rejected).toEqual([]);
    expect(r.deadLetters).toEqual([]);
    expect([await stage('services'), await stage('hypervisors')]).toEqual([before[0] + 1, before[1] + 1]);
  });

  it('a list that timed out is left out of the next poll, then two, four…; an HTTP error is asked again at once', async () => {
    cloud.override.set('/compute/v2.1/os-services', (res) => {
      res.writeHead(500, { 'content-type': 'application/json' });
      res.end(JSON.stringify(MESSAGING_TIMEOUT));
    });
    cloud.override.set('/compute/v2.1/os-hypervisors', () => {}); // never answers
    const skipped = () => counterValue('discarded', { component: 'openstack-api-collector', reason: 'hypervisors_backoff' });
    const before = await skipped();
    const restore = setLogSink(() => {});
    const c = collector(config({ timeout_ms: 200, probes: { token: false } }));
    const asked: boolean[][] = [];
    for (let i = 0; i < 12; i++) {
      if (i === 6) cloud.override.delete('/compute/v2.1/os-hypervisors'); // it would answer from the 7th poll on
      cloud.calls = [];
      const r = await c.poll();
      asked.push([cloud.calls.includes('GET /compute/v2.1/os-services'), cloud.calls.some((x) => x.startsWith('GET /compute/v2.1/os-hypervisors')), r.health.hypervisors !== undefined]);
    }
    await c.close();
    restore();
    // [services asked, hypervisors asked, hypervisors in the event] per poll: timeout, 1 skipped, timeout, 2
    // skipped, timeout, 4 skipped (nova-api would have answered from the 7th), then an answer, which ends the
    // back-off: the next poll asks as usual. The services' HTTP 500 is asked at every poll.
    expect(asked).toEqual([
      [true, true, false],
      [true, false, false],
      [true, true, false],
      [true, false, false],
      [true, false, false],
      [true, true, false],
      [true, false, false],
      [true, false, false],
      [true, false, false],
      [true, false, false],
      [true, true, true],
      [true, true, true],
    ]);
    expect((await skipped()) - before).toBe(7);
  });

  it('a malformed service list is a dead letter and no list at all, never an empty one', async () => {
    cloud.override.set('/compute/v2.1/os-services', (res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"services": [{"host": "h"}]}');
    });
    const restore = setLogSink(() => {});
    const c = collector(config());
    const r = await c.poll();
    await c.close();
    restore();
    expect(r.health.services).toBeUndefined();
    expect(r.health.hypervisors).toHaveLength(1);
    expect(r.rejected).toEqual([
      expect.objectContaining({
        stage: 'services',
        letter: expect.objectContaining({ reason: expect.stringMatching(/^GET compute \/os-services: unexpected answer at services\.0\.id: /) }),
      }),
    ]);
    expect(r.metrics.some((m) => m.metric.name.startsWith('openstack.services.'))).toBe(false);
  });

  it('a 401 from nova renews the token once and asks again', async () => {
    const c = collector(config({ probes: { token: false } }));
    await c.poll();
    const before = cloud.auths;
    cloud.tokens.clear(); // keystone's keys rotated: every token so far is refused
    cloud.calls = [];
    const r = await c.poll();
    await c.close();
    expect(cloud.auths).toBe(before + 1);
    expect(r.health.services).toHaveLength(4);
    expect(cloud.calls.filter((x) => x === 'POST /v3/auth/tokens')).toHaveLength(1);
  });

  it('the cached token is used until it nears its expiry', async () => {
    let now = Date.now();
    const c = new OpenstackApiCollector(config({ probes: { token: false } }), collectorContext('openstack-api-collector', { send: async () => {} }, {}), () => now);
    await c.poll();
    await c.poll();
    const auths = cloud.calls.filter((x) => x === 'POST /v3/auth/tokens').length;
    expect(auths).toBe(1);
    now += 3_600_000 - 60_000; // within the renewal margin of expires_at
    await c.poll();
    await c.close();
    expect(cloud.calls.filter((x) => x === 'POST /v3/auth/tokens').length).toBe(2);
  });
});

describe('its configuration', () => {
  const base = { kafka: { brokers: ['127.0.0.1:1'] }, elasticsearch: { url: 'http://127.0.0.1:1' } };
  it('password or application credential, not both, each complete', () => {
    const v = (section: Record<string, unknown>) => () => validateConfig({ ...base, collectors: { openstack_api: { auth_url: 'http://k:5000/v3', ...section } } }, 'test', {});
    expect(v({ application_credential_id: 'id', application_credential_secret: 's3cret-value' })).not.toThrow();
    expect(v({ application_credential_id: 'id' })).toThrow('collectors.openstack_api.application_credential_secret: expected the secret');
    expect(v({ username: 'u', password: 'p', project_name: 'x', application_credential_id: 'id', application_credential_secret: 's' })).toThrow('not both');
    expect(v({ username: 'u', password: 'p' })).toThrow('collectors.openstack_api.project_name: ');
    expect(v({ username: 'u', password: 'p', project_name: 'x', probes: { consol: {} } })).toThrow('collectors.openstack_api.probes: unknown probe consol');
  });
  it('OS_* variables fill it in, STACKWATCH_OS_* win; the secrets are masked', () => {
    const cfg = validateConfig({ ...base, collectors: { openstack_api: { auth_url: 'http://file:5000/v3', project_name: 'p' } } }, 'test', {
      OS_AUTH_URL: 'http://os:5000/v3',
      STACKWATCH_OS_AUTH_URL: 'http://sw:5000/v3',
      OS_USERNAME: 'admin',
      OS_PASSWORD: 'from-openrc',
    }).collectors.openstack_api!;
    expect([cfg.auth_url, cfg.username, cfg.password]).toEqual(['http://sw:5000/v3', 'admin', 'from-openrc']);
    expect(openstackApi.secrets!(cfg)).toContain('from-openrc');
  });
});
