// new-error-pattern: the failures no rule names. Every log event carries its message's template
// (log.template, processors/templates/); an error — an ERROR or CRITICAL line, or any event with a traceback —
// whose template its service has never shown is news. Learnt per service in event time: during a service's first
// `learn_s` (from its first event) its errors are only remembered; after, an unknown error template fires, one
// alert per service and template, and resolves once the template has not been seen for `quiet_resolve_s` while
// the service keeps logging. Warning severity: a new pattern is worth a look, not a page.
//
// With `alert_on: spike` (rule error-rate-spike) the same memory watches known error templates instead: one that
// shows `factor` times its usual count in a window of `window_s` (and at least `min_count`) fires; its usual count
// is a moving average of its past windows (over about `baseline_s`), for a template known that long. It resolves
// with the first window back under the threshold, or after `quiet_resolve_s` without the template.
//
// A document without log.template (`stackwatch detect`, the rules' own tests decode without the processor's
// miner) is mined here, by a miner bounded like the rest of the state. State: the services (their first event),
// and the templates of each (bounded by the rule's `state`; a service or template dropped is learnt again: a
// dropped service learns anew, quietly; a dropped template that comes back is new once more).
import { z } from 'zod';
import type { Alert, LogDocument, LogEvent } from '../core/events.ts';
import { Miner, MinerState, templateGroup } from '../processors/templates/miner.ts';
import { alertTransition, defineDetector, type DetectorState } from './detector.ts';
import { addEvidence, FiringGroups, quietFor, restoreState, untracked } from './kit.ts';
import { KeyedState, keyedData, Time, time } from './state.ts';

/** The version of the state's shape (snapshot, restore). */
const STATE_VERSION = 1;

const Params = z.strictObject({
  /** What fires: `new`, a template its service never showed; `spike`, a known one far above its usual rate. */
  alert_on: z.enum(['new', 'spike']).default('new'),
  /** Levels whose lines are errors; an event with a traceback (error.stack_trace) is one at any level. */
  levels: z.array(z.string().min(1)).min(1).default(['ERROR', 'CRITICAL']),
  /** A service's first seconds (event time, from its first event) are learnt, never alerted on. */
  learn_s: z.number().positive().default(86_400),
  /** A firing template resolves after this long without it while its service keeps logging. */
  quiet_resolve_s: z.number().positive().default(3_600),
  spike: z
    .strictObject({
      window_s: z.number().positive().default(300),
      factor: z.number().min(1).default(10),
      min_count: z.number().int().positive().default(20),
      /** The usual rate is an average over about this long; a template known for less is not judged. */
      baseline_s: z.number().positive().default(86_400),
    })
    .default({ window_s: 300, factor: 10, min_count: 20, baseline_s: 86_400 }),
  evidence_max: z.number().int().positive().default(20),
});

/** A template of a service, as a checkpoint holds it (Time: event times in ms). */
const Seen = z.strictObject({
  service: z.string(),
  id: z.string(),
  text: z.string(),
  /** Event times (ms): first and last occurrence. */
  first: Time,
  last: Time,
  /** The current window: its start (ms) and count; the usual count per window (a moving average). */
  windowStart: Time,
  count: z.number().int().nonnegative(),
  usual: z.number(),
  firing: z.strictObject({ startedAt: z.string(), host: z.string(), evidence: z.array(z.string()), why: z.string() }).optional(),
});
type Seen = z.output<typeof Seen>;

const State = z.strictObject({
  templates: keyedData(Seen),
  /** A service's first event (ms). */
  services: keyedData(Time),
  /** Firing templates by service, in the order they fired (the order their quiet resolutions come in). */
  firingBy: z.array(z.tuple([z.string(), z.array(z.string())])).transform((list) => new Map(list.map(([service, keys]) => [service, new Set(keys)]))),
  /** The miner of the documents that come without a template (its own export, processors/templates/miner.ts). */
  miner: MinerState,
});

export const detector = defineDetector({
  name: 'new-error-pattern',
  params: Params,
  create(p, { rule }) {
    const templates = new FiringGroups<Seen>(rule, (s) => s.firing !== undefined);
    const limits = templates.limits;
    /** A service's first event (ms). */
    const services = new KeyedState<number>(rule.id, limits);
    /** Firing templates by service: a line of the service looks at its own for quiet resolution. */
    let firingBy = new Map<string, Set<string>>();
    let miner = new Miner({ maxTemplates: limits.max_entries });
    const levels = new Set(p.levels);
    const windowMs = p.spike.window_s * 1000;
    /** Weight of a window in the moving average: windows in baseline_s. */
    const alpha = Math.min(1, p.spike.window_s / p.spike.baseline_s);

    const transition = (s: Seen, status: 'firing' | 'resolved', at: string, message: string): Alert =>
      alertTransition(rule, {
        status,
        group: { 'service.name': s.service, 'log.template.id': s.id },
        at,
        startedAt: s.firing!.startedAt,
        host: s.firing!.host,
        service: s.service,
        message: (status === 'resolved' ? 'resolved: ' : '') + message,
        evidence: s.firing!.evidence,
        labels: { 'log.template.text': s.text },
      });

    /** Resolves a firing template; `why` ends the message. */
    function resolve(key: string, s: Seen, at: string, why: string): Alert {
      const a = transition(s, 'resolved', at, `${s.service}: ${s.firing!.why} ${JSON.stringify(s.text)}${why}`);
      s.firing = undefined;
      firingBy.get(s.service)?.delete(key);
      if (firingBy.get(s.service)?.size === 0) firingBy.delete(s.service);
      return a;
    }

    function keep(key: string, s: Seen, now: number, at: string): Alert[] {
      if (s.firing) (firingBy.get(s.service) ?? firingBy.set(s.service, new Set()).get(s.service)!).add(key);
      return templates.keep(key, s, now, (k, v) => resolve(k, v, at, untracked(limits, 'templates')));
    }

    /** Quiet resolution: the service's firing templates not seen for quiet_resolve_s. */
    function quiet(service: string, now: number, at: string): Alert[] {
      const keys = firingBy.get(service);
      if (!keys) return [];
      const out: Alert[] = [];
      for (const key of [...keys]) {
        const s = templates.get(key);
        if (!s?.firing) keys.delete(key);
        else if (quietFor(s.last, now, p.quiet_resolve_s)) out.push(resolve(key, s, at, `: not seen for ${p.quiet_resolve_s} s`));
      }
      if (keys.size === 0) firingBy.delete(service);
      return out;
    }

    /** Moves a template's window on to the one holding `now`: the windows passed count into the usual rate. Returns
     * the count of the last window closed (0 when windows without the template came after the one it had). */
    function roll(s: Seen, now: number): number | undefined {
      if (now < s.windowStart + windowMs) return undefined;
      const closed = s.count;
      const passed = Math.floor((now - s.windowStart) / windowMs);
      s.usual = s.usual * (1 - alpha) + closed * alpha;
      if (passed > 1) s.usual *= (1 - alpha) ** Math.min(passed - 1, 1e6);
      s.windowStart += passed * windowMs;
      s.count = 0;
      return passed > 1 ? 0 : closed;
    }

    const threshold = (s: Seen) => Math.max(p.spike.min_count, p.spike.factor * s.usual);

    function on({ doc }: LogEvent): Alert[] {
      const now = Date.parse(doc['@timestamp']);
      if (!Number.isFinite(now)) return [];
      const service = doc.service.name;
      const at = doc['@timestamp'];
      const first = Math.min(services.get(service) ?? now, now);
      services.set(service, first, now);
      const out = quiet(service, now, at);
      if (!(doc.log.level !== undefined && levels.has(doc.log.level)) && !doc.error?.stack_trace) return out;
      const t = templateOf(doc);
      const key = `${service}\u0000${t.id}`;
      const known = templates.get(key);
      const learning = now - first < p.learn_s * 1000;
      const s: Seen = known ?? { service, id: t.id, text: t.text, first: now, last: now, windowStart: now, count: 0, usual: 0 };
      s.last = Math.max(s.last, now);
      if (p.alert_on === 'new') {
        if (s.firing) addEvidence(s.firing.evidence, doc.event.id, p.evidence_max);
        else if (!known && !learning) {
          s.firing = { startedAt: at, host: doc.host.name, evidence: [doc.event.id], why: 'new error pattern' };
          out.push(transition(s, 'firing', at, `${service}: new error pattern, never shown before (first on ${doc.host.name}): ${JSON.stringify(t.text)}`));
        }
      } else {
        const closed = roll(s, now);
        if (s.firing && closed !== undefined && closed < threshold(s)) out.push(resolve(key, s, at, `: back to its usual rate (${closed} in the last ${p.spike.window_s} s)`));
        s.count++;
        if (s.firing) addEvidence(s.firing.evidence, doc.event.id, p.evidence_max);
        else if (known && !learning && now - s.first >= p.spike.baseline_s * 1000 && s.count >= threshold(s)) {
          s.firing = { startedAt: at, host: doc.host.name, evidence: [doc.event.id], why: 'error rate spike of' };
          out.push(
            transition(s, 'firing', at, `${service}: error rate spike: ${s.count} in ${p.spike.window_s} s, usually ${s.usual.toFixed(1)} (on ${doc.host.name}): ${JSON.stringify(t.text)}`),
          );
        }
      }
      out.push(...keep(key, s, now, at));
      return out;
    }

    /** The event's template: the processor's, else mined here. */
    function templateOf(doc: LogDocument): { id: string; text: string } {
      return doc.log.template ?? miner.add(doc.message, { group: templateGroup(doc) });
    }

    function snapshot() {
      return {
        v: STATE_VERSION,
        data: {
          templates: templates.snapshot((t) => ({
            service: t.service,
            id: t.id,
            text: t.text,
            first: time(t.first),
            last: time(t.last),
            windowStart: time(t.windowStart),
            count: t.count,
            usual: t.usual,
            firing: t.firing && { startedAt: t.firing.startedAt, host: t.firing.host, evidence: [...t.firing.evidence], why: t.firing.why },
          })),
          services: services.snapshot(time),
          firingBy: [...firingBy].map(([service, keys]): [string, string[]] => [service, [...keys]]),
          miner: miner.export(),
        } satisfies z.input<typeof State>,
      };
    }

    const restore = (state: DetectorState) =>
      restoreState(rule, state, STATE_VERSION, State, (data) => {
        // Templates past the rule's cap (a snapshot of a larger one) are not resolved: restore has no transitions to
        // give. They are counted as evictions, and forgotten here too.
        const dropped = new Set(templates.load(data.templates).map((e) => e.key));
        services.load(data.services);
        for (const keys of data.firingBy.values()) for (const k of dropped) keys.delete(k);
        firingBy = new Map([...data.firingBy].filter(([, keys]) => keys.size > 0));
        miner = new Miner({ maxTemplates: limits.max_entries });
        miner.import(data.miner);
        return undefined;
      });

    return { accepts: { kinds: ['log'] }, on, state: () => templates.size + services.size + miner.size, snapshot, restore };
  },
});
