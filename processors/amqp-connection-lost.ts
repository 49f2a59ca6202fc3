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
import { Severity, type Alert, type LogDocument } from '../core/events.ts';
import { alertTransition, fieldValue, ruleParams, slide, type Detector, type Rule } from './detect.ts';

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
const REPLY_EXCHANGE_GONE = /exchange '?reply_[0-9a-f]+'? (?:in vhost '[^']*' )?doesn't exist|NOT_FOUND - no exchange 'reply_/;

/** Only oslo.messaging's drivers log losses (the logger was renamed from "oslo.messaging" in 2016). */
const LOGGERS = ['oslo.messaging._drivers', 'oslo_messaging._drivers'];

interface Outage {
  startedAt: string;
  lastLoss: number;
  broker?: string;
  /** Connections that reported a loss and have not reconnected. */
  lost: Set<string>;
  /** When every connection was back (ms), and the broker named by the reconnect. */
  recovered?: { at: number; broker: string };
  evidence: string[];
}

interface ReplyPath {
  times: number[];
  /** Timeouts before this time (ms) belong to the calls of an outage that just ended. */
  graceUntil?: number;
  firing?: { startedAt: string; last: number; evidence: string[] };
}

function isReplySymptom(msg: string): boolean {
  if (msg.includes(REPLY_PATH[0]) || msg.includes(REPLY_PATH[2]) || msg.includes(REPLY_PATH[3])) return true;
  return msg.includes(REPLY_PATH[1]) && REPLY_EXCHANGE_GONE.test(msg);
}

export function createDetector(rule: Rule): Detector {
  const p = ruleParams(rule, Params);
  const outages = new Map<string, Outage>();
  const replies = new Map<string, ReplyPath>();

  const groupOf = (doc: LogDocument) => Object.fromEntries(rule.match_by.map((k) => [k, fieldValue(doc, k) ?? '']));

  function transition(doc: LogDocument, status: 'firing' | 'resolved', group: Record<string, string>, at: string, startedAt: string, message: string, evidence: string[]): Alert {
    return alertTransition(rule, { status, group, at, startedAt, host: doc.host.name, service: doc.service.name, message, evidence });
  }

  /** The calls sent while the connection was down time out in the next minute: not a dead reply path. */
  function startGrace(key: string, now: number): void {
    const r = replies.get(key) ?? { times: [] };
    if (!r.firing) {
      r.times = [];
      r.graceUntil = now + p.reply_timeouts.grace_s * 1000;
    }
    replies.set(key, r);
  }

  /** Ends an outage at `endedAt` (ms). */
  function resolveOutage(doc: LogDocument, key: string, o: Outage, endedAt: number, how: string): Alert {
    outages.delete(key);
    startGrace(key, endedAt);
    const seconds = (endedAt - Date.parse(o.startedAt)) / 1000;
    return transition(doc, 'resolved', groupOf(doc), new Date(endedAt).toISOString(), o.startedAt,
      `${doc.service.name} on ${doc.host.name} ${how} after ${seconds.toFixed(0)}s`, [...o.evidence, doc.event.id].slice(-p.evidence_max));
  }

  function resolveReplyPath(doc: LogDocument, key: string, r: ReplyPath, how: string): Alert {
    const f = r.firing!;
    replies.delete(key);
    const a = transition(doc, 'resolved', { ...groupOf(doc), kind: 'reply-path-dead' }, doc['@timestamp'], f.startedAt,
      `${doc.service.name} on ${doc.host.name}: RPC replies arrive again (${how})`, f.evidence);
    a.alert.severity = p.reply_timeouts.severity;
    return a;
  }

  return {
    loggers: LOGGERS,
    literals: REPLY_PATH,
    /** Every line of a service with an open problem: its silence is evidence of recovery. */
    onAny(doc) {
      if (outages.size === 0 && replies.size === 0) return [];
      const key = JSON.stringify(groupOf(doc));
      const now = Date.parse(doc['@timestamp']);
      const out: Alert[] = [];
      const o = outages.get(key);
      if (o?.recovered && now - o.recovered.at >= p.settle_s * 1000) {
        out.push(resolveOutage(doc, key, o, o.recovered.at, `reconnected to AMQP server ${o.recovered.broker}`));
      } else if (o && now - o.lastLoss >= p.quiet_resolve_s * 1000) {
        out.push(resolveOutage(doc, key, o, now, `has logged no AMQP loss for ${p.quiet_resolve_s}s while working (recovery inferred; a revived connection logs no "Reconnected")`));
      }
      const r = replies.get(key);
      if (r?.firing && now - r.firing.last >= p.quiet_resolve_s * 1000) out.push(resolveReplyPath(doc, key, r, `no reply timeouts for ${p.quiet_resolve_s}s`));
      return out;
    },
    onLog(doc) {
      const msg = doc.message;
      const group = groupOf(doc);
      const key = JSON.stringify(group);
      const now = Date.parse(doc['@timestamp']);
      const out: Alert[] = [];

      if (isReplySymptom(msg)) {
        if (outages.has(key)) return out; // explained by the known outage
        let r = replies.get(key);
        if (!r) replies.set(key, (r = { times: [] }));
        if (r.firing) {
          r.firing.last = now;
          if (r.firing.evidence.length < p.evidence_max) r.firing.evidence.push(doc.event.id);
          return out;
        }
        if (r.graceUntil !== undefined && now < r.graceUntil) return out;
        r.times = slide(r.times, now, p.reply_timeouts.window_s);
        if (r.times.length >= p.reply_timeouts.count) {
          r.firing = { startedAt: doc['@timestamp'], last: now, evidence: [doc.event.id] };
          const a = transition(doc, 'firing', { ...group, kind: 'reply-path-dead' }, doc['@timestamp'], doc['@timestamp'],
            `${doc.service.name} on ${doc.host.name}: ${r.times.length} RPC reply timeouts in ${p.reply_timeouts.window_s}s with no AMQP outage to explain them: its reply consumer is dead (restart the service)`, [doc.event.id]);
          a.alert.severity = p.reply_timeouts.severity;
          out.push(a);
        }
        return out;
      }

      // Newer releases tag each connection's loss and reconnect lines with its [uuid]; lines without one (older
      // releases, the heartbeat thread, "Connection failed" retries) speak for the service as a whole.
      const id = CONNECTION_ID.exec(msg)?.[1];
      const reconnect = RECONNECTED.exec(msg);
      if (reconnect) {
        const r = replies.get(key);
        if (r?.firing) out.push(resolveReplyPath(doc, key, r, `reconnected to ${reconnect.groups!.broker}`));
        startGrace(key, now);
        const o = outages.get(key);
        if (!o) return out;
        if (id) o.lost.delete(id);
        else o.lost.clear();
        // Every connection is back: the outage ends here unless a connection drops again within settle_s.
        if (o.lost.size === 0) o.recovered ??= { at: now, broker: reconnect.groups!.broker };
        return out;
      }

      let loss: RegExpExecArray | null = null;
      for (const re of LOSS) if ((loss = re.exec(msg))) break;
      if (!loss) return out;
      const o = outages.get(key);
      if (o) {
        o.lastLoss = now;
        o.recovered = undefined;
        if (id) o.lost.add(id);
        if (o.evidence.length < p.evidence_max) o.evidence.push(doc.event.id);
        return out;
      }
      const broker = loss.groups?.broker;
      outages.set(key, { startedAt: doc['@timestamp'], lastLoss: now, broker, lost: new Set(id ? [id] : []), evidence: [doc.event.id] });
      out.push(transition(doc, 'firing', group, doc['@timestamp'], doc['@timestamp'],
        `${doc.service.name} on ${doc.host.name} lost its AMQP connection${broker ? ` to ${broker}` : ''}: ${msg.slice(0, 300)}`, [doc.event.id]));
      return out;
    },
  };
}
