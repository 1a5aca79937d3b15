import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { installedZigPath } from "../../../src/toolchain/cache.js";
import { ensureZig } from "../../../src/toolchain/provision.js";
import { writeFakeZig } from "./fake.js";

let root: string;
let dir: string;
beforeEach(() => {
  root = mkdtempSync(path.join(tmpdir(), "gen-reuseport-provision-"));
  dir = path.join(root, "cache");
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

/** A stand-in for `python3 -m pip install --target DIR ziglang==V` that logs its calls. */
function fakePython(options: { fail?: boolean } = {}): string {
  const file = path.join(root, "python3");
  const log = path.join(root, "pip.log");
  writeFileSync(
    file,
    `#!/bin/sh
echo "$*" >> ${log}
${options.fail ? 'echo "ERROR: No matching distribution found" >&2; exit 1' : ""}
target=""; spec=""
while [ $# -gt 0 ]; do
  case "$1" in --target) target="$2"; shift;; ziglang==*) spec="$1";; esac; shift
done
version="\${spec#ziglang==}"
sleep 0.2
mkdir -p "$target/ziglang"
printf '#!/bin/sh\\necho %s\\n' "$version" > "$target/ziglang/zig"
chmod +x "$target/ziglang/zig"
`,
  );
  chmodSync(file, 0o755);
  return file;
}

function pipCalls(): string[] {
  const log = path.join(root, "pip.log");
  return existsSync(log) ? readFileSync(log, "utf8").trim().split("\n") : [];
}

describe("ensureZig", () => {
  it("installs the wheel into <dir>/zig-<version> and returns the zig path", async () => {
    const zig = await ensureZig("0.15.2", { dir, python: fakePython() });
    expect(zig).toBe(installedZigPath(dir, "0.15.2"));
    expect(pipCalls()).toHaveLength(1);
    expect(pipCalls()[0]).toMatch(
      /^-m pip install --quiet .*--no-deps --target \S+\/cache\/\.tmp-zig-0\.15\.2-\S+ ziglang==0\.15\.2$/,
    );
    expect(readdirSync(dir)).toEqual(["zig-0.15.2"]);
  });

  it("skips the install when that Zig is already there", async () => {
    writeFakeZig(installedZigPath(dir, "0.14.1"), "0.14.1");
    await ensureZig("0.14.1", { dir, python: fakePython() });
    expect(pipCalls()).toEqual([]);
  });

  it("installs once when called in parallel", async () => {
    const python = fakePython();
    const paths = await Promise.all([1, 2, 3].map(() => ensureZig("0.16.0", { dir, python })));
    expect(new Set(paths).size).toBe(1);
    expect(pipCalls()).toHaveLength(1);
    expect(readdirSync(dir)).toEqual(["zig-0.16.0"]);
  });

  it("breaks a stale lock left by a run that died", async () => {
    const lock = path.join(dir, ".lock-zig-0.17.1");
    mkdirSync(lock, { recursive: true });
    const { utimesSync } = await import("node:fs");
    const old = new Date(Date.now() - 60 * 60_000);
    utimesSync(lock, old, old);
    await ensureZig("0.17.1", { dir, python: fakePython() });
    expect(existsSync(lock)).toBe(false);
  });

  it("reports a failed pip install as a toolchain error and leaves nothing behind", async () => {
    await expect(
      ensureZig("0.15.2", { dir, python: fakePython({ fail: true }) }),
    ).rejects.toMatchObject({
      problem: {
        kind: "install-failed",
        version: "0.15.2",
        output: expect.stringContaining("No matching distribution"),
      },
    });
    expect(readdirSync(dir)).toEqual([]);
  });

  it("refuses to provision an unsupported release", async () => {
    await expect(ensureZig("0.13.0", { dir, python: fakePython() })).rejects.toMatchObject({
      problem: { kind: "release-unsupported", version: "0.13.0" },
    });
    expect(pipCalls()).toEqual([]);
  });
});
