/**
 * systemd's notification protocol, as a unit with `Type=notify-reload` sees it: a datagram
 * socket named by $NOTIFY_SOCKET receives READY=1 (with MAINPID) once the service accepts,
 * RELOADING=1 with MONOTONIC_USEC when a SIGHUP restart begins, READY=1 when it is done, and
 * STOPPING=1 when a stop begins. `NotifySocket` plays systemd's part.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  Program,
  READY_TIMEOUT_MS,
  STOP_TIMEOUT_MS,
  stopAllPrograms,
  type ReadyEvent,
} from "./support/program.js";
import { ANY_LOOPBACK_PORT, binaryOf } from "./support/supervised.js";
import { NotifySocket } from "./support/notify-socket.js";
import { FULL_MATRIX_VERSIONS } from "./support/zig.js";

describe.each(FULL_MATRIX_VERSIONS)("zig %s", (version) => {
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
