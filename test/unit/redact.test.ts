// The redactor on a seeded corpus (every fake secret carries a marker S3CRET-<n>-x), on lines that only look
// like they hold secrets, and on real OpenStack logs, which must come back unchanged.
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { MASK, redact } from '../../collectors/logs/redact.ts';

const fixture = (name: string) => readFileSync(new URL(`../fixtures/secrets/${name}`, import.meta.url), 'utf8');
const lines = (text: string) => text.split('\n').filter(Boolean);

/** The events of a corpus file: a line that starts with a date, and the lines after it that do not (a traceback). */
function events(text: string): string[] {
  const out: string[] = [];
  for (const line of lines(text)) {
    if (/^\d{4}-\d\d-\d\d /.test(line) || out.length === 0) out.push(line);
    else out[out.length - 1] += `\n${line}`;
  }
  return out;
}

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
// The seeded secrets of corpus.txt, numbered in order of appearance, by what carries them.
const MARKERS = [
  ...range(1, 16), // URL credentials: rabbit, amqp, mysql+pymysql, postgresql, http(s), redis; multi-host
  //                  transport_url; `@` and %-escapes in the password; tracebacks (multi-line events)
  ...range(17, 37), // key=value, key: value, "key": "value", 'key': 'value', {\"key\": \"value\"}, --flag value:
  //                   password, passwd, admin_password, adminPass, secret, token, auth_token, api_key,
  //                   credential, OS_PASSWORD, Password=…;, {PASSWORD=…}, (secret=…), quoted with blanks
  ...range(38, 45), // headers: X-Auth-Token, X-Subject-Token, X-Service-Token, Authorization: Bearer / Basic,
  //                   in curl -H "…", in python dict reprs and bare
  ...range(46, 50), // bare Fernet (also padded), PKI and PKIZ tokens, a Fernet token in "token": {"id": …}
  ...range(51, 57), // aws_secret_access_key, nested adminPass, *_secret, *_password, 'Token', X-Auth-Token
  //                   unquoted, a URL next to an already masked '****'
].map((n) => `S3CRET-${n}-x`);

describe('redact: seeded corpus', () => {
  const corpus = fixture('corpus.txt');
  const input = events(corpus);
  const expected = events(fixture('corpus.expected.txt'));

  it('seeds every listed marker exactly once, at least one per event, and none in the expected output', () => {
    expect(corpus.match(/S3CRET-\d+-x/g)).toEqual(MARKERS);
    expect(input.length).toBeGreaterThanOrEqual(40);
    expect(expected).toHaveLength(input.length);
    for (const event of input) expect(event).toMatch(/S3CRET-\d+-x/);
    expect(expected.join('\n')).not.toMatch(/S3CRET/);
    // The cases the corpus must hold: a secret inside a multi-line traceback, and two secrets on one line.
    expect(
      input.some((e) =>
        e
          .split('\n')
          .slice(1)
          .some((l) => l.includes('S3CRET-')),
      ),
    ).toBe(true);
    expect(input.some((e) => lines(e).some((l) => (l.match(/S3CRET-\d+-x/g) ?? []).length >= 2))).toBe(true);
  });

  it('lets no marker through', () => {
    const out = input.map(redact).join('\n');
    expect(MARKERS.filter((m) => out.includes(m))).toEqual([]);
  });

  it.each(input.map((event, i) => [i + 1, event, expected[i]]))('event %i: only the secrets are masked', (_n, event, want) => {
    expect(redact(event)).toBe(want);
  });

  it('leaves masked text as it is (a second pass changes nothing)', () => {
    for (const event of expected) expect(redact(event)).toBe(event);
    expect(expected.join('\n')).toContain(MASK);
  });
});

// Strings are values in JavaScript: `toBe` on an unchanged line is as close to "the same instance" as a test gets.
describe('redact: text without secrets comes back unchanged', () => {
  it.each(['not-secrets.log', 'clean-real-lines.log'])('%s', (name) => {
    const all = lines(fixture(name));
    // Not vacuous: many of these lines hold the words that send a line through the rules.
    expect(all.filter((l) => /password|token|secret|authoriz|:\/\//i.test(l)).length).toBeGreaterThanOrEqual(25);
    expect(all.filter((l) => redact(l) !== l)).toEqual([]);
  });

  it('every line of the bundled real logs (samples/hotsos-2022)', () => {
    const dir = new URL('../../samples/hotsos-2022/', import.meta.url);
    const files = ['nova-compute.log.1.gz', 'neutron-dhcp-agent.log.1', 'neutron-l3-agent.log.1', 'neutron-metadata-agent.log.1'];
    const all = files.flatMap((f) => {
      const raw = readFileSync(new URL(f, dir));
      return lines((f.endsWith('.gz') ? gunzipSync(raw) : raw).toString('utf8'));
    });
    expect(all.length).toBeGreaterThan(30_000);
    expect(all.filter((l) => redact(l) !== l)).toEqual([]);
  });
});
