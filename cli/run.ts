// `stackwatch run`: the long-running service. Collectors and processors in one process by default, or one role.
import { ConfigError } from '../core/config.ts';
import { ensureTopics, TopicProducer } from '../core/kafka.ts';
import { logger } from '../core/log.ts';
import { collectorFactories, startCollector } from '../collectors/index.ts';
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
    const sections: Record<string, unknown> = cfg.collectors;
    const configured = collectorFactories.filter((f) => sections[f.name] !== undefined);
    if (role === 'collector' && configured.length === 0) {
      throw new ConfigError(`collectors: configure at least one of ${collectorFactories.map((f) => f.name).join(', ')} for --role collector`);
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
        // Loaded only where a processor runs: a collector on a compute host does not carry the parser, the rules,
        // the detectors and the Elasticsearch client in its memory (16 MiB of its RSS, 93 → 77 MiB idle).
        const { startProcessor } = await import('../processors/processor.ts');
        const processor = await startProcessor(cfg, { signal });
        stops.push(() => processor.stop());
      }
      // Each collector: its topics, its own producer (client id: the component), then it runs until shutdown.
      for (const factory of role === 'processor' ? [] : configured) {
        const { topics } = cfg.kafka;
        await ensureTopics(
          cfg.kafka,
          [...factory.topics, 'dead_letter' as const].map((kind) => topics[kind]),
          signal,
        );
        const producer = await TopicProducer.connect(cfg.kafka, factory.component, signal);
        try {
          tasks.push(startCollector(factory, sections[factory.name], producer, topics, signal).finally(() => producer.disconnect()));
        } catch (err) {
          await producer.disconnect().catch(() => {});
          throw err;
        }
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
