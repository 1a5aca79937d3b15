/**
 * Running Zig in a generated project: the one way the CLI, the test suite, the demo and the
 * benchmarks build. Steps run in order; the result is data (per step: exit, time, output,
 * diagnostics with file, line and column); nothing is worded here and nothing is thrown for a
 * failed step.
 */
import type { ZigDiagnostic } from "../errors.js";

/** The steps gen-reuseport knows by name, as `zig` arguments. */
export const ZIG_STEPS = {
  fmt: ["fmt", "--check", "."],
  build: ["build"],
  test: ["build", "test"],
} as const;

export interface BuildProjectOptions {
  /** Path of the zig executable. */
  readonly zig: string;
  /** The generated project's directory. */
  readonly dir: string;
  /** `zig` arguments per step, e.g. `[ZIG_STEPS.build, ZIG_STEPS.test]`. */
  readonly steps: readonly (readonly string[])[];
  /** Added to this process's environment (e.g. `ZIG_GLOBAL_CACHE_DIR`). */
  readonly env?: NodeJS.ProcessEnv;
  /** Per step (default 15 minutes). */
  readonly timeoutMs?: number;
  /** Run the next steps after a failure (default: stop at the first failure). */
  readonly keepGoing?: boolean;
  /**
   * Where Zig's output goes as it comes: `"inherit"` gives Zig this process's stdout and stderr
   * (on a terminal Zig draws its own live progress; nothing is captured); a function receives
   * each line of its stdout and stderr (the output is also captured); absent: captured only.
   */
  readonly output?: "inherit" | ((line: string) => void);
  readonly onStepStart?: (args: readonly string[]) => void;
  readonly onStepEnd?: (step: StepResult) => void;
}

export interface StepResult {
  readonly args: readonly string[];
  /** As a user would type it: `zig build test`. */
  readonly command: string;
  readonly ok: boolean;
  /** Not run because an earlier step failed. */
  readonly skipped: boolean;
  readonly exitCode?: number;
  readonly signal?: string;
  readonly timedOut: boolean;
  readonly ms: number;
  /** Zig's stdout and stderr, interleaved as they came (empty with `output: "inherit"`). */
  readonly output: string;
  readonly diagnostics: readonly ZigDiagnostic[];
}

export interface BuildResult {
  readonly ok: boolean;
  readonly steps: readonly StepResult[];
}

export const ZIG_STEP_TIMEOUT_MS = 15 * 60_000;

export async function buildProject(options: BuildProjectOptions): Promise<BuildResult> {
  const steps: StepResult[] = [];
  for (const args of options.steps) {
    const failedBefore = steps.some((s) => !s.ok);
    if (failedBefore && options.keepGoing !== true) {
      steps.push(skippedStep(args));
      continue;
    }
    options.onStepStart?.(args);
    const step = await runStep(args, options);
    options.onStepEnd?.(step);
    steps.push(step);
  }
  return { ok: steps.every((s) => s.ok), steps };
}

function skippedStep(args: readonly string[]): StepResult {
  return {
    args,
    command: commandOf(args),
    ok: false,
    skipped: true,
    timedOut: false,
    ms: 0,
    output: "",
    diagnostics: [],
  };
}

async function runStep(args: readonly string[], options: BuildProjectOptions): Promise<StepResult> {
  const { execa } = await import("execa");
  const inherit = options.output === "inherit";
  const started = performance.now();
  const child = execa(options.zig, args, {
    cwd: options.dir,
    env: options.env ?? {},
    extendEnv: true,
    timeout: options.timeoutMs ?? ZIG_STEP_TIMEOUT_MS,
    reject: false,
    stdin: "ignore",
    stdout: inherit ? "inherit" : "pipe",
    stderr: inherit ? "inherit" : "pipe",
    buffer: false,
  });
  let output = "";
  if (!inherit) {
    const onLine = typeof options.output === "function" ? options.output : undefined;
    const lines = new LineSplitter((line) => {
      output += `${line}\n`;
      onLine?.(line);
    });
    child.stdout?.on("data", (chunk: Uint8Array) => lines.push(chunk));
    child.stderr?.on("data", (chunk: Uint8Array) => lines.push(chunk));
    await child.catch(() => undefined);
    lines.end();
  }
  const result = await child;
  return {
    args,
    command: commandOf(args),
    ok: !result.failed,
    skipped: false,
    ...(result.exitCode === undefined ? {} : { exitCode: result.exitCode }),
    ...(result.signal === undefined ? {} : { signal: result.signal }),
    timedOut: result.timedOut,
    ms: Math.round(performance.now() - started),
    output,
    diagnostics: parseZigDiagnostics(output),
  };
}

function commandOf(args: readonly string[]): string {
  return ["zig", ...args].join(" ");
}

/** Whole lines out of a byte stream (a line cut between two chunks is joined). */
class LineSplitter {
  private readonly decoder = new TextDecoder();
  private rest = "";

  constructor(private readonly onLine: (line: string) => void) {}

  push(chunk: Uint8Array): void {
    const text = this.rest + this.decoder.decode(chunk, { stream: true });
    const lines = text.split("\n");
    this.rest = lines.pop() ?? "";
    for (const line of lines) this.onLine(line.replace(/\r$/, ""));
  }

  end(): void {
    const last = this.rest + this.decoder.decode();
    this.rest = "";
    if (last !== "") this.onLine(last);
  }
}

const LOCATED = /^(.+?):(\d+):(\d+): (error|warning|note): (.*)$/;
const BARE = /^(error|warning|note): (.*)$/;

/**
 * Zig's `path:line:column: error: message` lines (and bare `error: message` ones) as data.
 * The source excerpt and caret lines under each are left in the output.
 */
export function parseZigDiagnostics(output: string): ZigDiagnostic[] {
  const diagnostics: ZigDiagnostic[] = [];
  for (const line of output.split("\n")) {
    const located = LOCATED.exec(line);
    if (located !== null) {
      diagnostics.push({
        kind: located[4] as ZigDiagnostic["kind"],
        message: located[5] ?? "",
        path: located[1] ?? "",
        line: Number(located[2]),
        column: Number(located[3]),
      });
      continue;
    }
    const bare = BARE.exec(line);
    if (bare !== null) {
      diagnostics.push({ kind: bare[1] as ZigDiagnostic["kind"], message: bare[2] ?? "" });
    }
  }
  return diagnostics;
}
