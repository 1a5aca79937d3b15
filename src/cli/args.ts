/**
 * Command-line parsing: raw argv → one `Command`. Parses only; it neither prints nor exits
 * (help, version and completion text come back as an `output` command for the runner to print).
 *
 * yargs does the work: strict mode, `.conflicts()`, `requiresArg` and the completion command.
 * Its locale is pinned to English and its messages are replaced by the CLI's own wording
 * (`MESSAGES`), so that output never depends on `LANG` and no message is rewritten afterwards.
 * A mistyped option or command gets a "did you mean" (`--bulid` → `--build`, `zig instal` →
 * `zig install`). `zig exec` is read here, not by yargs: what follows its own option goes to Zig
 * untouched (yargs would take `--help` or `--version` for its own).
 */
import yargs, { type Argv } from "yargs";
import { closest } from "../did-you-mean.js";
import { UsageError } from "../errors.js";
import {
  COMMAND_NAMES,
  DEFAULT_INIT_FILE,
  type Command,
  type GenerateCommand,
  type InitCommand,
  type ZigExecCommand,
} from "./types.js";

const EPILOGUE = `The output directory defaults to ./<name> (the spec's "name").
Zig is looked up in this order: --zig, $ZIG, the newest Zig installed by
"gen-reuseport zig install" (in $GEN_REUSEPORT_CACHE, else $XDG_CACHE_HOME/gen-reuseport,
else ~/.cache/gen-reuseport; then a checkout's .toolchain/), then zig on PATH.
Shell completion: gen-reuseport completion >> ~/.bashrc (or ~/.zshrc).

Exit codes:
  0   success (with --check: the output directory is up to date)
  1   --check: the output directory differs from what the spec renders
  2   invalid spec, or invalid usage
  3   toolchain: Zig missing or unsupported, or zig build / zig build test failed
  4   refused to overwrite hand-edited files (nothing was written; see --force)
  70  internal error: a bug in gen-reuseport
  74  the output directory cannot be read or written`;

/**
 * yargs' English strings in the CLI's voice. With the locale pinned to "en", these are the only
 * strings yargs prints, whatever `LANG` says.
 */
const MESSAGES = {
  "Not enough non-option arguments: got %s, need at least %s": {
    one: "missing an argument (got %s, need at least %s)",
    other: "missing arguments (got %s, need at least %s)",
  },
  "Too many non-option arguments: got %s, maximum of %s": {
    one: "too many arguments (got %s, at most %s)",
    other: "too many arguments (got %s, at most %s)",
  },
  "Unknown argument: %s": { one: unknownMark("%s"), other: unknownMark("%s") },
  "Unknown command: %s": { one: "unknown command %s", other: "unknown commands %s" },
  "Not enough arguments following: %s": "--%s needs a value",
  "Arguments %s and %s are mutually exclusive": "--%s and --%s cannot be combined",
  "Did you mean %s?": suggestMark("%s"),
  "Show help": "show help",
  "Show version number": "show the version",
} as const;

/**
 * yargs names unknown arguments bare (`frob`, `extra.json`); `usageText` finds this mark and shows
 * them as typed. The mark is ours, not yargs' wording, so it holds in every locale.
 */
function unknownMark(names: string): string {
  return `\u0000unknown\u0000${names}`;
}

/** yargs' command suggestion (`recommendCommands`), joined to its "unknown" message. */
function suggestMark(name: string): string {
  return `\u0000suggest\u0000${name}`;
}

const INIT_OPTIONS = {
  example: {
    type: "string",
    requiresArg: true,
    describe: "write one of the package's examples (notes, resp, reflect, http, mixed, …)",
  },
  json: jsonOption(),
} as const;

const GENERATE_OPTIONS = {
  out: { type: "string", requiresArg: true, describe: "output directory (default: ./<name>)" },
  "dry-run": { type: "boolean", describe: "print the plan, write nothing" },
  check: {
    type: "boolean",
    describe: "write nothing; exit 1 if the output directory is not up to date",
  },
  force: { type: "boolean", describe: "overwrite or remove hand-edited generated files" },
  build: { type: "boolean", describe: "run zig build after writing" },
  test: { type: "boolean", describe: "run zig build test after writing" },
  zig: { type: "string", requiresArg: true, describe: "path of the zig executable to use" },
  json: jsonOption(),
} as const;

function jsonOption() {
  return {
    type: "boolean",
    describe: 'print the result as one JSON document on stdout ({"version":1,...})',
  } as const;
}

function generateCommand(y: Argv) {
  return y
    .positional("spec", { type: "string", describe: "the service spec (JSON)" })
    .options(GENERATE_OPTIONS)
    .conflicts("check", ["dry-run", "force", "build", "test"])
    .conflicts("dry-run", ["build", "test"]);
}

const ZIG_COMMANDS = ["install", "list", "path", "exec"] as const;

function zigCommand(y: Argv) {
  return y
    .command(
      "install [versions..]",
      "install Zig releases into the per-user cache (default: the newest supported)",
      (z) =>
        z
          .positional("versions", { type: "string", array: true, describe: "e.g. 0.17.1" })
          .option("all", { type: "boolean", describe: "every supported release" })
          .option("json", jsonOption()),
    )
    .command("list", "list supported Zig releases and which are installed", (z) =>
      z.option("json", jsonOption()),
    )
    // "release", not "version": yargs keeps --version for itself, argv.version included.
    .command("path [release]", "print the path of an installed Zig (default: the newest)", (z) =>
      z
        .positional("release", { type: "string", describe: "e.g. 0.17.1" })
        .option("json", jsonOption()),
    )
    // Listed for --help and completion; its command line is read by parseZigExec.
    .command(
      "exec [--version V] -- <args..>",
      "run an installed Zig (default: the newest) with these arguments",
    )
    .recommendCommands()
    .demandCommand(
      1,
      1,
      `missing a zig command (${ZIG_COMMANDS.join(", ")})`,
      "too many zig commands",
    );
}

function parser(version: string) {
  return yargs()
    .locale("en")
    // yargs types the strings as flat, but y18n takes plural forms as { one, other }.
    .updateLocale(MESSAGES as unknown as Record<string, string>)
    .scriptName("gen-reuseport")
    .usage("Usage: $0 <spec.json> [--out DIR] [options]\n\nGenerate a Zig SO_REUSEPORT server.")
    .command("$0 [spec]", "generate the Zig project described by a spec", generateCommand)
    .command("init [file]", "write an example spec and its JSON Schema (never overwrites)", (y) =>
      y
        .positional("file", {
          type: "string",
          describe: `spec to create (default: ${DEFAULT_INIT_FILE}, or <example>.json)`,
        })
        .options(INIT_OPTIONS),
    )
    .command("schema", "print the JSON Schema of the spec")
    .command("zig", "install, list, locate and run Zig toolchains", zigCommand)
    .recommendCommands()
    .completion("completion", "print a bash/zsh completion script", completeWords)
    .epilogue(EPILOGUE)
    .strict()
    .exitProcess(false)
    .help()
    .alias("help", "h")
    .version(version)
    .wrap(100);
}

export async function parseArgs(rawArgs: readonly string[], version: string): Promise<Command> {
  // yargs would hand the word to the default command as its spec (its completion command and a
  // default command with a positional do not mix), so the script is asked for here.
  if (rawArgs.length === 1 && rawArgs[0] === "completion") return { kind: "completion" };
  if (rawArgs[0] === "zig" && rawArgs[1] === "exec") {
    const exec = parseZigExec(rawArgs.slice(2));
    if (exec !== "help") return exec;
    const { output } = parseWithYargs(parser(version), ["zig", "exec", "--help"]);
    return { kind: "output", text: output };
  }
  const { argv, output } = parseWithYargs(parser(version), rawArgs);
  if (output !== "") return { kind: "output", text: output };
  const json = argv.json === true;
  const [sub, zigSub] = argv._ as unknown[];
  if (sub === "init") return toInit(argv);
  if (sub === "schema") return { kind: "schema" };
  if (sub === "zig" && zigSub === "install") {
    const versions = ((argv.versions as unknown[] | undefined) ?? []).map(String);
    if (argv.all === true && versions.length > 0) {
      throw new UsageError("--all and a list of versions cannot be combined");
    }
    return { kind: "zig-install", versions, all: argv.all === true, json };
  }
  if (sub === "zig" && zigSub === "path") {
    const wanted = argv.release === undefined ? undefined : String(argv.release);
    return { kind: "zig-path", version: wanted, json };
  }
  if (sub === "zig") return { kind: "zig-list", json };
  return toGenerate(argv);
}

function toInit(argv: Record<string, unknown>): InitCommand {
  if (Array.isArray(argv.example)) throw new UsageError("--example given more than once");
  return {
    kind: "init",
    file: argv.file === undefined ? undefined : String(argv.file),
    example: argv.example === undefined ? undefined : String(argv.example),
    json: argv.json === true,
  };
}

/**
 * `zig exec [--version V] [--] ARGS`: its own options come first; from `--`, or from the first
 * word that is not one of them, everything is Zig's (`zig exec build --help` asks Zig).
 * `"help"`: its own `--help` (`zig exec --help`).
 */
export function parseZigExec(rest: readonly string[]): ZigExecCommand | "help" {
  let wanted: string | undefined;
  let i = 0;
  for (; i < rest.length; i++) {
    const arg = rest[i] ?? "";
    if (arg === "--") {
      i += 1;
      break;
    }
    if (!arg.startsWith("-")) break;
    const [flag, inline] = arg.startsWith("--") ? splitInline(arg) : [arg, undefined];
    if (flag === "--help" || flag === "-h") return "help";
    if (flag !== "--version") {
      const hint = closest(flag.replace(/^-+/, ""), ["version"]);
      const suggestion = hint === undefined ? "" : `; did you mean --${hint}?`;
      throw new UsageError(
        `unknown option ${flag} for zig exec (its arguments for Zig go after --)${suggestion}`,
      );
    }
    if (wanted !== undefined) throw new UsageError("--version given more than once");
    const value = inline ?? rest[++i];
    if (value === undefined || value === "" || value.startsWith("-")) {
      throw new UsageError("--version needs a value");
    }
    wanted = value;
  }
  const args = rest.slice(i);
  if (args.length === 0) {
    throw new UsageError("missing the arguments for Zig (e.g. zig exec -- build)");
  }
  return { kind: "zig-exec", version: wanted, args };
}

function splitInline(arg: string): [string, string | undefined] {
  const eq = arg.indexOf("=");
  return eq === -1 ? [arg, undefined] : [arg.slice(0, eq), arg.slice(eq + 1)];
}

interface Parsed {
  readonly argv: Record<string, unknown>;
  readonly output: string;
}

/**
 * Runs yargs synchronously (no async builders or handlers here). yargs may call back more than
 * once (a completion request first runs the default command); the last call is the answer.
 */
function parseWithYargs(y: Argv, rawArgs: readonly string[]): Parsed {
  let last: Parsed | undefined;
  let failure: Error | undefined;
  let suggestion: string | undefined;
  y.fail((message, error) => {
    const text = message ?? error?.message ?? "invalid arguments";
    const suggested = text.split("\u0000");
    if (suggested.length === 3 && suggested[1] === "suggest") suggestion ??= suggested[2];
    else failure ??= new UsageError(usageText(text, rawArgs, suggestion));
  });
  void y.parse([...rawArgs], {}, (error, argv, output) => {
    if (error !== null && error !== undefined) failure ??= error;
    last = { argv: argv as Record<string, unknown>, output };
  });
  if (failure !== undefined) {
    if (failure instanceof UsageError) throw failure;
    throw new UsageError(usageText(failure.message, rawArgs));
  }
  if (last === undefined) throw new UsageError("invalid arguments");
  return last;
}


/** The options each command takes, for "did you mean" (`help` and `version` are everyone's). */
const OPTIONS_OF: Readonly<Record<string, readonly string[]>> = {
  generate: Object.keys(GENERATE_OPTIONS),
  init: Object.keys(INIT_OPTIONS),
  "zig install": ["all", "json"],
  "zig list": ["json"],
  "zig path": ["json"],
};

/**
 * Tab completion: yargs' own (commands, subcommands, their options), plus the options of the
 * default command, which yargs does not offer; without the `$0` yargs lists for it.
 */
function completeWords(
  current: string,
  argv: { readonly _: readonly (string | number)[] },
  defaultCompletion: (done: (error: unknown, completions: string[] | undefined) => void) => void,
  done: (completions: string[]) => void,
): void {
  defaultCompletion((_error, completions) => {
    const words = argv._.slice(1).map(String);
    const command = words.find((w) => !w.startsWith("-"));
    const inGenerate = command === undefined || !COMMAND_NAMES.has(command);
    const flags =
      inGenerate && current.startsWith("-")
        ? Object.keys(GENERATE_OPTIONS)
            .map((name) => `--${name}`)
            .filter((flag) => flag.startsWith(current) && !words.includes(flag))
        : [];
    const own = (completions ?? []).filter((c) => c !== "$0" && !flags.includes(c));
    done([...own, ...flags]);
  });
}

/**
 * The shell script `gen-reuseport completion` prints (yargs' own). A parser of its own: the
 * main one's default command would take "completion" for a spec file.
 */
export function completionScript(): string {
  const y = yargs().scriptName("gen-reuseport").completion("completion", false).exitProcess(false);
  return parseWithYargs(y, ["completion"]).output;
}

/**
 * What yargs cannot say: a missing spec (checked here, after yargs' strict mode, so that an
 * unknown option is reported before it), a repeated value, and --zig without a Zig step.
 */
function toGenerate(argv: Record<string, unknown>): GenerateCommand {
  if (argv.spec === undefined) throw new UsageError("missing the spec file argument");
  for (const flag of ["out", "zig"] as const) {
    if (Array.isArray(argv[flag])) throw new UsageError(`--${flag} given more than once`);
  }
  if (argv.zig !== undefined && argv.build !== true && argv.test !== true) {
    throw new UsageError("--zig is only used with --build or --test");
  }
  return {
    kind: "generate",
    spec: String(argv.spec),
    out: argv.out as string | undefined,
    dryRun: argv["dry-run"] === true,
    check: argv.check === true,
    force: argv.force === true,
    build: argv.build === true,
    test: argv.test === true,
    zig: argv.zig as string | undefined,
    json: argv.json === true,
  };
}

/**
 * The one message that needs the command line: yargs names unknown arguments bare (`frob`,
 * `x`, `extra.json`); they are shown as typed (`--frob`, `-x`, `"extra.json"`), with the option
 * or command that was probably meant.
 */
function usageText(message: string, rawArgs: readonly string[], suggestion?: string): string {
  const marked = message.split("\u0000");
  if (marked.length !== 3) return message.split("\n")[0] ?? message;
  const names = (marked[2] ?? "").split(", ");
  const extra = names.filter((n) => rawArgs.includes(n));
  if (extra.length > 0) {
    const shown = extra.map((n) => `"${n}"`).join(", ");
    if (suggestion !== undefined) return `unknown command ${shown}; did you mean "${suggestion}"?`;
    return `unexpected argument ${shown}`;
  }
  const flags = names.map((n) => (n.length > 1 ? `--${n}` : `-${n}`));
  const [only] = names;
  const meant =
    names.length === 1 && only !== undefined && only.length > 1
      ? closest(only, [...(OPTIONS_OF[commandOf(rawArgs)] ?? []), "help", "version"])
      : undefined;
  const hint = meant === undefined ? "" : `; did you mean --${meant}?`;
  return `unknown option ${flags.join(", ")}${hint}`;
}

/** Which command a line runs (`generate`, `init`, `zig install`, …), from its words. */
function commandOf(rawArgs: readonly string[]): string {
  const words = rawArgs.filter((a) => !a.startsWith("-"));
  const [first, second] = words;
  if (first === undefined || !COMMAND_NAMES.has(first)) return "generate";
  return first === "zig" && second !== undefined ? `zig ${second}` : first;
}
