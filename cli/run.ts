// `stackwatch run`: the long-running service. Collectors and processors in one process by default, or one role.
import { ConfigError } from '../core/config.ts';
import { ensureTopics, TopicProducer } from '../core/kafka.ts';
import { logger } from '../core/log.ts';
import { OpenstackLogCollector } from '../collectors/openstack-logs.ts';
import { runCephCollector } from '../collectors/ceph.ts';
import { ZabbixCollector } from '../collectors/zabbix.ts';
import { startProcessor } from '../processors/processor.ts';
import { registerReadiness, startStatusServer } from '../core/status-server.ts';
import type { Command } from './index.ts';
import { parseOptions, readConfig, shutdownSignal } from './options.ts';

const ROLES = ['all', 'collector', 'processor'] as const;

export const runCommand: Command = {
  name: 'run',
  help: `Usage: stackwatch run [--config FILE] [--role all|collector|processor]

Runs stackwatch until SIGINT/SIGTERM. The collectors configured under collectors: feed Kafka — openstack_logs
tails service logs, zabbix polls the Zabbix API (inventory, item values, problems), ceph polls the ceph CLI
(health, usage). The processor consumes them, indexes logs and metrics into Elasticsearch, detects known
failures and sends alerts to Alertmanager and the pagers. On SIGTERM in-flight work finishes and offsets and
checkpoints are committed before exit.

Options:
  --config FILE   configuration file (default: $STACKWATCH_CONFIG or /etc/stackwatch/stackwatch.yaml)
  --role ROLE     all (default), collector or processor: run one role per process to scale them apart`,

  async main(args) {
    const { values } = parseOptions(args, { config: { type: 'string' }, role: { type: 'string', default: 'all' } });
    const role = values.role as (typeof ROLES)[number];
    if (!ROLES.includes(role)) throw new ConfigError(`--role: expected one of ${ROLES.join(', ')}, got ${JSON.stringify(values.role)}`);
    const cfg = readConfig(values.config);
    const collectorCfg = cfg.collectors.openstack_logs;
    const zabbixCfg = cfg.collectors.zabbix;
    const cephCfg = cfg.collectors.ceph;
    if (role === 'collector' && !collectorCfg && !zabbixCfg && !cephCfg) {
      throw new ConfigError('collectors: configure at least one of openstack_logs, zabbix, ceph for --role collector');
    }

    const log = logger('run');
    const { signal, stopped, abort } = shutdownSignal();
    const stops: (() => Promise<void>)[] = [];
    const tasks: Promise<unknown>[] = [];

    // The status server first: /healthz answers and /readyz says "starting" while Kafka and Elasticsearch are
    // still being reached (with retries, which can take minutes), and a port in use fails at once.
    let starting: string | undefined = 'starting: connecting to Kafka and Elasticsearch';
    registerReadiness('run', () => starting);
    const status = await startStatusServer(cfg.status_server);
    try {
      if (role !== 'collector') {
        const processor = await startProcessor(cfg, { signal });
        stops.push(() => processor.stop());
      }
      if (role !== 'processor' && collectorCfg) {
        await ensureTopics(cfg.kafka, [cfg.kafka.topics.logs, cfg.kafka.topics.dead_letter], signal);
        const producer = await TopicProducer.connect(cfg.kafka, 'openstack-logs', signal);
        const collector = new OpenstackLogCollector(collectorCfg, { topic: cfg.kafka.topics.logs, deadLetterTopic: cfg.kafka.topics.dead_letter, producer });
        tasks.push(collector.run(signal).finally(() => producer.disconnect()));
      }
      if (role !== 'processor' && zabbixCfg) {
        const { topics } = cfg.kafka;
        await ensureTopics(cfg.kafka, [topics.metrics, topics.health, topics.dead_letter], signal);
        const producer = await TopicProducer.connect(cfg.kafka, 'zabbix-collector', signal);
        const zabbix = new ZabbixCollector(zabbixCfg, { producer, topics });
        tasks.push(zabbix.run(signal).finally(() => producer.disconnect()));
      }
      if (role !== 'processor' && cephCfg) {
        const { topics } = cfg.kafka;
        await ensureTopics(cfg.kafka, [topics.metrics, topics.health, topics.dead_letter], signal);
        const producer = await TopicProducer.connect(cfg.kafka, 'ceph-collector', signal);
        tasks.push(runCephCollector(cephCfg, { producer, topics, signal }).finally(() => producer.disconnect()));
      }
    } catch (err) {
      // Nothing half-started outlives a failed start (a refused topic, SIGTERM while waiting for Kafka).
      abort();
      await Promise.allSettled(tasks);
      for (const stop of stops) await stop().catch(() => {});
      await status?.close();
      throw err;
    }
    starting = undefined;
    log.info('running', { role, ...(status ? { metrics: `http://${cfg.status_server.listen.replace(/:\d+$/, '')}:${status.port}/metrics` } : {}) });
    const sig = await stopped;
    log.info(`${sig}: draining and committing before exit`, { deadline_s: cfg.shutdown_timeout_s });
    const drained = (async () => {
      await Promise.allSettled(tasks);
      for (const stop of stops) await stop();
      await status?.close();
    })();
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<'deadline'>((resolve) => (timer = setTimeout(() => resolve('deadline'), cfg.shutdown_timeout_s * 1000)));
    const outcome = await Promise.race([drained.then(() => 'drained' as const), deadline]);
    clearTimeout(timer);
    if (outcome === 'deadline') {
      log.error(`in-flight work did not finish within shutdown_timeout_s (${cfg.shutdown_timeout_s} s); exiting anyway`, {
        hint: 'nothing is lost: uncommitted Kafka offsets and unsaved checkpoints are read again at the next start',
      });
      // The stuck work still holds sockets and timers open: leave without waiting for them.
      process.exit(1);
    }
    return 0;
  },
};
