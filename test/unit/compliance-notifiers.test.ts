// One compliance test for every notifier in the registry (notifiers/index.ts), run against a local HTTP receiver:
// a configuration error names the field under notify.<name>; a configured notifier starts, delivers a transition,
// and stops within the deadline; a notifier that is down makes the send throw, and the dispatcher parks the
// transition in the retry topic (no silent loss); every notifier's deliveries are counted under the same metric
// names. A new notifier passes it by adding its line to the registry, with its `example`.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { validateConfig, type Config } from '../../core/config.ts';
import type { Alert } from '../../core/events.ts';
import type { TopicProducer } from '../../core/kafka.ts';
import { setLogSink } from '../../core/log.ts';
import { counterValue } from '../../core/metrics.ts';
import { NotificationDispatcher } from '../../notifiers/dispatch.ts';
import { notifierFactories, notifiersFromConfig } from '../../notifiers/index.ts';
import type { NotifierFactory } from '../../notifiers/notifier.ts';
import { errorOf } from './config-error.ts';

/** Stopping is synchronous work (timers cleared): far below a shutdown's deadline. */
const STOP_DEADLINE_MS = 1000;

const base = { kafka: { brokers: ['k:9092'] }, elasticsearch: { url: 'http://e:9200' } };

function alert(status: 'firing' | 'resolved', id: string): Alert {
  const at = '2026-12-01T23:00:00.000Z';
  return {
    '@timestamp': status === 'firing' ? at : '2026-12-01T23:30:00.000Z',
    rule: { id: 'amqp-connection-lost', name: 'AMQP connection lost' },
    alert: { id, status, severity: 'critical', started_at: at, ...(status === 'resolved' ? { ended_at: '2026-12-01T23:30:00.000Z' } : {}), runbook: 'r', group: {} },
    host: { name: 'compute-07' },
    service: { name: 'nova-compute' },
    message: 'm',
    evidence: { event_ids: ['e.1'] },
  };
}

/** A configuration with only this notifier, sending to `url`. */
function configWith(f: NotifierFactory, section: unknown): Config {
  return validateConfig({ ...structuredClone(base), notify: { [f.name]: section } }, 'compliance.yaml', {});
}

/** The section with an unknown key in its first mapping, and where the error must say it is. */
function withUnknownField(section: unknown, at: string): { section: unknown; field: string } {
  if (Array.isArray(section)) {
    const inner = withUnknownField(section[0], `${at}[0]`);
    return { section: [inner.section, ...section.slice(1)], field: inner.field };
  }
  return { section: { ...(section as object), no_such_field: 1 }, field: `${at}.no_such_field` };
}

/** A producer that keeps what it was given: the retry topic, without Kafka. */
function recordingProducer(): { producer: TopicProducer; sent: { topic: string; key: string; value: string }[] } {
  const sent: { topic: string; key: string; value: string }[] = [];
  const producer = { send: async (topic: string, messages: { key: string; value: string }[]) => void sent.push(...messages.map((m) => ({ topic, ...m }))) };
  return { producer: producer as unknown as TopicProducer, sent };
}

let server: Server;
let url: string;
const received: { path: string; body: unknown }[] = [];
let restoreLog: () => void;

beforeAll(async () => {
  // The dispatcher's error lines about the notifier that is down are expected here.
  restoreLog = setLogSink(() => {});
  server = createServer((req, res) => {
    let text = '';
    req.on('data', (d) => (text += d));
    req.on('end', () => {
      received.push({ path: req.url ?? '', body: JSON.parse(text) });
      res.writeHead(202, { 'content-type': 'application/json' }).end('{"status":"success"}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
});

afterAll(async () => {
  await new Promise((r) => server.close(r));
  restoreLog();
});

/** A port nothing listens on: the notifier is down. */
async function downUrl(): Promise<string> {
  const probe = createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', () => r()));
  const { port } = probe.address() as AddressInfo;
  await new Promise((r) => probe.close(r));
  return `http://127.0.0.1:${port}/`;
}

describe.each(notifierFactories.map((f) => [f.name, f] as const))('notifier %s', (name, f) => {
  it('is registered once, its example is a valid configuration, and it is off when left out', () => {
    expect(notifierFactories.filter((o) => o.name === name)).toHaveLength(1);
    expect(notifiersFromConfig(configWith(f, f.example(url))).length).toBeGreaterThan(0);
    expect(notifiersFromConfig(validateConfig(structuredClone(base), 'compliance.yaml', {}))).toEqual([]);
  });

  it('config errors name the field under notify.<name>', () => {
    const unknown = withUnknownField(f.example(url), `notify.${name}`);
    expect(errorOf(() => configWith(f, unknown.section))).toMatch(new RegExp(`^compliance\\.yaml: ${unknown.field.replace(/[.[\]]/g, '\\$&')}: unknown field$`));
    expect(errorOf(() => configWith(f, 42))).toMatch(new RegExp(`^compliance\\.yaml: notify\\.${name}: `));
  });

  it('starts, delivers a transition, and stops within the deadline; a declared re-send interval is a timer', async () => {
    const notifiers = notifiersFromConfig(configWith(f, f.example(url)));
    for (const n of notifiers) {
      if (n.resend) expect(n.resend.interval_s).toBeGreaterThan(0);
      n.start?.();
      const before = received.length;
      await n.send([alert('firing', `${n.name}-lifecycle`)]);
      expect(received.length, `${n.name} posted`).toBeGreaterThan(before);
      const t0 = performance.now();
      n.stop?.();
      expect(performance.now() - t0).toBeLessThan(STOP_DEADLINE_MS);
    }
  });

  it('through the dispatcher: delivered once, counted under the same metric names as every notifier', async () => {
    const cfg = configWith(f, f.example(url));
    const notifiers = notifiersFromConfig(cfg);
    const { producer, sent } = recordingProducer();
    const dispatcher = new NotificationDispatcher(cfg, notifiers, producer);
    const id = `${name}-dispatch`;
    const before = await Promise.all(notifiers.map((n) => counterValue('sent', { component: `notify-${n.name}` })));
    await dispatcher.dispatch([alert('firing', id)]);
    await dispatcher.dispatch([alert('firing', id)]); // a replay: not sent again
    await dispatcher.stop();
    expect(sent).toEqual([]);
    for (const [i, n] of notifiers.entries()) {
      expect(await counterValue('sent', { component: `notify-${n.name}` }), n.name).toBe(before[i] + 1);
      expect(await counterValue('received', { component: `notify-${n.name}` }), n.name).toBeGreaterThanOrEqual(1);
    }
  });

  it('down: the send throws, and the dispatcher puts the transition in the retry topic (no silent loss)', async () => {
    const cfg = configWith(f, f.example(await downUrl()));
    const notifiers = notifiersFromConfig(cfg);
    for (const n of notifiers) await expect(n.send([alert('resolved', `${n.name}-down`)])).rejects.toThrow();
    const { producer, sent } = recordingProducer();
    const dispatcher = new NotificationDispatcher(cfg, notifiers, producer);
    const errorsBefore = await Promise.all(notifiers.map((n) => counterValue('errors', { component: `notify-${n.name}`, stage: 'deliver' })));
    await dispatcher.dispatch([alert('firing', `${name}-down-dispatch`)]);
    await dispatcher.stop();
    expect(sent.map((m) => [m.topic, m.key])).toEqual(notifiers.map((n) => [cfg.kafka.topics.notify_retry, n.name]));
    expect(JSON.parse(sent[0].value)).toMatchObject({ notifier: notifiers[0].name, attempt: 1, alerts: [{ alert: { id: `${name}-down-dispatch` } }] });
    for (const [i, n] of notifiers.entries()) expect(await counterValue('errors', { component: `notify-${n.name}`, stage: 'deliver' })).toBe(errorsBefore[i] + 1);
  });
});
