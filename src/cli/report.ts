/**
 * What the CLI prints about a plan: human lines and the `--json` document. Formatting only.
 */
import { formatPath, type ExitError, InternalError, SpecError, ConflictError } from "../errors.js";
import type { PreparedGeneration } from "../generate.js";
import type { Action, PlanCounts } from "../plan/plan.js";

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

export interface JsonReport {
  readonly ok: boolean;
  readonly exitCode: number;
  readonly mode?: Mode;
  readonly outDir?: string;
  readonly files?: readonly { path: string; action: Action; reason?: string }[];
  readonly counts?: PlanCounts;
  readonly drift?: boolean;
  readonly zig?: { readonly path: string; readonly version: string; readonly ran: string[] };
  readonly error?: Record<string, unknown>;
}

export function planJson(prepared: PreparedGeneration) {
  return {
    outDir: prepared.displayDir,
    files: prepared.plan.files.map((f) =>
      f.reason === undefined
        ? { path: f.path, action: f.action }
        : { path: f.path, action: f.action, reason: f.reason },
    ),
    counts: prepared.counts,
  };
}

export function errorJson(error: ExitError): Record<string, unknown> {
  const base: Record<string, unknown> = { code: error.code, message: error.message };
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
  return base;
}
