/**
 * Installing Zig into `<dir>/zig-<version>/` (the per-user cache by default, see `cache.ts`) from
 * the PyPI `ziglang` wheel.
 * Installs into a temporary directory and renames it into place, under a mkdir lock, so that
 * parallel callers (test workers, CI steps) neither collide nor see a half-installed Zig.
 */
import { randomBytes } from "node:crypto";
import { mkdir, rename, rm, rmdir, stat } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { ToolchainError } from "../errors.js";
import { installedZigPath, isExecutable, toolchainCacheDir } from "./cache.js";
import { zigVersion } from "./find.js";
import { DEFAULT_PROVISIONED_ZIG, isSupportedZig } from "../zig-facts.js";

export interface EnsureZigOptions {
  /** The toolchain directory (default: the per-user cache, `toolchainCacheDir(process.env)`). */
  readonly dir?: string;
  /** Python with pip (default "python3"). */
  readonly python?: string;
  /** Called when an install starts (none when the release is already there). */
  readonly onInstall?: (event: { readonly version: string; readonly path: string }) => void;
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
  const toolchainDir = options.dir ?? toolchainCacheDir(process.env);
  if (!isSupportedZig(version)) throw new ToolchainError({ kind: "release-unsupported", version });
  const zig = installedZigPath(toolchainDir, version);
  if (await isExecutable(zig)) return zig;
  await mkdir(toolchainDir, { recursive: true });
  const lock = path.join(toolchainDir, `.lock-zig-${version}`);
  if (!(await acquireLock(lock, zig, version))) return zig;
  try {
    if (await isExecutable(zig)) return zig;
    await install(version, toolchainDir, options);
  } finally {
    await rmdir(lock).catch(() => undefined);
  }
  const installed = await zigVersion(zig);
  if (installed !== version) {
    throw new ToolchainError({ kind: "install-mismatch", version, installed });
  }
  return zig;
}

async function install(version: string, toolchainDir: string, options: EnsureZigOptions) {
  const temp = path.join(
    toolchainDir,
    `.tmp-zig-${version}-${process.pid}-${randomBytes(4).toString("hex")}`,
  );
  options.onInstall?.({ version, path: path.join(toolchainDir, `zig-${version}`) });
  const { execa } = await import("execa");
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
      throw new ToolchainError({ kind: "install-failed", version, reason: why ?? "", output });
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
async function acquireLock(lock: string, zig: string, version: string): Promise<boolean> {
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
      throw new ToolchainError({ kind: "install-locked", version, lock });
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
