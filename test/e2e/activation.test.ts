/**
 * systemd socket activation: the program serves the listening sockets it is handed
 * (LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES), matched to listeners by name, opens the others
 * itself, keeps the variables from its workers, and refuses a socket that does not fit its
 * listener. `systemd-socket-activate` passes real sockets; a Python stand-in passes sockets
 * with SO_REUSEPORT, as a socket unit with `ReusePort=yes` does.
 */
import { readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { startActivated, startKept } from "./support/activator.js";
import { httpGet } from "./support/http.js";
import { freePort, parseWhoami, runBounded, tcpExchange, udpExchange } from "./support/net.js";
import {
  Program,
  portOf,
  READY_TIMEOUT_MS,
  STOP_TIMEOUT_MS,
  stopAllPrograms,
  type ReadyEvent,
} from "./support/program.js";
import { binaryOf } from "./support/supervised.js";
import { ensureCommand } from "./support/tools.js";
import { FULL_MATRIX_VERSIONS } from "./support/zig.js";

const SETUP_TIMEOUT_MS = 15 * 60_000;
const TEST_TIMEOUT_MS = 60_000;
const IO_TIMEOUT_MS = 5_000;
const HOST = "127.0.0.1";

/** systemd-socket-activate, installed with apt-get when missing (and required under CI). */
function ensureSocketActivate(): string {
  return ensureCommand("systemd-socket-activate", "systemd");
}

function environOf(pid: number): string[] {
  return readFileSync(`/proc/${pid}/environ`, "utf8").split("\0");
}

async function whoami(port: number) {
  const text = await tcpExchange(HOST, port, { timeoutMs: IO_TIMEOUT_MS });
  return parseWhoami(text.toString());
}

/** whoami on `port`, retried (bounded) while systemd-socket-activate is not yet listening. */
async function firstWhoami(port: number) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await whoami(port);
    } catch (error) {
      if (attempt === 50 || !String(error).includes("ECONNREFUSED")) throw error;
      await sleep(50);
    }
  }
}

describe.each(FULL_MATRIX_VERSIONS)("zig %s", (version) => {
  let binary: string;
  let activate: string;

  beforeAll(async () => {
    activate = ensureSocketActivate();
    binary = await binaryOf("supervised", version);
  }, SETUP_TIMEOUT_MS);

  afterEach(async () => {
    await stopAllPrograms();
  });

  it(
    "serves the sockets systemd-socket-activate passes by name, and opens the others",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const whoPort = await freePort("tcp", HOST);
      const webPort = await freePort("tcp", HOST);
      const program = Program.start(activate, [
        "-l",
        `${HOST}:${whoPort}`,
        "-l",
        `${HOST}:${webPort}`,
        "--fdname=who:web",
        binary,
        "--workers",
        "2",
        // Ignored for the passed listener: the socket unit decides where it listens.
        "--listen",
        `who=${HOST}:1`,
        "--listen",
        `echo=${HOST}:0`,
        "--listen",
        `uecho=${HOST}:0`,
      ]);
      // systemd-socket-activate starts the program on the first connection, which waits in
      // the passed socket's queue and is served once the program is up.
      const first = await firstWhoami(whoPort);
      const ready = await program.waitForEvent<ReadyEvent>("ready", READY_TIMEOUT_MS);
      expect(ready.pid).toBe(program.pid);
      expect(portOf(ready, "who")).toBe(whoPort);
      expect(portOf(ready, "web")).toBe(webPort);
      const pids = ready.workers.map((w) => w.pid);
      expect(pids).toContain(first.pid);
      expect(program.stderr).toMatch(/listener who: 1 socket\(s\) from systemd without SO_REU/);

      const answers = await runBounded(20, 4, () => whoami(whoPort));
      for (const answer of answers) {
        expect(answer.status).toBe("fulfilled");
        if (answer.status === "fulfilled") expect(pids).toContain(answer.value.pid);
      }
      const response = await tcpExchange(HOST, webPort, {
        send: httpGet("/", HOST, { Connection: "close" }),
        timeoutMs: IO_TIMEOUT_MS,
      });
      expect(response.toString()).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
      const echoed = await tcpExchange(HOST, portOf(ready, "echo"), {
        send: "opened by the program",
        endAfterSend: true,
        timeoutMs: IO_TIMEOUT_MS,
      });
      expect(echoed.toString()).toBe("opened by the program");
      for (const pid of pids) {
        expect(environOf(pid).filter((v) => v.startsWith("LISTEN_"))).toEqual([]);
      }

      // A restart hands the same passed sockets to the new generation.
      program.signal("SIGHUP");
      await program.waitForEvent<ReadyEvent>("ready", READY_TIMEOUT_MS, (e) => e.generation === 2);
      // The old generation may still take a connection or two from the shared queue
      // until it has read its stop: ask until the new one answers (bounded).
      let gen = 0;
      for (let attempt = 0; attempt < 40 && gen !== 2; attempt++) gen = (await whoami(whoPort)).gen;
      expect(gen).toBe(2);

      program.signal("SIGTERM");
      expect((await program.waitForExit(STOP_TIMEOUT_MS)).code).toBe(0);
    },
  );

  it(
    "serves a passed datagram socket in --standalone mode",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const port = await freePort("udp", HOST);
      const program = Program.start(activate, [
        "--datagram",
        "-l",
        `${HOST}:${port}`,
        "--fdname=uecho",
        binary,
        "--standalone",
        ...["who", "web", "echo"].flatMap((name) => ["--listen", `${name}=${HOST}:0`]),
      ]);
      // A datagram starts the program (resent until systemd-socket-activate has bound the
      // port) and is answered from the passed socket.
      const reply = await udpExchange(HOST, port, "first", { timeoutMs: 2_000, attempts: 3 });
      expect(reply.toString()).toBe("first");
      const ready = await program.waitForEvent<ReadyEvent>("ready", READY_TIMEOUT_MS);
      expect(ready.mode).toBe("standalone");
      expect(portOf(ready, "uecho")).toBe(port);
      program.signal("SIGTERM");
      expect((await program.waitForExit(STOP_TIMEOUT_MS)).code).toBe(0);
    },
  );

  it(
    "leaves the sockets systemd keeps fit to serve: a --standalone stop, then a start again",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const udpPort = await freePort("udp", HOST);
      const tcpPort = await freePort("tcp", HOST);
      const program = startKept(
        binary,
        [
          { name: "uecho", protocol: "udp", host: HOST, port: udpPort, reusePort: false },
          { name: "who", protocol: "tcp", host: HOST, port: tcpPort, reusePort: false },
        ],
        ["--standalone", ...["web", "echo"].flatMap((name) => ["--listen", `${name}=${HOST}:0`])],
      );
      const readies = () => program.events.filter((e) => e.event === "ready") as ReadyEvent[];
      await program.waitForEvent<ReadyEvent>("ready", READY_TIMEOUT_MS);
      const first = await udpExchange(HOST, udpPort, "one", { timeoutMs: IO_TIMEOUT_MS });
      expect(first.toString()).toBe("one");

      // The keeper (systemd's part) stops the program and starts it again with the same
      // sockets. A stopping standalone process takes its own UDP sockets out of their group
      // (connect to self); one systemd keeps must stay a full member, or the next start
      // would receive nothing on it.
      program.signal("SIGUSR1");
      await program.waitForEvent("stopped", STOP_TIMEOUT_MS);
      const deadline = Date.now() + READY_TIMEOUT_MS;
      while (readies().length < 2 && Date.now() < deadline) await sleep(20);
      expect(readies()).toHaveLength(2);
      expect(readies()[1]!.pid).not.toBe(readies()[0]!.pid);
      const again = await udpExchange(HOST, udpPort, "two", { timeoutMs: 1_000, attempts: 3 });
      expect(again.toString()).toBe("two");
      expect((await whoami(tcpPort)).pid).toBe(readies()[1]!.pid);
      program.signal("SIGTERM");
      expect((await program.waitForExit(STOP_TIMEOUT_MS)).code).toBe(0);
    },
  );

  it(
    "with SO_REUSEPORT on the passed socket, every slot joins its group and shards",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const port = await freePort("tcp", HOST);
      const program = startActivated(
        binary,
        [{ name: "who", protocol: "tcp", host: HOST, port, reusePort: true }],
        [
          "--workers",
          "4",
          ...["web", "echo", "uecho"].flatMap((name) => ["--listen", `${name}=${HOST}:0`]),
        ],
      );
      const ready = await program.waitForEvent<ReadyEvent>("ready", READY_TIMEOUT_MS);
      expect(portOf(ready, "who")).toBe(port);
      expect(program.stderr).toMatch(/the other slots join their reuseport group/);
      const answers = await runBounded(80, 4, () => whoami(port));
      const workers = new Set<number>();
      for (const answer of answers) {
        expect(answer.status).toBe("fulfilled");
        if (answer.status === "fulfilled") workers.add(answer.value.worker);
      }
      // Four group members hashed by source port: one member taking all 80 would mean
      // the slots did not join (probability 4^-79 otherwise).
      expect(workers.size).toBeGreaterThan(1);
      program.signal("SIGTERM");
      expect((await program.waitForExit(STOP_TIMEOUT_MS)).code).toBe(0);
    },
  );

  it.each([
    {
      what: "a stream socket named after a UDP listener",
      socket: { name: "uecho", protocol: "tcp", host: HOST, reusePort: false },
      message: /socket 3 is named "uecho", a udp listener, but is not a datagram socket/,
    },
    {
      what: "a name no listener has",
      socket: { name: "nope", protocol: "tcp", host: HOST, reusePort: false },
      message: /socket 3 is named "nope", but no listener of this service has that name/,
    },
    {
      what: "an IPv6 socket for an IPv4 listener",
      socket: { name: "who", protocol: "tcp", host: "::1", reusePort: false },
      message: /socket 3 \(listener who\) is not an IPv4 socket/,
    },
  ] as const)(
    "refuses $what with a message and exit code 1",
    { timeout: TEST_TIMEOUT_MS },
    async ({ socket, message }) => {
      for (const mode of [[], ["--standalone"]]) {
        const port = await freePort("tcp", socket.host);
        const program = startActivated(binary, [{ ...socket, port }], [...mode]);
        const exit = await program.waitForExit(STOP_TIMEOUT_MS);
        expect(exit.code, program.stderr).toBe(1);
        expect(program.stderr).toMatch(message);
        const error = program.find("error");
        expect(error?.phase).toBe("activation");
      }
    },
  );
});
