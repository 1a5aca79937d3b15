/**
 * Finding a Zig to build with, in the documented order: `--zig PATH`, `$ZIG`, the newest
 * supported Zig installed in the toolchain directories (the per-user cache, then a checkout's
 * `.toolchain/`), then `zig` on `PATH`. The first one found is the one used; if it is not a
 * supported release, that is an error (no silent fallback).
 */
import path from "node:path";
import { ToolchainError } from "../errors.js";
import { installedZigs, isExecutable, toolchainDirs } from "./cache.js";
import { isSupportedZig } from "../zig-facts.js";

export type ZigSource = "flag" | "env" | "toolchain" | "path";

export interface FoundZig {
  /** Path of the zig executable. */
  readonly path: string;
  /** What `zig version` printed, e.g. "0.15.2". */
  readonly version: string;
  readonly source: ZigSource;
}

export interface FindZigOptions {
  /** `--zig PATH`. */
  readonly zigPath?: string | undefined;
  /** Environment to read `ZIG`, `PATH` and the cache location from (default: process.env). */
  readonly env?: NodeJS.ProcessEnv;
  /** Directories holding `zig-<version>/` (default: `toolchainDirs(env)`). */
  readonly toolchainDirs?: readonly string[];
  /** Directory `--zig` is relative to (default: process.cwd()). */
  readonly cwd?: string;
}

const VERSION_TIMEOUT_MS = 30_000;

export async function findZig(options: FindZigOptions = {}): Promise<FoundZig> {
  const env = options.env ?? process.env;
  const cwd = options.cwd ?? process.cwd();
  const dirs = options.toolchainDirs ?? toolchainDirs(env, cwd);
  const candidate = await locate(options.zigPath, dirs, env, cwd);
  if (candidate === undefined) {
    throw new ToolchainError({ kind: "zig-not-found", looked: ["--zig", "$ZIG", ...dirs, "PATH"] });
  }
  const version = await zigVersion(candidate.path);
  if (!isSupportedZig(version)) {
    throw new ToolchainError({ kind: "zig-unsupported", path: candidate.path, version });
  }
  return { ...candidate, version };
}

async function locate(
  zigPath: string | undefined,
  dirs: readonly string[],
  env: NodeJS.ProcessEnv,
  cwd: string,
): Promise<{ path: string; source: ZigSource } | undefined> {
  if (zigPath !== undefined) return { path: path.resolve(cwd, zigPath), source: "flag" };
  if (env.ZIG !== undefined && env.ZIG !== "")
    return { path: path.resolve(cwd, env.ZIG), source: "env" };
  const [newest] = await installedZigs(dirs);
  if (newest !== undefined) return { path: newest.path, source: "toolchain" };
  const onPath = await searchPath("zig", env.PATH ?? "");
  if (onPath !== undefined) return { path: onPath, source: "path" };
  return undefined;
}

async function searchPath(command: string, pathVariable: string): Promise<string | undefined> {
  for (const dir of pathVariable.split(path.delimiter)) {
    if (dir === "") continue;
    const file = path.join(dir, command);
    if (await isExecutable(file)) return file;
  }
  return undefined;
}

/** Runs `zig version`; a Zig that does not run is a toolchain error. */
export async function zigVersion(zig: string): Promise<string> {
  const { execa } = await import("execa");
  const result = await execa(zig, ["version"], {
    timeout: VERSION_TIMEOUT_MS,
    reject: false,
    stdin: "ignore",
    extendEnv: true,
  });
  if (result.failed) {
    const why = result.code === "ENOENT" ? "no such file" : (result.shortMessage ?? "");
    throw new ToolchainError({ kind: "zig-does-not-run", path: zig, reason: oneLine(why) });
  }
  return result.stdout.trim();
}

function oneLine(text: string): string {
  return text.split("\n")[0] ?? "";
}
