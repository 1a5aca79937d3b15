/**
 * The http handler as a client sees it on one TCP connection: keep-alive, pipelining, and
 * `Connection: close`; with epoll and with io_uring (`--io`), from the same build.
 */
import { execFileSync, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HttpConnection, httpGet } from "./support/http.js";
import {
  holdsIoUring,
  portOf,
  Program,
  READY_TIMEOUT_MS,
  type ReadyEvent,
  startReady,
  stopAllPrograms,
} from "./support/program.js";
import { programOf } from "./support/project.js";
import { ensurePythonModule } from "./support/tools.js";
import { FULL_MATRIX_VERSIONS, ZIG_VERSIONS } from "./support/zig.js";

const SETUP_TIMEOUT_MS = 15 * 60_000;
const TEST_TIMEOUT_MS = 30_000;
const IO_TIMEOUT_MS = 5_000;
const BODY = "Hello from gen-reuseport\n";
const HOG = path.join(path.dirname(fileURLToPath(import.meta.url)), "support", "hog.py");
const CLK_TCK = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim());

/** CPU time (user and system) a process has used, in seconds (/proc/PID/stat). */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}

/** Resident memory of a process, in KiB (VmRSS of /proc/PID/status). */
function rssKiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? NaN);
}

const MODES = ZIG_VERSIONS.flatMap((version) => [
  [version, "epoll"],
  [version, "io_uring"],
]);

describe.each(MODES)("zig %s: the http example (--standalone --io %s)", (version, io) => {
  let port: number;
  let pid: number;
  const open = () => HttpConnection.open("127.0.0.1", port, IO_TIMEOUT_MS);

  beforeAll(async () => {
    const binary = await programOf("http", version);
    const args = ["--standalone", "--io", io, "--listen", "api=127.0.0.1:0"];
    const { program, ready } = await startReady(binary, args);
    port = portOf(ready, "api");
    pid = program.pid;
    // The mode asked for is the one serving: a ring, and no fallback to epoll.
    expect(holdsIoUring(program.pid)).toBe(io === "io_uring");
    expect(program.find("io_fallback")).toBeUndefined();
  }, SETUP_TIMEOUT_MS);

  afterAll(async () => {
    await stopAllPrograms();
  });

  it(
    "serves 5 sequential requests on one keep-alive connection",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const connection = await open();
      try {
        for (let i = 0; i < 5; i++) {
          connection.write(httpGet(`/seq/${i}`, "localhost"));
          const response = await connection.readResponse(IO_TIMEOUT_MS);
          expect(response.status).toBe(200);
          expect(response.body).toBe(BODY);
          expect(response.headers.connection ?? "keep-alive").not.toMatch(/close/i);
        }
      } finally {
        connection.close();
      }
    },
  );

  // The kernel takes io_uring's provided buffers in the order they were given back, so even
  // one client uses each of them in turn (the http example has 1,024, 4 KiB each): their
  // memory is backed from the start, or a steady load grew a worker's RSS by 4 MiB.
  it.runIf(io === "io_uring")(
    "serves 1,200 sequential requests on one connection without growing its memory",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const connection = await open();
      try {
        connection.write(httpGet("/warm", "localhost"));
        expect((await connection.readResponse(IO_TIMEOUT_MS)).status).toBe(200);
        const before = rssKiB(pid);
        for (let i = 0; i < 1200; i++) {
          connection.write(httpGet(`/many/${i}`, "localhost"));
          expect((await connection.readResponse(IO_TIMEOUT_MS)).status).toBe(200);
        }
        expect(rssKiB(pid) - before, "RSS growth (KiB)").toBeLessThan(1024);
      } finally {
        connection.close();
      }
    },
  );

  // Clients that send and never read keep what they sent in the worker's shared receive
  // buffers (up to 64 KiB each); 96 of them hold more than the example's 1,024 of 4 KiB. A
  // receive that ends for want of a buffer is armed again only once enough are back: armed
  // every turn, it ended at once every turn and the worker spun at a full CPU for as long as
  // the clients held on.
  it.runIf(io === "io_uring")(
    "does not spin while clients that never read hold every receive buffer",
    { timeout: 45_000 },
    async () => {
      const hogs = spawn("python3", [HOG, String(port), "96", "30"], {
        stdio: ["ignore", "pipe", "inherit"],
      });
      try {
        const line = await new Promise<string>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error("hog.py did not get ready")), 10_000);
          createInterface({ input: hogs.stdout! }).once("line", (text) => {
            clearTimeout(timer);
            resolve(text);
          });
        });
        expect(line).toMatch(/^ready \d+ 96$/);
        // The worker first answers what it can (until the clients' 4 KiB windows are full),
        // a few seconds of a Debug build's CPU; then it has nothing to do but wait. A worker
        // that spins never gets there. Bounded: 30 half-second samples.
        let settled = false;
        let last = 0;
        for (let i = 0; i < 30 && !settled; i++) {
          const before = cpuSeconds(pid);
          await new Promise((resolve) => setTimeout(resolve, 500));
          last = cpuSeconds(pid) - before;
          settled = last < 0.05;
        }
        expect(settled, `worker CPU seconds in the last half second: ${last}`).toBe(true);
      } finally {
        hogs.kill("SIGKILL");
      }
      // Once they are gone, their buffers come back and a new client is answered.
      const connection = await open();
      try {
        connection.write(httpGet("/after", "localhost"));
        expect((await connection.readResponse(IO_TIMEOUT_MS)).status).toBe(200);
      } finally {
        connection.close();
      }
    },
  );

  it(
    "answers 3 pipelined requests sent in one write with 3 responses, in order",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const connection = await open();
      try {
        connection.write(
          httpGet("/p/1", "localhost") +
            httpGet("/p/2", "localhost") +
            httpGet("/p/3", "localhost"),
        );
        for (let i = 0; i < 3; i++) {
          const response = await connection.readResponse(IO_TIMEOUT_MS);
          expect(response.status).toBe(200);
          expect(response.body).toBe(BODY);
        }
        expect(connection.pendingBytes()).toBe(0);
        // Still open afterwards: a fourth request on the same socket is answered too.
        connection.write(httpGet("/p/4", "localhost"));
        expect((await connection.readResponse(IO_TIMEOUT_MS)).status).toBe(200);
      } finally {
        connection.close();
      }
    },
  );

  it(
    "closes the connection after answering a request with Connection: close",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const connection = await open();
      try {
        connection.write(httpGet("/bye", "localhost", { Connection: "close" }));
        const response = await connection.readResponse(IO_TIMEOUT_MS);
        expect(response.status).toBe(200);
        expect(response.body).toBe(BODY);
        await connection.waitForClose(IO_TIMEOUT_MS);
      } finally {
        connection.close();
      }
    },
  );
});

/** Runs argv[1:] under a seccomp filter that refuses io_uring_setup with EPERM (as container
 * runtimes' default profiles do); the workers inherit it. */
const NO_IO_URING = `
import errno, os, sys, seccomp
f = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
f.add_rule(seccomp.ERRNO(errno.EPERM), "io_uring_setup")
f.load()
os.execv(sys.argv[1], sys.argv[1:])
`;

describe.each(FULL_MATRIX_VERSIONS)("zig %s: io_uring refused by seccomp", (version) => {
  afterAll(async () => {
    await stopAllPrograms();
  });

  it(
    "each worker falls back to epoll with one io_fallback event, and serves",
    { timeout: SETUP_TIMEOUT_MS },
    async () => {
      const python = ensurePythonModule("seccomp", "python3-seccomp");
      const binary = await programOf("http", version);
      const args = ["--workers", "2", "--io", "io_uring", "--listen", "api=127.0.0.1:0"];
      const program = Program.start(python, ["-c", NO_IO_URING, binary, ...args]);
      const ready = await program.waitForEvent<ReadyEvent>("ready", READY_TIMEOUT_MS);
      const port = portOf(ready, "api");
      const connection = await HttpConnection.open("127.0.0.1", port, IO_TIMEOUT_MS);
      try {
        connection.write(httpGet("/", "localhost"));
        const response = await connection.readResponse(IO_TIMEOUT_MS);
        expect(response.status).toBe(200);
        expect(response.body).toBe(BODY);
      } finally {
        connection.close();
      }
      const fallbacks = program.events.filter((e) => e.event === "io_fallback");
      expect(fallbacks.map((e) => e.index).sort()).toEqual([0, 1]);
      for (const e of fallbacks) {
        expect(e).toMatchObject({ error: "EPERM", step: "io_uring_setup", io: "epoll" });
      }
      for (const worker of ready.workers) expect(holdsIoUring(worker.pid)).toBe(false);
    },
  );
});
