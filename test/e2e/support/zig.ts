/**
 * Which Zig releases the end-to-end suite runs against, and provisioning them with the
 * generator's own `ensureZig` (the PyPI `ziglang` wheel) into the checkout's `.toolchain/`, or
 * into `$GEN_REUSEPORT_CACHE` when it is set (the per-user cache of installed users).
 */
import {
  buildProject,
  checkoutToolchainDir,
  ensureZig,
  zigGlobalCacheDir,
} from "../../../src/index.js";
import { PROVISIONED_BY_DEFAULT } from "../../../src/zig-facts.js";

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
 * toolchains, so that releases never share a cache and a second run is fast.
 */
export function zigEnv(version: string): NodeJS.ProcessEnv {
  return { ZIG_GLOBAL_CACHE_DIR: zigGlobalCacheDir(TOOLCHAIN_DIR, version) };
}

const ZIG_STEP_TIMEOUT_MS = 10 * 60_000;

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
  const { steps } = await buildProject({
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
