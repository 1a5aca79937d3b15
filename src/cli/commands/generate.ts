/**
 * `gen-reuseport <spec>`: plan, then write, dry-run or check; with --build / --test, find Zig
 * before writing and build after (./build.ts, loaded only then).
 */
import { existsSync } from "node:fs";
import path from "node:path";
import { closest } from "../../did-you-mean.js";
import { EXIT, UsageError } from "../../errors.js";
import {
  applyGeneration,
  conflictLines,
  hasDrift,
  prepareGeneration,
  type PreparedGeneration,
} from "../../generate.js";
import {
  checkSummary,
  dryRunSummary,
  missingRouteLines,
  deployNoteLines,
  planJson,
  planLines,
  printJson,
  writeSummary,
} from "../report.js";
import { COMMAND_NAMES, type CliContext, type GenerateCommand } from "../types.js";

export async function runGenerate(command: GenerateCommand, ctx: CliContext): Promise<number> {
  refuseMistypedCommand(command.spec, ctx);
  const prepared = await prepareGeneration({
    specFile: command.spec,
    outDir: command.out,
    cwd: ctx.cwd,
    force: command.force,
    ...(ctx.templatesDir === undefined ? {} : { templatesDir: ctx.templatesDir }),
  });
  if (command.check) return reportCheck(prepared, command, ctx);
  if (command.dryRun) return reportDryRun(prepared, command, ctx);
  const build = command.build || command.test ? await import("./build.js") : undefined;
  const zig = build === undefined ? undefined : await build.requireZig(command, prepared, ctx);
  await applyGeneration(prepared);
  if (!command.json) {
    ctx.stdout.write(`${writeSummary(prepared)}\n`);
    for (const line of missingRouteLines(prepared)) ctx.stderr.write(`${line}\n`);
    for (const line of deployNoteLines(prepared)) ctx.stderr.write(`${line}\n`);
  }
  const steps =
    build === undefined || zig === undefined
      ? undefined
      : await build.runBuild(zig, command, prepared, ctx);
  if (command.json) {
    printJson(ctx, {
      ok: true,
      exitCode: EXIT.ok,
      command: "generate",
      mode: "write",
      ...planJson(prepared),
      ...(zig === undefined ? {} : { zig: { path: zig.path, version: zig.version, steps } }),
    });
  }
  return EXIT.ok;
}

function reportCheck(
  prepared: PreparedGeneration,
  command: GenerateCommand,
  ctx: CliContext,
): number {
  const drift = hasDrift(prepared);
  const exitCode = drift ? EXIT.drift : EXIT.ok;
  if (command.json) {
    printJson(ctx, {
      ok: !drift,
      exitCode,
      command: "generate",
      mode: "check",
      drift,
      ...planJson(prepared),
    });
    return exitCode;
  }
  for (const line of planLines(prepared, true)) ctx.stdout.write(`${line}\n`);
  ctx.stdout.write(`${checkSummary(prepared, drift)}\n`);
  return exitCode;
}

function reportDryRun(
  prepared: PreparedGeneration,
  command: GenerateCommand,
  ctx: CliContext,
): number {
  const refused = conflictLines(prepared);
  const exitCode = refused.length > 0 ? EXIT.conflict : EXIT.ok;
  if (command.json) {
    printJson(ctx, {
      ok: exitCode === EXIT.ok,
      exitCode,
      command: "generate",
      mode: "dry-run",
      ...planJson(prepared),
    });
  } else {
    for (const line of planLines(prepared, false)) ctx.stdout.write(`${line}\n`);
    ctx.stdout.write(`${dryRunSummary(prepared)}\n`);
    for (const line of missingRouteLines(prepared)) ctx.stderr.write(`${line}\n`);
  }
  for (const c of refused) ctx.stderr.write(`${c.path}: ${c.reason}\n`);
  return exitCode;
}

/**
 * `gen-reuseport initt` names a spec file to yargs; when no such file exists and the word is a
 * near miss of a command (and no path: no `.` or `/`), it was a command: say which.
 */
function refuseMistypedCommand(spec: string, ctx: CliContext): void {
  if (spec.includes(".") || spec.includes("/")) return;
  const meant = closest(spec, [...COMMAND_NAMES]);
  if (meant === undefined || existsSync(path.resolve(ctx.cwd, spec))) return;
  throw new UsageError(
    `unknown command ${JSON.stringify(spec)}; did you mean "${meant}"? (no spec file by that name)`,
  );
}
