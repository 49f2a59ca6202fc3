// The local real stack (scripts/stack.sh): started (idempotent: services already up are left alone) and its
// addresses read as STACKWATCH_* variables. Used by the demo, the integration tests and the benchmarks.
import { execFileSync } from 'node:child_process';

const STACK = new URL('../scripts/stack.sh', import.meta.url).pathname;

/** Starts the stack (its progress on `progress`: 'inherit' shows it, 'ignore' hides it) and returns its variables. */
export function startLocalStack(progress: 'inherit' | 'ignore' = 'inherit'): Record<string, string> {
  execFileSync(STACK, ['start'], { stdio: ['ignore', progress, 'inherit'] });
  const env: Record<string, string> = {};
  for (const line of execFileSync(STACK, ['env'], { encoding: 'utf8' }).split('\n')) {
    const m = /^(\w+)=(.*)$/.exec(line.trim());
    if (m) env[m[1]] = m[2];
  }
  return env;
}
