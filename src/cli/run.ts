/**
 * The CLI runner: argv in, exit code out. Streams, working directory and environment are
 * injected so tests drive it without touching `process`. Only `main.ts` exits the process.
 */
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { asExitError, EXIT, ExitError, InternalError, ToolchainError } from "../errors.js";
import {
  applyGeneration,
  conflictLines,
  hasDrift,
  prepareGeneration,
  type PreparedGeneration,
} from "../generate.js";
import { GENERATOR_VERSION, PACKAGE_ROOT } from "../package.js";
import { initSpecText } from "../spec/init.js";
import { JSON_SCHEMA_PATH, specJsonSchemaText } from "../spec/json-schema.js";
import { findZig, type FoundZig } from "../toolchain/find.js";
import { runZig } from "../toolchain/run.js";
import { compareZigVersions, parseZigVersion } from "../toolchain/versions.js";
import { parseArgs, wantsJson, type GenerateCommand } from "./args.js";
import {
  checkSummary,
  dryRunSummary,
  errorJson,
  planJson,
  planLines,
  writeSummary,
  type JsonReport,
} from "./report.js";

/** Everything the CLI touches outside its arguments, injected so tests need no `process`. */
export interface CliContext {
  readonly stdout: { write(chunk: string): unknown };
  readonly stderr: { write(chunk: string | Uint8Array): unknown };
  readonly cwd: string;
  readonly env: NodeJS.ProcessEnv;
  /** Templates to render (default: the package's `templates/`). */
  readonly templatesDir?: string;
  /** Where `.toolchain/` is looked for (default: the package root). */
  readonly toolchainRoot?: string;
}

/** Runs one command line; never throws, returns the exit code. */
export async function runCli(rawArgs: readonly string[], ctx: CliContext): Promise<number> {
  let json = wantsJson(rawArgs);
  try {
    const command = await parseArgs(rawArgs, GENERATOR_VERSION);
    switch (command.kind) {
      case "output":
        ctx.stdout.write(`${command.text}\n`);
        return EXIT.ok;
      case "schema":
        ctx.stdout.write(specJsonSchemaText());
        return EXIT.ok;
      case "init":
        return await runInit(command.file, ctx);
      case "zig-install":
      case "zig-list":
        throw new InternalError("not yet");
      case "generate":
        json = command.json;
        return await runGenerate(command, ctx);
    }
  } catch (error) {
    return reportError(asExitError(error), ctx, json);
  }
}

async function runInit(file: string, ctx: CliContext): Promise<number> {
  const target = path.resolve(ctx.cwd, file);
  const schemaRef = path
    .relative(path.dirname(target), path.join(PACKAGE_ROOT, JSON_SCHEMA_PATH))
    .split(path.sep)
    .join("/");
  try {
    await writeFile(target, initSpecText(schemaRef), { flag: "wx" });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EEXIST") {
      throw new ExitError(
        "exists",
        EXIT.usage,
        `${file} already exists; init never overwrites a file`,
      );
    }
    throw new ExitError("output", EXIT.output, `cannot write ${file}: ${(error as Error).message}`);
  }
  ctx.stdout.write(`wrote ${file}; edit it, then run: gen-reuseport ${file}\n`);
  return EXIT.ok;
}

async function runGenerate(command: GenerateCommand, ctx: CliContext): Promise<number> {
  const prepared = await prepareGeneration({
    specFile: command.spec,
    outDir: command.out,
    cwd: ctx.cwd,
    force: command.force,
    ...(ctx.templatesDir === undefined ? {} : { templatesDir: ctx.templatesDir }),
  });
  if (command.check) return reportCheck(prepared, command, ctx);
  if (command.dryRun) return reportDryRun(prepared, command, ctx);
  const zig = command.build || command.test ? await requireZig(command, prepared, ctx) : undefined;
  await applyGeneration(prepared);
  if (!command.json) ctx.stdout.write(`${writeSummary(prepared)}\n`);
  const ran = zig === undefined ? [] : await runToolchain(zig, command, prepared, ctx);
  if (command.json) {
    const zigReport =
      zig === undefined ? {} : { zig: { path: zig.path, version: zig.version, ran } };
    printJson(ctx, {
      ok: true,
      exitCode: EXIT.ok,
      mode: "write",
      ...planJson(prepared),
      ...zigReport,
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
    printJson(ctx, { ok: !drift, exitCode, mode: "check", drift, ...planJson(prepared) });
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
    printJson(ctx, { ok: exitCode === EXIT.ok, exitCode, mode: "dry-run", ...planJson(prepared) });
  } else {
    for (const line of planLines(prepared, false)) ctx.stdout.write(`${line}\n`);
    ctx.stdout.write(`${dryRunSummary(prepared)}\n`);
  }
  for (const c of refused) ctx.stderr.write(`${c.path}: ${c.reason}\n`);
  return exitCode;
}

/** Finds a supported Zig, new enough for the spec's minimum, before anything is written. */
async function requireZig(
  command: GenerateCommand,
  prepared: PreparedGeneration,
  ctx: CliContext,
): Promise<FoundZig> {
  const zig = await findZig({
    zigPath: command.zig,
    env: ctx.env,
    root: ctx.toolchainRoot ?? PACKAGE_ROOT,
    cwd: ctx.cwd,
  });
  const found = parseZigVersion(zig.version);
  const minimum = parseZigVersion(prepared.model.minimumZigVersion);
  if (found !== undefined && minimum !== undefined && compareZigVersions(found, minimum) < 0) {
    throw new ToolchainError(
      `zig ${zig.version} at ${zig.path} is older than the spec's minimum Zig ` +
        `${prepared.model.minimumZigVersion}; run "npm run zig:install" or pass --zig PATH`,
    );
  }
  return zig;
}

async function runToolchain(
  zig: FoundZig,
  command: GenerateCommand,
  prepared: PreparedGeneration,
  ctx: CliContext,
): Promise<string[]> {
  const steps = [
    ...(command.build ? [["build"]] : []),
    ...(command.test ? [["build", "test"]] : []),
  ];
  const ran: string[] = [];
  for (const args of steps) {
    await runZig(zig.path, args, {
      cwd: prepared.outDir,
      displayDir: prepared.displayDir,
      output: ctx.stderr,
      env: ctx.env,
    });
    ran.push(args.join(" "));
    if (!command.json) ctx.stdout.write(`zig ${args.join(" ")}: ok (zig ${zig.version})\n`);
  }
  return ran;
}

function reportError(error: ExitError, ctx: CliContext, json: boolean): number {
  for (const line of error.lines()) ctx.stderr.write(`${line}\n`);
  if (error instanceof InternalError && ctx.env.GEN_REUSEPORT_DEBUG === "1") {
    const detail = error.detail instanceof Error ? error.detail : error;
    ctx.stderr.write(`${detail.stack ?? String(detail)}\n`);
  }
  if (json) printJson(ctx, { ok: false, exitCode: error.exitCode, error: errorJson(error) });
  return error.exitCode;
}

function printJson(ctx: CliContext, report: JsonReport): void {
  ctx.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
}
