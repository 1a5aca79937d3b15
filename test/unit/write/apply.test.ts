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
import { InternalError, OutputError } from "../../../src/errors.js";
import type { Plan } from "../../../src/plan/plan.js";
import { MANIFEST_FILE } from "../../../src/render/manifest.js";
import { applyPlan } from "../../../src/write/apply.js";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), "gen-reuseport-write-"));
});
afterEach(() => {
  chmodSync(dir, 0o755);
  rmSync(dir, { recursive: true, force: true });
});

function read(file: string): string {
  return readFileSync(path.join(dir, file), "utf8");
}

/** Every file under dir, relative, sorted. */
function tree(): string[] {
  return (readdirSync(dir, { recursive: true, withFileTypes: true }) as import("node:fs").Dirent[])
    .filter((e) => e.isFile())
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)))
    .sort();
}

describe("applyPlan", () => {
  it("creates files and their directories, the manifest included", async () => {
    const plan: Plan = {
      files: [
        { path: "src/deep/a.zig", action: "create", content: "A\n" },
        { path: MANIFEST_FILE, action: "create", content: "{}\n" },
      ],
    };
    await applyPlan(dir, plan);
    expect(tree()).toEqual([MANIFEST_FILE, "src/deep/a.zig"]);
    expect(read("src/deep/a.zig")).toBe("A\n");
  });

  it("replaces updated files and leaves no temporary files behind", async () => {
    writeFileSync(path.join(dir, "a.zig"), "old");
    await applyPlan(dir, { files: [{ path: "a.zig", action: "update", content: "new" }] });
    expect(read("a.zig")).toBe("new");
    expect(tree()).toEqual(["a.zig"]);
  });

  it("removes stale files and the directories they leave empty, not the output directory", async () => {
    mkdirSync(path.join(dir, "src/old"), { recursive: true });
    writeFileSync(path.join(dir, "src/old/x.zig"), "x");
    writeFileSync(path.join(dir, "keep.txt"), "k");
    await applyPlan(dir, { files: [{ path: "src/old/x.zig", action: "remove" }] });
    expect(existsSync(path.join(dir, "src"))).toBe(false);
    expect(tree()).toEqual(["keep.txt"]);
  });

  it("keeps a directory that still holds other files", async () => {
    mkdirSync(path.join(dir, "src"));
    writeFileSync(path.join(dir, "src/x.zig"), "x");
    writeFileSync(path.join(dir, "src/mine.zig"), "m");
    await applyPlan(dir, { files: [{ path: "src/x.zig", action: "remove" }] });
    expect(tree()).toEqual(["src/mine.zig"]);
  });

  it("writes nothing for unchanged and kept files, so user files stay byte for byte", async () => {
    mkdirSync(path.join(dir, "src"));
    writeFileSync(path.join(dir, "src/handler.zig"), "user code");
    await applyPlan(dir, {
      files: [
        { path: "src/handler.zig", action: "keep" },
        { path: "b.zig", action: "unchanged" },
      ],
    });
    expect(read("src/handler.zig")).toBe("user code");
    expect(tree()).toEqual(["src/handler.zig"]);
  });

  it("refuses to overwrite a user-owned file even if a plan asks", async () => {
    await expect(
      applyPlan(dir, { files: [{ path: "src/handler.zig", action: "update", content: "x" }] }),
    ).rejects.toThrow(InternalError);
  });

  it("creates a user-owned file exclusively, never clobbering one that appeared meanwhile", async () => {
    mkdirSync(path.join(dir, "src"));
    writeFileSync(path.join(dir, "src/handler.zig"), "appeared");
    await expect(
      applyPlan(dir, {
        files: [{ path: "src/handler.zig", action: "create", content: "template" }],
      }),
    ).rejects.toThrow(OutputError);
    expect(read("src/handler.zig")).toBe("appeared");
    expect(tree()).toEqual(["src/handler.zig"]);
  });

  it("refuses a plan with conflicts", async () => {
    await expect(
      applyPlan(dir, { files: [{ path: "a.zig", action: "conflict", reason: "edited" }] }),
    ).rejects.toThrow(InternalError);
  });

  it("writes the manifest last: a failed write leaves the old manifest in place", async () => {
    writeFileSync(path.join(dir, MANIFEST_FILE), "old manifest");
    mkdirSync(path.join(dir, "blocked"));
    writeFileSync(path.join(dir, "blocked/a.zig"), "old");
    chmodSync(path.join(dir, "blocked"), 0o500);
    const plan: Plan = {
      files: [
        { path: "blocked/a.zig", action: "update", content: "new" },
        { path: MANIFEST_FILE, action: "update", content: "new manifest" },
      ],
    };
    const canWrite = process.getuid?.() === 0; // root ignores directory permissions
    if (canWrite) {
      // As root, block the write with a file where the directory should be instead.
      chmodSync(path.join(dir, "blocked"), 0o755);
      rmSync(path.join(dir, "blocked"), { recursive: true });
      writeFileSync(path.join(dir, "blocked"), "a file, not a directory");
    }
    await expect(applyPlan(dir, plan)).rejects.toThrow(OutputError);
    expect(read(MANIFEST_FILE)).toBe("old manifest");
    expect(tree().filter((f) => f.includes(".tmp-"))).toEqual([]);
    if (!canWrite) chmodSync(path.join(dir, "blocked"), 0o755);
  });
});
