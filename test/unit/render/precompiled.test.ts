/**
 * The two ways the render stage runs a template, precompiled at build time (run by Handlebars'
 * runtime) and compiled on use (full compiler), give the same bytes for every template and every
 * example spec.
 */
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { buildModel } from "../../../src/model/model.js";
import { TEMPLATES_DIR } from "../../../src/package.js";
import { loadTemplates } from "../../../src/render/load-templates.js";
import {
  compiledTemplate,
  precompileTemplates,
  runtimeTemplate,
} from "../../../src/render/handlebars-env.js";
import { validateSpec } from "../../../src/spec/validate.js";

const root = path.join(import.meta.dirname, "..", "..", "..");
const examples = readdirSync(path.join(root, "examples")).filter((f) => f.endsWith(".json"));

describe("precompiled templates", () => {
  it("render exactly what the compiler renders, for every template and example", async () => {
    const templates = await loadTemplates(TEMPLATES_DIR);
    const precompiled = precompileTemplates(templates);
    expect(Object.keys(precompiled).length).toBeGreaterThan(0);
    let compared = 0;
    for (const example of examples) {
      const raw: unknown = JSON.parse(readFileSync(path.join(root, "examples", example), "utf8"));
      const result = validateSpec(raw);
      if (!result.ok) throw new Error(`examples/${example} is invalid`);
      const model = buildModel(result.spec, { generatorVersion: "1.2.3", specFile: example });
      // What the render stage adds for some templates: the supervisor's identity, and the
      // listener of a per-listener file.
      const context = {
        ...model,
        supervisorFingerprint: "0123456789abcdef",
        listener: model.listeners[0],
      };
      for (const [file, { spec }] of Object.entries(precompiled)) {
        const source = templates.get(file) ?? "";
        // The spec is JavaScript source, as written into dist/render/precompiled-templates.cjs.
        const evaluated: unknown = new Function(`return ${spec};`)();
        // A module stub renders once per application module of its kind, with `app` in scope.
        const contexts = file.startsWith("modules/")
          ? model.apps.filter((a) => file === `modules/${a.kind}.zig.hbs`).map((app) => ({
              ...context,
              app,
            }))
          : [context];
        for (const c of contexts) {
          expect(runtimeTemplate(evaluated)(c), `${file} for ${example}`).toBe(
            compiledTemplate(source)(c),
          );
          compared += 1;
        }
      }
    }
    expect(compared).toBeGreaterThan(examples.length);
  });
});
