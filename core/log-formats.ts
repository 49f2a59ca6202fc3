// The log formats seen in OpenStack clouds around and beside oslo.log: pure functions, no I/O.
//
//  - unwrap():   takes off what a container runtime (CRI, Docker json-file), syslog (RFC 3164 / 5424, rsyslog
//                high-precision), journald (journalctl short-iso / short-precise / json) or a supervisor
//                (Kolla / openstack-helm / devstack style "<ts> [name] ") wrapped around the application's own
//                line, ANSI colour codes (also rsyslog's escaped "#033[…m"), and the doubled timestamp wsgi
//                wrappers print before oslo's own (Apache mod_wsgi, uwsgi log-date, devstack's "<ts> | ").
//  - lineKind(): whether an unwrapped line starts an event or continues the previous one (multi-line folding).
//  - parseOtherHeader(): the header of non-oslo lines (RabbitMQ, MariaDB / Galera / MySQL, web server access lines,
//                any timestamped line).
//  - parseLevelFirstHeader(): lines with a level and a logger but no time of their own (oslo.log without its date,
//                as devstack writes to journald; Python logging's default format).
//
// Plain oslo.log lines are the vast majority: unwrap() and lineKind() recognise them with a few charCode
// comparisons (and one native indexOf for ESC); regular expressions run only on the slow path.
//
// Zone-less envelope timestamps (RFC 3164 syslog, journalctl short/short-precise, supervisor prefixes) are read as
// UTC: unwrap() is not told the host's zone. parseOtherHeader() converts zone-less timestamps from its `timezone`.

export interface Envelope {
  /** `prefix`: a tool's prefix, not a log format: a source file name (Loghub, `tail`, `grep -H`), a line number
   * (`grep -n`, `cat -n`) or `kubectl logs --prefix`. */
  format: 'cri' | 'docker-json' | 'syslog' | 'journald' | 'supervisor' | 'prefix';
  /** The envelope's own timestamp, ISO 8601 UTC with milliseconds, when it has one. */
  time?: string;
  stream?: 'stdout' | 'stderr';
  /** CRI "P" tag: this is a partial line, to be joined with the next one of the same stream. */
  partial?: boolean;
  /** Program / unit / service name the envelope names (syslog tag, journald unit or identifier, supervisor [name]). */
  program?: string;
  pid?: number;
  /** Host name in a syslog header. */
  host?: string;
}
export interface Unwrapped {
  text: string;
  envelope?: Envelope;
}

export type LineKind = 'start' | 'continuation';

export interface OtherHeader {
  format: 'rabbitmq' | 'mariadb' | 'access' | 'timestamp-only';
  timestamp: string; // ISO 8601 UTC with ms
  level?: string; // normalised upper-case: DEBUG INFO NOTICE WARNING ERROR CRITICAL
  pid?: number; // rabbitmq erlang pid "<0.123.0>" is NOT a number: keep it in `process_name` instead
  process_name?: string;
  thread_id?: number; // mariadb thread id
  subsystem?: string; // e.g. "WSREP" for "[Note] WSREP: …"
  message: string;
}

// ---------------------------------------------------------------------------------------------------------------
// Character tests (the fast path)

const ESC = '\x1b';
const C_0 = 48;
const C_9 = 57;
const C_A = 65;
const C_Z = 90;
const C_SPACE = 32;
const C_TAB = 9;
const C_DASH = 45;
const C_COLON = 58;
const C_DOT = 46;
const C_LBRACKET = 91;
const C_LT = 60;
const C_LBRACE = 123;
const C_EQUALS = 61;

const isDigit = (c: number) => c >= C_0 && c <= C_9;
const isUpper = (c: number) => c >= C_A && c <= C_Z;

/** Starts like an oslo.log line: "YYYY-MM-DD hh:mm:ss.mmm " (separators and the first digit checked). Any line that
 * passes matches no envelope, so a false positive costs nothing but a skipped envelope check that would fail. */
function osloTimestamp(s: string): boolean {
  return (
    s.length > 24 &&
    s.charCodeAt(23) === C_SPACE &&
    s.charCodeAt(19) === C_DOT &&
    s.charCodeAt(10) === C_SPACE &&
    s.charCodeAt(4) === C_DASH &&
    s.charCodeAt(7) === C_DASH &&
    s.charCodeAt(13) === C_COLON &&
    s.charCodeAt(16) === C_COLON &&
    isDigit(s.charCodeAt(0))
  );
}

// ---------------------------------------------------------------------------------------------------------------
// unwrap

/** Removes the envelope a container runtime, syslog, journald or a supervisor wrapped around the application's
 * own line, ANSI colour codes, and the doubled timestamp some wsgi wrappers print before oslo's own. Fast path:
 * a line that starts like an oslo.log line ("YYYY-MM-DD hh:mm:ss.mmm ") and has no ESC character is returned
 * as { text: line } after at most a few character comparisons.
 *
 * Envelopes nest once (e.g. CRI around a supervisor prefix): the outer envelope is returned, with the fields it
 * lacks (program, pid, host, stream, time) taken from the inner one. */
export function unwrap(line: string, year?: number /* for syslog lines that carry no year; default: current year */): Unwrapped {
  if (osloTimestamp(line) && isDigit(line.charCodeAt(24)) && line.indexOf(ESC) < 0) return { text: line };
  return slowUnwrap(line, year);
}

function slowUnwrap(line: string, year: number | undefined): Unwrapped {
  let text = stripAnsi(line);
  let envelope: Envelope | undefined;
  const outer = envelopeOf(text, year) ?? toolPrefix(text);
  if (outer) {
    envelope = outer.envelope;
    text = outer.text;
    // A JSON-escaped "\u001b[…m" (Docker, journald) or a Python "\x1b" is an ESC only now.
    if (envelope.format === 'docker-json' || envelope.format === 'journald' || envelope.format === 'supervisor') text = stripAnsi(text);
    const inner = envelopeOf(text, year);
    if (inner) {
      text = stripAnsi(inner.text);
      const e = inner.envelope;
      if (envelope.time === undefined && e.time !== undefined) envelope.time = e.time;
      if (envelope.stream === undefined && e.stream !== undefined) envelope.stream = e.stream;
      if (envelope.program === undefined && e.program !== undefined) envelope.program = e.program;
      if (envelope.pid === undefined && e.pid !== undefined) envelope.pid = e.pid;
      if (envelope.host === undefined && e.host !== undefined) envelope.host = e.host;
    }
  }
  text = stripDoubledTimestamp(text);
  return envelope ? { text, envelope } : { text };
}

/** CSI (colours, cursor), OSC (titles), two-character escapes; and rsyslog's escaped form "#033[01;31m". */
const ANSI = /\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[()][0-9A-Za-z]|[@-Z\\-_])|#033\[[0-9;]*[A-Za-z]/g;

function stripAnsi(s: string): string {
  if (s.indexOf(ESC) < 0 && s.indexOf('#033[') < 0) return s;
  return s.replace(ANSI, '');
}

interface Found {
  text: string;
  envelope: Envelope;
}

function envelopeOf(s: string, year: number | undefined): Found | undefined {
  if (s.length === 0) return undefined;
  const c = s.charCodeAt(0);
  if (isDigit(c)) {
    if (osloTimestamp(s) && isDigit(s.charCodeAt(24))) return undefined; // a plain oslo line
    return isoEnvelope(s);
  }
  if (isUpper(c)) return bsdEnvelope(s, year);
  if (c === C_LBRACE) return jsonEnvelope(s);
  if (c === C_LT) return priEnvelope(s, year);
  return undefined;
}

// CRI (containerd, CRI-O): "<RFC 3339 nano> <stream> <tag> <log>"; tag "F" (full) or "P" (partial), possibly
// followed by more ":"-separated tags. Parsed by hand: in Kubernetes every line has it.
const CRI_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})$/;

function criEnvelope(s: string): Found | undefined {
  const sp = s.indexOf(' ', 19);
  if (sp < 0 || sp > 35) return undefined;
  const stdout = s.startsWith('stdout ', sp + 1);
  if (!stdout && !s.startsWith('stderr ', sp + 1)) return undefined;
  const tagAt = sp + 8;
  const tag = s.charCodeAt(tagAt);
  if (tag !== 70 /* F */ && tag !== 80 /* P */) return undefined;
  let end = tagAt + 1;
  if (end < s.length && s.charCodeAt(end) !== C_SPACE) {
    if (s.charCodeAt(end) !== C_COLON) return undefined;
    end = s.indexOf(' ', end);
    if (end < 0) end = s.length;
  }
  const ts = s.slice(0, sp);
  if (!CRI_TIME.test(ts)) return undefined;
  const envelope: Envelope = { format: 'cri', stream: stdout ? 'stdout' : 'stderr' };
  const time = isoToUtc(ts);
  if (time) envelope.time = time;
  if (tag === 80) envelope.partial = true;
  return { text: end < s.length ? s.slice(end + 1) : '', envelope };
}

// rsyslog RFC 3339 ("+00:00") and journalctl short-iso / short-iso-precise ("+0000"): "<ts> <host> <tag>: <msg>".
const ISO_SYSLOG = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.(\d{1,9}))?(Z|[+-]\d{2}:?\d{2})) (\S+) (.*)$/s;
// Supervisor-style "<ts> [name] <line>" (Kolla / openstack-helm / devstack).
const SUPERVISOR = /^(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d{1,9})?(?:Z|[+-]\d{2}:?\d{2})?) \[([A-Za-z][\w.@:/-]*)\](?: (.*))?$/s;
// openstack-helm's start.py relaying mysqld's output through Python logging: "<ts>,mmm - <name> - <LEVEL> - b'<line>'".
const PY_RELAY = /^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3}) - (.+?) - (?:DEBUG|INFO|WARNING|ERROR|CRITICAL) - b(['"])(.*)\3$/s;
// "program[pid]: msg" or "program: msg".
const TAG = /^([^\s[\]:]+)(?:\[(\d+)\])?:(?: (.*))?$/s;

function isoEnvelope(s: string): Found | undefined {
  const c10 = s.charCodeAt(10);
  if (c10 === 84 /* T */) {
    const cri = criEnvelope(s);
    if (cri) return cri;
    const sup = supervisor(s);
    if (sup) return sup;
    const m = ISO_SYSLOG.exec(s);
    if (m) {
      const t = TAG.exec(m[5]);
      if (!t) return undefined; // e.g. MySQL 8 "…Z 0 [Note] …", Ceph "…+0000 7f0f8db4e700 -1 auth: …"
      // journalctl short-iso writes "+0000" and no fraction; rsyslog writes RFC 3339 ("+00:00", microseconds).
      const journald = m[3].length === 5 || m[2] === undefined;
      const envelope: Envelope = { format: journald ? 'journald' : 'syslog' };
      const time = isoToUtc(m[1]);
      if (time) envelope.time = time;
      return { text: t[3] ?? '', envelope: tagged(envelope, m[4], t) };
    }
    return undefined;
  }
  if (c10 === C_SPACE) {
    const py = PY_RELAY.exec(s);
    if (py) {
      const envelope: Envelope = { format: 'supervisor', program: py[2] };
      const time = isoToUtc(py[1]);
      if (time) envelope.time = time;
      let text = pyBytesLiteral(py[4], py[3]);
      if (text.endsWith('\n')) text = text.slice(0, -1);
      return { text, envelope };
    }
    return supervisor(s);
  }
  return undefined;
}

/** Level words that follow a timestamp in brackets in other formats (RabbitMQ "[info]"), never a supervisor name. */
const BRACKET_LEVELS = new Set([
  'debug',
  'dbg',
  'info',
  'inf',
  'notice',
  'ntc',
  'warning',
  'warn',
  'wrn',
  'error',
  'err',
  'critical',
  'crit',
  'crt',
  'alert',
  'alr',
  'emergency',
  'emerg',
  'emg',
  'note',
  'system',
  'trace',
  'fatal',
]);

function supervisor(s: string): Found | undefined {
  const m = SUPERVISOR.exec(s);
  if (!m) return undefined;
  const name = m[2];
  if (BRACKET_LEVELS.has(name.toLowerCase()) || name.startsWith('req-')) return undefined;
  const envelope: Envelope = { format: 'supervisor', program: name };
  const time = isoToUtc(m[1]);
  if (time) envelope.time = time;
  return { text: m[3] ?? '', envelope };
}

function tagged(envelope: Envelope, host: string, tag: RegExpExecArray | null): Envelope {
  envelope.host = host;
  if (tag) {
    envelope.program = tag[1];
    if (tag[2] !== undefined) envelope.pid = Number(tag[2]);
  }
  return envelope;
}

const MONTHS: Record<string, number> = { Jan: 1, Feb: 2, Mar: 3, Apr: 4, May: 5, Jun: 6, Jul: 7, Aug: 8, Sep: 9, Oct: 10, Nov: 11, Dec: 12 };
const MON = '(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)';
const DOW = '(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)';

// RFC 3164 as rsyslog writes it ("Feb  4 09:37:50 host tag[pid]: msg"), journalctl short ("Feb 04 …") and
// short-precise ("Feb 04 09:37:50.159123 …").
const BSD = new RegExp(`^${MON} ([ \\d]\\d) (\\d{2}):(\\d{2}):(\\d{2})(?:\\.(\\d{1,9}))? (\\S+) (.*)$`, 's');

function bsdEnvelope(s: string, year: number | undefined): Found | undefined {
  const m = BSD.exec(s);
  if (!m) return undefined;
  const t = TAG.exec(m[8]);
  // rsyslog pads the day with a space, journalctl with a zero; only journalctl -o short-precise has a fraction.
  const journald = m[6] !== undefined || m[2].charCodeAt(0) === C_0;
  if (journald && !t) return undefined;
  const envelope: Envelope = { format: journald ? 'journald' : 'syslog' };
  const time = partsToUtc(year ?? new Date().getUTCFullYear(), MONTHS[m[1]], Number(m[2]), Number(m[3]), Number(m[4]), Number(m[5]), m[6], undefined, 'UTC');
  if (time) envelope.time = time;
  return { text: t ? (t[3] ?? '') : m[8], envelope: tagged(envelope, m[7], t) };
}

// RFC 5424 with its PRI and version: "<PRI>1 TIMESTAMP HOST APP PROCID MSGID SD MSG", and RFC 3164 with a PRI.
const RFC5424 = /^<\d{1,3}>1 (\S+) (\S+) (\S+) (\S+) (\S+) (-|(?:\[(?:[^\]"\\]|\\.|"(?:[^"\\]|\\.)*")*\])+)(?: (.*))?$/s;
const PRI = /^<\d{1,3}>/;

function priEnvelope(s: string, year: number | undefined): Found | undefined {
  const m = RFC5424.exec(s);
  if (m) {
    const envelope: Envelope = { format: 'syslog' };
    const time = m[1] === '-' ? undefined : isoToUtc(m[1]);
    if (time) envelope.time = time;
    if (m[2] !== '-') envelope.host = m[2];
    if (m[3] !== '-') envelope.program = m[3];
    if (/^\d+$/.test(m[4])) envelope.pid = Number(m[4]);
    let text = m[7] ?? '';
    if (text.charCodeAt(0) === 0xfeff) text = text.slice(1); // the BOM RFC 5424 puts before a UTF-8 MSG
    return { text, envelope };
  }
  const pri = PRI.exec(s);
  if (pri) {
    const rest = s.slice(pri[0].length);
    if (isUpper(rest.charCodeAt(0))) return bsdEnvelope(rest, year);
    if (isDigit(rest.charCodeAt(0))) return isoEnvelope(rest);
  }
  return undefined;
}

function jsonEnvelope(s: string): Found | undefined {
  if (s.indexOf('"log"') < 0 && s.indexOf('"MESSAGE"') < 0) return undefined;
  let o: unknown;
  try {
    o = JSON.parse(s);
  } catch {
    return undefined;
  }
  if (o === null || typeof o !== 'object' || Array.isArray(o)) return undefined;
  const r = o as Record<string, unknown>;
  // Docker json-file: {"log":"<line>\n","stream":"stderr","time":"2022-02-04T09:37:50.159123456Z"}
  if (typeof r.log === 'string' && (r.stream !== undefined || r.time !== undefined)) {
    const envelope: Envelope = { format: 'docker-json' };
    if (typeof r.time === 'string') {
      const time = isoToUtc(r.time);
      if (time) envelope.time = time;
    }
    if (r.stream === 'stdout' || r.stream === 'stderr') envelope.stream = r.stream;
    let text = r.log;
    // A full line keeps its newline; Docker splits lines over 16 KiB into pieces without one.
    if (text.endsWith('\n')) text = text.slice(0, text.endsWith('\r\n') ? -2 : -1);
    else envelope.partial = true;
    return { text, envelope };
  }
  // journalctl -o json
  if ('MESSAGE' in r && ('__REALTIME_TIMESTAMP' in r || '__CURSOR' in r || '_SYSTEMD_UNIT' in r || 'SYSLOG_IDENTIFIER' in r)) {
    const envelope: Envelope = { format: 'journald' };
    const us = r.__REALTIME_TIMESTAMP;
    const time = typeof us === 'string' && /^\d{1,17}$/.test(us) ? isoOrUndefined(Math.floor(Number(us) / 1000)) : undefined;
    if (time) envelope.time = time;
    const unit = typeof r._SYSTEMD_UNIT === 'string' ? r._SYSTEMD_UNIT.replace(/\.service$/, '') : undefined;
    const program = typeof r.SYSLOG_IDENTIFIER === 'string' && r.SYSLOG_IDENTIFIER !== '' ? r.SYSLOG_IDENTIFIER : unit;
    if (program) envelope.program = program;
    const pid = typeof r._PID === 'string' ? r._PID : typeof r.SYSLOG_PID === 'string' ? r.SYSLOG_PID : undefined;
    if (pid !== undefined && /^\d+$/.test(pid)) envelope.pid = Number(pid);
    if (typeof r._HOSTNAME === 'string') envelope.host = r._HOSTNAME;
    const msg = r.MESSAGE;
    // journald exports a MESSAGE that is not valid UTF-8 (or holds control characters) as an array of bytes.
    const text =
      typeof msg === 'string' ? msg : Array.isArray(msg) && msg.every((b) => Number.isInteger(b) && b >= 0 && b < 256) ? new TextDecoder().decode(Uint8Array.from(msg as number[])) : '';
    return { text, envelope };
  }
  return undefined;
}

/** The body of a Python bytes literal (repr) → text: \\ \' \" \n \r \t \xNN, bytes decoded as UTF-8. */
function pyBytesLiteral(body: string, quote: string): string {
  if (body.indexOf('\\') < 0) return body;
  const bytes: number[] = [];
  for (let i = 0; i < body.length; i++) {
    const c = body.charCodeAt(i);
    if (c !== 92 /* \ */ || i + 1 === body.length) {
      bytes.push(c & 0xff);
      continue;
    }
    const n = body[++i];
    if (n === 'n') bytes.push(10);
    else if (n === 'r') bytes.push(13);
    else if (n === 't') bytes.push(9);
    else if (n === 'x' && /^[0-9a-fA-F]{2}$/.test(body.slice(i + 1, i + 3))) {
      bytes.push(parseInt(body.slice(i + 1, i + 3), 16));
      i += 2;
    } else if (n === '\\' || n === "'" || n === '"' || n === quote) bytes.push(n.charCodeAt(0));
    else bytes.push(92, n.charCodeAt(0) & 0xff);
  }
  return new TextDecoder().decode(Uint8Array.from(bytes));
}

// Doubled timestamps: the wrapper's own time before the application's line.
//  Apache mod_wsgi: "[Fri Feb 04 09:37:50.159123 2022] [wsgi:error] [pid 1234:tid 5678] [remote 10.0.0.1:0] <line>"
//  (Apache 2.4 with older mod_wsgi: "[:error]"; Apache 2.2: "[error] [client 10.0.0.1] ").
const APACHE = new RegExp(
  `^\\[${DOW} ${MON} [ \\d]\\d \\d{2}:\\d{2}:\\d{2}(?:\\.\\d{1,6})? \\d{4}\\] \\[(wsgi:\\w+|:\\w+|error)\\] (?:\\[pid \\d+(?::tid \\d+)?\\] )?(?:\\[(?:remote|client) [^\\]]*\\] )?`,
);
//  uwsgi log-date: "Fri Feb  4 09:37:50 2022 - <line>"; devstack outfilter.py: "2022-02-04 09:37:50.160 | <line>".
const UWSGI = new RegExp(`^${DOW} ${MON} [ \\d]\\d \\d{2}:\\d{2}:\\d{2} \\d{4} - (?=\\d{4}-\\d{2}-\\d{2}[ T]\\d)`);
const PIPE = /^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(?:[.,]\d{1,9})? \| /;

function stripDoubledTimestamp(s: string): string {
  const c = s.charCodeAt(0);
  if (c === C_LBRACKET) {
    const m = APACHE.exec(s);
    if (!m) return s;
    const rest = s.slice(m[0].length);
    // mod_wsgi's own messages ("mod_wsgi (pid=1234): Exception occurred processing WSGI script …") start an event;
    // Apache 2.2's "[error]" is every module's: only an oslo line inside it is taken out.
    if (rest.startsWith('mod_wsgi (')) return s;
    if (m[1] === 'error' && !isDigit(rest.charCodeAt(0))) return s;
    return rest;
  }
  if (isDigit(c)) {
    const m = PIPE.exec(s);
    return m ? s.slice(m[0].length) : s;
  }
  if (isUpper(c)) {
    const m = UWSGI.exec(s);
    return m ? s.slice(m[0].length) : s;
  }
  return s;
}

// ---------------------------------------------------------------------------------------------------------------
// Tool prefixes: what a tool put before each line of a log it read — never a log format, never a reason to merge.
//  kubectl logs --prefix:   "[pod/nova-api-7d9f8-x2x/nova-api] <line>"
//  a source file name:      "nova-api.log.1.2017-05-16_13:53:08 <line>" (Loghub), "/var/log/nova/nova-api.log:<line>"
//                           and "…log:123:<line>" / "…log-123-<line>" (grep -H, -n, context lines)
//  a line number:           "123:<line>" (grep -n), "   123\t<line>" (cat -n)
// A file name or line number is taken off only when a timestamp follows it (else it stays in the message); the
// file name becomes the envelope's program, so a file that interleaves several sources folds each on its own.

const KUBECTL_PREFIX = /^\[pod\/([^\s/\]]{1,253})\/([^\s/\]]{1,253})\] /;
/** How far into a line a file name or line number prefix is looked for. */
const PREFIX_MAX = 512;

function toolPrefix(s: string): Found | undefined {
  const c = s.charCodeAt(0);
  if (c === C_LBRACKET) {
    const m = KUBECTL_PREFIX.exec(s);
    return m ? { text: s.slice(m[0].length), envelope: { format: 'prefix', program: m[2] } } : undefined;
  }
  const limit = Math.min(s.length, PREFIX_MAX);
  if (c === C_SPACE || c === C_TAB) {
    // cat -n: a right-aligned line number and a tab
    let i = 0;
    while (i < limit && s.charCodeAt(i) === C_SPACE) i++;
    let j = i;
    while (j < limit && isDigit(s.charCodeAt(j))) j++;
    if (j === i || s.charCodeAt(j) !== C_TAB) return undefined;
    const text = s.slice(j + 1);
    return startsTimestamped(text) ? { text, envelope: { format: 'prefix' } } : undefined;
  }
  // The first token: a split after it (blank) or inside it (":" or "-" before a digit, as grep writes them).
  const head = s.slice(0, limit);
  const log = head.indexOf('.log');
  const slash = head.indexOf('/');
  for (let k = 1; k < limit; k++) {
    const ch = s.charCodeAt(k);
    const blank = ch === C_SPACE || ch === C_TAB;
    if (blank || ((ch === C_COLON || ch === C_DASH) && isDigit(s.charCodeAt(k + 1)))) {
      // Only a token that can be a file name (".log", "/") or a line number (digits so far) is worth a look.
      const named = (log >= 0 && log < k) || (slash >= 0 && slash < k);
      const found = named || allDigits(s, k) ? prefixAt(s, k) : undefined;
      if (found || blank) return found;
    }
  }
  return undefined;
}

function allDigits(s: string, end: number): boolean {
  for (let i = 0; i < end; i++) if (!isDigit(s.charCodeAt(i))) return s.charCodeAt(i) === C_COLON && i === end - 1 && i > 0;
  return true;
}

/** s[0, k) as a file name or line number prefix, with the line after the separator at k. */
function prefixAt(s: string, k: number): Found | undefined {
  let token = s.slice(0, k);
  if (token.endsWith(':')) token = token.slice(0, -1);
  // "path:123" / "path-123" (grep -n with -H): the line number goes with the path
  let n = token.length;
  while (n > 0 && isDigit(token.charCodeAt(n - 1))) n--;
  if (n > 1 && n < token.length && (token.charCodeAt(n - 1) === C_COLON || token.charCodeAt(n - 1) === C_DASH)) token = token.slice(0, n - 1);
  const number = n === 0;
  if (!number && token.indexOf('.log') < 0 && token.indexOf('/') < 0) return undefined;
  const text = s.slice(k + 1);
  if (!startsTimestamped(text)) return undefined;
  const envelope: Envelope = { format: 'prefix' };
  if (!number) envelope.program = serviceFromFileName(token);
  return { text, envelope };
}

/** What may follow a tool's prefix: a timestamped line, or a Docker json-file line. */
function startsTimestamped(s: string): boolean {
  return hasLeadingTimestamp(s) || (s.charCodeAt(0) === C_LBRACE && s.indexOf('"log"') > 0);
}

/** The container a Kubernetes node's log file belongs to, which names the service (the file itself is "0.log"):
 * /var/log/pods/<namespace>_<pod>_<uid>/<container>/<n>.log, /var/log/containers/<pod>_<namespace>_<container>-<id>.log. */
const POD_LOG = /\/var\/log\/pods\/[^/]+\/([^/]+)\/\d+\.log(?:\.|$)/;
const CONTAINER_LOG = /\/var\/log\/containers\/[^/_]+_[^/_]+_([^/]+)-[0-9a-f]{64}\.log$/;

/** The service a log file is named after: nova-compute.log.1.gz → nova-compute; nova-api.log.1.2017-05-16_13:53:08
 * → nova-api; /var/log/nova/nova-api.log → nova-api; a Kubernetes container log → the container. */
export function serviceFromFileName(path: string): string {
  if (path.includes('/var/log/')) {
    const k8s = POD_LOG.exec(path) ?? CONTAINER_LOG.exec(path);
    if (k8s) return k8s[1];
  }
  const name = path.slice(path.lastIndexOf('/') + 1);
  const logAt = name.indexOf('.log');
  if (logAt > 0) return name.slice(0, logAt);
  const dot = name.indexOf('.');
  return dot > 0 ? name.slice(0, dot) : name;
}

// ---------------------------------------------------------------------------------------------------------------
// Continuation evidence

/** Python's exception line at the end of a traceback: "ValueError: x", "oslo_messaging.exceptions.MessagingTimeout: …",
 * "KeyboardInterrupt". */
const EXCEPTION_LINE = /^[A-Za-z_][\w.]{0,255}(?::|$)/;

/** Positive evidence that a line with no timestamp of its own continues the event before it, in a stream whose
 * events are single lines as far as it has shown (no oslo.log header, no timestamp): an indented line (traceback
 * frames, Java's "at …", wrapped output), a traceback's header and chaining lines, Java's "Caused by:", and the
 * exception line that ends a traceback (`afterFrame`: the event holds a traceback and its last line is indented).
 * Without such evidence the line is an event of its own. */
export function continuesEvent(text: string, afterFrame: boolean): boolean {
  const c = text.charCodeAt(0);
  if (c === C_SPACE || c === C_TAB) return true;
  if (c === 84 /* T */) return text.startsWith('Traceback (most recent call last)') || text.startsWith('The above exception was the direct cause');
  if (c === 68 /* D */ && text.startsWith('During handling of the above exception')) return true;
  if (c === 67 /* C */ && text.startsWith('Caused by: ')) return true;
  return afterFrame && EXCEPTION_LINE.test(text);
}

/** Whether a line begins with a timestamp of a known shape (valid or not): an oslo.log header, RabbitMQ, MariaDB,
 * syslog, ISO 8601, … — the lines that start events in a timestamped stream. */
export function hasLeadingTimestamp(text: string): boolean {
  return osloTimestamp(text) || otherKind(text) === 'start';
}

// ---------------------------------------------------------------------------------------------------------------
// lineKind

/** Whether an (unwrapped) line starts a new event or continues the previous one (multi-line folding):
 *  - oslo.log line with a full header AND a `[...]` context block  → 'start'
 *  - oslo.log exception-prefix line (same header — date time pid LEVEL logger — but no `[` context block, or
 *    only the exception prefix's "[instance: …]"), and old releases' "… TRACE …" lines → 'continuation'
 *  - "Traceback (most recent call last):", lines starting with whitespace, "  File \"…\", line N", an exception
 *    line, XML/JSON dump lines and any line with no recognisable timestamp at its start → 'continuation'
 *  - a RabbitMQ server log line, a MariaDB/Galera server log line, or any line starting with a recognisable
 *    timestamp (ISO 8601, "YYYY-MM-DD hh:mm:ss", syslog "Mmm dd hh:mm:ss", …) → 'start' */
export function lineKind(text: string, osloFile = false): LineKind {
  if (osloTimestamp(text)) {
    const kind = osloKind(text);
    return kind === 'oslo' || (kind === 'other' && !osloFile) ? 'start' : 'continuation';
  }
  return osloFile ? 'continuation' : otherKind(text);
}

/** Where an oslo.log event's message starts, past its header and context block ("… [req-… - - - - -] "), or 0 when
 * the text does not start like one. What comes before it holds no secret: the masking's pre-scan skips it. */
export function osloMessageStart(text: string): number {
  if (!osloTimestamp(text)) return 0;
  const open = text.indexOf(' [', 24);
  if (open < 0 || open > 300) return 0;
  const close = text.indexOf('] ', open);
  if (close < 0 || close - open > 400) return 0;
  const nl = text.indexOf('\n');
  return nl >= 0 && nl < close ? 0 : close + 2;
}

/** Whether the line is an oslo.log event's first line (full header and a `[…]` context block). Once a file has
 * shown one, only such lines start events in it: `lineKind(text, true)` — so a timestamped line inside a message
 * (a failed command's stderr, say) stays with the event that logged it. */
export function isOsloStart(text: string): boolean {
  return osloTimestamp(text) && osloKind(text) === 'oslo';
}

/** After an oslo-style "YYYY-MM-DD hh:mm:ss.mmm ": [pid] LEVEL logger, then "[" (a context block) or not. */
function osloKind(s: string): 'oslo' | 'other' | 'continuation' {
  let i = 24;
  if (isDigit(s.charCodeAt(i))) {
    do i++;
    while (isDigit(s.charCodeAt(i)));
    if (s.charCodeAt(i) !== C_SPACE) return 'other';
    i++;
  } // devstack's format has no pid: "2022-02-04 09:37:50.159 ERROR nova.compute.manager [None req-…] …"
  let j = i;
  while (isUpper(s.charCodeAt(j))) j++;
  if (j - i < 4 || j - i > 8 || s.charCodeAt(j) !== C_SPACE) return 'other'; // a timestamped line, not oslo's
  const loggerEnd = s.indexOf(' ', j + 1);
  if (loggerEnd < 0) return j + 1 < s.length ? 'continuation' : 'other'; // "… TRACE oslo.messaging._drivers.impl_rabbit"
  if (loggerEnd === j + 1) return 'other';
  if (s.charCodeAt(loggerEnd + 1) !== C_LBRACKET) return 'continuation';
  // logging_exception_prefix ends with "%(instance)s": "… ERROR nova.compute.manager [instance: <uuid>] Traceback …"
  return s.startsWith('[instance: ', loggerEnd + 1) ? 'continuation' : 'oslo';
}

const LEADING_DIGIT_TS = /^(?:\d{4}-\d{2}-\d{2}(?:T| {1,2})\d{1,2}:\d{2}:\d{2}|\d{4}\/\d{2}\/\d{2}[ T]\d{2}:\d{2}:\d{2}|\d{6} {1,2}\d{1,2}:\d{2}:\d{2})/;
const LEADING_UPPER_TS = new RegExp(`^(?:${MON} [ \\d]\\d \\d{2}:\\d{2}:\\d{2}|${DOW} ${MON} [ \\d]\\d \\d{2}:\\d{2}:\\d{2} \\d{4}|[IWEF]\\d{4} \\d{2}:\\d{2}:\\d{2}\\.\\d{6} )`);
const LEADING_BRACKET_TS = new RegExp(`^\\[(?:${DOW} ${MON} [ \\d]\\d \\d{2}:\\d{2}:\\d{2}|\\d{4}-\\d{2}-\\d{2}[T ]\\d{2}:\\d{2}:\\d{2})`);
const ERLANG_REPORT = /^=[A-Z]+ REPORT==== /;
const SYSLOG_PRI = /^<\d{1,3}>(?:1 \d{4}-|[A-Z][a-z]{2} [ \d]\d )/;

function otherKind(s: string): LineKind {
  if (s.length === 0) return 'continuation';
  const c = s.charCodeAt(0);
  if (c === C_SPACE || c === C_TAB) return 'continuation';
  let start = false;
  if (isDigit(c)) start = LEADING_DIGIT_TS.test(s);
  else if (isUpper(c)) start = LEADING_UPPER_TS.test(s);
  else if (c === C_LBRACKET) start = LEADING_BRACKET_TS.test(s);
  else if (c === C_EQUALS) start = ERLANG_REPORT.test(s);
  else if (c === C_LT) start = SYSLOG_PRI.test(s); // otherwise XML ("<domain type='kvm'>")
  return start ? 'start' : 'continuation';
}

// ---------------------------------------------------------------------------------------------------------------
// parseOtherHeader

const LEVELS: Record<string, string> = {
  TRACE: 'DEBUG',
  DEBUG: 'DEBUG',
  DBG: 'DEBUG',
  INFO: 'INFO',
  INF: 'INFO',
  NOTE: 'INFO',
  INFORMATION: 'INFO',
  NOTICE: 'NOTICE',
  NTC: 'NOTICE',
  SYSTEM: 'NOTICE',
  WARNING: 'WARNING',
  WARN: 'WARNING',
  WRN: 'WARNING',
  ERROR: 'ERROR',
  ERR: 'ERROR',
  CRITICAL: 'CRITICAL',
  CRIT: 'CRITICAL',
  CRT: 'CRITICAL',
  FATAL: 'CRITICAL',
  ALERT: 'CRITICAL',
  ALR: 'CRITICAL',
  EMERGENCY: 'CRITICAL',
  EMERG: 'CRITICAL',
  EMG: 'CRITICAL',
};
const level = (word: string): string | undefined => LEVELS[word.toUpperCase()];

// RabbitMQ 3.7-3.8 (lager): "2022-02-04 09:37:50.123 [info] <0.123.0> msg"; 3.9+: "…50.123456+00:00 [info] <0.123.0> msg".
const RABBIT = /^(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:?\d{2})? \[([a-zA-Z]{3,9})\] (?:(<\d+\.\d+\.\d+>|emulator)(?:@\S+)? )?(.*)$/s;
// RabbitMQ ≤ 3.6: "=INFO REPORT==== 4-Feb-2022::09:37:50 ===" (the message follows on the next lines).
const RABBIT_OLD = new RegExp(`^=([A-Z]+) REPORT==== (\\d{1,2})-${MON}-(\\d{4})::(\\d{1,2}):(\\d{2}):(\\d{2})(?:\\.(\\d{1,6}))? ===(?:\\s(.*))?$`, 's');
const REPORT_LEVELS: Record<string, string> = { INFO: 'INFO', PROGRESS: 'INFO', WARNING: 'WARNING', ERROR: 'ERROR', CRASH: 'ERROR', SUPERVISOR: 'ERROR' };
// MariaDB 10.x: "2022-02-04  9:37:50 0 [Note] WSREP: …" (unpadded hour, so two spaces before a one-digit hour).
const MARIADB = /^(\d{4})-(\d{2})-(\d{2}) {1,2}(\d{1,2}):(\d{2}):(\d{2}) (\d+) \[([A-Za-z]+)\] ?(.*)$/s;
// MariaDB 5.5-10.0 / MySQL 5.5: "220204  9:37:50 [Note] WSREP: …" (with a thread id on some versions).
const MARIADB_OLD = /^(\d{2})(\d{2})(\d{2}) {1,2}(\d{1,2}):(\d{2}):(\d{2}) (?:(\d+) )?\[([A-Za-z]+)\] ?(.*)$/s;
// MySQL 5.7 / 8: "2022-02-04T09:37:50.123456Z 0 [Note] …", "… 0 [System] [MY-010116] [Server] …".
const MYSQL = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2}) (\d+) \[([A-Za-z]+)\] (?:(\[MY-\d+\]) \[([A-Za-z]+)\] ?)?(.*)$/s;
// mysqld_safe: "220204 09:37:50 mysqld_safe Starting mysqld daemon …", "2022-02-04 09:37:50 mysqld_safe …".
const MYSQLD_SAFE = /^(?:(\d{4})-|(\d{2}))(\d{2})-?(\d{2}) {1,2}(\d{1,2}):(\d{2}):(\d{2}) (mysqld_safe) (.*)$/s;
const SUBSYSTEM = /^([A-Za-z][A-Za-z0-9_]*): (.*)$/s;
const MYSQL_LEVELS: Record<string, string> = { NOTE: 'INFO', INFO: 'INFO', SYSTEM: 'NOTICE', WARNING: 'WARNING', WARN: 'WARNING', ERROR: 'ERROR' };

/** Parses the header of non-oslo lines (RabbitMQ 3.7-3.8, 3.9+ and ≤ 3.6 reports, MariaDB 10.x and 5.5, MySQL
 * 5.7/8, mysqld_safe), and finally any line that just starts with a timestamp (ISO 8601, "YYYY/MM/DD", syslog,
 * Apache, ctime, klog). Zone-less timestamps are in `timezone` (IANA name, converted correctly across DST);
 * timestamps with a zone keep theirs. undefined when nothing is recognised.
 *
 * Levels are normalised: MySQL/MariaDB "[Note]" is INFO (MariaDB's own syslog mapping), "[System]" NOTICE; lager
 * and RabbitMQ 3.9+ three-letter levels ("inf", "wrn") map to their words; alert/emergency/fatal to CRITICAL. A
 * MariaDB subsystem prefix ("WSREP: ", "InnoDB: ") or MySQL 8 "[Server]" goes to `subsystem`, out of `message`.
 * Syslog and klog timestamps carry no year: this year is assumed, or last year if that would put the line more than
 * a day in the future. */
export function parseOtherHeader(text: string, timezone: string): OtherHeader | undefined {
  const c = text.charCodeAt(0);
  if (c === C_EQUALS) return rabbitOld(text, timezone) ?? timestampOnly(text, timezone);
  if (isDigit(c)) return rabbit(text, timezone) ?? mariadb(text, timezone) ?? timestampOnly(text, timezone) ?? access(text);
  if (c === C_DASH || c === C_COLON) return access(text) ?? timestampOnly(text, timezone);
  return timestampOnly(text, timezone);
}

// A web server's access line (Apache common / combined, and the variants Kolla and openstack-helm configure that log
// X-Forwarded-For where the peer would be, "-" when none was sent) carries its own time in brackets after the
// client and the two identities. Without it every request of a replay would get the time it was read, and windows
// of requests (client-ip-masked) would never close:
//   203.0.113.7 - - [14/Mar/2024:09:00:00 +0000] "POST /v3/auth/tokens HTTP/1.1" 201 6911 "-" "python-openstackclient"
//   - - - [20/Feb/2024:10:00:00 +0000] "GET /dashboard/ HTTP/1.1" 200 9121 180000 "-" "Mozilla/5.0 …"
// The message is the whole line: the client is what detectors read in it.
const ACCESS_TIME = new RegExp(`^(?:-|[0-9A-Fa-f:.]+(?:, ?[0-9A-Fa-f:.]+)*) \\S+ \\S+ \\[(\\d{2})/${MON}/(\\d{4}):(\\d{2}):(\\d{2}):(\\d{2}) ([+-]\\d{4})\\] "`);

function access(s: string): OtherHeader | undefined {
  const m = ACCESS_TIME.exec(s);
  if (!m) return undefined;
  const timestamp = partsToUtc(+m[3], MONTHS[m[2]], +m[1], +m[4], +m[5], +m[6], undefined, m[7], 'UTC');
  return timestamp ? { format: 'access', timestamp, message: s } : undefined;
}

// ---------------------------------------------------------------------------------------------------------------
// parseLevelFirstHeader

export interface LevelFirstHeader {
  format: 'oslo-untimed' | 'python';
  level: string;
  logger: string;
  /** oslo-untimed: the context block's inside ("-", "None req-… admin admin"), for the request and user ids. */
  context?: string;
  message: string;
}

// oslo.log without its date and pid, as devstack configures it for journald (the journal has the time), and any
// deployment that does the same: the level, the logger, the context block, the message.
//   ERROR oslo.messaging._drivers.impl_rabbit [-] [49f9c7d8-…] AMQP server on 10.0.3.15:5672 is unreachable: …
//   INFO nova.api.openstack.requestlog [None req-7e465212-… admin admin] 85.10.193.66 "GET /compute/v2.1/" status: 200 …
// The context block is required: "ERROR oslo_messaging.rpc.server   File …" is a traceback line of the event before.
const OSLO_UNTIMED = /^(TRACE|DEBUG|INFO|AUDIT|WARNING|WARN|ERROR|CRITICAL|FATAL) ([A-Za-z_][\w.-]*) \[([^\]\n]*)\] ?(.*)$/s;
// Python logging's default format (logging.basicConfig), which tools and test harnesses built on oslo libraries use:
//   ERROR:oslo.messaging._drivers.impl_rabbit:Connection failed: failed to resolve broker hostname (retrying in 2.0 seconds)
const PYTHON_DEFAULT = /^(DEBUG|INFO|WARNING|ERROR|CRITICAL):([A-Za-z_][\w.-]*):(.*)$/s;

/** The level and logger of a line that has no time of its own (the envelope's time, or the time it was read, stands
 * for it): oslo.log's header without the date and pid, or Python logging's default "LEVEL:logger:message".
 * undefined for anything else. A cheap first-character test keeps other lines off the regular expressions. */
export function parseLevelFirstHeader(text: string): LevelFirstHeader | undefined {
  if (!isUpper(text.charCodeAt(0))) return undefined;
  const colon = text.indexOf(':');
  const space = text.indexOf(' ');
  if (colon > 0 && (space < 0 || colon < space)) {
    const m = PYTHON_DEFAULT.exec(text);
    return m ? { format: 'python', level: m[1], logger: m[2], message: m[3] } : undefined;
  }
  const m = OSLO_UNTIMED.exec(text);
  return m ? { format: 'oslo-untimed', level: m[1], logger: m[2], context: m[3], message: m[4] } : undefined;
}

function rabbit(s: string, tz: string): OtherHeader | undefined {
  const m = RABBIT.exec(s);
  if (!m) return undefined;
  const lvl = level(m[9]);
  if (!lvl || m[9] === 'Note' || m[9] === 'NOTE') return undefined;
  const timestamp = partsToUtc(+m[1], +m[2], +m[3], +m[4], +m[5], +m[6], m[7], m[8], tz);
  if (!timestamp) return undefined;
  const h: OtherHeader = { format: 'rabbitmq', timestamp, level: lvl, message: m[11] };
  if (m[10]) h.process_name = m[10];
  return h;
}

function rabbitOld(s: string, tz: string): OtherHeader | undefined {
  const m = RABBIT_OLD.exec(s);
  if (!m) return undefined;
  const timestamp = partsToUtc(+m[4], MONTHS[m[3]], +m[2], +m[5], +m[6], +m[7], m[8], undefined, tz);
  if (!timestamp) return undefined;
  const h: OtherHeader = { format: 'rabbitmq', timestamp, message: (m[9] ?? '').trim() };
  const lvl = REPORT_LEVELS[m[1]];
  if (lvl) h.level = lvl;
  return h;
}

function mariadb(s: string, tz: string): OtherHeader | undefined {
  let m = MARIADB.exec(s);
  if (m) {
    const lvl = MYSQL_LEVELS[m[8].toUpperCase()];
    if (!lvl) return undefined;
    const timestamp = partsToUtc(+m[1], +m[2], +m[3], +m[4], +m[5], +m[6], undefined, undefined, tz);
    return timestamp ? withSubsystem({ format: 'mariadb', timestamp, level: lvl, thread_id: Number(m[7]), message: m[9] }) : undefined;
  }
  m = MYSQL.exec(s);
  if (m) {
    const lvl = MYSQL_LEVELS[m[10].toUpperCase()];
    if (!lvl) return undefined;
    const timestamp = partsToUtc(+m[1], +m[2], +m[3], +m[4], +m[5], +m[6], m[7], m[8], tz);
    if (!timestamp) return undefined;
    const h: OtherHeader = { format: 'mariadb', timestamp, level: lvl, thread_id: Number(m[9]), message: m[13] };
    if (m[12]) {
      h.subsystem = m[12];
      h.message = `${m[11]} ${m[13]}`; // the error code stays with the message
      return h;
    }
    return withSubsystem(h);
  }
  m = MARIADB_OLD.exec(s);
  if (m) {
    const lvl = MYSQL_LEVELS[m[8].toUpperCase()];
    if (!lvl) return undefined;
    const timestamp = partsToUtc(2000 + +m[1], +m[2], +m[3], +m[4], +m[5], +m[6], undefined, undefined, tz);
    if (!timestamp) return undefined;
    const h: OtherHeader = { format: 'mariadb', timestamp, level: lvl, message: m[9] };
    if (m[7] !== undefined) h.thread_id = Number(m[7]);
    return withSubsystem(h);
  }
  m = MYSQLD_SAFE.exec(s);
  if (m) {
    const y = m[1] !== undefined ? +m[1] : 2000 + +m[2];
    const timestamp = partsToUtc(y, +m[3], +m[4], +m[5], +m[6], +m[7], undefined, undefined, tz);
    return timestamp ? withSubsystem({ format: 'mariadb', timestamp, process_name: m[8], message: m[9] }) : undefined;
  }
  return undefined;
}

function withSubsystem(h: OtherHeader): OtherHeader {
  const m = SUBSYSTEM.exec(h.message);
  if (m) {
    h.subsystem = m[1];
    h.message = m[2];
  }
  return h;
}

// Any leading timestamp. Groups: y mo d h mi s frac zone, in a different order per form (see timestampOnly).
const TS_ISO = /^\[?(\d{4})[-/](\d{2})[-/](\d{2})(?:T| {1,2})(\d{1,2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?(Z|[+-]\d{2}(?::?\d{2})?)?\]?/;
const TS_YYMMDD = /^(\d{2})(\d{2})(\d{2}) {1,2}(\d{1,2}):(\d{2}):(\d{2})/;
const TS_BSD = new RegExp(`^${MON} ([ \\d]\\d) (\\d{2}):(\\d{2}):(\\d{2})(?:\\.(\\d{1,9}))?`);
const TS_APACHE = new RegExp(`^\\[${DOW} ${MON} ([ \\d]\\d) (\\d{2}):(\\d{2}):(\\d{2})(?:\\.(\\d{1,6}))? (\\d{4})\\]`);
const TS_CTIME = new RegExp(`^${DOW} ${MON} ([ \\d]\\d) (\\d{2}):(\\d{2}):(\\d{2}) (\\d{4})`);
const TS_KLOG = /^([IWEF])(\d{2})(\d{2}) (\d{2}):(\d{2}):(\d{2})\.(\d{6}) +(\d+) /;
const KLOG_LEVELS: Record<string, string> = { I: 'INFO', W: 'WARNING', E: 'ERROR', F: 'CRITICAL' };
// A level right after the timestamp: "[info]", "<ERROR>", "ERROR", "WARNING:", or Python's " - name - INFO - ".
const NEXT_LEVEL = /^(?:\[([A-Za-z]{3,11})\]|<([A-Za-z]{3,11})>|([A-Z]{3,11}):?|- .+? - ([A-Z]{4,8}) -)(?= |$)/;

function timestampOnly(s: string, tz: string): OtherHeader | undefined {
  let m: RegExpExecArray | null;
  let timestamp: string | undefined;
  let h: OtherHeader | undefined;
  if ((m = TS_ISO.exec(s))) timestamp = partsToUtc(+m[1], +m[2], +m[3], +m[4], +m[5], +m[6], m[7], m[8], tz);
  else if ((m = TS_BSD.exec(s))) timestamp = yearless(MONTHS[m[1]], +m[2], +m[3], +m[4], +m[5], m[6], tz);
  else if ((m = TS_APACHE.exec(s))) timestamp = partsToUtc(+m[7], MONTHS[m[1]], +m[2], +m[3], +m[4], +m[5], m[6], undefined, tz);
  else if ((m = TS_CTIME.exec(s))) timestamp = partsToUtc(+m[6], MONTHS[m[1]], +m[2], +m[3], +m[4], +m[5], undefined, undefined, tz);
  else if ((m = TS_YYMMDD.exec(s))) timestamp = partsToUtc(2000 + +m[1], +m[2], +m[3], +m[4], +m[5], +m[6], undefined, undefined, tz);
  else if ((m = TS_KLOG.exec(s))) {
    timestamp = yearless(+m[2], +m[3], +m[4], +m[5], +m[6], m[7], tz);
    if (timestamp) h = { format: 'timestamp-only', timestamp, level: KLOG_LEVELS[m[1]], pid: Number(m[8]), message: s.slice(m[0].length) };
    return h;
  }
  if (!m || !timestamp) return undefined;
  let rest = s.slice(m[0].length);
  if (rest.charCodeAt(0) === C_SPACE) rest = rest.slice(1);
  h = { format: 'timestamp-only', timestamp, message: rest };
  const l = NEXT_LEVEL.exec(rest);
  const word = l && (l[1] ?? l[2] ?? l[3] ?? l[4]);
  const lvl = word ? level(word) : undefined;
  if (l && lvl) {
    h.level = lvl;
    h.message = rest.slice(l[0].length).replace(/^ /, '');
  }
  return h;
}

// ---------------------------------------------------------------------------------------------------------------
// Time

/** A timestamp without a year (syslog, klog): this year, or last year when that would be more than a day ahead
 * (a December line read in January). */
function yearless(mo: number, d: number, h: number, mi: number, s: number, frac: string | undefined, tz: string): string | undefined {
  const now = Date.now();
  const year = new Date(now).getUTCFullYear();
  const t = partsToUtc(year, mo, d, h, mi, s, frac, undefined, tz);
  if (t !== undefined && Date.parse(t) <= now + 86_400_000) return t;
  return partsToUtc(year - 1, mo, d, h, mi, s, frac, undefined, tz) ?? t;
}

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
const pad2 = (n: number) => (n < 10 ? '0' + n : String(n));

/** Wall-clock parts → ISO 8601 UTC with milliseconds (fraction truncated). `zone` ("Z", "+01:00", "-0500") wins
 * over `timezone` (IANA name, for zone-less times). undefined for an impossible date or time. */
export function partsToUtc(y: number, mo: number, d: number, h: number, mi: number, s: number, frac: string | undefined, zone: string | undefined, timezone: string): string | undefined {
  if (!validWallClock(y, mo, d, h, mi, s)) return undefined;
  const ms = frac ? Number((frac + '00').slice(0, 3)) : 0;
  const naive = Date.UTC(y, mo - 1, d, h, mi, s, ms);
  if (zone !== undefined) {
    let offset = 0;
    if (zone !== 'Z') {
      const sign = zone.charCodeAt(0) === C_DASH ? -1 : 1;
      const digits = zone.slice(1).replace(':', '');
      const oh = Number(digits.slice(0, 2));
      const om = Number(digits.slice(2, 4) || '0');
      if (!(oh <= 14 && om <= 59)) return undefined; // UTC offsets run from -12:00 to +14:00
      offset = sign * (oh * 60 + om) * 60_000;
    }
    return isoOrUndefined(naive - offset);
  }
  if (timezone === 'UTC' || timezone === 'Etc/UTC') return isoOrUndefined(naive);
  return isoOrUndefined(naive - zoneOffset(naive, y, mo, d, h, timezone));
}

/** Years 0001-9999 only: an offset can push a date at the edge outside, where ISO 8601 needs a sign and six digits. */
const MIN_TIME = Date.UTC(1, 0, 1);
const MAX_TIME = Date.UTC(9999, 11, 31, 23, 59, 59, 999);
function isoOrUndefined(t: number): string | undefined {
  return t >= MIN_TIME && t <= MAX_TIME ? new Date(t).toISOString() : undefined;
}

/** Whether a wall-clock date and time can exist (the calendar, 24 h, leap seconds as :60). */
export function validWallClock(y: number, mo: number, d: number, h: number, mi: number, s: number): boolean {
  if (!(y >= 1 && y <= 9999 && mo >= 1 && mo <= 12 && d >= 1 && h <= 23 && mi <= 59 && s <= 60)) return false;
  const leap = y % 4 === 0 && (y % 100 !== 0 || y % 400 === 0);
  return d <= (mo === 2 && leap ? 29 : DAYS_IN_MONTH[mo - 1]);
}

/** "2022-02-04T09:37:50.159123456Z", "…+01:00", "…+0000", "2022-02-04 09:37:50,128" (zone-less: UTC) → ISO UTC. */
const ISO = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?(Z|[+-]\d{2}:?\d{2})?$/;
function isoToUtc(s: string): string | undefined {
  const m = ISO.exec(s);
  return m ? partsToUtc(+m[1], +m[2], +m[3], +m[4], +m[5], +m[6], m[7], m[8], 'UTC') : undefined;
}

const formatters = new Map<string, Intl.DateTimeFormat>();
const offsets = new Map<string, number>();

/** The UTC offset (ms) in `timezone` at the wall time `naive` (a wall time read as if it were UTC), cached per
 * zone and wall-clock hour. Two passes settle DST edges: a time in the spring-forward gap or the repeated autumn
 * hour gets one consistent offset. */
function zoneOffset(naive: number, y: number, mo: number, d: number, h: number, timezone: string): number {
  const key = `${timezone}|${y}-${pad2(mo)}-${pad2(d)}T${pad2(h)}`;
  let offset = offsets.get(key);
  if (offset !== undefined) return offset;
  let fmt = formatters.get(timezone);
  if (!fmt) {
    fmt = new Intl.DateTimeFormat('en-US', {
      timeZone: timezone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
    formatters.set(timezone, fmt);
  }
  const f = fmt;
  const wall = (t: number) => {
    const p: Record<string, number> = {};
    for (const part of f.formatToParts(t)) if (part.type !== 'literal') p[part.type] = Number(part.value);
    return Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute, p.second);
  };
  const hourStart = naive - (naive % 3_600_000);
  const first = wall(hourStart) - hourStart;
  offset = wall(hourStart - first) - (hourStart - first);
  if (offsets.size > 10_000) offsets.clear();
  offsets.set(key, offset);
  return offset;
}

/** Every regular expression above that meets a log line, for the test that proves each runs in linear time. */
export const FORMAT_REGEXES: Readonly<Record<string, RegExp>> = Object.freeze({
  ANSI,
  CRI_TIME,
  ISO_SYSLOG,
  SUPERVISOR,
  PY_RELAY,
  TAG,
  BSD,
  RFC5424,
  PRI,
  APACHE,
  UWSGI,
  PIPE,
  KUBECTL_PREFIX,
  EXCEPTION_LINE,
  LEADING_DIGIT_TS,
  LEADING_UPPER_TS,
  LEADING_BRACKET_TS,
  ERLANG_REPORT,
  SYSLOG_PRI,
  RABBIT,
  RABBIT_OLD,
  MARIADB,
  MARIADB_OLD,
  MYSQL,
  MYSQLD_SAFE,
  SUBSYSTEM,
  TS_ISO,
  TS_YYMMDD,
  TS_BSD,
  TS_APACHE,
  TS_CTIME,
  TS_KLOG,
  NEXT_LEVEL,
  ACCESS_TIME,
  POD_LOG,
  CONTAINER_LOG,
  OSLO_UNTIMED,
  PYTHON_DEFAULT,
  ISO,
});
