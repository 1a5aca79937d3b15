/**
 * `gen-reuseport zig install [versions]`, `zig list` and `zig path [version]`: Zig releases in
 * the per-user cache (toolchain/cache.ts), installed from PyPI's `ziglang` wheel. `zig path`
 * names one for scripts and for the generated project's README (`zig exec`, zig-exec.ts, runs it).
 */
import { EXIT, ToolchainError, UsageError } from "../../errors.js";
import { installedZigs, toolchainDirs, type InstalledZig } from "../../toolchain/cache.js";
import { ensureZig } from "../../toolchain/provision.js";
import {
  DEFAULT_PROVISIONED_ZIG,
  isSupportedZig,
  SUPPORTED_ZIG,
  SUPPORTED_ZIG_MESSAGE,
} from "../../zig-facts.js";
import { printJson } from "../report.js";
import type { CliContext, ZigPathCommand } from "../types.js";

function dirsOf(ctx: CliContext): readonly string[] {
  return ctx.toolchainDirs ?? toolchainDirs(ctx.env, ctx.cwd);
}

export async function runZigInstall(
  command: { readonly versions: readonly string[]; readonly all: boolean; readonly json: boolean },
  ctx: CliContext,
): Promise<number> {
  const [dir] = dirsOf(ctx);
  const wanted = command.all
    ? [...SUPPORTED_ZIG]
    : command.versions.length > 0
      ? command.versions
      : [DEFAULT_PROVISIONED_ZIG];
  const installed: { version: string; path: string; action: "installed" | "present" }[] = [];
  for (const version of wanted) {
    let action = "present" as "installed" | "present";
    const zig = await ensureZig(version, {
      ...(dir === undefined ? {} : { dir }),
      ...(ctx.python === undefined ? {} : { python: ctx.python }),
      onInstall: (event) => {
        action = "installed";
        if (!command.json) ctx.stderr.write(`installing zig ${version} into ${event.path} …\n`);
      },
    });
    installed.push({ version, path: zig, action });
    if (!command.json) {
      const what = action === "installed" ? "installed" : "already installed";
      ctx.stdout.write(`zig ${version}: ${what} at ${zig}\n`);
    }
  }
  if (command.json) {
    printJson(ctx, { ok: true, exitCode: EXIT.ok, command: "zig install", installed });
  }
  return EXIT.ok;
}

export async function runZigList(
  command: { readonly json: boolean },
  ctx: CliContext,
): Promise<number> {
  const dirs = dirsOf(ctx);
  const found = await installedZigs(dirs);
  const releases = [...SUPPORTED_ZIG].reverse().map((version) => {
    const zig = found.find((z) => z.version === version);
    return zig === undefined
      ? { version, installed: false }
      : { version, installed: true, path: zig.path };
  });
  if (command.json) {
    printJson(ctx, {
      ok: true,
      exitCode: EXIT.ok,
      command: "zig list",
      cacheDir: dirs[0],
      searched: dirs,
      releases,
    });
    return EXIT.ok;
  }
  ctx.stdout.write(
    `Zig releases gen-reuseport supports ("zig install" puts them in ${dirs[0]}):\n`,
  );
  for (const r of releases) {
    ctx.stdout.write(`  ${r.version.padEnd(7)} ${"path" in r ? r.path : "not installed"}\n`);
  }
  return EXIT.ok;
}

/**
 * The installed Zig `zig path` and `zig exec` use: that release, or the newest supported one
 * installed. Not installed is a toolchain error (exit 3) that names the install command.
 */
export async function installedZig(
  version: string | undefined,
  ctx: CliContext,
): Promise<InstalledZig> {
  if (version !== undefined && !isSupportedZig(version)) {
    throw new UsageError(
      `zig ${JSON.stringify(version)} is not a supported release ` +
        `(supported: ${SUPPORTED_ZIG_MESSAGE})`,
    );
  }
  const dirs = dirsOf(ctx);
  const found = await installedZigs(dirs);
  const zig = version === undefined ? found[0] : found.find((z) => z.version === version);
  if (zig === undefined) {
    throw new ToolchainError({
      kind: "zig-not-installed",
      ...(version === undefined ? {} : { version }),
      searched: dirs,
    });
  }
  return zig;
}

export async function runZigPath(command: ZigPathCommand, ctx: CliContext): Promise<number> {
  const zig = await installedZig(command.version, ctx);
  if (command.json) {
    printJson(ctx, {
      ok: true,
      exitCode: EXIT.ok,
      command: "zig path",
      zig: { version: zig.version, path: zig.path },
    });
    return EXIT.ok;
  }
  ctx.stdout.write(`${zig.path}\n`);
  return EXIT.ok;
}
