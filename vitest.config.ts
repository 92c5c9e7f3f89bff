import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.spec.ts'],
    globalSetup: ['test/global-setup.ts'],
    // The skipped tests with their reasons, before the default summary.
    reporters: ['./test/skipped-reporter.ts', 'default'],
    // Tests start real servers and processes: give them room, and keep
    // the two cores busy without oversubscribing them.
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    maxWorkers: 2,
  },
});
