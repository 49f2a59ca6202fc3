// client-ip-masked reads an access line's address chain with two short regexes and a check of the request target
// after them (one regex took recheck 22 s to prove linear, over 300 s on a loaded machine). These tests hold the
// split to the one regex it replaced: the same lines, the same chain.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { accessChain } from '../../detectors/client-ip-masked.ts';

/** The regex the detector used before the split: the oracle, never run on the pipeline's lines. */
const ONE_REGEX = /^(?<chain>-|[0-9.]+(?:, ?[0-9.]+)*) (?:\S+ \S+ \[[^\]]+\] )?"[A-Z]+ \S+(?: HTTP\/\d|")/;

describe('accessChain', () => {
  it("reads the chain of Apache's combined format, Kolla's forwarded format and a bare request line", () => {
    expect(accessChain('10.88.0.1 - - [14/Mar/2024:09:00:25 +0000] "POST /v3/auth/tokens HTTP/1.1" 201 6911 "-" "curl"')).toBe('10.88.0.1');
    expect(accessChain('198.51.100.20, 172.17.0.1 - - [06/Oct/2021:10:00:00 -0500] "GET /v2/images HTTP/1.1" 200 2817')).toBe('198.51.100.20, 172.17.0.1');
    expect(accessChain('- - - [20/Feb/2024:10:00:00 +0100] "GET /dashboard/ HTTP/1.1" 200 9121')).toBe('-');
    expect(accessChain('172.17.0.1 "GET /healthcheck" 200')).toBe('172.17.0.1');
    expect(accessChain('10.0.0.1 - - [14/Mar/2024:09:00:25 +0000] connection closed')).toBeUndefined();
    expect(accessChain('10.0.0.1 - - [14/Mar/2024:09:00:25 +0000] "GET')).toBeUndefined();
  });

  it('falls back to the request right after the chain when the combined fields match but no request follows them', () => {
    // The fields' regex takes `"GET /x" [y]` as ident, user and time; no request follows, the bare one does.
    const line = '10.0.0.1 "GET /x" [y] "POST ';
    expect(ONE_REGEX.exec(line)?.groups!.chain).toBe('10.0.0.1');
    expect(accessChain(line)).toBe('10.0.0.1');
  });

  it('takes the same lines as the one regex, with the same chain', () => {
    // Lines built part by part, each part right, wrong or missing: chain, combined fields, request, target, rest.
    const part = (...options: string[]) => fc.constantFrom('', ...options);
    const line = fc
      .tuple(
        part('-', '10.0.0.1', '10.0.0.1, 172.17.0.1', '1.2,3.4', '1.2, ', 'x', '"'),
        part(' ', '  ', '\t'),
        part('- - [14/Mar/2024:09:00:25 +0000] ', '- - [x]', '"GET /x" [y] ', 'a b [c]] ', 'a [b] ', '- - [] ', '"GET a" b [c] '),
        part('"GET ', '"POST ', '"get ', '"GET', 'GET '),
        part('/v3', '/a"b', '/x[y]', ' /v3', '"'),
        part(' HTTP/1.1" 200', ' HTTP/', '"', '" 200 "GET /z HTTP/1.0"', ' x"', ' "POST /y HTTP/2"'),
      )
      .map((parts) => parts.join(''));
    fc.assert(
      fc.property(line, (l) => {
        expect(accessChain(l)).toBe(ONE_REGEX.exec(l)?.groups!.chain);
      }),
      { numRuns: 20_000 },
    );
    // The generator reaches both outcomes often (else the property says little).
    const sample = fc.sample(line, { numRuns: 20_000, seed: 1 });
    expect(sample.filter((l) => ONE_REGEX.test(l)).length).toBeGreaterThan(500);
    expect(sample.filter((l) => !ONE_REGEX.test(l)).length).toBeGreaterThan(2_000);
  });
});
