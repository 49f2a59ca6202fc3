// pattern: the detector for rules that need no code of their own. A rule file says which lines are evidence
// (`fire`), which line ends the problem (`resolve`), how many lines within which window make an alert, and
// after how long without evidence the alert resolves by itself. Named groups of the regexes can be used in
// `match_by`, in the message and for the severity (Ceph's [WRN]/[ERR], say).
import { z } from 'zod';
import { Severity, type Alert, type LogDocument } from '../core/events.ts';
import { alertTransition, regexParam, fieldValue, ruleParams, slide, type Detector, type Rule } from './detect.ts';

const regex = regexParam();

export const PatternParams = z.strictObject({
  /** Logger prefixes whose lines can be evidence (the engine routes only those lines here); absent: all lines. */
  loggers: z.array(z.string().min(1)).min(1).optional(),
  /** Levels whose lines can be evidence; absent: any. */
  levels: z.array(z.string()).optional(),
  /** Literal text one of which a line must contain to be looked at (evidence or resolution): the engine tests
   * all rules' literals in one pass, so a line no rule cares about costs one scan whatever the number of rules. */
  contains: z.array(z.string().min(1)).min(1).optional(),
  /** Evidence: tried on the message (and stack trace). Named groups are fields for match_by and the message. */
  fire: regex,
  /** A line that ends the problem of its group. */
  resolve: regex.optional(),
  /** This many evidence lines within window_s make the alert fire. */
  threshold: z.strictObject({ count: z.number().int().positive(), window_s: z.number().positive() }).default({ count: 1, window_s: 1 }),
  /** Resolve a firing alert after this long without evidence in its group. */
  quiet_resolve_s: z.number().positive().optional(),
  /** Severity from a named group: e.g. { group: level, map: { WRN: warning, ERR: critical } }. */
  severity_from: z.strictObject({ group: z.string(), map: z.record(z.string(), Severity) }).optional(),
  /** Alert text; {field} is a match_by field or a named group. */
  message: z.string().min(1),
  evidence_max: z.number().int().positive().default(20),
});

interface Group {
  /** Times (ms) of recent evidence, for the threshold window. */
  recent: number[];
  firing?: { startedAt: string; last: number; evidence: string[] };
}

function render(template: string, fields: Record<string, string>): string {
  return template.replace(/\{([\w.]+)\}/g, (_, k: string) => fields[k] ?? '?');
}

export function createDetector(rule: Rule): Detector {
  const p = ruleParams(rule, PatternParams);
  const groups = new Map<string, Group>();

  function fields(doc: LogDocument, captures: Record<string, string> | undefined): Record<string, string> | undefined {
    const out: Record<string, string> = {};
    for (const key of rule.match_by) {
      const v = captures?.[key] ?? fieldValue(doc, key);
      if (v === undefined) return undefined; // the line lacks a field that names its group: not this rule's
      out[key] = v;
    }
    return { ...captures, ...out };
  }

  function transition(status: 'firing' | 'resolved', g: Group, f: Record<string, string>, doc: LogDocument, at: string, captures?: Record<string, string>): Alert {
    const a = alertTransition(rule, {
      status,
      group: Object.fromEntries(rule.match_by.map((k) => [k, f[k]])),
      at,
      startedAt: g.firing!.startedAt,
      host: f['host.name'] ?? doc.host.name,
      service: f['service.name'] ?? doc.service.name,
      message: (status === 'resolved' ? 'resolved: ' : '') + render(p.message, { ...f, 'host.name': doc.host.name, 'service.name': doc.service.name }),
      evidence: g.firing!.evidence,
    });
    const level = p.severity_from && captures?.[p.severity_from.group];
    if (level !== undefined && p.severity_from!.map[level]) a.alert.severity = p.severity_from!.map[level];
    return a;
  }

  /** Alerts of the host and service of `doc` that have been quiet long enough resolve now. */
  function quietResolutions(doc: LogDocument, now: number): Alert[] {
    if (p.quiet_resolve_s === undefined) return [];
    const out: Alert[] = [];
    for (const [key, g] of groups) {
      if (!g.firing || now - g.firing.last < p.quiet_resolve_s * 1000) continue;
      const f = JSON.parse(key) as Record<string, string>;
      if ((f['host.name'] ?? doc.host.name) !== doc.host.name || (f['service.name'] ?? doc.service.name) !== doc.service.name) continue;
      out.push(transition('resolved', g, f, doc, new Date(g.firing.last + p.quiet_resolve_s * 1000).toISOString()));
      groups.delete(key);
    }
    return out;
  }

  return {
    loggers: p.loggers,
    // A quiet period is measured on the group's other lines, so such a rule reads every line of its loggers.
    literals: p.quiet_resolve_s === undefined ? p.contains : undefined,
    onLog(doc) {
      const now = Date.parse(doc['@timestamp']);
      const out = quietResolutions(doc, now);
      const text = doc.message;
      if (p.contains && !p.contains.some((c) => text.includes(c))) return out;
      if (p.resolve) {
        const m = p.resolve.exec(text);
        const f = m && fields(doc, m.groups);
        const key = f && JSON.stringify(Object.fromEntries(rule.match_by.map((k) => [k, f[k]])));
        const g = key ? groups.get(key) : undefined;
        if (g?.firing) {
          g.firing.evidence = [...g.firing.evidence, doc.event.id].slice(-p.evidence_max);
          out.push(transition('resolved', g, f!, doc, doc['@timestamp'], m!.groups));
          groups.delete(key!);
          return out;
        }
      }
      if (p.levels && !p.levels.includes(doc.log.level ?? '')) return out;
      const m = p.fire.exec(text);
      if (!m) return out;
      const f = fields(doc, m.groups);
      if (!f) return out;
      const key = JSON.stringify(Object.fromEntries(rule.match_by.map((k) => [k, f[k]])));
      let g = groups.get(key);
      if (!g) groups.set(key, (g = { recent: [] }));
      if (g.firing) {
        g.firing.last = now;
        if (g.firing.evidence.length < p.evidence_max) g.firing.evidence.push(doc.event.id);
        return out;
      }
      g.recent = slide(g.recent, now, p.threshold.window_s);
      if (g.recent.length < p.threshold.count) return out;
      g.firing = { startedAt: doc['@timestamp'], last: now, evidence: [doc.event.id] };
      g.recent = [];
      out.push(transition('firing', g, f, doc, doc['@timestamp'], m.groups));
      return out;
    },
  };
}
