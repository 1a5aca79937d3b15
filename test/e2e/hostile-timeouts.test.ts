/**
 * Hostile and careless clients, deadlines: a slowloris head that keeps trickling bytes gets
 * 408 when its one head deadline passes; a silent connection, an idle keep-alive connection
 * and a stalled body are closed after their timeouts (and not before); active keep-alive
 * connections stay open; a client that never reads is cut off by the write timeout while the
 * service keeps serving everyone else. Each test runs its own service (the `hostile`
 * project, 2 workers) with short timeouts, checks that no worker crashed, and reads the
 * `timeouts` counters of `stopped`.
 */
import { once } from "node:events";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  checkDate,
  describeCounters,
  expectNoCrash,
  header,
  HOST,
  parseResponses,
  RawClient,
  startService,
  stopAndCheck,
} from "./support/hostile.js";
import { parseWhoami, tcpExchange, udpExchange } from "./support/net.js";
import { portOf, stopAllPrograms } from "./support/program.js";
import { binaryOf, HOSTILE_ANY_LOOPBACK_PORT } from "./support/supervised.js";
import { FULL_MATRIX_VERSIONS } from "./support/zig.js";

const SETUP_TIMEOUT_MS = 15 * 60_000;
const TEST_TIMEOUT_MS = 60_000;
const IO_TIMEOUT_MS = 5_000;
/** Every timeout under test, in milliseconds. */
const TIMEOUT_MS = 1_000;
/** A deadline may not fire before this share of its timeout (timer and scheduling slack). */
const EARLIEST_MS = 800;
/** …and must have fired by then (generous: 2 shared cores). */
const LATEST_MS = 2_500;

const CRLF = "\r\n";
const GET = `GET / HTTP/1.1${CRLF}Host: h${CRLF}${CRLF}`;

function expectWithin(ms: number, what: string) {
  expect(ms, `${what}: ${ms} ms`).toBeGreaterThanOrEqual(EARLIEST_MS);
  expect(ms, `${what}: ${ms} ms`).toBeLessThanOrEqual(LATEST_MS);
}

/** The one response a timed-out request gets: 408, Date, Connection: close, empty body. */
function expect408(client: RawClient) {
  const { responses, rest } = parseResponses(client.data);
  expect(responses.map((r) => r.status), client.describe()).toEqual([408]);
  const response = responses[0]!;
  expect(header(response, "connection")).toMatch(/^close$/i);
  expect(header(response, "content-length")).toBe("0");
  expect(checkDate(header(response, "date"))).toBeUndefined();
  expect(rest.length).toBe(0);
}

/**
 * Stops reading and writes 1 MiB at a time while the bytes keep going out; returns once
 * nothing drained for 300 ms (an echo server then stopped reading, its own writes to us
 * blocked), or the socket failed; at most 512 MiB.
 */
async function writeUntilStalled(
  client: RawClient,
): Promise<{ written: number; lastProgressAt: number }> {
  client.socket.pause();
  const chunk = Buffer.alloc(1 << 20, "x");
  let written = 0;
  let lastProgressAt = Date.now();
  for (let i = 0; i < 512 && !client.serverClosed; i++) {
    written += chunk.length;
    if (client.socket.write(chunk)) {
      lastProgressAt = Date.now();
      continue;
    }
    const drained = await Promise.race([
      once(client.socket, "drain").then(() => true),
      sleep(300).then(() => false),
    ]).catch(() => false);
    if (!drained) break;
    lastProgressAt = Date.now();
  }
  return { written, lastProgressAt };
}

describe.each(FULL_MATRIX_VERSIONS)("zig %s: hostile clients, deadlines", (version) => {
  let binary: string;

  beforeAll(async () => {
    binary = await binaryOf("hostile", version);
  }, SETUP_TIMEOUT_MS);

  afterEach(async () => {
    await stopAllPrograms();
  });

  const start = (...flags: string[]) =>
    startService(binary, [...HOSTILE_ANY_LOOPBACK_PORT, ...flags]);

  it(
    `slowloris: a head trickled a byte every 200 ms gets 408 about --header-timeout ${TIMEOUT_MS} ms after its first byte, then the close`,
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const { program, ready } = await start("--header-timeout", String(TIMEOUT_MS));
      const client = await RawClient.connect(HOST, portOf(ready, "web"), IO_TIMEOUT_MS);
      let trickled = 0;
      try {
        const firstByteAt = Date.now();
        await client.write(`GET /slow HTTP/1.1${CRLF}Host: h${CRLF}X-Slow: `);
        // One byte every 200 ms for at most 6 s, until the server answers or closes.
        for (let i = 0; i < 30 && client.data.length === 0 && !client.serverClosed; i++) {
          await sleep(200);
          if (client.data.length > 0 || client.serverClosed) break;
          await client.write("a");
          trickled += 1;
        }
        await client.waitForServerClose(IO_TIMEOUT_MS);
        await client.waitForClosed(IO_TIMEOUT_MS);
        const answeredMs = (client.firstDataAt ?? Number.NaN) - firstByteAt;
        const closedMs = client.endAt! - firstByteAt;
        console.log(
          `zig ${version}: slowloris: 408 after ${answeredMs} ms, closed after ${closedMs} ms, ` +
            `${trickled} bytes trickled meanwhile`,
        );
        expect(client.error, client.describe()).toBeUndefined();
        expect408(client);
        expect(trickled, "bytes kept coming while the deadline ran").toBeGreaterThanOrEqual(3);
        expectWithin(answeredMs, "408 after the first byte");
        expectWithin(closedMs, "close after the first byte");
      } finally {
        client.destroy();
      }
      const { total } = await stopAndCheck(program, ready);
      console.log(`zig ${version}: slowloris counters: ${describeCounters(total)}`);
      expect(total.timeouts).toEqual({ header: 1, body: 0, idle: 0, write: 0, request: 0 });
    },
  );

  it(
    `closes a connection that sends nothing after --idle-timeout ${TIMEOUT_MS} ms, silently, not before`,
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const { program, ready } = await start("--idle-timeout", String(TIMEOUT_MS));
      // The echo listener accepts at once (the HTTP one defers: see the next test).
      const client = await RawClient.connect(HOST, portOf(ready, "echo"), IO_TIMEOUT_MS);
      try {
        await client.waitForServerClose(IO_TIMEOUT_MS);
        await client.waitForClosed(IO_TIMEOUT_MS);
        const closedMs = client.endAt! - client.openedAt;
        console.log(`zig ${version}: silent connection closed after ${closedMs} ms`);
        expect(client.error, client.describe()).toBeUndefined();
        expect(client.data.length, client.describe()).toBe(0);
        expectWithin(closedMs, "close of a silent connection");
      } finally {
        client.destroy();
      }
      const { total } = await stopAndCheck(program, ready);
      expect(total.timeouts).toEqual({ header: 0, body: 0, idle: 1, write: 0, request: 0 });
    },
  );

  it(
    "the HTTP listener defers accepting: a silent client reaches a worker after about 1 s and is then closed at --idle-timeout; a late request is answered at once",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const { program, ready } = await start("--idle-timeout", String(TIMEOUT_MS));
      const port = portOf(ready, "web");
      const silent = await RawClient.connect(HOST, port, IO_TIMEOUT_MS);
      const late = await RawClient.connect(HOST, port, IO_TIMEOUT_MS);
      try {
        // Sent after the idle timeout has passed: had the worker taken the connection at
        // once, it would have closed it by now.
        await sleep(TIMEOUT_MS + 300);
        expect(late.serverClosed, late.describe()).toBe(false);
        const sentAt = Date.now();
        await late.write(GET);
        await late.waitFor((d) => parseResponses(d).responses.length === 1, IO_TIMEOUT_MS, "a 200");
        const answeredMs = Date.now() - sentAt;
        expect(parseResponses(late.data).responses.map((r) => r.status)).toEqual([200]);

        await silent.waitForServerClose(IO_TIMEOUT_MS);
        await silent.waitForClosed(IO_TIMEOUT_MS);
        const closedMs = silent.endAt! - silent.openedAt;
        console.log(
          `zig ${version}: deferred accept: a request sent after ${TIMEOUT_MS + 300} ms answered in ` +
            `${answeredMs} ms; a silent client closed after ${closedMs} ms`,
        );
        expect(answeredMs).toBeLessThan(1_000);
        expect(silent.error, silent.describe()).toBeUndefined();
        expect(silent.data.length, silent.describe()).toBe(0);
        // One SYN-ACK retransmission (1 s) hands it over, then the idle timeout runs.
        expect(closedMs).toBeGreaterThanOrEqual(1_000 + EARLIEST_MS);
        expect(closedMs).toBeLessThanOrEqual(1_000 + LATEST_MS + 1_000);
      } finally {
        silent.destroy();
        late.destroy();
      }
      const { total } = await stopAndCheck(program, ready);
      expect(total.timeouts).toEqual({ header: 0, body: 0, idle: 1, write: 0, request: 0 });
    },
  );

  it(
    `body timeout: Content-Length 10, 3 bytes, then silence gets 408 about --body-timeout ${TIMEOUT_MS} ms later`,
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const { program, ready } = await start("--body-timeout", String(TIMEOUT_MS));
      const client = await RawClient.connect(HOST, portOf(ready, "web"), IO_TIMEOUT_MS);
      try {
        await client.write(`POST /slow-body HTTP/1.1${CRLF}Host: h${CRLF}Content-Length: 10${CRLF}${CRLF}abc`);
        const lastByteAt = Date.now();
        await client.waitForServerClose(IO_TIMEOUT_MS);
        await client.waitForClosed(IO_TIMEOUT_MS);
        const answeredMs = (client.firstDataAt ?? Number.NaN) - lastByteAt;
        console.log(`zig ${version}: stalled body answered 408 after ${answeredMs} ms`);
        expect(client.error, client.describe()).toBeUndefined();
        expect408(client);
        expectWithin(answeredMs, "408 after the last body byte");
      } finally {
        client.destroy();
      }
      const { total } = await stopAndCheck(program, ready);
      expect(total.timeouts).toEqual({ header: 0, body: 1, idle: 0, write: 0, request: 0 });
    },
  );

  it(
    `keep-alive: closes a connection idle after its response about --idle-timeout ${TIMEOUT_MS} ms later; keeps one that sends a request every 300 ms`,
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const { program, ready } = await start("--idle-timeout", String(TIMEOUT_MS));
      const port = portOf(ready, "web");
      const idle = await RawClient.connect(HOST, port, IO_TIMEOUT_MS);
      const active = await RawClient.connect(HOST, port, IO_TIMEOUT_MS);
      try {
        const idleCheck = (async () => {
          await idle.write(GET);
          await idle.waitFor((d) => parseResponses(d).responses.length === 1, IO_TIMEOUT_MS, "a 200");
          const answeredAt = Date.now();
          await idle.waitForServerClose(IO_TIMEOUT_MS);
          return idle.endAt! - answeredAt;
        })();

        const activeCheck = (async () => {
          const requests = 10;
          for (let i = 1; i <= requests; i++) {
            await active.write(GET);
            await active.waitFor(
              (d) => parseResponses(d).responses.length === i,
              IO_TIMEOUT_MS,
              `response ${i}`,
            );
            if (i < requests) await sleep(300);
          }
          const lastAt = Date.now();
          expect(active.serverClosed, `still open after ${requests} requests, 300 ms apart`).toBe(
            false,
          );
          const { responses } = parseResponses(active.data);
          expect(responses.map((r) => r.status)).toEqual(new Array(requests).fill(200));
          for (const r of responses) expect(header(r, "connection") ?? "").not.toMatch(/close/i);
          // Then it is idle too, and goes the same way.
          await active.waitForServerClose(IO_TIMEOUT_MS);
          return { activeMs: lastAt - active.openedAt, closedMs: active.endAt! - lastAt };
        })();

        const idleMs = await idleCheck;
        const { activeMs, closedMs } = await activeCheck;
        console.log(
          `zig ${version}: keep-alive: idle one closed ${idleMs} ms after its response; ` +
            `active one open for ${activeMs} ms, closed ${closedMs} ms after its last response`,
        );
        expect(parseResponses(idle.data).responses.map((r) => r.status)).toEqual([200]);
        expect(parseResponses(idle.data).rest.length).toBe(0);
        expectWithin(idleMs, "idle keep-alive close after the response");
        expectWithin(closedMs, "close after the last of the active requests");
        await idle.waitForClosed(IO_TIMEOUT_MS);
        await active.waitForClosed(IO_TIMEOUT_MS);
        expect(idle.error).toBeUndefined();
        expect(active.error).toBeUndefined();
      } finally {
        idle.destroy();
        active.destroy();
      }
      const { total } = await stopAndCheck(program, ready);
      expect(total.timeouts).toEqual({ header: 0, body: 0, idle: 2, write: 0, request: 0 });
      expect(total.requests).toBe(11);
    },
  );

  it(
    `cuts off an echo client that never reads after --write-timeout ${TIMEOUT_MS} ms without progress, serving others meanwhile`,
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const { program, ready } = await start("--write-timeout", String(TIMEOUT_MS));
      const echoPort = portOf(ready, "echo");
      const client = await RawClient.connect(HOST, echoPort, IO_TIMEOUT_MS);
      const served: number[] = [];
      try {
        const { written, lastProgressAt } = await writeUntilStalled(client);
        const stalledAt = Date.now();

        // Meanwhile, everyone else is served: whoami, HTTP, TCP echo, UDP echo, each in 1 s.
        const others = async () => {
          const t0 = Date.now();
          parseWhoami((await tcpExchange(HOST, portOf(ready, "who"), { timeoutMs: 1_000 })).toString());
          const http = await tcpExchange(HOST, portOf(ready, "web"), {
            send: `GET / HTTP/1.1${CRLF}Host: h${CRLF}Connection: close${CRLF}${CRLF}`,
            timeoutMs: 1_000,
          });
          expect(parseResponses(http).responses.map((r) => r.status)).toEqual([200]);
          const echo = await tcpExchange(HOST, echoPort, {
            send: "still here\n",
            endAfterSend: true,
            timeoutMs: 1_000,
          });
          expect(echo.toString()).toBe("still here\n");
          const datagram = await udpExchange(HOST, portOf(ready, "uecho"), "udp", {
            timeoutMs: 1_000,
          });
          expect(datagram.toString()).toBe("udp");
          served.push(Date.now() - t0);
        };
        for (let round = 0; round < 20 && (round === 0 || !client.serverClosed); round++) {
          await others();
          await sleep(100);
        }
        await client.waitForServerClose(10_000);
        const closedAt = client.closedAt ?? client.endAt ?? Date.now();
        console.log(
          `zig ${version}: never-reading client: ${written >> 20} MiB written, last progress ` +
            `${stalledAt - lastProgressAt} ms before the stall was seen, closed ` +
            `${closedAt - lastProgressAt} ms after the last progress (${client.error?.code ?? "no error"}); ` +
            `others served ${served.length} times in ${served.join("/")} ms`,
        );
        expect(closedAt - lastProgressAt, "closed a few seconds after the client stopped reading").toBeLessThan(
          6_000,
        );
        expect(served.length, "rounds of other clients served while it was stuck").toBeGreaterThanOrEqual(1);
      } finally {
        client.destroy();
      }
      expectNoCrash(program, ready);
      const { total } = await stopAndCheck(program, ready);
      console.log(`zig ${version}: write-timeout counters: ${describeCounters(total)}`);
      expect(total.timeouts.write).toBeGreaterThanOrEqual(1);
    },
  );

  it(
    "a graceful stop with hostile clients in flight (never-reading, slowloris, silent) exits 0 at the drain timeout",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const drainMs = 1_500;
      const { program, ready } = await start("--drain-timeout", String(drainMs));
      const reader = await RawClient.connect(HOST, portOf(ready, "echo"), IO_TIMEOUT_MS);
      const slow = await RawClient.connect(HOST, portOf(ready, "web"), IO_TIMEOUT_MS);
      // Silent on a listener that accepts at once: the HTTP listener defers accepting until a
      // client sends something, so a silent client there is not the worker's to close.
      const silent = await RawClient.connect(HOST, portOf(ready, "echo"), IO_TIMEOUT_MS);
      const clients = { reader, slow, silent };
      let trickle: Promise<void> | undefined;
      try {
        await writeUntilStalled(reader);
        await slow.write(`GET /slow HTTP/1.1${CRLF}Host: h${CRLF}X-Slow: `);
        let trickling = true;
        trickle = (async () => {
          for (let i = 0; i < 40 && trickling && !slow.serverClosed; i++) {
            await sleep(200);
            if (!slow.serverClosed) await slow.write("a");
          }
        })();
        const stopAt = Date.now();
        const { total } = await stopAndCheck(program, ready);
        const stopMs = Date.now() - stopAt;
        trickling = false;
        await trickle;
        for (const [name, client] of Object.entries(clients)) {
          await client.waitForServerClose(IO_TIMEOUT_MS).catch((e: unknown) => {
            throw new Error(`${name}: ${String(e)}`);
          });
        }
        const closedMs = Object.entries(clients)
          .map(([name, c]) => `${name} ${(c.endAt ?? c.closedAt ?? Number.NaN) - stopAt} ms (${c.error?.code ?? "FIN"})`)
          .join(", ");
        console.log(
          `zig ${version}: stop with hostile clients: exit 0 after ${stopMs} ms; closed: ${closedMs}; ` +
            `${describeCounters(total)}`,
        );
        expect(stopMs).toBeGreaterThanOrEqual(drainMs - 200);
        expect(stopMs).toBeLessThanOrEqual(drainMs + 2_500);
        // The silent connection goes at the drain's idle sweep (1 s).
        expect(silent.data.length).toBe(0);
        expect(silent.error).toBeUndefined();
      } finally {
        for (const c of Object.values(clients)) c.destroy();
      }
    },
  );
});
