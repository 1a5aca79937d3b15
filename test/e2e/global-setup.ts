/**
 * Vitest global setup: one temporary folder per run where the end-to-end tests generate and
 * build their projects (removed at the end unless GEN_REUSEPORT_E2E_KEEP=1). Zig itself is
 * provisioned by the tests that need it (`support/zig.ts`), so a unit-only run costs nothing.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import type { TestProject } from "vitest/node";

declare module "vitest" {
  export interface ProvidedContext {
    e2eRunDir: string;
  }
}

export default async function setup(project: TestProject) {
  const runDir = await mkdtemp(path.join(tmpdir(), "gen-reuseport-e2e-"));
  project.provide("e2eRunDir", runDir);
  return async () => {
    if (process.env.GEN_REUSEPORT_E2E_KEEP === "1") {
      process.stderr.write(`[e2e] kept ${runDir}\n`);
      return;
    }
    await rm(runDir, { recursive: true, force: true });
  };
}
