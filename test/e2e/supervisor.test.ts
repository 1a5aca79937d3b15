/**
 * Supervisor mode (the default): one supervisor, N worker processes, real signals. Workers
 * spread connections, crash and are replaced, die with the supervisor; a graceful stop lets
 * connections in flight finish; SIGHUP brings a new generation from the binary on disk and
 * a restart that cannot start leaves the old generation serving.
 */
import { existsSync } from "node:fs";
import {
  copyFile,
  mkdtemp,
  readFile,
  rename,
  rm,
  writeFile,
  chmod,
  symlink,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { EchoConnection } from "./support/echo.js";
import { HttpConnection, httpGet } from "./support/http.js";
import { holdTcpPort, parseWhoami, runBounded, tcpExchange, udpExchange } from "./support/net.js";
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
import {
  ANY_LOOPBACK_PORT,
  binaryOf,
  parentPid,
  processGroupMembers,
} from "./support/supervised.js";
import { FULL_MATRIX_VERSIONS } from "./support/zig.js";

const SETUP_TIMEOUT_MS = 15 * 60_000;
const TEST_TIMEOUT_MS = 60_000;
const IO_TIMEOUT_MS = 5_000;
const WORKERS = 4;
const HOST = "127.0.0.1";

type Who = ReturnType<typeof parseWhoami>;

interface WorkerExitEvent extends ServiceEvent {
  readonly generation: number;
  readonly index: number;
  readonly pid: number;
  readonly exit_code?: number;
  readonly signal?: number;
  readonly expected: boolean;
}

interface WorkerReplacedEvent extends ServiceEvent {
  readonly generation: number;
  readonly index: number;
  readonly pid: number;
}

interface ErrorEvent extends ServiceEvent {
  readonly message: string;
  readonly generation?: number;
  readonly serving_generation?: number;
}

/** Starts `binary` as a supervisor of 4 workers, every listener on 127.0.0.1:<any port>. */
function startSupervisor(binary: string, extra: readonly string[] = []) {
  return startReady(binary, ["--workers", String(WORKERS), ...ANY_LOOPBACK_PORT, ...extra]);
}

function workerPids(ready: ReadyEvent): number[] {
  return ready.workers.map((w) => w.pid);
}

/** `count` whoami connections, 16 at a time; throws on the first failure, with its reason. */
async function whoamiMany(port: number, count: number): Promise<Who[]> {
  const results = await runBounded(count, 16, async () =>
    parseWhoami((await tcpExchange(HOST, port, { timeoutMs: IO_TIMEOUT_MS })).toString()),
  );
  const failed = results.filter((r) => r.status === "rejected");
  expect(failed.map((r) => String(r.reason))).toEqual([]);
  return (results as PromiseFulfilledResult<Who>[]).map((r) => r.value);
}

/** SIGTERM; expects exit 0 and a graceful `stopped` event, which it returns. */
async function stopGracefully(program: Program): Promise<StoppedEvent> {
  program.signal("SIGTERM");
  const exit = await program.waitForExit(STOP_TIMEOUT_MS);
  expect(exit, program.stderr).toEqual({ code: 0, signal: null });
  const stopped = await program.waitForEvent<StoppedEvent>("stopped", 1_000);
  expect(stopped.reason).toBe("graceful");
  expect(processGroupMembers(program.pid)).toEqual([]);
  return stopped;
}

function generationsReady(program: Program): number[] {
  return program.events.filter((e) => e.event === "ready").map((e) => (e as ReadyEvent).generation);
}

describe.each(FULL_MATRIX_VERSIONS)("zig %s", (version) => {
  let binary: string;
  let scratch: string;

  beforeAll(async () => {
    binary = await binaryOf("supervised", version);
    scratch = await mkdtemp(path.join(tmpdir(), "gen-reuseport-supervisor-"));
  }, SETUP_TIMEOUT_MS);

  afterEach(async () => {
    await stopAllPrograms();
  });

  afterAll(async () => {
    if (scratch !== undefined) await rm(scratch, { recursive: true, force: true });
  });

  it(
    `starts ${WORKERS} worker processes, children of the supervisor, and spreads 400 connections over all of them`,
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const { program, ready } = await startSupervisor(binary);
      expect(ready).toMatchObject({ mode: "supervisor", generation: 1, pid: program.pid });
      expect(ready.workers.map((w) => w.index)).toEqual([0, 1, 2, 3]);
      const pids = workerPids(ready);
      expect(new Set(pids).size).toBe(WORKERS);
      expect(pids).not.toContain(program.pid);
      for (const pid of pids) expect(parentPid(pid), `parent of worker ${pid}`).toBe(program.pid);

      const answers = await whoamiMany(portOf(ready, "who"), 400);
      const byIndex = [0, 0, 0, 0];
      for (const who of answers) {
        expect(who.gen).toBe(1);
        expect(who.pid).toBe(pids[who.worker]);
        byIndex[who.worker] = (byIndex[who.worker] ?? 0) + 1;
      }
      console.log(`zig ${version}: 400 whoami connections per worker index: ${byIndex.join(" ")}`);
      for (const count of byIndex) expect(count).toBeGreaterThanOrEqual(1);

      const stopped = await stopGracefully(program);
      const counted = stopped.workers.reduce((n, w) => n + w.connections, 0);
      expect(counted).toBe(400);
    },
  );

  it(
    "replaces a worker killed with SIGKILL within 1 s, then with a backoff, and keeps serving",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const { program, ready } = await startSupervisor(binary);
      const index = 1;
      const first = ready.workers[index]!.pid;

      const killedAt = Date.now();
      process.kill(first, "SIGKILL");
      const exit = await program.waitForEvent<WorkerExitEvent>(
        "worker_exit",
        1_000,
        (e) => e.pid === first,
      );
      expect(exit).toMatchObject({ generation: 1, index, expected: false, signal: 9 });
      const replaced = await program.waitForEvent<WorkerReplacedEvent>(
        "worker_replaced",
        Math.max(1, 1_000 - (Date.now() - killedAt)),
        (e) => e.index === index,
      );
      const firstDelay = Date.now() - killedAt;
      expect(replaced.generation).toBe(1);
      expect(replaced.pid).not.toBe(first);
      expect(parentPid(replaced.pid)).toBe(program.pid);
      expect(isAlive(first)).toBe(false);

      // The same slot crashing again right away is replaced after a delay (100 ms first).
      const second = replaced.pid;
      const againAt = Date.now();
      process.kill(second, "SIGKILL");
      const again = await program.waitForEvent<WorkerReplacedEvent>(
        "worker_replaced",
        2_000,
        (e) => e.index === index && e.pid !== second,
      );
      const secondDelay = Date.now() - againAt;
      console.log(`zig ${version}: worker replaced after ${firstDelay} ms, then ${secondDelay} ms`);
      expect(secondDelay).toBeGreaterThanOrEqual(100);
      expect(secondDelay).toBeLessThan(1_000);

      // Service goes on, and the newest worker of that slot answers (bounded: 400 connections).
      const port = portOf(ready, "who");
      const seen = new Set<number>();
      for (let round = 0; round < 4 && !seen.has(again.pid); round++) {
        for (const who of await whoamiMany(port, 100)) {
          expect([first, second]).not.toContain(who.pid);
          seen.add(who.pid);
        }
      }
      expect([...seen]).toContain(again.pid);
      await stopGracefully(program);
    },
  );

  it(
    "takes every worker down with it when the supervisor is killed with SIGKILL",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const { program, ready } = await startSupervisor(binary);
      const pids = workerPids(ready);
      process.kill(program.pid, "SIGKILL");
      expect(await program.waitForExit(2_000)).toEqual({ code: null, signal: "SIGKILL" });
      expect(await waitUntilGone(pids, 2_000)).toEqual([]);
      expect(processGroupMembers(program.pid)).toEqual([]);
    },
  );

  it(
    "on SIGTERM lets a keep-alive HTTP connection and an echo connection finish, then exits 0",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const { program, ready } = await startSupervisor(binary);
      const http = await HttpConnection.open(HOST, portOf(ready, "web"), IO_TIMEOUT_MS);
      const echo = await EchoConnection.open(HOST, portOf(ready, "echo"), IO_TIMEOUT_MS);
      try {
        http.write(httpGet("/", "localhost"));
        const before = await http.readResponse(IO_TIMEOUT_MS);
        expect(before.status).toBe(200);
        expect(before.headers.connection ?? "keep-alive").not.toMatch(/close/i);
        expect(await echo.exchange("before the stop\n", IO_TIMEOUT_MS)).toBe("before the stop\n");

        program.signal("SIGTERM");
        await program.waitForEvent("stopping", 1_000);
        // The workers learn of the stop through a pipe the supervisor closes; give them a moment,
        // well inside the 1 s after which idle keep-alive connections are closed.
        await sleep(200);

        http.write(httpGet("/", "localhost"));
        const during = await http.readResponse(IO_TIMEOUT_MS);
        expect(during.status).toBe(200);
        expect(during.headers.connection).toMatch(/^close$/i);
        await http.waitForClose(IO_TIMEOUT_MS);

        expect(await echo.exchange("during the stop\n", IO_TIMEOUT_MS)).toBe("during the stop\n");
        // Past the keep-alive idle grace: an echo connection in flight is not idle HTTP.
        await sleep(1_500);
        expect(await echo.exchange("still there\n", IO_TIMEOUT_MS)).toBe("still there\n");
        expect(program.exit).toBeUndefined();
        echo.end();
        await echo.waitForClose(IO_TIMEOUT_MS);

        const exit = await program.waitForExit(STOP_TIMEOUT_MS);
        expect(exit, program.stderr).toEqual({ code: 0, signal: null });
        const stopped = await program.waitForEvent<StoppedEvent>("stopped", 1_000);
        expect(stopped.reason).toBe("graceful");
        expect(stopped.workers).toHaveLength(WORKERS);
        const connections = stopped.workers.reduce((n, w) => n + w.connections, 0);
        const requests = stopped.workers.reduce((n, w) => n + w.requests, 0);
        expect(connections).toBe(2);
        expect(requests).toBeGreaterThanOrEqual(2);
        expect(processGroupMembers(program.pid)).toEqual([]);
      } finally {
        http.close();
        echo.destroy();
      }
    },
  );

  it(
    "with --drain-timeout 500, an idle echo connection delays the exit by the drain timeout only",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const { program, ready } = await startSupervisor(binary, ["--drain-timeout", "500"]);
      const echo = await EchoConnection.open(HOST, portOf(ready, "echo"), IO_TIMEOUT_MS);
      try {
        expect(await echo.exchange("hello\n", IO_TIMEOUT_MS)).toBe("hello\n");
        const signalledAt = Date.now();
        program.signal("SIGTERM");
        const exit = await program.waitForExit(3_000);
        const elapsed = Date.now() - signalledAt;
        console.log(`zig ${version}: exit ${elapsed} ms after SIGTERM with an idle connection`);
        expect(exit, program.stderr).toEqual({ code: 0, signal: null });
        expect(elapsed).toBeGreaterThanOrEqual(400);
        await echo.waitForClose(1_000);
        expect(processGroupMembers(program.pid)).toEqual([]);
      } finally {
        echo.destroy();
      }
    },
  );

  it(
    "queues a restart while draining generations hold every process slot, then starts it",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      // One worker and a 3 s drain: an idle echo connection keeps each old generation draining
      // for the whole timeout, so quick SIGHUPs fill the supervisor's 4 process slots.
      const { program, ready } = await startReady(binary, [
        ...ANY_LOOPBACK_PORT,
        "--workers",
        "1",
        "--drain-timeout",
        "3000",
      ]);
      const port = portOf(ready, "echo");
      const held: EchoConnection[] = [];
      try {
        const holdAndRestart = async () => {
          const echo = await EchoConnection.open(HOST, port, IO_TIMEOUT_MS);
          held.push(echo);
          expect(await echo.exchange("hold\n", IO_TIMEOUT_MS)).toBe("hold\n");
          program.signal("SIGHUP");
        };
        for (const next of [2, 3, 4]) {
          await holdAndRestart();
          await program.waitForEvent("ready", READY_TIMEOUT_MS, (e) => e.generation === next);
          // The old worker stops accepting a moment after `ready`; until then a new connection
          // may still land on it. Give it that moment so the next one lands on the new worker.
          await sleep(100);
        }
        // Generations 1-3 drain (each holds a connection) and 4 serves: all 4 process slots
        // are taken, so this SIGHUP waits for a drained generation instead of failing.
        await holdAndRestart();
        for (let i = 0; i < 40 && !/restart queued/.test(program.stderr); i += 1) await sleep(25);
        expect(program.stderr).toMatch(/restart queued: waiting for draining workers to exit/);
        expect(generationsReady(program)).toEqual([1, 2, 3, 4]);
        await program.waitForEvent("ready", 8_000, (e) => e.generation === 5);
        expect(program.events.filter((e) => e.event === "error")).toEqual([]);
        const [answer] = await whoamiMany(portOf(ready, "who"), 1);
        expect(answer?.gen).toBeGreaterThanOrEqual(4);
      } finally {
        for (const echo of held) echo.destroy();
      }
      await stopGracefully(program);
    },
  );

  it(
    "stops at once on SIGQUIT, even with a connection open",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const { program, ready } = await startSupervisor(binary);
      const echo = await EchoConnection.open(HOST, portOf(ready, "echo"), IO_TIMEOUT_MS);
      try {
        expect(await echo.exchange("hello\n", IO_TIMEOUT_MS)).toBe("hello\n");
        const signalledAt = Date.now();
        program.signal("SIGQUIT");
        const exit = await program.waitForExit(1_000);
        console.log(`zig ${version}: exit ${Date.now() - signalledAt} ms after SIGQUIT`);
        expect(exit.signal).toBeNull();
        const stopped = await program.waitForEvent<StoppedEvent>("stopped", 1_000);
        expect(stopped.reason).toBe("immediate");
        await echo.waitForClose(1_000);
        expect(await waitUntilGone(workerPids(ready), 1_000)).toEqual([]);
      } finally {
        echo.destroy();
      }
    },
  );

  it(
    "on SIGHUP starts generation 2 with new workers, drains generation 1, and serves as generation 2",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const { program, ready } = await startSupervisor(binary);
      const old = workerPids(ready);
      const who = portOf(ready, "who");
      expect((await whoamiMany(who, 20)).every((w) => w.gen === 1)).toBe(true);

      program.signal("SIGHUP");
      await program.waitForEvent("restarting", 1_000, (e) => e.generation === 2);
      const next = await program.waitForEvent<ReadyEvent>(
        "ready",
        READY_TIMEOUT_MS,
        (e) => e.generation === 2,
      );
      expect(next.pid).toBe(program.pid);
      const fresh = workerPids(next);
      expect(fresh).toHaveLength(WORKERS);
      for (const pid of fresh) {
        expect(old).not.toContain(pid);
        expect(parentPid(pid)).toBe(program.pid);
      }
      expect(next.listeners).toEqual(ready.listeners);
      await program.waitForEvent("drained", STOP_TIMEOUT_MS, (e) => e.generation === 1);
      for (const pid of old) {
        const exit = program.find<WorkerExitEvent>("worker_exit", (e) => e.pid === pid);
        expect(exit, `worker_exit of ${pid}`).toMatchObject({
          generation: 1,
          expected: true,
          exit_code: 0,
        });
      }
      expect(await waitUntilGone(old, 2_000)).toEqual([]);

      for (const answer of await whoamiMany(who, 100)) {
        expect(answer.gen).toBe(2);
        expect(answer.pid).toBe(fresh[answer.worker]);
      }
      const reply = await udpExchange(HOST, portOf(ready, "uecho"), "after the restart", {
        timeoutMs: 1_000,
      });
      expect(reply.toString()).toBe("after the restart");
      const stopped = await stopGracefully(program);
      expect(stopped.generation).toBe(2);
    },
  );

  it(
    "merges the SIGHUPs that arrive during a restart into one more: 3 SIGHUPs, 2 new generations",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      // A restart takes a few milliseconds, less than the time between two signals sent from
      // here, and signals sent back to back are merged by the kernel. So that the later SIGHUPs
      // surely arrive while generation 2 is starting, the binary on disk becomes a script that
      // waits 300 ms before running the real program.
      const dir = await mkdtemp(path.join(scratch, "slow-"));
      const copy = path.join(dir, "supervised");
      await copyFile(binary, copy);
      await chmod(copy, 0o755);
      const { program, ready } = await startSupervisor(copy);
      await writeFile(`${copy}.new`, `#!/bin/sh\nsleep 0.3\nexec '${binary}' "$@"\n`, {
        mode: 0o755,
      });
      await rename(`${copy}.new`, copy);

      for (let i = 0; i < 3; i++) {
        program.signal("SIGHUP");
        await sleep(20);
      }
      // The first SIGHUP starts generation 2; the other two arrive while it starts and are
      // merged into one restart that follows it: generation 3, and no generation 4.
      await program.waitForEvent<ReadyEvent>("ready", READY_TIMEOUT_MS, (e) => e.generation === 3);
      await sleep(800);
      const generations = generationsReady(program);
      console.log(`zig ${version}: 3 SIGHUPs gave ready generations ${generations.join(", ")}`);
      expect(generations).toEqual([1, 2, 3]);
      expect(
        program.events.filter((e) => e.event === "restarting").map((e) => e.generation),
      ).toEqual([2, 3]);
      expect(program.find("error")).toBeUndefined();
      expect(program.stderr).toMatch(/SIGHUP during a restart/);

      const last = generations.at(-1)!;
      await program.waitForEvent("drained", STOP_TIMEOUT_MS, (e) => e.generation === 2);
      for (const answer of await whoamiMany(portOf(ready, "who"), 50))
        expect(answer.gen).toBe(last);
      const stopped = await stopGracefully(program);
      expect(stopped.generation).toBe(last);
    },
  );

  it(
    "keeps generation 1 serving when the binary is missing at SIGHUP, and restarts once it is back",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const dir = await mkdtemp(path.join(scratch, "missing-"));
      const copy = path.join(dir, "supervised");
      await copyFile(binary, copy);
      await chmod(copy, 0o755);
      const { program, ready } = await startSupervisor(copy);
      const who = portOf(ready, "who");

      await rename(copy, `${copy}.moved`);
      program.signal("SIGHUP");
      const error = await program.waitForEvent<ErrorEvent>("error", READY_TIMEOUT_MS);
      expect(error).toMatchObject({ generation: 2, serving_generation: 1 });
      expect(error.message).toMatch(/did not start/);
      await sleep(200);
      expect(generationsReady(program)).toEqual([1]);
      for (const answer of await whoamiMany(who, 50)) expect(answer.gen).toBe(1);
      for (const pid of workerPids(ready)) expect(isAlive(pid), `worker ${pid}`).toBe(true);

      await rename(`${copy}.moved`, copy);
      program.signal("SIGHUP");
      const next = await program.waitForEvent<ReadyEvent>(
        "ready",
        READY_TIMEOUT_MS,
        (e) => e.generation > 1,
      );
      // The failed generation's number is not reused, and it never "drained": it never served.
      expect(next.generation).toBe(3);
      expect(program.events.some((e) => e.event === "drained" && e.generation === 2)).toBe(false);
      // Generation 1 accepts until it has drained (workers of both generations share each
      // slot's socket until then); from that moment every answer comes from the new one.
      await program.waitForEvent("drained", STOP_TIMEOUT_MS, (e) => e.generation === 1);
      for (const answer of await whoamiMany(who, 50)) expect(answer.gen).toBe(next.generation);
      await stopGracefully(program);
    },
  );

  it(
    "follows a symlink anew at each restart, so switching it deploys a new binary",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const dir = await mkdtemp(path.join(scratch, "symlink-"));
      const release1 = path.join(dir, "release-1");
      const release2 = path.join(dir, "release-2");
      const current = path.join(dir, "current");
      await copyFile(binary, release1);
      await chmod(release1, 0o755);
      await writeFile(release2, "#!/bin/sh\nexit 3\n", { mode: 0o755 });
      await symlink(release1, current);
      const { program } = await startSupervisor(current);

      // The way a deploy switches releases: a new link renamed over the old one.
      await symlink(release2, `${current}.new`);
      await rename(`${current}.new`, current);
      program.signal("SIGHUP");
      // release-2 ran (and failed): the link was followed again, not the path resolved at start.
      const error = await program.waitForEvent<ErrorEvent>("error", READY_TIMEOUT_MS);
      expect(error).toMatchObject({ generation: 2, serving_generation: 1 });
      expect(error.message).toMatch(/exited with code 3/);
      await stopGracefully(program);
    },
  );

  it(
    "keeps generation 1 serving when the binary on disk became a script that exits 3",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const dir = await mkdtemp(path.join(scratch, "script-"));
      const copy = path.join(dir, "supervised");
      await copyFile(binary, copy);
      await chmod(copy, 0o755);
      const { program, ready } = await startSupervisor(copy);

      // Replaced the way a deploy replaces it: a new file renamed over the old path.
      await writeFile(`${copy}.new`, "#!/bin/sh\nexit 3\n", { mode: 0o755 });
      await rename(`${copy}.new`, copy);
      program.signal("SIGHUP");
      const error = await program.waitForEvent<ErrorEvent>("error", READY_TIMEOUT_MS);
      expect(error).toMatchObject({ generation: 2, serving_generation: 1 });
      await sleep(200);
      expect(generationsReady(program)).toEqual([1]);
      for (const answer of await whoamiMany(portOf(ready, "who"), 50)) expect(answer.gen).toBe(1);
      const stopped = await stopGracefully(program);
      expect(stopped.generation).toBe(1);
    },
  );

  it(
    "answers a SIGHUP sent during a probe that fails with that error, and restarts at the next",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      // Found by the supervisor's simulator: the SIGHUP queued during the probe stayed queued
      // after the probe failed, and every later SIGHUP was taken for "already queued".
      const dir = await mkdtemp(path.join(scratch, "queued-"));
      const copy = path.join(dir, "supervised");
      await copyFile(binary, copy);
      await chmod(copy, 0o755);
      const { program, ready } = await startSupervisor(copy);

      // A binary whose --fingerprint fails after 1 s: the second SIGHUP finds the probe running.
      await writeFile(`${copy}.new`, "#!/bin/sh\nsleep 1\nexit 3\n", { mode: 0o755 });
      await rename(`${copy}.new`, copy);
      program.signal("SIGHUP");
      await sleep(300);
      program.signal("SIGHUP");
      const error = await program.waitForEvent<ErrorEvent>("error", READY_TIMEOUT_MS);
      expect(error).toMatchObject({ generation: 2, serving_generation: 1 });

      await copyFile(binary, `${copy}.new`);
      await chmod(`${copy}.new`, 0o755);
      await rename(`${copy}.new`, copy);
      program.signal("SIGHUP");
      const next = await program.waitForEvent<ReadyEvent>(
        "ready",
        READY_TIMEOUT_MS,
        (e) => e.generation > 1,
      );
      expect(next.generation).toBe(3);
      await program.waitForEvent("drained", STOP_TIMEOUT_MS, (e) => e.generation === 1);
      for (const answer of await whoamiMany(portOf(ready, "who"), 20)) expect(answer.gen).toBe(3);
      const stopped = await stopGracefully(program);
      expect(stopped.generation).toBe(3);
    },
  );

  it(
    "writes --pid-file with the supervisor's pid once ready and removes it at exit",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const pidFile = path.join(scratch, `pid-${process.pid}-${Date.now()}`);
      const { program } = await startSupervisor(binary, ["--pid-file", pidFile]);
      // Written right after the ready line: allow a bounded moment for it.
      // Written before `ready` is printed: a reader acting on the event finds it.
      expect((await readFile(pidFile, "utf8")).trim()).toBe(String(program.pid));
      await stopGracefully(program);
      expect(existsSync(pidFile)).toBe(false);
    },
  );

  it(
    "exits 1 at once, naming SO_REUSEPORT, when a port is held by a socket without it",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const held = await holdTcpPort(HOST);
      try {
        const args = [
          "--workers",
          String(WORKERS),
          ...ANY_LOOPBACK_PORT,
          "--listen",
          `who=${HOST}:${held.port}`,
        ];
        const program = Program.start(binary, args);
        const exit = await program.waitForExit(3_000);
        expect(exit, program.stderr).toEqual({ code: 1, signal: null });
        const error = await program.waitForEvent<ErrorEvent>("error", 1_000);
        expect(error).toMatchObject({ listener: "who" });
        expect(program.stderr).toMatch(/SO_REUSEPORT/);
        expect(program.find("ready")).toBeUndefined();
        expect(processGroupMembers(program.pid)).toEqual([]);
      } finally {
        await held.release();
      }
    },
  );
});
