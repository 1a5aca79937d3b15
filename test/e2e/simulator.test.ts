/**
 * The supervisor's simulator (`src/supervisor/simulator.zig`) as a developer meets it in a
 * generated project: `zig build test` explores 10,000 event orders from a run seed it prints,
 * anew at every run (a cached result would explore nothing), within 30 s; and
 * `zig build test -Dsim-seed=N` replays one event order, the same at every replay. The project
 * is the one `build.test.ts` builds, so only the test runs cost time here.
 */
import { describe, expect, it } from "vitest";
import { builtProject } from "./support/project.js";
import { FULL_MATRIX_VERSIONS, provisionZig, runZigIn } from "./support/zig.js";

const TIMEOUT_MS = 10 * 60_000;
/** What `zig build test` may take for the simulator, the rest of the tests included. */
const RUN_BOUND_MS = 30_000;

const RUN_SEED = /simulator: 10000 event orders from run seed (\d+)/;

/** `SIM_VERBOSE=1` prints the run seed; a passing run without it writes nothing. */
async function zigBuildTest(
  version: string,
  args: readonly string[] = [],
  env: NodeJS.ProcessEnv = { SIM_VERBOSE: "1" },
) {
  const project = await builtProject("custom", version);
  const zig = await provisionZig(version);
  const started = Date.now();
  const result = await runZigIn(zig, ["build", "test", ...args], project.dir, version, env);
  return { ...result, ms: Date.now() - started };
}

describe.each(FULL_MATRIX_VERSIONS)("zig %s", (version) => {
  it("explores 10,000 event orders from a printed seed, anew at every run", {
    timeout: TIMEOUT_MS,
  }, async () => {
    const first = await zigBuildTest(version);
    expect(first.ok, first.output).toBe(true);
    expect(first.ms).toBeLessThan(RUN_BOUND_MS);
    const second = await zigBuildTest(version);
    expect(second.ok, second.output).toBe(true);
    const seeds = [first.output, second.output].map((output) => RUN_SEED.exec(output)?.[1]);
    expect(seeds[0], first.output).toBeDefined();
    expect(seeds[1], second.output).toBeDefined();
    expect(seeds[0]).not.toBe(seeds[1]);
    // Without SIM_VERBOSE a passing run prints nothing of the simulator's (Zig 0.17 shows any
    // standard error of a test under a "failed command" line, passing or not).
    const quiet = await zigBuildTest(version, [], {});
    expect(quiet.ok, quiet.output).toBe(true);
    expect(quiet.output).not.toContain("simulator:");
    expect(quiet.output).not.toContain("failed command");
  });

  it("replays one event order with -Dsim-seed, the same each time", {
    timeout: TIMEOUT_MS,
  }, async () => {
    const seed = "6305465960597945347";
    const runs = [
      await zigBuildTest(version, [`-Dsim-seed=${seed}`]),
      await zigBuildTest(version, [`-Dsim-seed=${seed}`]),
    ];
    const traces = runs.map((run) => {
      expect(run.ok, run.output).toBe(true);
      expect(run.output).toContain(`simulator: replaying event order ${seed}`);
      const kept = new RegExp(`simulator: event order ${seed} kept every invariant[^]*?\\n\\n`);
      const trace = kept.exec(`${run.output}\n\n`)?.[0];
      expect(trace, run.output).toBeDefined();
      return trace!.split("\n").filter((line) => /^\s+#\d+ /.test(line));
    });
    // The trace is the order: SIGHUPs, workers' readiness and exits, the core's actions.
    expect(traces[0]!.length).toBeGreaterThan(10);
    expect(traces[0]!.some((line) => / hup /.test(line))).toBe(true);
    expect(traces[0]!.some((line) => /-> spawn /.test(line))).toBe(true);
    expect(traces[1]).toEqual(traces[0]);
  });
});
