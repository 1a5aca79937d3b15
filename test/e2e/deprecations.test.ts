/**
 * The generated Zig uses no standard-library declaration that the release it builds with marks
 * as deprecated. Zig has no compiler switch for this, so the test reads the truth from each
 * release's own `lib/std`: every `pub fn`/`pub const` whose doc comment says "Deprecated",
 * then looks for uses of those names in the generated sources. `src/compat.zig` is left out on
 * purpose: it names the old spelling in the branch that only older releases compile.
 */
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { PACKAGE_ROOT } from "../../src/index.js";
import { provisionZig, ZIG_VERSIONS } from "./support/zig.js";

/** The std namespaces the generated code reaches, and how it spells them. */
const NAMESPACES: ReadonlyArray<{ file: string; spellings: readonly string[] }> = [
  { file: "mem.zig", spellings: ["std.mem."] },
  { file: "fmt.zig", spellings: ["std.fmt."] },
  { file: "ascii.zig", spellings: ["std.ascii."] },
  { file: "math.zig", spellings: ["std.math."] },
  { file: "debug.zig", spellings: ["std.debug."] },
  { file: "testing.zig", spellings: ["std.testing."] },
  { file: "heap.zig", spellings: ["std.heap."] },
  { file: "time.zig", spellings: ["std.time."] },
  { file: "os/linux.zig", spellings: ["std.os.linux.", "linux."] },
  { file: "Build.zig", spellings: ["b.", "std.Build."] },
];

/** Names declared right after a doc comment that calls them deprecated. */
function deprecatedNames(source: string): Set<string> {
  const names = new Set<string>();
  const lines = source.split("\n");
  for (let i = 0; i < lines.length; i += 1) {
    const decl = /^pub (?:inline )?(?:fn|const|var) ([A-Za-z_][A-Za-z0-9_]*)/.exec(lines[i] ?? "");
    if (decl === null) continue;
    for (let j = i - 1; j >= 0 && /^\s*\/\/\//.test(lines[j] ?? ""); j -= 1) {
      if (/deprecated/i.test(lines[j] ?? "")) names.add(decl[1] ?? "");
    }
  }
  return names;
}

function generatedSources(): Array<{ file: string; text: string }> {
  const root = path.join(PACKAGE_ROOT, "generated");
  const out: Array<{ file: string; text: string }> = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.name.endsWith(".zig") && entry.name !== "compat.zig") {
        out.push({ file: path.relative(root, full), text: readFileSync(full, "utf8") });
      }
    }
  };
  walk(root);
  return out;
}

describe.each(ZIG_VERSIONS)("zig %s", (version) => {
  it(
    "generated code uses no declaration its std marks deprecated",
    { timeout: 600_000 },
    async () => {
      const zig = await provisionZig(version);
      const std = path.join(path.dirname(zig), "lib", "std");
      const sources = generatedSources();
      expect(sources.length).toBeGreaterThan(20);
      const uses: string[] = [];
      let checked = 0;
      for (const { file, spellings } of NAMESPACES) {
        for (const name of deprecatedNames(readFileSync(path.join(std, file), "utf8"))) {
          checked += 1;
          for (const spelling of spellings) {
            const use = new RegExp(
              `(^|[^A-Za-z0-9_.])${(spelling + name).replaceAll(".", "\\.")}\\b`,
            );
            for (const source of sources) {
              if (use.test(source.text)) uses.push(`${source.file}: ${spelling}${name}`);
            }
          }
        }
      }
      // The scan must have found something to check, or it proves nothing.
      expect(checked).toBeGreaterThan(0);
      expect(uses, `deprecated in zig ${version}`).toEqual([]);
    },
  );
});
