// `stackwatch replay FILE...`: backfills old logs (plain or .gz) through Kafka into Elasticsearch. Event ids come
// from the file's identity and byte offsets, so replaying a file twice — or a file the collector already sent —
// adds nothing.
import { statSync } from 'node:fs';
import { hostname } from 'node:os';
import { RECORD_MAX_BYTES } from '../collectors/openstack-logs.ts';
import { readLogFile } from '../collectors/logs/read-file.ts';
import { batches } from '../core/batch.ts';
import { ConfigError } from '../core/config.ts';
import { deadLetter, encodeLogBatches } from '../core/events.ts';
import { ensureTopics, groupProgress, TopicProducer } from '../core/kafka.ts';
import { Progress } from '../core/progress.ts';
import { sleep } from '../core/retry.ts';
import { startProcessor } from '../processors/processor.ts';
import type { Command } from './index.ts';
import { parseOptions, readConfig, shutdownSignal } from './options.ts';
import { EXIT_STATUS_HELP, forEachFile, warnTo } from './output.ts';

export const replayCommand: Command = {
  name: 'replay',
  help: `Usage: stackwatch replay [--config FILE] [--host NAME] [--no-process] FILE...

Reads whole log files (plain or gzip) as the collector would — multi-line folding, secret masking — and
produces their events to the logs topic, with a progress bar (bytes, events/s, ETA). Unless --no-process is
given it also runs a processor in the consumer group and waits until everything is in Elasticsearch (other
running processors share the work). Replaying the same file twice adds nothing: document ids come from the
file's content identity and byte offsets.

Options:
  --config FILE   configuration file (default: $STACKWATCH_CONFIG or /etc/stackwatch/stackwatch.yaml)
  --host NAME     host.name of the events (default: collectors.openstack_logs.host_name, else this machine)
  --no-process    only produce to Kafka; the running processors index the events

${EXIT_STATUS_HELP}`,

  async main(args) {
    const { values, positionals } = parseOptions(args, { config: { type: 'string' }, host: { type: 'string' }, 'no-process': { type: 'boolean', default: false } }, true);
    if (positionals.length === 0) throw new ConfigError('replay: name at least one FILE (see stackwatch replay --help)');
    // For the progress bar only: a file that cannot be read is reported when its turn comes, and the others are
    // replayed all the same.
    const sizes = positionals.map((p) => {
      try {
        return statSync(p).size;
      } catch {
        return 0;
      }
    });
    const cfg = readConfig(values.config);
    const collector = cfg.collectors.openstack_logs;
    const host = values.host ?? collector?.host_name ?? hostname();
    const maxEventBytes = collector?.max_event_bytes ?? 1024 * 1024;
    const { logs: topic, dead_letter: deadTopic } = cfg.kafka.topics;
    const { signal } = shutdownSignal();

    await ensureTopics(cfg.kafka, [topic, deadTopic], signal);
    const processor = values['no-process'] ? undefined : await startProcessor(cfg, { signal });
    const producer = await TopicProducer.connect(cfg.kafka, 'replay', signal);
    const progress = new Progress({ label: 'replay', totalBytes: sizes.reduce((a, b) => a + b, 0) });
    let done = 0;
    let events = 0;
    let unusable = 0;
    let failed = 0;
    try {
      failed = await forEachFile('replay', positionals, async (path, i) => {
        const key = `${host}:${path}`;
        const readAt = new Date().toISOString();
        const reading = readLogFile(path, { maxEventBytes, keepOriginal: collector?.keep_original, onBytes: (n) => progress.update(done + n, events), onWarning: warnTo('replay') });
        try {
          for await (const batch of reading) {
            if (batch.unusable.length > 0) {
              const letters = batch.unusable.map((u) => deadLetter('replay', `${u.reason} (${path} at byte ${u.offset})`, u.bytes.toString('base64')));
              await producer.send(
                deadTopic,
                letters.map((d) => ({ key, value: JSON.stringify(d) })),
              );
            }
            // Batches of events per record, as the collector sends them.
            const records = encodeLogBatches({ host, path, file_id: batch.fileId, read_at: readAt }, batch.events, 5000, RECORD_MAX_BYTES);
            const messages = records.map((value) => ({ key, value }));
            for (const part of batches(messages, 5000, 512 * 1024, (m) => m.value.length)) await producer.send(topic, part);
            events += batch.events.length;
            unusable += batch.unusable.length;
          }
        } finally {
          done += sizes[i];
          progress.update(done, events);
        }
      });
      progress.done();
      process.stderr.write(
        `replay: ${events} events produced to ${topic}${unusable ? `, ${unusable} unusable line(s) to ${deadTopic}` : ''}${failed ? `; ${failed} file(s) not read to the end (named above)` : ''}\n`,
      );
      if (processor) await waitForGroup(cfg, topic, signal);
    } finally {
      await producer.disconnect();
      await processor?.stop();
    }
    return failed > 0 ? 1 : 0;
  },
};

/** Waits until the consumer group has committed everything produced so far: then it is in Elasticsearch. */
async function waitForGroup(cfg: ReturnType<typeof readConfig>, topic: string, signal: AbortSignal): Promise<void> {
  const target = await groupProgress(cfg.kafka, cfg.kafka.consumer_group, topic);
  let lastReport = 0;
  for (;;) {
    const now = await groupProgress(cfg.kafka, cfg.kafka.consumer_group, topic);
    const left = target.reduce((sum, t) => sum + Math.max(0, t.end - (now.find((n) => n.partition === t.partition)?.committed ?? 0)), 0);
    if (left === 0) break;
    if (Date.now() - lastReport > 5000) {
      process.stderr.write(`replay: ${left} Kafka record(s) still on their way to Elasticsearch\n`);
      lastReport = Date.now();
    }
    await sleep(500, signal);
  }
  process.stderr.write('replay: everything is in Elasticsearch\n');
}
