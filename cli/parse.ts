// `stackwatch parse FILE...`: the pipeline's parse stage offline — the documents it would index, as NDJSON.
import { hostname } from 'node:os';
import { DEFAULT_MAX_EVENT_BYTES } from '../collectors/assemble.ts';
import { readLogFile } from '../collectors/read-file.ts';
import { toRawEvent } from '../collectors/openstack-logs.ts';
import { ConfigError } from '../core/config.ts';
import { parseLogEvent } from '../processors/parse-log.ts';
import type { Command } from './index.ts';
import { parseOptions } from './options.ts';

/** Buffered stdout: lines are collected synchronously and written in large pieces; the writer waits only when
 * the reader is slower than we are. */
class Output {
  private buf: string[] = [];
  private size = 0;
  constructor(private readonly out: NodeJS.WritableStream) {}
  /** True when the buffer is full and flush() should be awaited. */
  line(s: string): boolean {
    this.buf.push(s);
    this.size += s.length + 1;
    return this.size >= 1 << 20;
  }
  async flush(): Promise<void> {
    if (this.buf.length === 0) return;
    this.buf.push('');
    const text = this.buf.join('\n');
    this.buf = [];
    this.size = 0;
    if (!this.out.write(text)) await new Promise((r) => this.out.once('drain', r));
  }
}

export const parseCommand: Command = {
  name: 'parse',
  help: `Usage: stackwatch parse [options] FILE...

Parses OpenStack log files (plain or gzip) exactly as the pipeline does — multi-line folding, envelope removal,
secret masking, ECS mapping — and prints one JSON document per event on stdout. Needs no Kafka or
Elasticsearch. Lines that are not text (invalid UTF-8, NUL bytes) are reported on stderr with the reason,
as the pipeline would send them to its dead-letter topic.

Options:
  --timezone ZONE     zone of the zone-less oslo.log timestamps (default UTC)
  --host NAME         host.name of the events (default: this machine's name)
  --original          keep the raw lines in event.original
  --max-event-bytes N cut events longer than N bytes (default 1048576)`,

  async main(args) {
    const { values, positionals } = parseOptions(
      args,
      {
        timezone: { type: 'string', default: 'UTC' },
        host: { type: 'string', default: hostname() },
        original: { type: 'boolean', default: false },
        'max-event-bytes': { type: 'string', default: String(DEFAULT_MAX_EVENT_BYTES) },
      },
      true,
    );
    if (positionals.length === 0) throw new ConfigError('parse: name at least one FILE (see stackwatch parse --help)');
    const maxEventBytes = Number(values['max-event-bytes']);
    if (!Number.isInteger(maxEventBytes) || maxEventBytes <= 0) throw new ConfigError('--max-event-bytes: expected a positive whole number');
    try {
      new Intl.DateTimeFormat('en-US', { timeZone: values.timezone });
    } catch {
      throw new ConfigError(`--timezone: unknown time zone ${JSON.stringify(values.timezone)}`);
    }
    const out = new Output(process.stdout);
    const readAt = new Date().toISOString();
    let events = 0;
    let unusable = 0;
    for (const path of positionals) {
      for await (const batch of readLogFile(path, { maxEventBytes, keepOriginal: values.original }, 500)) {
        let full = false;
        for (const e of batch.events) {
          const doc = parseLogEvent(toRawEvent(e, values.host, path, batch.fileId, readAt), { timezone: values.timezone });
          full = out.line(JSON.stringify(doc)) || full;
        }
        if (full) await out.flush();
        for (const u of batch.unusable) process.stderr.write(`${JSON.stringify({ file: path, offset: u.offset, reason: u.reason, bytes: u.bytes.length })}\n`);
        events += batch.events.length;
        unusable += batch.unusable.length;
      }
    }
    await out.flush();
    if (unusable > 0) process.stderr.write(`stackwatch parse: ${events} events, ${unusable} unusable line(s) (reasons above)\n`);
    return 0;
  },
};
