/**
 * Reading the templates directory: the edge of the render stage. Every file ending in `.hbs`
 * (rendered through Handlebars) or `.zig` (copied byte for byte) under it, keyed by its
 * `/`-separated path relative to the directory.
 */
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { InternalError } from "../errors.js";
import { isTemplateFile, type Templates } from "./render.js";

export async function loadTemplates(dir: string): Promise<Templates> {
  let entries;
  try {
    entries = await readdir(dir, { recursive: true, withFileTypes: true });
  } catch (error) {
    throw new InternalError(`cannot read the templates directory ${dir}`, error);
  }
  const templates = new Map<string, string>();
  const files = entries
    .filter((e) => e.isFile() && isTemplateFile(e.name))
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)).split(path.sep).join("/"))
    .sort();
  for (const file of files) {
    templates.set(file, await readFile(path.join(dir, file), "utf8"));
  }
  return templates;
}
