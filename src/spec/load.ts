/**
 * Reading a spec file: the edge of the spec stage. Returns the raw JSON value; a missing file or
 * malformed JSON is a `SpecError` that names the file as the user passed it.
 */
import { readFile } from "node:fs/promises";
import path from "node:path";
import { SpecError } from "../errors.js";
import { findJsonSyntaxError } from "./json-syntax.js";

/** Parses spec text; `file` is only used in messages. */
export function parseSpecText(file: string, text: string): unknown {
  const body = text.startsWith("\uFEFF") ? text.slice(1) : text;
  try {
    return JSON.parse(body) as unknown;
  } catch {
    const where = findJsonSyntaxError(body);
    const message =
      where === undefined
        ? `${file}: invalid JSON`
        : `${file}:${where.line}:${where.column}: invalid JSON: ${where.message}`;
    throw new SpecError(file, [], message);
  }
}

/** Reads and parses `file` (relative to `cwd`). */
export async function loadSpecFile(file: string, cwd: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path.resolve(cwd, file), "utf8");
  } catch (error) {
    throw new SpecError(file, [], `${file}: cannot read the spec: ${describeReadError(error)}`);
  }
  return parseSpecText(file, text);
}

function describeReadError(error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === "ENOENT") return "no such file";
  if (code === "EISDIR") return "it is a directory, not a file";
  if (code === "EACCES" || code === "EPERM") return "permission denied";
  return error instanceof Error ? error.message : String(error);
}
