/**
 * Where gen-reuseport is installed and which version it is: read once from its package.json,
 * found relative to this module (the same from `src/` under vitest and from `dist/`).
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import path from "node:path";

/** The directory holding package.json, templates/, examples/ and (in a checkout) .toolchain/. */
export const PACKAGE_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

/** The generator's version, written into every generated file's header. */
export const GENERATOR_VERSION: string = (
  JSON.parse(readFileSync(path.join(PACKAGE_ROOT, "package.json"), "utf8")) as { version: string }
).version;

export const TEMPLATES_DIR = path.join(PACKAGE_ROOT, "templates");

/** The example specs (`<name>.json`) and their application modules (`app/<module>.zig`). */
export const EXAMPLES_DIR = path.join(PACKAGE_ROOT, "examples");
