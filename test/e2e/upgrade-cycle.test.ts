/**
 * Upgrades in a row under load, the way an operator cycles deploys: three specs (a: 4 workers
 * with whoami, http and UDP echo; b: 2 workers and one more listener; c: 6 workers without
 * it), each deployed over the path the service runs from and a SIGHUP sent soon after the
 * previous upgrade said ready. Every SIGHUP must end in a `ready` from the new supervisor (or
 * an `error` from the old one) within a bound, and no client may fail.
 *
 * The service's standard error is a FIFO that nobody reads, shrunk to one page: a log
 * pipeline that stopped reading. Before output.zig, the supervisors wrote their log lines
 * there with a blocking write: after a few upgrades both the old and the new supervisor
 * hung in write(2) (`anon_pipe_write`), the new one's hand-over lines the last ones out,
 * and the upgrade never ended (issue 15's hang, which needed load to fill a 64 KiB pipe).
 */
import { spawn, spawnSync } from "node:child_process";
import { chmod, copyFile, mkdtemp, rename, rm } from "node:fs/promises";
import { openSync, closeSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ClientLoad } from "./support/client-load.js";
import { freePort } from "./support/net.js";
import { isAlive, waitUntilGone, type ReadyEvent, type ServiceEvent } from "./support/program.js";
import { compiledSpecValue } from "./support/project.js";
import { FULL_MATRIX_VERSIONS } from "./support/zig.js";

const SETUP_TIMEOUT_MS = 15 * 60_000;
/** How long one SIGHUP may take to end: the old supervisor's own limit is 15 s. */
const ANSWER_MS = 25_000;
const ROUNDS = 9;
const NAME = "cycled";

const listener = (name: string, protocol: string, port: number, handler: string) => ({
  name,
  protocol,
  address: "127.0.0.1",
  port,
  handler,
});

/** Ports are placeholders for the three listeners every variant has (`--listen …:0`). */
function specs(extraPort: number) {
  const common = [
    listener("who", "tcp", 9301, "whoami"),
    listener("web", "tcp", 9302, "http"),
    listener("echo", "udp", 9303, "echo"),
  ];
  const base = { name: NAME, drainTimeoutMs: 3000 };
  return {
    a: { ...base, workers: 4, listeners: common },
    b: { ...base, workers: 2, listeners: [...common, listener("extra", "tcp", extraPort, "whoami")] },
    c: { ...base, workers: 6, listeners: common },
  };
}

interface Ready extends ReadyEvent {
  readonly upgraded_from?: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A FIFO held open by a process that never reads it, its buffer shrunk to one page. */
async function unreadFifo(file: string): Promise<{ stop: () => void }> {
  const made = spawnSync("mkfifo", [file]);
  if (made.status !== 0) throw new Error(`mkfifo ${file}: ${made.stderr.toString()}`);
  // F_SETPIPE_SZ (1031) on the FIFO's pipe: a page instead of 64 KiB, so that the log
  // lines of a few upgrades fill it.
  const script = [
    "import fcntl, os, sys, time",
    "fd = os.open(sys.argv[1], os.O_RDWR)",
    "fcntl.fcntl(fd, 1031, 4096)",
    "print('held', flush=True)",
    "time.sleep(600)",
  ].join("\n");
  const holder = spawn("python3", ["-c", script, file], { stdio: ["ignore", "pipe", "inherit"] });
  await new Promise<void>((resolve, reject) => {
    holder.stdout.once("data", () => resolve());
    holder.once("exit", (code) => reject(new Error(`the FIFO holder exited (${code})`)));
  });
  return { stop: () => holder.kill("SIGKILL") };
}

describe.each(FULL_MATRIX_VERSIONS)("zig %s", (version) => {
  let scratch: string;
  const binaries = new Map<string, string>();

  beforeAll(async () => {
    scratch = await mkdtemp(path.join(tmpdir(), "gen-reuseport-cycle-"));
    const all = specs(await freePort("tcp", "127.0.0.1"));
    for (const [key, spec] of Object.entries(all)) {
      const built = await compiledSpecValue(`cycle-${key}`, spec, version);
      if (!built.steps.build.ok) throw new Error(`cycle-${key}: ${built.steps.build.output}`);
      binaries.set(key, built.binary);
    }
  }, SETUP_TIMEOUT_MS);

  afterAll(async () => {
    if (scratch !== undefined) await rm(scratch, { recursive: true, force: true });
  });

  it(
    "answers every SIGHUP of an upgrade cycle under load with ready, whatever its stderr",
    async () => {
      const exe = path.join(scratch, NAME);
      const deploy = async (key: string) => {
        await copyFile(binaries.get(key)!, `${exe}.new`);
        await chmod(`${exe}.new`, 0o755);
        await rename(`${exe}.new`, exe);
      };
      const fifo = path.join(scratch, "stderr.fifo");
      const holder = await unreadFifo(fifo);
      const stderrFd = openSync(fifo, "w");
      await deploy("a");
      const listen = ["who", "web", "echo"].flatMap((n) => ["--listen", `${n}=127.0.0.1:0`]);
      const child = spawn(exe, listen, { stdio: ["ignore", "pipe", stderrFd], detached: true });
      closeSync(stderrFd);
      const events: ServiceEvent[] = [];
      createInterface({ input: child.stdout! }).on("line", (line) => {
        try {
          events.push(JSON.parse(line) as ServiceEvent);
        } catch {
          // Not an event: the contract test of stdout is elsewhere.
        }
      });
      const pids = new Set<number>();
      const waitFor = async <T extends ServiceEvent>(match: (e: T) => boolean, what: string) => {
        const deadline = Date.now() + ANSWER_MS;
        for (;;) {
          const found = events.find((e) => match(e as T)) as T | undefined;
          if (found !== undefined) return found;
          if (Date.now() > deadline) {
            const tail = events.slice(-6).map((e) => JSON.stringify(e).slice(0, 200));
            throw new Error(`${what}: nothing in ${ANSWER_MS} ms; last events:\n${tail.join("\n")}`);
          }
          await sleep(20);
        }
      };
      let load: ClientLoad | undefined;
      try {
        let ready = await waitFor<Ready>((e) => e.event === "ready", "the first ready");
        pids.add(ready.pid);
        const port = (name: string) => ready.listeners.find((l) => l.name === name)!.port;
        load = new ClientLoad({ who: port("who"), web: port("web"), uecho: port("echo") });
        const order = ["b", "c", "a"];
        const workerCounts: number[] = [];
        for (let k = 0; k < ROUNDS; k++) {
          await sleep(300 + Math.random() * 400);
          await deploy(order[k % order.length]!);
          const from = ready.pid;
          process.kill(from, "SIGHUP");
          const answer = await waitFor<Ready>(
            (e) => (e.event === "ready" && (e as Ready).upgraded_from === from) || e.event === "error",
            `round ${k + 1}: the SIGHUP to pid ${from}`,
          );
          expect(answer.event, JSON.stringify(answer)).toBe("ready");
          ready = answer;
          pids.add(ready.pid);
          for (const w of ready.workers) pids.add(w.pid);
          workerCounts.push(ready.workers.length);
        }
        const seen = await load.stop();
        load = undefined;
        process.stdout.write(
          `zig ${version}: ${ROUNDS} upgrades (workers ${workerCounts.join("→")}) with stderr ` +
            `unread: ${seen.whoami} whoami, ${seen.http} http, ${seen.datagrams} datagrams, ` +
            `${seen.failures.length} failures\n`,
        );
        expect(seen.failures).toEqual([]);
        expect(workerCounts).toEqual([2, 6, 4, 2, 6, 4, 2, 6, 4]);
        process.kill(ready.pid, "SIGTERM");
        const last = ready.pid;
        await waitFor((e) => e.event === "stopped" && !("successor" in e) && e.generation === ready.generation, `pid ${last} stopping`);
        expect(await waitUntilGone(pids, 10_000)).toEqual([]);
      } finally {
        await load?.stop();
        for (const pid of pids) if (isAlive(pid)) process.kill(pid, "SIGKILL");
        if (child.exitCode === null) child.kill("SIGKILL");
        holder.stop();
      }
    },
    ROUNDS * ANSWER_MS + 60_000,
  );
});
