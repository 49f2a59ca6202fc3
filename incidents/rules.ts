// Incident rules: which alerts share a cause, as data (rules/incidents/<id>.yaml). An alert joins the incident of
// the first rule whose `match` it satisfies; alerts of one rule with the same `key` are one incident while it is
// open, and `join` lets an alert join an open incident of another rule it shares a value with (the reply-timeout
// storm joins the broker outage of the same host). An alert no rule matches is an incident of its own. Field
// names, everywhere: rule.id, severity, host.name, service.name, labels.<name> (context a detector adds, like the
// broker) and any key of the alert's group (kind, compute_host, code).
import { join } from 'node:path';
import { z } from 'zod';
import { ConfigError } from '../core/config.ts';
import type { Alert } from '../core/events.ts';
import { DEFAULT_RULES_DIR, readYamlFile, ruleDirFiles, ruleIssue } from '../detectors/rules.ts';

export const DEFAULT_INCIDENT_RULES_DIR = join(DEFAULT_RULES_DIR, 'incidents');

const field = z.string().regex(/^[a-z_][a-z0-9_.-]*$/, { error: 'expected a field name like host.name, kind or labels.broker' });
/** `a|b`: the first of the fields the alert has. */
const keyField = z.string().regex(/^[a-z_][a-z0-9_.-]*(?:\|[a-z_][a-z0-9_.-]*)*$/, { error: 'expected field names like labels.broker|host.name' });

export const IncidentRule = z.strictObject({
  id: z.string().regex(/^[a-z0-9][a-z0-9-]*$/, { error: 'expected a lower-case id like amqp-broker-unreachable' }),
  /** What the pager says the incident is. */
  cause: z.string().min(1),
  /** The alerts this rule takes: every field must have the value, one of the values of a list, or (null) be absent. */
  match: z.record(field, z.union([z.string(), z.array(z.string()).min(1), z.null()])).refine((m) => Object.keys(m).length > 0, { error: 'expected at least one field' }),
  /** Alerts with the same values of these fields are one incident. */
  key: z.array(keyField).min(1).default(['host.name']),
  /** An alert joins an open incident of these rules (its own id included, for the same rule across keys) when
   * one of its values of `on` is among the values of `on` of the incident's alerts. Tried before `key`. */
  join: z
    .strictObject({
      incidents: z.array(z.string().min(1)).min(1),
      on: z.array(field).min(1),
    })
    .optional(),
  /** After its last alert ended the incident stays open this long: an alert of its key (or a joining one) that
   * fires meanwhile is the same cause, not a new page. The resolution is sent when it runs out, dated at the end
   * of the last alert. A new alert of the key joins only if an alert of this rule ended at most this long ago, so
   * an incident held open by joined alerts does not swallow a new outage days later. */
  hold_s: z.number().nonnegative().default(0),
  /** Overrides incidents.min_duration_s for this rule: the incident pages once it has been firing this long. */
  min_duration_s: z.number().nonnegative().optional(),
  /** The runbook of the page; default: the first alert's. */
  runbook: z.string().min(1).optional(),
});
export type IncidentRule = z.infer<typeof IncidentRule> & { file?: string };

/** The value of a field of an alert (see the header for the names); undefined when it has none. */
export function alertField(a: Alert, name: string): string | undefined {
  switch (name) {
    case 'rule.id':
      return a.rule.id;
    case 'severity':
      return a.alert.severity;
    case 'host.name':
      return a.host.name;
    case 'service.name':
      return a.service.name;
  }
  if (name.startsWith('labels.')) return a.alert.labels?.[name.slice('labels.'.length)];
  return Object.hasOwn(a.alert.group, name) ? a.alert.group[name] : undefined;
}

export function matches(rule: IncidentRule, a: Alert): boolean {
  return Object.entries(rule.match).every(([name, want]) => {
    const v = alertField(a, name);
    if (want === null) return v === undefined;
    return v !== undefined && (typeof want === 'string' ? v === want : want.includes(v));
  });
}

/** The alert's key under the rule (`a|b`: the first present), or undefined when a key field is missing. */
export function keyOf(rule: IncidentRule, a: Alert): string | undefined {
  const parts: string[] = [];
  for (const k of rule.key) {
    const v = k
      .split('|')
      .map((f) => alertField(a, f))
      .find((x) => x !== undefined);
    if (v === undefined) return undefined;
    parts.push(`${k}=${v}`);
  }
  return parts.join('\u0000');
}

/** The incident rules of a directory, in file order; errors name the file and the field. A directory that does
 * not exist has none (every alert is then an incident of its own). */
export function loadIncidentRules(dir: string = DEFAULT_INCIDENT_RULES_DIR, mustExist = false): IncidentRule[] {
  let names: string[];
  try {
    names = ruleDirFiles(dir);
  } catch (err) {
    if (mustExist) throw err;
    return [];
  }
  const rules: IncidentRule[] = [];
  for (const file of names.filter((f) => /\.ya?ml$/.test(f) && !f.endsWith('.test.yaml'))) {
    const path = join(dir, file);
    const r = IncidentRule.safeParse(readYamlFile(path));
    if (!r.success) throw new ConfigError(`${path}: ${ruleIssue(r.error, '(top level)')}`);
    if (rules.some((x) => x.id === r.data.id)) throw new ConfigError(`${path}: id: ${r.data.id} is already the id of another incident rule`);
    rules.push({ ...r.data, file: path });
  }
  for (const r of rules) {
    for (const other of r.join?.incidents ?? []) {
      if (!rules.some((x) => x.id === other)) throw new ConfigError(`${r.file}: join.incidents: no incident rule named ${other} (have: ${rules.map((x) => x.id).join(', ')})`);
    }
  }
  return rules;
}
