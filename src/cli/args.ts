/**
 * Command-line parsing: raw argv → one `Command`. Parses only; it neither prints nor exits
 * (help and version text come back as an `output` command for the runner to print).
 */
import yargs from "yargs";
import { UsageError } from "../errors.js";

export interface GenerateCommand {
  readonly kind: "generate";
  readonly spec: string;
  readonly out: string | undefined;
  readonly dryRun: boolean;
  readonly check: boolean;
  readonly force: boolean;
  readonly build: boolean;
  readonly test: boolean;
  readonly zig: string | undefined;
  readonly json: boolean;
}

export type Command =
  | GenerateCommand
  | { readonly kind: "init"; readonly file: string }
  | { readonly kind: "schema" }
  | { readonly kind: "output"; readonly text: string };

export const DEFAULT_INIT_FILE = "gen-reuseport.json";

const EPILOGUE = `The output directory defaults to ./<name> (the spec's "name").
Zig is looked up in this order: --zig, $ZIG, the newest Zig provisioned by
"npm run zig:install" in gen-reuseport's .toolchain/, then zig on PATH.

Exit codes:
  0   success (with --check: the output directory is up to date)
  1   --check: the output directory differs from what the spec renders
  2   invalid spec, or invalid usage
  3   toolchain: Zig missing or unsupported, or zig build / zig build test failed
  4   refused to overwrite hand-edited files (nothing was written; see --force)
  70  internal error: a bug in gen-reuseport
  74  the output directory cannot be read or written`;

const GENERATE_OPTIONS = {
  out: { type: "string", describe: "output directory (default: ./<name>)" },
  "dry-run": { type: "boolean", default: false, describe: "print the plan, write nothing" },
  check: {
    type: "boolean",
    default: false,
    describe: "write nothing; exit 1 if the output directory is not up to date",
  },
  force: {
    type: "boolean",
    default: false,
    describe: "overwrite or remove hand-edited generated files",
  },
  build: { type: "boolean", default: false, describe: "run zig build after writing" },
  test: { type: "boolean", default: false, describe: "run zig build test after writing" },
  zig: { type: "string", describe: "path of the zig executable to use" },
  json: {
    type: "boolean",
    default: false,
    describe: "print the plan or result as one JSON document on stdout",
  },
} as const;

function parser(rawArgs: readonly string[], version: string) {
  return yargs([...rawArgs])
    .scriptName("gen-reuseport")
    .usage("Usage: $0 <spec.json> [--out DIR] [options]\n\nGenerate a Zig SO_REUSEPORT server.")
    .command("$0 <spec>", "generate the Zig project described by a spec", (y) =>
      y
        .positional("spec", { type: "string", describe: "the service spec (JSON)" })
        .options(GENERATE_OPTIONS),
    )
    .command("init [file]", "write an example spec (never overwrites)", (y) =>
      y.positional("file", {
        type: "string",
        default: DEFAULT_INIT_FILE,
        describe: "spec to create",
      }),
    )
    .command("schema", "print the JSON Schema of the spec")
    .epilogue(EPILOGUE)
    .strict()
    .strictOptions()
    .exitProcess(false)
    .help()
    .alias("help", "h")
    .version(version)
    .wrap(100);
}

export async function parseArgs(rawArgs: readonly string[], version: string): Promise<Command> {
  rejectUnknownFlags(rawArgs);
  const y = parser(rawArgs, version);
  const { argv, output } = await new Promise<{ argv: Record<string, unknown>; output: string }>(
    (resolve, reject) => {
      const fail = (message: string | undefined) => new UsageError(usageMessage(message, rawArgs));
      y.fail((message, error) => reject(fail(message ?? error?.message)));
      y.parse([...rawArgs], {}, (error, argv, output) => {
        if (error !== null && error !== undefined) {
          reject(error instanceof UsageError ? error : fail(error.message));
        } else resolve({ argv: argv as Record<string, unknown>, output });
      });
    },
  );
  if (argv.help === true || argv.version === true) return { kind: "output", text: output };
  const sub = (argv._ as unknown[])[0];
  if (sub === "init") return { kind: "init", file: String(argv.file) };
  if (sub === "schema") return { kind: "schema" };
  return toGenerate(argv);
}

const KNOWN_FLAGS = new Set([...Object.keys(GENERATE_OPTIONS), "help", "h", "version"]);

/**
 * yargs reports a missing spec before an unknown flag (`--frob` alone reads as "missing spec");
 * the flag is the real mistake, so it is reported first.
 */
function rejectUnknownFlags(rawArgs: readonly string[]): void {
  for (const arg of rawArgs) {
    if (arg === "--") return;
    const match = /^--?(?:no-)?([^=]+)/.exec(arg);
    if (match === null || arg === "-") continue;
    const name = match[1] ?? "";
    const names = arg.startsWith("--") ? [name] : [...name];
    for (const n of names) {
      if (!KNOWN_FLAGS.has(n)) throw new UsageError(`unknown option ${arg.split("=")[0]}`);
    }
  }
}

function toGenerate(argv: Record<string, unknown>): GenerateCommand {
  const command: GenerateCommand = {
    kind: "generate",
    spec: String(argv.spec),
    out: optionalString(argv.out, "--out"),
    dryRun: argv["dry-run"] === true,
    check: argv.check === true,
    force: argv.force === true,
    build: argv.build === true,
    test: argv.test === true,
    zig: optionalString(argv.zig, "--zig"),
    json: argv.json === true,
  };
  rejectMeaninglessCombinations(command);
  return command;
}

function optionalString(value: unknown, flag: string): string | undefined {
  if (value === undefined) return undefined;
  if (Array.isArray(value)) throw new UsageError(`${flag} given more than once`);
  if (typeof value !== "string" || value === "") throw new UsageError(`${flag} needs a value`);
  return value;
}

function rejectMeaninglessCombinations(c: GenerateCommand): void {
  if (c.check && c.dryRun) throw new UsageError("--check and --dry-run cannot be combined");
  if (c.check && c.force) {
    throw new UsageError("--check writes nothing, so --force has no meaning with it");
  }
  const mode = c.check ? "--check" : c.dryRun ? "--dry-run" : undefined;
  if (mode !== undefined && (c.build || c.test)) {
    throw new UsageError(
      `${mode} writes nothing, so --build and --test cannot be combined with it`,
    );
  }
  if (c.zig !== undefined && !c.build && !c.test) {
    throw new UsageError("--zig is only used with --build or --test");
  }
}

/** yargs' wording, made into one line in the CLI's voice. */
function usageMessage(message: string | undefined, rawArgs: readonly string[]): string {
  if (message === undefined) return "invalid arguments";
  if (/^Not enough non-option arguments/.test(message)) return "missing the spec file argument";
  const unknown = /^Unknown arguments?: (.*)$/.exec(message);
  if (unknown !== null) {
    const names = (unknown[1] ?? "").split(", ");
    const extra = names.filter((n) => rawArgs.includes(n));
    if (extra.length > 0) return `unexpected argument ${extra.map((n) => `"${n}"`).join(", ")}`;
    const flags = names.map((n) => (n.length > 1 ? `--${n}` : `-${n}`));
    return `unknown option ${flags.join(", ")}`;
  }
  return message.charAt(0).toLowerCase() + message.slice(1).split("\n")[0];
}
