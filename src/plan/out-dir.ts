/**
 * The output directory, checked before anything is read or written in it: the edge of the plan
 * stage that every mode (write, `--dry-run`, `--check`) goes through.
 *
 * - `--out` resolves (symbolic links of the path itself included) to a directory that is not
 *   `/` nor the user's home directory, and is not a file.
 * - Inside it, nothing is followed: a symbolic link on the way to any file the run touches is
 *   refused (`pathInside`), and special files (FIFO, socket, device) are never opened.
 * - The manifest is an input like the spec: a regular file, bounded, validated
 *   (`checkManifest`); a bad one is a clear error, not "no previous run".
 */
import type { Dirent } from "node:fs";
import { lstat, readdir, realpath } from "node:fs/promises";
import path from "node:path";
import { OutputError } from "../errors.js";
import { readRegularFile, type RegularFile } from "../read-file.js";
import { checkManifest, MANIFEST_FILE, type Manifest } from "../render/manifest.js";

/** Far above any manifest (a few dozen files), far below trouble. */
export const MAX_MANIFEST_BYTES = 1024 * 1024;

/** Entries a directory may hold and still count as empty: a fresh `git init` is fine. */
const IGNORED_ENTRIES: ReadonlySet<string> = new Set([".git"]);

export interface OutputDirectory {
  /** Absolute, with the links of `--out` itself resolved: every file touched is under it. */
  readonly root: string;
  /** `--out` as the user gave it, for messages. */
  readonly display: string;
  readonly manifest: Manifest | undefined;
  /** It exists, has no manifest and holds something besides `.git`: not ours without --force. */
  readonly foreign: boolean;
}

/** What the path checks need: where the directory is and how the user named it. */
export type Place = Pick<OutputDirectory, "root" | "display">;

export interface OutputDirectoryOptions {
  /** The user's home directory (refused as an output directory). */
  readonly home: string;
  /**
   * Files of the user's (an application module, the custom handler) that this run would create
   * if they were missing: a directory holding only these (and `.git`) is not foreign, so that a
   * module kept under version control, or written by `init --example`, is generated around.
   */
  readonly userFiles?: ReadonlySet<string>;
}

export async function inspectOutputDirectory(
  outDir: string,
  display: string,
  options: OutputDirectoryOptions,
): Promise<OutputDirectory> {
  const root = await resolveRoot(path.resolve(outDir), display);
  if (root === path.parse(root).root) {
    throw refuse(display, "is the root directory", "choose a new or empty directory");
  }
  if (root === (await realpathOr(options.home))) {
    throw refuse(display, "is your home directory", "choose a new or empty directory in it");
  }
  const kind = await kindOf(root);
  if (kind === "absent") return { root, display, manifest: undefined, foreign: false };
  if (kind !== "directory") {
    throw refuse(display, `is ${describeKind(kind)}, not a directory`, "choose another --out");
  }
  const manifest = await readManifest(root, display);
  const foreign =
    manifest === undefined && (await holdsOthers(root, options.userFiles ?? new Set()));
  return { root, display, manifest, foreign };
}

/**
 * The absolute path of `file` (relative, `/`-separated, already validated) under the root,
 * after checking that no component on the way is a symbolic link. Returns undefined when a
 * component is missing (so the file is too), and "blocked" when a component is not a directory.
 */
export async function pathInside(
  dir: Place,
  file: string,
): Promise<{ readonly target: string; readonly blocked: boolean; readonly exists: boolean }> {
  const parts = file.split("/");
  const target = path.join(dir.root, ...parts);
  let current = dir.root;
  for (const [i, part] of parts.entries()) {
    current = path.join(current, part);
    const kind = await kindOf(current);
    if (kind === "link") throw linkRefused(dir, parts.slice(0, i + 1).join("/"));
    if (kind === "absent") return { target, blocked: false, exists: false };
    const isLast = i === parts.length - 1;
    if (!isLast && kind !== "directory") return { target, blocked: true, exists: false };
  }
  return { target, blocked: false, exists: true };
}

export function linkRefused(dir: Place, file: string): OutputError {
  return refuse(
    path.posix.join(dir.display, file),
    "is a symbolic link",
    "gen-reuseport never writes or removes through links; replace it with a real directory or " +
      "file, or choose another --out",
  );
}

type Kind = "absent" | "file" | "directory" | "link" | "fifo" | "socket" | "device";

export async function kindOf(file: string): Promise<Kind> {
  try {
    const stat = await lstat(file);
    if (stat.isSymbolicLink()) return "link";
    if (stat.isDirectory()) return "directory";
    if (stat.isFile()) return "file";
    if (stat.isFIFO()) return "fifo";
    if (stat.isSocket()) return "socket";
    return "device";
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return "absent";
    if (code === "ENOTDIR") return "file";
    throw new OutputError(`cannot inspect ${file}: ${(error as Error).message}`);
  }
}

function describeKind(kind: Kind): string {
  if (kind === "fifo") return "a FIFO";
  if (kind === "link") return "a symbolic link";
  return `a ${kind}`;
}

/** `realpath` of the longest existing prefix, with the missing rest appended. */
async function resolveRoot(absolute: string, display: string): Promise<string> {
  const missing: string[] = [];
  let existing = absolute;
  for (;;) {
    try {
      return path.join(await realpath(existing), ...missing.reverse());
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === "ENOTDIR") {
        throw refuse(display, "is inside a file, not a directory", "choose another --out");
      }
      if (code !== "ENOENT" || existing === path.dirname(existing)) {
        throw new OutputError(`cannot resolve ${display}: ${(error as Error).message}`);
      }
      missing.push(path.basename(existing));
      existing = path.dirname(existing);
    }
  }
}

async function realpathOr(file: string): Promise<string> {
  try {
    return await realpath(file);
  } catch {
    return path.resolve(file);
  }
}

/**
 * Whether the directory holds anything besides `.git` and the given user files. Only the
 * folders on the way to those files are read, so the walk is bounded by them; a link or special
 * file counts as something else.
 */
async function holdsOthers(root: string, userFiles: ReadonlySet<string>): Promise<boolean> {
  const folders = new Set<string>();
  for (const file of userFiles) {
    const parts = file.split("/");
    for (let i = 1; i < parts.length; i++) folders.add(parts.slice(0, i).join("/"));
  }
  const visit = async (folder: string): Promise<boolean> => {
    let entries: Dirent[];
    try {
      entries = await readdir(path.join(root, folder), { withFileTypes: true });
    } catch (error) {
      throw new OutputError(`cannot read ${root}: ${(error as Error).message}`);
    }
    for (const entry of entries) {
      if (folder === "" && IGNORED_ENTRIES.has(entry.name)) continue;
      const file = folder === "" ? entry.name : `${folder}/${entry.name}`;
      if (entry.isFile() && userFiles.has(file)) continue;
      if (entry.isDirectory() && folders.has(file) && !(await visit(file))) continue;
      return true;
    }
    return false;
  };
  return visit("");
}

/**
 * The previous run's manifest. lstat first: a link or a special file is refused before it is
 * opened; then it is opened without following links and without blocking, and checked again.
 */
async function readManifest(root: string, display: string): Promise<Manifest | undefined> {
  const file = path.join(root, MANIFEST_FILE);
  const shown = path.posix.join(display, MANIFEST_FILE);
  const kind = await kindOf(file);
  if (kind === "absent") return undefined;
  if (kind !== "file") {
    throw refuse(shown, `is ${describeKind(kind)}, not a file`, "remove it");
  }
  let read: RegularFile;
  try {
    read = await readRegularFile(file, { followLinks: false, maxBytes: MAX_MANIFEST_BYTES });
  } catch (error) {
    throw new OutputError(`cannot read ${shown}: ${(error as Error).message}`);
  }
  if (read.kind === "too-large") {
    throw refuse(shown, `is ${read.bytes} bytes, more than a manifest can be`, "remove it");
  }
  if (read.kind !== "file") throw refuse(shown, "is not a regular file", "remove it");
  const text = read.data.toString("utf8");
  const check = checkManifest(text);
  if (!check.ok) {
    throw refuse(
      shown,
      check.problem,
      "it was changed by hand: restore it, or remove it (then files already there count as " +
        "not written by gen-reuseport)",
    );
  }
  return check.manifest;
}

/** One line: the path, what is wrong, what to do. Exit 74. */
function refuse(shown: string, what: string, fix: string): OutputError {
  return new OutputError(`${shown}: ${what}; ${fix}`);
}
