import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { buildProject, parseZigDiagnostics, ZIG_STEPS } from "../../../src/toolchain/build.js";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), "gen-reuseport-build-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** A zig that logs its arguments and fails for `zig build test`. */
function fakeZig(): string {
  const file = path.join(dir, "zig");
  writeFileSync(
    file,
    `#!/bin/sh
echo "$*" >> ${dir}/calls.log
if [ "$2" = test ]; then
  printf 'src/a.zig:3:7: error: expected type\\n    x\\n    ^\\nerror: the following build command failed\\n' >&2
  exit 1
fi
printf 'part one, '; sleep 0.1; printf 'part two\\n'
`,
  );
  chmodSync(file, 0o755);
  return file;
}

describe("buildProject", () => {
  it("runs the steps in order and stops at the first failure", async () => {
    const result = await buildProject({
      zig: fakeZig(),
      dir,
      steps: [ZIG_STEPS.build, ZIG_STEPS.test, ZIG_STEPS.fmt],
    });
    expect(result.ok).toBe(false);
    expect(result.steps.map((s) => [s.command, s.ok, s.skipped])).toEqual([
      ["zig build", true, false],
      ["zig build test", false, false],
      ["zig fmt --check .", false, true],
    ]);
    expect(result.steps[1]).toMatchObject({ exitCode: 1, timedOut: false });
  });

  it("runs every step with keepGoing", async () => {
    const result = await buildProject({
      zig: fakeZig(),
      dir,
      steps: [ZIG_STEPS.test, ZIG_STEPS.build],
      keepGoing: true,
    });
    expect(result.steps.map((s) => s.ok)).toEqual([false, true]);
  });

  it("gives whole lines, even when a line comes in two writes", async () => {
    const lines: string[] = [];
    const result = await buildProject({
      zig: fakeZig(),
      dir,
      steps: [ZIG_STEPS.build],
      output: (line) => lines.push(line),
    });
    expect(lines).toEqual(["part one, part two"]);
    expect(result.steps[0]?.output).toBe("part one, part two\n");
  });

  it("reports Zig's errors with path, line and column", async () => {
    const result = await buildProject({ zig: fakeZig(), dir, steps: [ZIG_STEPS.test] });
    expect(result.steps[0]?.diagnostics).toEqual([
      { kind: "error", path: "src/a.zig", line: 3, column: 7, message: "expected type" },
      { kind: "error", message: "the following build command failed" },
    ]);
  });

  it("reports a step that ran out of time", async () => {
    const zig = path.join(dir, "slow-zig");
    writeFileSync(zig, "#!/bin/sh\nexec sleep 5\n");
    chmodSync(zig, 0o755);
    const result = await buildProject({ zig, dir, steps: [ZIG_STEPS.build], timeoutMs: 200 });
    expect(result.steps[0]).toMatchObject({ ok: false, timedOut: true });
  });
});

describe("parseZigDiagnostics", () => {
  it("reads notes and absolute paths, and ignores source excerpts", () => {
    const output =
      "/home/u/.cache/zig/std/a.zig:10:2: note: called from here\n" +
      "    foo();\n" +
      "    ^~~\n" +
      "build.zig:1:1: warning: something\n";
    expect(parseZigDiagnostics(output)).toEqual([
      {
        kind: "note",
        path: "/home/u/.cache/zig/std/a.zig",
        line: 10,
        column: 2,
        message: "called from here",
      },
      { kind: "warning", path: "build.zig", line: 1, column: 1, message: "something" },
    ]);
  });
});
