// A setup file of the unit tests: says on stderr when a test kept its worker's event loop busy for long. vitest's
// worker answers the main process only between turns of the loop, and vitest ends the whole run, every test passed
// or not, when an answer takes a minute ("[vitest-worker]: Timeout calling onTaskUpdate", which names no test; the
// minute is fixed, no option sets it). It happened in CI on d6f7170, the unit tests running at nice 10 beside the
// integration tests and the live OpenStack, 35-60 times slower than on a quiet machine, where no test keeps the
// loop for 2 s. This names the test, from 10 s on (STACKWATCH_TEST_LOOP_WARN_MS), so that it can be given turns
// (an await on setImmediate) or async I/O (execFile, not spawnSync). It asserts nothing: how long a loop stays busy
// depends on the machine's load.
import { afterAll, afterEach, beforeAll, expect } from 'vitest';

const WARN_MS = Number(process.env.STACKWATCH_TEST_LOOP_WARN_MS ?? 10_000);
const now = performance.now.bind(performance);
// The real timers, whatever a test fakes later.
const every = setInterval;
const stop = clearInterval;
let timer: ReturnType<typeof setInterval> | undefined;
let last = 0;

/** Says so if the loop has had no turn for WARN_MS; a turn starts now. */
function check(test: string | undefined): void {
  const t = now();
  if (t - last >= WARN_MS) {
    process.stderr.write(`event loop: busy for ${((t - last) / 1000).toFixed(1)} s in ${expect.getState().testPath}: ${test ?? '(between tests)'} (vitest ends the run at 60 s)\n`);
  }
  last = t;
}

beforeAll(() => {
  last = now();
  timer = every(() => check(expect.getState().currentTestName), 500);
  timer.unref?.();
});

// Also at each test's end: a test that never gives the loop a turn ends before the timer can say so.
afterEach((context) => check(context.task.name));

afterAll(() => {
  if (timer) stop(timer);
});
