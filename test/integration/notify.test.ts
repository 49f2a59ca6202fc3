// Notifications on real Kafka: a webhook that is down for a while gets its alert once it is back (through the
// retry topic), exactly once; PagerDuty gets trigger and resolve events a local receiver checks against the
// documented Events API v2 schema.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import type { Alert } from '../../core/events.ts';
import { ensureTopics, TopicProducer } from '../../core/kafka.ts';
import { NotificationDispatcher } from '../../notifiers/dispatch.ts';
import { PagerDutyNotifier } from '../../notifiers/pagerduty.ts';
import { WebhookNotifier } from '../../notifiers/webhook.ts';
import { testSetup, waitFor } from './harness.ts';

/** PagerDuty Events API v2, as documented (developer.pagerduty.com, "Send an Alert Event"). */
const PagerDutyEvent = z.discriminatedUnion('event_action', [
  z.strictObject({
    routing_key: z.string().min(1),
    event_action: z.literal('trigger'),
    dedup_key: z.string().max(255).optional(),
    payload: z.strictObject({
      summary: z.string().min(1).max(1024),
      source: z.string().min(1),
      severity: z.enum(['critical', 'error', 'warning', 'info']),
      timestamp: z.iso.datetime({ offset: true }).optional(),
      component: z.string().optional(),
      group: z.string().optional(),
      class: z.string().optional(),
      custom_details: z.record(z.string(), z.unknown()).optional(),
    }),
    images: z.array(z.unknown()).optional(),
    links: z.array(z.unknown()).optional(),
    client: z.string().optional(),
    client_url: z.string().optional(),
  }),
  z.strictObject({ routing_key: z.string().min(1), event_action: z.enum(['acknowledge', 'resolve']), dedup_key: z.string().min(1).max(255) }),
]);

function receiver(handle: (body: unknown) => number): Promise<{ server: Server; url: string; port: number }> {
  const server = createServer((req, res) => {
    let text = '';
    req.on('data', (d) => (text += d));
    req.on('end', () => {
      const status = handle(JSON.parse(text));
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify({ status: status < 300 ? 'success' : 'invalid event' }));
    });
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      resolve({ server, url: `http://127.0.0.1:${port}/`, port });
    }),
  );
}

function alert(status: 'firing' | 'resolved', at: string): Alert {
  return {
    '@timestamp': at,
    rule: { id: 'amqp-connection-lost', name: 'AMQP connection lost' },
    alert: {
      id: 'ylm3Id7WNLm0TR8QeNHMWJHT5hv',
      status,
      severity: 'critical',
      started_at: '2022-02-04T09:37:50.159Z',
      ...(status === 'resolved' ? { ended_at: at, duration_s: 1800 } : {}),
      runbook: 'check the broker',
      group: { 'host.name': 'compute4', 'service.name': 'nova-compute' },
    },
    host: { name: 'compute4' },
    service: { name: 'nova-compute' },
    message: 'nova-compute on compute4 lost its AMQP connection',
    evidence: { event_ids: ['a.1'] },
  };
}

const t = testSetup('notify');
const stops: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const s of stops) await s();
  await t.cleanup();
});

describe('notifications', () => {
  it('delivers to a webhook that was down, through the retry topic, exactly once', async () => {
    // Find a free port, then leave it closed: the webhook is down.
    const probe = await receiver(() => 200);
    const port = probe.port;
    await new Promise((r) => probe.server.close(r));
    await ensureTopics(t.cfg.kafka, [t.cfg.kafka.topics.notify_retry, t.cfg.kafka.topics.dead_letter]);
    const producer = await TopicProducer.connect(t.cfg.kafka, 'test');
    const dispatcher = new NotificationDispatcher(t.cfg, [new WebhookNotifier('webhook-chatops', `http://127.0.0.1:${port}/hook`, {}, t.cfg.notify.renotify_interval_s)], producer);
    await dispatcher.start();
    stops.push(
      () => dispatcher.stop(),
      () => producer.disconnect(),
    );

    await dispatcher.dispatch([alert('firing', '2022-02-04T09:37:50.159Z')]); // returns: the alert waits in Kafka
    const got: unknown[] = [];
    const server = createServer((req, res) => {
      let text = '';
      req.on('data', (d) => (text += d));
      req.on('end', () => {
        got.push(JSON.parse(text));
        res.writeHead(200).end();
      });
    });
    await new Promise<void>((r) => server.listen(port, '127.0.0.1', () => r()));
    stops.push(() => new Promise((r) => server.close(r)));

    await waitFor('the webhook to get the alert', async () => got.length > 0, 60_000);
    await new Promise((r) => setTimeout(r, 3000));
    expect(got).toHaveLength(1);
    expect(got[0]).toMatchObject({ version: 1, alerts: [{ alert: { id: 'ylm3Id7WNLm0TR8QeNHMWJHT5hv', status: 'firing' } }] });
    // The same transition again (a replayed batch) is not sent twice.
    await dispatcher.dispatch([alert('firing', '2022-02-04T09:37:50.159Z')]);
    expect(got).toHaveLength(1);
  });

  it('sends PagerDuty events that match the documented Events API v2 schema', async () => {
    const events: z.infer<typeof PagerDutyEvent>[] = [];
    const problems: string[] = [];
    const pd = await receiver((body) => {
      const r = PagerDutyEvent.safeParse(body);
      if (!r.success) {
        problems.push(JSON.stringify(r.error.issues[0]));
        return 400;
      }
      events.push(r.data);
      return 202;
    });
    stops.push(() => new Promise((r) => pd.server.close(r)));
    const producer = await TopicProducer.connect(t.cfg.kafka, 'test');
    const dispatcher = new NotificationDispatcher(t.cfg, [new PagerDutyNotifier('0123456789abcdef0123456789abcdef', pd.url)], producer);
    stops.push(() => producer.disconnect());
    await dispatcher.dispatch([alert('firing', '2022-02-04T09:37:50.159Z'), alert('resolved', '2022-02-04T10:07:50.159Z')]);
    expect(problems).toEqual([]);
    expect(events.map((e) => [e.event_action, e.dedup_key])).toEqual([
      ['trigger', 'ylm3Id7WNLm0TR8QeNHMWJHT5hv'],
      ['resolve', 'ylm3Id7WNLm0TR8QeNHMWJHT5hv'],
    ]);
    expect(events[0]).toMatchObject({ payload: { source: 'compute4', severity: 'error', component: 'nova-compute', group: 'amqp-connection-lost' } });
  });
});
