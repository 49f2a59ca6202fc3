// The scene of the processor-restart tests (amqp-restart, processor-handover): an oslo.messaging RPC server
// (nova-compute) and client (nova-api, a call a second) against the local RabbitMQ, the real collector tailing their
// logs into the test's Kafka topics, and `stackwatch run --role processor` child processes, which the tests kill
// and start again. Checkpoints twice a second (on by default; the state topic is the test's own: harness.ts).
// Registers its own beforeAll and afterAll: RabbitMQ's lock taken and released, the harnesses, the collector and
// the processors stopped, the queues it made deleted, RabbitMQ running again whatever the test did.
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect } from 'vitest';
import { startCollector } from '../../collectors/index.ts';
import { openstackLogs } from '../../collectors/openstack-logs.ts';
import { TopicProducer } from '../../core/kafka.ts';
import {
  acquireRabbitLock,
  deleteQueues,
  ensureHarnessInstalled,
  ensureRabbitRunning,
  listQueues,
  releaseRabbitLock,
  sleep,
  startHarness,
  waitForLine,
  type Harness,
} from './amqp-harness.ts';
import { pagedAlerts, ruleAlerts, stackwatch, testSetup, type Cli, type TestSetup, type WebhookAlert } from './harness.ts';

const ANSWERED = /INFO amqp_harness\.client \[[^\]]+\] RPC call ping #\d+ to topic \S+ answered by /;
const LISTENING = /INFO amqp_harness\.server \[-\] RPC server \S+ listening on topic /;

export interface AmqpScene {
  /** The test's configuration (set in beforeAll). */
  readonly t: TestSetup;
  /** A processor of the test's configuration, its log at info; `env` adds to its environment. */
  startProcessor(env?: Record<string, string>): Cli;
  /** The collector, then the RPC server and the client, once the client's calls are answered. */
  startServices(): Promise<void>;
  /** The outage that began at `began`, as the pager and the alerts index hold it: one firing and one resolved
   * notification, the resolution with the firing's labels and start (within 10 s of the outage's); one firing and
   * one resolved transition of each service's alert. Returns the resolution. */
  expectOneOutage(firing: WebhookAlert, began: number): Promise<WebhookAlert>;
}

/** `name`: the test's (its topics, group, indices and queues are named after it); `configure` edits the
 * configuration after the scene's own settings; `prepare` runs once the configuration is written. */
export function amqpScene(name: string, configure: (raw: any) => void = () => {}, prepare: (t: TestSetup) => Promise<void> = async () => {}): AmqpScene {
  const run = Date.now().toString(36);
  const queue = `swtest-${name}-${run}`;
  const harnesses: Harness[] = [];
  const processors: Cli[] = [];
  const ctl = new AbortController();
  let t: TestSetup | undefined;
  let queuesBefore = new Set<string>();
  let producer: TopicProducer | undefined;
  let collecting: Promise<void> = Promise.resolve();

  beforeAll(async () => {
    ensureHarnessInstalled();
    await acquireRabbitLock();
    await ensureRabbitRunning();
    queuesBefore = new Set(await listQueues());
    t = testSetup(name, (raw) => {
      raw.processor.checkpoint = { ...raw.processor.checkpoint, enabled: true, interval_ms: 500 };
      configure(raw);
    });
    mkdirSync(join(t.dir, 'logs'), { recursive: true });
    await prepare(t);
  }, 120_000);

  afterAll(async () => {
    await Promise.all(harnesses.map((h) => h.stop()));
    ctl.abort();
    await collecting;
    await producer?.disconnect().catch(() => {});
    for (const p of processors) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGTERM');
    await Promise.all(processors.map((p) => p.exited));
    await ensureRabbitRunning();
    await deleteQueues((await listQueues()).filter((q) => !queuesBefore.has(q) && (q.startsWith(queue) || q.startsWith('reply_'))));
    releaseRabbitLock();
    if (t) {
      await t.cleanup();
      rmSync(t.dir, { recursive: true, force: true });
    }
  }, 120_000);

  const setup = (): TestSetup => {
    if (!t) throw new Error(`${name}: the scene is set up in beforeAll`);
    return t;
  };
  return {
    get t() {
      return setup();
    },
    startProcessor(env = {}) {
      const p = stackwatch(['run', '--role', 'processor', '--config', setup().configFile], { STACKWATCH_LOG_LEVEL: 'info', ...env });
      processors.push(p);
      return p;
    },
    async startServices() {
      const cfg = setup().cfg;
      producer = await TopicProducer.connect(cfg.kafka, 'openstack-logs');
      collecting = startCollector(openstackLogs, cfg.collectors.openstack_logs!, producer, cfg.kafka.topics, ctl.signal).catch(() => {});
      const logs = join(setup().dir, 'logs');
      const topic = `${queue}-compute`;
      const server = startHarness({ mode: 'server', service: 'nova-compute', logFile: join(logs, 'nova-compute.log'), topic, serverName: 'compute-1', heartbeatTimeout: 10 });
      harnesses.push(server);
      await waitForLine(server.logFile, LISTENING, 30_000);
      const client = startHarness({ mode: 'client', service: 'nova-api', logFile: join(logs, 'nova-api.log'), topic, callInterval: 1, callTimeout: 5, heartbeatTimeout: 10 });
      harnesses.push(client);
      await waitForLine(client.logFile, ANSWERED, 30_000);
      await sleep(2_000);
    },
    async expectOneOutage(firing, began) {
      const t = setup();
      const pages = await pagedAlerts(t.host);
      const [firings, resolutions] = (['firing', 'resolved'] as const).map((status) => pages.filter((a) => a.status === status));
      expect(firings, JSON.stringify(pages, null, 1)).toHaveLength(1);
      expect(resolutions, JSON.stringify(pages, null, 1)).toHaveLength(1);
      const resolved = resolutions[0];
      expect(resolved.labels).toEqual(firing.labels);
      expect(Date.parse(resolved.startsAt), 'the resolution keeps the outage start').toBe(Date.parse(firing.startsAt));
      expect(Date.parse(firing.startsAt)).toBeGreaterThanOrEqual(began - 1_000);
      expect(Date.parse(firing.startsAt) - began).toBeLessThan(10_000);
      const docs = await ruleAlerts(t, 'amqp-connection-lost');
      const outageDocs = docs.filter((d) => d.host?.name === t.host && d.alert.group.kind === undefined);
      const byService = new Map<string, string[]>();
      for (const d of outageDocs) byService.set(d.service.name, [...(byService.get(d.service.name) ?? []), d.alert.status].sort());
      expect(Object.fromEntries(byService), JSON.stringify(outageDocs.map((d) => [d.service.name, d.alert.status, d.alert.started_at]))).toEqual({
        'nova-compute': ['firing', 'resolved'],
        'nova-api': ['firing', 'resolved'],
      });
      return resolved;
    },
  };
}
