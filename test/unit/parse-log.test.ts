import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { logEventId } from '../../core/events.ts';
import { unwrap } from '../../core/log-formats.ts';
import { parseLogEvent, parseOsloHeader, serviceFromPath, toUtcIso } from '../../processors/parse-log.ts';

const fixture = (name: string) => readFileSync(new URL(`../fixtures/${name}`, import.meta.url), 'utf8').split('\n');

describe('oslo.log header', () => {
  it('parses a 2022 nova-compute line with a five-field user identity and no global request id', () => {
    const line = fixture('hotsos-2022/nova-compute-head.log')[1];
    expect(parseOsloHeader(line)).toEqual({
      timestamp: '2022-02-04T09:37:50.159Z',
      pid: 21562,
      level: 'ERROR',
      logger: 'oslo.messaging._drivers.impl_rabbit',
      requestId: 'req-30b3bc7c-90c2-4c1c-8d0c-62455d58bfca',
      message: 'Connection failed: [Errno 111] ECONNREFUSED (retrying in 2.0 seconds): ConnectionRefusedError: [Errno 111] ECONNREFUSED',
    });
  });

  it('parses the [-] context outside a request (Icehouse, 2014)', () => {
    const line = fixture('oslo-messaging-icehouse-2014.log').find((l) => l.includes('is unreachable'))!;
    const h = parseOsloHeader(line)!;
    expect(h.level).toBe('ERROR');
    expect(h.requestId).toBeUndefined();
    expect(h.message).toBe('AMQP server on 127.0.0.1:5671 is unreachable: [Errno 111] ECONNREFUSED. Trying again in 1 seconds.');
  });

  it('parses user and project ids, and a TRACE line without a context block', () => {
    const lines = fixture('oslo-messaging-cinder-2014.log');
    const h = parseOsloHeader(lines.find((l) => l.includes('Reconnecting'))!)!;
    expect(h).toMatchObject({
      requestId: 'req-74f2bd51-2969-4325-b90b-d5ad2e27a204',
      userId: '70a69808500e4be590007f514bbcaafd',
      projectId: 'b86b55793c774d2398148624fc478112',
      message: 'Reconnecting to AMQP server on 172.16.0.200:5672',
    });
    const trace = parseOsloHeader(lines[1])!;
    expect(trace).toMatchObject({ level: 'TRACE', logger: 'oslo.messaging._drivers.impl_rabbit', message: 'error: [Errno 104] Connection reset by peer' });
    expect(parseOsloHeader(lines[2])).toMatchObject({ level: 'TRACE', message: '' });
  });

  it('parses the instance id and keeps it in the message (Loghub 2017, first field stripped, CRLF)', () => {
    const sample = fixture('loghub-openstack-2k-head.log')
      .map((l) => l.replace(/\r$/, '').replace(/^\S+ /, ''))
      .find((l) => l.includes('[instance:'))!;
    const h = parseOsloHeader(sample)!;
    expect(h.instanceId).toBe('b9000564-fe1a-409b-b8cc-1e88b294cd1d');
    expect(h.message).toBe('[instance: b9000564-fe1a-409b-b8cc-1e88b294cd1d] VM Started (Lifecycle Event)');
  });

  it('separates a global request id from the local one, and reads None as absent', () => {
    const g = parseOsloHeader('2023-03-01 10:00:00.001 7 INFO nova.api [req-aaaa req-bbbb u1 p1 - - -] hello')!;
    expect(g).toMatchObject({ globalRequestId: 'req-aaaa', requestId: 'req-bbbb', userId: 'u1', projectId: 'p1', message: 'hello' });
    const n = parseOsloHeader('2023-03-01 10:00:00.001 7 INFO nova.api [None req-bbbb - - - - -] hello')!;
    expect(n.globalRequestId).toBeUndefined();
    expect(n.requestId).toBe('req-bbbb');
    expect(n.userId).toBeUndefined();
  });

  it('rejects lines that are not oslo.log', () => {
    expect(parseOsloHeader('Traceback (most recent call last):')).toBeUndefined();
    expect(parseOsloHeader('2022-02-04 09:37:50 something else')).toBeUndefined();
  });

  it('converts zone-less timestamps from the configured zone, across DST', () => {
    expect(toUtcIso('2022-02-04', '09:37:50', '159', 'UTC')).toBe('2022-02-04T09:37:50.159Z');
    expect(toUtcIso('2022-02-04', '09:37:50', '159', 'Asia/Shanghai')).toBe('2022-02-04T01:37:50.159Z');
    expect(toUtcIso('2022-07-04', '09:37:50', '5', 'Europe/Berlin')).toBe('2022-07-04T07:37:50.500Z');
    expect(toUtcIso('2022-01-04', '09:37:50', '5', 'Europe/Berlin')).toBe('2022-01-04T08:37:50.500Z');
  });
});

describe('ECS document', () => {
  const raw = {
    v: 1 as const,
    host: 'compute-1',
    path: '/var/log/nova/nova-compute.log.1',
    file_id: 'abc',
    offset: 1234,
    text: fixture('hotsos-2022/nova-compute-head.log')[1],
    read_at: '2026-01-01T00:00:00.000Z',
  };

  it('maps the header to ECS names with a deterministic id', () => {
    const doc = parseLogEvent(raw, { timezone: 'UTC' });
    expect(doc).toMatchObject({
      '@timestamp': '2022-02-04T09:37:50.159Z',
      log: { level: 'ERROR', logger: 'oslo.messaging._drivers.impl_rabbit', file: { path: raw.path }, offset: 1234 },
      process: { pid: 21562 },
      host: { name: 'compute-1' },
      service: { name: 'nova-compute' },
      openstack: { request_id: 'req-30b3bc7c-90c2-4c1c-8d0c-62455d58bfca' },
    });
    expect(doc.event.id).toBe(logEventId(raw));
    expect(parseLogEvent({ ...raw, offset: 1235 }, { timezone: 'UTC' }).event.id).not.toBe(doc.event.id);
    expect(doc.event.original).toBeUndefined();
    expect(parseLogEvent(raw, { timezone: 'UTC', keepOriginal: true }).event.original).toBe(raw.text);
  });

  it('keeps a line in no known format as an event, timed when it was read', () => {
    const doc = parseLogEvent({ ...raw, text: '\u0000garbage \u00ff line' }, { timezone: 'UTC' });
    expect(doc['@timestamp']).toBe(raw.read_at);
    expect(doc.message).toBe('\u0000garbage \u00ff line');
    expect(doc.log.level).toBeUndefined();
  });

  it('names the service after the file', () => {
    expect(serviceFromPath('/var/log/nova/nova-compute.log.1.gz')).toBe('nova-compute');
    expect(serviceFromPath('nova-api.log.1.2017-05-16_13:53:08')).toBe('nova-api');
    expect(serviceFromPath('/var/log/neutron/neutron-l3-agent.log')).toBe('neutron-l3-agent');
    expect(serviceFromPath('/var/log/syslog')).toBe('syslog');
    // Kubernetes nodes: the file is "0.log", its container names the service.
    expect(serviceFromPath('/var/log/pods/openstack_nova-api-0_8a7b6c5d-4e3f-4a2b-9c1d-0e9f8a7b6c5d/nova-api-api/0.log')).toBe('nova-api-api');
    expect(serviceFromPath('/var/log/pods/openstack_keystone-api-6b8d9f7c4-r2x7p_1f2e3d4c/keystone-api/3.log.20240701-120000.gz')).toBe('keystone-api');
    expect(serviceFromPath(`/var/log/containers/nova-compute-default-x7k2q_openstack_nova-compute-${'a1'.repeat(32)}.log`)).toBe('nova-compute');
    expect(serviceFromPath('/var/log/containers/x.log')).toBe('x');
  });
});

describe('other formats through the same parse', () => {
  const base = { v: 1 as const, host: 'ctl-1', path: '/var/log/containers/x.log', file_id: 'f', offset: 0, read_at: '2030-01-01T00:00:00.000Z' };
  const doc = (line: string) => {
    const u = unwrap(line);
    return parseLogEvent({ ...base, text: u.text, ...(u.envelope ? { envelope: u.envelope } : {}) }, { timezone: 'UTC' });
  };
  const oslo = fixture('hotsos-2022/nova-compute-head.log')[1];

  it('takes the service from a syslog envelope and the time from the oslo line inside it', () => {
    const d = doc(`Feb  4 09:37:51 compute-1 nova-compute[21562]: ${oslo}`);
    expect(d).toMatchObject({ '@timestamp': '2022-02-04T09:37:50.159Z', service: { name: 'nova-compute' }, log: { level: 'ERROR' }, process: { pid: 21562 } });
    expect(d.message).toMatch(/^Connection failed: /);
  });

  it('unwraps a CRI line and keeps the service from the file', () => {
    const d = doc(`2022-02-04T09:37:50.160123456Z stdout F ${oslo}`);
    expect(d).toMatchObject({ '@timestamp': '2022-02-04T09:37:50.159Z', service: { name: 'x' }, openstack: { request_id: 'req-30b3bc7c-90c2-4c1c-8d0c-62455d58bfca' } });
  });

  it('reads RabbitMQ and MariaDB (Galera) server lines', () => {
    const rabbit = doc(
      '2022-02-04 09:37:50.123456+00:00 [error] <0.1234.0> closing AMQP connection <0.1234.0> (10.0.0.5:41234 -> 10.0.0.9:5672): missed heartbeats from client, timeout: 60s',
    );
    expect(rabbit).toMatchObject({ '@timestamp': '2022-02-04T09:37:50.123Z', log: { level: 'ERROR' } });
    expect(rabbit.message).toMatch(/^closing AMQP connection/);
    const galera = doc('2022-02-04  9:37:50 0 [Note] WSREP: Shifting JOINED -> SYNCED (TO: 1234)');
    expect(galera).toMatchObject({ '@timestamp': '2022-02-04T09:37:50.000Z', log: { level: 'INFO', logger: 'WSREP' }, message: 'Shifting JOINED -> SYNCED (TO: 1234)' });
  });

  it("reads devstack's journald lines (oslo.log without its date): level, logger and ids, the journal's time", () => {
    // lxc/lxc issue 1786 (devstack Pike, nova-api under uwsgi).
    const d = doc(
      'Sep 05 09:02:05 leg-004 devstack@n-api.service[15067]: INFO nova.api.openstack.requestlog [None req-7e465212-6160-4dab-9d38-6c06e8cafbcc admin admin] 85.10.193.66 "GET /compute/v2.1/" status: 200 len: 389 microversion: 2.1 time: 0.016996',
    );
    expect(d).toMatchObject({
      service: { name: 'devstack@n-api.service' },
      log: { level: 'INFO', logger: 'nova.api.openstack.requestlog' },
      process: { pid: 15067 },
      openstack: { request_id: 'req-7e465212-6160-4dab-9d38-6c06e8cafbcc', user_id: 'admin', project_id: 'admin' },
      message: '85.10.193.66 "GET /compute/v2.1/" status: 200 len: 389 microversion: 2.1 time: 0.016996',
    });
    expect(d['@timestamp']).toMatch(/-09-05T09:02:05\.000Z$/);
  });

  it("reads Python's default format, timed when read; and an access line by its own time", () => {
    const py = doc('ERROR:oslo.messaging._drivers.impl_rabbit:Connection failed: failed to resolve broker hostname (retrying in 2.0 seconds)');
    expect(py).toMatchObject({ '@timestamp': base.read_at, log: { level: 'ERROR', logger: 'oslo.messaging._drivers.impl_rabbit' } });
    expect(py.message).toBe('Connection failed: failed to resolve broker hostname (retrying in 2.0 seconds)');
    const access = doc('2024-03-14T09:00:25.412305+00:00 stdout F 10.88.0.1 - - [14/Mar/2024:09:00:00 +0000] "POST /v3/auth/tokens HTTP/1.1" 201 6911 "-" "x"');
    expect(access['@timestamp']).toBe('2024-03-14T09:00:00.000Z');
    expect(access.message).toMatch(/^10\.88\.0\.1 - - \[/);
  });

  it('keeps a line in no known format, timed by any recognisable prefix or else when read', () => {
    expect(doc('Feb  4 09:37:50 something happened')['@timestamp']).toMatch(/-02-04T09:37:50\.000Z$/);
    expect(doc('something happened')).toMatchObject({ '@timestamp': base.read_at, message: 'something happened' });
  });
});
