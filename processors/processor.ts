// The processor: consumes the collectors' topics from Kafka in a consumer group — raw log events (parsed into ECS
// documents), metric samples, health events (Ceph health, Zabbix problems, inventory: a host's current state,
// indexed) and the dead-letter topic (indexed for Kibana), each decoded by the table in processors/decode.ts —
// bulk-indexes what it keeps, runs the detectors, files the alerts into incidents (incidents/correlator.ts), indexes
// the alerts and incidents and pages the incidents, and only then commits the offsets. A crash at any point replays
// the uncommitted batch; deterministic ids make the replay overwrite, not add. A timer pages incidents that reached
// their min_duration_s and resolves those whose hold ran out while no event came, and asks the detectors about what
// did not come (a service gone silent): the wall clock.
//
// With checkpoints (processor.checkpoint, on by default; processors/checkpoint.ts) the detectors' and incidents'
// state is saved with the offsets it reflects, the offsets are committed only then, and the pages wait for the save
// (an outbox): a restarted processor restores the state and goes on from those offsets, neither missing nor
// repeating a page.
import type { Config } from '../core/config.ts';
import { dailyIndex, esClient, waitForElasticsearch } from '../core/elastic.ts';
import { installIndexTemplates } from '../sinks/index-setup.ts';
import { deadLetter, type Alert, type DeadLetter } from '../core/events.ts';
import { ensureTopics, GroupConsumer, groupProgress, TopicProducer, type InBatch, type TopicKind } from '../core/kafka.ts';
import { failpoint } from '../core/failpoints.ts';
import { errorText, logger } from '../core/log.ts';
import { componentMetrics, countDetectorState, countFiringAlerts, reportConsumerLag, type ComponentMetrics } from '../core/metrics.ts';
import { registerReadiness } from '../core/status-server.ts';
import { alertDocumentId } from '../detectors/detector.ts';
import { DetectionEngine } from '../detectors/engine.ts';
import { DEFAULT_RULES_DIR, loadRules } from '../detectors/rules.ts';
import { IncidentCorrelator, type IncidentChange } from '../incidents/correlator.ts';
import { loadIncidentRules } from '../incidents/rules.ts';
import { join } from 'node:path';
import { ElasticsearchSink, type IndexRequest } from '../sinks/elasticsearch.ts';
import { NotificationDispatcher } from '../notifiers/dispatch.ts';
import { notifiersFromConfig } from '../notifiers/index.ts';
import { decodeMessage, messageEvents } from './decode.ts';
import { ProcessorCheckpoints } from './checkpoint.ts';
import { Miner } from './templates/miner.ts';
import { TimeBudget } from './time-budget.ts';

const COMPONENT = 'processor';
/** How often the wall clock's turn comes: silent services, the incidents' deadlines (min_duration_s, hold_s). */
const TICK_MS = 1000;
/** Data whose newest event came within this of its time is live: the detectors take the wall clock's turn every
 * TICK_MS. Older data (a replay, a backfill, a backlog read after an outage) is read at a pace that says nothing of
 * its own time: the detectors take their turn only once nothing has been delivered for OLD_DATA_IDLE_MS (the data,
 * or this part of it, is all read). A turn taken between two batches of old data decided at a point of the stream
 * that the reading pace chose: kill-replay's uninterrupted run once settled an outage at a turn, where the killed
 * run settled it at the host's next line, and the reply timeouts between the two counted in one run only (a page
 * 3 min apart). The same hour as service-silent's max_lag_s. */
const LIVE_LAG_MS = 3_600_000;
export const OLD_DATA_IDLE_MS = 15_000;

/** The transitions the notifiers get: the incidents' pages. */
function pagesOf(changes: IncidentChange[]): Alert[] {
  return changes.flatMap((c) => (c.page ? [c.page] : []));
}

export interface ProcessorOptions {
  signal?: AbortSignal;
  /** Called when a batch is in Elasticsearch (just before its offsets are committed), with the alerts it raised. */
  onProcessed?: (info: { indexed: number; deadLettered: number; alerts: Alert[]; pages: Alert[] }) => void;
}

export interface RunningProcessor {
  stop(): Promise<void>;
}

export async function startProcessor(cfg: Config, opts: ProcessorOptions = {}): Promise<RunningProcessor> {
  const log = logger(COMPONENT);
  const metrics = componentMetrics(COMPONENT);
  const es = esClient(cfg.elasticsearch);
  await waitForElasticsearch(es, cfg.elasticsearch, opts.signal);
  await installIndexTemplates(es, cfg.elasticsearch);
  const { logs: logsTopic, metrics: metricsTopic, health: healthTopic, dead_letter: deadTopic, notify_retry: retryTopic } = cfg.kafka.topics;
  /** The topics consumed, and the kind of each (its key in kafka.topics) for the decode table. */
  const kindOf = new Map<string, TopicKind>([
    [logsTopic, 'logs'],
    [metricsTopic, 'metrics'],
    [healthTopic, 'health'],
    [deadTopic, 'dead_letter'],
  ]);
  const consumed = [...kindOf.keys()];
  await ensureTopics(cfg.kafka, [...consumed, retryTopic], opts.signal);

  const engine = await DetectionEngine.create(loadRules(cfg.rules_dir));
  countDetectorState(() => engine.stateSizes());
  /** Log templates, mined online (processors/templates/): every log document carries its message's. */
  const templates = new Miner();
  const incidents = new IncidentCorrelator(loadIncidentRules(cfg.incidents.rules_dir ?? join(cfg.rules_dir ?? DEFAULT_RULES_DIR, 'incidents'), cfg.incidents.rules_dir !== undefined), {
    minDurationS: cfg.incidents.min_duration_s,
    settleS: cfg.incidents.settle_s,
  });
  const { checkpoints, restored } = await ProcessorCheckpoints.open(cfg, engine, incidents, templates, opts.signal);
  if (checkpoints && restored) {
    const what =
      restored.seq === undefined
        ? 'none yet'
        : `save ${restored.seq}: ${restored.rules} rule(s), ${restored.incidents} open incident(s), ${restored.templates} log template(s), ${restored.outbox} page(s) not sent yet`;
    log.info(`state checkpoint ${checkpoints.owner} (topic ${cfg.processor.checkpoint.topic}): ${what}`);
    // Said once: what could not be taken back starts empty (a rule's state of another shape, a damaged part).
    if (restored.problems.length > 0)
      log.warn(`state checkpoint ${checkpoints.owner}: ${restored.problems.length} part(s) not restored, started empty`, { problems: restored.problems.slice(0, 20) });
  }
  const budget = new TimeBudget(cfg.processor.event_time_budget_ms);
  const sink = new ElasticsearchSink(es, 'elasticsearch-sink', cfg.elasticsearch.bulk_max_docs);
  const producer = await TopicProducer.connect(cfg.kafka, COMPONENT, opts.signal);
  const notify = new NotificationDispatcher(cfg, notifiersFromConfig(cfg), producer, opts.signal);
  await notify.start();
  // Alerts firing now, by rule (stackwatch_alerts_firing): the detectors' verdict, whether or not it paged yet (the
  // notifiers get incidents, after their min_duration_s). Bounded by the detectors' own state.
  const firingAlerts = new Map<string, string>();
  const trackFiring = (alerts: Alert[]) => {
    for (const a of alerts) {
      if (a.alert.status === 'firing') firingAlerts.set(a.alert.id, a.rule.id);
      else firingAlerts.delete(a.alert.id);
    }
  };
  countFiringAlerts(() => {
    const out = new Map<string, number>();
    for (const rule of firingAlerts.values()) out.set(rule, (out.get(rule) ?? 0) + 1);
    return out;
  });
  reportConsumerLag(async () => {
    const out: { group: string; topic: string; partition: number; lag: number }[] = [];
    for (const topic of consumed) {
      for (const p of await groupProgress(cfg.kafka, cfg.kafka.consumer_group, topic)) out.push({ group: cfg.kafka.consumer_group, topic, partition: p.partition, lag: p.end - p.committed });
    }
    return out;
  });
  registerReadiness(COMPONENT, () => (sink.lastError ? `Elasticsearch does not take bulk requests: ${sink.lastError}` : undefined));

  /** Decodes one message of the batch's topic (processors/decode.ts): what to index, and the detectors' verdict on
   * it (run after the batch is indexed). Throws for a message that is not what its topic carries. */
  function decode(topic: string, value: unknown, ingested: string, at: { partition: number; offset: string }): { request?: IndexRequest; detect: () => Alert[] } {
    const { document: d, event } = decodeMessage(kindOf.get(topic)!, value, { timezone: cfg.processor.timezone, ingested, source: { topic, ...at }, templates });
    const prefix = d && cfg.elasticsearch.indices[d.index];
    return {
      ...(d ? { request: { index: d.daily === undefined ? prefix! : dailyIndex(prefix!, d.daily), id: d.id, doc: d.doc } } : {}),
      detect: event ? () => engine.on(event) : () => [],
    };
  }

  async function onBatch(delivered: InBatch): Promise<void> {
    batchesInHand++;
    lastDelivery = Date.now();
    try {
      await processBatch(delivered);
    } finally {
      batchesInHand--;
      lastDelivery = Date.now();
    }
  }

  async function processBatch(delivered: InBatch): Promise<void> {
    // The partitions of a processor that left the group are this one's only once its checkpoint is adopted (the
    // group is told this member is alive meanwhile).
    const beat = setInterval(() => void delivered.heartbeat().catch(() => {}), 1000);
    try {
      await adopting;
    } finally {
      clearInterval(beat);
    }
    // Delivered again (a rebalance, offsets committed behind the checkpoint): what the state has seen is skipped.
    const batch = checkpoints ? { ...delivered, messages: checkpoints.unseen(delivered.topic, delivered.partition, delivered.messages) } : delivered;
    if (batch.messages.length === 0) return;
    const dead: DeadLetter[] = [];
    const requests: IndexRequest[] = [];
    const verdicts: Verdict[] = [];
    const source = (offset: string) => ({ topic: batch.topic, partition: batch.partition, offset });
    const ingested = new Date().toISOString();
    const kind = kindOf.get(batch.topic)!;
    let received = 0;
    /** A message that is not what its topic carries (or an event of a batch that is not): dead-lettered with the
     * reason, except in the dead-letter topic itself (never back into the topic it came from: counted and logged). */
    const undecodable = (err: unknown, payload: string, offset: string, of?: string) => {
      const reason = `undecodable ${of ? `event (${of})` : 'message'}: ${(err as Error).message}`;
      if (batch.topic === deadTopic) {
        metrics.discarded('undecodable_dead_letter');
        log.warn(`${reason}, in the dead-letter topic ${deadTopic} at ${batch.partition}/${offset}`);
      } else dead.push(deadLetter(COMPONENT, reason, payload, source(offset)));
    };

    // The events' decoding timed by the wall clock, the CPU clock read only for a slow one (TimeBudget.run).
    const run = budget.run();
    for (const m of batch.messages) {
      const text = m.value ?? '';
      let events: unknown[];
      let batched: boolean;
      try {
        ({ events, batched } = messageEvents(kind, JSON.parse(text)));
      } catch (err) {
        received++;
        undecodable(err, text, m.offset);
        continue;
      }
      received += events.length;
      const at = { partition: batch.partition, offset: m.offset };
      for (let i = 0; i < events.length; i++) {
        const event = events[i];
        // An event of a batch is dead-lettered as the record of its own it would have been.
        const payload = batched ? () => JSON.stringify(event) : () => text;
        try {
          const { value, ms } = run.time(() => decode(batch.topic, event, ingested, at));
          if (value.request) requests.push(value.request);
          // A dead letter over the budget is not sent back into the topic it came from.
          verdicts.push({ detect: value.detect, spentMs: ms, ...(batch.topic === deadTopic ? {} : { payload, source: source(m.offset) }) });
        } catch (err) {
          undecodable(err, payload(), m.offset, batched ? `${i + 1} of ${events.length} in a batch` : undefined);
        }
      }
    }
    metrics.received(received);

    const wait = { signal: opts.signal, onWait: batch.heartbeat };
    for (const r of await sink.write(requests, wait)) {
      if (batch.topic === deadTopic) metrics.discarded('dead_letter_rejected_by_elasticsearch');
      else dead.push(deadLetter(COMPONENT, r.reason, JSON.stringify(r.request.doc)));
    }

    // The detectors, the incidents, the dead letters and the batch's place in the state: one step that a checkpoint
    // (the wall clock's turn) never cuts in two.
    const { alerts, pages } = await serial(async () => {
      const { alerts, overBudget } = runVerdicts(verdicts, budget, metrics);
      dead.push(...overBudget);
      trackFiring(alerts);
      // Filing sets each alert's incident.id, so the alerts are indexed after it.
      const changes = incidents.onAlerts(alerts, Date.now());
      const alertRequests = alerts.map((a) => ({ index: dailyIndex(cfg.elasticsearch.indices.alerts, a['@timestamp']), id: alertDocumentId(a), doc: a }));
      const rejected = await sink.write([...alertRequests, ...incidentRequests(changes)], wait);
      dead.push(...rejected.map((r) => deadLetter(COMPONENT, r.reason, JSON.stringify(r.request.doc))));
      if (dead.length > 0) {
        await producer.send(
          deadTopic,
          dead.map((d) => ({ key: d.component, value: JSON.stringify(d) })),
        );
        metrics.error('dead_letter', dead.length);
        log.warn(`${dead.length} event(s) sent to the dead-letter topic ${deadTopic}`, { first_reason: dead[0].reason });
      }
      const pages = pagesOf(changes);
      if (checkpoints) checkpoints.seen(batch.topic, batch.partition, batch.messages[batch.messages.length - 1].offset, pages);
      return { alerts, pages };
    });
    if (!checkpoints) await notify.dispatch(pages);
    failpoint('processor.before-commit');
    metrics.sent(requests.length);
    opts.onProcessed?.({ indexed: requests.length, deadLettered: dead.length, alerts, pages });
  }

  /** The incidents' documents, each in the daily index of the day it opened (filedAt: so its updates overwrite it,
   * even when an earlier alert moves its start to another day). */
  function incidentRequests(changes: IncidentChange[]): IndexRequest[] {
    return changes.map((c) => ({ index: dailyIndex(cfg.elasticsearch.indices.incidents, c.filedAt), id: c.incident.incident.id, doc: c.incident }));
  }

  /** Filing, indexing and paging of incidents, one at a time (a batch and the timer), so that an incident's older
   * document never overwrites a newer one. */
  let chain: Promise<unknown> = Promise.resolve();
  function serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = chain.then(fn, fn);
    chain = next.catch(() => {});
    return next;
  }

  /** The wall clock's turn, while no batch comes: the detectors that watch for what does not come (a service gone
   * silent), then the incidents that have fired for their min_duration_s or whose hold ran out. A failure is
   * logged and tried again at the next tick (what was not delivered is kept). */
  let pendingAlerts: IndexRequest[] = [];
  /** When Kafka last delivered a batch or one was done with, or the group was last joined, and the batches in hand:
   * the wall clock's turns on old data wait until none is and OLD_DATA_IDLE_MS has passed. */
  let lastDelivery = Date.now();
  let batchesInHand = 0;
  /** The consumer has joined its group once (the wall clock's turns wait for it). */
  let joined = false;
  let pendingChanges: IncidentChange[] = [];
  const ticker = setInterval(() => {
    void serial(async () => {
      // Not before the group's first join: until then nothing is read, and a restored incident's quiet would count
      // the join's seconds as quiet it heard (IncidentCorrelator.resumeAfter).
      if (!joined) return;
      const now = Date.now();
      const live = engine.lag !== undefined && engine.lag <= LIVE_LAG_MS;
      const alerts = live || (batchesInHand === 0 && now - lastDelivery >= OLD_DATA_IDLE_MS) ? engine.tick(now) : [];
      trackFiring(alerts);
      const changes = [...pendingChanges, ...incidents.onAlerts(alerts, now)];
      const alertRequests = [...pendingAlerts, ...alerts.map((a) => ({ index: dailyIndex(cfg.elasticsearch.indices.alerts, a['@timestamp']), id: alertDocumentId(a), doc: a }))];
      [pendingAlerts, pendingChanges] = [[], []];
      if (changes.length > 0 || alertRequests.length > 0) {
        try {
          for (const r of await sink.write([...alertRequests, ...incidentRequests(changes)], { signal: opts.signal })) log.warn(`document rejected: ${r.reason}`, { id: r.request.id });
          if (checkpoints) checkpoints.queue(pagesOf(changes));
          else await notify.dispatch(pagesOf(changes));
        } catch (err) {
          [pendingAlerts, pendingChanges] = [alertRequests, changes];
          if (!opts.signal?.aborted) log.warn(`alerts and incidents of the wall clock not delivered yet: ${(err as Error).message}`, { hint: 'they are tried again in a second' });
        }
      }
      if (checkpoints?.due(now)) await checkpoint();
    });
  }, TICK_MS);

  /** Saves the state, commits the offsets it reflects, sends the pages that waited for it (within `serial`). A failure
   * is logged and tried again at the next tick: the pages still wait, the offsets stay where they were. */
  async function checkpoint(): Promise<void> {
    try {
      await checkpoints!.save(consumer, (pages) => notify.dispatch(pages));
    } catch (err) {
      if (!opts.signal?.aborted) log.warn(`state checkpoint not saved yet: ${errorText(err)}`, { hint: 'tried again in a second; the offsets are committed only once it is' });
    }
  }
  ticker.unref();

  // The timer's checkpoint may come before it exists (no commit then: nothing was consumed).
  let consumer: GroupConsumer | undefined = undefined;
  let consumerStarted: (c: GroupConsumer) => void = () => {};
  const started = new Promise<GroupConsumer>((resolve) => (consumerStarted = resolve));
  /** The adoption of the checkpoints of processors that left the group (processors/checkpoint.ts), after each join:
   * the batches wait for it. A failure is logged; the partitions are then processed without that state. */
  let adopting: Promise<void> = Promise.resolve();
  let stopping = false;
  const memberPrefix = `${cfg.kafka.client_id}-${COMPONENT}@`;
  async function adoptDeparted(): Promise<void> {
    // Not while stopping: the group's last rebalance before this one leaves is no partition to take over.
    if (stopping) return;
    try {
      const { adopted, dropped, live } = await checkpoints!.adopt(async () => {
        const ids = await (await started).members();
        return new Set(ids.filter((id) => id.startsWith(memberPrefix)).map((id) => id.slice(memberPrefix.length)));
      });
      for (const a of adopted) {
        log.warn(
          `state checkpoint ${a.owner} adopted (its processor left the group): save ${a.seq}: ${a.rules} rule(s), ${a.incidents} open incident(s), ${a.outbox} page(s) not sent yet; partitions ${a.partitions.join(', ')}`,
          a.problems.length ? { problems: a.problems.slice(0, 20) } : {},
        );
      }
      if (dropped) log.warn(`state checkpoint ${checkpoints!.owner}: ${dropped}`);
      // A partition moved from a processor still in the group (a scale-out rebalance): its state stays there
      // (README, "State that survives restarts").
      for (const owner of live ?? []) log.info(`state checkpoint ${owner} not adopted: its processor is still in the group (it keeps its state of the partitions it gave up)`);
      if (adopted.length > 0) await checkpoint();
    } catch (err) {
      if (!opts.signal?.aborted) log.warn(`the checkpoints of processors that left the group not adopted: ${errorText(err)}`, { hint: 'their partitions go on without their open alerts' });
    }
  }
  consumer = await GroupConsumer.start(cfg.kafka, {
    groupId: cfg.kafka.consumer_group,
    topics: consumed,
    component: COMPONENT,
    onBatch,
    onAssigned: (a: Map<string, number[]>) => {
      // Each assignment, in words and as a field (`topic/partition` each): which processor holds which partitions is
      // what an SRE asks first of a group.
      const partitions = [...a].flatMap(([topic, parts]) => [...parts].sort((x, y) => x - y).map((p) => `${topic}/${p}`));
      log.info(`joined group ${cfg.kafka.consumer_group}: ${partitions.length ? `partitions ${partitions.join(' ')}` : 'no partition'}`, { partitions });
      checkpoints?.onAssigned(a);
      lastDelivery = Date.now();
      joined = true;
      if (checkpoints && !stopping) adopting = serial(adoptDeparted);
    },
    ...(checkpoints ? { commitEachBatch: false, clientTag: `@${cfg.processor.checkpoint.instance}` } : {}),
    signal: opts.signal,
  });
  consumerStarted(consumer);

  return {
    async stop() {
      stopping = true;
      clearInterval(ticker);
      // The last checkpoint before leaving the group: the next owner of the partitions starts where this one ended.
      await consumer!.stop(async () => serial(async () => (checkpoints?.due(Date.now(), true) ? checkpoint() : undefined)));
      await serial(async () => {});
      await checkpoints?.close();
      await notify.stop();
      await producer.disconnect();
      await es.close();
    },
  };
}

/** A message of a batch, decoded: the detectors' verdict on it (run once the batch is indexed), what decoding it
 * took, and what to dead-letter if the two together exceed the time budget. */
export interface Verdict {
  detect: () => Alert[];
  spentMs: number;
  /** The message as it came (an event of a batch: as its own record, made when needed); absent: not
   * dead-lettered when over the budget (only counted). */
  payload?: () => string;
  source?: DeadLetter['source'];
}

/** Runs the verdicts of a batch in order. A message whose decoding and detection took more than the budget is
 * counted (errors{stage="time_budget"}) and dead-lettered with the reason; its alerts still count. */
export function runVerdicts(verdicts: Verdict[], budget: TimeBudget, metrics: Pick<ComponentMetrics, 'error'>): { alerts: Alert[]; overBudget: DeadLetter[] } {
  const alerts: Alert[] = [];
  const overBudget: DeadLetter[] = [];
  let over = 0;
  const run = budget.run();
  for (const v of verdicts) {
    const { value, ms } = run.time(v.detect);
    alerts.push(...value);
    if (!budget.over(v.spentMs + ms)) continue;
    over++;
    if (v.payload !== undefined) overBudget.push(deadLetter(COMPONENT, budget.reason(v.spentMs + ms), v.payload(), v.source));
  }
  if (over > 0) metrics.error('time_budget', over);
  return { alerts, overBudget };
}
