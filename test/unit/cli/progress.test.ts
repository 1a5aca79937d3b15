/**
 * --build / --test progress: a line before each step, Zig's output as it comes (not when Zig
 * ends), the time each step took, and ANSI only on a terminal without NO_COLOR.
 */
import { chmodSync, existsSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { zigOutputMode } from "../../../src/cli/commands/build.js";
import { scratch, type Overrides, type Run } from "./harness.js";

let dir: string;
let cliWith: (overrides: Overrides, ...args: string[]) => Promise<Run>;
let cleanup: () => void;
beforeEach(() => {
  ({ dir, cliWith, cleanup } = scratch());
});
afterEach(() => cleanup());

function fakeZig(script: string): string {
  const file = path.join(dir, "fake-zig");
  writeFileSync(file, `#!/bin/sh\nif [ "$1" = version ]; then echo 0.16.0; exit 0; fi\n${script}\n`);
  chmodSync(file, 0o755);
  return file;
}

const ESC = "\x1b[";

describe("progress of --build", () => {
  it("passes Zig's output through while Zig still runs", async () => {
    // The fake Zig prints a line, then waits (at most 5 s) for the test to have seen it.
    const seen = path.join(dir, "seen");
    const zig = fakeZig(
      `echo "compiling step 1"\n` +
        `i=0; while [ ! -e ${seen} ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done\n` +
        `[ -e ${seen} ] || exit 7\necho "done"`,
    );
    const onStderr = (text: string) => {
      if (text.includes("compiling step 1")) writeFileSync(seen, "");
    };
    const run = await cliWith({ onStderr }, "http.json", "--out", "out", "--build", "--zig", zig);
    expect(run.code, run.stderr).toBe(0);
    expect(existsSync(seen)).toBe(true);
    expect(run.stderr).toBe("building with zig 0.16.0 in out/ …\ncompiling step 1\ndone\n");
  });

  it("prints no ANSI escape off a terminal, even with a colour-forcing env", async () => {
    const zig = fakeZig('echo "NO_COLOR=$NO_COLOR"');
    const run = await cliWith(
      { env: { CLICOLOR_FORCE: "1", FORCE_COLOR: "1" } },
      "http.json", "--out", "out", "--build", "--zig", zig,
    );
    expect(run.code).toBe(0);
    expect(run.stderr + run.stdout).not.toContain(ESC);
    expect(run.stderr).toContain("NO_COLOR=1");
  });

  it("lets Zig draw on a terminal and styles its own line, unless NO_COLOR is set", async () => {
    const zig = fakeZig("exit 0");
    const args = ["http.json", "--out", "out", "--build", "--zig", zig];
    const styled = await cliWith({ isTTY: true }, ...args);
    expect(styled.stderr).toBe(`${ESC}1mbuilding with zig 0.16.0 in out/ …${ESC}22m\n`);
    const plain = await cliWith({ isTTY: true, env: { NO_COLOR: "1" } }, ...args);
    expect(plain.stderr).toBe("building with zig 0.16.0 in out/ …\n");
  });

  it("inherits stderr for Zig only on a terminal and not with --json", () => {
    const ctx = (isTTY: boolean) => ({
      stdout: { write: () => true },
      stderr: { write: () => true, isTTY },
      cwd: dir,
      env: {},
    });
    expect(zigOutputMode(ctx(true), false)).toBe("inherit");
    expect(zigOutputMode(ctx(false), false)).toBe("lines");
    expect(zigOutputMode(ctx(true), true)).toBe("lines");
  });

  it("says how long each step took", async () => {
    const zig = fakeZig("sleep 0.3");
    const run = await cliWith({}, "http.json", "--out", "out", "--build", "--test", "--zig", zig);
    const times = [...run.stdout.matchAll(/: ok in (\d+\.\d) s/g)].map((m) => Number(m[1]));
    expect(times).toHaveLength(2);
    for (const t of times) expect(t).toBeGreaterThanOrEqual(0.3);
  });
});
