// Regular expressions written by rule authors, run on log lines in time linear in the line. V8's own engine
// (irregexp) backtracks: `(a+)+$` takes exponential time on a 35-character line, and an unanchored
// `prefix(?<x>.*) \(CODE\)$` quadratic time on a line that repeats its prefix (the shipped ceph-health rule did:
// 20,000 repeats took 10 s). So a rule regex runs on one of two paths, chosen when the rule is loaded:
//
//   - fast: irregexp, for a regex that recheck (the ReDoS checker, automaton mode: a proof, not a fuzz) proved
//     linear. Proofs are data (`<rules dir>/regex-proofs.json`, written by `stackwatch rules prove`), so a pipeline
//     process never runs recheck: it is a development tool with a native helper of ~100 MB that takes from
//     milliseconds to seconds a regex.
//   - linear: everything else. RE2 (re2-wasm: a DFA, ~5 ns a character on long lines, a few µs a call) finds
//     where the leftmost match starts, or that there is none (most lines); from there V8's non-backtracking engine
//     (the `l` flag, exact JavaScript semantics, ~0.2-1.5 µs a character it reads) gives the match and its
//     groups. RE2's own group extraction is not used: it took 5 s on a 1 MiB match. Case-insensitive regexes (`i`,
//     which the `l` engine lacks) run on RE2 alone.
//
// Measured (Node 20, a busy 2-core machine): a 150-character line takes irregexp 0.1 µs, the linear path 2-8 µs
// without a match and 20-50 µs with one; a 1 MiB line 5-60 ms, but up to ~1.5 s when the match itself spans the
// megabyte (the `l` engine reads all of it). The shipped rules are all proved: the fast path.
//
// What neither engine can run in linear time (lookaround, backreferences, `a{1001}`) is refused at load: a regex
// can only be linear by not being one. Both paths give JavaScript's answers: RE2 reads the regex the same or more
// broadly (`\s` is rewritten to JavaScript's set; `.` and `\S` match more in RE2), so where RE2 finds no match there
// is none, and where it finds one V8's engine has the last word; a regex RE2 would read differently (`\pL`,
// `[[:alpha:]]`, `[]a]`) skips RE2 and runs on the `l` engine alone, as does a line with surrogates (RE2 counts
// code points).
import { createRequire } from 'node:module';
import v8 from 'node:v8';

// Enables the `l` flag (V8's experimental linear-time engine, in V8 since 8.8). Process-wide, and harmless for
// every other regex: only a RegExp created with `l` uses it.
v8.setFlagsFromString('--enable-experimental-regexp-engine');

interface Re2 {
  test(s: string): boolean;
  exec(s: string): RegExpExecArray | null;
  /** Where the leftmost match starts (UTF-16 units), -1 without one; a DFA, no capture groups. */
  search(s: string): number;
}
type Re2Class = new (source: string, flags: string) => Re2;
let re2Class: Re2Class | undefined;
/** re2-wasm, loaded on first use (~80 ms to compile its WebAssembly): most processes never need it. */
function RE2(): Re2Class {
  re2Class ??= (createRequire(import.meta.url)('re2-wasm') as { RE2: Re2Class }).RE2;
  return re2Class;
}

/** A regex that cannot run in linear time, or is no regex: the message says why. */
export class LinearRegexError extends Error {}

/** JavaScript's `\s`, which RE2 reads as ASCII whitespace only. */
const JS_SPACE = '\\t\\n\\v\\f\\r \\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000\\ufeff';
/** Escapes that mean the same in JavaScript (without the u flag) and in RE2; any other letter or digit does not. */
const SAME_ESCAPES = 'dDwWsSbBnrtfvcx';

/**
 * The regex in RE2's syntax, meaning the same as JavaScript's or more (so RE2's "no match" is JavaScript's), or
 * undefined when RE2 would read it differently. A scan of the source, not a parser: it only needs to know what is
 * inside a character class.
 */
export function re2Source(source: string): string | undefined {
  let out = '';
  let inClass = false;
  let negated = false;
  for (let i = 0; i < source.length; i++) {
    const c = source[i];
    if (c === '\\') {
      const n = source[i + 1];
      if (n === undefined) return undefined;
      i++;
      if (n === 's') {
        out += inClass ? JS_SPACE : `[${JS_SPACE}]`;
        continue;
      }
      // RE2's \S inside [^…] would match less than JavaScript's; a letter or digit escape JavaScript reads as
      // itself or as a backreference means something else in RE2 (\pL, \Q, \z, \0); \u{…} is not \u here.
      if ((n === 'S' && inClass && negated) || /[0-9]/.test(n)) return undefined;
      if (/[A-Za-z]/.test(n) && !SAME_ESCAPES.includes(n) && !(n === 'u' && /^[0-9A-Fa-f]{4}$/.test(source.slice(i + 1, i + 5)))) return undefined;
      if (n === 'b' && inClass) return undefined; // a backspace in JavaScript, an error in RE2
      out += c + n;
      continue;
    }
    if (inClass) {
      if (c === ']') inClass = false;
      else if (c === '[' && source[i + 1] === ':') return undefined; // RE2's [[:alpha:]]
      out += c;
      continue;
    }
    if (c === '[') {
      inClass = true;
      negated = source[i + 1] === '^';
      const first = source[i + (negated ? 2 : 1)];
      if (first === ']') return undefined; // [] and [^] are classes of their own in JavaScript, not in RE2
      out += negated ? '[^' : '[';
      if (negated) i++;
      continue;
    }
    out += c;
  }
  return out;
}

/** A lone surrogate (or any surrogate: RE2 reads text as UTF-8 and counts code points, not UTF-16 units). */
const SURROGATE = /[\ud800-\udfff]/;

/** The text with lone surrogates as U+FFFD: RE2 cannot read them (String.prototype.toWellFormed, Node 20). */
function wellFormed(text: string): string {
  return (text as unknown as { toWellFormed(): string }).toWellFormed();
}

export type RegexPath = 'fast' | 'linear';

/** A rule's regex: `exec` and `test` as on a RegExp (not global, not sticky), in time linear in the text. */
export class LinearRegex {
  private fast?: RegExp;
  /** V8's linear engine (`l`), for the capture groups of a line that matches: sticky, from where RE2 found the
   * match (the engine's cost grows with the text it reads, ~0.2-4 µs a character), or over the whole line. */
  private readonly lin?: RegExp;
  private readonly linFrom?: RegExp;
  /** RE2, which says quickly whether a line matches (or, for `i`, does everything). */
  private readonly re2?: Re2;

  constructor(
    readonly source: string,
    readonly flags = '',
  ) {
    if (flags !== '' && flags !== 'i') throw new LinearRegexError(`unsupported flags "${flags}" (only "i")`);
    try {
      new RegExp(source, flags);
    } catch (err) {
      throw new LinearRegexError(`not a valid regular expression: ${(err as Error).message}`);
    }
    const translated = re2Source(source);
    if (translated !== undefined) {
      try {
        this.re2 = new (RE2())(translated, flags + 'u');
      } catch {
        // RE2 refuses it (a repetition over 1000, say): the l engine alone
      }
    }
    if (flags === '') {
      try {
        this.lin = new RegExp(source, 'l');
        this.linFrom = new RegExp(source, 'ly');
      } catch {
        throw new LinearRegexError(
          'cannot run in linear time: lookahead, lookbehind, backreferences and counted repetitions over 1000 need a backtracking engine, which a crafted line can keep busy for hours; rewrite it without them',
        );
      }
    } else if (!this.re2) {
      throw new LinearRegexError('cannot run in linear time with the i flag: RE2 cannot take it (lookaround, backreferences, \\p, [[:class:]], a repetition over 1000)');
    }
  }

  /** Which engine runs it: `fast` (irregexp, proved linear) or `linear` (RE2 and V8's linear engine). */
  get path(): RegexPath {
    return this.fast ? 'fast' : 'linear';
  }

  /** Moves the regex to irregexp: call only with a proof that it cannot backtrack more than linearly. */
  proven(): this {
    this.fast = new RegExp(this.source, this.flags);
    return this;
  }

  exec(text: string): RegExpExecArray | null {
    if (this.fast) return this.fast.exec(text);
    if (!this.lin) return this.re2!.exec(wellFormed(text));
    if (this.re2 && !SURROGATE.test(text)) {
      const at = this.re2.search(text);
      if (at < 0) return null;
      // RE2 matches wherever JavaScript does, and sometimes earlier ('.' and \S match more in RE2). So JavaScript's
      // leftmost match starts here, or later: then the whole line is searched.
      this.linFrom!.lastIndex = at;
      const m = this.linFrom!.exec(text);
      if (m) return m;
    }
    return this.lin.exec(text);
  }

  test(text: string): boolean {
    if (this.fast) return this.fast.test(text);
    if (!this.lin) return this.re2!.test(wellFormed(text));
    if (this.re2 && !SURROGATE.test(text)) {
      const at = this.re2.search(text);
      if (at < 0) return false;
      this.linFrom!.lastIndex = at; // RE2's "yes" may be more than JavaScript's: asked again, from where it matched
      if (this.linFrom!.test(text)) return true;
    }
    return this.lin.test(text);
  }

  toString(): string {
    return `/${this.source}/${this.flags}`;
  }
}

/** The key of a regex in a proofs file: its flags and its source. */
export function proofKey(source: string, flags: string): string {
  return `/${source}/${flags}`;
}
