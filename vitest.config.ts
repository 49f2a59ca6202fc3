import { defineConfig } from 'vitest/config';
import Sequencer from './test/sequencer.ts';

export default defineConfig({
  test: {
    // One real stack is shared by the integration tests: test files run one after another.
    fileParallelism: false,
    sequence: { sequencer: Sequencer },
    projects: [
      // 60 s, not vitest's 5: tests that spawn the CLI took over 5 s on a loaded machine (load average 5.5).
      // The event-loop watch: test/event-loop-watch.ts.
      { test: { name: 'unit', include: ['test/unit/**/*.test.ts', 'rules/**/*.test.ts'], testTimeout: 60_000, setupFiles: ['test/event-loop-watch.ts'] } },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          exclude: ['test/integration/openstack-live.test.ts'],
          testTimeout: 120_000,
          hookTimeout: 180_000,
          globalSetup: ['test/integration/global-setup.ts'],
        },
      },
      // The live OpenStack (scripts/openstack.sh): scripts/test.sh runs it beside the integration tests once the cloud
      // it starts in the background is up (the AMQP files fault a RabbitMQ node of their own, not the cloud's).
      {
        test: {
          name: 'openstack',
          include: ['test/integration/openstack-live.test.ts'],
          testTimeout: 120_000,
          hookTimeout: 180_000,
          globalSetup: ['test/integration/global-setup.ts'],
        },
      },
    ],
  },
});
