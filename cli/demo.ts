// `stackwatch demo`: the whole pipeline on bundled real logs, on a locally started stack (or the Kafka and
// Elasticsearch named by the environment), ending with what it found and where to look.
import { cpSync, mkdirSync, mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { validateConfig, type Config } from '../core/config.ts';
import { esClient } from '../core/elastic.ts';
import { startLocalStack } from '../core/local-stack.ts';
import type { Alert, Incident } from '../core/events.ts';
import { deleteTopics, ensureTopics, TopicProducer } from '../core/kafka.ts';
import { sleep } from '../core/retry.ts';
import { CephCollector } from '../collectors/ceph.ts';
import { collectorContext } from '../collectors/emitter.ts';
import { OpenstackLogCollector } from '../collectors/openstack-logs.ts';
import { pollOnce } from '../collectors/schedule.ts';
import { OLD_DATA_IDLE_MS, startProcessor } from '../processors/processor.ts';
import type { Command } from './index.ts';
import { parseOptions, shutdownSignal } from './options.ts';
import { LIVE_HELP, runLiveDemo } from './demo-live.ts';

const REPO = new URL('..', import.meta.url).pathname;
const SAMPLES = join(REPO, 'samples', 'hotsos-2022');
const CEPH_REPLAY = join(REPO, 'samples', 'ceph-octopus-2022', 'ceph-replay.mjs');
const DEMO_HOST = 'hotsos-compute-2022';
const DEMO_CLUSTER = 'hotsos-ceph-2022';

function say(line = ''): void {
  process.stdout.write(line + '\n');
}

/** Starts the local stack unless the environment names a Kafka and an Elasticsearch; returns its variables. */
function stackEnvironment(): Record<string, string> {
  if (process.env.STACKWATCH_KAFKA_BROKERS && process.env.STACKWATCH_ES_URL) {
    say('Using the Kafka and Elasticsearch named by STACKWATCH_KAFKA_BROKERS and STACKWATCH_ES_URL.');
    return {};
  }
  say('Starting the local stack (Kafka, Elasticsearch, Alertmanager, a pager webhook) with scripts/stack.sh ...');
  return startLocalStack();
}

function formatIncident(d: Incident): string {
  const i = d.incident;
  const span = `${i.started_at.slice(0, 19)} – ${(i.ended_at ?? '').slice(0, 19) || 'still firing (pages once it has lasted min_duration_s)'}`;
  return `  ${span}  ${(i.paged ? 'PAGED' : 'not paged').padEnd(9)} ${i.severity.padEnd(8)} ${i.cause}: ${i.alert_ids.length} alert(s) of ${i.services.join(', ')} on ${i.hosts.join(', ')}`;
}

function formatAlert(a: Alert): string {
  const dur = a.alert.duration_s !== undefined ? ` after ${Math.round(a.alert.duration_s)}s` : '';
  return `  ${a['@timestamp'].slice(0, 19)}  ${a.alert.status.toUpperCase().padEnd(8)} ${a.alert.severity.padEnd(8)} ${a.rule.id.padEnd(20)} ${a.message.slice(0, 110)}${dur}`;
}

export const demoCommand: Command = {
  name: 'demo',
  help: `Usage: stackwatch demo [--keep-topic]
       stackwatch demo --live [--seed-timing] [--timeout MIN] [--keep-topic]

Replays the real logs bundled in samples/hotsos-2022 (a 2022 RabbitMQ outage seen by nova-compute and three
neutron agents) through the collector, Kafka, the processor, Elasticsearch and Alertmanager, and polls the
real Ceph JSON of the same cloud (samples/ceph-octopus-2022, through a stand-in for the ceph command) with the
Ceph collector; prints the alerts raised and where to look. Unless STACKWATCH_KAFKA_BROKERS and STACKWATCH_ES_URL are set, it first starts the
local stack with scripts/stack.sh (installing it on first use) and leaves it running for you to explore;
stop it with scripts/stack.sh stop.

Options:
  --keep-topic    keep the demo's Kafka topic afterwards (default: delete it)
${LIVE_HELP}`,

  async main(args) {
    // The live story (cli/demo-live.ts) has options of its own.
    if (args.includes('--live')) return runLiveDemo(args.filter((a) => a !== '--live'));
    const { values } = parseOptions(args, { 'keep-topic': { type: 'boolean', default: false } });
    const env = { ...process.env, ...stackEnvironment() };
    const run = `${Date.now().toString(36)}`;
    const work = mkdtempSync(join(tmpdir(), 'stackwatch-demo-'));
    const logsDir = join(work, 'logs');
    mkdirSync(logsDir);
    cpSync(SAMPLES, logsDir, { recursive: true });
    const cfg: Config = validateConfig(
      {
        kafka: {
          brokers: ['127.0.0.1:29092'],
          topics: {
            logs: `stackwatch.demo-${run}.logs`,
            notify_retry: `stackwatch.demo-${run}.notify-retry`,
            metrics: `stackwatch.demo-${run}.metrics`,
            health: `stackwatch.demo-${run}.health`,
          },
          consumer_group: `stackwatch-demo-${run}`,
        },
        // The run's state checkpoints in a topic of its own, deleted with the others.
        processor: { checkpoint: { topic: `stackwatch.demo-${run}.state` } },
        elasticsearch: { url: 'http://127.0.0.1:29200' },
        notify: { alertmanager: { url: 'http://127.0.0.1:29094' } },
        collectors: {
          openstack_logs: { paths: [join(logsDir, '*')], checkpoint_dir: join(work, 'checkpoints'), host_name: DEMO_HOST },
          ceph: { command: [process.execPath, CEPH_REPLAY], cluster_name: DEMO_CLUSTER },
        },
        status_server: { enabled: false },
      },
      'demo configuration',
      env,
    );
    say(`\nReplaying ${readdirSync(logsDir).join(', ')} (real logs, samples/README.md).`);

    const { signal } = shutdownSignal();
    const alerts: Alert[] = [];
    let indexed = 0;
    let deadLettered = 0;
    const processor = await startProcessor(cfg, {
      signal,
      onProcessed(info) {
        indexed += info.indexed;
        deadLettered += info.deadLettered;
        alerts.push(...info.alerts);
      },
    });
    const started = Date.now();
    const producer = await TopicProducer.connect(cfg.kafka, 'openstack-logs', signal);
    await ensureTopics(cfg.kafka, [cfg.kafka.topics.logs, cfg.kafka.topics.dead_letter], signal);
    const collector = new OpenstackLogCollector(cfg.collectors.openstack_logs!, collectorContext('openstack-logs', producer, cfg.kafka.topics));
    let sent = await collector.pollOnce(signal);
    // The files are quiet now: after the multi-line flush interval their last events go out too.
    await sleep(cfg.collectors.openstack_logs!.multiline_flush_ms + 50, signal);
    sent += await collector.pollOnce(signal);
    // Ceph: one poll of the real collector (health event + usage metrics).
    const cephCtx = collectorContext('ceph-collector', producer, cfg.kafka.topics);
    const ceph = await pollOnce(new CephCollector(cfg.collectors.ceph!, cephCtx), cephCtx.emitter, signal);
    await producer.disconnect();
    const expected = sent + ceph.metrics.length; // health events go to the detectors, not to an index
    const deadline = Date.now() + 180_000;
    for (let last = 0; indexed + deadLettered < expected && Date.now() < deadline; await sleep(200, signal)) {
      if (Date.now() - last > 2000) {
        say(`  ... ${indexed}/${expected} events in Elasticsearch`);
        last = Date.now();
      }
    }
    const seconds = (Date.now() - started) / 1000;
    // Replayed data is old: what waits for the clock (a reconnect that has to stay up) is decided once nothing has
    // come for OLD_DATA_IDLE_MS, and an outage's incident once it has had no news for settle_s after that (a file
    // read later may still bring alerts of the same cause): wait that long, so the pager has its pages and
    // resolutions.
    const settleS = Math.ceil(OLD_DATA_IDLE_MS / 1000) + 1 + cfg.incidents.settle_s + 2;
    say(`  ... waiting ${settleS} s for the detectors and the incidents to settle`);
    await sleep(settleS * 1000, signal);
    await processor.stop();
    const { logs, notify_retry, metrics, health } = cfg.kafka.topics;
    if (!values['keep-topic']) await deleteTopics(cfg.kafka, [logs, notify_retry, metrics, health, cfg.processor.checkpoint.topic]).catch(() => {});

    const es = esClient(cfg.elasticsearch);
    const logsPattern = `${cfg.elasticsearch.indices.logs}-*`;
    const alertsPattern = `${cfg.elasticsearch.indices.alerts}-*`;
    const incidentsPattern = `${cfg.elasticsearch.indices.incidents}-*`;
    const metricsPattern = `${cfg.elasticsearch.indices.metrics}-*`;
    await es.indices.refresh({ index: [logsPattern, alertsPattern, metricsPattern, incidentsPattern], ignore_unavailable: true, allow_no_indices: true });
    // This run's incidents: those its alerts were filed into, and those they were merged into (a file read later
    // showed two to be one cause).
    const incidentsById = async (ids: string[]) =>
      (
        await es.search({
          index: incidentsPattern,
          size: 100,
          ignore_unavailable: true,
          allow_no_indices: true,
          query: { terms: { 'incident.id': ids } },
          sort: [{ 'incident.started_at': 'asc' }],
        })
      ).hits.hits.map((h) => h._source as Incident);
    const filed = await incidentsById([...new Set(alerts.flatMap((a) => (a.incident ? [a.incident.id] : [])))]);
    const mergedInto = filed.flatMap((i) => (i.incident.merged_into ? [i.incident.merged_into] : []));
    const incidents = [...filed, ...(mergedInto.length > 0 ? await incidentsById(mergedInto) : [])]
      .filter((i, n, all) => !i.incident.merged_into && all.findIndex((x) => x.incident.id === i.incident.id) === n)
      .sort((x, y) => x.incident.started_at.localeCompare(y.incident.started_at));
    const cephSamples = await es.count({ index: metricsPattern, query: { term: { 'host.name': DEMO_CLUSTER } } });
    const inEs = await es.count({ index: logsPattern, query: { term: { 'host.name': DEMO_HOST } } });
    const byService = await es.search({
      index: logsPattern,
      size: 0,
      query: { term: { 'host.name': DEMO_HOST } },
      aggs: { services: { terms: { field: 'service.name' } } },
    });
    await es.close();

    say(`\nCollector sent ${sent} events to Kafka; the processor indexed ${indexed} (dead-lettered ${deadLettered}) in ${seconds.toFixed(1)}s.`);
    say(`Elasticsearch holds ${inEs.count} events of host ${DEMO_HOST} (replays overwrite by id, never add):`);
    const buckets = (byService.aggregations?.services as { buckets: { key: string; doc_count: number }[] }).buckets;
    for (const b of buckets) say(`  ${b.key.padEnd(24)} ${b.doc_count}`);
    say(
      `Ceph ${DEMO_CLUSTER}: ${ceph.health ? `${ceph.health.status} (${ceph.health.checks.map((c) => c.code).join(', ') || 'no checks'})` : 'no health event'}, ${cephSamples.count} usage and health samples in ${metricsPattern}.`,
    );

    say(`\nAlerts raised (${alerts.length}):`);
    for (const a of [...alerts].sort((x, y) => x['@timestamp'].localeCompare(y['@timestamp']))) say(formatAlert(a));
    if (alerts.length === 0) say('  none');
    const paged = incidents.filter((i) => i.incident.paged);
    say(`\nIncidents: the ${alerts.filter((a) => a.alert.status === 'firing').length} firing alerts are ${incidents.length} incident(s), ${paged.length} paged (one page per cause):`);
    for (const i of incidents) say(formatIncident(i));

    const am = cfg.notify.alertmanager!.url;
    const amAlerts = (await (await fetch(`${am}/api/v2/alerts`)).json()) as { labels: Record<string, string> }[];
    const stillFiring = amAlerts.filter((a) => a.labels.host === DEMO_HOST || a.labels.host === DEMO_CLUSTER).length;
    say(`\nAlertmanager (${am}) took every transition; ${stillFiring} alert(s) of this host are active there now.`);
    if (env.STACKWATCH_WEBHOOK_URL) {
      // The webhook keeps what every sender posted (the tests' own notifiers post stackwatch's documents, without
      // Alertmanager's labels): only Alertmanager's notifications about this host count.
      const got = (await (await fetch(`${env.STACKWATCH_WEBHOOK_URL}/received`)).json()) as { items: { body?: { alerts?: { labels?: Record<string, string> }[] } }[] };
      const demoAlert = (a: { labels?: Record<string, string> }) => a.labels?.host === DEMO_HOST || a.labels?.host === DEMO_CLUSTER;
      const ours = got.items.filter((i) => i.body?.alerts?.some(demoAlert));
      const ids = new Set(ours.flatMap((i) => i.body!.alerts!.filter(demoAlert).map((a) => a.labels!.alert_id)));
      say(`The pager webhook (${env.STACKWATCH_WEBHOOK_URL}/received) got ${ours.length} notification(s) from Alertmanager about ${ids.size} of these alerts`);
      say('(Alertmanager pages for what is still firing when it looks: replayed 2022 outages mostly arrive already resolved).');
    }

    const url = cfg.elasticsearch.url;
    say(`
Where to look:
  Logs     ${url}/${logsPattern}/_search?q=host.name:${DEMO_HOST}%20AND%20log.level:ERROR
  AMQP     ${url}/${logsPattern}/_search?q=log.logger:oslo.messaging._drivers.impl_rabbit
  Alerts   ${url}/${alertsPattern}/_search?q=rule.id:amqp-connection-lost
  Incidents ${url}/${incidentsPattern}/_search?q=incident.paged:true   (or: npx stackwatch detect --incidents samples/hotsos-2022/*)
  Ceph     ${url}/${metricsPattern}/_search?q=host.name:${DEMO_CLUSTER}%20AND%20metric.name:ceph.pool.*
  Trends   npx stackwatch trends --config <your config>   (capacity per resource; the demo's one Ceph poll is too short a history)
  Kibana   npx stackwatch setup --kibana http://<kibana>:5601 imports the dashboards; the logs are from February 2022
  Pager    ${am}/#/alerts (Alertmanager) ${env.STACKWATCH_WEBHOOK_URL ? `and ${env.STACKWATCH_WEBHOOK_URL}/received` : ''}
The stack keeps running for you to explore; stop it with: scripts/stack.sh stop`);
    return indexed + deadLettered >= expected ? 0 : 1;
  },
};
