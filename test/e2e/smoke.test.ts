/**
 * The smoke subset: what every Zig release under test runs, also the releases that do not run
 * the whole suite (see `FULL_MATRIX_VERSIONS` in `support/zig.ts`). One client per built-in
 * handler (TCP whoami, HTTP, TCP and UDP echo) in supervisor mode, through a worker crash, a
 * SIGHUP restart and a graceful stop; both address families of the mixed example; one exchange
 * with the HTTP module (notes) and the stream module (resp). The datagram module (reflect.test.ts),
 * the custom handler (custom.test.ts), the http handler (http.test.ts) and the exit codes
 * (errors.test.ts) are small files that run on every release as they are.
 */
import net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { EchoConnection } from "./support/echo.js";
import { HttpConnection, httpGet } from "./support/http.js";
import { parseWhoami, tcpExchange, udpExchange, type LoopbackHost } from "./support/net.js";
import {
  portOf,
  READY_TIMEOUT_MS,
  startReady,
  STOP_TIMEOUT_MS,
  stopAllPrograms,
  waitUntilGone,
  type Program,
  type ReadyEvent,
  type ServiceEvent,
  type StoppedEvent,
} from "./support/program.js";
import { programOf } from "./support/project.js";
import { ANY_LOOPBACK_PORT, binaryOf, processGroupMembers } from "./support/supervised.js";
import { ZIG_VERSIONS } from "./support/zig.js";

const BUILD_TIMEOUT_MS = 15 * 60_000;
const IO_TIMEOUT_MS = 5_000;
const HOST = "127.0.0.1";

/** SIGTERM; expects exit 0, a graceful `stopped` event and no process of the group left. */
async function stopGracefully(program: Program): Promise<StoppedEvent> {
  program.signal("SIGTERM");
  expect(await program.waitForExit(STOP_TIMEOUT_MS), program.stderr).toEqual({
    code: 0,
    signal: null,
  });
  const stopped = await program.waitForEvent<StoppedEvent>("stopped", 1_000);
  expect(stopped.reason).toBe("graceful");
  expect(processGroupMembers(program.pid)).toEqual([]);
  expect(await waitUntilGone(program.knownPids, 2_000)).toEqual([]);
  return stopped;
}

const RFC3339_MS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

/**
 * Every event carries `ts` and every log line starts with the same kind of time: RFC 3339 UTC
 * with milliseconds, within the last few minutes (the clock of this machine).
 */
function expectTimestamps(program: Program): void {
  const now = Date.now();
  const recent = (text: string) => now - Date.parse(text) < 10 * 60_000 && Date.parse(text) <= now;
  expect(program.events.length).toBeGreaterThan(3);
  for (const event of program.events) {
    expect(Object.keys(event).slice(0, 2), JSON.stringify(event)).toEqual(["event", "ts"]);
    expect(event.ts, JSON.stringify(event)).toMatch(RFC3339_MS);
    expect(recent(event.ts as string), JSON.stringify(event)).toBe(true);
  }
  const lines = program.stderr.split("\n").filter((line) => line !== "");
  expect(lines.length).toBeGreaterThan(0);
  for (const line of lines) {
    const [time, rest] = [line.slice(0, 24), line.slice(25)];
    expect(time, line).toMatch(RFC3339_MS);
    expect(recent(time), line).toBe(true);
    expect(rest, line).toMatch(/^[a-z0-9-]+\[\d+\]: /);
  }
}

async function whoami(port: number) {
  return parseWhoami((await tcpExchange(HOST, port, { timeoutMs: IO_TIMEOUT_MS })).toString());
}

async function httpStatus(host: LoopbackHost, port: number): Promise<[number, string]> {
  const connection = await HttpConnection.open(host, port, IO_TIMEOUT_MS);
  try {
    connection.write(httpGet("/smoke", "localhost"));
    const response = await connection.readResponse(IO_TIMEOUT_MS);
    return [response.status, response.body];
  } finally {
    connection.close();
  }
}

async function echoed(host: LoopbackHost, port: number, line: string): Promise<string> {
  const connection = await EchoConnection.open(host, port, IO_TIMEOUT_MS);
  try {
    return await connection.exchange(line, IO_TIMEOUT_MS);
  } finally {
    connection.destroy();
  }
}

/** Sends `request` on one connection and reads until `expected.length` bytes came back. */
function exchangeBytes(port: number, request: string, expected: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: HOST, port });
    let received = Buffer.alloc(0);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`tcp ${port}: got ${JSON.stringify(received.toString())} in time`));
    }, IO_TIMEOUT_MS);
    socket.on("connect", () => socket.write(request));
    socket.on("data", (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      if (received.length < expected) return;
      clearTimeout(timer);
      socket.destroy();
      resolve(received.toString());
    });
    socket.on("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}

describe.each(ZIG_VERSIONS)("zig %s: smoke", (version) => {
  afterEach(async () => {
    await stopAllPrograms();
  });

  it(
    "supervisor mode: whoami, HTTP, TCP and UDP echo from 2 workers, a killed worker replaced, a SIGHUP restart, a graceful stop",
    { timeout: BUILD_TIMEOUT_MS },
    async () => {
      const binary = await binaryOf("supervised", version);
      const { program, ready } = await startReady(binary, ["--workers", "2", ...ANY_LOOPBACK_PORT]);
      expect(ready).toMatchObject({ mode: "supervisor", generation: 1, pid: program.pid });
      const pids = ready.workers.map((w) => w.pid);
      expect(new Set(pids).size).toBe(2);

      const who = await whoami(portOf(ready, "who"));
      expect(who.gen).toBe(1);
      expect(pids).toContain(who.pid);
      expect(await httpStatus(HOST, portOf(ready, "web"))).toEqual([200, expect.any(String)]);
      expect(await echoed(HOST, portOf(ready, "echo"), "smoke\n")).toBe("smoke\n");
      const udp = await udpExchange(HOST, portOf(ready, "uecho"), "smoke", { timeoutMs: 1_000 });
      expect(udp.toString()).toBe("smoke");

      // A crashed worker is seen (waitpid) and replaced in its slot.
      const killed = pids[0]!;
      process.kill(killed, "SIGKILL");
      const replaced = await program.waitForEvent<ServiceEvent & { pid: number; index: number }>(
        "worker_replaced",
        IO_TIMEOUT_MS,
        (e) => e.index === 0,
      );
      expect(replaced.pid).not.toBe(killed);

      // SIGHUP: generation 2 serves on the same ports, generation 1 drains.
      program.signal("SIGHUP");
      const next = await program.waitForEvent<ReadyEvent>(
        "ready",
        READY_TIMEOUT_MS,
        (e) => e.generation === 2,
      );
      expect(next.listeners).toEqual(ready.listeners);
      await program.waitForEvent("drained", STOP_TIMEOUT_MS, (e) => e.generation === 1);
      const after = await whoami(portOf(ready, "who"));
      expect(after.gen).toBe(2);
      expect(next.workers.map((w) => w.pid)).toContain(after.pid);

      const stopped = await stopGracefully(program);
      expect(stopped.generation).toBe(2);
      expectTimestamps(program);
    },
  );

  it(
    "the mixed example (--standalone) serves echo, UDP whoami and HTTP on 127.0.0.1 and ::1",
    { timeout: BUILD_TIMEOUT_MS },
    async () => {
      const binary = await programOf("mixed", version);
      const listen = (name: string, host: string) => ["--listen", `${name}=${host}:0`];
      const { program, ready } = await startReady(binary, [
        "--standalone",
        ...listen("echo4", "127.0.0.1"),
        ...listen("echo6", "[::1]"),
        ...listen("who4", "127.0.0.1"),
        ...listen("who6", "[::1]"),
        ...listen("web4", "127.0.0.1"),
        ...listen("web6", "[::1]"),
      ]);
      expect(ready.mode).toBe("standalone");
      for (const [name, host] of [["echo4", "127.0.0.1"], ["echo6", "::1"]] as const) {
        expect(await echoed(host, portOf(ready, name), `${name}\n`)).toBe(`${name}\n`);
      }
      for (const [name, host] of [["who4", "127.0.0.1"], ["who6", "::1"]] as const) {
        const reply = await udpExchange(host, portOf(ready, name), "who?", { timeoutMs: 1_000 });
        expect(parseWhoami(reply.toString()).pid).toBe(program.pid);
      }
      const hello = "OK\n"; // the default body of the http handler
      expect(await httpStatus("127.0.0.1", portOf(ready, "web4"))).toEqual([200, hello]);
      expect(await httpStatus("::1", portOf(ready, "web6"))).toEqual([200, '{"ok":true}\n']);
      await stopGracefully(program);
    },
  );

  it(
    "the notes example (HTTP module) stores and reads a note, and answers 404",
    { timeout: BUILD_TIMEOUT_MS },
    async () => {
      const binary = await programOf("notes", version);
      const { program, ready } = await startReady(binary, [
        "--standalone",
        "--listen",
        "api=127.0.0.1:0",
      ]);
      const port = portOf(ready, "api");
      const connection = await HttpConnection.open(HOST, port, IO_TIMEOUT_MS);
      try {
        const body = '{"t":"smoke"}';
        connection.write(
          `PUT /notes/7 HTTP/1.1\r\nHost: notes\r\nContent-Type: application/json\r\n` +
            `Content-Length: ${body.length}\r\n\r\n${body}`,
        );
        const put = await connection.readResponse(IO_TIMEOUT_MS);
        expect(put.status).toBe(201);
        expect(put.body).toBe(`{"id":7,"bytes":${body.length}}\n`);
        connection.write(httpGet("/notes/7", "notes"));
        const read = await connection.readResponse(IO_TIMEOUT_MS);
        expect([read.status, read.body]).toEqual([200, body]);
        connection.write(httpGet("/notes/8", "notes"));
        expect((await connection.readResponse(IO_TIMEOUT_MS)).status).toBe(404);
      } finally {
        connection.close();
      }
      await stopGracefully(program);
    },
  );

  it(
    "the resp example (stream module) answers a pipelined PING, SET and GET in order",
    { timeout: BUILD_TIMEOUT_MS },
    async () => {
      const binary = await programOf("resp", version);
      const { program, ready } = await startReady(binary, [
        "--standalone",
        "--listen",
        "cache=127.0.0.1:0",
      ]);
      const expected = "+PONG\r\n+OK\r\n$5\r\nsmoke\r\n";
      const reply = await exchangeBytes(
        portOf(ready, "cache"),
        "*1\r\n$4\r\nPING\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nsmoke\r\nGET k\r\n",
        expected.length,
      );
      expect(reply).toBe(expected);
      await stopGracefully(program);
    },
  );
});
