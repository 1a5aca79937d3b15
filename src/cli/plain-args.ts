/**
 * The common command line, `gen-reuseport <spec> [--out DIR] [--dry-run | --check] [--force]
 * [--build] [--test] [--zig PATH] [--json]`, recognised without loading yargs (a third of a cold
 * start). It recognises only lines whose meaning is plain: each flag at most once, no `=`, no
 * negation, no short flags, no combination yargs would refuse. Anything else returns
 * `undefined` and yargs parses it (and words every error); a test checks that the two agree.
 */
import { COMMAND_NAMES, type GenerateCommand } from "./types.js";

const BOOLEAN_FLAGS = new Set(["--dry-run", "--check", "--force", "--build", "--test", "--json"]);
const VALUE_FLAGS = new Set(["--out", "--zig"]);

export function parsePlainGenerate(rawArgs: readonly string[]): GenerateCommand | undefined {
  const flags = new Set<string>();
  const values = new Map<string, string>();
  let spec: string | undefined;
  for (let i = 0; i < rawArgs.length; i++) {
    const arg = rawArgs[i] ?? "";
    if (BOOLEAN_FLAGS.has(arg) || VALUE_FLAGS.has(arg)) {
      if (flags.has(arg)) return undefined;
      flags.add(arg);
      if (VALUE_FLAGS.has(arg)) {
        const value = rawArgs[++i];
        if (!isPlainWord(value)) return undefined;
        values.set(arg, value);
      }
    } else if (isPlainWord(arg) && spec === undefined && !COMMAND_NAMES.has(arg)) {
      spec = arg;
    } else {
      return undefined;
    }
  }
  if (spec === undefined) return undefined;
  const has = (flag: string) => flags.has(flag);
  if (has("--check") && (has("--dry-run") || has("--force") || has("--build") || has("--test"))) {
    return undefined;
  }
  if (has("--dry-run") && (has("--build") || has("--test"))) return undefined;
  if (has("--zig") && !has("--build") && !has("--test")) return undefined;
  return {
    kind: "generate",
    spec,
    out: values.get("--out"),
    dryRun: has("--dry-run"),
    check: has("--check"),
    force: has("--force"),
    build: has("--build"),
    test: has("--test"),
    zig: values.get("--zig"),
    json: has("--json"),
  };
}

/** Not a flag, not empty, and nothing yargs reads otherwise (a number-like word stays a string). */
function isPlainWord(arg: string | undefined): arg is string {
  return arg !== undefined && arg !== "" && !arg.startsWith("-");
}
