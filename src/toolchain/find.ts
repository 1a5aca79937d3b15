/**
 * Finding a Zig to build with, in the documented order: `--zig PATH`, `$ZIG`, the newest
 * supported Zig provisioned under `<root>/.toolchain/`, then `zig` on `PATH`. The first one found
 * is the one used; if it is not a supported release, that is an error (no silent fallback).
 */
import { access, constants, readdir } from "node:fs/promises";
import path from "node:path";
import { execa } from "execa";
import { ToolchainError } from "../errors.js";
import { PACKAGE_ROOT } from "../package.js";
import {
  compareZigVersions,
  isSupportedZig,
  parseZigVersion,
  SUPPORTED_ZIG_MESSAGE,
} from "./versions.js";

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
  /** Environment to read `ZIG` and `PATH` from (default: process.env). */
  readonly env?: NodeJS.ProcessEnv;
  /** Package root holding `.toolchain/` (default: gen-reuseport's own root). */
  readonly root?: string;
  /** Directory `--zig` is relative to (default: process.cwd()). */
  readonly cwd?: string;
}

const VERSION_TIMEOUT_MS = 30_000;

export const INSTALL_HINT = 'run "npm run zig:install" or pass --zig PATH';

export async function findZig(options: FindZigOptions = {}): Promise<FoundZig> {
  const env = options.env ?? process.env;
  const cwd = options.cwd ?? process.cwd();
  const root = options.root ?? PACKAGE_ROOT;
  const candidate = await locate(options.zigPath, root, env, cwd);
  if (candidate === undefined) {
    throw new ToolchainError(
      `zig not found (looked at --zig, $ZIG, ${path.join(root, ".toolchain")} and PATH); ` +
        INSTALL_HINT,
    );
  }
  const version = await zigVersion(candidate.path);
  if (!isSupportedZig(version)) {
    throw new ToolchainError(
      `zig ${version} at ${candidate.path} is not supported (supported: ` +
        `${SUPPORTED_ZIG_MESSAGE}); ${INSTALL_HINT}`,
    );
  }
  return { ...candidate, version };
}

async function locate(
  zigPath: string | undefined,
  root: string,
  env: NodeJS.ProcessEnv,
  cwd: string,
): Promise<{ path: string; source: ZigSource } | undefined> {
  if (zigPath !== undefined) return { path: path.resolve(cwd, zigPath), source: "flag" };
  if (env.ZIG !== undefined && env.ZIG !== "")
    return { path: path.resolve(cwd, env.ZIG), source: "env" };
  const provisioned = await newestProvisioned(root);
  if (provisioned !== undefined) return { path: provisioned, source: "toolchain" };
  const onPath = await searchPath("zig", env.PATH ?? "");
  if (onPath !== undefined) return { path: onPath, source: "path" };
  return undefined;
}

/** `<root>/.toolchain/zig-<version>/ziglang/zig` for a provisioned Zig. */
export function provisionedZigPath(root: string, version: string): string {
  return path.join(root, ".toolchain", `zig-${version}`, "ziglang", "zig");
}

/** The newest supported, executable Zig under `<root>/.toolchain/`. */
async function newestProvisioned(root: string): Promise<string | undefined> {
  let names: string[];
  try {
    names = await readdir(path.join(root, ".toolchain"));
  } catch {
    return undefined;
  }
  const versions = names
    .map((n) => /^zig-(\d+\.\d+\.\d+)$/.exec(n)?.[1])
    .filter((v): v is string => v !== undefined && isSupportedZig(v))
    .sort((a, b) => compareZigVersions(parseZigVersion(b)!, parseZigVersion(a)!));
  for (const version of versions) {
    const zig = provisionedZigPath(root, version);
    if (await isExecutable(zig)) return zig;
  }
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

/** Whether `file` exists and may be executed by this process. */
export async function isExecutable(file: string): Promise<boolean> {
  try {
    await access(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Runs `zig version`; a Zig that does not run is a toolchain error. */
export async function zigVersion(zig: string): Promise<string> {
  const result = await execa(zig, ["version"], {
    timeout: VERSION_TIMEOUT_MS,
    reject: false,
    stdin: "ignore",
    extendEnv: true,
  });
  if (result.failed) {
    const why = result.code === "ENOENT" ? "no such file" : (result.shortMessage ?? "");
    throw new ToolchainError(`zig at ${zig} does not run (${oneLine(why)}); ${INSTALL_HINT}`);
  }
  return result.stdout.trim();
}

function oneLine(text: string): string {
  return text.split("\n")[0] ?? "";
}
