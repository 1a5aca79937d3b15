import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { formatDiagnostic, formatPath, SpecError } from "../../../src/errors.js";
import { parseSpecText } from "../../../src/spec/load.js";
import { validateSpec } from "../../../src/spec/validate.js";

const fixtures = path.join(import.meta.dirname, "../../fixtures");
const invalidDir = path.join(fixtures, "invalid");

type Expected =
  readonly { readonly path: string; readonly message: string }[] | { readonly invalidJson: string };

const expectations = JSON.parse(
  readFileSync(path.join(fixtures, "invalid-expected.json"), "utf8"),
) as Record<string, Expected>;

function diagnosticsOf(file: string) {
  const raw = parseSpecText(file, readFileSync(path.join(invalidDir, file), "utf8"));
  const result = validateSpec(raw);
  if (result.ok) throw new Error(`${file} unexpectedly validated`);
  return result.diagnostics;
}

describe("invalid spec fixtures", () => {
  it("lists an expectation for every fixture file and a fixture for every expectation", () => {
    const files = readdirSync(invalidDir)
      .filter((f) => f.endsWith(".json"))
      .sort();
    expect(Object.keys(expectations).sort()).toEqual(files);
    expect(files.length).toBeGreaterThanOrEqual(20);
  });

  for (const [file, expected] of Object.entries(expectations)) {
    if (!Array.isArray(expected)) {
      const { invalidJson } = expected as { invalidJson: string };
      it(`reports ${file} as invalid JSON at ${invalidJson.split(":").slice(0, 2).join(":")}`, () => {
        const text = readFileSync(path.join(invalidDir, file), "utf8");
        expect(() => parseSpecText("spec.json", text)).toThrow(SpecError);
        try {
          parseSpecText("spec.json", text);
        } catch (error) {
          expect((error as SpecError).lines()).toEqual([`spec.json:${invalidJson}`]);
        }
      });
      continue;
    }
    it(`rejects ${file} with ${expected.map((e) => e.path).join(", ")}`, () => {
      const diagnostics = diagnosticsOf(file);
      const byPath = (a: { path: string }, b: { path: string }) => a.path.localeCompare(b.path);
      const actual = diagnostics
        .map((d) => ({ path: formatPath(d.path), line: formatDiagnostic("spec.json", d) }))
        .sort(byPath);
      const wanted = [...expected].sort(byPath);
      expect(actual.map((a) => a.path)).toEqual(wanted.map((w) => w.path));
      for (const [i, w] of wanted.entries()) {
        expect(actual[i]?.line).toContain(`spec.json: ${w.path}: `);
        expect(actual[i]?.line).toContain(w.message);
      }
    });
  }

  it("never lets zod's own wording reach the user", () => {
    for (const file of Object.keys(expectations).filter((f) => !f.startsWith("malformed"))) {
      for (const d of diagnosticsOf(file)) {
        expect(d.message).not.toMatch(
          /Invalid input|expected .*, received|Unrecognized key|Too (big|small)/,
        );
      }
    }
  });
});
