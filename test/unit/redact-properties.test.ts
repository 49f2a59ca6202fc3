// Properties of the redactor (collectors/logs/redact.ts) over generated input (fast-check):
//   - no seeded secret survives: lines built around each form of secret (random surrounding text, separators,
//     quotes and brackets, line breaks, JSON escaping) with a random secret come out without it, and without
//     any 6 characters of it, also when the line is masked piece by piece with clipRanges (CRI/Docker partials);
//   - masking is idempotent, on those lines and on arbitrary text;
//   - secretRanges is sorted and non-overlapping, and redact(x) === maskRanges(x, secretRanges(x));
//   - linear time: every regex of the module is checked by recheck, and adversarial lines 16× longer cost far less
//     than 256× the time.
import fc from 'fast-check';
import { check } from 'recheck';
import { describe, expect, it } from 'vitest';
import { clipRanges, MASK, maskRanges, REDACT_REGEXES, redact, secretRanges, type Range } from '../../collectors/logs/redact.ts';
import { bestAlternating, cpuNs } from './timing.ts';

const chars = (s: string) => [...s];
const ALNUM = chars('abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789');
const BASE64 = [...ALNUM, '+', '/'];
const BASE64URL = [...ALNUM, '-', '_'];
// An unquoted value: no blank, quote, backslash, nor what ends a value (`&,;)}`) or a command (`|`). Never `*`:
// the mask is `***`.
const BARE = [...ALNUM, ...chars('!#$%+-./:=?@^_~')];
// Inside quotes, blanks and separators are part of the secret.
const SPACED = [...BARE, ...chars(' &,;)}(<>[]|')];

const text = (alphabet: string[], minLength: number, maxLength: number) => fc.string({ unit: fc.constantFrom(...alphabet), minLength, maxLength });
const without = (alphabet: string[], drop: string) => alphabet.filter((c) => !drop.includes(c));

interface Form {
  name: string;
  secret: fc.Arbitrary<string>;
  /** The text that carries the secret; `v` picks a variant. */
  make: (secret: string, v: number) => string;
  /** The form must end the event (a line cut short). */
  atEnd?: boolean;
  /** JSON escaping changes the form (a shell line continuation). */
  noJson?: boolean;
  /** What may follow the form, if not any of GAPS. */
  gapsAfter?: string[];
}

const pick = <T>(list: readonly T[], v: number): T => list[v % list.length];
const KEYS = [
  'password',
  'passwd',
  'admin_password',
  'OS_PASSWORD',
  'adminPass',
  'db_pass',
  'pass',
  'secret',
  'client_secret',
  'auth_token',
  'X-Auth-Token',
  'api_key',
  'apikey',
  'credential',
  'bindpw',
  'MYSQL_PWD',
  'ldap_default_authtok',
  'aws_secret_access_key',
  'ldap.pw',
];
const SEPS = ['=', ' = ', '=  ', ': ', ':', ':\t', '  =  ', ' :  '];
const FLAGS = ['os-password', 'password', 'os-token', 'token', 'db-pass', 'api-key', 'client-secret'];
const PEM_TYPES = ['', 'RSA ', 'EC ', 'ENCRYPTED ', 'OPENSSH '];
const looksLikePassword = (s: string) => /[\d!#$%+?@^~]/.test(s);

const FORMS: Form[] = [
  { name: 'key=value', secret: text(BARE, 8, 24), make: (s, v) => `${pick(KEYS, v)}${pick(SEPS, v >> 5)}${s}` },
  { name: 'key: "value"', secret: text(without(SPACED, '"'), 8, 24), make: (s, v) => `${pick(KEYS, v)}${pick(SEPS, v >> 5)}"${s}"` },
  { name: "'key': 'value'", secret: text(without(SPACED, "'"), 8, 24), make: (s, v) => `'${pick(KEYS, v)}': '${s}'` },
  { name: 'key={value}', secret: text(without(BARE, ''), 8, 24), make: (s, v) => `${pick(KEYS, v)}${pick(SEPS, v >> 5)}{${s}}` },
  {
    name: '--flag value',
    secret: text(BARE, 8, 24).filter((s) => !s.startsWith('-')),
    make: (s, v) => [`--${pick(FLAGS, v)} ${s}`, `--${pick(FLAGS, v)}\t${s}`, `--${pick(FLAGS, v)} '${s}'`][v % 3],
  },
  { name: '--flag "quoted value"', secret: text(without(SPACED, '"'), 8, 24), make: (s, v) => `--${pick(FLAGS, v)} "${s}"` },
  { name: '--flag \\⏎ value', secret: text(BARE, 8, 24).filter((s) => !s.startsWith('-')), make: (s, v) => `--${pick(FLAGS, v)} \\\n    ${s}`, noJson: true },
  {
    name: 'password value (no separator)',
    secret: text(without(BARE, ':=/'), 6, 24).filter(looksLikePassword),
    make: (s, v) => `${pick(['password', 'Password', 'PASSWORD', 'passwd', 'requirepass', 'masterauth', 'passphrase'], v)} ${s}`,
    // "password x1: y" reads as the key x1; the heuristic leaves it.
    gapsAfter: [' ', '\t', ', ', '; ', ' | ', '\n'],
  },
  { name: "PASSWORD 'value'", secret: text(without(SPACED, "'"), 8, 24), make: (s, v) => `${pick(['PASSWORD', 'password', 'WITH PASSWORD'], v)} '${s}'` },
  {
    name: 'value on the next line',
    secret: text(without(BARE, ':'), 8, 24).filter((s) => !s.startsWith('-')),
    make: (s, v) => `${pick(KEYS, v)}:\n${' '.repeat(1 + (v % 6))}${s}`,
    // `password:⏎  x: y` is a nested mapping, not a password.
    gapsAfter: [' ', '\t', ', ', '; ', ' | ', '\n'],
  },
  {
    name: 'URL password',
    secret: text(without(BARE, '/?#'), 8, 24),
    make: (s, v) =>
      `${pick(['rabbit', 'amqp', 'mysql+pymysql', 'https', 'redis', 'postgresql'], v)}://${pick(['nova', 'guest', ''], v >> 3)}:${s}@${pick(['10.5.0.11:5672', 'db', 'rabbit-1.internal'], v >> 5)}/${pick(['', 'nova', 'openstack?x=1'], v >> 7)}`,
  },
  {
    name: 'https://TOKEN@host',
    secret: text([...ALNUM, '-', '_', '.', '~'], 8, 40),
    make: (s, v) => `${pick(['https', 'http'], v)}://${s}@${pick(['github.com/org/repo.git', '10.5.0.80:8080/x', 'h'], v >> 1)}`,
  },
  {
    name: 'URL cut after its password',
    secret: text([...ALNUM, '-', '_', '.', '~', '!', '$'], 8, 24).filter((s) => !/^\d+$/.test(s)),
    make: (s) => `rabbit://nova:${s}`,
    atEnd: true,
    noJson: true,
  },
  {
    name: 'mysql -pSECRET',
    secret: text(BARE, 8, 24),
    make: (s, v) => [`mysql -u root -p${s} nova`, `/usr/bin/mysqldump -p${s} --all-databases`, `['mysqladmin', '-u', 'root', '-p${s}', 'status']`, `mariadb -uroot -p${s}`][v % 4],
  },
  { name: 'mysql -p"SECRET"', secret: text(without(SPACED, '"'), 8, 24), make: (s) => `mysql -u root -p"${s}" nova` },
  {
    name: 'rabbitmqctl',
    secret: text(BARE, 8, 24),
    make: (s, v) =>
      `rabbitmqctl ${pick(['', '-n rabbit@h ', '-q '], v >> 2)}${pick(['change_password', 'add_user', 'authenticate_user'], v)} ${pick(['nova', '"neutron"', "'u'"], v >> 4)} ${pick(['', "'", '"'], v >> 6).replace(/^(.?)$/, '$1')}${s}${pick(['', "'", '"'], v >> 6)}`,
  },
  {
    name: 'sshpass / ipmitool / redis-cli / curl',
    secret: text(BARE, 8, 24),
    make: (s, v) =>
      [
        `sshpass -p ${s} ssh -p 22 root@h`,
        `sshpass -p${s} scp a b`,
        `ipmitool -I lanplus -H 10.0.0.1 -U admin -P ${s} power status`,
        `redis-cli -h h -a ${s} ping`,
        `curl -s -u admin:${s} https://h/x`,
        `curl --user=admin:${s} https://h/x`,
      ][v % 6],
  },
  {
    name: '<password>SECRET</password>',
    secret: text(without(SPACED, '<&'), 8, 24),
    make: (s, v) => `<${pick(['password', 'adminPassword', 'ns:db_pass', 'secret', 'authToken'], v)}>${s}</${pick(['password', 'adminPassword', 'ns:db_pass', 'secret', 'authToken'], v)}>`,
  },
  {
    name: "IDENTIFIED BY 'SECRET'",
    secret: text(without(SPACED, "'"), 8, 24),
    make: (s, v) => `${pick(["CREATE USER 'u'@'%' IDENTIFIED BY", "grant all on x.* to 'u'@'%' identified by", 'IDENTIFIED WITH mysql_native_password BY'], v)} '${s}'`,
  },
  { name: 'Redis "AUTH" "SECRET"', secret: text(without(SPACED, '"'), 8, 24), make: (s) => `[0 127.0.0.1:60866] "AUTH" "${s}"` },
  {
    name: 'Authorization',
    secret: text([...ALNUM, ...chars('.~+/-_')], 16, 60),
    make: (s, v) => `${pick(['Authorization: Bearer', 'authorization: Basic', "'Authorization': 'Bearer", 'Bearer'], v)} ${s}`,
  },
  { name: 'Fernet token', secret: text(BASE64URL, 94, 140).map((s) => `gAAAAA${s}`), make: (s, v) => `${pick(['X-Auth-Token: ', 'token ', ''], v)}${s}` },
  {
    name: 'JWT',
    secret: fc.tuple(text(BASE64URL, 8, 40), text(BASE64URL, 8, 80), text(BASE64URL, 0, 60)).map(([h, p, sig]) => `eyJ${h}.eyJ${p}.${sig}`),
    make: (s) => `service account token ${s}`,
  },
  {
    name: 'Ceph key',
    secret: fc.uint8Array({ minLength: 26, maxLength: 26 }).map((b) => Buffer.concat([Buffer.from([1, 0]), Buffer.from(b)]).toString('base64')),
    make: (s, v) => [`\tkey = ${s}`, `--base64 ${s}`, `"key": "${s}"`, `${s}`][v % 4],
  },
  {
    name: 'PEM private key',
    secret: fc.array(text(BASE64, 64, 64), { minLength: 1, maxLength: 5 }).map((lines) => lines.join('\n')),
    make: (s, v) => `-----BEGIN ${pick(PEM_TYPES, v)}PRIVATE KEY-----\n${s}\n-----END ${pick(PEM_TYPES, v)}PRIVATE KEY-----`,
  },
  {
    name: 'PEM private key cut short',
    secret: fc.array(text(BASE64, 64, 64), { minLength: 1, maxLength: 5 }).map((lines) => lines.join('\n')),
    make: (s, v) => `-----BEGIN ${pick(PEM_TYPES, v)}PRIVATE KEY-----\n${s}`,
    atEnd: true,
  },
  {
    name: 'bare AWS secret key',
    secret: text(BASE64, 40, 40).filter((s) => /[A-Z]/.test(s) && /[a-z]/.test(s) && /\d/.test(s) && !/^\/|\/$|\/\//.test(s) && s.split('/').length <= 4),
    make: (s, v) => pick([`${s}`, `"${s}"`, `AKIAIOSFODNN7EXAMPLE ${s}`, `(${s})`], v),
  },
];

// What surrounds a secret in a log event: real words of OpenStack lines, and line breaks (the tail of a
// traceback, a continuation). An oslo debug suffix comes as it is written: function, then file:line.
const WORDS = [
  '2022-02-04',
  '10:23:11.045',
  '301502',
  'DEBUG',
  'ERROR',
  'nova.compute.manager',
  '[req-6a0e1d5a-1e36-4e0c-9a45-0f5c7b7e9c11',
  '-',
  '-]',
  'Running',
  'cmd',
  '(subprocess):',
  'failed',
  'for',
  'user',
  'nova',
  'with',
  'at',
  '10.5.0.11:5672',
  '7f3f5b2a-5d1e-4c3b-9a2f-1e0d9c8b7a6f',
  'token',
  'password',
  'Authorization',
  '{"a":',
  '1}',
  '"quoted"',
  "'single'",
  '(x)',
  'execute /usr/lib/python3/dist-packages/oslo_concurrency/processutils.py:384',
  '\n',
  '\n  ',
  'Traceback (most recent call last):\n  File "/usr/lib/x.py", line 1, in f\n    g()',
  'Connection',
  'refused',
];
const surrounding = fc.array(fc.constantFrom(...WORDS), { maxLength: 8 }).map((w) => w.join(' '));
const GAPS = [' ', '\t', ', ', '; ', ' | ', '\n', ': '];
const WRAPS: [string, string][] = [
  ['', ''],
  ['"', '"'],
  ["'", "'"],
  ['(', ')'],
  ['[', ']'],
  ['{', '}'],
];

interface Seeded {
  line: string;
  secret: string;
}

const seeded: fc.Arbitrary<Seeded> = fc
  .constantFrom(...FORMS)
  .chain((form) =>
    fc.record({
      form: fc.constant(form),
      secret: form.secret,
      v: fc.nat(1 << 10),
      before: surrounding,
      after: surrounding,
      gaps: fc.tuple(fc.constantFrom(...GAPS), fc.constantFrom(...(form.gapsAfter ?? GAPS))),
      wrap: fc.constantFrom(...WRAPS),
      json: form.noJson ? fc.constant(false) : fc.boolean(),
    }),
  )
  .map(({ form, secret, v, before, after, gaps, wrap, json }) => {
    const carrier = form.atEnd ? form.make(secret, v) : wrap[0] + form.make(secret, v) + wrap[1];
    let line = (before ? before + gaps[0] : '') + carrier + (form.atEnd || !after ? '' : gaps[1] + after);
    // As a Docker json-file or JSON-formatted logger writes it: quotes, backslashes and line breaks escaped.
    if (json) line = JSON.stringify({ message: line }).slice(0, -1) + ', "level": "INFO"}';
    return { line, secret: json ? JSON.stringify(secret).slice(1, -1) : secret };
  });

/** The pieces of `secret` (6 characters and more) that are in `out` although the input held them only inside the secret. */
function leaks(input: string, out: string, secret: string): string[] {
  const outside = input.split(secret).join('\0');
  const found: string[] = [];
  for (let i = 0; i + 6 <= secret.length; i++) {
    const piece = secret.slice(i, i + 6);
    if (!piece.includes('\n') && out.includes(piece) && !outside.includes(piece)) found.push(piece);
  }
  return found;
}

describe('redact: no seeded secret survives', () => {
  it('in a whole event', () => {
    fc.assert(
      fc.property(seeded, ({ line, secret }) => {
        expect(line).toContain(secret);
        const out = redact(line);
        expect(leaks(line, out, secret)).toEqual([]);
        expect(out).toContain(MASK);
      }),
      { numRuns: 3000 },
    );
  });

  it('in the pieces the event was joined from, each masked with clipRanges (a secret split across CRI/Docker partials)', () => {
    fc.assert(
      fc.property(seeded, fc.array(fc.nat(), { maxLength: 6 }), ({ line, secret }, cuts) => {
        const ranges = secretRanges(line);
        const at = [...new Set([0, ...cuts.map((c) => c % (line.length + 1)), line.length])].sort((a, b) => a - b);
        const pieces = at.slice(1).map((end, i) => maskRanges(line.slice(at[i], end), clipRanges(ranges, at[i], end)));
        expect(leaks(line, pieces.join(''), secret)).toEqual([]);
        // Each piece on its own, too: none holds 6 characters of the secret.
        for (const p of pieces) expect(leaks(line, p, secret)).toEqual([]);
      }),
      { numRuns: 1000 },
    );
  });
});

// Fragments that send text through every rule, to build text the rules find hard.
const SOUP = [
  'password',
  'pass',
  'pw',
  'token',
  'secret',
  'Authorization',
  'Bearer',
  'Basic',
  '=',
  ':',
  ' ',
  '  ',
  '\t',
  '\n',
  '\n  ',
  '\r\n',
  '"',
  "'",
  '\\',
  '\\n',
  '\\"',
  '{',
  '}',
  '(',
  ')',
  '[',
  ']',
  '<',
  '>',
  '</',
  '<password>',
  '</password>',
  '&lt;',
  '&gt;',
  '@',
  '://',
  'http',
  'rabbit',
  'u',
  'x1',
  'S3!',
  '***',
  '****',
  'None',
  '--',
  '--os-password',
  '-p',
  '-a',
  '-P',
  '-u',
  'mysql',
  'rabbitmqctl',
  'add_user',
  'sshpass',
  'curl',
  'redis-cli',
  'AUTH',
  '"AUTH"',
  'ipmitool',
  'IDENTIFIED BY',
  'PASSWORD',
  'requirepass',
  '-----BEGIN PRIVATE KEY-----',
  '-----END PRIVATE KEY-----',
  'MIIEvQIBADANBgkqhkiG9w0BAQEFAASC',
  'AQBSdFhfAAAAABAAsfXGLdkeCx1uBXBVrnFkBA==',
  'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
  'eyJhbGciOiJIUzI1NiJ9',
  '.',
  'gAAAAA',
  'abcdefghij',
  '0123456789',
  '/',
  '|',
  '-',
  '_',
  ',',
  ';',
  '&',
  'log_opt_values /usr/lib/x.py:12',
  '{SHA256}',
  'File "',
  'PKIZ_',
  '514c9fca-8cbe-11e2-9c52-3bc8c7819472',
];
const soup = fc.array(fc.constantFrom(...SOUP), { maxLength: 40 }).map((parts) => parts.join(''));
const anyText = fc.oneof(
  soup,
  fc.string({ maxLength: 200 }),
  fc.string({ unit: 'grapheme', maxLength: 100 }),
  seeded.map((s) => s.line),
);

describe('redact: idempotent, and the ranges say what it masks', () => {
  it('a second pass changes nothing', () => {
    fc.assert(
      fc.property(anyText, (x) => {
        const once = redact(x);
        expect(redact(once)).toBe(once);
      }),
      { numRuns: 5000 },
    );
  });

  it('secretRanges: sorted, non-empty, apart (touching secrets are one range), inside the text; redact masks exactly them', () => {
    fc.assert(
      fc.property(anyText, (x) => {
        const ranges = secretRanges(x);
        let last = -1;
        for (const [s, e] of ranges) {
          expect(s).toBeGreaterThan(last);
          expect(e).toBeGreaterThan(s);
          expect(e).toBeLessThanOrEqual(x.length);
          last = e;
        }
        expect(redact(x)).toBe(maskRanges(x, ranges));
        if (ranges.length === 0) expect(redact(x)).toBe(x);
        else expect(redact(x).length).toBe(x.length - ranges.reduce((n, [s, e]) => n + e - s, 0) + MASK.length * ranges.length);
      }),
      { numRuns: 3000 },
    );
  });

  it('maskRanges takes ranges in any order, overlapping or out of the text; clipRanges cuts them to a piece', () => {
    const text = 'abcdefghij';
    expect(
      maskRanges(text, [
        [6, 8],
        [1, 3],
        [2, 4],
        [9, 40],
        [-5, 0],
      ]),
    ).toBe(`a${MASK}ef${MASK}i${MASK}`);
    expect(maskRanges(text, [])).toBe(text);
    const ranges: Range[] = [
      [1, 3],
      [5, 9],
    ];
    expect(clipRanges(ranges, 2, 7)).toEqual([
      [0, 1],
      [3, 5],
    ]);
    expect(clipRanges(ranges, 3, 5)).toEqual([]);
  });
});

describe('redact: linear time', () => {
  it('every regex of the module is free of super-linear backtracking (recheck, fixed seed: reproducible)', async () => {
    const unsafe: string[] = [];
    for (const re of REDACT_REGEXES) {
      // recheck's async check (its native agent, another process): checkSync blocked this worker for the whole of a
      // regex, and vitest ends the run when a worker does not answer for a minute (it happened on a busy machine).
      // No wall-clock timeout: on a busy machine a timeout would make the verdict depend on the load.
      const r = await check(re.source, re.flags.replace(/[gy]/g, ''), { randomSeed: 0, timeout: null, attackTimeout: null, incubationTimeout: null, seedingTimeout: null });
      if (r.status !== 'safe') unsafe.push(`/${re.source.slice(0, 80)}…/: ${r.status}${r.status === 'vulnerable' ? ` (${r.complexity.type}, attack ${r.attack.pattern})` : ''}`);
    }
    expect(unsafe).toEqual([]);
  }, 600_000);

  // Lines built against the slow paths: runs of blanks, separators, quotes and backslashes after keys, repeated
  // keys, flags, commands, tags and markers without their ends, long base64 runs; and the attack strings recheck
  // reported for some look-behind rules under other seeds (V8 runs them linearly).
  const ADVERSARIAL: Array<[string, (n: number) => string]> = [
    ['blanks after a key', (n) => 'password=' + ' '.repeat(n) + 'x'],
    ['blanks after a key, no value', (n) => 'password' + ' \t'.repeat(n)],
    ['keys', (n) => 'password='.repeat(n)],
    ['keys and blanks', (n) => 'token: '.repeat(n)],
    ['key words glued', (n) => 'db_pass'.repeat(n) + '=x'],
    ['quotes after a key', (n) => 'password="' + '\\"'.repeat(n)],
    ['backslashes', (n) => 'secret=' + '\\'.repeat(n)],
    ['braces', (n) => 'password={' + 'a{'.repeat(n)],
    ['next lines', (n) => 'password:\n '.repeat(n)],
    ['flags', (n) => '--password '.repeat(n)],
    ['continuations', (n) => '--os-password \\\n'.repeat(n)],
    ['password words', (n) => 'password '.repeat(n) + 'S3cret!'],
    ['URL schemes', (n) => 'a://'.repeat(n)],
    ['URL userinfo without host', (n) => 'rabbit://u:' + 'p@'.repeat(n)],
    ['https tokens', (n) => 'https://' + 'a'.repeat(n) + '@'],
    ['commands', (n) => 'mysql '.repeat(n) + '-px'],
    ['mysql arguments', (n) => 'mysql ' + '-p '.repeat(n)],
    ['unclosed quotes in a command', (n) => 'rabbitmqctl add_user ' + '"a '.repeat(n)],
    ['curl users', (n) => 'curl ' + '-u '.repeat(n)],
    ['opening tags', (n) => '<password>'.repeat(n) + '</'],
    ['tags with attributes', (n) => '<password ' + 'a="b" '.repeat(n)],
    ['escaped tags', (n) => '&lt;password&gt;'.repeat(n)],
    ['IDENTIFIED BY', (n) => 'identified by '.repeat(n) + "'"],
    ['AUTH', (n) => '"AUTH" '.repeat(n) + '"'],
    ['Authorization', (n) => 'Authorization: '.repeat(n)],
    ['bearer', (n) => 'Bearer '.repeat(n)],
    ['Fernet prefixes', (n) => 'gAAAAA'.repeat(n)],
    ['PKI prefixes', (n) => 'MII'.repeat(n)],
    ['JWT prefixes', (n) => 'eyJ.eyJ'.repeat(n)],
    ['Ceph prefixes', (n) => 'AQ'.repeat(n)],
    ['PEM BEGIN without END', (n) => '-----BEGIN PRIVATE KEY-----\n'.repeat(n)],
    ['PEM END without BEGIN', (n) => '-----END PRIVATE KEY-----'.repeat(n)],
    ['a long base64 run', (n) => 'Ab1/'.repeat(n)],
    ['base64 runs of 39', (n) => ('Ab1+'.repeat(10).slice(0, 39) + ' ').repeat(Math.ceil(n / 10))],
    ['recheck: authorization and backslashes', (n) => '\\' + 'O\\\\'.repeat(n) + '"\\'],
    ['recheck: key, separator, next line, quote', (n) => 'NTPWD=\n\t"*A'.repeat(n)],
    ['recheck: hex run after a flag', (n) => 'N' + 'EACBFE'.repeat(n) + '\x00' + 'EACB'.repeat(n) + 'B'],
    ['recheck: URL userinfo', (n) => '@' + ':,'.repeat(n) + '/:A:/\x00' + 'A://:'.repeat(n) + '%,' + 'A:%%%'.repeat(n)],
    ['recheck: debug suffix after a key', (n) => 'O' + '=PY:'.repeat(n) + '0' + 'APWD=A\t&.PY:0'.repeat(n) + '\n'],
  ];

  function cost(line: string): number {
    return (
      cpuNs(() => {
        for (let i = 0; i < 3; i++) redact(line);
      }) / 3
    );
  }

  it.each(ADVERSARIAL)('%s: 16× the line costs well under 256× the time (quadratic would)', (_, make) => {
    // Lines of about 32 KB and 512 KB (n is the number of repeats). Beyond that, lines packed with secret-shaped
    // tokens grow faster than linearly (2 MB of `mysql -p -p …`: 165 ms against 14 ms at 512 KB), from the
    // ranges' bookkeeping, not from a regex (all are proved linear above): a known limit, kept out of this bound.
    const n = Math.max(1, Math.round(32_000 / make(1).length));
    const small = make(n);
    const large = make(16 * n);
    cost(large); // warm up
    // Small and large alternate, so a burst of load on a busy machine falls on both (the unit tests run beside the
    // live OpenStack's); the best of each counts, with a floor of 1 ms for the small one.
    const best = bestAlternating(cost, small, large);
    // Linear is 16×; the bound leaves room for a busy machine and the garbage collector (a line with 70,000
    // secrets allocates as many ranges: the AUTH line measured 71× once during a full test run), and fails on
    // quadratic (256×).
    expect(best.large / Math.max(best.small, 1_000_000)).toBeLessThan(120);
    // And the 512 KB line takes well under the issue's budget of 1 s for a 1 MiB line.
    expect(best.large).toBeLessThan(500e6);
  });
});
