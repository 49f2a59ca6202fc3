// The command line as an operator meets it: help on every command, one-line config errors with exit code 2.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const BIN = new URL('../../bin/stackwatch.mjs', import.meta.url).pathname;
const cli = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...process.env, STACKWATCH_CONFIG: '' } });

describe('stackwatch CLI', () => {
  it('lists its commands in --help', () => {
    const r = cli('--help');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^Usage: stackwatch <command>/);
    expect(r.stdout).toMatch(/^ {2}run +run the pipeline/m);
    expect(r.stdout).toMatch(/^ {2}demo +replay bundled real OpenStack logs/m);
  });

  it.each(['run', 'demo'])('has --help for %s', (command) => {
    const r = cli(command, '--help');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^Usage: stackwatch ${command}`));
  });

  it('rejects an unknown command and an unknown option', () => {
    const r = cli('frobnicate');
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/^stackwatch: unknown command "frobnicate"/);
    const o = cli('run', '--rol', 'x');
    expect(o.status).toBe(2);
    expect(o.stderr.trim().split('\n')).toHaveLength(1);
    expect(o.stderr).toMatch(/--rol/);
  });

  it('exits 2 with one line naming the file and the field for an invalid config', () => {
    const dir = mkdtempSync(join(tmpdir(), 'stackwatch-cli-'));
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, 'kafka:\n  brokers: localhost\nelasticsearch:\n  url: http://127.0.0.1:9200\n');
    const r = cli('run', '--config', file);
    expect(r.status).toBe(2);
    expect(r.stderr).toBe(`stackwatch: ${file}: kafka.brokers: expected an array of host:port\n`);
  });

  it('exits 2 naming the missing default config file', () => {
    const r = cli('run', '--config', '/nonexistent/stackwatch.yaml');
    expect(r.status).toBe(2);
    expect(r.stderr).toBe('stackwatch: /nonexistent/stackwatch.yaml: cannot read config: no such file (pass --config FILE or set STACKWATCH_CONFIG)\n');
  });

  it('rejects a bad --role naming the option', () => {
    const r = cli('run', '--role', 'everything', '--config', '/dev/null');
    expect(r.status).toBe(2);
    expect(r.stderr).toBe('stackwatch: --role: expected one of all, collector, processor, got "everything"\n');
  });
});
