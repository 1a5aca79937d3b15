import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { SpecError } from "../../src/errors.js";
import { conflictText, generate, prepareGeneration } from "../../src/generate.js";

const templatesDir = path.join(import.meta.dirname, "../fixtures/templates");
const listener = { name: "a", protocol: "tcp", address: "127.0.0.1", port: 8080, handler: "echo" };

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), "gen-reuseport-generate-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe("generate (programmatic)", () => {
  it("generates from a spec value without a spec file on disk", async () => {
    const result = await generate({
      specFile: "inline.json",
      spec: { name: "inline", listeners: [listener] },
      outDir: "out",
      cwd: dir,
      templatesDir,
    });
    expect(result.outDir).toBe(path.join(dir, "out"));
    expect(result.model.name).toBe("inline");
    expect(readFileSync(path.join(dir, "out/src/main.zig"), "utf8")).toContain("from inline.json.");
  });

  it("throws a SpecError carrying every diagnostic for an invalid spec value", async () => {
    const attempt = prepareGeneration({
      specFile: "inline.json",
      spec: { name: "inline", listeners: [{ ...listener, port: 0 }], workers: -1 },
      cwd: dir,
      templatesDir,
    });
    await expect(attempt).rejects.toThrow(SpecError);
    const error = (await attempt.catch((e: unknown) => e)) as SpecError;
    expect(error.lines()).toEqual([
      'inline.json: workers: must be an integer from 1 to 1024 or "auto" (got -1)',
      "inline.json: listeners[0].port: must be an integer from 1 to 65535 (got 0)",
    ]);
  });

  it("plans without writing", async () => {
    const prepared = await prepareGeneration({
      specFile: "inline.json",
      spec: { name: "inline", listeners: [listener] },
      cwd: dir,
      templatesDir,
    });
    expect(prepared.displayDir).toBe("inline");
    expect(prepared.counts.create).toBe(prepared.plan.files.length);
    expect(() => readFileSync(path.join(dir, "inline/build.zig"))).toThrow();
  });
});

describe("conflictText", () => {
  it("suggests src/handler.zig only for edits of handler code", () => {
    const hint = "keep your change by moving it to src/handler.zig";
    expect(conflictText("edited", "src/handlers/http.zig")).toContain(hint);
    expect(conflictText("edited", "src/handlers.zig")).toContain(hint);
    for (const file of ["build.zig", "src/config.zig", "README.md", ".gitignore"]) {
      expect(conflictText("edited", file), file).toBe(
        "edited by hand since gen-reuseport wrote it; rerun with --force to overwrite it",
      );
    }
  });
});
