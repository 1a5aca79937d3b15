/**
 * `--json`: one versioned document on stdout for every outcome, usage errors included.
 */
import { chmodSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { scratch, type Run } from "./harness.js";

let dir: string;
let cli: (...args: string[]) => Promise<Run>;
let cleanup: () => void;
beforeEach(() => {
  ({ dir, cli, cleanup } = scratch());
});
afterEach(() => cleanup());

async function json(...args: string[]): Promise<{ code: number; doc: Record<string, unknown> }> {
  const run = await cli(...args, "--json");
  return { code: run.code, doc: JSON.parse(run.stdout) as Record<string, unknown> };
}

function fakeZig(script: string): string {
  const file = path.join(dir, "fake-zig");
  writeFileSync(file, `#!/bin/sh\nif [ "$1" = version ]; then echo 0.17.1; exit 0; fi\n${script}\n`);
  chmodSync(file, 0o755);
  return file;
}

describe("--json", () => {
  it.each([
    [["http.json", "--frob"], 2, "usage"],
    [["http.json", "--check", "--dry-run"], 2, "usage"],
    [["http.json", "--out"], 2, "usage"],
    [[], 2, "usage"],
    [["zig"], 2, "usage"],
    [["missing.json"], 2, "invalid-spec"],
    [["http.json", "--test"], 3, "toolchain"],
  ])("prints a version 1 document for the failure of %j", async (args, exitCode, code) => {
    const { code: exit, doc } = await json(...args);
    expect(exit).toBe(exitCode);
    expect(doc).toMatchObject({ version: 1, ok: false, exitCode, error: { code } });
  });

  it("says what a usage error was in the document", async () => {
    const { doc } = await json("http.json", "--frob");
    expect(doc).toEqual({
      version: 1,
      ok: false,
      exitCode: 2,
      error: { code: "usage", message: "unknown option --frob" },
    });
  });

  it.each([
    [["http.json", "--out", "out"], "write"],
    [["http.json", "--out", "out", "--dry-run"], "dry-run"],
    [["http.json", "--out", "out", "--check"], "check"],
  ])("prints a version 1 document for %j", async (args, mode) => {
    const { doc } = await json(...args);
    expect(doc).toMatchObject({ version: 1, command: "generate", mode, outDir: "out" });
  });

  it("reports a missing Zig as data with the worded message", async () => {
    const { doc } = await json("http.json", "--out", "out", "--build");
    expect(doc.error).toMatchObject({
      code: "toolchain",
      message: expect.stringContaining('run "npx gen-reuseport zig install 0.17.1"'),
      problem: { kind: "zig-not-found" },
    });
  });

  it("carries Zig's diagnostics (path, line, column) when a build fails", async () => {
    const zig = fakeZig(
      "echo 'src/main.zig:12:5: error: use of undeclared identifier '\"'\"'x'\"'\"'' >&2\nexit 1",
    );
    const { code, doc } = await json("http.json", "--out", "out", "--build", "--zig", zig);
    expect(code).toBe(3);
    expect(doc.error).toMatchObject({
      problem: {
        kind: "step-failed",
        step: {
          command: "zig build",
          exitCode: 1,
          diagnostics: [
            {
              kind: "error",
              path: "src/main.zig",
              line: 12,
              column: 5,
              message: "use of undeclared identifier 'x'",
            },
          ],
        },
      },
    });
  });

  it("lists the steps Zig ran after a successful build", async () => {
    const { doc } = await json("http.json", "--out", "out", "--build", "--zig", fakeZig("exit 0"));
    expect(doc).toMatchObject({
      version: 1,
      ok: true,
      zig: { version: "0.17.1", steps: [{ command: "zig build", ok: true }] },
    });
  });

  it("reports init and zig list", async () => {
    expect((await json("init")).doc).toMatchObject({
      version: 1,
      command: "init",
      files: [
        { path: "gen-reuseport.json", action: "create" },
        { path: "gen-reuseport.schema.json", action: "create" },
      ],
    });
    const list = (await json("zig", "list")).doc;
    expect(list).toMatchObject({ version: 1, command: "zig list" });
    expect(list.releases).toContainEqual({ version: "0.17.1", installed: false });
  });
});
