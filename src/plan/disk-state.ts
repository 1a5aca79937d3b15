/**
 * Reading what the plan compares against: the edge of the plan stage. Hashes the files at the
 * given paths under the output directory and reads the previous manifest.
 */
import { lstat, readFile } from "node:fs/promises";
import path from "node:path";
import { OutputError } from "../errors.js";
import { MANIFEST_FILE, parseManifest, sha256, type Manifest } from "../render/manifest.js";
import type { DiskEntry, DiskState } from "./plan.js";

export async function readDiskState(outDir: string, paths: readonly string[]): Promise<DiskState> {
  const state = new Map<string, DiskEntry>();
  for (const file of paths) {
    const entry = await inspect(path.join(outDir, ...file.split("/")));
    if (entry !== undefined) state.set(file, entry);
  }
  return state;
}

/** The previous run's manifest; absent or unreadable means "no previous run". */
export async function readManifest(outDir: string): Promise<Manifest | undefined> {
  try {
    return parseManifest(await readFile(path.join(outDir, MANIFEST_FILE), "utf8"));
  } catch {
    return undefined;
  }
}

async function inspect(file: string): Promise<DiskEntry | undefined> {
  try {
    const stat = await lstat(file);
    if (!stat.isFile()) return { kind: "other" };
    return { kind: "file", sha256: sha256(await readFile(file)) };
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return undefined;
    // A parent path that is a file (ENOTDIR) means this path cannot be a file of ours either.
    if (code === "ENOTDIR") return { kind: "other" };
    throw new OutputError(`cannot read ${file}: ${(error as Error).message}`);
  }
}
