/**
 * Every example, with every Zig release under test: it generates, is `zig fmt` clean, builds,
 * and its own Zig tests (socket rules on the real kernel) pass.
 */
import { describe, expect, it } from "vitest";
import { builtProject, EXAMPLES, type BuiltProject, type StepResult } from "./support/project.js";
import { ZIG_VERSIONS } from "./support/zig.js";

const BUILD_TIMEOUT_MS = 15 * 60_000;

function expectStep(step: StepResult) {
  expect(step.ok, `${step.command} failed:\n${step.output}`).toBe(true);
}

describe.each(ZIG_VERSIONS)("zig %s", (version) => {
  describe.each(EXAMPLES)("example %s", (example) => {
    let project: BuiltProject;
    const built = async () => (project ??= await builtProject(example, version));

    it("generates a project", { timeout: BUILD_TIMEOUT_MS }, async () => {
      expectStep((await built()).steps.generate);
    });

    it("passes zig fmt --check", { timeout: BUILD_TIMEOUT_MS }, async () => {
      expectStep((await built()).steps.fmt);
    });

    it("builds with zig build", { timeout: BUILD_TIMEOUT_MS }, async () => {
      expectStep((await built()).steps.build);
    });

    it("passes its own tests with zig build test", { timeout: BUILD_TIMEOUT_MS }, async () => {
      expectStep((await built()).steps.test);
    });
  });
});
