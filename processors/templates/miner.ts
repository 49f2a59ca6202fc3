// The template miner: every log message gets a template (`log.template.id`, `log.template.text`), learnt online,
// without per-dataset configuration. A Drain-like tree with two levels of its own and masking below them:
//
//   1. masking (mask.ts) writes each variable a line shows by its form (a digit, quotes, a path) as `<*>`;
//   2. the first split is the group the caller gives: oslo's logger name where there is one (a template never
//      spans two loggers' statements), else the service; the second is the number of tokens, as in Drain;
//   3. within a split, a line joins the template whose tokens it equals, `<*>` matching anything. A line that
//      equals none starts a template of its own. Drain's similarity threshold is not used: it merges
//      `VM Paused` with `VM Resumed` (Drain's GA on Loghub's OpenStack is 0.73 for that reason). Instead, a
//      position becomes `<*>` when templates that are equal everywhere else have shown `distinctValues` (8)
//      different words there: an enumeration (GET/POST/DELETE, four VM states) stays constant, a name that
//      takes many values becomes a variable.
//
// A template's id is a stable hash of its text (`stableId`): two processors that mine the same line give it the
// same id, and so does a restart. The id changes when a template generalises (its text changes): documents
// indexed before keep the earlier, narrower id. Two splits can hold templates of one text (the same message from
// two loggers): they share the id.
//
// State is bounded: at most `maxTemplates` templates, evicted as a segmented LRU — templates seen once go first,
// the least recently seen of them, so a flood of one-off lines cannot push out the templates that recur (those
// whose second line came before `maxTemplates` other new templates did); only when none is left does the least
// recently seen of the others go. The template just used is never the one evicted. An evicted template that comes
// back gets the id it had (the id is its text's), its count starts again. A template is at most MAX_TOKENS tokens
// and MAX_TEMPLATE_CHARS characters (mask.ts), and holds no piece of the line it came from.
//
// State as JSON, two ways. `export()`/`import()` (MinerState) carry the templates, and import learns them again:
// enough to seed a miner, but not the miner that exported them. `snapshot()`/`restore()` carry the miner itself, so
// that a processor checkpointing it goes on after a restart exactly as it would have without one: the next lines get
// the same templates (id and text), generalise at the same line, evict the same templates. A snapshot holds the
// templates (their tokens, generalised positions, counts, times, labels) and rebuilds the index from them: the map by
// key, the patterns, the signatures. What the templates alone do not say is stored beside them, small: the order the
// templates were made in (siblings are listed, and a hash collision is won, in that order), the LRU order, the
// order of a split's patterns when it has several (a line that fits two is given the first), the sibling sets that
// were refused a generalisation (blocked), and the positions a template holds but never registered (refused by a
// blocked set, or by a hash collision with a template since gone: rebuilt, they would register).
//
// Cost: a line is masked (linear in its length), then looked up by the string of its tokens in a Map — once, and
// once more per generalisation pattern of its split (at most MAX_PATTERNS, usually none): 130-350k messages/s on
// one core (`npm run bench -- templates`). A new template hashes each of its positions (O(tokens) in all, rolling
// hashes) to find the templates that differ from it at that position only, and registers them; evicting one
// unregisters them: a flood of lines that are each a new template runs at 25-50k/s.
import { z } from 'zod';
import { stableId, type LogDocument } from '../../core/events.ts';
import { parseSnapshot } from '../../core/schema.ts';
import { MAX_TOKENS, maskTokens, templateText, VAR } from './mask.ts';

export const MinerOptions = z.object({
  /** Templates kept; beyond, the least useful are evicted (see above). A template takes about 1.3 KB of heap (the
   * Loghub and hotsos samples), at most about 3.8 KB (MAX_TOKENS tokens): 6–19 MiB at the bound. The bundled 2022
   * sosreport (4 services, 5 days, DEBUG) needs 520. */
  maxTemplates: z.number().int().min(1).default(5_000),
  /** Different words at one position, elsewhere equal, that make the position a variable. */
  distinctValues: z.number().int().min(2).default(8),
});
export type MinerOptions = z.input<typeof MinerOptions>;

/** Generalisation patterns (sets of positions the tree made `<*>`) per split, each tried for a line of the split. */
export const MAX_PATTERNS = 16;
/** Values kept per label (services, levels) of a template, and their length. */
export const MAX_LABEL_VALUES = 16;
const MAX_LABEL_CHARS = 128;

/** A miner's state as JSON, for `import`. */
export const MinerState = z.object({
  version: z.literal(1),
  /** In eviction order: the first goes first. */
  templates: z.array(
    z.object({
      group: z.string(),
      tokens: z.array(z.string()).max(MAX_TOKENS),
      /** Positions the tree made `<*>` (not masking). */
      general: z.array(z.number().int().min(0)),
      count: z.number().int().min(1),
      first_seen: z.string().optional(),
      last_seen: z.string().optional(),
      labels: z.record(z.string(), z.array(z.string())).optional(),
    }),
  ),
});
export type MinerState = z.infer<typeof MinerState>;

/** The version of the snapshot's shape (snapshot, restore). */
const STATE_VERSION = 1;

/** A miner as JSON data (snapshot, restore). */
export interface MinerSnapshot {
  v: number;
  data: unknown;
}

/** A template's tokens: joined by one blank, as masking makes them (none empty, none with a blank); a list for the
 * others (a state imported from elsewhere may hold them). U+0002 joins tokens in a key: no token may hold it. */
const Tokens = z
  .union([z.string().transform((t) => (t === '' ? [] : t.split(' '))), z.array(z.string())])
  .pipe(z.array(z.string().refine((t) => !t.includes(SEP), { error: 'a token holds U+0002' })).max(MAX_TOKENS));

/** An event time (first and last seen): a number when it is an ISO 8601 UTC time that toISOString writes back the
 * same (the parser's `…T…Z`, 13 digits rather than 26 characters), else the text; null when the template has none. */
const SeenTime = z.union([
  z
    .number()
    .int()
    .min(-8.64e15)
    .max(8.64e15)
    .transform((ms) => new Date(ms).toISOString()),
  z.string(),
  z.null(),
]);

/** A template and a position of it: [the template's index in the snapshot, the position]. */
const AtPosition = z.tuple([z.number().int().nonnegative(), z.number().int().nonnegative()]);

/**
 * A miner's snapshot. The templates as columns (one entry per template in each, in the order they were made):
 * field names once, not once a template. The index is rebuilt from them; what they do not say is beside them (see
 * the header).
 */
const MinerData = z
  .strictObject({
    /** The splits' groups (loggers, services), each once. */
    groups: z.array(z.string()),
    /** Each template's group: an index into `groups`. */
    group: z.array(z.number().int().nonnegative()),
    tokens: z.array(Tokens),
    /** The positions the tree made `<*>`, ascending; absent when no template has one (most miners). */
    general: z.array(z.array(z.number().int().nonnegative())).optional(),
    count: z.array(z.number().int().min(1)),
    first: z.array(SeenTime),
    last: z.array(SeenTime),
    /** Absent when no template has labels (the processor gives none). Past MAX_LABEL_VALUES, the first are kept. */
    labels: z
      .array(
        z
          .record(
            z.string(),
            z.array(z.string()).transform((vs) => vs.slice(0, MAX_LABEL_VALUES)),
          )
          .nullable(),
      )
      .optional(),
    /** The templates (indices) in the order eviction takes them: the `once` first of them are the LRU segment of the
     * templates seen once, least recently seen first; then the others, likewise. */
    lru: z.array(z.number().int().nonnegative()),
    once: z.number().int().nonnegative(),
    /** The order of a split's generalisation patterns (each a list of positions), for splits that have several. */
    patterns: z.array(z.strictObject({ group: z.number().int().nonnegative(), tokens: z.number().int().nonnegative(), order: z.array(z.array(z.number().int())).min(1) })),
    /** Sibling sets refused a generalisation (MAX_PATTERNS): each by its first template and that one's position. */
    blocked: z.array(AtPosition),
    /** Constant positions a template did not register its signature at (see the header). */
    unregistered: z.array(AtPosition),
    evictions: z.number().int().nonnegative(),
    generalisations: z.number().int().nonnegative(),
  })
  .superRefine((d, ctx) => {
    const n = d.group.length;
    const issue = (path: PropertyKey[], message: string) => ctx.addIssue({ code: 'custom', path, message });
    for (const column of ['tokens', 'general', 'count', 'first', 'last', 'labels'] as const) {
      const length = d[column]?.length ?? n;
      if (length !== n) issue([column], `expected one entry per template (${n}), got ${length}`);
    }
    if (d.tokens.length !== n || (d.general && d.general.length !== n)) return;
    const keys = new Set<string>();
    for (let i = 0; i < n; i++) {
      if (d.group[i] >= d.groups.length) issue(['group', i], `no group ${d.group[i]} (${d.groups.length} groups)`);
      const general = d.general?.[i] ?? [];
      if (general.some((p, k) => p >= d.tokens[i].length || d.tokens[i][p] !== VAR || (k > 0 && p <= general[k - 1])))
        issue(['general', i], "expected ascending positions of the template's <*> tokens");
      const key = keyOf(d.groups[d.group[i]] ?? '', d.tokens[i]);
      if (keys.has(key)) issue(['tokens', i], 'the template appears twice');
      keys.add(key);
    }
    const order = new Set(d.lru);
    if (d.lru.length !== n || order.size !== n || d.lru.some((i) => i >= n)) issue(['lru'], `expected each template's index (0 to ${n - 1}) once`);
    if (d.once > n) issue(['once'], `more templates seen once (${d.once}) than templates (${n})`);
    const constant = ([i, pos]: [number, number]) => i < n && pos < d.tokens[i].length && d.tokens[i][pos] !== VAR;
    for (const column of ['blocked', 'unregistered'] as const) {
      d[column].forEach((at, k) => constant(at) || issue([column, k], 'expected a template and one of its constant positions'));
    }
    // A split's listed patterns are the generalised positions of its templates, each once.
    const splits = new Map<string, Set<string>>();
    for (let i = 0; i < n; i++) {
      const general = d.general?.[i] ?? [];
      if (general.length === 0) continue;
      const split = `${d.group[i]} ${d.tokens[i].length}`;
      (splits.get(split) ?? splits.set(split, new Set()).get(split)!).add(general.join(','));
    }
    d.patterns.forEach((p, k) => {
      const have = splits.get(`${p.group} ${p.tokens}`) ?? new Set();
      const listed = new Set(p.order.map((positions) => positions.join(',')));
      if (listed.size !== p.order.length || listed.size !== have.size || [...listed].some((x) => !have.has(x)))
        issue(['patterns', k], "expected the split's generalisation patterns, each once");
    });
  });
type MinerData = z.output<typeof MinerData>;

export interface AddOptions {
  /** The first split: the logger, else the service. */
  group?: string;
  /** The event's time, for first and last seen: ISO 8601 in UTC as the parser writes it (`…T…Z`, whose order as
   * text is the order in time: no date is parsed per line). */
  time?: string;
  /** Values to keep with the template (at most MAX_LABEL_VALUES each): `{ service, level }`. */
  labels?: Record<string, string>;
}

export interface Template {
  id: string;
  text: string;
}

export interface TemplateInfo extends Template {
  group: string;
  count: number;
  first_seen?: string;
  last_seen?: string;
  labels: Record<string, string[]>;
}

interface Cluster {
  /** group, U+0001, the tokens joined by U+0002: the template's identity in its split. */
  key: string;
  /** When it was made (held templates only: a counter of the miner's): the order it registered its signatures in. */
  seq: number;
  groupLength: number;
  tokenCount: number;
  /** Positions the tree made `<*>`, ascending (NONE when none: most templates). */
  general: readonly number[];
  /** What add() returns for it: made once. */
  template: Readonly<Template>;
  count: number;
  /** Event times (ISO 8601 UTC), undefined until a line with a time comes. */
  first?: string;
  last?: string;
  labels?: Map<string, Set<string>>;
  /** Set once it is merged into a more general template: where its lines are now. */
  mergedInto?: Cluster;
  /** Its place in its LRU segment (Segment). */
  segment?: Segment;
  prev?: Cluster;
  next?: Cluster;
}

/** One segment of the LRU: a doubly-linked list through the templates, least recently used first — O(1) to move a
 * template to the end and to take the first (a Set's first element, after many deletions at its front, is found by
 * stepping over their holes). */
class Segment {
  first?: Cluster;
  last?: Cluster;

  push(c: Cluster): void {
    c.segment = this;
    c.prev = this.last;
    c.next = undefined;
    if (this.last) this.last.next = c;
    else this.first = c;
    this.last = c;
  }

  delete(c: Cluster): void {
    if (c.segment !== this) return;
    if (c.prev) c.prev.next = c.next;
    else this.first = c.next;
    if (c.next) c.next.prev = c.prev;
    else this.last = c.prev;
    c.segment = c.prev = c.next = undefined;
  }

  *[Symbol.iterator](): Generator<Cluster> {
    for (let c = this.first; c; c = c.next) yield c;
  }
}

/** Two or more templates of one split that are equal except at `pos` (one alone is kept as itself in the map). */
interface Siblings {
  pos: number;
  members: Cluster[];
  /** The split has MAX_PATTERNS patterns already: this position stays as it is. */
  blocked?: boolean;
}

const NONE: readonly number[] = Object.freeze([]);
const SEP = '\u0002'; // never in a token: masking splits at every character ≤ U+0020
const GROUP_SEP = '\u0001';
const B1 = 0x01000193;
const B2 = 0x5bd1e995;

export class Miner {
  readonly options: Required<z.infer<typeof MinerOptions>>;
  private readonly byKey = new Map<string, Cluster>();
  /** Generalisation patterns in use per split (group + token count), with how many templates use each. */
  private readonly patterns = new Map<string, { positions: readonly number[]; refs: number }[]>();
  /** Position signatures (a hash of the split and every token but one): the template(s) with that signature. Keys
   * are 30-bit, small integers for V8; two templates that share a key are compared before they count as siblings. */
  private readonly sigs = new Map<number, Cluster | Siblings>();
  /** Segmented LRU: templates seen once, and the others; each in order of last use. */
  private readonly once = new Segment();
  private readonly more = new Segment();
  /** The template used last: used again, it is where it is in the LRU (a run of one template costs no move). */
  private lastTouched?: Cluster;
  /** Templates made since the start (Cluster.seq). */
  private made = 0;
  /** Since the start: templates evicted, generalisations made. */
  evictions = 0;
  generalisations = 0;

  constructor(options: MinerOptions = {}) {
    this.options = MinerOptions.parse(options);
  }

  /** Templates held now. */
  get size(): number {
    return this.byKey.size;
  }

  /** Grows whenever the templates held change (one made, generalised or evicted); not when only their counts and
   * times do. A checkpoint writes the miner again when this moved (and now and then for the counts). */
  get changes(): number {
    return this.made + this.generalisations + this.evictions;
  }

  /** The template of a message, learning from it. */
  add(message: string, opts: AddOptions = {}): Readonly<Template> {
    return this.learn(opts.group ?? '', maskTokens(message), 1, opts.time, opts.labels).template;
  }

  /** The template a message has now, without learning from it; undefined when none matches (not seen, or evicted). */
  match(message: string, group = ''): Readonly<Template> | undefined {
    return this.find(group, maskTokens(message))?.template;
  }

  /** Every template held, most frequent first (ties: by text, then group). */
  templates(): TemplateInfo[] {
    return [...this.byKey.values()]
      .map((c) => ({
        ...c.template,
        group: groupOf(c),
        count: c.count,
        first_seen: c.first,
        last_seen: c.last,
        labels: Object.fromEntries([...(c.labels ?? [])].map(([k, v]) => [k, [...v].sort()])),
      }))
      .sort((a, b) => b.count - a.count || compare(a.text, b.text) || compare(a.group, b.group));
  }

  export(): MinerState {
    return {
      version: 1,
      templates: [...this.once, ...this.more].map((c) => ({
        group: groupOf(c),
        tokens: tokensOf(c),
        general: [...c.general],
        count: c.count,
        first_seen: c.first,
        last_seen: c.last,
        ...(c.labels ? { labels: Object.fromEntries([...c.labels].map(([k, v]) => [k, [...v]])) } : {}),
      })),
    };
  }

  /** The miner as JSON data, for a checkpoint: `restore` in a new miner goes on exactly as this one would. A copy:
   * later lines do not change it. */
  snapshot(): MinerSnapshot {
    const clusters = [...this.byKey.values()].sort((a, b) => a.seq - b.seq);
    const index = new Map(clusters.map((c, i) => [c, i]));
    const groups = new Map<string, number>();
    const groupIndex = (group: string) => groups.get(group) ?? groups.set(group, groups.size).get(group)!;
    const tokens = clusters.map(tokensOf);
    const data = {
      groups: [] as string[],
      group: clusters.map((c) => groupIndex(groupOf(c))),
      tokens: tokens.map((t) => (t.every((x) => x !== '' && !x.includes(' ')) ? t.join(' ') : t)),
      ...(clusters.some((c) => c.general.length > 0) ? { general: clusters.map((c) => [...c.general]) } : {}),
      count: clusters.map((c) => c.count),
      first: clusters.map((c) => seenTime(c.first)),
      last: clusters.map((c) => seenTime(c.last)),
      ...(clusters.some((c) => c.labels) ? { labels: clusters.map((c) => (c.labels ? Object.fromEntries([...c.labels].map(([k, v]) => [k, [...v]])) : null)) } : {}),
      lru: [...this.once, ...this.more].map((c) => index.get(c)!),
      once: [...this.once].length,
      patterns: [...this.patterns]
        .filter(([, list]) => list.length > 1)
        .map(([split, list]) => {
          const at = split.lastIndexOf(GROUP_SEP);
          return { group: groupIndex(split.slice(0, at)), tokens: Number(split.slice(at + 1)), order: list.map((p) => [...p.positions]) };
        }),
      blocked: [] as [number, number][],
      unregistered: [] as [number, number][],
      evictions: this.evictions,
      generalisations: this.generalisations,
    } satisfies z.input<typeof MinerData>;
    data.groups = [...groups.keys()];
    // Where a template stands in the signatures' index: registered (alone, or in a sibling set, which may be
    // blocked: said once, by its first template), or not (see the header).
    const blocked = new Set<Siblings>();
    clusters.forEach((c, i) => {
      for (const [sig, pos] of signatures(c, tokens[i])) {
        const held = this.sigs.get(sig);
        if (held === c) continue;
        if (!held || !('members' in held) || !held.members.includes(c)) data.unregistered.push([i, pos]);
        else if (held.blocked && held.members[0] === c && !blocked.has(held)) {
          blocked.add(held);
          data.blocked.push([i, pos]);
        }
      }
    });
    return { v: STATE_VERSION, data };
  }

  /**
   * Replaces what the miner holds by a snapshot (as `snapshot` gave it, read back from JSON). Returns undefined when
   * it took it, else why not (`data.tokens[3]: …`); the miner is then empty, as new. Never throws on what the
   * snapshot holds, and never takes part of one. The options are this miner's: past its maxTemplates (a snapshot of
   * a miner allowed more) templates are evicted as a new line would evict them, and counted.
   */
  restore(state: unknown): string | undefined {
    const reason = this.take(state);
    if (reason !== undefined) this.clear();
    return reason;
  }

  private take(state: unknown): string | undefined {
    const parsed = parseSnapshot(state, STATE_VERSION, MinerData, 'miner');
    if ('reason' in parsed) return parsed.reason;
    this.clear();
    this.rebuild(parsed.data);
    return undefined;
  }

  /** Holds the templates of a snapshot (validated) and rebuilds the index from them, as it was. */
  private rebuild(d: MinerData): void {
    const clusters = d.tokens.map((tokens, i) => {
      const general = d.general?.[i] ?? [];
      const c = this.cluster(d.groups[d.group[i]], tokens, general.length > 0 ? general : NONE);
      c.seq = i;
      c.count = d.count[i];
      c.first = d.first[i] ?? undefined;
      c.last = d.last[i] ?? undefined;
      const labels = d.labels?.[i];
      if (labels) c.labels = new Map(Object.entries(labels).map(([k, vs]) => [k, new Set(vs)]));
      this.byKey.set(c.key, c);
      return c;
    });
    this.made = clusters.length;
    d.lru.forEach((i, k) => (k < d.once ? this.once : this.more).push(clusters[i]));
    // Registered in the order they were made, as they were: sibling sets list their templates in that order, and a
    // signature two templates share by a hash collision is the first one's.
    const skip = new Map<Cluster, Set<number>>();
    for (const [i, pos] of d.unregistered) (skip.get(clusters[i]) ?? skip.set(clusters[i], new Set()).get(clusters[i])!).add(pos);
    for (const c of clusters) {
      if (c.general.length > 0) this.pattern(c, +1);
      this.register(c, skip.get(c));
    }
    for (const p of d.patterns) {
      const rank = new Map(p.order.map((positions, k) => [positions.join(','), k]));
      this.patterns.get(splitOf(d.groups[p.group], p.tokens))?.sort((a, b) => rank.get(a.positions.join(','))! - rank.get(b.positions.join(','))!);
    }
    for (const [i, pos] of d.blocked) {
      const c = clusters[i];
      const sig = signatureAt(c, tokensOf(c), pos);
      const held = this.sigs.get(sig);
      if (held === c) this.sigs.set(sig, { pos, members: [c], blocked: true });
      else if (held && 'members' in held) held.blocked = true;
    }
    this.evictions = d.evictions;
    this.generalisations = d.generalisations;
    this.evict();
  }

  /** Forgets everything: the miner as new. */
  private clear(): void {
    this.byKey.clear();
    this.patterns.clear();
    this.sigs.clear();
    for (const s of [this.once, this.more]) s.first = s.last = undefined;
    this.lastTouched = undefined;
    this.made = this.evictions = this.generalisations = 0;
  }

  /** Adds an exported state to what the miner holds (validated first: throws naming the field). */
  import(state: unknown): void {
    for (const t of MinerState.parse(state).templates) {
      const tokens = [...t.tokens];
      const general = [...new Set(t.general.filter((p) => p < tokens.length))].sort((a, b) => a - b);
      for (const p of general) tokens[p] = VAR;
      const c = this.learn(t.group, tokens, t.count, t.first_seen, undefined, general);
      seen(c, t.last_seen);
      for (const [k, vs] of Object.entries(t.labels ?? {})) for (const v of vs) addLabel(c, k, v);
    }
  }

  /** Counts `count` lines of `tokens` into their template (found or made), which it returns. */
  private learn(group: string, tokens: string[], count: number, time: string | undefined, labels?: Record<string, string>, general: readonly number[] = NONE): Cluster {
    const c = this.find(group, tokens) ?? this.insert(this.cluster(group, tokens, general));
    c.count += count;
    seen(c, time);
    if (labels) for (const k in labels) addLabel(c, k, labels[k]);
    this.touch(c);
    this.evict(c);
    return c;
  }

  /** The template a line's tokens match: the one equal to them, or one that has `<*>` where they differ. */
  private find(group: string, tokens: string[]): Cluster | undefined {
    const exact = this.byKey.get(keyOf(group, tokens));
    if (exact) return exact;
    for (const p of this.patterns.get(splitOf(group, tokens.length)) ?? []) {
      const t = [...tokens];
      for (const i of p.positions) t[i] = VAR;
      const c = this.byKey.get(keyOf(group, t));
      if (c) return c;
    }
    return undefined;
  }

  /** A new template, not yet held. Its strings are its own: the key is a new flat string (join), the text too, so
   * the template keeps no slice of the line (V8 keeps a whole string alive for a slice of it). */
  private cluster(group: string, tokens: string[], general: readonly number[]): Cluster {
    const key = keyOf(group, tokens);
    const text = templateText(tokens);
    return { key, seq: 0, groupLength: group.length, tokenCount: tokens.length, general, template: Object.freeze({ id: stableId('log-template', text), text }), count: 0 };
  }

  /** Holds a new template (count 0: the caller counts its lines); returns where its lines go — itself, or the
   * more general template it was merged into. */
  private insert(c: Cluster): Cluster {
    c.seq = this.made++;
    this.byKey.set(c.key, c);
    this.once.push(c);
    if (c.general.length > 0) this.pattern(c, +1);
    const full = this.register(c);
    for (const s of full) if (!c.mergedInto && s.members.includes(c)) this.generalise(s);
    let at = c;
    while (at.mergedInto) at = at.mergedInto;
    return at;
  }

  /** Registers a template under the signature of each of its constant positions, but those of `skip` (a restored
   * template's positions that the miner it came from had not registered); returns the sibling sets it brought to
   * distinctValues templates. */
  private register(c: Cluster, skip?: ReadonlySet<number>): Siblings[] {
    const tokens = tokensOf(c);
    const full: Siblings[] = [];
    for (const [sig, pos] of signatures(c, tokens)) {
      if (skip?.has(pos)) continue;
      const held = this.sigs.get(sig);
      if (held === undefined) {
        this.sigs.set(sig, c);
        continue;
      }
      // Equal signatures are almost always templates equal but at `pos`; a hash collision is told apart here, and
      // the position is then not registered (a generalisation that may be missed, never a wrong one).
      const s: Siblings = 'members' in held ? held : { pos, members: [held] };
      if (s.pos !== pos || s.blocked || !equalExcept(tokensOf(s.members[0]), tokens, pos) || groupOf(s.members[0]) !== groupOf(c)) continue;
      s.members.push(c);
      if (s !== held) this.sigs.set(sig, s);
      if (s.members.length >= this.options.distinctValues) full.push(s);
    }
    return full;
  }

  /** The templates of `s` (equal except at s.pos) become one, with `<*>` at s.pos. */
  private generalise(s: Siblings): void {
    const model = s.members[0];
    const group = groupOf(model);
    const tokens = tokensOf(model);
    tokens[s.pos] = VAR;
    const general = [...model.general, s.pos].sort((a, b) => a - b);
    let target = this.byKey.get(keyOf(group, tokens));
    const patterns = this.patterns.get(splitOf(group, tokens.length)) ?? [];
    if (!target && patterns.length >= MAX_PATTERNS && !patterns.some((p) => samePositions(p.positions, general))) {
      s.blocked = true;
      return;
    }
    this.generalisations++;
    const fresh = !target;
    target ??= this.cluster(group, tokens, general);
    if (!fresh && !samePositions(target.general, general)) {
      // A template of these tokens made by masking alone (a line with a variable there): the general one now.
      if (target.general.length > 0) this.pattern(target, -1);
      target.general = general;
      this.pattern(target, +1);
    }
    for (const m of [...s.members]) {
      target.count += m.count;
      seen(target, m.first);
      seen(target, m.last);
      if (m.labels) for (const [k, vs] of m.labels) for (const v of vs) addLabel(target, k, v);
      this.remove(m);
      m.mergedInto = target;
    }
    let at = fresh ? this.insert(target) : target;
    while (at.mergedInto) at = at.mergedInto;
    this.touch(at);
  }

  private remove(c: Cluster): void {
    if (this.lastTouched === c) this.lastTouched = undefined;
    this.byKey.delete(c.key);
    c.segment?.delete(c);
    if (c.general.length > 0) this.pattern(c, -1);
    for (const [sig] of signatures(c, tokensOf(c))) {
      const held = this.sigs.get(sig);
      if (held === c) this.sigs.delete(sig);
      else if (held && 'members' in held) {
        const i = held.members.indexOf(c);
        if (i >= 0) held.members.splice(i, 1);
        if (held.members.length === 1 && !held.blocked) this.sigs.set(sig, held.members[0]);
        else if (held.members.length === 0) this.sigs.delete(sig);
      }
    }
  }

  /** Counts a template's generalisation pattern in or out of its split. */
  private pattern(c: Cluster, delta: 1 | -1): void {
    const key = splitOf(groupOf(c), c.tokenCount);
    const list = this.patterns.get(key) ?? [];
    const i = list.findIndex((p) => samePositions(p.positions, c.general));
    if (i < 0) {
      if (delta > 0) list.push({ positions: c.general, refs: 1 });
    } else if ((list[i].refs += delta) === 0) list.splice(i, 1);
    if (list.length === 0) this.patterns.delete(key);
    else this.patterns.set(key, list);
  }

  /** Moves a template to the end of its segment: `once` while it has had one line, `more` after. */
  private touch(c: Cluster): void {
    if (c.count <= 1 || c === this.lastTouched) return; // inserted last into `once`; or last in `more` already
    this.lastTouched = c;
    c.segment?.delete(c);
    this.more.push(c);
  }

  /** Evicts down to maxTemplates, never `keep` (the template just used: at capacity, a new template would
   * otherwise be its own victim and never get a second line). */
  private evict(keep?: Cluster): void {
    while (this.byKey.size > this.options.maxTemplates) {
      const victim = firstOther(this.once, keep) ?? firstOther(this.more, keep);
      if (!victim) return;
      this.remove(victim);
      this.evictions++;
    }
  }
}

/** The first split of a document's template: oslo's logger, else the service (a line in no known format). */
export const templateGroup = (doc: LogDocument): string => doc.log.logger ?? doc.service.name;

/** Gives a parsed document its template (`log.template`), learning from it: what the processor and `stackwatch
 * parse` do to every log document. */
export function mineDocument(miner: Miner, doc: LogDocument): LogDocument {
  doc.log.template = miner.add(doc.message, { group: templateGroup(doc), time: doc['@timestamp'] });
  return doc;
}

/** The signature of each constant position: two polynomial hashes (mod 2³², different bases) of the tokens' FNV
 * hashes, without the position's own term, and of the split; O(1) a position once the sums are made. */
function* signatures(c: Cluster, tokens: readonly string[]): Generator<[number, number]> {
  const n = tokens.length;
  const h = tokens.map((t) => fnv(t));
  const pow1: number[] = [];
  const pow2: number[] = [];
  let s1 = fnv(c.key.slice(0, c.groupLength), n);
  let s2 = Math.imul(s1, B2) ^ n;
  let p1 = 1;
  let p2 = 1;
  for (let i = 0; i < n; i++) {
    pow1.push(p1);
    pow2.push(p2);
    s1 = (s1 + Math.imul(h[i], p1)) | 0;
    s2 = (s2 + Math.imul(h[i], p2)) | 0;
    p1 = Math.imul(p1, B1);
    p2 = Math.imul(p2, B2);
  }
  for (let i = 0; i < n; i++) {
    if (tokens[i] === VAR) continue;
    const a = (s1 - Math.imul(h[i], pow1[i])) | 0;
    const b = (s2 - Math.imul(h[i], pow2[i]) + Math.imul(i + 1, 0x9e3779b1)) | 0;
    yield [(a ^ Math.imul(b, 0x85ebca6b)) >>> 2, i];
  }
}

/** The signature of a template's position (a constant one: see signatures). */
function signatureAt(c: Cluster, tokens: readonly string[], pos: number): number {
  for (const [sig, p] of signatures(c, tokens)) if (p === pos) return sig;
  return -1;
}

/** A first or last seen time as SeenTime reads it. */
function seenTime(time: string | undefined): number | string | null {
  if (time === undefined) return null;
  const ms = Date.parse(time);
  return Number.isInteger(ms) && Math.abs(ms) <= 8.64e15 && new Date(ms).toISOString() === time ? ms : time;
}

/** FNV-1a of a string. */
function fnv(s: string, seed = 0x811c9dc5): number {
  let h = seed;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** Widens a template's first and last seen to `time`. */
function seen(c: Cluster, time: string | undefined): void {
  if (time === undefined) return;
  if (c.first === undefined || time < c.first) c.first = time;
  if (c.last === undefined || time > c.last) c.last = time;
}

function addLabel(c: Cluster, key: string, value: string): void {
  c.labels ??= new Map();
  let vs = c.labels.get(key);
  if (!vs) c.labels.set(key, (vs = new Set()));
  // A copy, not a slice of the line.
  if (vs.size < MAX_LABEL_VALUES && !vs.has(value)) vs.add(value.length > MAX_LABEL_CHARS ? value.slice(0, MAX_LABEL_CHARS) + '…' : (' ' + value).slice(1));
}

function firstOther(segment: Segment, keep: Cluster | undefined): Cluster | undefined {
  return keep && segment.first === keep ? keep.next : segment.first;
}

const keyOf = (group: string, tokens: readonly string[]) => group + GROUP_SEP + tokens.join(SEP);
const splitOf = (group: string, n: number) => group + GROUP_SEP + n;
const groupOf = (c: Cluster) => c.key.slice(0, c.groupLength);
const tokensOf = (c: Cluster) => (c.tokenCount === 0 ? [] : c.key.slice(c.groupLength + 1).split(SEP));
const samePositions = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((x, i) => x === b[i]);
const compare = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

function equalExcept(a: readonly string[], b: readonly string[], pos: number): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (i !== pos && a[i] !== b[i]) return false;
  return true;
}
