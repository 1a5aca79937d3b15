/**
 * The reflect example: a datagram module (examples/app/reflect.zig over the generated stub)
 * that tells each UDP client the address and port it is seen from, and relays a message to
 * another endpoint from the listener's socket.
 */
import dgram from "node:dgram";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { udpExchange } from "./support/net.js";
import { portOf, startReady, stopAllPrograms } from "./support/program.js";
import { programOf } from "./support/project.js";
import { ZIG_VERSIONS } from "./support/zig.js";

const SETUP_TIMEOUT_MS = 15 * 60_000;
const TEST_TIMEOUT_MS = 30_000;

/** A bound UDP socket that collects what it receives, closed by the test. */
async function boundSocket(type: "udp4" | "udp6", host: string) {
  const socket = dgram.createSocket(type);
  const received: { text: string; port: number }[] = [];
  socket.on("message", (msg, info) => received.push({ text: msg.toString(), port: info.port }));
  await new Promise<void>((resolve) => socket.bind(0, host, resolve));
  return { socket, received, port: socket.address().port };
}

async function until(check: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (check()) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return check();
}

describe.each(ZIG_VERSIONS)("zig %s: the reflect example (datagram module)", (version) => {
  let port4: number;
  let port6: number;
  const timeout = TEST_TIMEOUT_MS;

  beforeAll(async () => {
    const binary = await programOf("reflect", version);
    const { ready } = await startReady(binary, [
      "--standalone",
      "--listen",
      "reflect4=127.0.0.1:0",
      "--listen",
      "reflect6=[::1]:0",
    ]);
    port4 = portOf(ready, "reflect4");
    port6 = portOf(ready, "reflect6");
  }, SETUP_TIMEOUT_MS);

  afterAll(async () => {
    await stopAllPrograms();
  });

  it("tells a client the address and port it sends from (IPv4, IPv6)", { timeout }, async () => {
    const a = await boundSocket("udp4", "127.0.0.1");
    try {
      a.socket.send("ADDR", port4, "127.0.0.1");
      expect(await until(() => a.received.length > 0, 2_000)).toBe(true);
      expect(a.received[0]?.text).toBe(`127.0.0.1 ${a.port}\n`);
    } finally {
      a.socket.close();
    }
    const six = await udpExchange("::1", port6, "PING", { timeoutMs: 1_000 });
    expect(six.toString()).toBe("PONG\n");
  });

  it("runs the module's per-worker timer (tick_ms 100)", { timeout }, async () => {
    const ask = async () => {
      const reply = await udpExchange("127.0.0.1", port4, "TICKS", { timeoutMs: 1_000 });
      return Number(reply.toString());
    };
    const first = await ask();
    await new Promise((r) => setTimeout(r, 600));
    const second = await ask();
    // About 6 ticks in 600 ms; at least 3 even on a busy machine, never more than 7.
    expect(second - first).toBeGreaterThanOrEqual(3);
    expect(second - first).toBeLessThanOrEqual(7);
  });

  it("relays a message to another endpoint, naming the sender", { timeout }, async () => {
    const a = await boundSocket("udp4", "127.0.0.1");
    const b = await boundSocket("udp4", "127.0.0.1");
    try {
      a.socket.send(`RELAY 127.0.0.1 ${b.port} hello b`, port4, "127.0.0.1");
      expect(await until(() => a.received.length > 0 && b.received.length > 0, 2_000)).toBe(true);
      expect(a.received[0]?.text).toBe("SENT\n");
      expect(b.received[0]?.text).toBe(`127.0.0.1 ${a.port} hello b`);
      expect(b.received[0]?.port).toBe(port4);
    } finally {
      a.socket.close();
      b.socket.close();
    }
  });
});
