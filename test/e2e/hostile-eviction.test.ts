/**
 * Hostile and careless clients, eviction and slow requests: at the connection limit (one
 * worker, a table of 64) a newcomer takes the place of a connection that nothing depends
 * on, never one whose client's next request already waits in the kernel (the worker is
 * SIGSTOPped so that the request and the newcomer arrive in the same turn of its loop); a
 * table where every connection has a request waiting keeps the newcomer queued rather than
 * lose one; a client trickling its request body is evicted before an idle one, with a 408;
 * and `--request-timeout` bounds a whole request that trickles in a byte every 200 ms, on
 * the built-in `http` handler and on an HTTP application listener alike.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  describeCounters,
  expectNoCrash,
  header,
  HOST,
  parseResponses,
  RawClient,
  startService,
  stopAndCheck,
} from "./support/hostile.js";
import { portOf, startReady, stopAllPrograms } from "./support/program.js";
import { programOf } from "./support/project.js";
import { binaryOf, HOSTILE_ANY_LOOPBACK_PORT, HOSTILE_SPEC } from "./support/supervised.js";
import { FULL_MATRIX_VERSIONS } from "./support/zig.js";

const SETUP_TIMEOUT_MS = 15 * 60_000;
const TEST_TIMEOUT_MS = 60_000;
const IO_TIMEOUT_MS = 5_000;
/** The table of the one worker these tests run. */
const LIMIT = HOSTILE_SPEC.maxConnections;
/** The runtime's `evict_min_idle_ms` and `slow_request_ms` (worker/connections.zig). */
const MIN_IDLE_MS = 500;
const SLOW_REQUEST_MS = 1_000;
const CRLF = "\r\n";
const get = (path: string) => `GET ${path} HTTP/1.1${CRLF}Host: h${CRLF}${CRLF}`;

const statusesOf = (client: RawClient) => parseResponses(client.data).responses.map((r) => r.status);

/** Waits until `client` has `count` complete responses. */
async function responses(client: RawClient, count: number, timeoutMs = IO_TIMEOUT_MS) {
  await client.waitFor(
    (data) => parseResponses(data).responses.length >= count,
    timeoutMs,
    `${count} response(s)`,
  );
}

/** Waits (bounded) until `count` of `clients` were closed by the server; returns them. */
async function serverClosed(clients: RawClient[], count: number, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  while (clients.filter((c) => c.serverClosed).length < count && Date.now() < deadline) {
    await sleep(25);
  }
  return clients.filter((c) => c.serverClosed);
}

/** Opens `count` keep-alive connections, one after the other, each answered once. */
async function keepAlive(port: number, count: number): Promise<RawClient[]> {
  const clients: RawClient[] = [];
  for (let i = 0; i < count; i++) {
    const client = await RawClient.connect(HOST, port, IO_TIMEOUT_MS);
    clients.push(client);
    await client.write(get(`/first/${i}`));
    await responses(client, 1);
  }
  return clients;
}

/** Runs `fn` with `pid` stopped; it is continued whatever happens. */
async function whileStopped(pid: number, fn: () => Promise<void>): Promise<void> {
  process.kill(pid, "SIGSTOP");
  try {
    await fn();
    // Let the bytes reach the kernel's buffers before the worker looks.
    await sleep(100);
  } finally {
    process.kill(pid, "SIGCONT");
  }
}

/** Trickles `body` a byte every `everyMs` until the server answers or closes (bounded). */
async function trickle(client: RawClient, body: string, everyMs: number): Promise<number> {
  let sent = 0;
  for (; sent < body.length && client.data.length === 0 && !client.serverClosed; sent++) {
    await client.write(body[sent]!);
    await sleep(everyMs);
  }
  return sent;
}

/** The answer to a request cut short: one 408 with `Connection: close`, then the close. */
function expect408(client: RawClient) {
  const { responses: parsed } = parseResponses(client.data);
  expect(parsed.map((r) => r.status), client.describe()).toEqual([408]);
  expect(header(parsed[0]!, "connection")).toMatch(/^close$/i);
}

describe.each(FULL_MATRIX_VERSIONS)("zig %s: hostile clients, eviction and slow requests", (version) => {
  let binary: string;
  let notes: string;
  beforeAll(async () => {
    binary = await binaryOf("hostile", version);
    notes = await programOf("notes", version);
  }, SETUP_TIMEOUT_MS);

  afterEach(async () => {
    await stopAllPrograms();
  });

  // One worker; no watchdog, which would replace it while it is stopped.
  const start = (...flags: string[]) =>
    startService(binary, [...HOSTILE_ANY_LOOPBACK_PORT, "--workers", "1", "--watchdog", "0", ...flags]);

  it(
    `at the limit (${LIMIT}), the oldest idle connection whose next request has arrived is served, and the next one is evicted with a FIN`,
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const { program, ready } = await start();
      const web = portOf(ready, "web");
      const held = await keepAlive(web, LIMIT);
      let newcomer: RawClient | undefined;
      try {
        await sleep(MIN_IDLE_MS + 300);
        await whileStopped(ready.workers[0]!.pid, async () => {
          newcomer = await RawClient.connect(HOST, web, IO_TIMEOUT_MS);
          await newcomer.write(get("/newcomer"));
          await held[0]!.write(get("/again"));
        });
        await responses(newcomer!, 1);
        await responses(held[0]!, 2).catch(() => undefined);
        const closed = await serverClosed(held, 1, 2_000);
        console.log(
          `zig ${version}: oldest: ${held[0]!.describe()}; closed by the server: ` +
            closed.map((c) => `#${held.indexOf(c)} ${c.error?.code ?? "FIN"}`).join(", "),
        );
        expect(held[0]!.error, `the oldest: ${held[0]!.describe()}`).toBeUndefined();
        expect(statusesOf(held[0]!)).toEqual([200, 200]);
        expect(statusesOf(newcomer!)).toEqual([200]);
        // The one evicted instead: the next oldest, closed cleanly.
        expect(closed.map((c) => held.indexOf(c))).toEqual([1]);
        expect(closed[0]!.error, closed[0]!.describe()).toBeUndefined();
        expect(held.filter((c) => c.error !== undefined).map((c) => c.describe())).toEqual([]);
        expectNoCrash(program, ready);
      } finally {
        for (const c of held) c.destroy();
        newcomer?.destroy();
      }
      const { total } = await stopAndCheck(program, ready);
      console.log(`zig ${version}: eviction counters: ${describeCounters(total)}`);
      expect(total.evicted).toBe(1);
    },
  );

  it(
    `a full table where every connection's next request has arrived loses none: the newcomer waits, then takes an idle connection's place`,
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const { program, ready } = await start();
      const web = portOf(ready, "web");
      const held = await keepAlive(web, LIMIT);
      let newcomer: RawClient | undefined;
      try {
        await sleep(MIN_IDLE_MS + 300);
        let sentAt = 0;
        await whileStopped(ready.workers[0]!.pid, async () => {
          newcomer = await RawClient.connect(HOST, web, IO_TIMEOUT_MS);
          await newcomer.write(get("/newcomer"));
          sentAt = Date.now();
          for (const [i, c] of held.entries()) await c.write(get(`/again/${i}`));
        });
        for (const c of held) await responses(c, 2).catch(() => undefined);
        await responses(newcomer!, 1, MIN_IDLE_MS + IO_TIMEOUT_MS);
        const waitedMs = newcomer!.firstDataAt! - sentAt;
        const closed = await serverClosed(held, 1, 2_000);
        console.log(
          `zig ${version}: every connection busy: newcomer answered after ${waitedMs} ms; ` +
            `closed: ${closed.map((c) => `#${held.indexOf(c)} ${c.error?.code ?? "FIN"}`).join(", ")}`,
        );
        expect(held.filter((c) => c.error !== undefined).map((c) => c.describe())).toEqual([]);
        for (const c of held) expect(statusesOf(c), c.describe()).toEqual([200, 200]);
        expect(statusesOf(newcomer!)).toEqual([200]);
        // It waited for an idle connection to be old enough (bounded: a few retries).
        expect(waitedMs).toBeGreaterThanOrEqual(MIN_IDLE_MS - 100);
        expect(waitedMs).toBeLessThanOrEqual(MIN_IDLE_MS + 2_000);
        expect(closed.length).toBe(1);
        expectNoCrash(program, ready);
      } finally {
        for (const c of held) c.destroy();
        newcomer?.destroy();
      }
      const { total } = await stopAndCheck(program, ready);
      console.log(`zig ${version}: busy-table counters: ${describeCounters(total)}`);
      expect(total.evicted).toBe(1);
      expect(total.requests).toBe(2 * LIMIT + 1);
    },
  );

  it(
    `a client trickling its body is evicted (408) before any idle connection`,
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const { program, ready } = await start();
      const web = portOf(ready, "web");
      const held = await keepAlive(web, LIMIT - 1);
      const slow = await RawClient.connect(HOST, web, IO_TIMEOUT_MS);
      let newcomer: RawClient | undefined;
      try {
        await slow.write(`PUT /upload HTTP/1.1${CRLF}Host: h${CRLF}Content-Length: 100${CRLF}${CRLF}`);
        const trickled = trickle(slow, "x".repeat(100), 200);
        await sleep(Math.max(MIN_IDLE_MS, SLOW_REQUEST_MS) + 400);
        newcomer = await RawClient.connect(HOST, web, IO_TIMEOUT_MS);
        await newcomer.write(get("/newcomer"));
        await responses(newcomer, 1);
        await slow.waitForServerClose(IO_TIMEOUT_MS);
        const sent = await trickled;
        console.log(
          `zig ${version}: trickler (${sent} body bytes): ${slow.describe()}; idle closed: ` +
            `${held.filter((c) => c.serverClosed).length}`,
        );
        expect408(slow);
        expect(statusesOf(newcomer)).toEqual([200]);
        expect(held.filter((c) => c.serverClosed).map((c) => c.describe())).toEqual([]);
        expectNoCrash(program, ready);
      } finally {
        for (const c of held) c.destroy();
        slow.destroy();
        newcomer?.destroy();
      }
      const { total } = await stopAndCheck(program, ready);
      console.log(`zig ${version}: slow-eviction counters: ${describeCounters(total)}`);
      expect(total.evicted).toBe(1);
    },
  );

  it(
    "--request-timeout 1000: a body trickled a byte every 200 ms (each within --body-timeout) gets 408 about 1 s after the request's first byte",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const { program, ready } = await start("--request-timeout", "1000");
      const client = await RawClient.connect(HOST, portOf(ready, "web"), IO_TIMEOUT_MS);
      try {
        const firstByteAt = Date.now();
        await client.write(`PUT /upload HTTP/1.1${CRLF}Host: h${CRLF}Content-Length: 100${CRLF}${CRLF}`);
        const sent = await trickle(client, "x".repeat(100), 200);
        await client.waitForServerClose(IO_TIMEOUT_MS);
        const answeredMs = client.firstDataAt! - firstByteAt;
        console.log(`zig ${version}: request timeout: 408 after ${answeredMs} ms, ${sent} bytes trickled`);
        expect(client.error, client.describe()).toBeUndefined();
        expect408(client);
        expect(sent).toBeGreaterThanOrEqual(3);
        expect(answeredMs).toBeGreaterThanOrEqual(800);
        expect(answeredMs).toBeLessThanOrEqual(2_500);
      } finally {
        client.destroy();
      }
      const { stopped } = await stopAndCheck(program, ready);
      const timeouts = stopped.workers.map((w) => w.timeouts);
      expect(timeouts).toEqual([{ header: 0, body: 0, idle: 0, write: 0, request: 1 }]);
    },
  );

  it(
    "--request-timeout 1000 on an HTTP application listener (the notes example): a trickled PUT body gets 408 about 1 s after its first byte",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const { program, ready } = await startReady(notes, [
        "--standalone",
        "--listen",
        "api=127.0.0.1:0",
        "--request-timeout",
        "1000",
      ]);
      const client = await RawClient.connect(HOST, portOf(ready, "api"), IO_TIMEOUT_MS);
      try {
        const firstByteAt = Date.now();
        await client.write(
          `PUT /notes/1 HTTP/1.1${CRLF}Host: h${CRLF}Content-Type: text/plain${CRLF}Content-Length: 100${CRLF}${CRLF}`,
        );
        const sent = await trickle(client, "x".repeat(100), 200);
        await client.waitForServerClose(IO_TIMEOUT_MS);
        const answeredMs = client.firstDataAt! - firstByteAt;
        console.log(`zig ${version}: notes: 408 after ${answeredMs} ms, ${sent} bytes trickled`);
        expect(client.error, client.describe()).toBeUndefined();
        expect408(client);
        expect(answeredMs).toBeGreaterThanOrEqual(800);
        expect(answeredMs).toBeLessThanOrEqual(2_500);
      } finally {
        client.destroy();
      }
      expect(program.exit).toBeUndefined();
    },
  );
});
