// The AMQP detector on real logs: the 2022 RabbitMQ outage (nova-compute and three neutron agents) and a
// normal day of nova (Loghub 2k), through the same parse the pipeline uses.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import type { Alert } from '../../core/events.ts';
import { DetectionEngine } from '../../detectors/engine.ts';
import { loadRules } from '../../detectors/rules.ts';
import { parseLogEvent } from '../../processors/parse-log.ts';

const SAMPLES = new URL('../../samples/hotsos-2022/', import.meta.url).pathname;
const FIXTURES = new URL('../fixtures/', import.meta.url).pathname;

function read(path: string): string[] {
  const data = readFileSync(path);
  return (path.endsWith('.gz') ? gunzipSync(data) : data).toString('utf8').split(/\r?\n/).filter(Boolean);
}

async function detect(files: { path: string; lines: string[] }[], host = 'compute-1', only?: string): Promise<Alert[]> {
  const engine = await DetectionEngine.create(loadRules().filter((r) => only === undefined || r.id === only));
  const alerts: Alert[] = [];
  for (const { path, lines } of files) {
    let offset = 0;
    for (const line of lines) {
      const doc = parseLogEvent({ v: 1, host, path, file_id: path, offset, text: line, read_at: '2030-01-01T00:00:00.000Z' }, { timezone: 'UTC' });
      offset += Buffer.byteLength(line) + 1;
      alerts.push(...engine.on({ kind: 'log', doc: doc }));
    }
  }
  return alerts;
}

describe('known failures in real logs', () => {
  it('finds in the 2022 sosreport the AMQP outage of every service and nova-compute missing from the database', async () => {
    const files = readdirSync(SAMPLES).map((f) => ({ path: `/var/log/x/${f}`, lines: read(join(SAMPLES, f)) }));
    const alerts = await detect(files, 'compute4');
    const firing = (rule: string, kind?: string) =>
      [...new Set(alerts.filter((a) => a.rule.id === rule && a.alert.status === 'firing' && a.alert.group.kind === kind).map((a) => a.service.name))].sort();
    expect(firing('amqp-connection-lost')).toEqual(['neutron-dhcp-agent', 'neutron-l3-agent', 'neutron-metadata-agent', 'nova-compute']);
    expect(firing('compute-host-drift', 'missing')).toEqual(['nova-compute']);
    const drift = alerts.find((a) => a.rule.id === 'compute-host-drift')!;
    expect(drift.alert.group).toEqual({ 'host.name': 'compute4', kind: 'missing', compute_host: 'compute4.mylab.home' });
    // Every firing alert is followed by its resolution or stands at the end; none fires twice in a row.
    const open = new Set<string>();
    for (const a of alerts) {
      if (a.alert.status === 'firing') (expect(open.has(a.alert.id)).toBe(false), open.add(a.alert.id));
      else expect(open.delete(a.alert.id)).toBe(true);
    }
    // Reply timeouts piling up after the outage ended (conductor unreachable): the page-level reply-path alert.
    expect(alerts.filter((a) => a.alert.group.kind === 'reply-path-dead').every((a) => a.alert.severity === 'page')).toBe(true);
  });
});

describe('amqp-connection-lost', () => {
  it('fires once per service when the 2022 outage starts, and infers each recovery from the quiet that follows', async () => {
    const files = readdirSync(SAMPLES).map((f) => ({ path: `/var/log/x/${f}`, lines: read(join(SAMPLES, f)) }));
    const alerts = (await detect(files, 'compute-1', 'amqp-connection-lost')).filter((a) => a.alert.group.kind === undefined);
    const first = (service: string) => alerts.filter((a) => a.service.name === service).slice(0, 2);
    expect(first('nova-compute').map((a) => `${a.alert.status} ${a.alert.started_at}`)).toEqual(['firing 2022-02-04T09:37:50.159Z', 'resolved 2022-02-04T09:37:50.159Z']);
    // nova-compute was restarted three times during the outage, each new process losing the connection too (one
    // outage); the fourth (pid 195717, 10:06:30) sent its calls without a loss: the outage ended when it began. Its
    // calls then timed out (the conductor did not answer): that is the reply-path alert, not this outage.
    const resolved = first('nova-compute')[1];
    expect(resolved.message).toMatch(/was restarted \(pid 21562, 29295, 115624 that lost the connection logged nothing for 20s while pid 195717 worked\)/);
    expect(resolved.alert.ended_at).toBe('2022-02-04T10:06:30.368Z');
    // neutron-metadata-agent: restarted at 09:39:50 and 09:41:39, each new process refused again: one alert.
    const metadata = alerts.filter((a) => a.service.name === 'neutron-metadata-agent' && a.alert.started_at.startsWith('2022-02-04'));
    expect(metadata.map((a) => a.alert.status)).toEqual(['firing', 'resolved']);
    expect(metadata[1].message).toMatch(/pid 23753, 27115, 30955 that lost the connection/);
    // 9 February, neutron-dhcp-agent: its last failure (22:41:00) announced a retry in 24 s; no failure followed and
    // the process went on logging: it connected at 22:41:24 (its report_state call, sent then, timed out a minute
    // later: the server was not answering yet, a reply-path matter).
    const dhcp = alerts.filter((a) => a.service.name === 'neutron-dhcp-agent' && a.alert.started_at.startsWith('2022-02-09'));
    expect(dhcp.map((a) => `${a.alert.status} ${a.alert.ended_at ?? ''}`)).toEqual(['firing ', 'resolved 2022-02-09T22:41:24.029Z']);
    expect(dhcp[1].message).toMatch(/connected at the retry its last failure announced/);
    expect(first('neutron-dhcp-agent')[0].alert.started_at).toBe('2022-02-04T09:38:51.176Z');
    const nova = alerts[0];
    expect(nova.alert.id).toMatch(/^[\w-]{27}$/);
    expect(nova.alert.severity).toBe('critical');
    expect(nova.alert.runbook).toMatch(/heartbeat_timeout_threshold/);
  });

  it('pages when reply timeouts pile up in a service that logged no loss (the dead reply consumer)', async () => {
    const timeout = (t: string, n: number) =>
      `2022-02-04 10:${t} 195717 WARNING nova.conductor.api [req-242f2e73-68ff-4019-84af-47b6a51bdd46 - - - - -] Timed out waiting for nova-conductor.  Is it running? Or did this service start before nova-conductor?  Reattempting establishment of nova-conductor connection...: oslo_messaging.exceptions.MessagingTimeout: Timed out waiting for a reply to message ID e7ba8b0a34d046be8aa3cbad1a98a16${n}`;
    const lines = ['06:41.193', '06:51.213', '07:01.217', '07:11.233', '07:21.262'].map((t, i) => timeout(t, i));
    const reconnect = '2022-02-04 10:08:00.000 195717 INFO oslo.messaging._drivers.impl_rabbit [-] Reconnected to AMQP server on 10.5.0.5:5672 via [amqp] client with port 40522.';
    const alerts = await detect([{ path: 'nova-compute.log', lines: [...lines, reconnect] }], 'compute-1', 'amqp-connection-lost');
    expect(alerts.map((a) => `${a.alert.status} ${a.alert.severity} ${a.alert.group.kind}`)).toEqual(['firing page reply-path-dead', 'resolved page reply-path-dead']);
    expect(alerts[0].alert.started_at).toBe('2022-02-04T10:07:21.262Z');
    expect(alerts[1].message).toMatch(/reconnected to 10\.5\.0\.5:5672/);
    // Four timeouts are not a storm.
    expect(await detect([{ path: 'nova-compute.log', lines: lines.slice(0, 4) }], 'compute-1', 'amqp-connection-lost')).toEqual([]);
  });

  it('raises nothing on a normal day of nova (Loghub OpenStack 2k), with every rule', async () => {
    const byFile = new Map<string, string[]>();
    for (const l of read(join(FIXTURES, 'loghub-OpenStack_2k.log'))) {
      const [file, ...rest] = l.split(' ');
      byFile.set(file, [...(byFile.get(file) ?? []), rest.join(' ')]);
    }
    const alerts = await detect([...byFile].map(([path, lines]) => ({ path, lines })));
    expect(alerts).toEqual([]);
  });

  it('a failover within a second is a short alert: the clock resolves it at the reconnect though the host logs nothing more', async () => {
    // Public performance report of oslo.messaging under a killed RabbitMQ node (test/fixtures/evidence,
    // amqp-perfdocs-broker-killed-failover): the loss and the reconnect to another node one second later.
    const lines = [
      '2016-06-01 12:00:00.000 1001 ERROR oslo.messaging._drivers.impl_rabbit [-] AMQP server on 10.43.0.3:5673 is unreachable: timed out. Trying again in 1 seconds.',
      '2016-06-01 12:00:01.000 1001 INFO oslo.messaging._drivers.impl_rabbit [-] Reconnected to AMQP server on 10.43.0.6:5673 via [amqp] client',
    ];
    const engine = await DetectionEngine.create(loadRules().filter((r) => r.id === 'amqp-connection-lost'));
    const alerts: Alert[] = [];
    lines.forEach((text, offset) => {
      const doc = parseLogEvent({ v: 1, host: 'ctl-1', path: '/var/log/nova/nova-conductor.log', file_id: 'f', offset, text, read_at: '2030-01-01T00:00:00.000Z' }, { timezone: 'UTC' });
      alerts.push(...engine.on({ kind: 'log', doc }));
    });
    expect(alerts.map((a) => a.alert.status)).toEqual(['firing']);
    // settle_s (5 s) after the reconnect, not before: a connection that drops again within it is the same outage.
    expect(engine.tick(Date.parse('2016-06-01T12:00:05.000Z'))).toEqual([]);
    const resolved = engine.tick(Date.parse('2016-06-01T12:00:06.000Z'));
    expect(resolved.map((a) => [a.alert.status, a.alert.ended_at, a.alert.duration_s])).toEqual([['resolved', '2016-06-01T12:00:01.000Z', 1]]);
    expect(resolved[0].message).toMatch(/reconnected to AMQP server 10\.43\.0\.6:5673 after 1s/);
  });

  /** Lines of one service, `[time, pid, level logger, message]`, through the engine with this rule only; ticks at `ticks`. */
  async function run(service: string, lines: [string, number, string, string][], ticks: string[] = []): Promise<Alert[]> {
    const engine = await DetectionEngine.create(loadRules().filter((r) => r.id === 'amqp-connection-lost'));
    const alerts: Alert[] = [];
    // A processor's clock ticks from its start, before the first line.
    const events = [...lines.map((l) => ({ at: l[0], line: l })), ...[lines[0][0], ...ticks].map((at) => ({ at, line: undefined }))].sort((a, b) => a.at.localeCompare(b.at));
    let offset = 0;
    for (const { at, line } of events) {
      if (!line) {
        alerts.push(...engine.tick(Date.parse(`${at.replace(' ', 'T')}Z`)));
        continue;
      }
      const text = `${at} ${line[1]} ${line[2]} [-] ${line[3]}`;
      const doc = parseLogEvent({ v: 1, host: 'os-1', path: `/var/log/nova/${service}.log`, file_id: 'f', offset: offset++, text, read_at: '2030-01-01T00:00:00.000Z' }, { timezone: 'UTC' });
      alerts.push(...engine.on({ kind: 'log', doc }));
    }
    return alerts;
  }
  const RABBIT = 'ERROR oslo.messaging._drivers.impl_rabbit';
  const UNREACHABLE =
    '[0b4e5c1a-3f4d-4c2b-9a7e-1d2c3b4a5f60] AMQP server on 127.0.0.1:5672 is unreachable: [Errno 104] Connection reset by peer. Trying again in 1 seconds.: ConnectionResetError: [Errno 104] Connection reset by peer';
  const WORKING = 'INFO nova.compute.resource_tracker';

  it('a restart ends the outage of the process that lost the connection: the new process connects without a word at INFO', async () => {
    // nova-compute stopped with its connection reset (the old pid's last line), started again as pid 4242: its first
    // connection is logged at DEBUG only, then it works. The old pid silent for restart_s: restarted, ended at 4242's
    // first line, long before the incidents' min_duration_s.
    const lines: [string, number, string, string][] = [
      ['2026-12-02 22:48:11.954', 1717, RABBIT, UNREACHABLE],
      ['2026-12-02 22:48:12.100', 1717, 'INFO oslo_service.service', 'Caught SIGTERM, exiting'],
      ['2026-12-02 22:48:15.000', 4242, 'INFO nova.virt.driver', "Loading compute driver 'fake.FakeDriver'"],
      ['2026-12-02 22:48:20.000', 4242, WORKING, 'Final resource view: name=os-compute-1 phys_ram=8192MB used_ram=512MB'],
    ];
    // No line after 22:48:20: the clock resolves it, once that line is silence_s old by the clock too.
    const alerts = await run('nova-compute', lines, ['2026-12-02 22:48:34.000', '2026-12-02 22:48:35.000', '2026-12-02 22:48:40.000']);
    expect(alerts.map((a) => `${a.alert.status} ${a.alert.ended_at ?? ''}`)).toEqual(['firing ', 'resolved 2026-12-02T22:48:15.000Z']);
    expect(alerts[1].alert.duration_s).toBeCloseTo(3.046, 3);
    expect(alerts[1].message).toMatch(/was restarted \(pid 1717 that lost the connection logged nothing for 20s while pid 4242 worked\)/);
    // ... and not before restart_s: the old process may yet speak.
    const early = await run('nova-compute', lines, ['2026-12-02 22:48:34.000']);
    expect(early.map((a) => a.alert.status)).toEqual(['firing']);
    // The old process speaking again (it was not restarted: another worker logged meanwhile) keeps the outage.
    const alive = await run('nova-compute', [...lines, ['2026-12-02 22:48:30.000', 1717, WORKING, 'Auditing locally available compute resources']], ['2026-12-02 22:48:45.000']);
    expect(alive.map((a) => a.alert.status)).toEqual(['firing']);
    // Lines without a pid never tell a restart: the outage waits for its reconnect or quiet_resolve_s.
    const noPid = await run('nova-compute', [lines[0]], ['2026-12-02 22:49:30.000']);
    expect(noPid.map((a) => a.alert.status)).toEqual(['firing']);
  });

  it('a first connection that failed and then worked ends the outage at the announced retry, once the process is seen alive after it', async () => {
    const failed: [string, number, string, string] = ['2026-12-02 22:48:11.954', 4242, RABBIT, 'Connection failed: timed out (retrying in 1.0 seconds): TimeoutError: timed out'];
    const later: [string, number, string, string] = ['2026-12-02 22:48:40.000', 4242, WORKING, 'Final resource view: name=os-compute-1 phys_ram=8192MB used_ram=512MB'];
    // Alive after the retry, no failure for silence_s after it: connected at 22:48:12.954.
    const alerts = await run('nova-compute', [failed, later], ['2026-12-02 22:48:41.000']);
    expect(alerts.map((a) => `${a.alert.status} ${a.alert.ended_at ?? ''}`)).toEqual(['firing ', 'resolved 2026-12-02T22:48:12.954Z']);
    expect(alerts[1].message).toMatch(/connected at the retry its last failure announced \(no failure for 20s after it/);
    // Not seen since (killed, or hung): the silence alone proves nothing.
    expect((await run('nova-compute', [failed], ['2026-12-02 22:48:41.000', '2026-12-02 22:50:00.000'])).map((a) => a.alert.status)).toEqual(['firing']);
    // Seen alive, but the failure came again: one outage still.
    const again: [string, number, string, string] = ['2026-12-02 22:48:25.000', 4242, RABBIT, 'Connection failed: timed out (retrying in 3.0 seconds): TimeoutError: timed out'];
    const retried = await run('nova-compute', [failed, ['2026-12-02 22:48:20.000', 4242, WORKING, 'Auditing'], again], ['2026-12-02 22:48:44.000']);
    expect(retried.map((a) => a.alert.status)).toEqual(['firing']);
    // A connection [uuid] that was lost waits for its "Reconnected" instead.
    const unreachable: [string, number, string, string] = ['2026-12-02 22:48:11.954', 4242, RABBIT, UNREACHABLE];
    expect((await run('nova-compute', [unreachable, later], ['2026-12-02 22:48:41.000'])).map((a) => a.alert.status)).toEqual(['firing']);
  });

  it('a backfill: the wall clock between two batches ends nothing that the next lines of the file may still decide', async () => {
    // neutron-server, Icehouse 2014 (test/fixtures/oslo-messaging-icehouse-2014.log): a loss, "Trying again in 1
    // seconds", the process alive after it, then (next batch) the next failure. Ticks come from the wall clock, 12
    // years later: they must not call the first retry a success.
    const lines = read(join(FIXTURES, 'oslo-messaging-icehouse-2014.log'));
    const engine = await DetectionEngine.create(loadRules().filter((r) => r.id === 'amqp-connection-lost'));
    const alerts: Alert[] = [];
    const wall = Date.parse('2026-12-03T07:00:00.000Z');
    engine.tick(wall - 10_000); // the processor's clock, ticking from its start
    lines.forEach((text, offset) => {
      const doc = parseLogEvent({ v: 1, host: 'ctl-1', path: '/var/log/neutron/server.log', file_id: 'f', offset, text, read_at: '2026-12-03T07:00:00.000Z' }, { timezone: 'UTC' });
      alerts.push(...engine.on({ kind: 'log', doc }));
      if (offset === 4) for (let s = 0; s < 10; s++) alerts.push(...engine.tick(wall + s * 1000)); // between the batches
    });
    expect(alerts.map((a) => a.alert.status)).toEqual(['firing']);
    // Once the file is quiet for silence_s by the wall clock: the last failure was not followed by a line of the
    // process, so nothing says it connected; the outage stays open.
    expect(engine.tick(wall + 60_000)).toEqual([]);
  });

  it('a process retrying every 32 s is not taken for restarted while another worker logs between its attempts', async () => {
    const refused = (s: number) => `Connection failed: [Errno 111] ECONNREFUSED (retrying in ${s}.0 seconds): ConnectionRefusedError: [Errno 111] ECONNREFUSED`;
    const lines: [string, number, string, string][] = [
      ['2022-02-04 09:58:59.045', 115624, RABBIT, refused(32)],
      ['2022-02-04 09:59:05.000', 115700, 'INFO nova.api.openstack.requestlog', '127.0.0.1 "GET /v2.1/flavors" status: 200 len: 1234'],
      ['2022-02-04 09:59:31.148', 115624, RABBIT, refused(32)],
      ['2022-02-04 09:59:40.000', 115700, 'INFO nova.api.openstack.requestlog', '127.0.0.1 "GET /v2.1/flavors" status: 200 len: 1234'],
      ['2022-02-04 10:00:03.312', 115624, RABBIT, refused(32)],
    ];
    // 26 s and 23 s of the retrying process's silence, past restart_s but within its announced retry: one outage.
    const alerts = await run('nova-api', lines, ['2022-02-04 09:59:30.000', '2022-02-04 10:00:02.000', '2022-02-04 10:00:40.000']);
    expect(alerts.map((a) => a.alert.status)).toEqual(['firing']);
    // It stopped retrying (restarted): restart_s past its announced retry, the outage ends at the other's line.
    const after = await run(
      'nova-api',
      [...lines, ['2022-02-04 10:00:10.000', 115700, 'INFO nova.api.openstack.requestlog', '127.0.0.1 "GET /v2.1/servers" status: 200 len: 99']],
      ['2022-02-04 10:00:54.000', '2022-02-04 10:00:56.000'],
    );
    expect(after.map((a) => `${a.alert.status} ${a.alert.ended_at ?? ''}`)).toEqual(['firing ', 'resolved 2022-02-04T10:00:10.000Z']);
  });

  it('resolves on the reconnect line with the outage duration, and a new outage fires again', async () => {
    const loss = read(join(FIXTURES, 'oslo-messaging-icehouse-2014.log')).filter((l) => l.includes('unreachable'));
    const reconnect = read(join(FIXTURES, 'oslo-messaging-cinder-2014.log')).find((l) => l.includes('Connected to AMQP'))!;
    // Same service file: the loss lines of 2014-08-15, then a reconnect 3 s after the last one.
    const reconnectLater = reconnect.replace('2014-08-12 13:00:38.462', '2014-08-15 01:36:38.214');
    const alerts = await detect([{ path: 'neutron-server.log', lines: [...loss, reconnectLater, loss[0].replace('01:36:33', '02:00:00')] }], 'compute-1', 'amqp-connection-lost');
    expect(alerts.map((a) => a.alert.status)).toEqual(['firing', 'resolved', 'firing']);
    expect(alerts[1]).toMatchObject({ alert: { started_at: '2014-08-15T01:36:33.198Z', ended_at: '2014-08-15T01:36:38.214Z', duration_s: 5.016 } });
    expect(alerts[1].alert.id).toBe(alerts[0].alert.id);
    expect(alerts[1].evidence.event_ids).toHaveLength(3);
  });
});
