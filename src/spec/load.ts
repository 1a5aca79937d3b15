/**
 * Reading a spec file: the edge of the spec stage. Returns the raw JSON value; a missing,
 * oversized or special file, malformed JSON, JSON nested too deep and duplicate keys are a
 * `SpecError` that names the file as the user passed it.
 */
import path from "node:path";
import { SpecError, type Diagnostic } from "../errors.js";
import { readRegularFile, type RegularFile } from "../read-file.js";
import { parseJson } from "./json-syntax.js";

/** Far above any real spec (64 listeners with 64 KiB bodies fit), far below trouble. */
export const MAX_SPEC_BYTES = 4 * 1024 * 1024;

/** Parses spec text; `file` is only used in messages. */
export function parseSpecText(file: string, text: string): unknown {
  if (text.length > MAX_SPEC_BYTES || Buffer.byteLength(text, "utf8") > MAX_SPEC_BYTES) {
    throw tooLarge(file, Buffer.byteLength(text, "utf8"));
  }
  const body = text.startsWith("\uFEFF") ? text.slice(1) : text;
  const result = parseJson(body);
  if (!result.ok) {
    const { line, column, message } = result.error;
    throw new SpecError(file, [], `${file}:${line}:${column}: invalid JSON: ${message}`);
  }
  if (result.duplicates.length > 0) {
    const diagnostics: Diagnostic[] = result.duplicates.map((d) => ({
      path: d.path,
      at: d.at,
      message:
        `duplicate key, also at ${d.first.line}:${d.first.column}; ` +
        "JSON keeps only the last one, so remove one of them",
    }));
    throw new SpecError(file, diagnostics);
  }
  return result.value;
}

/**
 * Reads and parses `file` (relative to `cwd`). Opened without blocking and checked to be a
 * regular file before any read, so a FIFO or a device never hangs the generator.
 */
export async function loadSpecFile(file: string, cwd: string): Promise<unknown> {
  let read: RegularFile;
  try {
    const options = { followLinks: true, maxBytes: MAX_SPEC_BYTES };
    read = await readRegularFile(path.resolve(cwd, file), options);
  } catch (error) {
    throw cannotRead(file, describeReadError(error));
  }
  switch (read.kind) {
    case "directory":
      throw cannotRead(file, "it is a directory, not a file");
    case "special":
      throw cannotRead(file, "it is not a regular file (a FIFO, socket or device)");
    case "too-large":
      throw tooLarge(file, read.bytes);
    case "file":
      return parseSpecText(file, read.data.toString("utf8"));
  }
}

function cannotRead(file: string, why: string): SpecError {
  return new SpecError(file, [], `${file}: cannot read the spec: ${why}`);
}

function tooLarge(file: string, bytes: number): SpecError {
  return new SpecError(
    file,
    [],
    `${file}: the spec is ${bytes} bytes; a spec may be at most ${MAX_SPEC_BYTES} bytes (4 MiB)`,
  );
}

function describeReadError(error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === "ENOENT") return "no such file";
  if (code === "EACCES" || code === "EPERM") return "permission denied";
  return error instanceof Error ? error.message : String(error);
}
