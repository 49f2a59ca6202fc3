// What a detector remembers per key (a group of a rule, a connection, a check code), bounded. Log lines choose
// the keys, so without a bound a stream of distinct ones (1.6M connection uuids took the AMQP detector to 524 MB)
// grows a process until it dies. Two limits, from the rule's `state` (defaults below):
//   - idle: an entry no event touched for `idle_s` of event time expires (relative to the event being handled,
//     not to the newest one ever seen: one line dated 9999 would otherwise expire every entry for good);
//   - cap: at most `max_entries` entries; the least recently touched go first.
// Entries that hold an open alert never expire: they end by their rule (a resolving line, a quiet period). Past
// the cap they go last, only when no other entry is left to drop, and not silently: the caller resolves their
// alert with the reason (an alert that stays firing while nobody tracks it would never resolve). Every eviction is
// counted (stackwatch_detector_state_evictions_total{rule, reason}).
//
// A checkpoint carries the entries as JSON data (`snapshot`, `load`): in the order eviction takes them, each with the
// event time it was last touched and whether it was filed as open, so that a restored state expires and evicts as the
// one it was taken from would have.
import { z } from 'zod';
import { stateEvicted } from '../core/metrics.ts';
import type { Rule } from './rules.ts';

export const StateLimits = z.strictObject({
  /** Entries of each kind of state the rule's detector keeps (groups, connections, …). */
  max_entries: z.number().int().positive().default(10_000),
  /** An entry without an open alert and without an event for this long (event time) expires. */
  idle_s: z.number().positive().default(86_400),
});
export type StateLimits = z.infer<typeof StateLimits>;

/** The rule's limits, with the defaults for a rule that names none. */
export function stateLimits(rule: Rule): StateLimits {
  return rule.state ?? StateLimits.parse({});
}

/** An event time (ms) in a detector's state as JSON data: a time that did not parse (NaN) is written null, as
 * JSON.stringify would write it, and read back as NaN, so that a restored detector compares times as it did. */
export const Time = z
  .number()
  .nullable()
  .transform((ms) => ms ?? NaN);

/** An event time as Time writes it. */
export function time(ms: number): number | null {
  return Number.isNaN(ms) ? null : ms;
}

/** The schema of a KeyedState's entries as JSON data (KeyedState.snapshot), its values `value`: one key, time and
 * value per entry, the quiet entries least recently touched first, then the `open` ones in the same order. Columns
 * rather than an object per entry: a state of 10,000 entries is 10,000 objects' field names smaller. */
export function keyedData<T extends z.ZodType>(value: T) {
  return z
    .strictObject({
      keys: z.array(z.string()),
      seen: z.array(Time),
      values: z.array(value),
      /** How many of the last entries hold an open alert (filed apart: they go last). */
      open: z.number().int().nonnegative(),
    })
    .superRefine((d, ctx) => {
      if (d.seen.length !== d.keys.length) ctx.addIssue({ code: 'custom', path: ['seen'], message: `expected one time per key (${d.keys.length}), got ${d.seen.length}` });
      if (d.values.length !== d.keys.length) ctx.addIssue({ code: 'custom', path: ['values'], message: `expected one value per key (${d.keys.length}), got ${d.values.length}` });
      if (d.open > d.keys.length) ctx.addIssue({ code: 'custom', path: ['open'], message: `more open entries (${d.open}) than entries (${d.keys.length})` });
      const keys = new Set<string>();
      d.keys.forEach((k, i) => {
        if (keys.has(k)) ctx.addIssue({ code: 'custom', path: ['keys', i], message: `the key ${JSON.stringify(k)} appears twice` });
        keys.add(k);
      });
    });
}

/** A KeyedState's entries as JSON data, their values `T` (what keyedData reads). */
export interface KeyedData<T> {
  keys: string[];
  seen: (number | null)[];
  values: T[];
  open: number;
}

export interface Evicted<V> {
  key: string;
  value: V;
  reason: 'idle' | 'cap';
}

/** What most calls return: nothing dropped (one shared empty array, not a new one a call). */
const NONE: never[] = [];

interface Slot<V> {
  key: string;
  value: V;
  /** Event time (ms) of the last event that touched the entry. */
  seen: number;
  open: boolean;
  prev?: Slot<V>;
  next?: Slot<V>;
}

/** Entries in the order they were last touched, oldest first: a linked list, so that taking the oldest is O(1).
 * (Iterating a Map from its start is not: V8 keeps deleted entries there until it rehashes, and a cache that
 * drops its oldest entry on every insert walks over thousands of them each time.) */
class Order<V> {
  head?: Slot<V>;
  tail?: Slot<V>;
  size = 0;

  push(s: Slot<V>): void {
    s.prev = this.tail;
    s.next = undefined;
    if (this.tail) this.tail.next = s;
    else this.head = s;
    this.tail = s;
    this.size++;
  }

  remove(s: Slot<V>): void {
    if (s.prev) s.prev.next = s.next;
    else this.head = s.next;
    if (s.next) s.next.prev = s.prev;
    else this.tail = s.prev;
    s.prev = s.next = undefined;
    this.size--;
  }
}

export class KeyedState<V> {
  private readonly slots = new Map<string, Slot<V>>();
  /** Entries without an open alert, and entries with one, each least recently touched first. */
  private readonly quiet = new Order<V>();
  private readonly open = new Order<V>();

  constructor(
    private readonly rule: string,
    readonly limits: StateLimits,
    /** Whether an entry holds an open alert (asked whenever it is stored). */
    private readonly isOpen: (v: V) => boolean = () => false,
  ) {}

  get size(): number {
    return this.slots.size;
  }

  /** Entries that hold an open alert. */
  get openCount(): number {
    return this.open.size;
  }

  get(key: string): V | undefined {
    return this.slots.get(key)?.value;
  }

  has(key: string): boolean {
    return this.slots.has(key);
  }

  /**
   * Stores or refreshes an entry at event time `at` (ms), filed by whether it holds an open alert now, and makes
   * room: returns the entries dropped, expired ones and those over the cap. Open entries among them are the
   * caller's to resolve. The entry just stored is never among them.
   */
  set(key: string, value: V, at: number): readonly Evicted<V>[] {
    let slot = this.slots.get(key);
    if (slot) {
      (slot.open ? this.open : this.quiet).remove(slot);
      slot.value = value;
      slot.seen = Math.max(at, slot.seen);
      slot.open = this.isOpen(value);
    } else {
      slot = { key, value, seen: at, open: this.isOpen(value) };
      this.slots.set(key, slot);
    }
    (slot.open ? this.open : this.quiet).push(slot);
    return this.makeRoom(slot, at);
  }

  delete(key: string): boolean {
    const s = this.slots.get(key);
    if (!s) return false;
    this.drop(s);
    return true;
  }

  *entries(): IterableIterator<[string, V]> {
    for (const order of [this.quiet, this.open]) for (let s = order.head; s; s = s.next) yield [s.key, s.value];
  }

  /** The entries as JSON data, each value made data by `encode` (a copy: later events must not change the snapshot),
   * in the order eviction takes them; `load` takes it back. */
  snapshot<T>(encode: (value: V, key: string) => T): KeyedData<T> {
    const out: KeyedData<T> = { keys: [], seen: [], values: [], open: this.open.size };
    for (const order of [this.quiet, this.open]) {
      for (let s = order.head; s; s = s.next) {
        out.keys.push(s.key);
        out.seen.push(time(s.seen));
        out.values.push(encode(s.value, s.key));
      }
    }
    return out;
  }

  /**
   * Replaces what it holds by the entries of a snapshot (values decoded, times read by Time), in their order and
   * filed as they were (open or not), and makes room as `set` does: past the rule's max_entries (a snapshot of a
   * rule whose cap was larger) the oldest quiet entries go first, then the oldest open ones, counted as evictions.
   * Returns the entries dropped, for the caller to forget what else it kept of them (their alerts, if open, stay
   * unresolved: a restore gives no transitions). Idle entries are left to the next event, whose time decides what is
   * idle, as it would have.
   */
  load(data: { keys: readonly string[]; seen: readonly number[]; values: readonly V[]; open: number }): readonly Evicted<V>[] {
    for (let s = this.quiet.head ?? this.open.head; s; s = this.quiet.head ?? this.open.head) this.drop(s);
    const firstOpen = data.keys.length - data.open;
    data.keys.forEach((key, i) => {
      const slot: Slot<V> = { key, value: data.values[i], seen: data.seen[i], open: i >= firstOpen };
      const held = this.slots.get(key);
      if (held) this.drop(held);
      this.slots.set(key, slot);
      (slot.open ? this.open : this.quiet).push(slot);
    });
    const out: Evicted<V>[] = [];
    while (this.slots.size > this.limits.max_entries) {
      const s = (this.quiet.head ?? this.open.head)!;
      this.drop(s);
      out.push({ key: s.key, value: s.value, reason: 'cap' });
    }
    if (out.length > 0) stateEvicted(this.rule, 'cap', out.length);
    return out;
  }

  private drop(s: Slot<V>): void {
    this.slots.delete(s.key);
    (s.open ? this.open : this.quiet).remove(s);
  }

  private makeRoom(keep: Slot<V>, at: number): readonly Evicted<V>[] {
    const out: Evicted<V>[] = [];
    const idleBefore = at - this.limits.idle_s * 1000;
    if (this.slots.size <= this.limits.max_entries && !(this.quiet.head && this.quiet.head.seen < idleBefore)) return NONE;
    for (let s = this.quiet.head; s && s !== keep && s.seen < idleBefore; s = this.quiet.head) {
      this.drop(s);
      out.push({ key: s.key, value: s.value, reason: 'idle' });
    }
    const idle = out.length;
    while (this.slots.size > this.limits.max_entries) {
      // The oldest quiet entry, else the oldest open one; never the one just stored (the newest of its order, so
      // the cap of at least 1 leaves another to take).
      const order = this.quiet.size > (keep.open ? 0 : 1) ? this.quiet : this.open;
      const s = order.head === keep ? keep.next! : order.head!;
      this.drop(s);
      out.push({ key: s.key, value: s.value, reason: 'cap' });
    }
    if (idle > 0) stateEvicted(this.rule, 'idle', idle);
    if (out.length > idle) stateEvicted(this.rule, 'cap', out.length - idle);
    return out;
  }
}
