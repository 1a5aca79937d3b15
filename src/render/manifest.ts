/**
 * The manifest `.gen-reuseport.json`: which files the generator wrote and their sha256, so a
 * later run can tell its own output from hand edits and remove files it no longer generates.
 */
import { createHash } from "node:crypto";

export const MANIFEST_FILE = ".gen-reuseport.json";

export interface Manifest {
  readonly generator: "gen-reuseport";
  readonly version: string;
  readonly spec: string;
  /** Generated path → sha256 (hex) of the bytes written. */
  readonly files: Readonly<Record<string, string>>;
  /** User-owned files created once (never overwritten); no hashes: they are the user's. */
  readonly userFiles: readonly string[];
}

export function sha256(text: string | Uint8Array): string {
  return createHash("sha256").update(text).digest("hex");
}

/** Pretty JSON with sorted keys and a trailing newline. */
export function manifestText(manifest: Manifest): string {
  return `${JSON.stringify(sortKeys(manifest), null, 2)}\n`;
}

/** Reads a manifest back; anything that is not one yields undefined (treated as no manifest). */
export function parseManifest(text: string): Manifest | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof value !== "object" || value === null) return undefined;
  const m = value as Record<string, unknown>;
  if (m.generator !== "gen-reuseport" || typeof m.files !== "object" || m.files === null) {
    return undefined;
  }
  const files: Record<string, string> = {};
  for (const [file, hash] of Object.entries(m.files)) {
    if (typeof hash === "string" && isSafeRelativePath(file)) files[file] = hash;
  }
  const userFiles = Array.isArray(m.userFiles)
    ? m.userFiles.filter((f): f is string => typeof f === "string" && isSafeRelativePath(f))
    : [];
  return {
    generator: "gen-reuseport",
    version: typeof m.version === "string" ? m.version : "",
    spec: typeof m.spec === "string" ? m.spec : "",
    files,
    userFiles,
  };
}

/**
 * A manifest is read from disk and could have been edited: only plain relative paths inside the
 * output directory are trusted (never `..`, absolute paths or backslashes).
 */
export function isSafeRelativePath(file: string): boolean {
  if (file === "" || file.startsWith("/") || file.includes("\\") || file.includes("\0")) {
    return false;
  }
  return file.split("/").every((part) => part !== "" && part !== "." && part !== "..");
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (typeof value !== "object" || value === null) return value;
  const sorted: Record<string, unknown> = {};
  for (const key of Object.keys(value).sort()) {
    sorted[key] = sortKeys((value as Record<string, unknown>)[key]);
  }
  return sorted;
}
