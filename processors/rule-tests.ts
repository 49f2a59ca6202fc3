// Rule tests, like `promtool test rules`: next to each rule, `rules/<id>.test.yaml` gives log lines (metric
// samples, Ceph health events, Zabbix problems) and the alert transitions they must cause. Run by `stackwatch rules
// test` and by the test suite. What a test gives goes the pipeline's way: log lines through the collector's
// assembly, every event through the processor's decode table (processors/decode.ts), then the engine.
import { join } from 'node:path';
import { z } from 'zod';
import { EventAssembler } from '../collectors/logs/assemble.ts';
import { toRawEvent } from '../collectors/openstack-logs.ts';
import { ConfigError, timeZone } from '../core/config.ts';
import { CephHealthEvent, OpenstackHealthEvent, ZabbixProblemEvent, type Alert } from '../core/events.ts';
import { ruleIssue } from '../detectors/rules.ts';
import { DetectionEngine } from '../detectors/engine.ts';
import { DEFAULT_RULES_DIR, loadRules, readYamlFile, ruleDirFiles } from '../detectors/rules.ts';
import type { TopicKind } from '../core/kafka.ts';
import { decodeMessage } from './decode.ts';

const Expected = z.strictObject({
  status: z.enum(['firing', 'resolved']),
  severity: z.string().optional(),
  host: z.string().optional(),
  service: z.string().optional(),
  group: z.record(z.string(), z.string()).optional(),
  started_at: z.string().optional(),
  ended_at: z.string().optional(),
  duration_s: z.number().optional(),
  message_contains: z.string().optional(),
});

const RuleTestFile = z.strictObject({
  rule: z.string(),
  tests: z
    .array(
      z.strictObject({
        name: z.string(),
        host: z.string().default('test-host'),
        timezone: timeZone.default('UTC'),
        logs: z.array(z.strictObject({ file: z.string(), lines: z.string() })).default([]),
        /** Metric samples, after the logs, in order: `{ at, host, name, value, labels }`. */
        metrics: z.array(z.strictObject({ at: z.string(), host: z.string(), name: z.string(), value: z.number(), labels: z.record(z.string(), z.string()).default({}) })).default([]),
        /** Ceph health events, after the metrics, in order: `{ at, cluster, status, checks }`. */
        ceph_health: z
          .array(
            z.strictObject({
              at: z.string(),
              cluster: z.string().default('ceph'),
              status: CephHealthEvent.shape.status,
              checks: CephHealthEvent.shape.checks.default([]),
            }),
          )
          .default([]),
        /** Zabbix problems, after the Ceph health events, in order. */
        zabbix_problems: z.array(ZabbixProblemEvent.shape.problem.extend({ at: z.string(), host: z.string() }).strict()).default([]),
        /** OpenStack API health events, after the Zabbix problems, in order: `{ at, cloud, services, hypervisors,
         * probes }` (a list left out was not read). */
        openstack_health: z
          .array(
            z.strictObject({
              at: z.string(),
              cloud: z.string().default('openstack'),
              services: OpenstackHealthEvent.shape.services,
              hypervisors: OpenstackHealthEvent.shape.hypervisors,
              probes: OpenstackHealthEvent.shape.probes,
            }),
          )
          .default([]),
        alerts: z.array(Expected),
      }),
    )
    .min(1),
});

export interface RuleTestResult {
  file: string;
  rule: string;
  name: string;
  problems: string[];
  /** The group keys of the alerts the test raised (what the alerts index maps under alert.group). */
  groupKeys: string[];
}

/** The alert transitions of one message of a topic of `kind`, decoded as the processor decodes it. */
function detect(engine: DetectionEngine, kind: TopicKind, value: unknown, timezone = 'UTC', offset = 0): Alert[] {
  const { event } = decodeMessage(kind, value, { timezone, source: { topic: `test:${kind}`, partition: 0, offset: String(offset) } });
  return event ? engine.on(event) : [];
}

/** Turns log lines into alert transitions with the pipeline's own assembly, decoding (parse) and engine. */
export function alertsFor(engine: DetectionEngine, host: string, file: string, lines: string, timezone = 'UTC'): Alert[] {
  const alerts: Alert[] = [];
  const assembler = new EventAssembler({ maxEventBytes: 1 << 20 }, (e) => {
    alerts.push(...detect(engine, 'logs', toRawEvent(e, host, file, `test:${file}`, '2000-01-01T00:00:00.000Z'), timezone, e.offset));
  });
  let offset = 0;
  for (const line of lines.split('\n')) {
    if (line !== '') assembler.push(offset, line);
    offset += Buffer.byteLength(line) + 1;
  }
  assembler.flush();
  return alerts;
}

function compare(actual: Alert[], expected: z.infer<typeof Expected>[]): string[] {
  const problems: string[] = [];
  const show = (a: Alert) => `${a.alert.status} ${JSON.stringify(a.alert.group)} at ${a['@timestamp']}`;
  if (actual.length !== expected.length) {
    problems.push(`expected ${expected.length} alert transition(s), got ${actual.length}: ${actual.map(show).join('; ') || 'none'}`);
  }
  expected.forEach((e, i) => {
    const a = actual[i];
    if (!a) return;
    const check = (what: string, got: unknown, want: unknown) => {
      if (want !== undefined && JSON.stringify(got) !== JSON.stringify(want)) problems.push(`alert ${i + 1}: ${what} is ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`);
    };
    check('status', a.alert.status, e.status);
    check('severity', a.alert.severity, e.severity);
    check('host', a.host.name, e.host);
    check('service', a.service.name, e.service);
    check('group', a.alert.group, e.group);
    check('started_at', a.alert.started_at, e.started_at);
    check('ended_at', a.alert.ended_at, e.ended_at);
    check('duration_s', a.alert.duration_s, e.duration_s);
    if (e.message_contains !== undefined && !a.message.includes(e.message_contains)) {
      problems.push(`alert ${i + 1}: message ${JSON.stringify(a.message)} does not contain ${JSON.stringify(e.message_contains)}`);
    }
  });
  return problems;
}

export async function runRuleTests(dir: string = DEFAULT_RULES_DIR): Promise<RuleTestResult[]> {
  const rules = loadRules(dir);
  const results: RuleTestResult[] = [];
  for (const f of ruleDirFiles(dir).filter((n) => n.endsWith('.test.yaml'))) {
    const path = join(dir, f);
    const parsed = RuleTestFile.safeParse(readYamlFile(path));
    if (!parsed.success) throw new ConfigError(`${path}: ${ruleIssue(parsed.error, '(top level)')}`);
    const rule = rules.find((r) => r.id === parsed.data.rule);
    if (!rule) throw new ConfigError(`${path}: rule: no rule with id ${parsed.data.rule} in ${dir}`);
    for (const t of parsed.data.tests) {
      const engine = await DetectionEngine.create([rule]);
      const actual = t.logs.flatMap((l) => alertsFor(engine, t.host, l.file, l.lines, t.timezone));
      for (const m of t.metrics) {
        actual.push(...detect(engine, 'metrics', { v: 1, '@timestamp': m.at, source: 'test', host: { name: m.host }, metric: { name: m.name, value: m.value }, labels: m.labels }));
      }
      for (const h of t.ceph_health) {
        actual.push(...detect(engine, 'health', { v: 1, kind: 'ceph-health', '@timestamp': h.at, cluster: { name: h.cluster }, status: h.status, checks: h.checks }));
      }
      for (const z of t.zabbix_problems) {
        const { at, host, ...problem } = z;
        actual.push(...detect(engine, 'health', { v: 1, kind: 'zabbix-problem', '@timestamp': at, host: { name: host }, problem, labels: {} }));
      }
      for (const o of t.openstack_health) {
        const { at, cloud, ...rest } = o;
        actual.push(...detect(engine, 'health', { v: 1, kind: 'openstack-health', '@timestamp': at, cloud: { name: cloud }, ...rest }));
      }
      if (t.logs.length + t.metrics.length + t.ceph_health.length + t.zabbix_problems.length + t.openstack_health.length === 0)
        throw new ConfigError(`${path}: ${t.name}: no logs, metrics, ceph_health, zabbix_problems or openstack_health to test with`);
      results.push({ file: path, rule: rule.id, name: t.name, problems: compare(actual, t.alerts), groupKeys: [...new Set(actual.flatMap((a) => Object.keys(a.alert.group)))] });
    }
  }
  return results;
}
