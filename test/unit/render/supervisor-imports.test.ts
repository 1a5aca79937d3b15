/**
 * The supervisor fingerprint (`--fingerprint`, which decides between restarting workers and
 * upgrading the whole program) must cover every file the supervisor's code is built from.
 * These tests follow the `@import`s of the real templates from the supervisor's folders, file
 * by file, and fail when one leads to a template that the fingerprint leaves out.
 */
import path from "node:path";
import { describe, expect, it } from "vitest";
import { loadTemplates } from "../../../src/render/load-templates.js";
import {
  supervisorFingerprint,
  supervisorTemplates,
  type Templates,
} from "../../../src/render/render.js";
import { buildModel } from "../../../src/model/model.js";
import { validateSpec } from "../../../src/spec/validate.js";

const templates = await loadTemplates(path.join(import.meta.dirname, "../../../templates"));

/** The template a rendered path comes from (`src/config.zig` from `src/config.zig.hbs`). */
function templateOf(output: string, all: Templates): string | undefined {
  if (all.has(output)) return output;
  if (all.has(`${output}.hbs`)) return `${output}.hbs`;
  return undefined;
}

/** The files a template imports, as template paths; paths with Handlebars in them are not. */
function importsOf(file: string, all: Templates): string[] {
  const text = all.get(file) ?? "";
  const output = file.replace(/\.hbs$/, "");
  const found: string[] = [];
  for (const match of text.matchAll(/@import\("([^"{}]+\.zig)"\)/g)) {
    const target = path.posix.normalize(path.posix.join(path.posix.dirname(output), match[1]!));
    const template = templateOf(target, all);
    if (template === undefined) throw new Error(`${file} imports ${target}, which is no template`);
    found.push(template);
  }
  return found;
}

/** Every template reachable from `roots` through `@import`. */
function closure(roots: readonly string[], all: Templates): Set<string> {
  const seen = new Set<string>(roots);
  const queue = [...roots];
  for (let next = queue.pop(); next !== undefined; next = queue.pop()) {
    for (const target of importsOf(next, all)) {
      if (!seen.has(target)) {
        seen.add(target);
        queue.push(target);
      }
    }
  }
  return seen;
}

describe("the supervisor fingerprint", () => {
  const listed = supervisorTemplates(templates);

  it("covers every file the supervisor's code imports, transitively", () => {
    const reached = closure(listed, templates);
    const missing = [...reached].filter((file) => !listed.includes(file)).sort();
    expect(missing).toEqual([]);
  });

  it("starts from the supervisor and reaches what it is made of", () => {
    const reached = closure(["src/supervisor/supervisor.zig"], templates);
    for (const file of [
      "src/supervisor/worker_process.zig",
      "src/upgrade/upgrade.zig",
      "src/systemd/activation.zig",
      "src/net/listener.zig",
      "src/config.zig.hbs",
      "src/worker/stop.zig",
    ]) {
      expect(reached).toContain(file);
    }
    // The worker's event loop is the workers' side: a restart replaces it without a new
    // supervisor, so the supervisor must not be built from it.
    expect(reached).not.toContain("src/worker/worker.zig");
    expect(reached).not.toContain("src/handlers.zig.hbs");
  });

  it("would notice an import that leads outside what it covers", () => {
    const planted = new Map(templates);
    const supervisor = planted.get("src/supervisor/supervisor.zig") ?? "";
    planted.set(
      "src/supervisor/supervisor.zig",
      `${supervisor}\nconst loop = @import("../worker/worker.zig");\n`,
    );
    const listedPlanted = supervisorTemplates(planted);
    const reached = closure(listedPlanted, planted);
    expect([...reached].filter((file) => !listedPlanted.includes(file))).toContain(
      "src/worker/worker.zig",
    );
  });

  it("changes when any covered file changes", () => {
    const result = validateSpec({
      name: "svc",
      listeners: [
        { name: "api", protocol: "tcp", address: "127.0.0.1", port: 8080, handler: "echo" },
      ],
    });
    if (!result.ok) throw new Error(JSON.stringify(result.diagnostics));
    const model = buildModel(result.spec, { generatorVersion: "1.2.3", specFile: "svc.json" });
    const base = supervisorFingerprint(model, templates);
    for (const file of ["src/net/sys.zig", "src/worker/stop.zig", "src/upgrade/handover.zig"]) {
      const edited = new Map([...templates, [file, `${templates.get(file)}\n// edited\n`]]);
      expect(supervisorFingerprint(model, edited), file).not.toBe(base);
    }
    const worker = "src/worker/worker.zig";
    const loop = new Map([...templates, [worker, `${templates.get(worker)}\n// edited\n`]]);
    expect(supervisorFingerprint(model, loop)).toBe(base);
  });
});
