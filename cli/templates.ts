// `stackwatch templates FILE...`: the log templates of some files, offline — what the processor's template miner
// would learn from them (processors/templates/), with how often and when each was seen.
import { DEFAULT_MAX_EVENT_BYTES } from '../collectors/logs/assemble.ts';
import { toRawEvent } from '../collectors/openstack-logs.ts';
import { ConfigError } from '../core/config.ts';
import { parseLogEvent } from '../processors/parse-log.ts';
import { Miner, templateGroup, type TemplateInfo } from '../processors/templates/miner.ts';
import type { Command } from './index.ts';
import { parseOptions, timeZoneOption } from './options.ts';
import { eachEvent, EXIT_STATUS_HELP, Output } from './output.ts';

/** A template as printed: the templates of one text in several loggers are one. */
export interface TemplateRow {
  id: string;
  text: string;
  count: number;
  first_seen?: string;
  last_seen?: string;
  services: string[];
  levels: string[];
  loggers: string[];
}

/** Offline, the whole of a sosreport fits: more than a processor keeps (5,000 by default). */
const DEFAULT_MAX_TEMPLATES = 50_000;

export const templatesCommand: Command = {
  name: 'templates',
  help: `Usage: stackwatch templates [options] FILE...

Parses log files (plain or gzip) as the pipeline does and mines the template of every event's message — the
text with <*> for each variable, as log.template.text in the documents, learnt from the files in the order
given. Prints one JSON object per template on stdout, the most frequent first: id (log.template.id), text,
count, first_seen and last_seen (the events' own time), services, levels and loggers; and a summary on stderr.
Needs no Kafka or Elasticsearch. Lines that are not text are reported on stderr, as \`stackwatch parse\` does.

Options:
  --format FORMAT      json (default): one object per line; table: aligned columns, the text last
  --timezone ZONE      zone of the zone-less oslo.log timestamps (default UTC)
  --max-templates N    templates kept while mining (default ${DEFAULT_MAX_TEMPLATES.toLocaleString('en-US')}); beyond, those seen once are
                       evicted first, and the summary says how many

${EXIT_STATUS_HELP}`,

  async main(args) {
    const { values, positionals } = parseOptions(
      args,
      {
        format: { type: 'string', default: 'json' },
        timezone: { type: 'string', default: 'UTC' },
        'max-templates': { type: 'string', default: String(DEFAULT_MAX_TEMPLATES) },
      },
      true,
    );
    if (positionals.length === 0) throw new ConfigError('templates: name at least one FILE (see stackwatch templates --help)');
    const format = values.format;
    if (format !== 'json' && format !== 'table') throw new ConfigError(`--format: expected json or table, got ${JSON.stringify(format)}`);
    const maxTemplates = Number(values['max-templates']);
    if (!Number.isInteger(maxTemplates) || maxTemplates < 1) throw new ConfigError(`--max-templates: expected a whole number ≥ 1, got ${JSON.stringify(values['max-templates'])}`);
    const timezone = timeZoneOption(values.timezone, '--timezone');
    const miner = new Miner({ maxTemplates });
    const out = new Output();
    const readAt = new Date().toISOString();
    const read = await eachEvent('templates', positionals, out, { maxEventBytes: DEFAULT_MAX_EVENT_BYTES }, (e, path, fileId) => {
      const doc = parseLogEvent(toRawEvent(e, 'localhost', path, fileId, readAt), { timezone });
      const labels: Record<string, string> = { service: doc.service.name };
      if (doc.log.level) labels.level = doc.log.level;
      if (doc.log.logger) labels.logger = doc.log.logger;
      miner.add(doc.message, { group: templateGroup(doc), time: doc['@timestamp'], labels });
    });
    if (!read) return 0;
    const rows = templateRows(miner.templates());
    if (format === 'table') out.line(renderTable(rows));
    else for (const r of rows) out.line(JSON.stringify(r));
    await out.flush();
    if (out.failure) throw out.failure;
    const { events, unusable, failed } = read;
    const notes = [
      miner.evictions > 0 ? `, ${miner.evictions} evicted at --max-templates ${maxTemplates} (their lines are counted in no template)` : '',
      unusable > 0 ? `, ${unusable} unusable line(s) (reported above)` : '',
      failed > 0 ? `, ${failed} file(s) not read to the end (named above)` : '',
    ].join('');
    process.stderr.write(`stackwatch templates: ${events} events from ${positionals.length} file(s), ${rows.length} template(s)${notes}\n`);
    return failed > 0 ? 1 : 0;
  },
};

/** The miner's templates by id (one text mined under two loggers is one row), most frequent first, then the
 * earliest. */
export function templateRows(templates: readonly TemplateInfo[]): TemplateRow[] {
  const byId = new Map<string, TemplateRow>();
  for (const t of templates) {
    let r = byId.get(t.id);
    if (!r) byId.set(t.id, (r = { id: t.id, text: t.text, count: 0, first_seen: undefined, last_seen: undefined, services: [], levels: [], loggers: [] }));
    r.count += t.count;
    if (t.first_seen && !(r.first_seen && r.first_seen <= t.first_seen)) r.first_seen = t.first_seen;
    if (t.last_seen && !(r.last_seen && r.last_seen >= t.last_seen)) r.last_seen = t.last_seen;
    r.services = union(r.services, t.labels.service);
    r.levels = union(r.levels, t.labels.level);
    r.loggers = union(r.loggers, t.labels.logger);
  }
  return [...byId.values()].sort((a, b) => b.count - a.count || (a.first_seen ?? '').localeCompare(b.first_seen ?? '') || a.text.localeCompare(b.text));
}

const union = (a: string[], b: string[] = []) => [...new Set([...a, ...b])].sort();

/** Aligned columns, counts right-aligned, the template text last and whole. */
export function renderTable(rows: readonly TemplateRow[]): string {
  const header = ['COUNT', 'FIRST SEEN', 'LAST SEEN', 'LEVELS', 'SERVICES', 'TEMPLATE'];
  const cells = rows.map((r) => [String(r.count), r.first_seen ?? '-', r.last_seen ?? '-', r.levels.join(',') || '-', r.services.join(',') || '-', r.text]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const line = (c: string[]) => c.map((x, i) => (i === c.length - 1 ? x : i === 0 ? x.padStart(widths[i]) : x.padEnd(widths[i]))).join('  ');
  return [line(header), ...cells.map(line)].join('\n');
}
