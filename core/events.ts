// Every event that crosses a topic or lands in an index, as a zod schema. The schema is the type:
// producers build these, consumers validate them, and nothing else knows the wire format.
import { createHash } from 'node:crypto';
import { z } from 'zod';

/** A log event as a collector produces it to Kafka (topic `kafka.topics.logs`). */
export const RawLogEvent = z.object({
  v: z.literal(1),
  host: z.string().min(1),
  /** The file as the collector found it. */
  path: z.string().min(1),
  /** Identity of the file's content (a hash of its first line), stable across renames and copies. */
  file_id: z.string().min(1),
  /** Byte offset of the event's first byte in the (decompressed) file. */
  offset: z.number().int().nonnegative(),
  /** The event's text without envelopes: its first line, then any continuation lines (tracebacks, dumps)
   * joined by "\n". Secrets are already masked. */
  text: z.string(),
  /** The container runtime / syslog / journald / supervisor envelope the first line came in. */
  envelope: z
    .object({
      format: z.enum(['cri', 'docker-json', 'syslog', 'journald', 'supervisor', 'prefix']),
      time: z.string().optional(),
      stream: z.enum(['stdout', 'stderr']).optional(),
      partial: z.boolean().optional(),
      program: z.string().optional(),
      pid: z.number().int().optional(),
      host: z.string().optional(),
    })
    .optional(),
  /** The event was longer than the collector's cap and was cut. */
  truncated: z.literal(true).optional(),
  /** How it was read, when worth knowing: `partial` (a partial line whose last piece never came). */
  flags: z.array(z.string()).optional(),
  /** The raw lines as read, when the collector keeps them (collectors.openstack_logs.keep_original). */
  original: z.string().optional(),
  /** When the collector read it (ISO 8601). */
  read_at: z.string(),
});
export type RawLogEvent = z.infer<typeof RawLogEvent>;

/** The fields every event of a file's batch shares, said once (RawLogBatch). */
const SHARED = ['host', 'path', 'file_id', 'read_at'] as const;

/** Many log events of one file in one Kafka record, as the collector sends them: the fields the events share
 * (host, path, file id, read time) once, then each event's own (offset, text, envelope, …). A record per event
 * cost the collector most of its CPU (kafkajs encoding each record, and the garbage of it); a record of a few
 * hundred events costs it a fraction. Each event is checked on its own (RawLogEvent, once the shared fields are
 * put back): a bad one is dead-lettered alone, and its ids are the ones a record of its own would give. */
export const RawLogBatch = z.object({
  v: z.literal(2),
  host: z.string().min(1),
  path: z.string().min(1),
  file_id: z.string().min(1),
  read_at: z.string(),
  // Each event is checked where it is decoded (RawLogEvent), so that a bad one is dead-lettered alone.
  events: z.array(z.unknown(), { error: 'expected an array of events' }).min(1),
});
export type RawLogBatch = z.infer<typeof RawLogBatch>;

/** The events of a batch as RawLogEvents, each still to be checked (by RawLogEvent, where it is decoded): the
 * shared fields put back into each event object (taken over, not copied); what is not an object is left as it
 * is, for that check to name. */
export function unbatchLogs(batch: RawLogBatch): unknown[] {
  return batch.events.map((e) => {
    if (typeof e !== 'object' || e === null || Array.isArray(e)) return e;
    const o = e as Record<string, unknown>;
    o.v = 1;
    for (const k of SHARED) o[k] = batch[k];
    return o;
  });
}

/** What an event of a batch has of its own. */
export type LogEventOwn = Pick<RawLogEvent, 'offset' | 'text' | 'envelope' | 'truncated' | 'flags' | 'original'>;

/** Encodes events of one file as RawLogBatch records of at most `maxEvents` events and about `maxBytes` of JSON
 * each (one larger event gets a record of its own): the records' JSON, in order. Each event's JSON is written
 * straight from its fields, with no object in between. */
export function encodeLogBatches(shared: Pick<RawLogEvent, (typeof SHARED)[number]>, events: readonly LogEventOwn[], maxEvents: number, maxBytes: number): string[] {
  const out: string[] = [];
  if (events.length === 0) return out;
  const head = `{"v":2,"host":${JSON.stringify(shared.host)},"path":${JSON.stringify(shared.path)},"file_id":${JSON.stringify(shared.file_id)},"read_at":${JSON.stringify(shared.read_at)},"events":[`;
  let record = head;
  let count = 0;
  for (const e of events) {
    let json = `{"offset":${e.offset},"text":${JSON.stringify(e.text)}`;
    if (e.envelope) json += `,"envelope":${JSON.stringify(e.envelope)}`;
    if (e.truncated) json += ',"truncated":true';
    if (e.flags) json += `,"flags":${JSON.stringify(e.flags)}`;
    if (e.original !== undefined) json += `,"original":${JSON.stringify(e.original)}`;
    json += '}';
    if (count > 0 && (count >= maxEvents || record.length + json.length > maxBytes)) {
      out.push(`${record}]}`);
      record = head;
      count = 0;
    }
    record += count === 0 ? json : `,${json}`;
    count++;
  }
  out.push(`${record}]}`);
  return out;
}

/** A parsed log event in Elasticsearch, named after the Elastic Common Schema. */
export const LogDocument = z.object({
  '@timestamp': z.string(),
  message: z.string(),
  log: z.object({
    level: z.string().optional(),
    logger: z.string().optional(),
    file: z.object({ path: z.string() }),
    offset: z.number().int(),
    /** "truncated" when the event was cut at the collector's size cap; "partial" when a partial line's last piece
     * never came; "invalid_timestamp" when its own timestamp is impossible (the time is then the envelope's or
     * the time it was read, and event.original keeps the text). */
    flags: z.array(z.string()).optional(),
    /** The message's template, mined online (processors/templates/): the text with `<*>` for each variable, and a
     * stable hash of it as the id. */
    template: z.object({ id: z.string(), text: z.string() }).optional(),
  }),
  process: z.object({ pid: z.number().int() }).optional(),
  host: z.object({ name: z.string() }),
  service: z.object({ name: z.string() }),
  event: z.object({
    id: z.string(),
    ingested: z.string().optional(),
    original: z.string().optional(),
  }),
  openstack: z
    .object({
      request_id: z.string().optional(),
      global_request_id: z.string().optional(),
      user_id: z.string().optional(),
      project_id: z.string().optional(),
      instance_id: z.string().optional(),
    })
    .optional(),
  error: z.object({ stack_trace: z.string().optional() }).optional(),
});
export type LogDocument = z.infer<typeof LogDocument>;

/** A metric sample (topic `kafka.topics.metrics`, from the Zabbix and Ceph collectors): one value at one time.
 * The detectors read `db.*` names for db-sync-lag; `stackwatch trends` reads the capacity names, which come in
 * pairs `<resource>.used` / `<resource>.total` in one unit (compute.vcpu, compute.memory, compute.disk,
 * ceph.pool, ceph.cluster). */
export const MetricEvent = z.object({
  v: z.literal(1),
  '@timestamp': z.string(),
  /** The collector that read it: zabbix, ceph. */
  source: z.string().min(1),
  host: z.object({ name: z.string() }),
  /** Dotted, source-independent: db.replication.seconds_behind_master, db.wsrep.local_state,
   * compute.vcpu.used, ceph.pool.used, … */
  metric: z.object({ name: z.string().min(1), value: z.number(), unit: z.string().optional() }),
  /** Where it came from: the Zabbix item key, the Ceph pool. Part of the sample's identity. */
  labels: z.record(z.string(), z.string()).default({}),
});
export type MetricEvent = z.infer<typeof MetricEvent>;

/** A metric sample in the metrics index (`<indices.metrics>-YYYY.MM.DD`). */
export interface MetricDocument {
  '@timestamp': string;
  host: { name: string };
  metric: { name: string; value: number; unit?: string };
  labels: Record<string, string>;
  event: { id: string; dataset: string; ingested?: string };
}

/** The identity of a sample: the same sample read twice (a replay, an overlapping poll) is one document. */
export function metricId(m: Pick<MetricEvent, '@timestamp' | 'host' | 'metric' | 'labels'>): string {
  const labels = Object.keys(m.labels)
    .sort()
    .map((k) => `${k}=${m.labels[k]}`);
  return stableId(m.host.name, m.metric.name, m['@timestamp'], ...labels);
}

export function metricDocument(m: MetricEvent, ingested?: string): MetricDocument {
  return {
    '@timestamp': m['@timestamp'],
    host: m.host,
    metric: m.metric,
    labels: m.labels,
    event: { id: metricId(m), dataset: m.source, ...(ingested ? { ingested } : {}) },
  };
}

/** Ceph health as the Ceph collector reads it from `ceph health detail -f json` (topic `kafka.topics.health`). */
export const CephHealthEvent = z.object({
  v: z.literal(1),
  kind: z.literal('ceph-health'),
  '@timestamp': z.string(),
  cluster: z.object({ fsid: z.string().optional(), name: z.string() }),
  status: z.enum(['HEALTH_OK', 'HEALTH_WARN', 'HEALTH_ERR']),
  /** The checks standing now; a code absent here has cleared. */
  checks: z.array(
    z.object({
      code: z.string(),
      severity: z.enum(['HEALTH_WARN', 'HEALTH_ERR']),
      summary: z.string(),
      detail: z.array(z.string()).default([]),
      /** The check is muted in Ceph (`ceph health mute`). */
      muted: z.boolean().default(false),
    }),
  ),
});
export type CephHealthEvent = z.infer<typeof CephHealthEvent>;

/** A Zabbix problem (problem.get / event.get), open or resolved (topic `kafka.topics.health`). */
export const ZabbixProblemEvent = z.object({
  v: z.literal(1),
  kind: z.literal('zabbix-problem'),
  '@timestamp': z.string(),
  host: z.object({ name: z.string() }),
  problem: z.object({
    eventid: z.string(),
    name: z.string(),
    /** Zabbix severity 0 (not classified) … 5 (disaster). */
    severity: z.number().int().min(0).max(5),
    status: z.enum(['open', 'resolved']),
    started_at: z.string(),
    ended_at: z.string().optional(),
    acknowledged: z.boolean().default(false),
  }),
  labels: z.record(z.string(), z.string()).default({}),
});
export type ZabbixProblemEvent = z.infer<typeof ZabbixProblemEvent>;

/** A monitored host as the Zabbix inventory knows it (topic `kafka.topics.health`). */
export const InventoryEvent = z.object({
  v: z.literal(1),
  kind: z.literal('inventory'),
  '@timestamp': z.string(),
  source: z.string().min(1),
  host: z.object({ name: z.string(), id: z.string(), ip: z.array(z.string()).default([]), groups: z.array(z.string()).default([]), status: z.enum(['enabled', 'disabled']) }),
});
export type InventoryEvent = z.infer<typeof InventoryEvent>;

/** A host's current inventory in the inventory index (`<indices.inventory>`, not daily): one document per host,
 * under the stable id of its name, so a newer inventory of the host overwrites the older. */
export interface InventoryDocument {
  '@timestamp': string;
  host: InventoryEvent['host'];
  event: { id: string; dataset: string; ingested?: string };
}

export function inventoryDocument(e: InventoryEvent, ingested?: string): InventoryDocument {
  return { '@timestamp': e['@timestamp'], host: e.host, event: { id: stableId('inventory', e.host.name), dataset: e.source, ...(ingested ? { ingested } : {}) } };
}

/** One poll of an OpenStack cloud's APIs by the OpenStack API collector (topic `kafka.topics.health`): the compute
 * services and hypervisors as nova reports them, and the synthetic probes' results. A list that could not be read
 * is absent (never an empty list: "could not ask" must not read as "all clear"). */
export const OpenstackHealthEvent = z.object({
  v: z.literal(1),
  kind: z.literal('openstack-health'),
  '@timestamp': z.string(),
  cloud: z.object({ name: z.string(), region: z.string().optional() }),
  services: z
    .array(
      z.object({
        id: z.string(),
        binary: z.string(),
        host: z.string(),
        zone: z.string().optional(),
        state: z.enum(['up', 'down']),
        status: z.enum(['enabled', 'disabled']),
        forced_down: z.boolean(),
        disabled_reason: z.string().optional(),
        updated_at: z.string().optional(),
      }),
    )
    .optional(),
  hypervisors: z.array(z.object({ id: z.string(), hostname: z.string(), service_host: z.string(), state: z.enum(['up', 'down']), status: z.enum(['enabled', 'disabled']) })).optional(),
  /** The probes that finished since the last poll, each reported once: `token` (a token issue), `console` (a
   * console URL of the canary server). */
  probes: z
    .array(
      z.object({
        name: z.string(),
        /** What was probed: the server's name for the console probe. */
        target: z.string().optional(),
        ok: z.boolean(),
        started_at: z.string(),
        duration_s: z.number().nonnegative(),
        /** Why it failed: `HTTP 500: MessagingTimeout`, `no answer within 180000 ms`. */
        error: z.string().optional(),
        http_status: z.number().int().optional(),
      }),
    )
    .default([]),
});
export type OpenstackHealthEvent = z.infer<typeof OpenstackHealthEvent>;

/** What the health topic carries: state, not samples. */
export const HealthEvent = z.discriminatedUnion('kind', [CephHealthEvent, ZabbixProblemEvent, InventoryEvent, OpenstackHealthEvent]);
export type HealthEvent = z.infer<typeof HealthEvent>;

/** Every kind of event the processor decodes and hands to the detectors, told apart by `kind`. The health events
 * carry their kind on the wire; a parsed log document and a metric sample are wrapped with theirs (their wire
 * and index formats have no such field). processors/decode.ts makes them; a detector declares the kinds it
 * accepts (detectors/detector.ts). */
export type PipelineEvent = { kind: 'log'; doc: LogDocument } | { kind: 'metric'; sample: MetricEvent } | HealthEvent;
export type EventKind = PipelineEvent['kind'];
export type EventOf<K extends EventKind> = Extract<PipelineEvent, { kind: K }>;
export type LogEvent = EventOf<'log'>;
export type MetricSample = EventOf<'metric'>;
/** Every event kind (a record, so that a kind added to the union and not here fails to type-check). */
const KINDS: Record<EventKind, true> = { log: true, metric: true, 'ceph-health': true, 'zabbix-problem': true, inventory: true, 'openstack-health': true };
export const EVENT_KINDS = Object.keys(KINDS) as EventKind[];

export const AlertStatus = z.enum(['firing', 'resolved']);
export const Severity = z.enum(['info', 'warning', 'critical', 'page']);
export type Severity = z.infer<typeof Severity>;

/** An alert transition: indexed into the alerts index and sent to the notifiers. */
export const Alert = z.object({
  '@timestamp': z.string(),
  rule: z.object({ id: z.string(), name: z.string() }),
  alert: z.object({
    /** Stable fingerprint of rule + group: the same outage always has the same id. */
    id: z.string(),
    status: AlertStatus,
    severity: Severity,
    started_at: z.string(),
    ended_at: z.string().optional(),
    duration_s: z.number().optional(),
    runbook: z.string(),
    group: z.record(z.string(), z.string()),
    /** Context that is not part of the alert's identity (the broker a connection was lost to): what incident rules
     * may group by. */
    labels: z.record(z.string(), z.string()).optional(),
  }),
  host: z.object({ name: z.string() }),
  service: z.object({ name: z.string() }),
  message: z.string(),
  /** event.id of the log events that are the evidence. */
  evidence: z.object({ event_ids: z.array(z.string()) }),
  /** The incident the alert belongs to (incidents/correlator.ts); on a page, the incident it stands for. */
  incident: z
    .object({
      id: z.string(),
      /** The incident rule (rules/incidents/), absent for an alert that is an incident of its own. */
      rule: z.string().optional(),
      cause: z.string().optional(),
      services: z.array(z.string()).optional(),
      hosts: z.array(z.string()).optional(),
      alert_ids: z.array(z.string()).optional(),
    })
    .optional(),
});
export type Alert = z.infer<typeof Alert>;

/** An incident: the alerts of one cause (incidents/correlator.ts), indexed into the incidents index (one document
 * per incident, overwritten as it changes) and paged as one alert. */
export const Incident = z.object({
  '@timestamp': z.string(),
  incident: z.object({
    id: z.string(),
    /** The incident rule, or absent for an alert that no rule groups (an incident of its own). */
    rule: z.string().optional(),
    cause: z.string(),
    status: AlertStatus,
    severity: Severity,
    /** Whether the pager got it: an incident shorter than its min_duration_s is kept here, never paged. */
    paged: z.boolean(),
    started_at: z.string(),
    ended_at: z.string().optional(),
    duration_s: z.number().optional(),
    services: z.array(z.string()),
    hosts: z.array(z.string()),
    alert_ids: z.array(z.string()),
    runbook: z.string(),
    /** An incident found to be part of another (its alerts arrived first, out of order): closed, never paged. */
    merged_into: z.string().optional(),
  }),
  alerts: z.array(
    z.object({
      id: z.string(),
      rule: z.string(),
      status: AlertStatus,
      host: z.string(),
      service: z.string(),
      started_at: z.string(),
      ended_at: z.string().optional(),
      group: z.record(z.string(), z.string()),
    }),
  ),
  timeline: z.array(z.object({ at: z.string(), what: z.string() })),
  /** The first alert's message and evidence: where the story starts. */
  message: z.string(),
  evidence: z.object({ event_ids: z.array(z.string()) }),
});
export type Incident = z.infer<typeof Incident>;

/** Alert transitions a notifier could not take yet (topic `kafka.topics.notify_retry`). */
export const NotificationRetry = z.object({
  notifier: z.string(),
  alerts: z.array(Alert),
  attempt: z.number().int().positive(),
  /** Not to be tried again before this time (ISO 8601). */
  not_before: z.string(),
  last_error: z.string(),
});
export type NotificationRetry = z.infer<typeof NotificationRetry>;

/** Something that could not be processed, kept with the reason (topic `kafka.topics.dead_letter`). */
export const DeadLetter = z.object({
  '@timestamp': z.string(),
  component: z.string(),
  reason: z.string(),
  /** The original payload, as text (truncated to 64 KiB). */
  payload: z.string(),
  source: z.object({ topic: z.string(), partition: z.number().int(), offset: z.string() }).optional(),
});
export type DeadLetter = z.infer<typeof DeadLetter>;

/** A short, deterministic id: the same inputs always give the same id (so replays overwrite, never add). */
export function stableId(...parts: (string | number)[]): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(String(p)).update('\0');
  return h.digest('base64url').slice(0, 27);
}

let last = { host: '', fileId: '', prefix: '' };

/** The id of a log event: a hash of host + file identity (computed once per run of events of one file), then
 * the byte offset. */
export function logEventId(e: Pick<RawLogEvent, 'host' | 'file_id' | 'offset'>): string {
  if (e.file_id !== last.fileId || e.host !== last.host) {
    last = { host: e.host, fileId: e.file_id, prefix: stableId(e.host, e.file_id).slice(0, 20) };
  }
  return `${last.prefix}.${e.offset.toString(36)}`;
}

export const DEAD_LETTER_PAYLOAD_MAX = 64 * 1024;
export function deadLetter(component: string, reason: string, payload: string, source?: DeadLetter['source']): DeadLetter {
  return {
    '@timestamp': new Date().toISOString(),
    component,
    reason,
    payload: payload.length > DEAD_LETTER_PAYLOAD_MAX ? payload.slice(0, DEAD_LETTER_PAYLOAD_MAX) : payload,
    ...(source ? { source } : {}),
  };
}
