/**
 * Which Zig releases the end-to-end suite runs against, and provisioning them with the
 * generator's own `ensureZig` (the PyPI `ziglang` wheel) into the checkout's `.toolchain/`, or
 * into `$GEN_REUSEPORT_CACHE` when it is set (the per-user cache of installed users).
 */
import { appendFileSync } from "node:fs";
import path from "node:path";
import { expect, inject } from "vitest";
import {
  buildProject,
  type BuildProjectOptions,
  type BuildResult,
  checkoutToolchainDir,
  ensureZig,
  zigGlobalCacheDir,
} from "../../../src/index.js";
import {
  compareZigVersions,
  parseZigVersion,
  PROVISIONED_BY_DEFAULT,
} from "../../../src/zig-facts.js";

/** The environment variable that narrows the run, e.g. `GEN_REUSEPORT_ZIG=0.15.2,0.17.1`. */
export const ZIG_VERSIONS_ENV = "GEN_REUSEPORT_ZIG";

/** Every supported release by default; the comma list in `$GEN_REUSEPORT_ZIG` when set. */
export function zigVersionsUnderTest(env: NodeJS.ProcessEnv = process.env): string[] {
  const raw = (env[ZIG_VERSIONS_ENV] ?? "").trim();
  if (raw === "") return [...PROVISIONED_BY_DEFAULT];
  const versions = raw
    .split(",")
    .map((v) => v.trim())
    .filter((v) => v !== "");
  return [...new Set(versions)];
}

export const ZIG_VERSIONS: readonly string[] = zigVersionsUnderTest();

/**
 * The environment variable that picks the matrix: `full` runs every end-to-end test on every
 * release under test; unset (or `reduced`) runs the reduced matrix (see `fullMatrixVersions`).
 */
export const MATRIX_ENV = "GEN_REUSEPORT_MATRIX";

export type Matrix = "reduced" | "full";

/** The matrix `$GEN_REUSEPORT_MATRIX` asks for; any other value is a mistake and fails the run. */
export function matrixOf(env: NodeJS.ProcessEnv = process.env): Matrix {
  const raw = (env[MATRIX_ENV] ?? "").trim();
  if (raw === "" || raw === "reduced") return "reduced";
  if (raw === "full") return "full";
  throw new Error(`${MATRIX_ENV}=${raw}: expected "full" or "reduced" (the default)`);
}

/**
 * The one rule of the matrix. Every release under test compiles every project the smoke tests
 * need, passes each example's `zig build test` (build.test.ts) and serves
 * one client per handler (smoke.test.ts and the small files that keep `ZIG_VERSIONS`). The whole
 * suite (`describe.each(FULL_MATRIX_VERSIONS)`) runs on the oldest and the newest release under
 * test, where the version bridges of `src/compat.zig` part ways; with `full`, on every release.
 */
export function fullMatrixVersions(versions: readonly string[], matrix: Matrix): string[] {
  if (matrix === "full" || versions.length <= 2) return [...versions];
  const ordered = [...versions].sort(byRelease);
  const ends = new Set([ordered[0]!, ordered[ordered.length - 1]!]);
  return versions.filter((v) => ends.has(v));
}

/** The newest of `versions` (by release, whatever the order they were given in). */
export function newestOf(versions: readonly string[]): string | undefined {
  return [...versions].sort(byRelease).at(-1);
}

function byRelease(a: string, b: string): number {
  const [pa, pb] = [parseZigVersion(a), parseZigVersion(b)];
  if (pa === undefined || pb === undefined) return a.localeCompare(b);
  return compareZigVersions(pa, pb);
}

/** The releases that run every end-to-end test (the others run the smoke subset). */
export const FULL_MATRIX_VERSIONS: readonly string[] = fullMatrixVersions(
  ZIG_VERSIONS,
  matrixOf(),
);

/** Where the suite's toolchains and Zig caches live (the checkout's `.toolchain/` by default). */
export const TOOLCHAIN_DIR = checkoutToolchainDir(process.env);

/**
 * Returns the path of Zig `version`, installing it first if needed. A version that cannot be
 * provisioned fails the run (in CI and locally alike: the suite never skips).
 */
export async function provisionZig(version: string): Promise<string> {
  try {
    return await ensureZig(version, {
      dir: TOOLCHAIN_DIR,
      onInstall: (event) =>
        process.stderr.write(`[e2e] installing zig ${version} into ${event.path}\n`),
    });
  } catch (error) {
    const why =
      error instanceof Error && "problem" in error
        ? JSON.stringify(error.problem)
        : String(error);
    const where = process.env.CI === "true" ? "CI run fails: " : "";
    throw new Error(
      `${where}cannot provision zig ${version} for the end-to-end tests: ${why}. ` +
        `Check python3 -m pip and network access to PyPI, or run a subset with ` +
        `${ZIG_VERSIONS_ENV}=<versions>.`,
    );
  }
}

/**
 * The environment Zig runs with for `version`: a global cache of its own next to the
 * toolchains, so that releases never share a cache and a second run is fast; and one local
 * cache for every project of the release in this run (in the run's folder, removed with it)
 * instead of a `.zig-cache` per project, so that projects with the same `build.zig` (every
 * project of one generator version: the program's name is in `src/name.txt`) compile their
 * build runner once, from Zig 0.15 on (0.15.2 under load: eight examples' runners in 11 s
 * instead of 81 s). Zig 0.14.1 keys it by the project's directory too: each project compiles
 * its own (about 7 CPU-s). Zig's cache is safe for concurrent builds.
 */
export function zigEnv(version: string): NodeJS.ProcessEnv {
  return {
    ZIG_GLOBAL_CACHE_DIR: zigGlobalCacheDir(TOOLCHAIN_DIR, version),
    ZIG_LOCAL_CACHE_DIR: path.join(inject("e2eRunDir"), `zig-${version}`, "zig-cache"),
  };
}

const ZIG_STEP_TIMEOUT_MS = 10 * 60_000;

/**
 * Where every Zig step of the suite is recorded when set: one JSON line per `zig` run (the
 * test file that asked, the project's directory, the arguments, milliseconds, ok). What a
 * profile of the suite counts: `GEN_REUSEPORT_E2E_BUILD_LOG=/tmp/builds.jsonl npm test`.
 */
export const BUILD_LOG_ENV = "GEN_REUSEPORT_E2E_BUILD_LOG";

/** The generator's `buildProject`, each step recorded in `$GEN_REUSEPORT_E2E_BUILD_LOG`. */
export async function buildLogged(options: BuildProjectOptions): Promise<BuildResult> {
  const result = await buildProject(options);
  const log = process.env[BUILD_LOG_ENV];
  if (log !== undefined && log !== "") {
    const file = path.relative(process.cwd(), expect.getState().testPath ?? "");
    for (const step of result.steps) {
      const line = { file, dir: options.dir, args: step.args, ms: step.ms, ok: step.ok };
      appendFileSync(log, `${JSON.stringify(line)}\n`);
    }
  }
  return result;
}

/**
 * Runs `zig ARGS` of `version` in `cwd` with the generator's `buildProject`; never throws: the
 * output says what happened.
 */
export async function runZigIn(
  zig: string,
  args: readonly string[],
  cwd: string,
  version: string,
): Promise<{ ok: boolean; output: string }> {
  const { steps } = await buildLogged({
    zig,
    dir: cwd,
    steps: [args],
    env: zigEnv(version),
    timeoutMs: ZIG_STEP_TIMEOUT_MS,
  });
  const [step] = steps;
  if (step === undefined) return { ok: false, output: "not run" };
  const how = step.timedOut ? "timed out" : `exit code ${step.exitCode ?? step.signal}`;
  return { ok: step.ok, output: `${step.output}\n(${how})`.trim() };
}
