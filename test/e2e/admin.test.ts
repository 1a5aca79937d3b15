/**
 * The admin listener and the shutdown delay, on the `supervised` service the supervisor tests
 * build already (no build of its own): `--admin` on 127.0.0.1 or [::1] with a kernel-picked
 * port, asked with curl and with raw sockets. /healthz names a SIGSTOPped worker's slot until
 * SIGCONT; /readyz turns 503 at SIGTERM while the service still answers during
 * `--shutdown-delay`; 404, 405 with Allow, HEAD; hostile admin clients (slowloris, garbage,
 * oversized heads) get the parser's answers while a SIGHUP restart completes; an admin port
 * that collides with a listener and a malformed --admin are refused naming the flag.
 */
import { execa, type ResultPromise } from "execa";
import http from "node:http";
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
import { runCli } from "../../src/cli/run.js";

const SETUP_TIMEOUT_MS = 15 * 60_000;
const TEST_TIMEOUT_MS = 90_000;
const CURL_TIMEOUT_S = 5;
/** Bounds every poll of an endpoint: the state it waits for comes within this. */
const POLL_TIMEOUT_MS = 10_000;
/**
 * The real Prometheus server's scrape runs on the newest release of the matrix only (every
 * release's /metrics passes promtool in this file, in both formats: the exposition is the same
 * code, and the scrape costs about 10 s).
 */
const SCRAPED_VERSION = FULL_MATRIX_VERSIONS[FULL_MATRIX_VERSIONS.length - 1];

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
    // A refused connection (the admin table full of clients just accepted) is tried again.
    last = await curl(url).catch(() => last);
    if (last?.status === status) return last;
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

/** Keep-alive GETs to `url` until `stop()`; counts the 200s and the failures. */
function startLoad(url: string) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
  let running = true;
  const counts = { ok: 0, failed: 0 };
  const one = () =>
    new Promise<void>((resolve) => {
      const req = http.get(url, { agent, timeout: 5_000 }, (res) => {
        res.resume();
        res.on("end", () => {
          if (res.statusCode === 200) counts.ok += 1;
          else counts.failed += 1;
          resolve();
        });
      });
      req.on("timeout", () => req.destroy(new Error("timeout")));
      req.on("error", () => {
        counts.failed += 1;
        resolve();
      });
    });
  const loops = Array.from({ length: 4 }, async () => {
    // Bounded: a minute at most, whatever the test does.
    const until = Date.now() + 60_000;
    while (running && Date.now() < until) {
      await one();
      await sleep(5);
    }
  });
  return {
    counts,
    async stop() {
      running = false;
      await Promise.all(loops);
      agent.destroy();
    },
  };
}

/** A Prometheus server in `dir` scraping `target` every second, on a free loopback port. */
async function startPrometheus(dir: string, target: string) {
  const port = await freePort("tcp", "127.0.0.1");
  const config =
    "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n" +
    `scrape_configs:\n  - job_name: svc\n    static_configs:\n      - targets: ["${target}"]\n`;
  await writeFile(path.join(dir, "prometheus.yml"), config);
  const child: ResultPromise = execa(
    "prometheus",
    [
      `--config.file=${path.join(dir, "prometheus.yml")}`,
      `--storage.tsdb.path=${path.join(dir, "data")}`,
      `--web.listen-address=127.0.0.1:${port}`,
      "--log.level=warn",
    ],
    { reject: false, stdin: "ignore", cwd: dir, timeout: 120_000, forceKillAfterDelay: 2_000 },
  );
  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 20_000;
  while ((await curl(`${base}/-/ready`).catch(() => undefined))?.status !== 200) {
    if (Date.now() > deadline || child.exitCode !== null) {
      child.kill("SIGKILL");
      throw new Error(`prometheus did not get ready: ${String((await child).stderr)}`);
    }
    await sleep(100);
  }
  return { child, base };
}

type Sample = [number, string];

/** An instant query; the first result's value, or undefined without a result. */
async function query(base: string, promql: string): Promise<number | undefined> {
  const reply = await curl(`${base}/api/v1/query`, ["--data-urlencode", `query=${promql}`]);
  const data = JSON.parse(reply.body) as { status: string; data: { result: { value: Sample }[] } };
  if (data.status !== "success") throw new Error(`${promql}: ${reply.body}`);
  const first = data.data.result[0];
  return first === undefined ? undefined : Number(first.value[1]);
}

/** Every value of `promql` from `start` to now (seconds), one a second. */
async function queryRange(base: string, promql: string, start: number): Promise<number[]> {
  const end = Date.now() / 1000;
  const reply = await curl(`${base}/api/v1/query_range`, [
    "--data-urlencode",
    `query=${promql}`,
    "--data-urlencode",
    `start=${start}`,
    "--data-urlencode",
    `end=${end}`,
    "--data-urlencode",
    "step=1",
  ]);
  const data = JSON.parse(reply.body) as { data: { result: { values: Sample[] }[] } };
  return (data.data.result[0]?.values ?? []).map((v) => Number(v[1]));
}

/** Polls `promql` (bounded) until `accept` takes its value. */
async function queryUntil(
  base: string,
  promql: string,
  accept: (v: number | undefined) => boolean,
  timeoutMs = 20_000,
): Promise<number | undefined> {
  const deadline = Date.now() + timeoutMs;
  let value: number | undefined;
  while (Date.now() < deadline) {
    value = await query(base, promql);
    if (accept(value)) return value;
    await sleep(250);
  }
  throw new Error(`${promql} stayed at ${value} for ${timeoutMs} ms`);
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
        // Garbage and an oversized head: the parser's answers, then the close.
        const garbage = await RawClient.connect("127.0.0.1", port, 2_000);
        opened.push(garbage);
        await garbage.write("\u0000\u0001 not http\r\n\r\n");
        const huge = await RawClient.connect("127.0.0.1", port, 2_000);
        opened.push(huge);
        await huge.write(`GET /status HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(9_000)}\r\n\r\n`);
        await garbage.waitFor((d) => d.includes("\r\n\r\n"), 5_000, "the answer to garbage");
        expect(garbage.text).toMatch(/^HTTP\/1\.1 400 /);
        await huge.waitFor((d) => d.includes("\r\n\r\n"), 5_000, "the answer to a huge head");
        expect(huge.text).toMatch(/^HTTP\/1\.1 431 /);
        // Slowloris: more connections than the admin listener serves at once, each a head
        // that never ends.
        const slowloris: RawClient[] = [];
        for (let i = 0; i < 20; i += 1) {
          const client = await RawClient.connect("127.0.0.1", port, 2_000);
          opened.push(client);
          slowloris.push(client);
          await client.write("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ");
        }
        // Meanwhile the supervisor's loop restarts its workers as usual.
        program.signal("SIGHUP");
        const second = await program.waitForEvent<ReadyEvent>(
          "ready",
          READY_TIMEOUT_MS,
          (e) => (e as ReadyEvent).generation === 2,
        );
        expect(second.generation).toBe(2);
        // A fresh client is served though slow ones filled the table (at once, or as soon
        // as they have had their chance to be read).
        const health = await pollStatus(adminUrl(ready, "/healthz"), 200);
        expect(JSON.parse(health.body)).toMatchObject({ status: "ok" });
        // Every slow head ends: replaced by a newcomer, refused while the table was full of
        // connections too young to replace, or at the header deadline with a 408.
        for (const c of slowloris) await c.waitForServerClose(5_000);
        const timedOut = slowloris.filter((c) => /^HTTP\/1\.1 408 /.test(c.text));
        expect(timedOut.length, slowloris.map((c) => c.describe()).join("\n")).toBeGreaterThan(0);
      } finally {
        for (const c of opened) c.destroy();
      }
      program.signal("SIGTERM");
      expect(await program.waitForExit(STOP_TIMEOUT_MS)).toEqual({ code: 0, signal: null });
    },
  );

  it(
    "serves /metrics that promtool accepts, in the Prometheus text format and in OpenMetrics",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      ensureCommand("promtool", "prometheus");
      const { program, ready } = await startWithAdmin([]);
      const dir = await mkdtemp(path.join(tmpdir(), "gen-reuseport-e2e-promtool-"));
      try {
        for (let i = 0; i < 5; i += 1) await curl(`http://127.0.0.1:${portOf(ready, "web")}/`);
        const text = await curl(adminUrl(ready, "/metrics"));
        expect(text.status).toBe(200);
        expect(text.headers).toMatch(/^content-type: text\/plain; version=0\.0\.4/im);
        expect(text.body).toMatch(/^reuseport_http_requests_total\{listener="web",worker="\d",code="200"\} \d+$/m);
        const checked = await execa("promtool", ["check", "metrics"], {
          input: text.body,
          reject: false,
          timeout: 30_000,
        });
        expect(checked.exitCode, `${checked.stdout}\n${checked.stderr}`).toBe(0);

        const open = await curl(adminUrl(ready, "/metrics"), [
          "-H",
          "Accept: application/openmetrics-text; version=1.0.0",
        ]);
        expect(open.headers).toMatch(/^content-type: application\/openmetrics-text; version=1\.0\.0/im);
        expect(open.body.endsWith("# EOF\n")).toBe(true);
        // promtool's OpenMetrics parser: turn the exposition into a TSDB block (backfilling
        // wants a time on every sample; the text is otherwise the one served).
        const now = Math.floor(Date.now() / 1000);
        const timed = open.body
          .split("\n")
          .map((l) => (l === "" || l.startsWith("#") ? l : `${l} ${now}`))
          .join("\n");
        const file = path.join(dir, "metrics.om");
        await writeFile(file, timed);
        const blocks = await execa(
          "promtool",
          ["tsdb", "create-blocks-from", "openmetrics", file, path.join(dir, "blocks")],
          { reject: false, timeout: 30_000 },
        );
        expect(blocks.exitCode, `${blocks.stdout}\n${blocks.stderr}`).toBe(0);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
      program.signal("SIGTERM");
      expect(await program.waitForExit(STOP_TIMEOUT_MS)).toEqual({ code: 0, signal: null });
    },
  );

  // Defined for one release only (not a skip): see SCRAPED_VERSION.
  if (version === SCRAPED_VERSION) {
    it(
      "is scraped by a real Prometheus under load: a rate > 0, up through a SIGHUP restart and a SIGKILLed worker, totals never down",
      { timeout: TEST_TIMEOUT_MS },
      async () => {
        ensureCommand("prometheus", "prometheus");
        const { program, ready } = await startWithAdmin([]);
        const dir = await mkdtemp(path.join(tmpdir(), "gen-reuseport-e2e-prometheus-"));
        const load = startLoad(`http://127.0.0.1:${portOf(ready, "web")}/`);
        let prometheus: Awaited<ReturnType<typeof startPrometheus>> | undefined;
        try {
          prometheus = await startPrometheus(dir, `127.0.0.1:${ready.admin!.port}`);
          const { base } = prometheus;
          const start = Date.now() / 1000;
          await queryUntil(base, 'up{job="svc"}', (v) => v === 1);
          const rate = await queryUntil(
            base,
            "sum(rate(reuseport_http_requests_total[15s]))",
            (v) => v !== undefined && v > 0,
          );
          expect(rate).toBeGreaterThan(0);
          const scrapes = 'count_over_time(up{job="svc"}[1m])';
          const scrapedBefore = (await query(base, scrapes)) ?? 0;
          program.signal("SIGHUP");
          const second = await program.waitForEvent<ReadyEvent>(
            "ready",
            READY_TIMEOUT_MS,
            (e) => (e as ReadyEvent).generation === 2,
          );
          process.kill(second.workers[0]!.pid, "SIGKILL");
          await program.waitForEvent("worker_replaced", READY_TIMEOUT_MS);
          // Scrapes after both: the total has grown past what it was before them.
          const before = (await query(base, "sum(reuseport_http_requests_total)")) ?? 0;
          await queryUntil(base, "sum(reuseport_http_requests_total)", (v) => (v ?? 0) > before + 10);
          await queryUntil(base, scrapes, (v) => (v ?? 0) >= scrapedBefore + 3);
          const ups = await queryRange(base, 'up{job="svc"}', start);
          expect(ups.length).toBeGreaterThan(3);
          expect(ups.every((v) => v === 1), `up: ${ups.join(",")}`).toBe(true);
          const totals = await queryRange(base, "sum(reuseport_http_requests_total)", start);
          const downs = totals.filter((v, i) => i > 0 && v < totals[i - 1]!);
          expect(downs, `totals: ${totals.join(",")}`).toEqual([]);
          expect(await query(base, 'sum(resets(reuseport_http_requests_total[1m]))')).toBe(0);
        } finally {
          await load.stop();
          prometheus?.child.kill("SIGTERM");
          await prometheus?.child;
          await rm(dir, { recursive: true, force: true });
        }
        expect(load.counts.ok).toBeGreaterThan(0);
        program.signal("SIGTERM");
        expect(await program.waitForExit(STOP_TIMEOUT_MS)).toEqual({ code: 0, signal: null });
      },
    );
  }

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
      // The CLI in this process, from src/ (a checkout's dist/ may not be built).
      let stderr = "";
      const code = await runCli(["spec.json", "--out", "out"], {
        stdout: { write: () => true },
        stderr: { write: (text: string | Uint8Array) => ((stderr += String(text)), true) },
        cwd: dir,
        invocation: "gen-reuseport",
        env: { PATH: process.env.PATH ?? "" },
      });
      expect(code).toBe(2);
      expect(stderr).toContain("spec.json: admin.port: collides with listeners[0]");
      expect(existsSync(path.join(dir, "out"))).toBe(false);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
