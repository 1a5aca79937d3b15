/**
 * The CLI runner: argv in, exit code out. Streams, working directory and environment are
 * injected (`CliContext`, types.ts) so tests drive it without touching `process`. Only
 * `main.ts` exits the process. The commands live in `commands/`; none of them imports this
 * dispatcher (the import test, test/unit/layers.test.ts, keeps it so).
 *
 * Each command's modules are imported when that command runs: `--dry-run` never loads the
 * toolchain, `init` never loads the renderer, and a plain generate command line never loads
 * yargs (plain-args.ts); see `npm run bench:cli`.
 */
import { asExitError, EXIT, type ExitError, InternalError } from "../errors.js";
import { GENERATOR_VERSION } from "../package.js";
import { parsePlainGenerate } from "./plain-args.js";
import { errorJson, errorLines, printJson } from "./report.js";
import type { CliContext } from "./types.js";


/** Runs one command line; never throws, returns the exit code. */
export async function runCli(rawArgs: readonly string[], ctx: CliContext): Promise<number> {
  const json = wantsJson(rawArgs);
  let name: string | undefined;
  try {
    const command =
      parsePlainGenerate(rawArgs) ??
      (await (await import("./args.js")).parseArgs(rawArgs, GENERATOR_VERSION));
    switch (command.kind) {
      case "output":
        ctx.stdout.write(command.text.endsWith("\n") ? command.text : `${command.text}\n`);
        return EXIT.ok;
      case "schema":
        return (await import("./commands/schema.js")).runSchema(ctx);
      case "completion":
        return (await import("./commands/completion.js")).runCompletion(ctx);
      case "init":
        name = "init";
        return await (await import("./commands/init.js")).runInit(command, ctx);
      case "zig-install":
        name = "zig install";
        return await (await import("./commands/zig.js")).runZigInstall(command, ctx);
      case "zig-list":
        name = "zig list";
        return await (await import("./commands/zig.js")).runZigList(command, ctx);
      case "zig-path":
        name = "zig path";
        return await (await import("./commands/zig.js")).runZigPath(command, ctx);
      case "zig-exec":
        name = "zig exec";
        return await (await import("./commands/zig-exec.js")).runZigExec(command, ctx);
      case "generate":
        name = "generate";
        return await (await import("./commands/generate.js")).runGenerate(command, ctx);
    }
  } catch (error) {
    return reportError(asExitError(error), ctx, json, name);
  }
}

/** Whether the command line asks for JSON output: known even when it does not parse. */
export function wantsJson(rawArgs: readonly string[]): boolean {
  const end = rawArgs.indexOf("--");
  return (end === -1 ? rawArgs : rawArgs.slice(0, end)).includes("--json");
}

function reportError(
  error: ExitError,
  ctx: CliContext,
  json: boolean,
  command: string | undefined,
): number {
  for (const line of errorLines(error, ctx)) ctx.stderr.write(`${line}\n`);
  if (error instanceof InternalError && ctx.env.GEN_REUSEPORT_DEBUG === "1") {
    const detail = error.detail instanceof Error ? error.detail : error;
    ctx.stderr.write(`${detail.stack ?? String(detail)}\n`);
  }
  if (json) {
    printJson(ctx, {
      ok: false,
      exitCode: error.exitCode,
      ...(command === undefined ? {} : { command }),
      error: errorJson(error, ctx),
    });
  }
  return error.exitCode;
}
