/**
 * Which Zig releases the end-to-end suite runs against, and provisioning them with the
 * generator's own `ensureZig` (the PyPI `ziglang` wheel) into the checkout's `.toolchain/`, or
 * into `$GEN_REUSEPORT_CACHE` when it is set (the per-user cache of installed users).
 */
import { appendFileSync } from "node:fs";
import { mkdir, rename, writeFile } from "node:fs/promises";
import { execa } from "execa";
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
 * instead of 81 s). Zig 0.14.1 keys it by the project's directory too; `buildLogged` runs it
 * in one folder for all (see `SLOTTED_BELOW`). Zig's cache is safe for concurrent builds.
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

/**
 * The generator's `buildProject`, each step recorded in `$GEN_REUSEPORT_E2E_BUILD_LOG`; on a
 * release below `SLOTTED_BELOW`, run in the release's slot (see `slotWrapper`).
 */
export async function buildLogged(
  options: BuildProjectOptions & { readonly version: string },
): Promise<BuildResult> {
  const { version, ...build } = options;
  const slot = await slotWrapper(version);
  const result =
    slot === undefined
      ? await buildProject(build)
      : fromSlot(await buildProject({ ...build, zig: slot.wrapper }), slot.dir, build.dir);
  const log = process.env[BUILD_LOG_ENV];
  if (log !== undefined && log !== "") {
    const file = path.relative(process.cwd(), expect.getState().testPath ?? "");
    for (const step of result.steps) {
      const line = { file, dir: build.dir, args: step.args, ms: step.ms, ok: step.ok };
      appendFileSync(log, `${JSON.stringify(line)}\n`);
    }
  }
  return result;
}

/**
 * Zig 0.14 compiles `zig build`'s runner (about 7 CPU-s, as long as the program itself) once
 * per project folder: the folder's path is part of its cache key, even with one local cache
 * and the same `build.zig` everywhere. Below this release the suite runs Zig with the project
 * folder mounted at one path per release (the slot, in a mount namespace of the build's own,
 * so builds side by side each see their own project there): every project then shares one
 * runner, and a project whose files another one already compiled costs nothing. The build is
 * the project's own `build.zig`, untouched; only the path Zig sees differs, and `fromSlot`
 * puts the project's path back into what Zig printed. Where mount namespaces are not allowed
 * (not root), Zig runs in the project folder as before.
 */
export const SLOTTED_BELOW = "0.15.0";

/** `GEN_REUSEPORT_E2E_SLOT=0` runs every build in its project folder (to compare, or debug). */
export const SLOT_ENV = "GEN_REUSEPORT_E2E_SLOT";

interface Slot {
  /** The folder every project of the release is seen at. */
  readonly dir: string;
  /** An executable that runs Zig with the working directory mounted at `dir`. */
  readonly wrapper: string;
}

const slots = new Map<string, Promise<Slot | undefined>>();

function slotWrapper(version: string): Promise<Slot | undefined> {
  let slot = slots.get(version);
  if (slot === undefined) {
    slot = makeSlot(version);
    slots.set(version, slot);
  }
  return slot;
}

async function makeSlot(version: string): Promise<Slot | undefined> {
  const [release, below] = [parseZigVersion(version), parseZigVersion(SLOTTED_BELOW)];
  if (release === undefined || compareZigVersions(release, below!) >= 0) return undefined;
  if (process.env[SLOT_ENV] === "0" || !(await mountNamespacesAllowed())) return undefined;
  const base = path.join(inject("e2eRunDir"), `zig-${version}`);
  const dir = path.join(base, "slot");
  const wrapper = path.join(base, "zig-in-slot");
  const zig = await provisionZig(version);
  const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;
  const script = [
    "#!/bin/sh",
    "# Zig, the working directory seen at the slot (test/e2e/support/zig.ts)",
    "exec unshare --mount --propagation private -- /bin/sh -c \\",
    `  'mount --bind "$1" "$2" && cd "$2" && shift 2 && exec "$@"' \\`,
    `  sh "$(pwd -P)" ${quote(dir)} ${quote(zig)} "$@"`,
    "",
  ].join("\n");
  await mkdir(dir, { recursive: true });
  // Written whole under another name and renamed: workers write the same file side by side.
  const temporary = `${wrapper}.${process.pid}`;
  await writeFile(temporary, script, { mode: 0o755 });
  await rename(temporary, wrapper);
  return { dir, wrapper };
}

let mountNamespaces: Promise<boolean> | undefined;

function mountNamespacesAllowed(): Promise<boolean> {
  mountNamespaces ??= execa("unshare", ["--mount", "--propagation", "private", "true"], {
    reject: false,
    stdin: "ignore",
  }).then((r) => r.exitCode === 0);
  return mountNamespaces;
}

/** `result` with the slot's path in Zig's output and diagnostics replaced by the project's. */
function fromSlot(result: BuildResult, slot: string, dir: string): BuildResult {
  const back = (text: string) => text.replaceAll(slot, dir);
  const steps = result.steps.map((step) => ({
    ...step,
    output: back(step.output),
    diagnostics: step.diagnostics.map((d) =>
      d.path === undefined ? d : { ...d, path: back(d.path) },
    ),
  }));
  return { ...result, steps };
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
    version,
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
