/**
 * Upstreams: the kv example (examples/app/kv.zig, an HTTP module that keeps its data in Redis
 * through the upstream `store`) on 4 workers, against a real redis-server the test starts on a
 * free loopback port in a temporary folder, with curl as the client (both installed with
 * apt-get when missing; under CI=true a missing one fails the run). One build per release: the
 * spec is examples/kv.json with the test's Redis port and `responseTimeoutMs: 500`.
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PACKAGE_ROOT } from "../../src/index.js";
import { freePort } from "./support/net.js";
import {
  portOf,
  startReady,
  stopAllPrograms,
  type Program,
  type ReadyEvent,
} from "./support/program.js";
import { compiledSpecValue } from "./support/project.js";
import { ensureCommand } from "./support/tools.js";
import { FULL_MATRIX_VERSIONS, matrixOf } from "./support/zig.js";

/**
 * The releases this file runs on: the newest of the matrix (every release with
 * GEN_REUSEPORT_MATRIX=full). What differs between releases in the upstream runtime is
 * exercised on every release by kv's own `zig build test` (build.test.ts): the pool's tests run
 * real connections, pipelining, queue bounds and failures against a loopback listener. This
 * file adds the real Redis and curl, and one more build of kv per release would cost the
 * suite's time budget about 30 s for the same code.
 */
const VERSIONS =
  matrixOf() === "full" ? FULL_MATRIX_VERSIONS : FULL_MATRIX_VERSIONS.slice(-1);

const SETUP_TIMEOUT_MS = 15 * 60_000;
const TEST_TIMEOUT_MS = 30_000;
const CURL_TIMEOUT_S = 5;
const RESPONSE_TIMEOUT_MS = 500;

/** Runs a command to its end; its stdout (it may fail: the caller looks at the output). */
function run(command: string, args: readonly string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve) => {
    execFile(command, args, { timeout: timeoutMs, maxBuffer: 1 << 20 }, (_error, stdout) =>
      resolve(stdout),
    );
  });
}

interface Answer {
  readonly status: number;
  readonly body: string;
  readonly retryAfter: string | undefined;
}

/** One request on a new connection: status, body and `Retry-After`. */
async function curl(args: readonly string[]): Promise<Answer> {
  const marker = "\n--status:";
  const out = await run(
    "curl",
    ["-sS", "-D", "-", "--max-time", String(CURL_TIMEOUT_S), "-w", `${marker}%{http_code}`]
      .concat(args),
    (CURL_TIMEOUT_S + 2) * 1000,
  );
  const at = out.lastIndexOf(marker);
  const status = Number(out.slice(at + marker.length));
  const headEnd = out.indexOf("\r\n\r\n");
  const head = headEnd < 0 ? "" : out.slice(0, headEnd);
  const retryAfter = /\r\nretry-after: *([^\r\n]*)/i.exec(head)?.[1];
  const body = headEnd < 0 ? "" : out.slice(headEnd + 4, at);
  return { status, body, retryAfter };
}

/** A redis-server of the test's own: loopback only, no persistence, DEBUG from loopback. */
class Redis {
  private child: ChildProcess | undefined;

  constructor(
    readonly port: number,
    private readonly dir: string,
  ) {}

  async start(): Promise<void> {
    const args = ["--port", String(this.port), "--bind", "127.0.0.1", "--save", ""];
    args.push("--appendonly", "no", "--enable-debug-command", "local", "--dir", this.dir);
    const child = spawn("redis-server", args, { stdio: "ignore" });
    this.child = child;
    // Bounded: 100 pings, 50 ms apart.
    for (let i = 0; i < 100; i += 1) {
      if ((await this.cli(["PING"])).trim() === "PONG") return;
      if (child.exitCode !== null) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new Error(`redis-server did not answer PING on port ${this.port}`);
  }

  cli(args: readonly string[], timeoutMs = 2000): Promise<string> {
    return run("redis-cli", ["-p", String(this.port), ...args], timeoutMs);
  }

  async stop(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGTERM");
    const killer = setTimeout(() => child.kill("SIGKILL"), 5000);
    await exited;
    clearTimeout(killer);
  }
}

async function kvSpec(redisPort: number): Promise<{ name: string }> {
  const raw = JSON.parse(await readFile(path.join(PACKAGE_ROOT, "examples/kv.json"), "utf8"));
  delete raw.$schema;
  raw.upstreams[0].servers = [`127.0.0.1:${redisPort}`];
  raw.upstreams[0].responseTimeoutMs = RESPONSE_TIMEOUT_MS;
  return raw;
}

describe.each(VERSIONS)("upstreams with zig %s: kv on redis-server", (version) => {
  let program: Program;
  let redis: Redis | undefined;
  let tmp: string | undefined;
  let base: string;

  beforeAll(async () => {
    ensureCommand("curl", "curl");
    ensureCommand("redis-server", "redis-server");
    ensureCommand("redis-cli", "redis-tools");
    tmp = await mkdtemp(path.join(tmpdir(), "gen-reuseport-upstream-"));
    redis = new Redis(await freePort("tcp", "127.0.0.1"), tmp);
    const project = await compiledSpecValue("kv-redis", await kvSpec(redis.port), version);
    // Its own Zig tests are kv's (build.test.ts runs them on every release): this build differs
    // only in the Redis port and the response timeout, so it is built, not tested again.
    for (const step of [project.steps.generate, project.steps.build]) {
      if (!step.ok) throw new Error(`${step.command} failed (zig ${version}):\n${step.output}`);
    }
    await redis.start();
    const args = ["--workers", "4", "--listen", "api=127.0.0.1:0", "--drain-timeout", "5000"];
    const started = await startReady(project.binary, args);
    program = started.program;
    base = `http://127.0.0.1:${portOf(started.ready, "api")}`;
  }, SETUP_TIMEOUT_MS);

  afterAll(async () => {
    await stopAllPrograms();
    await redis?.stop();
    if (tmp !== undefined) await rm(tmp, { recursive: true, force: true });
  });

  const timeout = TEST_TIMEOUT_MS;

  it("stores in Redis: a PUT, then 50 GETs on new connections see it", { timeout }, async () => {
    const put = await curl(["-X", "PUT", "--data-binary", '{"n":1}', `${base}/kv/shared`]);
    expect(put.status).toBe(204);
    expect((await redis!.cli(["GET", "kv:shared"])).trim()).toBe('{"n":1}');
    const statuses: number[] = [];
    for (let i = 0; i < 50; i += 1) {
      const got = await curl([`${base}/kv/shared`]);
      expect(got.body).toBe('{"n":1}');
      statuses.push(got.status);
    }
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
    expect((await curl([`${base}/kv?prefix=sh`])).body).toBe('{"keys":["shared"]}\n');
    expect((await curl(["-X", "DELETE", `${base}/kv/shared`])).status).toBe(204);
    expect((await curl([`${base}/kv/shared`])).status).toBe(404);
    // req.json refuses what is not JSON: a 400 whose body says what and where.
    const bad = await curl(["-X", "PUT", "--data-binary", "{nope", `${base}/kv/x`]);
    expect(bad.status).toBe(400);
    expect(JSON.parse(bad.body)).toEqual({
      error: "the body is not the JSON this route takes: SyntaxError at line 1, column 2",
    });
  });

  it("answers 503 while Redis is down, 200 once it is back, no restart", { timeout }, async () => {
    await curl(["-X", "PUT", "--data-binary", "2", `${base}/kv/back`]);
    await redis!.stop();
    // Refused at once (a 504 would mean it waited for a reply that cannot come).
    for (let i = 0; i < 8; i += 1) {
      const down = await curl([`${base}/kv/back`]);
      expect(down.status).toBe(503);
      expect(down.retryAfter).toBe("1");
    }
    expect((await curl([`${base}/health`])).status).toBe(200);
    await redis!.start();
    // The data went with the old process (no persistence): store it anew, then read it.
    const statuses: number[] = [];
    for (let i = 0; i < 8; i += 1) {
      statuses.push((await curl(["-X", "PUT", "--data-binary", "3", `${base}/kv/back`])).status);
      if (statuses.at(-1) === 204) break;
    }
    expect(statuses.at(-1)).toBe(204);
    for (let i = 0; i < 8; i += 1) expect((await curl([`${base}/kv/back`])).body).toBe("3");
  });

  it("answers 504 while Redis sleeps, and serves other routes meanwhile", { timeout }, async () => {
    await curl(["-X", "PUT", "--data-binary", "4", `${base}/kv/slow`]);
    const sleeping = redis!.cli(["DEBUG", "SLEEP", "2"], 10_000);
    let sleepDone = false;
    void sleeping.then(() => (sleepDone = true));
    // Bounded: the sleep starts a moment after redis-cli does; a GET that comes after it
    // waits responseTimeoutMs and gets a 504.
    const seen: number[] = [];
    let served = 0;
    for (let i = 0; i < 20 && !sleepDone && !seen.includes(504); i += 1) {
      const [slow, health] = await Promise.all([
        curl([`${base}/kv/slow`]),
        curl([`${base}/health`]),
      ]);
      seen.push(slow.status);
      if (health.status === 200) served += 1;
    }
    expect(seen).toContain(504);
    expect(seen.filter((s) => s !== 200 && s !== 504)).toEqual([]);
    expect(served).toBe(seen.length);
    await sleeping;
    const after = await curl([`${base}/kv/slow`]);
    expect(after.status).toBe(200);
    expect(after.body).toBe("4");
  });

  it("restarts on SIGHUP with calls in flight, and loses none", { timeout }, async () => {
    await curl(["-X", "PUT", "--data-binary", "5", `${base}/kv/hup`]);
    const urls = Array.from({ length: 60 }, () => `${base}/kv/hup`);
    // curl's `-o` is per URL: each body goes nowhere, so that only the statuses are printed.
    const toNowhere = (url: string) => ["-o", "/dev/null", url];
    // Four clients, each a request per connection (`Connection: close`), one after another.
    const load = Array.from({ length: 4 }, () =>
      run(
        "curl",
        ["-s", "-H", "Connection: close", "-w", "%{http_code}\n", ...urls.flatMap(toNowhere)],
        20_000,
      ),
    );
    // Redis holds every reply for 300 ms (under responseTimeoutMs) as the restart begins: the
    // old workers drain with calls in flight.
    const hold = redis!.cli(["DEBUG", "SLEEP", "0.3"], 5000);
    process.kill(program.pid, "SIGHUP");
    await program.waitForEvent<ReadyEvent>("ready", 15_000, (e) => e.generation === 2);
    await hold;
    const codes = (await Promise.all(load)).join("").trim().split("\n");
    expect(codes).toHaveLength(4 * urls.length);
    expect(codes.filter((c) => c !== "200")).toEqual([]);
  });
});
