// Two processors' state made one (issue 15): a processor that takes over the partitions of one that left the group
// (killed, drained, gone) adopts its checkpoint into its own state (processors/checkpoint.ts). The two states were
// made from different partitions, so a detector's groups (a service's outage, a host's drift, a check) are mostly in
// one of them: the merge is their union. A group both hold (one whose events came through partitions of both) keeps
// the copy touched last, by event time.
//
// The merge reads a detector's state by its shape, as the detectors write it (detectors/state.ts, detectors/kit.ts):
//   - a keyed state's columns (`keys`, `seen`, `values`, `open`): entries merged by key, the later `seen` kept, filed
//     as eviction takes them (quiet entries then open ones, each oldest first);
//   - a list of `[key, list]` pairs (a map of sets: a rule's firing groups by key): merged by key, the lists joined;
//   - a list of plain values (keys settling): joined, without repeats;
//   - a number (a detector's clock): the larger;
//   - a nested detector state (`{ v, data }`): merged the same way, when both are of the same version;
//   - a miner's exported templates (`{ version, templates }`): the templates of both, each once;
//   - anything else (a miner's export, a flag): this processor's own, unchanged.
// What cannot be merged this way is refused by the detector's own restore (which then keeps the state it has), and
// the caller names it.

/** A keyed state's columns (detectors/state.ts, KeyedData). */
interface Keyed {
  keys: string[];
  seen: (number | null)[];
  values: unknown[];
  open: number;
}

function isObject(x: unknown): x is Record<string, unknown> {
  return x !== null && typeof x === 'object' && !Array.isArray(x);
}

function isKeyed(x: unknown): x is Keyed {
  return (
    isObject(x) &&
    Object.keys(x).length === 4 &&
    Array.isArray(x.keys) &&
    Array.isArray(x.seen) &&
    Array.isArray(x.values) &&
    typeof x.open === 'number' &&
    x.keys.length === x.seen.length &&
    x.keys.length === x.values.length &&
    x.open <= x.keys.length
  );
}

/** A miner's templates as it exports them (processors/templates/miner.ts, MinerState): what `import` learns again. */
const isMinerState = (x: unknown): x is { version: unknown; templates: unknown[] } => isObject(x) && Object.keys(x).length === 2 && 'version' in x && Array.isArray(x.templates);
const isPlain = (x: unknown) => x === null || ['string', 'number', 'boolean'].includes(typeof x);
const isPairList = (x: unknown[]) => x.every((e) => Array.isArray(e) && e.length === 2 && typeof e[0] === 'string' && Array.isArray(e[1]));

/** Entries of both, by key (the later `seen` kept; `a`'s on a tie), quiet ones then open ones, each oldest first. */
function mergeKeyed(a: Keyed, b: Keyed): Keyed {
  interface Entry {
    key: string;
    seen: number | null;
    value: unknown;
    open: boolean;
    order: number;
  }
  const entries = new Map<string, Entry>();
  let order = 0;
  for (const s of [a, b]) {
    const firstOpen = s.keys.length - s.open;
    s.keys.forEach((key, i) => {
      const e: Entry = { key, seen: s.seen[i], value: s.values[i], open: i >= firstOpen, order: order++ };
      const held = entries.get(key);
      if (!held || (e.seen ?? -Infinity) > (held.seen ?? -Infinity)) entries.set(key, e);
    });
  }
  const t = (e: Entry) => e.seen ?? -Infinity;
  const sorted = [...entries.values()].sort((x, y) => Number(x.open) - Number(y.open) || t(x) - t(y) || x.order - y.order);
  return { keys: sorted.map((e) => e.key), seen: sorted.map((e) => e.seen), values: sorted.map((e) => e.value), open: sorted.filter((e) => e.open).length };
}

/** One field of two detector states' data merged by its shape (see the header); `a` is this processor's own. */
function mergeField(a: unknown, b: unknown): unknown {
  if (a === undefined || a === null) return b ?? a;
  if (b === undefined || b === null) return a;
  if (isKeyed(a) && isKeyed(b)) return mergeKeyed(a, b);
  if (typeof a === 'number' && typeof b === 'number') return Math.max(a, b);
  if (Array.isArray(a) && Array.isArray(b)) {
    if (isPairList(a) && isPairList(b)) {
      const out = new Map<string, unknown[]>((a as [string, unknown[]][]).map(([k, v]) => [k, [...v]]));
      for (const [k, v] of b as [string, unknown[]][]) out.set(k, [...new Set([...(out.get(k) ?? []), ...v])]);
      return [...out];
    }
    if (a.every(isPlain) && b.every(isPlain)) return [...new Set([...a, ...b])];
    return a;
  }
  if (isObject(a) && isObject(b) && 'v' in a && 'data' in a && a.v === b.v && isObject(a.data) && isObject(b.data)) return { ...a, data: mergeData(a.data, b.data) };
  if (isMinerState(a) && isMinerState(b) && a.version === b.version) {
    const key = (t: unknown) => (isObject(t) ? JSON.stringify([t.group, t.tokens]) : '');
    const held = new Set(a.templates.map(key));
    return { ...a, templates: [...a.templates, ...b.templates.filter((t) => !held.has(key(t)))] };
  }
  return a;
}

/** Two detector states' `data` (Detector.snapshot) merged field by field. */
export function mergeData(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) out[k] = mergeField(a[k], b[k]);
  return out;
}

/** Two engines' snapshots (DetectionEngine.snapshot: rule id → { detector, v, data }) made one: a rule only one of
 * them holds is taken as it is; a rule both hold, of the same detector and version, is merged; otherwise `a`'s. */
export function mergeRules(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...b, ...a };
  for (const [id, theirs] of Object.entries(b)) {
    const ours = a[id];
    if (!isObject(ours) || !isObject(theirs) || ours.detector !== theirs.detector || ours.v !== theirs.v || !isObject(ours.data) || !isObject(theirs.data)) continue;
    out[id] = { ...ours, data: mergeData(ours.data, theirs.data) };
  }
  return out;
}

/** Two correlators' snapshots (IncidentCorrelator.snapshot: `{ v, data: { open, incidents } }`) made one: the
 * incidents of both, an incident both hold (the same id) as `a` has it. Undefined when either is not of that shape
 * or their versions differ. */
export function mergeIncidents(a: unknown, b: unknown): unknown {
  if (!isObject(a) || !isObject(b) || a.v !== b.v || !isObject(a.data) || !isObject(b.data) || !Array.isArray(a.data.incidents) || !Array.isArray(b.data.incidents)) return undefined;
  const ids = new Set(a.data.incidents.map((i) => (isObject(i) ? i.id : undefined)));
  const incidents = [...a.data.incidents, ...b.data.incidents.filter((i) => !isObject(i) || !ids.has(i.id))];
  return { ...a, data: { ...a.data, open: incidents.length, incidents } };
}
