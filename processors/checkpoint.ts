// The processor's checkpoints (issue 15): its detectors' and incidents' state, saved with the Kafka offsets that
// state reflects (state/store.ts), so that a restarted processor goes on exactly where it was.
//
// The offsets are committed only after the state that reflects them is saved, and the pages of the events since the
// last checkpoint wait in an outbox that is part of the checkpoint: they go to the notifiers right after it is saved.
// A crash before a save replays the events since the last one into the state of the last one: the same alerts and
// pages come again (deterministic ids: the same documents), and the pages were never sent. A crash after a save and
// before its pages went out finds them in the outbox at start and sends them then. Once sent, the outbox is saved
// empty at once; a crash between the send and that save sends them once more (Alertmanager and PagerDuty
// deduplicate by the alert's id; a plain webhook sees it twice): the one window, milliseconds long.
//
// Batches the group delivers again (after a rebalance, or from committed offsets behind the state's) are skipped up
// to the offsets the state has seen. Only the partitions this processor holds are saved and committed: a partition
// gone to another processor is that one's to commit.
//
// The log templates (processors/templates/) are a part too. The processor decodes a batch, and mines its templates,
// before the batch's serial step: a save that falls between the two holds the batch's templates but not its place,
// and after a crash the batch is mined again. Its lines then find the templates they made (the same ids); only the
// templates' counts hold them twice. The miner is the largest part and its counts change with every line, so it is
// written when its templates changed (one made, generalised, evicted) and otherwise once a minute: a restart may
// find the counts of the last minute missing, never a template.
//
// One checkpoint per processor (`<group>/<instance>`). A processor that leaves the group (killed, drained, its node
// gone) leaves its checkpoint behind, claiming its partitions at the offsets committed for them. Whoever is given
// those partitions adopts it (`adopt`): after each join, a processor lists the group's checkpoints; one whose owner is
// no longer a member of the group (its instance is in each member's client id) and that claims a partition this
// processor now holds — the lowest it claims, so that one processor adopts it when its partitions are spread over
// several — is merged into this processor's state (state/merge.ts): its open alerts and incidents, its windows, its
// pages not sent yet, and its place in those partitions. The adopter saves, commits those partitions' offsets, and
// only then empties the departed checkpoint (it restarts empty, and nobody adopts it twice). The batches of those
// partitions wait for the adoption. A checkpoint whose owner is still in the group is not adopted: when a live
// processor gives a partition up (another joined), the state of that partition's open alerts stays with it.
import { Alert } from '../core/events.ts';
import type { Config } from '../core/config.ts';
import type { GroupConsumer } from '../core/kafka.ts';
import { errorText } from '../core/log.ts';
import type { DetectionEngine } from '../detectors/engine.ts';
import type { IncidentCorrelator } from '../incidents/correlator.ts';
import { mergeIncidents, mergeRules } from '../state/merge.ts';
import { StateStore, type Offsets } from '../state/store.ts';

/** The checkpoint's parts: one per rule (a detector's change rewrites its part only), the incidents, the log
 * templates, the outbox. */
const RULE = 'rule:';
const INCIDENTS = 'incidents';
const TEMPLATES = 'templates';
const OUTBOX = 'outbox';

/** The template miner as the checkpoint needs it: its snapshot and restore (undefined, or why not), its size, and a
 * number that grows when its templates change (not when only their counts do). */
export interface Templates {
  snapshot(): unknown;
  restore(state: unknown): string | undefined;
  readonly size: number;
  readonly changes: number;
}
/** The templates' counts and times alone are written again at most this often: a new template, a generalisation
 * or an eviction is saved at the next save. (The miner is the largest part, and its counts change with every line.) */
const TEMPLATE_COUNTS_MS = 60_000;

export interface Restored {
  seq?: number;
  rules: number;
  incidents: number;
  /** Log templates restored (0: none saved, or not restored). */
  templates: number;
  outbox: number;
  problems: string[];
}

/** A departed processor's checkpoint, adopted: whose, its save, and what came with it. */
export interface Adopted {
  owner: string;
  seq: number;
  /** The partitions it claimed that this processor now holds (`topic/partition`). */
  partitions: string[];
  rules: number;
  incidents: number;
  outbox: number;
  /** What did not merge (named), left out. */
  problems: string[];
}

/** A snapshot as a checkpoint gives it back: through JSON (an infinite time is null there, as the restore expects). */
const asSaved = <T>(value: T): T => JSON.parse(JSON.stringify(value)) as T;

export class ProcessorCheckpoints {
  /** Departed owners whose checkpoint this one adopted: emptied once this one's next save is in. */
  private retire: { owner: string; parts: string[] }[] = [];
  /** Per `topic\0partition`, the next offset the state has not seen. */
  private readonly processed = new Map<string, bigint>();
  /** The partitions this processor holds (`topic\0partition`), from the last join; unknown before the first. */
  private assigned: Set<string> | undefined;
  private outbox: Alert[] = [];
  /** Each part's JSON as last saved: a part whose JSON is the same is not written again. */
  private readonly saved = new Map<string, string>();
  /** Something changed since the last save (a batch, a tick's alerts, a restored outbox). */
  private dirty = false;
  private lastSave = 0;
  /** When the restored checkpoint was saved (ms), until the first join: the time since is the restart's, not quiet
   * the incidents heard (IncidentCorrelator.resumeAfter). */
  private restoredAt: number | undefined;
  /** The miner's `changes` and the time when its part was last written (or restored). */
  private templatesSaved = { changes: -1, at: 0 };

  private constructor(
    private readonly store: StateStore,
    readonly owner: string,
    private readonly intervalMs: number,
    private readonly engine: DetectionEngine,
    private readonly incidents: IncidentCorrelator,
    private readonly templates?: Templates,
  ) {
    // The engine and the correlator are new: their state now is the empty one (`adopt` may need to go back to it).
    this.empty = { rules: asSaved(engine.snapshot()), incidents: asSaved(incidents.snapshot()) };
  }
  private readonly empty: { rules: Record<string, unknown>; incidents: unknown };
  /** The save restored at start, until the first adopt() has checked that nobody adopted it meanwhile. */
  private restoredSeq: number | undefined;

  /** Opens the state topic and restores the last checkpoint of this processor, if any, into `engine` and
   * `incidents` (both just made). Undefined when checkpoints are off. */
  static async open(
    cfg: Config,
    engine: DetectionEngine,
    incidents: IncidentCorrelator,
    templates?: Templates,
    signal?: AbortSignal,
  ): Promise<{ checkpoints?: ProcessorCheckpoints; restored?: Restored }> {
    const c = cfg.processor.checkpoint;
    if (!c.enabled) return {};
    const store = await StateStore.open(cfg.kafka, { topic: c.topic, signal });
    return ProcessorCheckpoints.withStore(store, `${cfg.kafka.consumer_group}/${c.instance}`, c.interval_ms, engine, incidents, templates);
  }

  /** The same on a store given (a log in memory, in the unit tests). */
  static async withStore(
    store: StateStore,
    owner: string,
    intervalMs: number,
    engine: DetectionEngine,
    incidents: IncidentCorrelator,
    templates?: Templates,
  ): Promise<{ checkpoints: ProcessorCheckpoints; restored: Restored }> {
    const cp = new ProcessorCheckpoints(store, owner, intervalMs, engine, incidents, templates);
    return { checkpoints: cp, restored: await cp.restore() };
  }

  private async restore(): Promise<Restored> {
    const { checkpoint, problems } = await this.store.load(this.owner);
    const out: Restored = { rules: 0, incidents: 0, templates: 0, outbox: 0, problems: [...problems] };
    if (!checkpoint) return out;
    out.seq = checkpoint.seq;
    this.restoredSeq = checkpoint.seq;
    this.restoredAt = Date.parse(checkpoint.at);
    const rules: Record<string, unknown> = {};
    for (const [name, value] of Object.entries(checkpoint.parts)) if (name.startsWith(RULE)) rules[name.slice(RULE.length)] = value;
    const r = this.engine.restore(rules);
    out.rules = r.restored.length;
    out.problems.push(...r.discarded.map((d) => `rule ${d.reason}`));
    if (INCIDENTS in checkpoint.parts) {
      const why = this.incidents.restore(checkpoint.parts[INCIDENTS]);
      if (why) out.problems.push(`incidents: ${why}`);
      else out.incidents = this.incidents.size;
      out.problems.push(...this.incidents.restoreNotes.map((n) => `incidents: ${n}`));
    }
    // The templates the log documents and the detectors went by: without them a restarted processor would give the
    // first lines of a template it had generalised their own, narrower one (another log.template.id: a "new" error
    // pattern). A template part that does not load starts the miner empty, as without a checkpoint.
    if (this.templates && TEMPLATES in checkpoint.parts) {
      const why = this.templates.restore(checkpoint.parts[TEMPLATES]);
      if (why) out.problems.push(`templates: ${why}`);
      else {
        out.templates = this.templates.size;
        this.templatesSaved = { changes: this.templates.changes, at: Date.now() };
      }
    }
    // The pages that were due but not yet sent: each is checked as the alert it must be (a damaged one would break
    // every dispatch after it); a page that is not is named among the problems and left out, the others are sent.
    if (OUTBOX in checkpoint.parts) {
      const outbox = checkpoint.parts[OUTBOX];
      if (!Array.isArray(outbox)) out.problems.push(`outbox: not a list of pages but ${outbox === null ? 'null' : typeof outbox}; started empty`);
      else {
        const bad: string[] = [];
        outbox.forEach((page: unknown, i) => {
          const r = Alert.safeParse(page);
          if (r.success) this.outbox.push(page as Alert);
          else bad.push(`page ${i}: ${r.error.issues[0]?.path.join('.') || '(page)'} ${r.error.issues[0]?.message ?? 'invalid'}`);
        });
        if (bad.length) out.problems.push(`outbox: ${bad.length} of ${outbox.length} pages left out (${bad.slice(0, 3).join('; ')}${bad.length > 3 ? '; …' : ''})`);
        out.outbox = this.outbox.length;
        this.dirty = this.outbox.length > 0 || bad.length > 0;
      }
    }
    for (const [topic, parts] of Object.entries(checkpoint.offsets)) for (const [p, offset] of Object.entries(parts)) this.processed.set(`${topic}\0${p}`, BigInt(offset));
    // What was restored is what is saved: the first save writes only what changed since.
    for (const [name, value] of Object.entries(checkpoint.parts)) this.saved.set(name, JSON.stringify(value));
    return out;
  }

  /** The group's assignment after a join: partitions gone are forgotten (another processor commits them). */
  onAssigned(assigned: Map<string, number[]>): void {
    if (this.restoredAt !== undefined) this.incidents.resumeAfter(Date.now() - this.restoredAt);
    this.restoredAt = undefined;
    this.assigned = new Set([...assigned].flatMap(([topic, parts]) => parts.map((p) => `${topic}\0${p}`)));
    for (const k of [...this.processed.keys()]) if (!this.assigned.has(k)) this.processed.delete(k);
  }

  /**
   * Adopts the checkpoints of processors that left the group and whose partitions this one now holds (see the
   * header); `members` gives the instances in the group now. Call after onAssigned, before the batches of the new
   * assignment; the next save (`due` says so) holds what was adopted, then empties the adopted checkpoints.
   */
  async adopt(members: () => Promise<Set<string>>): Promise<{ adopted: Adopted[]; dropped?: string; live?: string[] }> {
    const assigned = this.assigned;
    if (!assigned) return { adopted: [] };
    const prefix = this.owner.slice(0, this.owner.lastIndexOf('/') + 1);
    const claims = (offsets: Offsets) => Object.entries(offsets).flatMap(([topic, parts]) => Object.entries(parts).map(([p, o]) => ({ key: `${topic}\0${p}`, offset: BigInt(o) })));
    const { checkpoints } = await this.store.list();
    // Restarted while another processor adopted this one's checkpoint (between this restore and this join): the
    // state restored is the adopter's now, and is dropped here, as the emptied checkpoint would have started.
    let dropped: string | undefined;
    const restored = this.restoredSeq;
    this.restoredSeq = undefined;
    const own = checkpoints.find((c) => c.owner === this.owner);
    if (restored !== undefined && own && own.seq !== restored) {
      this.engine.restore(this.empty.rules);
      this.incidents.restore(this.empty.incidents);
      this.outbox = [];
      this.processed.clear();
      this.saved.clear();
      dropped = `the checkpoint restored at start (save ${restored}) was adopted by another processor meanwhile (now save ${own.seq}): its state dropped, started empty`;
    }
    const candidates = checkpoints.filter((c) => {
      if (c.owner === this.owner || !c.owner.startsWith(prefix) || this.retire.some((r) => r.owner === c.owner)) return false;
      const claimed = claims(c.offsets).sort((x, y) => (x.key < y.key ? -1 : x.key > y.key ? 1 : 0));
      // The one that holds the lowest partition it claims adopts it, if that claim is ahead of what this one has seen.
      return claimed.length > 0 && assigned.has(claimed[0].key) && claimed.some((c) => assigned.has(c.key) && c.offset > (this.processed.get(c.key) ?? -1n));
    });
    if (candidates.length === 0) return { adopted: [], ...(dropped ? { dropped } : {}) };
    const live = await members();
    const out: Adopted[] = [];
    const stayed: string[] = [];
    for (const c of candidates) {
      if (live.has(c.owner.slice(prefix.length))) {
        stayed.push(c.owner);
        continue;
      }
      const { checkpoint, problems } = await this.store.load(c.owner);
      if (!checkpoint) continue;
      const got: Adopted = { owner: c.owner, seq: checkpoint.seq, partitions: [], rules: 0, incidents: 0, outbox: 0, problems: [...problems] };
      const theirs: Record<string, unknown> = {};
      for (const [name, value] of Object.entries(checkpoint.parts)) if (name.startsWith(RULE)) theirs[name.slice(RULE.length)] = value;
      // This processor's own as a checkpoint holds it: read back from JSON, as the departed one's was.
      const r = this.engine.restore(mergeRules(asSaved(this.engine.snapshot()), theirs));
      got.rules = r.restored.filter((id) => id in theirs).length;
      got.problems.push(...r.discarded.map((d) => `rule ${d.reason}`));
      if (INCIDENTS in checkpoint.parts) {
        const ours = asSaved(this.incidents.snapshot());
        const before = this.incidents.size;
        const merged = mergeIncidents(ours, checkpoint.parts[INCIDENTS]);
        const why = merged === undefined ? "not of the shape of this processor's" : this.incidents.restore(merged);
        if (why !== undefined) {
          this.incidents.restore(ours);
          got.problems.push(`incidents: ${why}; this processor's own kept`);
        } else got.incidents = this.incidents.size - before;
      }
      const pages = checkpoint.parts[OUTBOX];
      if (Array.isArray(pages)) {
        for (const page of pages) if (Alert.safeParse(page).success) (this.outbox.push(page as Alert), got.outbox++);
        if (got.outbox < pages.length) got.problems.push(`outbox: ${pages.length - got.outbox} of ${pages.length} pages not alerts, left out`);
      }
      for (const { key, offset } of claims(checkpoint.offsets)) {
        if (!assigned.has(key)) continue;
        if (offset > (this.processed.get(key) ?? -1n)) this.processed.set(key, offset);
        got.partitions.push(key.replace('\0', '/'));
      }
      // The templates part is not merged: this processor's miner gives the same lines the same template ids.
      this.retire.push({ owner: c.owner, parts: Object.keys(checkpoint.parts) });
      this.dirty = true;
      out.push(got);
    }
    return { adopted: out, ...(dropped ? { dropped } : {}), ...(stayed.length ? { live: stayed } : {}) };
  }

  /** The messages of a batch the state has not seen yet. */
  unseen<M extends { offset: string }>(topic: string, partition: number, messages: M[]): M[] {
    const next = this.processed.get(`${topic}\0${partition}`);
    return next === undefined ? messages : messages.filter((m) => BigInt(m.offset) >= next);
  }

  /** The state has seen the partition up to `lastOffset`, and its pages wait for the next save. */
  seen(topic: string, partition: number, lastOffset: string, pages: Alert[]): void {
    this.processed.set(`${topic}\0${partition}`, BigInt(lastOffset) + 1n);
    this.queue(pages);
  }

  /** Pages (and a state change) of the wall clock's turn. */
  queue(pages: Alert[]): void {
    this.outbox.push(...pages);
    this.dirty = true;
  }

  /** Whether a save is due: something changed and the interval passed (or `force`). */
  due(now: number, force = false): boolean {
    return this.dirty && (force || now - this.lastSave >= this.intervalMs);
  }

  /** Saves the state and the offsets it reflects, commits those offsets, then hands the outbox to `send`. Throws
   * when the save or the commit fails (nothing is lost: the next one tries again, the pages still wait). */
  async save(consumer: Pick<GroupConsumer, 'commit'> | undefined, send: (pages: Alert[]) => Promise<void>): Promise<void> {
    const parts: Record<string, unknown> = {};
    const changed: string[] = [];
    const put = (name: string, value: unknown) => {
      const json = JSON.stringify(value);
      if (this.saved.get(name) === json) return;
      parts[name] = value;
      changed.push(name);
      this.saved.set(name, json);
    };
    const rules = this.engine.snapshot();
    for (const [id, state] of Object.entries(rules)) put(`${RULE}${id}`, state);
    for (const name of [...this.saved.keys()]) if (name.startsWith(RULE) && !(name.slice(RULE.length) in rules)) (changed.push(name), this.saved.delete(name));
    put(INCIDENTS, this.incidents.snapshot());
    const now = Date.now();
    const templatesDue = this.templates && (this.templates.changes !== this.templatesSaved.changes || now - this.templatesSaved.at >= TEMPLATE_COUNTS_MS);
    if (this.templates && templatesDue) put(TEMPLATES, this.templates.snapshot());
    const pages = this.outbox;
    put(OUTBOX, pages);
    const offsets: Offsets = {};
    const commits: { topic: string; partition: number; offset: string }[] = [];
    for (const [k, next] of this.processed) {
      if (this.assigned && !this.assigned.has(k)) continue;
      const [topic, partition] = k.split('\0');
      (offsets[topic] ??= {})[partition] = next.toString();
      commits.push({ topic, partition: Number(partition), offset: next.toString() });
    }
    try {
      await this.store.save(this.owner, { offsets, parts, changed });
    } catch (err) {
      // What was not saved is written again next time.
      for (const name of changed) this.saved.delete(name);
      throw err;
    }
    this.lastSave = Date.now();
    this.dirty = false;
    if (this.templates && templatesDue) this.templatesSaved = { changes: this.templates.changes, at: now };
    try {
      await consumer?.commit(commits);
    } catch (err) {
      // Saved but not committed (a rebalance, not joined yet): committed again next time, the pages still wait.
      this.dirty = true;
      throw err;
    }
    // The checkpoints adopted are in this one now: emptied, so that their owners restart empty and nobody adopts them
    // again. (A failure leaves them for the next save; adopting one twice is refused: its claims are behind ours.)
    for (const r of [...this.retire]) {
      try {
        await this.store.save(r.owner, { offsets: {}, parts: {}, changed: r.parts });
        this.retire = this.retire.filter((x) => x !== r);
      } catch {
        this.dirty = true;
      }
    }
    if (pages.length === 0) return;
    this.outbox = [];
    try {
      await send(pages);
    } catch (err) {
      this.outbox.unshift(...pages);
      this.dirty = true;
      throw new Error(`pages not handed to the notifiers: ${errorText(err)}`);
    }
    // Sent: the outbox is saved empty at once (one small part and the manifest), so that only a crash between the
    // send and this save sends them once more.
    try {
      await this.store.save(this.owner, { offsets, parts: { [OUTBOX]: [] }, changed: [OUTBOX] });
      this.saved.set(OUTBOX, '[]');
    } catch {
      this.saved.delete(OUTBOX);
      this.dirty = true;
    }
  }

  async close(): Promise<void> {
    await this.store.close();
  }
}
