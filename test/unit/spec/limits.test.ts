/**
 * Bounded input: nesting depth, file size, duplicate keys, the length of the problem list, and
 * time linear in the size of the spec.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { EXIT, MAX_LISTED_PROBLEMS, SpecError, type Diagnostic } from "../../../src/errors.js";
import { MAX_JSON_DEPTH, parseJson } from "../../../src/spec/json-syntax.js";
import { loadSpecFile, MAX_SPEC_BYTES, parseSpecText } from "../../../src/spec/load.js";
import { validateSpec } from "../../../src/spec/validate.js";

function specErrorOf(run: () => unknown): SpecError {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(SpecError);
    return error as SpecError;
  }
  throw new Error("expected a SpecError");
}

const listener = { name: "api", protocol: "tcp", address: "::1", port: 1, handler: "echo" };

describe("nesting depth", () => {
  it("refuses a 5,000-deep array with a located message, not a stack overflow", () => {
    const deep = "[".repeat(5000) + "]".repeat(5000);
    const text = `{"name": "a",\n "listeners": ${deep}}`;
    const error = specErrorOf(() => parseSpecText("s.json", text));
    expect(error.exitCode).toBe(EXIT.usage);
    expect(error.lines()).toEqual([
      `s.json:2:${14 + MAX_JSON_DEPTH}: invalid JSON: nested deeper than ${MAX_JSON_DEPTH} ` +
        "levels; a spec needs 4",
    ]);
  });

  it("accepts nesting up to the limit", () => {
    const depth = MAX_JSON_DEPTH;
    expect(parseJson("[".repeat(depth) + "]".repeat(depth)).ok).toBe(true);
    expect(parseJson("[".repeat(depth + 1) + "]".repeat(depth + 1)).ok).toBe(false);
  });
});

describe("duplicate keys", () => {
  it("names both places of a key given twice, at the top and inside a listener", () => {
    const text =
      '{\n  "name": "a",\n  "name": "b",\n  "listeners": [\n' +
      '    {"name": "api", "port": 1, "port": 2, "protocol": "tcp", "address": "::1", ' +
      '"handler": "echo"}\n  ]\n}\n';
    const error = specErrorOf(() => parseSpecText("s.json", text));
    expect(error.exitCode).toBe(EXIT.usage);
    expect(error.lines()).toEqual([
      "s.json:3:3: name: duplicate key, also at 2:3; JSON keeps only the last one, so remove " +
        "one of them",
      "s.json:5:32: listeners[0].port: duplicate key, also at 5:21; JSON keeps only the last " +
        "one, so remove one of them",
    ]);
  });

  it("keeps a __proto__ key as data, as JSON.parse does", () => {
    const value = parseSpecText("s.json", '{"__proto__": {"x": 1}}') as Record<string, unknown>;
    expect(Object.keys(value)).toEqual(["__proto__"]);
    expect(Object.getPrototypeOf(value)).toBe(Object.prototype);
    expect(validateSpec({ ...value, name: "a", listeners: [listener] }).ok).toBe(false);
  });

  it("parses what JSON.parse parses, to the same value", () => {
    const text = '{"a": [1, -2.5e3, 0, true, false, null, "\\u00e9\\n\\"", "plain"], "b": {}}';
    const result = parseJson(text);
    expect(result.ok && result.value).toEqual(JSON.parse(text));
  });
});

describe("file size", () => {
  it("refuses a spec larger than 4 MiB before parsing it", () => {
    const text = `{"name": "${"a".repeat(MAX_SPEC_BYTES)}"}`;
    const error = specErrorOf(() => parseSpecText("s.json", text));
    expect(error.lines()[0]).toMatch(/^s\.json: the spec is \d+ bytes; a spec may be at most/);
  });
});

describe("the list of problems", () => {
  it(`lists the first ${MAX_LISTED_PROBLEMS} problems and counts the rest`, () => {
    const diagnostics: Diagnostic[] = Array.from({ length: 30 }, (_, i) => ({
      path: ["listeners", i],
      message: "wrong",
    }));
    const lines = new SpecError("s.json", diagnostics).lines();
    expect(lines).toHaveLength(MAX_LISTED_PROBLEMS + 1);
    expect(lines.at(-1)).toBe("s.json: … and 10 more problems");
  });
});

// How fast these answer is a figure of `npm run bench:spec`, not an assertion here; the quadratic
// validation these replaced took about a minute, far past the test timeout.
describe("large inputs", () => {
  it("answers a 1 MB spec of colliding listeners with a capped list of problems", () => {
    const listeners = [];
    for (let i = 0; i < 12_000; i += 1) {
      const address = i % 2 === 0 ? "0.0.0.0" : "::";
      listeners.push({ ...listener, name: "l", address, v6Only: false, port: 80 });
    }
    const text = JSON.stringify({ name: "a", listeners });
    expect(text.length).toBeGreaterThan(1_000_000);
    const result = validateSpec(parseSpecText("s.json", text));
    const lines = result.ok ? [] : new SpecError("s.json", result.diagnostics).lines();
    expect(lines).toHaveLength(MAX_LISTED_PROBLEMS + 1);
    expect(lines.at(-1)).toMatch(/^s\.json: … and \d+ more problems$/);
  });

  it("answers a spec with 60,000 unknown keys, or one key of a megabyte, in short lines", () => {
    const keys = Object.fromEntries(Array.from({ length: 60_000 }, (_, i) => [`k${i}`, i]));
    const many = JSON.stringify({ name: "a", ...keys, listeners: [listener] });
    const huge = `{"name": "a", "${"x".repeat(1_000_000)}": 1, "listeners": []}`;
    for (const text of [many, huge]) {
      const result = validateSpec(parseSpecText("s.json", text));
      const lines = result.ok ? [] : new SpecError("s.json", result.diagnostics).lines();
      expect(lines.length).toBeGreaterThan(0);
      expect(lines.every((line) => line.length < 400)).toBe(true);
    }
  });
});

describe("loadSpecFile on special files", () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), "gen-reuseport-limits-"));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it("refuses a FIFO without opening it for a blocking read", async () => {
    execFileSync("mkfifo", [path.join(dir, "spec.json")]);
    await expect(loadSpecFile("spec.json", dir)).rejects.toThrow(
      "spec.json: cannot read the spec: it is not a regular file (a FIFO, socket or device)",
    );
  });

  it("refuses a spec file larger than 4 MiB", async () => {
    writeFileSync(path.join(dir, "big.json"), " ".repeat(MAX_SPEC_BYTES + 1));
    await expect(loadSpecFile("big.json", dir)).rejects.toThrow(/big\.json: the spec is 4194305/);
  });
});
