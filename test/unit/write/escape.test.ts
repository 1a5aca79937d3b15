/**
 * Nothing escapes the output directory: real temporary directories, real symbolic links and
 * real FIFOs (mkfifo), through the CLI runner and the pipeline functions. No file system mocks.
 */
import { execFileSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { EXIT, OutputError } from "../../../src/errors.js";
import { applyGeneration, prepareGeneration } from "../../../src/generate.js";
import { MANIFEST_FILE } from "../../../src/render/manifest.js";
import { FIXTURE_TEMPLATES, scratch } from "../cli/harness.js";

let dir: string;
let cleanup: () => void;
let cli: ReturnType<typeof scratch>["cli"];
/** A directory beside the output directory that must never be touched. */
let elsewhere: string;

beforeEach(() => {
  ({ dir, cleanup, cli } = scratch());
  elsewhere = path.join(dir, "elsewhere");
  mkdirSync(elsewhere);
  writeFileSync(path.join(elsewhere, "precious.txt"), "keep me\n");
});
afterEach(() => cleanup());

const at = (file: string) => path.join(dir, file);
const read = (file: string) => readFileSync(at(file), "utf8");
const elsewhereFiles = () => readdirSync(elsewhere).sort();

function prepare(out: string, extra: { force?: boolean; homeDir?: string } = {}) {
  return prepareGeneration({
    specFile: "http.json",
    outDir: out,
    cwd: dir,
    templatesDir: FIXTURE_TEMPLATES,
    ...extra,
  });
}

async function refusal(promise: Promise<unknown>): Promise<OutputError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(OutputError);
  expect((error as OutputError).exitCode).toBe(EXIT.output);
  return error as OutputError;
}

describe("symbolic links inside the output directory", () => {
  it("refuses to write through a linked directory (out/src -> elsewhere), exit 74", async () => {
    mkdirSync(at("out"));
    symlinkSync(elsewhere, at("out/src"));
    for (const args of [[], ["--force"]]) {
      const run = await cli("http.json", "--out", "out", ...args);
      expect(run.code).toBe(74);
      expect(run.stderr).toBe(
        "out/src: is a symbolic link; gen-reuseport never writes or removes through links; " +
          "replace it with a real directory or file, or choose another --out\n",
      );
    }
    expect(elsewhereFiles()).toEqual(["precious.txt"]);
  });

  it("refuses a crafted manifest entry that leads through a link, even with --force", async () => {
    expect((await cli("http.json", "--out", "out")).code).toBe(0);
    rmSync(at("out/src"), { recursive: true });
    symlinkSync(elsewhere, at("out/src"));
    const manifest = JSON.parse(read(`out/${MANIFEST_FILE}`));
    manifest.files["src/precious.txt"] = "0".repeat(64);
    writeFileSync(at(`out/${MANIFEST_FILE}`), JSON.stringify(manifest));
    const run = await cli("http.json", "--out", "out", "--force");
    expect(run.code).toBe(74);
    expect(run.stderr).toContain("out/src: is a symbolic link");
    expect(read("elsewhere/precious.txt")).toBe("keep me\n");
  });

  it("refuses a generated file that is a link to a file outside", async () => {
    expect((await cli("http.json", "--out", "out")).code).toBe(0);
    rmSync(at("out/build.zig"));
    symlinkSync(path.join(elsewhere, "precious.txt"), at("out/build.zig"));
    const run = await cli("http.json", "--out", "out", "--force");
    expect(run.code).toBe(74);
    expect(run.stderr).toContain("out/build.zig: is a symbolic link");
    expect(read("elsewhere/precious.txt")).toBe("keep me\n");
  });

  it("refuses a link planted between planning and writing", async () => {
    const prepared = await prepare("out");
    mkdirSync(at("out"));
    symlinkSync(elsewhere, at("out/src"));
    await refusal(applyGeneration(prepared));
    expect(elsewhereFiles()).toEqual(["precious.txt"]);
  });

  it("follows a link given as --out itself: the user chose it", async () => {
    symlinkSync(elsewhere, at("linked"));
    rmSync(path.join(elsewhere, "precious.txt"));
    const run = await cli("http.json", "--out", "linked");
    expect(run.code).toBe(0);
    expect(elsewhereFiles()).toContain(MANIFEST_FILE);
  });
});

describe("the manifest is validated input", () => {
  it.each([
    ["a path with ..", { "../outside.txt": "0".repeat(64) }, 'files lists "../outside.txt"'],
    ["an absolute path", { "/etc/passwd": "0".repeat(64) }, 'files lists "/etc/passwd"'],
    ["a path that is not normalized", { "src//x": "0".repeat(64) }, 'files lists "src//x"'],
    ["a hash that is not sha256", { "build.zig": "abc" }, 'files["build.zig"] is not a sha256'],
  ])("refuses a manifest with %s, exit 74, naming the file and the fix", async (_, files, what) => {
    expect((await cli("http.json", "--out", "out")).code).toBe(0);
    const manifest = JSON.parse(read(`out/${MANIFEST_FILE}`));
    manifest.files = { ...manifest.files, ...files };
    writeFileSync(at(`out/${MANIFEST_FILE}`), JSON.stringify(manifest));
    const run = await cli("http.json", "--out", "out", "--force");
    expect(run.code).toBe(74);
    const lines = run.stderr.trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(`out/${MANIFEST_FILE}: ${what}`);
    expect(lines[0]).toContain("restore it, or remove it");
  });

  it("refuses a manifest with an unknown key or that is not JSON", async () => {
    mkdirSync(at("out"));
    writeFileSync(at(`out/${MANIFEST_FILE}`), "{ not json");
    expect((await cli("http.json", "--out", "out")).stderr).toContain("is not valid JSON");
    writeFileSync(
      at(`out/${MANIFEST_FILE}`),
      JSON.stringify({ generator: "gen-reuseport", version: "", spec: "", files: {}, userFiles: [], x: 1 }),
    );
    expect((await cli("http.json", "--out", "out")).stderr).toContain('has an unknown key "x"');
  });

  it("never opens a FIFO in place of the manifest (no hang), exit 74", { timeout: 5000 }, async () => {
    mkdirSync(at("out"));
    execFileSync("mkfifo", [at(`out/${MANIFEST_FILE}`)]);
    const run = await cli("http.json", "--out", "out");
    expect(run.code).toBe(74);
    expect(run.stderr).toBe(`out/${MANIFEST_FILE}: is a FIFO, not a file; remove it\n`);
  });

  it("refuses a manifest that is a link", async () => {
    mkdirSync(at("out"));
    symlinkSync(path.join(elsewhere, "precious.txt"), at(`out/${MANIFEST_FILE}`));
    const run = await cli("http.json", "--out", "out");
    expect(run.code).toBe(74);
    expect(run.stderr).toContain("is a symbolic link, not a file");
  });

  it("never opens a FIFO at a generated file's path", { timeout: 5000 }, async () => {
    expect((await cli("http.json", "--out", "out")).code).toBe(0);
    rmSync(at("out/build.zig"));
    execFileSync("mkfifo", [at("out/build.zig")]);
    const run = await cli("http.json", "--out", "out");
    expect(run.code).toBe(4);
    expect(run.stderr).toContain("out/build.zig: is a directory or other non-file");
  });
});

describe("output directories that cannot be a project", () => {
  it("refuses / without writing", async () => {
    const error = await refusal(prepare("/"));
    expect(error.message).toBe("/: is the root directory; choose a new or empty directory");
  });

  it("refuses the home directory", async () => {
    mkdirSync(at("home"));
    const error = await refusal(prepare("home", { homeDir: at("home") }));
    expect(error.message).toBe("home: is your home directory; choose a new or empty directory in it");
  });

  it("gives one clear error when --out is a regular file", async () => {
    writeFileSync(at("out"), "a file\n");
    const run = await cli("http.json", "--out", "out");
    expect(run.code).toBe(74);
    expect(run.stderr).toBe("out: is a file, not a directory; choose another --out\n");
  });

  it("refuses a non-empty directory without a manifest unless --force", async () => {
    mkdirSync(at("out"));
    writeFileSync(at("out/notes.txt"), "mine\n");
    const run = await cli("http.json", "--out", "out");
    expect(run.code).toBe(74);
    expect(run.stderr).toBe(
      "out: is not empty and was not written by gen-reuseport (no .gen-reuseport.json); choose " +
        "a new or empty directory, or rerun with --force to generate into it\n",
    );
    expect(existsSync(at(`out/${MANIFEST_FILE}`))).toBe(false);
    expect((await cli("http.json", "--out", "out", "--force")).code).toBe(0);
    expect(read("out/notes.txt")).toBe("mine\n");
  });

  it("accepts an empty directory and one holding only .git", async () => {
    mkdirSync(at("empty"));
    expect((await cli("http.json", "--out", "empty")).code).toBe(0);
    mkdirSync(at("repo/.git"), { recursive: true });
    expect((await cli("http.json", "--out", "repo")).code).toBe(0);
  });
});
