/**
 * The admin listener and the shutdown delay, on the `supervised` service the supervisor tests
 * build already (no build of its own): `--admin` on 127.0.0.1 or [::1] with a kernel-picked
 * port, asked with curl and with raw sockets. /healthz names a SIGSTOPped worker's slot until
 * SIGCONT; /readyz turns 503 at SIGTERM while the service still answers during
 * `--shutdown-delay`; 404, 405 with Allow, HEAD; hostile admin clients (slowloris, garbage,
 * oversized heads) get the parser's answers while a SIGHUP restart completes; an admin port
 * that collides with a listener and a malformed --admin are refused naming the flag.
 */
import { execa } from "execa";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "./support/net.js";
import { RawClient } from "./support/hostile.js";
import {
  Program,
  portOf,
  READY_TIMEOUT_MS,
  startReady,
  STOP_TIMEOUT_MS,
  stopAllPrograms,
  type ReadyEvent,
  type ServiceEvent,
} from "./support/program.js";
import { ANY_LOOPBACK_PORT, binaryOf, processGroupMembers } from "./support/supervised.js";
import { ensureCommand } from "./support/tools.js";
import { FULL_MATRIX_VERSIONS } from "./support/zig.js";
import { PACKAGE_ROOT } from "../../src/index.js";

const SETUP_TIMEOUT_MS = 15 * 60_000;
const TEST_TIMEOUT_MS = 90_000;
const CURL_TIMEOUT_S = 5;
/** Bounds every poll of an endpoint: the state it waits for comes within this. */
const POLL_TIMEOUT_MS = 10_000;

interface AdminReadyEvent extends ReadyEvent {
  readonly admin?: { readonly address: string; readonly port: number };
}

interface Reply {
  readonly status: number;
  readonly headers: string;
  readonly body: string;
}

/** One request with curl (a real client); status, raw headers and body. */
async function curl(url: string, args: readonly string[] = []): Promise<Reply> {
  const result = await execa(
    "curl",
    ["-sS", "-g", "--max-time", String(CURL_TIMEOUT_S), "-D", "-", "-w", "\n%{http_code}", ...args, url],
    { reject: false, timeout: (CURL_TIMEOUT_S + 2) * 1000, stdin: "ignore" },
  );
  const text = result.stdout;
  const split = text.indexOf("\r\n\r\n");
  const status = Number(text.slice(text.lastIndexOf("\n") + 1));
  if (split < 0 || !Number.isInteger(status)) {
    throw new Error(`curl ${url}: ${result.stderr || text}`);
  }
  return {
    status,
    headers: text.slice(0, split),
    body: text.slice(split + 4, text.lastIndexOf("\n")),
  };
}

/** Polls `url` (bounded) until its status is `status`; returns that reply. */
async function pollStatus(url: string, status: number): Promise<Reply> {
  const deadline = Date.now() + POLL_TIMEOUT_MS;
  let last: Reply | undefined;
  while (Date.now() < deadline) {
    last = await curl(url);
    if (last.status === status) return last;
    await sleep(50);
  }
  throw new Error(`${url} did not answer ${status} in ${POLL_TIMEOUT_MS} ms: ${JSON.stringify(last)}`);
}

function adminUrl(ready: AdminReadyEvent, path: string): string {
  const admin = ready.admin;
  if (admin === undefined) throw new Error(`ready has no admin: ${JSON.stringify(ready)}`);
  const host = admin.address.includes(":") ? `[${admin.address}]` : admin.address;
  return `http://${host}:${admin.port}${path}`;
}

describe.each(FULL_MATRIX_VERSIONS)("zig %s", (version) => {
  let binary = "";

  beforeAll(async () => {
    ensureCommand("curl", "curl");
    binary = await binaryOf("supervised", version);
  }, SETUP_TIMEOUT_MS);

  afterEach(async () => {
    await stopAllPrograms();
  });

  afterAll(async () => {
    await stopAllPrograms();
  });

  async function startWithAdmin(extra: readonly string[]) {
    const started = await startReady(binary, [
      "--workers",
      "2",
      ...ANY_LOOPBACK_PORT,
      "--admin",
      "127.0.0.1:0",
      ...extra,
    ]);
    return { program: started.program, ready: started.ready as AdminReadyEvent };
  }

  it(
    "answers /healthz, /readyz, /status, 404, 405 and HEAD; /healthz names a SIGSTOPped worker's slot",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      // A long watchdog: the stopped worker stays (unhealthy) instead of being replaced.
      const { program, ready } = await startWithAdmin(["--watchdog", "30000"]);
      expect(ready.admin).toMatchObject({ address: "127.0.0.1" });
      const health = await curl(adminUrl(ready, "/healthz"));
      expect(health.status).toBe(200);
      expect(JSON.parse(health.body)).toEqual({ unhealthy: [], status: "ok", workers: 2 });
      expect(health.headers).toMatch(/^content-type: application\/json$/im);
      expect(health.headers).toMatch(/^date: \w{3}, \d\d \w{3} \d{4} /im);
      const readyz = await curl(adminUrl(ready, "/readyz"));
      expect([readyz.status, JSON.parse(readyz.body)]).toEqual([200, { ready: true, generation: 1 }]);

      const status = JSON.parse((await curl(adminUrl(ready, "/status?x=1"))).body) as {
        generation: number;
        pid: number;
        mode: string;
        workers: { slot: number; pid: number; state: string; restarts: number }[];
        listeners: { name: string; port: number }[];
        counters: { requests: number };
      };
      expect(status).toMatchObject({ generation: 1, pid: program.pid, mode: "supervisor" });
      expect(status.workers.map((w) => [w.slot, w.pid, w.state, w.restarts])).toEqual(
        ready.workers.map((w) => [w.index, w.pid, "serving", 0]),
      );
      expect(status.listeners.map((l) => [l.name, l.port])).toEqual(
        ready.listeners.map((l) => [l.name, l.port]),
      );

      const missing = await curl(adminUrl(ready, "/nope"));
      expect(missing.status).toBe(404);
      const post = await curl(adminUrl(ready, "/healthz"), ["-X", "POST"]);
      expect(post.status).toBe(405);
      expect(post.headers).toMatch(/^allow: GET, HEAD$/im);
      // HEAD: the GET's headers, no body (what arrives before the close is the head alone).
      const head = await RawClient.connect("127.0.0.1", ready.admin!.port, 2_000);
      try {
        await head.write("HEAD /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        await head.waitForServerClose(5_000);
      } finally {
        head.destroy();
      }
      expect(head.text).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
      expect(head.text).toMatch(new RegExp(`\r\nContent-Length: ${health.body.length}\r\n`));
      expect(head.text.endsWith("\r\n\r\n")).toBe(true);

      const stopped = ready.workers[0]!.pid;
      process.kill(stopped, "SIGSTOP");
      try {
        const sick = await pollStatus(adminUrl(ready, "/healthz"), 503);
        expect(JSON.parse(sick.body)).toEqual({
          unhealthy: [{ slot: 0, reason: "hung" }],
          status: "unhealthy",
          workers: 2,
        });
      } finally {
        process.kill(stopped, "SIGCONT");
      }
      await pollStatus(adminUrl(ready, "/healthz"), 200);
      // The same worker: the watchdog did not replace it.
      expect(program.find("worker_hung")).toBeUndefined();
      program.signal("SIGTERM");
      expect(await program.waitForExit(STOP_TIMEOUT_MS)).toEqual({ code: 0, signal: null });
    },
  );

  it(
    "turns /readyz 503 at SIGTERM while the service still answers during --shutdown-delay",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const delayMs = 3_000;
      const { program, ready } = await startWithAdmin(["--shutdown-delay", String(delayMs)]);
      const web = `http://127.0.0.1:${portOf(ready, "web")}/`;
      expect((await curl(web)).status).toBe(200);
      program.signal("SIGTERM");
      const unready = await pollStatus(adminUrl(ready, "/readyz"), 503);
      expect(JSON.parse(unready.body)).toMatchObject({ ready: false, reason: "shutdown_delay" });
      // Still in the delay (no drain began): a real client is served, on a new connection.
      const during = await curl(web);
      const stopping = program.find("stopping");
      expect(during.status).toBe(200);
      expect(stopping, "the drain began before the client was served").toBeUndefined();
      expect(program.find("unready")).toMatchObject({ shutdown_delay_ms: delayMs });
      // A SIGHUP meanwhile restarts nothing: the stop wins.
      program.signal("SIGHUP");
      const exit = await program.waitForExit(delayMs + STOP_TIMEOUT_MS);
      expect(exit, program.stderr).toEqual({ code: 0, signal: null });
      const names = program.events.map((e: ServiceEvent) => e.event);
      expect(names.indexOf("unready")).toBeLessThan(names.indexOf("stopping"));
      expect(names).not.toContain("restarting");
      expect(processGroupMembers(program.pid)).toEqual([]);
    },
  );

  it(
    "gives hostile admin clients the parser's answers without stalling a SIGHUP restart",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const { program, ready } = await startWithAdmin(["--header-timeout", "1500"]);
      const port = ready.admin!.port;
      const opened: RawClient[] = [];
      try {
        // Slowloris: more connections than the admin listener serves at once, each a head
        // that never ends, a byte now and then.
        for (let i = 0; i < 20; i += 1) {
          const client = await RawClient.connect("127.0.0.1", port, 2_000);
          opened.push(client);
          await client.write("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ");
        }
        const garbage = await RawClient.connect("127.0.0.1", port, 2_000);
        opened.push(garbage);
        await garbage.write("\u0000\u0001 not http\r\n\r\n");
        const huge = await RawClient.connect("127.0.0.1", port, 2_000);
        opened.push(huge);
        await huge.write(`GET /status HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(9_000)}\r\n\r\n`);
        // Meanwhile the supervisor's loop restarts its workers as usual.
        program.signal("SIGHUP");
        const second = await program.waitForEvent<ReadyEvent>(
          "ready",
          READY_TIMEOUT_MS,
          (e) => (e as ReadyEvent).generation === 2,
        );
        expect(second.generation).toBe(2);
        await garbage.waitFor((d) => d.includes("\r\n\r\n"), 5_000, "the answer to garbage");
        expect(garbage.text).toMatch(/^HTTP\/1\.1 400 /);
        await huge.waitFor((d) => d.includes("\r\n\r\n"), 5_000, "the answer to a huge head");
        expect(huge.text).toMatch(/^HTTP\/1\.1 431 /);
        // A fresh client is served though slow ones filled the table.
        const health = await curl(adminUrl(ready, "/healthz"));
        expect(health.status).toBe(200);
        // A slow head still open meets the header deadline: 408, then the close.
        const slow = opened.find((c) => !c.serverClosed);
        expect(slow, "every slowloris connection was closed early").toBeDefined();
        await slow!.waitForServerClose(5_000);
        expect(slow!.text).toMatch(/^HTTP\/1\.1 408 /);
        for (const c of opened.slice(0, 20)) await c.waitForServerClose(5_000);
      } finally {
        for (const c of opened) c.destroy();
      }
      program.signal("SIGTERM");
      expect(await program.waitForExit(STOP_TIMEOUT_MS)).toEqual({ code: 0, signal: null });
    },
  );

  it(
    "serves /readyz from a --standalone process on [::1], 503 through its shutdown delay",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const { program, ready } = await startReady(binary, [
        "--standalone",
        ...ANY_LOOPBACK_PORT,
        "--admin",
        "[::1]:0",
        "--shutdown-delay",
        "2000",
      ]);
      const admin = ready as AdminReadyEvent;
      expect(admin.admin).toMatchObject({ address: "::1" });
      expect((await curl(adminUrl(admin, "/readyz"))).status).toBe(200);
      const status = JSON.parse((await curl(adminUrl(admin, "/status"))).body) as ServiceEvent;
      expect(status).toMatchObject({ mode: "standalone", pid: program.pid });
      program.signal("SIGTERM");
      await pollStatus(adminUrl(admin, "/readyz"), 503);
      expect((await curl(`http://127.0.0.1:${portOf(ready, "web")}/`)).status).toBe(200);
      expect(await program.waitForExit(STOP_TIMEOUT_MS)).toEqual({ code: 0, signal: null });
    },
  );

  it(
    "refuses an --admin port a listener uses (exit 1) and a malformed --admin (exit 2), naming the flag",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const port = await freePort("tcp", "127.0.0.1");
      const listen = ANY_LOOPBACK_PORT.map((a) => (a === "web=127.0.0.1:0" ? `web=127.0.0.1:${port}` : a));
      const clash = Program.start(binary, ["--workers", "1", ...listen, "--admin", `0.0.0.0:${port}`]);
      expect(await clash.waitForExit(STOP_TIMEOUT_MS), clash.stderr).toEqual({ code: 1, signal: null });
      expect(clash.stderr).toContain(`--admin 0.0.0.0:${port} collides with tcp listener web`);
      expect(clash.find("error")).toMatchObject({ phase: "admin" });
      expect(clash.find("ready")).toBeUndefined();
      expect(processGroupMembers(clash.pid)).toEqual([]);

      const bad = Program.start(binary, ["--admin", "localhost"]);
      expect(await bad.waitForExit(STOP_TIMEOUT_MS)).toEqual({ code: 2, signal: null });
      expect(bad.stderr).toContain('--admin: expected HOST:PORT such as 127.0.0.1:9901');
    },
  );
});

describe("the spec", () => {
  it("refuses an admin port a TCP listener uses: exit 2 naming admin.port, nothing written", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "gen-reuseport-e2e-admin-"));
    try {
      const spec = {
        name: "admin-clash",
        admin: { port: 8080 },
        listeners: [
          { name: "api", protocol: "tcp", address: "0.0.0.0", port: 8080, handler: "http" },
        ],
      };
      await writeFile(path.join(dir, "spec.json"), JSON.stringify(spec));
      const result = await execa(
        process.execPath,
        [path.join(PACKAGE_ROOT, "bin", "gen-reuseport.js"), "spec.json", "--out", "out"],
        { reject: false, timeout: 30_000, cwd: dir, stdin: "ignore" },
      );
      expect(result.exitCode).toBe(2);
      expect(result.stderr).toContain("spec.json: admin.port: collides with listeners[0]");
      expect(existsSync(path.join(dir, "out"))).toBe(false);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
