// The OpenStack API collector: on its schedule, asks the cloud what an operator would ask it, through the one
// client module (collectors/openstack/api.ts), and produces
//   - one OpenstackHealthEvent per poll (topic health): the compute services (host, binary, state, status,
//     forced_down, updated_at), the hypervisors, and the synthetic probes that finished since the last poll — a
//     token issue, and the console URL of a canary server (the broken-VNC-console story seen as a user sees it);
//   - metric samples (topic metrics): services up/down per binary, each probe's latency and success, and the
//     hypervisors' capacity as `compute.<resource>.used` / `.total` pairs (what `stackwatch trends` reads).
// A poll whose authentication fails is a failed poll (logged with the hint and counted): nothing else can be asked.
// A service or hypervisor list that fails is absent from the event, never an empty list, and counted
// (errors{stage="services"}). Only an answer that is not what the service sends (not JSON, a field missing) is a
// dead letter, with the answer as it came: a timeout or an HTTP error has no data to keep, and the dead-letter
// topic is where an SRE looks for what the pipeline could not use. A list that got no answer in time is not asked
// for at the next poll, then the next two, four, up to LIST_BACKOFF_MAX_POLLS (reset by an answer): a slow nova-api
// goes on working on a request its client gave up on, so asking again at every tick piles work onto it faster than
// it finishes (a queue that only grows). A console probe that fails is data: its result, with nova's fault
// (`HTTP 500: MessagingTimeout`) and its time.
//
// The console probe can take minutes when it fails (nova-api waits rpc_response_timeout for a reply that never
// comes, 64 s in the seed's story), so it runs beside the polls: a poll starts one when none is in flight, waits
// for it as long as a normal request may take, and otherwise reports it at the poll after it finished. Services
// stay fresh while a probe hangs, and each probe's result is reported exactly once, with its own start time.
import { z } from 'zod';
import { durationMs, filePath, httpUrl, nonEmpty, readFor, secretOf } from '../core/config-fields.ts';
import { deadLetter, type DeadLetter, type MetricEvent, type OpenstackHealthEvent } from '../core/events.ts';
import { errorText, type Logger } from '../core/log.ts';
import type { ComponentMetrics } from '../core/metrics.ts';
import { readPemFile } from '../core/secrets.ts';
import { defineCollector, type CollectorContext, type Emission, type PollingCollector, type Rejected } from './collector.ts';
import { HypervisorsBody, OpenstackApi, OpenstackApiError, RemoteConsoleBody, ServersBody, ServicesBody, type NovaHypervisor, type NovaService } from './openstack/api.ts';
import { cronSchedule } from './schedule.ts';

export const COMPONENT = 'openstack-api-collector';

const ConsoleProbe = z.strictObject({
  /** The canary server: its name or id (a name is looked up once, and again if the server is gone). */
  server: nonEmpty,
  type: z.enum(['novnc', 'xvpvnc', 'spice-html5', 'serial', 'rdp-html5', 'webmks']).default('novnc'),
  /** Above nova's own wait (rpc_response_timeout, 60 s by default, and nova-api's retries): a probe cut short by
   * our timeout would hide nova's answer (HTTP 500 MessagingTimeout). */
  timeout_ms: durationMs.default(180_000),
});

/** `collectors.openstack_api`. Field names follow the OS_* variables of an openrc file (auth_url, username,
 * project_name, …) so the standard variables can fill them in. */
export const OpenstackApiConfig = z
  .strictObject({
    /** Keystone v3: https://keystone.example.com:5000/v3 */
    auth_url: httpUrl,
    username: nonEmpty.optional(),
    password: nonEmpty.optional(),
    password_file: filePath.optional(),
    user_domain_name: nonEmpty.default('Default'),
    project_name: nonEmpty.optional(),
    project_domain_name: nonEmpty.default('Default'),
    /** An application credential (better: scoped, revocable, no user password on the host). */
    application_credential_id: nonEmpty.optional(),
    application_credential_secret: nonEmpty.optional(),
    application_credential_secret_file: filePath.optional(),
    region_name: nonEmpty.optional(),
    interface: z.enum(['public', 'internal', 'admin']).default('public'),
    /** Check the servers' TLS certificates (false only for a lab). */
    verify: z.boolean().default(true),
    /** A CA bundle (PEM) for the cloud's certificates. */
    ca_file: filePath.optional(),
    /** The cloud's name in events, metrics and alerts (host.name of the service metrics, `cloud` label). */
    cloud_name: nonEmpty.default('openstack'),
    schedule: cronSchedule.default('*/30 * * * * *'),
    /** Each request's limit (the console probe has its own). */
    timeout_ms: durationMs.default(20_000),
    probes: z
      .looseObject({
        /** Issue a new token at every poll, timed (else the cached token is used until it nears its expiry). */
        token: z.boolean().default(true),
        console: ConsoleProbe.optional(),
      })
      // Loose, then checked here: an unknown probe is an error of `probes` itself, naming the probes there are.
      .superRefine((v, ctx) => {
        const unknown = Object.keys(v).filter((k) => k !== 'token' && k !== 'console');
        if (unknown.length > 0) ctx.addIssue({ code: 'custom', message: `unknown probe ${unknown.join(', ')} (the probes: token, console)`, input: v });
      })
      .transform(({ token, console }) => ({ token, ...(console ? { console } : {}) }))
      .default({ token: true }),
  })
  .transform((v, ctx) => {
    const password = secretOf(ctx, 'password', v.password, v.password_file);
    const secret = secretOf(ctx, 'application_credential_secret', v.application_credential_secret, v.application_credential_secret_file);
    const ca = v.ca_file === undefined ? undefined : readFor(ctx, ['ca_file'], v.ca_file, (p) => readPemFile(p, 'certificate'));
    const issue = (path: string, message: string) => ctx.addIssue({ code: 'custom', message, path: [path], input: undefined });
    if (v.application_credential_id !== undefined) {
      if (secret === undefined) issue('application_credential_secret', 'expected the secret of application_credential_id');
      if (v.username !== undefined || password !== undefined) issue('application_credential_id', 'set application_credential_id or username and password, not both');
    } else {
      if (v.username === undefined) issue('username', 'set username, password and project_name, or application_credential_id and its secret');
      else if (password === undefined) issue('password', 'expected the password of username');
      if (v.username !== undefined && v.project_name === undefined) issue('project_name', 'expected the project to scope the token to');
    }
    const { password: _p, password_file: _pf, application_credential_secret: _s, application_credential_secret_file: _sf, ca_file: _c, ...rest } = v;
    return {
      ...rest,
      ...(password !== undefined ? { password } : {}),
      ...(secret !== undefined ? { application_credential_secret: secret } : {}),
      ...(ca !== undefined ? { ca } : {}),
    };
  });
export type OpenstackApiConfig = z.output<typeof OpenstackApiConfig>;

// ------------------------------------------------------------------------------------------ events and samples

type Service = NonNullable<OpenstackHealthEvent['services']>[number];
type Hypervisor = NonNullable<OpenstackHealthEvent['hypervisors']>[number];
type Probe = OpenstackHealthEvent['probes'][number];

export function serviceOf(s: NovaService): Service {
  return {
    id: s.id,
    binary: s.binary,
    host: s.host,
    ...(s.zone ? { zone: s.zone } : {}),
    state: s.state,
    status: s.status,
    forced_down: s.forced_down,
    ...(s.disabled_reason ? { disabled_reason: s.disabled_reason } : {}),
    ...(s.updated_at ? { updated_at: s.updated_at } : {}),
  };
}

export function hypervisorOf(h: NovaHypervisor): Hypervisor {
  return { id: h.id, hostname: h.hypervisor_hostname, service_host: h.service.host, state: h.state, status: h.status };
}

export interface Sample {
  host: string;
  name: string;
  value: number;
  unit?: string;
  labels: Record<string, string>;
}

/** Services up and down per binary (enabled ones: a disabled service is down on purpose), and in all. */
export function serviceSamples(services: NovaService[], cloud: string): Sample[] {
  const counts = new Map<string, { up: number; down: number }>();
  for (const s of services) {
    if (s.status !== 'enabled' || s.forced_down) continue;
    const c = counts.get(s.binary) ?? { up: 0, down: 0 };
    c[s.state]++;
    counts.set(s.binary, c);
  }
  const out: Sample[] = [];
  let up = 0;
  let down = 0;
  for (const [binary, c] of [...counts].sort(([a], [b]) => a.localeCompare(b))) {
    out.push({ host: cloud, name: 'openstack.services.up', value: c.up, labels: { binary } }, { host: cloud, name: 'openstack.services.down', value: c.down, labels: { binary } });
    up += c.up;
    down += c.down;
  }
  out.push({ host: cloud, name: 'openstack.services.up', value: up, labels: {} }, { host: cloud, name: 'openstack.services.down', value: down, labels: {} });
  return out;
}

const MIB = 1024 * 1024;
const GIB = 1024 * MIB;

/** Per hypervisor (host.name = its hostname, as `stackwatch trends --host` expects): vCPUs, memory and local disk
 * used / total where nova reports them (up to microversion 2.87), and the running instances. The `cloud` label
 * keeps these series apart from a Zabbix agent's of the same host. */
export function hypervisorSamples(hypervisors: NovaHypervisor[], cloud: string): Sample[] {
  const out: Sample[] = [];
  for (const h of hypervisors) {
    const host = h.hypervisor_hostname;
    const labels = { cloud };
    const pair = (resource: string, used: number | undefined, total: number | undefined, scale: number, unit?: string) => {
      if (used === undefined || total === undefined) return;
      out.push(
        { host, name: `compute.${resource}.used`, value: used * scale, ...(unit ? { unit } : {}), labels },
        { host, name: `compute.${resource}.total`, value: total * scale, ...(unit ? { unit } : {}), labels },
      );
    };
    pair('vcpu', h.vcpus_used, h.vcpus, 1);
    pair('memory', h.memory_mb_used, h.memory_mb, MIB, 'bytes');
    pair('disk', h.local_gb_used, h.local_gb, GIB, 'bytes');
    if (h.running_vms !== undefined) out.push({ host, name: 'compute.instances.running', value: h.running_vms, labels });
  }
  return out;
}

/** Each probe's latency (seconds) and success (1/0). */
export function probeSamples(probes: Probe[], cloud: string): Sample[] {
  return probes.flatMap((p) => {
    const labels = { probe: p.name, ...(p.target ? { target: p.target } : {}) };
    return [
      { host: cloud, name: 'openstack.probe.latency', value: p.duration_s, unit: 's', labels },
      { host: cloud, name: 'openstack.probe.success', value: p.ok ? 1 : 0, labels },
    ];
  });
}

export function metricEvents(samples: Sample[], at: string): MetricEvent[] {
  return samples.map((s) => ({
    v: 1,
    '@timestamp': at,
    source: 'openstack',
    host: { name: s.host },
    metric: { name: s.name, value: s.value, ...(s.unit ? { unit: s.unit } : {}) },
    labels: s.labels,
  }));
}

// ------------------------------------------------------------------------------------------ the collector

/** What one poll produced. */
export interface PollResult extends Emission {
  at: string;
  health: OpenstackHealthEvent;
  metrics: MetricEvent[];
  deadLetters: DeadLetter[];
}

const HINTS = {
  auth: 'check collectors.openstack_api: auth_url (keystone v3, ending in /v3), the user and project and their domains, or the application credential; and that keystone answers from this host',
  list: 'the compute API refused or did not answer: check nova-api, the catalog endpoint (interface, region_name) and that the user has the admin role (os-services and os-hypervisors are admin-only by default)',
};

/** The most polls a list that timed out is left out of (doubling from one at each timeout in a row). */
export const LIST_BACKOFF_MAX_POLLS = 8;

const secondsSince = (startMs: number, nowMs: number) => Math.max(0, nowMs - startMs) / 1000;

/** An answer that is not what the service sends (not JSON, a field missing or of another type): the failures
 * whose data goes to the dead-letter topic. A timeout, an unreachable service or an HTTP error is not: it has no
 * data of the source's to keep. */
export function malformedAnswer(err: unknown): err is OpenstackApiError & { payload: string } {
  return err instanceof OpenstackApiError && err.payload !== undefined && err.status === undefined;
}

/** The error of a failed probe, short enough for a page: `HTTP 500: MessagingTimeout`. */
export function probeError(err: unknown): { error: string; http_status?: number } {
  if (err instanceof OpenstackApiError) {
    if (err.status !== undefined) {
      const text = err.message.slice(err.message.indexOf('HTTP '));
      return { error: text, http_status: err.status };
    }
    return { error: err.message };
  }
  return { error: errorText(err) };
}

export class OpenstackApiCollector implements PollingCollector<PollResult> {
  readonly schedule: string;
  readonly hint = HINTS.auth;
  private readonly log: Logger;
  private readonly metrics: ComponentMetrics;
  private readonly api: OpenstackApi;
  /** The console probe in flight, and the results not yet reported. */
  private consoleInFlight?: Promise<void>;
  private readonly finished: Probe[] = [];
  /** The canary server's id, once its name is resolved. */
  private serverId?: string;
  /** Stops the console probe in flight when the collector closes. */
  private readonly closing = new AbortController();
  private readonly failing = new Set<string>();
  /** Per list that timed out: the polls it is left out of now, and how many are left. */
  private readonly backoff = new Map<string, { polls: number; left: number }>();

  constructor(
    private readonly cfg: OpenstackApiConfig,
    ctx: CollectorContext,
    private readonly now: () => number = Date.now,
  ) {
    this.log = ctx.log;
    this.metrics = ctx.metrics;
    this.schedule = cfg.schedule;
    this.api = new OpenstackApi(cfg, now);
  }

  /** One poll: a token (timed, or the cached one), then the lists and the console probe at once. An
   * authentication that fails throws (a failed poll). */
  async poll(signal?: AbortSignal): Promise<PollResult> {
    const atMs = this.now();
    const at = new Date(atMs).toISOString();
    const cloud = this.cfg.cloud_name;
    const probes: Probe[] = [];

    // Authentication first: when it fails, the poll fails (nothing else can be asked, and no list may read as empty).
    if (this.cfg.probes.token) {
      const t = await this.api.authenticate(signal);
      probes.push({ name: 'token', ok: true, started_at: at, duration_s: t.durationMs / 1000 });
    } else await this.api.current(signal);
    const console = this.startConsoleProbe();
    const [services, hypervisors] = await Promise.all([
      this.list('services', () => this.api.compute('GET', '/os-services', ServicesBody, { signal }).then((r) => r.value.services), signal),
      this.list('hypervisors', () => this.hypervisors(signal), signal),
      // The probe's result in this poll when it answers as fast as a request should; else at a later poll.
      console && Promise.race([console, new Promise((r) => setTimeout(r, this.cfg.timeout_ms).unref())]),
    ]);
    probes.push(...this.finished.splice(0));
    const result: PollResult = { at, metrics: [], deadLetters: [], records: [], rejected: [], health: { v: 1, kind: 'openstack-health', '@timestamp': at, cloud: { name: cloud }, probes } };
    if (this.cfg.region_name) result.health.cloud.region = this.cfg.region_name;
    if (signal?.aborted) return result;

    const samples: Sample[] = [];
    for (const r of [services, hypervisors]) {
      if (!('failure' in r)) continue;
      const { what, err } = r.failure;
      if (!malformedAnswer(err)) {
        this.metrics.error(what);
        continue;
      }
      const letter = deadLetter(COMPONENT, errorText(err), err.payload);
      result.deadLetters.push(letter);
      result.rejected!.push({ key: cloud, stage: what, letter });
    }
    if ('value' in services) {
      result.health.services = services.value.map(serviceOf);
      samples.push(...serviceSamples(services.value, cloud));
    }
    if ('value' in hypervisors) {
      result.health.hypervisors = hypervisors.value.map(hypervisorOf);
      samples.push(...hypervisorSamples(hypervisors.value, cloud));
    }
    samples.push(...probeSamples(probes, cloud));
    result.metrics = metricEvents(samples, at);
    result.records = [
      { topic: 'health', messages: [{ key: cloud, value: result.health }] },
      { topic: 'metrics', messages: result.metrics.map((m) => ({ key: cloud, value: m })) },
    ];
    return result;
  }

  /** Every hypervisor, following nova's pages (`hypervisors_links` rel=next). */
  private async hypervisors(signal?: AbortSignal): Promise<NovaHypervisor[]> {
    const out: NovaHypervisor[] = [];
    let path = '/os-hypervisors/detail';
    for (let page = 0; page < 1000; page++) {
      const r = (await this.api.compute('GET', path, HypervisorsBody, { signal })).value;
      out.push(...r.hypervisors);
      const next = r.hypervisors_links?.find((l) => l.rel === 'next');
      const last = r.hypervisors.at(-1);
      if (!next || !last) break;
      path = `/os-hypervisors/detail?marker=${encodeURIComponent(last.id)}`;
    }
    return out;
  }

  /** A list read, its failure returned (logged once until it answers again), never thrown; `skipped` while it backs
   * off after a timeout. */
  private async list<T>(what: string, read: () => Promise<T>, signal?: AbortSignal): Promise<{ value: T } | { failure: { what: string; err: unknown } } | { skipped: true }> {
    const b = this.backoff.get(what);
    if (b && b.left > 0) {
      b.left--;
      this.metrics.discarded(`${what}_backoff`);
      return { skipped: true };
    }
    try {
      const value = await read();
      this.backoff.delete(what);
      if (this.failing.delete(what)) this.log.info(`${what}: answering again`, { cloud: this.cfg.cloud_name });
      return { value };
    } catch (err) {
      let backingOff = '';
      if (err instanceof OpenstackApiError && err.timedOut && !signal?.aborted) {
        const polls = Math.min(b ? b.polls * 2 : 1, LIST_BACKOFF_MAX_POLLS);
        this.backoff.set(what, { polls, left: polls });
        backingOff = `; not asked for the next ${polls} poll(s), so as not to queue more work on a slow service`;
      }
      if (!signal?.aborted && !this.failing.has(what)) this.log.warn(`${what}: ${errorText(err)}${backingOff}`, { cloud: this.cfg.cloud_name, hint: HINTS.list });
      this.failing.add(what);
      return { failure: { what, err } };
    }
  }

  /** Starts a console probe unless one is in flight; returns the one in flight. */
  private startConsoleProbe(): Promise<void> | undefined {
    const probe = this.cfg.probes.console;
    if (!probe) return undefined;
    if (this.consoleInFlight) return this.consoleInFlight;
    const startedMs = this.now();
    const started_at = new Date(startedMs).toISOString();
    const run = async (): Promise<Probe> => {
      try {
        const id = await this.canaryId(probe.server, this.closing.signal);
        const t0 = this.now();
        await this.api.compute('POST', `/servers/${encodeURIComponent(id)}/remote-consoles`, RemoteConsoleBody, {
          body: { remote_console: { protocol: protocolOf(probe.type), type: probe.type } },
          timeoutMs: probe.timeout_ms,
          signal: this.closing.signal,
        });
        return { name: 'console', target: probe.server, ok: true, started_at, duration_s: secondsSince(t0, this.now()) };
      } catch (err) {
        if (err instanceof OpenstackApiError && err.status === 404) this.serverId = undefined; // deleted, or re-created under the name
        return { name: 'console', target: probe.server, ok: false, started_at, duration_s: secondsSince(startedMs, this.now()), ...probeError(err) };
      }
    };
    this.consoleInFlight = run().then((r) => {
      if (!this.closing.signal.aborted) this.finished.push(r);
      this.consoleInFlight = undefined;
    });
    return this.consoleInFlight;
  }

  /** The canary's id: itself when it looks like a UUID, else looked up by exact name (nova's `name` filter is a
   * regex, so the match is checked here). */
  private async canaryId(server: string, signal: AbortSignal): Promise<string> {
    if (isUuid(server)) return server;
    if (this.serverId) return this.serverId;
    const pattern = `^${server.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`;
    const r = await this.api.compute('GET', `/servers?name=${encodeURIComponent(pattern)}`, ServersBody, { signal });
    const found = r.value.servers.filter((s) => s.name === server);
    if (found.length !== 1) throw new OpenstackApiError(`console probe: ${found.length === 0 ? 'no server' : `${found.length} servers`} named ${server} in the project`);
    this.serverId = found[0].id;
    return this.serverId;
  }

  async close(): Promise<void> {
    this.closing.abort();
    await this.consoleInFlight;
    this.api.close();
  }

  /** A failed poll (authentication): a dead letter when keystone's answer was malformed; otherwise nothing here (the
   * schedule logs the failed poll with the hint and counts it). */
  failed(err: unknown): Rejected[] {
    if (!malformedAnswer(err)) return [];
    return [{ key: this.cfg.cloud_name, stage: 'auth', letter: deadLetter(COMPONENT, errorText(err), err.payload) }];
  }
}

function protocolOf(type: z.infer<typeof ConsoleProbe>['type']): string {
  return { novnc: 'vnc', xvpvnc: 'vnc', 'spice-html5': 'spice', serial: 'serial', 'rdp-html5': 'rdp', webmks: 'mks' }[type];
}

function isUuid(s: string): boolean {
  if (s.length !== 36) return false;
  for (let i = 0; i < 36; i++) {
    const c = s[i];
    if (i === 8 || i === 13 || i === 18 || i === 23 ? c !== '-' : !/[0-9a-f]/i.test(c)) return false;
  }
  return true;
}

export const openstackApi = defineCollector({
  name: 'openstack_api',
  component: COMPONENT,
  config: OpenstackApiConfig,
  topics: ['metrics', 'health'],
  // The standard OS_* variables of an openrc file fill in a collector the file configures; the STACKWATCH_OS_*
  // ones come later and win over them (the last override of a field is the one kept).
  env: {
    OS_AUTH_URL: 'auth_url',
    OS_USERNAME: 'username',
    OS_PASSWORD: 'password',
    OS_USER_DOMAIN_NAME: 'user_domain_name',
    OS_PROJECT_NAME: 'project_name',
    OS_PROJECT_DOMAIN_NAME: 'project_domain_name',
    OS_APPLICATION_CREDENTIAL_ID: 'application_credential_id',
    OS_APPLICATION_CREDENTIAL_SECRET: 'application_credential_secret',
    OS_REGION_NAME: 'region_name',
    OS_INTERFACE: 'interface',
    OS_CACERT: 'ca_file',
    STACKWATCH_OS_PASSWORD_FILE: 'password_file',
    STACKWATCH_OS_APPLICATION_CREDENTIAL_SECRET_FILE: 'application_credential_secret_file',
    STACKWATCH_OS_AUTH_URL: 'auth_url',
    STACKWATCH_OS_USERNAME: 'username',
    STACKWATCH_OS_PASSWORD: 'password',
    STACKWATCH_OS_PROJECT_NAME: 'project_name',
    STACKWATCH_OS_APPLICATION_CREDENTIAL_ID: 'application_credential_id',
    STACKWATCH_OS_APPLICATION_CREDENTIAL_SECRET: 'application_credential_secret',
    STACKWATCH_OS_REGION_NAME: 'region_name',
  },
  example: () => ({ auth_url: 'http://127.0.0.1:1/v3', username: 'stackwatch', password: 'example-password', project_name: 'service', timeout_ms: 2000 }),
  secrets: (c) => [c.password, c.application_credential_secret],
  create: (config, ctx) => new OpenstackApiCollector(config, ctx),
});
