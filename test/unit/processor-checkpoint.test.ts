// The processor's checkpoints (processors/checkpoint.ts) on a state log in memory: pages wait for the save that
// holds them and are kept when a save, a commit or a send fails; a restarted processor restores the open outage and
// resolves it under the same alert id and start, and sends the pages its predecessor saved but did not send; batches
// delivered again are skipped up to what the state has seen; only the partitions held are saved and committed; an
// unchanged part is not written again. test/integration/amqp-restart.test.ts does it with the real parts.
import { describe, expect, it } from 'vitest';
import type { Alert } from '../../core/events.ts';
import { DetectionEngine } from '../../detectors/engine.ts';
import { loadRules } from '../../detectors/rules.ts';
import { IncidentCorrelator } from '../../incidents/correlator.ts';
import { loadIncidentRules } from '../../incidents/rules.ts';
import { ProcessorCheckpoints } from '../../processors/checkpoint.ts';
import { Miner } from '../../processors/templates/miner.ts';
import { parseLogEvent } from '../../processors/parse-log.ts';
import { StateStore } from '../../state/store.ts';
import { MemoryLog } from './memory-log.ts';

const RULES = loadRules().filter((r) => r.id === 'amqp-connection-lost');
const INCIDENT_RULES = loadIncidentRules();
const LOSS =
  '2026-12-03 06:00:00.000 4242 ERROR oslo.messaging._drivers.impl_rabbit [-] [0b4e5c1a-3f4d-4c2b-9a7e-1d2c3b4a5f60] AMQP server on 10.0.0.5:5672 is unreachable: [Errno 111] ECONNREFUSED. Trying again in 1 seconds.: ConnectionRefusedError: [Errno 111] ECONNREFUSED';
const BACK =
  '2026-12-03 06:00:40.000 4242 INFO oslo.messaging._drivers.impl_rabbit [-] [0b4e5c1a-3f4d-4c2b-9a7e-1d2c3b4a5f60] Reconnected to AMQP server on 10.0.0.5:5672 via [amqp] client with port 40522.';

/** A processor's detection state and its checkpoints on `log`. */
async function processor(log: MemoryLog, templates = new Miner()) {
  const engine = await DetectionEngine.create(RULES);
  const incidents = new IncidentCorrelator(INCIDENT_RULES, { minDurationS: 0 });
  const { checkpoints, restored } = await ProcessorCheckpoints.withStore(new StateStore(log), 'group/p1', 1000, engine, incidents, templates);
  const sent: Alert[] = [];
  const commits: { topic: string; partition: number; offset: string }[][] = [];
  const consumer = { commit: async (o: { topic: string; partition: number; offset: string }[]) => void commits.push(o) };
  /** One log line at `offset` of logs/0: detection, incidents, and the batch's place in the state. */
  const line = (text: string, offset: number) => {
    const doc = parseLogEvent({ v: 1, host: 'compute-1', path: '/var/log/nova/nova-compute.log', file_id: 'f', offset, text, read_at: '2026-12-03T06:01:00.000Z' }, { timezone: 'UTC' });
    const alerts = engine.on({ kind: 'log', doc });
    const changes = incidents.onAlerts(alerts, Date.parse(doc['@timestamp']));
    checkpoints.seen(
      'logs',
      0,
      String(offset),
      changes.flatMap((c) => (c.page ? [c.page] : [])),
    );
    return alerts;
  };
  const save = () => checkpoints.save(consumer, async (pages) => void sent.push(...pages));
  return { engine, incidents, checkpoints, restored, sent, commits, consumer, line, save, templates };
}

describe('processor checkpoints', () => {
  it('a restarted processor restores the open outage: its reconnect resolves it under the same id and start, paged once', async () => {
    const log = new MemoryLog();
    const a = await processor(log);
    expect(a.restored.seq).toBeUndefined();
    const fired = a.line(LOSS, 0);
    expect(fired.map((x) => x.alert.status)).toEqual(['firing']);
    expect(a.sent, 'pages wait for the save that holds them').toEqual([]);
    await a.save();
    expect(a.sent.map((p) => p.alert.status)).toEqual(['firing']);
    expect(a.commits.at(-1)).toEqual([{ topic: 'logs', partition: 0, offset: '1' }]);

    // Killed here. The next one restores the state and goes on from offset 1.
    const b = await processor(log);
    expect(b.restored).toMatchObject({ rules: 1, incidents: 1, problems: [] });
    expect(b.checkpoints.unseen('logs', 0, [{ offset: '0' }, { offset: '1' }])).toEqual([{ offset: '1' }]);
    const resolved = b.line(BACK, 1);
    expect(resolved.map((x) => [x.alert.status, x.alert.id, x.alert.started_at])).toEqual([]); // settle_s: not yet
    const later = b.engine.tick(Date.parse('2026-12-03T06:00:46.000Z'));
    expect(later.map((x) => [x.alert.status, x.alert.id, x.alert.started_at])).toEqual([['resolved', fired[0].alert.id, fired[0].alert.started_at]]);
    const changes = b.incidents.onAlerts(later, Date.parse('2026-12-03T06:00:46.000Z'));
    b.checkpoints.queue(changes.flatMap((c) => (c.page ? [c.page] : [])));
    const closed = b.incidents.tick(Date.parse('2026-12-03T06:20:00.000Z'));
    b.checkpoints.queue(closed.flatMap((c) => (c.page ? [c.page] : [])));
    await b.save();
    // Across both processors: one firing and one resolved page of the one incident.
    const pages = [...a.sent, ...b.sent];
    expect(pages.map((p) => p.alert.status)).toEqual(['firing', 'resolved']);
    expect(new Set(pages.map((p) => p.alert.id)).size).toBe(1);
  });

  it('pages saved but not sent (a crash right after the save) go out from the next processor; a failed send or commit keeps them', async () => {
    const log = new MemoryLog();
    const a = await processor(log);
    a.line(LOSS, 0);
    await expect(a.checkpoints.save(a.consumer, async () => Promise.reject(new Error('pager down')))).rejects.toThrow(/pages not handed to the notifiers: pager down/);
    expect(a.checkpoints.due(Date.now(), true), 'still to do').toBe(true);
    await expect(a.checkpoints.save({ commit: () => Promise.reject(new Error('rebalancing')) }, async (p) => void a.sent.push(...p))).rejects.toThrow(/rebalancing/);
    expect(a.sent).toEqual([]);
    // The checkpoint holds the page: a new processor sends it with its first save.
    const b = await processor(log);
    expect(b.restored.outbox).toBe(1);
    expect(b.checkpoints.due(Date.now())).toBe(true);
    await b.save();
    expect(b.sent.map((p) => p.alert.status)).toEqual(['firing']);
    // Sent: the outbox is saved empty at once, and a processor after it sends nothing.
    const c = await processor(log);
    expect(c.restored.outbox).toBe(0);
  });

  it('a damaged page in the saved outbox is named and left out; the sound pages are still sent, and a non-list outbox starts empty', async () => {
    const log = new MemoryLog();
    const a = await processor(log);
    a.line(LOSS, 0);
    await expect(a.checkpoints.save(a.consumer, async () => Promise.reject(new Error('pager down')))).rejects.toThrow(/pager down/);
    const store = new StateStore(log);
    const saved = (await store.load('group/p1')).checkpoint!;
    const [page] = saved.parts.outbox as Alert[];
    expect(page.alert.status).toBe('firing');
    // The outbox rewritten with the sound page between two that are not alerts.
    await store.save('group/p1', { offsets: saved.offsets, parts: { ...saved.parts, outbox: [{}, page, { ...page, alert: { ...page.alert, status: 'maybe' } }] } });
    const b = await processor(log);
    expect(b.restored.outbox).toBe(1);
    expect(b.restored.problems).toEqual([expect.stringMatching(/^outbox: 2 of 3 pages left out \(page 0: @timestamp .*; page 2: alert\.status /)]);
    await b.save();
    expect(b.sent).toEqual([page]);
    const after = (await store.load('group/p1')).checkpoint!;
    expect(after.parts.outbox).toEqual([]);

    await store.save('group/p1', { offsets: after.offsets, parts: { ...after.parts, outbox: { pages: 1 } } });
    const c = await processor(log);
    expect(c.restored.outbox).toBe(0);
    expect(c.restored.problems).toEqual(['outbox: not a list of pages but object; started empty']);
  });

  it('saves and commits only the partitions it holds, and skips what a batch delivered again holds that the state has seen', async () => {
    const log = new MemoryLog();
    const a = await processor(log);
    a.checkpoints.seen('logs', 0, '41', []);
    a.checkpoints.seen('logs', 2, '7', []);
    a.checkpoints.onAssigned(new Map([['logs', [0, 1]]]));
    a.checkpoints.seen('logs', 1, '3', []);
    await a.save();
    expect(a.commits.at(-1)).toEqual([
      { topic: 'logs', partition: 0, offset: '42' },
      { topic: 'logs', partition: 1, offset: '4' },
    ]);
    expect(a.checkpoints.unseen('logs', 0, [{ offset: '41' }, { offset: '42' }])).toEqual([{ offset: '42' }]);
    expect(a.checkpoints.unseen('logs', 2, [{ offset: '0' }]), 'a partition not seen: everything').toEqual([{ offset: '0' }]);
  });

  it('writes a part again only when it changed', async () => {
    const log = new MemoryLog();
    const a = await processor(log);
    a.line(LOSS, 0);
    await a.save();
    await a.save(); // the outbox, now empty
    const before = log.messages.length;
    a.checkpoints.seen('logs', 0, '1', []); // nothing changed but the offset
    await a.save();
    const written = log.messages.slice(before).map((m) => m.key);
    expect(written).toEqual(['group/p1|manifest']);
  });

  it('restores the log templates: a line of a template generalised before the restart keeps its id after it', async () => {
    const log = new MemoryLog();
    const a = await processor(log);
    const spawned = (host: string) => `Instance spawned successfully on host ${host} by conductor`;
    for (const h of ['alpha', 'beta', 'gamma', 'delta', 'epsilon', 'zeta', 'eta', 'theta']) a.templates.add(spawned(h));
    const general = a.templates.add(spawned('iota'));
    expect(general.text).toBe(spawned('<*>')); // generalised by now
    a.checkpoints.seen('logs', 0, '1', []);
    await a.save();

    const b = await processor(log);
    expect(b.restored).toMatchObject({ templates: a.templates.size, problems: [] });
    expect(b.restored.templates).toBeGreaterThan(0);
    expect(b.templates.add(spawned('kappa'))).toEqual(general);
    // Without the checkpoint's templates, the same line is a template of its own: another id (a "new" error pattern).
    expect(new Miner().add(spawned('kappa')).id).not.toBe(general.id);
  });

  it('writes the templates again when they changed, not when only a count did', async () => {
    const log = new MemoryLog();
    const a = await processor(log);
    a.templates.add('Instance spawned successfully on host alpha by conductor');
    a.checkpoints.seen('logs', 0, '0', []);
    await a.save();
    const written = async (line: string, offset: number) => {
      const before = log.messages.length;
      a.templates.add(line);
      a.checkpoints.seen('logs', 0, String(offset), []);
      await a.save();
      return log.messages.slice(before).some((m) => m.key.includes('|templates|'));
    };
    expect(await written('Instance spawned successfully on host alpha by conductor', 1), 'a count only').toBe(false);
    expect(await written('Volume attached to instance on host beta', 2), 'a new template').toBe(true);
  });

  it('a templates part that does not load is named, and the miner starts empty; the rest is restored', async () => {
    const log = new MemoryLog();
    const a = await processor(log);
    a.line(LOSS, 0);
    a.templates.add('Instance spawned successfully on host alpha by conductor');
    await a.save();
    // The next processor's miner reads another shape of snapshot (a later version, say).
    const picky = new Miner();
    const b = await processor(log, Object.assign(picky, { restore: () => 'v: expected 1, got 2' }) as Miner);
    expect(b.restored.templates).toBe(0);
    expect(b.restored.problems).toEqual(['templates: v: expected 1, got 2']);
    expect(b.restored).toMatchObject({ rules: 1, incidents: 1 });
  });
});
