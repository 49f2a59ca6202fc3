// What detectors share: the pieces of the firing / evidence / quiet-resolution state machine each of them runs
// for its own groups. A group's evidence grows to a cap while it fires, its closing line is kept over the oldest;
// a threshold counts evidence in a sliding window of event time; a group quiet long enough resolves; state past
// the rule's bounds (detectors/state.ts) resolves the alerts it held, with the reason, rather than forgetting them.
import type { z } from 'zod';
import type { Alert, LogDocument } from '../core/events.ts';
import { firstIssue } from '../core/schema.ts';
import type { DetectorState } from './detector.ts';
import type { Rule } from './rules.ts';
import { KeyedState, stateLimits, type StateLimits } from './state.ts';

/** The evidence times (ms) still inside a sliding window of `windowS` seconds ending at `now`, with `now` added:
 * its length is the count a threshold compares against. */
export function slide(times: number[], now: number, windowS: number): number[] {
  return [...times.filter((t) => now - t < windowS * 1000), now];
}

/** Evidence of a firing alert: `id` added while fewer than `max` are kept (the first ones tell how it began). */
export function addEvidence(evidence: string[], id: string, max: number): void {
  if (evidence.length < max) evidence.push(id);
}

/** Evidence of an alert that ends: the closing `id` added, the oldest dropped past `max`. */
export function closingEvidence(evidence: string[], id: string, max: number): string[] {
  return [...evidence, id].slice(-max);
}

/** Whether a group whose last evidence was at `last` (ms) has been quiet for `seconds` at `now`. */
export function quietFor(last: number, now: number, seconds: number): boolean {
  return now - last >= seconds * 1000;
}

/** The value of a dotted field path of an event (`host.name`), as text. */
export function fieldValue(doc: LogDocument, path: string): string | undefined {
  let v: unknown = doc;
  for (const key of path.split('.')) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<string, unknown>)[key];
  }
  return v === undefined || v === null ? undefined : String(v);
}

/** A rule's match_by group of a log event: its fields by name ('' for a field the event lacks). */
export function groupOf(rule: Rule, doc: LogDocument): Record<string, string> {
  return Object.fromEntries(rule.match_by.map((k) => [k, fieldValue(doc, k) ?? '']));
}

/** Why an alert resolved when its entry was dropped to stay within the rule's bounds (` (no longer tracked: …)`). */
export function untracked(limits: StateLimits, what: string): string {
  return ` (no longer tracked: the rule holds at most ${limits.max_entries} ${what}, state.max_entries, and this was the oldest)`;
}

/**
 * Groups of one rule, each possibly firing, bounded by the rule's `state`. `keep` stores a group and returns the
 * transitions, made by `resolve`, of the firing groups it had to drop to stay within the bounds (an alert that
 * stays firing while nobody tracks it would never resolve).
 */
export class FiringGroups<V> extends KeyedState<V> {
  constructor(
    rule: Rule,
    private readonly firing: (v: V) => boolean,
  ) {
    super(rule.id, stateLimits(rule), firing);
  }

  keep(key: string, value: V, now: number, resolve: (key: string, value: V) => Alert | Alert[]): Alert[] {
    const out: Alert[] = [];
    for (const e of this.set(key, value, now)) if (this.firing(e.value)) out.push(...[resolve(e.key, e.value)].flat());
    return out;
  }
}

/**
 * Takes back a detector's state (Detector.restore): checks its version, parses its data with `schema` (which makes
 * the detector's own types of it: Sets, Maps, times) and hands the result to `install`, which may still refuse it
 * (with the reason of a nested detector's state that does not parse) before it changes anything. Returns undefined
 * when the state was taken, else why not, naming the rule and the field (`amqp-connection-lost:
 * state.data.outages.values[0].lastLoss: …`; `where` is the state's own place, for a detector's state nested in
 * another's); nothing is installed then, so the detector stays as it was made: empty.
 */
export function restoreState<S extends z.ZodType>(
  rule: Rule,
  state: DetectorState,
  version: number,
  schema: S,
  install: (data: z.output<S>) => string | undefined,
  where = 'state',
): string | undefined {
  if (state === null || typeof state !== 'object') return `${rule.id}: ${where}: expected an object { v, data }, got ${state === null ? 'null' : typeof state}`;
  if (state.v !== version) return `${rule.id}: ${where}.v: version ${JSON.stringify(state.v)} is not this detector's (${version})`;
  const parsed = schema.safeParse(state.data);
  if (!parsed.success) {
    const { field, message } = firstIssue(parsed.error, '');
    return `${rule.id}: ${where}.data${field ? `.${field}` : ''}: ${message}`;
  }
  return install(parsed.data);
}

/** A record without its undefined values (a regex's groups that took part in no match): what JSON keeps of it. */
export function defined(record: Record<string, string | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(record)) if (v !== undefined) out[k] = v;
  return out;
}
