/**
 * Reading what the plan compares against: the edge of the plan stage. Hashes the files at the
 * given paths under the output directory, following no link and opening no special file.
 */
import { OutputError } from "../errors.js";
import { readRegularFile, type RegularFile } from "../read-file.js";
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
  let read: RegularFile;
  try {
    read = await readRegularFile(target, { followLinks: false });
  } catch (error) {
    throw new OutputError(`cannot read ${target}: ${(error as Error).message}`);
  }
  if (read.kind !== "file") return { kind: "other" };
  return { kind: "file", sha256: sha256(read.data) };
}
