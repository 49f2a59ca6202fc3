// kill -9 of the collector (10 times) and of the processor (10 times) while half a million real log lines are
// ingested, each restarted at once: Elasticsearch ends up with exactly the events of the source — the count, and
// every expected document id (host + file identity + byte offset), none missing, none twice, nothing
// dead-lettered.
//
// The source is the benchmark corpus (bench/corpus.ts: the bundled hotsos and Loghub OpenStack logs, 14 times
// over, 516,726 lines). Its events are counted, and their ids computed, with the collector's own assembler
// (collectors/read-file.ts). The file grows while the collector tails it, as a live log does: it is appended in
// pieces that end where an event ends, so the collector's "quiet file" flush cannot cut an event differently
// from the offline count whatever the timing.
//
// Every kill lands mid-work by construction, not by luck of timing (a busy CI machine once let a processor
// drain its backlog before the kill meant to interrupt it). The killer freezes the process (SIGSTOP), looks
// at what it has left — the collector's checkpoint against the file's size, the processor's committed offsets
// against the topic's end — and only then sends SIGKILL, or, if nothing is left, lets it go on (SIGCONT) and
// appends more of the source until there is. A frozen process cannot move its checkpoint or commit, so what the
// killer saw is what the process had left when it died. Data appended after the corpus was written once is the
// corpus again, piece by piece from its start (the corpus is one round of logs repeated, so its end followed by
// its start is a boundary the corpus already has): its events are the corpus's, shifted.
import { closeSync, mkdirSync, openSync, readFileSync, readSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { buildCorpus } from '../../bench/corpus.ts';
import { readLogFile } from '../../collectors/logs/read-file.ts';
import { logEventId } from '../../core/events.ts';
import { groupProgress } from '../../core/kafka.ts';
import { allIds, countDocs, stackwatch, testSetup, type Cli } from './harness.ts';

const KILLS = 10;
/** Half a million lines: enough for ten kills of each with work left (more is appended when there is none), and
 * half the CPU time of the million this test ingested before the live OpenStack's tests came to run beside it. */
const MIN_LINES = 500_000;
/** How long the corpus takes to be written once (the collector tails it meanwhile). */
const WRITE_MS = 20_000;
const PIECE_BYTES = 1024 * 1024;
/** The longest any one step of a killer may wait (for a restarted process to work, for work to be left):
 * generous, for a busy machine; reaching it is a failure that says what was awaited. */
const STEP_MS = 120_000;

const t = testSetup('faults-kill', (raw) => {
  delete raw.notify.alertmanager; // logs only: no pages from this test
  raw.kafka.session_timeout_ms = 6000; // a killed processor's partitions move on after 6 s (the broker's minimum)
});
const children = new Set<Cli>();
/** Set when a killer fails: the writer and the other killer stop at their next step. */
let stopping = false;
afterAll(async () => {
  for (const c of children) if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill('SIGKILL');
  await t.cleanup();
  rmSync(t.dir, { recursive: true, force: true }); // 175+ MiB of logs
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const random = (min: number, max: number) => min + Math.random() * (max - min);
const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

/** The collector as a compute host runs it (stackwatch-collector: its node options and early scavenges); the
 * processor as `stackwatch run --role processor`. */
function run(role: 'collector' | 'processor'): Cli {
  const cli = role === 'collector' ? stackwatch(['--config', t.configFile], {}, { bin: 'stackwatch-collector' }) : stackwatch(['run', '--role', role, '--config', t.configFile]);
  children.add(cli);
  return cli;
}

function alive(cli: Cli, role: string): void {
  if (cli.child.exitCode !== null || cli.child.signalCode !== null) throw new Error(`${role} exited by itself (${cli.child.exitCode ?? cli.child.signalCode}): ${cli.stderr().slice(-2000)}`);
}

/** Polls `probe` until it is true; past STEP_MS, fails saying what was awaited and the state at that moment. */
async function until(what: () => string, probe: () => Promise<boolean> | boolean, everyMs = 200): Promise<void> {
  const deadline = Date.now() + STEP_MS;
  while (!(await probe())) {
    if (stopping) throw new Error(`faults-kill: stopped waiting for ${what()}: the other killer failed`);
    if (Date.now() > deadline) throw new Error(`faults-kill: waited ${seconds(STEP_MS)} for ${what()}`);
    await sleep(everyMs);
  }
}

/** SIGSTOP, then `left()` (what the frozen process had still to do): SIGKILL if it is > 0, else SIGCONT.
 * Returns what was left at the kill, or undefined if the process was let go on. */
async function killIfWorkLeft(cli: Cli, role: string, left: () => Promise<number> | number): Promise<number | undefined> {
  alive(cli, role);
  cli.child.kill('SIGSTOP');
  let n: number;
  try {
    n = await left();
  } catch (err) {
    cli.child.kill('SIGCONT');
    throw err;
  }
  if (n <= 0) {
    cli.child.kill('SIGCONT');
    return undefined;
  }
  cli.child.kill('SIGKILL');
  const { signal } = await cli.exited;
  expect(signal).toBe('SIGKILL');
  children.delete(cli);
  return n;
}

describe('kill -9 during a 500k-line ingest', () => {
  it(`collector and processor killed ${KILLS} times each, always with work left: every event in Elasticsearch exactly once`, { timeout: 600_000 }, async () => {
    const t0 = Date.now();
    const corpus = await buildCorpus(MIN_LINES);
    expect(corpus.lines).toBeGreaterThanOrEqual(MIN_LINES);

    // The events of the corpus, by the collector's own assembler (their offsets), and where it may be cut into
    // pieces (at an event's first byte, about every PIECE_BYTES): piece i is [cuts[i], cuts[i + 1]), its events
    // offsets[first[i]] up to offsets[first[i + 1]].
    const offsets: number[] = [];
    const cuts: number[] = [0];
    const first: number[] = [0];
    let fileId = '';
    for await (const { fileId: id, events, unusable } of readLogFile(corpus.path, { maxEventBytes: t.cfg.collectors.openstack_logs!.max_event_bytes })) {
      expect(unusable).toEqual([]);
      fileId = id;
      for (const e of events) {
        if (e.offset >= cuts[cuts.length - 1] + PIECE_BYTES) {
          cuts.push(e.offset);
          first.push(offsets.length);
        }
        offsets.push(e.offset);
      }
    }
    cuts.push(corpus.bytes);
    first.push(offsets.length);
    const pieces = cuts.length - 1;
    // (multi-line events fold about two lines in five: 307,300 events in the 516,726 lines)
    expect(offsets.length).toBeGreaterThan(MIN_LINES / 2);
    // The corpus's start, appended after its end, is an event of its own there as it is where one round of
    // logs follows another inside the corpus: the ids of the data appended after the corpus rest on this.
    expect(corpus.rounds).toBeGreaterThan(1);
    expect(offsets.includes(corpus.roundBytes)).toBe(true);

    const logs = join(t.dir, 'logs');
    mkdirSync(logs);
    const target = join(logs, 'openstack.log');

    // The source: the corpus appended piece by piece, then again from its start while more is needed. `expected`
    // holds the id of every event written.
    const expected = new Set<string>();
    let size = 0;
    let appended = 0;
    const src = openSync(corpus.path, 'r');
    const dst = openSync(target, 'a');
    const buf = Buffer.allocUnsafe(PIECE_BYTES * 2);
    const appendPiece = () => {
      const i = appended % pieces;
      const n = cuts[i + 1] - cuts[i];
      const piece = n <= buf.length ? buf.subarray(0, n) : Buffer.allocUnsafe(n);
      readSync(src, piece, 0, n, cuts[i]);
      writeSync(dst, piece);
      for (let k = first[i]; k < first[i + 1]; k++) expected.add(logEventId({ host: t.host, file_id: fileId, offset: size + offsets[k] - cuts[i] }));
      size += n;
      appended++;
    };
    const written = () => appended >= pieces; // the corpus once, at least

    const checkpointFile = join(t.cfg.collectors.openstack_logs!.checkpoint_dir, `openstack-logs-${t.host}.checkpoints.json`);
    const checkpoint = (): number => {
      try {
        return JSON.parse(readFileSync(checkpointFile, 'utf8')).files[fileId]?.offset ?? 0;
      } catch {
        return 0;
      }
    };
    /** More of the source, once the corpus is written and the collector has read all there is: what a killer
     * does when nothing is left to interrupt. (While the writer is at work, more comes anyway; appending only
     * when all is read keeps the two killers from appending twice for one lack.) */
    const moreIfRead = () => {
      if (written() && checkpoint() >= size) appendPiece();
    };

    const { logs: logsTopic, dead_letter: deadTopic } = t.cfg.kafka.topics;
    const group = t.cfg.kafka.consumer_group;
    /** The group's progress on the logs topic, asked again while the broker does not answer or the topic is not
     * there yet (the collector makes it once it runs: a slow start is no failure), for at most STEP_MS. */
    const progress = async () => {
      const deadline = Date.now() + STEP_MS;
      for (;;) {
        try {
          const p = await groupProgress(t.cfg.kafka, group, logsTopic);
          return { committed: p.reduce((s, x) => s + x.committed, 0), lag: p.reduce((s, x) => s + x.end - x.committed, 0), end: p.reduce((s, x) => s + x.end, 0) };
        } catch (err) {
          if (Date.now() > deadline) throw new Error(`faults-kill: no progress of group ${group} on ${logsTopic} for ${seconds(STEP_MS)}: ${String(err)}`);
          await sleep(500);
        }
      }
    };
    const index = `${t.cfg.elasticsearch.indices.logs}-*`;

    // The writer: the corpus appended once, over WRITE_MS (after that, a killer appends more when it needs it).
    const writing = (async () => {
      const every = WRITE_MS / pieces;
      while (!written() && !stopping) {
        appendPiece();
        await sleep(every);
      }
    })();
    await sleep(200);
    let collector = run('collector');
    let processor = run('processor');

    // The collector's killer: once a (re)started collector has moved its checkpoint (it is working), a random
    // 0–1.5 s later — mid-read, mid-send, between Kafka's ack and the checkpoint — kill -9 if the file has
    // bytes past its checkpoint (appending more until it has), restart.
    const collectorKills: { at_s: number; checkpoint: number; size: number }[] = [];
    const killingCollector = (async () => {
      while (collectorKills.length < KILLS) {
        const from = checkpoint();
        await until(
          () => `the collector to move its checkpoint past ${from} (file: ${size} bytes)`,
          () => {
            alive(collector, 'collector');
            moreIfRead();
            return checkpoint() !== from;
          },
          25,
        );
        await sleep(random(0, 1500));
        let at: { checkpoint: number; size: number } | undefined;
        await until(
          () => `bytes past the collector's checkpoint (${checkpoint()} of ${size})`,
          async () => {
            const kill =
              checkpoint() >= size
                ? undefined
                : await killIfWorkLeft(collector, 'collector', () => {
                    at = { checkpoint: checkpoint(), size };
                    return at.size - at.checkpoint;
                  });
            if (kill === undefined) moreIfRead();
            return kill !== undefined;
          },
        );
        collectorKills.push({ at_s: (Date.now() - t0) / 1000, ...at! });
        collector = run('collector');
      }
    })();

    // The processor's killer: once a (re)started processor has committed a batch (it has its partition and is
    // working), a random 0–2 s later — mid-parse, mid-bulk, between Elasticsearch and the commit — kill -9 if
    // the topic has events past its committed offsets (appending more of the source until it has), restart.
    const processorKills: { at_s: number; lag: number }[] = [];
    const killingProcessor = (async () => {
      while (processorKills.length < KILLS) {
        const from = (await progress()).committed;
        let last = { committed: from, lag: 0 };
        await until(
          () => `the processor to commit past offset ${from} (lag ${last.lag})`,
          async () => {
            alive(processor, 'processor');
            last = await progress();
            if (last.lag === 0) moreIfRead();
            return last.committed !== from;
          },
        );
        await sleep(random(0, 2000));
        const kill = async () => {
          // (frozen only once there seems to be work left: a processor frozen every 200 ms would barely work)
          const lag = (await progress()).lag > 0 ? await killIfWorkLeft(processor, 'processor', async () => (await progress()).lag) : undefined;
          if (lag === undefined) {
            moreIfRead();
            return false;
          }
          processorKills.push({ at_s: (Date.now() - t0) / 1000, lag });
          return true;
        };
        await until(() => `events past the processor's committed offsets`, kill, 200);
        processor = run('processor');
      }
    })();

    try {
      await Promise.all([writing, killingCollector, killingProcessor]);
    } catch (err) {
      stopping = true;
      await Promise.allSettled([writing, killingCollector, killingProcessor]);
      throw err;
    } finally {
      closeSync(src);
      closeSync(dst);
    }
    const events = expected.size;
    expect(collectorKills).toHaveLength(KILLS);
    expect(processorKills).toHaveLength(KILLS);
    // Every kill was mid-ingest (the killers made it so): the collector had bytes of the file left to read and
    // send, and Kafka held events the processor had not committed.
    for (const k of collectorKills) expect(k.checkpoint).toBeLessThan(k.size);
    for (const k of processorKills) expect(k.lag).toBeGreaterThan(0);

    // The survivors finish the ingest.
    const deadline = Date.now() + 240_000;
    let docs = 0;
    let lag = Infinity;
    while (Date.now() < deadline) {
      lag = (await progress()).lag;
      if (checkpoint() >= size && lag === 0 && (docs = await countDocs(t.es, index)) >= events) break;
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
      `faults-kill: ${corpus.lines} lines, ${offsets.length} events in the corpus; written ${size} bytes (${appended} pieces, ` +
        `${appended - pieces} after the corpus), ${events} events; ${collectorKills.length} collector kills at ` +
        `${collectorKills.map((k) => `${k.at_s.toFixed(1)}s`).join(' ')} (unread bytes then: ${collectorKills.map((k) => k.size - k.checkpoint).join(' ')}); ` +
        `${processorKills.length} processor kills at ${processorKills.map((k) => `${k.at_s.toFixed(1)}s`).join(' ')} ` +
        `(uncommitted records then: ${processorKills.map((k) => k.lag).join(' ')}); ${produced} records in Kafka (batches of a file's events, ` +
        `some sent again after collector kills), ${docs} documents, ${distinct.size} distinct ids, ${missing.length} missing, ` +
        `${ids.length - distinct.size} doubled, ${unexpected.length} unexpected, ${dead} dead letters; ingest ${seconds(ingestMs)}, ` +
        `total ${seconds(Date.now() - t0)}`,
    );
    expect(lag).toBe(0);
    expect(missing).toEqual([]);
    expect(unexpected).toEqual([]);
    expect(ids.length).toBe(events);
    expect(docs).toBe(events);
    expect(dead).toBe(0);
    expect(produced).toBeGreaterThan(0);
  });
});
