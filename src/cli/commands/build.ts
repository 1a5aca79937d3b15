/**
 * --build / --test: find a Zig the spec accepts (before anything is written), then run the
 * steps with `buildProject`, showing progress: a line before each step, Zig's own live progress
 * on a terminal (its stderr is ours) or its output line by line otherwise, and the time each
 * step took.
 */
import { ToolchainError } from "../../errors.js";
import type { PreparedGeneration } from "../../generate.js";
import { buildProject, ZIG_STEPS, type StepResult } from "../../toolchain/build.js";
import { findZig, type FoundZig } from "../../toolchain/find.js";
import { compareZigVersions, parseZigVersion } from "../../zig-facts.js";
import type { CliContext, GenerateCommand } from "../types.js";
import { seconds, styleFor } from "../style.js";

/** Finds a supported Zig, new enough for the spec's minimum. */
export async function requireZig(
  command: GenerateCommand,
  prepared: PreparedGeneration,
  ctx: CliContext,
): Promise<FoundZig> {
  const zig = await findZig({
    zigPath: command.zig,
    env: ctx.env,
    cwd: ctx.cwd,
    ...(ctx.toolchainDirs === undefined ? {} : { toolchainDirs: ctx.toolchainDirs }),
  });
  const found = parseZigVersion(zig.version);
  const minimum = prepared.model.minimumZigVersion;
  const parsedMinimum = parseZigVersion(minimum);
  if (found !== undefined && parsedMinimum !== undefined) {
    if (compareZigVersions(found, parsedMinimum) < 0) {
      const { path, version } = zig;
      throw new ToolchainError({ kind: "zig-too-old", path, version, minimum });
    }
  }
  return zig;
}

/** How Zig's output reaches the user: see `BuildProjectOptions.output`. */
export function zigOutputMode(ctx: CliContext, json: boolean): "inherit" | "lines" {
  return ctx.stderr.isTTY === true && !json ? "inherit" : "lines";
}

/** The steps as `--json` reports them. */
export interface StepReport {
  readonly command: string;
  readonly ok: boolean;
  readonly ms: number;
}

/** Runs the steps; the first failure is a `ToolchainError` carrying what Zig reported. */
export async function runBuild(
  zig: FoundZig,
  command: GenerateCommand,
  prepared: PreparedGeneration,
  ctx: CliContext,
): Promise<StepReport[]> {
  const style = styleFor(ctx.stderr, ctx.env);
  const dir = prepared.displayDir.endsWith("/") ? prepared.displayDir : `${prepared.displayDir}/`;
  const mode = zigOutputMode(ctx, command.json);
  const result = await buildProject({
    zig: zig.path,
    dir: prepared.outDir,
    steps: [...(command.build ? [ZIG_STEPS.build] : []), ...(command.test ? [ZIG_STEPS.test] : [])],
    // Piped, Zig prints no colours anyway; NO_COLOR also covers CLICOLOR_FORCE in the user's env.
    env: mode === "lines" ? { NO_COLOR: "1" } : {},
    output: mode === "inherit" ? "inherit" : (line) => ctx.stderr.write(`${line}\n`),
    onStepStart: (args) => {
      const verb = args.includes("test") ? "testing" : "building";
      ctx.stderr.write(`${style.bold(`${verb} with zig ${zig.version} in ${dir} …`)}\n`);
    },
    onStepEnd: (step) => {
      if (!step.ok) return;
      const line = `${step.command}: ok in ${seconds(step.ms)} (zig ${zig.version})`;
      if (!command.json) ctx.stdout.write(`${line}\n`);
    },
  });
  const failed = result.steps.find((s) => !s.ok && !s.skipped);
  if (failed !== undefined) throw stepFailure(failed, dir);
  return result.steps.map((s) => ({ command: s.command, ok: s.ok, ms: s.ms }));
}

function stepFailure(step: StepResult, dir: string): ToolchainError {
  return new ToolchainError({
    kind: "step-failed",
    step: {
      command: step.command,
      dir,
      ...(step.exitCode === undefined ? {} : { exitCode: step.exitCode }),
      ...(step.signal === undefined ? {} : { signal: step.signal }),
      timedOut: step.timedOut,
      ms: step.ms,
      diagnostics: step.diagnostics,
    },
  });
}
