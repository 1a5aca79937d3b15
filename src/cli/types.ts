/**
 * The CLI's shared types: the injected context and the parsed command lines. A leaf of the CLI:
 * the dispatcher (run.ts), the parsers (args.ts, plain-args.ts), the commands (commands/) and
 * the reporting (report.ts) all import it, and it imports nothing of the project, so that no
 * command has to import the dispatcher that loads it.
 */

/** Everything the CLI touches outside its arguments, injected so tests need no `process`. */
export interface CliContext {
  readonly stdout: { write(chunk: string): unknown };
  /** `isTTY`: Zig draws its own progress there, and the CLI's lines may be styled. */
  readonly stderr: { write(chunk: string | Uint8Array): unknown; readonly isTTY?: boolean };
  readonly cwd: string;
  readonly env: NodeJS.ProcessEnv;
  /** Templates to render (default: the package's `templates/`). */
  readonly templatesDir?: string;
  /**
   * Where installed Zig releases are looked for; `zig install` installs into the first
   * (default: the per-user cache, then a checkout's `.toolchain/`, see toolchain/cache.ts).
   */
  readonly toolchainDirs?: readonly string[];
  /** How hints name gen-reuseport, e.g. `npx gen-reuseport` (see invocation.ts). */
  readonly invocation?: string;
  /** Python with pip for `zig install` (default "python3"). */
  readonly python?: string;
  /**
   * `zig exec` hands Zig this process's own standard input, output and error (set by main.ts:
   * Zig then sees the terminal). Otherwise Zig's output is copied to `stdout`/`stderr` and its
   * standard input is empty, as tests want.
   */
  readonly inheritStdio?: boolean;
}

/** The commands besides the default one (generate): a spec file by one of these names is not. */
export const COMMAND_NAMES: ReadonlySet<string> = new Set(["init", "schema", "zig", "completion"]);

/** The spec `init` writes when it is given no file and no example. */
export const DEFAULT_INIT_FILE = "gen-reuseport.json";

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

export interface InitCommand {
  readonly kind: "init";
  /** The spec to write; undefined: `gen-reuseport.json`, or `<example>.json` with --example. */
  readonly file: string | undefined;
  /** `--example NAME`: one of the package's examples instead of the commented starter spec. */
  readonly example: string | undefined;
  readonly json: boolean;
}

export interface ZigInstallCommand {
  readonly kind: "zig-install";
  readonly versions: readonly string[];
  readonly all: boolean;
  readonly json: boolean;
}

export interface ZigListCommand {
  readonly kind: "zig-list";
  readonly json: boolean;
}

export interface ZigPathCommand {
  readonly kind: "zig-path";
  /** undefined: the newest supported release that is installed. */
  readonly version: string | undefined;
  readonly json: boolean;
}

export interface ZigExecCommand {
  readonly kind: "zig-exec";
  /** undefined: the newest supported release that is installed. */
  readonly version: string | undefined;
  /** Passed to Zig as they are. */
  readonly args: readonly string[];
}

export type Command =
  | GenerateCommand
  | InitCommand
  | { readonly kind: "schema" }
  | { readonly kind: "completion" }
  | ZigInstallCommand
  | ZigListCommand
  | ZigPathCommand
  | ZigExecCommand
  | { readonly kind: "output"; readonly text: string };
