// The same four counts for every component (received, sent, errors by stage, discarded), labelled with the
// component's name, so a stuck stage shows on /metrics without reading code.
import { Counter, Registry, collectDefaultMetrics } from 'prom-client';

export const registry = new Registry();
collectDefaultMetrics({ register: registry, prefix: 'stackwatch_' });

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

/** The current value of one of the component counters (for tests and the demo's summary). */
export async function counterValue(name: 'received' | 'sent' | 'errors' | 'discarded', labels: Record<string, string>): Promise<number> {
  const metric = { received, sent, errors, discarded }[name];
  const { values } = await metric.get();
  return values
    .filter((v) => Object.entries(labels).every(([k, want]) => (v.labels as Record<string, unknown>)[k] === want))
    .reduce((sum, v) => sum + v.value, 0);
}
