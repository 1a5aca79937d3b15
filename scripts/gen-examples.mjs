// Regenerates the golden files: generated/<example> from examples/<example>.json, from scratch
// (so user-owned files such as src/handler.zig follow the templates too). Run after `npm run build`.
import { readdir, rm } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { generate, asExitError } from "../dist/index.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const examples = (await readdir(path.join(root, "examples")))
  .filter((f) => f.endsWith(".json"))
  .sort();
const wanted = new Set(examples.map((f) => path.basename(f, ".json")));

for (const dir of await readdir(path.join(root, "generated")).catch(() => [])) {
  if (!wanted.has(dir))
    await rm(path.join(root, "generated", dir), { recursive: true, force: true });
}
for (const file of examples) {
  const name = path.basename(file, ".json");
  const outDir = path.join("generated", name);
  await rm(path.join(root, outDir), { recursive: true, force: true });
  try {
    const result = await generate({ specFile: path.join("examples", file), outDir, cwd: root });
    console.log(`${outDir}: ${result.plan.files.length} files`);
  } catch (error) {
    const exit = asExitError(error);
    for (const line of exit.lines()) console.error(line);
    process.exitCode = exit.exitCode;
  }
}
