import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ToolchainError } from "../../../src/errors.js";
import { installedZigPath } from "../../../src/toolchain/cache.js";
import { findZig } from "../../../src/toolchain/find.js";
import { writeFakeZig } from "./fake.js";

let root: string;
let toolchainDirs: string[];
beforeEach(() => {
  root = mkdtempSync(path.join(tmpdir(), "gen-reuseport-find-"));
  toolchainDirs = [path.join(root, "cache"), path.join(root, ".toolchain")];
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

describe("findZig", () => {
  it("prefers --zig, then $ZIG, then the toolchain directories, then PATH", async () => {
    const flag = writeFakeZig(path.join(root, "flag/zig"), "0.14.1");
    const env = writeFakeZig(path.join(root, "env/zig"), "0.15.2");
    writeFakeZig(installedZigPath(toolchainDirs[1]!, "0.16.0"), "0.16.0");
    writeFakeZig(path.join(root, "bin/zig"), "0.17.1");
    const PATH = path.join(root, "bin");
    const find = (zigPath: string | undefined, ZIG?: string) =>
      findZig({ zigPath, env: { PATH, ZIG }, toolchainDirs, cwd: root });
    expect(await find(flag, env)).toEqual({ path: flag, version: "0.14.1", source: "flag" });
    expect(await find(undefined, env)).toEqual({ path: env, version: "0.15.2", source: "env" });
    expect((await find(undefined)).source).toBe("toolchain");
    rmSync(toolchainDirs[1]!, { recursive: true });
    expect(await find(undefined)).toEqual({
      path: path.join(PATH, "zig"),
      version: "0.17.1",
      source: "path",
    });
  });

  it("picks the newest supported provisioned Zig", async () => {
    for (const v of ["0.14.1", "0.17.1", "0.15.2", "0.13.0"])
      writeFakeZig(installedZigPath(toolchainDirs[1]!, v), v);
    const found = await findZig({ env: {}, toolchainDirs });
    expect(found.version).toBe("0.17.1");
  });

  it("resolves --zig relative to the working directory", async () => {
    writeFakeZig(path.join(root, "tools/zig"), "0.15.2");
    const found = await findZig({ zigPath: "tools/zig", env: {}, toolchainDirs, cwd: root });
    expect(found.path).toBe(path.join(root, "tools/zig"));
  });

  it("does not fall back when the chosen Zig is unsupported", async () => {
    const old = writeFakeZig(path.join(root, "old/zig"), "0.12.0");
    writeFakeZig(installedZigPath(toolchainDirs[1]!, "0.15.2"), "0.15.2");
    await expect(findZig({ zigPath: old, env: {}, toolchainDirs })).rejects.toThrow(
      expect.objectContaining({
        problem: { kind: "zig-unsupported", path: old, version: "0.12.0" },
      }),
    );
  });

  it("says a Zig that does not run does not run", async () => {
    const broken = path.join(root, "zig");
    writeFileSync(broken, "#!/bin/sh\nexit 9\n");
    chmodSync(broken, 0o755);
    await expect(findZig({ zigPath: broken, env: {}, toolchainDirs })).rejects.toMatchObject({
      problem: { kind: "zig-does-not-run", path: broken },
    });
    await expect(findZig({ zigPath: path.join(root, "nope"), env: {}, toolchainDirs })).rejects.toThrow(
      ToolchainError,
    );
  });

  it("says where it looked when there is no Zig", async () => {
    await expect(findZig({ env: { PATH: "" }, toolchainDirs })).rejects.toMatchObject({
      problem: { kind: "zig-not-found", looked: ["--zig", "$ZIG", ...toolchainDirs, "PATH"] },
    });
  });

  it("finds a Zig in the per-user cache before one in a checkout's .toolchain", async () => {
    const cached = writeFakeZig(installedZigPath(toolchainDirs[0]!, "0.15.2"), "0.15.2");
    writeFakeZig(installedZigPath(toolchainDirs[1]!, "0.15.2"), "0.15.2");
    expect((await findZig({ env: {}, toolchainDirs })).path).toBe(cached);
  });

  it("falls back to a checkout's .toolchain (where the test suite provisions)", async () => {
    const legacy = writeFakeZig(installedZigPath(toolchainDirs[1]!, "0.16.0"), "0.16.0");
    expect(await findZig({ env: {}, toolchainDirs })).toEqual({
      path: legacy,
      version: "0.16.0",
      source: "toolchain",
    });
  });
});
