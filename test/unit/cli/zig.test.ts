/**
 * `gen-reuseport zig install` and `zig list`: releases in the per-user toolchain directory.
 */
import { chmodSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { installedZigPath } from "../../../src/toolchain/cache.js";
import { writeFakeZig } from "../toolchain/fake.js";
import { scratch, type Overrides, type Run } from "./harness.js";

let dir: string;
let cliWith: (overrides: Overrides, ...args: string[]) => Promise<Run>;
let cleanup: () => void;
let cache: string;
beforeEach(() => {
  ({ dir, cliWith, cleanup } = scratch());
  cache = path.join(dir, "zig-cache");
});
afterEach(() => cleanup());

/** `python3 -m pip install --target DIR ziglang==V` that logs and makes a fake zig. */
function fakePython(): string {
  const file = path.join(dir, "python3");
  writeFileSync(
    file,
    `#!/bin/sh
echo "$*" >> ${dir}/pip.log
target=""; spec=""
while [ $# -gt 0 ]; do
  case "$1" in --target) target="$2"; shift;; ziglang==*) spec="$1";; esac; shift
done
mkdir -p "$target/ziglang"
printf '#!/bin/sh\\necho %s\\n' "\${spec#ziglang==}" > "$target/ziglang/zig"
chmod +x "$target/ziglang/zig"
`,
  );
  chmodSync(file, 0o755);
  return file;
}

describe("gen-reuseport zig install", () => {
  it("installs the newest supported release into the toolchain cache by default", async () => {
    const run = await cliWith({ python: fakePython() }, "zig", "install");
    expect(run.code, run.stderr).toBe(0);
    const zig = installedZigPath(cache, "0.17.1");
    expect(existsSync(zig)).toBe(true);
    expect(run.stdout).toBe(`zig 0.17.1: installed at ${zig}\n`);
    expect(run.stderr).toBe(`installing zig 0.17.1 into ${path.dirname(path.dirname(zig))} …\n`);
  });

  it("installs the releases it is given, and says which were there already", async () => {
    writeFakeZig(installedZigPath(cache, "0.15.2"), "0.15.2");
    const run = await cliWith({ python: fakePython() }, "zig", "install", "0.15.2", "0.16.0");
    expect(run.code).toBe(0);
    expect(run.stdout).toContain("zig 0.15.2: already installed");
    expect(run.stdout).toContain("zig 0.16.0: installed");
    expect(readFileSync(path.join(dir, "pip.log"), "utf8").trim().split("\n")).toHaveLength(1);
  });

  it("installs into $GEN_REUSEPORT_CACHE when no directory is injected", async () => {
    const own = path.join(dir, "own-cache");
    const run = await cliWith(
      { python: fakePython(), toolchainDirs: undefined, env: { GEN_REUSEPORT_CACHE: own } },
      "zig", "install", "0.14.1",
    );
    expect(run.code, run.stderr).toBe(0);
    expect(existsSync(installedZigPath(own, "0.14.1"))).toBe(true);
  });

  it("refuses an unsupported release with exit 3", async () => {
    const run = await cliWith({ python: fakePython() }, "zig", "install", "0.13.0");
    expect(run.code).toBe(3);
    expect(run.stderr).toMatch(/^cannot install zig "0\.13\.0": not a supported release/);
  });
});

describe("gen-reuseport zig list", () => {
  it("lists every supported release, newest first, with where it is installed", async () => {
    const zig = writeFakeZig(installedZigPath(cache, "0.16.0"), "0.16.0");
    const run = await cliWith({}, "zig", "list");
    expect(run.code).toBe(0);
    expect(run.stdout.split("\n").slice(1, 4)).toEqual([
      "  0.17.1  not installed",
      "  0.17.0  not installed",
      `  0.16.0  ${zig}`,
    ]);
  });
});
