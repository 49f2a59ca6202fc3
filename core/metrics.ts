// The same four counts for every component (received, sent, errors by stage, discarded), labelled with the
// component's name, so a stuck stage shows on /metrics without reading code.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export const registry = new Registry();
collectDefaultMetrics({ register: registry, prefix: 'stackwatch_' });
// Gauges that prom-client names like counters (…_total): promtool's lint refuses them, and the handle counts
// they give are noise for an operator. The rest of the process metrics (CPU, memory, event loop lag, GC) stay.
for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) registry.removeSingleMetric(`stackwatch_${name}`);

const received = new Counter({
  name: 'stackwatch_component_received_events_total',
  help: 'Events a component took in.',
  labelNames: ['component'],
  registers: [registry],
});
const sent = new Counter({
  name: 'stackwatch_component_sent_events_total',
  help: 'Events a component handed to the next stage (which acknowledged them).',
  labelNames: ['component'],
  registers: [registry],
});
const errors = new Counter({
  name: 'stackwatch_component_errors_total',
  help: 'Errors by component and stage; each event that went to the dead-letter topic counts once.',
  labelNames: ['component', 'stage'],
  registers: [registry],
});
const discarded = new Counter({
  name: 'stackwatch_component_discarded_events_total',
  help: 'Events a component dropped on purpose, by reason.',
  labelNames: ['component', 'reason'],
  registers: [registry],
});

export interface ComponentMetrics {
  received(n?: number): void;
  sent(n?: number): void;
  error(stage: string, n?: number): void;
  discarded(reason: string, n?: number): void;
}

export function componentMetrics(component: string): ComponentMetrics {
  return {
    received: (n = 1) => received.inc({ component }, n),
    sent: (n = 1) => sent.inc({ component }, n),
    error: (stage, n = 1) => errors.inc({ component, stage }, n),
    discarded: (reason, n = 1) => discarded.inc({ component, reason }, n),
  };
}

const evictions = new Counter({
  name: 'stackwatch_detector_state_evictions_total',
  help: "Entries of a detector's state (a group, a connection, a check) dropped by rule and reason: idle (no event for state.idle_s) or cap (the rule held state.max_entries; the oldest went first).",
  labelNames: ['rule', 'reason'],
  registers: [registry],
});

/** A rule's detector dropped `n` entries of its state. */
export function stateEvicted(rule: string, reason: 'idle' | 'cap', n = 1): void {
  evictions.inc({ rule, reason }, n);
}

/** The current value of one of the component counters, or of the detectors' evictions (for tests and the demo's summary). */
export async function counterValue(name: 'received' | 'sent' | 'errors' | 'discarded' | 'evictions', labels: Record<string, string>): Promise<number> {
  const metric = { received, sent, errors, discarded, evictions }[name];
  const { values } = await metric.get();
  return values.filter((v) => Object.entries(labels).every(([k, want]) => (v.labels as Record<string, unknown>)[k] === want)).reduce((sum, v) => sum + v.value, 0);
}

// Stage-specific figures, in the same registry.

export const bulkDuration = new Histogram({
  name: 'stackwatch_elasticsearch_bulk_duration_seconds',
  help: 'Time of one _bulk request to Elasticsearch, by component.',
  labelNames: ['component'],
  buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
  registers: [registry],
});

export const bulkRejections = new Counter({
  name: 'stackwatch_elasticsearch_bulk_rejections_total',
  help: 'Documents Elasticsearch did not take in a _bulk request, by component and HTTP status (429: pushed back, retried).',
  labelNames: ['component', 'status'],
  registers: [registry],
});

const lastCheckpoint = new Map<string, number>();
new Gauge({
  name: 'stackwatch_checkpoint_age_seconds',
  help: 'Seconds since a collector last saved its checkpoint (everything before it is in Kafka).',
  labelNames: ['component'],
  registers: [registry],
  collect() {
    this.reset();
    for (const [component, at] of lastCheckpoint) this.set({ component }, (Date.now() - at) / 1000);
  },
});

/** A collector saved its checkpoint (Kafka acknowledged everything before it). */
export function checkpointSaved(component: string): void {
  lastCheckpoint.set(component, Date.now());
}

type Source<T> = () => T | Promise<T>;
const firingSources: Source<Map<string, number>>[] = [];
new Gauge({
  name: 'stackwatch_alerts_firing',
  help: 'Alerts firing now, by rule.',
  labelNames: ['rule'],
  registers: [registry],
  async collect() {
    this.reset();
    for (const source of firingSources) for (const [rule, n] of await source()) this.inc({ rule }, n);
  },
});

/** Registers where the firing alerts are counted (the processor's notification dispatcher). */
export function countFiringAlerts(source: Source<Map<string, number>>): void {
  firingSources.push(source);
}

const lagSources: Source<{ group: string; topic: string; partition: number; lag: number }[]>[] = [];
new Gauge({
  name: 'stackwatch_kafka_consumer_lag_messages',
  help: 'Messages in a partition not yet committed by a stackwatch consumer group (end offset − committed offset).',
  labelNames: ['group', 'topic', 'partition'],
  registers: [registry],
  async collect() {
    this.reset();
    for (const source of lagSources) {
      try {
        for (const l of await source()) this.set({ group: l.group, topic: l.topic, partition: String(l.partition) }, l.lag);
      } catch {
        // Kafka unreachable: no lag figures on this scrape (the errors counters say why).
      }
    }
  },
});

const stateSources: Source<Map<string, number>>[] = [];
new Gauge({
  name: 'stackwatch_detector_state_entries',
  help: "Entries of state the detectors hold, by rule (bounded by the rule's state.max_entries for each kind of state).",
  labelNames: ['rule'],
  registers: [registry],
  async collect() {
    this.reset();
    for (const source of stateSources) for (const [rule, n] of await source()) this.inc({ rule }, n);
  },
});

/** Registers where the detectors' state is counted (the processor's detection engine). */
export function countDetectorState(source: Source<Map<string, number>>): void {
  stateSources.push(source);
}

/** Registers a consumer group whose lag /metrics reports. */
export function reportConsumerLag(source: Source<{ group: string; topic: string; partition: number; lag: number }[]>): void {
  lagSources.push(source);
}
