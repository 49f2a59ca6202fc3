// The log collector on real files, with Kafka replaced by a recorder: offsets, partial lines, checkpoints
// that advance only after the producer acknowledged, renames and truncation, gzip backfill.
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, renameSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { validateConfig } from '../../core/config.ts';
import type { RawLogEvent } from '../../core/events.ts';
import type { OutMessage } from '../../core/kafka.ts';
import { collectorContext } from '../../collectors/emitter.ts';
import { OpenstackLogCollector } from '../../collectors/openstack-logs.ts';
import { messageEvents } from '../../processors/decode.ts';

const real = readFileSync(new URL('../fixtures/hotsos-2022/nova-compute-head.log', import.meta.url), 'utf8')
  .split('\n')
  .filter(Boolean);

class RecordingProducer {
  events: RawLogEvent[] = [];
  /** The number of events in each Kafka record of the logs topic (a record is a batch of a file's events). */
  records: number[] = [];
  dead: { reason: string; payload: string }[] = [];
  failNext = 0;
  async send(topic: string, messages: OutMessage[]) {
    if (this.failNext > 0) {
      this.failNext--;
      throw new Error('broker unavailable');
    }
    if (topic === 'dlq') this.dead.push(...messages.map((m) => JSON.parse(m.value)));
    else {
      // As the processor reads them: a record is a batch of events.
      for (const m of messages) {
        const { events } = messageEvents('logs', JSON.parse(m.value));
        this.events.push(...(events as RawLogEvent[]));
        this.records.push(events.length);
      }
    }
  }
}

function setup(extra: Record<string, unknown> = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'stackwatch-collector-'));
  mkdirSync(join(dir, 'logs'));
  const cfg = validateConfig(
    {
      kafka: { brokers: ['127.0.0.1:1'] },
      elasticsearch: { url: 'http://127.0.0.1:1' },
      collectors: {
        openstack_logs: { paths: [join(dir, 'logs', '*.log*')], checkpoint_dir: join(dir, 'cp'), host_name: 'compute-1', multiline_flush_ms: 50, ...extra },
      },
    },
    'test',
    {},
  ).collectors.openstack_logs!;
  const producer = new RecordingProducer();
  const collector = () => {
    const c = new OpenstackLogCollector(cfg, collectorContext('openstack-logs', producer, { logs: 't', dead_letter: 'dlq' }));
    // A poll, then another once the file has been quiet for the multi-line flush interval: the last event
    // of a quiet file goes out then (it might have had continuation lines).
    const poll = async (signal?: AbortSignal) => {
      const n = await c.pollOnce(signal);
      await new Promise((r) => setTimeout(r, cfg.multiline_flush_ms + 20));
      return n + (await c.pollOnce(signal));
    };
    return { pollOnce: poll };
  };
  const raw = () => new OpenstackLogCollector(cfg, collectorContext('openstack-logs', producer, { logs: 't', dead_letter: 'dlq' }));
  return { dir, file: (n: string) => join(dir, 'logs', n), producer, collector, raw };
}

describe('OpenstackLogCollector', () => {
  it("packs a file's events into Kafka records of at most batch_max_lines events each", async () => {
    const s = setup({ batch_max_lines: 4 });
    writeFileSync(s.file('nova-compute.log'), real.slice(0, 10).join('\n') + '\n');
    expect(await s.collector().pollOnce()).toBe(10);
    expect(s.producer.events.map((e) => e.text)).toEqual(real.slice(0, 10));
    // The first 9 at once; the last one once the file was quiet for the multi-line flush (it might have had
    // continuation lines).
    expect(s.producer.records).toEqual([4, 4, 1, 1]);
  });

  it('sends each complete line once, with its offset, and resumes from the checkpoint after a restart', async () => {
    const s = setup();
    writeFileSync(s.file('nova-compute.log'), real.slice(0, 10).join('\n') + '\n' + real[10].slice(0, 30));
    expect(await s.collector().pollOnce()).toBe(10);
    expect(s.producer.events.map((e) => e.text)).toEqual(real.slice(0, 10));
    expect(s.producer.events[1].offset).toBe(Buffer.byteLength(real[0]) + 1);
    appendFileSync(s.file('nova-compute.log'), real[10].slice(30) + '\n' + real[11] + '\n');
    // A new collector (a restart) continues where the last acknowledged line ended.
    expect(await s.collector().pollOnce()).toBe(2);
    expect(s.producer.events.map((e) => e.text)).toEqual(real.slice(0, 12));
    expect(new Set(s.producer.events.map((e) => e.file_id)).size).toBe(1);
  });

  it('start_at end: the history of files there at the first start is skipped and checkpointed; later files and lines are read whole', async () => {
    const s = setup({ start_at: 'end' });
    writeFileSync(s.file('nova-compute.log'), real.slice(0, 6).join('\n') + '\n' + real[6].slice(0, 20)); // ends mid-line
    writeFileSync(s.file('old.log.1.gz'), gzipSync(real.slice(0, 3).join('\n') + '\n'));
    const c = s.collector();
    expect(await c.pollOnce()).toBe(0);
    appendFileSync(s.file('nova-compute.log'), real[6].slice(20) + '\n' + real[7] + '\n');
    writeFileSync(s.file('nova-api.log'), real.slice(8, 10).join('\n') + '\n'); // appears later: read whole
    expect(await c.pollOnce()).toBe(4);
    const texts = (path: string) => s.producer.events.filter((e) => e.path === s.file(path)).map((e) => e.text);
    expect(texts('nova-compute.log')).toEqual(real.slice(6, 8)); // the cut line whole, then the rest
    expect(texts('nova-api.log')).toEqual(real.slice(8, 10));
    // A restart before anything new: the skipped history stays skipped (it was checkpointed), nothing is doubled.
    appendFileSync(s.file('nova-compute.log'), real[10] + '\n');
    expect(await s.collector().pollOnce()).toBe(1);
    expect(texts('nova-compute.log')).toEqual(real.slice(6, 8).concat(real[10]));
    expect(s.producer.events).toHaveLength(5);
  });

  it('start_at beginning (the default) ships the history of files there at the start', async () => {
    const s = setup();
    writeFileSync(s.file('nova-compute.log'), real.slice(0, 6).join('\n') + '\n');
    expect(await s.collector().pollOnce()).toBe(6);
  });

  it('does not advance the checkpoint when Kafka did not acknowledge', async () => {
    const s = setup();
    writeFileSync(s.file('nova-compute.log'), real.slice(0, 5).join('\n') + '\n');
    s.producer.failNext = 100;
    const ctl = new AbortController();
    const pending = s.collector().pollOnce(ctl.signal);
    await new Promise((r) => setTimeout(r, 300));
    ctl.abort();
    await expect(pending).rejects.toThrow();
    expect(s.producer.events).toHaveLength(0);
    s.producer.failNext = 0;
    expect(await s.collector().pollOnce()).toBe(5);
  });

  it('keeps a renamed file identity (no re-read) and reads a truncated file from the start', async () => {
    const s = setup();
    writeFileSync(s.file('nova-compute.log'), real.slice(0, 3).join('\n') + '\n');
    const c = s.collector();
    await c.pollOnce();
    renameSync(s.file('nova-compute.log'), s.file('nova-compute.log.1'));
    writeFileSync(s.file('nova-compute.log'), real.slice(3, 5).join('\n') + '\n');
    await c.pollOnce();
    expect(s.producer.events.map((e) => e.text)).toEqual(real.slice(0, 5));
    truncateSync(s.file('nova-compute.log'), 0);
    appendFileSync(s.file('nova-compute.log'), real[6] + '\n');
    await c.pollOnce();
    expect(s.producer.events.map((e) => e.text)).toEqual([...real.slice(0, 5), real[6]]);
  });

  it('reads the rest of a file rotated away from the globs (rename + create) before letting it go', async () => {
    const s = setup();
    const c = s.collector();
    writeFileSync(s.file('nova-compute.log'), real.slice(0, 4).join('\n') + '\n');
    await c.pollOnce();
    // The service writes two more lines, then logrotate renames the file out of the glob and a new one starts.
    appendFileSync(s.file('nova-compute.log'), real.slice(4, 6).join('\n') + '\n');
    renameSync(s.file('nova-compute.log'), join(s.dir, 'logs', 'rotated-old'));
    writeFileSync(s.file('nova-compute.log'), real.slice(6, 8).join('\n') + '\n');
    await c.pollOnce();
    expect(s.producer.events.map((e) => e.text)).toEqual(real.slice(0, 8));
  });

  it('run(): the followed files are read on at every poll, the paths matched again only every scan_interval_ms', async () => {
    const s = setup({ poll_interval_ms: 20, scan_interval_ms: 2000 });
    writeFileSync(s.file('nova-compute.log'), real.slice(0, 2).join('\n') + '\n');
    const ctl = new AbortController();
    const started = Date.now();
    const running = s.raw().run(ctl.signal);
    const until = async (what: string, ok: () => boolean) => {
      for (const t0 = Date.now(); !ok(); await new Promise((r) => setTimeout(r, 10))) if (Date.now() - t0 > 10_000) throw new Error(`timed out waiting for ${what}`);
    };
    try {
      await until('the first lines', () => s.producer.events.length === 2);
      appendFileSync(s.file('nova-compute.log'), real[2] + '\n' + real[3] + '\n');
      writeFileSync(s.file('nova-api.log'), real.slice(4, 6).join('\n') + '\n');
      await until('the lines appended to the followed file', () => s.producer.events.length >= 3);
      // Read on at the next poll, while the new file waits for the next scan (the first one was at the start).
      expect(Date.now() - started).toBeLessThan(2000);
      expect(s.producer.events.map((e) => e.path.endsWith('nova-api.log'))).not.toContain(true);
      await until('the new file, at the next scan', () => s.producer.events.length === 6);
      expect(Date.now() - started).toBeGreaterThanOrEqual(2000);
      expect(s.producer.events.map((e) => e.text).sort()).toEqual(real.slice(0, 6).sort());
    } finally {
      ctl.abort();
      await running;
    }
  });

  it('sends lines that are not text to the dead-letter topic with the reason, and goes on', async () => {
    const s = setup();
    writeFileSync(s.file('nova-compute.log'), Buffer.concat([Buffer.from(real[0] + '\n'), Buffer.from([0xc3, 0x28, 0x0a]), Buffer.from(real[1] + '\n')]));
    await s.collector().pollOnce();
    expect(s.producer.events.map((e) => e.text)).toEqual(real.slice(0, 2));
    expect(s.producer.dead).toHaveLength(1);
    expect(s.producer.dead[0].reason).toMatch(/^invalid UTF-8 in line \(.*nova-compute\.log at byte \d+\)$/);
    expect(Buffer.from(s.producer.dead[0].payload, 'base64')).toEqual(Buffer.from([0xc3, 0x28]));
  });

  it('masks every seeded secret before anything is produced (test/fixtures/secrets/corpus.txt)', async () => {
    const s = setup();
    const corpus = readFileSync(new URL('../fixtures/secrets/corpus.txt', import.meta.url), 'utf8');
    const markers = [...new Set(corpus.match(/S3CRET-\d+-x/g))];
    expect(markers.length).toBeGreaterThan(40);
    writeFileSync(s.file('keystone.log'), corpus);
    await s.collector().pollOnce();
    const produced = JSON.stringify(s.producer.events);
    expect(s.producer.events.length).toBeGreaterThan(40);
    expect(markers.filter((m) => produced.includes(m))).toEqual([]);
  });

  it('reads a gzip file once, with offsets in the decompressed text', async () => {
    const s = setup();
    writeFileSync(s.file('nova-compute.log.2.gz'), gzipSync(real.join('\n') + '\n'));
    const c = s.collector();
    expect(await c.pollOnce()).toBe(real.length);
    expect(await c.pollOnce()).toBe(0);
    expect(await s.collector().pollOnce()).toBe(0);
    expect(s.producer.events.at(-1)!.text).toBe(real.at(-1));
  });
});
