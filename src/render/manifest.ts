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

export type ManifestCheck =
  | { readonly ok: true; readonly manifest: Manifest }
  | { readonly ok: false; readonly problem: string };

const MANIFEST_KEYS = new Set(["generator", "version", "spec", "files", "userFiles"]);
const SHA256_HEX = /^[0-9a-f]{64}$/;

/**
 * Reads a manifest back and validates it like any other input: the known keys only, plain
 * relative paths inside the output directory (see `isSafeRelativePath`), sha256 hashes. The
 * first problem is returned in words for the user.
 */
export function checkManifest(text: string): ManifestCheck {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false, problem: "is not valid JSON" };
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return { ok: false, problem: "is not a JSON object" };
  }
  const m = value as Record<string, unknown>;
  if (m.generator !== "gen-reuseport") {
    const problem = 'is not a gen-reuseport manifest (no "generator": "gen-reuseport")';
    return { ok: false, problem };
  }
  const unknown = Object.keys(m).find((key) => !MANIFEST_KEYS.has(key));
  if (unknown !== undefined) {
    return { ok: false, problem: `has an unknown key ${JSON.stringify(unknown)}` };
  }
  if (typeof m.version !== "string" || typeof m.spec !== "string") {
    return { ok: false, problem: '"version" and "spec" must be strings' };
  }
  if (typeof m.files !== "object" || m.files === null || Array.isArray(m.files)) {
    return { ok: false, problem: '"files" must be an object of path → sha256' };
  }
  const files: Record<string, string> = {};
  for (const [file, hash] of Object.entries(m.files)) {
    if (!isSafeRelativePath(file)) return { ok: false, problem: unsafePath("files", file) };
    if (typeof hash !== "string" || !SHA256_HEX.test(hash)) {
      return { ok: false, problem: `files[${JSON.stringify(file)}] is not a sha256 in hex` };
    }
    files[file] = hash;
  }
  if (!Array.isArray(m.userFiles)) return { ok: false, problem: '"userFiles" must be an array' };
  const userFiles: string[] = [];
  for (const file of m.userFiles as unknown[]) {
    if (typeof file !== "string" || !isSafeRelativePath(file)) {
      return { ok: false, problem: unsafePath("userFiles", file) };
    }
    userFiles.push(file);
  }
  const { version, spec } = m;
  return { ok: true, manifest: { generator: "gen-reuseport", version, spec, files, userFiles } };
}

/** A valid manifest, or undefined. */
export function parseManifest(text: string): Manifest | undefined {
  const check = checkManifest(text);
  return check.ok ? check.manifest : undefined;
}

function unsafePath(key: string, file: unknown): string {
  const shown = JSON.stringify(file)?.slice(0, 80) ?? String(file);
  return `${key} lists ${shown}, which is not a plain relative path inside the output directory`;
}

/**
 * A manifest is read from disk and could have been edited: only the shape of the paths the
 * generator writes is trusted: `/`-separated segments of `[A-Za-z0-9._-]`, never `.` or `..`,
 * never absolute, never empty.
 */
export function isSafeRelativePath(file: string): boolean {
  if (file.length > 255 || !/^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/.test(file)) return false;
  return file.split("/").every((part) => part !== "." && part !== "..");
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
