// Incidents: alerts that share a cause, paged once. The correlator takes the detectors' alert transitions and
// files each firing alert into an incident by the incident rules (incidents/rules.ts): the incident of its rule and
// key, or an open incident it joins, or a new one; an alert no rule takes is an incident of its own. It pages the
// incident, not the alerts: once it has been firing for min_duration_s (a connection back within seconds is kept
// as a short incident, never paged), and resolves it when its last alert has ended and its hold_s has passed with
// no new alert of the cause.
//
// Clocks: alerts are compared with each other by their own (event) time, so a replay groups as live traffic did.
// The deadlines (min_duration_s, hold_s) are checked against `now`: the wall clock in a running processor (a
// timer ticks it, so a page goes out while the log is quiet), the event time in `stackwatch detect`. Data from the
// past (a backfill, a collector catching up) reaches a processor with its deadlines long gone and its streams in
// any order: the nova-compute file of a sosreport after the neutron ones. Such an incident is decided only after
// `settleS` without a change to it, so that the other streams' alerts of the same cause still join it; live data,
// whose deadlines pass while the processor watches, is not delayed.
// Ids are deterministic (the rule, the key and the first alert's start): a replay overwrites the same documents.
//
// Checkpoints: `snapshot()` gives the open incidents as JSON data, `restore()` takes them back in a correlator just
// made (in a new process), which then files, pages and resolves exactly as the one it came from would have. The
// incident rules are not in it: they come from the rule files of now. An incident whose rule is gone from them is
// restored as an incident of no rule (as an alert no rule takes): its id, alerts, timeline and paged state kept, so
// the pager that has it open still gets its resolution, under the same id; no new alert joins it, it pages after
// the default min_duration_s and resolves with no hold. Dropping it instead would leave a page open for ever.
import { z } from 'zod';
import { parseSnapshot } from '../core/schema.ts';
import { Alert, Severity, stableId, type Incident } from '../core/events.ts';
import { keyOf, matches, alertField, type IncidentRule } from './rules.ts';

export interface CorrelatorOptions {
  /** An incident pages once it has been firing this long (a rule's own min_duration_s wins). */
  minDurationS: number;
  /** At most this many incidents are open at once; past it the oldest quiet one is resolved early. */
  maxOpen?: number;
  /** A deadline that had passed long before the incident last changed is acted on only after this long without a
   * change (see the header). 0 in `detect`, which sorts its alerts by time first. */
  settleS?: number;
}

/** What changed: the incident's document as it is now, and the transition for the notifiers when it is one. */
export interface IncidentChange {
  incident: Incident;
  page?: Alert;
  /** The start the incident's document is filed under (its daily index): the incident's start when it opened, kept
   * when an earlier alert moves its start (a backfill, a merge), so that its document is overwritten, not copied
   * into another day's index with the old one left stale. */
  filedAt: string;
}

interface Member {
  alert: Alert;
  firing: boolean;
  /** Taken by the incident's own rule and key (not joined from another rule). */
  own: boolean;
}

interface OpenIncident {
  id: string;
  rule?: IncidentRule;
  key: string;
  first: Alert;
  startedAt: number;
  /** IncidentChange.filedAt. */
  filedAt: string;
  members: Map<string, Member>;
  firing: number;
  ownFiring: number;
  /** Event time (ms) the last of its own alerts ended, and the last of all its alerts (while none fires). */
  ownLastEnd: number;
  lastEnd: number;
  /** `now` of the last alert that changed it. */
  changedAt: number;
  paged: boolean;
  /** The severity the pager was last told. */
  pagedSeverity?: Severity;
  timeline: { at: string; what: string }[];
}

const RANK: Record<Severity, number> = { info: 0, warning: 1, critical: 2, page: 3 };
const TIMELINE_MAX = 100;
const DEFAULT_MAX_OPEN = 10_000;

const ms = (iso: string) => Date.parse(iso);
const iso = (t: number) => new Date(t).toISOString();

/** The version of the snapshot's shape (snapshot, restore). */
const STATE_VERSION = 1;

/** The open incidents as JSON data, with the version of its shape (snapshot, restore). */
export interface CorrelatorSnapshot {
  v: number;
  data: unknown;
}

/** A time (ms), one a Date can hold (the documents write it), or -Infinity (none of the incident's alerts has
 * ended yet), which is no JSON number and is written as the word. */
const Ms = z.union([z.number().min(-8.64e15).max(8.64e15), z.literal('-Infinity').transform(() => -Infinity)]);
const msData = (t: number) => (t === -Infinity ? ('-Infinity' as const) : t);

/** An alert's time: one that parses (the correlator computes with it and writes it). */
const Time = z.string().refine((t) => Number.isFinite(ms(t)), { error: 'expected a time' });

/** An alert, its times checked (Alert takes any text). */
const AlertData = Alert.extend({ '@timestamp': Time, alert: Alert.shape.alert.extend({ started_at: Time, ended_at: Time.optional() }) });

/** What the correlator reads of a member's alert: the fields the rules name, its times, what an incident's document
 * lists. Its message, evidence and runbook (most of an alert's size) are read of the first alert only, which is kept
 * whole: a member's are not kept, and read back empty. */
const MemberAlert = z
  .strictObject({
    '@timestamp': Time,
    rule: z.strictObject({ id: z.string() }),
    alert: AlertData.shape.alert.omit({ duration_s: true, runbook: true }).strict(),
    host: z.strictObject({ name: z.string() }),
    service: z.strictObject({ name: z.string() }),
  })
  .transform((a): Alert => ({ ...a, rule: { id: a.rule.id, name: a.rule.id }, alert: { ...a.alert, runbook: '' }, message: '', evidence: { event_ids: [] } }));

/** A member's alert as MemberAlert keeps it. */
function memberAlert(a: Alert): z.input<typeof MemberAlert> {
  const { id, status, severity, started_at, ended_at, group, labels } = a.alert;
  return {
    '@timestamp': a['@timestamp'],
    rule: { id: a.rule.id },
    alert: { id, status, severity, started_at, ...(ended_at !== undefined ? { ended_at } : {}), group: { ...group }, ...(labels ? { labels: { ...labels } } : {}) },
    host: { name: a.host.name },
    service: { name: a.service.name },
  };
}

/** An occurrence of an alert in an incident (Member). */
const MemberData = z.strictObject({
  /** Its key among the incident's alerts, when it is not the alert's id and start (see memberKey). */
  key: z.string().optional(),
  alert: MemberAlert,
  firing: z.boolean(),
  own: z.boolean(),
  /** The alert's next transition comes to this occurrence: the index by alert id (byAlert) is rebuilt from these. */
  indexed: z.boolean(),
});

/** An open incident (OpenIncident): its rule by id, its start from its first alert (they change together). Written
 * in this order, a required field last: a snapshot cut short within its last incident is refused. */
const IncidentData = z.strictObject({
  id: z.string(),
  rule: z.string().optional(),
  key: z.string(),
  first: AlertData,
  /** IncidentChange.filedAt (absent in a snapshot of before it: the first alert's start, as it was then filed). */
  filed: Time.optional(),
  members: z.array(MemberData),
  /** Occurrences the index holds for the incident that are not among its alerts any more: an occurrence filed into
   * two incidents (the same alert id and start) that were then merged keeps the one merged in, while the index
   * still sends the alert's next transition to the other. Absent when none (always, but for that). */
  detached: z.array(MemberData.omit({ key: true, indexed: true })).optional(),
  timeline: z.array(z.strictObject({ at: z.string(), what: z.string() })).max(TIMELINE_MAX),
  firing: z.number().int(),
  ownFiring: z.number().int(),
  ownLastEnd: Ms,
  lastEnd: Ms,
  paged: z.boolean(),
  pagedSeverity: Severity.optional(),
  changedAt: Ms,
});

/** The open incidents, oldest first, and how many there are (first: a snapshot cut short is refused, not taken in
 * part). */
const CorrelatorData = z.strictObject({ open: z.number().int().nonnegative(), incidents: z.array(IncidentData) }).superRefine((d, ctx) => {
  if (d.incidents.length !== d.open) ctx.addIssue({ code: 'custom', path: ['incidents'], message: `expected ${d.open} incidents, got ${d.incidents.length}` });
  const ids = new Set<string>();
  const indexed = new Set<string>();
  d.incidents.forEach((inc, i) => {
    const issue = (path: PropertyKey[], message: string) => ctx.addIssue({ code: 'custom', path: ['incidents', i, ...path], message });
    if (ids.has(inc.id)) issue(['id'], `the incident ${inc.id} appears twice`);
    ids.add(inc.id);
    const keys = new Set<string>();
    inc.members.forEach((m, k) => {
      const key = m.key ?? memberKey(m.alert);
      if (keys.has(key)) issue(['members', k], 'the occurrence appears twice');
      keys.add(key);
    });
    const entries = [...inc.members.filter((m) => m.indexed), ...(inc.detached ?? [])];
    entries.forEach((m) => {
      if (indexed.has(m.alert.alert.id)) issue(['members'], `two occurrences of the alert ${m.alert.alert.id} take its next transition`);
      indexed.add(m.alert.alert.id);
    });
  });
});

export class IncidentCorrelator {
  /** Each alert id's latest occurrence: its incident and its entry there. */
  private readonly byAlert = new Map<string, { inc: OpenIncident; m: Member }>();
  /** Open incidents, oldest first (Map keeps insertion order). */
  private readonly open = new Map<string, OpenIncident>();

  /** What the last restore() took other than as it was: the incidents whose rule is gone, restored without one
   * (see the header). For the caller to log. */
  restoreNotes: string[] = [];

  constructor(
    private readonly rules: IncidentRule[],
    private readonly opts: CorrelatorOptions,
  ) {}

  /** The open incidents as JSON data, for a checkpoint: `restore` in a new correlator goes on exactly as this one
   * would. A copy: later alerts do not change it. */
  snapshot(): CorrelatorSnapshot {
    const entries = new Map([...this.byAlert.values()].map((e) => [e.m, e.inc]));
    const detached = new Map<OpenIncident, Member[]>();
    const held = new Set([...this.open.values()].flatMap((inc) => [...inc.members.values()]));
    for (const [m, inc] of entries) if (!held.has(m) && this.open.get(inc.id) === inc) detached.set(inc, [...(detached.get(inc) ?? []), m]);
    const member = (m: Member) => ({ alert: memberAlert(m.alert), firing: m.firing, own: m.own });
    const incidents = [...this.open.values()].map((inc) => ({
      id: inc.id,
      ...(inc.rule ? { rule: inc.rule.id } : {}),
      key: inc.key,
      first: structuredClone(inc.first),
      filed: inc.filedAt,
      members: [...inc.members].map(([key, m]) => ({ ...(key === memberKey(m.alert) ? {} : { key }), ...member(m), indexed: entries.get(m) === inc })),
      ...(detached.has(inc) ? { detached: detached.get(inc)!.map(member) } : {}),
      timeline: inc.timeline.map(({ at, what }) => ({ at, what })),
      firing: inc.firing,
      ownFiring: inc.ownFiring,
      ownLastEnd: msData(inc.ownLastEnd),
      lastEnd: msData(inc.lastEnd),
      paged: inc.paged,
      ...(inc.pagedSeverity ? { pagedSeverity: inc.pagedSeverity } : {}),
      changedAt: msData(inc.changedAt),
    }));
    return { v: STATE_VERSION, data: { open: incidents.length, incidents } satisfies z.input<typeof CorrelatorData> };
  }

  /**
   * Replaces the open incidents by a snapshot's (as `snapshot` gave it, read back from JSON), in a correlator made
   * with the rules and options of now. Returns undefined when it took it, else why not (`data.incidents[2].firing:
   * …`); the correlator then holds no incident, as new. Never throws on what the snapshot holds, and never takes part
   * of one. An incident whose rule is gone is taken without one (see the header; named in restoreNotes). Incidents
   * past maxOpen are all kept: resolving them early would need transitions restore cannot give, and the pager has
   * them; they go as they end, and each new incident makes room as ever.
   */
  restore(state: unknown): string | undefined {
    this.open.clear();
    this.byAlert.clear();
    this.restoreNotes = [];
    const parsed = parseSnapshot(state, STATE_VERSION, CorrelatorData, 'correlator');
    if ('reason' in parsed) return parsed.reason;
    for (const d of parsed.data.incidents) {
      const rule = d.rule === undefined ? undefined : this.rules.find((r) => r.id === d.rule);
      if (d.rule !== undefined && !rule) this.restoreNotes.push(`incident ${d.id}: no incident rule ${d.rule} any more: restored as an incident of no rule`);
      const inc: OpenIncident = {
        id: d.id,
        ...(rule ? { rule } : {}),
        key: d.key,
        first: d.first,
        startedAt: ms(d.first.alert.started_at),
        filedAt: d.filed ?? d.first.alert.started_at,
        members: new Map(),
        firing: d.firing,
        ownFiring: d.ownFiring,
        ownLastEnd: d.ownLastEnd,
        lastEnd: d.lastEnd,
        changedAt: d.changedAt,
        paged: d.paged,
        ...(d.pagedSeverity ? { pagedSeverity: d.pagedSeverity } : {}),
        timeline: d.timeline,
      };
      for (const { key, alert, firing, own, indexed } of d.members) {
        const m: Member = { alert, firing, own };
        inc.members.set(key ?? memberKey(alert), m);
        if (indexed) this.byAlert.set(alert.alert.id, { inc, m });
      }
      for (const { alert, firing, own } of d.detached ?? []) this.byAlert.set(alert.alert.id, { inc, m: { alert, firing, own } });
      this.open.set(inc.id, inc);
    }
    return undefined;
  }

  /** Incidents open now. */
  get size(): number {
    return this.open.size;
  }

  /** A restored correlator going on after `ms` in which nothing ran (a restart): that time is no quiet the incidents
   * heard (settle_s counts wall-clock time without news while the events are being read), so it is added to when
   * each last changed. Without it a backfill interrupted for longer than settle_s decides its incidents at once,
   * before the alerts still unread in Kafka could join them. */
  resumeAfter(ms: number): void {
    if (!(ms > 0)) return;
    for (const inc of this.open.values()) inc.changedAt += ms;
  }

  /** Files the alert transitions (each gets `incident.id`), then checks the deadlines at `now` (ms). */
  onAlerts(alerts: Alert[], now: number): IncidentChange[] {
    const out: IncidentChange[] = [];
    for (const a of alerts) out.push(...(a.alert.status === 'firing' ? this.fired(a, now) : this.resolved(a, now)));
    out.push(...this.tick(now));
    return out;
  }

  /** Pages the incidents that have been firing for their min_duration_s and resolves those whose hold ran out. */
  tick(now: number): IncidentChange[] {
    const out: IncidentChange[] = [];
    for (const inc of this.open.values()) {
      if (inc.firing > 0 && !inc.paged && this.due(inc, inc.startedAt + this.minDurationMs(inc), now)) out.push(this.page(inc));
      else if (inc.firing === 0 && this.due(inc, inc.lastEnd + this.holdMs(inc), now)) out.push(...this.close(inc));
    }
    return out;
  }

  /** Resolves every open incident as of its last alert (end of a `detect` run: nothing more will come). Incidents
   * still firing stay as they are and are returned apart. */
  flush(now: number): { changes: IncidentChange[]; stillFiring: Incident[] } {
    const changes = this.tick(now);
    for (const inc of [...this.open.values()]) if (inc.firing === 0) changes.push(...this.close(inc));
    return { changes, stillFiring: [...this.open.values()].map((inc) => this.document(inc, inc.startedAt, 'firing')) };
  }

  /** Whether a deadline counts as passed at `now`: it has, and either it passed while we watched or the incident
   * has been left alone for settleS since (see the header). */
  private due(inc: OpenIncident, deadline: number, now: number): boolean {
    const settle = (this.opts.settleS ?? 0) * 1000;
    return now >= deadline && (inc.changedAt < deadline + settle || now - inc.changedAt >= settle);
  }

  private page(inc: OpenIncident): IncidentChange {
    inc.paged = true;
    // Dated when it became due (a replay pages as of then), not when the tick came.
    const at = inc.startedAt + this.minDurationMs(inc);
    this.note(inc, at, `paged: firing for ${Math.round((at - inc.startedAt) / 1000)} s (min_duration_s)`);
    return this.change(inc, at, 'firing', true);
  }

  private minDurationMs(inc: OpenIncident): number {
    return (inc.rule?.min_duration_s ?? this.opts.minDurationS) * 1000;
  }

  private holdMs(inc: OpenIncident): number {
    return (inc.rule?.hold_s ?? 0) * 1000;
  }

  private fired(a: Alert, now: number): IncidentChange[] {
    const at = ms(a['@timestamp']);
    const known = this.byAlert.get(a.alert.id);
    if (known?.m.firing) {
      // Still firing (a severity change, say): the same occurrence.
      known.m.alert = a;
      known.inc.changedAt = now;
      a.incident = { id: known.inc.id };
      this.note(known.inc, at, `${describe(a)} changed: ${a.alert.severity}`);
      return [this.change(known.inc, at, 'firing', false)];
    }
    // A new occurrence (alert ids are stable across outages): filed afresh, like any new alert; the rules decide
    // whether it is still the open incident's cause.
    const rule = this.rules.find((r) => matches(r, a));
    const key = rule ? keyOf(rule, a) : undefined;
    const mapKey = rule && key !== undefined ? `${rule.id}\u0000${key}` : undefined;
    // The open incident the alert fits, by a join or by its key (the paged one, if several). Alerts of a backfill
    // arrive in any order, so a late one may show two incidents to be one cause all along: `absorb` merges them.
    const fits = [...this.open.values()].filter((inc) => this.fitsInto(a, inc));
    if (fits.length > 0) {
      const target =
        this.closest(
          fits.filter((inc) => inc.paged),
          at,
        ) ?? this.closest(fits, at)!;
      return [this.add(target, a, target.rule === rule, `${describe(a)} joined`, now), ...this.absorb(target, at, now)];
    }
    const out = this.makeRoom();
    const inc: OpenIncident = {
      id: rule && key !== undefined ? stableId('incident', rule.id, key, a.alert.started_at) : stableId('incident', a.alert.id, a.alert.started_at),
      ...(rule && key !== undefined ? { rule } : {}),
      key: mapKey ?? a.alert.id,
      first: a,
      startedAt: ms(a.alert.started_at),
      filedAt: a.alert.started_at,
      members: new Map(),
      firing: 0,
      ownFiring: 0,
      ownLastEnd: -Infinity,
      lastEnd: -Infinity,
      changedAt: now,
      paged: false,
      timeline: [],
    };
    this.open.set(inc.id, inc);
    out.push(this.add(inc, a, true, `opened by ${describe(a)}: ${a.message}`, now));
    return out;
  }

  private resolved(a: Alert, now: number): IncidentChange[] {
    const known = this.byAlert.get(a.alert.id);
    if (!known) return []; // fired before this process started: nothing of it is held here
    const { inc, m } = known;
    m.alert = a;
    inc.changedAt = now;
    a.incident = { id: inc.id };
    const at = ms(a['@timestamp']);
    if (m.firing) this.setFiring(inc, m, false);
    const end = ms(a.alert.ended_at ?? a['@timestamp']);
    if (m.own) inc.ownLastEnd = Math.max(inc.ownLastEnd, end);
    inc.lastEnd = Math.max(inc.lastEnd, end);
    this.note(inc, at, `${describe(a)} resolved`);
    return [this.change(inc, at, 'firing', false), ...this.absorb(inc, at, now)];
  }

  /** Whether the alert belongs in the open incident: by the join of its rule (an incident of a listed rule sharing
   * a value of `join.on`), or by its rule and key; either way only if it falls within the incident's span. */
  private fitsInto(a: Alert, inc: OpenIncident, strict = false): boolean {
    if (!inc.rule) return false;
    const rule = this.rules.find((r) => matches(r, a));
    if (!rule) return false;
    // When it started: a member's latest transition may be its resolution, days later.
    const at = ms(a.alert.started_at);
    if (rule.join && rule.join.incidents.includes(inc.rule.id) && this.spans(inc, at, inc.rule.id === rule.id, strict)) {
      const on = rule.join.on;
      const mine = new Set(on.map((f) => alertField(a, f)).filter((v) => v !== undefined));
      if ([...inc.members.values()].some((m) => on.some((f) => mine.has(alertField(m.alert, f)!)))) return true;
    }
    const key = keyOf(rule, a);
    return key !== undefined && inc.key === `${rule.id}\u0000${key}` && this.spans(inc, at, true, strict);
  }

  /** After an incident grew (a late alert widened its span), the open incidents not yet paged that it now shows to
   * be the same cause: one of their own alerts fits it, or one of its own alerts fits them. */
  private absorb(inc: OpenIncident, at: number, now: number): IncidentChange[] {
    const out: IncidentChange[] = [];
    for (const other of [...this.open.values()]) {
      if (other === inc || !this.open.has(inc.id) || (other.paged && inc.paged)) continue;
      // Only alerts an incident took by its own rule say what it is: one that joined it (a new error during an
      // outage) fits elsewhere too, and would chain causes together.
      const own = (x: OpenIncident) => [...x.members.values()].filter((m) => m.own);
      const same = own(other).some((m) => this.fitsInto(m.alert, inc, true)) || own(inc).some((m) => this.fitsInto(m.alert, other, true));
      if (!same) continue;
      if (inc.paged || (!other.paged && inc.startedAt <= other.startedAt)) out.push(...this.merge(other, inc, at, now));
      else {
        out.push(...this.merge(inc, other, at, now));
        return [...out, ...this.absorb(other, at, now)];
      }
    }
    return out;
  }

  /** Moves an incident not yet paged into another: its alerts, its start if earlier, its timeline. Its own document
   * is closed, naming the incident it went into. */
  private merge(from: OpenIncident, into: OpenIncident, at: number, now: number): IncidentChange[] {
    this.open.delete(from.id);
    for (const [k, m] of from.members) {
      into.members.set(k, m);
      if (this.byAlert.get(m.alert.alert.id)?.inc === from) this.byAlert.set(m.alert.alert.id, { inc: into, m });
    }
    if (from.startedAt < into.startedAt) [into.startedAt, into.first] = [from.startedAt, from.first];
    into.firing = into.ownFiring = 0;
    into.ownLastEnd = into.lastEnd = -Infinity;
    for (const m of into.members.values()) {
      m.own = into.rule !== undefined && matches(into.rule, m.alert);
      if (m.firing) [into.firing, into.ownFiring] = [into.firing + 1, into.ownFiring + (m.own ? 1 : 0)];
      const end = m.firing ? -Infinity : ms(m.alert.alert.ended_at ?? m.alert['@timestamp']);
      into.lastEnd = Math.max(into.lastEnd, end);
      if (m.own) into.ownLastEnd = Math.max(into.ownLastEnd, end);
    }
    into.timeline = [...from.timeline, ...into.timeline].sort((x, y) => x.at.localeCompare(y.at)).slice(0, TIMELINE_MAX);
    into.changedAt = now;
    this.note(into, at, `${from.id} merged in: its alerts arrived before the ones that showed it is the same cause`);
    this.note(from, at, `merged into ${into.id}`);
    const closed = this.document(from, at, 'firing');
    closed.incident.status = 'resolved';
    closed.incident.merged_into = into.id;
    return [{ incident: closed, filedAt: from.filedAt }, this.change(into, at, 'firing', false)];
  }

  /** Whether an alert at `at` (event time) falls within the incident's span, give or take its hold: from its start
   * to the end of its last alert (of its own rule, for `own`), or open-ended while one fires. Alerts of a backfill
   * arrive in any order: this keeps an alert of 4 February out of an outage of 9 February that is open now.
   * `strict` (merging incidents after the fact) counts only what is known of the alerts' times: one firing now has
   * ended, for all we know, when it started; its resolution, when it comes, widens the span again. */
  private spans(inc: OpenIncident, at: number, own: boolean, strict = false): boolean {
    const hold = this.holdMs(inc);
    let end: number;
    if (!strict) end = (own ? inc.ownFiring : inc.firing) > 0 ? Infinity : own ? inc.ownLastEnd : inc.lastEnd;
    else {
      end = -Infinity;
      for (const m of inc.members.values()) {
        if (own && !m.own) continue;
        end = Math.max(end, ms(m.firing ? m.alert.alert.started_at : (m.alert.alert.ended_at ?? m.alert['@timestamp'])));
      }
    }
    return at >= inc.startedAt - hold && at <= end + hold;
  }

  /** Of the incidents an alert at `at` fits, the one that started last before it (else the first after it). */
  private closest(list: OpenIncident[], at: number): OpenIncident | undefined {
    const before = list.filter((inc) => inc.startedAt <= at).sort((x, y) => y.startedAt - x.startedAt);
    return before[0] ?? list.sort((x, y) => x.startedAt - y.startedAt)[0];
  }

  private add(inc: OpenIncident, a: Alert, own: boolean, what: string, now: number): IncidentChange {
    const m: Member = { alert: a, firing: false, own };
    inc.changedAt = now;
    // An earlier alert that arrived late (a backfill) starts the incident, until the pager was told otherwise.
    if (!inc.paged && ms(a.alert.started_at) < inc.startedAt) [inc.startedAt, inc.first] = [ms(a.alert.started_at), a];
    // Keyed by occurrence: an earlier occurrence of the same alert stays in the record, under its own start.
    inc.members.set(memberKey(a), m);
    this.byAlert.set(a.alert.id, { inc, m });
    this.setFiring(inc, m, true);
    a.incident = { id: inc.id };
    const at = ms(a['@timestamp']);
    this.note(inc, at, what);
    return this.change(inc, at, 'firing', false);
  }

  private setFiring(inc: OpenIncident, m: Member, firing: boolean): void {
    const d = firing ? 1 : -1;
    m.firing = firing;
    inc.firing += d;
    if (m.own) inc.ownFiring += d;
  }

  /** Resolves the incident. One that lasted its min_duration_s but was not paged yet (it fired and ended between
   * two looks, or in a backfill) is paged first: how long it lasted decides, not when we looked. */
  private close(inc: OpenIncident): IncidentChange[] {
    const out = !inc.paged && inc.lastEnd - inc.startedAt >= this.minDurationMs(inc) ? [this.page(inc)] : [];
    this.open.delete(inc.id);
    for (const { alert } of inc.members.values()) if (this.byAlert.get(alert.alert.id)?.inc === inc) this.byAlert.delete(alert.alert.id);
    this.note(inc, inc.lastEnd, inc.paged ? 'resolved' : `ended after ${Math.round((inc.lastEnd - inc.startedAt) / 1000)} s, shorter than its min_duration_s: not paged`);
    out.push(this.change(inc, inc.lastEnd, 'resolved', inc.paged));
    return out;
  }

  /** Over the cap, the oldest incident with nothing firing is resolved now rather than held. */
  private makeRoom(): IncidentChange[] {
    if (this.open.size < (this.opts.maxOpen ?? DEFAULT_MAX_OPEN)) return [];
    const quiet = [...this.open.values()].find((inc) => inc.firing === 0);
    return quiet ? this.close(quiet) : [];
  }

  private note(inc: OpenIncident, at: number, what: string): void {
    if (inc.timeline.length < TIMELINE_MAX) inc.timeline.push({ at: iso(at), what });
    else inc.timeline[TIMELINE_MAX - 1] = { at: iso(at), what: `… (${what})` };
  }

  private change(inc: OpenIncident, at: number, status: 'firing' | 'resolved', page: boolean): IncidentChange {
    const incident = this.document(inc, at, status);
    // A paged incident whose severity rose (the reply storm, severity page, joining a critical outage) is paged
    // again under the same id: the pager updates the incident, the on-call engineer hears of the escalation.
    const escalated = !page && status === 'firing' && inc.paged && RANK[incident.incident.severity] > RANK[inc.pagedSeverity ?? 'info'];
    if (escalated) this.note(inc, at, `severity raised to ${incident.incident.severity}`);
    if (page || escalated) inc.pagedSeverity = incident.incident.severity;
    return { incident, filedAt: inc.filedAt, ...(page || escalated ? { page: pageOf(incident, inc.first) } : {}) };
  }

  private document(inc: OpenIncident, at: number, status: 'firing' | 'resolved'): Incident {
    const members = [...inc.members.values()];
    const severity = members.reduce<Severity>((s, m) => (RANK[m.alert.alert.severity] > RANK[s] ? m.alert.alert.severity : s), 'info');
    const resolved = status === 'resolved';
    return {
      '@timestamp': iso(at),
      incident: {
        id: inc.id,
        ...(inc.rule ? { rule: inc.rule.id } : {}),
        cause: inc.rule?.cause ?? inc.first.rule.name,
        status,
        severity,
        paged: inc.paged,
        started_at: inc.first.alert.started_at,
        ...(resolved ? { ended_at: iso(inc.lastEnd), duration_s: (inc.lastEnd - inc.startedAt) / 1000 } : {}),
        services: [...new Set(members.map((m) => m.alert.service.name))],
        hosts: [...new Set(members.map((m) => m.alert.host.name))],
        alert_ids: [...new Set(members.map((m) => m.alert.alert.id))],
        runbook: inc.rule?.runbook ?? inc.first.alert.runbook,
      },
      alerts: members.map(({ alert: a }) => ({
        id: a.alert.id,
        rule: a.rule.id,
        status: a.alert.status,
        host: a.host.name,
        service: a.service.name,
        started_at: a.alert.started_at,
        ...(a.alert.ended_at ? { ended_at: a.alert.ended_at } : {}),
        group: a.alert.group,
      })),
      timeline: [...inc.timeline],
      message: inc.first.message,
      evidence: inc.first.evidence,
    };
  }
}

/** An occurrence's key among its incident's alerts: the alert's id and start. */
function memberKey(a: Alert): string {
  return `${a.alert.id}\u0000${a.alert.started_at}`;
}

function describe(a: Alert): string {
  const kind = a.alert.group.kind ? ` (${a.alert.group.kind})` : '';
  return `${a.rule.id}${kind} of ${a.service.name} on ${a.host.name}`;
}

/** The incident as the notifiers see it: one alert whose id is the incident's (PagerDuty's dedup key, Alertmanager's
 * alert_id), labelled like its first alert (alertname, host, service, its group) plus the incident rule, so routes
 * and silences written for the alerts still apply. The other services and hosts are in the message. */
export function pageOf(inc: Incident, first: Alert): Alert {
  const i = inc.incident;
  const more = i.alert_ids.length > 1 ? ` (${i.alert_ids.length} alerts of one cause: ${i.services.join(', ')} on ${i.hosts.join(', ')})` : '';
  return {
    '@timestamp': inc['@timestamp'],
    rule: first.rule,
    alert: {
      id: i.id,
      status: i.status,
      severity: i.severity,
      started_at: i.started_at,
      ...(i.ended_at ? { ended_at: i.ended_at, duration_s: i.duration_s } : {}),
      runbook: i.runbook,
      group: { ...first.alert.group, ...(i.rule ? { incident: i.rule } : {}) },
      ...(first.alert.labels ? { labels: first.alert.labels } : {}),
    },
    host: first.host,
    service: first.service,
    message: i.rule ? `${i.cause}: ${first.message}${more}` : first.message,
    evidence: first.evidence,
    incident: { id: i.id, ...(i.rule ? { rule: i.rule } : {}), cause: i.cause, services: i.services, hosts: i.hosts, alert_ids: i.alert_ids },
  };
}
