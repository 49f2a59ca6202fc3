// Rules against hostile input (test/fixtures/hostile/rules/, one file per case): lines built against each shipped
// rule run through parsing and every shipped rule in linear time, a rule whose regex backtracks catastrophically
// cannot hang the engine, and rule files that are not what they should be are refused, naming the file.
import { copyFileSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { HOSTILE_RULES_DIR, hostileCases, runHostile } from '../../bench/hostile-rules.ts';
import type { LogDocument } from '../../core/events.ts';
import { setLogSink } from '../../core/log.ts';
import { DetectionEngine } from '../../detectors/engine.ts';
import { DEFAULT_RULES_DIR, loadRules, MAX_RULE_FILE_BYTES } from '../../detectors/rules.ts';
import { parseLogEvent } from '../../processors/parse-log.ts';

const MiB = 1 << 20;
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A rules directory holding copies of the named fixture files. */
function rulesDir(...files: string[]): string {
  const dir = mkdtempSync(join(tmpdir(), 'stackwatch-rules-'));
  dirs.push(dir);
  for (const f of files) copyFileSync(join(HOSTILE_RULES_DIR, f), join(dir, f.split('/').pop()!));
  return dir;
}

/** The best of three timings (ms): the machine is shared, the least disturbed run is the one to compare. */
function best(run: () => number): number {
  return Math.min(run(), run(), run());
}

describe('a 1 MiB line built against each shipped rule', () => {
  const cases = hostileCases();
  const shipped = loadRules();

  it('has a case for every shipped rule', () => {
    expect(shipped.map((r) => r.id).filter((id) => !cases.some((c) => c.rule === id))).toEqual([]);
  });

  it.each(cases.map((c) => [c.name, c] as const))(
    '%s: parses and runs through every shipped rule in linear time',
    async (_, c) => {
      const time = async (bytes: number) => {
        const engine = await DetectionEngine.create(shipped);
        const r = runHostile(engine, c, bytes);
        if (c.fires) expect(r.alerts.map((a) => a.alert.group)).toContainEqual(c.fires);
        return r.ms;
      };
      // Alternately, the best of three each: a burst of load on a shared machine (the unit tests run beside the integration
      // files) then weighs on both sizes alike, not on the large line alone (26.7 against 24 in one full run).
      let small = Infinity;
      let large = Infinity;
      for (let i = 0; i < 3; i++) {
        small = Math.min(small, await time(MiB / 8));
        large = Math.min(large, await time(MiB));
      }
      // The bound is 1 s on an idle machine (the benchmark reports it); 10 s only catches a regression here.
      expect(large).toBeLessThan(10_000);
      // 8 times the line: linear is ~8 times the time, quadratic 64. Small timings are noisy: a floor of 5 ms.
      expect(large / Math.max(small, 5)).toBeLessThan(24);
    },
    120_000,
  );
});

describe('the ceph-health rule, anchored to be linear', () => {
  // Its regex before this change (rules/ceph-health.yaml): unanchored, quadratic on a line repeating its prefix.
  const BEFORE = /cluster \[(?<level>WRN|ERR)\] Health check (?:failed|update): (?<summary>.*) \((?<code>[A-Z0-9_]+)\)$/;

  it('reads every real cluster-log line as the unanchored regex did', async () => {
    const [ceph] = (await DetectionEngine.create(loadRules())).regexes.filter((r) => r.rule.id === 'ceph-health' && r.field === 'params.fire');
    // Real lines: our one-host Ceph 16.2 (test/fixtures/ceph-live/cluster.log) and hotsos' Octopus (the rule's tests).
    const lines = [
      ...readFileSync(new URL('../fixtures/ceph-live/cluster.log', import.meta.url), 'utf8').split('\n'),
      ...readFileSync(join(DEFAULT_RULES_DIR, 'ceph-health.test.yaml'), 'utf8')
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => /^\d{4}-\d\d-\d\d /.test(l)),
    ].filter(Boolean);
    let matched = 0;
    for (const line of lines) {
      const message = parseLogEvent(
        { v: 1, host: 'h', path: '/var/log/ceph/ceph.log', file_id: 'f', offset: 0, text: line, read_at: '2026-11-25T10:00:00.000Z' },
        { timezone: 'UTC' },
      ).message;
      const before = BEFORE.exec(message);
      expect(ceph.regex.exec(message)?.groups ?? null, line).toEqual(before?.groups ?? null);
      if (before) matched++;
    }
    expect(matched).toBeGreaterThan(5);
  });
});

describe('a rule whose regex backtracks catastrophically', () => {
  it('is accepted and runs in time linear in the line: (a+)+$ on "aaa…a!"', async () => {
    const engine = await DetectionEngine.create(loadRules(rulesDir('exponential-fire.yaml')));
    const doc = (text: string): LogDocument =>
      parseLogEvent({ v: 1, host: 'h', path: '/var/log/x.log', file_id: 'f', offset: 0, text, read_at: '2026-11-25T10:00:00.000Z' }, { timezone: 'UTC' });
    const time = (n: number) =>
      best(() => {
        const d = doc('a'.repeat(n) + '!');
        const start = performance.now();
        for (let i = 0; i < 20; i++) engine.on({ kind: 'log', doc: d });
        return performance.now() - start;
      });
    // Twice the run: linear is about twice the time; the backtracking engine took 4096 times (2^12).
    expect(time(24) / Math.max(time(12), 1)).toBeLessThan(50);
    // And it still fires where it should.
    expect(engine.on({ kind: 'log', doc: doc('aaaa') }).map((a) => a.rule.id)).toEqual(['exponential-fire']);
  }, 120_000);
});

describe('rule files that are not what they should be', () => {
  it.each([
    ['lookahead-fire.yaml', 'lookahead'],
    ['backreference-fire.yaml', 'backreference'],
  ])('%s: a regex no linear engine can run is refused, naming the file and the field', async (file) => {
    const dir = rulesDir(file);
    await expect(DetectionEngine.create(loadRules(dir))).rejects.toThrow(new RegExp(`${join(dir, file)}: params\\.fire: cannot run in linear time`));
  });

  it('alias-bomb.yaml: a YAML alias bomb is refused, naming the file', () => {
    const dir = rulesDir('alias-bomb.yaml');
    expect(() => loadRules(dir)).toThrow(new RegExp(`^${join(dir, 'alias-bomb.yaml')}: invalid YAML: .*alias`));
  });

  it('duplicate-id/: two rules with one id are refused, naming both files', () => {
    const dir = rulesDir('duplicate-id/a-first.yaml', 'duplicate-id/b-second.yaml');
    expect(() => loadRules(dir)).toThrow(`${join(dir, 'b-second.yaml')}: id: same-id is already the id of ${join(dir, 'a-first.yaml')}`);
  });

  it('a rule file over the size cap is refused before it is read, naming the file and the cap', () => {
    const dir = rulesDir();
    const rule = readFileSync(join(DEFAULT_RULES_DIR, 'zabbix-problem.yaml'), 'utf8');
    writeFileSync(join(dir, 'big.yaml'), rule + `# ${'x'.repeat(MAX_RULE_FILE_BYTES)}\n`);
    expect(() => loadRules(dir)).toThrow(new RegExp(`^${join(dir, 'big.yaml')}: \\d+ bytes, more than a rule file may have \\(${MAX_RULE_FILE_BYTES} bytes\\)`));
    // 4 GiB (sparse: no disk, no memory): refused at once, from its size alone.
    rmSync(join(dir, 'big.yaml'));
    writeFileSync(join(dir, 'huge.yaml'), '');
    truncateSync(join(dir, 'huge.yaml'), 4 * 2 ** 30);
    expect(() => loadRules(dir)).toThrow(`${join(dir, 'huge.yaml')}: ${4 * 2 ** 30} bytes, more than a rule file may have`);
  });

  it('an empty rules directory is a warning, logged once', () => {
    const dir = rulesDir();
    const lines: string[] = [];
    const restore = setLogSink((l) => lines.push(l));
    try {
      expect(loadRules(dir)).toEqual([]);
      expect(loadRules(dir)).toEqual([]);
    } finally {
      restore();
    }
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0])).toMatchObject({ level: 'warn', msg: expect.stringContaining(`no rules in ${dir}`) });
  });

  it('a proofs file that is not one is an error naming it', () => {
    const dir = rulesDir();
    writeFileSync(join(dir, 'regex-proofs.json'), '{"proofs": "all of them"}');
    expect(() => loadRules(dir)).toThrow(new RegExp(`^${join(dir, 'regex-proofs.json')}: `));
  });

  it('a rules directory that cannot be read is an error naming it', () => {
    expect(() => loadRules('/nonexistent/rules')).toThrow(/^\/nonexistent\/rules: cannot read the rules directory/);
  });
});
