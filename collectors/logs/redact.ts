// Masks secrets in log text before it leaves the host: the collector runs it on every event it sends to Kafka.
//
// secretRanges(text) finds where the secrets are; maskRanges puts MASK in their place; redact does both. The
// ranges let a caller mask the raw pieces an event was joined from (CRI/Docker partial lines) with what was found
// in the whole event, so a secret split across pieces is masked in every piece.
//
// The rules are data (RULES). A regex rule's match is exactly the secret: what stays (key, quotes, scheme, user,
// host) is matched by look-arounds, so the secret becomes MASK and the rest of the line keeps its meaning. Forms
// that need to know the command a word belongs to (mysql -pX, rabbitmqctl add_user u X) or that span lines
// (PEM private keys) are small functions instead. Every rule looks at the original text; overlapping and
// touching ranges merge into one; the masked text is read once more, so that what masking itself brings
// together is found too and a second redact() changes nothing (see secretRanges).
// Text may be JSON-escaped (Docker json-file lines, JSON-formatted loggers): the rules also read `\"` as a quote,
// `\t` as a blank and `\n` as a line break.
// Most lines carry no secret, so a scan for the words the rules need (TRIGGER_*) comes first; only the search for
// bare AWS keys, which have no word, runs on every text (as a loop that skips, not a regex).
//
// Cost stays linear on hostile lines (test/unit/redact-properties.test.ts checks every regex with recheck): a
// look-behind that ends in blanks is preceded by a test of the secret's first character (else V8 would rescan a
// long run of blanks from each of its positions), the URL rules' look-arounds are bounded, and the code rules
// never scan the same text twice (a command's words are read once, a PEM block is searched forward only).

export const MASK = '***';

/** [start, end) in UTF-16 code units, as String.prototype.slice takes them. */
export type Range = [start: number, end: number];

// Words that end the name of a key, flag or header whose value is a secret.
const SECRET_WORD = String.raw`passw(?:or)?d|passphrase|adminpass|requirepass|masterauth|pwd|bindpw|authtok|secret(?:[_-]?(?:access[_-]?)?key)?|token|api[_-]?key|credentials?`;
// password, OS_PASSWORD, admin_password, adminPass, secret, auth_token, X-Auth-Token, api_key, credential…,
// Redis' requirepass/masterauth, LDAP's bindpw and sssd's ldap_default_authtok. The word must end the key:
// `token_ttl`, `password_length`, `rbd_secret_uuid` are no secrets.
// `pass` and `pw` are a key only on their own or after `_`, `-`, `.` (db_pass, ldap.pw, openssl's pass:…):
// `bypass`, `passed`, `compass` are no keys.
const KEY_NAME = String.raw`(?:[\w.-]*?(?:${SECRET_WORD})|(?:[\w.-]*?[_.-])?(?:pass|pw))`;
// Where a word starts: not after one of `chars`, or after a JSON escape (`\n`, `\t`: in a JSON string the line
// break before a word is written `\n`, which ends in a letter).
const AFTER_JSON_ESCAPE = String.raw`(?<=\\[nrt])`;
const notAfter = (chars: string) => String.raw`(?:${AFTER_JSON_ESCAPE}|(?<![${chars}]))`;
const WORD_BOUNDARY = String.raw`(?:\b|${AFTER_JSON_ESCAPE})`;
// Quoted or not (also JSON-escaped \"…\").
const KEY = String.raw`${notAfter('\\w.-')}(?:\\?["'])?${KEY_NAME}(?:\\?["'])?`;
// A blank, also a tab as JSON writes it (`\t`).
const BL = String.raw`(?:[ \t]|\\t)`;
// `key=v`, `key = v` (oslo pads the key), `key:  v`, `"key": "v"`.
const SEP = String.raw`${BL}*[:=]${BL}*`;
// The value on the next line of the same event: YAML's `password:⏎    v` (also a block scalar `|`), and the same
// written inside a JSON string (`\n`).
const SEP_NEXT_LINE = String.raw`${BL}*[:=]${BL}*(?:[|>][+-]?${BL}*)?(?:\r?\n|\\r\\n|\\n)${BL}+`;
// Values that are no secret when they are the whole value (`end`: how a value ends in its context): already
// masked (oslo prints `****`), unset, booleans, and MySQL's "(using password: YES)".
const notSecret = (end: string) => String.raw`(?!(?:\*+|None|null|True|False|YES|NO)${end})`;
const NOT_SECRET = notSecret(String.raw`(?![^\s&,;)}'"\\])`);
// oslo.config logs an empty option as `x_token =  log_opt_values /usr/…/cfg.py:2587`: the value is missing and the
// words after the blanks are the debug suffix (function, file:line), no secret.
const NOT_DEBUG_SUFFIX = String.raw`(?![\w<>]+[ \t]+[^\s:]+\.py:\d)`;
// An unquoted value ends at a blank, `&`, `,`, `;`, `)`, `}`, a quote, a line continuation (`\` at the end of a
// line) or a JSON-escaped line break or tab (`\n`; an escaped backslash `\\` is part of the value). It never
// starts with `{`, `[` or `(`: that is a structure (`"token": {"id": …}`, whose parts the other rules see) or an
// already hashed token (`{SHA256}…`, which keystoneauth logs instead of the token on purpose, and which is left
// alone).
const VALUE_CHAR = String.raw`(?:[^\s&,;)}'"\\]|\\\\|\\(?![\s"'nrt\\]))`;
const VALUE_START = String.raw`(?![{[(])(?=${VALUE_CHAR})`;
const VALUE = `${VALUE_CHAR}+`;
// A quoted value: up to the closing quote, blanks included, or to the end of the text (an event cut short).
const QUOTED = (q: string) => String.raw`(?:[^${q}\\\n]|\\.)+(?=${q}|$)`;
// The same inside a JSON string, where the quotes are `\"`: up to the next `\"` (an escaped backslash `\\` and
// escapes such as `\n` are part of the value).
const JSON_QUOTED = String.raw`(?:[^"\\\n]|\\\\|\\[^"\\\n])+(?=\\"|$)`;
/** The value after `before` in double quotes, single quotes or JSON-escaped double quotes (`extra`: more tests
 * of its start). */
const quotedValues = (before: string, extra = ''): RegExp[] => [
  new RegExp(String.raw`(?<=${before}")${extra}${notSecret('(?:"|$)')}${QUOTED('"')}`, 'gi'),
  new RegExp(String.raw`(?<=${before}')${extra}${notSecret("(?:'|$)")}${QUOTED("'")}`, 'gi'),
  new RegExp(String.raw`(?<=${before}\\")${extra}${notSecret(String.raw`(?:\\"|$)`)}${JSON_QUOTED}`, 'gi'),
];
// Where a token of a known shape starts: not inside a longer run of base64 (nor next to `*`: what was glued to a
// masked secret must not become a secret of its own), but after a JSON escape such as `\n`.
const shapeStart = (alphabet: string) => notAfter(`*${alphabet}`);
// The schemes of hashed secrets written `{SCHEME}hash` (keystoneauth's `{SHA256}`, LDAP's `{SSHA}`, `{CRYPT}`…).
const HASH_SCHEME = String.raw`(?:S?SHA(?:1|224|256|384|512)?|S?MD5|CRYPT|BCRYPT|PBKDF2(?:-SHA(?:1|256|512))?|ARGON2(?:I|D|ID)?)`;
// A dashed UUID names a secret (virsh/ceph `--secret 514c9fca-…`) and is none.
const NOT_UUID = String.raw`(?![\da-f]{8}-[\da-f]{4}-[\da-f]{4}-[\da-f]{4}-[\da-f]{12}(?![^\s&,;)}'"\\]))`;
// A command-line flag whose value is a secret, and the blanks (or a line continuation) before its value.
const FLAG = String.raw`${notAfter('\\w-')}--(?:[\w-]*?(?:${SECRET_WORD})|(?:[\w-]*?[_-])?(?:pass|pw))(?:${BL}+|${BL}*\\\r?\n${BL}*)`;
// HTTP authentication schemes: the word stays, the credentials after it go.
const AUTH_SCHEME = '(?:Basic|Bearer|Negotiate|Token)';
// A URL's host[:port] (names, IPv4, [IPv6]); bounded, like every part of the URL rules. After it: a blank, a path,
// a quote, a bracket, a separator, a JSON escape (`\t`), the end (not `@`, `+`, `~`…: they are in passwords).
const HOST = String.raw`[\w.%:[\]-]{1,255}`;
const HOST_END = String.raw`(?=[\s,/?#'"<>(){};|\]\\]|$)`;
// The words of "password S3cr3t!" (no separator): the password family only. After `token` or `secret` the next
// word is an id or prose ("token 5f1d…", "secret store").
const PASSWORD_WORD = String.raw`${notAfter('\\w.-')}[\w.-]*?(?:passw(?:or)?d|passphrase|pwd|requirepass|masterauth)`;
// …and the word after it is a password only if it looks like one: 4 characters or more, with a digit or a symbol.
// Prose after "password" is words of letters ("password for user", "Password authentication failed", "password
// expired"); a Python name (`_validate_password`) has only letters and `_`; `attr="1"` and `key:` are the next
// key, and a path is a file. The price of the heuristic: a password of letters only, written without a separator,
// is not found.
const LOOKS_LIKE_PASSWORD = String.raw`(?![\w.-]+[:=])(?=${VALUE_CHAR}{4})(?=${VALUE_CHAR}*?[\d!#$%*+/=?@^~|<>])(?![/.]{0,2}[\w-]*/)`;

type Finder = (text: string, out: Range[]) => void;

interface Rule {
  /** A coarse test shared by many rules: the pre-scan is the union of these (flags `i` or none). */
  scan: RegExp;
  /** The rule can only find a secret in text in which this test finds something; implies `scan`. */
  when: RegExp;
  /** Global regexes whose matches are exactly the secrets, or a function for what a regex cannot say. */
  mask: readonly RegExp[] | Finder;
}

// What every SECRET_WORD, KEY_NAME, PASSWORD_WORD and header name contains, as one coarse scan (`auth` stands
// for authorization, masterauth, authtok and Redis' AUTH): V8 scans a union of a few words much faster than one
// of many.
// `auth` only where a rule needs it (Authorization, authtok, masterauth, Redis' "AUTH"): as a bare word it is in
// a line in a hundred (keystoneauth, auth_strategy, …), and each hit costs every rule's test.
// Written as a tree (shared prefixes once: `auth…`, `p…`): V8 then tries fewer words at each character (0.29 against
// 0.37 µs a line on the bench corpus).
const KEY_SCAN = /a(?:uth(?:oriz|tok|\\?")|pi.?key)|masterauth|p(?:ass|wd|w\b)|secret|token|credential|bearer/i;
// What every key of keyValue() contains.
const KEY_WORDS = /pass|pwd|pw\b|secret|token|api.?key|credential|masterauth|authtok/i;
// A separator at the end of a line, and the next line indented (SEP_NEXT_LINE, cheaply).
const SEP_AT_LINE_END = new RegExp(String.raw`[:=]${BL}*(?:[|>][+-]?${BL}*)?(?:\r?\n|\\r\\n|\\n)${BL}`);

// ---- Code rules ----------------------------------------------------------------------------------------------

/** Pushes every match of a global regex. */
function pushMatches(re: RegExp, text: string, out: Range[]): void {
  re.lastIndex = 0;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    if (m[0].length === 0) re.lastIndex++;
    else out.push([m.index, m.index + m[0].length]);
  }
}

// A command whose arguments hold a secret: its name as a word of its own (after a blank, a quote, a bracket, `,`,
// `:`, `=` (`cmd=mysql …`), a shell operator, a JSON escape (`\t`), or a `…bin/` directory: `/var/lib/mysql
// -prune` is no command).
const COMMAND = /(?:^|(?<=[\s'"([{,;:=|&`]|bin\/|\\[nrt]))(mysql[\w-]*|mariadb[\w-]*|mariabackup|sshpass|redis-cli|rabbitmqctl|ipmitool|curl)(?=[\s'",\])]|$)/g;
const MYSQL_FAMILY = /^(?:mysql|mariadb)/;
const COMMAND_WORDS = /mysql|mariadb|sshpass|redis-cli|rabbitmqctl|ipmitool|curl/;

const isBlank = (c: number) => c === 32 || c === 9;
const isQuote = (c: number) => c === 34 || c === 39;
// Where a command's arguments end: the end of its line, or a shell operator outside quotes.
const ENDS_COMMAND = new Set([10, 13, 59, 124, 38, 96]); // \n \r ; | & `

/** The words of a command line from `from` to the end of the command (blanks separate words, quotes keep
 * blanks inside one), and where the command ends. One pass over the characters. */
function commandWords(text: string, from: number): { words: Range[]; end: number } {
  const words: Range[] = [];
  let start = -1;
  let quote = 0; // the quote that is open, negative for a JSON-escaped one (`\"`)
  let i = from;
  for (; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 92 && i + 1 < text.length) {
      // Inside a JSON string: `\"` is the command's quote, `\t` a blank, `\n` the end of its line. Otherwise a
      // backslash escapes the next character.
      const next = text.charCodeAt(i + 1);
      if (quote === 0 && (next === 116 || next === 110 || next === 114)) {
        if (start >= 0) words.push([start, i]);
        start = -1;
        if (next !== 116) break;
        i++;
        continue;
      }
      if (start < 0) start = i;
      if (isQuote(next) && (quote === 0 || quote === -next)) quote = quote === 0 ? -next : 0;
      i++;
      continue;
    }
    if (quote !== 0) {
      if (c === quote) quote = 0;
      else if (c === 10) break; // an unclosed quote ends with its line
      continue;
    }
    if (isBlank(c) || ENDS_COMMAND.has(c)) {
      if (start >= 0) words.push([start, i]);
      start = -1;
      if (ENDS_COMMAND.has(c)) break;
      continue;
    }
    if (start < 0) start = i;
    if (isQuote(c)) quote = c;
  }
  if (start >= 0) words.push([start, i]);
  return { words, end: i };
}

/** A word without what a Python list, a shell or JSON adds around it: `['-pX',` is `-pX`, `"a b"` is `a b`,
 * `\"a\"` is `a`. A quoted word ends at its closing quote (or at the end of the word, if the line was cut). */
function unwrap(text: string, [s, e]: Range): Range {
  while (s < e && '[({'.includes(text[s])) s++;
  while (e > s && ',])}'.includes(text[e - 1])) e--;
  const escaped = text[s] === '\\' && isQuote(text.charCodeAt(s + 1));
  if (escaped || isQuote(text.charCodeAt(s))) {
    const close = (escaped ? '\\' : '') + text[escaped ? s + 1 : s];
    const from = s + close.length;
    const at = text.slice(from, e).indexOf(close);
    return [from, at < 0 ? e : from + at];
  }
  // A JSON-escaped quote that closes the string the command is in (`\"mysql -pX\"`).
  if (e - s >= 2 && text[e - 2] === '\\' && isQuote(text.charCodeAt(e - 1))) return [s, e - 2];
  return [s, e];
}

function pushSecret(text: string, [s, e]: Range, out: Range[]): void {
  if (e > s && text.slice(s, e) !== MASK) out.push([s, e]);
}

/** `-pX` (and `-p X` when the value may be the next word): the value of a short option. */
function shortOption(flag: string, nextWordToo: boolean): (text: string, words: Range[], out: Range[]) => void {
  return (text, words, out) => {
    for (let i = 0; i < words.length; i++) {
      const [s, e] = unwrap(text, words[i]);
      if (!text.startsWith(flag, s)) continue;
      if (e - s > flag.length) pushSecret(text, unwrap(text, [s + flag.length, e]), out);
      else if (e - s === flag.length && nextWordToo && i + 1 < words.length) pushSecret(text, unwrap(text, words[i + 1]), out);
    }
  };
}

const CURL_USER_ALONE = /^(?:-u|-U|--user|--proxy-user)$/;
const CURL_USER_JOINED = /^(?:--user=|--proxy-user=|-u|-U)/;

/** curl -u user:password, --user=user:password, -U (proxy): the part after the first `:`. */
function curlUser(text: string, words: Range[], out: Range[]): void {
  const afterColon = ([s, e]: Range) => {
    const colon = text.slice(s, e).indexOf(':'); // within the word: the text after it may be long
    if (colon >= 0) pushSecret(text, [s + colon + 1, e], out);
  };
  for (let i = 0; i < words.length; i++) {
    const [s, e] = unwrap(text, words[i]);
    const word = text.slice(s, Math.min(e, s + 14));
    const flag = CURL_USER_ALONE.exec(word)?.[0] ?? CURL_USER_JOINED.exec(word)?.[0];
    if (flag === undefined) continue;
    if (s + flag.length < e) afterColon(unwrap(text, [s + flag.length, e]));
    else if (i + 1 < words.length) afterColon(unwrap(text, words[i + 1]));
  }
}

const RABBITMQCTL_USER = /^(?:add_user|change_password|authenticate_user)$/;

/** rabbitmqctl add_user USER SECRET, change_password USER SECRET, authenticate_user USER SECRET. */
function rabbitmqctlUser(text: string, words: Range[], out: Range[]): void {
  for (let i = 0; i < words.length; i++) {
    const [s, e] = unwrap(text, words[i]);
    if (!RABBITMQCTL_USER.test(text.slice(s, e))) continue;
    let j = i + 1;
    while (j < words.length && text[unwrap(text, words[j])[0]] === '-') j++; // options such as --pre-hashed-password
    if (j + 1 < words.length) pushSecret(text, unwrap(text, words[j + 1]), out);
    return;
  }
}

const SSHPASS_OPTION_WITH_VALUE = /^-[fdP]$/;

/** sshpass -p SECRET (or -pSECRET), up to the command it runs: `sshpass -p x ssh -p 22 h` has one secret. */
function sshpassArgs(text: string, words: Range[], out: Range[]): void {
  for (let i = 0; i < words.length; i++) {
    const [s, e] = unwrap(text, words[i]);
    const word = text.slice(s, e);
    if (!word.startsWith('-')) return; // the command sshpass runs
    if (word === '-p') pushSecret(text, unwrap(text, words[++i] ?? [0, 0]), out);
    else if (word.startsWith('-p')) pushSecret(text, unwrap(text, [s + 2, e]), out);
    else if (SSHPASS_OPTION_WITH_VALUE.test(word)) i++; // options with a value: -f file, -d fd, -P prompt
  }
}

/** redis-cli -a SECRET, and AUTH [user] SECRET typed into it. */
function redisCli(text: string, words: Range[], out: Range[]): void {
  shortOption('-a', true)(text, words, out);
  for (let i = 0; i < words.length; i++) {
    const [s, e] = unwrap(text, words[i]);
    if (text.slice(s, e).toUpperCase() !== 'AUTH') continue;
    for (const w of words.slice(i + 1, i + 3)) pushSecret(text, unwrap(text, w), out);
  }
}

const COMMAND_SECRETS: Record<string, (text: string, words: Range[], out: Range[]) => void> = {
  mysql: shortOption('-p', false), // -p alone prompts; the next word is then the database
  sshpass: sshpassArgs,
  'redis-cli': redisCli,
  rabbitmqctl: rabbitmqctlUser,
  ipmitool: shortOption('-P', true),
  curl: curlUser,
};

/** Secrets in the arguments of the commands of COMMAND_SECRETS. */
function commandSecrets(text: string, out: Range[]): void {
  COMMAND.lastIndex = 0;
  for (let m = COMMAND.exec(text); m !== null; m = COMMAND.exec(text)) {
    const name = MYSQL_FAMILY.test(m[1]) ? 'mysql' : m[1];
    // The quote that closes the name in a Python list (`['mysql', '-pX']`) opens no quoted word.
    const after = m.index + m[0].length;
    const { words, end } = commandWords(text, isQuote(text.charCodeAt(after)) ? after + 1 : after);
    COMMAND_SECRETS[name](text, words, out);
    COMMAND.lastIndex = Math.max(end, COMMAND.lastIndex); // each character is read once
  }
}

const PEM_BEGIN = /-----BEGIN (?:[A-Z0-9]+ ){0,3}PRIVATE KEY(?: BLOCK)?-----/g;
const PEM_END = /-----END (?:[A-Z0-9]+ ){0,3}PRIVATE KEY(?: BLOCK)?-----/g;
// What follows a BEGIN line in a real key (headers of an encrypted key, or base64), after blanks, line breaks or
// JSON's `\n`: without an END, the rest of the event is masked only if this follows (stackwatch's own "expected a
// -----BEGIN PRIVATE KEY----- block" is no key).
const PEM_BODY = /^(?:Proc-Type:|Comment:|[A-Za-z0-9+/=]{16})/;

const BLANK = /\s/;
// A body that is already masked (`…-----***-----END…`) or empty.
const NO_BODY = /^(?:\s|\\[rn])*(?:\*\*\*(?:\s|\\[rn])*)?$/;

/** Where the text after `at` starts, past blanks, line breaks and JSON's `\n`/`\r`. */
function skipBlanks(text: string, at: number): number {
  let i = at;
  for (;;) {
    if (BLANK.test(text[i] ?? '')) i++;
    else if (text[i] === '\\' && (text[i + 1] === 'n' || text[i + 1] === 'r')) i += 2;
    else return i;
  }
}

/** The body of every PEM private key, across the lines of the event; a BEGIN without END masks to its end. */
function pemPrivateKeys(text: string, out: Range[]): void {
  PEM_BEGIN.lastIndex = 0;
  for (let b = PEM_BEGIN.exec(text); b !== null; b = PEM_BEGIN.exec(text)) {
    const bodyStart = b.index + b[0].length;
    PEM_END.lastIndex = bodyStart;
    const e = PEM_END.exec(text);
    if (e === null) {
      const at = skipBlanks(text, bodyStart);
      if (PEM_BODY.test(text.slice(at, at + 16))) out.push([bodyStart, text.length]);
      return;
    }
    if (!NO_BODY.test(text.slice(bodyStart, e.index))) out.push([bodyStart, e.index]);
    PEM_BEGIN.lastIndex = e.index + e[0].length;
  }
}

// A bare AWS secret access key: exactly 40 characters of base64 standing alone (not next to another base64
// character, `_`, `=` or `*`: what was next to a masked secret stays as it was). sha1 digests (hex: one letter case), paths and words fail the checks of awsShaped.
const AWS_KEY_LENGTH = 40;
const BASE64 = new Uint8Array(128);
for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/') BASE64[c.charCodeAt(0)] = 1;
const isBase64 = (c: number) => c < 128 && BASE64[c] === 1;
const NEXT_TO_KEY = /[_=*]/;
const [UPPER, LOWER, DIGIT] = [/[A-Z]/, /[a-z]/, /\d/];

/** 40 random base64 characters: upper and lower case letters and a digit, and not a path (a `/` at either end,
 * `//`, or more than three of them). */
function awsShaped(s: string): boolean {
  if (!UPPER.test(s) || !LOWER.test(s) || !DIGIT.test(s)) return false;
  if (s.startsWith('/') || s.endsWith('/') || s.includes('//')) return false;
  return s.split('/').length <= 4;
}

/** Every run of exactly 40 base64 characters that looks like an AWS secret key. This runs on every text (a bare
 * key has no word to look for), so it is code that skips: if the 40th character from `i` is not base64, no run
 * of 40 starts before it; otherwise it reads backwards to the start of the run. Each character is read at most
 * twice. */
function awsSecretKeys(text: string, out: Range[]): void {
  const n = text.length;
  let i = 0;
  while (i + AWS_KEY_LENGTH <= n) {
    const last = i + AWS_KEY_LENGTH - 1;
    if (!isBase64(text.charCodeAt(last))) {
      i = last + 1;
      continue;
    }
    let k = last - 1;
    while (k >= i && isBase64(text.charCodeAt(k))) k--;
    if (k >= i) {
      i = k + 1; // a run of fewer than 40 ends at k
      continue;
    }
    let start = i;
    while (start > 0 && isBase64(text.charCodeAt(start - 1))) start--;
    if (text[start - 1] === '\\' && 'nrt'.includes(text[start])) start++; // after a JSON escape such as `\n`
    let end = last + 1;
    while (end < n && isBase64(text.charCodeAt(end))) end++;
    const key = text.slice(start, end);
    if (end - start === AWS_KEY_LENGTH && (text[start - 1] === '\\' || !NEXT_TO_KEY.test(text[start - 1] ?? '')) && !NEXT_TO_KEY.test(text[end] ?? '') && awsShaped(key)) {
      out.push([start, end]);
    }
    i = end + 1;
  }
}

// ---- The rules -----------------------------------------------------------------------------------------------

/** A rule whose matches are the value after KEY and `sep`: quoted, in braces, or bare. */
function keyValue(sep: string, extra = ''): RegExp[] {
  return [
    // key: "value", key: 'value' and key: \"value\": up to the closing quote, blanks included.
    ...quotedValues(`${KEY}${sep}`, extra),
    // key={value}: the braces stay. Not a structure (`{"id": …}`, `{{ var }}`) nor a hash scheme (`{SHA256}ab…`).
    new RegExp(String.raw`(?=[^\s{}'"\\])(?<=${KEY}${sep}(?:\\?["'])?\{)(?!${HASH_SCHEME}\}${VALUE_CHAR})${extra}${notSecret('\\}')}[^\s{}'"\\]+(?=\})`, 'gi'),
    // key=value unquoted, or opened by a quote that never closes (a truncated line), or JSON-escaped (\"…\").
    new RegExp(String.raw`${VALUE_START}(?<=${KEY}${sep}(?:\\?["'])?)${extra}${NOT_SECRET}${NOT_DEBUG_SUFFIX}${VALUE}`, 'gi'),
  ];
}

/** Applied to the original text; what they find is merged. */
const RULES: readonly Rule[] = [
  // URL credentials: rabbit://user:***@host:5672/, mysql+pymysql://nova:***@db/nova, and every host of a
  // multi-host transport_url (…@h1:5672,user:***@h2:5672/). The password ends at the last `@` before a host,
  // so a password holding `@` or `,` is masked whole.
  {
    scan: /:\/\//,
    when: /:\/\//,
    mask: [
      new RegExp(String.raw`(?<=(?:\b[a-z][a-z0-9+.-]*:\/\/|(?:@|:\/\/)${HOST},)[^\s:@,/?#'"]{0,255}:)(?!\*+@)[^\s/?#'"]{1,1024}?(?=@${HOST}${HOST_END})`, 'gi'),
      // https://TOKEN@host: userinfo without a password is a token for http(s) (git's https://ghp_…@github.com).
      // Other schemes keep their user (ssh://git@host, rabbit://guest@host).
      new RegExp(String.raw`(?<=${WORD_BOUNDARY}https?:\/\/)(?!\*+@)[^\s:@/?#'"]{1,255}(?=@${HOST}${HOST_END})`, 'gi'),
      // A URL cut short after its password (an event truncated at max_event_bytes): the rest, unless it is a port.
      new RegExp(String.raw`(?<=\b[a-z][a-z0-9+.-]*:\/\/[^\s:@/?#'"]{0,255}:)(?!\d*$)(?!\*+$)[^\s/?#'"@]{1,1024}$`, 'gi'),
    ],
  },
  // Authorization: Bearer ***, Basic ***, and any other scheme's credentials (header, dict or curl -H).
  {
    scan: KEY_SCAN,
    when: /authorization/i,
    mask: [new RegExp(String.raw`${VALUE_START}(?<=${WORD_BOUNDARY}authorization(?:\\?["'])?${SEP}(?:\\?["'])?(?:${AUTH_SCHEME}[ \t]+)?)(?!${AUTH_SCHEME}[ \t])${NOT_SECRET}${VALUE}`, 'gi')],
  },
  { scan: KEY_SCAN, when: KEY_WORDS, mask: keyValue(SEP) },
  // The value on the next line (YAML, a JSON string). Not a key of a nested mapping (`nested: x`), a list item or
  // the next frame of a traceback.
  { scan: KEY_SCAN, when: SEP_AT_LINE_END, mask: keyValue(SEP_NEXT_LINE, String.raw`(?![^\s:\\]+:(?:\s|$))(?!-[ \t])(?!File ")`) },
  // Command lines: --os-password ***, --token ***, --db-pass *** (the value is the next word, unless it is the
  // next flag), also after a line continuation (`--os-password \⏎ ***`).
  {
    scan: KEY_SCAN,
    when: /--/,
    mask: [...quotedValues(FLAG, NOT_UUID), new RegExp(String.raw`${VALUE_START}(?!-)(?<=${FLAG}(?:\\?["'])?)${NOT_UUID}${NOT_SECRET}${VALUE}`, 'gi')],
  },
  // password S3cr3t!, PASSWORD 'x' (SQL: CREATE ROLE … PASSWORD 'x'), requirepass x (redis.conf): no separator.
  {
    scan: KEY_SCAN,
    when: /passw|passphrase|pwd|requirepass|masterauth/i,
    mask: [
      ...quotedValues(String.raw`${PASSWORD_WORD}${BL}+`),
      new RegExp(String.raw`${VALUE_START}(?<=${PASSWORD_WORD}${BL}+)${NOT_SECRET}${NOT_DEBUG_SUFFIX}${LOOKS_LIKE_PASSWORD}${VALUE}`, 'gi'),
    ],
  },
  // <password>***</password>, <ns:adminPassword>***</…>, also HTML-escaped (&lt;password&gt;). Up to a closing
  // tag: `<password>` alone is a placeholder in prose.
  {
    scan: KEY_SCAN,
    when: /<\/|&lt;\//,
    mask: [
      new RegExp(
        String.raw`(?=[^<&\n])(?<=(?:<|&lt;)[\w.:-]*?(?:${SECRET_WORD}|(?<![^<;_.:-])pass)(?:[ \t][^<>&\n]{0,255})?(?:>|&gt;))${notSecret('(?:<|&lt;)')}(?:[^<&\n]|&(?!lt;))+(?=(?:<|&lt;)\/)`,
        'gi',
      ),
    ],
  },
  // SQL: CREATE USER … IDENTIFIED BY '***', IDENTIFIED WITH plugin BY '***', IDENTIFIED BY PASSWORD '***'.
  {
    scan: /IDENTIFIED|identified/,
    when: /IDENTIFIED|identified/,
    mask: quotedValues(String.raw`${WORD_BOUNDARY}identified(?:[ \t]+with[ \t]+[\w'"\\]{1,64})?[ \t]+(?:by|as)[ \t]+(?:password[ \t]+)?`),
  },
  // Redis MONITOR: "AUTH" "***" (and "AUTH" "user" "***": both arguments go), also inside a JSON string.
  {
    scan: KEY_SCAN,
    when: /auth\\?"/i,
    mask: quotedValues(String.raw`\\?"auth\\?"(?:[ \t]+\\?"[^"\\\n]{0,255}\\?")?[ \t]+`),
  },
  // mysql -p***, sshpass -p ***, redis-cli -a ***, rabbitmqctl add_user u ***, ipmitool -P ***, curl -u u:***.
  { scan: COMMAND_WORDS, when: COMMAND_WORDS, mask: commandSecrets },
  // A bearer token outside an Authorization header (long enough not to be a word of prose).
  { scan: KEY_SCAN, when: /bearer/i, mask: [new RegExp(String.raw`(?=[\w.~+/-])(?<=${WORD_BOUNDARY}[Bb]earer${BL}+)[\w.~+/-]{16,}=*`, 'g')] },
  // Keystone Fernet tokens anywhere: base64url of a 0x80-versioned payload, 100 characters and more.
  { scan: /gAAAAA/, when: /gAAAAA/, mask: [new RegExp(String.raw`${shapeStart('\\w-')}gAAAAA[\w-]{94,}=*`, 'g')] },
  // Keystone PKI tokens (base64 DER, `/` written as `-`) and PKIZ tokens (the prefix stays).
  { scan: /MII/, when: /MII/, mask: [new RegExp(String.raw`${shapeStart('\\w+/-')}MII[\w+/-]{100,}=*`, 'g')] },
  { scan: /PKIZ_/, when: /PKIZ_/, mask: [new RegExp(String.raw`(?<=${WORD_BOUNDARY}PKIZ_)[\w-]{20,}=*`, 'g')] },
  // JSON Web Tokens (Kubernetes service accounts, OIDC): header.payload.signature, all of it.
  { scan: /\.eyJ/, when: /\.eyJ/, mask: [new RegExp(String.raw`${shapeStart('\\w-')}eyJ[\w-]{8,}\.eyJ[\w-]{8,}\.[\w-]*`, 'g')] },
  // Ceph keys (keyrings, `ceph auth get-key`, libvirt secrets): base64 of 28 bytes that start with 01 00.
  { scan: /AQ/, when: /AQ/, mask: [new RegExp(String.raw`${shapeStart('\\w+/=')}AQ[A-Za-z0-9+/]{36}==(?![\w+/=])`, 'g')] },
  { scan: /PRIVATE KEY/, when: /PRIVATE KEY/, mask: pemPrivateKeys },
];

// Bare AWS secret keys have no word to look for: this runs on every text, whatever the pre-scan says.
const ALWAYS: Finder = awsSecretKeys;

// The union of the rules' scans, one per flag set: two scans rule out most lines without secrets. (A single
// case-insensitive alternation of everything is several times slower in V8 than the two together.)
const [TRIGGER_I, TRIGGER_CASE] = ['i', ''].map((flags) => new RegExp([...new Set(RULES.filter((r) => r.scan.flags === flags).map((r) => r.scan.source))].join('|'), flags));

// The case-sensitive scans are words (`://`, `MII`, `mysql`, …), and V8 tries an alternation of words at every
// character, the more often the shorter they are. The short words that start with an uncommon character (`://`,
// `MII`, `.eyJ`, `AQ`) are looked for one by one with indexOf (a native search for that character), the others with
// one regex: together they find what TRIGGER_CASE finds, in 0.38 instead of 0.6 µs an event (bench corpus).
const CASE_WORDS = [...new Set(RULES.filter((r) => r.scan.flags === '').flatMap((r) => r.scan.source.split('|')))].map((w) => {
  const word = w.replace(/\\([/.])/g, '$1');
  if (/[\\^$.*+?()[\]{}|]/.test(word.replace(/[/.]/g, ''))) throw new Error(`redact: a case-sensitive scan is not a word: ${w}`);
  return word;
});
const SHORT_WORDS = CASE_WORDS.filter((w) => w.length <= 4 && !/^[a-z]/.test(w));
const LONG_WORDS = new RegExp(
  CASE_WORDS.filter((w) => !SHORT_WORDS.includes(w))
    .map((w) => w.replace(/[.]/g, '\\.'))
    .join('|'),
);

/** TRIGGER_I.test(probe) || TRIGGER_CASE.test(probe), the cheaper way. */
function triggered(probe: string): boolean {
  if (TRIGGER_I.test(probe)) return true;
  for (let i = 0; i < SHORT_WORDS.length; i++) if (probe.indexOf(SHORT_WORDS[i]) >= 0) return true;
  return LONG_WORDS.test(probe);
}

/** Every regex of this module, for the test that proves each runs in linear time. */
export const REDACT_REGEXES: readonly RegExp[] = Object.freeze([
  TRIGGER_I,
  TRIGGER_CASE,
  LONG_WORDS,
  ...RULES.flatMap((r) => [r.scan, r.when, ...(typeof r.mask === 'function' ? [] : r.mask)]),
  COMMAND,
  MYSQL_FAMILY,
  SSHPASS_OPTION_WITH_VALUE,
  CURL_USER_ALONE,
  CURL_USER_JOINED,
  RABBITMQCTL_USER,
  PEM_BEGIN,
  PEM_END,
  PEM_BODY,
  BLANK,
  NO_BODY,
  NEXT_TO_KEY,
  UPPER,
  LOWER,
  DIGIT,
]);

/** True if the ranges are what secretRanges returns: inside the text, non-empty, sorted and apart. */
function isNormal(ranges: readonly Range[], length: number): boolean {
  let last = -1;
  for (const [s, e] of ranges) {
    if (!(s > last && e > s && e <= length)) return false;
    last = e;
  }
  return true;
}

/** Sorts ranges, drops empty ones and merges those that overlap or touch (two secrets side by side are one MASK).
 * Copies the ranges once. */
function normalize(ranges: readonly Range[], length: number): Range[] {
  const sorted: Range[] = [];
  for (const [s, e] of ranges) {
    const r: Range = [Math.max(0, s), Math.min(length, e)];
    if (r[1] > r[0]) sorted.push(r);
  }
  sorted.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let n = 0;
  for (const r of sorted) {
    if (n > 0 && r[0] <= sorted[n - 1][1]) sorted[n - 1][1] = Math.max(sorted[n - 1][1], r[1]);
    else sorted[n++] = r;
  }
  sorted.length = n;
  return sorted;
}

/** One look at the text: what every rule finds. */
function findRanges(text: string, scanFrom = 0): Range[] {
  const found: Range[] = [];
  const probe = scanFrom > 0 ? text.slice(scanFrom) : text;
  if (triggered(probe)) {
    for (const { when, mask } of RULES) {
      if (!when.test(text)) continue;
      if (typeof mask === 'function') mask(text, found);
      else for (const re of mask) pushMatches(re, text, found);
    }
  }
  ALWAYS(text, found);
  return found.length === 0 ? found : normalize(found, text.length);
}

/** Ranges found in `masked` (= maskRanges(text, ranges)) as ranges of `text`: a position inside a MASK stands for
 * the whole secret it replaced. */
function toOriginal(found: readonly Range[], ranges: readonly Range[]): Range[] {
  // Where each MASK starts in the masked text, and how much shorter the masked text is before it.
  const starts: number[] = [];
  const shiftAfter: number[] = [];
  let shift = 0;
  for (const [s, e] of ranges) {
    starts.push(s - shift);
    shift += e - s - MASK.length;
    shiftAfter.push(shift);
  }
  // The last MASK that starts at or before p (or before p, for an end), by binary search.
  const last = (p: number, strict: boolean) => {
    let lo = 0;
    let hi = starts.length - 1;
    let at = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (strict ? starts[mid] < p : starts[mid] <= p) ((at = mid), (lo = mid + 1));
      else hi = mid - 1;
    }
    return at;
  };
  return found.map(([a, b]): Range => {
    const i = last(a, false);
    const j = last(b, true);
    const from = i < 0 ? a : a < starts[i] + MASK.length ? ranges[i][0] : a + shiftAfter[i];
    const to = j < 0 ? b : b <= starts[j] + MASK.length ? ranges[j][1] : b + shiftAfter[j];
    return [from, to];
  });
}

// Masking can make a new context: `password <password>x}y</password>` masked is `password ***</password>`, in
// which `***</password>` reads as the value of "password". So the ranges are a fixpoint: the masked text is read
// again, and what that finds (mapped back to the original text) is added, for a few rounds at most (each is
// linear). Then a second redact() finds nothing new: masking is idempotent.
const MAX_ROUNDS = 4;

const sameRanges = (a: readonly Range[], b: readonly Range[]) => a.length === b.length && a.every(([s, e], i) => s === b[i][0] && e === b[i][1]);

/** The secrets in `text` (may be multi-line): sorted, non-overlapping [start, end) ranges in UTF-16 code units. */
/** `scanFrom`: where the pre-scan for trigger words starts, past a header that holds none (an oslo.log line's date,
 * pid, level, logger and context: a third to a half of it). The rules still read the whole text. */
export function secretRanges(text: string, scanFrom = 0): Range[] {
  let ranges = findRanges(text, scanFrom);
  for (let round = 1; round < MAX_ROUNDS && ranges.length > 0; round++) {
    const again = findRanges(maskRanges(text, ranges));
    if (again.length === 0) break;
    const merged = normalize([...ranges, ...toOriginal(again, ranges)], text.length);
    if (sameRanges(merged, ranges)) break;
    ranges = merged;
  }
  return ranges;
}

/** `text` with MASK in place of each range (ranges may come in any order, overlap or exceed the text). Returns the
 * same string instance when there is nothing to mask. */
export function maskRanges(text: string, ranges: readonly Range[]): string {
  if (ranges.length === 0) return text;
  const normal = isNormal(ranges, text.length) ? ranges : normalize(ranges, text.length);
  if (normal.length === 0) return text;
  let out = '';
  let at = 0;
  for (const [s, e] of normal) {
    out += text.slice(at, s) + MASK;
    at = e;
  }
  return out + text.slice(at);
}

/** The part of `ranges` (of a whole event's text) that falls in [start, end), relative to `start`: what to mask in
 * a raw piece that the event was joined from, e.g. `maskRanges(piece, clipRanges(secretRanges(event), at, at +
 * piece.length))`. A secret split across pieces is masked in each of them. */
export function clipRanges(ranges: readonly Range[], start: number, end: number): Range[] {
  const out: Range[] = [];
  for (const [s, e] of ranges) {
    const from = Math.max(s, start);
    const to = Math.min(e, end);
    if (to > from) out.push([from - start, to - start]);
  }
  return out;
}

/** Masks secrets in one log event's text (may be multi-line). Returns the same string instance when nothing was masked. */
export function redact(text: string, scanFrom = 0): string {
  return maskRanges(text, secretRanges(text, scanFrom));
}
