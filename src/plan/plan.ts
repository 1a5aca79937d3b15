/**
 * The plan stage: what to do with each file, from the rendered files, what is on disk and the
 * manifest of the previous run. Pure. Writing, `--dry-run` and `--check` all run this one plan.
 */
import { isUserOwned, type Rendered } from "../render/render.js";
import { MANIFEST_FILE, sha256, type Manifest } from "../render/manifest.js";

export type Action = "create" | "update" | "unchanged" | "remove" | "keep" | "conflict";

/** Why a file is a conflict (or, with `--force`, why it is overwritten or removed anyway). */
export type ConflictReason =
  /** A generated file whose bytes differ from what the last run wrote. */
  | "edited"
  /** A file in the way that gen-reuseport never wrote (not in the manifest). */
  | "unknown"
  /** A file no longer generated, edited since it was written. */
  | "stale-edited"
  /** A directory (or other non-file) where a file should be written. */
  | "not-a-file";

export interface PlannedFile {
  /** Relative to the output directory, `/`-separated. */
  readonly path: string;
  readonly action: Action;
  /** The text to write, for `create` and `update`. */
  readonly content?: string;
  /** Set for conflicts, and for updates and removals that `--force` let through. */
  readonly reason?: ConflictReason;
}

export interface Plan {
  /** Sorted by path, the manifest last (it is written last). */
  readonly files: readonly PlannedFile[];
}

/** What is on disk at a path the plan asks about; absent paths are not in the map. */
export type DiskEntry =
  { readonly kind: "file"; readonly sha256: string } | { readonly kind: "other" };
export type DiskState = ReadonlyMap<string, DiskEntry>;

export interface PlanOptions {
  /** Overwrite or remove hand-edited files instead of refusing. */
  readonly force: boolean;
}

export function plan(
  rendered: Rendered,
  disk: DiskState,
  manifest: Manifest | undefined,
  options: PlanOptions,
): Plan {
  const files: PlannedFile[] = [];
  for (const [path, content] of rendered) {
    if (path === MANIFEST_FILE) continue;
    files.push(planRendered(path, content, disk.get(path), manifest, options));
  }
  for (const path of Object.keys(manifest?.files ?? {})) {
    if (rendered.has(path) || isUserOwned(path) || path === MANIFEST_FILE) continue;
    const stale = planStale(path, disk.get(path), manifest, options);
    if (stale !== undefined) files.push(stale);
  }
  files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const manifestText = rendered.get(MANIFEST_FILE);
  if (manifestText !== undefined) files.push(planManifest(manifestText, disk.get(MANIFEST_FILE)));
  return { files };
}

/** Every path the plan needs to know about on disk. */
export function pathsToInspect(rendered: Rendered, manifest: Manifest | undefined): string[] {
  return [...new Set([...rendered.keys(), ...Object.keys(manifest?.files ?? {})])].sort();
}

function planRendered(
  path: string,
  content: string,
  onDisk: DiskEntry | undefined,
  manifest: Manifest | undefined,
  options: PlanOptions,
): PlannedFile {
  if (onDisk === undefined) return { path, action: "create", content };
  if (onDisk.kind === "other") return { path, action: "conflict", reason: "not-a-file" };
  if (isUserOwned(path)) return { path, action: "keep" };
  if (onDisk.sha256 === sha256(content)) return { path, action: "unchanged" };
  const recorded = manifest?.files[path];
  if (recorded === onDisk.sha256) return { path, action: "update", content };
  const reason: ConflictReason = recorded === undefined ? "unknown" : "edited";
  if (options.force) return { path, action: "update", content, reason };
  return { path, action: "conflict", reason };
}

function planStale(
  path: string,
  onDisk: DiskEntry | undefined,
  manifest: Manifest | undefined,
  options: PlanOptions,
): PlannedFile | undefined {
  if (onDisk === undefined) return undefined;
  if (onDisk.kind === "other") return undefined;
  if (manifest?.files[path] === onDisk.sha256) return { path, action: "remove" };
  if (options.force) return { path, action: "remove", reason: "stale-edited" };
  return { path, action: "conflict", reason: "stale-edited" };
}

/** The manifest is the generator's own bookkeeping: always brought up to date. */
function planManifest(content: string, onDisk: DiskEntry | undefined): PlannedFile {
  const path = MANIFEST_FILE;
  if (onDisk === undefined) return { path, action: "create", content };
  if (onDisk.kind === "other") return { path, action: "conflict", reason: "not-a-file" };
  if (onDisk.sha256 === sha256(content)) return { path, action: "unchanged" };
  return { path, action: "update", content };
}

export function conflicts(p: Plan): PlannedFile[] {
  return p.files.filter((f) => f.action === "conflict");
}

/** Whether applying the plan would change anything on disk (what `--check` reports). */
export function hasChanges(p: Plan): boolean {
  return p.files.some((f) => f.action !== "unchanged" && f.action !== "keep");
}

export type PlanCounts = Record<Action, number>;

export function countActions(p: Plan): PlanCounts {
  const counts: PlanCounts = {
    create: 0,
    update: 0,
    unchanged: 0,
    remove: 0,
    keep: 0,
    conflict: 0,
  };
  for (const f of p.files) counts[f.action] += 1;
  return counts;
}
