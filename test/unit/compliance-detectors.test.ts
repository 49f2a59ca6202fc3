// One compliance test for every detector of the registry (detectors/index.ts), in the spirit of Vector's component
// specification: a detector added to the registry is held to the contract without a line here. Each detector is
// made from its shipped rule (rules/) or, when none uses it, from its definition's params example, and fed what
// the rule's own tests give (rules/<id>.test.yaml), over many hosts, plus one event of every kind.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../core/config.ts';
import { EVENT_KINDS, type Alert, type EventKind, type PipelineEvent } from '../../core/events.ts';
import type { Detector, DetectorDefinition } from '../../detectors/detector.ts';
import { createDetector, DetectionEngine } from '../../detectors/engine.ts';
import { DETECTORS } from '../../detectors/index.ts';
import { DEFAULT_RULES_DIR, loadRules, readYamlFile, type Rule } from '../../detectors/rules.ts';
import { alertsFor } from '../../processors/rule-tests.ts';

const SHIPPED = loadRules();
const MAX_ENTRIES = 10;
const DEFAULT_EVIDENCE_MAX = 20;

/** The detector's shipped rule, else a rule of its params example. */
function ruleOf(def: DetectorDefinition, state?: Rule['state']): Rule | undefined {
  const shipped = SHIPPED.find((r) => r.detector === def.name);
  const rule: Rule | undefined = shipped
    ? { ...shipped }
    : def.example && {
        id: `compliance-${def.name}`,
        name: def.name,
        detector: def.name,
        severity: 'warning',
        runbook: 'none',
        match_by: ['host.name', 'service.name'],
        params: def.example,
        file: `compliance/${def.name}.yaml`,
      };
  return rule && state ? { ...rule, state } : rule;
}

/** One event of every kind, shaped to reach the detector: its first logger, literal and metric name. */
function oneOfEach(d: Detector, host = 'compliance-host'): PipelineEvent[] {
  const at = '2026-01-01T00:00:00.000Z';
  const literal = d.accepts.literals?.[0] ?? '';
  const loggerName = d.accepts.loggers?.[0] ? `${d.accepts.loggers[0].replace(/\.$/, '')}.x` : 'compliance.logger';
  const events: Record<EventKind, PipelineEvent> = {
    log: {
      kind: 'log',
      doc: {
        '@timestamp': at,
        message: `a line ${literal} of no consequence`,
        log: { logger: loggerName, level: 'ERROR', file: { path: '/var/log/x.log' }, offset: 0 },
        host: { name: host },
        service: { name: 'svc' },
        event: { id: 'e1' },
      },
    },
    metric: { kind: 'metric', sample: { v: 1, '@timestamp': at, source: 'test', host: { name: host }, metric: { name: d.accepts.metrics?.[0] ?? 'x.y', value: 1e9 }, labels: {} } },
    'ceph-health': {
      v: 1,
      kind: 'ceph-health',
      '@timestamp': at,
      cluster: { name: 'ceph' },
      status: 'HEALTH_WARN',
      checks: [{ code: 'OSD_DOWN', severity: 'HEALTH_WARN', summary: '1 osds down', detail: [], muted: false }],
    },
    'zabbix-problem': {
      v: 1,
      kind: 'zabbix-problem',
      '@timestamp': at,
      host: { name: host },
      problem: { eventid: '1', name: 'p', severity: 5, status: 'open', started_at: at, acknowledged: false },
      labels: {},
    },
    inventory: { v: 1, kind: 'inventory', '@timestamp': at, source: 'zabbix', host: { name: host, id: '1', ip: [], groups: [], status: 'enabled' } },
    'openstack-health': {
      v: 1,
      kind: 'openstack-health',
      '@timestamp': at,
      cloud: { name: host },
      services: [{ id: '1', binary: 'nova-compute', host, state: 'down', status: 'enabled', forced_down: false }],
      probes: [{ name: 'console', target: 'canary', ok: false, started_at: at, duration_s: 64, error: 'HTTP 500: MessagingTimeout' }],
    },
  };
  return EVENT_KINDS.map((k) => events[k]);
}

/** What the rule's own tests feed, for host `host`: log lines through the pipeline's assembly and parse, then the
 * metric samples, Ceph health events and Zabbix problems, each renamed to the host (and its problems renumbered). */
function replayRuleTests(engine: DetectionEngine, rule: Rule, host: string): Alert[] {
  const path = join(DEFAULT_RULES_DIR, `${rule.id}.test.yaml`);
  if (!existsSync(path)) return [];
  type T = {
    logs?: { file: string; lines: string }[];
    metrics?: { at: string; name: string; value: number; labels?: Record<string, string> }[];
    ceph_health?: { at: string; status: 'HEALTH_OK'; checks?: never[] }[];
    zabbix_problems?: Record<string, unknown>[];
    openstack_health?: { at: string; services?: Record<string, unknown>[]; hypervisors?: Record<string, unknown>[]; probes?: Record<string, unknown>[] }[];
  };
  const out: Alert[] = [];
  for (const t of (readYamlFile(path) as { tests: T[] }).tests) {
    for (const l of t.logs ?? []) out.push(...alertsFor(engine, host, l.file, l.lines));
    for (const m of t.metrics ?? [])
      out.push(
        ...engine.on({ kind: 'metric', sample: { v: 1, '@timestamp': m.at, source: 'test', host: { name: host }, metric: { name: m.name, value: m.value }, labels: m.labels ?? {} } }),
      );
    for (const h of t.ceph_health ?? [])
      out.push(
        ...engine.on({
          v: 1,
          kind: 'ceph-health',
          '@timestamp': h.at,
          cluster: { name: host },
          status: h.status,
          checks: (h.checks ?? []).map((c: object) => ({ detail: [], muted: false, ...c })) as never,
        }),
      );
    for (const z of t.zabbix_problems ?? []) {
      const { at, host: _, ...problem } = z as { at: string; host: string; eventid: string };
      out.push(
        ...engine.on({
          v: 1,
          kind: 'zabbix-problem',
          '@timestamp': at,
          host: { name: host },
          problem: { acknowledged: false, ...problem, eventid: `${host}-${problem.eventid}` } as never,
          labels: {},
        }),
      );
    }
    // Each cloud renamed to the host, and the hosts of its services prefixed with it: groups per host.
    for (const o of t.openstack_health ?? [])
      out.push(
        ...engine.on({
          v: 1,
          kind: 'openstack-health',
          '@timestamp': o.at,
          cloud: { name: host },
          ...(o.services ? { services: o.services.map((s) => ({ ...s, host: `${host}-${String(s.host)}` })) as never } : {}),
          ...(o.hypervisors ? { hypervisors: o.hypervisors as never } : {}),
          probes: (o.probes ?? []) as never,
        }),
      );
  }
  return out;
}

/** The largest `evidence_max` of the params (nested ones too), else the default. */
function evidenceMax(params: unknown): number {
  let max = 0;
  const walk = (v: unknown) => {
    if (v === null || typeof v !== 'object') return;
    for (const [k, x] of Object.entries(v)) k === 'evidence_max' && typeof x === 'number' ? (max = Math.max(max, x)) : walk(x);
  };
  walk(params);
  return max || DEFAULT_EVIDENCE_MAX;
}

describe.each(Object.values(DETECTORS).map((d) => [d.name, d] as const))('detector %s', (name, def) => {
  it('is registered under its name, and has a rule in rules/ or a params example', () => {
    expect(DETECTORS[name]).toBe(def);
    expect(ruleOf(def)).toBeDefined();
  });

  it('refuses bad params with a ConfigError naming the rule file and the field', () => {
    const rule = ruleOf(def)!;
    const shape = (def.params as unknown as { shape?: Record<string, unknown> }).shape;
    expect(shape, 'params is an object schema').toBeDefined();
    for (const field of Object.keys(shape!)) {
      const bad = { ...rule, params: { ...rule.params, [field]: { 'not-a-valid-value': true } } };
      expect(() => createDetector(bad)).toThrow(ConfigError);
      expect(() => createDetector(bad)).toThrow(new RegExp(`^${(rule.file ?? rule.id).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: params\\.${field}\\b`));
    }
  });

  it('accepts at least one event kind, is handed only those, and throws on none', () => {
    const d = createDetector(ruleOf(def)!);
    expect(d.accepts.kinds.length).toBeGreaterThan(0);
    const seen = new Set<EventKind>();
    const inner = d.on.bind(d);
    d.on = (e) => (seen.add(e.kind), inner(e));
    const engine = DetectionEngine.of({ [name]: d });
    for (const e of oneOfEach(d)) expect(() => engine.on(e)).not.toThrow();
    expect([...seen].filter((k) => !d.accepts.kinds.includes(k))).toEqual([]);
    // Shaped to its loggers, literals and metrics, one event of each accepted kind reaches it.
    expect([...seen].sort()).toEqual([...new Set(d.accepts.kinds)].sort());
  });

  it("keeps its state bounded, and its alerts' evidence capped, however many groups the events make", () => {
    const rule = ruleOf(def, { max_entries: MAX_ENTRIES, idle_s: 86_400 })!;
    const d = createDetector(rule);
    const engine = DetectionEngine.of({ [name]: d });
    const alerts: Alert[] = [];
    // One group many times over (evidence grows), then many groups (state grows).
    for (let i = 0; i < 30; i++) alerts.push(...replayRuleTests(engine, rule, 'same-host'));
    for (let i = 0; i < 200; i++) {
      alerts.push(...replayRuleTests(engine, rule, `host-${i}`));
      for (const e of oneOfEach(d, `host-${i}`)) alerts.push(...engine.on(e));
    }
    // Each kind of state a detector keeps (groups, connections, windows' peers…) is capped by max_entries.
    expect(d.state?.() ?? 0).toBeLessThanOrEqual(4 * MAX_ENTRIES);
    const cap = evidenceMax(rule.params);
    expect(alerts.filter((a) => a.evidence.event_ids.length > cap).map((a) => `${a.alert.status} ${JSON.stringify(a.alert.group)}: ${a.evidence.event_ids.length}`)).toEqual([]);
  });
});
