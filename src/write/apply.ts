/**
 * The write stage: applies a conflict-free plan to the output directory. Each file is written
 * to a temporary file in its own directory and renamed over the target, so an interrupted run
 * never leaves a half-written file at a target path; the manifest comes last.
 *
 * Nothing is written, renamed or removed through a symbolic link: each directory on the way is
 * checked with lstat (and made one level at a time), and the target must not be a link. The
 * plan stage checked the same paths; this catches a link planted in between.
 */
import { randomBytes } from "node:crypto";
import { link, mkdir, open, rename, rm, rmdir } from "node:fs/promises";
import path from "node:path";
import { InternalError, OutputError } from "../errors.js";
import { MANIFEST_FILE } from "../render/manifest.js";
import { isUserOwned } from "../render/render.js";
import { kindOf, linkRefused, pathInside, type Place } from "../plan/out-dir.js";
import type { Plan, PlannedFile } from "../plan/plan.js";

/** `outDir` is the resolved output directory; `display` names it in messages. */
export async function applyPlan(outDir: string, plan: Plan, display = outDir): Promise<void> {
  for (const f of plan.files) {
    if (f.action === "conflict") {
      throw new InternalError(`applyPlan got a plan with a conflict at ${f.path}`);
    }
    if (f.action === "update" && isUserOwned(f.path)) {
      throw new InternalError(`applyPlan was asked to overwrite the user-owned ${f.path}`);
    }
  }
  const place: Place = { root: path.resolve(outDir), display };
  const writes = plan.files.filter((f) => f.action === "create" || f.action === "update");
  const removals = plan.files.filter((f) => f.action === "remove");
  if (writes.length > 0) await makeDirectory(place.root, place.root);
  for (const f of writes) {
    if (f.path !== MANIFEST_FILE) await writeFileAtomic(place, f);
  }
  for (const f of removals) await removeFile(place, f.path);
  const manifest = writes.find((f) => f.path === MANIFEST_FILE);
  if (manifest !== undefined) await writeFileAtomic(place, manifest);
}

async function writeFileAtomic(place: Place, f: PlannedFile): Promise<void> {
  const target = await prepareTarget(place, f.path);
  const dir = path.dirname(target);
  const temp = path.join(
    dir,
    `.${path.basename(target)}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`,
  );
  try {
    // "wx" is O_CREAT | O_EXCL: it never follows a link at the temporary name.
    const handle = await open(temp, "wx");
    try {
      await handle.writeFile(f.content ?? "", "utf8");
      await handle.sync();
    } finally {
      await handle.close();
    }
    // A user-owned file is created exclusively: never clobber one that appeared meanwhile.
    if (isUserOwned(f.path)) await linkExclusive(temp, target);
    else await rename(temp, target); // replaces the directory entry; a link is not followed
  } catch (error) {
    await rm(temp, { force: true }).catch(() => undefined);
    throw new OutputError(`cannot write ${target}: ${describe(error)}`);
  }
}

/** Makes the directories of `file` one level at a time, refusing links; returns its path. */
async function prepareTarget(place: Place, file: string): Promise<string> {
  const parts = file.split("/");
  let current = place.root;
  for (const [i, part] of parts.slice(0, -1).entries()) {
    current = path.join(current, part);
    const kind = await kindOf(current);
    if (kind === "link") throw linkRefused(place, parts.slice(0, i + 1).join("/"));
    if (kind === "absent") await makeDirectory(current, place.root);
    else if (kind !== "directory") {
      const target = path.join(place.root, file);
      throw new OutputError(`cannot write ${target}: ${current} is not a directory`);
    }
  }
  const target = path.join(current, parts[parts.length - 1] ?? "");
  if ((await kindOf(target)) === "link") throw linkRefused(place, file);
  return target;
}

async function makeDirectory(dir: string, root: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: dir === root });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EEXIST" && (await kindOf(dir)) === "directory") {
      return;
    }
    throw new OutputError(`cannot create ${dir}: ${describe(error)}`);
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

/** Removes a stale file, then the directories it leaves empty (up to, not including, root). */
async function removeFile(place: Place, file: string): Promise<void> {
  const { target, exists } = await pathInside(place, file);
  if (!exists) return;
  try {
    await rm(target, { force: true });
  } catch (error) {
    throw new OutputError(`cannot remove ${target}: ${describe(error)}`);
  }
  let dir = path.dirname(target);
  while (dir !== place.root && dir.startsWith(place.root + path.sep)) {
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
