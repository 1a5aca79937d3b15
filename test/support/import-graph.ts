/**
 * The import graph of `src/` and the rules it must keep (test/unit/layers.test.ts): every
 * module belongs to a stage, a stage imports only its own and earlier stages, the leaves import
 * nothing of the project, and no import closes a circle. Imports are read by TypeScript's own
 * pre-processor: static, type-only, `export … from` and `import("…")` with a literal name alike.
 */
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import ts from "typescript";

/** File (relative to the source root, `/`-separated) → the project files it imports. */
export type ImportGraph = ReadonlyMap<string, readonly string[]>;

/**
 * The stages, earliest first. A module may import modules of its own stage and of earlier ones:
 *
 * - facts: what every stage shares and that depends on nothing of the project (the error family,
 *   Zig's releases and keywords, "did you mean", reading a file safely, the package's own place
 *   and version). Each imports nothing of the project, not even another fact.
 * - spec → model → render → plan → write: the pipeline of DESIGN.md section 1, in its order.
 * - toolchain: finds, installs and runs Zig on what was written; it needs only the facts.
 * - pipeline: `generate.ts` strings spec to write together for the CLI, scripts and tests.
 * - cli: argument parsing, the commands, what is printed; the only stage that sees the user.
 * - api: `index.ts`, the package's programmatic face, re-exports only.
 */
export const STAGES = [
  "facts",
  "spec",
  "model",
  "render",
  "plan",
  "write",
  "toolchain",
  "pipeline",
  "cli",
  "api",
] as const;

export type Stage = (typeof STAGES)[number];

const FACTS: ReadonlySet<string> = new Set([
  "errors.ts",
  "zig-facts.ts",
  "did-you-mean.ts",
  "read-file.ts",
  "package.ts",
]);

/** The stage a file belongs to; undefined for a file no rule places (itself a violation). */
export function stageOf(file: string): Stage | undefined {
  if (FACTS.has(file)) return "facts";
  if (file === "generate.ts") return "pipeline";
  if (file === "index.ts") return "api";
  const folder = file.split("/")[0];
  const stage = STAGES.find((s) => s === folder);
  return stage === "facts" || stage === "pipeline" || stage === "api" ? undefined : stage;
}

/**
 * Files inside a stage that import nothing of the project (leaves within it), and files no
 * module may import (entry points).
 */
const LEAVES: ReadonlySet<string> = new Set(["cli/types.ts"]);
const ENTRY_POINTS: ReadonlySet<string> = new Set(["index.ts", "cli/main.ts"]);
/** The dispatcher loads the commands; a command that imported it would close a circle. */
const DISPATCHER = "cli/run.ts";

export function readImportGraph(root: string): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of sourceFiles(root, "")) {
    const text = readFileSync(path.join(root, file), "utf8");
    const imported = ts
      .preProcessFile(text, true, true)
      .importedFiles.map((f) => f.fileName)
      // Relative imports of modules (`./x.js`); a generated `.cjs` of the build is no source.
      .filter((name) => name.startsWith(".") && name.endsWith(".js"))
      .map((name) => resolve(file, name));
    graph.set(file, [...new Set(imported)].sort());
  }
  return graph;
}

function sourceFiles(root: string, folder: string): string[] {
  const files: string[] = [];
  for (const entry of readdirSync(path.join(root, folder), { withFileTypes: true })) {
    const file = folder === "" ? entry.name : `${folder}/${entry.name}`;
    if (entry.isDirectory()) files.push(...sourceFiles(root, file));
    else if (entry.name.endsWith(".ts") && !entry.name.endsWith(".d.ts")) files.push(file);
  }
  return files.sort();
}

/** `./x.js` from `cli/run.ts` → `cli/x.ts` (NodeNext: sources are imported by their .js name). */
function resolve(from: string, name: string): string {
  const joined = path.posix.normalize(path.posix.join(path.posix.dirname(from), name));
  return joined.replace(/\.js$/, ".ts");
}

/** Every broken rule, one sentence each; empty when the graph keeps them all. */
export function layerViolations(graph: ImportGraph): string[] {
  const problems: string[] = [];
  for (const [file, imports] of graph) {
    const stage = stageOf(file);
    if (stage === undefined) {
      problems.push(`${file} belongs to no stage: place it in a stage folder or among the facts`);
      continue;
    }
    for (const target of imports) {
      const problem = importProblem(file, stage, target, graph);
      if (problem !== undefined) problems.push(problem);
    }
  }
  for (const circle of importCircles(graph)) {
    problems.push(`import circle: ${circle.join(", ")} (each imports its way to the others)`);
  }
  return problems;
}

function importProblem(
  file: string,
  stage: Stage,
  target: string,
  graph: ImportGraph,
): string | undefined {
  if (!graph.has(target)) return `${file} imports ${target}, which is not a source file`;
  const targetStage = stageOf(target);
  if (targetStage === undefined) return undefined; // reported once, as the file's own problem
  if (stage === "facts") return `${file} is a fact and imports ${target}: facts import nothing`;
  if (LEAVES.has(file)) return `${file} is a leaf and imports ${target}`;
  if (ENTRY_POINTS.has(target)) return `${file} imports ${target}, an entry point`;
  if (file.startsWith("cli/commands/") && target === DISPATCHER) {
    return `${file} imports the dispatcher ${DISPATCHER}, which loads it`;
  }
  if (STAGES.indexOf(targetStage) > STAGES.indexOf(stage)) {
    return `${file} (${stage}) imports ${target} (${targetStage}), a later stage`;
  }
  return undefined;
}

/** The circles of the graph: strongly connected parts of two files or more, or a self-import. */
export function importCircles(graph: ImportGraph): string[][] {
  // Tarjan's algorithm, iterative over an explicit stack of (file, next edge) frames.
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const circles: string[][] = [];
  let counter = 0;
  for (const start of [...graph.keys()].sort()) {
    if (index.has(start)) continue;
    const frames: { file: string; edge: number }[] = [{ file: start, edge: 0 }];
    index.set(start, counter);
    low.set(start, counter++);
    stack.push(start);
    onStack.add(start);
    while (frames.length > 0) {
      const frame = frames[frames.length - 1]!;
      const edges = (graph.get(frame.file) ?? []).filter((t) => graph.has(t));
      if (frame.edge < edges.length) {
        const next = edges[frame.edge++]!;
        if (!index.has(next)) {
          index.set(next, counter);
          low.set(next, counter++);
          stack.push(next);
          onStack.add(next);
          frames.push({ file: next, edge: 0 });
        } else if (onStack.has(next)) {
          low.set(frame.file, Math.min(low.get(frame.file)!, index.get(next)!));
        }
        continue;
      }
      frames.pop();
      const parent = frames[frames.length - 1];
      if (parent !== undefined) {
        low.set(parent.file, Math.min(low.get(parent.file)!, low.get(frame.file)!));
      }
      if (low.get(frame.file) !== index.get(frame.file)) continue;
      const part: string[] = [];
      for (;;) {
        const member = stack.pop()!;
        onStack.delete(member);
        part.push(member);
        if (member === frame.file) break;
      }
      const selfImport = (graph.get(frame.file) ?? []).includes(frame.file);
      if (part.length > 1 || selfImport) circles.push(part.sort());
    }
  }
  return circles;
}
