// The one way a zod failure becomes words: the first issue, as `field: message`. Config files, rule files,
// rule tests, Kafka messages, Zabbix and Ceph answers and state files all report their problems this way, so an
// error always names the field (`collectors.zabbix.url: expected an http(s) URL`).
import type { z } from 'zod';

/** A path as a reader writes it: `webhooks[0].name`, `params.fire`; `fallback` for the top level. */
export function fieldPath(path: readonly PropertyKey[], fallback = '(top level)', dotted = false): string {
  const text = dotted ? path.map(String).join('.') : path.reduce<string>((acc, key) => (typeof key === 'number' ? `${acc}[${key}]` : acc ? `${acc}.${String(key)}` : String(key)), '');
  return text || fallback;
}

/** The first issue of a failed parse: where (`field`) and what (`message`). Unknown keys are named as fields;
 * a missing value says `required`. */
export function firstIssue(error: z.ZodError, fallback = '(top level)'): { field: string; message: string } {
  const issue = error.issues[0];
  if (issue.code === 'unrecognized_keys') {
    const keys = (issue as { keys: string[] }).keys;
    const base = fieldPath(issue.path, '');
    return { field: keys.map((k) => (base ? `${base}.${k}` : k)).join(', '), message: 'unknown field' };
  }
  let message = issue.message;
  if (issue.code === 'invalid_type' && message.startsWith('Invalid input: expected') && message.endsWith('received undefined')) message = 'required';
  return { field: fieldPath(issue.path, fallback), message };
}

/** `field: message` of the first issue as zod words it, the field dotted (`tests.0.alerts`): how the readers of
 * data (Kafka messages, Zabbix and Ceph answers, rule files) report what they cannot use. */
export function dottedIssue(error: z.ZodError, fallback = '(top level)'): string {
  const issue = error.issues[0];
  return `${fieldPath(issue.path, fallback, true)}: ${issue.message}`;
}

/** `field: message` of the first issue. */
export function issueText(error: z.ZodError, fallback = '(top level)'): string {
  const { field, message } = firstIssue(error, fallback);
  return `${field}: ${message}`;
}

/** A state snapshot `{ v, data }` of `what` (a correlator, a miner) at `version`, its data parsed by `schema`: the
 * data, or why not, naming the field (`v: …`, `data.incidents.2.firing: …`). Never throws on what `state` holds. */
export function parseSnapshot<S extends z.ZodType>(state: unknown, version: number, schema: S, what: string): { data: z.output<S> } | { reason: string } {
  if (state === null || typeof state !== 'object' || Array.isArray(state))
    return { reason: `expected an object { v, data }, got ${Array.isArray(state) ? 'an array' : state === null ? 'null' : typeof state}` };
  const { v, data } = state as { v?: unknown; data?: unknown };
  if (v !== version) return { reason: `v: version ${JSON.stringify(v)} is not this ${what}'s (${version})` };
  const parsed = schema.safeParse(data);
  if (!parsed.success) {
    const { field, message } = firstIssue(parsed.error, '');
    return { reason: `data${field ? `.${field}` : ''}: ${message}` };
  }
  return { data: parsed.data };
}
