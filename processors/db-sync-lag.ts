// db-sync-lag: the database behind the control plane is not keeping up. Two kinds of evidence, one rule:
//   - the services' own logs (oslo.db connection errors, deadlocks, wsrep aborts, "1047 WSREP has not yet
//     prepared node"): the `logs` params, evaluated by the pattern detector, grouped by host and service;
//   - metrics from the Zabbix collector (replica lag, Galera receive queue, flow control): a value above its
//     threshold for a sustained time fires, a value back at or under it resolves. A node that is a backup Donor
//     (wsrep_local_state 2, Donor/Desynced) is expected to fall behind: its samples are not evidence.
import { z } from 'zod';
import { metricId, type Alert, type MetricEvent } from '../core/events.ts';
import { alertTransition, ruleParams, type Detector, type Rule } from './detect.ts';
import { PatternParams, patternDetector } from './pattern.ts';
import { KeyedState, stateLimits } from './state.ts';

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

interface HostState {
  /** Metric name → when its value went above the threshold (ms) without a sample under it since. */
  over: Map<string, number>;
  excused: boolean;
  firing?: { startedAt: string; evidence: string[] };
}

function render(template: string, fields: Record<string, string>): string {
  return template.replace(/\{([\w.]+)\}/g, (_, k: string) => fields[k] ?? '?');
}

export function createDetector(rule: Rule): Detector {
  const p = ruleParams(rule, Params);
  const logs = p.logs ? patternDetector(rule, p.logs) : undefined;
  const mp = p.metrics;
  const limits = stateLimits(rule);
  const hosts = new KeyedState<HostState>(rule.id, limits, (st) => st.firing !== undefined);
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
    for (const e of hosts.set(m.host.name, st, now)) {
      // Dropped to stay within state.max_entries while firing: resolved with the reason, not forgotten silently.
      if (e.value.firing) out.push(transition('resolved', e.key, e.value, m, `${e.key}: no longer tracked: the rule holds at most ${limits.max_entries} hosts (state.max_entries), and this was the oldest`));
    }
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
      st.firing.evidence = [...st.firing.evidence, metricId(m)].slice(-mp!.evidence_max);
      const out = transition('resolved', host, st, m, render(mp!.message, fields));
      st.firing = undefined;
      return [out];
    }
    if (st.excused) return [];
    const since = st.over.get(m.metric.name) ?? now;
    st.over.set(m.metric.name, since);
    if (st.firing) {
      if (st.firing.evidence.length < mp!.evidence_max) st.firing.evidence.push(metricId(m));
      return [];
    }
    if (now - since < t.for_s * 1000) return [];
    st.firing = { startedAt: m['@timestamp'], evidence: [metricId(m)] };
    return [transition('firing', host, st, m, render(mp!.message, fields))];
  }

  return {
    ...(logs ?? {}),
    ...(mp ? { metrics: [...thresholds.keys(), ...(mp.not_while ? [mp.not_while.metric] : [])], onMetric } : {}),
    state: () => (logs?.state?.() ?? 0) + hosts.size,
  };
}
