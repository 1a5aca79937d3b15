/**
 * Projects the supervisor and restart tests build: a spec of their own (whoami, HTTP and echo
 * over TCP, echo over UDP) and the restart bench's spec, each generated and built once per
 * (project, Zig version) in the run's temporary folder. Plus what those tests read from
 * /proc about the processes a supervisor made.
 */
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { inject } from "vitest";
import { generate, PACKAGE_ROOT } from "../../../src/index.js";
import { oncePerRun } from "./once.js";
import { provisionZig, runZigIn } from "./zig.js";

/**
 * The supervisor tests' service. Ports are placeholders: the tests bind every listener to
 * 127.0.0.1:0 with `--listen` and read the ports from the `ready` event.
 */
export const SUPERVISED_SPEC = {
  name: "supervised",
  workers: 2,
  drainTimeoutMs: 5000,
  listeners: [
    { name: "who", protocol: "tcp", address: "127.0.0.1", port: 9101, handler: "whoami" },
    { name: "web", protocol: "tcp", address: "127.0.0.1", port: 9102, handler: "http" },
    { name: "echo", protocol: "tcp", address: "127.0.0.1", port: 9103, handler: "echo" },
    { name: "uecho", protocol: "udp", address: "127.0.0.1", port: 9104, handler: "echo" },
  ],
} as const;

/** Every listener of SUPERVISED_SPEC on 127.0.0.1 with a port the kernel picks. */
export const ANY_LOOPBACK_PORT: readonly string[] = SUPERVISED_SPEC.listeners.flatMap((l) => [
  "--listen",
  `${l.name}=127.0.0.1:0`,
]);

/**
 * The hostile-client tests' service: the same four listeners, a small connection table (2
 * workers × 64 connections) so that a flood of idle clients passes the limit with a few
 * hundred sockets. Ports are placeholders (see HOSTILE_ANY_LOOPBACK_PORT).
 */
export const HOSTILE_SPEC = {
  name: "hostile",
  workers: 2,
  maxConnections: 64,
  drainTimeoutMs: 5000,
  listeners: [
    { name: "who", protocol: "tcp", address: "127.0.0.1", port: 9201, handler: "whoami" },
    { name: "web", protocol: "tcp", address: "127.0.0.1", port: 9202, handler: "http" },
    { name: "echo", protocol: "tcp", address: "127.0.0.1", port: 9203, handler: "echo" },
    { name: "uecho", protocol: "udp", address: "127.0.0.1", port: 9204, handler: "echo" },
  ],
} as const;

/** Every listener of HOSTILE_SPEC on 127.0.0.1 with a port the kernel picks. */
export const HOSTILE_ANY_LOOPBACK_PORT: readonly string[] = HOSTILE_SPEC.listeners.flatMap((l) => [
  "--listen",
  `${l.name}=127.0.0.1:0`,
]);

/** What the projects are generated from: a spec value, or a spec file of the repository. */
const PROJECTS = {
  supervised: { spec: SUPERVISED_SPEC, file: "supervised.json", name: SUPERVISED_SPEC.name },
  hostile: { spec: HOSTILE_SPEC, file: "hostile.json", name: HOSTILE_SPEC.name },
  // The same service without Zig's safety checks: what a client sends must not depend on them.
  "hostile-release-fast": {
    spec: HOSTILE_SPEC,
    file: "hostile.json",
    name: HOSTILE_SPEC.name,
    optimize: "ReleaseFast",
  },
  "restart-bench": { spec: undefined, file: "bench/specs/restart.json", name: "restart-bench" },
} as const;

export type ProjectKey = keyof typeof PROJECTS;

interface BuildRecord {
  readonly ok: boolean;
  readonly binary: string;
  /** What failed, with the compiler's output, when `ok` is false. */
  readonly output: string;
}

/**
 * The built binary of `project` for Zig `version`; throws with the compiler's output when it
 * does not build. Built once per run (see `oncePerRun`).
 */
export async function binaryOf(project: ProjectKey, version: string): Promise<string> {
  const dir = path.join(inject("e2eRunDir"), `zig-${version}`, `own-${project}`);
  const built = await oncePerRun(dir, () => buildOnce(project, version, dir));
  if (!built.ok) throw new Error(`${project} (zig ${version}) did not build:\n${built.output}`);
  return built.binary;
}

async function buildOnce(project: ProjectKey, version: string, dir: string): Promise<BuildRecord> {
  const source: { spec?: unknown; file: string; name: string; optimize?: string } =
    PROJECTS[project];
  const { spec, file, name, optimize } = source;
  const binary = path.join(dir, "zig-out", "bin", name);
  try {
    await generate({
      specFile: file,
      ...(spec === undefined ? {} : { spec }),
      outDir: dir,
      cwd: PACKAGE_ROOT,
    });
  } catch (error) {
    return { ok: false, binary, output: `generate ${file}: ${String(error)}` };
  }
  const zig = await provisionZig(version);
  const args = optimize === undefined ? ["build"] : ["build", `-Doptimize=${optimize}`];
  const built = await runZigIn(zig, args, dir, version);
  return { ok: built.ok, binary, output: `zig ${args.join(" ")}\n${built.output}` };
}

/** The fields of /proc/<pid>/stat after the command name (state, ppid, pgrp, …). */
function statFields(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name is in parentheses and may itself hold spaces or parentheses.
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  } catch {
    return undefined;
  }
}

/** The parent pid of `pid`, or undefined when it is gone. */
export function parentPid(pid: number): number | undefined {
  const fields = statFields(pid);
  return fields === undefined ? undefined : Number(fields[1]);
}

/**
 * The live (non-zombie) processes of process group `pgid`. Programs are started in a group
 * of their own and workers inherit it, so this finds workers the test was never told about.
 */
export function processGroupMembers(pgid: number): number[] {
  const members: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const fields = statFields(Number(entry));
    if (fields !== undefined && fields[0] !== "Z" && Number(fields[2]) === pgid) {
      members.push(Number(entry));
    }
  }
  return members;
}
