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
    const resolved = first('nova-compute')[1];
    expect(resolved.message).toMatch(/no AMQP loss for 300s while working/);
    expect(resolved.alert.duration_s).toBeGreaterThan(1800);
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
