// Masks secrets in log text before it leaves the host: the collector runs it on every event it sends to Kafka.
//
// The rules are data (RULES). Each rule's match is exactly the secret: what stays (key, quotes, scheme, user,
// host) is matched by look-arounds, so the secret becomes MASK and the rest of the line keeps its meaning.
// Most lines carry no secret, so a scan for the words the rules need (TRIGGER_*) comes first.
//
// Cost stays linear on hostile lines: a look-behind that ends in blanks is preceded by a test of the secret's
// first character (else V8 would rescan a long run of blanks from each of its positions), and the URL rule's
// look-arounds are bounded.

export const MASK = '***';

// Words that end the name of a key, flag or header whose value is a secret.
const SECRET_WORD = String.raw`passw(?:or)?d|passphrase|adminpass|pwd|secret(?:[_-]?(?:access[_-]?)?key)?|token|api[_-]?key|credentials?`;
// password, OS_PASSWORD, admin_password, adminPass, secret, auth_token, X-Auth-Token, api_key, credential…,
// quoted or not (also JSON-escaped \"…\"). The word must end the key: `token_ttl`, `password_length`,
// `rbd_secret_uuid` are no secrets.
const KEY = String.raw`(?<![\w.-])\\?["']?[\w.-]*?(?:${SECRET_WORD})\\?["']?`;
// `key=v`, `key = v` (oslo pads the key), `key: v`, `"key": "v"`. At most one blank after the separator: an
// empty oslo option (`x_token =  log_opt_values …`) must not take the next word as its value.
const SEP = String.raw`[ \t]*[:=][ \t]?`;
// Values that are no secret: already masked (oslo prints `****`), unset, booleans, and MySQL's
// "(using password: YES)".
const NOT_SECRET = String.raw`(?!(?:\*+|None|null|True|False|YES|NO)(?![^\s&,;)}'"\\]))`;
// An unquoted value ends at a blank, `&`, `,`, `;`, `)`, `}` or a quote. It never starts with `{`, `[` or `(`:
// that is a structure (`"token": {"id": …}`, whose parts the other rules see) or an already hashed token
// (`{SHA256}…`, which keystoneauth logs instead of the token on purpose, and which is left alone).
const VALUE_CHAR = String.raw`(?:[^\s&,;)}'"\\]|\\(?!["']))`;
const VALUE_START = String.raw`(?![{[(])(?=${VALUE_CHAR})`;
const VALUE = `${VALUE_CHAR}+`;
// HTTP authentication schemes: the word stays, the credentials after it go.
const AUTH_SCHEME = '(?:Basic|Bearer|Negotiate|Token)';
// A URL's host[:port] (names, IPv4, [IPv6]); bounded, like every part of the URL rule.
const HOST = String.raw`[\w.%:[\]-]{1,255}`;

interface Rule {
  /** The rule can only match text in which this cheap test finds a word; flags `i` or none. */
  when: RegExp;
  /** Global; matches exactly the secret. */
  mask: RegExp;
}

// What every SECRET_WORD contains, as a cheap scan.
const KEY_WORDS = /passw|passphrase|adminpass|pwd|secret|token|api.?key|credential/i;

/** Applied in order: a later rule sees the MASK an earlier one left, never the secret. */
const RULES: readonly Rule[] = [
  // URL credentials: rabbit://user:***@host:5672/, mysql+pymysql://nova:***@db/nova, and every host of a
  // multi-host transport_url (…@h1:5672,user:***@h2:5672/). The password ends at the last `@` before a host,
  // so a password holding `@` or `,` is masked whole.
  {
    when: /:\/\//,
    mask: new RegExp(
      String.raw`(?<=(?:\b[a-z][a-z0-9+.-]*:\/\/|(?:@|:\/\/)${HOST},)[^\s:@,/?#'"]{0,255}:)(?!\*+@)[^\s/?#'"]{1,1024}?(?=@${HOST}(?:[\s,/?#'"<>);\]]|$))`,
      'gi',
    ),
  },
  // Authorization: Bearer ***, Basic ***, and any other scheme's credentials (header, dict or curl -H).
  {
    when: /authorization/i,
    mask: new RegExp(
      String.raw`${VALUE_START}(?<=\bauthorization\\?["']?${SEP}\\?["']?(?:${AUTH_SCHEME}[ \t]+)?)(?!${AUTH_SCHEME}[ \t])${NOT_SECRET}${VALUE}`,
      'gi',
    ),
  },
  // key: "value" and key: 'value': up to the closing quote, blanks included.
  { when: KEY_WORDS, mask: new RegExp(String.raw`(?<=${KEY}${SEP}")${NOT_SECRET}(?:[^"\\\n]|\\.)+(?=")`, 'gi') },
  { when: KEY_WORDS, mask: new RegExp(String.raw`(?<=${KEY}${SEP}')${NOT_SECRET}(?:[^'\\\n]|\\.)+(?=')`, 'gi') },
  // key=value unquoted, or opened by a quote that never closes (a truncated line), or JSON-escaped (\"…\").
  { when: KEY_WORDS, mask: new RegExp(String.raw`${VALUE_START}(?<=${KEY}${SEP}\\?["']?)${NOT_SECRET}${VALUE}`, 'gi') },
  // Command lines: --os-password ***, --token *** (the value is the next word, unless it is the next flag).
  {
    when: KEY_WORDS,
    mask: new RegExp(String.raw`${VALUE_START}(?!-)(?<=(?<![\w-])--[\w-]*?(?:${SECRET_WORD})[ \t]+["']?)${NOT_SECRET}${VALUE}`, 'gi'),
  },
  // A bearer token outside an Authorization header (long enough not to be a word of prose).
  { when: /bearer/i, mask: /(?=[\w.~+/-])(?<=\b[Bb]earer[ \t]+)[\w.~+/-]{16,}=*/g },
  // Keystone Fernet tokens anywhere: base64url of a 0x80-versioned payload, 100 characters and more.
  { when: /gAAAAA/, mask: /(?<![\w-])gAAAAA[\w-]{94,}=*/g },
  // Keystone PKI tokens (base64 DER, `/` written as `-`) and PKIZ tokens (the prefix stays).
  { when: /MII/, mask: /(?<![\w+/-])MII[\w+/-]{100,}=*/g },
  { when: /PKIZ_/, mask: /(?<=\bPKIZ_)[\w-]{20,}=*/g },
];

// The union of the rules' tests, one scan per flag set: two scans rule out a line without secrets. (A single
// case-insensitive alternation of everything is several times slower in V8 than the two together.)
const [TRIGGER_I, TRIGGER_CASE] = ['i', ''].map(
  (flags) => new RegExp([...new Set(RULES.filter((r) => r.when.flags === flags).map((r) => r.when.source))].join('|'), flags),
);

/** Masks secrets in one log event's text (may be multi-line). Returns the same string instance when nothing was masked. */
export function redact(text: string): string {
  if (!TRIGGER_I.test(text) && !TRIGGER_CASE.test(text)) return text;
  let out = text;
  for (const { when, mask } of RULES) if (when.test(out)) out = out.replace(mask, MASK);
  return out;
}
