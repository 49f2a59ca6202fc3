// The log processor: consumes raw log events from Kafka in a consumer group, parses them into ECS documents,
// bulk-indexes them, runs the detectors, indexes and sends the alerts, and only then commits the offsets.
// A crash at any point replays the uncommitted batch; deterministic ids make the replay overwrite, not add.
import type { Config } from '../core/config.ts';
import { dailyIndex, esClient, installIndexTemplates, waitForElasticsearch } from '../core/elastic.ts';
import { deadLetter, RawLogEvent, type Alert, type DeadLetter, type LogDocument } from '../core/events.ts';
import { ensureTopics, GroupConsumer, TopicProducer, type InBatch } from '../core/kafka.ts';
import { failpoint } from '../core/failpoints.ts';
import { logger } from '../core/log.ts';
import { componentMetrics } from '../core/metrics.ts';
import { alertDocumentId, DetectionEngine, loadRules } from './detect.ts';
import { ElasticsearchSink, type IndexRequest } from './elasticsearch-sink.ts';
import { NotificationDispatcher, notifiersFromConfig } from './notify.ts';
import { parseLogEvent } from './parse-log.ts';

const COMPONENT = 'log-processor';

export interface LogProcessorOptions {
  signal?: AbortSignal;
  /** Called when a batch is in Elasticsearch (just before its offsets are committed), with the alerts it raised. */
  onProcessed?: (info: { indexed: number; deadLettered: number; alerts: Alert[] }) => void;
}

export interface RunningProcessor {
  stop(): Promise<void>;
}

export async function startLogProcessor(cfg: Config, opts: LogProcessorOptions = {}): Promise<RunningProcessor> {
  const log = logger(COMPONENT);
  const metrics = componentMetrics(COMPONENT);
  const es = esClient(cfg.elasticsearch);
  await waitForElasticsearch(es, cfg.elasticsearch, opts.signal);
  await installIndexTemplates(es, cfg.elasticsearch);
  const { logs: logsTopic, dead_letter: deadTopic, notify_retry: retryTopic } = cfg.kafka.topics;
  await ensureTopics(cfg.kafka, [logsTopic, deadTopic, retryTopic], opts.signal);

  const engine = await DetectionEngine.create(loadRules(cfg.rules_dir));
  const sink = new ElasticsearchSink(es, 'elasticsearch-sink', cfg.elasticsearch.bulk_max_docs);
  const producer = await TopicProducer.connect(cfg.kafka, 'log-processor', opts.signal);
  const notify = new NotificationDispatcher(cfg, notifiersFromConfig(cfg), producer, opts.signal);
  await notify.start();

  async function onBatch(batch: InBatch): Promise<void> {
    metrics.received(batch.messages.length);
    const dead: DeadLetter[] = [];
    const requests: IndexRequest[] = [];
    const docs: LogDocument[] = [];
    const source = (offset: string) => ({ topic: batch.topic, partition: batch.partition, offset });

    for (const m of batch.messages) {
      const text = m.value ?? '';
      let raw: RawLogEvent;
      try {
        const parsed = RawLogEvent.safeParse(JSON.parse(text));
        if (!parsed.success) throw new Error(`not a raw log event: ${parsed.error.issues[0].path.join('.')}: ${parsed.error.issues[0].message}`);
        raw = parsed.data;
      } catch (err) {
        dead.push(deadLetter(COMPONENT, `undecodable message: ${(err as Error).message}`, text, source(m.offset)));
        continue;
      }
      const doc = parseLogEvent(raw, { timezone: cfg.processor.timezone });
      docs.push(doc);
      requests.push({ index: dailyIndex(cfg.elasticsearch.indices.logs, doc['@timestamp']), id: doc.event.id, doc });
    }

    const wait = { signal: opts.signal, onWait: batch.heartbeat };
    for (const r of await sink.write(requests, wait)) dead.push(deadLetter(COMPONENT, r.reason, JSON.stringify(r.request.doc)));

    const alerts: Alert[] = [];
    for (const doc of docs) alerts.push(...engine.onLog(doc));
    const alertRequests = alerts.map((a) => ({ index: dailyIndex(cfg.elasticsearch.indices.alerts, a['@timestamp']), id: alertDocumentId(a), doc: a }));
    for (const r of await sink.write(alertRequests, wait)) dead.push(deadLetter(COMPONENT, r.reason, JSON.stringify(r.request.doc)));

    if (dead.length > 0) {
      await producer.send(deadTopic, dead.map((d) => ({ key: d.component, value: JSON.stringify(d) })));
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
    topics: [logsTopic],
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
