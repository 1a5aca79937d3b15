/**
 * The pipeline, end to end: load → validate → model → render → plan, then (for a real run)
 * write. The CLI only parses arguments and calls these; tests and scripts call them directly.
 */
import path from "node:path";
import { ConflictError, SpecError, type ConflictLine } from "./errors.js";
import { buildModel, type ServiceModel } from "./model/model.js";
import { GENERATOR_VERSION, TEMPLATES_DIR } from "./package.js";
import { readDiskState, readManifest } from "./plan/disk-state.js";
import {
  conflicts,
  countActions,
  hasChanges,
  pathsToInspect,
  plan as planFiles,
  type ConflictReason,
  type Plan,
  type PlanCounts,
} from "./plan/plan.js";
import { loadTemplates } from "./render/load-templates.js";
import { render, type Rendered } from "./render/render.js";
import { loadSpecFile } from "./spec/load.js";
import type { Spec } from "./spec/schema.js";
import { validateSpec } from "./spec/validate.js";
import { applyPlan } from "./write/apply.js";

export interface GenerateOptions {
  /** The spec file as the user names it (messages repeat it as given). */
  readonly specFile: string;
  /** The spec's JSON value, when the caller has it already (then `specFile` is not read). */
  readonly spec?: unknown;
  /** Output directory; default `./<name>` (relative to `cwd`). */
  readonly outDir?: string | undefined;
  /** Directory relative paths are resolved against (default: process.cwd()). */
  readonly cwd?: string;
  /** Overwrite or remove hand-edited files instead of refusing. */
  readonly force?: boolean;
  /** Templates directory (default: the package's `templates/`). */
  readonly templatesDir?: string;
}

export interface PreparedGeneration {
  readonly spec: Spec;
  readonly model: ServiceModel;
  readonly rendered: Rendered;
  readonly plan: Plan;
  readonly counts: PlanCounts;
  /** The output directory as shown to the user (`--out` as given, or the spec's name). */
  readonly displayDir: string;
  /** The output directory, absolute. */
  readonly outDir: string;
}

/** Everything up to the plan; touches the disk only to read. */
export async function prepareGeneration(options: GenerateOptions): Promise<PreparedGeneration> {
  const cwd = options.cwd ?? process.cwd();
  const raw = "spec" in options ? options.spec : await loadSpecFile(options.specFile, cwd);
  const result = validateSpec(raw);
  if (!result.ok) throw new SpecError(options.specFile, result.diagnostics);
  const model = buildModel(result.spec, {
    generatorVersion: GENERATOR_VERSION,
    specFile: options.specFile,
  });
  const templates = await loadTemplates(options.templatesDir ?? TEMPLATES_DIR);
  const rendered = render(model, templates);
  const displayDir = options.outDir ?? result.spec.name;
  const outDir = path.resolve(cwd, displayDir);
  const manifest = await readManifest(outDir);
  const disk = await readDiskState(outDir, pathsToInspect(rendered, manifest));
  const plan = planFiles(rendered, disk, manifest, { force: options.force ?? false });
  return {
    spec: result.spec,
    model,
    rendered,
    plan,
    counts: countActions(plan),
    displayDir,
    outDir,
  };
}

/** Writes a prepared plan; refuses (writing nothing) if any file is a conflict. */
export async function applyGeneration(prepared: PreparedGeneration): Promise<void> {
  const refused = conflictLines(prepared);
  if (refused.length > 0) throw new ConflictError(refused);
  await applyPlan(prepared.outDir, prepared.plan);
}

/** prepare + apply: what `gen-reuseport spec.json --out DIR` does. */
export async function generate(options: GenerateOptions): Promise<PreparedGeneration> {
  const prepared = await prepareGeneration(options);
  await applyGeneration(prepared);
  return prepared;
}

/** Whether the output directory differs from what the spec renders (`--check`). */
export function hasDrift(prepared: PreparedGeneration): boolean {
  return hasChanges(prepared.plan);
}

/** One line per conflict, naming the file under the output directory as the user sees it. */
export function conflictLines(prepared: PreparedGeneration): ConflictLine[] {
  return conflicts(prepared.plan).map((f) => ({
    path: displayPath(prepared.displayDir, f.path),
    reason: conflictText(f.reason ?? "edited"),
  }));
}

export function displayPath(displayDir: string, file: string): string {
  return path.posix.join(displayDir.split(path.sep).join("/"), file);
}

export function conflictText(reason: ConflictReason): string {
  switch (reason) {
    case "edited":
      return (
        "edited by hand since gen-reuseport wrote it; keep your change by moving it to " +
        "src/handler.zig, or rerun with --force to overwrite it"
      );
    case "unknown":
      return (
        "exists but was not written by gen-reuseport; move it away, or rerun with --force " +
        "to overwrite it"
      );
    case "stale-edited":
      return "no longer generated and edited by hand; delete it yourself or rerun with --force";
    case "not-a-file":
      return "is a directory or other non-file where gen-reuseport writes a file; move it away";
  }
}
