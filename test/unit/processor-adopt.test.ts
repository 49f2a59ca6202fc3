// A partition that moves to another processor brings the state of its open alerts (issue 15): the processor given
// the partitions of one that left the group adopts its checkpoint (processors/checkpoint.ts, state/merge.ts). On a
// state log in memory, two processors of one group: the one that held the outage's partition dies; the survivor,
// given it, adopts the outage and resolves it under the same alert id and start, the pager getting one firing and one
// resolved page in all. A checkpoint whose owner is still in the group is not adopted, nor one whose lowest
// partition went to another processor; an adopted checkpoint is emptied after the adopter's save, so that its owner
// restarts empty and nobody adopts it twice. test/integration/processor-handover.test.ts does it with the real parts.
import { describe, expect, it } from 'vitest';
import type { Alert } from '../../core/events.ts';
import { DetectionEngine } from '../../detectors/engine.ts';
import { loadRules } from '../../detectors/rules.ts';
import { IncidentCorrelator } from '../../incidents/correlator.ts';
import { loadIncidentRules } from '../../incidents/rules.ts';
import { ProcessorCheckpoints } from '../../processors/checkpoint.ts';
import { parseLogEvent } from '../../processors/parse-log.ts';
import { StateStore } from '../../state/store.ts';
import { MemoryLog } from './memory-log.ts';

const RULES = loadRules().filter((r) => r.id === 'amqp-connection-lost');
const INCIDENT_RULES = loadIncidentRules();
const LOSS = `2026-12-03 06:00:00.000 4242 ERROR oslo.messaging._drivers.impl_rabbit [-] [0b4e5c1a-3f4d-4c2b-9a7e-1d2c3b4a5f60] AMQP server on 10.0.0.5:5672 is unreachable: [Errno 111] ECONNREFUSED. Trying again in 1 seconds.: ConnectionRefusedError: [Errno 111] ECONNREFUSED`;
const BACK =
  '2026-12-03 06:00:40.000 4242 INFO oslo.messaging._drivers.impl_rabbit [-] [0b4e5c1a-3f4d-4c2b-9a7e-1d2c3b4a5f60] Reconnected to AMQP server on 10.0.0.5:5672 via [amqp] client with port 40522.';
const INFO = (s: number) => `2026-12-03 06:00:${String(s).padStart(2, '0')}.000 77 INFO nova.compute.manager [-] Running periodic task ComputeManager._poll_volume_usage`;

/** A processor `name` of the group, on `log`, holding `partitions` of the topic `logs`. */
async function processor(log: MemoryLog, name: string, partitions: number[]) {
  const engine = await DetectionEngine.create(RULES);
  const incidents = new IncidentCorrelator(INCIDENT_RULES, { minDurationS: 0 });
  const { checkpoints, restored } = await ProcessorCheckpoints.withStore(new StateStore(log), `group/${name}`, 1000, engine, incidents);
  checkpoints.onAssigned(new Map([['logs', partitions]]));
  const sent: Alert[] = [];
  const commits: { topic: string; partition: number; offset: string }[][] = [];
  const consumer = { commit: async (o: { topic: string; partition: number; offset: string }[]) => void commits.push(o) };
  /** One log line of `host` at `offset` of logs/`partition`: detection, incidents, and the batch's place. */
  const line = (host: string, text: string, partition: number, offset: number) => {
    const doc = parseLogEvent({ v: 1, host, path: '/var/log/nova/nova-compute.log', file_id: `f-${host}`, offset, text, read_at: '2026-12-03T06:01:00.000Z' }, { timezone: 'UTC' });
    const alerts = engine.on({ kind: 'log', doc });
    const changes = incidents.onAlerts(alerts, Date.parse(doc['@timestamp']));
    checkpoints.seen(
      'logs',
      partition,
      String(offset),
      changes.flatMap((c) => (c.page ? [c.page] : [])),
    );
    return alerts;
  };
  /** The wall clock's turn at `iso`. */
  const tick = (iso: string) => {
    const alerts = engine.tick(Date.parse(iso));
    const changes = [...incidents.onAlerts(alerts, Date.parse(iso))];
    checkpoints.queue(changes.flatMap((c) => (c.page ? [c.page] : [])));
    return alerts;
  };
  const save = () => checkpoints.save(consumer, async (pages) => void sent.push(...pages));
  const members =
    (...names: string[]) =>
    async () =>
      new Set(names);
  return { engine, incidents, checkpoints, restored, sent, commits, line, tick, save, members };
}

describe('a partition that moves to another processor', () => {
  it("the survivor adopts the departed processor's open outage and resolves it under the same id and start: one firing, one resolved page in all", async () => {
    const log = new MemoryLog();
    const a = await processor(log, 'a', [0]);
    const b = await processor(log, 'b', [1]);
    const fired = a.line('compute-1', LOSS, 0, 0);
    expect(fired.map((x) => x.alert.status)).toEqual(['firing']);
    b.line('compute-2', INFO(1), 1, 0);
    await a.save();
    await b.save();
    expect(a.sent.map((p) => p.alert.status)).toEqual(['firing']);

    // a is killed; b is given both partitions (a is no longer in the group).
    b.checkpoints.onAssigned(new Map([['logs', [0, 1]]]));
    const { adopted } = await b.checkpoints.adopt(b.members('b'));
    expect(adopted).toEqual([{ owner: 'group/a', seq: expect.any(Number), partitions: ['logs/0'], rules: 1, incidents: 1, outbox: 0, problems: [] }]);
    expect(b.incidents.size).toBe(1);
    // The batch of logs/0 that a saw is skipped; what came after is b's.
    expect(b.checkpoints.unseen('logs', 0, [{ offset: '0' }, { offset: '1' }])).toEqual([{ offset: '1' }]);
    expect(b.checkpoints.due(Date.now(), true), 'the adoption is to be saved').toBe(true);
    await b.save();
    expect(b.commits.at(-1)).toEqual(
      expect.arrayContaining([
        { topic: 'logs', partition: 0, offset: '1' },
        { topic: 'logs', partition: 1, offset: '1' },
      ]),
    );

    b.line('compute-1', BACK, 0, 1);
    const resolved = b.tick('2026-12-03T06:00:46.000Z');
    expect(resolved.map((x) => [x.alert.status, x.alert.id, x.alert.started_at])).toEqual([['resolved', fired[0].alert.id, fired[0].alert.started_at]]);
    b.tick('2026-12-03T06:20:00.000Z');
    b.checkpoints.queue(b.incidents.tick(Date.parse('2026-12-03T06:20:00.000Z')).flatMap((c) => (c.page ? [c.page] : [])));
    await b.save();
    const pages = [...a.sent, ...b.sent];
    expect(pages.map((p) => p.alert.status)).toEqual(['firing', 'resolved']);
    expect(new Set(pages.map((p) => p.alert.id)).size).toBe(1);

    // a's checkpoint was emptied after b's save: a restarts empty, and nobody adopts it again.
    const again = await processor(log, 'a', []);
    expect(again.restored).toMatchObject({ rules: 0, incidents: 0, outbox: 0, problems: [] });
    const listed = (await new StateStore(log).list()).checkpoints.find((c) => c.owner === 'group/a')!;
    expect(listed.offsets).toEqual({});
    expect(await b.checkpoints.adopt(b.members('b'))).toEqual({ adopted: [] });
  });

  it('pages the departed processor saved but did not send are sent by the adopter', async () => {
    const log = new MemoryLog();
    const a = await processor(log, 'a', [0]);
    a.line('compute-1', LOSS, 0, 0);
    await expect(a.checkpoints.save({ commit: async () => {} }, async () => Promise.reject(new Error('pager down')))).rejects.toThrow(/pager down/);
    const b = await processor(log, 'b', [0, 1]);
    const {
      adopted: [adopted],
    } = await b.checkpoints.adopt(b.members('b'));
    expect(adopted).toMatchObject({ owner: 'group/a', outbox: 1 });
    await b.save();
    expect(b.sent.map((p) => p.alert.status)).toEqual(['firing']);
  });

  it('not adopted: an owner still in the group (a live rebalance), or one whose lowest partition went to another processor', async () => {
    const log = new MemoryLog();
    const a = await processor(log, 'a', [0, 1]);
    a.line('compute-1', LOSS, 0, 0);
    a.line('compute-2', INFO(2), 1, 0);
    await a.save();
    // b joins and is given logs/1 while a lives on.
    const b = await processor(log, 'b', [1]);
    expect(await b.checkpoints.adopt(b.members('a', 'b'))).toEqual({ adopted: [] });
    // a is gone, but its lowest partition (logs/0) went to c: c adopts it, not b.
    expect(await b.checkpoints.adopt(b.members('b', 'c'))).toEqual({ adopted: [] });
    const c = await processor(log, 'c', [0]);
    // While a is still in the group, c holds its lowest partition but adopts nothing, and says whose it left.
    expect(await c.checkpoints.adopt(c.members('a', 'c'))).toEqual({ adopted: [], live: ['group/a'] });
    expect(c.incidents.size).toBe(0);
    expect((await c.checkpoints.adopt(c.members('b', 'c'))).adopted.map((x) => [x.owner, x.partitions])).toEqual([['group/a', ['logs/0']]]);
    expect(c.incidents.size).toBe(1);
  });

  it("the survivor's own open alerts and the departed one's are both kept (each host's outage resolves on its own)", async () => {
    const log = new MemoryLog();
    const a = await processor(log, 'a', [0]);
    const b = await processor(log, 'b', [1]);
    const firedA = a.line('compute-1', LOSS, 0, 0);
    const firedB = b.line('compute-2', LOSS, 1, 0);
    await a.save();
    await b.save();
    b.checkpoints.onAssigned(new Map([['logs', [0, 1]]]));
    const {
      adopted: [adopted],
    } = await b.checkpoints.adopt(b.members('b'));
    expect(adopted.problems).toEqual([]);
    const firing = (b.engine.snapshot()['amqp-connection-lost'] as { data: { outages: { keys: string[]; open: number } } }).data.outages;
    expect(firing.open, JSON.stringify(firing.keys)).toBe(2);
    b.line('compute-1', BACK, 0, 1);
    b.line('compute-2', BACK, 1, 1);
    const resolved = b.tick('2026-12-03T06:00:46.000Z');
    expect(resolved.map((x) => x.alert.id).sort()).toEqual([firedA[0].alert.id, firedB[0].alert.id].sort());
  });

  it('restarted while another processor adopted its checkpoint (after its restore, before its join): the state it restored is dropped at its join', async () => {
    const log = new MemoryLog();
    const a = await processor(log, 'a', [0]);
    a.line('compute-1', LOSS, 0, 0);
    await a.save();
    // a is killed and starts again: it restores its checkpoint, and has not joined yet when b adopts it.
    const a2 = await processor(log, 'a', []);
    expect(a2.restored).toMatchObject({ rules: 1, incidents: 1 });
    const b = await processor(log, 'b', [0]);
    expect((await b.checkpoints.adopt(b.members('b'))).adopted).toHaveLength(1);
    await b.save();
    // a2 joins and is given logs/1: what it restored is b's now.
    a2.checkpoints.onAssigned(new Map([['logs', [1]]]));
    const { adopted, dropped } = await a2.checkpoints.adopt(a2.members('a', 'b'));
    expect(adopted).toEqual([]);
    expect(dropped).toMatch(/^the checkpoint restored at start \(save \d+\) was adopted by another processor meanwhile \(now save \d+\): its state dropped, started empty$/);
    expect(a2.incidents.size).toBe(0);
    const outages = (a2.engine.snapshot()['amqp-connection-lost'] as { data: { outages: { keys: string[] } } }).data.outages;
    expect(outages.keys).toEqual([]);
    // Not dropped when nobody adopted it: a plain restart keeps what it restored.
    const log2 = new MemoryLog();
    const c = await processor(log2, 'c', [0]);
    c.line('compute-1', LOSS, 0, 0);
    await c.save();
    const c2 = await processor(log2, 'c', []);
    c2.checkpoints.onAssigned(new Map([['logs', [0]]]));
    expect(await c2.checkpoints.adopt(c2.members('c'))).toEqual({ adopted: [] });
    expect(c2.incidents.size).toBe(1);
  });
});
