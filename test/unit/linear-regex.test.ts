// Rule regexes in linear time (core/regex.ts): the linear path (RE2 says whether a line matches, V8's linear
// engine gives the capture groups) answers as JavaScript's own engine does, and takes time linear in the line where
// the backtracking engine takes quadratic or exponential time.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { LinearRegex, re2Source } from '../../core/regex.ts';
import { DetectionEngine } from '../../detectors/engine.ts';
import { loadRules } from '../../detectors/rules.ts';
import { bestAlternating, cpuNs } from './timing.ts';

/** Regexes of the kinds rule authors write: the shipped rules' own, and classes, blanks, dots, anchors, groups. */
const SHIPPED = (await DetectionEngine.create(loadRules(), { fastPath: false })).regexes.map((r) => r.regex).filter((r) => r.flags === '');
const WRITTEN = [
  'Connection failed: .*timed out',
  '(?<host>\\S+) is unreachable: (?<why>.+)$',
  '^\\s*(?<n>\\d+)\\s+(?<word>\\w+)',
  '[^\\s:]+:(?<port>\\d{1,5})\\b',
  '\\[(?<level>[A-Z]{3})\\]\\s(?<rest>.*)',
  '(?:ERROR|CRITICAL) (?<logger>[\\w.]+) [^\\]]*\\] (?<msg>[^\\n]*)',
  'a.b|c\\sd|e\\Sf',
  '[\\s\\S]{2}x',
  '(a+)+$',
  '(?<a>x)?(?<b>y)',
  '^$',
];
/** Text made of the regexes' own pieces and of the characters where engines differ: blanks JavaScript counts and
 * RE2 does not (NBSP, \v, U+2028), \r, a character outside the BMP, a lone surrogate. */
const PIECES = [
  'a',
  'b',
  'x',
  'y',
  'A',
  'W',
  'R',
  'N',
  'E',
  'O',
  'D',
  '_',
  '0',
  '7',
  ':',
  '.',
  '(',
  ')',
  '[',
  ']',
  ' ',
  '\t',
  '\n',
  '\r',
  '\v',
  '\u00a0',
  '\u2028',
  'é',
  '😀',
  '\ud800',
  'cluster [WRN] Health check failed: ',
  ' (OSD_DOWN)',
  'Health check cleared: ',
  ' (was: ',
  'DBDeadlock',
  'mon.a (mon.0) 1 : ',
  'Connection failed: ',
  'timed out',
  'ERROR nova.compute [req-1] ',
  'is unreachable: ',
];
const text = fc.array(fc.constantFrom(...PIECES), { maxLength: 30 }).map((p) => p.join(''));

const answer = (m: RegExpExecArray | null) => (m ? { index: m.index, match: [...m], groups: m.groups ? { ...m.groups } : undefined } : null);

describe('the linear path', () => {
  it.each([...SHIPPED.map((r) => r.source), ...WRITTEN])("gives JavaScript's answers: /%s/", (source) => {
    const linear = new LinearRegex(source);
    const js = new RegExp(source);
    expect(linear.path).toBe('linear');
    fc.assert(
      fc.property(text, (s) => {
        expect(answer(linear.exec(s))).toEqual(answer(js.exec(s)));
        expect(linear.test(s)).toBe(js.test(s));
      }),
      { numRuns: 300 },
    );
  });

  it("gives JavaScript's answers with the i flag on ASCII text (RE2 alone runs it)", () => {
    const source = 'replication lag|seconds behind master|(?<code>osd_[a-z]+)';
    const linear = new LinearRegex(source, 'i');
    const js = new RegExp(source, 'i');
    const ascii = fc.array(fc.constantFrom('Replication LAG', 'seconds behind', ' master', 'OSD_down', 'x', ' ', 'osd_'), { maxLength: 12 }).map((p) => p.join(''));
    fc.assert(
      fc.property(ascii, (s) => {
        expect(answer(linear.exec(s))?.match).toEqual(answer(js.exec(s))?.match);
        expect(linear.test(s)).toBe(js.test(s));
      }),
      { numRuns: 300 },
    );
  });

  it("RE2's reading of a regex matches at least where JavaScript's does, or RE2 is not used for it", () => {
    // \s becomes JavaScript's set of blanks; what RE2 would read otherwise (\pL, [[:alpha:]], []a], \Q) is not RE2's.
    expect(re2Source('a\\sb')).toContain('\\u00a0');
    expect(re2Source('[^\\s]')).toMatch(/^\[\^\\t/);
    for (const src of ['\\pL', '[[:alpha:]]', '[]a]', '[^]', '\\Qa\\E', '\\z', '[^\\S]', '\\0', '(a)\\1', '[\\b]', '\\u{41}']) expect(re2Source(src)).toBeUndefined();
  });

  it('is proved, or not: the fast path is irregexp itself', () => {
    const r = new LinearRegex('Health check cleared: (?<code>[A-Z0-9_]+) \\(was: ');
    expect(r.path).toBe('linear');
    expect(r.proven().path).toBe('fast');
    expect(r.exec('x Health check cleared: OSD_DOWN (was: 1 osds down)')?.groups).toEqual({ code: 'OSD_DOWN' });
  });

  it('refuses what needs backtracking, and says why', () => {
    for (const src of ['a(?=b)', 'a(?!b)', '(?<=a)b', '(?<!a)b', '(a)\\1', '(?<w>a)\\k<w>', 'a{1001}']) {
      expect(() => new LinearRegex(src)).toThrow(/cannot run in linear time/);
    }
    expect(() => new LinearRegex('(?<=a)b', 'i')).toThrow(/cannot run in linear time with the i flag/);
    expect(() => new LinearRegex('(unclosed')).toThrow(/not a valid regular expression/);
  });
});

describe('linear time where backtracking is not', () => {
  /** Regexes recheck calls vulnerable, with the text that makes them slow: a prefix, a pumped unit, a suffix. */
  const ATTACKS: [string, string, string, string][] = [
    ['(a+)+$', '', 'a', '!'],
    ['^(a|a)*$', '', 'a', '!'],
    ['(\\w+\\s?)*$', '', 'ab ', '!'],
    ['cluster \\[(?<level>WRN|ERR)\\] Health check (?:failed|update): (?<summary>.*) \\((?<code>[A-Z0-9_]+)\\)$', 'mon.a (mon.0) 1 : ', 'cluster [WRN] Health check failed: ', ''],
    ['Connection failed: .*timed out', '', 'Connection failed: ', ''],
    ['(?<a>\\S+)+ x', '', 'b', ''],
  ];

  it.each(ATTACKS)(
    '/%s/: eight times the line takes well under 64 times as long',
    (source, head, unit, tail) => {
      const r = new LinearRegex(source);
      fc.assert(
        fc.property(fc.integer({ min: 2000, max: 4000 }), (n) => {
          // The process's CPU time, not the wall clock: beside the integration tests and the cloud, a wait for the
          // CPU inflated one size's time and failed the ratio (CI-like run, 2026-12-05). Best of 3 each, in turns.
          const line = (k: number) => head + unit.repeat(k) + tail;
          const { small, large } = bestAlternating((s: string) => cpuNs(() => r.exec(s)), line(n), line(8 * n), 3);
          expect(large / Math.max(small, 2e6)).toBeLessThan(24); // small at least 2 ms
        }),
        { numRuns: 3 },
      );
    },
    120_000,
  );
});
