// `stackwatch state`: the processors' checkpoints (processors/checkpoint.ts), read from the state topic — no
// processor needed: each checkpoint's save, time and offsets, the size of each part (a rule's detector state, the
// open incidents, the pages waiting), and for one processor its open incidents and the alerts firing in them.
import { ConfigError } from '../core/config.ts';
import type { Alert } from '../core/events.ts';
import { StateStore, type Checkpoint, type CheckpointSummary } from '../state/store.ts';
import type { Command } from './index.ts';
import { parseOptions, readConfig } from './options.ts';

export const stateCommand: Command = {
  name: 'state',
  help: `Usage: stackwatch state [--config FILE] [--owner OWNER] [--format table|json]

Reads the processors' state checkpoints from the state topic (processor.checkpoint.topic): the detectors' state,
the open incidents and the pages not sent yet, saved with the Kafka offsets they reflect. No processor is needed.

Without --owner: one line per checkpoint (owner = <consumer group>/<processor.checkpoint.instance>): its save
number, when, the offsets it reflects, and the size of each part (rule:<id> is a rule's detector state).
With --owner: that checkpoint's open incidents (rule, status, paged, start, services) and the alerts firing in
them (rule, service, host, since), and any part that did not load (named, with why).

Options:
  --config FILE     the configuration (default: $STACKWATCH_CONFIG, else /etc/stackwatch/stackwatch.yaml)
  --owner OWNER     one checkpoint in detail (default: the list of all)
  --format FORMAT   table (default) or json

Exit status: 0, 1 when Kafka cannot be read or the owner has no checkpoint, 2 for a bad option or configuration.`,

  async main(args) {
    const { values } = parseOptions(args, { config: { type: 'string' }, owner: { type: 'string' }, format: { type: 'string', default: 'table' } });
    const format = values.format;
    if (format !== 'table' && format !== 'json') throw new ConfigError(`--format: expected table or json, got ${JSON.stringify(format)}`);
    const cfg = readConfig(values.config);
    const store = await StateStore.open(cfg.kafka, { topic: cfg.processor.checkpoint.topic });
    try {
      if (values.owner === undefined) {
        const { checkpoints, problems } = await store.list();
        if (format === 'json') process.stdout.write(`${JSON.stringify({ checkpoints, problems })}\n`);
        else process.stdout.write(listTable(cfg.processor.checkpoint.topic, checkpoints, problems));
        return 0;
      }
      const { checkpoint, problems } = await store.load(values.owner);
      if (!checkpoint) {
        process.stderr.write(`stackwatch state: no checkpoint of ${values.owner} in ${cfg.processor.checkpoint.topic}${problems.length ? `: ${problems.join('; ')}` : ''}\n`);
        return 1;
      }
      const open = openIncidents(checkpoint);
      if (format === 'json')
        process.stdout.write(`${JSON.stringify({ owner: checkpoint.owner, seq: checkpoint.seq, at: checkpoint.at, offsets: checkpoint.offsets, incidents: open, problems })}\n`);
      else process.stdout.write(ownerTable(checkpoint, open, problems));
      return 0;
    } finally {
      await store.close();
    }
  },
};

const kib = (bytes: number) => (bytes < 1024 ? `${bytes} B` : `${(bytes / 1024).toFixed(1)} KiB`);

function listTable(topic: string, checkpoints: CheckpointSummary[], problems: string[]): string {
  if (checkpoints.length === 0 && problems.length === 0) return `no checkpoint in ${topic}\n`;
  const out: string[] = [];
  for (const c of checkpoints) {
    const offsets = Object.entries(c.offsets)
      .map(
        ([topic, parts]) =>
          `${topic} ${Object.entries(parts)
            .map(([p, o]) => `${p}:${o}`)
            .join(',')}`,
      )
      .join('; ');
    const total = c.parts.reduce((n, p) => n + p.bytes, 0);
    out.push(`${c.owner}  save ${c.seq} at ${c.at}, ${kib(total)} in ${c.parts.length} part(s); offsets: ${offsets || '(none)'}`);
    for (const p of [...c.parts].sort((a, b) => b.bytes - a.bytes)) out.push(`    ${p.name.padEnd(32)} ${kib(p.bytes).padStart(11)}  ${p.chunks} chunk(s)`);
  }
  for (const p of problems) out.push(`problem: ${p}`);
  return `${out.join('\n')}\n`;
}

interface OpenIncident {
  id: string;
  rule?: string;
  paged: boolean;
  started_at: string;
  firing: { rule: string; kind?: string; service: string; host: string; since: string }[];
  services: string[];
}

/** The open incidents of a checkpoint's `incidents` part, as the correlator's snapshot holds them. */
function openIncidents(c: Checkpoint): OpenIncident[] {
  const data = (c.parts.incidents as { data?: { incidents?: unknown[] } } | undefined)?.data?.incidents;
  if (!Array.isArray(data)) return [];
  return data.map((raw) => {
    type Member = { alert: Pick<Alert, 'rule' | 'service' | 'host'> & { alert: Pick<Alert['alert'], 'started_at' | 'group'> }; firing: boolean };
    const inc = raw as { id: string; rule?: string; paged: boolean; first: { alert: { started_at: string } }; members: Member[] };
    const firing = inc.members
      .filter((m) => m.firing)
      .map((m) => ({
        rule: m.alert.rule.id,
        ...(m.alert.alert.group?.kind ? { kind: m.alert.alert.group.kind } : {}),
        service: m.alert.service.name,
        host: m.alert.host.name,
        since: m.alert.alert.started_at,
      }));
    return {
      id: inc.id,
      ...(inc.rule ? { rule: inc.rule } : {}),
      paged: inc.paged,
      started_at: inc.first.alert.started_at,
      firing,
      services: [...new Set(inc.members.map((m) => m.alert.service.name))].sort(),
    };
  });
}

function ownerTable(c: Checkpoint, open: OpenIncident[], problems: string[]): string {
  const out = [`${c.owner}  save ${c.seq} at ${c.at}: ${open.length} open incident(s), ${Array.isArray(c.parts.outbox) ? c.parts.outbox.length : 0} page(s) waiting`];
  for (const i of open) {
    out.push(
      `  incident ${i.id} ${i.rule ?? '(no rule)'} ${i.firing.length > 0 ? 'firing' : 'ended, in its hold'}${i.paged ? ', paged' : ''}, since ${i.started_at} (${i.services.join(', ')})`,
    );
    for (const a of i.firing) out.push(`    firing ${a.rule}${a.kind ? `/${a.kind}` : ''} ${a.service} on ${a.host} since ${a.since}`);
  }
  for (const p of problems) out.push(`problem: ${p}`);
  return `${out.join('\n')}\n`;
}
