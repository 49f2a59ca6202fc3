// service-silent: a service (or a host's metric source: Zabbix, Ceph, the OpenStack API collector) that normally
// speaks has stopped. What no signature names: a service hung on a lock, a container that died without a line, a
// collector cut off. Learnt per stream (host + service, or host + metric source): once a stream has shown
// `min_events` events, it is silent when nothing came for longer than `factor` times the longest gap among its
// last `gaps` gaps, and at least `min_silence_s`. It resolves with the stream's next event.
//
// Silence is a matter of the wall clock (`tick`, called by the running processor every second): it fires while
// nothing arrives at all. Streams of old data (a replay, a backfill: events more than `max_lag_s` older than
// their arrival) are never judged, and `stackwatch detect` does not tick, so post-mortems do not report the gaps
// between files.
import { z } from 'zod';
import type { Alert, PipelineEvent } from '../core/events.ts';
import { alertTransition, defineDetector } from './detector.ts';
import { FiringGroups, restoreState } from './kit.ts';
import { keyedData, Time, time } from './state.ts';

/** The version of the state's shape (snapshot, restore). */
const STATE_VERSION = 1;

const Params = z.strictObject({
  /** Events a stream must have shown before its silence means anything. */
  min_events: z.number().int().positive().default(50),
  /** Never silent sooner than this (seconds). */
  min_silence_s: z.number().positive().default(600),
  /** Silent after this many times the longest of its recent gaps. */
  factor: z.number().positive().default(4),
  /** How many recent gaps between events are remembered per stream. */
  gaps: z.number().int().min(4).max(1024).default(64),
  /** Events older than this at arrival are old data: their stream is not judged. */
  max_lag_s: z.number().positive().default(3600),
});

/** A stream, as a checkpoint holds it. */
const Stream = z.strictObject({
  host: z.string(),
  service: z.string(),
  events: z.number().int().nonnegative(),
  /** Event time of the newest event (ms), and wall-clock time it arrived (for a restored stream, by the clock of
   * the process it came from: the time no process read the stream counts as silence). */
  lastAt: Time,
  arrivedAt: z.number(),
  live: z.boolean(),
  /** The last gaps (ms) between events, a ring. */
  recent: z.array(z.number()),
  next: z.number().int().nonnegative(),
  firing: z.strictObject({ startedAt: z.string(), threshold: z.number() }).optional(),
});
type Stream = z.output<typeof Stream>;

const State = z.strictObject({ streams: keyedData(Stream) });

export const detector = defineDetector({
  name: 'service-silent',
  params: Params,
  example: { min_events: 3, min_silence_s: 1 },
  create(p, { rule }) {
    const streams = new FiringGroups<Stream>(rule, (s) => s.firing !== undefined);

    const transition = (s: Stream, status: 'firing' | 'resolved', at: string, message: string): Alert =>
      alertTransition(rule, {
        status,
        group: { 'host.name': s.host, 'service.name': s.service },
        at,
        startedAt: s.firing!.startedAt,
        host: s.host,
        service: s.service,
        message,
        evidence: [],
      });

    function threshold(s: Stream): number {
      return Math.max(p.min_silence_s * 1000, p.factor * Math.max(0, ...s.recent));
    }

    function on(e: PipelineEvent): Alert[] {
      let host: string, service: string, iso: string;
      if (e.kind === 'log') [host, service, iso] = [e.doc.host.name, e.doc.service.name, e.doc['@timestamp']];
      else if (e.kind === 'metric') [host, service, iso] = [e.sample.host.name, e.sample.source, e.sample['@timestamp']];
      else return [];
      const at = Date.parse(iso);
      if (!Number.isFinite(at)) return [];
      const now = Date.now();
      const key = `${host}\u0000${service}`;
      const s: Stream = streams.get(key) ?? { host, service, events: 0, lastAt: at, arrivedAt: now, live: true, recent: [], next: 0 };
      const out: Alert[] = [];
      if (s.events > 0 && at > s.lastAt) {
        s.recent[s.next] = at - s.lastAt;
        s.next = (s.next + 1) % p.gaps;
      }
      s.events++;
      s.lastAt = Math.max(s.lastAt, at);
      s.arrivedAt = now;
      s.live = now - at <= p.max_lag_s * 1000;
      if (s.firing) {
        out.push(
          transition(s, 'resolved', new Date(now).toISOString(), `${service} on ${host} speaks again after ${Math.round((now - Date.parse(s.firing.startedAt)) / 1000)} s of silence`),
        );
        s.firing = undefined;
      }
      out.push(...streams.keep(key, s, at, (_k, v) => transition(v, 'resolved', iso, `${v.service} on ${v.host}: no longer tracked (state.max_entries)`)));
      return out;
    }

    function tick(now: number): Alert[] {
      const out: Alert[] = [];
      for (const [key, s] of [...streams.entries()]) {
        if (s.firing || !s.live || s.events < p.min_events) continue;
        const limit = threshold(s);
        if (now - s.arrivedAt <= limit) continue;
        s.firing = { startedAt: new Date(s.arrivedAt).toISOString(), threshold: limit };
        streams.set(key, s, s.lastAt);
        out.push(
          transition(
            s,
            'firing',
            new Date(now).toISOString(),
            `${s.service} on ${s.host} has been silent for ${Math.round((now - s.arrivedAt) / 1000)} s; it normally speaks at least every ${Math.round(Math.max(0, ...s.recent) / 1000)} s (${s.events} events seen, the last at ${new Date(s.lastAt).toISOString()})`,
          ),
        );
      }
      return out;
    }

    return {
      accepts: { kinds: ['log', 'metric'] },
      on,
      tick,
      state: () => streams.size,
      snapshot: () => ({
        v: STATE_VERSION,
        data: {
          streams: streams.snapshot((s) => ({
            host: s.host,
            service: s.service,
            events: s.events,
            lastAt: time(s.lastAt),
            arrivedAt: s.arrivedAt,
            live: s.live,
            recent: [...s.recent],
            next: s.next,
            firing: s.firing && { startedAt: s.firing.startedAt, threshold: s.firing.threshold },
          })),
        } satisfies z.input<typeof State>,
      }),
      // Streams past the rule's cap (a snapshot of a larger one) are not resolved: restore has no transitions to give.
      restore: (state) => restoreState(rule, state, STATE_VERSION, State, (data) => void streams.load(data.streams)),
    };
  },
});
