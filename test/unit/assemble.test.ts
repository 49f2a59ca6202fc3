// Bytes → events on real logs: line splitting (offsets, CRLF, caps, bytes that are not text), multi-line folding
// of the 2022 nova-compute tracebacks, size caps, and the acceptance counts of issue 3.
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { EventAssembler, LineSplitter, type AssembledEvent, type UnusableLine } from '../../collectors/logs/assemble.ts';

const NOVA = gunzipSync(readFileSync(new URL('../../samples/hotsos-2022/nova-compute.log.1.gz', import.meta.url)));

function split(chunks: Buffer[], max = 1024, end = true) {
  const lines: [number, string, boolean][] = [];
  const rejected: UnusableLine[] = [];
  const s = new LineSplitter(
    0,
    max,
    (o, t, cut) => lines.push([o, t, cut]),
    (u) => rejected.push(u),
  );
  for (const c of chunks) s.write(c);
  if (end) s.end();
  return { lines, rejected, consumed: s.consumed };
}

function assemble(data: Buffer, maxEventBytes = 1024 * 1024, chunk = 64 * 1024) {
  const events: AssembledEvent[] = [];
  const a = new EventAssembler({ maxEventBytes }, (e) => events.push(e));
  const s = new LineSplitter(
    0,
    maxEventBytes,
    (o, t, cut, plain) => a.push(o, t, cut, plain),
    () => {},
  );
  for (let i = 0; i < data.length; i += chunk) s.write(data.subarray(i, i + chunk));
  s.end();
  a.flush();
  return events;
}

describe('LineSplitter', () => {
  it('gives byte offsets across chunk boundaries, strips CR, skips empty lines, keeps an unfinished line back', () => {
    const { lines, consumed } = split([Buffer.from('ab\r\n\nç'), Buffer.from('d\npart')], 1024, false);
    expect(lines).toEqual([
      [0, 'ab', false],
      [5, 'çd', false],
    ]);
    expect(consumed).toBe(9);
    expect(split([Buffer.from('ab\r\n\nçd\npart')]).lines.at(-1)).toEqual([9, 'part', false]);
  });

  it('cuts a line longer than the cap and skips the rest of it, across chunks', () => {
    const long = Buffer.alloc(5000, 'x');
    const { lines } = split([Buffer.from('first\n'), long.subarray(0, 3000), long.subarray(3000), Buffer.from('\nnext\n')], 1024);
    expect(lines.map(([o, t, cut]) => [o, t.length, cut])).toEqual([
      [0, 5, false],
      [6, 1024, true],
      [5007, 4, false],
    ]);
  });

  it('rejects lines that are not text, with the reason and the bytes, and keeps the lines around them', () => {
    const bad = Buffer.concat([Buffer.from('good one\n'), Buffer.from([0x66, 0xff, 0xfe, 0x0a]), Buffer.from('nul\0here\nlast\n')]);
    const { lines, rejected } = split([bad]);
    expect(lines.map((l) => l[1])).toEqual(['good one', 'last']);
    expect(rejected.map((r) => [r.offset, r.reason, r.bytes.length])).toEqual([
      [9, 'invalid UTF-8 in line', 3],
      [13, 'NUL byte in line: not text', 8],
    ]);
  });
});

describe('EventAssembler caps', () => {
  it('never keeps half a secret: the token a cut goes through is dropped before masking', () => {
    const secret = 'rabbit://openstack:S3CRET-cut-x@10.0.0.5:5672/';
    const line = `2022-02-04 09:37:50.159 1 ERROR oslo.messaging._drivers.impl_rabbit [-] transport_url ${secret}`;
    const cutAt = line.indexOf('S3CRET') + 3; // the cut lands inside the password, before its "@"
    const events: AssembledEvent[] = [];
    const a = new EventAssembler({ maxEventBytes: cutAt }, (e) => events.push(e));
    a.push(0, line);
    a.flush();
    expect(events[0].truncated).toBe(true);
    expect(events[0].text).not.toContain('S3C');
    expect(events[0].text.endsWith('transport_url ')).toBe(true);
  });
});

describe('EventAssembler on the 2022 nova-compute log', () => {
  const lines = NOVA.toString('utf8').split('\n').filter(Boolean);
  const events = assemble(NOVA);

  it('makes one event per line with a full oslo header and a [...] context block (issue 3 acceptance)', () => {
    const starts = lines.filter((l) => /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3} \d+ [A-Z]+ \S+ \[/.test(l));
    expect(events.length).toBe(starts.length);
    expect(events.map((e) => e.text.split('\n')[0])).toEqual(starts);
  });

  it('folds every traceback and continuation line into the event that started it, in order', () => {
    const folded = events.flatMap((e) => e.text.split('\n'));
    expect(folded).toEqual(lines);
    const withTrace = events.filter((e) => e.text.includes('\n') && e.text.includes('Traceback (most recent call last):'));
    // No traceback line starts an event; chained exceptions ("During handling of the above exception…") keep
    // two tracebacks in one event.
    expect(events.filter((e) => e.text.split('\n')[0].includes('Traceback (most recent call last)'))).toEqual([]);
    expect(withTrace.length).toBeGreaterThan(50);
    // "Error updating resources": a multi-line message (the failed ceph command's output), then its traceback.
    const ceph = withTrace.find((e) => e.text.includes('Error updating resources for node'))!.text.split('\n');
    expect(ceph[0]).toMatch(/ERROR nova\.compute\.manager \[req-[^\]]+\] Error updating resources for node compute4\.mylab\.home\.: /);
    expect(ceph[1]).toBe('Command: ceph df --format=json');
    expect(ceph.findIndex((l) => l.endsWith('ERROR nova.compute.manager Traceback (most recent call last):'))).toBeGreaterThan(1);
  });

  it('gives events the offsets of their first line', () => {
    const e = events[100];
    expect(NOVA.subarray(e.offset, e.offset + 40).toString()).toBe(e.text.slice(0, 40));
  });

  it('cuts an event at the size cap, marks it truncated, and does not swallow the next event', () => {
    const big = events.find((e) => e.text.length > 3000)!;
    const capped = assemble(NOVA, 2048);
    const same = capped.find((e) => e.offset === big.offset)!;
    expect(same.truncated).toBe(true);
    expect(same.text.length).toBeLessThanOrEqual(2048);
    expect(big.text.startsWith(same.text)).toBe(true);
    expect(capped.length).toBe(events.length);
  });
});
