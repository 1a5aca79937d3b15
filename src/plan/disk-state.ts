/**
 * Reading what the plan compares against: the edge of the plan stage. Hashes the files at the
 * given paths under the output directory, following no link and opening no special file.
 */
import { constants } from "node:fs";
import { open } from "node:fs/promises";
import { OutputError } from "../errors.js";
import { sha256 } from "../render/manifest.js";
import { kindOf, pathInside, type OutputDirectory } from "./out-dir.js";
import type { DiskEntry, DiskState } from "./plan.js";

export async function readDiskState(
  dir: OutputDirectory,
  paths: readonly string[],
): Promise<DiskState> {
  const state = new Map<string, DiskEntry>();
  for (const file of paths) {
    const entry = await inspect(dir, file);
    if (entry !== undefined) state.set(file, entry);
  }
  return state;
}

async function inspect(dir: OutputDirectory, file: string): Promise<DiskEntry | undefined> {
  const { target, blocked, exists } = await pathInside(dir, file);
  // A parent path that is a file means this path cannot be a file of ours either.
  if (blocked) return { kind: "other" };
  if (!exists) return undefined;
  if ((await kindOf(target)) !== "file") return { kind: "other" };
  try {
    const flags = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;
    const handle = await open(target, flags);
    try {
      if (!(await handle.stat()).isFile()) return { kind: "other" };
      return { kind: "file", sha256: sha256(await handle.readFile()) };
    } finally {
      await handle.close();
    }
  } catch (error) {
    throw new OutputError(`cannot read ${target}: ${(error as Error).message}`);
  }
}
