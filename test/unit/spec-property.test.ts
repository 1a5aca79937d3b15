/**
 * Property: every spec the schema accepts goes through the whole pure pipeline (validate →
 * model → render) without error, and what it renders is well-formed where Zig is strict: the
 * package name of `build.zig.zon`, its fingerprint, string literals in `config.zig`, headers.
 * The end-to-end twin (`e2e/drawn-specs.test.ts`) builds a few drawn specs with real Zig.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { zigFingerprint } from "../../src/model/fingerprint.js";
import { buildModel } from "../../src/model/model.js";
import { isZigPackageName } from "../../src/model/zig-name.js";
import { ZIG_KEYWORDS } from "../../src/zig-facts.js";
import { TEMPLATES_DIR } from "../../src/package.js";
import { loadTemplates } from "../../src/render/load-templates.js";
import { parseManifest } from "../../src/render/manifest.js";
import { render, type Rendered } from "../../src/render/render.js";
import { validateSpec } from "../../src/spec/validate.js";
import { validSpec } from "../support/spec-arbitrary.js";

const templates = await loadTemplates(TEMPLATES_DIR);

/** A Zig string literal as `zigString` writes it: printable ASCII and the escapes it uses. */
const ZIG_STRING = /"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[nrt"\\]|\\x[0-9a-f]{2})*"/g;

function renderSpec(raw: unknown, specFile = "spec.json"): Rendered {
  const result = validateSpec(raw);
  if (!result.ok) throw new Error(`rejected: ${JSON.stringify(result.diagnostics)}`);
  return render(buildModel(result.spec, { generatorVersion: "0.0.0", specFile }), templates);
}

function expectWellFormed(files: Rendered): void {
  const zon = files.get("build.zig.zon") ?? "";
  const name = /^ {4}\.name = \.([^,]*),$/m.exec(zon)?.[1] ?? "";
  expect(isZigPackageName(name), `package name ${name}`).toBe(true);
  expect(zon).toContain(`.fingerprint = ${zigFingerprint(name)},`);
  const config = files.get("src/config.zig") ?? "";
  for (const line of config.split("\n")) {
    expect(line, "config.zig holds printable ASCII only").toMatch(/^[\x20-\x7e]*$/);
    expect(line.replace(ZIG_STRING, "").includes('"'), `a stray quote in: ${line}`).toBe(false);
  }
  for (const [file, text] of files) {
    if (file === "src/handler.zig" || file === ".gen-reuseport.json") continue;
    expect(text.split("\n")[0], file).toMatch(/^(\/\/|#|<!--) Code generated .* DO NOT EDIT\./);
  }
  expect(files.get(".gitignore")).toMatch(/^# [^\n]*\nzig-out\/\n\.zig-cache\/\n$/);
  expect(parseManifest(files.get(".gen-reuseport.json") ?? "")).toBeDefined();
}

describe("drawn valid specs", () => {
  // Rendering 300 projects takes about a second alone; generous when the suite runs in parallel.
  it("validate, model and render to well-formed files", { timeout: 60_000 }, () => {
    fc.assert(
      fc.property(validSpec(), (raw) => {
        expectWellFormed(renderSpec(raw));
      }),
      { numRuns: 300 },
    );
  });

  it("reach the edges: 63-character and keyword names, udp, IPv6, every handler", {
    timeout: 60_000,
  }, () => {
    const seen = { long: false, keyword: false, udp: false, ip6: false, handlers: new Set() };
    fc.assert(
      fc.property(validSpec(), (raw) => {
        const name = raw.name as string;
        seen.long ||= name.length === 63;
        seen.keyword ||= ZIG_KEYWORDS.has(name);
        for (const l of raw.listeners as Record<string, unknown>[]) {
          seen.udp ||= l.protocol === "udp";
          seen.ip6 ||= String(l.address).includes(":");
          seen.handlers.add(l.handler);
        }
      }),
      { numRuns: 300, seed: 1 },
    );
    expect({ ...seen, handlers: [...seen.handlers].sort() }).toEqual({
      long: true,
      keyword: true,
      udp: true,
      ip6: true,
      handlers: ["custom", "echo", "http", "whoami"],
    });
  });
});
