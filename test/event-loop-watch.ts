// A setup file of the unit tests: says on stderr when a test kept its worker's event loop busy for long. vitest's
// worker answers the main process only between turns of the loop, and vitest ends the whole run, every test passed
// or not, when an answer takes a minute ("[vitest-worker]: Timeout calling onTaskUpdate", which names no test: it
// happened in a CI-like run beside the live OpenStack). This names the test, from 20 s on, so that it can be given
// turns (an await on setImmediate) or async I/O (execFile, not spawnSync). It asserts nothing: how long a loop
// stays busy depends on the machine's load.
import { afterAll, beforeAll, expect } from 'vitest';

const WARN_MS = 20_000;
const now = performance.now.bind(performance);
// The real timers, whatever a test fakes later.
const every = setInterval;
const stop = clearInterval;
let timer: ReturnType<typeof setInterval> | undefined;
let last = 0;

beforeAll(() => {
  last = now();
  timer = every(() => {
    const t = now();
    if (t - last >= WARN_MS) {
      const test = expect.getState().currentTestName ?? '(between tests)';
      process.stderr.write(`event loop: busy for ${((t - last) / 1000).toFixed(1)} s in ${expect.getState().testPath}: ${test} (vitest ends the run at 60 s)\n`);
    }
    last = t;
  }, 500);
  timer.unref?.();
});

afterAll(() => {
  if (timer) stop(timer);
});
