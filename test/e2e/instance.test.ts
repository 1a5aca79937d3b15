/**
 * One instance unless asked: a second supervisor started on the ports of a running one refuses
 * (exit 1, an `error` event with phase `join` naming the port and `--join`) while the first
 * keeps serving every client; with `--join` it shares the ports on purpose; a `--standalone`
 * process joins by design and says so with a `joined` event. The pid file is locked: a second
 * start with the same one exits 1 naming the running pid.
 */
import { existsSync } from "node:fs";
import { once } from "node:events";
import net from "node:net";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { parseWhoami, tcpExchange, udpExchange } from "./support/net.js";
import {
  Program,
  portOf,
  startReady,
  STOP_TIMEOUT_MS,
  stopAllPrograms,
  type ReadyEvent,
  type ServiceEvent,
} from "./support/program.js";
import { ANY_LOOPBACK_PORT, binaryOf } from "./support/supervised.js";
import { FULL_MATRIX_VERSIONS } from "./support/zig.js";

const BUILD_TIMEOUT_MS = 15 * 60_000;
const HOST = "127.0.0.1";

/** `--listen NAME=127.0.0.1:PORT` for every listener of a running instance. */
function samePorts(ready: ReadyEvent): string[] {
  return ready.listeners.flatMap((l) => ["--listen", `${l.name}=${HOST}:${l.port}`]);
}

/** whoami over TCP and echo over UDP, `rounds` times; the number of failures. */
async function failuresAgainst(ready: ReadyEvent, rounds: number): Promise<number> {
  let failed = 0;
  for (let i = 0; i < rounds; i += 1) {
    try {
      const who = await tcpExchange(HOST, portOf(ready, "who"), { timeoutMs: 2_000 });
      parseWhoami(who.toString());
      const udp = await udpExchange(HOST, portOf(ready, "uecho"), `r${i}`, { timeoutMs: 1_000 });
      if (udp.toString() !== `r${i}`) failed += 1;
    } catch {
      failed += 1;
    }
  }
  return failed;
}

describe.each(FULL_MATRIX_VERSIONS)("zig %s: one instance unless asked", (version) => {
  afterEach(async () => {
    await stopAllPrograms();
  });

  it(
    "a second supervisor on the same ports exits 1 naming the port and --join; the first serves on",
    { timeout: BUILD_TIMEOUT_MS },
    async () => {
      const binary = await binaryOf("supervised", version);
      const first = await startReady(binary, ["--workers", "2", ...ANY_LOOPBACK_PORT]);
      const second = Program.start(binary, ["--workers", "2", ...samePorts(first.ready)]);
      const [exit] = await Promise.all([
        second.waitForExit(STOP_TIMEOUT_MS),
        failuresAgainst(first.ready, 20).then((n) => expect(n).toBe(0)),
      ]);
      expect(exit, second.stderr).toEqual({ code: 1, signal: null });
      const error = await second.waitForEvent<ServiceEvent & { message: string }>("error", 1_000);
      expect(error).toMatchObject({ phase: "join", listener: "who" });
      expect(error.message).toContain(`port ${portOf(first.ready, "who")}`);
      expect(error.message).toContain("--join");
      expect(second.stderr).toContain("--join");
      expect(second.events.some((e) => e.event === "ready")).toBe(false);
      // Nothing of the second one is left, and the first one still answers.
      expect(await failuresAgainst(first.ready, 10)).toBe(0);
    },
  );

  it(
    "a port held by a socket that shares it with nobody is named in use, not a group to join",
    { timeout: BUILD_TIMEOUT_MS },
    async () => {
      const binary = await binaryOf("supervised", version);
      // A plain Node listener (no SO_REUSEPORT), and an outgoing connection's local port.
      // The server keeps its end open: a closed one would let the client's port go at once.
      const accepted: net.Socket[] = [];
      const plain = net.createServer((s) => accepted.push(s));
      await new Promise<void>((resolve) => plain.listen(0, HOST, resolve));
      const client = net.connect((plain.address() as net.AddressInfo).port, HOST);
      await once(client, "connect");
      try {
        const holders = [(plain.address() as net.AddressInfo).port, client.localPort!];
        for (const port of holders) {
          const listen = ANY_LOOPBACK_PORT.map((a) =>
            a.startsWith("who=") ? `who=${HOST}:${port}` : a,
          );
          const program = Program.start(binary, ["--workers", "1", ...listen]);
          expect(await program.waitForExit(STOP_TIMEOUT_MS), program.stderr).toEqual({
            code: 1,
            signal: null,
          });
          type ErrorEvent = ServiceEvent & { message: string };
          const error = await program.waitForEvent<ErrorEvent>("error", 1_000);
          expect(error).toMatchObject({ phase: "join", listener: "who", error: "PortInUse" });
          expect(error.message).toContain(`port ${port} on ${HOST} is in use`);
          expect(error.message).not.toContain("--join");
        }
      } finally {
        client.destroy();
        for (const s of accepted) s.destroy();
        await new Promise((resolve) => plain.close(resolve));
      }
    },
  );

  it(
    "with --join a second supervisor shares the ports; --standalone joins and says so",
    { timeout: BUILD_TIMEOUT_MS },
    async () => {
      const binary = await binaryOf("supervised", version);
      const first = await startReady(binary, ["--workers", "1", ...ANY_LOOPBACK_PORT]);
      const ports = samePorts(first.ready);
      const joined = await startReady(binary, ["--workers", "1", "--join", ...ports]);
      expect(joined.ready.listeners.map((l) => l.port)).toEqual(
        first.ready.listeners.map((l) => l.port),
      );
      expect(joined.program.events.some((e) => e.event === "error")).toBe(false);
      // Both groups' workers answer on the one port.
      const pids = new Set<number>();
      for (let i = 0; i < 200 && pids.size < 2; i += 1) {
        const who = await tcpExchange(HOST, portOf(first.ready, "who"), { timeoutMs: 2_000 });
        pids.add(parseWhoami(who.toString()).pid);
      }
      expect([...pids].sort()).toEqual(
        [first.ready.workers[0]!.pid, joined.ready.workers[0]!.pid].sort(),
      );
      joined.program.signal("SIGTERM");
      expect(await joined.program.waitForExit(STOP_TIMEOUT_MS)).toEqual({ code: 0, signal: null });

      const alone = await startReady(binary, ["--standalone", ...ports]);
      const events = alone.program.events.filter((e) => e.event === "joined");
      expect(events.map((e) => e.listener).sort()).toEqual(["echo", "uecho", "web", "who"]);
      expect(events.find((e) => e.listener === "who")).toMatchObject({
        protocol: "tcp",
        port: portOf(first.ready, "who"),
      });
      alone.program.signal("SIGTERM");
      expect(await alone.program.waitForExit(STOP_TIMEOUT_MS)).toEqual({ code: 0, signal: null });
      first.program.signal("SIGTERM");
      expect(await first.program.waitForExit(STOP_TIMEOUT_MS)).toEqual({ code: 0, signal: null });
    },
  );

  it(
    "a second start with the same pid file exits 1 naming the running pid; a missing directory is an error",
    { timeout: BUILD_TIMEOUT_MS },
    async () => {
      const binary = await binaryOf("supervised", version);
      const dir = await mkdtemp(path.join(tmpdir(), "gen-reuseport-pid-"));
      try {
        const pidFile = path.join(dir, "service.pid");
        const first = await startReady(binary, ["--pid-file", pidFile, ...ANY_LOOPBACK_PORT]);
        expect((await readFile(pidFile, "utf8")).trim()).toBe(String(first.program.pid));
        // Other ports: only the pid file stands in the way.
        for (const args of [
          ["--pid-file", pidFile, ...ANY_LOOPBACK_PORT],
          ["--standalone", "--pid-file", pidFile, ...ANY_LOOPBACK_PORT],
        ]) {
          const second = Program.start(binary, args);
          expect(await second.waitForExit(STOP_TIMEOUT_MS), second.stderr).toEqual({
            code: 1,
            signal: null,
          });
          expect(second.stderr).toContain(`already running as pid ${first.program.pid}`);
          expect(second.stderr).toContain(pidFile);
          expect(second.events.some((e) => e.event === "ready")).toBe(false);
        }
        expect((await readFile(pidFile, "utf8")).trim()).toBe(String(first.program.pid));
        expect(await failuresAgainst(first.ready, 10)).toBe(0);
        first.program.signal("SIGTERM");
        expect(await first.program.waitForExit(STOP_TIMEOUT_MS)).toEqual({ code: 0, signal: null });
        expect(existsSync(pidFile)).toBe(false);

        // Once it is gone, the next start takes the pid file.
        const next = await startReady(binary, ["--pid-file", pidFile, ...ANY_LOOPBACK_PORT]);
        expect((await readFile(pidFile, "utf8")).trim()).toBe(String(next.program.pid));
        next.program.signal("SIGTERM");
        expect(await next.program.waitForExit(STOP_TIMEOUT_MS)).toEqual({ code: 0, signal: null });

        const missing = path.join(dir, "no-such-dir", "service.pid");
        const failed = Program.start(binary, ["--pid-file", missing, ...ANY_LOOPBACK_PORT]);
        expect(await failed.waitForExit(STOP_TIMEOUT_MS)).toEqual({ code: 1, signal: null });
        expect(failed.stderr).toContain(`cannot open pid file ${missing}: NOENT`);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  );
});
