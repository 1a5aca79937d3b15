/**
 * `gen-reuseport zig install [versions]` and `gen-reuseport zig list`: Zig releases in the
 * per-user cache (toolchain/cache.ts), installed from PyPI's `ziglang` wheel.
 */
import { EXIT } from "../errors.js";
import { installedZigs, toolchainDirs } from "../toolchain/cache.js";
import { ensureZig } from "../toolchain/provision.js";
import { DEFAULT_PROVISIONED_ZIG, SUPPORTED_ZIG } from "../toolchain/versions.js";
import { printJson } from "./report.js";
import type { CliContext } from "./run.js";

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
