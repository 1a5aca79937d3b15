/**
 * Hostile and careless clients, limits: a flood of idle connections far beyond the
 * connection table (2 workers × 64) does not keep fresh clients of any listener waiting (the
 * longest-idle connection is evicted to admit them), and the program raises its soft limit
 * on open files to what its connection table needs, up to the hard limit, saying so when the
 * hard limit is lower.
 */
import { readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  describeCounters,
  expectNoCrash,
  HOST,
  parseResponses,
  RawClient,
  startService,
  stopAndCheck,
} from "./support/hostile.js";
import { parseWhoami, runBounded, tcpExchange, udpExchange } from "./support/net.js";
import { portOf, startReady, stopAllPrograms, type Program, type ReadyEvent } from "./support/program.js";
import {
  ANY_LOOPBACK_PORT,
  binaryOf,
  HOSTILE_ANY_LOOPBACK_PORT,
  HOSTILE_SPEC,
  SUPERVISED_SPEC,
} from "./support/supervised.js";
import { FULL_MATRIX_VERSIONS } from "./support/zig.js";

const SETUP_TIMEOUT_MS = 15 * 60_000;
const TEST_TIMEOUT_MS = 90_000;
const IO_TIMEOUT_MS = 5_000;
/** Idle connections of the flood: about 3 × the 128 the two workers hold, well under 1024 fds. */
const FLOOD = 400;
const CAPACITY = HOSTILE_SPEC.workers * HOSTILE_SPEC.maxConnections;
/** How fast a fresh client must be answered while the flood sits there. */
const FRESH_MS = 1_000;
const FRESH_ROUNDS = 5;
/** The runtime's `evict_min_idle_ms` (worker/connections.zig): no connection idle for less is evicted. */
const EVICT_MIN_IDLE_MS = 500;
const CRLF = "\r\n";

interface FdLimits {
  soft: number;
  hard: number;
}

/** "Max open files" of /proc/<pid>/limits ("unlimited" as Infinity). */
function fdLimitsOf(pid: number): FdLimits {
  const text = readFileSync(`/proc/${pid}/limits`, "utf8");
  const m = /^Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/m.exec(text);
  if (m === null) throw new Error(`no "Max open files" in /proc/${pid}/limits:\n${text}`);
  const value = (v: string) => (v === "unlimited" ? Number.POSITIVE_INFINITY : Number(v));
  return { soft: value(m[1]!), hard: value(m[2]!) };
}

/** Runs `fn`, and its time in ms; rejects when it takes longer than `limitMs`. */
async function timed<T>(what: string, limitMs: number, fn: () => Promise<T>): Promise<number> {
  const t0 = Date.now();
  await fn();
  const ms = Date.now() - t0;
  expect(ms, `${what} answered in ${ms} ms`).toBeLessThanOrEqual(limitMs);
  return ms;
}

/**
 * FRESH_ROUNDS rounds of one fresh client per listener (TCP whoami, HTTP GET, TCP echo, UDP
 * echo), each answered correctly within FRESH_MS; returns the times in ms.
 */
async function freshClients(ready: ReadyEvent): Promise<number[]> {
  const echoPort = portOf(ready, "echo");
  const times: number[] = [];
  for (let round = 0; round < FRESH_ROUNDS; round++) {
    times.push(
      await timed("TCP whoami", FRESH_MS, async () => {
        const line = await tcpExchange(HOST, portOf(ready, "who"), { timeoutMs: FRESH_MS });
        parseWhoami(line.toString());
      }),
      await timed("HTTP GET", FRESH_MS, async () => {
        const reply = await tcpExchange(HOST, portOf(ready, "web"), {
          send: `GET /fresh HTTP/1.1${CRLF}Host: h${CRLF}Connection: close${CRLF}${CRLF}`,
          timeoutMs: FRESH_MS,
        });
        expect(parseResponses(reply).responses.map((r) => r.status)).toEqual([200]);
      }),
      await timed("TCP echo", FRESH_MS, async () => {
        const reply = await tcpExchange(HOST, echoPort, {
          send: `fresh ${round}\n`,
          endAfterSend: true,
          timeoutMs: FRESH_MS,
        });
        expect(reply.toString()).toBe(`fresh ${round}\n`);
      }),
      await timed("UDP echo", FRESH_MS, async () => {
        const reply = await udpExchange(HOST, portOf(ready, "uecho"), `fresh ${round}`, {
          // Loopback UDP may still drop: 3 tries of a third of the time each.
          timeoutMs: Math.floor(FRESH_MS / 3),
          attempts: 3,
        });
        expect(reply.toString()).toBe(`fresh ${round}`);
      }),
    );
  }
  return times;
}

/** Waits (at most 2 s) for `pattern` on the program's stderr, which may trail its stdout. */
async function stderrMatching(program: Program, pattern: RegExp): Promise<void> {
  for (let i = 0; i < 40 && !pattern.test(program.stderr); i++) await sleep(50);
  expect(program.stderr).toMatch(pattern);
}

describe.each(FULL_MATRIX_VERSIONS)("zig %s: hostile clients, limits", (version) => {
  afterEach(async () => {
    await stopAllPrograms();
  });

  describe("an idle flood", () => {
    let binary: string;
    beforeAll(async () => {
      binary = await binaryOf("hostile", version);
    }, SETUP_TIMEOUT_MS);

    it(
      `${FLOOD} idle connections to the echo port (capacity ${CAPACITY}): fresh clients of every listener are answered within ${FRESH_MS} ms, and idle ones were evicted`,
      { timeout: TEST_TIMEOUT_MS },
      async () => {
        const { program, ready } = await startService(binary, HOSTILE_ANY_LOOPBACK_PORT);
        const echoPort = portOf(ready, "echo");
        const flood: RawClient[] = [];
        try {
          const opened = await runBounded(FLOOD, 50, async () => {
            const client = await RawClient.connect(HOST, echoPort, IO_TIMEOUT_MS);
            flood.push(client);
          });
          expect(opened.filter((r) => r.status === "rejected").map((r) => String(r.reason))).toEqual(
            [],
          );
          // The workers take the flood in and evict down to their tables: wait (bounded) until
          // the clients have seen at least the surplus closed.
          const surplus = FLOOD - CAPACITY;
          const deadline = Date.now() + 10_000;
          while (flood.filter((c) => c.serverClosed).length < surplus && Date.now() < deadline) {
            await sleep(50);
          }
          const evictedSeen = flood.filter((c) => c.serverClosed).length;
          expect(evictedSeen, "flood connections the server closed").toBeGreaterThanOrEqual(surplus);
          expect(flood.filter((c) => c.error !== undefined).map((c) => c.error?.code)).toEqual([]);

          const times = await freshClients(ready);
          const closedByServer = flood.filter((c) => c.serverClosed).length;
          console.log(
            `zig ${version}: ${FLOOD} idle connections, ${evictedSeen} closed by the server after the flood, ` +
              `${closedByServer} after ${FRESH_ROUNDS} rounds of fresh clients answered in ` +
              `${times.join("/")} ms (whoami/http/echo/udp)`,
          );
          expectNoCrash(program, ready);
        } finally {
          for (const client of flood) client.destroy();
        }
        const { total } = await stopAndCheck(program, ready);
        console.log(`zig ${version}: flood counters: ${describeCounters(total)}`);
        expect(total.evicted).toBeGreaterThanOrEqual(FLOOD - CAPACITY);
        expect(total.connections).toBeGreaterThanOrEqual(FLOOD + 3 * FRESH_ROUNDS);
        expect(total.timeouts).toEqual({ header: 0, body: 0, idle: 0, write: 0, request: 0 });
      },
    );
  });

  describe("eviction, exactly", () => {
    let binary: string;
    beforeAll(async () => {
      binary = await binaryOf("hostile", version);
    }, SETUP_TIMEOUT_MS);

    it(
      `evicts only to admit a newcomer: after ${FLOOD} idle connections exactly ${CAPACITY} stay open, and 20 more displace exactly 20`,
      { timeout: TEST_TIMEOUT_MS },
      async () => {
        const { program, ready } = await startService(binary, HOSTILE_ANY_LOOPBACK_PORT);
        const conns: RawClient[] = [];
        const open = () => conns.filter((c) => !c.serverClosed).length;
        try {
          // One at a time, so that each worker sees its share in order.
          for (let i = 0; i < FLOOD; i++) {
            conns.push(await RawClient.connect(HOST, portOf(ready, "echo"), IO_TIMEOUT_MS));
          }
          // A connection is evicted only once idle for the runtime's evict_min_idle_ms, so the
          // queued surplus is admitted a table at a time: wait (bounded) until it is, then a
          // while longer, to see that no more than the newcomers' number were evicted.
          const admitted = Date.now() + 10 * EVICT_MIN_IDLE_MS;
          while (open() > CAPACITY && Date.now() < admitted) await sleep(50);
          await sleep(EVICT_MIN_IDLE_MS);
          const afterFlood = open();
          for (let i = 0; i < 20; i++) {
            conns.push(await RawClient.connect(HOST, portOf(ready, "echo"), IO_TIMEOUT_MS));
            await sleep(25);
          }
          await sleep(500);
          const afterMore = open();
          console.log(
            `zig ${version}: open after ${FLOOD} idle connections: ${afterFlood}; after 20 more: ${afterMore} ` +
              `(capacity ${CAPACITY})`,
          );
          expect(conns.filter((c) => c.error !== undefined).map((c) => c.error?.code)).toEqual([]);
          expect(afterFlood, "open after the flood").toBe(CAPACITY);
          expect(afterMore, "open after 20 more").toBe(CAPACITY);
          expectNoCrash(program, ready);
        } finally {
          for (const c of conns) c.destroy();
        }
        const { total } = await stopAndCheck(program, ready);
        console.log(`zig ${version}: exact-eviction counters: ${describeCounters(total)}`);
        expect(total.evicted).toBe(FLOOD + 20 - CAPACITY);
      },
    );

    it(
      "a table full of slow request heads: fresh HTTP clients (sending at once, or 100 ms after connecting) wait for a slot (--header-timeout 2000) and get their 200, never closed unanswered",
      { timeout: TEST_TIMEOUT_MS },
      async () => {
        const headerTimeoutMs = 2_000;
        const { program, ready } = await startService(binary, [
          ...HOSTILE_ANY_LOOPBACK_PORT,
          "--header-timeout",
          String(headerTimeoutMs),
        ]);
        const web = portOf(ready, "web");
        const slow: RawClient[] = [];
        const fresh: RawClient[] = [];
        try {
          // 200 clients connect (more than both tables hold: the surplus is evicted, idle), then
          // each one still open begins a request head and stops: every connection has a request
          // in flight, nothing is idle.
          for (let i = 0; i < 200; i++) {
            slow.push(await RawClient.connect(HOST, web, IO_TIMEOUT_MS));
          }
          await sleep(300);
          for (const [i, client] of slow.entries()) {
            if (!client.serverClosed) await client.write(`GET /slow/${i} HTTP/1.1${CRLF}Host: h${CRLF}`);
          }
          await sleep(300);
          const inFlight = slow.filter((c) => !c.serverClosed).length;
          const startedAt = Date.now();
          // Two send their request at once, two connect first and send it 100 ms later (as a
          // client with a pool of connections, or on a slow link, does).
          for (let i = 0; i < 4; i++) {
            const client = await RawClient.connect(HOST, web, IO_TIMEOUT_MS);
            fresh.push(client);
            const request = `GET /fresh/${i} HTTP/1.1${CRLF}Host: h${CRLF}Connection: close${CRLF}${CRLF}`;
            if (i % 2 === 0) await client.write(request);
            else setTimeout(() => void client.write(request), 100);
          }
          const outcomes = await Promise.all(
            fresh.map(async (client) => {
              await client.waitForServerClose(headerTimeoutMs + 5_000).catch(() => undefined);
              const statuses = parseResponses(client.data).responses.map((r) => r.status);
              const at = (client.firstDataAt ?? client.endAt ?? Number.NaN) - startedAt;
              return `${JSON.stringify(statuses)} after ${at} ms (${client.error?.code ?? (client.endAt === undefined ? "open" : "FIN")})`;
            }),
          );
          console.log(
            `zig ${version}: fresh clients behind ${inFlight} slow heads: ${outcomes.join("; ")}`,
          );
          for (const [i, client] of fresh.entries()) {
            expect(client.error, `fresh client ${i}: ${client.describe()}`).toBeUndefined();
            const statuses = parseResponses(client.data).responses.map((r) => r.status);
            expect(statuses, `fresh client ${i}: ${client.describe()}`).toEqual([200]);
            expect(client.firstDataAt! - startedAt).toBeLessThanOrEqual(headerTimeoutMs + 3_000);
          }
          expectNoCrash(program, ready);
        } finally {
          for (const c of [...slow, ...fresh]) c.destroy();
        }
        const { total } = await stopAndCheck(program, ready);
        console.log(`zig ${version}: slow-heads counters: ${describeCounters(total)}`);
      },
    );
  });

  describe("clients that reset", () => {
    let binary: string;
    beforeAll(async () => {
      binary = await binaryOf("hostile", version);
    }, SETUP_TIMEOUT_MS);

    it(
      "150 clients that reset (RST) right after connecting, after a 200-request pipeline or after 100 KB: no crash, and fresh clients of every listener are answered within 1 s",
      { timeout: TEST_TIMEOUT_MS },
      async () => {
        const { program, ready } = await startService(binary, HOSTILE_ANY_LOOPBACK_PORT);
        const pipeline = `GET / HTTP/1.1${CRLF}Host: h${CRLF}${CRLF}`.repeat(200);
        const bulk = Buffer.alloc(100_000, "x");
        const listeners = ["who", "web", "echo"] as const;
        const results = await runBounded(150, 10, async (i) => {
          const client = await RawClient.connect(HOST, portOf(ready, listeners[i % 3]!), IO_TIMEOUT_MS);
          const kind = Math.floor(i / 3) % 3;
          if (kind === 1) await client.write(pipeline);
          if (kind === 2) await client.write(bulk);
          client.socket.resetAndDestroy();
        });
        expect(results.filter((r) => r.status === "rejected").map((r) => String(r.reason))).toEqual([]);
        await sleep(300);
        expectNoCrash(program, ready);
        const times = await freshClients(ready);
        console.log(`zig ${version}: after 150 resets, fresh clients answered in ${times.join("/")} ms`);
        const { total } = await stopAndCheck(program, ready);
        console.log(`zig ${version}: reset counters: ${describeCounters(total)}`);
        // The HTTP listener defers accepting: a client that resets before sending anything
        // never reaches a worker (the kernel drops its pending handshake).
        const silentHttp = Array.from({ length: 150 }, (_, i) => i).filter(
          (i) => listeners[i % 3] === "web" && Math.floor(i / 3) % 3 === 0,
        ).length;
        expect(total.connections).toBeGreaterThanOrEqual(150 - silentHttp + 3 * FRESH_ROUNDS);
      },
    );
  });

  describe("out of file descriptors", () => {
    let binary: string;
    beforeAll(async () => {
      binary = await binaryOf("hostile", version);
    }, SETUP_TIMEOUT_MS);

    it(
      "with only 60 open files per process, an idle flood of 200 evicts idle connections instead of refusing: fresh clients of every listener are answered within 1 s",
      { timeout: TEST_TIMEOUT_MS },
      async () => {
        const limit = 60;
        const { program, ready } = await startReady("/bin/bash", [
          "-c",
          `ulimit -n ${limit} && exec "$0" "$@"`,
          binary,
          ...HOSTILE_ANY_LOOPBACK_PORT,
        ]);
        await stderrMatching(program, new RegExp(`open files are limited to ${limit}`));
        const flood: RawClient[] = [];
        const count = 200;
        try {
          const opened = await runBounded(count, 50, async () => {
            flood.push(await RawClient.connect(HOST, portOf(ready, "echo"), IO_TIMEOUT_MS));
          });
          expect(opened.filter((r) => r.status === "rejected").map((r) => String(r.reason))).toEqual(
            [],
          );
          // Each worker holds fewer than `limit` descriptors, connections included.
          const surplus = count - HOSTILE_SPEC.workers * limit;
          const deadline = Date.now() + 10_000;
          while (flood.filter((c) => c.serverClosed).length < surplus && Date.now() < deadline) {
            await sleep(50);
          }
          const closed = flood.filter((c) => c.serverClosed).length;
          expect(closed, "flood connections the server closed").toBeGreaterThanOrEqual(surplus);
          const times = await freshClients(ready);
          console.log(
            `zig ${version}: ulimit -n ${limit}: ${count} idle connections, ${closed} closed by the server; ` +
              `fresh clients answered in ${times.join("/")} ms`,
          );
          expectNoCrash(program, ready);
        } finally {
          for (const client of flood) client.destroy();
        }
        const { total } = await stopAndCheck(program, ready);
        console.log(`zig ${version}: out-of-descriptors counters: ${describeCounters(total)}`);
        expect(total.evicted).toBeGreaterThanOrEqual(count - HOSTILE_SPEC.workers * limit);
      },
    );
  });

  describe("open-file limits", () => {
    let binary: string;
    beforeAll(async () => {
      binary = await binaryOf("supervised", version);
    }, SETUP_TIMEOUT_MS);

    /** Starts the supervised service (2 workers, maxConnections 1024) under `ulimit` lines. */
    const startUnder = (ulimit: string) =>
      startReady("/bin/bash", [
        "-c",
        `${ulimit} && exec "$0" "$@"`,
        binary,
        ...ANY_LOOPBACK_PORT,
      ]);

    // What main.zig says the service needs: every connection of a worker, plus each worker
    // slot's listeners and pipes, plus 64.
    const needed =
      1024 + SUPERVISED_SPEC.workers * (SUPERVISED_SPEC.listeners.length + 4) + 64;

    it(
      `started with a soft limit of 1024, the supervisor and its workers raise it to at least ${needed} (or the hard limit)`,
      { timeout: TEST_TIMEOUT_MS },
      async () => {
        const { program, ready } = await startUnder("ulimit -S -n 1024");
        expect(ready.pid).toBe(program.pid);
        for (const pid of [program.pid, ...ready.workers.map((w) => w.pid)]) {
          const limits = fdLimitsOf(pid);
          console.log(`zig ${version}: pid ${pid}: open files soft ${limits.soft}, hard ${limits.hard}`);
          expect(limits.soft, `soft limit of ${pid}`).toBeGreaterThanOrEqual(Math.min(needed, limits.hard));
        }
        expect(program.stderr).not.toMatch(/open files are limited/);
        await stopAndCheck(program, ready);
      },
    );

    it(
      "with a hard limit below what it needs, raises the soft limit to the hard limit and says so",
      { timeout: TEST_TIMEOUT_MS },
      async () => {
        const hard = needed - 50;
        const { program, ready } = await startUnder(`ulimit -S -n 512 && ulimit -H -n ${hard}`);
        for (const pid of [program.pid, ...ready.workers.map((w) => w.pid)]) {
          expect(fdLimitsOf(pid), `limits of ${pid}`).toEqual({ soft: hard, hard });
        }
        console.log(`zig ${version}: hard limit ${hard}: stderr ${JSON.stringify(program.stderr)}`);
        await stderrMatching(program, new RegExp(`open files are limited to ${hard}`));
        await stopAndCheck(program, ready);
      },
    );
  });
});
