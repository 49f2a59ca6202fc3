// pattern: the detector for rules that need no code of their own. A rule file says which lines are evidence
// (`fire`), which line ends the problem (`resolve`), how many lines within which window make an alert, and
// after how long without evidence the alert resolves by itself. Named groups of the regexes can be used in
// `match_by`, in the message and for the severity (Ceph's [WRN]/[ERR], say).
import { z } from 'zod';
import { Severity, type Alert, type LogDocument, type LogEvent } from '../core/events.ts';
import { alertTransition, defineDetector, type Detector } from './detector.ts';
import { addEvidence, closingEvidence, defined, fieldValue, FiringGroups, quietFor, restoreState, slide, untracked } from './kit.ts';
import { regexParam, type Rule } from './rules.ts';
import { keyedData, Time, time } from './state.ts';

/** The version of the state's shape (snapshot, restore). */
const STATE_VERSION = 1;

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

/** A group's state, as a checkpoint holds it (Time: event times in ms). */
const Group = z.strictObject({
  /** Times (ms) of recent evidence, for the threshold window. */
  recent: z.array(Time),
  firing: z
    .strictObject({
      startedAt: z.string(),
      last: Time,
      evidence: z.array(z.string()),
      /** The group's fields, and the host and service of the line that fired it (its resolutions name them). */
      fields: z.record(z.string(), z.string()),
      captures: z.record(z.string(), z.string()).optional(),
      host: z.string(),
      service: z.string(),
    })
    .optional(),
});
type Group = z.output<typeof Group>;

const State = z.strictObject({
  groups: keyedData(Group),
  /** The keys of the firing groups by the host and service that resolve them by their quiet, in the order they
   * fired (the order their resolutions come in). */
  firingAt: z.array(z.tuple([z.string(), z.array(z.string())])).transform((list) => new Map(list.map(([k, keys]) => [k, new Set(keys)]))),
});

function render(template: string, fields: Record<string, string>): string {
  return template.replace(/\{([\w.]+)\}/g, (_, k: string) => fields[k] ?? '?');
}

export type PatternParams = z.infer<typeof PatternParams>;

export const detector = defineDetector({
  name: 'pattern',
  params: PatternParams,
  example: { fire: 'boom', message: 'boom on {host.name}' },
  create: (p, { rule }) => patternDetector(rule, p),
});

/** The pattern detector with its params already validated (db-sync-lag validates them as part of its own);
 * `stateField` is where its state sits, for the reasons of a restore that names the field (db-sync-lag's logs part's
 * is `state.data.logs`). */
export function patternDetector(rule: Rule, p: PatternParams, stateField = 'state'): Detector {
  const groups = new FiringGroups<Group>(rule, (g) => g.firing !== undefined);
  // A quiet period resolves a group on a line of its host and service (those of match_by, else any): firing groups
  // filed by them, so a line looks only at its own instead of at every group.
  const byHost = rule.match_by.includes('host.name');
  const byService = rule.match_by.includes('service.name');
  const quietKey = (host: string, service: string) => `${byHost ? host : ''}\0${byService ? service : ''}`;
  let firingAt = new Map<string, Set<string>>();

  function fields(doc: LogDocument, captures: Record<string, string> | undefined): Record<string, string> | undefined {
    const out: Record<string, string> = {};
    for (const key of rule.match_by) {
      const v = captures?.[key] ?? fieldValue(doc, key);
      if (v === undefined) return undefined; // the line lacks a field that names its group: not this rule's
      out[key] = v;
    }
    return { ...captures, ...out };
  }

  function transition(status: 'firing' | 'resolved', g: Group, at: string, why = ''): Alert {
    const f = g.firing!;
    const a = alertTransition(rule, {
      status,
      group: Object.fromEntries(rule.match_by.map((k) => [k, f.fields[k]])),
      at,
      startedAt: f.startedAt,
      host: f.host,
      service: f.service,
      message: (status === 'resolved' ? 'resolved: ' : '') + render(p.message, { ...f.fields, 'host.name': f.host, 'service.name': f.service }) + why,
      evidence: f.evidence,
    });
    const level = p.severity_from && f.captures?.[p.severity_from.group];
    if (level !== undefined && p.severity_from!.map[level]) a.alert.severity = p.severity_from!.map[level];
    return a;
  }

  /** A group's alert ends: resolved, and the group forgotten. */
  function end(key: string, g: Group, at: string, why?: string): Alert {
    groups.delete(key);
    const k = quietKey(g.firing!.fields['host.name'] ?? g.firing!.host, g.firing!.fields['service.name'] ?? g.firing!.service);
    firingAt.get(k)?.delete(key);
    if (firingAt.get(k)?.size === 0) firingAt.delete(k);
    return transition('resolved', g, at, why);
  }

  /** Stores a group; groups dropped to stay within the rule's bounds resolve if they were firing. */
  function keep(key: string, g: Group, now: number, at: string): Alert[] {
    return groups.keep(key, g, now, (k, v) => end(k, v, at, untracked(groups.limits, 'groups')));
  }

  /** Alerts of the host and service of `doc` that have been quiet long enough resolve now. */
  function quietResolutions(doc: LogDocument, now: number): Alert[] {
    if (p.quiet_resolve_s === undefined || firingAt.size === 0) return [];
    const keys = firingAt.get(quietKey(doc.host.name, doc.service.name));
    if (!keys) return [];
    const out: Alert[] = [];
    for (const key of [...keys]) {
      const g = groups.get(key);
      if (!g?.firing || !quietFor(g.firing.last, now, p.quiet_resolve_s)) continue;
      out.push(end(key, g, new Date(g.firing.last + p.quiet_resolve_s * 1000).toISOString()));
    }
    return out;
  }

  return {
    // A quiet period is measured on the group's other lines, so such a rule reads every line of its loggers.
    accepts: { kinds: ['log'], loggers: p.loggers, literals: p.quiet_resolve_s === undefined ? p.contains : undefined },
    state: () => groups.size,
    snapshot: () => ({
      v: STATE_VERSION,
      data: {
        groups: groups.snapshot((g): z.input<typeof Group> => ({
          recent: g.recent.map(time),
          firing: g.firing && {
            startedAt: g.firing.startedAt,
            last: time(g.firing.last),
            evidence: [...g.firing.evidence],
            // A regex's groups that took part in no match are undefined: JSON keeps nothing of them either.
            fields: defined(g.firing.fields),
            captures: g.firing.captures && defined(g.firing.captures),
            host: g.firing.host,
            service: g.firing.service,
          },
        })),
        firingAt: [...firingAt].map(([k, keys]) => [k, [...keys]]),
      } satisfies z.input<typeof State>,
    }),
    restore: (state) =>
      restoreState(
        rule,
        state,
        STATE_VERSION,
        State,
        (data) => {
          // Groups past the rule's cap (a snapshot of a larger one) are not resolved: restore has no transitions to
          // give. They are counted as evictions, and forgotten here too.
          const dropped = new Set(groups.load(data.groups).map((e) => e.key));
          for (const keys of data.firingAt.values()) for (const k of dropped) keys.delete(k);
          firingAt = new Map([...data.firingAt].filter(([, keys]) => keys.size > 0));
          return undefined;
        },
        stateField,
      ),
    on({ doc }: LogEvent) {
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
          g.firing.evidence = closingEvidence(g.firing.evidence, doc.event.id, p.evidence_max);
          out.push(end(key!, g, doc['@timestamp']));
          return out;
        }
      }
      if (p.levels && !p.levels.includes(doc.log.level ?? '')) return out;
      const m = p.fire.exec(text);
      if (!m) return out;
      const f = fields(doc, m.groups);
      if (!f) return out;
      const key = JSON.stringify(Object.fromEntries(rule.match_by.map((k) => [k, f[k]])));
      const g = groups.get(key) ?? { recent: [] };
      if (g.firing) {
        g.firing.last = now;
        addEvidence(g.firing.evidence, doc.event.id, p.evidence_max);
        out.push(...keep(key, g, now, doc['@timestamp']));
        return out;
      }
      g.recent = slide(g.recent, now, p.threshold.window_s);
      if (g.recent.length < p.threshold.count) {
        out.push(...keep(key, g, now, doc['@timestamp']));
        return out;
      }
      g.firing = { startedAt: doc['@timestamp'], last: now, evidence: [doc.event.id], fields: f, captures: m.groups, host: doc.host.name, service: doc.service.name };
      g.recent = [];
      const k = quietKey(f['host.name'] ?? doc.host.name, f['service.name'] ?? doc.service.name);
      firingAt.set(k, (firingAt.get(k) ?? new Set()).add(key));
      out.push(transition('firing', g, doc['@timestamp']));
      out.push(...keep(key, g, now, doc['@timestamp']));
      return out;
    },
  };
}
