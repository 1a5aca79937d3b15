/**
 * Style checks over the Zig runtime in `templates/` that reviews forget (DESIGN.md section 10,
 * after TigerBeetle's tidy.zig): lines of at most 100 columns; no function longer than 70
 * lines except generics that return a type; a comment saying why on every `catch {}`; one
 * form of assertion; and every file with tests run by `zig build test`.
 */
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { loadTemplates } from "../../src/render/load-templates.js";
import { render } from "../../src/render/render.js";
import { buildModel } from "../../src/model/model.js";
import { loadSpecFile } from "../../src/spec/load.js";
import { validateSpec } from "../../src/spec/validate.js";

const root = path.join(import.meta.dirname, "../../templates");

export const MAX_COLUMNS = 100;
export const MAX_FUNCTION_LINES = 70;

/**
 * Known violations in the two files the supervisor's state-machine rewrite will replace; they
 * are listed by file and function (or line text), not line number, so that edits elsewhere do
 * not move them. Remove an entry once its function is split. Nothing else may be listed.
 */
const KNOWN: readonly string[] = [];

export interface Violation {
  readonly key: string;
  readonly where: string;
}

/** Every Zig file and template under `dir`, `/`-separated and relative to it. */
function zigFiles(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile() && /\.zig(\.hbs)?$/.test(e.name))
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)).split(path.sep).join("/"))
    .sort();
}

/** A function's first line: `fn name(`, maybe `pub`, `inline`, `export`, indented. */
const FN_START = /^(\s*)(?:pub )?(?:export )?(?:inline )?fn ([A-Za-z_][A-Za-z0-9_]*)\(/;

/** Functions longer than the limit; `type`-returning generics are exempt (their insides are not). */
export function longFunctions(file: string, lines: readonly string[]): Violation[] {
  const found: Violation[] = [];
  lines.forEach((line, start) => {
    const match = FN_START.exec(line);
    if (match === null) return;
    let open = start;
    while (open < lines.length && !/[{;]\s*$/.test(lines[open]!)) open += 1;
    if (open === lines.length || lines[open]!.trimEnd().endsWith(";")) return; // a prototype
    const signature = lines.slice(start, open + 1).join(" ");
    if (/\)\s*type\s*\{\s*$/.test(signature)) return;
    const indent = match[1]!;
    let close = open + 1;
    while (close < lines.length && lines[close] !== `${indent}}`) close += 1;
    const length = close - start + 1;
    if (length > MAX_FUNCTION_LINES) {
      found.push({
        key: `function ${file} ${match[2]}`,
        where: `${file}:${start + 1}: fn ${match[2]} has ${length} lines`,
      });
    }
  });
  return found;
}

/** Every style rule over one file's text. */
export function violations(file: string, text: string): Violation[] {
  const lines = text.split("\n");
  const found: Violation[] = [];
  lines.forEach((line, i) => {
    const where = `${file}:${i + 1}`;
    if ([...line].length > MAX_COLUMNS) {
      found.push({ key: `line ${file} ${line.trim()}`, where: `${where}: over ${MAX_COLUMNS}` });
    }
    if (/catch \{\s*\}/.test(line)) {
      // The comment may stand before the statement's first line.
      let first = i;
      while (first > 0 && !/([;{}]|\/\/.*)\s*$/.test(lines[first - 1]!)) first -= 1;
      const commented = line.includes("//") || /^\s*\/\//.test(lines[first - 1] ?? "");
      if (!commented) {
        found.push({ key: `catch ${file} ${line.trim()}`, where: `${where}: catch {} without why` });
      }
    }
  });
  lines.forEach((line, i) => {
    // 0.17's `zig fmt` rewrites them to `@backingInt` and `@fromBackingInt`, which older
    // releases lack: the file would fail the fmt check on 0.17 or stop compiling on the
    // others once formatted.
    const code = line.replace(/\/\/.*$/, "");
    for (const builtin of ["@intFromEnum(", "@enumFromInt("]) {
      if (code.includes(builtin)) {
        found.push({ key: `enum ${file} ${line.trim()}`, where: `${file}:${i + 1}: ${builtin}` });
      }
    }
  });
  if (text.includes("const assert = std.debug.assert;")) {
    lines.forEach((line, i) => {
      if (/std\.debug\.assert\(/.test(line)) {
        found.push({ key: `assert ${file} ${line.trim()}`, where: `${file}:${i + 1}: assert(` });
      }
    });
  }
  return [...found, ...longFunctions(file, lines)];
}

describe("tidy: the Zig runtime's style", () => {
  const all = zigFiles(root).flatMap((file) =>
    violations(file, readFileSync(path.join(root, file), "utf8")),
  );

  it("has no violation but the known ones of the supervisor and upgrade files", () => {
    const unknown = all.filter((v) => !KNOWN.includes(v.key)).map((v) => v.where);
    expect(unknown).toEqual([]);
  });

  it("lists no known violation that is gone", () => {
    const keys = new Set(all.map((v) => v.key));
    expect(KNOWN.filter((key) => !keys.has(key))).toEqual([]);
  });

  it("catches a planted violation of each kind", () => {
    const long = ["fn long() void {", ...Array(70).fill("    x();"), "}"];
    const text = [
      "const std = @import(\"std\");",
      "const assert = std.debug.assert;",
      `const s = "${"x".repeat(100)}";`,
      "fn f() void {",
      "    g() catch {};",
      "    std.debug.assert(true);",
      "    _ = @intFromEnum(e);",
      "}",
      ...long,
      "fn Generic(comptime T: type) type {",
      ...Array(80).fill("    _ = T;"),
      "}",
    ].join("\n");
    const kinds = violations("src/planted.zig", text).map((v) => v.key.split(" ")[0]);
    expect(kinds.sort()).toEqual(["assert", "catch", "enum", "function", "line"]);
  });
});

describe("tidy: zig build test runs every file with tests", () => {
  for (const example of ["notes", "mixed"]) {
    it(`the test root of ${example} imports each generated file that has tests`, async () => {
      const checkout = path.join(import.meta.dirname, "../..");
      const result = validateSpec(await loadSpecFile(`examples/${example}.json`, checkout));
      if (!result.ok) throw new Error(JSON.stringify(result.diagnostics));
      const model = buildModel(result.spec, { generatorVersion: "0", specFile: `${example}.json` });
      const files = render(model, await loadTemplates(root));
      const main = files.get("src/main.zig") ?? "";
      expect(main).toMatch(/^test \{\n(?:.*\n)*? {4}_ = @import\("tests\.zig"\);\n\}/m);
      const testRoot = files.get("src/tests.zig") ?? "";
      const imported = new Set(
        [...testRoot.matchAll(/_ = @import\("([^"]+)"\);/g)].map((m) => `src/${m[1]}`),
      );
      const withTests = [...files]
        .filter(([file, text]) => /^src\/(?!app\/).*\.zig$/.test(file) && /^test\b/m.test(text))
        .map(([file]) => file)
        .filter((file) => !["src/main.zig", "src/tests.zig", "src/handler.zig"].includes(file));
      expect(withTests.length).toBeGreaterThan(20);
      expect(withTests.filter((file) => !imported.has(file))).toEqual([]);
    });
  }
});
