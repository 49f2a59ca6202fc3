// The template miner (processors/templates/): variables masked by their form, a position that takes many values
// made `<*>` by the tree, stable ids, bounded state, its state as JSON, and time linear in the line.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { stableId } from '../../core/events.ts';
import { createDetector } from '../../detectors/engine.ts';
import { loadRules } from '../../detectors/rules.ts';
import { decodeMessage } from '../../processors/decode.ts';
import { MAX_TEMPLATE_CHARS, MAX_TOKEN_CHARS, MAX_TOKENS, maskMessage, maskTokens, mergeVariables, VAR } from '../../processors/templates/mask.ts';
import { MAX_PATTERNS, Miner, MinerState, templateGroup } from '../../processors/templates/miner.ts';
import { bestAlternating, cpuNs } from './timing.ts';

const UUID = '96abccce-8d1f-4e07-b6d1-4b2ab87e23b4';

describe('masking: variables by their form, never by a message of one product', () => {
  it.each([
    ['a uuid', `[instance: ${UUID}] Claim successful`, '[instance: <*>] Claim successful'],
    ['a hex id', 'project 54fadb412c4e40cdbaed9335e4c35a9e deleted', 'project <*> deleted'],
    ['a request id', `Returning 404 to req-${UUID}`, 'Returning <*> to <*>'],
    ['an IPv4 address and port', 'Connected to AMQP server on 10.0.0.11:5672 via [amqp] client', 'Connected to AMQP server on <*> via [amqp] client'],
    ['an IPv6 address', 'DHCP on fe80::f816:3eff:fe2b:1 port 547', 'DHCP on <*> port <*>'],
    ["a word with a digit (the rule's price: a constant like this is a variable too)", 'DHCPv6 client on x86_64', '<*> client on <*>'],
    ['an IPv6 address without a digit', 'bound to ::ffff', 'bound to <*>'],
    ['a MAC address', 'port fa:16:3e:aa:bb:cc bound', 'port <*> bound'],
    ['integers and floats', 'Took 19.05 seconds to build instance; -1 left', 'Took <*> seconds to build instance; <*> left'],
    ['durations and sizes', 'lock held 0.003s, freed 512MB', 'lock held <*>, freed <*>'],
    ['a path, with or without digits', 'Loading /etc/nova/nova.conf and /var/lib/nova/instances/_base/a489c868', 'Loading <*> and <*>'],
    ['a URL', 'GET http://controller:8774/v2.1/servers failed', 'GET <*> failed'],
    ['quoted values', `Lock "compute_resources" acquired by 'nova.compute.manager'`, `Lock "<*>" acquired by '<*>'`],
    ['key=value keeps its key', 'Final resource view: name=cp-1 phys_ram=64172MB used_vcpus=1 pci_stats=[]', 'Final resource view: name=<*> phys_ram=<*> used_vcpus=<*> pci_stats=[]'],
    ['a word glued to a variable keeps the word', `Creating event network-vif-plugged:${UUID} for instance ${UUID}`, 'Creating event network-vif-plugged:<*> for instance <*>'],
    ['punctuation around a value stays', "image x1 at (/var/lib/b): checking; host 'cp-1'.", "image <*> at (<*>): checking; host '<*>'."],
    ['variables joined by a blank or a colon are one', 'audit from 2017-05-16 05:00:00 to 2017-05-16 06:00:00. 87 instances', 'audit from <*> to <*>. <*> instances'],
    ['an HTTP request line', '10.11.10.1 "GET /v2/54fa/servers/detail HTTP/1.1" status: 200 len: 1893 time: 0.2477829', '<*> "GET <*>" status: <*> len: <*> time: <*>'],
    ['words, dotted names and punctuation stay', 'nova.compute.manager - Terminating instance | a => b []', 'nova.compute.manager - Terminating instance | a => b []'],
    ['blanks are one blank', '  a \t b\n c  ', 'a b c'],
  ])('%s', (_, message, template) => expect(maskMessage(message)).toBe(template));

  it('bounds a template whatever the line: MAX_TOKENS tokens, MAX_TEMPLATE_CHARS characters, long tokens are variables', () => {
    const words = Array.from({ length: 200_000 }, (_, i) => 'abcdefgh'.slice(i % 7)).join(' ');
    const tokens = maskTokens(words);
    expect(tokens).toHaveLength(MAX_TOKENS);
    expect(tokens.at(-1)).toBe(VAR);
    const wide = maskTokens(Array.from({ length: 40 }, () => 'x'.repeat(MAX_TOKEN_CHARS)).join(' '));
    expect(wide.join('').length).toBeLessThanOrEqual(MAX_TEMPLATE_CHARS + VAR.length);
    expect(wide.at(-1)).toBe(VAR);
    expect(maskMessage('a' + 'b'.repeat(MAX_TOKEN_CHARS) + ' c')).toBe('<*> c');
    expect(maskMessage('-'.repeat(1 << 20))).toBe(VAR);
    // Exactly MAX_TOKENS tokens: all kept.
    expect(maskTokens(Array.from({ length: MAX_TOKENS }, () => 'w').join(' '))).toEqual(Array.from({ length: MAX_TOKENS }, () => 'w'));
  });

  const PIECES = ['a', 'b', 'Z', '7', '0.5', ' ', '  ', '\t', ':', '=', '.', '-', '/', '//', '"', "'", '(', ')', '[', ']', '<*>', '<', '>', '*', 'fe80', '::', 'req-', 'x://', UUID];
  const message = fc.array(fc.constantFrom(...PIECES), { maxLength: 40 }).map((p) => p.join(''));

  it("is idempotent: a template's template is itself (the miner's texts go through the evaluation's normalisation unchanged)", () => {
    fc.assert(
      fc.property(message, (m) => {
        const t = maskMessage(m);
        expect(maskMessage(t)).toBe(t);
        expect(mergeVariables(t)).toBe(t);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('the miner', () => {
  it('gives a message the template of its form, with a stable id: a hash of the text', () => {
    const m = new Miner();
    const a = m.add(`[instance: ${UUID}] Took 19.05 seconds to build instance.`, { group: 'nova.compute.manager' });
    const b = m.add('[instance: 78dc1847-8848-49cc-933e-9239b12c9dcf] Took 0.48 seconds to build instance.', { group: 'nova.compute.manager' });
    expect(a).toEqual({ id: stableId('log-template', '[instance: <*>] Took <*> seconds to build instance.'), text: '[instance: <*>] Took <*> seconds to build instance.' });
    expect(b).toEqual(a);
    // Another miner (another processor, or this one after a restart) gives the same id.
    expect(new Miner().add(`[instance: ${UUID}] Took 3 seconds to build instance.`, { group: 'nova.compute.manager' }).id).toBe(a.id);
    expect(m.size).toBe(1);
  });

  it('keeps an enumeration (a few words at one position) and makes a position with many words a variable', () => {
    const m = new Miner(); // distinctValues 8
    const states = ['Started', 'Stopped', 'Paused', 'Resumed', 'Suspended'].map((s) => m.add(`VM ${s} (Lifecycle Event)`, { group: 'g' }).text);
    expect(states).toEqual(['VM Started (Lifecycle Event)', 'VM Stopped (Lifecycle Event)', 'VM Paused (Lifecycle Event)', 'VM Resumed (Lifecycle Event)', 'VM Suspended (Lifecycle Event)']);
    const users = ['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'grace'].map((u) => m.add(`User ${u} logged in`, { group: 'g' }).text);
    expect(new Set(users).size).toBe(7); // seven names: still seven templates
    expect(m.add('User heidi logged in', { group: 'g' }).text).toBe('User <*> logged in'); // the eighth: one template
    expect(m.add('User ivan logged in', { group: 'g' }).text).toBe('User <*> logged in');
    expect(m.match('User alice logged in', 'g')?.text).toBe('User <*> logged in');
    expect(m.templates().find((t) => t.text === 'User <*> logged in')?.count).toBe(9);
    expect(m.size).toBe(5 + 1);
    expect(m.generalisations).toBe(1);
  });

  it('generalises another position of a template already general; the threshold is an option', () => {
    const m = new Miner({ distinctValues: 2 });
    for (const [user, where] of [
      ['alice', 'office'],
      ['bob', 'office'],
      ['carol', 'home'],
    ])
      m.add(`User ${user} logged in from ${where}`, { group: 'g' });
    expect(m.templates().map((t) => t.text)).toEqual(['User <*> logged in from office', 'User carol logged in from home']);
    // `User <*> … home` is made, and it and `User <*> … office` differ at one position only: one template.
    expect(m.add('User dave logged in from home', { group: 'g' }).text).toBe('User <*> logged in from <*>');
    expect(m.templates().map((t) => [t.text, t.count])).toEqual([['User <*> logged in from <*>', 4]]);
    expect(m.generalisations).toBe(3);
  });

  it('splits first by group (the logger): the same text in two loggers is two templates of one id, generalised apart', () => {
    const m = new Miner({ distinctValues: 2 });
    const a = m.add('Stopping agent', { group: 'neutron.agent.l3' });
    const b = m.add('Stopping agent', { group: 'neutron.agent.dhcp' });
    expect(b).toEqual(a);
    expect(m.templates().map((t) => t.group)).toEqual(['neutron.agent.dhcp', 'neutron.agent.l3']);
    m.add('Stopping worker', { group: 'neutron.agent.l3' });
    expect(m.match('Stopping server', 'neutron.agent.l3')?.text).toBe('Stopping <*>');
    expect(m.match('Stopping server', 'neutron.agent.dhcp')).toBeUndefined();
  });

  it('keeps first and last seen in event time, and labels (bounded)', () => {
    const m = new Miner();
    m.add('disk full', { time: '2022-02-04T10:00:00.000Z', labels: { service: 'nova-compute', level: 'ERROR' } });
    m.add('disk full', { time: '2022-02-04T09:00:00.000Z', labels: { service: 'cinder-volume', level: 'ERROR' } });
    for (let i = 0; i < 40; i++) m.add('disk full', { labels: { service: `svc-${'x'.repeat(i)}` } });
    const [t] = m.templates();
    expect(t).toMatchObject({ text: 'disk full', count: 42, first_seen: '2022-02-04T09:00:00.000Z', last_seen: '2022-02-04T10:00:00.000Z' });
    expect(t.labels.level).toEqual(['ERROR']);
    expect(t.labels.service).toHaveLength(16);
  });

  it('gives each line the same template whoever mines it (determinism), the same set whatever the order when masking decides', () => {
    const lines = Array.from({ length: 300 }, (_, i) => `worker ${i % 7} took ${i * 0.37}s on host-${i % 3} (${['ok', 'retry', 'fail'][i % 3]})`);
    const once = lines.map((l) => new Miner().add(l).id);
    const shared = new Miner();
    expect(lines.map((l) => shared.add(l).id)).toEqual(once);
    fc.assert(
      fc.property(fc.shuffledSubarray(lines, { minLength: lines.length }), (order) => {
        const m = new Miner();
        for (const l of order) m.add(l);
        expect(lines.map((l) => m.match(l)?.id)).toEqual(once);
      }),
      { numRuns: 20 },
    );
  });
});

describe('bounded state', () => {
  const word = (i: number) => i.toString(26).replace(/[0-9]/g, (d) => 'qrstuvwxyz'[Number(d)]); // a different word, no digit

  it('holds at most maxTemplates; templates seen once go first, so a flood of one-offs keeps those that recur', () => {
    // A template is kept through the flood once it has had a second line: here every 20 lines, within the 50.
    const m = new Miner({ maxTemplates: 50 });
    const recurring = ['Heartbeat sent', 'Periodic task ran', 'Lock acquired'];
    for (let i = 0; i < 5000; i++) {
      m.add(`Unexpected token ${word(i)} in request body of ${word(i + 7)}`, { group: 'api' });
      if (i % 20 === 0) for (const r of recurring) m.add(r, { group: 'agent' });
      expect(m.size).toBeLessThanOrEqual(50);
    }
    expect(m.evictions).toBeGreaterThan(4900);
    for (const r of recurring) expect(m.match(r, 'agent')?.text).toBe(r);
    // At capacity, a new template is not its own victim: it is there for its second line.
    const fresh = m.add('Brand new failure', { group: 'agent' });
    expect(m.match('Brand new failure', 'agent')).toEqual(fresh);
  });

  it('when every template recurs, the least recently seen goes', () => {
    const m = new Miner({ maxTemplates: 3 });
    for (const t of ['a one', 'b two', 'c three']) (m.add(t), m.add(t));
    m.add('a one'); // b is now the least recently seen
    m.add('d four');
    expect(m.templates().map((t) => t.text)).toEqual(['a one', 'c three', 'd four']);
    expect(m.evictions).toBe(1);
  });

  it('tries at most MAX_PATTERNS generalisation patterns a split', () => {
    const m = new Miner({ distinctValues: 2 });
    // Templates of 3 tokens, each generalised at one of many (position-set) patterns: p0 x y, x p1 y, … in one split.
    for (let t = 0; t < 40; t++) {
      const base = Array.from({ length: 40 }, (_, i) => `w${word(t * 40 + i)}`.replace(/\d/g, ''));
      for (const v of ['one', 'two']) {
        const tokens = [...base];
        tokens[t] = v;
        m.add(tokens.join(' '), { group: 'g' });
      }
    }
    const patterns = (m as any).patterns as Map<string, unknown[]>;
    for (const list of patterns.values()) expect(list.length).toBeLessThanOrEqual(MAX_PATTERNS);
    expect(m.generalisations).toBe(MAX_PATTERNS);
  });
});

describe('state as JSON', () => {
  it('exports and imports: the same templates, counts, times and ids, and the next line finds its template', () => {
    const m = new Miner({ distinctValues: 2 });
    m.add('User alice logged in', { group: 'keystone', time: '2024-01-01T00:00:00.000Z', labels: { service: 'keystone' } });
    m.add('User bob logged in', { group: 'keystone', time: '2024-01-02T00:00:00.000Z' });
    m.add('Took 3 s', { group: 'nova' });
    const state = JSON.parse(JSON.stringify(m.export()));
    expect(MinerState.parse(state)).toEqual(state);
    const restarted = new Miner({ distinctValues: 2 });
    restarted.import(state);
    expect(restarted.export()).toEqual(state);
    expect(restarted.templates()).toEqual(m.templates());
    expect(restarted.add('User carol logged in', { group: 'keystone' })).toEqual(m.add('User carol logged in', { group: 'keystone' }));
  });

  it('refuses a state that is not one, naming the field', () => {
    expect(() => new Miner().import({ version: 1, templates: [{ group: 'g', general: [], count: 1 }] })).toThrow(/tokens/);
    expect(() => new Miner().import({ version: 2, templates: [] })).toThrow(/version/);
  });
});

describe('time linear in the line', () => {
  // Built to be hostile to a tokenizer: long runs of what a token is made of, of what splits it, of punctuation
  // around it, of blanks, of placeholders.
  const HOSTILE: [string, (n: number) => string][] = [
    ['one token of digits', (n) => '1'.repeat(n)],
    ['short tokens', (n) => 'a '.repeat(n)],
    ['blanks, then a word', (n) => ' '.repeat(n) + 'x'],
    ['pieces split at colons', (n) => 'a1:'.repeat(n)],
    ['pieces split at equals', (n) => 'k=1'.repeat(n)],
    ['opening punctuation', (n) => '('.repeat(n) + 'x'],
    ['closing punctuation', (n) => 'x' + ')'.repeat(n)],
    ['quotes', (n) => "'".repeat(n)],
    ['placeholders', (n) => '<*>'.repeat(n)],
    ['placeholders and joiners', (n) => '<*>.'.repeat(n)],
    ['tokens of the longest size', (n) => ('a1:'.repeat(42) + ' ').repeat(Math.ceil(n / 43))],
    ['colons of an address', (n) => 'f:'.repeat(n)],
    ['scheme-like', (n) => 'a:/'.repeat(n)],
  ];

  function cost(line: string): number {
    const m = new Miner();
    return (
      cpuNs(() => {
        for (let i = 0; i < 3; i++) m.add(line, { group: 'g' });
      }) / 3
    );
  }

  it.each(HOSTILE)('%s: 16× the line costs well under 256× the time (quadratic would)', (_, make) => {
    const n = Math.max(1, Math.round(32_000 / make(1).length));
    const small = make(n);
    const large = make(16 * n);
    cost(large); // warm up
    // Small and large alternate (a burst of load falls on both); the best of each counts, the small one with a
    // floor of 1 ms. Linear is 16×; the bound leaves room for a busy machine and fails on quadratic.
    const best = bestAlternating(cost, small, large);
    expect(best.large / Math.max(best.small, 1_000_000)).toBeLessThan(120);
  });
});

describe("the processor's decode table", () => {
  const raw = (text: string, offset: number) => ({ v: 1, host: 'cmp-1', path: '/var/log/nova/nova-compute.log', file_id: 'f', offset, text, read_at: '2030-01-01T00:00:00.000Z' });
  const ctx = { timezone: 'UTC', source: { topic: 'logs', partition: 0, offset: '1' } };

  it('gives a log document its template when the processor passes its miner, keyed by the logger', () => {
    const miner = new Miner();
    const line = `2017-05-16 00:00:05.185 2931 INFO nova.virt.libvirt.imagecache [req-1 - - - - -] image ${UUID} at (/var/lib/nova/instances/_base/a489): checking`;
    const d = decodeMessage('logs', raw(line, 0), { ...ctx, templates: miner });
    const doc = (d.document?.doc ?? {}) as any;
    expect(doc.log.template).toEqual({ id: stableId('log-template', 'image <*> at (<*>): checking'), text: 'image <*> at (<*>): checking' });
    expect(d.event).toMatchObject({ kind: 'log', doc: { log: { template: doc.log.template } } });
    expect(miner.templates()).toMatchObject([{ group: 'nova.virt.libvirt.imagecache', count: 1, first_seen: '2017-05-16T00:00:05.185Z' }]);
    expect(templateGroup(doc)).toBe('nova.virt.libvirt.imagecache');
    // A line in no known format: the service is the first split.
    const plain = decodeMessage('logs', raw('kernel: Out of memory: Killed process 4242', 200), { ...ctx, templates: miner });
    expect((plain.document?.doc as any).log.template.text).toBe('kernel: Out of memory: Killed process <*>');
    expect(miner.templates().map((t) => t.group)).toContain('nova-compute');
  });

  it('leaves documents without a template when given no miner', () => {
    expect((decodeMessage('logs', raw('a b c', 0), ctx).document?.doc as any).log.template).toBeUndefined();
  });
});

describe('the new-error-pattern rule', () => {
  const rule = loadRules().find((r) => r.id === 'new-error-pattern')!;
  const doc = (at: string, level: string, message: string, template?: { id: string; text: string }) => ({
    '@timestamp': at,
    message,
    log: { level, logger: 'nova.compute.manager', file: { path: '/var/log/nova/nova-compute.log' }, offset: 0, ...(template ? { template } : {}) },
    host: { name: 'cmp-1' },
    service: { name: 'nova-compute' },
    event: { id: `e-${at}` },
  });

  it("groups by the processor's template when the document has one (and mines its own only when it has none)", () => {
    const d = createDetector(rule);
    expect(d.on({ kind: 'log', doc: doc('2022-03-01T00:00:00.000Z', 'INFO', 'started') })).toEqual([]);
    const template = { id: 'processor-id', text: 'Disk <*> failed' };
    const [a] = d.on({ kind: 'log', doc: doc('2022-03-02T12:00:00.000Z', 'ERROR', 'Disk 3 failed', template) });
    expect(a.alert.group).toEqual({ 'service.name': 'nova-compute', 'log.template.id': 'processor-id' });
    expect(a.alert.labels).toEqual({ 'log.template.text': 'Disk <*> failed' });
    const [b] = d.on({ kind: 'log', doc: doc('2022-03-02T12:00:01.000Z', 'CRITICAL', 'Disk 4 is on fire') });
    expect(b.alert.group['log.template.id']).toBe(stableId('log-template', 'Disk <*> is on fire'));
  });
});
