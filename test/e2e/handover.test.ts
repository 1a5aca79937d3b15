/**
 * `--handover PATH`: standalone processes hand their listening sockets on. The pattern "start
 * the new process, then stop the old one" then closes no member of the port's reuseport
 * group, so nothing queued is reset, whatever net.ipv4.tcp_migrate_req says. Checked with the
 * real binary, real sockets and signals: the new process serves the very sockets of the old
 * one (the same socket inodes, no new group member), clients under continuous load see no
 * failure across two successive replacements, and the path is refused when it is not ours.
 */
import { existsSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { parseWhoami, runBounded, tcpExchange, udpExchange } from "./support/net.js";
import {
  listenArgs,
  portOf,
  Program,
  startReady,
  stopAllPrograms,
  STOP_TIMEOUT_MS,
  type ReadyEvent,
  type StoppedEvent,
} from "./support/program.js";
import { programOf } from "./support/project.js";
import { FULL_MATRIX_VERSIONS } from "./support/zig.js";

const SETUP_TIMEOUT_MS = 15 * 60_000;
const TEST_TIMEOUT_MS = 90_000;
const IO_TIMEOUT_MS = 5_000;

/** The mixed example's listeners, each on loopback with a port the first process picks. */
const ANY_PORT = {
  echo4: { host: "127.0.0.1", port: 0 },
  echo6: { host: "::1", port: 0 },
  who4: { host: "127.0.0.1", port: 0 },
  who6: { host: "::1", port: 0 },
  web4: { host: "127.0.0.1", port: 0 },
  web6: { host: "::1", port: 0 },
};

type Endpoints = Record<string, { host: string; port: number }>;

function endpointsOf(ready: ReadyEvent): Endpoints {
  return Object.fromEntries(
    Object.entries(ANY_PORT).map(([name, { host }]) => [name, { host, port: portOf(ready, name) }]),
  );
}

/** Inodes of the sockets bound to `port` on loopback, from /proc/net (TCP: listening only). */
function socketInodes(protocol: "tcp" | "udp", port: number): Set<string> {
  const inodes = new Set<string>();
  for (const table of [protocol, `${protocol}6`]) {
    const lines = readFileSync(`/proc/net/${table}`, "utf8").trim().split("\n").slice(1);
    for (const line of lines) {
      const fields = line.trim().split(/\s+/);
      const local = fields[1]!;
      const state = fields[3]!;
      const localPort = Number.parseInt(local.slice(local.lastIndexOf(":") + 1), 16);
      if (localPort !== port) continue;
      if (protocol === "tcp" && state !== "0A") continue;
      inodes.add(fields[9]!);
    }
  }
  return inodes;
}

/** Inodes of every socket process `pid` holds. */
function heldSockets(pid: number): Set<string> {
  const held = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      const match = /^socket:\[(\d+)\]$/.exec(target);
      if (match) held.add(match[1]!);
    } catch {
      // closed meanwhile
    }
  }
  return held;
}

/**
 * Clients that keep going until stopped: TCP echo exchanges (a new connection each) over
 * IPv4 and IPv6, and UDP whoami exchanges; every failure is kept with its reason.
 */
function startLoad(endpoints: Endpoints) {
  let running = true;
  const failures: string[] = [];
  let exchanges = 0;
  const pids = new Set<number>();
  const loop = async (i: number) => {
    for (let n = 0; running && n < 100_000; n++) {
      try {
        if (i % 4 === 3) {
          const name = n % 2 === 0 ? "who4" : "who6";
          const { host, port } = endpoints[name]!;
          const who = parseWhoami(
            (await udpExchange(host as "127.0.0.1", port, "who?", { timeoutMs: 2_000 })).toString(),
          );
          pids.add(who.pid);
        } else {
          const name = n % 2 === 0 ? "echo4" : "echo6";
          const { host, port } = endpoints[name]!;
          const message = `load ${i}.${n}\n`;
          const reply = await tcpExchange(host as "127.0.0.1", port, {
            send: message,
            endAfterSend: true,
            timeoutMs: IO_TIMEOUT_MS,
          });
          if (reply.toString() !== message) failures.push(`${name}: echoed ${JSON.stringify(reply.toString())}`);
        }
        exchanges++;
      } catch (error) {
        failures.push(String(error));
      }
    }
  };
  const loops = Array.from({ length: 12 }, (_, i) => loop(i));
  return {
    failures,
    pids,
    get exchanges() {
      return exchanges;
    },
    async stop() {
      running = false;
      await Promise.all(loops);
    },
  };
}

async function stopGracefully(program: Program): Promise<StoppedEvent> {
  program.signal("SIGTERM");
  const stopped = await program.waitForEvent<StoppedEvent>("stopped", STOP_TIMEOUT_MS);
  expect(await program.waitForExit(STOP_TIMEOUT_MS)).toEqual({ code: 0, signal: null });
  return stopped;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Waits (bounded) until the program's stderr matches: stderr and stdout are two pipes, so a line
 * logged before `ready` (or before the exit) may still be on its way when that is seen.
 */
async function expectLog(program: Program, pattern: RegExp) {
  for (let i = 0; i < 100 && !pattern.test(program.stderr); i++) await sleep(20);
  expect(program.stderr).toMatch(pattern);
}

describe.each(FULL_MATRIX_VERSIONS)("zig %s: --handover", (version) => {
  let binary: string;
  let dir: string;

  beforeAll(async () => {
    binary = await programOf("mixed", version);
    dir = mkdtempSync(path.join(os.tmpdir(), "handover-"));
  }, SETUP_TIMEOUT_MS);

  afterEach(async () => {
    await stopAllPrograms();
  });

  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it(
    "start the new process, stop the old one, twice, under TCP and UDP load: the same sockets travel on, no client fails",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const socketPath = path.join(dir, "mixed.sock");
      const flags = (endpoints: Endpoints) => [
        "--standalone",
        "--handover",
        socketPath,
        ...listenArgs(endpoints),
      ];
      const a = await startReady(binary, flags(ANY_PORT));
      const endpoints = endpointsOf(a.ready);
      expect(existsSync(socketPath)).toBe(true);
      const load = startLoad(endpoints);
      try {
        await sleep(300);
        const b = await startReady(binary, flags(endpoints));
        expect(endpointsOf(b.ready)).toEqual(endpoints);
        // The new process serves the old one's sockets: one socket per listener, held by both.
        for (const [name, protocol] of [
          ["echo4", "tcp"],
          ["web6", "tcp"],
          ["who4", "udp"],
        ] as const) {
          const inodes = socketInodes(protocol, endpoints[name]!.port);
          const heldByA = heldSockets(a.program.pid);
          const heldByB = heldSockets(b.program.pid);
          const ours = [...inodes].filter((inode) => heldByA.has(inode) || heldByB.has(inode));
          expect(ours.length, `${name}: sockets of the port held by the two processes`).toBe(1);
          for (const inode of ours) {
            expect(heldByA.has(inode) && heldByB.has(inode), `${name} socket ${inode}`).toBe(true);
          }
        }
        await sleep(300);
        const stoppedA = await stopGracefully(a.program);
        expect(stoppedA.reason).toBe("graceful");
        await expectLog(a.program, /handed to the next process/);
        await sleep(300);

        const c = await startReady(binary, flags(endpoints));
        await expectLog(c.program, new RegExp(`taken from pid ${b.program.pid}`));
        await sleep(300);
        await stopGracefully(b.program);
        await sleep(500);
        await load.stop();
        console.log(
          `zig ${version}: handover twice under load: ${load.exchanges} exchanges, ` +
            `${load.failures.length} failures, UDP answered by pids ${[...load.pids].join(",")}`,
        );
        expect(load.failures).toEqual([]);
        expect(load.exchanges).toBeGreaterThan(100);
        // The last process serves alone, on the sockets the first one opened.
        const who = parseWhoami(
          (await udpExchange("127.0.0.1", endpoints.who4!.port, "who?", { timeoutMs: 2_000 })).toString(),
        );
        expect(who.pid).toBe(c.program.pid);
        await stopGracefully(c.program);
        expect(existsSync(socketPath), "the last process removes its path").toBe(false);
      } finally {
        await load.stop();
      }
    },
  );

  it(
    "a path left by a process that was killed is taken over: the new one opens its own sockets and serves",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const socketPath = path.join(dir, "stale.sock");
      const a = await startReady(binary, ["--standalone", "--handover", socketPath, ...listenArgs(ANY_PORT)]);
      const endpoints = endpointsOf(a.ready);
      a.program.signal("SIGKILL");
      await a.program.waitForExit(STOP_TIMEOUT_MS);
      expect(existsSync(socketPath), "a killed process leaves its socket file").toBe(true);
      const b = await startReady(binary, ["--standalone", "--handover", socketPath, ...listenArgs(endpoints)]);
      expect(b.program.stderr).not.toMatch(/taken from pid/);
      const reply = await tcpExchange("127.0.0.1", endpoints.echo4!.port, {
        send: "still here\n",
        endAfterSend: true,
        timeoutMs: IO_TIMEOUT_MS,
      });
      expect(reply.toString()).toBe("still here\n");
      await stopGracefully(b.program);
      expect(existsSync(socketPath)).toBe(false);
    },
  );

  it(
    "refuses a path that is not a socket (exit 1, the path and the fix named, the file untouched) and --handover without --standalone",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const file = path.join(dir, "notes.txt");
      writeFileSync(file, "my notes\n");
      const refused = Program.start(binary, ["--standalone", "--handover", file, ...listenArgs(ANY_PORT)]);
      const exit = await refused.waitForExit(STOP_TIMEOUT_MS);
      expect(exit.code).toBe(1);
      expect(refused.stderr).toContain(`--handover ${file}: exists and is not a socket; remove it or choose another path`);
      expect(refused.find("ready")).toBeUndefined();
      expect(readFileSync(file, "utf8")).toBe("my notes\n");

      const supervised = Program.start(binary, ["--handover", path.join(dir, "x.sock"), ...listenArgs(ANY_PORT)]);
      const usage = await supervised.waitForExit(STOP_TIMEOUT_MS);
      expect(usage.code).not.toBe(0);
      expect(supervised.stderr).toContain("--handover is for --standalone processes");
    },
  );
});
