/**
 * `gen-reuseport init [file]`: an example spec, and its JSON Schema next to it
 * (`gen-reuseport.schema.json`, referenced as `"$schema": "./gen-reuseport.schema.json"`), so
 * that editors complete and check the spec for anyone who checks it out, offline, with no path
 * into this machine's install. Never overwrites: an existing schema file is left as it is.
 */
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { EXIT, ExitError } from "../errors.js";
import { initSpecText } from "../spec/init.js";
import { specJsonSchemaText } from "../spec/json-schema.js";
import { printJson } from "./report.js";
import type { CliContext } from "./run.js";

/** The schema file `init` writes next to the spec. */
export const INIT_SCHEMA_FILE = "gen-reuseport.schema.json";

type FileAction = "create" | "unchanged" | "kept";

export async function runInit(
  command: { readonly file: string; readonly json: boolean },
  ctx: CliContext,
): Promise<number> {
  const target = path.resolve(ctx.cwd, command.file);
  const schemaShown = path.join(path.dirname(command.file), INIT_SCHEMA_FILE);
  await createFile(target, command.file, initSpecText(`./${INIT_SCHEMA_FILE}`));
  const schemaAction = await writeSchema(path.join(path.dirname(target), INIT_SCHEMA_FILE));
  if (command.json) {
    printJson(ctx, {
      ok: true,
      exitCode: EXIT.ok,
      command: "init",
      files: [
        { path: command.file, action: "create" },
        { path: schemaShown, action: schemaAction },
      ],
    });
    return EXIT.ok;
  }
  ctx.stdout.write(`wrote ${command.file}; edit it, then run: gen-reuseport ${command.file}\n`);
  if (schemaAction === "create") ctx.stdout.write(`wrote ${schemaShown} (its JSON Schema)\n`);
  if (schemaAction === "kept") {
    ctx.stdout.write(
      `kept ${schemaShown}, which differs from this version's schema; refresh it with ` +
        `gen-reuseport schema > ${schemaShown}\n`,
    );
  }
  return EXIT.ok;
}

async function createFile(target: string, shown: string, text: string): Promise<void> {
  try {
    await writeFile(target, text, { flag: "wx" });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EEXIST") {
      throw new ExitError(
        "exists",
        EXIT.usage,
        `${shown} already exists; init never overwrites a file`,
      );
    }
    const why = (error as Error).message;
    throw new ExitError("output", EXIT.output, `cannot write ${shown}: ${why}`);
  }
}

async function writeSchema(file: string): Promise<FileAction> {
  const text = specJsonSchemaText();
  const existing = await readFile(file, "utf8").catch(() => undefined);
  if (existing !== undefined) return existing === text ? "unchanged" : "kept";
  await createFile(file, path.basename(file), text);
  return "create";
}
