// Masking: a log message as the tokens of its template, each variable written `<*>` as Loghub's ground truth
// writes it. Generic rules, true of any log, never a message of one product:
//
//   - a token is what lies between blanks; its leading `([{<"'` and trailing `)]}>"',.;:!?` are punctuation
//     around a value (`[instance: <*>]`, `(<*>):`, `'<*>'.`), kept as they are;
//   - a value in quotes (`'cp-1.example.org'`, `"None"`) is a variable;
//   - a path (`/var/lib/…`, `/v2/servers/detail`), a URL (`amqp://…`) and an IPv6 or MAC address are variables;
//   - a piece of a token with a digit in it is a variable (numbers, durations `0.25s`, sizes `64172MB`, uuids,
//     hex ids, IPv4 addresses and ports, `req-…` request ids, host names like `cp-1`, `HTTP/1.1`): pieces are
//     split at `=` and `:` so that `phys_ram=64172MB` keeps its key and `network-vif-plugged:<uuid>` its event name;
//   - a token over MAX_TOKEN_CHARS characters is a variable (a blob), and what follows the first MAX_TOKENS tokens
//     or MAX_TEMPLATE_CHARS characters of a message is one variable (a dump): a template's size is bounded whatever
//     the line.
//
// Variables that carry no digit and are not quoted (a host called `controller`, a user name) are left to the
// miner's tree (miner.ts), which makes a position `<*>` once it has seen many values there.
//
// Everything here is a scan of the characters, no regex: each character is looked at a bounded number of times,
// so a message costs time linear in its length (test/unit/templates.test.ts measures it on hostile lines).

/** The placeholder of a variable, as Loghub writes it. */
export const VAR = '<*>';

/** Tokens a template keeps; the rest of a longer message is one variable. */
export const MAX_TOKENS = 64;
/** A token longer than this is a variable: no constant of a format string is that long. */
export const MAX_TOKEN_CHARS = 128;
/** Characters of tokens a template keeps; the rest of a longer message is one variable. */
export const MAX_TEMPLATE_CHARS = 1024;

/** `([{<"'` */
const isOpen = (c: number) => c === 40 || c === 91 || c === 123 || c === 60 || c === 34 || c === 39;
/** `)]}>"',.;:!?` */
const isClose = (c: number) => c === 41 || c === 93 || c === 125 || c === 62 || c === 34 || c === 39 || c === 44 || c === 46 || c === 59 || c === 58 || c === 33 || c === 63;
/** What may join two variables that are one value (`<*>:<*>` host:port, `<*>.<*>` a float, `<*> <*>` a date and a
 * time): they are written as one `<*>`. Loghub-2.0's template correction merges `.`, `:`, `/`, `@` and `#` the same way. */
const JOINERS = new Set(' .:-/@#');

const isBlank = (c: number) => c <= 32;
const isDigit = (c: number) => c >= 48 && c <= 57;
const isHex = (c: number) => isDigit(c) || (c >= 97 && c <= 102) || (c >= 65 && c <= 70);

/** The tokens of a message's template, in order (at most MAX_TOKENS, MAX_TEMPLATE_CHARS characters). */
export function maskTokens(message: string): string[] {
  const out: string[] = [];
  const n = message.length;
  let chars = 0;
  let i = 0;
  for (;;) {
    while (i < n && isBlank(message.charCodeAt(i))) i++;
    if (i >= n) return out;
    const start = i;
    while (i < n && !isBlank(message.charCodeAt(i))) i++;
    const token = maskToken(message, start, i);
    chars += token.length;
    if (chars > MAX_TEMPLATE_CHARS || (out.length === MAX_TOKENS - 1 && !atEnd(message, i))) {
      out.push(VAR); // a dump: the rest of the message, whatever it holds, is one variable
      return out;
    }
    out.push(token);
  }
}

/** Nothing but blanks from `i` on. */
function atEnd(s: string, i: number): boolean {
  while (i < s.length && isBlank(s.charCodeAt(i))) i++;
  return i >= s.length;
}

/** One token, `s[start, end)`, with its variables masked. One scan of the core for most tokens (a word: no digit,
 * no path, URL or address), a second over the pieces of one with a digit. */
export function maskToken(s: string, start: number, end: number): string {
  if (end - start > MAX_TOKEN_CHARS) return VAR;
  // The core: the token without the punctuation around it.
  let a = start;
  while (a < end && isOpen(s.charCodeAt(a))) a++;
  let b = end;
  while (b > a && isClose(s.charCodeAt(b - 1))) b--;
  if (a === b) return s.slice(start, end); // punctuation only: `-`, `|`, `[]`, `=>`
  const quote = a > start ? s.charCodeAt(a - 1) : 0;
  if ((quote === 39 || quote === 34) && s.charCodeAt(b) === quote) return s.slice(start, a) + VAR + s.slice(b, end);
  let digit = false;
  let colons = 0;
  let doubleColon = false;
  let scheme = false;
  let addressChars = true; // hex digits, colons and dots only
  for (let k = a; k < b; k++) {
    const c = s.charCodeAt(k);
    if (c === 58 /* : */) {
      colons++;
      if (k + 1 < b && s.charCodeAt(k + 1) === 58) doubleColon = true;
      else if (k > a && s.charCodeAt(k + 1) === 47 && s.charCodeAt(k + 2) === 47 && k + 3 < b) scheme = true;
    } else if (isDigit(c)) digit = true;
    else if (c !== 46 && !isHex(c)) addressChars = false;
  }
  const path = s.charCodeAt(a) === 47 /* / */ && b - a > 1;
  // A path, a URL (`scheme://…`), an IPv6 or MAC address (two colons at least, and a digit or `::`, so that a word
  // like `a:b:c` is not one).
  if (path || scheme || (addressChars && colons >= 2 && (digit || doubleColon))) return s.slice(start, a) + VAR + s.slice(b, end);
  if (!digit) return s.slice(start, end);
  // Pieces split at `=` and `:`: a piece with a digit is a variable.
  let core = '';
  let piece = a;
  let pieceDigit = false;
  for (let k = a; k <= b; k++) {
    const c = k < b ? s.charCodeAt(k) : 0;
    if (k === b || c === 61 /* = */ || c === 58 /* : */) {
      core += pieceDigit ? VAR : s.slice(piece, k);
      if (k < b) core += s[k];
      piece = k + 1;
      pieceDigit = false;
    } else if (isDigit(c)) pieceDigit = true;
  }
  return s.slice(start, a) + mergeVariables(core) + s.slice(b, end);
}

/** Runs of variables joined by nothing, a blank or one of `.:-/@#` written as one `<*>`. */
export function mergeVariables(s: string): string {
  let at = s.indexOf(VAR);
  if (at < 0) return s;
  let out = '';
  let from = 0;
  while (at >= 0) {
    let end = at + VAR.length;
    for (;;) {
      if (s.startsWith(VAR, end)) end += VAR.length;
      else if (JOINERS.has(s[end]) && s.startsWith(VAR, end + 1)) end += 1 + VAR.length;
      else break;
    }
    out += s.slice(from, at) + VAR;
    from = end;
    at = s.indexOf(VAR, end);
  }
  return out + s.slice(from);
}

/** A template's text: its tokens joined by one blank, runs of variables as one `<*>`. */
export function templateText(tokens: readonly string[]): string {
  return mergeVariables(tokens.join(' '));
}

/** The template a message has before any other message is seen: masking alone. */
export function maskMessage(message: string): string {
  return templateText(maskTokens(message));
}
