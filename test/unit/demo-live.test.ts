// `stackwatch demo --live`'s pure parts: the configuration its `stackwatch run` gets, its options and help, and
// how it reads the pager webhook (the live run itself needs the real cloud: see the report of issue 13).
import { describe, expect, it } from 'vitest';
import { stackwatch } from './run.ts';
import { validateConfig } from '../../core/config.ts';
import { consoleUrl, LIVE_HOST, liveConfig, liveOptions, pageState, parseExports, storyPages } from '../../cli/demo-live.ts';

const CLOUD_ENV = `export OS_AUTH_URL=http://127.0.0.1:28500/v3
export OS_USERNAME=admin
export OS_PASSWORD=stackwatch-admin
export OS_PROJECT_NAME=admin
export OS_REGION_NAME=RegionOne
export STACKWATCH_OS_LOG_DIR=/srv/cloud/log
export STACKWATCH_OS_CANARY_NAME='stackwatch-canary'
not an export line
`;

describe('demo --live', () => {
  it('reads scripts/openstack.sh env (quoted values too, other lines ignored)', async () => {
    const env = parseExports(CLOUD_ENV);
    expect(env.OS_AUTH_URL).toBe('http://127.0.0.1:28500/v3');
    expect(env.STACKWATCH_OS_CANARY_NAME).toBe('stackwatch-canary');
    expect(Object.keys(env)).toHaveLength(7);
  });

  it("builds a valid configuration: the cloud's logs from their end, the API every 5 s with the console probe, its own topics", async () => {
    const stack = { STACKWATCH_KAFKA_BROKERS: '127.0.0.1:29092', STACKWATCH_ES_URL: 'http://127.0.0.1:29200', STACKWATCH_ALERTMANAGER_URL: 'http://127.0.0.1:29094' };
    const raw = liveConfig({ run: 'abc', work: '/tmp/w', stack, cloud: parseExports(CLOUD_ENV) });
    const cfg = validateConfig(structuredClone(raw), 'demo --live configuration', {});
    const logs = cfg.collectors.openstack_logs!;
    expect(logs.paths).toEqual(['nova-*.log', 'keystone.log', 'glance-api.log', 'neutron-server.log', 'placement.log'].map((f) => `/srv/cloud/log/${f}`));
    expect(logs.start_at).toBe('end');
    expect(logs.host_name).toBe(LIVE_HOST);
    const api = cfg.collectors.openstack_api!;
    expect(api).toMatchObject({ auth_url: 'http://127.0.0.1:28500/v3', username: 'admin', password: 'stackwatch-admin', project_name: 'admin', cloud_name: LIVE_HOST });
    expect(api.schedule).toBe('*/5 * * * * *');
    // Above nova's RPC wait and its retries, so the probe reports nova's own MessagingTimeout.
    expect(api.probes.console).toMatchObject({ server: 'stackwatch-canary', timeout_ms: 150_000 });
    expect(Object.values(cfg.kafka.topics).every((t) => t.startsWith('stackwatch.demo-live-abc.'))).toBe(true);
    expect(cfg.kafka.consumer_group).toBe('stackwatch-demo-live-abc');
    expect(cfg.kafka.brokers).toEqual(['127.0.0.1:29092']);
    expect(cfg.notify.alertmanager?.url).toBe('http://127.0.0.1:29094');
    expect(cfg.status_server.listen).toBe('127.0.0.1:0'); // beside any other stackwatch on the machine
  });

  it('takes its options and refuses a bad --timeout, naming it', async () => {
    expect(liveOptions([])).toEqual({ keepTopic: false, seedTiming: false, timeoutMs: 45 * 60_000 });
    expect(liveOptions(['--seed-timing', '--timeout', '20', '--keep-topic'])).toEqual({ keepTopic: true, seedTiming: true, timeoutMs: 20 * 60_000 });
    expect(() => liveOptions(['--timeout', 'soon'])).toThrow(/--timeout/);
    expect(() => liveOptions(['--timeout', '0'])).toThrow(/--timeout/);
    expect(() => liveOptions(['--frobnicate'])).toThrow(/frobnicate/);
  });

  it('picks the story’s pages from what the pager webhook received, and knows when both fired and resolved', async () => {
    const from = Date.parse('2026-12-03T10:00:00Z');
    const alert = (status: string, labels: Record<string, string>, startsAt = '2026-12-03T10:00:30Z') => ({ status, labels, annotations: { summary: 's' }, startsAt, endsAt: '' });
    const items = [
      { received_at: '2026-12-03T10:00:40Z', body: { alerts: [alert('firing', { alertname: 'amqp-connection-lost', service: 'nova-compute', host: LIVE_HOST })] } },
      { received_at: '2026-12-03T10:00:41Z', body: { alerts: [alert('firing', { alertname: 'console-probe-failing', cloud: LIVE_HOST, probe: 'console' })] } },
      // another host's alert, and an earlier outage of this one: not this story
      { received_at: '2026-12-03T10:00:42Z', body: { alerts: [alert('firing', { alertname: 'amqp-connection-lost', service: 'nova-compute', host: 'elsewhere' })] } },
      { received_at: '2026-12-03T10:00:43Z', body: { alerts: [alert('resolved', { alertname: 'console-probe-failing', cloud: LIVE_HOST }, '2026-12-03T09:00:00Z')] } },
      { received_at: '2026-12-03T10:00:44Z', body: {} },
    ];
    const pages = storyPages(items, [LIVE_HOST, 'os-compute-1'], from);
    expect(pages.map((p) => p.receivedAt)).toEqual(['2026-12-03T10:00:40Z', '2026-12-03T10:00:41Z']);
    expect(pageState(pages)).toEqual({ amqpFired: true, amqpResolved: false, consoleFired: true, consoleResolved: false });
    const resolved = [
      ...items,
      { received_at: '2026-12-03T10:02:00Z', body: { alerts: [alert('resolved', { alertname: 'amqp-connection-lost', service: 'nova-compute', host: LIVE_HOST })] } },
    ];
    expect(pageState(storyPages(resolved, [LIVE_HOST], from))).toMatchObject({ amqpResolved: true, consoleResolved: false });
    // amqp-connection-lost of another service is not nova-compute's page
    const api = storyPages([{ received_at: 'x', body: { alerts: [alert('firing', { alertname: 'amqp-connection-lost', service: 'nova-api', host: LIVE_HOST })] } }], [LIVE_HOST], from);
    expect(pageState(api).amqpFired).toBe(false);
  });

  it("shows the console URL from the openstack CLI's table", async () => {
    const table = [
      '+----------+-------------------------------------------------------+',
      '| Field    | Value                                                 |',
      '+----------+-------------------------------------------------------+',
      '| protocol | vnc                                                   |',
      '| type     | novnc                                                 |',
      '| url      | http://127.0.0.1:28680/vnc_auto.html?path=%3Ftoken%3D1 |',
      '+----------+-------------------------------------------------------+',
    ].join('\n');
    expect(consoleUrl(table)).toBe('http://127.0.0.1:28680/vnc_auto.html?path=%3Ftoken%3D1');
    expect(consoleUrl('something else\nentirely')).toBe('something else | entirely');
  });

  // Three CLI starts (each may rebuild the bundle first) on a loaded 2-core machine: more than vitest's 5 s.
  it("is in demo's --help, and demo's own options still refuse the live ones without --live", { timeout: 60_000 }, async () => {
    const help = await stackwatch(['demo', '--help']);
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/^Usage: stackwatch demo \[--keep-topic\]\n {7}stackwatch demo --live /);
    expect(help.stdout).toMatch(/^ {2}--live +the seed's story on a real small OpenStack/m);
    expect(help.stdout).toMatch(/^ {2}--seed-timing /m);
    expect(help.stdout).toMatch(/^ {2}--timeout MIN /m);
    const bad = await stackwatch(['demo', '--live', '--timeout=-3']);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/^stackwatch: --timeout: /);
    const noLive = await stackwatch(['demo', '--seed-timing']);
    expect(noLive.status).toBe(2);
    expect(noLive.stderr).toMatch(/seed-timing/);
  });
});
