// The AMQP detector on logs written by the real oslo.messaging library against a real RabbitMQ that was stopped,
// whose connections were closed, or silently black-holed (test/fixtures/oslo-messaging-real, README there).
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { Alert } from '../../core/events.ts';
import { DetectionEngine } from '../../detectors/engine.ts';
import { loadRules } from '../../detectors/rules.ts';
import { alertsFor } from '../../processors/rule-tests.ts';

const dir = new URL('../fixtures/oslo-messaging-real/', import.meta.url);
async function detect(file: string): Promise<Alert[]> {
  const engine = await DetectionEngine.create(loadRules().filter((r) => r.id === 'amqp-connection-lost'));
  const service = file.split('/').pop()!;
  return alertsFor(engine, 'compute-1', `/var/log/nova/${service}`, readFileSync(new URL(file, dir), 'utf8'));
}

describe('amqp-connection-lost on real oslo.messaging logs', () => {
  it.each(['stop-app/nova-compute.log', 'stop-app/nova-api.log'])('RabbitMQ stopped for 8 s: one firing and one resolved alert with the outage duration (%s)', async (file) => {
    const alerts = await detect(file);
    expect(alerts.map((a) => `${a.alert.status} ${a.alert.severity}`)).toEqual(['firing critical', 'resolved critical']);
    expect(alerts[0].message).toMatch(/lost its AMQP connection to 127\.0\.0\.1:5672/);
    // 8 s stopped, plus start_app (about 1.3 s) and the retry interval before the last connection is back.
    expect(alerts[1].alert.duration_s).toBeGreaterThan(8);
    expect(alerts[1].alert.duration_s).toBeLessThan(20);
    expect(alerts[1].message).toMatch(/reconnected to AMQP server 127\.0\.0\.1:5672/);
  });

  it.each(['close-connections/nova-scheduler.log', 'close-connections/nova-conductor.log'])('connections closed and flapping for 3 s: one alert, not one per drop (%s)', async (file) => {
    const firing = (await detect(file)).filter((a) => a.alert.status === 'firing');
    expect(firing).toHaveLength(1);
  });

  it('heartbeats off and the connection black-holed: the reply consumer dies silently and the storm pages (the VNC-console case)', async () => {
    const alerts = await detect('half-dead-long/nova-api.log');
    const page = alerts.filter((a) => a.alert.severity === 'page');
    expect(page.map((a) => `${a.alert.status} ${a.alert.group.kind}`)).toEqual(['firing reply-path-dead']);
    expect(page[0].message).toMatch(/reply consumer is dead/);
    // The one connection that did notice came back at once; the calls kept timing out: a page a minute later.
    const reconnect = alerts.find((a) => a.alert.status === 'resolved' && a.alert.group.kind === undefined)!;
    const sinceReconnect = (Date.parse(page[0]['@timestamp']) - Date.parse(reconnect['@timestamp'])) / 1000;
    expect(sinceReconnect).toBeGreaterThanOrEqual(60);
    expect(sinceReconnect).toBeLessThan(90);
    // The RPC server on the same broker logged no loss: nothing to say about it.
    expect(await detect('half-dead-long/nova-compute.log')).toEqual([]);
  });

  it('a client with heartbeats notices the black-holed connection ("Too many heartbeats missed") and pages nothing', async () => {
    const alerts = await detect('half-dead/nova-novncproxy.log');
    expect(alerts.filter((a) => a.alert.status === 'firing')).toHaveLength(1);
    expect(alerts.some((a) => a.alert.severity === 'page')).toBe(false);
  });
});
