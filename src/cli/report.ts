/**
 * What the CLI prints about a plan: human lines and the `--json` document. Formatting only.
 */
import {
  ConflictError,
  formatPath,
  InternalError,
  SpecError,
  ToolchainError,
  type ExitError,
} from "../errors.js";
import { displayPath, type PreparedGeneration } from "../generate.js";
import type { Action, PlanCounts } from "../plan/plan.js";
import type { CliContext } from "./types.js";
import { toolchainText } from "./toolchain-text.js";

export type Mode = "write" | "dry-run" | "check";

/** `create src/main.zig`, one line per file (`--dry-run`), or only the changes (`--check`). */
export function planLines(prepared: PreparedGeneration, onlyChanges: boolean): string[] {
  return prepared.plan.files
    .filter((f) => !onlyChanges || (f.action !== "unchanged" && f.action !== "keep"))
    .map((f) => {
      const forced = f.reason !== undefined && f.action !== "conflict" ? " (--force)" : "";
      return `${f.action} ${f.path}${forced}`;
    });
}

const PAST: Record<Action, string> = {
  create: "created",
  update: "updated",
  remove: "removed",
  unchanged: "unchanged",
  keep: "kept",
  conflict: "in conflict",
};

const FUTURE: Record<Action, string> = {
  create: "to create",
  update: "to update",
  remove: "to remove",
  unchanged: "unchanged",
  keep: "to keep",
  conflict: "in conflict",
};

/** `(3 created, 2 updated, 1 removed, 6 unchanged)`: zero counts left out. */
function countsText(counts: PlanCounts, words: Record<Action, string>): string {
  const order: Action[] = ["create", "update", "remove", "keep", "unchanged", "conflict"];
  const parts = order.filter((a) => counts[a] > 0).map((a) => `${counts[a]} ${words[a]}`);
  return `(${parts.join(", ")})`;
}

function total(counts: PlanCounts): number {
  return Object.values(counts).reduce((a, b) => a + b, 0);
}

function dirText(displayDir: string): string {
  return displayDir.endsWith("/") ? displayDir : `${displayDir}/`;
}

/** Counts only the files actually written: `nothing to write` when there were none. */
export function writeSummary(prepared: PreparedGeneration): string {
  const { counts } = prepared;
  const n = counts.create + counts.update;
  const dir = dirText(prepared.displayDir);
  if (n === 0 && counts.remove === 0) {
    return `nothing to write; ${dir} is up to date ${countsText(counts, PAST)}`;
  }
  return `wrote ${n} file${n === 1 ? "" : "s"} to ${dir} ${countsText(counts, PAST)}`;
}

export function dryRunSummary(prepared: PreparedGeneration): string {
  return (
    `dry run: ${total(prepared.counts)} files in ${dirText(prepared.displayDir)} ` +
    `${countsText(prepared.counts, FUTURE)}; nothing was written`
  );
}

export function checkSummary(prepared: PreparedGeneration, drift: boolean): string {
  const dir = dirText(prepared.displayDir);
  if (!drift) return `${dir} is up to date`;
  return `${dir} is out of date ${countsText(prepared.counts, FUTURE)}`;
}

/**
 * The version of the `--json` document's shape. Bump it when a field changes meaning or goes
 * away; adding a field does not bump it.
 */
export const JSON_VERSION = 1;

/** What `--json` prints for every outcome (`version` is added by `printJson`). */
export interface JsonReport {
  readonly ok: boolean;
  readonly exitCode: number;
  /** `generate`, `init`, `zig install`, `zig list`; absent when the command line did not parse. */
  readonly command?: string;
  readonly [field: string]: unknown;
}

export function printJson(ctx: Pick<CliContext, "stdout">, report: JsonReport): void {
  ctx.stdout.write(`${JSON.stringify({ version: JSON_VERSION, ...report }, null, 2)}\n`);
}

/** The lines an error prints on stderr: toolchain problems are worded here, in the CLI. */
export function errorLines(error: ExitError, ctx: Pick<CliContext, "invocation">): string[] {
  if (error instanceof ToolchainError) {
    return [toolchainText(error.problem, ctx.invocation ?? "gen-reuseport")];
  }
  return error.lines();
}

/** One line per route a kept module file lacks: where to add what. */
export function missingRouteLines(prepared: PreparedGeneration): string[] {
  return prepared.missingRoutes.map(
    (m) =>
      `${displayPath(prepared.displayDir, m.file)}: add route ${m.route} (${m.method} ` +
      `${m.path}): ${m.signature}`,
  );
}

/**
 * What the generator says of the manifests under `deploy/` (the default admin address, loopback
 * listeners no Service reaches): only for specs that ask for deployment (`deploy`), whose
 * authors act on it; the same words stand in the manifests' comments for everyone.
 */
export function deployNoteLines(prepared: PreparedGeneration): string[] {
  if (prepared.spec.deploy === undefined) return [];
  return prepared.model.deploy.notes.map((note) => `note: ${note}`);
}

export function planJson(prepared: PreparedGeneration) {
  return {
    outDir: prepared.displayDir,
    missingRoutes: prepared.missingRoutes,
    files: prepared.plan.files.map((f) =>
      f.reason === undefined
        ? { path: f.path, action: f.action }
        : { path: f.path, action: f.action, reason: f.reason },
    ),
    counts: prepared.counts,
  };
}

export function errorJson(
  error: ExitError,
  ctx: Pick<CliContext, "invocation">,
): Record<string, unknown> {
  const message =
    error instanceof ToolchainError
      ? toolchainText(error.problem, ctx.invocation ?? "gen-reuseport")
      : error.message;
  const base: Record<string, unknown> = { code: error.code, message };
  if (error instanceof SpecError) {
    base.file = error.file;
    base.diagnostics = error.diagnostics.map((d) => ({
      path: formatPath(d.path),
      message: d.message,
      ...("got" in d ? { got: d.got } : {}),
      ...(d.hint === undefined ? {} : { hint: d.hint }),
      ...(d.at === undefined ? {} : { line: d.at.line, column: d.at.column }),
    }));
    if (error.omitted > 0) base.omitted = error.omitted;
  }
  if (error instanceof ConflictError) base.conflicts = error.conflicts;
  if (error instanceof InternalError) base.lines = error.lines();
  if (error instanceof ToolchainError) base.problem = error.problem;
  return base;
}
