// openstack-service-down: a nova service that should be running is not. Read from the OpenStack API collector's
// health events (GET /os-services): a row of one of the watched binaries whose state is `down` while its status
// is `enabled` for `for_s` (a restart is not an outage) fires, one alert per cloud, binary and host; it resolves when the row is up again, is disabled or
// forced down by an operator (down on purpose), or is deleted. An event without a service list (the list could
// not be read) changes nothing: "could not ask" is not "all clear".
import { z } from 'zod';
import { stableId, type Alert, type OpenstackHealthEvent } from '../core/events.ts';
import { alertTransition, defineDetector } from './detector.ts';
import { closingEvidence, FiringGroups, restoreState, untracked } from './kit.ts';
import { keyedData } from './state.ts';

/** The version of the state's shape (snapshot, restore). */
const STATE_VERSION = 1;

const Params = z.strictObject({
  /** The binaries watched (`nova-compute`, …); others are ignored. */
  binaries: z.array(z.string().min(1)).min(1).default(['nova-compute', 'nova-conductor', 'nova-scheduler']),
  /** Polls in a row that must show the row down before it fires (1: the first). */
  polls: z.number().int().positive().default(1),
  /** And how long (s) it must have been down, from the first poll that showed it: a service restarted or
   * upgraded shows down for as long as it takes (beyond nova's service_down_time), which pages nobody. */
  for_s: z.number().nonnegative().default(60),
  evidence_max: z.number().int().positive().default(20),
});

/** A service row seen down, as a checkpoint holds it. */
const Down = z.strictObject({
  cloud: z.string(),
  binary: z.string(),
  host: z.string(),
  /** When it was first seen down, and nova's last heartbeat of it. */
  since: z.string(),
  updatedAt: z.string().optional(),
  /** Polls that showed it down. */
  seen: z.number().int().nonnegative(),
  firing: z.boolean(),
  evidence: z.array(z.string()),
});
type Down = z.output<typeof Down>;

const State = z.strictObject({ down: keyedData(Down) });

type Service = NonNullable<OpenstackHealthEvent['services']>[number];

export const detector = defineDetector({
  name: 'openstack-service-down',
  params: Params,
  create(p, { rule }) {
    const down = new FiringGroups<Down>(rule, (d) => d.firing);
    const watched = new Set(p.binaries);

    function transition(status: 'firing' | 'resolved', d: Down, at: string, why: string): Alert {
      return alertTransition(rule, {
        status,
        group: { cloud: d.cloud, binary: d.binary, 'host.name': d.host },
        at,
        startedAt: d.since,
        host: d.host,
        service: d.binary,
        message:
          status === 'firing'
            ? `${d.binary} on ${d.host} (cloud ${d.cloud}) is down while enabled: nova last heard from it at ${d.updatedAt ?? 'never'}`
            : `resolved: ${d.binary} on ${d.host} (cloud ${d.cloud}) ${why}`,
        evidence: d.evidence,
      });
    }

    /** Why a watched row no longer counts as down, or undefined while it does. */
    function notDown(s: Service | undefined): string | undefined {
      if (!s) return 'is no longer listed (deleted)';
      if (s.forced_down) return 'was forced down by an operator';
      if (s.status === 'disabled') return `was disabled${s.disabled_reason ? ` (${s.disabled_reason})` : ''}`;
      if (s.state === 'up') return 'is up again';
      return undefined;
    }

    function on(e: OpenstackHealthEvent): Alert[] {
      if (!e.services) return [];
      const at = e['@timestamp'];
      const cloud = e.cloud.name;
      const now = Date.parse(at);
      const out: Alert[] = [];
      const rows = new Map<string, Service>();
      for (const s of e.services) if (watched.has(s.binary)) rows.set(`${cloud}\0${s.binary}\0${s.host}`, s);

      for (const [key, s] of rows) {
        if (notDown(s) !== undefined) continue;
        const evidence = stableId(cloud, at, s.id);
        const d = down.get(key) ?? { cloud, binary: s.binary, host: s.host, since: at, seen: 0, firing: false, evidence: [] };
        d.seen++;
        d.updatedAt = s.updated_at;
        if (d.evidence.length < p.evidence_max) d.evidence.push(evidence);
        const fires = !d.firing && d.seen >= p.polls && now - Date.parse(d.since) >= p.for_s * 1000;
        if (fires) d.firing = true;
        out.push(...down.keep(key, d, now, (_k, v) => transition('resolved', v, at, `is down still${untracked(down.limits, 'services')}`)));
        if (fires) out.push(transition('firing', d, at, ''));
      }
      // Rows of this cloud that were down and are not any more.
      for (const [key, d] of [...down.entries()]) {
        if (d.cloud !== cloud) continue;
        const why = notDown(rows.get(key));
        if (why === undefined) continue;
        down.delete(key);
        if (d.firing) out.push(transition('resolved', { ...d, evidence: closingEvidence(d.evidence, stableId(cloud, at, 'cleared', key), p.evidence_max) }, at, why));
      }
      return out;
    }

    return {
      accepts: { kinds: ['openstack-health'] },
      on: (e) => (e.kind === 'openstack-health' ? on(e) : []),
      state: () => down.size,
      snapshot: () => ({
        v: STATE_VERSION,
        data: {
          down: down.snapshot((d) => ({
            cloud: d.cloud,
            binary: d.binary,
            host: d.host,
            since: d.since,
            updatedAt: d.updatedAt,
            seen: d.seen,
            firing: d.firing,
            evidence: [...d.evidence],
          })),
        } satisfies z.input<typeof State>,
      }),
      // Rows past the rule's cap (a snapshot of a larger one) are not resolved: restore has no transitions to give.
      restore: (state) => restoreState(rule, state, STATE_VERSION, State, (data) => void down.load(data.down)),
    };
  },
});
