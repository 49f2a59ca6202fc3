// A batch of a file's log events in one Kafka record (RawLogBatch), as the collector sends them: what the processor
// takes out of it is exactly what went in, in order, each event with the ids a record of its own would give it; a
// record stays within its size unless one event alone is larger; a bad event is refused alone, a bad batch whole.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encodeLogBatches, RawLogEvent, type LogEventOwn } from '../../core/events.ts';
import { decodeMessage, messageEvents } from '../../processors/decode.ts';

const shared = { host: 'compute-1', path: '/var/log/kolla/nova/nova-compute.log', file_id: 'abc', read_at: '2026-12-04T08:00:00.000Z' };
const ctx = { timezone: 'UTC', source: { topic: 'logs', partition: 0, offset: '7' } };

const own: fc.Arbitrary<LogEventOwn> = fc.record(
  {
    offset: fc.nat(),
    text: fc.string({ unit: 'binary', maxLength: 300 }),
    envelope: fc.record({ format: fc.constantFrom('cri' as const, 'syslog' as const), stream: fc.constantFrom('stdout' as const, 'stderr' as const) }),
    truncated: fc.constant(true as const),
    flags: fc.array(fc.constantFrom('partial', 'truncated'), { maxLength: 2 }),
    original: fc.string({ maxLength: 50 }),
  },
  { requiredKeys: ['offset', 'text'] },
);

const unpack = (records: string[]) => records.flatMap((r) => messageEvents('logs', JSON.parse(r)).events);

describe('log event batches', () => {
  it('give back every event, in order, as the RawLogEvent a record of its own would hold; records within their size', () => {
    fc.assert(
      fc.property(fc.array(own, { maxLength: 60 }), fc.integer({ min: 1, max: 10 }), fc.integer({ min: 100, max: 4000 }), (events, maxEvents, maxBytes) => {
        const records = encodeLogBatches(shared, events, maxEvents, maxBytes);
        const back = unpack(records);
        expect(back).toEqual(events.map((e) => ({ v: 1, ...shared, ...e })));
        for (const e of back) expect(RawLogEvent.safeParse(e).success).toBe(true);
        for (const r of records) {
          const n = (JSON.parse(r) as { events: unknown[] }).events.length;
          expect(n).toBeGreaterThan(0);
          expect(n).toBeLessThanOrEqual(maxEvents);
          // Over the size only when it holds a single event.
          if (n > 1)
            expect(r.length - `{"v":2,"host":"compute-1","path":"${shared.path}","file_id":"abc","read_at":"${shared.read_at}","events":[]}`.length).toBeLessThanOrEqual(maxBytes + n);
        }
        expect(records.length).toBeGreaterThanOrEqual(Math.ceil(events.length / maxEvents));
      }),
    );
  });

  it('decode to the same documents and ids as records of one event each', () => {
    const events: LogEventOwn[] = [
      { offset: 0, text: '2022-02-04 09:47:02.181 29295 ERROR oslo.messaging._drivers.impl_rabbit [-] Connection failed' },
      { offset: 97, text: '2022-02-04 09:47:03.000 29295 INFO nova.compute.manager [-] Running periodic task' },
    ];
    const batched = unpack(encodeLogBatches(shared, events, 100, 1 << 20)).map((e) => decodeMessage('logs', e, ctx).document);
    const single = events.map((e) => decodeMessage('logs', JSON.parse(JSON.stringify({ v: 1, ...shared, ...e })), ctx).document);
    expect(batched).toEqual(single);
    expect(new Set(batched.map((d) => d!.id)).size).toBe(2);
  });

  it('refuses a bad event alone, naming the field, and a batch that is not one whole', () => {
    const record = JSON.parse(
      encodeLogBatches(
        shared,
        [
          { offset: 1, text: 'a' },
          { offset: 2, text: 'b' },
        ],
        10,
        1000,
      )[0],
    );
    record.events[1].offset = 'two';
    const { events, batched } = messageEvents('logs', record);
    expect(batched).toBe(true);
    expect(decodeMessage('logs', events[0], ctx).document).toBeDefined();
    expect(() => decodeMessage('logs', events[1], ctx)).toThrow(/not a raw log event: offset/);
    expect(() => messageEvents('logs', { ...record, events: 'x' })).toThrow(/not a batch of raw log events: events/);
    expect(() => messageEvents('logs', { ...record, host: '' })).toThrow(/not a batch of raw log events: host/);
    // Other topics and single events pass through as they are.
    expect(messageEvents('metrics', { v: 2 })).toEqual({ events: [{ v: 2 }], batched: false });
    expect(messageEvents('logs', { v: 1, text: 'x' }).batched).toBe(false);
  });
});
