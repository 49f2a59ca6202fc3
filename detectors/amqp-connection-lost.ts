// amqp-connection-lost: a service lost its RabbitMQ connection, read from oslo.messaging's own log lines.
//
// Outage: one firing alert per outage and match_by group (host, service); it resolves when every connection
// that reported a loss has logged "Reconnected" (connections are told apart by the [uuid] newer releases put
// before the message) and stayed up for `settle_s` (flapping connections are one outage), or — because a
// connection the heartbeat thread revives logs no "Reconnected" — after `quiet_resolve_s` without loss evidence
// while the service keeps logging. The resolved alert carries the outage's duration, up to the reconnect.
//
// Dead reply path (the broken-VNC-console story): RPC reply timeouts, "reply_… doesn't exist" and friends piling
// up in a service that logged no loss at all mean its reply consumer died silently. That is its own alert
// (kind reply-path-dead), severity page; a reconnect or a quiet period ends it.
import { z } from 'zod';
import { Severity, type Alert, type LogDocument, type LogEvent } from '../core/events.ts';
import { alertTransition, defineDetector } from './detector.ts';
import { addEvidence, closingEvidence, FiringGroups, groupOf as ruleGroup, quietFor, slide, untracked } from './kit.ts';
import { KeyedState } from './state.ts';

const Params = z.strictObject({
  evidence_max: z.number().int().positive().default(20),
  /** Resolve an outage after this long without loss evidence while the service keeps logging. */
  quiet_resolve_s: z.number().positive().default(300),
  /** An outage whose connections are all back resolves once they stayed up this long: connections that flap
   * (closed, reconnected, closed again within seconds) are one outage, not a page each. */
  settle_s: z.number().nonnegative().default(5),
  /** Reply-path symptoms within window_s that make the dead-reply-path alert fire. */
  reply_timeouts: z
    .strictObject({
      count: z.number().int().positive(),
      window_s: z.number().positive(),
      severity: Severity,
      /** After a reconnect or an outage's end, the calls sent during it time out: not a dead reply path. */
      grace_s: z.number().nonnegative(),
    })
    .default({ count: 5, window_s: 300, severity: 'page', grace_s: 60 }),
});

/** Loss messages of oslo.messaging's rabbit driver across releases; `broker` when the line names it. */
const LOSS = [
  /AMQP server on (?<broker>\S+?) is unreachable/,
  /^Connection failed: /,
  /AMQP server (?<broker>\S+?) closed the connection/,
  /A recoverable connection\/channel error occurred/,
  /Too many heartbeats missed/,
  /[Cc]onnection reset by peer/,
];
// "Reconnected … via [amqp] client" since Liberty; "Connected to AMQP server on" before it (a first connect
// logs the same words, and is ignored because no outage is open).
const RECONNECTED = /(?:Reconnected|Connected) to AMQP server on (?<broker>\S+?)(?: via|\.? |$)/;
/** The connection id newer releases log first: "[2b8d…-…] AMQP server on … is unreachable". */
const CONNECTION_ID = /^\[([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\] /;
/** Symptoms of a dead reply path, whichever logger reports them (the caller logs the MessagingTimeout). */
const REPLY_PATH = ['Timed out waiting for a reply to message ID', "doesn't exist", 'MessageUndeliverable', 'No calling threads waiting for msg_id'];
const REPLY_EXCHANGE_GONE = /exchange '?reply_[0-9a-f]+'? (?:in vhost '[^']*' )?doesn't exist/;
const REPLY_EXCHANGE_NOT_FOUND = "NOT_FOUND - no exchange 'reply_";

/** Only oslo.messaging's drivers log losses (the logger was renamed from "oslo.messaging" in 2016). */
const LOGGERS = ['oslo.messaging._drivers', 'oslo_messaging._drivers'];

/** Whose alert: the match_by group of the line that opened it, and its host and service (named by every transition). */
interface Owner {
  group: Record<string, string>;
  host: string;
  service: string;
}

interface Outage extends Owner {
  startedAt: string;
  lastLoss: number;
  broker?: string;
  /** Connections that reported a loss and have not reconnected (each also an entry of `connections`, which
   * bounds them). */
  lost: Set<string>;
  /** When every connection was back (ms), the broker named by the reconnect, and that line's event id. */
  recovered?: { at: number; broker: string; evidence: string };
  evidence: string[];
}

interface ReplyPath {
  times: number[];
  /** Timeouts before this time (ms) belong to the calls of an outage that just ended. */
  graceUntil?: number;
  firing?: Owner & { startedAt: string; last: number; evidence: string[] };
}

function isReplySymptom(msg: string): boolean {
  if (msg.includes(REPLY_PATH[0]) || msg.includes(REPLY_PATH[2]) || msg.includes(REPLY_PATH[3])) return true;
  return msg.includes(REPLY_PATH[1]) && (REPLY_EXCHANGE_GONE.test(msg) || msg.includes(REPLY_EXCHANGE_NOT_FOUND));
}

export const detector = defineDetector({
  name: 'amqp-connection-lost',
  params: Params,
  create(p, { rule }) {
    const outages = new FiringGroups<Outage>(rule, () => true);
    const replies = new FiringGroups<ReplyPath>(rule, (r) => r.firing !== undefined);
    const limits = outages.limits;
    /** Lost connections by group and connection id, bounded: one outage of a service whose connections come and go
     * saw 1.6M ids (524 MB) when each stayed in its outage for good. */
    const connections = new KeyedState<{ outage: string; id: string }>(rule.id, limits);
    /** Outages whose connections are all back, waiting out settle_s (a subset of `outages`, so bounded by it). A
     * service that logs nothing after its reconnect (nova-compute at INFO is quiet for minutes) must not keep its
     * page open: any line of the same host tells that settle_s has passed there. */
    const settling = new Set<string>();
    const evictedWhy = (what: string) => untracked(limits, what);

    const groupOf = (doc: LogDocument) => ruleGroup(rule, doc);
    const ownerOf = (doc: LogDocument): Owner => ({ group: groupOf(doc), host: doc.host.name, service: doc.service.name });

    function transition(o: Owner, status: 'firing' | 'resolved', group: Record<string, string>, at: string, startedAt: string, message: string, evidence: string[]): Alert {
      return alertTransition(rule, { status, group, at, startedAt, host: o.host, service: o.service, message, evidence });
    }

    /** The calls sent while the connection was down time out in the next minute: not a dead reply path. */
    function startGrace(key: string, now: number): Alert[] {
      const r = replies.get(key) ?? { times: [] };
      if (!r.firing) {
        r.times = [];
        r.graceUntil = now + p.reply_timeouts.grace_s * 1000;
      }
      return keepReplyPath(key, r, now);
    }

    /** Ends an outage at `endedAt` (ms). */
    function resolveOutage(key: string, o: Outage, endedAt: number, how: string, evidence?: string): Alert[] {
      forget(key, o);
      const out = startGrace(key, endedAt);
      const seconds = (endedAt - Date.parse(o.startedAt)) / 1000;
      out.unshift(
        transition(
          o,
          'resolved',
          o.group,
          new Date(endedAt).toISOString(),
          o.startedAt,
          `${o.service} on ${o.host} ${how} after ${seconds.toFixed(0)}s`,
          evidence ? closingEvidence(o.evidence, evidence, p.evidence_max) : o.evidence.slice(-p.evidence_max),
        ),
      );
      return out;
    }

    /** An outage and its lost connections are forgotten. */
    function forget(key: string, o: Outage): void {
      outages.delete(key);
      settling.delete(key);
      for (const id of o.lost) connections.delete(`${key}\0${id}`);
    }

    function resolveReplyPath(key: string, r: ReplyPath, at: string, how: string): Alert {
      const f = r.firing!;
      replies.delete(key);
      const a = transition(f, 'resolved', { ...f.group, kind: 'reply-path-dead' }, at, f.startedAt, `${f.service} on ${f.host}: RPC replies arrive again (${how})`, f.evidence);
      a.alert.severity = p.reply_timeouts.severity;
      return a;
    }

    /** Stores an outage; outages dropped to stay within state.max_entries resolve with the reason. */
    function keepOutage(key: string, o: Outage, now: number): Alert[] {
      return outages.keep(key, o, now, (k, v) => resolveOutage(k, v, now, `is no longer watched${evictedWhy('outages')}`));
    }

    function keepReplyPath(key: string, r: ReplyPath, now: number): Alert[] {
      return replies.keep(key, r, now, (k, v) => resolveReplyPath(k, v, new Date(now).toISOString(), `no longer watched${evictedWhy('services')}`));
    }

    /** A connection of an outage reported a loss. */
    function lose(key: string, o: Outage, id: string, now: number): void {
      o.lost.add(id);
      for (const e of connections.set(`${key}\0${id}`, { outage: key, id }, now)) outages.get(e.value.outage)?.lost.delete(e.value.id);
    }

    return {
      accepts: { kinds: ['log'], loggers: LOGGERS, literals: REPLY_PATH },
      state: () => outages.size + replies.size + connections.size,
      /** Every line of a service with an open problem: its silence is evidence of recovery. */
      onAny(doc) {
        if (outages.size === 0 && replies.openCount === 0) return [];
        const key = JSON.stringify(groupOf(doc));
        const now = Date.parse(doc['@timestamp']);
        const out: Alert[] = [];
        for (const k of settling) {
          const s = outages.get(k);
          if (!s?.recovered)
            settling.delete(k); // lost again, or gone
          else if (k !== key && s.host === doc.host.name && quietFor(s.recovered.at, now, p.settle_s))
            out.push(...resolveOutage(k, s, s.recovered.at, `reconnected to AMQP server ${s.recovered.broker}`, s.recovered.evidence));
        }
        const o = outages.get(key);
        if (o?.recovered && quietFor(o.recovered.at, now, p.settle_s)) {
          out.push(...resolveOutage(key, o, o.recovered.at, `reconnected to AMQP server ${o.recovered.broker}`, doc.event.id));
        } else if (o && quietFor(o.lastLoss, now, p.quiet_resolve_s)) {
          out.push(
            ...resolveOutage(key, o, now, `has logged no AMQP loss for ${p.quiet_resolve_s}s while working (recovery inferred; a revived connection logs no "Reconnected")`, doc.event.id),
          );
        }
        const r = replies.get(key);
        if (r?.firing && quietFor(r.firing.last, now, p.quiet_resolve_s)) out.push(resolveReplyPath(key, r, doc['@timestamp'], `no reply timeouts for ${p.quiet_resolve_s}s`));
        return out;
      },
      on({ doc }: LogEvent) {
        const msg = doc.message;
        const owner = ownerOf(doc);
        const key = JSON.stringify(owner.group);
        const now = Date.parse(doc['@timestamp']);
        const out: Alert[] = [];

        if (isReplySymptom(msg)) {
          if (outages.has(key)) return out; // explained by the known outage
          const r = replies.get(key) ?? { times: [] };
          if (r.firing) {
            r.firing.last = now;
            addEvidence(r.firing.evidence, doc.event.id, p.evidence_max);
            return keepReplyPath(key, r, now);
          }
          if (r.graceUntil !== undefined && now < r.graceUntil) return keepReplyPath(key, r, now);
          r.times = slide(r.times, now, p.reply_timeouts.window_s);
          if (r.times.length >= p.reply_timeouts.count) {
            r.firing = { ...owner, startedAt: doc['@timestamp'], last: now, evidence: [doc.event.id] };
            const a = transition(
              owner,
              'firing',
              { ...owner.group, kind: 'reply-path-dead' },
              doc['@timestamp'],
              doc['@timestamp'],
              `${doc.service.name} on ${doc.host.name}: ${r.times.length} RPC reply timeouts in ${p.reply_timeouts.window_s}s with no AMQP outage to explain them: its reply consumer is dead (restart the service)`,
              [doc.event.id],
            );
            a.alert.severity = p.reply_timeouts.severity;
            out.push(a);
          }
          out.push(...keepReplyPath(key, r, now));
          return out;
        }

        // Newer releases tag each connection's loss and reconnect lines with its [uuid]; lines without one (older
        // releases, the heartbeat thread, "Connection failed" retries) speak for the service as a whole.
        const id = CONNECTION_ID.exec(msg)?.[1];
        const reconnect = RECONNECTED.exec(msg);
        if (reconnect) {
          const r = replies.get(key);
          if (r?.firing) out.push(resolveReplyPath(key, r, doc['@timestamp'], `reconnected to ${reconnect.groups!.broker}`));
          out.push(...startGrace(key, now));
          const o = outages.get(key);
          if (!o) return out;
          for (const gone of id ? [id] : [...o.lost]) {
            o.lost.delete(gone);
            connections.delete(`${key}\0${gone}`);
          }
          // Every connection is back: the outage ends here unless a connection drops again within settle_s.
          if (o.lost.size === 0) {
            o.recovered ??= { at: now, broker: reconnect.groups!.broker, evidence: doc.event.id };
            settling.add(key);
          }
          out.push(...keepOutage(key, o, now));
          return out;
        }

        let loss: RegExpExecArray | null = null;
        for (const re of LOSS) if ((loss = re.exec(msg))) break;
        if (!loss) return out;
        const o = outages.get(key);
        if (o) {
          o.lastLoss = now;
          o.recovered = undefined;
          if (id) lose(key, o, id, now);
          addEvidence(o.evidence, doc.event.id, p.evidence_max);
          out.push(...keepOutage(key, o, now));
          return out;
        }
        const broker = loss.groups?.broker;
        const fresh: Outage = { ...owner, startedAt: doc['@timestamp'], lastLoss: now, broker, lost: new Set(), evidence: [doc.event.id] };
        out.push(...keepOutage(key, fresh, now));
        if (id) lose(key, fresh, id, now);
        out.push(
          transition(
            owner,
            'firing',
            owner.group,
            doc['@timestamp'],
            doc['@timestamp'],
            `${doc.service.name} on ${doc.host.name} lost its AMQP connection${broker ? ` to ${broker}` : ''}: ${msg.slice(0, 300)}`,
            [doc.event.id],
          ),
        );
        return out;
      },
    };
  },
});
