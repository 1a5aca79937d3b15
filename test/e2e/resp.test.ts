/**
 * The resp example: a RESP2 subset as a stream module (examples/app/resp.zig over the
 * generated stub), checked with redis-cli, the real client. redis-cli comes from Debian's
 * redis-tools: installed with apt-get when missing (as root); under CI=true a missing
 * redis-cli fails the run instead of skipping it.
 */
import { execFile, spawnSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { tcpExchange } from "./support/net.js";
import { portOf, startReady, stopAllPrograms } from "./support/program.js";
import { programOf } from "./support/project.js";
import { ZIG_VERSIONS } from "./support/zig.js";

const SETUP_TIMEOUT_MS = 15 * 60_000;
const TEST_TIMEOUT_MS = 30_000;

function hasRedisCli(): boolean {
  return spawnSync("sh", ["-c", "command -v redis-cli"]).status === 0;
}

/** Installs redis-tools when redis-cli is missing and we may; throws when it stays missing. */
function ensureRedisCli(): void {
  if (hasRedisCli()) return;
  if (process.getuid?.() === 0) {
    const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
    spawnSync("apt-get", ["update", "-q"], { stdio: "ignore", env, timeout: 300_000 });
    spawnSync("apt-get", ["install", "-y", "-q", "redis-tools"], {
      stdio: "ignore",
      env,
      timeout: 300_000,
    });
  }
  if (!hasRedisCli()) {
    throw new Error(
      "redis-cli is missing and could not be installed (Debian: apt-get install redis-tools)",
    );
  }
}

function redisCli(port: number, args: readonly string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      "redis-cli",
      ["-h", "127.0.0.1", "-p", String(port), ...args],
      { timeout: 5_000 },
      (error, stdout, stderr) => {
        if (error) reject(new Error(`redis-cli ${args.join(" ")}: ${stderr || error.message}`));
        else resolve(stdout);
      },
    );
    child.stdin?.end(input ?? "");
  });
}

describe.each(ZIG_VERSIONS)("zig %s: the resp example (stream module, redis-cli)", (version) => {
  let port: number;
  const timeout = TEST_TIMEOUT_MS;

  beforeAll(async () => {
    ensureRedisCli();
    const binary = await programOf("resp", version);
    const { ready } = await startReady(binary, ["--standalone", "--listen", "cache=127.0.0.1:0"]);
    port = portOf(ready, "cache");
  }, SETUP_TIMEOUT_MS);

  afterAll(async () => {
    await stopAllPrograms();
  });

  it("answers PING, ECHO, SET, GET, INCR and DEL as Redis does", { timeout }, async () => {
    expect(await redisCli(port, ["PING"])).toBe("PONG\n");
    expect(await redisCli(port, ["ECHO", "hello world"])).toBe("hello world\n");
    expect(await redisCli(port, ["SET", "greeting", "hi there"])).toBe("OK\n");
    expect(await redisCli(port, ["GET", "greeting"])).toBe("hi there\n");
    expect(await redisCli(port, ["INCR", "counter"])).toBe("1\n");
    expect(await redisCli(port, ["INCR", "counter"])).toBe("2\n");
    // redis-cli ends an error reply with an empty line when its output is not a terminal.
    expect(await redisCli(port, ["INCR", "greeting"])).toBe(
      "ERR value is not an integer or out of range\n\n",
    );
    expect(await redisCli(port, ["DEL", "greeting", "counter", "missing"])).toBe("2\n");
    expect(await redisCli(port, ["GET", "greeting"])).toBe("\n");
    expect(await redisCli(port, ["NOPE"])).toBe("ERR unknown command 'NOPE'\n\n");
  });

  it("keeps a client name per connection", { timeout }, async () => {
    // One redis-cli session (one connection) reading commands from stdin.
    const session = "CLIENT GETNAME\nCLIENT SETNAME worker-test\nCLIENT GETNAME\n";
    expect(await redisCli(port, [], session)).toBe("\nOK\nworker-test\n");
    // A new connection has no name.
    expect(await redisCli(port, ["CLIENT", "GETNAME"])).toBe("\n");
  });

  it("answers inline commands and a pipelined batch in order", { timeout }, async () => {
    const reply = await tcpExchange("127.0.0.1", port, {
      send: "PING\r\nSET k 5\r\nINCR k\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
      endAfterSend: true,
      timeoutMs: 5_000,
    });
    expect(reply.toString()).toBe("+PONG\r\n+OK\r\n:6\r\n$1\r\n6\r\n");
  });

  it("holds a 60 KB value through redis-cli", { timeout }, async () => {
    const value = "v".repeat(60_000);
    expect(await redisCli(port, ["-x", "SET", "big"], value)).toBe("OK\n");
    expect(await redisCli(port, ["GET", "big"])).toBe(`${value}\n`);
  });
});
