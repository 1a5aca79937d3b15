/**
 * The pipeline, end to end: load → validate → model → render → plan, then (for a real run)
 * write. The CLI only parses arguments and calls these; tests and scripts call them directly.
 */
import { readFile } from "node:fs/promises";
import { homedir } from "node:os";
import path from "node:path";
import { ConflictError, OutputError, SpecError, type ConflictLine } from "./errors.js";
import { buildModel, type ServiceModel } from "./model/model.js";
import { GENERATOR_VERSION, TEMPLATES_DIR } from "./package.js";
import { readDiskState } from "./plan/disk-state.js";
import { inspectOutputDirectory, type OutputDirectory } from "./plan/out-dir.js";
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
import { isUserOwned, render, type Rendered } from "./render/render.js";
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
  /** The user's home directory, refused as an output directory (default: `os.homedir()`). */
  readonly homeDir?: string;
}

export interface PreparedGeneration {
  readonly spec: Spec;
  readonly model: ServiceModel;
  readonly rendered: Rendered;
  readonly plan: Plan;
  readonly counts: PlanCounts;
  /** The output directory as shown to the user (`--out` as given, or the spec's name). */
  readonly displayDir: string;
  /** The output directory, absolute, with the links of `--out` itself resolved. */
  readonly outDir: string;
  readonly directory: OutputDirectory;
  /** `--force` was given. */
  readonly force: boolean;
  /** Routes of the spec that a kept module file does not declare yet (it is the user's). */
  readonly missingRoutes: readonly MissingRoute[];
}

/** A route whose function the user must add: the build fails until it is there. */
export interface MissingRoute {
  /** The module file, relative to the output directory. */
  readonly file: string;
  readonly route: string;
  readonly method: string;
  readonly path: string;
  readonly signature: string;
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
  const force = options.force ?? false;
  const userFiles = new Set([...rendered.keys()].filter(isUserOwned));
  const directory = await inspectOutputDirectory(path.resolve(cwd, displayDir), displayDir, {
    home: options.homeDir ?? homedir(),
    userFiles,
  });
  const { manifest } = directory;
  const disk = await readDiskState(directory, pathsToInspect(rendered, manifest));
  const plan = planFiles(rendered, disk, manifest, { force });
  const kept = new Set(plan.files.filter((f) => f.action === "keep").map((f) => f.path));
  const missingRoutes = await findMissingRoutes(model, kept, directory.root);
  return {
    spec: result.spec,
    model,
    rendered,
    plan,
    counts: countActions(plan),
    displayDir,
    outDir: directory.root,
    directory,
    force,
    missingRoutes,
  };
}

/**
 * Reads each kept module file for `pub fn <route>`: a route added to the spec after the file
 * was created is named here, so the user learns of it before the build fails on it.
 */
async function findMissingRoutes(
  model: ServiceModel,
  kept: ReadonlySet<string>,
  root: string,
): Promise<MissingRoute[]> {
  const missing: MissingRoute[] = [];
  for (const app of model.apps) {
    if (!kept.has(app.file)) continue;
    const text = await readFile(path.join(root, app.file), "utf8").catch(() => undefined);
    if (text === undefined) continue;
    for (const route of app.routes) {
      if (declaresFunction(text, route.name)) continue;
      const { name, method, path: routePath, signature } = route;
      missing.push({ file: app.file, route: name, method, path: routePath, signature });
    }
  }
  return missing;
}

/** Whether Zig source declares `pub fn name(`; names are validated identifiers. */
export function declaresFunction(source: string, name: string): boolean {
  return new RegExp(`(^|[^A-Za-z0-9_])pub\\s+fn\\s+${name}\\s*\\(`).test(source);
}

/**
 * Writes a prepared plan; refuses (writing nothing) if any file is a conflict (exit 4), or if
 * the directory holds files of someone else and no manifest, unless `--force` (exit 74).
 */
export async function applyGeneration(prepared: PreparedGeneration): Promise<void> {
  const refused = conflictLines(prepared);
  if (refused.length > 0) throw new ConflictError(refused);
  if (prepared.directory.foreign && !prepared.force) {
    throw new OutputError(
      `${prepared.displayDir}: is not empty and was not written by gen-reuseport (no ` +
        ".gen-reuseport.json); choose a new or empty directory, or rerun with --force to " +
        "generate into it",
    );
  }
  await applyPlan(prepared.outDir, prepared.plan, prepared.displayDir);
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
    reason: conflictText(f.reason ?? "edited", f.path),
  }));
}

export function displayPath(displayDir: string, file: string): string {
  return path.posix.join(displayDir.split(path.sep).join("/"), file);
}

export function conflictText(reason: ConflictReason, file: string): string {
  switch (reason) {
    case "edited":
      return (
        `edited by hand since gen-reuseport wrote it; ${keepHint(file)}rerun with --force ` +
        "to overwrite it"
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

/**
 * Where a hand edit can live instead. Only handler code has a home of its own (the custom
 * handler, `src/handler.zig`); an edit of config, build files or the README does not.
 */
function keepHint(file: string): string {
  const isHandlerCode = file === "src/handlers.zig" || file.startsWith("src/handlers/");
  return isHandlerCode ? "keep your change by moving it to src/handler.zig, or " : "";
}
