import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // test/e2e/setup.ts (owned by the e2e suite) may be added here as a globalSetup.
  },
});
