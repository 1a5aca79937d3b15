/**
 * `oncePerRun` (support/once.ts) without Zig: the work is done once and its record read after,
 * and a lock left by a worker process that is gone is taken over instead of waited for.
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { oncePerRun } from "./support/once.js";

describe("oncePerRun", () => {
  let dir: string;

  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "gen-reuseport-once-"));
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("does the work once and reads its record afterwards", async () => {
    let runs = 0;
    const work = async () => ({ run: ++runs });
    const key = path.join(dir, "project");
    expect(await oncePerRun(key, work)).toEqual({ run: 1 });
    expect(await oncePerRun(key, work)).toEqual({ run: 1 });
    expect(runs).toBe(1);
    expect(existsSync(`${key}.lock`)).toBe(false);
  });

  it("takes over a lock whose process is gone, and redoes its half-done work", async () => {
    const gone = spawnSync(process.execPath, ["-e", ""]).pid;
    expect(gone).toBeGreaterThan(0);
    const key = path.join(dir, "project");
    await mkdir(`${key}.lock`);
    await writeFile(path.join(`${key}.lock`, "pid"), String(gone));
    await mkdir(key);
    await writeFile(path.join(key, "half-done"), "");
    const result = await oncePerRun(key, async () => {
      expect(existsSync(path.join(key, "half-done"))).toBe(false);
      return "done again";
    });
    expect(result).toBe("done again");
  });
});
