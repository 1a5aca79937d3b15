/**
 * systemd's file-descriptor store: with $FDSTORE (or --fd-store) the supervisor sends every
 * listening socket of every slot over $NOTIFY_SOCKET ("FDSTORE=1", "FDNAME=<listener>",
 * SCM_RIGHTS). A Python stand-in for systemd receives them on a real datagram socket, keeps
 * them while the supervisor is killed, and then starts the program again with them the way
 * systemd does (LISTEN_FDS, LISTEN_FDNAMES, in the same process so that LISTEN_PID is its
 * pid): what clients sent while no process was serving is served then.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import dgram from "node:dgram";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { parseWhoami, tcpExchange } from "./support/net.js";
import {
  Program,
  portOf,
  READY_TIMEOUT_MS,
  STOP_TIMEOUT_MS,
  stopAllPrograms,
  waitUntilGone,
  type ReadyEvent,
  type ServiceEvent,
} from "./support/program.js";
import { ANY_LOOPBACK_PORT, binaryOf, SUPERVISED_SPEC } from "./support/supervised.js";
import { FULL_MATRIX_VERSIONS } from "./support/zig.js";

const SETUP_TIMEOUT_MS = 15 * 60_000;
const TEST_TIMEOUT_MS = 60_000;
const IO_TIMEOUT_MS = 5_000;
const WORKERS = 2;
const HOST = "127.0.0.1";

/**
 * systemd's part: receives notifications and stored descriptors on the socket named by argv[1],
 * reports each as a JSON line (an "event" a Program records), and on SIGUSR1 executes
 * the command after "--" with the stored sockets as descriptors 3, 4, … as systemd does.
 */
const HOLDER = `
import fcntl, json, os, signal, socket, sys
path, argv = sys.argv[1], sys.argv[sys.argv.index("--") + 1:]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
s.settimeout(0.05)
go = []
signal.signal(signal.SIGUSR1, lambda *_: go.append(1))
stored = []

def describe(fd):
    so = socket.socket(fileno=os.dup(fd))
    try:
        return {
            "type": "stream" if so.type == socket.SOCK_STREAM else "datagram",
            "port": so.getsockname()[1],
            "listening": so.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN),
            "reuseport": so.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT),
        }
    finally:
        so.close()

def say(**fields):
    print(json.dumps(fields), flush=True)

say(event="holder_bound")
for _ in range(20 * 60 * 10):
    if go:
        break
    try:
        msg, fds, _, _ = socket.recv_fds(s, 4096, 253)
    except (socket.timeout, InterruptedError):
        continue
    fields = dict(l.split("=", 1) for l in msg.decode().split("\\n") if "=" in l)
    if fields.get("FDSTORE") == "1":
        stored.extend((fields["FDNAME"], fd) for fd in fds)
        say(event="fdstore", name=fields["FDNAME"], fds=[describe(fd) for fd in fds])
    elif fields.get("FDSTOREREMOVE") == "1":
        for name, fd in [x for x in stored if x[0] == fields["FDNAME"]]:
            os.close(fd)
        stored = [x for x in stored if x[0] != fields["FDNAME"]]
        say(event="fdstoreremove", name=fields["FDNAME"])
    else:
        for fd in fds:
            os.close(fd)
        say(event="notify", text=msg.decode())
s.close()
high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 1000) for _, fd in stored]
for _, fd in stored:
    os.close(fd)
for i, fd in enumerate(high):
    os.dup2(fd, 3 + i, inheritable=True)
    os.close(fd)
os.environ.pop("NOTIFY_SOCKET", None)
os.environ["LISTEN_PID"] = str(os.getpid())
os.environ["LISTEN_FDS"] = str(len(stored))
os.environ["LISTEN_FDNAMES"] = ":".join(name for name, _ in stored)
os.execv(argv[0], argv)
`;

interface StoredFd {
  readonly type: "stream" | "datagram";
  readonly port: number;
  readonly listening: number;
  readonly reuseport: number;
}

interface FdStoreEvent extends ServiceEvent {
  readonly name: string;
  readonly fds: readonly StoredFd[];
}

function storeEvents(holder: Program): FdStoreEvent[] {
  return holder.events.filter((e) => e.event === "fdstore") as FdStoreEvent[];
}

async function waitForStored(holder: Program, count: number): Promise<FdStoreEvent[]> {
  const deadline = Date.now() + IO_TIMEOUT_MS;
  for (;;) {
    const events = storeEvents(holder);
    if (events.reduce((n, e) => n + e.fds.length, 0) >= count) return events;
    if (Date.now() > deadline) throw holder.failure(`fewer than ${count} stored sockets`);
    await sleep(20);
  }
}

/** A UDP datagram sent now, and a promise of its answer (bounded). */
async function udpSendAndAwait(port: number, payload: string) {
  const socket = dgram.createSocket("udp4");
  await new Promise<void>((resolve) => socket.bind(0, HOST, resolve));
  const answer = new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("no UDP answer")), 3 * IO_TIMEOUT_MS);
    socket.once("message", (m) => {
      clearTimeout(timer);
      resolve(m.toString());
    });
  }).finally(() => socket.close());
  socket.send(payload, port, HOST);
  return answer;
}

describe.each(FULL_MATRIX_VERSIONS)("zig %s", (version) => {
  let binary: string;
  let scratch: string;

  beforeAll(async () => {
    binary = await binaryOf("supervised", version);
    scratch = await mkdtemp(path.join(tmpdir(), "gen-reuseport-fdstore-"));
  }, SETUP_TIMEOUT_MS);

  afterEach(async () => {
    await stopAllPrograms();
  });

  afterAll(async () => {
    if (scratch !== undefined) await rm(scratch, { recursive: true, force: true });
  });

  async function startHolder(name: string, args: readonly string[]) {
    const socketPath = path.join(scratch, `${name}-${version}`);
    await rm(socketPath, { force: true });
    const holder = Program.start("python3", ["-c", HOLDER, socketPath, "--", binary, ...args]);
    await holder.waitForEvent("holder_bound", IO_TIMEOUT_MS);
    return { holder, socketPath };
  }

  it(
    "stores every slot's listening sockets and serves from them after the supervisor died",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const { holder, socketPath } = await startHolder("store", ["--workers", String(WORKERS)]);
      const first = Program.start(binary, ["--workers", String(WORKERS), ...ANY_LOOPBACK_PORT], {
        NOTIFY_SOCKET: socketPath,
        FDSTORE: "64",
      });
      const ready = await first.waitForEvent<ReadyEvent>("ready", READY_TIMEOUT_MS);
      const listeners = SUPERVISED_SPEC.listeners;
      const stored = await waitForStored(holder, WORKERS * listeners.length);
      for (const l of listeners) {
        const fds = stored.filter((e) => e.name === l.name).flatMap((e) => e.fds);
        expect(fds).toHaveLength(WORKERS);
        for (const fd of fds) {
          expect(fd.port).toBe(portOf(ready, l.name));
          expect(fd.type).toBe(l.protocol === "tcp" ? "stream" : "datagram");
          expect(fd.listening).toBe(l.protocol === "tcp" ? 1 : 0);
          expect(fd.reuseport).toBe(1);
        }
      }

      // The supervisor crashes; its workers follow it (PDEATHSIG). Only the store holds the
      // sockets now, and clients keep arriving.
      const pids = [...first.knownPids];
      first.signal("SIGKILL");
      expect(await waitUntilGone(pids, STOP_TIMEOUT_MS)).toEqual([]);
      const whoPort = portOf(ready, "who");
      const queued = tcpExchange(HOST, whoPort, { timeoutMs: 3 * IO_TIMEOUT_MS });
      const datagram = udpSendAndAwait(portOf(ready, "uecho"), "while nobody served");
      await sleep(200);

      // systemd starts the service again and passes the stored sockets back.
      holder.signal("SIGUSR1");
      const again = await holder.waitForEvent<ReadyEvent>("ready", READY_TIMEOUT_MS);
      for (const l of listeners) expect(portOf(again, l.name)).toBe(portOf(ready, l.name));
      expect(holder.stderr).toMatch(/listener who: 2 socket\(s\) from systemd, one per slot/);
      const served = parseWhoami((await queued).toString());
      expect(again.workers.map((w) => w.pid)).toContain(served.pid);
      expect(await datagram).toBe("while nobody served");

      holder.signal("SIGTERM");
      expect((await holder.waitForExit(STOP_TIMEOUT_MS)).code).toBe(0);
    },
  );

  it(
    "stores nothing unless $FDSTORE or --fd-store asks for it",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const { holder, socketPath } = await startHolder("nostore", []);
      const plain = Program.start(binary, ["--workers", "1", ...ANY_LOOPBACK_PORT], {
        NOTIFY_SOCKET: socketPath,
      });
      await plain.waitForEvent<ReadyEvent>("ready", READY_TIMEOUT_MS);
      const isReady = (e: ServiceEvent) => String(e.text).startsWith("READY=1");
      await holder.waitForEvent("notify", IO_TIMEOUT_MS, isReady);
      expect(storeEvents(holder)).toEqual([]);
      plain.signal("SIGTERM");
      expect((await plain.waitForExit(STOP_TIMEOUT_MS)).code).toBe(0);

      const flagged = Program.start(
        binary,
        ["--workers", "1", "--fd-store", ...ANY_LOOPBACK_PORT],
        { NOTIFY_SOCKET: socketPath },
      );
      await flagged.waitForEvent<ReadyEvent>("ready", READY_TIMEOUT_MS);
      const stored = await waitForStored(holder, SUPERVISED_SPEC.listeners.length);
      expect(stored.map((e) => e.name).sort()).toEqual(
        SUPERVISED_SPEC.listeners.map((l) => l.name).sort(),
      );
      flagged.signal("SIGTERM");
      expect((await flagged.waitForExit(STOP_TIMEOUT_MS)).code).toBe(0);
    },
  );

  it(
    "started again with fewer workers, serves from the first stored sockets and closes the rest",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const { holder, socketPath } = await startHolder("fewer", ["--workers", "1"]);
      const first = Program.start(binary, ["--workers", "3", ...ANY_LOOPBACK_PORT], {
        NOTIFY_SOCKET: socketPath,
        FDSTORE: "64",
      });
      const ready = await first.waitForEvent<ReadyEvent>("ready", READY_TIMEOUT_MS);
      await waitForStored(holder, 3 * SUPERVISED_SPEC.listeners.length);
      const pids = [...first.knownPids];
      first.signal("SIGKILL");
      expect(await waitUntilGone(pids, STOP_TIMEOUT_MS)).toEqual([]);

      holder.signal("SIGUSR1");
      const again = await holder.waitForEvent<ReadyEvent>("ready", READY_TIMEOUT_MS);
      expect(again.workers).toHaveLength(1);
      expect(holder.stderr).toMatch(/listener who: socket \d+ from systemd is beyond the 1 slots/);
      // The one remaining member of each group takes every new connection.
      for (let i = 0; i < 10; i++) {
        const text = await tcpExchange(HOST, portOf(ready, "who"), { timeoutMs: IO_TIMEOUT_MS });
        expect(parseWhoami(text.toString()).pid).toBe(again.workers[0]!.pid);
      }
      holder.signal("SIGTERM");
      expect((await holder.waitForExit(STOP_TIMEOUT_MS)).code).toBe(0);
    },
  );
});
