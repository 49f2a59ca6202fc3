// `stackwatch detect FILE...`: a post-mortem on old logs (a sosreport, say): parse them and run every rule,
// printing each alert transition as one JSON object per line. Needs no Kafka or Elasticsearch.
import { hostname } from 'node:os';
import { DEFAULT_MAX_EVENT_BYTES } from '../collectors/logs/assemble.ts';
import { toRawEvent } from '../collectors/openstack-logs.ts';
import { ConfigError } from '../core/config.ts';
import type { Alert, Incident } from '../core/events.ts';
import { DetectionEngine } from '../detectors/engine.ts';
import { DEFAULT_RULES_DIR, loadRules } from '../detectors/rules.ts';
import { IncidentCorrelator, type IncidentChange } from '../incidents/correlator.ts';
import { loadIncidentRules } from '../incidents/rules.ts';
import { join } from 'node:path';
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

With --incidents it prints incident transitions instead, as the pager would get them: the alerts of one cause
(rules/incidents/) are one incident, paged once it has been firing for --min-duration seconds and resolved when
its last alert has ended and its hold has passed, all in the events' time. One JSON object per line, with
incident.id, incident.status (firing | resolved), incident.cause, incident.services, incident.hosts,
incident.alert_ids, incident.paged and a timeline; an incident shorter than --min-duration is printed once, at
its end, with incident.paged false (kept, never paged).

Options:
  --host NAME          host.name of the events (default: this machine's name)
  --timezone ZONE      zone of the zone-less oslo.log timestamps (default UTC)
  --rules-dir DIR      rules to run (default: the rules shipped with stackwatch); incident rules: DIR/incidents
  --incidents          print incident transitions, not alert transitions
  --min-duration SECS  with --incidents: how long an incident fires before it pages (default 60)

${EXIT_STATUS_HELP}`,

  async main(args) {
    const { values, positionals } = parseOptions(
      args,
      {
        host: { type: 'string', default: hostname() },
        timezone: { type: 'string', default: 'UTC' },
        'rules-dir': { type: 'string', default: DEFAULT_RULES_DIR },
        incidents: { type: 'boolean', default: false },
        'min-duration': { type: 'string', default: '60' },
      },
      true,
    );
    if (positionals.length === 0) throw new ConfigError('detect: name at least one FILE (see stackwatch detect --help)');
    const timezone = timeZoneOption(values.timezone, '--timezone');
    const minDurationS = Number(values['min-duration']);
    if (!Number.isFinite(minDurationS) || minDurationS < 0) throw new ConfigError(`--min-duration: expected a number of seconds ≥ 0, got ${JSON.stringify(values['min-duration'])}`);
    const engine = await DetectionEngine.create(loadRules(values['rules-dir']));
    const incidentRules = values.incidents ? loadIncidentRules(join(values['rules-dir'], 'incidents')) : [];
    /** With --incidents, the alerts are kept and correlated at the end, in time order across the files. */
    const kept: Alert[] = [];
    const out = new Output();
    const readAt = new Date().toISOString();
    let transitions = 0;
    const budget = new TimeBudget(DEFAULT_EVENT_BUDGET_MS, undefined, 'the per-event time budget');
    let slow = 0;
    const emit = (alerts: Alert[]) => {
      for (const alert of alerts) {
        if (values.incidents) kept.push(alert);
        else out.line(JSON.stringify(alert));
        transitions++;
      }
    };
    const read = await eachEvent('detect', positionals, out, { maxEventBytes: DEFAULT_MAX_EVENT_BYTES }, (e, path, fileId) => {
      const { alerts, overBudget } = detectTimed(engine, toRawEvent(e, values.host, path, fileId, readAt), { timezone }, budget);
      if (overBudget) {
        slow++;
        process.stderr.write(`stackwatch detect: ${path}: the event at byte ${e.offset}: ${overBudget}\n`);
      }
      emit(alerts);
    });
    if (!read) return 0;
    // Nothing more will come: what waits for the clock (a reconnect that has to stay up for settle_s) is decided
    // now, dated by its own events. Silence is not judged on files (service-silent judges live data only).
    emit(engine.tick(Date.now()));
    await out.flush();
    let incidentSummary = '';
    if (values.incidents) {
      const r = correlate(kept, new IncidentCorrelator(incidentRules, { minDurationS }));
      for (const c of r.printed) out.line(JSON.stringify(c.incident));
      await out.flush();
      incidentSummary = `, ${r.incidents} incident(s): ${r.paged} paged, ${r.short} shorter than ${minDurationS} s (not paged)${r.open > 0 ? `, ${r.open} still firing at the end of the files` : ''}`;
    }
    const { events, unusable, failed } = read;
    const problems = [
      unusable > 0 ? `, ${unusable} unusable line(s) (reported above)` : '',
      slow > 0 ? `, ${slow} event(s) over the time budget (reported above)` : '',
      failed > 0 ? `, ${failed} file(s) not read to the end (named above)` : '',
    ].join('');
    process.stderr.write(`stackwatch detect: ${events} events from ${positionals.length} file(s), ${transitions} alert transition(s)${incidentSummary}${problems}\n`);
    return failed > 0 ? 1 : 0;
  },
};

/** Correlates alert transitions in time order (the files were read one after another), the clock being the alerts'
 * own time. What a post-mortem prints: pages, resolutions of paged incidents, and short incidents once, at their end. */
export function correlate(alerts: Alert[], c: IncidentCorrelator): { printed: IncidentChange[]; final: Incident[]; incidents: number; paged: number; short: number; open: number } {
  const sorted = alerts.map((a, i) => ({ a, i, t: Date.parse(a['@timestamp']) })).sort((x, y) => x.t - y.t || x.i - y.i);
  const changes: IncidentChange[] = [];
  for (const { a, t } of sorted) changes.push(...c.tick(t), ...c.onAlerts([a], t));
  const last = sorted.length > 0 ? sorted[sorted.length - 1].t : 0;
  const { changes: flushed, stillFiring } = c.flush(last);
  changes.push(...flushed);
  const printed = [
    ...changes.filter((x) => x.page || (x.incident.incident.status === 'resolved' && !x.incident.incident.paged && !x.incident.incident.merged_into)),
    ...stillFiring.filter((x) => !x.incident.paged).map((incident): IncidentChange => ({ incident, filedAt: incident.incident.started_at })),
  ].sort((x, y) => Date.parse(x.incident['@timestamp']) - Date.parse(y.incident['@timestamp']));
  const ids = new Set(changes.map((x) => x.incident.incident.id));
  // Each incident as it ended up (or stands at the end of the files), merged ones left out.
  const latest = new Map<string, Incident>();
  for (const x of [...changes.map((ch) => ch.incident), ...stillFiring]) latest.set(x.incident.id, x);
  return {
    printed,
    final: [...latest.values()].filter((x) => !x.incident.merged_into),
    incidents: ids.size,
    paged: new Set(printed.filter((x) => x.page?.alert.status === 'firing').map((x) => x.incident.incident.id)).size,
    short: printed.filter((x) => x.incident.incident.status === 'resolved' && !x.incident.incident.paged).length,
    open: stillFiring.length,
  };
}
