// A processor killed (SIGKILL) while an AMQP outage is open, and started again: the pager gets exactly one firing
// and one resolved notification of that outage, with its start; the alerts index holds one firing and one resolved
// transition of each service's alert. Issue 15: the detectors' and incidents' state is checkpointed with the offsets
// it reflects (processors/checkpoint.ts, state/store.ts) and restored at start. Without it the new processor learns
// of the outage only from what it replays: the reconnect lines find no open outage, and the page never resolves.
//
// Real parts: oslo.messaging processes (scripts/amqp-harness/) against the local RabbitMQ (its app stopped for
// 40 s), the real collector tailing their logs, `stackwatch run --role processor` as a child process (killed and
// started again), Kafka, Elasticsearch, Alertmanager and the pager webhook.
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCollector } from '../../collectors/index.ts';
import { openstackLogs } from '../../collectors/openstack-logs.ts';
import { ensureTopics, TopicProducer } from '../../core/kafka.ts';
import {
  acquireRabbitLock,
  deleteQueues,
  ensureHarnessInstalled,
  ensureRabbitRunning,
  listQueues,
  rabbitOutage,
  releaseRabbitLock,
  sleep,
  startHarness,
  waitForLine,
  type Harness,
} from './amqp-harness.ts';
import { pagedAlerts, ruleAlerts, stackwatch, stateCli, testSetup, waitFor, type Cli, type TestSetup } from './harness.ts';

const ANSWERED = /INFO amqp_harness\.client \[[^\]]+\] RPC call ping #\d+ to topic \S+ answered by /;
const LISTENING = /INFO amqp_harness\.server \[-\] RPC server \S+ listening on topic /;
const OUTAGE_S = 40;

const run = Date.now().toString(36);
const harnesses: Harness[] = [];
const processors: Cli[] = [];
let t: TestSetup;
let queuesBefore = new Set<string>();
const ctl = new AbortController();
let producer: TopicProducer | undefined;
let collecting: Promise<void> = Promise.resolve();

function startProcessor(): Cli {
  const p = stackwatch(['run', '--role', 'processor', '--config', t.configFile], { STACKWATCH_LOG_LEVEL: 'info' });
  processors.push(p);
  return p;
}

beforeAll(async () => {
  ensureHarnessInstalled();
  await acquireRabbitLock();
  await ensureRabbitRunning();
  queuesBefore = new Set(await listQueues());
  t = testSetup('amqp-restart', (raw) => {
    // Checkpoints twice a second (on by default; the state topic is the test's own: harness.ts).
    raw.processor.checkpoint = { ...raw.processor.checkpoint, enabled: true, interval_ms: 500 };
  });
  mkdirSync(join(t.dir, 'logs'), { recursive: true });
}, 120_000);

afterAll(async () => {
  await Promise.all(harnesses.map((h) => h.stop()));
  ctl.abort();
  await collecting;
  await producer?.disconnect().catch(() => {});
  for (const p of processors) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGTERM');
  await Promise.all(processors.map((p) => p.exited));
  await ensureRabbitRunning();
  const ours = (await listQueues()).filter((q) => !queuesBefore.has(q) && (q.startsWith(`swtest-amqp-restart-${run}`) || q.startsWith('reply_')));
  await deleteQueues(ours);
  releaseRabbitLock();
  if (t) {
    await t.cleanup();
    rmSync(t.dir, { recursive: true, force: true });
  }
}, 120_000);

describe('a processor killed during an AMQP outage', () => {
  it(`SIGKILL while the outage is open, started again: one firing and one resolved notification, one firing and one resolved transition per service`, { timeout: 300_000 }, async () => {
    let processor = startProcessor();
    await ensureTopics(t.cfg.kafka, [t.cfg.kafka.topics.logs]);
    producer = await TopicProducer.connect(t.cfg.kafka, 'openstack-logs');
    collecting = startCollector(openstackLogs, t.cfg.collectors.openstack_logs!, producer, t.cfg.kafka.topics, ctl.signal).catch(() => {});
    const logs = join(t.dir, 'logs');
    const topic = `swtest-amqp-restart-${run}-compute`;
    const server = startHarness({ mode: 'server', service: 'nova-compute', logFile: join(logs, 'nova-compute.log'), topic, serverName: 'compute-1', heartbeatTimeout: 10 });
    harnesses.push(server);
    await waitForLine(server.logFile, LISTENING, 30_000);
    const client = startHarness({ mode: 'client', service: 'nova-api', logFile: join(logs, 'nova-api.log'), topic, callInterval: 1, callTimeout: 5, heartbeatTimeout: 10 });
    harnesses.push(client);
    await waitForLine(client.logFile, ANSWERED, 30_000);
    await sleep(2_000);
    expect(await pagedAlerts(t.host), 'nothing pages before the outage').toEqual([]);

    const outage = rabbitOutage(OUTAGE_S, 'stop_app');
    // The outage paged (so its state is in a checkpoint: pages wait for the save that holds them).
    const firing = await waitFor(
      () => `the outage's firing notification; processor said: ${processor.stderr().slice(-2000)}`,
      async () => (await pagedAlerts(t.host)).find((a) => a.status === 'firing'),
      OUTAGE_S * 1000 - 5_000,
      250,
    );
    processor.child.kill('SIGKILL');
    const killed = await processor.exited;
    expect(killed.signal).toBe('SIGKILL');
    const killedAt = Date.now();
    processor = startProcessor();
    // What the killed processor left, read from Kafka without it: the open incident, paged, its alerts firing.
    const owner = `${t.cfg.kafka.consumer_group}/${t.cfg.processor.checkpoint.instance}`;
    const list = await stateCli(t);
    expect(list).toMatch(new RegExp(`^${owner}  save \\d+ at \\S+, .* part\\(s\\); offsets: ${t.cfg.kafka.topics.logs.replaceAll('.', '\\.')} `, 'm'));
    expect(list).toMatch(/^ {4}rule:amqp-connection-lost +\d/m);
    const detail = await stateCli(t, '--owner', owner);
    expect(detail).toMatch(/incident \S+ amqp-broker-unreachable firing, paged, since /);
    expect(detail).toMatch(/ {4}firing amqp-connection-lost nova-(compute|api) on /);
    const times = await outage;
    expect(times.restored, 'the processor was killed while the outage was open').toBeGreaterThan(killedAt);

    const all = await waitFor(
      () => `the outage's resolved notification; processor said: ${processor.stderr().slice(-3000)}`,
      async () => {
        const a = await pagedAlerts(t.host);
        return a.some((x) => x.status === 'resolved') && a;
      },
      90_000,
      250,
    );
    // Nothing more comes.
    await sleep(5_000);
    const pages = await pagedAlerts(t.host);
    expect(
      pages.filter((a) => a.status === 'firing'),
      JSON.stringify(pages, null, 1),
    ).toHaveLength(1);
    expect(
      pages.filter((a) => a.status === 'resolved'),
      JSON.stringify(pages, null, 1),
    ).toHaveLength(1);
    const resolved = all.find((a) => a.status === 'resolved')!;
    expect(resolved.labels).toEqual(firing.labels);
    expect(Date.parse(resolved.startsAt), 'the resolution keeps the outage start').toBe(Date.parse(firing.startsAt));
    expect(Date.parse(firing.startsAt)).toBeGreaterThanOrEqual(times.began - 1_000);
    expect(Date.parse(firing.startsAt) - times.began).toBeLessThan(10_000);
    // The restarted processor said what it restored.
    expect(processor.stderr()).toMatch(/state checkpoint \S+ \(topic [^)]+\): save \d+: \d+ rule\(s\), [1-9]\d* open incident\(s\)/);

    // The alerts index: for each service, one firing and one resolved transition of its outage's alert.
    const docs = await ruleAlerts(t, 'amqp-connection-lost');
    const outageDocs = docs.filter((d) => d.host?.name === t.host && d.alert.group.kind === undefined);
    const byService = new Map<string, string[]>();
    for (const d of outageDocs) byService.set(d.service.name, [...(byService.get(d.service.name) ?? []), d.alert.status].sort());
    expect(Object.fromEntries(byService), JSON.stringify(outageDocs.map((d) => [d.service.name, d.alert.status, d.alert.started_at]))).toEqual({
      'nova-compute': ['firing', 'resolved'],
      'nova-api': ['firing', 'resolved'],
    });
    console.log(
      `amqp-restart: RabbitMQ down ${new Date(times.began).toISOString()} – ${new Date(times.restored).toISOString()}; killed the processor ${((killedAt - times.began) / 1000).toFixed(1)} s into it; resolved at the pager ${((Date.parse(resolved.endsAt) - times.restored) / 1000).toFixed(1)} s after start_app (endsAt)`,
    );
  });
});
