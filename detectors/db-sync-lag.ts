// db-sync-lag: the database behind the control plane is not keeping up. Two kinds of evidence, one rule:
//   - the services' own logs (oslo.db connection errors, deadlocks, wsrep aborts, "1047 WSREP has not yet
//     prepared node"): the `logs` params, evaluated by the pattern detector, grouped by host and service;
//   - metrics from the Zabbix collector (replica lag, Galera receive queue, flow control): a value above its
//     threshold for a sustained time fires, a value back at or under it resolves. A node that is a backup Donor
//     (wsrep_local_state 2, Donor/Desynced) is expected to fall behind: its samples are not evidence.
import { z } from 'zod';
import { metricId, type Alert, type MetricEvent } from '../core/events.ts';
import { alertTransition, defineDetector } from './detector.ts';
import { addEvidence, closingEvidence, FiringGroups, restoreState } from './kit.ts';
import { PatternParams, patternDetector } from './pattern.ts';
import { keyedData, Time, time } from './state.ts';

/** The version of the state's shape (snapshot, restore); the logs part's state is the pattern detector's, with its
 * own version. */
const STATE_VERSION = 1;

const MetricParams = z.strictObject({
  /** service.name of the alerts raised from metrics (the group is host.name + service.name). */
  service: z.string().min(1).default('mariadb'),
  thresholds: z
    .array(
      z.strictObject({
        name: z.string().min(1),
        /** Evidence while the value is above this… */
        above: z.number(),
        /** …for at least this long (seconds, by the samples' own time). */
        for_s: z.number().nonnegative().default(60),
      }),
    )
    .min(1),
  /** While this metric has one of these values, the node's samples are not evidence. */
  not_while: z.strictObject({ metric: z.string().min(1), values: z.array(z.number()).min(1), reason: z.string().min(1) }).optional(),
  /** Alert text: {host.name}, {service.name}, {metric}, {value}, {above}, {for_s}. */
  message: z.string().min(1),
  evidence_max: z.number().int().positive().default(20),
});

const Params = z.strictObject({
  logs: PatternParams.optional(),
  metrics: MetricParams.optional(),
});

/** A host's state, as a checkpoint holds it. */
const HostState = z.strictObject({
  /** Metric name → when its value went above the threshold (ms) without a sample under it since. */
  over: z.array(z.tuple([z.string(), Time])).transform((list) => new Map(list)),
  excused: z.boolean(),
  firing: z.strictObject({ startedAt: z.string(), evidence: z.array(z.string()) }).optional(),
});
type HostState = z.output<typeof HostState>;

const State = z.strictObject({
  /** The logs part's state (the pattern detector's), when the rule has one. */
  logs: z.strictObject({ v: z.number(), data: z.unknown() }).optional(),
  hosts: keyedData(HostState),
});

function render(template: string, fields: Record<string, string>): string {
  return template.replace(/\{([\w.]+)\}/g, (_, k: string) => fields[k] ?? '?');
}

export const detector = defineDetector({
  name: 'db-sync-lag',
  params: Params,
  create(p, { rule }) {
    const logs = p.logs ? patternDetector(rule, p.logs, 'state.data.logs') : undefined;
    const mp = p.metrics;
    const hosts = new FiringGroups<HostState>(rule, (st) => st.firing !== undefined);
    const limits = hosts.limits;
    const thresholds = new Map((mp?.thresholds ?? []).map((t) => [t.name, t]));

    function transition(status: 'firing' | 'resolved', host: string, st: HostState, m: MetricEvent, text: string): Alert {
      return alertTransition(rule, {
        status,
        group: { 'host.name': host, 'service.name': mp!.service },
        at: m['@timestamp'],
        startedAt: st.firing!.startedAt,
        host,
        service: mp!.service,
        message: (status === 'resolved' ? 'resolved: ' : '') + text,
        evidence: st.firing!.evidence,
      });
    }

    function onMetric(m: MetricEvent): Alert[] {
      const now = Date.parse(m['@timestamp']);
      const st = hosts.get(m.host.name) ?? { over: new Map(), excused: false };
      const out = evaluate(m, st, now);
      // Dropped to stay within state.max_entries while firing: resolved with the reason, not forgotten silently.
      out.push(
        ...hosts.keep(m.host.name, st, now, (k, v) =>
          transition('resolved', k, v, m, `${k}: no longer tracked: the rule holds at most ${limits.max_entries} hosts (state.max_entries), and this was the oldest`),
        ),
      );
      return out;
    }

    function evaluate(m: MetricEvent, st: HostState, now: number): Alert[] {
      const host = m.host.name;
      if (mp!.not_while && m.metric.name === mp!.not_while.metric) {
        st.excused = mp!.not_while.values.includes(m.metric.value);
        if (st.excused) st.over.clear();
        return [];
      }
      const t = thresholds.get(m.metric.name);
      if (!t) return [];
      const fields = {
        'host.name': host,
        'service.name': mp!.service,
        metric: m.metric.name,
        value: String(m.metric.value),
        above: String(t.above),
        for_s: String(t.for_s),
      };
      if (m.metric.value <= t.above) {
        st.over.delete(m.metric.name);
        if (!st.firing || st.over.size > 0) return [];
        st.firing.evidence = closingEvidence(st.firing.evidence, metricId(m), mp!.evidence_max);
        const out = transition('resolved', host, st, m, render(mp!.message, fields));
        st.firing = undefined;
        return [out];
      }
      if (st.excused) return [];
      const since = st.over.get(m.metric.name) ?? now;
      st.over.set(m.metric.name, since);
      if (st.firing) {
        addEvidence(st.firing.evidence, metricId(m), mp!.evidence_max);
        return [];
      }
      if (now - since < t.for_s * 1000) return [];
      st.firing = { startedAt: m['@timestamp'], evidence: [metricId(m)] };
      return [transition('firing', host, st, m, render(mp!.message, fields))];
    }

    const kinds = [...(logs ? (['log'] as const) : []), ...(mp ? (['metric'] as const) : [])];
    return {
      // What the logs part reads (its loggers and literals), and the metrics of the thresholds.
      accepts: { ...logs?.accepts, kinds, ...(mp ? { metrics: [...thresholds.keys(), ...(mp.not_while ? [mp.not_while.metric] : [])] } : {}) },
      on: (e) => (e.kind === 'metric' ? onMetric(e.sample) : logs!.on(e)),
      state: () => (logs?.state?.() ?? 0) + hosts.size,
      snapshot: () => ({
        v: STATE_VERSION,
        data: {
          logs: logs?.snapshot!(),
          hosts: hosts.snapshot((st) => ({
            over: [...st.over].map(([name, since]): [string, number | null] => [name, time(since)]),
            excused: st.excused,
            firing: st.firing && { startedAt: st.firing.startedAt, evidence: [...st.firing.evidence] },
          })),
        } satisfies z.input<typeof State>,
      }),
      restore: (state) =>
        restoreState(rule, state, STATE_VERSION, State, (data) => {
          if (!logs !== !data.logs) return `${rule.id}: state.data.logs: ${logs ? 'missing: the rule reads logs' : 'the rule reads no logs'}`;
          // The logs part first: refused, nothing of either part is kept.
          const refused = logs?.restore!(data.logs!);
          if (refused !== undefined) return refused;
          hosts.load(data.hosts);
          return undefined;
        }),
    };
  },
});
