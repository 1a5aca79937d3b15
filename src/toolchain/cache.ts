/**
 * Where Zig toolchains live: a per-user cache shared by every project and checkout,
 * `$GEN_REUSEPORT_CACHE`, else `$XDG_CACHE_HOME/gen-reuseport`, else `~/.cache/gen-reuseport`
 * (the XDG base directory convention, as pip, Go and Zig itself use for their caches). Each
 * release is `<dir>/zig-<version>/ziglang/zig`; a checkout's `.toolchain/` has the same layout and
 * is still searched (it is where the test suite and CI provision).
 */
import { access, constants, readdir } from "node:fs/promises";
import { homedir } from "node:os";
import path from "node:path";
import { PACKAGE_ROOT } from "../package.js";
import { compareZigVersions, isSupportedZig, parseZigVersion } from "../zig-facts.js";

/** Set it to put toolchains elsewhere (the test suite points it at the checkout's `.toolchain`). */
export const CACHE_ENV = "GEN_REUSEPORT_CACHE";

/** The per-user toolchain directory for this environment (relative values against `cwd`). */
export function toolchainCacheDir(
  env: NodeJS.ProcessEnv,
  cwd: string = process.cwd(),
  home: string = homedir(),
): string {
  const own = env[CACHE_ENV];
  if (own !== undefined && own !== "") return path.resolve(cwd, own);
  const xdg = env.XDG_CACHE_HOME;
  // The XDG spec says a relative XDG_CACHE_HOME is invalid and to be ignored.
  if (xdg !== undefined && path.isAbsolute(xdg)) return path.join(xdg, "gen-reuseport");
  return path.join(home, ".cache", "gen-reuseport");
}

/** A checkout's `.toolchain/` (where `npm run zig:install` and the test suite provision). */
export const CHECKOUT_TOOLCHAIN_DIR = path.join(PACKAGE_ROOT, ".toolchain");

/**
 * Where a checkout's own scripts (the test suite, `npm run demo`, the benchmarks,
 * `npm run zig:install`) keep their toolchains: `$GEN_REUSEPORT_CACHE` when set, else the
 * checkout's `.toolchain/` (also where CI provisions).
 */
export function checkoutToolchainDir(env: NodeJS.ProcessEnv, cwd: string = process.cwd()): string {
  const own = env[CACHE_ENV];
  return own !== undefined && own !== "" ? path.resolve(cwd, own) : CHECKOUT_TOOLCHAIN_DIR;
}

/** The directories searched for installed Zig releases, in order, without duplicates. */
export function toolchainDirs(env: NodeJS.ProcessEnv, cwd?: string): string[] {
  return [...new Set([toolchainCacheDir(env, cwd), CHECKOUT_TOOLCHAIN_DIR])];
}

/** `<dir>/zig-<version>/ziglang/zig`. */
export function installedZigPath(dir: string, version: string): string {
  return path.join(dir, `zig-${version}`, "ziglang", "zig");
}

/**
 * A Zig global cache of its own per release, next to the toolchains: what the test suite, the
 * demo and the benchmarks build with, so releases never share a cache and a second run is fast.
 */
export function zigGlobalCacheDir(dir: string, version: string): string {
  return path.join(dir, `cache-${version}`);
}

export interface InstalledZig {
  readonly version: string;
  readonly path: string;
  readonly dir: string;
}

/** Supported, executable Zig releases installed in `dirs`, newest first (first dir wins a tie). */
export async function installedZigs(dirs: readonly string[]): Promise<InstalledZig[]> {
  const found: InstalledZig[] = [];
  for (const dir of dirs) {
    let names: string[];
    try {
      names = await readdir(dir);
    } catch {
      continue;
    }
    for (const name of names) {
      const version = /^zig-(\d+\.\d+\.\d+)$/.exec(name)?.[1];
      if (version === undefined || !isSupportedZig(version)) continue;
      if (found.some((z) => z.version === version)) continue;
      const zig = installedZigPath(dir, version);
      if (await isExecutable(zig)) found.push({ version, path: zig, dir });
    }
  }
  return found.sort((a, b) =>
    compareZigVersions(parseZigVersion(b.version)!, parseZigVersion(a.version)!),
  );
}

/** Whether `file` exists and may be executed by this process. */
export async function isExecutable(file: string): Promise<boolean> {
  try {
    await access(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}
