/**
 * No dark slots, and the supervisor's defences: a worker killed while the binary on disk is
 * broken, or stopped with SIGSTOP, has its slot adopted by another worker, so every new
 * connection is served within a second; the watchdog kills the stopped one (`worker_hung`);
 * an inherited SIGCHLD=SIG_IGN, a binary from another spec and a respawn pending at a restart
 * do no harm; systemd's watchdog gets WATCHDOG=1.
 */
import { readFileSync } from "node:fs";
import { chmod, copyFile, mkdtemp, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { parseWhoami, runBounded, tcpExchange } from "./support/net.js";
import { NotifySocket } from "./support/notify-socket.js";
import {
  isAlive,
  Program,
  portOf,
  READY_TIMEOUT_MS,
  startReady,
  STOP_TIMEOUT_MS,
  stopAllPrograms,
  waitUntilGone,
  type ReadyEvent,
  type ServiceEvent,
  type StoppedEvent,
} from "./support/program.js";
import { ANY_LOOPBACK_PORT, binaryOf, processGroupMembers } from "./support/supervised.js";
import { FULL_MATRIX_VERSIONS } from "./support/zig.js";

const SETUP_TIMEOUT_MS = 15 * 60_000;
const TEST_TIMEOUT_MS = 60_000;
const WORKERS = 4;
const HOST = "127.0.0.1";
/** The contract: a dark slot's connections are served within a second. */
const SERVED_WITHIN_MS = 1_000;

interface WorkerExitEvent extends ServiceEvent {
  readonly generation: number;
  readonly index: number;
  readonly pid: number;
  readonly signal?: number;
  readonly exit_code?: number;
  readonly expected: boolean;
}

interface WorkerEvent extends ServiceEvent {
  readonly generation: number;
  readonly index: number;
  readonly pid: number;
}

interface WorkerHungEvent extends WorkerEvent {
  readonly silent_ms: number;
}

interface ErrorEvent extends ServiceEvent {
  readonly message: string;
  readonly generation?: number;
  readonly serving_generation?: number;
}

function startSupervisor(binary: string, extra: readonly string[] = []) {
  return startReady(binary, ["--workers", String(WORKERS), ...ANY_LOOPBACK_PORT, ...extra]);
}

/**
 * `count` new whoami connections, 8 at a time, each allowed `SERVED_WITHIN_MS`; throws with
 * every failure. Returns the answers and the slowest exchange.
 */
async function whoamiEachWithinASecond(port: number, count: number) {
  let slowest = 0;
  const results = await runBounded(count, 8, async () => {
    const start = Date.now();
    const reply = await tcpExchange(HOST, port, { timeoutMs: SERVED_WITHIN_MS });
    slowest = Math.max(slowest, Date.now() - start);
    return parseWhoami(reply.toString());
  });
  const failed = results.filter((r) => r.status === "rejected");
  expect(failed.map((r) => String(r.reason))).toEqual([]);
  const answers = (results as PromiseFulfilledResult<ReturnType<typeof parseWhoami>>[]).map(
    (r) => r.value,
  );
  return { answers, slowest };
}

async function stopGracefully(program: Program): Promise<StoppedEvent> {
  program.signal("SIGTERM");
  const exit = await program.waitForExit(STOP_TIMEOUT_MS);
  expect(exit, program.stderr).toEqual({ code: 0, signal: null });
  const stopped = await program.waitForEvent<StoppedEvent>("stopped", 1_000);
  expect(processGroupMembers(program.pid)).toEqual([]);
  return stopped;
}

/** Polls (bounded) until `stderr` matches. */
async function waitForLog(program: Program, pattern: RegExp, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  while (!pattern.test(program.stderr)) {
    if (Date.now() > deadline) throw program.failure(`no log line ${pattern}`);
    await sleep(20);
  }
}

/** `python3 -c THIS PROGRAM ARGS…`: runs PROGRAM with SIGCHLD ignored, in the same process. */
const IGNORE_SIGCHLD_AND_EXEC = `
import os, signal, sys
signal.signal(signal.SIGCHLD, signal.SIG_IGN)
os.execvp(sys.argv[1], sys.argv[1:])
`;

/** Whether /proc/<pid>/status says SIGCHLD (17) is ignored. */
function ignoresSigchld(pid: number): boolean {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const mask = /^SigIgn:\s*([0-9a-f]+)$/m.exec(status)?.[1];
  if (mask === undefined) throw new Error(`no SigIgn in /proc/${pid}/status`);
  return (BigInt(`0x${mask}`) & (1n << 16n)) !== 0n;
}

describe.each(FULL_MATRIX_VERSIONS)("zig %s", (version) => {
  let binary: string;
  /** A service built from another spec (for the foreign-worker test), built here, not in it. */
  let foreign: string;
  let scratch: string;
  let receiver: NotifySocket | undefined;

  beforeAll(async () => {
    [binary, foreign] = await Promise.all([
      binaryOf("supervised", version),
      binaryOf("restart-bench", version),
    ]);
    scratch = await mkdtemp(path.join(tmpdir(), "gen-reuseport-watchdog-"));
  }, SETUP_TIMEOUT_MS);

  afterEach(async () => {
    await stopAllPrograms();
    receiver?.close();
    receiver = undefined;
  });

  afterAll(async () => {
    if (scratch !== undefined) await rm(scratch, { recursive: true, force: true });
  });

  /** A copy of the binary the test may replace, and a way to break and restore it. */
  async function replaceableCopy(name: string) {
    const dir = await mkdtemp(path.join(scratch, `${name}-`));
    const copy = path.join(dir, "supervised");
    await copyFile(binary, copy);
    await chmod(copy, 0o755);
    const replaceWith = async (contents: string | undefined) => {
      // The way a deploy replaces a file: a new one renamed over the old path.
      if (contents === undefined) await copyFile(binary, `${copy}.new`);
      else await writeFile(`${copy}.new`, contents);
      await chmod(`${copy}.new`, 0o755);
      await rename(`${copy}.new`, copy);
    };
    return { copy, replaceWith };
  }

  it(
    "serves a killed worker's slot from another worker while the binary on disk is broken",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const { copy, replaceWith } = await replaceableCopy("broken");
      const { program, ready } = await startSupervisor(copy);
      const index = 1;
      const victim = ready.workers[index]!.pid;
      await replaceWith("#!/bin/sh\nexit 1\n");

      process.kill(victim, "SIGKILL");
      await program.waitForEvent<WorkerExitEvent>("worker_exit", 1_000, (e) => e.pid === victim);
      // Its replacement fails (the script exits 1), again and again, with a backoff.
      await program.waitForEvent<WorkerExitEvent>(
        "worker_exit",
        2_000,
        (e) => e.index === index && e.exit_code === 1,
      );
      const { answers, slowest } = await whoamiEachWithinASecond(portOf(ready, "who"), 40);
      console.log(`zig ${version}: 40 connections with slot ${index} dark, slowest ${slowest} ms`);
      // The adopter is the slot's predecessor in the ring (slot 0); its own connections and the
      // dark slot's share answer with its pid.
      const adopter = ready.workers[index - 1]!.pid;
      // The supervisor logs the adoption after telling the adopter, which may serve (and log)
      // first: its line can come a moment after the answers.
      await waitForLog(
        program,
        new RegExp(`slot ${index} is dark: worker ${index - 1} \\(pid ${adopter}\\) adopts it`),
        2_000,
      );
      expect(answers.filter((a) => a.pid === adopter).length).toBeGreaterThan(0);
      expect(answers.map((a) => a.pid)).not.toContain(victim);

      // Once the binary is back, the slot gets its own worker and the adopter lets go.
      await replaceWith(undefined);
      const replaced = await program.waitForEvent<WorkerEvent>(
        "worker_replaced",
        12_000,
        (e) => e.index === index,
      );
      await waitForLog(program, new RegExp(`slot ${index} released by worker ${index - 1}`), 2_000);
      const after = await whoamiEachWithinASecond(portOf(ready, "who"), 40);
      expect(after.answers.map((a) => a.pid)).toContain(replaced.pid);
      await stopGracefully(program);
    },
  );

  it(
    "serves a SIGSTOPped worker's slot within a second, then kills it (worker_hung) and replaces it",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const { program, ready } = await startSupervisor(binary, ["--watchdog", "1000"]);
      const index = 2;
      const victim = ready.workers[index]!.pid;
      const stoppedAt = Date.now();
      process.kill(victim, "SIGSTOP");
      try {
        const { answers, slowest } = await whoamiEachWithinASecond(portOf(ready, "who"), 40);
        console.log(`zig ${version}: 40 connections with slot ${index} stopped, slowest ${slowest} ms`);
        expect(answers.map((a) => a.pid)).not.toContain(victim);
        await waitForLog(program, new RegExp(`slot ${index} is dark`), 2_000);

        const hung = await program.waitForEvent<WorkerHungEvent>(
          "worker_hung",
          5_000,
          (e) => e.pid === victim,
        );
        const hungAfter = Date.now() - stoppedAt;
        console.log(`zig ${version}: worker_hung ${hungAfter} ms after SIGSTOP: ${JSON.stringify(hung)}`);
        expect(hung).toMatchObject({ generation: 1, index });
        expect(hung.silent_ms).toBeGreaterThanOrEqual(1_000);
        expect(hung.silent_ms).toBeLessThan(2_000);
        const exit = await program.waitForEvent<WorkerExitEvent>(
          "worker_exit",
          2_000,
          (e) => e.pid === victim,
        );
        expect(exit).toMatchObject({ index, signal: 9, expected: false });
        const replaced = await program.waitForEvent<WorkerEvent>(
          "worker_replaced",
          2_000,
          (e) => e.index === index,
        );
        expect(await waitUntilGone([victim], 1_000)).toEqual([]);
        expect(isAlive(replaced.pid)).toBe(true);
        const others = ready.workers.filter((w) => w.index !== index).map((w) => w.pid);
        for (const pid of others) expect(isAlive(pid), `worker ${pid}`).toBe(true);
      } finally {
        // Nothing is left stopped, whatever failed: a stopped process ignores SIGTERM.
        if (isAlive(victim)) process.kill(victim, "SIGCONT");
      }
      await stopGracefully(program);
    },
  );

  it(
    "with --watchdog 0 asks for no heartbeat: a SIGSTOPped worker is left alone",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const { program, ready } = await startSupervisor(binary, ["--watchdog", "0"]);
      const victim = ready.workers[3]!.pid;
      process.kill(victim, "SIGSTOP");
      try {
        await sleep(1_500);
        expect(program.find("worker_hung")).toBeUndefined();
        expect(program.stderr).not.toMatch(/is dark/);
        expect(isAlive(victim)).toBe(true);
      } finally {
        if (isAlive(victim)) process.kill(victim, "SIGCONT");
      }
      await stopGracefully(program);
    },
  );

  it(
    "resets an inherited SIGCHLD=SIG_IGN, so it sees workers exit and stops",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      // A shell's `trap "" CHLD` does not reliably leave SIGCHLD ignored across exec (dash
      // does not), so a few lines of Python set SIG_IGN and exec. Checked on a probe first,
      // or the test would prove nothing.
      const probe = Program.start("python3", ["-c", IGNORE_SIGCHLD_AND_EXEC, "sleep", "5"]);
      const execed = () => readFileSync(`/proc/${probe.pid}/cmdline`, "utf8").startsWith("sleep");
      for (let i = 0; i < 250 && !execed(); i++) await sleep(20);
      expect(execed()).toBe(true);
      expect(ignoresSigchld(probe.pid)).toBe(true);
      probe.signal("SIGKILL");
      await probe.waitForExit(2_000);

      const args = ["--workers", String(WORKERS), ...ANY_LOOPBACK_PORT];
      const program = Program.start("python3", ["-c", IGNORE_SIGCHLD_AND_EXEC, binary, ...args]);
      const ready = await program.waitForEvent<ReadyEvent>("ready", READY_TIMEOUT_MS);
      expect(ready.pid).toBe(program.pid);
      expect(ignoresSigchld(program.pid)).toBe(false);
      const victim = ready.workers[0]!.pid;
      process.kill(victim, "SIGKILL");
      await program.waitForEvent<WorkerExitEvent>("worker_exit", 1_000, (e) => e.pid === victim);
      await program.waitForEvent<WorkerEvent>("worker_replaced", 2_000, (e) => e.index === 0);
      const stopped = await stopGracefully(program);
      expect(stopped.reason).toBe("graceful");
    },
  );

  it(
    "a worker from a binary generated from another spec refuses to serve, and generation 1 " +
      "goes on",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const { copy, replaceWith } = await replaceableCopy("foreign");
      const { program, ready } = await startSupervisor(copy);
      // A binary with another spec on disk is a whole-program upgrade (upgrade.test.ts): this
      // one answers the supervisor's identity question as this program does, so that only the
      // workers' own check stands between it and the sockets.
      await replaceWith(
        `#!/bin/sh\nif [ "$1" = --fingerprint ]; then exec '${binary}' --fingerprint; fi\n` +
          `exec '${foreign}' "$@"\n`,
      );
      program.signal("SIGHUP");
      const error = await program.waitForEvent<ErrorEvent>("error", READY_TIMEOUT_MS);
      expect(error).toMatchObject({ generation: 2, serving_generation: 1 });
      expect(error.message).toMatch(/built from another spec/);
      const { answers } = await whoamiEachWithinASecond(portOf(ready, "who"), 40);
      for (const answer of answers) expect(answer.gen).toBe(1);
      for (const w of ready.workers) expect(isAlive(w.pid), `worker ${w.pid}`).toBe(true);
      expect(program.events.filter((e) => e.event === "ready")).toHaveLength(1);
      const stopped = await stopGracefully(program);
      expect(stopped.generation).toBe(1);
    },
  );

  it(
    "never starts a second worker in a slot when a respawn is pending at a restart",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const { copy, replaceWith } = await replaceableCopy("pending");
      const { program, ready } = await startSupervisor(copy);
      const index = 1;
      await replaceWith("#!/bin/sh\nexit 1\n");
      process.kill(ready.workers[index]!.pid, "SIGKILL");
      // Crash-looping: respawns after 0, 100, 200 and 400 ms; the next one waits 800 ms.
      const failures = () =>
        program.events.filter((e) => e.event === "worker_exit" && e.index === index).length;
      for (let i = 0; i < 100 && failures() < 5; i++) await sleep(20);
      expect(failures()).toBeGreaterThanOrEqual(5);
      await replaceWith(undefined);
      program.signal("SIGHUP");
      const next = await program.waitForEvent<ReadyEvent>(
        "ready",
        READY_TIMEOUT_MS,
        (e) => e.generation === 2,
      );
      await program.waitForEvent("drained", STOP_TIMEOUT_MS, (e) => e.generation === 1);
      // Past every respawn delay the crash loop had reached.
      await sleep(2_000);
      expect(next.workers.map((w) => w.index)).toEqual([0, 1, 2, 3]);
      const members = processGroupMembers(program.pid).filter((pid) => pid !== program.pid);
      expect(members.sort()).toEqual(next.workers.map((w) => w.pid).sort());
      expect(program.find("worker_replaced", (e) => e.generation === 2)).toBeUndefined();
      // The adoption of the dark slot ended with generation 1: generation 2's own workers
      // serve every slot.
      const { answers } = await whoamiEachWithinASecond(portOf(ready, "who"), 40);
      for (const answer of answers) {
        expect(answer.gen).toBe(2);
        expect(answer.pid).toBe(next.workers[answer.worker]!.pid);
      }
      await stopGracefully(program);
    },
  );

  it(
    "sends WATCHDOG=1 at half of WATCHDOG_USEC, and none when WATCHDOG_PID names another process",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const socketPath = path.join(scratch, `notify-${version}`);
      receiver = await NotifySocket.bind(socketPath);
      const args = ["--workers", "2", ...ANY_LOOPBACK_PORT];
      const program = Program.start(binary, args, {
        NOTIFY_SOCKET: socketPath,
        WATCHDOG_USEC: "400000",
      });
      await program.waitForEvent<ReadyEvent>("ready", READY_TIMEOUT_MS);
      await sleep(1_000);
      const beats = receiver.messages.filter((m) => m === "WATCHDOG=1").length;
      console.log(`zig ${version}: ${beats} WATCHDOG=1 in about 1 s with WATCHDOG_USEC=400000`);
      expect(beats).toBeGreaterThanOrEqual(3);
      expect(beats).toBeLessThanOrEqual(8);
      await stopGracefully(program);

      // A socket of its own: a beat the first program sent before it exited may still be on
      // its way through the receiver (a Python process) and must not count against this one.
      receiver.close();
      const otherPath = path.join(scratch, `notify-${version}-other`);
      receiver = await NotifySocket.bind(otherPath);
      const other = Program.start(binary, args, {
        NOTIFY_SOCKET: otherPath,
        WATCHDOG_USEC: "400000",
        WATCHDOG_PID: "1",
      });
      await other.waitForEvent<ReadyEvent>("ready", READY_TIMEOUT_MS);
      await sleep(600);
      expect(receiver.messages.filter((m) => m === "WATCHDOG=1")).toEqual([]);
      await stopGracefully(other);
    },
  );
});
