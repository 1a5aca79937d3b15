/**
 * `gen-reuseport zig install`, `zig list`, `zig path` and `zig exec`: releases in the per-user
 * toolchain directory.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
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

/** A zig that prints its arguments, its working directory and a line on stderr, then exits. */
function echoZig(version: string, exitCode = 0): string {
  const file = installedZigPath(cache, version);
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(
    file,
    `#!/bin/sh
[ "$1" = version ] && { echo ${version}; exit 0; }
echo "zig ${version} args:$*"
echo "cwd:$(pwd)"
echo "to stderr" >&2
exit ${exitCode}
`,
  );
  chmodSync(file, 0o755);
  return file;
}

describe("gen-reuseport zig path", () => {
  it("prints the newest installed release by default, and the one asked for", async () => {
    const older = echoZig("0.15.2");
    const newer = echoZig("0.16.0");
    expect(await cliWith({}, "zig", "path")).toEqual({ code: 0, stdout: `${newer}\n`, stderr: "" });
    expect((await cliWith({}, "zig", "path", "0.15.2")).stdout).toBe(`${older}\n`);
  });

  it("prints a JSON document like the other zig commands", async () => {
    const zig = echoZig("0.17.1");
    const run = await cliWith({}, "zig", "path", "--json");
    expect(JSON.parse(run.stdout)).toEqual({
      version: 1,
      ok: true,
      exitCode: 0,
      command: "zig path",
      zig: { version: "0.17.1", path: zig },
    });
  });

  it("exits 3 naming the install command when the release is not installed", async () => {
    const other = echoZig("0.15.2");
    const run = await cliWith({}, "zig", "path", "0.17.1");
    expect(run.code).toBe(3);
    expect(run.stdout).toBe("");
    expect(run.stderr).toBe(
      `zig 0.17.1 is not installed (looked in ${cache}); ` +
        'run "npx gen-reuseport zig install 0.17.1"\n',
    );
    rmSync(other);
    const none = await cliWith({}, "zig", "path", "--json");
    expect(none.code).toBe(3);
    expect(JSON.parse(none.stdout)).toMatchObject({
      ok: false,
      exitCode: 3,
      command: "zig path",
      error: { code: "toolchain", problem: { kind: "zig-not-installed", searched: [cache] } },
    });
    expect(none.stderr).toContain("no supported Zig is installed (looked in");
  });

  it("refuses a release it does not support with exit 2", async () => {
    const run = await cliWith({}, "zig", "path", "0.13.0");
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/^gen-reuseport: zig "0\.13\.0" is not a supported release/);
  });
});

describe("gen-reuseport zig exec", () => {
  it("runs the newest installed Zig with the arguments after --, in this directory", async () => {
    echoZig("0.15.2");
    echoZig("0.16.0");
    const run = await cliWith({}, "zig", "exec", "--", "build", "--help", "-Doptimize=ReleaseSafe");
    expect(run).toEqual({
      code: 0,
      stdout: `zig 0.16.0 args:build --help -Doptimize=ReleaseSafe\ncwd:${dir}\n`,
      stderr: "to stderr\n",
    });
  });

  it("takes --version, and passes everything from the first other word to Zig", async () => {
    echoZig("0.15.2");
    echoZig("0.16.0");
    const run = await cliWith({}, "zig", "exec", "--version", "0.15.2", "build", "--version");
    expect(run.stdout.split("\n")[0]).toBe("zig 0.15.2 args:build --version");
    const inline = await cliWith({}, "zig", "exec", "--version=0.15.2", "--", "fmt", ".");
    expect(inline.stdout.split("\n")[0]).toBe("zig 0.15.2 args:fmt .");
  });

  it("shows its own help for --help before the arguments for Zig", async () => {
    const run = await cliWith({}, "zig", "exec", "--help");
    expect(run.code).toBe(0);
    expect(run.stdout).toContain("gen-reuseport zig exec [--version V] -- <args..>");
  });

  it("exits with Zig's exit code", async () => {
    echoZig("0.16.0", 7);
    const run = await cliWith({}, "zig", "exec", "--", "build");
    expect(run.code).toBe(7);
    expect(run.stdout).toContain("args:build");
  });

  it("exits 3 when no Zig is installed, 2 when it is given no arguments for Zig", async () => {
    const missing = await cliWith({}, "zig", "exec", "--", "build");
    expect(missing.code).toBe(3);
    expect(missing.stderr).toMatch(
      /^no supported Zig is installed .*; run "npx gen-reuseport zig install"\n$/,
    );
    echoZig("0.16.0");
    const empty = await cliWith({}, "zig", "exec");
    expect(empty.code).toBe(2);
    expect(empty.stderr).toMatch(/missing the arguments for Zig \(e\.g\. zig exec -- build\)/);
    const typo = await cliWith({}, "zig", "exec", "--verison", "0.16.0", "--", "build");
    expect(typo.code).toBe(2);
    expect(typo.stderr).toContain("unknown option --verison for zig exec");
    expect(typo.stderr).toContain("did you mean --version?");
  });
});
