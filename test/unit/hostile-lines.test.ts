// Hostile and unusual lines (test/fixtures/hostile/lines/, one file per case): every line becomes the right event.
// Folding only on evidence and only within a stream, tool prefixes, partial lines bounded and never joined across
// streams, impossible timestamps, line separators inside a line, secrets split across pieces of the original.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { EventAssembler, LineSplitter, type AssembledEvent } from '../../collectors/logs/assemble.ts';
import { toRawEvent } from '../../collectors/openstack-logs.ts';
import type { LogDocument } from '../../core/events.ts';
import { parseLogEvent } from '../../processors/parse-log.ts';

const HOSTILE = new URL('../fixtures/hostile/lines/', import.meta.url);
const READ_AT = '2030-01-01T00:00:00.000Z';

function assemble(data: Buffer | string, opts: { maxEventBytes?: number; keepOriginal?: boolean } = {}): AssembledEvent[] {
  const max = opts.maxEventBytes ?? 1 << 20;
  const events: AssembledEvent[] = [];
  const a = new EventAssembler({ maxEventBytes: max, keepOriginal: opts.keepOriginal }, (e) => events.push(e));
  const s = new LineSplitter(
    0,
    max,
    (o, t, cut, plain) => a.push(o, t, cut, plain),
    (u) => {
      throw new Error(`unusable line at ${u.offset}: ${u.reason}`);
    },
  );
  s.write(typeof data === 'string' ? Buffer.from(data) : data);
  s.end();
  a.flush();
  return events.sort((x, y) => x.offset - y.offset);
}

function docs(file: string, opts: { maxEventBytes?: number; keepOriginal?: boolean } = {}): LogDocument[] {
  return assemble(readFileSync(new URL(file, HOSTILE)), opts).map((e) => parseLogEvent(toRawEvent(e, 'compute-1', `/var/log/${file}`, 'f', READ_AT), { timezone: 'UTC' }));
}

describe('lines in an envelope whose payload has no timestamp are events of their own', () => {
  it('syslog: the issue example gives two documents', () => {
    const d = docs('syslog-plain-payloads.log');
    expect(d.map((x) => [x.service.name, x.message])).toEqual([
      ['systemd', 'a'],
      ['kernel', 'OOM'],
    ]);
  });

  it('syslog: each program and pid is a stream of its own; a traceback folds within its stream only', () => {
    const d = docs('syslog-interleaved.log');
    expect(d.map((x) => x.service.name)).toEqual(['systemd', 'CRON', 'systemd', 'nova-compute', 'kernel', 'systemd', 'nova-compute']);
    const tb = d[3];
    expect(tb.message).toBe('oslo_messaging.exceptions.MessagingTimeout: Timed out waiting for a reply to message ID 4e1ee3b4');
    expect(tb.error?.stack_trace?.split('\n')).toHaveLength(4);
    expect(tb.error?.stack_trace).toContain('MessagingTimeout: Timed out waiting for a reply');
    expect(d[4].message).toContain('Out of memory');
    expect(d.at(-1)!.message).toBe('Stopping nova-compute');
  });

  it('journald short-iso and short-precise: one document per line', () => {
    const d = docs('journald-plain-payloads.log');
    expect(d).toHaveLength(6);
    expect(d.map((x) => x['@timestamp'].slice(0, 19))).toEqual([
      '2022-02-04T09:37:50',
      '2022-02-04T09:37:50',
      '2022-02-04T09:37:51',
      '2022-02-04T09:37:51',
      expect.stringMatching(/-02-04T09:37:52$/),
      expect.stringMatching(/-02-04T09:37:52$/),
    ]);
  });

  it('CRI: stdout lines stay apart, the stderr traceback folds across the interleaved stdout line', () => {
    const d = docs('cri-plain-payloads.log');
    expect(d.map((x) => x.message)).toEqual(['Starting nova-compute', 'ConnectionRefusedError: [Errno 111] ECONNREFUSED', 'Loading config from /etc/nova/nova.conf', 'Done', 'Exiting']);
    expect(d[1].error?.stack_trace).toContain('ConnectionRefusedError: [Errno 111] ECONNREFUSED');
  });

  it('journalctl: a multi-line message whose following lines are indented under the first (no envelope) is one event', () => {
    const d = docs('journald-multiline.log');
    expect(d.map((x) => [x.service.name, x.message.split('\n').length])).toEqual([
      ['deploy.sh', 3],
      ['deploy.sh', 1],
    ]);
  });

  it('Docker json-file: one document per line, stdout and stderr apart', () => {
    expect(docs('docker-plain-payloads.log').map((x) => x.message)).toEqual(['Starting nova-compute', 'Loading config from /etc/nova/nova.conf', 'WARNING: no ceph.conf', 'Done']);
  });

  it('100k plain syslog lines are 100k documents (they were one of 26,117 lines)', () => {
    const lines = Array.from({ length: 100_000 }, (_, i) => `Feb  4 09:37:${String(i % 60).padStart(2, '0')} h app[7]: line ${i}`);
    const events = assemble(lines.join('\n') + '\n');
    expect(events).toHaveLength(100_000);
    expect(events[99_999].text).toBe('line 99999');
  });
});

describe('tool prefixes are recognised, never a reason to merge', () => {
  it("Loghub's OpenStack_2k.log as published (source file name first): 2,000 documents with their own times", () => {
    const raw = readFileSync(new URL('../fixtures/loghub-OpenStack_2k.log', import.meta.url));
    const d = assemble(raw).map((e) => parseLogEvent(toRawEvent(e, 'loghub', '/data/OpenStack_2k.log', 'f', READ_AT), { timezone: 'UTC' }));
    expect(d).toHaveLength(2000);
    expect(d.filter((x) => x['@timestamp'] === READ_AT)).toEqual([]);
    expect(d.filter((x) => !x.log.level)).toEqual([]);
    expect(new Set(d.map((x) => x.service.name))).toEqual(new Set(['nova-api', 'nova-compute', 'nova-scheduler']));
    expect(d[0].message.startsWith('10.11.10.1 "GET /v2/54fadb412c4e40cdbaed9335e4c35a9e/servers/detail HTTP/1.1"')).toBe(true);
  });

  it('kubectl logs --prefix: the container is the service, the traceback folds', () => {
    const d = docs('kubectl-prefix.log');
    expect(d.map((x) => [x.service.name, x.log.level])).toEqual([
      ['nova-compute', 'ERROR'],
      ['nova-compute', 'ERROR'],
      ['nova-compute', 'INFO'],
      ['nova-api', 'INFO'],
    ]);
    expect(d[1].error?.stack_trace?.split('\n')).toHaveLength(3);
  });

  it('grep -H (path:line, path-n-line) and grep -n (n:line, n-line)', () => {
    const h = docs('grep-H-prefix.log');
    expect(h.map((x) => [x.service.name, x.log.level, x.process?.pid])).toEqual([
      ['nova-compute', 'ERROR', 21562],
      ['nova-compute', 'ERROR', 284971],
      ['nova-api', 'INFO', 29295],
      ['nova-compute', 'INFO', 29295],
    ]);
    expect(h[1].error?.stack_trace?.split('\n')).toHaveLength(2);
    const n = docs('grep-n-prefix.log');
    expect(n.map((x) => x.log.level)).toEqual(['ERROR', 'ERROR', 'INFO']);
    expect(n[1].error?.stack_trace).toContain('Traceback');
  });

  it('cat -n: the number and tab come off', () => {
    const d = docs('cat-n-prefix.log');
    expect(d.map((x) => x.log.level)).toEqual(['ERROR', 'ERROR', 'INFO']);
    expect(d[1].error?.stack_trace?.split('\n')).toHaveLength(3);
  });
});

describe('partial lines', () => {
  it('stdout and stderr pieces are never joined; a partial line at end of file is flushed and flagged', () => {
    const d = docs('cri-partial-streams.log');
    expect(d.map((x) => [x.log.level, x.message, x.log.flags])).toEqual([
      ['INFO', 'stdout begins and stdout ends', undefined],
      ['ERROR', 'stderr begins and stderr ends', undefined],
      ['INFO', 'a line whose end never came ', ['partial']],
    ]);
  });

  it('Docker pieces: joined within their stream; the last one at end of file is flushed, flagged', () => {
    const d = docs('docker-partial-eof.log');
    expect(d.map((x) => [x.message, x.log.flags])).toEqual([
      ['complete', undefined],
      ['a 16 KiB piece and its second piece, the last of the file', ['partial']],
      ['on stderr', undefined],
    ]);
  });

  it('pieces are bounded by max_event_bytes: 50 MB of "P" pieces is one capped, flagged event and then the next line', () => {
    const piece = '2022-02-04T09:37:50.100000000Z stdout P ' + 'x'.repeat(16 * 1024 - 1) + ' ';
    let text = '';
    const events: AssembledEvent[] = [];
    const a = new EventAssembler({ maxEventBytes: 64 * 1024 }, (e) => events.push(e));
    for (let i = 0; i < 3200; i++) a.push(i * piece.length, piece);
    const heap = process.memoryUsage().heapUsed;
    for (let i = 0; i < 3200; i++) a.push(i * piece.length, piece);
    expect(process.memoryUsage().heapUsed - heap).toBeLessThan(32 * 1024 * 1024);
    a.push(1e9, '2022-02-04T09:37:51.000000000Z stdout F end of the long line');
    a.push(1e9 + 100, '2022-02-04T09:37:52.000000000Z stdout F next');
    a.flush();
    text = events[0].text;
    expect(events).toHaveLength(2);
    expect(text.length).toBeLessThanOrEqual(64 * 1024);
    expect(events[0].truncated).toBe(true);
    expect(events[1].text).toBe('next');
  });
});

describe('timestamps that cannot exist never reach @timestamp', () => {
  it('month 13, 2023-02-29: the read time, a flag, and the raw text kept', () => {
    const d = docs('invalid-timestamps.log');
    expect(d.map((x) => [x['@timestamp'], x.log.flags, x.log.level])).toEqual([
      [READ_AT, ['invalid_timestamp'], 'ERROR'],
      [READ_AT, ['invalid_timestamp'], 'INFO'],
      ['2024-02-29T10:00:00.000Z', undefined, 'INFO'],
    ]);
    expect(d[0].event.original).toContain('2025-13-45 25:61:61.000');
    for (const x of d) expect(Number.isNaN(Date.parse(x['@timestamp']))).toBe(false);
  });

  it('an offset of +99:99 (RabbitMQ)', () => {
    const d = docs('invalid-offset-rabbitmq.log');
    expect(d.map((x) => [x['@timestamp'], x.log.flags])).toEqual([
      ['2022-02-04T09:37:49.000Z', undefined],
      [READ_AT, ['invalid_timestamp']],
    ]);
    expect(d[1].event.original).toContain('+99:99');
  });

  it("inside an envelope: the envelope's time", () => {
    const [d] = docs('invalid-timestamp-in-envelope.log');
    expect([d['@timestamp'], d.log.flags, d.log.logger]).toEqual(['2022-02-04T09:37:50.000Z', ['invalid_timestamp'], 'oslo.messaging._drivers.impl_rabbit']);
  });
});

describe('a CR or U+2028 inside a line', () => {
  it('keeps level, logger, pid and request id, and the message one line', () => {
    const d = docs('line-separators.log', { keepOriginal: true });
    expect(d).toHaveLength(2);
    for (const x of d) {
      expect([x.log.level, x.log.logger, x.process?.pid, x.openstack?.request_id]).toEqual([
        'ERROR',
        'oslo.messaging._drivers.impl_rabbit',
        21562,
        'req-30b3bc7c-90c2-4c1c-8d0c-62455d58bfca',
      ]);
      expect(x.message).not.toMatch(/[\r\u2028\u2029]/);
    }
    expect(d[0].message).toBe('Connection failed: [Errno 111] ECONNREFUSED (retrying in 2.0 seconds)');
    expect(d[1].message).toMatch(/^AMQP server on 10\.0\.0\.5:5672 is unreachable: timed out\./);
    expect(d[0].event.original).toContain('\r');
  });
});

describe('event.original is masked as a whole', () => {
  const SECRET = 'Zq8vN2mW4xT7pL1k';

  it('a secret split across CRI partial pieces', () => {
    const lines = [
      `2022-02-04T09:37:50.100000000Z stdout P 2022-02-04 09:37:50.100 7 DEBUG x [-] transport_url = rabbit://nova:${SECRET.slice(0, 7)}`,
      `2022-02-04T09:37:50.100000001Z stdout F ${SECRET.slice(7)}@10.0.0.5:5672/`,
    ];
    const [e] = assemble(lines.join('\n') + '\n', { keepOriginal: true });
    expect(e.text).toContain('rabbit://nova:***@10.0.0.5');
    for (const part of [SECRET, SECRET.slice(0, 7), SECRET.slice(7)]) expect(e.original).not.toContain(part);
    expect(e.original?.split('\n')).toHaveLength(2);
    expect(e.original).toContain('stdout F ');
  });

  it('a secret split across Docker pieces', () => {
    const lines = [
      JSON.stringify({ log: `2022-02-04 09:37:50.100 7 DEBUG x [-] password=${SECRET.slice(0, 9)}`, stream: 'stdout', time: '2022-02-04T09:37:50.1Z' }),
      JSON.stringify({ log: `${SECRET.slice(9)} and more\n`, stream: 'stdout', time: '2022-02-04T09:37:50.2Z' }),
    ];
    const [e] = assemble(lines.join('\n') + '\n', { keepOriginal: true });
    expect(e.text).toContain('password=*** and more');
    for (const part of [SECRET.slice(0, 9), SECRET.slice(9)]) expect(e.original).not.toContain(part);
    expect(() => e.original!.split('\n').map((l) => JSON.parse(l) as unknown)).not.toThrow();
  });

  it('a Fernet token cut at max_event_bytes leaves no piece of itself in text or original', () => {
    const token = 'gAAAAA' + 'bC9xYz01-_'.repeat(12);
    const line = `2022-02-04 09:37:50.100 7 DEBUG keystonemiddleware.auth_token [-] validating ${token} now`;
    const max = line.indexOf(token) + 60;
    const [e] = assemble(line + '\n', { maxEventBytes: max, keepOriginal: true });
    expect(e.truncated).toBe(true);
    expect(e.text).not.toContain(token.slice(0, 20));
    expect(e.original).not.toContain(token.slice(0, 20));
  });
});
