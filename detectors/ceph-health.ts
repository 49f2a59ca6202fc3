// ceph-health: one alert per Ceph health check code while it stands, from two sources that agree on the group
// (the code):
//   - Ceph status events from the Ceph collector (`ceph health detail`): a code present fires, a code absent
//     from a later event has cleared; Ceph's own severity (HEALTH_WARN / HEALTH_ERR);
//   - the Ceph cluster log (ceph.log): "Health check failed/update: … (CODE)" fires, "Health check cleared: CODE"
//     resolves; [WRN] / [ERR] give the severity.
// A check whose severity changes (a warning that became an error) is sent again as firing with the new one.
import { z } from 'zod';
import { Severity, stableId, type Alert, type CephHealthEvent, type LogDocument } from '../core/events.ts';
import { alertTransition, defineDetector } from './detector.ts';
import { addEvidence, closingEvidence, FiringGroups, restoreState, untracked } from './kit.ts';
import { regexParam } from './rules.ts';
import { keyedData } from './state.ts';

/** The version of the state's shape (snapshot, restore). */
const STATE_VERSION = 1;

const regex = regexParam();

const Params = z.strictObject({
  /** Literal text every cluster-log line of interest contains. */
  contains: z.array(z.string().min(1)).min(1).default(['Health check ']),
  /** A check fails or changes: named groups `code`, `level`, `summary`. */
  fire: regex,
  /** A check cleared: named group `code`. */
  resolve: regex,
  /** Severity by the log's level ([WRN], [ERR]) and by the status event's severity. */
  severity: z.record(z.string(), Severity).default({ WRN: 'warning', ERR: 'critical', HEALTH_WARN: 'warning', HEALTH_ERR: 'critical' }),
  /** Check codes that never alert (a test cluster's known noise, say). */
  ignore: z.array(z.string()).default([]),
  /** Alert on checks muted in Ceph (`ceph health mute`)? */
  include_muted: z.boolean().default(false),
  message: z.string().min(1).default('Ceph health check {code}: {summary}'),
  evidence_max: z.number().int().positive().default(20),
});

/** A check that stands (an open alert), as a checkpoint holds it. */
const Standing = z.strictObject({
  startedAt: z.string(),
  severity: Severity,
  summary: z.string(),
  host: z.string(),
  evidence: z.array(z.string()),
});
type Standing = z.output<typeof Standing>;

const State = z.strictObject({ standing: keyedData(Standing) });

export const detector = defineDetector({
  name: 'ceph-health',
  params: Params,
  create(p, { rule }) {
    // Every standing check is an open alert; codes come from log lines too, so they are bounded like any state.
    const standing = new FiringGroups<Standing>(rule, () => true);
    const severityOf = (level: string) => p.severity[level] ?? rule.severity;

    function transition(status: 'firing' | 'resolved', code: string, s: Standing, at: string, why = ''): Alert {
      const a = alertTransition(rule, {
        status,
        group: { code },
        at,
        startedAt: s.startedAt,
        host: s.host,
        service: 'ceph',
        message: (status === 'resolved' ? 'resolved: ' : '') + p.message.replace('{code}', code).replace('{summary}', s.summary) + why,
        evidence: s.evidence,
      });
      a.alert.severity = s.severity;
      return a;
    }

    /** A check stands at `at`: fires when new, fires again when its severity changed. */
    function stands(code: string, severity: Severity, summary: string, host: string, at: string, evidence: string): Alert[] {
      if (p.ignore.includes(code)) return [];
      const s = standing.get(code);
      if (!s) {
        const fresh = { startedAt: at, severity, summary, host, evidence: [evidence] };
        return [...keep(code, fresh, at), transition('firing', code, fresh, at)];
      }
      addEvidence(s.evidence, evidence, p.evidence_max);
      s.summary = summary;
      const out = keep(code, s, at);
      if (s.severity === severity) return out;
      s.severity = severity;
      return [...out, transition('firing', code, s, at)];
    }

    /** Stores a check; checks dropped to stay within state.max_entries resolve with the reason. */
    function keep(code: string, s: Standing, at: string): Alert[] {
      return standing.keep(code, s, Date.parse(at), (k, v) => transition('resolved', k, v, at, untracked(standing.limits, 'checks')));
    }

    function cleared(code: string, at: string, evidence: string): Alert[] {
      const s = standing.get(code);
      if (!s) return [];
      standing.delete(code);
      s.evidence = closingEvidence(s.evidence, evidence, p.evidence_max);
      return [transition('resolved', code, s, at)];
    }

    function onLog(doc: LogDocument): Alert[] {
      const r = p.resolve.exec(doc.message);
      if (r?.groups?.code) return cleared(r.groups.code, doc['@timestamp'], doc.event.id);
      const f = p.fire.exec(doc.message);
      if (!f?.groups?.code) return [];
      const g = f.groups;
      return stands(g.code, severityOf(g.level ?? ''), g.summary ?? g.code, doc.host.name, doc['@timestamp'], doc.event.id);
    }

    function onHealth(e: CephHealthEvent): Alert[] {
      const at = e['@timestamp'];
      const out: Alert[] = [];
      const now = new Set<string>();
      for (const c of e.checks) {
        if (c.muted && !p.include_muted) continue;
        now.add(c.code);
        out.push(...stands(c.code, severityOf(c.severity), c.summary, e.cluster.name, at, stableId(e.cluster.name, at, c.code)));
      }
      for (const [code] of [...standing.entries()]) {
        if (!now.has(code)) out.push(...cleared(code, at, stableId(e.cluster.name, at, 'cleared', code)));
      }
      return out;
    }

    return {
      accepts: { kinds: ['log', 'ceph-health'], literals: p.contains },
      on: (e) => (e.kind === 'log' ? onLog(e.doc) : e.kind === 'ceph-health' ? onHealth(e) : []),
      state: () => standing.size,
      snapshot: () => ({
        v: STATE_VERSION,
        data: { standing: standing.snapshot((st) => ({ startedAt: st.startedAt, severity: st.severity, summary: st.summary, host: st.host, evidence: [...st.evidence] })) } satisfies z.input<
          typeof State
        >,
      }),
      // Checks past the rule's cap (a snapshot of a larger one) are not resolved: restore has no transitions to give.
      restore: (state) => restoreState(rule, state, STATE_VERSION, State, (data) => void standing.load(data.standing)),
    };
  },
});
