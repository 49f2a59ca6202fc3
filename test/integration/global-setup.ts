// Starts the real local stack (idempotent: services already up are left alone) and hands its addresses to the
// tests. scripts/test.sh starts it first and stops what it started; this makes `vitest --project integration`
// work on its own too.
import { execFileSync } from 'node:child_process';
import type { TestProject } from 'vitest/node';

const STACK = new URL('../../scripts/stack.sh', import.meta.url).pathname;

declare module 'vitest' {
  export interface ProvidedContext {
    stack: Record<string, string>;
  }
}

export default function setup(project: TestProject): void {
  execFileSync(STACK, ['start'], { stdio: ['ignore', 'inherit', 'inherit'] });
  const env: Record<string, string> = {};
  for (const line of execFileSync(STACK, ['env'], { encoding: 'utf8' }).split('\n')) {
    const m = /^(\w+)=(.*)$/.exec(line.trim());
    if (m) env[m[1]] = m[2];
  }
  project.provide('stack', env);
}
