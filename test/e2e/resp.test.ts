/**
 * The resp example: a RESP2 subset as a stream module (examples/app/resp.zig over the
 * generated stub), checked with redis-cli, the real client. redis-cli comes from Debian's
 * redis-tools: installed with apt-get when missing (as root); under CI=true a missing
 * redis-cli fails the run instead of skipping it. Back-pressure is shown with Node sockets that
 * pipeline megabytes of commands: how much the kernel took from them, and the worker's memory.
 */
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { tcpExchange } from "./support/net.js";
import {
  portOf,
  startReady,
  stopAllPrograms,
  STOP_TIMEOUT_MS,
  type StoppedEvent,
} from "./support/program.js";
import { programOf } from "./support/project.js";
import { ensureCommand } from "./support/tools.js";
import { FULL_MATRIX_VERSIONS } from "./support/zig.js";

const SETUP_TIMEOUT_MS = 15 * 60_000;
const TEST_TIMEOUT_MS = 30_000;

/** Resident memory of a process, in KiB, from /proc. */
function rssKiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const match = /VmRSS:\s+(\d+)/.exec(status);
  if (match === null) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(match[1]);
}

function sleepMs(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * A client that pipelines `pieces` × `piece` without waiting: `taken` counts the bytes the
 * kernel accepted (a write's callback runs once its bytes left Node), `received` what came back.
 */
async function flood(port: number, first: string, piece: Buffer, pieces: number) {
  const socket = net.connect(port, "127.0.0.1");
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("error", reject);
  });
  const state = { socket, taken: 0, received: Buffer.alloc(0), chunks: [] as Buffer[] };
  socket.on("data", (data: Buffer) => state.chunks.push(data));
  socket.write(first);
  for (let i = 0; i < pieces; i += 1) {
    socket.write(piece, () => {
      state.taken += piece.length;
    });
  }
  return state;
}

function receivedBytes(state: { chunks: Buffer[] }): number {
  return state.chunks.reduce((n, c) => n + c.length, 0);
}

/** Polls until `done` or `limitMs` passes (bounded). */
async function until(done: () => boolean, limitMs: number): Promise<void> {
  const start = Date.now();
  while (!done() && Date.now() - start < limitMs) await sleepMs(25);
}

function redisCli(port: number, args: readonly string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      "redis-cli",
      ["-h", "127.0.0.1", "-p", String(port), ...args],
      { timeout: 5_000 },
      (error, stdout, stderr) => {
        if (error) reject(new Error(`redis-cli ${args.join(" ")}: ${stderr || error.message}`));
        else resolve(stdout);
      },
    );
    // redis-cli may exit before it reads its standard input (a command given as arguments):
    // the pipe then breaks (EPIPE), which is no failure; its output and exit status are judged.
    child.stdin?.on("error", (error: NodeJS.ErrnoException) => {
      if (error.code !== "EPIPE") reject(error);
    });
    child.stdin?.end(input ?? "");
  });
}

describe.each(FULL_MATRIX_VERSIONS)("zig %s: the resp example (stream module, redis-cli)", (version) => {
  let port: number;
  let pid: number;
  const timeout = TEST_TIMEOUT_MS;

  beforeAll(async () => {
    ensureCommand("redis-cli", "redis-tools");
    const binary = await programOf("resp", version);
    const { ready } = await startReady(binary, ["--standalone", "--listen", "cache=127.0.0.1:0"]);
    port = portOf(ready, "cache");
    pid = ready.pid;
  }, SETUP_TIMEOUT_MS);

  afterAll(async () => {
    await stopAllPrograms();
  });

  it("answers PING, ECHO, SET, GET, INCR and DEL as Redis does", { timeout }, async () => {
    expect(await redisCli(port, ["PING"])).toBe("PONG\n");
    expect(await redisCli(port, ["ECHO", "hello world"])).toBe("hello world\n");
    expect(await redisCli(port, ["SET", "greeting", "hi there"])).toBe("OK\n");
    expect(await redisCli(port, ["GET", "greeting"])).toBe("hi there\n");
    expect(await redisCli(port, ["INCR", "counter"])).toBe("1\n");
    expect(await redisCli(port, ["INCR", "counter"])).toBe("2\n");
    // redis-cli ends an error reply with an empty line when its output is not a terminal.
    expect(await redisCli(port, ["INCR", "greeting"])).toBe(
      "ERR value is not an integer or out of range\n\n",
    );
    expect(await redisCli(port, ["DEL", "greeting", "counter", "missing"])).toBe("2\n");
    expect(await redisCli(port, ["GET", "greeting"])).toBe("\n");
    expect(await redisCli(port, ["NOPE"])).toBe("ERR unknown command 'NOPE'\n\n");
  });

  it("keeps a client name per connection", { timeout }, async () => {
    // One redis-cli session (one connection) reading commands from stdin.
    const session = "CLIENT GETNAME\nCLIENT SETNAME worker-test\nCLIENT GETNAME\n";
    expect(await redisCli(port, [], session)).toBe("\nOK\nworker-test\n");
    // A new connection has no name.
    expect(await redisCli(port, ["CLIENT", "GETNAME"])).toBe("\n");
  });

  it("answers inline commands and a pipelined batch in order", { timeout }, async () => {
    const reply = await tcpExchange("127.0.0.1", port, {
      send: "PING\r\nSET k 5\r\nINCR k\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
      endAfterSend: true,
      timeoutMs: 5_000,
    });
    expect(reply.toString()).toBe("+PONG\r\n+OK\r\n:6\r\n$1\r\n6\r\n");
  });

  it("reads integers as redis-server does, has INCRBY, runs nothing after QUIT", { timeout }, async () => {
    expect(await redisCli(port, ["INCRBY", "by", "10"])).toBe("10\n");
    expect(await redisCli(port, ["INCRBY", "by", "-3"])).toBe("7\n");
    expect(await redisCli(port, ["INCRBY", "by", "+1"])).toBe(
      "ERR value is not an integer or out of range\n\n",
    );
    for (const bad of ["*+1\r\n$4\r\nPING\r\n", "*1\r\n$0_4\r\nPING\r\n"]) {
      const reply = await tcpExchange("127.0.0.1", port, { send: bad, timeoutMs: 5_000 });
      expect(reply.toString()).toMatch(/^-ERR Protocol error/);
    }
    const quit = await tcpExchange("127.0.0.1", port, {
      send: "PING\r\nQUIT\r\nSET after-quit 1\r\nPING\r\n",
      timeoutMs: 5_000,
    });
    expect(quit.toString()).toBe("+PONG\r\n+OK\r\n");
    expect(await redisCli(port, ["GET", "after-quit"])).toBe("\n");
  });

  it("holds a 60 KB value through redis-cli", { timeout }, async () => {
    const value = "v".repeat(60_000);
    expect(await redisCli(port, ["-x", "SET", "big"], value)).toBe("OK\n");
    expect(await redisCli(port, ["GET", "big"])).toBe(`${value}\n`);
  });

  it("answers DEBUG SLEEP from its connection's timer, others meanwhile", { timeout }, async () => {
    const started = Date.now();
    const sleeping = redisCli(port, ["DEBUG", "SLEEP", "0.4"]);
    // Another connection of the same single worker is served during the sleep.
    expect(await redisCli(port, ["PING"])).toBe("PONG\n");
    const pingMs = Date.now() - started;
    expect(await sleeping).toBe("OK\n");
    const sleptMs = Date.now() - started;
    expect(sleptMs).toBeGreaterThanOrEqual(400);
    expect(pingMs).toBeLessThan(sleptMs);
    // The commands pipelined behind it wait for its end, then are answered in order.
    const reply = await tcpExchange("127.0.0.1", port, {
      send: "DEBUG SLEEP 0.2\r\nPING\r\nECHO after\r\n",
      endAfterSend: true,
      timeoutMs: 5_000,
    });
    expect(reply.toString()).toBe("+OK\r\n+PONG\r\n$5\r\nafter\r\n");
    expect(await redisCli(port, ["DEBUG", "SLEEP", "soon"])).toBe(
      "ERR value is not a valid float\n\n",
    );
  });

  it("reads nothing while paused: the client slows, memory stays flat", { timeout }, async () => {
    const piece = Buffer.from("PING\r\n".repeat(10_000));
    const pieces = 400; // 24 MB of pipelined PINGs
    const before = rssKiB(pid);
    const client = await flood(port, "DEBUG SLEEP 1.5\r\n", piece, pieces);
    try {
      await sleepMs(700);
      // Mid-sleep: no answer yet, and the kernel took only what its buffers hold.
      expect(receivedBytes(client)).toBe(0);
      expect(client.taken).toBeLessThan((piece.length * pieces) / 2);
      expect(rssKiB(pid) - before).toBeLessThan(4096);
      const want = "+OK\r\n".length + "+PONG\r\n".length * 10_000 * pieces;
      await until(() => receivedBytes(client) >= want, 20_000);
      const all = Buffer.concat(client.chunks);
      expect(all.length).toBe(want);
      expect(all.subarray(0, 12).toString()).toBe("+OK\r\n+PONG\r\n");
      expect(client.taken).toBe(piece.length * pieces);
    } finally {
      client.socket.destroy();
    }
  });

  it("answers everything to a client that reads only at the end", { timeout }, async () => {
    const piece = Buffer.from("PING\r\n".repeat(10_000));
    const pieces = 400;
    const before = rssKiB(pid);
    const client = await flood(port, "", piece, pieces);
    client.socket.pause();
    try {
      await sleepMs(1_000);
      // Answers pile up in the kernel until the client reads; the worker stops reading then.
      expect(client.taken).toBeLessThan(piece.length * pieces);
      expect(rssKiB(pid) - before).toBeLessThan(4096);
      client.socket.resume();
      const want = "+PONG\r\n".length * 10_000 * pieces;
      await until(() => receivedBytes(client) >= want, 20_000);
      expect(receivedBytes(client)).toBe(want);
    } finally {
      client.socket.destroy();
    }
  });

  it("a paused connection runs on the write timeout, not the idle one", { timeout }, async () => {
    const binary = await programOf("resp", version);
    const args = ["--standalone", "--listen", "cache=127.0.0.1:0"];
    const limits = ["--idle-timeout", "300", "--write-timeout", "1500"];
    const { program, ready } = await startReady(binary, [...args, ...limits]);
    const own = portOf(ready, "cache");
    // Paused for 800 ms, past the idle timeout: answered, not closed as idle.
    const slept = await tcpExchange("127.0.0.1", own, {
      send: "DEBUG SLEEP 0.8\r\nPING\r\n",
      endAfterSend: true,
      timeoutMs: 5_000,
    });
    expect(slept.toString()).toBe("+OK\r\n+PONG\r\n");
    // Paused past the write timeout: closed without an answer.
    const started = Date.now();
    const cut = await tcpExchange("127.0.0.1", own, {
      send: "DEBUG SLEEP 5\r\n",
      timeoutMs: 5_000,
    });
    expect(cut.length).toBe(0);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1_400);
    expect(Date.now() - started).toBeLessThan(4_500);
    program.signal("SIGTERM");
    expect(await program.waitForExit(STOP_TIMEOUT_MS)).toEqual({ code: 0, signal: null });
    const stopped = await program.waitForEvent<StoppedEvent>("stopped", 1_000);
    const workers = stopped.workers as unknown as { timeouts: Record<string, number> }[];
    expect(workers.map((w) => w.timeouts)).toEqual([{ header: 0, body: 0, idle: 0, write: 1, request: 0 }]);
  });
});
