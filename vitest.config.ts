import { availableParallelism } from "node:os";
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Makes the per-run scratch folder of the end-to-end tests (test/e2e/); cheap for unit runs.
    globalSetup: ["test/e2e/global-setup.ts"],
    // Two test files at a time even on 2 cores (vitest's default there is one): an end-to-end
    // file spends most of its time waiting (on sockets, signals, timeouts), and one Zig build
    // keeps about one core busy, so a second file overlaps a build with another's waits.
    maxWorkers: Math.max(2, availableParallelism() - 1),
  },
});
