// amqp-connection-lost: a service lost its RabbitMQ connection, read from oslo.messaging's own log lines.
//
// Outage: one firing alert per outage and match_by group (host, service); it resolves when every connection
// that reported a loss has logged "Reconnected" (connections are told apart by the [uuid] newer releases put
// before the message) and stayed up for `settle_s` (flapping connections are one outage), or — because a
// connection the heartbeat thread revives logs no "Reconnected" — after `quiet_resolve_s` without loss evidence
// while the service keeps logging. The resolved alert carries the outage's duration, up to the reconnect.
//
// A first connection is logged at DEBUG only (oslo.messaging's "Connected to AMQP server"), so two ends of an outage
// say nothing at INFO, and would keep it open for quiet_resolve_s (and page):
// - a restart: the processes that reported the loss have logged nothing for silence_s past the retry they announced
//   while another process of the service logs without a loss: the outage ends when that process began. A new
//   process that loses it too is the same outage; lines without a pid never end one this way.
// - a first connection that failed and then worked ("Connection failed: … (retrying in 1.0 seconds)", then nothing):
//   oslo logs every failed attempt, so no failure silence_s past the announced retry, while the process that failed
//   logged since (it lives), means it connected then. Only for losses of no connection [uuid] still waiting for its
//   "Reconnected". A process killed instead is not taken as connected: it logs nothing more.
// Both are decided by a later line of the service, or by the clock (tick) once the service's last line is silence_s
// old by that clock too: a backfill's lines are years old by the wall clock, and its next line (a failure 2 s later
// in the file) may be in the next batch.
//
// Lines are recognised by their content, whatever logger, wrapper or format carried them (devstack's journald
// lines, Python's default format, a pasted line whose header is cut): the engine routes by literals, and by the
// drivers' loggers for the one generic message ("Connection reset by peer"), which counts only from them or next to
// a publish/consume failure.
//
// A failover (a broker gone, another one answering within a second) is a short alert: it fires on the loss and
// resolves at the reconnect once that stayed up for settle_s, told by the host's next line or the clock (tick);
// the incidents' min_duration_s keeps such an alert from paging. It is recorded, not hidden: the loss happened.
//
// Dead reply path (the broken-VNC-console story): RPC reply timeouts, "reply_… doesn't exist" and friends piling
// up in a service that logged no loss at all mean its reply consumer died silently. That is its own alert
// (kind reply-path-dead), severity page; a reconnect or a quiet period ends it.
import { z } from 'zod';
import { Severity, type Alert, type LogDocument, type LogEvent } from '../core/events.ts';
import { alertTransition, defineDetector } from './detector.ts';
import { addEvidence, closingEvidence, FiringGroups, restoreState, groupOf as ruleGroup, quietFor, slide, untracked } from './kit.ts';
import { KeyedState, keyedData, Time, time } from './state.ts';

/** The version of the state's shape (snapshot, restore). */
const STATE_VERSION = 1;

const Params = z.strictObject({
  evidence_max: z.number().int().positive().default(20),
  /** Resolve an outage after this long without loss evidence while the service keeps logging. */
  quiet_resolve_s: z.number().positive().default(300),
  /** An outage whose connections are all back resolves once they stayed up this long: connections that flap
   * (closed, reconnected, closed again within seconds) are one outage, not a page each. */
  settle_s: z.number().nonnegative().default(5),
  /** No failure this long past the retry the last loss line announced: connected (a first connection logs nothing
   * at INFO); or, when another process of the service logs meanwhile, restarted. Below the incidents'
   * min_duration_s, so a restart pages nobody. */
  silence_s: z.number().positive().default(20),
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

/** Loss messages of oslo.messaging's rabbit driver across releases, specific enough to count from any logger;
 * `broker` when the line names it. "Connection failed: E (retrying in N seconds)" is tested by hand (CONNECTION_FAILED). */
const LOSS = [
  /AMQP server on (?<broker>\S+?) is unreachable/,
  /AMQP server (?<broker>\S+?) closed the connection/,
  /Unable to connect to AMQP server on (?<broker>\S+?) after /,
  /A recoverable connection\/channel error occurred/,
  /Too many heartbeats missed/,
];
const CONNECTION_FAILED = ['Connection failed: ', '(retrying in '];
/** The retry a loss line announces: "(retrying in 16.0 seconds)", "Trying again in 2 seconds." */
const RETRY_IN = /(?:retrying|Trying again) in (\d{1,6})(?:\.\d{1,6})? seconds/;
/** The processes an outage remembers by pid; a service with more that reported a loss is never taken as restarted. */
const MAX_PIDS = 32;
/** The heartbeat thread's own loss: it reconnects at once (ensure_connection), and logs more only when that fails
 * (the "unreachable … Trying again" lines) or needed retries ("Reconnected"). A revived connection says nothing. */
const REVIVING = /A recoverable connection\/channel error occurred, trying to reconnect/;
/** A reset counts only from the drivers' loggers or next to the driver's own publish/consume failure: any service
 * logs resets of its other connections (memcached, the database, libvirt). */
const RESET = /[Cc]onnection reset by peer/;
const DRIVER_FAILURE = ['Failed to publish message', 'Failed to consume message'];
// "Reconnected … via [amqp] client" since Liberty; "Connected to AMQP server on" before it (a first connect
// logs the same words, and is ignored because no outage is open).
const RECONNECTED = /(?:Reconnected|Connected) to AMQP server on (?<broker>\S+?)(?: via|\.? |$)/;
/** The connection id newer releases log first: "[2b8d…-…] AMQP server on … is unreachable"; looked for anywhere,
 * since a line whose header no format took keeps it in the middle. */
const CONNECTION_ID = /\[([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\] (?:AMQP server|Reconnected|Connected)/;
/** Symptoms of a dead reply path, whichever logger reports them (the caller logs the MessagingTimeout). */
const REPLY_PATH = ['Timed out waiting for a reply to message ID', "doesn't exist", 'MessageUndeliverable', 'No calling threads waiting for msg_id'];
const REPLY_EXCHANGE_GONE = /exchange '?reply_[0-9a-f]+'? (?:in vhost '[^']*' )?doesn't exist/;
const REPLY_EXCHANGE_NOT_FOUND = "NOT_FOUND - no exchange 'reply_";

/** oslo.messaging's drivers (the logger was renamed from "oslo.messaging" in 2016): their resets count. */
const LOGGERS = ['oslo.messaging._drivers', 'oslo_messaging._drivers'];
/** What routes a line here whatever its logger: the loss, reconnect and reply-path messages' constant parts. */
const LITERALS = ['AMQP server', CONNECTION_FAILED[0], 'recoverable connection/channel error', 'Too many heartbeats missed', ...DRIVER_FAILURE, ...REPLY_PATH];

/** The loss a line reports, by its content (and, for a reset, its logger); null when it reports none. */
function lossOf(msg: string, logger: string | undefined): RegExpExecArray | { groups?: undefined } | null {
  for (const re of LOSS) {
    const m = re.exec(msg);
    if (m) return m;
  }
  if (msg.includes(CONNECTION_FAILED[0]) && msg.includes(CONNECTION_FAILED[1])) return {};
  if (RESET.test(msg) && (LOGGERS.some((l) => logger?.startsWith(l)) || DRIVER_FAILURE.some((f) => msg.includes(f)))) return {};
  return null;
}

/** Whose alert: the match_by group of the line that opened it, and its host and service (named by every transition). */
const Owner = z.strictObject({ group: z.record(z.string(), z.string()), host: z.string(), service: z.string() });
type Owner = z.output<typeof Owner>;

/** An outage, as a checkpoint holds it (Time: event times in ms). */
const Outage = Owner.extend({
  startedAt: z.string(),
  lastLoss: Time,
  broker: z.string().optional(),
  /** Connections that reported a loss and have not reconnected (each also an entry of `connections`, which
   * bounds them). */
  lost: z.array(z.string()).transform((ids) => new Set(ids)),
  /** When every connection was back (ms), the broker named by the reconnect, and that line's event id. */
  recovered: z.strictObject({ at: Time, broker: z.string(), evidence: z.string() }).optional(),
  evidence: z.array(z.string()),
  /** The pids of the processes that reported a loss (at most MAX_PIDS; `null` once more did). */
  pids: z
    .array(z.number().int())
    .nullable()
    .default([])
    .transform((p) => (p === null ? null : new Set(p))),
  /** When the last loss line said its process would try again (ms). */
  retryAt: Time.optional(),
  /** A process that reported the loss logged since retryAt (any process, when the lines carry no pid). */
  alive: z.boolean().optional(),
  /** The first line of another process since the ones that reported the loss last logged (a restart, if they stay
   * silent). */
  handover: z.strictObject({ at: Time, pid: z.number().int(), evidence: z.string() }).optional(),
  /** When the service's last line came, by the later of its own time and the clock's (the last tick's); none (null)
   * when it came before any tick. */
  heardAt: Time.optional(),
});
type Outage = z.output<typeof Outage>;

/** A service's reply path: its recent reply timeouts, and its alert. */
const ReplyPath = z.strictObject({
  times: z.array(Time),
  /** Timeouts before this time (ms) belong to the calls of an outage that just ended. */
  graceUntil: Time.optional(),
  firing: Owner.extend({ startedAt: z.string(), last: Time, evidence: z.array(z.string()) }).optional(),
});
type ReplyPath = z.output<typeof ReplyPath>;

/** A lost connection: the key of its outage, and its id. */
const Connection = z.strictObject({ outage: z.string(), id: z.string() });

const State = z.strictObject({
  outages: keyedData(Outage),
  replies: keyedData(ReplyPath),
  connections: keyedData(Connection),
  /** Outages waiting out settle_s, in the order they began to (the order they resolve in). */
  settling: z.array(z.string()),
  /** The last tick's time (ms; null: none yet). */
  clock: Time,
});

const ownerData = (o: Owner): z.input<typeof Owner> => ({ group: { ...o.group }, host: o.host, service: o.service });

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
    const connections = new KeyedState<z.output<typeof Connection>>(rule.id, limits);
    /** Outages whose connections are all back, waiting out settle_s (a subset of `outages`, so bounded by it). A
     * service that logs nothing after its reconnect (nova-compute at INFO is quiet for minutes) must not keep its
     * page open: any line of the same host tells that settle_s has passed there. */
    let settling = new Set<string>();
    /** The last tick's time: a line's arrival is dated no earlier (see the header: backfills). */
    let clock = -Infinity;
    /** Dates a line of the outage's service; before any tick (a clock unknown) the clock may decide nothing. */
    const heard = (o: Outage, at: number) => (o.heardAt = clock === -Infinity ? Infinity : Math.max(Number.isFinite(o.heardAt) ? o.heardAt! : -Infinity, at, clock));
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

    /** Outages whose connections are all back and stayed up for settle_s by `now` (ms) resolve at their reconnect;
     * those whose processes were replaced (restart_s) resolve when the new process began. */
    function settled(now: number, except?: string, host?: string): Alert[] {
      const out: Alert[] = [];
      for (const k of settling) {
        const s = outages.get(k);
        if (!s || (!s.recovered && !s.handover && s.retryAt === undefined))
          settling.delete(k); // lost again, or gone
        else if (k === except || (host !== undefined && s.host !== host)) continue;
        else if (s.recovered && quietFor(s.recovered.at, now, p.settle_s))
          out.push(...resolveOutage(k, s, s.recovered.at, `reconnected to AMQP server ${s.recovered.broker}`, s.recovered.evidence));
        else if (!s.recovered && quietFor(s.heardAt ?? -Infinity, now, p.silence_s) && restarted(s, now)) out.push(...resolveRestarted(k, s));
        else if (!s.recovered && quietFor(s.heardAt ?? -Infinity, now, p.silence_s) && connectedSilently(s, now)) out.push(...resolveConnected(k, s));
      }
      return out;
    }

    /** The retry the last loss line announced was not followed by a failure for silence_s, and no connection waits for
     * its "Reconnected": it connected then. */
    function connectedSilently(o: Outage, now: number): boolean {
      return o.retryAt !== undefined && o.alive === true && o.lost.size === 0 && quietFor(o.retryAt, now, p.silence_s);
    }

    function resolveConnected(key: string, o: Outage): Alert[] {
      const how = `connected at the retry its last failure announced (no failure for ${p.silence_s}s after it; a first connection logs nothing at INFO)`;
      return resolveOutage(key, o, o.retryAt!, how);
    }

    /** The processes that reported the loss have been silent for silence_s (past the retry they announced) while
     * another one logs. */
    function restarted(o: Outage, now: number): boolean {
      return o.handover !== undefined && quietFor(Math.max(o.handover.at, o.retryAt ?? -Infinity), now, p.silence_s);
    }

    function resolveRestarted(key: string, o: Outage): Alert[] {
      const h = o.handover!;
      const pids = [...(o.pids ?? [])].join(', ');
      const how = `was restarted (pid ${pids} that lost the connection logged nothing for ${p.silence_s}s while pid ${h.pid} worked)`;
      return resolveOutage(key, o, h.at, how, h.evidence);
    }

    /** Which process a line of an outage's service came from: one that reported the loss keeps it open; another one,
     * once those are silent, may be their restart. */
    function watchProcess(key: string, o: Outage, doc: LogDocument, now: number): void {
      const pid = doc.process?.pid;
      if (o.retryAt !== undefined && now >= o.retryAt && (pid === undefined || o.pids === null || o.pids.size === 0 || o.pids.has(pid))) o.alive = true;
      if (pid === undefined || o.pids === null || o.pids.size === 0) return;
      if (o.pids.has(pid)) o.handover = undefined;
      else if (o.handover === undefined) {
        o.handover = { at: now, pid, evidence: doc.event.id };
        settling.add(key);
      }
    }

    /** A process reported a loss: it is one of the outage's, and whatever it said of its next attempt is awaited. */
    function lostBy(key: string, o: Outage, doc: LogDocument, now: number): void {
      o.handover = undefined;
      o.alive = undefined;
      const retry = RETRY_IN.exec(doc.message);
      o.retryAt = retry ? now + Number(retry[1]) * 1000 : undefined;
      if (o.retryAt !== undefined) settling.add(key);
      const pid = doc.process?.pid;
      if (pid === undefined || o.pids === null || o.pids.has(pid)) return;
      if (o.pids.size >= MAX_PIDS) o.pids = null;
      else o.pids.add(pid);
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
      accepts: { kinds: ['log'], loggers: LOGGERS, literals: LITERALS },
      state: () => outages.size + replies.size + connections.size,
      snapshot: () => ({
        v: STATE_VERSION,
        data: {
          outages: outages.snapshot((o) => ({
            ...ownerData(o),
            startedAt: o.startedAt,
            lastLoss: time(o.lastLoss),
            broker: o.broker,
            lost: [...o.lost],
            recovered: o.recovered && { at: time(o.recovered.at), broker: o.recovered.broker, evidence: o.recovered.evidence },
            evidence: [...o.evidence],
            pids: o.pids && [...o.pids],
            retryAt: o.retryAt === undefined ? undefined : time(o.retryAt),
            alive: o.alive,
            heardAt: o.heardAt === undefined ? undefined : time(o.heardAt),
            handover: o.handover && { at: time(o.handover.at), pid: o.handover.pid, evidence: o.handover.evidence },
          })),
          replies: replies.snapshot((r) => ({
            times: r.times.map(time),
            graceUntil: r.graceUntil === undefined ? undefined : time(r.graceUntil),
            firing: r.firing && { ...ownerData(r.firing), startedAt: r.firing.startedAt, last: time(r.firing.last), evidence: [...r.firing.evidence] },
          })),
          connections: connections.snapshot((c) => ({ outage: c.outage, id: c.id })),
          settling: [...settling],
          clock: time(clock),
        } satisfies z.input<typeof State>,
      }),
      restore: (state) =>
        restoreState(rule, state, STATE_VERSION, State, (data) => {
          // Outages and reply paths past the rule's cap (a snapshot of a larger one) are not resolved: restore has no
          // transitions to give. They are counted as evictions; their connections go with them.
          const gone = new Set(outages.load(data.outages).map((e) => e.key));
          replies.load(data.replies);
          // A connection dropped over the cap leaves its outage's lost set, as one dropped by an event does.
          for (const e of connections.load(data.connections)) outages.get(e.value.outage)?.lost.delete(e.value.id);
          for (const [k, c] of [...connections.entries()]) if (gone.has(c.outage)) connections.delete(k);
          settling = new Set(data.settling.filter((k) => !gone.has(k)));
          clock = Number.isNaN(data.clock) ? -Infinity : data.clock;
          return undefined;
        }),
      /** The clock: a reconnect that stayed up for settle_s resolves its outage though its host logs nothing more
       * (a quiet nova-compute after a failover would otherwise keep a short alert open until it pages). */
      tick: (now) => {
        clock = Math.max(clock, now);
        return settling.size === 0 ? [] : settled(now);
      },
      /** Every line of a service with an open problem: its silence is evidence of recovery. */
      onAny(doc) {
        if (outages.size === 0 && replies.openCount === 0) return [];
        const key = JSON.stringify(groupOf(doc));
        const now = Date.parse(doc['@timestamp']);
        const out: Alert[] = settled(now, key, doc.host.name);
        const o = outages.get(key);
        if (o) watchProcess(key, o, doc, now);
        if (o?.recovered && quietFor(o.recovered.at, now, p.settle_s)) {
          out.push(...resolveOutage(key, o, o.recovered.at, `reconnected to AMQP server ${o.recovered.broker}`, doc.event.id));
        } else if (o && !o.recovered && restarted(o, now)) {
          out.push(...resolveRestarted(key, o));
        } else if (o && !o.recovered && connectedSilently(o, now)) {
          out.push(...resolveConnected(key, o));
        } else if (o && quietFor(o.lastLoss, now, p.quiet_resolve_s)) {
          out.push(
            ...resolveOutage(key, o, now, `has logged no AMQP loss for ${p.quiet_resolve_s}s while working (recovery inferred; a revived connection logs no "Reconnected")`, doc.event.id),
          );
        }
        const still = outages.get(key);
        if (still) heard(still, now);
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
              `${doc.service.name} on ${doc.host.name}: ${r.times.length} RPC reply timeouts in ${p.reply_timeouts.window_s}s with no AMQP outage of its own to explain them: its reply consumer is dead (restart it), or the service it calls does not answer`,
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

        const loss = lossOf(msg, doc.log.logger);
        if (!loss) return out;
        // A heartbeat thread reviving its connection: recovered unless a loss follows within settle_s (an idle
        // uwsgi worker's connection reset by the broker, a forced close), told by the clock (tick) or the next line.
        const reviving = (x: Outage) => {
          if (!REVIVING.test(msg) || x.lost.size > 0) return;
          x.recovered = { at: now, broker: `${x.broker ?? ''} (revived by the heartbeat thread: nothing failed after it)`.trim(), evidence: doc.event.id };
          settling.add(key);
        };
        const o = outages.get(key);
        if (o) {
          o.lastLoss = now;
          o.recovered = undefined;
          lostBy(key, o, doc, now);
          if (id) lose(key, o, id, now);
          addEvidence(o.evidence, doc.event.id, p.evidence_max);
          reviving(o);
          out.push(...keepOutage(key, o, now));
          return out;
        }
        const broker = loss.groups?.broker;
        const fresh: Outage = { ...owner, startedAt: doc['@timestamp'], lastLoss: now, broker, lost: new Set(), evidence: [doc.event.id], pids: new Set() };
        lostBy(key, fresh, doc, now);
        heard(fresh, now);
        if (id) lose(key, fresh, id, now);
        reviving(fresh);
        out.push(...keepOutage(key, fresh, now));
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
