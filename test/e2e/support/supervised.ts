/**
 * Projects the supervisor and restart tests build: a spec of their own (whoami, HTTP and echo
 * over TCP, echo over UDP) and the restart bench's specs, each generated and built once per
 * (project, Zig version) in the run's temporary folder. Plus what those tests read from
 * /proc about the processes a supervisor made.
 */
import { copyFileSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { inject } from "vitest";
import { generate, PACKAGE_ROOT } from "../../../src/index.js";
import { freePort } from "./net.js";
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
 * hundred sockets, and a small output pool (1 MiB per worker, under the 2 MiB a connection
 * may have waiting) so that a client that never reads spends it, is no longer read, and meets
 * the write timeout. Ports are placeholders (see HOSTILE_ANY_LOOPBACK_PORT).
 */
export const HOSTILE_SPEC = {
  name: "hostile",
  workers: 2,
  maxConnections: 64,
  outputPoolBytes: 1048576,
  outputLimitBytes: 2097152,
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

/**
 * The privilege tests' service: started as root, its workers drop to "nobody". Its ports are
 * real (80 for HTTP, 81 for whoami): the tests run it in a network namespace of its own.
 */
export const PRIVILEGED_SPEC = {
  name: "privileged",
  workers: 2,
  user: "nobody",
  drainTimeoutMs: 3000,
  // Its request log goes to standard output unless a test names a file (--access-log).
  accessLog: { path: "-", format: "json" },
  listeners: [
    { name: "web", protocol: "tcp", address: "0.0.0.0", port: 80, handler: "http" },
    { name: "who", protocol: "tcp", address: "127.0.0.1", port: 81, handler: "whoami" },
  ],
} as const;

/**
 * The ready-timeout tests' service: UDP echo through a datagram module whose workers take as
 * long to start as a file says (test/e2e/fixtures/slowinit.zig).
 */
export const SLOW_INIT_SPEC = {
  name: "slow-init",
  workers: 2,
  listeners: [
    {
      name: "echo",
      protocol: "udp",
      address: "127.0.0.1",
      port: 9471,
      handler: "app",
      app: { module: "slowinit", datagram: {} },
    },
  ],
};

/** The example modules the soak's specs use, copied over the generated stubs. */
const SOAK_MODULES = { notes: "examples/app/notes.zig", resp: "examples/app/resp.zig" } as const;

/** What the projects are generated from: a spec value, or a spec file of the repository. */
const PROJECTS = {
  supervised: { spec: SUPERVISED_SPEC, file: "supervised.json", name: SUPERVISED_SPEC.name },
  hostile: { spec: HOSTILE_SPEC, file: "hostile.json", name: HOSTILE_SPEC.name },
  privileged: { spec: PRIVILEGED_SPEC, file: "privileged.json", name: PRIVILEGED_SPEC.name },
  // The same service without Zig's safety checks: what a client sends must not depend on them.
  "hostile-release-fast": {
    spec: HOSTILE_SPEC,
    file: "hostile.json",
    name: HOSTILE_SPEC.name,
    optimize: "ReleaseFast",
  },
  "restart-bench": { spec: undefined, file: "bench/specs/restart.json", name: "restart-bench" },
  "slow-init": {
    spec: SLOW_INIT_SPEC,
    file: "slow-init.json",
    name: SLOW_INIT_SPEC.name,
    modules: { slowinit: "test/e2e/fixtures/slowinit.zig" },
  },
  // The restart bench's upgrade variants (4 → 2 → 6 → 4 workers, a port moved, a listener
  // added and removed), one binary name for all.
  "upgrade-bench-a": { spec: undefined, file: "bench/specs/upgrade-a.json", name: "upgrade-bench" },
  "upgrade-bench-b": { spec: undefined, file: "bench/specs/upgrade-b.json", name: "upgrade-bench" },
  "upgrade-bench-c": { spec: undefined, file: "bench/specs/upgrade-c.json", name: "upgrade-bench" },
  "upgrade-bench-d": { spec: undefined, file: "bench/specs/upgrade-d.json", name: "upgrade-bench" },
  // The soak's specs (bench/soak.mjs): a (4 workers), b (2, one more listener), c (6, without
  // it), each with the notes and resp example modules over their stubs.
  "soak-a": {
    spec: undefined,
    file: "bench/specs/soak-a.json",
    name: "soak",
    modules: SOAK_MODULES,
  },
  "soak-b": {
    spec: undefined,
    file: "bench/specs/soak-b.json",
    name: "soak",
    modules: SOAK_MODULES,
  },
  "soak-c": {
    spec: undefined,
    file: "bench/specs/soak-c.json",
    name: "soak",
    modules: SOAK_MODULES,
  },
} as const;

export type ProjectKey = keyof typeof PROJECTS;

/**
 * The upgrade tests' family: one service (same name) built from several specs, each a
 * whole-program upgrade away from the base one. `who`, `web` and `uecho` are in every
 * variant and bound with `--listen …:0` (the new program is started with the old one's
 * command line, and takes their sockets over whatever the port); `gone`, `moved` and
 * `added` exist only in some, so no `--listen` can name them: their ports are picked once
 * per run and Zig version (see `upgradePorts`), distinct for each version, since sockets of
 * two runs on one port would join one reuseport group.
 */
export type UpgradeVariant = "base" | "changed" | "fewer" | "other-supervisor";

export interface UpgradePorts {
  readonly gone: number;
  readonly moved: number;
  readonly movedTo: number;
  readonly added: number;
}

export const UPGRADE_SERVICE = "upgraded";

/** `who`, `web` and `uecho` on 127.0.0.1 with a port the kernel picks. */
export const UPGRADE_ANY_LOOPBACK_PORT: readonly string[] = ["who", "web", "uecho"].flatMap(
  (name) => ["--listen", `${name}=127.0.0.1:0`],
);

/** The spec of `variant`: base has 2 workers; changed adds, removes and moves a listener and
 * has 3; fewer is changed with 1; other-supervisor is base with another supervisor. */
export function upgradeSpec(variant: UpgradeVariant, ports: UpgradePorts): object {
  const listener = (name: string, protocol: string, port: number, handler: string) => ({
    name,
    protocol,
    address: "127.0.0.1",
    port,
    handler,
  });
  const stay = [
    listener("who", "tcp", 9301, "whoami"),
    listener("web", "tcp", 9302, "http"),
    listener("uecho", "udp", 9303, "echo"),
  ];
  const base = {
    name: UPGRADE_SERVICE,
    drainTimeoutMs: 3000,
    workers: 2,
    listeners: [
      ...stay,
      listener("gone", "tcp", ports.gone, "whoami"),
      listener("moved", "tcp", ports.moved, "whoami"),
    ],
  };
  const changed = {
    ...base,
    workers: 3,
    listeners: [
      ...stay,
      listener("moved", "tcp", ports.movedTo, "whoami"),
      listener("added", "tcp", ports.added, "whoami"),
    ],
  };
  switch (variant) {
    case "base":
    case "other-supervisor":
      return base;
    case "changed":
      return changed;
    case "fewer":
      return { ...changed, workers: 1 };
  }
}

/** The ports of the listeners no `--listen` names, picked once per run and Zig version. */
export async function upgradePorts(version: string): Promise<UpgradePorts> {
  const key = path.join(inject("e2eRunDir"), `zig-${version}`, "upgrade-ports");
  return oncePerRun(key, async () => {
    const picked = new Set<number>();
    while (picked.size < 4) picked.add(await freePort("tcp", "127.0.0.1"));
    const [gone, moved, movedTo, added] = [...picked] as [number, number, number, number];
    return { gone, moved, movedTo, added };
  });
}

/**
 * A supervisor fingerprint no generator produces: what a binary from another generator version
 * or with changed supervisor sources carries (the upgrade variant `other-supervisor`).
 */
export const OTHER_SUPERVISOR_FINGERPRINT = "0123456789abcdef";

/** The built binary of an upgrade variant for Zig `version`, built once per run. */
export async function upgradeBinaryOf(variant: UpgradeVariant, version: string): Promise<string> {
  const ports = await upgradePorts(version);
  const dir = path.join(inject("e2eRunDir"), `zig-${version}`, `own-upgrade-${variant}`);
  const source = {
    spec: upgradeSpec(variant, ports),
    file: `upgrade-${variant}.json`,
    name: UPGRADE_SERVICE,
    ...(variant === "other-supervisor"
      ? { supervisorFingerprint: OTHER_SUPERVISOR_FINGERPRINT }
      : {}),
  };
  const built = await oncePerRun(dir, () => buildSource(source, version, dir));
  if (!built.ok) {
    throw new Error(`upgrade ${variant} (zig ${version}) did not build:\n${built.output}`);
  }
  return built.binary;
}

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
  return buildSource(PROJECTS[project], version, dir);
}

interface ProjectSource {
  readonly spec?: unknown;
  readonly file: string;
  readonly name: string;
  readonly optimize?: string;
  /** Replaces the generated supervisor fingerprint before the build (another supervisor). */
  readonly supervisorFingerprint?: string;
  /** Application modules (`src/app/<name>.zig`) replaced by files of the repository. */
  readonly modules?: Readonly<Record<string, string>>;
}

async function buildSource(
  source: ProjectSource,
  version: string,
  dir: string,
): Promise<BuildRecord> {
  const { spec, file, name, optimize, supervisorFingerprint, modules = {} } = source;
  const binary = path.join(dir, "zig-out", "bin", name);
  try {
    await generate({
      specFile: file,
      ...(spec === undefined ? {} : { spec }),
      outDir: dir,
      cwd: PACKAGE_ROOT,
    });
    if (supervisorFingerprint !== undefined) {
      const config = path.join(dir, "src", "config.zig");
      const text = readFileSync(config, "utf8");
      const pattern = /supervisor_fingerprint = "[0-9a-f]{16}"/;
      if (!pattern.test(text)) throw new Error("no supervisor_fingerprint in config.zig");
      const replacement = `supervisor_fingerprint = "${supervisorFingerprint}"`;
      writeFileSync(config, text.replace(pattern, replacement));
    }
    for (const [module, from] of Object.entries(modules)) {
      copyFileSync(path.join(PACKAGE_ROOT, from), path.join(dir, "src", "app", `${module}.zig`));
    }
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
