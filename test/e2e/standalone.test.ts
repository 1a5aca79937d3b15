/**
 * Independent `--standalone` processes sharing ports through SO_REUSEPORT: both start on the
 * same TCP and UDP ports, the kernel spreads clients over both, both stop on SIGTERM.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HttpConnection, httpGet } from "./support/http.js";
import {
  freePort,
  parseWhoami,
  runBounded,
  tcpExchange,
  udpExchange,
  type LoopbackHost,
} from "./support/net.js";
import {
  listenArgs,
  stopAllPrograms,
  startReady,
  STOP_TIMEOUT_MS,
  waitUntilGone,
  type Program,
  type ReadyEvent,
  type StoppedEvent,
} from "./support/program.js";
import { programOf } from "./support/project.js";
import { FULL_MATRIX_VERSIONS } from "./support/zig.js";

const SETUP_TIMEOUT_MS = 15 * 60_000;
const TEST_TIMEOUT_MS = 60_000;
const IO_TIMEOUT_MS = 5_000;
const CONNECTIONS = 200;
const CONCURRENCY = 16;

type Endpoints = Record<string, { host: LoopbackHost; port: number }>;

interface Pair {
  programs: Program[];
  readies: ReadyEvent[];
  pids: number[];
}

/** Starts two standalone processes of `binary` on the same endpoints. */
async function startPair(binary: string, endpoints: Endpoints): Promise<Pair> {
  const args = ["--standalone", ...listenArgs(endpoints)];
  const first = await startReady(binary, args);
  const second = await startReady(binary, args);
  const programs = [first.program, second.program];
  const readies = [first.ready, second.ready];
  return { programs, readies, pids: readies.map((r) => r.pid) };
}

/** SIGTERMs both; each exits 0 after a graceful `stopped` event and no process is left. */
async function stopPairGracefully(pair: Pair): Promise<StoppedEvent[]> {
  for (const program of pair.programs) program.signal("SIGTERM");
  const stopped = await Promise.all(
    pair.programs.map((p) => p.waitForEvent<StoppedEvent>("stopped", STOP_TIMEOUT_MS)),
  );
  const exits = await Promise.all(pair.programs.map((p) => p.waitForExit(STOP_TIMEOUT_MS)));
  expect(exits).toEqual([
    { code: 0, signal: null },
    { code: 0, signal: null },
  ]);
  for (const event of stopped) expect(event.reason).toBe("graceful");
  expect(await waitUntilGone(pair.pids, STOP_TIMEOUT_MS)).toEqual([]);
  return stopped;
}

function connectionsByPid(stopped: StoppedEvent[]): Map<number, number> {
  const counts = new Map<number, number>();
  for (const event of stopped) {
    for (const w of event.workers) counts.set(w.pid, (counts.get(w.pid) ?? 0) + w.connections);
  }
  return counts;
}

async function endpointsFor(
  listeners: Record<string, { protocol: "tcp" | "udp"; host: LoopbackHost }>,
): Promise<Endpoints> {
  const endpoints: Endpoints = {};
  for (const [name, { protocol, host }] of Object.entries(listeners)) {
    endpoints[name] = { host, port: await freePort(protocol, host) };
  }
  return endpoints;
}

describe.each(FULL_MATRIX_VERSIONS)("zig %s", (version) => {
  afterAll(async () => {
    await stopAllPrograms();
  });

  describe("two --standalone processes of the mixed example", () => {
    let pair: Pair;
    let endpoints: Endpoints;
    /** TCP connections this block opened, to check against the processes' own counts. */
    let tcpConnections = 0;

    beforeAll(async () => {
      const binary = await programOf("mixed", version);
      endpoints = await endpointsFor({
        echo4: { protocol: "tcp", host: "127.0.0.1" },
        echo6: { protocol: "tcp", host: "::1" },
        who4: { protocol: "udp", host: "127.0.0.1" },
        who6: { protocol: "udp", host: "::1" },
        web4: { protocol: "tcp", host: "127.0.0.1" },
        web6: { protocol: "tcp", host: "::1" },
      });
      pair = await startPair(binary, endpoints);
    }, SETUP_TIMEOUT_MS);

    it("both report ready, standalone, on the same TCP and UDP ports", () => {
      expect(new Set(pair.pids).size).toBe(2);
      for (const ready of pair.readies) {
        expect(ready).toMatchObject({ service: "mixed-edge", mode: "standalone", generation: 1 });
        expect(ready.workers).toEqual([{ index: 0, pid: ready.pid }]);
        const ports = Object.fromEntries(ready.listeners.map((l) => [l.name, l.port]));
        expect(ports).toEqual(
          Object.fromEntries(Object.entries(endpoints).map(([name, e]) => [name, e.port])),
        );
      }
    });

    it(
      `echoes on ${CONNECTIONS} TCP connections over IPv4 and IPv6 with zero failures`,
      { timeout: TEST_TIMEOUT_MS },
      async () => {
        const results = await runBounded(CONNECTIONS, CONCURRENCY, async (i) => {
          const name = i % 2 === 0 ? "echo4" : "echo6";
          const { host, port } = endpoints[name]!;
          const message = `ping ${i} over ${name}\n`;
          tcpConnections++;
          const reply = await tcpExchange(host, port, {
            send: message,
            endAfterSend: true,
            timeoutMs: IO_TIMEOUT_MS,
          });
          expect(reply.toString()).toBe(message);
        });
        expect(results.filter((r) => r.status === "rejected")).toEqual([]);
      },
    );

    it(
      "answers UDP whoami on 127.0.0.1 and ::1 from both processes",
      { timeout: TEST_TIMEOUT_MS },
      async () => {
        const seen = new Set<number>();
        for (const name of ["who4", "who6"]) {
          const { host, port } = endpoints[name]!;
          // Each exchange uses a fresh client socket, so its 4-tuple hashes anew.
          const results = await runBounded(64, 8, async () =>
            parseWhoami((await udpExchange(host, port, "who?", { timeoutMs: 1_000 })).toString()),
          );
          for (const result of results) {
            expect(result.status, String((result as PromiseRejectedResult).reason)).toBe(
              "fulfilled",
            );
            const who = (result as PromiseFulfilledResult<ReturnType<typeof parseWhoami>>).value;
            expect(pair.pids).toContain(who.pid);
            expect(who).toMatchObject({ worker: 0, gen: 1 });
            seen.add(who.pid);
          }
        }
        expect([...seen].sort()).toEqual([...pair.pids].sort());
      },
    );

    it(
      "serves HTTP on the IPv4 listener and the IPv6 listener's own JSON body",
      { timeout: TEST_TIMEOUT_MS },
      async () => {
        for (const [name, body] of [
          ["web4", "Hello from gen-reuseport\n"],
          ["web6", '{"ok":true}\n'],
        ] as const) {
          const { host, port } = endpoints[name]!;
          const connection = await HttpConnection.open(host, port, IO_TIMEOUT_MS);
          tcpConnections++;
          try {
            connection.write(httpGet("/", "localhost", { Connection: "close" }));
            const response = await connection.readResponse(IO_TIMEOUT_MS);
            expect(response.status).toBe(200);
            if (name === "web6") expect(response.body).toBe(body);
            else expect(response.body.length).toBeGreaterThan(0);
          } finally {
            connection.close();
          }
        }
      },
    );

    it(
      "stops both on SIGTERM with exit 0, a stopped event counting every connection, and no process left",
      { timeout: TEST_TIMEOUT_MS },
      async () => {
        const stopped = await stopPairGracefully(pair);
        const counts = connectionsByPid(stopped);
        expect([...counts.keys()].sort()).toEqual([...pair.pids].sort());
        expect([...counts.values()].reduce((a, b) => a + b, 0)).toBe(tcpConnections);
        for (const count of counts.values()) expect(count).toBeGreaterThanOrEqual(1);
      },
    );
  });

  describe("two --standalone processes of a TCP whoami service", () => {
    let pair: Pair;
    let endpoints: Endpoints;

    beforeAll(async () => {
      const binary = await programOf("whoami-pair", version);
      endpoints = await endpointsFor({
        who4: { protocol: "tcp", host: "127.0.0.1" },
        who6: { protocol: "tcp", host: "::1" },
        whoudp: { protocol: "udp", host: "127.0.0.1" },
      });
      pair = await startPair(binary, endpoints);
    }, SETUP_TIMEOUT_MS);

    it(
      `serves ${CONNECTIONS} TCP whoami connections from both pids, all of them, zero failures`,
      { timeout: TEST_TIMEOUT_MS },
      async () => {
        const { host, port } = endpoints.who4!;
        const results = await runBounded(CONNECTIONS, CONCURRENCY, async () =>
          parseWhoami((await tcpExchange(host, port, { timeoutMs: IO_TIMEOUT_MS })).toString()),
        );
        const failures = results.filter((r) => r.status === "rejected");
        expect(failures).toEqual([]);
        const byPid = new Map<number, number>();
        for (const r of results as PromiseFulfilledResult<ReturnType<typeof parseWhoami>>[]) {
          expect(pair.pids).toContain(r.value.pid);
          expect(r.value).toMatchObject({ worker: 0, gen: 1 });
          byPid.set(r.value.pid, (byPid.get(r.value.pid) ?? 0) + 1);
        }
        for (const pid of pair.pids) expect(byPid.get(pid) ?? 0).toBeGreaterThanOrEqual(1);
        expect([...byPid.values()].reduce((a, b) => a + b, 0)).toBe(CONNECTIONS);
      },
    );

    it(
      "answers TCP whoami on ::1 with one of the two pids",
      { timeout: TEST_TIMEOUT_MS },
      async () => {
        const { host, port } = endpoints.who6!;
        const who = parseWhoami(
          (await tcpExchange(host, port, { timeoutMs: IO_TIMEOUT_MS })).toString(),
        );
        expect(pair.pids).toContain(who.pid);
      },
    );

    it(
      "answers UDP whoami with a line naming one of the two pids",
      { timeout: TEST_TIMEOUT_MS },
      async () => {
        const { host, port } = endpoints.whoudp!;
        const who = parseWhoami(
          (await udpExchange(host, port, "who?", { timeoutMs: 1_000 })).toString(),
        );
        expect(pair.pids).toContain(who.pid);
      },
    );

    it(
      "stops both on SIGTERM with exit 0 and counts every connection it served",
      { timeout: TEST_TIMEOUT_MS },
      async () => {
        const stopped = await stopPairGracefully(pair);
        const counts = connectionsByPid(stopped);
        expect([...counts.values()].reduce((a, b) => a + b, 0)).toBe(CONNECTIONS + 1);
      },
    );
  });

  describe("two --standalone processes of the udp example", () => {
    let pair: Pair;
    let endpoints: Endpoints;

    beforeAll(async () => {
      const binary = await programOf("udp", version);
      endpoints = await endpointsFor({
        echo: { protocol: "udp", host: "127.0.0.1" },
        whoami: { protocol: "udp", host: "127.0.0.1" },
      });
      pair = await startPair(binary, endpoints);
    }, SETUP_TIMEOUT_MS);

    it(
      "echoes every UDP datagram back, whichever process gets it",
      { timeout: TEST_TIMEOUT_MS },
      async () => {
        const { host, port } = endpoints.echo!;
        const results = await runBounded(32, 8, async (i) => {
          const payload = `datagram ${i}`;
          expect((await udpExchange(host, port, payload, { timeoutMs: 1_000 })).toString()).toBe(
            payload,
          );
        });
        expect(results.filter((r) => r.status === "rejected")).toEqual([]);
      },
    );

    it(
      "answers UDP whoami with a line naming one of the two pids",
      { timeout: TEST_TIMEOUT_MS },
      async () => {
        const { host, port } = endpoints.whoami!;
        const who = parseWhoami(
          (await udpExchange(host, port, "who?", { timeoutMs: 1_000 })).toString(),
        );
        expect(pair.pids).toContain(who.pid);
      },
    );

    it(
      "stops both on SIGTERM with exit 0 and counts the datagrams",
      { timeout: TEST_TIMEOUT_MS },
      async () => {
        const stopped = await stopPairGracefully(pair);
        const datagrams = stopped.flatMap((e) => e.workers).reduce((n, w) => n + w.datagrams, 0);
        expect(datagrams).toBeGreaterThanOrEqual(33);
      },
    );
  });
});
