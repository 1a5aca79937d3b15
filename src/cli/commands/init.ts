/**
 * `gen-reuseport init [file] [--example NAME]`: a spec to start from, and its JSON Schema next
 * to it (`gen-reuseport.schema.json`, referenced as `"$schema": "./gen-reuseport.schema.json"`),
 * so that editors complete and check the spec for anyone who checks it out, offline, with no
 * path into this machine's install. Never overwrites: an existing schema or module file is left
 * as it is, an existing spec is an error.
 *
 * With `--example NAME`, the spec is one of the package's examples (`examples/NAME.json`), and
 * the application modules it names are written where the generated project keeps them,
 * `<name>/src/app/<module>.zig` under the directory `init` runs in: `gen-reuseport FILE`, run
 * there, generates the rest of `<name>/` around them and keeps them (they are the user's).
 */
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { closest } from "../../did-you-mean.js";
import { EXIT, ExitError, UsageError } from "../../errors.js";
import { EXAMPLES_DIR } from "../../package.js";
import { initSpecText } from "../../spec/init.js";
import { specJsonSchemaText } from "../../spec/json-schema.js";
import { printJson } from "../report.js";
import { DEFAULT_INIT_FILE, type CliContext, type InitCommand } from "../types.js";

/** The schema file `init` writes next to the spec. */
export const INIT_SCHEMA_FILE = "gen-reuseport.schema.json";

type FileAction = "create" | "unchanged" | "kept";

interface WrittenFile {
  /** As the user names it: relative to the directory `init` ran in, or as given. */
  readonly path: string;
  readonly action: FileAction;
}

/** A spec to write, and the module files that go with it. */
interface Starter {
  readonly specText: string;
  readonly modules: readonly { readonly path: string; readonly text: string }[];
}

export async function runInit(command: InitCommand, ctx: CliContext): Promise<number> {
  const starter =
    command.example === undefined
      ? { specText: initSpecText(`./${INIT_SCHEMA_FILE}`), modules: [] }
      : await exampleStarter(command.example);
  const file =
    command.file ?? (command.example === undefined ? DEFAULT_INIT_FILE : `${command.example}.json`);
  const target = path.resolve(ctx.cwd, file);
  const schemaShown = path.join(path.dirname(file), INIT_SCHEMA_FILE);
  await createFile(target, file, starter.specText);
  const schemaAction = await writeIfAbsent(
    path.join(path.dirname(target), INIT_SCHEMA_FILE),
    schemaShown,
    specJsonSchemaText(),
  );
  const modules: WrittenFile[] = [];
  for (const module of starter.modules) {
    const moduleTarget = path.resolve(ctx.cwd, module.path);
    const action = await writeIfAbsent(moduleTarget, module.path, module.text);
    modules.push({ path: module.path, action });
  }
  if (command.json) {
    printJson(ctx, {
      ok: true,
      exitCode: EXIT.ok,
      command: "init",
      files: [
        { path: file, action: "create" },
        { path: schemaShown, action: schemaAction },
        ...modules,
      ],
    });
    return EXIT.ok;
  }
  ctx.stdout.write(`wrote ${file}; edit it, then run: gen-reuseport ${file}\n`);
  if (schemaAction === "create") ctx.stdout.write(`wrote ${schemaShown} (its JSON Schema)\n`);
  if (schemaAction === "kept") {
    ctx.stdout.write(
      `kept ${schemaShown}, which differs from this version's schema; refresh it with ` +
        `gen-reuseport schema > ${schemaShown}\n`,
    );
  }
  for (const m of modules) ctx.stdout.write(`${moduleLine(m, file)}\n`);
  return EXIT.ok;
}

function moduleLine(module: WrittenFile, specFile: string): string {
  const generate = `gen-reuseport ${specFile}`;
  if (module.action === "create") {
    return (
      `wrote ${module.path} (the example's module, yours to edit; ${generate} generates ` +
      "the project around it)"
    );
  }
  if (module.action === "unchanged") return `${module.path} is already there, unchanged`;
  return `kept ${module.path}, which differs from the example's; init never overwrites a file`;
}

/** The package's example NAME: its spec (with `$schema` pointing next to it) and modules. */
async function exampleStarter(name: string): Promise<Starter> {
  const names = await exampleNames();
  if (!names.includes(name)) {
    const meant = closest(name, names);
    throw new UsageError(
      `unknown example ${JSON.stringify(name)}` +
        `${meant === undefined ? "" : `; did you mean ${JSON.stringify(meant)}?`} ` +
        `(examples: ${names.join(", ")})`,
    );
  }
  const text = await readFile(path.join(EXAMPLES_DIR, `${name}.json`), "utf8");
  const specText = text.replace(/"\$schema":\s*"[^"]*"/, `"$schema": "./${INIT_SCHEMA_FILE}"`);
  const spec = JSON.parse(text) as { name: string; listeners: { app?: { module?: string } }[] };
  const modules = [...new Set(spec.listeners.flatMap((l) => l.app?.module ?? []))].sort();
  const files: { path: string; text: string }[] = [];
  for (const module of modules) {
    const source = await readFile(path.join(EXAMPLES_DIR, "app", `${module}.zig`), "utf8").catch(
      () => undefined,
    );
    // A module the examples do not implement is left to the generator's stub.
    if (source === undefined) continue;
    files.push({ path: path.posix.join(spec.name, "src", "app", `${module}.zig`), text: source });
  }
  return { specText, modules: files };
}

/** The examples the package ships, sorted: `examples/<name>.json`. */
export async function exampleNames(): Promise<string[]> {
  const entries = await readdir(EXAMPLES_DIR);
  return entries
    .filter((e) => e.endsWith(".json"))
    .map((e) => e.slice(0, -".json".length))
    .sort();
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

/** Writes `text` unless the file exists: then says whether it holds the same text. */
async function writeIfAbsent(file: string, shown: string, text: string): Promise<FileAction> {
  const existing = await readFile(file, "utf8").catch(() => undefined);
  if (existing !== undefined) return existing === text ? "unchanged" : "kept";
  await mkdir(path.dirname(file), { recursive: true });
  await createFile(file, shown, text);
  return "create";
}
