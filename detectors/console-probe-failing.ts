// console-probe-failing: the console URL of the canary server cannot be had — the seed's broken VNC console, seen
// as a user sees it (nova-api answers HTTP 500 MessagingTimeout after waiting for a reply that never comes). Read
// from the OpenStack API collector's probe results (`console` probes): `consecutive` failed probes in a row, or
// failing for at least `for_s` since the first failure, fire one alert per cloud and canary; the page names the
// last error and how long the probe took. The first successful probe resolves it.
import { z } from 'zod';
import { stableId, type Alert, type OpenstackHealthEvent } from '../core/events.ts';
import { alertTransition, defineDetector } from './detector.ts';
import { addEvidence, closingEvidence, FiringGroups, restoreState } from './kit.ts';
import { keyedData } from './state.ts';

/** The version of the state's shape (snapshot, restore). */
const STATE_VERSION = 1;

const Params = z.strictObject({
  /** The probe names read (the collector's console probe is `console`). */
  probes: z.array(z.string().min(1)).min(1).default(['console']),
  /** Failed probes in a row that fire. */
  consecutive: z.number().int().positive().default(2),
  /** Or: failing for this long since the first failure of the run (seconds; 0: only `consecutive`). */
  for_s: z.number().nonnegative().default(0),
  evidence_max: z.number().int().positive().default(20),
});

/** A probe failing, as a checkpoint holds it. */
const Failing = z.strictObject({
  cloud: z.string(),
  probe: z.string(),
  target: z.string(),
  /** The first failure of the run (the probe's start time). */
  since: z.string(),
  failures: z.number().int().positive(),
  lastError: z.string(),
  lastDuration: z.number(),
  lastAt: z.string(),
  firing: z.strictObject({ startedAt: z.string() }).optional(),
  evidence: z.array(z.string()),
});
type Failing = z.output<typeof Failing>;

const State = z.strictObject({ failing: keyedData(Failing) });

export const detector = defineDetector({
  name: 'console-probe-failing',
  params: Params,
  create(p, { rule }) {
    const failing = new FiringGroups<Failing>(rule, (f) => f.firing !== undefined);
    const names = new Set(p.probes);

    function transition(status: 'firing' | 'resolved', f: Failing, at: string, message: string, evidence: string[]): Alert {
      return alertTransition(rule, {
        status,
        group: { cloud: f.cloud, probe: f.probe, target: f.target },
        at,
        startedAt: f.firing!.startedAt,
        host: f.cloud,
        service: 'nova-api',
        message,
        evidence,
      });
    }

    const describe = (f: Failing) =>
      `${f.probe} probe of ${f.target} (cloud ${f.cloud}) failing: ${f.failures} failed in a row since ${f.since}; last at ${f.lastAt}: ${f.lastError} after ${f.lastDuration.toFixed(1)} s`;

    function on(e: OpenstackHealthEvent): Alert[] {
      const out: Alert[] = [];
      const cloud = e.cloud.name;
      for (const r of e.probes) {
        if (!names.has(r.name)) continue;
        const target = r.target ?? '';
        const key = `${cloud}\0${r.name}\0${target}`;
        // The probe's own start: a 64 s failure reported at the next poll still happened when it was asked.
        const at = r.started_at;
        const evidence = stableId(cloud, r.name, target, at);
        const f = failing.get(key);
        if (r.ok) {
          if (!f) continue;
          failing.delete(key);
          if (f.firing) {
            out.push(
              transition(
                'resolved',
                f,
                at,
                `resolved: ${r.name} probe of ${target} (cloud ${cloud}) answered in ${r.duration_s.toFixed(1)} s after ${f.failures} failure(s)`,
                closingEvidence(f.evidence, evidence, p.evidence_max),
              ),
            );
          }
          continue;
        }
        const g: Failing = f ?? { cloud, probe: r.name, target, since: at, failures: 0, lastError: '', lastDuration: 0, lastAt: at, evidence: [] };
        g.failures++;
        g.lastError = r.error ?? 'failed';
        g.lastDuration = r.duration_s;
        g.lastAt = at;
        addEvidence(g.evidence, evidence, p.evidence_max);
        const long = p.for_s > 0 && Date.parse(at) + r.duration_s * 1000 - Date.parse(g.since) >= p.for_s * 1000;
        const fires = !g.firing && (g.failures >= p.consecutive || long);
        if (fires) g.firing = { startedAt: at };
        out.push(
          ...failing.keep(key, g, Date.parse(at), (_k, v) => transition('resolved', v, at, `resolved: ${v.probe} probe of ${v.target}: no longer tracked (state.max_entries)`, v.evidence)),
        );
        if (fires) out.push(transition('firing', g, at, describe(g), g.evidence));
      }
      return out;
    }

    return {
      accepts: { kinds: ['openstack-health'] },
      on: (e) => (e.kind === 'openstack-health' ? on(e) : []),
      state: () => failing.size,
      snapshot: () => ({
        v: STATE_VERSION,
        data: {
          failing: failing.snapshot((f) => ({
            cloud: f.cloud,
            probe: f.probe,
            target: f.target,
            since: f.since,
            failures: f.failures,
            lastError: f.lastError,
            lastDuration: f.lastDuration,
            lastAt: f.lastAt,
            firing: f.firing && { startedAt: f.firing.startedAt },
            evidence: [...f.evidence],
          })),
        } satisfies z.input<typeof State>,
      }),
      // Probes past the rule's cap (a snapshot of a larger one) are not resolved: restore has no transitions to give.
      restore: (state) => restoreState(rule, state, STATE_VERSION, State, (data) => void failing.load(data.failing)),
    };
  },
});
