// The Ceph collector end to end against a real cluster: the one-host Ceph of scripts/ceph.sh (Debian's Ceph 16.2:
// mon + mgr + 3 OSDs on memstore). The real collector runs the real `ceph` CLI every second; the real processor
// runs the ceph-health rule and pages through the real Alertmanager to the webhook receiver.
//
// 1. An OSD killed with SIGKILL (a genuine fault): OSD_DOWN, then PG_DEGRADED, page; the OSD started again:
//    both resolve. The pool usage samples are in the metrics index. The OSD is started again whatever happens.
// 2. The command pointed at a monitor that is not there (a closed port, --connect-timeout 2): every command of
//    every poll is a dead letter with the reason, no health event is sent, and the collector keeps polling.
//
// The cluster is started (or found running and healthy) in beforeAll and left running: creating it takes ~20 s
// and other tests may use it. Latencies are printed at the end of case 1.
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ceph } from '../../collectors/ceph.ts';
import { startCollector } from '../../collectors/index.ts';
import { DeadLetter } from '../../core/events.ts';
import { ensureTopics, GroupConsumer, TopicProducer, type OutMessage } from '../../core/kafka.ts';
import { startProcessor, type RunningProcessor } from '../../processors/processor.ts';
import { countDocs, pagedAlerts, REPO, testSetup, waitFor, type TestSetup, type WebhookAlert } from './harness.ts';

const CEPH_SH = join(REPO, 'scripts/ceph.sh');
const OSD = Number(process.env.SW_CEPH_TEST_OSD ?? 2);

interface ShResult {
  code: number | null;
  output: string;
}

/** scripts/ceph.sh ARGS, stdout and stderr together. */
function cephSh(args: string[], timeoutMs = 600_000): Promise<ShResult> {
  return new Promise((resolve) => {
    const child = spawn(CEPH_SH, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    const timer = setTimeout(() => child.kill('SIGTERM'), timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

async function mustCephSh(args: string[], timeoutMs?: number): Promise<string> {
  const r = await cephSh(args, timeoutMs);
  if (r.code !== 0) throw new Error(`scripts/ceph.sh ${args.join(' ')} exited ${r.code}:\n${r.output}`);
  return r.output;
}

/** `scripts/ceph.sh env`: KEY=value lines, values possibly double-quoted. */
function parseEnv(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^([A-Z_][A-Z0-9_]*)=(.*)$/.exec(line.trim());
    if (m) env[m[1]] = m[2].replace(/^"(.*)"$/, '$1');
  }
  return env;
}

/** A TCP port nothing listens on (bound, then released). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

/** The real producer, with a record of what went to which topic. */
class ObservedProducer {
  sent: { topic: string; value: string }[] = [];
  constructor(private readonly inner: TopicProducer) {}
  async send(topic: string, messages: OutMessage[]) {
    await this.inner.send(topic, messages);
    for (const m of messages) this.sent.push({ topic, value: m.value });
  }
}

let cephCommand: string[] = [];
let startOutput = '';
const setups: TestSetup[] = [];
const stops: (() => Promise<void>)[] = [];

beforeAll(async () => {
  const help = await cephSh(['--help']);
  expect(help.output).toMatch(/kill-osd N/);
  startOutput = await mustCephSh(['start']);
  const env = parseEnv(await mustCephSh(['env']));
  expect(env.STACKWATCH_CEPH_COMMAND, `scripts/ceph.sh env printed:\n${JSON.stringify(env)}`).toBeTruthy();
  cephCommand = env.STACKWATCH_CEPH_COMMAND.split(/\s+/).filter(Boolean);
}, 600_000);

afterAll(async () => {
  for (const stop of stops.reverse()) await stop().catch(() => {});
  for (const t of setups) await t.cleanup();
}, 120_000);

const codeOf = (a: WebhookAlert) => /Ceph health check ([A-Z0-9_]+)/.exec(a.annotations.summary ?? '')?.[1];
const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

describe('the Ceph collector against a real one-host Ceph', () => {
  it('kill an OSD: OSD_DOWN and PG_DEGRADED are one incident, paged once; start it again: it resolves; pool usage is indexed', async () => {
    const t = testSetup('ceph-real', (raw) => {
      raw.collectors.ceph = { command: cephCommand, cluster_name: raw.collectors.openstack_logs.host_name, schedule: '*/1 * * * * *', timeout_ms: 15_000 };
    });
    setups.push(t);
    const cluster = t.cfg.collectors.ceph!.cluster_name;
    const ctl = new AbortController();
    const processor: RunningProcessor = await startProcessor(t.cfg, { signal: ctl.signal });
    const producer = await TopicProducer.connect(t.cfg.kafka, 'ceph-collector');
    const collecting = startCollector(ceph, t.cfg.collectors.ceph!, producer, t.cfg.kafka.topics, ctl.signal);
    let stopped = false;
    const stop = async () => {
      if (stopped) return;
      stopped = true;
      ctl.abort();
      await collecting;
      await producer.disconnect().catch(() => {});
      await processor.stop().catch(() => {});
    };
    stops.push(stop);

    // The pipeline runs: pool usage of the seeded pool in the metrics index, and nothing pages on a healthy cluster.
    const metrics = `${t.cfg.elasticsearch.indices.metrics}-*`;
    await waitFor(
      'ceph.pool.used of pool volumes in the metrics index',
      async () => (await countDocs(t.es, metrics, { bool: { filter: [{ term: { 'metric.name': 'ceph.pool.used' } }, { term: { 'labels.pool': 'volumes' } }] } })) > 0,
      60_000,
      500,
    );
    expect(await pagedAlerts(cluster), `the cluster was not healthy at the start:\n${startOutput}`).toEqual([]);

    let killed = false;
    const report: string[] = [];
    try {
      const killAt = Date.now();
      await mustCephSh(['kill-osd', String(OSD)]);
      killed = true;
      // One incident for the cluster: OSD_DOWN and the PG_DEGRADED it causes are one cause, paged once.
      const incidents = `${t.cfg.elasticsearch.indices.incidents}-*`;
      const incidentDoc = async () => {
        await t.es.indices.refresh({ index: incidents, allow_no_indices: true, ignore_unavailable: true });
        const hits = (await t.es.search({ index: incidents, size: 10, allow_no_indices: true, ignore_unavailable: true, query: { term: { 'incident.hosts': cluster } } })).hits.hits;
        return hits.map((h) => h._source as any);
      };
      const firingDoc = await waitFor(
        'one incident holding OSD_DOWN and PG_DEGRADED, paged',
        async () => {
          const [d, ...more] = await incidentDoc();
          const codes = new Set((d?.alerts ?? []).filter((a: any) => a.status === 'firing').map((a: any) => a.group.code));
          return more.length === 0 && d?.incident.paged && codes.has('OSD_DOWN') && codes.has('PG_DEGRADED') && d;
        },
        120_000,
        250,
      );
      const pagedAt = Date.now();
      const firing = (await pagedAlerts(cluster)).filter((x) => x.status === 'firing');
      expect(new Set(firing.map((x) => x.labels.alert_id)), 'one incident at the pager').toEqual(new Set([firingDoc.incident.id]));
      expect(firing[0].labels).toMatchObject({ alertname: 'ceph-health', host: cluster, service: 'ceph', incident: 'ceph-cluster-health' });
      expect(firing[0].annotations.summary).toMatch(/^Ceph cluster unhealthy: Ceph health check (OSD_DOWN: 1 osds down|PG_DEGRADED: Degraded data redundancy: )/);
      const startOf = (code: string) => Date.parse(firingDoc.alerts.find((a: any) => a.group.code === code).started_at);
      expect(startOf('OSD_DOWN')).toBeGreaterThanOrEqual(killAt - 1_500); // the poll's time, after the kill
      expect(startOf('PG_DEGRADED')).toBeGreaterThanOrEqual(startOf('OSD_DOWN'));
      report.push(
        `osd.${OSD} killed ${new Date(killAt).toISOString()}; ` +
          `OSD_DOWN startsAt +${secs(startOf('OSD_DOWN') - killAt)}, PG_DEGRADED +${secs(startOf('PG_DEGRADED') - killAt)}; ` +
          `one incident with both, at the pager +${secs(pagedAt - killAt)}`,
      );

      const startAt = Date.now();
      await mustCephSh(['start-osd', String(OSD)]);
      killed = false;
      const upAt = Date.now();
      // Every firing notification (each alert id and severity Alertmanager was told about) is resolved.
      const key = (a: WebhookAlert) => `${a.labels.alert_id}/${a.labels.severity}`;
      const all = await waitFor(
        'the incident resolved at the pager',
        async () => {
          const a = (await pagedAlerts(cluster)).filter((x) => x.labels.alertname === 'ceph-health');
          const resolved = new Set(a.filter((x) => x.status === 'resolved').map(key));
          return a.filter((x) => x.status === 'firing').every((x) => resolved.has(key(x))) && a;
        },
        180_000,
        250,
      );
      const resolvedAt = Date.now();
      const resolved = all.filter((x) => x.status === 'resolved');
      expect(Date.parse(resolved[0].endsAt)).toBeGreaterThan(Date.parse(resolved[0].startsAt));
      const [endDoc] = await incidentDoc();
      expect(endDoc.incident.status).toBe('resolved');
      expect(endDoc.alerts.every((a: any) => a.status === 'resolved')).toBe(true);
      const endOf = (code: string) => Date.parse(endDoc.alerts.find((a: any) => a.group.code === code).ended_at);
      report.push(
        `osd.${OSD} started ${new Date(startAt).toISOString()} (up after ${secs(upAt - startAt)}); ` +
          `OSD_DOWN endsAt +${secs(endOf('OSD_DOWN') - startAt)}, PG_DEGRADED endsAt +${secs(endOf('PG_DEGRADED') - startAt)}; ` +
          `resolved at the pager +${secs(resolvedAt - startAt)}; notifications: ` +
          JSON.stringify(all.map((x) => [x.status, codeOf(x), x.labels.severity])),
      );

      // The alerts index has both checks' firing and resolved documents.
      const alerts = `${t.cfg.elasticsearch.indices.alerts}-*`;
      await t.es.indices.refresh({ index: alerts, allow_no_indices: true, ignore_unavailable: true });
      const docs = (await t.es.search({ index: alerts, size: 100, query: { term: { 'rule.id': 'ceph-health' } } })).hits.hits.map((h) => h._source as any);
      for (const code of ['OSD_DOWN', 'PG_DEGRADED']) {
        const mine = docs.filter((d) => d.alert.group.code === code);
        expect(
          mine.map((d) => d.alert.status),
          code,
        ).toContain('firing');
        expect(
          mine.map((d) => d.alert.status),
          code,
        ).toContain('resolved');
      }
    } finally {
      if (killed) await cephSh(['start-osd', String(OSD)]);
    }

    // Usage and health samples of every poll, with the cluster as host and the pool as label.
    const used = await t.es.search({ index: metrics, size: 1, query: { bool: { filter: [{ term: { 'metric.name': 'ceph.pool.used' } }, { term: { 'labels.pool': 'volumes' } }] } } });
    expect(used.hits.hits[0]._source).toMatchObject({ host: { name: cluster }, metric: { name: 'ceph.pool.used', unit: 'bytes' }, labels: { pool: 'volumes' }, event: { dataset: 'ceph' } });
    expect((used.hits.hits[0]._source as any).metric.value).toBeGreaterThanOrEqual(4 * 65536); // the 4 seeded objects of 64 KiB
    const down = await countDocs(t.es, metrics, { bool: { filter: [{ term: { 'metric.name': 'ceph.osd.up' } }, { term: { 'metric.value': 2 } }] } });
    expect(down, 'ceph.osd.up was 2 while the OSD was down').toBeGreaterThan(0);
    await stop();
    console.log(report.join('\n'));
  }, 420_000);

  it('a monitor that is not there: a dead letter per command with the reason, no health event, the collector keeps polling', async () => {
    const port = await closedPort();
    const t = testSetup('ceph-nomon', (raw) => {
      // --connect-timeout 2 after the script's own 5, and -m to a closed port: the client never finds a monitor.
      raw.collectors.ceph = {
        command: [...cephCommand, '--connect-timeout', '2', '-m', `127.0.0.1:${port}`],
        cluster_name: raw.collectors.openstack_logs.host_name,
        schedule: '*/1 * * * * *',
        timeout_ms: 10_000,
      };
    });
    setups.push(t);
    const { health, metrics, dead_letter } = t.cfg.kafka.topics;
    await ensureTopics(t.cfg.kafka, [health, metrics, dead_letter]);
    const ctl = new AbortController();
    const real = await TopicProducer.connect(t.cfg.kafka, 'ceph-collector');
    const producer = new ObservedProducer(real);
    let finished = false;
    const collecting = startCollector(ceph, t.cfg.collectors.ceph!, producer, t.cfg.kafka.topics, ctl.signal).finally(() => (finished = true));
    const dead: DeadLetter[] = [];
    const dlq = await GroupConsumer.start(t.cfg.kafka, {
      groupId: `${t.cfg.kafka.consumer_group}-dlq-reader`,
      topics: [dead_letter],
      component: 'test',
      onBatch: async (b) => void dead.push(...b.messages.map((m) => DeadLetter.parse(JSON.parse(m.value!)))),
    });
    stops.push(async () => {
      ctl.abort();
      await collecting;
      await dlq.stop().catch(() => {});
      await real.disconnect().catch(() => {});
    });

    // Two polls' worth (each: status, health detail, df), from different polls.
    await waitFor('dead letters of two polls', async () => dead.length >= 6 && new Set(dead.map((d) => d['@timestamp'].slice(0, 19))).size >= 2, 60_000, 250);
    expect(finished, 'the collector is still running').toBe(false);
    const reasons = new Set(dead.map((d) => d.reason));
    for (const c of ['status', 'health detail', 'df']) {
      expect(
        [...reasons].some((r) => r.startsWith(`ceph ${c} -f json: exit 1: `) && /timed out/.test(r)),
        `${c}: ${[...reasons].join(' | ')}`,
      ).toBe(true);
    }
    expect(dead.every((d) => d.component === 'ceph-collector')).toBe(true);
    expect(
      producer.sent.filter((m) => m.topic === health),
      'no health event from a cluster that could not be asked',
    ).toEqual([]);
    expect(producer.sent.filter((m) => m.topic === metrics)).toEqual([]);
    ctl.abort();
    await collecting;
    console.log(`dead monitor (127.0.0.1:${port}): ${dead.length} dead letters, e.g. ${JSON.stringify(dead[0].reason)}`);
  }, 120_000);
});
