// zabbix-problem: Zabbix's own problems (its templates' triggers) become stackwatch alerts, so the pager has one
// path: a problem at or above a minimum severity fires when Zabbix opens it and resolves when Zabbix resolves it.
// One alert per Zabbix problem (its event id); the severity maps Zabbix's six levels onto stackwatch's.
import { z } from 'zod';
import { Severity, type Alert, type ZabbixProblemEvent } from '../core/events.ts';
import { alertTransition, regexParam, ruleParams, type Detector, type Rule } from './detect.ts';

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

export function createDetector(rule: Rule): Detector {
  const p = ruleParams(rule, Params);
  const min = ZABBIX_SEVERITIES.indexOf(p.min_severity);
  const ignore = p.ignore_names;
  /** Open problems by event id: a repeated poll of the same open problem is not a new alert. */
  const open = new Map<string, { startedAt: string }>();

  return {
    onZabbixProblem(e: ZabbixProblemEvent): Alert[] {
      const pr = e.problem;
      if (pr.severity < min || ignore?.test(pr.name)) return [];
      const resolved = pr.status === 'resolved';
      const known = open.get(pr.eventid);
      if (!resolved && known) return [];
      // A resolution seen without the opening (a restart in between) still resolves: Zabbix says when it began.
      if (resolved) open.delete(pr.eventid);
      else open.set(pr.eventid, { startedAt: pr.started_at });
      const a = alertTransition(rule, {
        status: resolved ? 'resolved' : 'firing',
        group: { 'host.name': e.host.name, 'zabbix.eventid': pr.eventid },
        at: resolved ? (pr.ended_at ?? e['@timestamp']) : pr.started_at,
        startedAt: pr.started_at,
        host: e.host.name,
        service: e.labels.service ?? 'zabbix',
        message: `${resolved ? 'resolved: ' : ''}Zabbix: ${pr.name}`,
        evidence: [`zabbix-event:${pr.eventid}`],
      });
      a.alert.severity = p.severity[ZABBIX_SEVERITIES[pr.severity]] ?? rule.severity;
      return [a];
    },
  };
}
