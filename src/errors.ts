/**
 * The error family of gen-reuseport. Every expected failure is an `ExitError` with a stable
 * `code` (for `--json` output and tests) and a process exit code; anything else that escapes is
 * a bug and is reported as an `InternalError`.
 */

/** Process exit codes: the CLI contract (README and `--help` list them). */
export const EXIT = {
  ok: 0,
  drift: 1,
  usage: 2,
  toolchain: 3,
  conflict: 4,
  internal: 70,
  output: 74,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** A problem found in a spec: where (JSON path segments), what is allowed, what was found. */
export interface Diagnostic {
  readonly path: readonly (string | number)[];
  readonly message: string;
  /** The offending value; absent when the value is missing. */
  readonly got?: unknown;
  readonly hint?: string;
  /** Where in the spec file, for problems found while reading its text (duplicate keys). */
  readonly at?: { readonly line: number; readonly column: number };
}

/** At most this many problems are listed; the rest are counted ("… and N more problems"). */
export const MAX_LISTED_PROBLEMS = 20;

/** Where bugs go (a project issue tracker URL, once it has a public one). */
export const REPORT_BUGS_TO = "the gen-reuseport maintainers (the project's issue tracker)";

/** An expected failure: the message is for the user, the exit code is part of the contract. */
export class ExitError extends Error {
  readonly exitCode: ExitCode;
  readonly code: string;

  constructor(code: string, exitCode: ExitCode, message: string) {
    super(message);
    this.name = new.target.name;
    this.code = code;
    this.exitCode = exitCode;
  }

  /** The lines to print on stderr. */
  lines(): string[] {
    return [this.message];
  }
}

/** Wrong command line: unknown flag, missing argument, meaningless combination. */
export class UsageError extends ExitError {
  constructor(message: string) {
    super("usage", EXIT.usage, message);
  }

  override lines(): string[] {
    return [`gen-reuseport: ${this.message}; run "gen-reuseport --help" for usage`];
  }
}

/** The spec cannot be read or is invalid. `file` is the path as the user passed it. */
export class SpecError extends ExitError {
  readonly file: string;
  /** The first `MAX_LISTED_PROBLEMS` problems. */
  readonly diagnostics: readonly Diagnostic[];
  /** How many more problems there were. */
  readonly omitted: number;

  constructor(file: string, diagnostics: readonly Diagnostic[], message?: string) {
    super("invalid-spec", EXIT.usage, message ?? `${file}: invalid spec`);
    this.file = file;
    this.diagnostics = diagnostics.slice(0, MAX_LISTED_PROBLEMS);
    this.omitted = Math.max(0, diagnostics.length - MAX_LISTED_PROBLEMS);
  }

  override lines(): string[] {
    if (this.diagnostics.length === 0) return [this.message];
    const lines = this.diagnostics.map((d) => formatDiagnostic(this.file, d));
    if (this.omitted > 0) {
      const more = `${this.omitted} more problem${this.omitted === 1 ? "" : "s"}`;
      lines.push(`${this.file}: … and ${more}`);
    }
    return lines;
  }
}

/**
 * What went wrong with Zig, as data: the CLI words it (and names the install command that works
 * where the user is); `--json` prints it as is.
 */
export type ToolchainProblem =
  | { readonly kind: "zig-not-found"; readonly looked: readonly string[] }
  | { readonly kind: "zig-unsupported"; readonly path: string; readonly version: string }
  | { readonly kind: "zig-does-not-run"; readonly path: string; readonly reason: string }
  | {
      readonly kind: "zig-too-old";
      readonly path: string;
      readonly version: string;
      readonly minimum: string;
    }
  | { readonly kind: "release-unsupported"; readonly version: string }
  /** `zig path` / `zig exec`: that release (undefined: any supported one) is not installed. */
  | {
      readonly kind: "zig-not-installed";
      readonly version?: string;
      readonly searched: readonly string[];
    }
  | {
      readonly kind: "install-failed";
      readonly version: string;
      readonly reason: string;
      readonly output: string;
    }
  | { readonly kind: "install-locked"; readonly version: string; readonly lock: string }
  | { readonly kind: "install-mismatch"; readonly version: string; readonly installed: string }
  | { readonly kind: "step-failed"; readonly step: ZigStepFailure };

/** A `zig build` / `zig build test` that failed, with what Zig reported. */
export interface ZigStepFailure {
  /** As a user would type it: `zig build test`. */
  readonly command: string;
  readonly dir: string;
  readonly exitCode?: number;
  readonly signal?: string;
  readonly timedOut: boolean;
  readonly ms: number;
  readonly diagnostics: readonly ZigDiagnostic[];
}

/** One `path:line:column: error: message` line of Zig's output (location when Zig gives one). */
export interface ZigDiagnostic {
  readonly kind: "error" | "warning" | "note";
  readonly message: string;
  readonly path?: string;
  readonly line?: number;
  readonly column?: number;
}

/**
 * Zig is missing or unsupported, or installing it, `zig build` or `zig build test` failed. The
 * message is the problem's kind and data; the CLI words it for people.
 */
export class ToolchainError extends ExitError {
  readonly problem: ToolchainProblem;

  constructor(problem: ToolchainProblem) {
    const { kind, ...data } = problem;
    super("toolchain", EXIT.toolchain, `${kind} ${JSON.stringify(data)}`);
    this.problem = problem;
  }
}

/** One file the generator refuses to overwrite or remove. */
export interface ConflictLine {
  readonly path: string;
  readonly reason: string;
}

/** Files were edited by hand (or never written by us); nothing was written. */
export class ConflictError extends ExitError {
  readonly conflicts: readonly ConflictLine[];

  constructor(conflicts: readonly ConflictLine[]) {
    const n = conflicts.length;
    super(
      "conflict",
      EXIT.conflict,
      `nothing was written: ${n} ${n === 1 ? "file conflicts" : "files conflict"} with what ` +
        "gen-reuseport would write",
    );
    this.conflicts = conflicts;
  }

  override lines(): string[] {
    return [...this.conflicts.map((c) => `${c.path}: ${c.reason}`), this.message];
  }
}

/** The output directory cannot be read or written (permissions, disk full, a file in the way). */
export class OutputError extends ExitError {
  constructor(message: string) {
    super("output", EXIT.output, message);
  }
}

/** A bug in gen-reuseport. The message says so and where to report it. */
export class InternalError extends ExitError {
  readonly detail: unknown;

  constructor(message: string, detail?: unknown) {
    super("internal", EXIT.internal, message);
    this.detail = detail;
  }

  override lines(): string[] {
    return [
      `gen-reuseport: internal error: ${this.message}`,
      `This is a bug in gen-reuseport; please report it to ${REPORT_BUGS_TO} with the ` +
        "command line, the spec and this output (rerun with GEN_REUSEPORT_DEBUG=1 to add the " +
        "stack trace).",
    ];
  }
}

/** Wraps anything thrown into the family: unknown throwables become an `InternalError`. */
export function asExitError(error: unknown): ExitError {
  if (error instanceof ExitError) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new InternalError(message, error);
}

const GOT_MAX_CHARS = 40;

/** `spec.json: listeners[1].port: must be an integer from 1 to 65535 (got 70000)` */
export function formatDiagnostic(file: string, d: Diagnostic): string {
  const got = "got" in d ? ` (got ${formatGot(d.got)})` : "";
  const hint = d.hint === undefined ? "" : `; ${d.hint}`;
  const where = d.at === undefined ? file : `${file}:${d.at.line}:${d.at.column}`;
  return `${where}: ${formatPath(d.path)}: ${d.message}${got}${hint}`;
}

/** `["listeners", 1, "port"]` → `listeners[1].port`; the empty path is `(root)`. */
export function formatPath(path: readonly (string | number)[]): string {
  if (path.length === 0) return "(root)";
  let text = "";
  for (const segment of path) {
    if (typeof segment === "number") text += `[${segment}]`;
    else if (segment.length > GOT_MAX_CHARS) text += `[${formatGot(segment)}]`;
    else if (/^[A-Za-z_$][A-Za-z0-9_$]*$/.test(segment)) {
      text += text === "" ? segment : `.${segment}`;
    } else text += `[${JSON.stringify(segment)}]`;
  }
  return text;
}

/** The offending value, JSON-encoded and cut to about 40 characters. */
export function formatGot(value: unknown): string {
  const json = value === undefined ? "undefined" : JSON.stringify(value);
  if (json.length <= GOT_MAX_CHARS) return json;
  return `${json.slice(0, GOT_MAX_CHARS - 1)}…`;
}
