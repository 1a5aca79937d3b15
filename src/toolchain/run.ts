/**
 * Running `zig build` / `zig build test` in a generated project. The compiler's output is
 * streamed to the caller as it comes; a failure is one summary line after it.
 */
import { execa } from "execa";
import { ToolchainError } from "../errors.js";

export interface RunZigOptions {
  /** The generated project's directory. */
  readonly cwd: string;
  /** How the directory is named in messages (the `--out` the user passed). */
  readonly displayDir: string;
  /** Receives Zig's stdout and stderr (the CLI passes its stderr, keeping stdout for results). */
  readonly output: { write(chunk: string | Uint8Array): unknown };
  readonly env?: NodeJS.ProcessEnv;
  readonly timeoutMs?: number;
}

export const ZIG_BUILD_TIMEOUT_MS = 15 * 60_000;

/** Runs `zig <args>` (e.g. `["build", "test"]`) and throws a `ToolchainError` if it fails. */
export async function runZig(zig: string, args: readonly string[], options: RunZigOptions) {
  const timeoutMs = options.timeoutMs ?? ZIG_BUILD_TIMEOUT_MS;
  const child = execa(zig, args, {
    cwd: options.cwd,
    env: options.env ?? {},
    extendEnv: true,
    timeout: timeoutMs,
    reject: false,
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    buffer: false,
  });
  child.stdout?.on("data", (chunk: Uint8Array) => options.output.write(chunk));
  child.stderr?.on("data", (chunk: Uint8Array) => options.output.write(chunk));
  const result = await child;
  const command = `zig ${args.join(" ")}`;
  if (result.timedOut) {
    throw new ToolchainError(
      `${command} in ${options.displayDir} timed out after ${Math.round(timeoutMs / 1000)} s`,
    );
  }
  if (result.failed) {
    const how =
      result.exitCode !== undefined
        ? `exit code ${result.exitCode}`
        : (result.signal ?? (result.shortMessage ?? "").split("\n")[0]);
    throw new ToolchainError(`${command} failed in ${options.displayDir} (${how})`);
  }
}
