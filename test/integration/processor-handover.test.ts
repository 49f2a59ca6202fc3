// Two processors in one group, one killed (SIGKILL) while an AMQP outage it holds is open: its partition moves to the
// other, which adopts its checkpoint (processors/checkpoint.ts, state/merge.ts) before it reads the partition, and
// resolves the outage. The pager gets exactly one firing and one resolved notification of it, with its start; the
// alerts index holds one firing and one resolved transition of each service's alert. The killed processor, started
// again, starts empty (its checkpoint was adopted) and pages nothing. Issue 15. With the adoption switched off the
// test fails: the survivor adopts nothing and makes an outage of its own from the loss lines after the last commit,
// and the killed processor, started again, restores the open incident from its own checkpoint: two copies of one
// outage.
//
// Real parts: oslo.messaging processes (scripts/amqp-harness/) against the tests' RabbitMQ node (its app stopped for 45 s),
// the real collector tailing their logs, two `stackwatch run --role processor` child processes (instances p1 and p2),
// Kafka, Elasticsearch, Alertmanager and the pager webhook. The logs topic has one partition, so that one processor
// holds the outage's services whole (the incidents of two processors are their own; README, "State that survives
// restarts").
import { describe, expect, it } from 'vitest';
import { ensureTopics } from '../../core/kafka.ts';
import { rabbitOutage, sleep } from './amqp-harness.ts';
import { amqpScene } from './amqp-scene.ts';
import { pagedAlerts, stateCli, waitFor, type Cli } from './harness.ts';

const OUTAGE_S = 45;
const scene = amqpScene(
  'processor-handover',
  // A killed member leaves the group 6 s after its last heartbeat.
  (raw) => (raw.kafka.session_timeout_ms = 6000),
  // One partition of logs: one processor holds both services' logs.
  (t) => ensureTopics(t.cfg.kafka, [t.cfg.kafka.topics.logs], undefined, 1),
);
const startProcessor = (instance: string): Cli => scene.startProcessor({ STACKWATCH_PROCESSOR_INSTANCE: instance });

describe('two processors, the one holding an open AMQP outage killed', () => {
  it(
    'its partition moves to the other, which adopts its checkpoint and resolves the outage: one firing and one resolved notification; the killed one restarts empty',
    { timeout: 300_000 },
    async () => {
      const t = scene.t;
      const byInstance = new Map([
        ['p1', startProcessor('p1')],
        ['p2', startProcessor('p2')],
      ]);
      await scene.startServices();
      // Both in the group before the outage, its partitions shared between them: a processor that joins late takes
      // partitions from one still alive, whose state of them stays behind (README, "State that survives restarts");
      // this test is of a processor that dies. Each says what it holds after each join; once the two hold no
      // partition in common, the group's rebalance is over.
      const holds = (p: Cli): string[] | undefined =>
        p
          .stderr()
          .split('\n')
          .slice(0, -1) // whole lines only
          .filter((l) => l.includes('"msg":"joined group '))
          .map((l) => (JSON.parse(l) as { partitions: string[] }).partitions)
          .at(-1);
      await waitFor(
        () => `both processors in the group, its partitions shared: ${[...byInstance].map(([name, p]) => `${name} holds ${holds(p)?.join(' ') ?? 'nothing yet'}`).join('; ')}`,
        async () => {
          const [a, b] = [...byInstance.values()].map(holds);
          return a !== undefined && b !== undefined && a.length > 0 && b.length > 0 && !a.some((x) => b.includes(x)) && [...a, ...b].includes(`${t.cfg.kafka.topics.logs}/0`);
        },
        60_000,
        250,
      );
      expect(await pagedAlerts(t.host), 'nothing pages before the outage').toEqual([]);

      const outage = rabbitOutage(OUTAGE_S, 'stop_app');
      const said = () => [...byInstance].map(([name, p]) => `${name}: ${p.stderr().slice(-1500)}`).join('\n');
      const firing = await waitFor(
        () => `the outage's firing notification; the processors said: ${said()}`,
        async () => (await pagedAlerts(t.host)).find((a) => a.status === 'firing'),
        OUTAGE_S * 1000 - 20_000,
        250,
      );
      // The processor whose checkpoint holds the logs partition (and the open incident) is killed.
      const group = t.cfg.kafka.consumer_group;
      const logsTopic = t.cfg.kafka.topics.logs;
      let listed = '';
      const holder = await waitFor(
        () => `a checkpoint holding ${logsTopic}: ${listed}`,
        async () => {
          listed = await stateCli(t);
          const line = listed.split('\n').find(
            (l) =>
              l.startsWith(`${group}/`) &&
              / offsets: /.test(l) &&
              l
                .split(' offsets: ')[1]
                .split('; ')
                .some((o) => o.startsWith(`${logsTopic} `)),
          );
          return line?.slice(group.length + 1, line.indexOf('  '));
        },
        10_000,
        250,
      );
      expect(['p1', 'p2']).toContain(holder);
      const survivor = holder === 'p1' ? 'p2' : 'p1';
      expect(await stateCli(t, '--owner', `${group}/${holder}`)).toMatch(/incident \S+ amqp-broker-unreachable firing, paged, since /);
      const killed = byInstance.get(holder)!;
      killed.child.kill('SIGKILL');
      expect((await killed.exited).signal).toBe('SIGKILL');
      const killedAt = Date.now();

      // The survivor is given the partition once the killed member's session ends, and adopts its checkpoint.
      const other = byInstance.get(survivor)!;
      // What the survivor said of the group and of checkpoints comes first, on one line (a CI summary keeps only the
      // first line of a failure); the tail of all it said after it.
      const aboutGroup = (text: string) =>
        text
          .split('\n')
          .filter((l) => /adopt|checkpoint|group|rebalanc|consumer|join|assign|kafka/i.test(l))
          .map((l) => l.replace(/^\{"ts":"[^"]*T([^"]*)"/, '$1'))
          .join(' | ');
      await waitFor(
        () =>
          `the survivor's adoption (${Date.now() - killedAt} ms after the kill); what it said of the group: ${aboutGroup(other.stderr())}; what the killed one had said: ${aboutGroup(killed.stderr())}\nthe end of all it said: ${other.stderr().slice(-3000)}`,
        async () =>
          new RegExp(`state checkpoint ${group}/${holder} adopted \\(its processor left the group\\): save \\d+: [1-9]\\d* rule\\(s\\), 1 open incident\\(s\\)`).test(other.stderr()),
        30_000,
        250,
      );
      const adoptedAfter = Date.now() - killedAt;
      const times = await outage;
      expect(times.restored, 'the processor was killed while the outage was open').toBeGreaterThan(killedAt);

      await waitFor(
        () => `the outage's resolved notification; the survivor said: ${other.stderr().slice(-3000)}`,
        async () => {
          const a = await pagedAlerts(t.host);
          return a.some((x) => x.status === 'resolved') && a;
        },
        90_000,
        250,
      );
      // The adopted checkpoint is emptied; the survivor's holds the partition.
      const list = await stateCli(t);
      expect(list).toMatch(new RegExp(`^${group}/${survivor}  save \\d+ at \\S+, .* part\\(s\\); offsets: .*${logsTopic.replaceAll('.', '\\.')} `, 'm'));
      expect(list).toMatch(new RegExp(`^${group}/${holder}  save \\d+ at \\S+, 0 B in 0 part\\(s\\); offsets: \\(none\\)$`, 'm'));
      // The killed one, started again, restores the emptied checkpoint, and nothing more comes (the group may give it
      // the partition back: it reads on from the committed offsets).
      const again = startProcessor(holder!);
      await waitFor(
        () => `the restarted processor's restore; it said: ${again.stderr().slice(-2000)}`,
        async () => /state checkpoint \S+ \(topic [^)]+\): (none yet|save \d+: 0 rule\(s\), 0 open incident\(s\))/.test(again.stderr()),
        60_000,
        250,
      );
      await sleep(8_000);
      const resolved = await scene.expectOneOutage(firing, times.began);
      console.log(
        `processor-handover: RabbitMQ down ${new Date(times.began).toISOString()} – ${new Date(times.restored).toISOString()}; killed ${holder} ${((killedAt - times.began) / 1000).toFixed(1)} s into it; ${survivor} adopted its checkpoint ${(adoptedAfter / 1000).toFixed(1)} s after the kill; resolved at the pager ${((Date.parse(resolved.endsAt) - times.restored) / 1000).toFixed(1)} s after start_app (endsAt)`,
      );
    },
  );
});
