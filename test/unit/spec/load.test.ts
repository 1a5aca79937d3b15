import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { SpecError } from "../../../src/errors.js";
import { findJsonSyntaxError } from "../../../src/spec/json-syntax.js";
import { loadSpecFile, parseSpecText } from "../../../src/spec/load.js";

function loadError(promise: Promise<unknown>): Promise<string[]> {
  return promise.then(
    () => {
      throw new Error("expected a SpecError");
    },
    (error: unknown) => {
      expect(error).toBeInstanceOf(SpecError);
      return (error as SpecError).lines();
    },
  );
}

describe("loadSpecFile", () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), "gen-reuseport-load-"));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it("names a missing file as the user passed it", async () => {
    expect(await loadError(loadSpecFile("nope/spec.json", dir))).toEqual([
      "nope/spec.json: cannot read the spec: no such file",
    ]);
  });

  it("says so when the spec path is a directory", async () => {
    expect(await loadError(loadSpecFile(".", dir))).toEqual([
      ".: cannot read the spec: it is a directory, not a file",
    ]);
  });

  it("reads a file with a UTF-8 byte order mark", async () => {
    writeFileSync(path.join(dir, "s.json"), '\uFEFF{"name":"a"}');
    expect(await loadSpecFile("s.json", dir)).toEqual({ name: "a" });
  });

  it("reports malformed JSON with the line and column", async () => {
    writeFileSync(path.join(dir, "s.json"), '{\n  "name": "a",\n  "workers": 2 3\n}\n');
    expect(await loadError(loadSpecFile("s.json", dir))).toEqual([
      "s.json:3:16: invalid JSON: expected ',' or '}' but found '3'",
    ]);
  });
});

describe("findJsonSyntaxError", () => {
  it.each([
    ["", "1:1", "the file is empty"],
    ["{", "1:2", "expected a key in double quotes but found the end of the file"],
    ['{"a": tru}', "1:7", "expected a value but found 't'"],
    ["{'a': 1}", "1:2", "single quote"],
    ['{"a": 01}', "1:7", "invalid number"],
    ['{"a": "x\n"}', "1:9", "control character in a string"],
    ['{"a": "\\q"}', "1:8", "invalid escape sequence"],
    ['{"a": "open', "1:7", "unterminated string"],
    ["[1, 2,]", "1:7", "trailing comma"],
    ["{} {}", "1:4", "after the end of the document"],
  ])("locates the error in %j at %s", (text, where, message) => {
    const error = findJsonSyntaxError(text);
    expect(`${error?.line}:${error?.column}`).toBe(where);
    expect(error?.message).toContain(message);
  });

  it("finds nothing wrong in valid JSON that JSON.parse accepts", () => {
    const text = '{"a": [1, -2.5e3, true, false, null, "\\u00e9\\n"], "b": {}}';
    expect(JSON.parse(text)).toBeDefined();
    expect(findJsonSyntaxError(text)).toBeUndefined();
  });

  it("is only consulted when JSON.parse fails", () => {
    expect(parseSpecText("s.json", '{"a":1}')).toEqual({ a: 1 });
    expect(() => parseSpecText("s.json", '{"a":}')).toThrow(SpecError);
  });
});
