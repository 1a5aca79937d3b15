import { cpSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { runCli } from "../../../src/cli/run.js";
import type { CliContext } from "../../../src/cli/types.js";

export const FIXTURE_TEMPLATES = path.join(import.meta.dirname, "../../fixtures/templates");
const EXAMPLES = path.join(import.meta.dirname, "../../../examples");

export interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Context fields a test changes; `env` is added to the harness's own. */
export type Overrides = Partial<Omit<CliContext, "stdout" | "stderr">> & {
  readonly isTTY?: boolean;
  /** Called with each stderr write as it happens. */
  readonly onStderr?: (text: string) => void;
};

/** A scratch working directory holding copies of the examples. */
export function scratch(): {
  dir: string;
  cleanup: () => void;
  cli: (...args: string[]) => Promise<Run>;
  cliWith: (overrides: Overrides, ...args: string[]) => Promise<Run>;
} {
  const dir = mkdtempSync(path.join(tmpdir(), "gen-reuseport-cli-"));
  cpSync(EXAMPLES, dir, { recursive: true });
  const cliWith = async (overrides: Overrides, ...args: string[]): Promise<Run> => {
    let stdout = "";
    let stderr = "";
    const { isTTY, onStderr, env, ...rest } = overrides;
    const code = await runCli(args, {
      stdout: { write: (s: string) => (stdout += s) },
      stderr: {
        write: (s: string | Uint8Array) => {
          stderr += String(s);
          onStderr?.(String(s));
        },
        ...(isTTY === undefined ? {} : { isTTY }),
      },
      cwd: dir,
      templatesDir: FIXTURE_TEMPLATES,
      toolchainDirs: [path.join(dir, "zig-cache")],
      invocation: "npx gen-reuseport",
      ...rest,
      env: { PATH: "", GEN_REUSEPORT_DEBUG: "", ...env },
    });
    return { code, stdout, stderr };
  };
  return {
    dir,
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
    cli: (...args) => cliWith({}, ...args),
    cliWith,
  };
}
