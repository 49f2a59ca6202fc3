// One compliance test for every collector in the registry (collectors/index.ts): a new collector passes it or
// is not done. Its configuration names the field of every error and has no field the environment cannot reach;
// it runs from its own example section with Kafka replaced by a recorder, counts under its component's name,
// stops within the deadline once the signal aborts, sends nothing after that and leaves no file open.
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { collectorFactories, startCollector } from '../../collectors/index.ts';
import { ConfigError, ENV_OVERRIDES, validateConfig } from '../../core/config.ts';
import type { OutMessage } from '../../core/kafka.ts';
import { setLogSink } from '../../core/log.ts';
import { registry } from '../../core/metrics.ts';

const STOP_DEADLINE_MS = 5_000;
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
const tempDir = () => {
  const d = mkdtempSync(join(tmpdir(), 'sw-compliance-'));
  dirs.push(d);
  return d;
};

/** A configuration with one collector section. */
const withCollector = (name: string, section: unknown) => ({ kafka: { brokers: ['127.0.0.1:1'] }, elasticsearch: { url: 'http://127.0.0.1:1' }, collectors: { [name]: section } });

/** The fields of a collector's section (its object schema, under any transform). */
function fieldsOf(schema: z.ZodType): string[] {
  const object = schema instanceof z.ZodPipe ? schema.in : schema;
  if (!(object instanceof z.ZodObject)) throw new Error('a collector config schema is an object (possibly transformed)');
  return Object.keys(object.shape);
}

/** Does any series of the component counters carry this component? */
async function counted(component: string): Promise<boolean> {
  const families = await registry.getMetricsAsJSON();
  return families.some((f) => f.name.startsWith('stackwatch_component_') && f.values.some((v) => v.labels.component === component));
}

/** The files under `dir` this process has open. */
function openFilesUnder(dir: string): string[] {
  return readdirSync('/proc/self/fd').flatMap((fd) => {
    try {
      const target = readlinkSync(`/proc/self/fd/${fd}`);
      return target.startsWith(dir) ? [target] : [];
    } catch {
      return [];
    }
  });
}

class RecordingProducer {
  sent: { topic: string; at: number }[] = [];
  async send(topic: string, messages: OutMessage[]) {
    for (const m of messages) {
      JSON.parse(m.value); // what goes to Kafka is JSON
      this.sent.push({ topic, at: Date.now() });
    }
  }
}

const TOPICS = { logs: 't.logs', metrics: 't.metrics', health: 't.health', dead_letter: 't.dlq' };

describe('the collector registry', () => {
  it('names and components are unique, and every collector emits to known topics', () => {
    const names = collectorFactories.map((f) => f.name);
    const components = collectorFactories.map((f) => f.component);
    expect(new Set(names).size).toBe(names.length);
    expect(new Set(components).size).toBe(components.length);
    for (const f of collectorFactories) {
      expect(f.name, f.name).toMatch(/^[a-z][a-z0-9_]*$/);
      expect(f.topics.length, f.name).toBeGreaterThan(0);
      for (const t of f.topics) expect(Object.keys(TOPICS), f.name).toContain(t);
    }
  });
});

describe.each(collectorFactories.map((f) => [f.name, f] as const))('collector %s', (name, factory) => {
  it('its example section is a valid configuration', () => {
    expect(() => validateConfig(withCollector(name, factory.example(tempDir())), 'test', {})).not.toThrow();
  });

  it('a bad value of any field is an error naming collectors.<name>.<field>', () => {
    const example = factory.example(tempDir());
    for (const field of fieldsOf(factory.config)) {
      const raw = withCollector(name, { ...example, [field]: { not: ['a', 'value', 'of', 'this', 'field'] } });
      expect(() => validateConfig(raw, 'test', {}), field).toThrow(ConfigError);
      expect(() => validateConfig(raw, 'test', {}), field).toThrow(new RegExp(`^test: collectors\\.${name}\\.${field}: `));
    }
    expect(() => validateConfig(withCollector(name, { ...example, no_such_field: 1 }), 'test', {})).toThrow(`test: collectors.${name}.no_such_field: unknown field`);
  });

  it('its environment variables name fields of its section', () => {
    const fields = fieldsOf(factory.config);
    for (const [variable, field] of Object.entries(factory.env ?? {})) {
      expect(fields, variable).toContain(field);
      expect(ENV_OVERRIDES[variable], variable).toEqual(['collectors', name, field]);
    }
  });

  it('runs, counts under its component, stops within the deadline on abort and leaves nothing open', async () => {
    const dir = tempDir();
    // Something to read for a collector of files (a poller's example points at nothing that answers).
    mkdirSync(join(dir, 'logs'), { recursive: true });
    writeFileSync(
      join(dir, 'logs', 'service.log'),
      readFileSync(new URL('../fixtures/hotsos-2022/nova-compute-head.log', import.meta.url), 'utf8')
        .split('\n')
        .slice(0, 5)
        .join('\n') + '\n',
    );
    const config = validateConfig(withCollector(name, factory.example(dir)), 'test', {}).collectors as Record<string, unknown>;
    const producer = new RecordingProducer();
    const ctl = new AbortController();
    const restore = setLogSink(() => {}); // a failing poll logs; that is expected here
    try {
      const running = startCollector(factory, config[name], producer, TOPICS, ctl.signal);
      // Until its first poll or read has been counted.
      for (const until = Date.now() + 8_000; !(await counted(factory.component)) && Date.now() < until;) await new Promise((r) => setTimeout(r, 50));
      expect(await counted(factory.component), 'a series with component="' + factory.component + '"').toBe(true);
      const t0 = Date.now();
      ctl.abort();
      await Promise.race([running, new Promise((_, reject) => setTimeout(() => reject(new Error(`${name} did not stop within ${STOP_DEADLINE_MS} ms`)), STOP_DEADLINE_MS))]);
      const stoppedAt = Date.now();
      expect(stoppedAt - t0).toBeLessThan(STOP_DEADLINE_MS);
      await new Promise((r) => setTimeout(r, 300));
      expect(producer.sent.filter((s) => s.at > stoppedAt)).toEqual([]);
      expect(openFilesUnder(dir)).toEqual([]);
      for (const s of producer.sent) expect([...factory.topics.map((t) => TOPICS[t]), TOPICS.dead_letter]).toContain(s.topic);
      // What it remembers is kept through its context: named after its component, next to nothing else's.
      for (const f of readdirSync(dir).filter((f) => /\.(checkpoints|state)\.json$/.test(f))) expect(f.startsWith(`${factory.component}-`), f).toBe(true);
    } finally {
      ctl.abort();
      restore();
    }
  }, 20_000);
});
