// `stackwatch templates` and the templates `stackwatch parse` puts on documents, as an operator meets them.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { stackwatch } from './run.ts';
import { parseCsv } from '../../processors/templates/accuracy.ts';

const LOGHUB = new URL('../fixtures/loghub-OpenStack_2k.log', import.meta.url).pathname;
const cli = (...args: string[]) => stackwatch(args);
const lines = (s: string) =>
  s
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));

describe('stackwatch templates', () => {
  it('has --help', async () => {
    const r = await cli('templates', '--help');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^Usage: stackwatch templates/);
    expect((await cli('--help')).stdout).toMatch(/^ {2}templates +mine the log templates/m);
  });

  it("prints Loghub's 43 OpenStack templates, the most frequent first, with counts, times, services, levels and loggers", async () => {
    const r = await cli('templates', LOGHUB);
    expect(r.status).toBe(0);
    expect(r.stderr).toBe('stackwatch templates: 2000 events from 1 file(s), 43 template(s)\n');
    const rows = lines(r.stdout);
    expect(rows).toHaveLength(43);
    expect(rows.map((t) => t.count).reduce((a, b) => a + b)).toBe(2000);
    expect(rows.map((t) => t.count)).toEqual([...rows.map((t) => t.count)].sort((a, b) => b - a));
    expect(rows[0]).toEqual({
      id: expect.stringMatching(/^[\w-]{27}$/),
      text: '<*> "GET <*>" status: <*> len: <*> time: <*>',
      count: 931,
      first_seen: '2017-05-16T00:00:00.008Z',
      last_seen: '2017-05-16T00:14:47.687Z',
      services: ['nova-api'],
      levels: ['INFO'],
      loggers: ['nova.metadata.wsgi.server', 'nova.osapi_compute.wsgi.server'],
    });
    expect(Object.keys(rows[0])).toEqual(['id', 'text', 'count', 'first_seen', 'last_seen', 'services', 'levels', 'loggers']);
    expect(rows.find((t) => t.levels.includes('WARNING') && t.text.startsWith('Unknown base file'))).toMatchObject({ count: 30, services: ['nova-compute'] });
  });

  it('prints a table with --format table', async () => {
    const r = await cli('templates', '--format', 'table', LOGHUB);
    expect(r.status).toBe(0);
    const out = r.stdout.trimEnd().split('\n');
    expect(out[0]).toMatch(/^COUNT {2}FIRST SEEN +LAST SEEN +LEVELS +SERVICES +TEMPLATE$/);
    expect(out[1]).toMatch(/^ {2}931 {2}2017-05-16T00:00:00\.008Z {2}2017-05-16T00:14:47\.687Z {2}INFO +nova-api +<\*> "GET <\*>" status/);
    expect(out).toHaveLength(44);
  });

  it('names a file it cannot read, reads the others, and exits 1; says what a bound evicted', async () => {
    const r = await cli('templates', '--max-templates', '20', '/nonexistent/nova.log', LOGHUB);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('stackwatch templates: /nonexistent/nova.log: cannot read: no such file');
    // 20 held, 19 printed: two loggers' HTTP access templates are one text, one id.
    expect(r.stderr).toMatch(/2000 events from 2 file\(s\), 19 template\(s\), \d+ evicted at --max-templates 20 .*1 file\(s\) not read to the end/);
    expect(lines(r.stdout)).toHaveLength(19);
  });

  it.each([
    [[], 'templates: name at least one FILE'],
    [['--format', 'xml', LOGHUB], '--format: expected json or table, got "xml"'],
    [['--max-templates', '0', LOGHUB], '--max-templates: expected a whole number ≥ 1, got "0"'],
  ])('exits 2 with one line for a usage error: %j', async (args, message) => {
    const r = await cli('templates', ...args);
    expect(r.status).toBe(2);
    expect(r.stderr).toBe(`stackwatch: ${message}${message.endsWith('FILE') ? ' (see stackwatch templates --help)' : ''}\n`);
  });
});

describe('stackwatch parse', () => {
  it("puts log.template.id and log.template.text on every document: Loghub's templates, one id per text", async () => {
    const r = await cli('parse', '--host', 'h', LOGHUB);
    expect(r.status).toBe(0);
    // In file order: each source file named in the lines is a stream of its own, whose events end apart.
    const docs = lines(r.stdout).sort((a, b) => a.log.offset - b.log.offset);
    const truth = parseCsv(readFileSync(new URL('../fixtures/loghub/OpenStack_2k.log_structured_corrected.csv', import.meta.url), 'utf8'));
    expect(docs).toHaveLength(2000);
    // The corrected labels write the variables as the miner does, but for a uuid glued to a word and a timestamp.
    const differ = docs.filter((d, i) => d.log.template.text !== truth[i].EventTemplate);
    expect(differ.map((d) => d.log.template.text)).toEqual(differ.map(() => expect.stringMatching(/^(Creating event network-vif-plugged:<\*> |Running instance usage audit)/)));
    expect(differ).toHaveLength(23);
    const ids = new Map<string, string>();
    for (const d of docs) expect(ids.set(d.log.template.text, d.log.template.id).get(d.log.template.text)).toBe(d.log.template.id);
    expect(new Set(ids.values()).size).toBe(43);
  });
});
