// parseOsloHeader reads the oslo.log header by hand (issue 16: a fifth of the parse's time went to HEADER's match and
// its groups). Its definition is still the regex: this test checks, on lines made to sit on every edge of it (digits
// missing or extra, fractions of 0-7 digits, `,` for `.`, every level and near misses, blanks of every kind, context
// blocks with and without ids), that the hand-written reader finds exactly what the regex-based reader of commit
// 109d65d found. The oracle below is that reader, kept here as the specification.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseOsloHeader, PARSE_REGEXES, toUtcIso } from '../../processors/parse-log.ts';

const absent = (v: string | undefined) => (v === undefined || v === '-' || v === 'None' || v === '' ? undefined : v);

/** The regex-based reader (109d65d). */
function oracle(line: string, timezone = 'UTC') {
  const m = PARSE_REGEXES.HEADER.exec(line);
  if (!m) return undefined;
  const [, date, time, frac = '0', pid, level, logger, rest] = m;
  const h: Record<string, unknown> & { message: string } = { timestamp: toUtcIso(date, time, frac, timezone), pid: Number(pid), level, logger, message: rest };
  if (rest.startsWith('[')) {
    const close = rest.indexOf(']');
    if (close > 0) {
      const context = rest.slice(1, close);
      if (context !== '-' && context !== '') {
        const parts = context.split(' ');
        let i = 0;
        if (parts.length > 1 && (parts[0] === 'None' || parts[0].startsWith('req-')) && parts[1].startsWith('req-')) {
          h.globalRequestId = absent(parts[0]);
          i = 1;
        }
        if (parts[i]?.startsWith('req-')) {
          h.requestId = parts[i];
          h.userId = absent(parts[i + 1]);
          h.projectId = absent(parts[i + 2]);
        }
      }
      h.message = rest.slice(rest.charCodeAt(close + 1) === 32 ? close + 2 : close + 1);
    }
  }
  if (h.message.startsWith('[instance: ')) {
    const inst = PARSE_REGEXES.INSTANCE.exec(h.message);
    if (inst) h.instanceId = inst[1];
  }
  return h;
}

/** Drops the keys whose value is undefined (the two readers may or may not set them). */
const defined = (o: object | undefined) => (o === undefined ? undefined : Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)));

/** `right` most of the time, one of `wrong` now and then. */
const mostly = <T>(right: fc.Arbitrary<T>, ...wrong: fc.Arbitrary<T>[]) => fc.oneof({ arbitrary: right, weight: 12 }, ...wrong.map((arbitrary) => ({ arbitrary, weight: 1 })));
const digits = (min: number, max: number) => fc.stringMatching(new RegExp(`^[0-9]{${min},${max}}$`));
const blank = mostly(fc.constant(' '), fc.constantFrom('  ', '\t', '\u00a0', '\u2028', '\u3000', '\ufeff', ''));
const level = mostly(fc.constantFrom('TRACE', 'DEBUG', 'INFO', 'AUDIT', 'WARNING', 'WARN', 'ERROR', 'CRITICAL', 'FATAL'), fc.constantFrom('INF', 'WARNINGS', 'Error', 'ERRORX', 'E', ''));
const id = fc.constantFrom('req-20cdcbb8-8ced-47c3-b244-0321b23fbd28', 'None', '-', 'req-x', 'u1', 'p1', '', 'req-');
const context = fc.oneof(
  fc.array(id, { maxLength: 8 }).map((ids) => `[${ids.join(' ')}]`),
  fc.constantFrom('[-]', '[]', '[instance: 0e3bd5b2-4a2f-4a1c-9d2b-7f4e5c6d7e8f]', '[', ']', ''),
);
const message = fc.constantFrom('', 'Connection failed', '[instance: 0e3bd5b2-4a2f-4a1c-9d2b-7f4e5c6d7e8f] Took 1 s', ' x ', 'a\nb', '\u2029tail', 'x ] y [');
const fraction = mostly(
  fc.tuple(fc.constantFrom('.', ','), digits(1, 6)).map(([sep, d]) => sep + d),
  fc.constant(''),
  fc.tuple(fc.constantFrom('.', ',', ':'), digits(0, 8)).map(([sep, d]) => sep + d),
);

/** A line near the header's shape: each part right most of the time, wrong now and then. */
const line = fc
  .tuple(
    mostly(digits(4, 4), digits(3, 3), digits(5, 5)),
    mostly(fc.constant('-'), fc.constant('/')),
    mostly(digits(2, 2), digits(1, 1), digits(3, 3)),
    mostly(fc.constant(' '), fc.constantFrom('T', '  ')),
    mostly(digits(2, 2), digits(1, 1)),
    fraction,
    blank,
    mostly(digits(1, 7), fc.constant(''), fc.constant('x1')),
    blank,
    level,
    blank,
    mostly(fc.constantFrom('nova.compute.manager', 'oslo.messaging._drivers.impl_rabbit'), fc.constantFrom('', 'x\ty', 'a\u2028b')),
    mostly(fc.constant(' '), fc.constantFrom('', '  ', '\t')),
    context,
    blank,
    message,
  )
  .map(([y, sep, mo, t, h, frac, b1, pid, b2, lvl, b3, logger, b4, ctx, b5, msg]) => `${y}${sep}${mo}-04${t}${h}:47:02${frac}${b1}${pid}${b2}${lvl}${b3}${logger}${b4}${ctx}${b5}${msg}`);

describe('parseOsloHeader, read by hand, against the HEADER regex it replaces', () => {
  it('finds exactly what the regex-based reader found, on lines near the header and on real ones', () => {
    let matched = 0;
    fc.assert(
      fc.property(line, fc.constantFrom('UTC', 'Europe/Berlin'), (l, tz) => {
        const want = defined(oracle(l, tz));
        if (want) matched++;
        expect(defined(parseOsloHeader(l, tz))).toEqual(want);
      }),
      { numRuns: 20_000 },
    );
    // Both sides of the edge were tried: headers the regex matches, and near misses it does not.
    expect(matched).toBeGreaterThan(2_000);
    expect(matched).toBeLessThan(18_000);
    // Lines of the kinds the pipeline meets (the regex matches some of these, not others).
    for (const l of [
      '2022-02-04 09:47:02.181 29295 ERROR oslo.messaging._drivers.impl_rabbit [req-20cdcbb8-8ced-47c3-b244-0321b23fbd28 - - - - -] Connection failed: [Errno 111] ECONNREFUSED',
      '2022-02-04 09:47:02 29295 INFO nova [None req-1 u p - - -] [instance: 0e3bd5b2-4a2f-4a1c-9d2b-7f4e5c6d7e8f] Took 1.2 s',
      '2022-02-04 09:47:02,5 1 WARN x',
      '2022-02-04 09:47:02.1234567 1 INFO x y',
      '2022-02-04 09:47:02.123 1 INFO',
      '2022-02-04 09:47:02.123 1 INFO x',
      '2022-02-04 09:47:02.123  1 INFO x',
      '2022-02-04 09:47:02.123 1  INFO x',
      '2022-02-04 09:47:02.123 1 INFO  x',
      '2022-02-04 09:47:02.123 1 INFO x\u2028y [z]',
      '2022-13-45 25:61:61.000 1 ERROR x boom',
    ])
      expect(defined(parseOsloHeader(l)), l).toEqual(defined(oracle(l)));
  });
});
