/**
 * The generator's modules point down: each belongs to a stage (facts, spec, model, render,
 * plan, write, toolchain, pipeline, cli, api: test/support/import-graph.ts says why in this
 * order), imports only its own and earlier stages, and no imports close a circle. The checker
 * is shown to fail on planted violations: synthetic graphs, and a copy of src/ with bad imports.
 */
import { appendFileSync, cpSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import {
  importCircles,
  layerViolations,
  readImportGraph,
  stageOf,
  type ImportGraph,
} from "../support/import-graph.js";

const SRC = path.join(import.meta.dirname, "..", "..", "src");

describe("src/ import layers", () => {
  const graph = readImportGraph(SRC);

  it("keeps every rule: stages point down, facts and cli/types.ts import nothing, no circle", () => {
    expect(layerViolations(graph)).toEqual([]);
  });

  it("reads every kind of import: static, type-only, re-exports and lazy import()", () => {
    expect(graph.get("cli/run.ts")).toContain("cli/commands/generate.ts"); // import("…")
    expect(graph.get("cli/commands/build.ts")).toContain("generate.ts"); // import type
    expect(graph.get("index.ts")).toContain("zig-facts.ts"); // export … from
    expect(graph.get("spec/rules.ts")).toContain("zig-facts.ts");
    expect(graph.size).toBeGreaterThan(40);
  });

  it("places every file in a stage", () => {
    const unplaced = [...graph.keys()].filter((f) => stageOf(f) === undefined);
    expect(unplaced).toEqual([]);
  });
});

describe("the layer checker", () => {
  const graphOf = (entries: Record<string, string[]>): ImportGraph =>
    new Map(Object.entries(entries));

  it("fails when a stage imports a later stage", () => {
    const graph = graphOf({
      "spec/rules.ts": ["model/zig-name.ts", "errors.ts"],
      "model/zig-name.ts": [],
      "errors.ts": [],
    });
    expect(layerViolations(graph)).toEqual([
      "spec/rules.ts (spec) imports model/zig-name.ts (model), a later stage",
    ]);
  });

  it("fails when a fact imports anything of the project, or a command the dispatcher", () => {
    const graph = graphOf({
      "zig-facts.ts": ["errors.ts"],
      "errors.ts": [],
      "cli/run.ts": [],
      "cli/commands/zig.ts": ["cli/run.ts"],
    });
    expect(layerViolations(graph)).toEqual([
      "zig-facts.ts is a fact and imports errors.ts: facts import nothing",
      "cli/commands/zig.ts imports the dispatcher cli/run.ts, which loads it",
    ]);
  });

  it("fails on an import circle inside one stage, and names its files", () => {
    const graph = graphOf({
      "cli/run.ts": ["cli/commands/init.ts"],
      "cli/commands/init.ts": ["cli/report.ts"],
      "cli/report.ts": ["cli/run.ts"],
      "cli/style.ts": ["cli/style.ts"],
    });
    expect(importCircles(graph)).toEqual([
      ["cli/commands/init.ts", "cli/report.ts", "cli/run.ts"],
      ["cli/style.ts"],
    ]);
    expect(layerViolations(graph)).toContain(
      "import circle: cli/commands/init.ts, cli/report.ts, cli/run.ts " +
        "(each imports its way to the others)",
    );
  });

  it("fails on a file that belongs to no stage", () => {
    expect(layerViolations(graphOf({ "helpers.ts": [] }))).toEqual([
      "helpers.ts belongs to no stage: place it in a stage folder or among the facts",
    ]);
  });

  describe("on a copy of src/ with violations planted", () => {
    let copy: string | undefined;
    afterEach(() => {
      if (copy !== undefined) rmSync(copy, { recursive: true, force: true });
    });

    it("finds a backward import, a lazy import into the dispatcher and a circle", () => {
      copy = mkdtempSync(path.join(tmpdir(), "gen-reuseport-layers-"));
      cpSync(SRC, copy, { recursive: true });
      expect(layerViolations(readImportGraph(copy))).toEqual([]);
      appendFileSync(path.join(copy, "spec/rules.ts"), 'import "../model/model.js";\n');
      appendFileSync(
        path.join(copy, "cli/commands/init.ts"),
        'export const load = () => import("../run.js");\n',
      );
      appendFileSync(path.join(copy, "plan/plan.ts"), 'import type {} from "./disk-state.js";\n');
      writeFileSync(path.join(copy, "utils.ts"), "export const x = 1;\n");
      const problems = layerViolations(readImportGraph(copy));
      expect(problems).toEqual(
        expect.arrayContaining([
          "spec/rules.ts (spec) imports model/model.ts (model), a later stage",
          "cli/commands/init.ts imports the dispatcher cli/run.ts, which loads it",
          "import circle: plan/disk-state.ts, plan/plan.ts (each imports its way to the others)",
          "utils.ts belongs to no stage: place it in a stage folder or among the facts",
        ]),
      );
    });
  });
});
