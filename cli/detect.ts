// `stackwatch detect FILE...`: a post-mortem on old logs (a sosreport, say): parse them and run every rule,
// printing each alert transition as one JSON object per line. Needs no Kafka or Elasticsearch.
import { hostname } from 'node:os';
import { DEFAULT_MAX_EVENT_BYTES } from '../collectors/assemble.ts';
import { toRawEvent } from '../collectors/openstack-logs.ts';
import { readLogFile } from '../collectors/read-file.ts';
import { ConfigError } from '../core/config.ts';
import { DEFAULT_RULES_DIR, DetectionEngine, loadRules } from '../processors/detect.ts';
import { parseLogEvent } from '../processors/parse-log.ts';
import type { Command } from './index.ts';
import { parseOptions } from './options.ts';

export const detectCommand: Command = {
  name: 'detect',
  help: `Usage: stackwatch detect [options] FILE...

Parses log files (plain or gzip) as the pipeline does and runs every rule over them, in file order, printing
each alert transition (firing / resolved) as one JSON object per line on stdout, and a summary on stderr.
Time is the events' own, so last month's logs behave as live traffic would.

Options:
  --host NAME       host.name of the events (default: this machine's name)
  --timezone ZONE   zone of the zone-less oslo.log timestamps (default UTC)
  --rules-dir DIR   rules to run (default: the rules shipped with stackwatch)`,

  async main(args) {
    const { values, positionals } = parseOptions(
      args,
      { host: { type: 'string', default: hostname() }, timezone: { type: 'string', default: 'UTC' }, 'rules-dir': { type: 'string', default: DEFAULT_RULES_DIR } },
      true,
    );
    if (positionals.length === 0) throw new ConfigError('detect: name at least one FILE (see stackwatch detect --help)');
    const engine = await DetectionEngine.create(loadRules(values['rules-dir']));
    const readAt = new Date().toISOString();
    let events = 0;
    let transitions = 0;
    for (const path of positionals) {
      for await (const batch of readLogFile(path, { maxEventBytes: DEFAULT_MAX_EVENT_BYTES }, 500)) {
        for (const e of batch.events) {
          for (const alert of engine.onLog(parseLogEvent(toRawEvent(e, values.host, path, batch.fileId, readAt), { timezone: values.timezone }))) {
            process.stdout.write(JSON.stringify(alert) + '\n');
            transitions++;
          }
        }
        events += batch.events.length;
      }
    }
    process.stderr.write(`stackwatch detect: ${events} events from ${positionals.length} file(s), ${transitions} alert transition(s)\n`);
    return 0;
  },
};
