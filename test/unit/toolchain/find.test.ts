import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ToolchainError } from "../../../src/errors.js";
import { findZig, provisionedZigPath } from "../../../src/toolchain/find.js";
import { writeFakeZig } from "./fake.js";

let root: string;
beforeEach(() => {
  root = mkdtempSync(path.join(tmpdir(), "gen-reuseport-find-"));
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

describe("findZig", () => {
  it("prefers --zig, then $ZIG, then .toolchain, then PATH", async () => {
    const flag = writeFakeZig(path.join(root, "flag/zig"), "0.14.1");
    const env = writeFakeZig(path.join(root, "env/zig"), "0.15.2");
    writeFakeZig(provisionedZigPath(root, "0.16.0"), "0.16.0");
    writeFakeZig(path.join(root, "bin/zig"), "0.17.1");
    const PATH = path.join(root, "bin");
    const find = (zigPath: string | undefined, ZIG?: string) =>
      findZig({ zigPath, env: { PATH, ZIG }, root, cwd: root });
    expect(await find(flag, env)).toEqual({ path: flag, version: "0.14.1", source: "flag" });
    expect(await find(undefined, env)).toEqual({ path: env, version: "0.15.2", source: "env" });
    expect((await find(undefined)).source).toBe("toolchain");
    rmSync(path.join(root, ".toolchain"), { recursive: true });
    expect(await find(undefined)).toEqual({
      path: path.join(PATH, "zig"),
      version: "0.17.1",
      source: "path",
    });
  });

  it("picks the newest supported provisioned Zig", async () => {
    for (const v of ["0.14.1", "0.17.1", "0.15.2", "0.13.0"])
      writeFakeZig(provisionedZigPath(root, v), v);
    const found = await findZig({ env: {}, root });
    expect(found.version).toBe("0.17.1");
  });

  it("resolves --zig relative to the working directory", async () => {
    writeFakeZig(path.join(root, "tools/zig"), "0.15.2");
    const found = await findZig({ zigPath: "tools/zig", env: {}, root, cwd: root });
    expect(found.path).toBe(path.join(root, "tools/zig"));
  });

  it("does not fall back when the chosen Zig is unsupported", async () => {
    const old = writeFakeZig(path.join(root, "old/zig"), "0.12.0");
    writeFakeZig(provisionedZigPath(root, "0.15.2"), "0.15.2");
    await expect(findZig({ zigPath: old, env: {}, root })).rejects.toThrow(
      `zig 0.12.0 at ${old} is not supported (supported: 0.14.1, 0.15.2, 0.16.x, 0.17.x); ` +
        'run "npm run zig:install" or pass --zig PATH',
    );
  });

  it("says a Zig that does not run does not run", async () => {
    const broken = path.join(root, "zig");
    writeFileSync(broken, "#!/bin/sh\nexit 9\n");
    chmodSync(broken, 0o755);
    await expect(findZig({ zigPath: broken, env: {}, root })).rejects.toThrow(/does not run/);
    await expect(findZig({ zigPath: path.join(root, "nope"), env: {}, root })).rejects.toThrow(
      ToolchainError,
    );
  });

  it("fails with how to get Zig when there is none", async () => {
    await expect(findZig({ env: { PATH: "" }, root })).rejects.toThrow(
      /^zig not found .*zig:install/,
    );
  });
});
