// The AMQP detector on real logs: the 2022 RabbitMQ outage (nova-compute and three neutron agents) and a
// normal day of nova (Loghub 2k), through the same parse the pipeline uses.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import type { Alert } from '../../core/events.ts';
import { DetectionEngine, loadRules } from '../../processors/detect.ts';
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
      alerts.push(...engine.onLog(doc));
    }
  }
  return alerts;
}

describe('known failures in real logs', () => {
  it('finds in the 2022 sosreport the AMQP outage of every service and nova-compute missing from the database', async () => {
    const files = readdirSync(SAMPLES).map((f) => ({ path: `/var/log/x/${f}`, lines: read(join(SAMPLES, f)) }));
    const alerts = await detect(files, 'compute4');
    expect(alerts.map((a) => `${a.rule.id} ${a.alert.status} ${a.service.name}`).sort()).toEqual([
      'amqp-connection-lost firing neutron-dhcp-agent',
      'amqp-connection-lost firing neutron-l3-agent',
      'amqp-connection-lost firing neutron-metadata-agent',
      'amqp-connection-lost firing nova-compute',
      'compute-host-drift firing nova-compute',
      'compute-host-drift resolved nova-compute',
    ]);
    const drift = alerts.find((a) => a.rule.id === 'compute-host-drift')!;
    expect(drift.alert.group).toEqual({ 'host.name': 'compute4', kind: 'missing', compute_host: 'compute4.mylab.home' });
    expect(drift.evidence.event_ids.length).toBeGreaterThan(0);
  });
});

describe('amqp-connection-lost', () => {
  it('fires once per service for the 2022 outage: nova-compute and each neutron agent', async () => {
    const files = readdirSync(SAMPLES).map((f) => ({ path: `/var/log/x/${f}`, lines: read(join(SAMPLES, f)) }));
    const alerts = await detect(files, 'compute-1', 'amqp-connection-lost');
    expect(alerts.map((a) => `${a.alert.status} ${a.service.name} ${a.alert.started_at}`).sort()).toEqual([
      'firing neutron-dhcp-agent 2022-02-04T09:38:51.176Z',
      'firing neutron-l3-agent 2022-02-09T22:38:48.170Z',
      'firing neutron-metadata-agent 2022-02-04T09:38:43.456Z',
      'firing nova-compute 2022-02-04T09:37:50.159Z',
    ]);
    const nova = alerts.find((a) => a.service.name === 'nova-compute')!;
    expect(nova.alert.id).toMatch(/^[\w-]{27}$/);
    expect(nova.alert.severity).toBe('critical');
    expect(nova.alert.runbook).toMatch(/heartbeat_timeout_threshold/);
    expect(nova.evidence.event_ids).toHaveLength(1);
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
