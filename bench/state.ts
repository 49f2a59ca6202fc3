// Benchmark `state` (issue 15): what a processor's checkpoint holds after a million events, and what it costs.
// The corpus' lines (bench/corpus.ts: the bundled hotsos and Loghub OpenStack logs, repeated) are parsed and run
// through the template miner, every shipped rule and the incident correlator, as the processor does; then the state
// is snapshotted as the checkpoint does (processors/checkpoint.ts: a part per rule, the open incidents, the log
// templates), its JSON sized part by part, and restored into a new engine, correlator and miner, timed. With the local stack up (STACKWATCH_KAFKA_BROKERS), the same
// parts are saved to and loaded from a compacted topic through state/store.ts, timed, and a save of one changed
// part beside the others (what a checkpoint costs when one detector changed). The peer: none keeps such state
// (Fluentd+OpenSearch and rsyslog keep no detection state; Prometheus rules keep theirs in memory and lose `for:`
// on restart), so the figures stand alone, against the processor's own interval (1 s).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { validateConfig } from '../core/config.ts';
import { deleteTopics } from '../core/kafka.ts';
import { DEFAULT_RULES_DIR, loadRules } from '../detectors/rules.ts';
import { DetectionEngine } from '../detectors/engine.ts';
import { IncidentCorrelator } from '../incidents/correlator.ts';
import { loadIncidentRules } from '../incidents/rules.ts';
import { parseLogEvent } from '../processors/parse-log.ts';
import { mineDocument, Miner } from '../processors/templates/miner.ts';
import { StateStore } from '../state/store.ts';
import { buildCorpus } from './corpus.ts';
import { fmt, machine, MiB, progress, table, type Benchmark } from './measure.ts';
import { mergeIncidents, mergeRules } from '../state/merge.ts';

const EVENTS = 1_000_000;

export const stateBench: Benchmark = {
  name: 'state',
  summary: 'the processor checkpoint after 1M events: size per part, snapshot and restore time; save and load through Kafka',
  async run({ minLines }) {
    const n = Math.max(minLines, EVENTS);
    const corpus = await buildCorpus(n, progress);
    const lines = readFileSync(corpus.path, 'utf8').split('\n').slice(0, n);
    if (lines.at(-1) === '') lines.pop();
    const rules = loadRules();
    const incidentRules = loadIncidentRules(join(DEFAULT_RULES_DIR, 'incidents'));
    const engine = await DetectionEngine.create(rules);
    const incidents = new IncidentCorrelator(incidentRules, { minDurationS: 60 });
    const templates = new Miner();
    let offset = 0;
    let transitions = 0;
    const t0 = performance.now();
    for (const [i, text] of lines.entries()) {
      const doc = parseLogEvent({ v: 1, host: 'bench', path: `/var/log/x/f${i % 6}.log`, file_id: `f${i % 6}`, offset, text, read_at: '2026-11-25T10:00:00.000Z' }, { timezone: 'UTC' });
      offset += text.length + 1;
      mineDocument(templates, doc);
      const alerts = engine.on({ kind: 'log', doc });
      transitions += alerts.length;
      if (alerts.length > 0) incidents.onAlerts(alerts, Date.parse(doc['@timestamp']));
      if (i % 100_000 === 0) progress(`state: ${i.toLocaleString('en-US')} events`);
    }
    const feedS = (performance.now() - t0) / 1000;

    let t = performance.now();
    const parts: Record<string, unknown> = {};
    for (const [id, s] of Object.entries(engine.snapshot())) parts[`rule:${id}`] = s;
    parts.incidents = incidents.snapshot();
    parts.templates = templates.snapshot();
    const snapshotMs = performance.now() - t;
    t = performance.now();
    const sizes = Object.entries(parts).map(([name, v]) => [name, Buffer.byteLength(JSON.stringify(v))] as const);
    const jsonMs = performance.now() - t;
    const total = sizes.reduce((a, [, b]) => a + b, 0);

    const round = JSON.parse(JSON.stringify(parts)) as Record<string, unknown>;
    t = performance.now();
    const engine2 = await DetectionEngine.create(rules);
    const rulesPart = Object.fromEntries(Object.entries(round).flatMap(([k, v]) => (k.startsWith('rule:') ? [[k.slice(5), v]] : [])));
    const restored = engine2.restore(rulesPart);
    const incidents2 = new IncidentCorrelator(incidentRules, { minDurationS: 60 });
    const why = incidents2.restore(round.incidents);
    const templatesWhy = new Miner().restore(round.templates);
    const restoreMs = performance.now() - t;
    // An adoption (processors/checkpoint.ts): a processor holding this state merges another's as large (here the
    // same state again: every key in both, the worst case for the merge) and takes the result back.
    const theirs = JSON.parse(JSON.stringify(parts)) as Record<string, unknown>;
    const theirRules = Object.fromEntries(Object.entries(theirs).flatMap(([k, v]) => (k.startsWith('rule:') ? [[k.slice(5), v]] : [])));
    t = performance.now();
    const adopted = engine2.restore(mergeRules(JSON.parse(JSON.stringify(engine2.snapshot())), theirRules));
    const adoptWhy = incidents2.restore(mergeIncidents(JSON.parse(JSON.stringify(incidents2.snapshot())), theirs.incidents));
    const adoptMs = performance.now() - t;

    const m = machine();
    const lines2 = [
      `== state: ${lines.length.toLocaleString('en-US')} corpus events through the template miner, every shipped rule and the correlator (${fmt(feedS, 1)} s, ${transitions} alert transitions, ${incidents.size} incidents open at the end, ${templates.size} templates); ${m.cpuModel}, ${m.cpus} CPU(s), Node ${m.node}`,
      table([
        ['part', 'JSON bytes'],
        ...[...sizes].sort((a, b) => b[1] - a[1]).map(([name, b]) => [name, b.toLocaleString('en-US')]),
        ['total', `${total.toLocaleString('en-US')} (${fmt(total / MiB, 2)} MiB)`],
      ]),
      `snapshot ${fmt(snapshotMs, 1)} ms, JSON ${fmt(jsonMs, 1)} ms; restore into a new engine, correlator and miner ${fmt(restoreMs, 1)} ms (${restored.restored.length} rules restored, ${restored.discarded.length} discarded${why ? `; incidents refused: ${why}` : ''}${templatesWhy ? `; templates refused: ${templatesWhy}` : ''})`,
      `adoption of another processor's checkpoint as large (merge and restore): ${fmt(adoptMs, 1)} ms (${adopted.restored.length} rules merged, ${adopted.discarded.length} refused${adoptWhy ? `; incidents refused: ${adoptWhy}` : ''})`,
    ];

    const brokers = process.env.STACKWATCH_KAFKA_BROKERS;
    if (brokers) {
      const topic = `swbench.state.${Date.now().toString(36)}`;
      const { kafka } = validateConfig({ kafka: { brokers: [brokers] }, elasticsearch: { url: 'http://127.0.0.1:9200' } }, 'state benchmark', {});
      const store = await StateStore.open(kafka, { topic });
      try {
        const saves: number[] = [];
        const loads: number[] = [];
        let changed = { ms: 0, bytes: 0 };
        for (let r = 0; r < 3; r++) {
          const s = await store.save('bench', { offsets: { logs: { '0': String(lines.length) } }, parts });
          saves.push(s.ms);
          const fresh = await StateStore.open(kafka, { topic });
          t = performance.now();
          const l = await fresh.load('bench');
          loads.push(performance.now() - t);
          await fresh.close();
          if (l.problems.length > 0 || !l.checkpoint) throw new Error(`state: the saved checkpoint did not load: ${l.problems.join('; ')}`);
          const one = Object.keys(parts).find((k) => k.startsWith('rule:amqp'))!;
          const c = await store.save('bench', { offsets: { logs: { '0': String(lines.length + r) } }, parts: { [one]: parts[one] }, changed: [one] });
          changed = { ms: c.ms, bytes: c.bytes };
        }
        lines2.push(
          `through Kafka (${brokers}, compacted topic, gzip): save of every part ${saves.map((x) => fmt(x, 0)).join(' / ')} ms; load by a new store ${loads.map((x) => fmt(x, 0)).join(' / ')} ms; a save of one changed part (${changed.bytes.toLocaleString('en-US')} B) ${fmt(changed.ms, 0)} ms`,
        );
      } finally {
        await store.close();
        await deleteTopics(kafka, [topic]).catch(() => {});
      }
    } else lines2.push('through Kafka: skipped (no STACKWATCH_KAFKA_BROKERS; `scripts/stack.sh start` and its env)');
    return { report: lines2.join('\n'), ok: true };
  },
};
