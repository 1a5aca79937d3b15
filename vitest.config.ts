import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Makes the per-run scratch folder of the end-to-end tests (test/e2e/); cheap for unit runs.
    globalSetup: ["test/e2e/global-setup.ts"],
  },
});
