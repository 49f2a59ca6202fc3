// `stackwatch detect FILE...`: a post-mortem on old logs (a sosreport, say): parse them and run every rule,
// printing each alert transition as one JSON object per line. Needs no Kafka or Elasticsearch.
import { hostname } from 'node:os';
import { DEFAULT_MAX_EVENT_BYTES } from '../collectors/logs/assemble.ts';
import { toRawEvent } from '../collectors/openstack-logs.ts';
import { ConfigError } from '../core/config.ts';
import { DetectionEngine } from '../detectors/engine.ts';
import { DEFAULT_RULES_DIR, loadRules } from '../detectors/rules.ts';
import { DEFAULT_EVENT_BUDGET_MS, detectTimed, TimeBudget } from '../processors/time-budget.ts';
import type { Command } from './index.ts';
import { parseOptions, timeZoneOption } from './options.ts';
import { eachEvent, EXIT_STATUS_HELP, Output } from './output.ts';

export const detectCommand: Command = {
  name: 'detect',
  help: `Usage: stackwatch detect [options] FILE...

Parses log files (plain or gzip) as the pipeline does and runs every rule over them, in file order, printing
each alert transition (firing / resolved) as one JSON object per line on stdout, and a summary on stderr.
Time is the events' own, so last month's logs behave as live traffic would. Lines that are not text (invalid
UTF-8, NUL bytes) are reported on stderr with the file, byte offset and reason, as \`stackwatch parse\` does.

Options:
  --host NAME       host.name of the events (default: this machine's name)
  --timezone ZONE   zone of the zone-less oslo.log timestamps (default UTC)
  --rules-dir DIR   rules to run (default: the rules shipped with stackwatch)

${EXIT_STATUS_HELP}`,

  async main(args) {
    const { values, positionals } = parseOptions(
      args,
      { host: { type: 'string', default: hostname() }, timezone: { type: 'string', default: 'UTC' }, 'rules-dir': { type: 'string', default: DEFAULT_RULES_DIR } },
      true,
    );
    if (positionals.length === 0) throw new ConfigError('detect: name at least one FILE (see stackwatch detect --help)');
    const timezone = timeZoneOption(values.timezone, '--timezone');
    const engine = await DetectionEngine.create(loadRules(values['rules-dir']));
    const out = new Output();
    const readAt = new Date().toISOString();
    let transitions = 0;
    const budget = new TimeBudget(DEFAULT_EVENT_BUDGET_MS, undefined, 'the per-event time budget');
    let slow = 0;
    const read = await eachEvent('detect', positionals, out, { maxEventBytes: DEFAULT_MAX_EVENT_BYTES }, (e, path, fileId) => {
      const { alerts, overBudget } = detectTimed(engine, toRawEvent(e, values.host, path, fileId, readAt), { timezone }, budget);
      if (overBudget) {
        slow++;
        process.stderr.write(`stackwatch detect: ${path}: the event at byte ${e.offset}: ${overBudget}\n`);
      }
      for (const alert of alerts) {
        out.line(JSON.stringify(alert));
        transitions++;
      }
    });
    if (!read) return 0;
    const { events, unusable, failed } = read;
    const problems = [
      unusable > 0 ? `, ${unusable} unusable line(s) (reported above)` : '',
      slow > 0 ? `, ${slow} event(s) over the time budget (reported above)` : '',
      failed > 0 ? `, ${failed} file(s) not read to the end (named above)` : '',
    ].join('');
    process.stderr.write(`stackwatch detect: ${events} events from ${positionals.length} file(s), ${transitions} alert transition(s)${problems}\n`);
    return failed > 0 ? 1 : 0;
  },
};
