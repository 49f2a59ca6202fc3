// What the tests need from the machine (promtool, oslo.messaging) is installed before they start, by
// scripts/test-deps.sh from scripts/test.sh (`npm test`) and .ci/run, with apt_install's wait for the dpkg lock;
// a test only looks for it. Found on a busy CI machine: the status-server test ran apt-get itself, with no lock
// timeout, and failed whenever another apt-get was running.
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { requireTool } from '../integration/harness.ts';
import { run } from './run.ts';

const REPO = new URL('../../', import.meta.url).pathname;
const TEST_DEPS = join(REPO, 'scripts/test-deps.sh');
const read = (path: string) => readFileSync(join(REPO, path), 'utf8');

function walk(dir: string): string[] {
  return readdirSync(join(REPO, dir), { withFileTypes: true }).flatMap((d) => {
    const path = join(dir, d.name);
    return d.isDirectory() ? walk(path) : [path];
  });
}

/** The shell scripts of the repository: scripts/ (by extension or shebang) and CI's entry point. */
function shellScripts(): string[] {
  const isShell = (path: string) => path.endsWith('.sh') || /^#!.*\b(ba)?sh\b/.test(read(path).split('\n', 1)[0]);
  return [...walk('scripts').filter(isShell), '.ci/run'];
}

/** Lines that run apt-get or apt as a command (at the start, after ; & | ( then do else, after VAR=value
 * words), comments dropped: messages that only name apt-get ("need root to apt-get install") are no runs. */
function aptRuns(text: string): string[] {
  const command = /(?:^|[;&|(]|\bthen\b|\bdo\b|\belse\b)\s*(?:\w+=\S*\s+)*apt(?:-get)?\s/;
  return text
    .split('\n')
    .map((line) => line.replace(/(^|\s)#.*$/, ''))
    .filter((line) => command.test(line));
}

const tmp = mkdtempSync(join(tmpdir(), 'stackwatch-test-deps-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** scripts/test-deps.sh check, with nothing but PATH in its environment. */
async function check(path: string): Promise<{ status: number | null; stderr: string }> {
  const r = await run('/bin/bash', [TEST_DEPS, 'check'], { env: { PATH: path } });
  return { status: r.status, stderr: r.stderr };
}

describe('what the tests need from the machine', () => {
  it('finds apt-get runs, not messages that name apt-get', () => {
    const runs = aptRuns(
      [
        'apt-get update -qq',
        '  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y x',
        'command -v x >/dev/null || apt-get install -y x # comment',
        'if true; then apt install -y x; fi',
        'die "need root to apt-get install $*"',
        'log "apt-get install $*"',
        '# apt-get install x',
        'echo done # then apt-get install x',
        '  install        apt-get install the Debian packages',
      ].join('\n'),
    );
    expect(runs).toEqual([
      'apt-get update -qq',
      '  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y x',
      'command -v x >/dev/null || apt-get install -y x',
      'if true; then apt install -y x; fi',
    ]);
  });

  it('no script or CI step runs apt-get without waiting for the dpkg lock', () => {
    const scripts = shellScripts();
    expect(scripts).toContain('scripts/lib/processes.sh');
    const runs = scripts.flatMap((path) => aptRuns(read(path)).map((line) => `${path}: ${line.trim()}`));
    expect(runs.length).toBeGreaterThan(0); // (apt_install's own runs, at least)
    expect(runs.filter((r) => !r.includes('-o DPkg::Lock::Timeout='))).toEqual([]);
  });

  it('no test runs apt-get: tests only look for what scripts/test-deps.sh installed', () => {
    const self = relative(REPO, new URL(import.meta.url).pathname);
    const tests = walk('test').filter((p) => /\.(ts|mjs|js)$/.test(p) && !p.startsWith('test/fixtures/') && p !== self);
    expect(tests).toContain('test/integration/status-server.test.ts');
    // apt-get or apt as a program to run: the first word of a string (execFileSync('apt-get', …), `apt install …`)
    const running = tests.filter((p) => /['"`](?:\w+=\S*\s+)*apt(?:-get)?\b(?!-)/.test(read(p)));
    expect(running).toEqual([]);
  });

  it('npm test (scripts/test.sh) and .ci/run install them before any test runs', () => {
    const lineOf = (text: string, re: RegExp) => text.split('\n').findIndex((l) => re.test(l));
    for (const [path, tests] of [
      ['scripts/test.sh', /^\s*npx vitest run\b/],
      ['.ci/run', /^npm test\b/],
    ] as const) {
      const text = read(path);
      const install = lineOf(text, /^scripts\/test-deps\.sh install(\s|$)/); // a command of its own, failure not hidden
      expect(install, `${path} runs scripts/test-deps.sh install`).toBeGreaterThanOrEqual(0);
      expect(install, `${path}: before the tests`).toBeLessThan(lineOf(text, tests));
    }
    expect(statSync(TEST_DEPS).mode & 0o111, 'scripts/test-deps.sh is executable').not.toBe(0);
  });

  it('test-deps.sh check names what is missing and the command that installs it', async () => {
    // No promtool on this PATH (nor anything else: check needs no program but bash)
    const none = await check(join(tmp, 'nothing'));
    expect(none.status).toBe(1);
    expect(none.stderr).toMatch(/^test-deps: missing: promtool\b/m);
    expect(none.stderr).toContain('scripts/test-deps.sh install');
    // A promtool on PATH: not missing (the exit status says whether anything else is)
    const bin = join(tmp, 'bin');
    mkdirSync(bin);
    writeFileSync(join(bin, 'promtool'), '#!/bin/sh\nexit 0\n');
    chmodSync(join(bin, 'promtool'), 0o755);
    const found = await check(bin);
    expect(found.stderr).not.toMatch(/missing: promtool/);
    expect(found.status).toBe(/missing:/.test(found.stderr) ? 1 : 0);
  });

  it('test-deps.sh check names shellcheck when it is missing, not when it is on PATH', async () => {
    const none = await check(join(tmp, 'nothing'));
    expect(none.status).toBe(1);
    expect(none.stderr).toMatch(/^test-deps: missing: shellcheck\b/m);
    const bin = join(tmp, 'bin-shellcheck');
    mkdirSync(bin);
    writeFileSync(join(bin, 'shellcheck'), '#!/bin/sh\nexit 0\n');
    chmodSync(join(bin, 'shellcheck'), 0o755);
    expect((await check(bin)).stderr).not.toMatch(/missing: shellcheck/);
  });

  it('scripts/shellcheck.sh lints exactly the shell scripts of the repository', async () => {
    const r = await run(join(REPO, 'scripts/shellcheck.sh'), ['--list']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim().split('\n').sort()).toEqual(shellScripts().sort());
    expect(shellScripts()).toContain('scripts/lib/service.sh');
  });

  it('a test that needs a program fails at once naming it and the install command', () => {
    expect(requireTool('sh')).toMatch(/\/sh$/);
    const name = `no-such-tool-${process.pid}`;
    expect(() => requireTool(name)).toThrow(`${name} is not installed (not on PATH): run \`sudo scripts/test-deps.sh install\``);
  });
});
