/**
 * systemd's notification protocol, as a unit with `Type=notify-reload` sees it: a datagram
 * socket named by $NOTIFY_SOCKET receives READY=1 (with MAINPID) once the service accepts,
 * RELOADING=1 with MONOTONIC_USEC when a SIGHUP restart begins, READY=1 when it is done, and
 * STOPPING=1 when a stop begins. Node has no Unix datagram sockets, so a few lines of Python
 * (present wherever Zig is provisioned from PyPI) play systemd's part.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import readline from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  Program,
  READY_TIMEOUT_MS,
  STOP_TIMEOUT_MS,
  stopAllPrograms,
  type ReadyEvent,
} from "./support/program.js";
import { ANY_LOOPBACK_PORT, binaryOf } from "./support/supervised.js";
import { ZIG_VERSIONS } from "./support/zig.js";

const RECEIVER = `
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print(json.dumps("bound"), flush=True)
while True:
    print(json.dumps(s.recv(4096).decode()), flush=True)
`;

/** A stand-in for systemd's end of $NOTIFY_SOCKET, collecting every message. */
class NotifySocket {
  readonly messages: string[] = [];
  private constructor(private readonly child: ChildProcess) {}

  static async bind(socketPath: string): Promise<NotifySocket> {
    const child = spawn("python3", ["-c", RECEIVER, socketPath], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    const receiver = new NotifySocket(child);
    const bound = new Promise<void>((resolve, reject) => {
      child.once("exit", (code) => reject(new Error(`the notify receiver exited (${code})`)));
      readline.createInterface({ input: child.stdout! }).on("line", (line) => {
        const message = JSON.parse(line) as string;
        if (message === "bound") resolve();
        else receiver.messages.push(message);
      });
    });
    await Promise.race([
      bound,
      sleep(5_000).then(() => Promise.reject(new Error("no bind in 5 s"))),
    ]);
    return receiver;
  }

  /** Waits (bounded) until a message matches. */
  async waitFor(pattern: RegExp, timeoutMs = 5_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.messages.find((m) => pattern.test(m));
      if (found !== undefined) return found;
      if (Date.now() > deadline)
        throw new Error(`no ${pattern} in ${JSON.stringify(this.messages)}`);
      await sleep(20);
    }
  }

  close() {
    this.child.kill("SIGKILL");
  }
}

describe.each(ZIG_VERSIONS)("zig %s", (version) => {
  let binary: string;
  let scratch: string;
  let receiver: NotifySocket | undefined;

  beforeAll(async () => {
    binary = await binaryOf("supervised", version);
    scratch = await mkdtemp(path.join(tmpdir(), "gen-reuseport-notify-"));
  }, 15 * 60_000);

  afterEach(async () => {
    await stopAllPrograms();
    receiver?.close();
    receiver = undefined;
  });

  afterAll(async () => {
    if (scratch !== undefined) await rm(scratch, { recursive: true, force: true });
  });

  it(
    "tells $NOTIFY_SOCKET ready, reloading, ready again, and stopping",
    { timeout: 60_000 },
    async () => {
      const socketPath = path.join(scratch, `notify-${version}`);
      receiver = await NotifySocket.bind(socketPath);
      const program = Program.start(binary, ["--workers", "2", ...ANY_LOOPBACK_PORT], {
        NOTIFY_SOCKET: socketPath,
      });
      await program.waitForEvent<ReadyEvent>("ready", READY_TIMEOUT_MS);
      expect(await receiver.waitFor(/^READY=1\n/)).toBe(
        `READY=1\nMAINPID=${program.pid}\nSTATUS=serving generation 1`,
      );

      program.signal("SIGHUP");
      await program.waitForEvent<ReadyEvent>("ready", READY_TIMEOUT_MS, (e) => e.generation === 2);
      const reloading = await receiver.waitFor(/^RELOADING=1\n/);
      expect(reloading).toMatch(/^RELOADING=1\nMONOTONIC_USEC=\d+$/);
      await receiver.waitFor(/STATUS=serving generation 2$/);

      program.signal("SIGTERM");
      expect((await program.waitForExit(STOP_TIMEOUT_MS)).code).toBe(0);
      await receiver.waitFor(/^STOPPING=1$/);
      expect(receiver.messages.map((m) => m.split("\n")[0])).toEqual([
        "READY=1",
        "RELOADING=1",
        "READY=1",
        "STOPPING=1",
      ]);
    },
  );
});
