/**
 * Accepted ⇒ builds: a few specs drawn (seeded) across the whole schema by the property test's
 * arbitrary, with the service names Zig limits most (a keyword, 40 and 63 characters) and, once,
 * every per-worker limit at its maximum, generate, are `zig fmt` clean, build and pass their own
 * tests with every Zig release under test.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { validSpec } from "../support/spec-arbitrary.js";
import { builtSpecValue, type BuiltProject, type StepResult } from "./support/project.js";
import { FULL_MATRIX_VERSIONS } from "./support/zig.js";

const BUILD_TIMEOUT_MS = 15 * 60_000;
const SEED = 20261201;
const MAX_LIMITS = { maxConnections: 1048576, readBufferBytes: 1048576, writeBufferBytes: 1048576 };
const EDGES = [
  { name: "const" },
  { name: "service-with-a-rather-long-name-for-zig1", ...MAX_LIMITS },
  { name: "n".repeat(63) },
];

/** Three drawn specs, the same in every run; each gets one of the edges. */
const DRAWN = fc
  .sample(validSpec({ maxListeners: 4 }), { seed: SEED, numRuns: EDGES.length })
  .map((spec, i) => ({ ...spec, ...EDGES[i], name: EDGES[i]?.name ?? "drawn" }));

function expectStep(step: StepResult) {
  expect(step.ok, `${step.command} failed:\n${step.output}`).toBe(true);
}

describe.each(FULL_MATRIX_VERSIONS)("zig %s", (version) => {
  describe.each(DRAWN.map((spec, i) => [i, spec] as const))("drawn spec %i", (i, spec) => {
    let project: BuiltProject;
    const built = async () => (project ??= await builtSpecValue(`drawn-${i}`, spec, version));

    it("generates, is zig fmt clean, builds and passes zig build test", {
      timeout: BUILD_TIMEOUT_MS,
    }, async () => {
      const { steps } = await built();
      expectStep(steps.generate);
      expectStep(steps.fmt);
      expectStep(steps.build);
      expectStep(steps.test);
    });
  });
});
