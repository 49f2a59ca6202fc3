// Parses a log event (from collectors/assemble.ts) into an ECS document: the oslo.log header of its first line,
// or the header of another known format (RabbitMQ, MariaDB, … in core/log-formats.ts), then its continuation
// lines — a multi-line message, or a traceback (error.stack_trace).
//
//   2022-02-04 09:37:50.159 21562 ERROR oslo.messaging._drivers.impl_rabbit [req-30b3… - - - - -] Connection failed: …
//   <date>     <time>       <pid> <level> <logger>                          [<context>]            <message>
//
// The context block is oslo.log's logging_context_format_string: `[-]` outside a request, or
// `[<global request id>? <request id> <user> <project> <domain> <user domain> <project domain>]`, where an
// absent value is `-` and an absent global request id is `None`. A line with a level and a logger but no time of its
// own (devstack's oslo.log format in journald, Python's default "LEVEL:logger:message") takes the envelope's time, or
// the time it was read. A line in no known format is still an event: its message is the whole line and its time the
// time it was read.
import { basename } from 'node:path';
import { logEventId, type LogDocument, type RawLogEvent } from '../core/events.ts';
import { hasLeadingTimestamp, parseLevelFirstHeader, parseOtherHeader, partsToUtc, serviceFromFileName, validWallClock } from '../core/log-formats.ts';

export interface ParseOptions {
  /** IANA zone the oslo timestamps were written in. */
  timezone: string;
  /** Keep the raw line in event.original. */
  keepOriginal?: boolean;
}

export interface OsloHeader {
  /** ISO 8601 UTC; undefined when the line's date or time cannot exist (2025-13-45 25:61:61). */
  timestamp: string | undefined;
  pid: number;
  level: string;
  logger: string;
  requestId?: string;
  globalRequestId?: string;
  userId?: string;
  projectId?: string;
  instanceId?: string;
  message: string;
}

const HEADER = /^(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2})(?:[.,](\d{1,6}))? (\d+) (TRACE|DEBUG|INFO|AUDIT|WARNING|WARN|ERROR|CRITICAL|FATAL) (\S+) ?(.*)$/s;
const INSTANCE = /^\[instance: ([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\]/;

const absent = (v: string | undefined) => (v === undefined || v === '-' || v === 'None' || v === '' ? undefined : v);

/** Parses the oslo.log header of one line; undefined when the line is not in oslo.log format. */
export function parseOsloHeader(line: string, timezone = 'UTC'): OsloHeader | undefined {
  const m = HEADER.exec(line);
  if (!m) return undefined;
  const [, date, time, frac = '0', pid, level, logger, rest] = m;
  const header: OsloHeader = {
    timestamp: toUtcIso(date, time, frac, timezone),
    pid: Number(pid),
    level,
    logger,
    message: rest,
  };
  if (rest.startsWith('[')) {
    const close = rest.indexOf(']');
    if (close > 0) {
      applyContext(header, rest.slice(1, close));
      header.message = rest.slice(rest.charCodeAt(close + 1) === 32 ? close + 2 : close + 1);
    }
  }
  applyInstance(header);
  return header;
}

/** The ids oslo.log's context block and instance prefix carry. */
type ContextIds = Pick<OsloHeader, 'requestId' | 'globalRequestId' | 'userId' | 'projectId' | 'instanceId' | 'message'>;

function applyInstance(h: ContextIds): void {
  if (h.message.startsWith('[instance: ')) {
    const inst = INSTANCE.exec(h.message);
    if (inst) h.instanceId = inst[1];
  }
}

function applyContext(h: ContextIds, context: string): void {
  if (context === '-' || context === '') return;
  const parts = context.split(' ');
  let i = 0;
  // A global request id (or its placeholder None) comes first when the context carries two ids.
  if (parts.length > 1 && (parts[0] === 'None' || parts[0].startsWith('req-')) && parts[1].startsWith('req-')) {
    h.globalRequestId = absent(parts[0]);
    i = 1;
  }
  if (!parts[i]?.startsWith('req-')) return;
  h.requestId = parts[i];
  h.userId = absent(parts[i + 1]);
  h.projectId = absent(parts[i + 2]);
}

const num2 = (s: string, at: number) => (s.charCodeAt(at) - 48) * 10 + s.charCodeAt(at + 1) - 48;

/** Converts a wall-clock time in `timezone` to ISO 8601 UTC with milliseconds (UTC, the usual case, by hand);
 * undefined for a date or time that cannot exist (month 13, 2023-02-29, 25:61). */
export function toUtcIso(date: string, time: string, frac: string, timezone: string): string | undefined {
  const y = num2(date, 0) * 100 + num2(date, 2);
  const mo = num2(date, 5);
  const d = num2(date, 8);
  const h = num2(time, 0);
  const mi = num2(time, 3);
  const sec = num2(time, 6);
  if (!validWallClock(y, mo, d, h, mi, sec)) return undefined;
  if (sec < 60 && (timezone === 'UTC' || timezone === 'Etc/UTC')) return `${date}T${time}.${(frac + '00').slice(0, 3)}Z`;
  return partsToUtc(y, mo, d, h, mi, sec, frac, undefined, timezone);
}

/** nova-compute.log.1.gz → nova-compute; nova-api.log.1.2017-05-16_13:53:08 → nova-api; a Kubernetes container's
 * /var/log/pods/…/nova-api/0.log → nova-api. */
export function serviceFromPath(path: string): string {
  // Every event of a file asks the same: the last answer is kept.
  if (path !== lastPath) ((lastPath = path), (lastService = serviceFromFileName(path.includes('/var/log/') ? path : basename(path))));
  return lastService;
}
let lastPath = '';
let lastService = '';

/** The oslo exception prefix ("date time pid LEVEL logger ") that oslo.log puts before each traceback line. */
const EXCEPTION_PREFIX = /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:[.,]\d{1,6})? \d+ [A-Z]+ \S+ ?/;

/** Splits continuation lines into more message (e.g. an XML dump) and a stack trace (from the first
 * exception-prefixed line or "Traceback" on). */
function continuation(lines: string[]): { more: string[]; stack: string[] } {
  const more: string[] = [];
  const stack: string[] = [];
  for (const line of lines) {
    const prefix = stack.length === 0 ? EXCEPTION_PREFIX.exec(line) : null;
    if (stack.length > 0 || prefix || line.startsWith('Traceback (most recent call last)')) {
      stack.push(line.replace(EXCEPTION_PREFIX, ''));
    } else more.push(line);
  }
  return { more, stack };
}

export function parseLogEvent(raw: RawLogEvent, opts: ParseOptions): LogDocument {
  const id = logEventId(raw);
  const nl = raw.text.indexOf('\n');
  const first = nl < 0 ? raw.text : raw.text.slice(0, nl);
  const h = parseOsloHeader(first, opts.timezone);
  const other = h ? undefined : parseOtherHeader(first, opts.timezone);
  const untimed = h || other ? undefined : levelFirst(first);
  const env = raw.envelope;
  // A timestamp that cannot exist never becomes @timestamp (Elasticsearch would refuse the document, rule windows
  // would break): the envelope's time, else the time it was read, and a flag.
  const invalidTime = h ? h.timestamp === undefined : other === undefined && hasLeadingTimestamp(first);
  const doc: LogDocument = {
    '@timestamp': h?.timestamp ?? other?.timestamp ?? env?.time ?? raw.read_at,
    message: h?.message ?? other?.message ?? untimed?.message ?? first,
    log: { file: { path: raw.path }, offset: raw.offset },
    host: { name: raw.host },
    service: { name: env?.program ?? serviceFromPath(raw.path) },
    event: { id },
  };
  if (raw.truncated || raw.flags || invalidTime) {
    doc.log.flags = [...(raw.truncated ? ['truncated'] : []), ...(raw.flags ?? []), ...(invalidTime ? ['invalid_timestamp'] : [])];
  }
  if (opts.keepOriginal || raw.original !== undefined || invalidTime) doc.event.original = raw.original ?? raw.text;
  if (nl >= 0 && !h && !other && first.startsWith('Traceback (most recent call last)')) {
    // A bare traceback (a program's stderr): the exception line that ends it is the message.
    const lines = raw.text.split('\n');
    const last = lines.findLast((l) => l.length > 0 && l.charCodeAt(0) !== 32 && l.charCodeAt(0) !== 9 && !l.startsWith('Traceback'));
    if (last !== undefined) doc.message = last;
    doc.error = { stack_trace: raw.text };
  } else if (nl >= 0) {
    const { more, stack } = continuation(raw.text.slice(nl + 1).split('\n'));
    if (more.length > 0) doc.message += '\n' + more.join('\n');
    if (stack.length > 0) doc.error = { stack_trace: stack.join('\n') };
  }
  if (h ?? untimed) {
    const x = (h ?? untimed)!;
    doc.log.level = x.level;
    doc.log.logger = x.logger;
    if (h) doc.process = { pid: h.pid };
    else if (env?.pid !== undefined) doc.process = { pid: env.pid };
    const os: NonNullable<LogDocument['openstack']> = {};
    if (x.requestId) os.request_id = x.requestId;
    if (x.globalRequestId) os.global_request_id = x.globalRequestId;
    if (x.userId) os.user_id = x.userId;
    if (x.projectId) os.project_id = x.projectId;
    if (x.instanceId) os.instance_id = x.instanceId;
    if (Object.keys(os).length > 0) doc.openstack = os;
  } else if (other) {
    if (other.level) doc.log.level = other.level;
    if (other.subsystem) doc.log.logger = other.subsystem;
    if (other.pid !== undefined) doc.process = { pid: other.pid };
  } else if (env?.pid !== undefined) doc.process = { pid: env.pid };
  return doc;
}

/** A level-first header (core/log-formats.ts) with the ids of its context block. */
function levelFirst(line: string): (ContextIds & { level: string; logger: string }) | undefined {
  const lf = parseLevelFirstHeader(line);
  if (!lf) return undefined;
  const x = { level: lf.level, logger: lf.logger, message: lf.message } as ContextIds & { level: string; logger: string };
  if (lf.context !== undefined) applyContext(x, lf.context);
  applyInstance(x);
  return x;
}

/** Every regular expression above that meets a log line, for the test that proves each runs in linear time. */
export const PARSE_REGEXES: Readonly<Record<string, RegExp>> = Object.freeze({ HEADER, INSTANCE, EXCEPTION_PREFIX });
