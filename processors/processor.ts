// The processor: consumes the collectors' topics from Kafka in a consumer group — raw log events (parsed into ECS
// documents), metric samples, health events (Ceph health, Zabbix problems, inventory: a host's current state,
// indexed) and the dead-letter topic (indexed for Kibana), each decoded by the table in processors/decode.ts —
// bulk-indexes what it keeps, runs the detectors, indexes and sends the alerts, and only then commits the offsets. A crash at any
// point replays the uncommitted batch; deterministic ids make the replay overwrite, not add.
import type { Config } from '../core/config.ts';
import { dailyIndex, esClient, waitForElasticsearch } from '../core/elastic.ts';
import { installIndexTemplates } from '../sinks/index-setup.ts';
import { deadLetter, type Alert, type DeadLetter } from '../core/events.ts';
import { ensureTopics, GroupConsumer, groupProgress, TopicProducer, type InBatch, type TopicKind } from '../core/kafka.ts';
import { failpoint } from '../core/failpoints.ts';
import { logger } from '../core/log.ts';
import { componentMetrics, countDetectorState, countFiringAlerts, reportConsumerLag, type ComponentMetrics } from '../core/metrics.ts';
import { registerReadiness } from '../core/status-server.ts';
import { alertDocumentId } from '../detectors/detector.ts';
import { DetectionEngine } from '../detectors/engine.ts';
import { loadRules } from '../detectors/rules.ts';
import { ElasticsearchSink, type IndexRequest } from '../sinks/elasticsearch.ts';
import { NotificationDispatcher } from '../notifiers/dispatch.ts';
import { notifiersFromConfig } from '../notifiers/index.ts';
import { decodeMessage } from './decode.ts';
import { TimeBudget } from './time-budget.ts';

const COMPONENT = 'processor';

export interface ProcessorOptions {
  signal?: AbortSignal;
  /** Called when a batch is in Elasticsearch (just before its offsets are committed), with the alerts it raised. */
  onProcessed?: (info: { indexed: number; deadLettered: number; alerts: Alert[] }) => void;
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
  const budget = new TimeBudget(cfg.processor.event_time_budget_ms);
  const sink = new ElasticsearchSink(es, 'elasticsearch-sink', cfg.elasticsearch.bulk_max_docs);
  const producer = await TopicProducer.connect(cfg.kafka, COMPONENT, opts.signal);
  const notify = new NotificationDispatcher(cfg, notifiersFromConfig(cfg), producer, opts.signal);
  await notify.start();
  countFiringAlerts(() => notify.firingByRule());
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
    const { document: d, event } = decodeMessage(kindOf.get(topic)!, value, { timezone: cfg.processor.timezone, ingested, source: { topic, ...at } });
    const prefix = d && cfg.elasticsearch.indices[d.index];
    return {
      ...(d ? { request: { index: d.daily === undefined ? prefix! : dailyIndex(prefix!, d.daily), id: d.id, doc: d.doc } } : {}),
      detect: event ? () => engine.on(event) : () => [],
    };
  }

  async function onBatch(batch: InBatch): Promise<void> {
    metrics.received(batch.messages.length);
    const dead: DeadLetter[] = [];
    const requests: IndexRequest[] = [];
    const verdicts: Verdict[] = [];
    const source = (offset: string) => ({ topic: batch.topic, partition: batch.partition, offset });
    const ingested = new Date().toISOString();

    for (const m of batch.messages) {
      const text = m.value ?? '';
      try {
        const { value, ms } = budget.time(() => decode(batch.topic, JSON.parse(text), ingested, { partition: batch.partition, offset: m.offset }));
        if (value.request) requests.push(value.request);
        // A dead letter over the budget is not sent back into the topic it came from.
        verdicts.push({ detect: value.detect, spentMs: ms, ...(batch.topic === deadTopic ? {} : { payload: text, source: source(m.offset) }) });
      } catch (err) {
        if (batch.topic === deadTopic) {
          // Never back into the topic it came from: counted and logged instead.
          metrics.discarded('undecodable_dead_letter');
          log.warn(`undecodable message in the dead-letter topic ${deadTopic} at ${batch.partition}/${m.offset}: ${(err as Error).message}`);
          continue;
        }
        dead.push(deadLetter(COMPONENT, `undecodable message: ${(err as Error).message}`, text, source(m.offset)));
      }
    }

    const wait = { signal: opts.signal, onWait: batch.heartbeat };
    for (const r of await sink.write(requests, wait)) {
      if (batch.topic === deadTopic) metrics.discarded('dead_letter_rejected_by_elasticsearch');
      else dead.push(deadLetter(COMPONENT, r.reason, JSON.stringify(r.request.doc)));
    }

    const { alerts, overBudget } = runVerdicts(verdicts, budget, metrics);
    dead.push(...overBudget);
    const alertRequests = alerts.map((a) => ({ index: dailyIndex(cfg.elasticsearch.indices.alerts, a['@timestamp']), id: alertDocumentId(a), doc: a }));
    for (const r of await sink.write(alertRequests, wait)) dead.push(deadLetter(COMPONENT, r.reason, JSON.stringify(r.request.doc)));

    if (dead.length > 0) {
      await producer.send(
        deadTopic,
        dead.map((d) => ({ key: d.component, value: JSON.stringify(d) })),
      );
      metrics.error('dead_letter', dead.length);
      log.warn(`${dead.length} event(s) sent to the dead-letter topic ${deadTopic}`, { first_reason: dead[0].reason });
    }
    await notify.dispatch(alerts);
    failpoint('processor.before-commit');
    metrics.sent(requests.length);
    opts.onProcessed?.({ indexed: requests.length, deadLettered: dead.length, alerts });
  }

  const consumer = await GroupConsumer.start(cfg.kafka, {
    groupId: cfg.kafka.consumer_group,
    topics: consumed,
    component: COMPONENT,
    onBatch,
    signal: opts.signal,
  });

  return {
    async stop() {
      await consumer.stop();
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
  /** The message as it came; absent: not dead-lettered when over the budget (only counted). */
  payload?: string;
  source?: DeadLetter['source'];
}

/** Runs the verdicts of a batch in order. A message whose decoding and detection took more than the budget is
 * counted (errors{stage="time_budget"}) and dead-lettered with the reason; its alerts still count. */
export function runVerdicts(verdicts: Verdict[], budget: TimeBudget, metrics: Pick<ComponentMetrics, 'error'>): { alerts: Alert[]; overBudget: DeadLetter[] } {
  const alerts: Alert[] = [];
  const overBudget: DeadLetter[] = [];
  let over = 0;
  for (const v of verdicts) {
    const { value, ms } = budget.time(v.detect);
    alerts.push(...value);
    if (!budget.over(v.spentMs + ms)) continue;
    over++;
    if (v.payload !== undefined) overBudget.push(deadLetter(COMPONENT, budget.reason(v.spentMs + ms), v.payload, v.source));
  }
  if (over > 0) metrics.error('time_budget', over);
  return { alerts, overBudget };
}
