/**
 * Golden files: generated/<example>/ is the committed output of examples/<example>.json.
 * Regenerates each example into a temporary directory and compares file sets and bytes.
 * After an intended change to templates or the generator: `npm run gen:examples`.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { generate } from "../src/generate.js";

const root = path.join(import.meta.dirname, "..");
const examples = readdirSync(path.join(root, "examples"))
  .filter((f) => f.endsWith(".json"))
  .sort();
const scratch = mkdtempSync(path.join(tmpdir(), "gen-reuseport-golden-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** Build output a developer may have left in generated/ (ignored by git) is not golden. */
const IGNORED_DIRS = new Set([".zig-cache", "zig-out"]);

function files(dir: string, prefix = ""): string[] {
  return readdirSync(path.join(dir, prefix), { withFileTypes: true }).flatMap((e) => {
    const rel = prefix === "" ? e.name : `${prefix}/${e.name}`;
    if (e.isDirectory()) return IGNORED_DIRS.has(e.name) ? [] : files(dir, rel);
    return [rel];
  });
}

describe("golden files (refresh with: npm run gen:examples)", () => {
  it("has a generated/ directory for exactly the examples", () => {
    const dirs = readdirSync(path.join(root, "generated")).sort();
    expect(dirs).toEqual(examples.map((f) => path.basename(f, ".json")));
  });

  it("has one build.zig for every example, its name read from src/name.txt", () => {
    const read = (name: string, file: string) =>
      readFileSync(path.join(root, "generated", name, file), "utf8");
    const names = examples.map((f) => path.basename(f, ".json"));
    expect(new Set(names.map((name) => read(name, "build.zig"))).size).toBe(1);
    const programs = names.map((name) => read(name, "src/name.txt").split("\n")[1]);
    expect(new Set(programs).size).toBe(names.length);
  });

  for (const example of examples) {
    const name = path.basename(example, ".json");
    it(`generated/${name} is what examples/${example} renders, byte for byte`, async () => {
      const out = path.join(scratch, name);
      await generate({ specFile: path.join("examples", example), outDir: out, cwd: root });
      const golden = path.join(root, "generated", name);
      const fresh = files(out).sort();
      expect(files(golden).sort()).toEqual(fresh);
      for (const file of fresh) {
        const expected = readFileSync(path.join(out, file), "utf8");
        expect(readFileSync(path.join(golden, file), "utf8"), `generated/${name}/${file}`).toBe(
          expected,
        );
      }
    });
  }
});
