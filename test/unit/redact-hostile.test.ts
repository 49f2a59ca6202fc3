// The secrets that survived masking (issue 11), one fixture file per form in test/fixtures/hostile/secrets/: each
// holds events (separated by an empty line), then a line `=== masked ===`, then the same events as they must come
// out. Events that must come out unchanged (prose, ids, hashes next to the secret forms) are in the same files.
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { MASK, maskRanges, redact, secretRanges } from '../../collectors/logs/redact.ts';

const DIR = new URL('../fixtures/hostile/secrets/', import.meta.url);
const SEPARATOR = '\n=== masked ===\n';

interface Case {
  file: string;
  event: string;
  masked: string;
}

function readCases(file: string): Case[] {
  const text = readFileSync(new URL(file, DIR), 'utf8').replace(/\n$/, '');
  const parts = text.split(SEPARATOR);
  if (parts.length !== 2) throw new Error(`${file}: expected one line "=== masked ===", found ${parts.length - 1}`);
  const [events, masked] = parts.map((p) => p.split('\n\n'));
  if (events.length !== masked.length) throw new Error(`${file}: ${events.length} events but ${masked.length} masked events`);
  return events.map((event, i) => ({ file, event, masked: masked[i] }));
}

const FILES = readdirSync(DIR)
  .filter((f) => f.endsWith('.log'))
  .sort();
const CASES = FILES.flatMap(readCases);

describe('hostile secrets: the fixture folder', () => {
  it('has a file per form of the issue, each with a secret to mask, and a README that lists every file', () => {
    // The forms issue 11 lists, and the ones added for a careful SRE.
    const forms = [
      'mysql-p',
      'rabbitmqctl-password',
      'xml-password-element',
      'key-several-blanks',
      'password-no-separator',
      'password-in-braces',
      'pass-key',
      'url-token-userinfo',
      'ceph-key',
      'pem-private-key',
      'aws-bare-secret-key',
      'value-on-next-line',
      'url-cut-short',
      'identified-by',
      'redis',
      'os-password-export',
      'jwt',
      'sshpass-ipmitool-curl',
    ];
    expect(FILES.map((f) => f.replace(/\.log$/, ''))).toEqual([...forms].sort());
    for (const file of FILES) expect(CASES.some((c) => c.file === file && c.masked !== c.event)).toBe(true);
    const readme = readFileSync(new URL('README.md', DIR), 'utf8');
    const listed = [...readme.matchAll(/^\| `([\w.-]+\.log)` \|/gm)].map((m) => m[1]).sort();
    expect(listed).toEqual(FILES);
  });
});

describe('hostile secrets: each event comes out as the fixture says', () => {
  it.each(CASES.map((c, i) => [`${c.file} #${CASES.filter((d, j) => d.file === c.file && j < i).length + 1}`, c]))('%s', (_name, c) => {
    const { event, masked } = c as Case;
    expect(redact(event)).toBe(masked);
    // The same through the ranges the collector uses to mask the raw pieces of an event.
    expect(maskRanges(event, secretRanges(event))).toBe(masked);
    // A second pass changes nothing.
    expect(redact(masked)).toBe(masked);
    // What was masked is gone: no 6 characters of it are left that the event did not also hold elsewhere.
    for (const [s, e] of secretRanges(event)) {
      const secret = event.slice(s, e);
      const rest = event.slice(0, s) + '\0' + event.slice(e);
      for (let i = 0; i + 6 <= secret.length; i++) {
        const piece = secret.slice(i, i + 6);
        if (!rest.includes(piece)) expect(masked).not.toContain(piece);
      }
    }
    if (masked === event) expect(secretRanges(event)).toEqual([]);
    else expect(masked).toContain(MASK);
  });
});
