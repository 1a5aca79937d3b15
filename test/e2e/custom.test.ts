/**
 * The custom example: the user-owned `src/handler.zig` the generator writes once answers
 * each TCP line and each UDP datagram in upper case.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { tcpExchange, udpExchange } from "./support/net.js";
import { portOf, startReady, stopAllPrograms } from "./support/program.js";
import { programOf } from "./support/project.js";
import { ZIG_VERSIONS } from "./support/zig.js";

const SETUP_TIMEOUT_MS = 15 * 60_000;
const TEST_TIMEOUT_MS = 30_000;
const IO_TIMEOUT_MS = 5_000;

describe.each(ZIG_VERSIONS)("zig %s: the custom example (--standalone)", (version) => {
  let tcpPort: number;
  let udpPort: number;

  beforeAll(async () => {
    const binary = await programOf("custom", version);
    const { ready } = await startReady(binary, [
      "--standalone",
      "--listen",
      "stream=127.0.0.1:0",
      "--listen",
      "datagram=[::1]:0",
    ]);
    tcpPort = portOf(ready, "stream");
    udpPort = portOf(ready, "datagram");
  }, SETUP_TIMEOUT_MS);

  afterAll(async () => {
    await stopAllPrograms();
  });

  it("answers every TCP line in upper case", { timeout: TEST_TIMEOUT_MS }, async () => {
    const reply = await tcpExchange("127.0.0.1", tcpPort, {
      send: "hello\nzig world 42\n",
      endAfterSend: true,
      timeoutMs: IO_TIMEOUT_MS,
    });
    expect(reply.toString()).toBe("HELLO\nZIG WORLD 42\n");
  });

  it(
    "answers a UDP datagram on ::1 with its upper-case copy",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const reply = await udpExchange("::1", udpPort, "quiet datagram", { timeoutMs: 1_000 });
      expect(reply.toString()).toBe("QUIET DATAGRAM");
    },
  );
});
