// The AMQP alerts end to end on the real stack, from real failures: real oslo.messaging processes
// (scripts/amqp-harness/harness.py) against the tests' own real RabbitMQ node log into a directory the real collector tails;
// the real processor runs the rules and sends the alerts through the real Alertmanager to the pager webhook.
//
// 1. RabbitMQ's app stopped for 8 s (`rabbitmqctl stop_app` / `start_app`): nova-compute (RPC server) and
//    nova-api (RPC client) each page exactly once (critical, firing) and are resolved once, with the outage's
//    duration at the pager (endsAt − startsAt) and in the alerts index (alert.duration_s).
// 2. Half-dead connections with heartbeats off (the broken-VNC-console story): nova-api's connections are
//    silently blackholed; its publisher notices and reconnects, its reply consumer never does, and every call
//    times out. Once the minute of grace after the reconnect has passed, the reply timeouts page (severity page,
//    alert group kind reply-path-dead).
//
// RabbitMQ is restored whatever happens (amqp-harness.ts); the host lock keeps other runs from faulting it at the
// same time. Set SW_AMQP_LOG_DIR=DIR to keep the harness logs (DIR/stop-app/, DIR/half-dead-long/), and
// SW_AMQP_HALF_DEAD_S=N to keep the half-dead storm going until N s after the blackhole, even once the page has
// come (test/fixtures/oslo-messaging-real/half-dead-long/ was captured with N = 160).
import { copyFileSync, existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCollector } from '../../collectors/index.ts';
import { openstackLogs } from '../../collectors/openstack-logs.ts';
import { ensureTopics, TopicProducer } from '../../core/kafka.ts';
import { startProcessor, type RunningProcessor } from '../../processors/processor.ts';
import {
  acquireRabbitLock,
  blackholeProxy,
  deleteQueues,
  ensureHarnessInstalled,
  ensureRabbitRunning,
  listQueues,
  osloLineTime,
  rabbitOutage,
  readLines,
  releaseRabbitLock,
  sleep,
  startHarness,
  waitForLine,
  type BlackholeProxy,
  type Harness,
  type HarnessOptions,
} from './amqp-harness.ts';
import { pagedAlerts, testSetup, waitFor, type TestSetup, type WebhookAlert } from './harness.ts';

const RABBIT_LOGGER = String.raw`oslo[._]messaging\._drivers\.impl_rabbit`;
const RECONNECTED = new RegExp(String.raw`INFO ${RABBIT_LOGGER} .*\[[0-9a-f-]{36}\] Reconnected to AMQP server on 127\.0\.0\.1:\d+ via \[amqp\] client`);
const ANSWERED = /INFO amqp_harness\.client \[[^\]]+\] RPC call ping #\d+ to topic \S+ answered by /;
const TIMEOUT = /ERROR amqp_harness\.client \[[^\]]+\] RPC call ping #\d+ .*MessagingTimeout: Timed out waiting for a reply to message ID [0-9a-f]{32}$/;
const LISTENING = /INFO amqp_harness\.server \[-\] RPC server \S+ listening on topic /;

const keepDir = process.env.SW_AMQP_LOG_DIR;
const holdHalfDeadS = Number(process.env.SW_AMQP_HALF_DEAD_S ?? 0);
const run = Date.now().toString(36);
const iso = (ms: number) => new Date(ms).toISOString();
const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

const harnesses: Harness[] = [];
const proxies: BlackholeProxy[] = [];
const pipelines: Pipeline[] = [];
const setups: TestSetup[] = [];
const topics: string[] = [];
let queuesBefore = new Set<string>();

interface Pipeline {
  logs: string;
  stop(): Promise<void>;
}

/** The real collector (tailing <t.dir>/logs/*.log) and processor, in-process, on this test's topics and indices. */
async function startPipeline(t: TestSetup): Promise<Pipeline> {
  const logs = join(t.dir, 'logs');
  mkdirSync(logs, { recursive: true });
  const ctl = new AbortController();
  let processor: RunningProcessor | undefined;
  let producer: TopicProducer | undefined;
  let collecting: Promise<void> = Promise.resolve();
  let stopped = false;
  const p: Pipeline = {
    logs,
    async stop() {
      if (stopped) return;
      stopped = true;
      ctl.abort();
      await collecting;
      await producer?.disconnect().catch(() => {});
      await processor?.stop().catch(() => {});
    },
  };
  pipelines.push(p);
  processor = await startProcessor(t.cfg, { signal: ctl.signal });
  await ensureTopics(t.cfg.kafka, [t.cfg.kafka.topics.logs]);
  producer = await TopicProducer.connect(t.cfg.kafka, 'openstack-logs');
  collecting = startCollector(openstackLogs, t.cfg.collectors.openstack_logs!, producer, t.cfg.kafka.topics, ctl.signal).catch(() => {});
  return p;
}

function start(o: HarnessOptions): Harness {
  const h = startHarness(o);
  harnesses.push(h);
  return h;
}

/** An RPC server, once its queues are declared (a call sent before that is unroutable and would time out). */
async function startServer(o: HarnessOptions): Promise<Harness> {
  const h = start(o);
  await waitForLine(h.logFile, LISTENING, 30_000);
  return h;
}

function keepLogs(name: string, files: string[]): void {
  if (!keepDir) return;
  const dir = join(keepDir, name);
  mkdirSync(dir, { recursive: true });
  for (const f of files) if (existsSync(f)) copyFileSync(f, join(dir, f.split('/').at(-1)!));
}

async function alertDocs(t: TestSetup): Promise<any[]> {
  const index = `${t.cfg.elasticsearch.indices.alerts}-*`;
  await t.es.indices.refresh({ index, ignore_unavailable: true, allow_no_indices: true });
  const res = await t.es.search({ index, size: 100, ignore_unavailable: true, allow_no_indices: true, query: { match_all: {} } });
  return res.hits.hits.map((h) => h._source as any).filter((d) => d.host?.name === t.host);
}

beforeAll(async () => {
  ensureHarnessInstalled();
  await acquireRabbitLock(); // another run faulting the same RabbitMQ would show up as alerts here
  await ensureRabbitRunning();
  queuesBefore = new Set(await listQueues());
});

afterAll(async () => {
  await Promise.all(harnesses.map((h) => h.stop()));
  await Promise.all(proxies.map((p) => p.close()));
  await Promise.all(pipelines.map((p) => p.stop()));
  await ensureRabbitRunning();
  const ours = (await listQueues()).filter((q) => !queuesBefore.has(q) && (topics.some((t) => q.startsWith(t)) || q.startsWith('reply_')));
  await deleteQueues(ours);
  releaseRabbitLock();
  for (const t of setups) {
    await t.cleanup();
    rmSync(t.dir, { recursive: true, force: true });
  }
}, 120_000);

describe('AMQP alerts from real oslo.messaging failures, through the real pipeline to the pager', () => {
  it('stop_app for 8 s: one incident for both services, paged once and resolved once, with the outage duration', async () => {
    const t = testSetup('amqp-outage');
    setups.push(t);
    const pipe = await startPipeline(t);
    const topic = `swtest-amqp-alerts-${run}-compute`;
    topics.push(topic);
    // As in amqp-real.test.ts: nova-compute answers after 2 s, so calls are in flight when the broker goes;
    // heartbeats on (10 s); nova-api starts with a burst of 4 calls, so its pool holds idle connections too.
    const server = await startServer({
      mode: 'server',
      service: 'nova-compute',
      logFile: join(pipe.logs, 'nova-compute.log'),
      topic,
      serverName: 'compute-1',
      replyDelay: 2,
      heartbeatTimeout: 10,
    });
    const client = start({ mode: 'client', service: 'nova-api', logFile: join(pipe.logs, 'nova-api.log'), topic, callInterval: 1, callTimeout: 5, heartbeatTimeout: 10, burst: 4 });
    await waitForLine(client.logFile, ANSWERED, 30_000);
    await sleep(2_500);
    expect(await pagedAlerts(t.host), 'nothing pages before the outage').toEqual([]);

    const outage = await rabbitOutage(8, 'stop_app');
    const services = ['nova-compute', 'nova-api'];
    // Reconnect (a retry waits up to 4 s) + settle_s (5 s) + a line to let it pass + the incident's hold (cut to
    // 3 s in tests) + Kafka, ES, Alertmanager.
    const paged = await waitFor(
      'a firing and a resolved notification of the outage',
      async () => {
        const a = await pagedAlerts(t.host);
        return a.some((x) => x.status === 'firing') && a.some((x) => x.status === 'resolved') && a;
      },
      60_000,
      250,
    );
    const resolvedAt = Date.now();
    // Nothing more comes: no second outage, no dead-reply-path page for the calls the outage cost.
    await sleep(5_000);
    const all = await pagedAlerts(t.host);
    const report = [`stop_app: RabbitMQ down ${iso(outage.began)} – ${iso(outage.restored)}; resolved at the pager +${secs(resolvedAt - outage.restored)} after start_app returned`];
    expect(all.length, JSON.stringify(all, null, 1)).toBe(2);
    const [firing, resolved] = [all.filter((a) => a.status === 'firing'), all.filter((a) => a.status === 'resolved')];
    expect(firing, 'one firing notification').toHaveLength(1);
    expect(resolved, 'one resolved notification').toHaveLength(1);
    expect(firing[0].labels).toMatchObject({ alertname: 'amqp-connection-lost', severity: 'critical', host: t.host, incident: 'amqp-broker-unreachable' });
    expect(services).toContain(firing[0].labels.service); // the first service to lose the broker
    expect(resolved[0].labels).toEqual(firing[0].labels);
    expect(resolved[0].annotations.incident_services.split(', ').sort(), 'the resolution names both services').toEqual([...services].sort());
    expect(Date.parse(resolved[0].startsAt)).toBe(Date.parse(firing[0].startsAt));
    const started = Date.parse(firing[0].startsAt);
    const ended = Date.parse(resolved[0].endsAt);
    expect(started, 'the incident starts with the outage').toBeGreaterThanOrEqual(outage.began - 1_000);
    expect(started - outage.began).toBeLessThan(6_000);
    const duration = (ended - started) / 1000;
    expect(duration, 'endsAt − startsAt').toBeGreaterThanOrEqual(8);
    expect(duration, 'endsAt − startsAt').toBeLessThanOrEqual(25);
    report.push(
      `incident ${firing[0].labels.alert_id}: startsAt ${firing[0].startsAt} (+${secs(started - outage.began)} after stop_app), endsAt ${resolved[0].endsAt}, ${duration.toFixed(1)} s`,
    );
    expect(paged.every((a) => a.labels.alertname === 'amqp-connection-lost')).toBe(true);

    // The alerts index: the firing and the resolved document of each service's outage, the resolved one with its
    // duration, each naming the incident it is part of.
    const docs = await alertDocs(t);
    expect(docs.length, JSON.stringify(docs.map((d) => [d.service.name, d.alert.status, d.alert.severity]))).toBe(4);
    expect(new Set(docs.map((d) => d.incident?.id))).toEqual(new Set([firing[0].labels.alert_id]));
    for (const service of services) {
      const mine = docs.filter((d) => d.service.name === service && d.rule.id === 'amqp-connection-lost');
      const firingDoc = mine.filter((d) => d.alert.status === 'firing');
      const resolvedDoc = mine.filter((d) => d.alert.status === 'resolved');
      expect(firingDoc, `${service}: firing document`).toHaveLength(1);
      expect(resolvedDoc, `${service}: resolved document`).toHaveLength(1);
      expect(firingDoc[0].alert.severity).toBe('critical');
      expect(resolvedDoc[0].alert.id).toBe(firingDoc[0].alert.id);
      // Within the outage. Not necessarily after the incident's start: the services' alerts come from two files (two
      // partitions, two batches), and one that started a few milliseconds before the alert that opened and paged the
      // incident may arrive after it; the page already sent keeps its startsAt (Alertmanager matches on it).
      expect(Date.parse(resolvedDoc[0].alert.started_at)).toBeGreaterThanOrEqual(outage.began - 1_000);
      expect(Date.parse(resolvedDoc[0].alert.started_at) - outage.began).toBeLessThan(6_000);
      // (Alertmanager writes times without trailing zeros: 22:24:39.53Z for 22:24:39.530Z.)
      expect(Date.parse(resolvedDoc[0].alert.ended_at)).toBeLessThanOrEqual(ended);
      expect(resolvedDoc[0].alert.duration_s).toBeGreaterThanOrEqual(8);
      expect(resolvedDoc[0].alert.duration_s).toBeLessThanOrEqual(25);
      report.push(`${service}: ${resolvedDoc[0].alert.started_at} – ${resolvedDoc[0].alert.ended_at}, ${resolvedDoc[0].alert.duration_s.toFixed(1)} s`);
    }
    // The incidents index: one document, resolved, with both alerts and its timeline.
    const incidents = `${t.cfg.elasticsearch.indices.incidents}-*`;
    await t.es.indices.refresh({ index: incidents });
    const inc = (await t.es.search({ index: incidents, size: 10, query: { match_all: {} } })).hits.hits.map((h) => h._source as any);
    expect(inc.map((d) => [d.incident.id, d.incident.status, d.incident.paged, d.incident.rule])).toEqual([[firing[0].labels.alert_id, 'resolved', true, 'amqp-broker-unreachable']]);
    expect(inc[0].incident.alert_ids).toHaveLength(2);
    expect(inc[0].timeline.map((e: { what: string }) => e.what).join('\n')).toMatch(/opened by amqp-connection-lost[^]*joined[^]*resolved$/);

    await Promise.all([server.stop(), client.stop()]);
    keepLogs('stop-app', [server.logFile, client.logFile]);
    await pipe.stop();
    console.log(report.join('\n'));
  }, 120_000);

  it(
    'half-dead connections with heartbeats off: the reply-timeout storm pages once the reconnect grace is over',
    async () => {
      const t = testSetup('amqp-reply');
      setups.push(t);
      const pipe = await startPipeline(t);
      const topic = `swtest-amqp-alerts-${run}-console`;
      topics.push(topic);
      const proxy = await blackholeProxy();
      proxies.push(proxy);
      // As the half-dead case of amqp-real.test.ts: nova-compute straight to RabbitMQ, nova-api through the proxy
      // with heartbeat_timeout_threshold = 0 (the default configuration of the story).
      const server = await startServer({ mode: 'server', service: 'nova-compute', logFile: join(pipe.logs, 'nova-compute.log'), topic, serverName: 'compute-1' });
      const client = start({
        mode: 'client',
        service: 'nova-api',
        logFile: join(pipe.logs, 'nova-api.log'),
        topic,
        transportUrl: proxy.url,
        heartbeatTimeout: 0,
        callInterval: 1,
        callTimeout: 3,
        extraArgs: ['--stop-grace', '2'],
      });
      await waitForLine(client.logFile, ANSWERED, 30_000);
      await sleep(1_500);
      const silenced = Date.now();
      expect(proxy.blackhole()).toBeGreaterThanOrEqual(2); // at least the reply consumer and a sender

      const isPage = (a: WebhookAlert) => a.labels.service === 'nova-api' && a.labels.severity === 'page' && a.status === 'firing';
      // Publisher reconnect ≈ +5 s, 60 s of grace, then 5 more timeouts: ≈ +70 s. Bounded at +115 s.
      const page = await waitFor('the reply-path page for nova-api', async () => (await pagedAlerts(t.host)).find(isPage), 115_000, 500);
      const pagedAt = Date.now();
      if (holdHalfDeadS > 0) await sleep(Math.max(0, silenced + holdHalfDeadS * 1000 - Date.now()));
      await sleep(3_000); // nothing resolves it while the storm goes on
      const all = await pagedAlerts(t.host);
      await Promise.all([server.stop(), client.stop()]);
      keepLogs('half-dead-long', [client.logFile, server.logFile]);

      expect(page.labels).toMatchObject({ alertname: 'amqp-connection-lost', severity: 'page', host: t.host, service: 'nova-api' });
      expect(page.annotations.summary).toMatch(/reply timeouts/);
      expect(page.annotations.summary).toMatch(/reply consumer/);
      expect(
        all.filter((a) => a.labels.severity === 'page'),
        'one page notification, not resolved',
      ).toEqual([page]);
      expect(
        all.filter((a) => a.labels.service === 'nova-compute'),
        'the server noticed nothing',
      ).toEqual([]);

      const lines = readLines(client.logFile);
      expect(
        lines.filter((l) => ANSWERED.test(l) && osloLineTime(l) > silenced + 50),
        'nova-api never gets a reply again',
      ).toEqual([]);
      const reconnects = lines.filter((l) => RECONNECTED.test(l) && osloLineTime(l) > silenced);
      const lastReconnect = reconnects.length > 0 ? osloLineTime(reconnects.at(-1)!) : silenced;
      const started = Date.parse(page.startsAt);
      // The calls of the publisher's own short outage time out within the grace minute: they do not page.
      expect(started - lastReconnect, 'no page within the grace after the reconnect').toBeGreaterThanOrEqual(60_000);
      expect(started - lastReconnect, 'the page comes once timeouts keep coming after the grace').toBeLessThan(90_000);
      const timeouts = lines.filter((l) => TIMEOUT.test(l) && osloLineTime(l) > silenced);

      // The index has the page as its own alert (group kind reply-path-dead) next to any outage of the publisher.
      const docs = await alertDocs(t);
      const pageDocs = docs.filter((d) => d.alert.severity === 'page');
      expect(pageDocs.map((d) => [d.rule.id, d.alert.status, d.service.name, d.alert.group?.kind])).toEqual([['amqp-connection-lost', 'firing', 'nova-api', 'reply-path-dead']]);
      await pipe.stop();
      console.log(
        `half-dead: blackhole ${iso(silenced)}; nova-api ${reconnects.length} Reconnected after it (last +${secs(lastReconnect - silenced)}), ` +
          `${timeouts.length} reply timeouts; page startsAt ${page.startsAt} (+${secs(started - silenced)} after the blackhole, ` +
          `+${secs(started - lastReconnect)} after the last reconnect), at the pager +${secs(pagedAt - silenced)}; ` +
          `other notifications: ${JSON.stringify(all.filter((a) => a !== page).map((a) => [a.labels.service, a.labels.severity, a.status]))}`,
      );
    },
    Math.max(170_000, (holdHalfDeadS + 60) * 1000),
  );
});
