import { cpSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { runCli } from "../../../src/cli/run.js";

export const FIXTURE_TEMPLATES = path.join(import.meta.dirname, "../../fixtures/templates");
const EXAMPLES = path.join(import.meta.dirname, "../../../examples");

export interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** A scratch working directory holding copies of the examples. */
export function scratch(): {
  dir: string;
  cleanup: () => void;
  cli: (...args: string[]) => Promise<Run>;
} {
  const dir = mkdtempSync(path.join(tmpdir(), "gen-reuseport-cli-"));
  cpSync(EXAMPLES, dir, { recursive: true });
  const cli = async (...args: string[]): Promise<Run> => {
    let stdout = "";
    let stderr = "";
    const code = await runCli(args, {
      stdout: { write: (s: string) => (stdout += s) },
      stderr: { write: (s: string | Uint8Array) => (stderr += String(s)) },
      cwd: dir,
      env: { PATH: "", GEN_REUSEPORT_DEBUG: "" },
      templatesDir: FIXTURE_TEMPLATES,
      toolchainDirs: [path.join(dir, "zig-cache")],
      invocation: "npx gen-reuseport",
    });
    return { code, stdout, stderr };
  };
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }), cli };
}
