// A processor killed (SIGKILL) while an AMQP outage is open, and started again: the pager gets exactly one firing
// and one resolved notification of that outage, with its start; the alerts index holds one firing and one resolved
// transition of each service's alert. Issue 15: the detectors' and incidents' state is checkpointed with the offsets
// it reflects (processors/checkpoint.ts, state/store.ts) and restored at start. Without it the new processor learns
// of the outage only from what it replays: the reconnect lines find no open outage, and the page never resolves.
//
// Real parts: oslo.messaging processes (scripts/amqp-harness/) against the tests' RabbitMQ node (its app stopped
// for 40 s), the real collector tailing their logs, `stackwatch run --role processor` as a child process (killed and
// started again), Kafka, Elasticsearch, Alertmanager and the pager webhook.
import { describe, expect, it } from 'vitest';
import { ensureTopics } from '../../core/kafka.ts';
import { rabbitOutage, sleep } from './amqp-harness.ts';
import { amqpScene } from './amqp-scene.ts';
import { pagedAlerts, stateCli, waitFor } from './harness.ts';

const OUTAGE_S = 40;
const scene = amqpScene('amqp-restart');

describe('a processor killed during an AMQP outage', () => {
  it(`SIGKILL while the outage is open, started again: one firing and one resolved notification, one firing and one resolved transition per service`, { timeout: 300_000 }, async () => {
    const t = scene.t;
    let processor = scene.startProcessor();
    await ensureTopics(t.cfg.kafka, [t.cfg.kafka.topics.logs]);
    await scene.startServices();
    expect(await pagedAlerts(t.host), 'nothing pages before the outage').toEqual([]);

    const outage = rabbitOutage(OUTAGE_S, 'stop_app');
    // The outage paged (so its state is in a checkpoint: pages wait for the save that holds them).
    const firing = await waitFor(
      () => `the outage's firing notification; processor said: ${processor.stderr().slice(-2000)}`,
      async () => (await pagedAlerts(t.host)).find((a) => a.status === 'firing'),
      OUTAGE_S * 1000 - 5_000,
      250,
    );
    processor.child.kill('SIGKILL');
    const killed = await processor.exited;
    expect(killed.signal).toBe('SIGKILL');
    const killedAt = Date.now();
    processor = scene.startProcessor();
    // What the killed processor left, read from Kafka without it: the open incident, paged, its alerts firing.
    const owner = `${t.cfg.kafka.consumer_group}/${t.cfg.processor.checkpoint.instance}`;
    const list = await stateCli(t);
    expect(list).toMatch(new RegExp(`^${owner}  save \\d+ at \\S+, .* part\\(s\\); offsets: ${t.cfg.kafka.topics.logs.replaceAll('.', '\\.')} `, 'm'));
    expect(list).toMatch(/^ {4}rule:amqp-connection-lost +\d/m);
    const detail = await stateCli(t, '--owner', owner);
    expect(detail).toMatch(/incident \S+ amqp-broker-unreachable firing, paged, since /);
    expect(detail).toMatch(/ {4}firing amqp-connection-lost nova-(compute|api) on /);
    const times = await outage;
    expect(times.restored, 'the processor was killed while the outage was open').toBeGreaterThan(killedAt);

    await waitFor(
      () => `the outage's resolved notification; processor said: ${processor.stderr().slice(-3000)}`,
      async () => {
        const a = await pagedAlerts(t.host);
        return a.some((x) => x.status === 'resolved') && a;
      },
      90_000,
      250,
    );
    // Nothing more comes.
    await sleep(5_000);
    // The restarted processor said what it restored.
    expect(processor.stderr()).toMatch(/state checkpoint \S+ \(topic [^)]+\): save \d+: \d+ rule\(s\), [1-9]\d* open incident\(s\)/);
    const resolved = await scene.expectOneOutage(firing, times.began);
    console.log(
      `amqp-restart: RabbitMQ down ${new Date(times.began).toISOString()} – ${new Date(times.restored).toISOString()}; killed the processor ${((killedAt - times.began) / 1000).toFixed(1)} s into it; resolved at the pager ${((Date.parse(resolved.endsAt) - times.restored) / 1000).toFixed(1)} s after start_app (endsAt)`,
    );
  });
});
