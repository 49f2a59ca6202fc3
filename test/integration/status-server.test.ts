// Self-observability of a real `stackwatch run` on the real stack: /metrics has every component's counters and
// the stage figures and passes `promtool check metrics` (Debian's prometheus package) with nothing to report;
// /healthz and /readyz answer; normal operation logs nothing; SIGTERM drains and exits 0.
import { spawn } from 'node:child_process';
import { appendFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { countDocs, requireTool, stackwatch, testSetup, waitFor } from './harness.ts';
import { freePort } from '../../bench/measure.ts';

const lines = readFileSync(new URL('../fixtures/oslo-messaging-icehouse-2014.log', import.meta.url), 'utf8')
  .split('\n')
  .filter(Boolean);

const t = testSetup('status');
afterAll(() => t.cleanup());

describe('status server', () => {
  it('serves lint-clean metrics of every component, health and readiness, logs nothing, drains on SIGTERM', async () => {
    // Before anything runs: installed by scripts/test-deps.sh, never from here (see requireTool).
    const promtool = requireTool('promtool');
    const port = await freePort();
    const configFile = join(t.dir, 'status.yaml');
    mkdirSync(join(t.dir, 'logs'), { recursive: true });
    appendFileSync(join(t.dir, 'logs', 'neutron-server.log'), lines.join('\n') + '\n');
    const raw = structuredClone(t.raw);
    raw.status_server = { listen: `127.0.0.1:${port}` };
    writeFileSync(configFile, stringify(raw));

    const cli = stackwatch(['run', '--config', configFile]);
    const base = `http://127.0.0.1:${port}`;
    await waitFor(`${lines.length} documents`, async () => (await countDocs(t.es, `${t.cfg.elasticsearch.indices.logs}-*`)) === lines.length, 60_000, 300);

    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    const ready = await waitFor('ready', async () => {
      const r = await fetch(`${base}/readyz`);
      return r.status === 200 ? r : undefined;
    });
    expect(await ready.text()).toBe('ready\n');

    const text = await waitFor('metrics with consumer lag', async () => {
      const body = await (await fetch(`${base}/metrics`)).text();
      return body.includes('stackwatch_kafka_consumer_lag_messages{') ? body : undefined;
    });
    const value = (re: RegExp) => Number(re.exec(text)?.[1] ?? NaN);
    expect(value(/^stackwatch_component_sent_events_total\{component="openstack-logs"\} (\d+)/m)).toBe(lines.length);
    expect(value(/^stackwatch_component_sent_events_total\{component="processor"\} (\d+)/m)).toBe(lines.length);
    expect(value(/^stackwatch_component_received_events_total\{component="elasticsearch-sink"\} (\d+)/m)).toBeGreaterThanOrEqual(lines.length);
    expect(value(/^stackwatch_elasticsearch_bulk_duration_seconds_count\{component="elasticsearch-sink"\} (\d+)/m)).toBeGreaterThan(0);
    expect(value(/^stackwatch_checkpoint_age_seconds\{component="openstack-logs"\} ([\d.]+)/m)).toBeLessThan(60);
    expect(value(/^stackwatch_alerts_firing\{rule="amqp-connection-lost"\} (\d+)/m)).toBe(1);
    expect(text).toMatch(/^stackwatch_kafka_consumer_lag_messages\{group="swtest-[^"]+",topic="swtest\.[^"]+\.logs",partition="\d"\} 0$/m);

    // Asynchronously: a spawnSync would stall this process's event loop, and with it the HTTP client's timer that
    // drops a keep-alive connection before the server closes it (the next fetch then meets a closed socket).
    const lint = await new Promise<{ status: number | null; out: string }>((resolve) => {
      const child = spawn(promtool, ['check', 'metrics'], { stdio: ['pipe', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (d) => (out += d));
      child.stderr.on('data', (d) => (out += d));
      child.on('close', (status) => resolve({ status, out }));
      child.stdin.end(text);
    });
    expect(lint).toEqual({ status: 0, out: '' });

    expect((await fetch(`${base}/nope`)).status).toBe(404);
    cli.child.kill('SIGTERM');
    expect(await cli.exited).toEqual({ code: 0, signal: null });
    // Normal operation (and a clean shutdown) logs nothing at the default level.
    expect(cli.stderr()).toBe('');
  }, 120_000);

  it('fails at once, saying which setting, when its port is taken, before it connects to anything', async () => {
    const port = await freePort();
    const taken = createServer().listen(port, '127.0.0.1');
    await once(taken, 'listening');
    try {
      const configFile = join(t.dir, 'taken.yaml');
      writeFileSync(configFile, stringify({ ...t.raw, status_server: { listen: `127.0.0.1:${port}` } }));
      const startedAt = Date.now();
      // Kafka and Elasticsearch unreachable: had it tried them first, it would be retrying, not exiting.
      const cli = stackwatch(['run', '--config', configFile], { STACKWATCH_KAFKA_BROKERS: '127.0.0.1:9', STACKWATCH_ES_URL: 'http://127.0.0.1:9' });
      expect(await cli.exited).toEqual({ code: 1, signal: null });
      expect(Date.now() - startedAt).toBeLessThan(10_000);
      expect(cli.stderr()).toBe(`stackwatch: status_server.listen: cannot listen on 127.0.0.1:${port}: the port is in use (set status_server.listen, or enabled: false)\n`);
    } finally {
      taken.close();
    }
  });
});
