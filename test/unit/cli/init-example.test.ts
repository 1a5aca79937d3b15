/**
 * `gen-reuseport init --example NAME`: the package's example specs, with their application
 * modules where the generated project keeps them, so that generating right after keeps them.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { EXAMPLES_DIR, TEMPLATES_DIR } from "../../../src/package.js";
import { validateSpec } from "../../../src/spec/validate.js";
import { scratch, type Overrides, type Run } from "./harness.js";

let cliWith: (overrides: Overrides, ...args: string[]) => Promise<Run>;
let cleanup: () => void;
/** An empty working directory (the harness's own holds copies of the examples). */
let cwd: string;
beforeEach(() => {
  ({ cliWith, cleanup } = scratch());
  cwd = mkdtempSync(path.join(tmpdir(), "gen-reuseport-init-"));
});
afterEach(() => {
  cleanup();
  rmSync(cwd, { recursive: true, force: true });
});

const cli = (...args: string[]) => cliWith({ cwd, templatesDir: TEMPLATES_DIR }, ...args);
const read = (file: string) => readFileSync(path.join(cwd, file), "utf8");
const example = (file: string) => readFileSync(path.join(EXAMPLES_DIR, file), "utf8");

const SHIPPED = readdirSync(EXAMPLES_DIR)
  .filter((f) => f.endsWith(".json"))
  .map((f) => f.slice(0, -5))
  .sort();

describe("init --example", () => {
  it("writes the notes spec and its module where the generated project keeps it", async () => {
    const run = await cli("init", "--example", "notes");
    expect(run.code, run.stderr).toBe(0);
    expect(read("notes.json")).toBe(
      example("notes.json").replace(
        '"$schema": "../schemas/spec.schema.json"',
        '"$schema": "./gen-reuseport.schema.json"',
      ),
    );
    expect(read("notes/src/app/notes.zig")).toBe(example("app/notes.zig"));
    expect(JSON.parse(read("gen-reuseport.schema.json")).properties.listeners.type).toBe("array");
    expect(run.stdout.split("\n")).toEqual([
      "wrote notes.json; edit it, then run: gen-reuseport notes.json",
      "wrote gen-reuseport.schema.json (its JSON Schema)",
      "wrote notes/src/app/notes.zig (the example's module, yours to edit; gen-reuseport " +
        "notes.json generates the project around it)",
      "",
    ]);
  });

  it("is generated around: the next generate keeps the module and writes the rest", async () => {
    expect((await cli("init", "--example", "notes")).code).toBe(0);
    const run = await cli("notes.json", "--json");
    expect(run.code, run.stderr).toBe(0);
    const files = JSON.parse(run.stdout).files as { path: string; action: string }[];
    expect(files.find((f) => f.path === "src/app/notes.zig")?.action).toBe("keep");
    expect(files.filter((f) => f.action === "create").length).toBeGreaterThan(10);
    expect(read("notes/src/app/notes.zig")).toBe(example("app/notes.zig"));
  });

  it("still refuses a directory that holds anything besides the user's files", async () => {
    expect((await cli("init", "--example", "notes")).code).toBe(0);
    writeFileSync(path.join(cwd, "notes/src/other.zig"), "// mine\n");
    const run = await cli("notes.json");
    expect(run.code).toBe(74);
    expect(run.stderr).toContain("notes: is not empty and was not written by gen-reuseport");
  });

  it.each(SHIPPED)("writes example %s as a valid spec, modules included", async (name) => {
    const run = await cli("init", "--example", name, "--json");
    expect(run.code, run.stderr).toBe(0);
    const spec = JSON.parse(read(`${name}.json`));
    expect(validateSpec(spec).ok).toBe(true);
    const modules = new Set<string>(
      spec.listeners.flatMap((l: { app?: { module: string } }) => l.app?.module ?? []),
    );
    const doc = JSON.parse(run.stdout);
    expect(doc.files.map((f: { path: string }) => f.path)).toEqual([
      `${name}.json`,
      "gen-reuseport.schema.json",
      ...[...modules].sort().map((m) => `${spec.name}/src/app/${m}.zig`),
    ]);
  });

  it("rejects an unknown example with exit 2, naming the examples", async () => {
    const run = await cli("init", "--example", "nots");
    expect(run.code).toBe(2);
    expect(run.stderr).toBe(
      `gen-reuseport: unknown example "nots"; did you mean "notes"? ` +
        `(examples: ${SHIPPED.join(", ")}); run "gen-reuseport --help" for usage\n`,
    );
    expect(readdirSync(cwd)).toEqual([]);
    expect(SHIPPED).toEqual(expect.arrayContaining(["notes", "resp", "reflect", "http", "mixed"]));
  });

  it("never overwrites: an existing spec is an error, an existing module is kept", async () => {
    mkdirSync(path.join(cwd, "resp/src/app"), { recursive: true });
    writeFileSync(path.join(cwd, "resp/src/app/resp.zig"), "// my own\n");
    const run = await cli("init", "--example", "resp", "cache.json");
    expect(run.code, run.stderr).toBe(0);
    expect(read("resp/src/app/resp.zig")).toBe("// my own\n");
    expect(run.stdout).toContain(
      "kept resp/src/app/resp.zig, which differs from the example's; init never overwrites a file",
    );
    const again = await cli("init", "--example", "resp", "cache.json");
    expect(again.code).toBe(2);
    expect(again.stderr).toBe("cache.json already exists; init never overwrites a file\n");
  });
});
