// kill -9, at random moments, of the collector (10 times) and of the processor (10 times) while a million real log
// lines are ingested, each restarted at once: Elasticsearch ends up with exactly the events of the source — the
// count, and every expected document id (host + file identity + byte offset), none missing, none twice, nothing
// dead-lettered.
//
// The source is the benchmark corpus (bench/corpus.ts: the bundled hotsos and Loghub OpenStack logs, 28 times
// over, 1,033,452 lines). Its events are counted, and their ids computed, with the collector's own assembler
// (collectors/read-file.ts). The file grows while the collector tails it, as a live log does: it is appended in
// pieces that end where an event ends, so the collector's "quiet file" flush cannot cut an event differently
// from the offline count whatever the timing.
import { closeSync, mkdirSync, openSync, readFileSync, readSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { buildCorpus } from '../../bench/corpus.ts';
import { readLogFile } from '../../collectors/read-file.ts';
import { logEventId } from '../../core/events.ts';
import { groupProgress } from '../../core/kafka.ts';
import { allIds, countDocs, stackwatch, testSetup, type Cli } from './harness.ts';

const KILLS = 10;
const MIN_LINES = 1_000_000;
/** How long the source takes to be written (the collector tails it meanwhile). */
const WRITE_MS = 40_000;
const PIECE_BYTES = 1024 * 1024;

const t = testSetup('faults-kill', (raw) => {
  delete raw.alertmanager; // logs only: no pages from this test
  raw.kafka.session_timeout_ms = 6000; // a killed processor's partitions move on after 6 s (the broker's minimum)
});
const children = new Set<Cli>();
afterAll(async () => {
  for (const c of children) if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill('SIGKILL');
  await t.cleanup();
  rmSync(t.dir, { recursive: true, force: true }); // 175 MiB of logs
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const random = (min: number, max: number) => min + Math.random() * (max - min);
const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

function run(role: 'collector' | 'processor'): Cli {
  const cli = stackwatch(['run', '--role', role, '--config', t.configFile]);
  children.add(cli);
  return cli;
}

async function kill9(cli: Cli): Promise<void> {
  cli.child.kill('SIGKILL');
  const { signal } = await cli.exited;
  expect(signal).toBe('SIGKILL');
  children.delete(cli);
}

describe('kill -9 during a 1M-line ingest', () => {
  it(`collector and processor killed ${KILLS} times each: every event in Elasticsearch exactly once`, { timeout: 420_000 }, async () => {
    const t0 = Date.now();
    const corpus = await buildCorpus(MIN_LINES);
    expect(corpus.lines).toBeGreaterThanOrEqual(MIN_LINES);

    // The events of the source, by the collector's own assembler: their ids, and where the file may be cut
    // between two appends (at an event's first byte, about every PIECE_BYTES).
    const expected = new Set<string>();
    const cuts: number[] = [0];
    let fileId = '';
    for await (const { fileId: id, events, unusable } of readLogFile(corpus.path, { maxEventBytes: t.cfg.collectors.openstack_logs!.max_event_bytes })) {
      expect(unusable).toEqual([]);
      fileId = id;
      for (const e of events) {
        expected.add(logEventId({ host: t.host, file_id: id, offset: e.offset }));
        if (e.offset >= cuts[cuts.length - 1] + PIECE_BYTES) cuts.push(e.offset);
      }
    }
    cuts.push(corpus.bytes);
    const events = expected.size;
    expect(events).toBeGreaterThan(500_000);

    const logs = join(t.dir, 'logs');
    mkdirSync(logs);
    const target = join(logs, 'openstack.log');
    const checkpointFile = join(t.cfg.collectors.openstack_logs!.checkpoint_dir, `openstack-logs-${t.host}.checkpoints.json`);
    const checkpoint = (): number => {
      try {
        return JSON.parse(readFileSync(checkpointFile, 'utf8')).files[fileId]?.offset ?? 0;
      } catch {
        return 0;
      }
    };
    const { logs: logsTopic, dead_letter: deadTopic } = t.cfg.kafka.topics;
    const group = t.cfg.kafka.consumer_group;
    /** The group's progress on the logs topic (asked again if the broker does not answer at once). */
    const progress = async () => {
      for (let attempt = 1; ; attempt++) {
        try {
          const p = await groupProgress(t.cfg.kafka, group, logsTopic);
          return { committed: p.reduce((s, x) => s + x.committed, 0), lag: p.reduce((s, x) => s + x.end - x.committed, 0), end: p.reduce((s, x) => s + x.end, 0) };
        } catch (err) {
          if (attempt >= 5) throw err;
          await sleep(500);
        }
      }
    };
    const committed = async () => (await progress()).committed;
    const index = `${t.cfg.elasticsearch.indices.logs}-*`;

    // The writer: the corpus appended piece by piece over WRITE_MS.
    let written = false;
    const writing = (async () => {
      const src = openSync(corpus.path, 'r');
      const dst = openSync(target, 'a');
      try {
        const buf = Buffer.allocUnsafe(PIECE_BYTES * 2);
        const every = WRITE_MS / (cuts.length - 1);
        for (let i = 0; i + 1 < cuts.length; i++) {
          const n = cuts[i + 1] - cuts[i];
          const piece = n <= buf.length ? buf.subarray(0, n) : Buffer.allocUnsafe(n);
          readSync(src, piece, 0, n, cuts[i]);
          writeSync(dst, piece);
          await sleep(every);
        }
      } finally {
        closeSync(src);
        closeSync(dst);
        written = true;
      }
    })();
    await sleep(200);
    let collector = run('collector');
    let processor = run('processor');

    // The collector's killer: once a (re)started collector has moved its checkpoint (it is working), a random
    // 0–1.5 s later — mid-read, mid-send, between Kafka's ack and the checkpoint — kill -9, restart.
    const collectorKills: { at_s: number; checkpoint: number }[] = [];
    const killingCollector = (async () => {
      const finished = () => written && checkpoint() >= corpus.bytes; // nothing left to read: no kill would be mid-ingest
      while (collectorKills.length < KILLS && !finished()) {
        const from = checkpoint();
        while (checkpoint() === from && !finished()) {
          if (collector.child.exitCode !== null) throw new Error(`collector exited by itself: ${collector.stderr().slice(-2000)}`);
          await sleep(25);
        }
        await sleep(random(0, 1500));
        if (finished()) break;
        await kill9(collector);
        collectorKills.push({ at_s: (Date.now() - t0) / 1000, checkpoint: checkpoint() });
        collector = run('collector');
      }
    })();

    // The processor's killer: once a (re)started processor has committed a batch (it has its partition and is
    // working), a random 0–2 s later — mid-parse, mid-bulk, between Elasticsearch and the commit — kill -9, restart.
    const processorKills: { at_s: number; lag: number }[] = [];
    const killingProcessor = (async () => {
      const finished = async () => written && checkpoint() >= corpus.bytes && (await progress()).lag === 0;
      while (processorKills.length < KILLS && !(await finished())) {
        const from = await committed();
        while ((await committed()) === from && !(await finished())) {
          if (processor.child.exitCode !== null) throw new Error(`processor exited by itself: ${processor.stderr().slice(-2000)}`);
          await sleep(100);
        }
        await sleep(random(0, 2000));
        if (await finished()) break;
        await kill9(processor);
        processorKills.push({ at_s: (Date.now() - t0) / 1000, lag: (await progress()).lag });
        processor = run('processor');
      }
    })();

    await Promise.all([writing, killingCollector, killingProcessor]);
    expect(collectorKills).toHaveLength(KILLS);
    expect(processorKills).toHaveLength(KILLS);
    // Every kill was mid-ingest: before the collector had the whole file, with events in Kafka the processor had
    // not committed yet.
    expect(Math.max(...collectorKills.map((k) => k.checkpoint))).toBeLessThan(corpus.bytes);
    expect(Math.min(...processorKills.map((k) => k.lag))).toBeGreaterThan(0);

    // The survivors finish the ingest.
    const deadline = Date.now() + 240_000;
    let docs = 0;
    let lag = Infinity;
    while (Date.now() < deadline) {
      lag = (await progress()).lag;
      if (checkpoint() >= corpus.bytes && lag === 0 && (docs = await countDocs(t.es, index)) >= events) break;
      expect(collector.child.exitCode, collector.stderr().slice(-2000)).toBeNull();
      expect(processor.child.exitCode, processor.stderr().slice(-2000)).toBeNull();
      await sleep(1000);
    }
    const ingestMs = Date.now() - t0;
    const produced = (await progress()).end;
    const dead = (await groupProgress(t.cfg.kafka, group, deadTopic)).reduce((s, x) => s + x.end, 0);
    for (const cli of [collector, processor]) {
      cli.child.kill('SIGTERM');
      expect((await cli.exited).code, cli.stderr().slice(-2000)).toBe(0);
      children.delete(cli);
    }

    // Exactly the events of the source: the count, and every id (a document stored twice under one id in two
    // daily indices would show as an id read twice).
    docs = await countDocs(t.es, index);
    const ids = await allIds(t.es, index);
    const distinct = new Set(ids);
    const missing = [...expected].filter((id) => !distinct.has(id));
    const unexpected = [...distinct].filter((id) => !expected.has(id));
    console.log(
      `faults-kill: ${corpus.lines} lines, ${events} events in the source; ${collectorKills.length} collector kills at ` +
        `${collectorKills.map((k) => `${k.at_s.toFixed(1)}s`).join(' ')}; ${processorKills.length} processor kills at ` +
        `${processorKills.map((k) => `${k.at_s.toFixed(1)}s`).join(' ')} (uncommitted then: ${processorKills.map((k) => k.lag).join(' ')}); ${produced} messages in Kafka (${produced - events} sent again ` +
        `after collector kills), ${docs} documents, ${distinct.size} distinct ids, ${missing.length} missing, ` +
        `${ids.length - distinct.size} doubled, ${unexpected.length} unexpected, ${dead} dead letters; ingest ${seconds(ingestMs)}, ` +
        `total ${seconds(Date.now() - t0)}`,
    );
    expect(lag).toBe(0);
    expect(missing).toEqual([]);
    expect(unexpected).toEqual([]);
    expect(ids.length).toBe(events);
    expect(docs).toBe(events);
    expect(dead).toBe(0);
    expect(produced).toBeGreaterThanOrEqual(events);
  });
});
