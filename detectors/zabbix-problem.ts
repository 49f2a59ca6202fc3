// zabbix-problem: Zabbix's own problems (its templates' triggers) become stackwatch alerts, so the pager has one
// path: a problem at or above a minimum severity fires when Zabbix opens it and resolves when Zabbix resolves it.
// One alert per Zabbix problem (its event id); the severity maps Zabbix's six levels onto stackwatch's.
import { z } from 'zod';
import { Severity, type Alert, type ZabbixProblemEvent } from '../core/events.ts';
import { alertTransition, defineDetector } from './detector.ts';
import { FiringGroups, restoreState, untracked } from './kit.ts';
import { regexParam } from './rules.ts';
import { keyedData } from './state.ts';

/** The version of the state's shape (snapshot, restore). */
const STATE_VERSION = 1;

const ZABBIX_SEVERITIES = ['not_classified', 'information', 'warning', 'average', 'high', 'disaster'] as const;

const Params = z.strictObject({
  /** Problems below this Zabbix severity are not alerts. */
  min_severity: z.enum(ZABBIX_SEVERITIES).default('average'),
  /** Zabbix severity → stackwatch severity. */
  severity: z
    .partialRecord(z.enum(ZABBIX_SEVERITIES), Severity)
    .default({ not_classified: 'info', information: 'info', warning: 'warning', average: 'warning', high: 'critical', disaster: 'page' }),
  /** Problem names (regular expression, case-insensitive) that are not alerts: what another rule covers. */
  ignore_names: regexParam('i').optional(),
});

/** An open problem, as a checkpoint holds it (its severity: Zabbix's, 0 to 5). */
const Problem = z.strictObject({
  startedAt: z.string(),
  host: z.string(),
  service: z.string(),
  name: z.string(),
  severity: z
    .number()
    .int()
    .min(0)
    .max(ZABBIX_SEVERITIES.length - 1),
});
type Problem = z.output<typeof Problem>;

const State = z.strictObject({ open: keyedData(Problem) });

export const detector = defineDetector({
  name: 'zabbix-problem',
  params: Params,
  create(p, { rule }) {
    const min = ZABBIX_SEVERITIES.indexOf(p.min_severity);
    const ignore = p.ignore_names;
    /** Open problems by event id: a repeated poll of the same open problem is not a new alert. Bounded: a problem
     * Zabbix resolved while the collector was away is never seen resolved, and would stay for good. */
    const open = new FiringGroups<Problem>(rule, () => true);

    function transition(resolved: boolean, eventid: string, o: Problem, at: string, why = ''): Alert {
      const a = alertTransition(rule, {
        status: resolved ? 'resolved' : 'firing',
        group: { 'host.name': o.host, 'zabbix.eventid': eventid },
        at,
        startedAt: o.startedAt,
        host: o.host,
        service: o.service,
        message: `${resolved ? 'resolved: ' : ''}Zabbix: ${o.name}${why}`,
        evidence: [`zabbix-event:${eventid}`],
      });
      a.alert.severity = p.severity[ZABBIX_SEVERITIES[o.severity]] ?? rule.severity;
      return a;
    }

    return {
      state: () => open.size,
      snapshot: () => ({
        v: STATE_VERSION,
        data: { open: open.snapshot((o) => ({ startedAt: o.startedAt, host: o.host, service: o.service, name: o.name, severity: o.severity })) } satisfies z.input<typeof State>,
      }),
      // Problems past the rule's cap (a snapshot of a larger one) are not resolved: restore has no transitions to give.
      restore: (state) => restoreState(rule, state, STATE_VERSION, State, (data) => void open.load(data.open)),
      accepts: { kinds: ['zabbix-problem'] },
      on(e: ZabbixProblemEvent): Alert[] {
        const pr = e.problem;
        if (pr.severity < min || ignore?.test(pr.name)) return [];
        const resolved = pr.status === 'resolved';
        if (!resolved && open.has(pr.eventid)) return [];
        const o = { startedAt: pr.started_at, host: e.host.name, service: e.labels.service ?? 'zabbix', name: pr.name, severity: pr.severity };
        // A resolution seen without the opening (a restart in between) still resolves: Zabbix says when it began.
        if (resolved) {
          open.delete(pr.eventid);
          return [transition(true, pr.eventid, o, pr.ended_at ?? e['@timestamp'])];
        }
        const dropped = open.keep(pr.eventid, o, Date.parse(e['@timestamp']), (k, v) => transition(true, k, v, e['@timestamp'], untracked(open.limits, 'open problems')));
        return [...dropped, transition(false, pr.eventid, o, pr.started_at)];
      },
    };
  },
});
