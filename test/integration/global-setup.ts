// Starts the real local stack (idempotent: services already up are left alone) and hands its addresses to the
// tests. scripts/test.sh starts it first and stops what it started; this makes `vitest --project integration`
// work on its own too.
import type { TestProject } from 'vitest/node';
import { startLocalStack } from '../../core/local-stack.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    stack: Record<string, string>;
  }
}

export default function setup(project: TestProject): void {
  project.provide('stack', startLocalStack());
}
