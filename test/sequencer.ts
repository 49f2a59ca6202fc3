// The order of the test files: vitest's own (failed first, then the longest, or the largest when it has no
// timings yet), except that the files which run several pipelines at once beside services of their own go last.
// scripts/test.sh runs the live OpenStack's tests beside the integration tests; these files, heavy on CPU, took
// twice their time beside the cloud's start (520 s instead of 270 s for faults-services), and come after them.
import { BaseSequencer, type TestSpecification } from 'vitest/node';

const LAST = ['scale-out', 'faults-kill', 'faults-services'].map((name) => `/test/integration/${name}.test.ts`);

export default class Sequencer extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    const rank = (f: TestSpecification) => LAST.findIndex((end) => f.moduleId.endsWith(end));
    return [...sorted.filter((f) => rank(f) < 0), ...sorted.filter((f) => rank(f) >= 0).sort((a, b) => rank(a) - rank(b))];
  }
}
