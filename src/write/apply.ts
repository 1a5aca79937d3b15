/**
 * The write stage: applies a conflict-free plan to the output directory. Each file is written
 * to a temporary file in its own directory and renamed over the target, so an interrupted run
 * never leaves a half-written file at a target path; the manifest comes last.
 */
import { randomBytes } from "node:crypto";
import { link, mkdir, open, rename, rm, rmdir } from "node:fs/promises";
import path from "node:path";
import { InternalError, OutputError } from "../errors.js";
import { MANIFEST_FILE } from "../render/manifest.js";
import { isUserOwned } from "../render/render.js";
import type { Plan, PlannedFile } from "../plan/plan.js";

export async function applyPlan(outDir: string, plan: Plan): Promise<void> {
  for (const f of plan.files) {
    if (f.action === "conflict") {
      throw new InternalError(`applyPlan got a plan with a conflict at ${f.path}`);
    }
    if (f.action === "update" && isUserOwned(f.path)) {
      throw new InternalError(`applyPlan was asked to overwrite the user-owned ${f.path}`);
    }
  }
  const writes = plan.files.filter((f) => f.action === "create" || f.action === "update");
  const removals = plan.files.filter((f) => f.action === "remove");
  for (const f of writes) {
    if (f.path !== MANIFEST_FILE) await writeFileAtomic(outDir, f);
  }
  for (const f of removals) await removeFile(outDir, f.path);
  const manifest = writes.find((f) => f.path === MANIFEST_FILE);
  if (manifest !== undefined) await writeFileAtomic(outDir, manifest);
}

async function writeFileAtomic(outDir: string, f: PlannedFile): Promise<void> {
  const target = path.join(outDir, ...f.path.split("/"));
  const dir = path.dirname(target);
  const temp = path.join(
    dir,
    `.${path.basename(target)}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`,
  );
  try {
    await mkdir(dir, { recursive: true });
    const handle = await open(temp, "wx");
    try {
      await handle.writeFile(f.content ?? "", "utf8");
      await handle.sync();
    } finally {
      await handle.close();
    }
    // A user-owned file is created exclusively: never clobber one that appeared meanwhile.
    if (isUserOwned(f.path)) await linkExclusive(temp, target);
    else await rename(temp, target);
  } catch (error) {
    await rm(temp, { force: true }).catch(() => undefined);
    throw new OutputError(`cannot write ${target}: ${describe(error)}`);
  }
}

/** Moves `temp` to `target` unless `target` exists (link fails with EEXIST, rename would not). */
async function linkExclusive(temp: string, target: string): Promise<void> {
  try {
    await link(temp, target);
  } finally {
    await rm(temp, { force: true }).catch(() => undefined);
  }
}

/** Removes a stale file, then the directories it leaves empty (up to, not including, outDir). */
async function removeFile(outDir: string, file: string): Promise<void> {
  const target = path.join(outDir, ...file.split("/"));
  try {
    await rm(target, { force: true });
  } catch (error) {
    throw new OutputError(`cannot remove ${target}: ${describe(error)}`);
  }
  const root = path.resolve(outDir);
  let dir = path.dirname(path.resolve(target));
  while (dir !== root && dir.startsWith(root + path.sep)) {
    try {
      await rmdir(dir);
    } catch {
      return; // not empty (or not ours to remove): stop climbing
    }
    dir = path.dirname(dir);
  }
}

function describe(error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === "EACCES" || code === "EPERM") return "permission denied";
  if (code === "ENOSPC") return "no space left on the device";
  if (code === "EEXIST") return "a file appeared there meanwhile";
  if (code === "EISDIR" || code === "ENOTDIR") return "a directory or file is in the way";
  return error instanceof Error ? error.message : String(error);
}
