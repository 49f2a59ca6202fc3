// Real AMQP connection loss: real oslo.messaging (Debian's python3-oslo.messaging, run by
// scripts/amqp-harness/harness.py) against a real RabbitMQ node of the tests' own (scripts/stack.sh's rabbitmq), and real faults:
//
// 1. RabbitMQ's app stopped for 8 s (`rabbitmqctl stop_app` / `start_app`): every connection of an RPC server
//    (nova-compute) and an RPC client (nova-api) logs its loss, its retries and its reconnect; calls in flight
//    time out (their replies died with the broker).
// 2. Half-dead TCP connections (the broken-VNC-console story): the connections of two clients are silently
//    blackholed by a proxy. With heartbeats off (nova-api) the reply consumer never notices: a reply-timeout storm
//    that no reconnect ends. With heartbeats on (nova-novncproxy) the heartbeat thread notices and recovers.
//
// 3. `rabbitmqctl close_all_connections` for 3 s: the broker stays up, clients are kicked and come straight back.
//
// Set SW_AMQP_LOG_DIR=DIR to keep the log files (DIR/stop-app/, DIR/close-connections/, DIR/half-dead/); they are the fixtures in
// test/fixtures/oslo-messaging-real/. RabbitMQ is restored whatever happens (see amqp-harness.ts).
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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
} from './amqp-harness.ts';

// oslo.log's default format: `2026-11-25 21:56:39.056 19593 ERROR oslo.messaging._drivers.impl_rabbit [-] …`
const OSLO_LINE = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \d+ (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+ /;
const RABBIT_LOGGER = String.raw`oslo[._]messaging\._drivers\.impl_rabbit`;
// What oslo.messaging's rabbit driver logs when a connection is lost (14.x templates).
const UNREACHABLE = new RegExp(String.raw`ERROR ${RABBIT_LOGGER} .*AMQP server on 127\.0\.0\.1:\d+ is unreachable: .+\. Trying again in \d+ seconds\.`);
const CONN_FAILED = new RegExp(String.raw`ERROR ${RABBIT_LOGGER} .*Connection failed: .+ \(retrying in [\d.]+ seconds\)`);
const RECOVERABLE = new RegExp(String.raw`INFO ${RABBIT_LOGGER} .*A recoverable connection/channel error occurred, trying to reconnect: `);
const LOSS = [UNREACHABLE, CONN_FAILED, RECOVERABLE];
const RECONNECTED = new RegExp(String.raw`INFO ${RABBIT_LOGGER} .*\[[0-9a-f-]{36}\] Reconnected to AMQP server on 127\.0\.0\.1:\d+ via \[amqp\] client with port \d+\.`);
const FORCED = new RegExp(
  String.raw`ERROR ${RABBIT_LOGGER} .*AMQP server on 127\.0\.0\.1:\d+ is unreachable: \(0, 0\): \(320\) CONNECTION_FORCED - stackwatch amqp-harness outage\. Trying again in \d+ seconds\.`,
);
const HEARTBEATS_MISSED = new RegExp(String.raw`ERROR ${RABBIT_LOGGER} .*is unreachable: Too many heartbeats missed\. Trying again`);
// Logged by the harness client the way a service logs an RPC call that raised (the message is oslo.messaging's).
const TIMEOUT = /ERROR amqp_harness\.client \[[^\]]+\] RPC call ping #\d+ .*MessagingTimeout: Timed out waiting for a reply to message ID [0-9a-f]{32}$/;
const ANSWERED = /INFO amqp_harness\.client \[[^\]]+\] RPC call ping #\d+ to topic \S+ answered by /;

const keepDir = process.env.SW_AMQP_LOG_DIR;
const run = Date.now().toString(36);
let root: string;
const harnesses: Harness[] = [];
const proxies: BlackholeProxy[] = [];
const topics: string[] = [];
let queuesBefore = new Set<string>();

const matching = (file: string, re: RegExp) => readLines(file).filter((l) => re.test(l));
const isLoss = (l: string) => LOSS.some((re) => re.test(l));
const seconds = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

function caseDir(name: string): string {
  const dir = join(root, name);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  return dir;
}

function start(...args: Parameters<typeof startHarness>): Harness {
  const h = startHarness(...args);
  harnesses.push(h);
  return h;
}

/** An RPC server, once its queues are declared (a call sent before that is unroutable and would time out). */
async function startServer(...args: Parameters<typeof startHarness>): Promise<Harness> {
  const h = start(...args);
  await waitForLine(h.logFile, /INFO amqp_harness\.server \[-\] RPC server \S+ listening on topic /, 30_000);
  return h;
}

beforeAll(async () => {
  ensureHarnessInstalled();
  await acquireRabbitLock(); // another run faulting the same RabbitMQ would show up in these logs
  await ensureRabbitRunning();
  root = keepDir ?? mkdtempSync(join(tmpdir(), 'stackwatch-amqp-'));
  queuesBefore = new Set(await listQueues());
});

afterAll(async () => {
  await Promise.all(harnesses.map((h) => h.stop()));
  await Promise.all(proxies.map((p) => p.close()));
  await ensureRabbitRunning();
  // Only what these tests created: their topic queues and their clients' reply queues.
  const ours = (await listQueues()).filter((q) => !queuesBefore.has(q) && (topics.some((t) => q.startsWith(t)) || q.startsWith('reply_')));
  await deleteQueues(ours);
  if (!keepDir && root) rmSync(root, { recursive: true, force: true });
  releaseRabbitLock();
});

describe('real oslo.messaging against a real RabbitMQ', () => {
  it('stop_app for 8 s: both services log the loss, the retries and the reconnect; calls in flight time out', async () => {
    const dir = caseDir('stop-app');
    const topic = `swtest-amqp-${run}-compute`;
    topics.push(topic);
    // nova-compute takes 2 s to answer (as a real console request does), so calls are always in flight.
    // heartbeat_timeout_threshold = 10: the heartbeat thread looks at idle connections every 2.5 s. nova-api starts
    // with a burst of 4 calls, so its pool keeps idle connections that only the heartbeat thread watches.
    const server = await startServer({
      mode: 'server',
      service: 'nova-compute',
      logFile: join(dir, 'nova-compute.log'),
      topic,
      serverName: 'compute-1',
      replyDelay: 2,
      heartbeatTimeout: 10,
    });
    const client = start({ mode: 'client', service: 'nova-api', logFile: join(dir, 'nova-api.log'), topic, callInterval: 1, callTimeout: 5, heartbeatTimeout: 10, burst: 4 });

    await waitForLine(client.logFile, ANSWERED, 30_000);
    await sleep(2_500); // a few calls in flight when the broker goes away
    const t = await rabbitOutage(8, 'stop_app');

    // The client is working again: a call answered after the broker came back.
    const answeredAgain = await waitFor(() => matching(client.logFile, ANSWERED).find((l) => osloLineTime(l) > t.restored), 30_000, 'an answered call after start_app');
    await sleep(6_000); // calls published at the reconnect time out (5 s) or are answered: let them be logged
    await Promise.all([server.stop(), client.stop()]);
    expect((await server.exited).code).toBe(0);
    expect((await client.exited).code).toBe(0);

    const report: string[] = [`outage: stop_app ${seconds(t.down - t.began)}, down for ${seconds(t.restoring - t.began)}, start_app ${seconds(t.restored - t.restoring)}`];
    const reconnectedBy: string[] = [];
    for (const h of [server, client]) {
      const lines = readLines(h.logFile);
      expect(lines.length).toBeGreaterThan(5);
      for (const l of lines) expect(l).toMatch(/^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \d+ \w+ \S+ |$)/);
      expect(lines.filter((l) => OSLO_LINE.test(l)).length).toBeGreaterThan(5);
      // Nothing is lost before the outage; every process loses its connections once it begins.
      const loss = lines.filter(isLoss);
      expect(loss.length, `${h.logFile}: no connection-loss line`).toBeGreaterThan(0);
      const firstLoss = osloLineTime(loss[0]);
      expect(firstLoss).toBeGreaterThanOrEqual(t.began - 50);
      expect(firstLoss - t.down, 'the loss is logged within 5 s of stop_app returning').toBeLessThan(5_000);
      expect(loss.every((l) => osloLineTime(l) <= t.restored + 10_000)).toBe(true);
      // Retries name their wait in whole seconds (rabbit_retry_interval=1, rabbit_retry_backoff=1,
      // rabbit_interval_max=3, which kombu's ensure_connection lets reach 3 + 1).
      expect(lines.some((l) => /Trying again in [1-4] seconds\.|\(retrying in [1-4]\.0 seconds\)/.test(l))).toBe(true);
      // No connection can come back while the app is down.
      const reconnected = lines.filter((l) => RECONNECTED.test(l));
      for (const l of reconnected) expect(osloLineTime(l) < t.down || osloLineTime(l) >= t.restoring - 50, l).toBe(true);
      if (reconnected.length > 0) reconnectedBy.push(h.logFile);
      const firstReconnect = reconnected.find((l) => osloLineTime(l) >= t.restoring);
      report.push(
        `${h.logFile}: first loss +${seconds(firstLoss - t.began)} after stop_app (${loss.length} loss lines: ` +
          `${loss.filter((l) => UNREACHABLE.test(l)).length} unreachable, ${loss.filter((l) => CONN_FAILED.test(l)).length} connection failed, ` +
          `${loss.filter((l) => RECOVERABLE.test(l)).length} recoverable error); ` +
          (firstReconnect ? `Reconnected +${seconds(osloLineTime(firstReconnect) - t.restoring)} after start_app (${reconnected.length} lines)` : 'no Reconnected line'),
      );
    }
    expect(reconnectedBy.length, 'at least one process logs Reconnected').toBeGreaterThan(0);

    // Calls in flight when the broker stopped lost their replies: nova-api logs MessagingTimeout during the outage.
    const timeouts = matching(client.logFile, TIMEOUT);
    const duringOutage = timeouts.filter((l) => osloLineTime(l) >= t.began && osloLineTime(l) <= t.restoring);
    expect(duringOutage.length, 'a reply timeout while RabbitMQ was down').toBeGreaterThan(0);
    expect(matching(client.logFile, ANSWERED).filter((l) => osloLineTime(l) > t.down && osloLineTime(l) < t.restoring)).toEqual([]);
    report.push(
      `nova-api: ${timeouts.length} reply timeouts (${duringOutage.length} during the outage); answered again +${seconds(osloLineTime(answeredAgain) - t.restored)} after start_app returned`,
    );
    console.log(report.join('\n'));
  }, 80_000);

  it('close_all_connections for 3 s: CONNECTION_FORCED, reconnect, no call lost', async () => {
    const dir = caseDir('close-connections');
    const topic = `swtest-amqp-${run}-scheduler`;
    topics.push(topic);
    const server = await startServer({ mode: 'server', service: 'nova-scheduler', logFile: join(dir, 'nova-scheduler.log'), topic, serverName: 'scheduler-1' });
    const client = start({ mode: 'client', service: 'nova-conductor', logFile: join(dir, 'nova-conductor.log'), topic, callInterval: 0.5, callTimeout: 5 });
    await waitForLine(client.logFile, ANSWERED, 30_000);
    const t = await rabbitOutage(3, 'close_connections');
    await waitFor(() => matching(client.logFile, ANSWERED).find((l) => osloLineTime(l) > t.restored + 1_000), 20_000, 'an answered call after the last close');
    await sleep(1_000);
    await Promise.all([server.stop(), client.stop()]);
    for (const h of [server, client]) {
      expect((await h.exited).code).toBe(0);
      const lines = readLines(h.logFile);
      const kicked = lines.filter((l) => FORCED.test(l));
      expect(kicked.length, `${h.logFile}: CONNECTION_FORCED`).toBeGreaterThan(0);
      // Kicked by the first close_all_connections: logged after it began, and soon after it returned (the CLI's own
      // start, an Erlang VM, took over 3 s of the outage's first seconds on a loaded machine).
      expect(osloLineTime(kicked[0])).toBeGreaterThanOrEqual(t.began - 50);
      expect(osloLineTime(kicked[0]) - t.down).toBeLessThan(3_000);
      // The broker stayed up: every connection is back within a second or two of being kicked.
      const last = lines.filter((l) => RECONNECTED.test(l)).at(-1);
      expect(last, `${h.logFile}: Reconnected`).toBeDefined();
      expect(osloLineTime(last!)).toBeGreaterThanOrEqual(osloLineTime(kicked.at(-1)!));
      expect(lines.filter((l) => CONN_FAILED.test(l) && /Connection refused/.test(l))).toEqual([]);
    }
    // Queues survive closed connections: no call is lost.
    expect(matching(client.logFile, TIMEOUT)).toEqual([]);
  }, 60_000);

  it('half-dead connections: with heartbeats off the reply consumer never notices (timeout storm), with heartbeats on it recovers', async () => {
    const dir = caseDir('half-dead');
    const topic = `swtest-amqp-${run}-console`;
    topics.push(topic);
    const proxyOff = await blackholeProxy();
    const proxyOn = await blackholeProxy();
    proxies.push(proxyOff, proxyOn);
    const server = await startServer({ mode: 'server', service: 'nova-compute', logFile: join(dir, 'nova-compute.log'), topic, serverName: 'compute-1' });
    // heartbeat_timeout_threshold = 0: the default configuration of the story.
    const off = start({
      mode: 'client',
      service: 'nova-api',
      logFile: join(dir, 'nova-api.log'),
      topic,
      transportUrl: proxyOff.url,
      heartbeatTimeout: 0,
      callInterval: 1,
      callTimeout: 3,
      extraArgs: ['--stop-grace', '2'],
    });
    const on = start({
      mode: 'client',
      service: 'nova-novncproxy',
      logFile: join(dir, 'nova-novncproxy.log'),
      topic,
      transportUrl: proxyOn.url,
      heartbeatTimeout: 4,
      callInterval: 1,
      callTimeout: 3,
      extraArgs: ['--stop-grace', '2'],
    });

    await Promise.all([waitForLine(off.logFile, ANSWERED, 30_000), waitForLine(on.logFile, ANSWERED, 30_000)]);
    await sleep(1_500);
    const silenced = Date.now();
    expect(proxyOff.blackhole()).toBeGreaterThanOrEqual(2); // at least the reply consumer and a sender
    expect(proxyOn.blackhole()).toBeGreaterThanOrEqual(2);

    // Heartbeats on: missed heartbeats are noticed (threshold 4 s → after about 8 s), the connection is replaced.
    const missed = await waitForLine(on.logFile, HEARTBEATS_MISSED, 25_000);
    const answeredAfter = () => matching(on.logFile, ANSWERED).filter((l) => osloLineTime(l) > osloLineTime(missed));
    await waitFor(() => answeredAfter().length >= 3 || undefined, 20_000, 'nova-novncproxy answering again after the heartbeat reconnect');
    const recovered = answeredAfter()[0];
    // Heartbeats off: every call times out, and keeps doing so.
    await waitFor(() => matching(off.logFile, TIMEOUT).filter((l) => osloLineTime(l) > silenced).length >= 8 || undefined, 25_000, '8 reply timeouts of nova-api');
    const storm = matching(off.logFile, TIMEOUT).filter((l) => osloLineTime(l) > silenced);
    await Promise.all([server.stop(), off.stop(), on.stop()]);
    // How each ended, named by its log: a signal here is stop()'s SIGKILL after 15 s.
    for (const h of [server, off, on]) expect(await h.exited, h.logFile).toEqual({ code: 0, signal: null });

    const offLines = readLines(off.logFile);
    expect(
      offLines.filter((l) => ANSWERED.test(l) && osloLineTime(l) > silenced + 50),
      'nova-api never gets a reply again',
    ).toEqual([]);
    expect(
      offLines.some((l) => HEARTBEATS_MISSED.test(l) || RECOVERABLE.test(l)),
      'no heartbeat, no heartbeat error',
    ).toBe(false);
    // Its reply consumer's connection (the one the replies would come back on) never logs anything.
    expect(offLines.filter((l) => UNREACHABLE.test(l) && / \[-\] /.test(l))).toEqual([]);
    // The server itself noticed nothing: it is connected straight to RabbitMQ.
    expect(readLines(server.logFile).filter(isLoss)).toEqual([]);
    // nova-novncproxy recovered and stays so: its last call outcome is an answer.
    expect(
      readLines(on.logFile)
        .filter((l) => ANSWERED.test(l) || TIMEOUT.test(l))
        .at(-1),
    ).toMatch(ANSWERED);
    console.log(
      `half-dead: nova-novncproxy (heartbeat 4 s) "Too many heartbeats missed" +${seconds(osloLineTime(missed) - silenced)}, answering again +${seconds(osloLineTime(recovered) - silenced)}; ` +
        `nova-api (heartbeat off) ${storm.length} reply timeouts in ${seconds(osloLineTime(storm[storm.length - 1]) - silenced)}, none answered`,
    );
  }, 80_000);

  it('SIGTERM while starting or while the broker is unreachable: the harness ends by its stop grace, exit 0, not by the signal', async () => {
    // Before the stop signals were taken by a thread of their own (harness.py, STOP_SIGNALS, blocked before oslo's
    // imports), a harness stopped during its imports (0.7 s alone, far longer on a loaded machine) died of the
    // SIGTERM itself (exit status 143), and stop() reported a signal, not 0.
    const dir = caseDir('stop-unreachable');
    const closed = await blackholeProxy();
    proxies.push(closed);
    await closed.close(); // nothing listens on its port any more: every connection is refused
    const client = (service: string) =>
      start({ mode: 'client', service, logFile: join(dir, `${service}.log`), topic: `sw-stop-${run}`, transportUrl: closed.url, extraArgs: ['--stop-grace', '2'] });
    const starting = client('nova-api');
    await waitForLine(starting.outFile, /^amqp-harness: stop signals blocked; importing oslo$/, 30_000); // within oslo's imports
    const startingStopped = starting.stop();
    const looping = client('nova-conductor');
    await waitForLine(looping.logFile, CONN_FAILED, 30_000);
    const stopping = Date.now();
    await Promise.all([startingStopped, looping.stop()]);
    for (const h of [starting, looping]) expect(await h.exited, h.logFile).toEqual({ code: 0, signal: null });
    expect(Date.now() - stopping).toBeLessThan(15_000); // before stop()'s SIGKILL
  }, 60_000);
});

async function waitFor<T>(probe: () => T | undefined, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(100);
  }
}
