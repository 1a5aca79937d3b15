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
import { parseArgs, type GenerateCommand } from "./args.js";
import {
  checkSummary,
  dryRunSummary,
  errorJson,
  planJson,
  planLines,
  writeSummary,
  type JsonReport,
} from "./report.js";

export interface CliIo {
  readonly stdout: { write(chunk: string): unknown };
  readonly stderr: { write(chunk: string | Uint8Array): unknown };
  readonly cwd: string;
  readonly env: NodeJS.ProcessEnv;
}

/** Runs one command line; never throws, returns the exit code. */
export async function runCli(rawArgs: readonly string[], io: CliIo): Promise<number> {
  let json = false;
  try {
    const command = await parseArgs(rawArgs, GENERATOR_VERSION);
    switch (command.kind) {
      case "output":
        io.stdout.write(`${command.text}\n`);
        return EXIT.ok;
      case "schema":
        io.stdout.write(specJsonSchemaText());
        return EXIT.ok;
      case "init":
        return await runInit(command.file, io);
      case "generate":
        json = command.json;
        return await runGenerate(command, io);
    }
  } catch (error) {
    return reportError(asExitError(error), io, json);
  }
}

async function runInit(file: string, io: CliIo): Promise<number> {
  const target = path.resolve(io.cwd, file);
  const schemaRef = path
    .relative(path.dirname(target), path.join(PACKAGE_ROOT, JSON_SCHEMA_PATH))
    .split(path.sep)
    .join("/");
  try {
    await writeFile(target, initSpecText(schemaRef), { flag: "wx" });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EEXIST") {
      throw new ExitError("exists", EXIT.usage, `${file} already exists; init never overwrites a file`);
    }
    throw new ExitError("output", EXIT.output, `cannot write ${file}: ${(error as Error).message}`);
  }
  io.stdout.write(`wrote ${file}; edit it, then run: gen-reuseport ${file}\n`);
  return EXIT.ok;
}

async function runGenerate(command: GenerateCommand, io: CliIo): Promise<number> {
  const prepared = await prepareGeneration({
    specFile: command.spec,
    outDir: command.out,
    cwd: io.cwd,
    force: command.force,
  });
  if (command.check) return reportCheck(prepared, command, io);
  if (command.dryRun) return reportDryRun(prepared, command, io);
  const zig = command.build || command.test ? await requireZig(command, prepared, io) : undefined;
  await applyGeneration(prepared);
  if (!command.json) io.stdout.write(`${writeSummary(prepared)}\n`);
  const ran = zig === undefined ? [] : await runToolchain(zig, command, prepared, io);
  if (command.json) {
    const zigReport = zig === undefined ? {} : { zig: { path: zig.path, version: zig.version, ran } };
    printJson(io, { ok: true, exitCode: EXIT.ok, mode: "write", ...planJson(prepared), ...zigReport });
  }
  return EXIT.ok;
}

function reportCheck(prepared: PreparedGeneration, command: GenerateCommand, io: CliIo): number {
  const drift = hasDrift(prepared);
  const exitCode = drift ? EXIT.drift : EXIT.ok;
  if (command.json) {
    printJson(io, { ok: !drift, exitCode, mode: "check", drift, ...planJson(prepared) });
    return exitCode;
  }
  for (const line of planLines(prepared, true)) io.stdout.write(`${line}\n`);
  io.stdout.write(`${checkSummary(prepared, drift)}\n`);
  return exitCode;
}

function reportDryRun(prepared: PreparedGeneration, command: GenerateCommand, io: CliIo): number {
  const refused = conflictLines(prepared);
  const exitCode = refused.length > 0 ? EXIT.conflict : EXIT.ok;
  if (command.json) {
    printJson(io, { ok: exitCode === EXIT.ok, exitCode, mode: "dry-run", ...planJson(prepared) });
  } else {
    for (const line of planLines(prepared, false)) io.stdout.write(`${line}\n`);
    io.stdout.write(`${dryRunSummary(prepared)}\n`);
  }
  for (const c of refused) io.stderr.write(`${c.path}: ${c.reason}\n`);
  return exitCode;
}

/** Finds a supported Zig, new enough for the spec's minimum, before anything is written. */
async function requireZig(
  command: GenerateCommand,
  prepared: PreparedGeneration,
  io: CliIo,
): Promise<FoundZig> {
  const zig = await findZig({ zigPath: command.zig, env: io.env, root: PACKAGE_ROOT, cwd: io.cwd });
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
  io: CliIo,
): Promise<string[]> {
  const steps = [...(command.build ? [["build"]] : []), ...(command.test ? [["build", "test"]] : [])];
  const ran: string[] = [];
  for (const args of steps) {
    await runZig(zig.path, args, {
      cwd: prepared.outDir,
      displayDir: prepared.displayDir,
      output: io.stderr,
      env: io.env,
    });
    ran.push(args.join(" "));
    if (!command.json) io.stdout.write(`zig ${args.join(" ")}: ok (zig ${zig.version})\n`);
  }
  return ran;
}

function reportError(error: ExitError, io: CliIo, json: boolean): number {
  for (const line of error.lines()) io.stderr.write(`${line}\n`);
  if (error instanceof InternalError && io.env.GEN_REUSEPORT_DEBUG === "1") {
    const detail = error.detail instanceof Error ? error.detail : error;
    io.stderr.write(`${detail.stack ?? String(detail)}\n`);
  }
  if (json) printJson(io, { ok: false, exitCode: error.exitCode, error: errorJson(error) });
  return error.exitCode;
}

function printJson(io: CliIo, report: JsonReport): void {
  io.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
}
