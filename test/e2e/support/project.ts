/**
 * Generated projects under test: each (spec, Zig version) is generated, formatted-checked and
 * built once per run (see `oncePerRun`), in its own directory of the run's temporary folder;
 * its own tests (`zig build test`, a second whole compile) run once per run too, but only for
 * the tests that ask for them (`builtProject`, `builtSpecValue`), not for those that only need
 * the binary (`programOf`, `compiledSpecValue`).
 */
import { copyFile, readFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import path from "node:path";
import { inject } from "vitest";
import {
  generate,
  PACKAGE_ROOT,
  ZIG_STEPS,
  type StepResult as ZigStepResult,
} from "../../../src/index.js";
import { oncePerRun } from "./once.js";
import { buildLogged, provisionZig, zigEnv } from "./zig.js";

/** The specs the suite builds: the examples, plus one of its own for TCP whoami. */
export const SPECS = {
  custom: "examples/custom.json",
  dns: "examples/dns.json",
  http: "examples/http.json",
  kv: "examples/kv.json",
  mixed: "examples/mixed.json",
  notes: "examples/notes.json",
  "notes-uploads": "test/e2e/specs/notes-uploads.json",
  proxy: "examples/proxy.json",
  reflect: "examples/reflect.json",
  resp: "examples/resp.json",
  udp: "examples/udp.json",
  "whoami-pair": "test/e2e/specs/whoami-pair.json",
} as const;

export type SpecKey = keyof typeof SPECS;

export const EXAMPLES: readonly SpecKey[] = [
  "custom",
  "dns",
  "http",
  "kv",
  "mixed",
  "notes",
  "proxy",
  "reflect",
  "resp",
  "udp",
];

export interface StepResult {
  readonly ok: boolean;
  /** The command as a user would type it, e.g. `zig build test`. */
  readonly command: string;
  readonly output: string;
  readonly ms: number;
}

/** A project generated, `zig fmt --check`ed and built (its own tests not run). */
export interface CompiledProject {
  /** The spec's key in `SPECS`, or the key of a spec given as a value. */
  readonly spec: string;
  readonly version: string;
  readonly dir: string;
  /** `zig-out/bin/<name>`. */
  readonly binary: string;
  readonly name: string;
  readonly steps: {
    readonly generate: StepResult;
    readonly fmt: StepResult;
    readonly build: StepResult;
  };
}

/** A compiled project whose own tests ran too. */
export interface BuiltProject extends CompiledProject {
  readonly steps: CompiledProject["steps"] & { readonly test: StepResult };
}

/** Builds and tests (once per run) the project for `spec` with Zig `version`. */
export async function builtProject(spec: SpecKey, version: string): Promise<BuiltProject> {
  return tested(await compiledProject(spec, version));
}

/** The project's binary; throws with the compiler's output when it did not build. */
export async function programOf(spec: SpecKey, version: string): Promise<string> {
  const project = await compiledProject(spec, version);
  for (const step of [project.steps.generate, project.steps.build]) {
    if (!step.ok)
      throw new Error(`${step.command} failed for ${spec} (zig ${version}):\n${step.output}`);
  }
  return project.binary;
}

async function compiledProject(spec: SpecKey, version: string): Promise<CompiledProject> {
  const dir = path.join(inject("e2eRunDir"), `zig-${version}`, spec);
  return oncePerRun(dir, async () => {
    const file = path.join(PACKAGE_ROOT, SPECS[spec]);
    const raw = JSON.parse(await readFile(file, "utf8")) as unknown;
    return buildSpec({ key: spec, specFile: SPECS[spec], raw }, version, dir);
  });
}

/**
 * Builds and tests (once per run) a spec the test holds as a value, such as one drawn by
 * fast-check; `key` names its directory in the run's folder.
 */
export async function builtSpecValue(
  key: string,
  raw: { readonly name: string },
  version: string,
): Promise<BuiltProject> {
  return tested(await compiledSpecValue(key, raw, version));
}

/** `builtSpecValue` without the project's own tests: for a test that needs the binary. */
export async function compiledSpecValue(
  key: string,
  raw: { readonly name: string },
  version: string,
): Promise<CompiledProject> {
  // `spec-` keeps a test's own spec apart from the example of the same name (`proxy`).
  const dir = path.join(inject("e2eRunDir"), `zig-${version}`, `spec-${key}`);
  return oncePerRun(dir, () => buildSpec({ key, specFile: `${key}.json`, raw }, version, dir));
}

/** Runs (once per run) the compiled project's `zig build test`. */
async function tested(project: CompiledProject): Promise<BuiltProject> {
  const test = await oncePerRun(`${project.dir}.test`, async (): Promise<StepResult> => {
    if (!project.steps.generate.ok) return skipped(ZIG_STEPS.test);
    const [step] = (
      await buildLogged({
        version: project.version,
        zig: await provisionZig(project.version),
        dir: project.dir,
        steps: [ZIG_STEPS.test],
        env: zigEnv(project.version),
        timeoutMs: ZIG_STEP_TIMEOUT_MS,
      })
    ).steps;
    return stepResult(step!);
  });
  return { ...project, steps: { ...project.steps, test } };
}

function skipped(args: readonly string[]): StepResult {
  return {
    ok: false,
    command: ["zig", ...args].join(" "),
    output: "not run: generation failed",
    ms: 0,
  };
}

interface SpecSource {
  readonly key: string;
  readonly specFile: string;
  readonly raw: unknown;
}

async function buildSpec(
  source: SpecSource,
  version: string,
  dir: string,
): Promise<CompiledProject> {
  const zig = await provisionZig(version);
  const generated = await timed(`gen-reuseport ${source.specFile} --out ${dir}`, async () => {
    const prepared = await generate({
      specFile: source.specFile,
      spec: source.raw,
      outDir: dir,
      cwd: PACKAGE_ROOT,
    });
    const copied = await copyExampleModules(source.raw, dir);
    return { ok: true, output: `${prepared.counts.create} files written${copied}` };
  });
  const name = (source.raw as { name: string }).name;
  const steps = [ZIG_STEPS.fmt, ZIG_STEPS.build];
  const [fmt, build] = generated.ok
    ? (
        await buildLogged({
          version,
          zig,
          dir,
          steps,
          env: zigEnv(version),
          timeoutMs: ZIG_STEP_TIMEOUT_MS,
          keepGoing: true,
        })
      ).steps.map(stepResult)
    : steps.map(skipped);
  return {
    spec: source.key,
    version,
    dir,
    name,
    binary: path.join(dir, "zig-out", "bin", name),
    steps: { generate: generated, fmt: fmt!, build: build! },
  };
}

/**
 * The examples' application modules are user files: the generator writes a stub once, and the
 * real implementation lives in `examples/app/<module>.zig`. Like a user who keeps their module
 * under version control, the suite puts it over the stub before building.
 */
async function copyExampleModules(raw: unknown, dir: string): Promise<string> {
  const listeners = (raw as { listeners?: unknown[] }).listeners ?? [];
  const modules = new Set<string>();
  for (const l of listeners) {
    const module = (l as { app?: { module?: unknown } }).app?.module;
    if (typeof module === "string") modules.add(module);
  }
  const copied: string[] = [];
  for (const module of modules) {
    const from = path.join(PACKAGE_ROOT, "examples", "app", `${module}.zig`);
    if (!existsSync(from)) continue;
    await copyFile(from, path.join(dir, "src", "app", `${module}.zig`));
    copied.push(`examples/app/${module}.zig`);
  }
  return copied.length === 0 ? "" : `; copied ${copied.join(", ")}`;
}

const ZIG_STEP_TIMEOUT_MS = 10 * 60_000;

function stepResult(step: ZigStepResult): StepResult {
  const how = step.timedOut ? "timed out" : `exit code ${step.exitCode ?? step.signal}`;
  return {
    ok: step.ok,
    command: step.command,
    output: `${step.output}\n(${how})`.trim(),
    ms: step.ms,
  };
}

async function timed(
  command: string,
  run: () => Promise<{ ok: boolean; output: string }>,
): Promise<StepResult> {
  const start = Date.now();
  try {
    const { ok, output } = await run();
    return { ok, output, command, ms: Date.now() - start };
  } catch (error) {
    const output = error instanceof Error ? (error.stack ?? error.message) : String(error);
    return { ok: false, output, command, ms: Date.now() - start };
  }
}
