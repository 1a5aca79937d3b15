/**
 * Provisioning Zig into `<root>/.toolchain/zig-<version>/` from the PyPI `ziglang` wheel.
 * Installs into a temporary directory and renames it into place, under a mkdir lock, so that
 * parallel callers (test workers, CI steps) neither collide nor see a half-installed Zig.
 */
import { randomBytes } from "node:crypto";
import { mkdir, rename, rm, rmdir, stat } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { execa } from "execa";
import { ToolchainError } from "../errors.js";
import { PACKAGE_ROOT } from "../package.js";
import { isExecutable, provisionedZigPath, zigVersion } from "./find.js";
import { DEFAULT_PROVISIONED_ZIG, isSupportedZig, SUPPORTED_ZIG_MESSAGE } from "./versions.js";

export interface EnsureZigOptions {
  /** Package root holding `.toolchain/` (default: gen-reuseport's own root). */
  readonly root?: string;
  /** Python with pip (default "python3"). */
  readonly python?: string;
  /** Progress lines ("installing zig 0.15.2 …"); default: silent. */
  readonly log?: (line: string) => void;
}

const PIP_TIMEOUT_MS = 15 * 60_000;
const LOCK_POLL_MS = 500;
/** A lock older than this belongs to a run that died; it is broken. */
const STALE_LOCK_MS = 20 * 60_000;
const LOCK_WAIT_MS = 25 * 60_000;

/** Returns the path of `zig` for `version`, installing it first if needed. */
export async function ensureZig(
  version: string = DEFAULT_PROVISIONED_ZIG,
  options: EnsureZigOptions = {},
): Promise<string> {
  const root = options.root ?? PACKAGE_ROOT;
  if (!isSupportedZig(version)) {
    throw new ToolchainError(
      `cannot provision zig ${JSON.stringify(version)}: not a supported release ` +
        `(supported: ${SUPPORTED_ZIG_MESSAGE})`,
    );
  }
  const zig = provisionedZigPath(root, version);
  if (await isExecutable(zig)) return zig;
  const toolchainDir = path.join(root, ".toolchain");
  await mkdir(toolchainDir, { recursive: true });
  const lock = path.join(toolchainDir, `.lock-zig-${version}`);
  if (!(await acquireLock(lock, zig))) return zig;
  try {
    if (await isExecutable(zig)) return zig;
    await install(version, toolchainDir, options);
  } finally {
    await rmdir(lock).catch(() => undefined);
  }
  const installed = await zigVersion(zig);
  if (installed !== version) {
    throw new ToolchainError(`installed zig reports version ${installed}, expected ${version}`);
  }
  return zig;
}

async function install(version: string, toolchainDir: string, options: EnsureZigOptions) {
  const temp = path.join(
    toolchainDir,
    `.tmp-zig-${version}-${process.pid}-${randomBytes(4).toString("hex")}`,
  );
  options.log?.(`installing zig ${version} into ${path.join(toolchainDir, `zig-${version}`)}`);
  try {
    const result = await execa(
      options.python ?? "python3",
      [
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-input",
        "--no-deps",
        "--target",
        temp,
        `ziglang==${version}`,
      ],
      { timeout: PIP_TIMEOUT_MS, reject: false, stdin: "ignore", extendEnv: true, all: true },
    );
    if (result.failed) {
      const output = (result.all ?? "").trim().split("\n").slice(-3).join(" | ");
      const why = (result.shortMessage ?? "").split("\n")[0];
      throw new ToolchainError(
        `installing zig ${version} with pip failed (${why})` + (output === "" ? "" : `: ${output}`),
      );
    }
    await rm(path.join(toolchainDir, `zig-${version}`), { recursive: true, force: true });
    await rename(temp, path.join(toolchainDir, `zig-${version}`));
  } finally {
    await rm(temp, { recursive: true, force: true });
  }
}

/**
 * mkdir is atomic: whoever creates the lock directory installs (true); the others wait until
 * the Zig appears (false). The install is renamed into place, so a Zig that exists is whole.
 */
async function acquireLock(lock: string, zig: string): Promise<boolean> {
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      await mkdir(lock);
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    }
    if (await isExecutable(zig)) return false;
    if (await isStale(lock)) {
      await rmdir(lock).catch(() => undefined);
      continue;
    }
    if (Date.now() > deadline) {
      throw new ToolchainError(`timed out waiting for another install of zig (lock ${lock})`);
    }
    await sleep(LOCK_POLL_MS);
  }
}

async function isStale(lock: string): Promise<boolean> {
  try {
    return Date.now() - (await stat(lock)).mtimeMs > STALE_LOCK_MS;
  } catch {
    return false;
  }
}
