/**
 * Whole-program upgrades: a SIGHUP that finds a binary on disk with another spec or another
 * supervisor starts it as a new supervisor, which takes the listening sockets over; the old
 * one drains and exits 0. Clients keep connecting through it and none may fail on a listener
 * that exists before and after. Each kind of spec change is one upgrade: listeners added,
 * removed and moved with the worker count raised (base → changed), the worker count lowered
 * (changed → fewer), and another supervisor with the same spec (base → other-supervisor). A
 * new binary that is missing, exits at start, or never says ready leaves the old one serving.
 * With --cpu-affinity, lowering the worker count composes the CPU steering with the upgrade's:
 * pinned workers, connections steered by CPU before and after, and no client fails.
 *
 * The new supervisor shares the old one's standard output (it inherits it), so one Program
 * sees the events of both; after the old one exits, the new one's are read from there too.
 */
import { spawnSync } from "node:child_process";
import { chmod, copyFile, mkdtemp, readFile, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startActivated } from "./support/activator.js";
import { ClientLoad } from "./support/client-load.js";
import { allowedCpus, whoamiFromCpu } from "./support/cpus.js";
import { NotifySocket } from "./support/notify-socket.js";
import { freePort, parseWhoami, tcpExchange } from "./support/net.js";
import {
  isAlive,
  portOf,
  Program,
  READY_TIMEOUT_MS,
  STOP_TIMEOUT_MS,
  stopAllPrograms,
  waitUntilGone,
  type ReadyEvent,
  type ServiceEvent,
} from "./support/program.js";
import {
  OTHER_SUPERVISOR_FINGERPRINT,
  UPGRADE_ANY_LOOPBACK_PORT,
  UPGRADE_SERVICE,
  upgradeBinaryOf,
  upgradePorts,
  type UpgradePorts,
  type UpgradeVariant,
} from "./support/supervised.js";
import { FULL_MATRIX_VERSIONS } from "./support/zig.js";

const SETUP_TIMEOUT_MS = 15 * 60_000;
const TEST_TIMEOUT_MS = 90_000;
/**
 * The never-ready case's `--ready-timeout`: a new supervisor gets it and 5 s more to say ready
 * (15 s by default); then some slack for the wait.
 */
const READY_LIMIT_MS = 2_000;
const NEVER_READY_MS = READY_LIMIT_MS + 5_000 + 5_000;
const HOST = "127.0.0.1";

interface UpgradeReady extends ReadyEvent {
  readonly upgraded_from?: number;
  readonly supervisor_fingerprint: string;
}

interface ErrorEvent extends ServiceEvent {
  readonly message: string;
  readonly generation?: number;
  readonly serving_generation?: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `program`'s events (bounded) for one matching `where`, also after it exited: a new
 * supervisor writes to the same output. */
async function eventually<T extends ServiceEvent>(
  program: Program,
  name: string,
  where: (e: T) => boolean,
  timeoutMs: number,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = program.find<T>(name, where);
    if (found !== undefined) return found;
    if (Date.now() > deadline) throw program.failure(`no matching "${name}" in ${timeoutMs} ms`);
    await sleep(50);
  }
}

/** Whether a TCP connection to `port` is refused now. */
async function refused(port: number): Promise<boolean> {
  try {
    await tcpExchange(HOST, port, { timeoutMs: 2_000 });
    return false;
  } catch (error) {
    return /ECONNREFUSED/.test(String(error));
  }
}

async function whoami(port: number) {
  return parseWhoami((await tcpExchange(HOST, port, { timeoutMs: 3_000 })).toString());
}

describe.each(FULL_MATRIX_VERSIONS)("zig %s", (version) => {
  let scratch: string;
  let ports: UpgradePorts;
  const binaries = new Map<UpgradeVariant, string>();

  beforeAll(async () => {
    scratch = await mkdtemp(path.join(tmpdir(), "gen-reuseport-upgrade-"));
    ports = await upgradePorts(version);
    // Built side by side: each Zig build keeps about one core busy.
    const variants = ["base", "changed", "fewer", "other-supervisor"] as const;
    const built = await Promise.all(variants.map((v) => upgradeBinaryOf(v, version)));
    variants.forEach((variant, i) => binaries.set(variant, built[i]!));
  }, SETUP_TIMEOUT_MS);

  let receiver: NotifySocket | undefined;

  afterEach(async () => {
    receiver?.close();
    receiver = undefined;
    await stopAllPrograms();
  });

  afterAll(async () => {
    if (scratch !== undefined) await rm(scratch, { recursive: true, force: true });
  });

  /** Starts a copy of `variant` at a path of its own (the path a restart executes). */
  async function start(
    variant: UpgradeVariant,
    env: NodeJS.ProcessEnv = {},
    extra: readonly string[] = [],
    cpus?: readonly number[],
  ) {
    const dir = await mkdtemp(path.join(scratch, `${variant}-`));
    const exe = path.join(dir, UPGRADE_SERVICE);
    const pidFile = path.join(dir, "pid");
    await copyFile(binaries.get(variant)!, exe);
    await chmod(exe, 0o755);
    const args = [...UPGRADE_ANY_LOOPBACK_PORT, "--pid-file", pidFile, ...extra];
    // `cpus`: the CPUs the program may use (taskset execs it: the pid is the program's).
    const program =
      cpus === undefined
        ? Program.start(exe, args, env)
        : Program.start("taskset", ["-c", cpus.join(","), exe, ...args], env);
    const ready = await program.waitForEvent<UpgradeReady>("ready", READY_TIMEOUT_MS);
    return { program, ready, exe, pidFile, dir };
  }

  /** Puts `file` at `exe` the way a deploy does: a new file renamed over the path. */
  async function deploy(exe: string, file: string | { script: string }) {
    if (typeof file === "string") {
      await copyFile(file, `${exe}.new`);
      await chmod(`${exe}.new`, 0o755);
    } else {
      await writeFile(`${exe}.new`, file.script, { mode: 0o755 });
    }
    await rename(`${exe}.new`, exe);
  }

  /** SIGHUP; resolves with the new supervisor's ready event once the old one exited 0. */
  async function upgrade(program: Program, generation: number) {
    program.signal("SIGHUP");
    const next = await program.waitForEvent<UpgradeReady>(
      "ready",
      READY_TIMEOUT_MS + 5_000,
      (e) => e.upgraded_from === program.pid,
    );
    expect(next.pid).not.toBe(program.pid);
    expect(next.generation).toBe(generation);
    const exit = await program.waitForExit(STOP_TIMEOUT_MS);
    expect(exit.code, program.stderr).toBe(0);
    const stopped = await eventually(program, "stopped", (e) => e.successor === next.pid, 1_000);
    expect(stopped.reason).toBe("graceful");
    expect(program.find("upgraded", (e) => e.successor === next.pid)).toBeDefined();
    return next;
  }

  /** Polls (bounded) the admin listener's /status until `pid` answers it; the last pid seen. */
  async function adminStatusPid(port: number, pid: number): Promise<number | undefined> {
    const deadline = Date.now() + 10_000;
    let seen: number | undefined;
    while (Date.now() < deadline) {
      const reply = await tcpExchange(HOST, port, {
        send: `GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
        timeoutMs: 2_000,
      }).catch(() => undefined);
      const body = reply?.toString().split("\r\n\r\n")[1];
      seen = body === undefined ? seen : (JSON.parse(body) as { pid: number }).pid;
      if (seen === pid) return seen;
      await sleep(100);
    }
    return seen;
  }

  /** Stops the supervisor that took over, and waits until it and its workers are gone. */
  async function stopSuccessor(program: Program, ready: UpgradeReady) {
    process.kill(ready.pid, "SIGTERM");
    const stopped = await eventually(
      program,
      "stopped",
      (e) => e.generation === ready.generation && e.successor === undefined,
      STOP_TIMEOUT_MS,
    );
    const pids = [ready.pid, ...ready.workers.map((w) => w.pid)];
    expect(await waitUntilGone(pids, STOP_TIMEOUT_MS)).toEqual([]);
    return stopped;
  }

  it(
    "hands over to a binary with another supervisor: a new pid serves, the old exits 0, no " +
      "client fails, and systemd hears the new main pid",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const socketPath = path.join(scratch, `notify-${process.pid}-${Date.now()}.sock`);
      receiver = await NotifySocket.bind(socketPath);
      // The admin port is not shared: the new supervisor binds it once the old one let go.
      const adminPort = await freePort("tcp", HOST);
      const { program, ready, exe, pidFile } = await start(
        "base",
        { NOTIFY_SOCKET: socketPath },
        ["--admin", `${HOST}:${adminPort}`],
      );
      await receiver.waitFor(new RegExp(`^READY=1\nMAINPID=${program.pid}\n`));
      const load = new ClientLoad({
        who: portOf(ready, "who"),
        web: portOf(ready, "web"),
        uecho: portOf(ready, "uecho"),
      });
      await sleep(300);
      await deploy(exe, binaries.get("other-supervisor")!);
      const next = await upgrade(program, 2);
      expect(next.supervisor_fingerprint).toBe(OTHER_SUPERVISOR_FINGERPRINT);
      await sleep(300);
      const seen = await load.stop();
      console.log(
        `zig ${version}: supervisor upgrade under load: ${seen.whoami} whoami, ${seen.http} ` +
          `http, ${seen.datagrams} datagrams, ${seen.failures.length} failures`,
      );
      expect(seen.failures).toEqual([]);
      expect(seen.whoami).toBeGreaterThan(0);
      expect(seen.http).toBeGreaterThan(0);
      expect(seen.datagrams).toBeGreaterThan(0);
      expect([...seen.generations].sort()).toEqual([1, 2]);

      // The same ports, now served by the new supervisor's workers only.
      expect(portOf(next, "who")).toBe(portOf(ready, "who"));
      const newWorkers = new Set(next.workers.map((w) => w.pid));
      for (let i = 0; i < 10; i++) {
        const who = await whoami(portOf(next, "who"));
        expect(who.gen).toBe(2);
        expect(newWorkers.has(who.pid)).toBe(true);
      }
      expect((await readFile(pidFile, "utf8")).trim()).toBe(String(next.pid));
      for (const w of ready.workers) expect(isAlive(w.pid), `old worker ${w.pid}`).toBe(false);
      expect(await adminStatusPid(adminPort, next.pid)).toBe(next.pid);

      // RELOADING=1 at the SIGHUP, then the new main pid with READY=1, from the old supervisor;
      // no STOPPING=1 when the old one leaves, only when the service stops.
      const messages = receiver.messages;
      const reloading = messages.findIndex((m) => m.startsWith("RELOADING=1\nMONOTONIC_USEC="));
      const handed = messages.findIndex((m) => m.startsWith(`MAINPID=${next.pid}\nREADY=1`));
      expect(reloading, JSON.stringify(messages)).toBeGreaterThan(0);
      expect(handed, JSON.stringify(messages)).toBeGreaterThan(reloading);
      expect(messages.filter((m) => m.startsWith("STOPPING=1"))).toEqual([]);
      await stopSuccessor(program, next);
      await receiver.waitFor(/^STOPPING=1$/);
    },
  );

  it(
    "adds, removes and moves listeners and raises the worker count, losing no client of a " +
      "listener that stays",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const { program, ready, exe } = await start("base");
      expect(ready.workers).toHaveLength(2);
      expect((await whoami(ports.gone)).gen).toBe(1);
      expect((await whoami(ports.moved)).gen).toBe(1);
      expect(await refused(ports.added)).toBe(true);
      const load = new ClientLoad({ who: portOf(ready, "who"), uecho: portOf(ready, "uecho") });
      await sleep(300);
      await deploy(exe, binaries.get("changed")!);
      const next = await upgrade(program, 2);
      await sleep(300);
      const seen = await load.stop();
      expect(seen.failures).toEqual([]);

      expect(next.workers).toHaveLength(3);
      expect(next.listeners.map((l) => l.name)).toEqual(["who", "web", "uecho", "moved", "added"]);
      expect(portOf(next, "moved")).toBe(ports.movedTo);
      // Added and moved: served by the new program; removed, and the old address of the
      // moved one: closed with the old program.
      expect((await whoami(ports.added)).gen).toBe(2);
      expect((await whoami(ports.movedTo)).gen).toBe(2);
      expect(await refused(ports.gone)).toBe(true);
      expect(await refused(ports.moved)).toBe(true);
      // Every slot of the three serves the listener that stays.
      const workers = new Set<number>();
      for (let i = 0; i < 60 && workers.size < 3; i++) {
        workers.add((await whoami(portOf(next, "who"))).worker);
      }
      expect([...workers].sort()).toEqual([0, 1, 2]);
      await stopSuccessor(program, next);
    },
  );

  it(
    "lowers the worker count, steering new connections away from the sockets left behind " +
      "until they are empty",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const { program, ready, exe } = await start("changed");
      expect(ready.workers).toHaveLength(3);
      const load = new ClientLoad({
        who: portOf(ready, "who"),
        web: portOf(ready, "web"),
        uecho: portOf(ready, "uecho"),
      });
      await sleep(300);
      await deploy(exe, binaries.get("fewer")!);
      const next = await upgrade(program, 2);
      await sleep(300);
      const seen = await load.stop();
      console.log(
        `zig ${version}: 3 → 1 workers under load: ${seen.whoami} whoami, ${seen.http} http, ` +
          `${seen.datagrams} datagrams, ${seen.failures.length} failures`,
      );
      expect(seen.failures).toEqual([]);
      expect(next.workers).toHaveLength(1);
      for (let i = 0; i < 10; i++) {
        const who = await whoami(portOf(next, "who"));
        expect(who).toMatchObject({ worker: 0, pid: next.workers[0]!.pid, gen: 2 });
      }
      await stopSuccessor(program, next);
    },
  );

  it(
    "with --cpu-affinity lowers the worker count: workers pinned and connections steered by " +
      "CPU before and after, losing no client",
    { timeout: TEST_TIMEOUT_MS },
    async (context) => {
      // Two CPUs of those allowed, the program started on them alone (any machine with 2 or
      // more runs the same case).
      const allowed = allowedCpus("self").slice(0, 2);
      if (allowed.length < 2) {
        const why = `${allowed.length} CPU allowed: this case needs 2`;
        if (process.env.CI === "true") throw new Error(`CI run fails: ${why}`);
        return context.skip(why);
      }
      const { program, ready, exe } = await start("changed", {}, ["--cpu-affinity"], allowed);
      const pidOf = (r: UpgradeReady, index: number) =>
        r.workers.find((w) => w.index === index)!.pid;
      // 3 workers on 2 CPUs: slots 0 and 2 share the first CPU, slot 1 has the second.
      for (const w of ready.workers) expect(allowedCpus(w.pid)).toEqual([allowed[w.index % 2]]);
      const who = portOf(ready, "who");
      const first = new Set((await whoamiFromCpu(allowed[0]!, who, 10)).map((a) => a.pid));
      expect([...first].every((pid) => [pidOf(ready, 0), pidOf(ready, 2)].includes(pid))).toBe(
        true,
      );
      const second = (await whoamiFromCpu(allowed[1]!, who, 10)).map((a) => a.pid);
      expect(second).toEqual(Array<number>(10).fill(pidOf(ready, 1)));

      const web = portOf(ready, "web");
      const load = new ClientLoad({ who, web, uecho: portOf(ready, "uecho") });
      await sleep(300);
      await deploy(exe, binaries.get("fewer")!);
      const next = await upgrade(program, 2);
      await sleep(300);
      const seen = await load.stop();
      expect(seen.failures).toEqual([]);
      // One worker left, pinned to the first CPU: the program for 1 member sends every CPU's
      // connections to it, never to the sockets the old supervisor left behind.
      expect(next.workers).toHaveLength(1);
      expect(allowedCpus(next.workers[0]!.pid)).toEqual([allowed[0]]);
      for (const cpu of allowed) {
        const answers = await whoamiFromCpu(cpu, portOf(next, "who"), 5);
        expect(answers.map((a) => a.pid)).toEqual(Array<number>(5).fill(next.workers[0]!.pid));
      }
      await stopSuccessor(program, next);
    },
  );

  it(
    "hands sockets that came from systemd on to the new supervisor, unsteered, losing no client",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const dir = await mkdtemp(path.join(scratch, "activated-"));
      const exe = path.join(dir, UPGRADE_SERVICE);
      await copyFile(binaries.get("base")!, exe);
      await chmod(exe, 0o755);
      // `who` as a socket unit with ReusePort=no (both slots share its queue), `uecho` with
      // ReusePort=yes (the second slot joins its group with a socket of the program's own).
      const who = await freePort("tcp", HOST);
      const uecho = await freePort("udp", HOST);
      const program = startActivated(
        exe,
        [
          { name: "who", protocol: "tcp", host: HOST, port: who, reusePort: false },
          { name: "uecho", protocol: "udp", host: HOST, port: uecho, reusePort: true },
        ],
        ["--listen", "web=127.0.0.1:0"],
      );
      const ready = await program.waitForEvent<UpgradeReady>("ready", READY_TIMEOUT_MS);
      expect(portOf(ready, "who")).toBe(who);
      const load = new ClientLoad({ who, uecho });
      await sleep(300);
      await deploy(exe, binaries.get("other-supervisor")!);
      const next = await upgrade(program, 2);
      await sleep(300);
      const seen = await load.stop();
      expect(seen.failures).toEqual([]);
      expect(seen.datagrams).toBeGreaterThan(0);
      expect(portOf(next, "who")).toBe(who);
      expect(portOf(next, "uecho")).toBe(uecho);
      for (let i = 0; i < 10; i++) expect((await whoami(who)).gen).toBe(2);
      expect(next.listeners.map((l) => l.name)).toContain("gone");
      await stopSuccessor(program, next);
    },
  );

  /** A script that says it is another program when asked, and then does `rest`. */
  function impostor(rest: string): { script: string } {
    const identity = `spec=0000000000000000 supervisor=${OTHER_SUPERVISOR_FINGERPRINT}`;
    const answer = `if [ "$1" = --fingerprint ]; then echo '${identity}'; exit 0; fi`;
    return { script: `#!/bin/sh\n${answer}\n${rest}\n` };
  }

  /** After a failed upgrade: an error event, generation 1 serving, and a clean stop. */
  async function expectOldServing(
    program: Program,
    ready: UpgradeReady,
    message: RegExp,
    timeoutMs: number,
  ) {
    const error = await program.waitForEvent<ErrorEvent>("error", timeoutMs);
    expect(error).toMatchObject({ generation: 2, serving_generation: 1 });
    expect(error.message).toMatch(message);
    for (let i = 0; i < 10; i++) expect((await whoami(portOf(ready, "who"))).gen).toBe(1);
    for (const w of ready.workers) expect(isAlive(w.pid), `worker ${w.pid}`).toBe(true);
    expect(program.events.filter((e) => e.event === "ready")).toHaveLength(1);
    program.signal("SIGTERM");
    expect((await program.waitForExit(STOP_TIMEOUT_MS)).code).toBe(0);
  }

  it(
    "keeps the old program serving when the new binary is missing",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const { program, ready, exe } = await start("base");
      await rename(exe, `${exe}.moved`);
      program.signal("SIGHUP");
      await expectOldServing(program, ready, /did not start.*exited with code 127/, 10_000);
    },
  );

  it(
    "keeps the old program serving when the new binary exits 1 at start",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const { program, ready, exe } = await start("base");
      await deploy(exe, impostor("exit 1"));
      program.signal("SIGHUP");
      const message = /did not take over: pid \d+ exited with code 1 before it was ready/;
      await expectOldServing(program, ready, message, 10_000);
      expect(program.find("upgrading")).toBeDefined();
    },
  );

  it(
    "keeps the old program serving when the new binary never says ready, and stops it",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const limit = ["--ready-timeout", String(READY_LIMIT_MS)];
      const { program, ready, exe } = await start("base", {}, limit);
      await deploy(exe, impostor("exec sleep 60"));
      program.signal("SIGHUP");
      const upgrading = await program.waitForEvent("upgrading", 5_000);
      const successor = upgrading.successor as number;
      expect(isAlive(successor)).toBe(true);
      const message = new RegExp(
        `did not take over: pid \\d+ not ready in ${READY_LIMIT_MS + 5_000} ms`,
      );
      await expectOldServing(program, ready, message, NEVER_READY_MS);
      expect(await waitUntilGone([successor], STOP_TIMEOUT_MS)).toEqual([]);
    },
  );

  it("the variants differ in what a SIGHUP checks", { timeout: SETUP_TIMEOUT_MS }, () => {
    const identity = (binary: string) =>
      spawnSync(binary, ["--fingerprint"], { encoding: "utf8", timeout: 10_000 }).stdout;
    const base = identity(binaries.get("base")!);
    expect(identity(binaries.get("other-supervisor")!)).toMatch(
      new RegExp(`^${base.split(" ")[0]} supervisor=${OTHER_SUPERVISOR_FINGERPRINT}\n$`),
    );
    expect(identity(binaries.get("changed")!).split(" ")[0]).not.toBe(base.split(" ")[0]);
  });
});
