// `stackwatch parse FILE...`: the pipeline's parse stage offline — the documents it would index, as NDJSON.
import { hostname } from 'node:os';
import { DEFAULT_MAX_EVENT_BYTES } from '../collectors/logs/assemble.ts';
import { toRawEvent } from '../collectors/openstack-logs.ts';
import { ConfigError, MAX_EVENT_BYTES_LIMIT } from '../core/config.ts';
import { parseLogEvent } from '../processors/parse-log.ts';
import { Miner, mineDocument } from '../processors/templates/miner.ts';
import type { Command } from './index.ts';
import { parseOptions, timeZoneOption } from './options.ts';
import { eachEvent, EXIT_STATUS_HELP, Output } from './output.ts';

export const parseCommand: Command = {
  name: 'parse',
  help: `Usage: stackwatch parse [options] FILE...

Parses OpenStack log files (plain or gzip) exactly as the pipeline does — multi-line folding, envelope removal,
secret masking, ECS mapping, the message's template (log.template.id and .text, learnt from the files in the
order given, as a processor learns from its stream) — and prints one JSON document per event on stdout. Needs
no Kafka or Elasticsearch. Lines that are not text (invalid UTF-8, NUL bytes) are reported on stderr with the
reason, as the pipeline would send them to its dead-letter topic.

Options:
  --timezone ZONE     zone of the zone-less oslo.log timestamps (IANA name; default UTC)
  --host NAME         host.name of the events (default: this machine's name)
  --original          keep the raw lines in event.original
  --max-event-bytes N cut events longer than N bytes (default 1048576, at most 16 MiB)

${EXIT_STATUS_HELP}`,

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
    if (!Number.isInteger(maxEventBytes) || maxEventBytes <= 0 || maxEventBytes > MAX_EVENT_BYTES_LIMIT) {
      throw new ConfigError(`--max-event-bytes: expected a whole number from 1 to ${MAX_EVENT_BYTES_LIMIT} (16 MiB)`);
    }
    const timezone = timeZoneOption(values.timezone, '--timezone');
    const out = new Output();
    const readAt = new Date().toISOString();
    const templates = new Miner();
    const read = await eachEvent('parse', positionals, out, { maxEventBytes, keepOriginal: values.original }, (e, path, fileId) => {
      out.line(JSON.stringify(mineDocument(templates, parseLogEvent(toRawEvent(e, values.host, path, fileId, readAt), { timezone }))));
    });
    if (!read) return 0;
    const { events, unusable, failed } = read;
    if (unusable > 0 || failed > 0) {
      const problems = [unusable > 0 ? `${unusable} unusable line(s)` : '', failed > 0 ? `${failed} of ${positionals.length} file(s) not read to the end` : ''];
      process.stderr.write(`stackwatch parse: ${events} events, ${problems.filter(Boolean).join(', ')} (see above)\n`);
    }
    return failed > 0 ? 1 : 0;
  },
};
