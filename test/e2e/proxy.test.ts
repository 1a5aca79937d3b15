/**
 * The proxy handler (issue 20), on the newest release of the matrix (every release with
 * GEN_REUSEPORT_MATRIX=full; the proxy's own Zig tests, PROXY protocol encoding and server
 * choice, run on every release in build.test.ts through examples/proxy.json). One build: a spec
 * of three proxy listeners on 4 workers, in front of servers the test starts on free loopback
 * ports: two nginx instances of its own (Debian's nginx, installed with apt-get when missing;
 * under CI=true a missing one fails), each with its own configuration in a temporary folder and
 * its own body, and an echo server in this process that reads the PROXY protocol line first.
 *
 * - `web` → nginx 1 and 2, round-robin, 1 retry, `ejectMs` 500, health checks every 200 ms
 *   (`fall` 2, `rise` 1);
 * - `pipe` → the echo server, PROXY protocol v1, `idleTimeoutMs` 1500;
 * - `tagged` → nginx 1's `proxy_protocol` port, PROXY protocol v2 (nginx answers with
 *   `$proxy_protocol_addr:$proxy_protocol_port`);
 * - `bulk` → the echo server as `pipe`, with `zeroCopy` (splice through pipes);
 * - `dead` → two loopback ports nothing listens on, health checks every 200 ms (`fall` 1):
 *   every server down, each client closed at once and counted;
 * - `big` → a plain echo server in a Node process of its own (no PROXY line), with
 *   `zeroCopy`: the 1 GiB transfer, so that the echo does not share the test's event loop.
 *
 * The same binary also runs with `--io io_uring` and one worker, whose pairs move their bytes
 * through the worker's ring: keep-alive, half-close and 16 MiB each way by hash, with strace
 * counting the worker's `recvfrom` and `sendto` meanwhile (a handful, where epoll makes
 * hundreds). With `GEN_REUSEPORT_IO=io_uring` every other case runs in that mode too.
 *
 * The same binary also runs a second time, copied to a path of its own, with `--idle-timeout`
 * (which replaces the listeners' `idleTimeoutMs`) and 2 workers: a whole-program upgrade is
 * driven there (a wrapper renamed over that path answers `--fingerprint` with another
 * supervisor's identity and runs the same binary), so that no second build is needed.
 */
import { execa } from "execa";
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { chmod, copyFile, mkdir, mkdtemp, readFile, rename, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "./support/net.js";
import {
  holdsIoUring,
  isAlive,
  portOf,
  Program,
  READY_TIMEOUT_MS,
  STOP_TIMEOUT_MS,
  startReady,
  stopAllPrograms,
  waitUntilGone,
  type ReadyEvent,
} from "./support/program.js";
import { compiledSpecValue } from "./support/project.js";
import { OTHER_SUPERVISOR_FINGERPRINT } from "./support/supervised.js";
import { ensureCommand } from "./support/tools.js";
import { FULL_MATRIX_VERSIONS, matrixOf } from "./support/zig.js";

/**
 * The newest release only (every release with GEN_REUSEPORT_MATRIX=full): the pumping code
 * uses raw system calls that do not differ between releases, and one more build would cost
 * the suite about 30 s.
 */
const VERSIONS =
  matrixOf() === "full" ? FULL_MATRIX_VERSIONS : FULL_MATRIX_VERSIONS.slice(-1);

const SETUP_TIMEOUT_MS = 15 * 60_000;
const TEST_TIMEOUT_MS = 60_000;
const CURL_TIMEOUT_S = 5;
const EJECT_MS = 500;
const IDLE_TIMEOUT_MS = 1500;
/** The `web` listener's health checks: every 200 ms, down after 2 failures, up after 1 pass. */
const CHECK_INTERVAL_MS = 200;
/** Bytes each way through the proxy in the large transfer. */
const LARGE_BYTES = 64 * 1024 * 1024;
/** Bytes a client sends and reads only later: more than the kernel buffers on the way hold. */
const SLOW_READER_BYTES = 256 * 1024 * 1024;
/** Bytes each way through `big` (spliced) with a reader that pauses every `HUGE_PAUSE_EVERY`. */
const HUGE_BYTES = 1024 * 1024 * 1024;
const HUGE_PAUSE_EVERY = 128 * 1024 * 1024;
const HUGE_PAUSE_MS = 150;
/** The second program's `--idle-timeout`: longer than `pipe`'s own 1500 ms. */
const FLAG_IDLE_TIMEOUT_MS = 2000;
const SECOND_DRAIN_TIMEOUT_MS = 30_000;
/** Bytes each way through a worker serving with `--io io_uring` (its own program). */
const URING_BYTES = 16 * 1024 * 1024;
/** The SIGHUP storm under wrk: one every 200 ms for 3 s. */
const STORM_MS = 3000;
const STORM_EVERY_MS = 200;
const LISTENERS = ["web", "pipe", "tagged", "bulk", "dead", "big"] as const;

/** Runs a command to its end; its stdout (it may fail: the caller looks at the output). */
function run(command: string, args: readonly string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve) => {
    execFile(command, args, { timeout: timeoutMs, maxBuffer: 8 << 20 }, (_error, stdout) =>
      resolve(stdout),
    );
  });
}

interface Answer {
  readonly body: string;
  readonly status: string;
}

/** curl's output for `-w "=%{http_code}\n"`: each body (one line) and its status. */
function answersOf(out: string): Answer[] {
  return [...out.matchAll(/([^\n=]*)\n?=(\d{3})\n/g)].map((m) => ({
    body: m[1] ?? "",
    status: m[2] ?? "",
  }));
}

/**
 * `count` requests from one curl, one after another: each on a new connection
 * (`Connection: close`) unless `keepAlive`; a failed one shows as status `000`.
 */
async function client(url: string, count: number, keepAlive = false): Promise<Answer[]> {
  const args = ["-s", "--max-time", String(CURL_TIMEOUT_S), "-w", "=%{http_code}\n"];
  if (!keepAlive) args.push("-H", "Connection: close");
  const urls = Array.from({ length: count }, () => url);
  return answersOf(await run("curl", [...args, ...urls], (CURL_TIMEOUT_S + 1) * count * 1000));
}

/** One nginx of the test's own: loopback only, its own prefix, answers with its body. */
class Nginx {
  private child: ChildProcess | undefined;

  constructor(
    readonly port: number,
    /** A second port whose clients must send a PROXY protocol header; 0: none. */
    readonly proxyProtocolPort: number,
    readonly body: string,
    private readonly dir: string,
  ) {}

  private config(): string {
    const tagged =
      this.proxyProtocolPort === 0
        ? ""
        : `  server { listen 127.0.0.1:${this.proxyProtocolPort} proxy_protocol;\n` +
          '    location / { return 200 "$proxy_protocol_addr:$proxy_protocol_port\\n"; } }\n';
    return (
      "daemon off;\nworker_processes 1;\n" +
      `pid ${this.dir}/nginx.pid;\nerror_log ${this.dir}/error.log;\n` +
      "events { worker_connections 1024; }\nhttp {\n  access_log off;\n" +
      ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
        .map((t) => `  ${t}_temp_path ${this.dir}/${t};\n`)
        .join("") +
      `  server { listen 127.0.0.1:${this.port};\n` +
      `    location / { return 200 "${this.body}\\n"; } }\n` +
      tagged +
      "}\n"
    );
  }

  async start(): Promise<void> {
    await writeFile(path.join(this.dir, "nginx.conf"), this.config());
    const args = ["-p", this.dir, "-e", `${this.dir}/error.log`, "-c", `${this.dir}/nginx.conf`];
    // Its own process group: the master and its worker are stopped together.
    const child = spawn("nginx", args, { stdio: "ignore", detached: true });
    this.child = child;
    // Bounded: 100 tries, 50 ms apart.
    for (let i = 0; i < 100; i += 1) {
      const url = `http://127.0.0.1:${this.port}/`;
      const out = await run("curl", ["-s", "--max-time", "1", url], 2000);
      if (out === `${this.body}\n`) return;
      if (child.exitCode !== null) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new Error(`nginx did not answer on port ${this.port}`);
  }

  /** Stops it: `QUIT` finishes the requests in flight first (nginx's graceful shutdown). */
  async stop(signal: NodeJS.Signals = "SIGQUIT"): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill(signal);
    const killer = setTimeout(() => process.kill(-child.pid!, "SIGKILL"), 5000);
    await exited;
    clearTimeout(killer);
  }
}

/** What the echo server saw of one connection: its PROXY line. */
interface EchoSeen {
  readonly proxyLine: string;
  /** The proxy's end of the connection: its local port. */
  readonly remotePort: number;
}

/**
 * An echo server that reads the PROXY protocol v1 line, then sends back every byte it gets,
 * with back-pressure (`pipe`), and passes the client's FIN on once all is sent. A client that
 * sends `RESET` first is reset.
 */
function startEcho(seen: EchoSeen[]): Promise<net.Server> {
  const server = net.createServer((socket) => {
    let head = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf("\r\n");
      if (end < 0) return;
      socket.off("data", onData);
      const proxyLine = head.subarray(0, end).toString("latin1");
      seen.push({ proxyLine, remotePort: socket.remotePort ?? 0 });
      const rest = head.subarray(end + 2);
      if (rest.length > 0) return echoFrom(rest);
      // The header may come before the client's first bytes (sent as soon as connected).
      socket.once("data", echoFrom);
    };
    const echoFrom = (first: Buffer) => {
      if (first.subarray(0, 5).toString() === "RESET") {
        socket.resetAndDestroy();
        return;
      }
      socket.write(first);
      socket.pipe(socket);
    };
    socket.on("data", onData);
    socket.on("error", () => socket.destroy());
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host: "127.0.0.1", port: 0 }, () => resolve(server));
  });
}

/** A plain echo server in a Node process of its own; resolves with the process and its port. */
function startEchoProcess(): Promise<{ child: ChildProcess; port: number }> {
  const script =
    'const s = require("node:net").createServer((c) => { c.on("error", () => c.destroy()); ' +
    'c.pipe(c); }); s.listen(0, "127.0.0.1", () => console.log(s.address().port));';
  const child = spawn(process.execPath, ["-e", script], { stdio: ["ignore", "pipe", "inherit"] });
  return new Promise((resolve, reject) => {
    child.once("exit", (code) => reject(new Error(`the echo process exited (${code})`)));
    child.stdout!.once("data", (d: Buffer) => resolve({ child, port: Number(String(d).trim()) }));
  });
}

interface Exchange {
  readonly received: Buffer;
  readonly localPort: number;
  readonly error: string | undefined;
  readonly elapsedMs: number;
}

/**
 * Connects to `port`, writes `chunks` (honouring back-pressure), shuts its side down
 * (half-close) unless `keepOpen`, and reads until the proxy closes.
 */
function exchange(port: number, chunks: readonly Buffer[], keepOpen = false): Promise<Exchange> {
  return new Promise((resolve) => {
    const started = Date.now();
    const socket = net.connect({ host: "127.0.0.1", port });
    const parts: Buffer[] = [];
    let error: string | undefined;
    let localPort = 0;
    const timer = setTimeout(() => socket.destroy(new Error("timeout")), 30_000);
    socket.on("connect", async () => {
      localPort = socket.localPort ?? 0;
      for (const chunk of chunks) {
        if (!socket.write(chunk)) await new Promise((r) => socket.once("drain", r));
      }
      if (!keepOpen) socket.end();
    });
    socket.on("data", (d) => parts.push(d));
    socket.on("error", (e: NodeJS.ErrnoException) => (error = e.code ?? e.message));
    socket.on("close", () => {
      clearTimeout(timer);
      const received = Buffer.concat(parts);
      resolve({ received, localPort, error, elapsedMs: Date.now() - started });
    });
  });
}

function proxySpec(
  web: readonly Nginx[],
  echoPort: number,
  deadPorts: readonly number[],
  bigEchoPort: number,
) {
  // Ports the program replaces (`--listen NAME=127.0.0.1:0`); distinct, as the rules ask.
  const listener = (name: string, port: number, proxy: Record<string, unknown>) => ({
    name,
    protocol: "tcp",
    address: "127.0.0.1",
    port,
    handler: "proxy",
    proxy,
  });
  return {
    name: "proxy-e2e",
    workers: 4,
    drainTimeoutMs: 5000,
    listeners: [
      listener("web", 1, {
        upstream: "web",
        retries: 1,
        checkIntervalMs: CHECK_INTERVAL_MS,
        rise: 1,
        fall: 2,
      }),
      listener("pipe", 2, {
        upstream: "echo",
        sendProxyProtocol: "v1",
        idleTimeoutMs: IDLE_TIMEOUT_MS,
      }),
      listener("tagged", 3, { upstream: "tagged", sendProxyProtocol: "v2" }),
      listener("bulk", 4, {
        upstream: "echo",
        sendProxyProtocol: "v1",
        idleTimeoutMs: IDLE_TIMEOUT_MS,
        zeroCopy: true,
      }),
      listener("dead", 5, {
        upstream: "dead",
        checkIntervalMs: CHECK_INTERVAL_MS,
        rise: 1,
        fall: 1,
      }),
      listener("big", 6, { upstream: "bigecho", zeroCopy: true }),
    ],
    upstreams: [
      {
        name: "web",
        servers: web.map((n) => `127.0.0.1:${n.port}`),
        connectTimeoutMs: 500,
        ejectMs: EJECT_MS,
      },
      { name: "echo", servers: [`127.0.0.1:${echoPort}`] },
      { name: "tagged", servers: [`127.0.0.1:${web[0]!.proxyProtocolPort}`] },
      { name: "dead", servers: deadPorts.map((p) => `127.0.0.1:${p}`) },
      { name: "bigecho", servers: [`127.0.0.1:${bigEchoPort}`] },
    ],
  };
}

/** The value of the sample whose name and labels are `series`; NaN if none. */
function sampleValue(metrics: string, series: string): number {
  const line = metrics.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? Number.NaN : Number(line.slice(series.length + 1));
}

/** The value of `reuseport_proxy_server_<name>` for `listener`'s server on `port`. */
function serverValue(metrics: string, name: string, port: number, listener = "web"): number {
  const labels = `{listener="${listener}",server="127.0.0.1:${port}"}`;
  return sampleValue(metrics, `reuseport_proxy_server_${name}${labels}`);
}

/** `reuseport_proxy_no_server_total` of `listener`. */
function noServer(metrics: string, listener: string): number {
  return sampleValue(metrics, `reuseport_proxy_no_server_total{listener="${listener}"}`);
}

/** The workers' resident memory, summed, in KiB (`VmRSS` of /proc/PID/status). */
async function rssKb(pids: readonly number[]): Promise<number> {
  let kb = 0;
  for (const pid of pids) {
    const status = await readFile(`/proc/${pid}/status`, "utf8");
    kb += Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  }
  return kb;
}

/** The pid holding the loopback TCP connection whose local port is `port` (from `ss`). */
async function ownerOf(port: number): Promise<number | undefined> {
  const out = await run("ss", ["-tnpH", "state", "established", `( sport = :${port} )`], 5000);
  const pid = /pid=(\d+)/.exec(out)?.[1];
  return pid === undefined ? undefined : Number(pid);
}

/** The workers' log lines saying the `web` server on `port` went `state`. */
function healthLines(stderr: string, port: number, state: "up" | "down"): number {
  const line = `server 1 (127.0.0.1 port ${port}) of upstream web is ${state}:`;
  return stderr.split("\n").filter((l) => l.includes(line)).length;
}

/** Waits until `done()` holds, polling every 50 ms, or fails after `timeoutMs`. */
async function waitFor(done: () => boolean, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > until) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Waits until `done()` resolves true, polling every 50 ms, or fails after `timeoutMs`. */
async function waitUntil(done: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await done())) {
    if (Date.now() > until) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function sha256(parts: readonly Buffer[]): string {
  const hash = createHash("sha256");
  for (const p of parts) hash.update(p);
  return hash.digest("hex");
}

/** A running `strace -c` attached to `pid` (and its threads), counting `calls`. */
interface Tracer {
  /** Detaches; the number of calls of each traced system call meanwhile. */
  stop(): Promise<Map<string, number>>;
}

async function traceCalls(pid: number, calls: readonly string[], out: string): Promise<Tracer> {
  const args = ["-f", "-c", "-o", out, "-e", `trace=${calls.join(",")}`, "-p", String(pid)];
  const child = spawn("strace", args, { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr!.on("data", (d: Buffer) => (stderr += String(d)));
  const exited = new Promise((resolve) => child.once("exit", resolve));
  try {
    await waitFor(() => stderr.includes("attached") || child.exitCode !== null, 10_000);
  } catch (e) {
    child.kill("SIGKILL");
    throw e;
  }
  if (child.exitCode !== null) throw new Error(`strace could not attach: ${stderr}`);
  return {
    async stop() {
      child.kill("SIGINT");
      await exited;
      const counts = new Map<string, number>();
      // `% time  seconds  usecs/call  calls  [errors]  syscall`, one row per system call.
      for (const line of (await readFile(out, "utf8")).split("\n")) {
        const fields = line.trim().split(/\s+/);
        const name = fields.at(-1) ?? "";
        if (calls.includes(name) && fields.length >= 5) counts.set(name, Number(fields[3]));
      }
      return counts;
    },
  };
}

describe.each(VERSIONS)("proxy with zig %s: 4 workers in front of two nginx", (version) => {
  let program: Program;
  let tmp: string | undefined;
  let nginx: Nginx[] = [];
  let echo: net.Server | undefined;
  let bigEcho: ChildProcess | undefined;
  const seen: EchoSeen[] = [];
  let binary: string;
  let deadPort: number;
  let deadServers: number[];
  let bigPort: number;
  let web: string;
  let pipePort: number;
  let taggedPort: number;
  let bulkPort: number;
  let metricsUrl: string;
  let workerPids: number[];

  beforeAll(async () => {
    ensureCommand("curl", "curl");
    ensureCommand("nginx", "nginx");
    ensureCommand("strace", "strace");
    tmp = await mkdtemp(path.join(tmpdir(), "gen-reuseport-proxy-"));
    const ports = [];
    // Two nginx ports, nginx 1's PROXY protocol port, and two ports nothing will listen on.
    for (let i = 0; i < 5; i += 1) ports.push(await freePort("tcp", "127.0.0.1"));
    deadServers = [ports[3]!, ports[4]!];
    for (const dir of ["n1", "n2"]) await mkdir(path.join(tmp, dir));
    nginx = [
      new Nginx(ports[0]!, ports[2]!, "backend1", path.join(tmp, "n1")),
      new Nginx(ports[1]!, 0, "backend2", path.join(tmp, "n2")),
    ];
    echo = await startEcho(seen);
    const echoPort = (echo.address() as net.AddressInfo).port;
    const big = await startEchoProcess();
    bigEcho = big.child;
    const spec = proxySpec(nginx, echoPort, deadServers, big.port);
    const project = await compiledSpecValue("proxy", spec, version);
    for (const step of [project.steps.generate, project.steps.build]) {
      if (!step.ok) throw new Error(`${step.command} failed (zig ${version}):\n${step.output}`);
    }
    for (const n of nginx) await n.start();
    binary = project.binary;
    const args = ["--workers", "4", "--drain-timeout", "5000", "--admin", "127.0.0.1:0"];
    for (const name of LISTENERS) args.push("--listen", `${name}=127.0.0.1:0`);
    const started = await startReady(project.binary, args);
    program = started.program;
    web = `http://127.0.0.1:${portOf(started.ready, "web")}/`;
    pipePort = portOf(started.ready, "pipe");
    taggedPort = portOf(started.ready, "tagged");
    bulkPort = portOf(started.ready, "bulk");
    deadPort = portOf(started.ready, "dead");
    bigPort = portOf(started.ready, "big");
    workerPids = started.ready.workers.map((w) => w.pid);
    const admin = (started.ready as ReadyEvent & { admin?: { port: number } }).admin;
    if (admin === undefined) throw new Error("the ready event names no admin listener");
    metricsUrl = `http://127.0.0.1:${admin.port}/metrics`;
  }, SETUP_TIMEOUT_MS);

  afterAll(async () => {
    await stopAllPrograms();
    for (const n of nginx) await n.stop("SIGTERM");
    if (bigEcho !== undefined && bigEcho.exitCode === null) {
      const exited = new Promise((resolve) => bigEcho!.once("exit", resolve));
      bigEcho.kill("SIGKILL");
      await exited;
    }
    await new Promise((resolve) => (echo ? echo.close(resolve) : resolve(undefined)));
    if (tmp !== undefined) await rm(tmp, { recursive: true, force: true });
  });

  const timeout = TEST_TIMEOUT_MS;

  it("answers one-request and keep-alive clients, balanced within 10%", { timeout }, async () => {
    const answers = (await Promise.all(Array.from({ length: 4 }, () => client(web, 50)))).flat();
    expect(answers).toHaveLength(200);
    expect(answers.filter((a) => a.status !== "200")).toEqual([]);
    const by = (body: string) => answers.filter((a) => a.body === body).length;
    expect(by("backend1") + by("backend2")).toBe(200);
    expect(Math.abs(by("backend1") - 100)).toBeLessThanOrEqual(10);
    // One connection, 50 requests: each answered, all by the server it was joined to.
    const kept = await client(web, 50, true);
    expect(kept.filter((a) => a.status !== "200")).toEqual([]);
    expect(kept).toHaveLength(50);
    expect(new Set(kept.map((a) => a.body)).size).toBe(1);
    // Each client was one connection to one server: 200 + 1, counted per server.
    const text = await run("curl", ["-s", "--max-time", "5", metricsUrl], 10_000);
    const joined = nginx.map((n) => serverValue(text, "connections_total", n.port));
    expect(joined[0]! + joined[1]!).toBe(201);
    expect(Math.abs(joined[0]! - joined[1]!)).toBeLessThanOrEqual(21);
    const received = nginx.map((n) => serverValue(text, "received_bytes_total", n.port));
    expect(received[0]! + received[1]!).toBeGreaterThan(0);
    expect(nginx.map((n) => serverValue(text, "down", n.port))).toEqual([0, 0]);
  });

  it("passes a client's half-close on and delivers the whole answer", { timeout }, async () => {
    // Copied through buffers (pipe) and spliced through pipes (bulk).
    for (const port of [pipePort, bulkPort]) {
      const before = seen.length;
      const got = await exchange(port, [Buffer.from("first part, "), Buffer.from("then FIN")]);
      expect(got.error).toBeUndefined();
      expect(got.received.toString()).toBe("first part, then FIN");
      // The echo server read the PROXY v1 line first: the client's real address and port.
      const line = seen[before]?.proxyLine ?? "";
      expect(line).toBe(`PROXY TCP4 127.0.0.1 127.0.0.1 ${got.localPort} ${port}`);
    }
  });

  it("sends the PROXY v2 header nginx reads the client's address from", { timeout }, async () => {
    const out = await run(
      "curl",
      ["-s", "--max-time", "5", "-w", "=%{local_port}", `http://127.0.0.1:${taggedPort}/`],
      10_000,
    );
    const [body, localPort] = out.split("=");
    expect(body).toBe(`127.0.0.1:${localPort}\n`);
  });

  it(`moves ${LARGE_BYTES >> 20} MiB each way, byte for byte`, { timeout }, async () => {
    const block = randomBytes(1 << 20);
    const chunks = Array.from({ length: LARGE_BYTES / block.length }, () => block);
    for (const port of [pipePort, bulkPort]) {
      const got = await exchange(port, chunks);
      expect(got.error).toBeUndefined();
      expect(got.received.length).toBe(LARGE_BYTES);
      expect(sha256([got.received])).toBe(sha256(chunks));
    }
  });

  it("holds a slow reader's bytes back, memory flat, then delivers", { timeout }, async () => {
    const rss = async () => {
      let kb = 0;
      for (const pid of workerPids) {
        const status = await readFile(`/proc/${pid}/status`, "utf8");
        kb += Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
      }
      return kb;
    };
    const before = await rss();
    const block = randomBytes(1 << 20);
    const blocks = SLOW_READER_BYTES / block.length;
    const socket = net.connect({ host: "127.0.0.1", port: pipePort });
    socket.pause();
    await new Promise((resolve) => socket.once("connect", resolve));
    // Node queues the blocks it is given; the kernel takes what the path to the echo server
    // and back can hold while nobody reads.
    for (let i = 0; i < blocks; i += 1) socket.write(block);
    socket.end();
    await new Promise((resolve) => setTimeout(resolve, 1500));
    // Back-pressure: most of it still waits in this process, and the workers did not grow.
    expect(socket.writableLength).toBeGreaterThan(SLOW_READER_BYTES / 2);
    expect((await rss()) - before).toBeLessThan(8 * 1024);
    const hash = createHash("sha256");
    let received = 0;
    socket.on("data", (d: Buffer) => {
      hash.update(d);
      received += d.length;
    });
    socket.resume();
    await new Promise((resolve) => socket.once("close", resolve));
    expect(received).toBe(SLOW_READER_BYTES);
    expect(hash.digest("hex")).toBe(sha256(Array.from({ length: blocks }, () => block)));
  });

  it("moves 1 GiB each way spliced to a reader that pauses, RSS flat", { timeout }, async () => {
    // `big` splices (zeroCopy): the copying path's slow reader is the case above.
    const before = await rssKb(workerPids);
    const samples: number[] = [];
    const base = randomBytes(1 << 20);
    const sent = createHash("sha256");
    const got = createHash("sha256");
    let received = 0;
    let error: string | undefined;
    const socket = net.connect({ host: "127.0.0.1", port: bigPort });
    const timer = setTimeout(() => socket.destroy(new Error("timeout")), 50_000);
    socket.on("error", (e: NodeJS.ErrnoException) => (error = e.code ?? e.message));
    const closed = new Promise((resolve) => socket.once("close", resolve));
    let nextPause = HUGE_PAUSE_EVERY;
    socket.on("data", (d: Buffer) => {
      got.update(d);
      received += d.length;
      if (received < nextPause) return;
      // The reader stops a while: the writer meets the window of every hop on the way.
      nextPause += HUGE_PAUSE_EVERY;
      socket.pause();
      void rssKb(workerPids).then((kb) => samples.push(kb));
      setTimeout(() => socket.resume(), HUGE_PAUSE_MS);
    });
    await new Promise((resolve) => socket.once("connect", resolve));
    for (let i = 0; i < HUGE_BYTES / base.length && error === undefined; i += 1) {
      // Each MiB its own: its number in the first bytes (a reordered block shows).
      const block = Buffer.from(base);
      block.writeUInt32BE(i, 0);
      sent.update(block);
      if (!socket.write(block)) {
        await Promise.race([new Promise((r) => socket.once("drain", r)), closed]);
      }
    }
    socket.end();
    await closed;
    clearTimeout(timer);
    const after = await rssKb(workerPids);
    console.log(
      `zig ${version}: 1 GiB each way spliced, reader paused ${samples.length} times; ` +
        `workers' RSS ${before} KiB before, at most ${Math.max(...samples)} KiB during, ` +
        `${after} KiB after`,
    );
    expect(error).toBeUndefined();
    expect(received).toBe(HUGE_BYTES);
    expect(got.digest("hex")).toBe(sent.digest("hex"));
    expect(samples.length).toBeGreaterThanOrEqual(HUGE_BYTES / HUGE_PAUSE_EVERY - 1);
    for (const kb of [...samples, after]) expect(kb - before).toBeLessThan(8 * 1024);
  });

  it("closes a silent pair after idleTimeoutMs; passes a reset on", { timeout }, async () => {
    const idle = await exchange(pipePort, [], true);
    expect(idle.error).toBeUndefined();
    expect(idle.received.length).toBe(0);
    expect(idle.elapsedMs).toBeGreaterThanOrEqual(IDLE_TIMEOUT_MS - 300);
    expect(idle.elapsedMs).toBeLessThan(IDLE_TIMEOUT_MS + 5000);
    for (const port of [pipePort, bulkPort]) {
      const reset = await exchange(port, [Buffer.from("RESET")], true);
      expect(reset.error).toBe("ECONNRESET");
    }
  });

  it("closes every client at once when all servers are down, counted", { timeout }, async () => {
    ensureCommand("promtool", "prometheus");
    const scrape = () => run("curl", ["-s", "--max-time", "5", metricsUrl], 10_000);
    // `fall` 1: every worker holds both servers down after its first checks.
    const down = async () => {
      const text = await scrape();
      return deadServers.every((p) => serverValue(text, "down", p, "dead") === 4);
    };
    await waitUntil(down, 10_000);
    const before = await scrape();
    expect(noServer(before, "dead")).toBe(0);
    const clients = await Promise.all(
      Array.from({ length: 8 }, () => exchange(deadPort, [], true)),
    );
    for (const c of clients) {
      // Closed by the proxy (a FIN), not by the 30 s an exchange waits at most.
      expect(c.error).toBeUndefined();
      expect(c.received.length).toBe(0);
    }
    const after = await scrape();
    expect(noServer(after, "dead")).toBe(8);
    expect(noServer(after, "web")).toBe(0);
    // At once: no connect was tried (health checks do not count as connect failures).
    for (const p of deadServers) {
      const failures = (t: string) => serverValue(t, "connect_failures_total", p, "dead");
      expect(failures(after)).toBe(failures(before));
    }
    const checked = await execa("promtool", ["check", "metrics"], {
      input: after,
      reject: false,
      timeout: 30_000,
    });
    expect(checked.exitCode, `${checked.stdout}\n${checked.stderr}`).toBe(0);
  });

  it("loses no client when an nginx stops, and uses it again once back", { timeout }, async () => {
    const load = Promise.all(Array.from({ length: 4 }, () => client(web, 60)));
    // Mid-run: some clients have been answered by both servers.
    await new Promise((resolve) => setTimeout(resolve, 300));
    await nginx[1]!.stop();
    const answers = (await load).flat();
    expect(answers).toHaveLength(240);
    // nginx's graceful stop finishes what is in flight; new clients go to the other server
    // (a refused connect is retried there before the client sees anything).
    expect(answers.filter((a) => a.status !== "200")).toEqual([]);
    // Every worker's checks mark it down (2 failed checks, 200 ms apart).
    const port = nginx[1]!.port;
    await waitFor(() => healthLines(program.stderr, port, "down") >= 4, 10_000);
    const scrape = () => run("curl", ["-s", "--max-time", "5", metricsUrl], 10_000);
    // Every one of the 4 workers holds it down.
    expect(serverValue(await scrape(), "down", port)).toBe(4);
    const after = await client(web, 20);
    expect(after.map((a) => a.body)).toEqual(Array.from({ length: 20 }, () => "backend1"));
    await nginx[1]!.start();
    await waitFor(() => healthLines(program.stderr, port, "up") >= 4, 10_000);
    expect(serverValue(await scrape(), "down", port)).toBe(0);
    const again = await client(web, 40);
    expect(again.filter((a) => a.status !== "200")).toEqual([]);
    expect(again.filter((a) => a.body === "backend2").length).toBeGreaterThan(0);
  });

  it("restarts 3 times on SIGHUP under load, losing no client", { timeout }, async () => {
    const load = Promise.all(Array.from({ length: 4 }, () => client(web, 100)));
    const large = exchange(pipePort, Array.from({ length: 8 }, () => randomBytes(1 << 20)));
    await new Promise((resolve) => setTimeout(resolve, 200));
    // Each restart once the previous generation is ready (every worker replaced, the old
    // ones draining their pairs).
    for (const generation of [2, 3, 4]) {
      process.kill(program.pid, "SIGHUP");
      await program.waitForEvent<ReadyEvent>("ready", 15_000, (e) => e.generation === generation);
    }
    const answers = (await load).flat();
    expect(answers).toHaveLength(400);
    expect(answers.filter((a) => a.status !== "200")).toEqual([]);
    // A pair that was open during the restarts finished with its old generation.
    const transfer = await large;
    expect(transfer.error).toBeUndefined();
    expect(transfer.received.length).toBe(8 << 20);
    // Served by the new generation.
    expect((await client(web, 4)).filter((a) => a.status === "200")).toHaveLength(4);
  });

  it("restarts every 200 ms during wrk through the proxy: all 2xx", { timeout }, async () => {
    ensureCommand("wrk", "wrk");
    const readies = () => program.events.filter((e) => e.event === "ready").length;
    const readyBefore = readies();
    const seconds = String(STORM_MS / 1000);
    const wrk = run("wrk", ["-t", "2", "-c", "16", "-d", `${seconds}s`, web], STORM_MS + 30_000);
    let signals = 0;
    // Every signal while wrk runs (it stops STORM_MS after its start, a little after ours).
    const until = Date.now() + STORM_MS - STORM_EVERY_MS;
    while (Date.now() < until) {
      await new Promise((resolve) => setTimeout(resolve, STORM_EVERY_MS));
      process.kill(program.pid, "SIGHUP");
      signals += 1;
    }
    const out = await wrk;
    const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? 0);
    console.log(
      `zig ${version}: ${signals} SIGHUPs, ${readies() - readyBefore} generations ready ` +
        `(a SIGHUP during a restart is coalesced), wrk: ${requests} requests\n${out}`,
    );
    expect(requests).toBeGreaterThan(0);
    expect(out).not.toMatch(/Socket errors/);
    expect(out).not.toMatch(/Non-2xx/);
    expect(readies() - readyBefore).toBeGreaterThanOrEqual(2);
  });

  it("with --io io_uring, moves a pair's bytes through the worker's ring", { timeout }, async () => {
    const args = ["--io", "io_uring", "--workers", "1", "--drain-timeout", "5000"];
    for (const name of LISTENERS) args.push("--listen", `${name}=127.0.0.1:0`);
    const uring = Program.start(binary, args);
    let tracer: Tracer | undefined;
    try {
      const ready = await uring.waitForEvent<ReadyEvent>("ready", READY_TIMEOUT_MS);
      const worker = ready.workers[0]!.pid;
      // The kernel gave the worker its ring (no fallback to epoll).
      expect(uring.find("io_fallback")).toBeUndefined();
      expect(holdsIoUring(worker)).toBe(true);
      tracer = await traceCalls(worker, ["recvfrom", "sendto", "io_uring_enter"], `${tmp}/strace`);
      // Keep-alive: one connection, 20 requests, one server.
      const url = `http://127.0.0.1:${portOf(ready, "web")}/`;
      const kept = await client(url, 20, true);
      expect(kept.filter((a) => a.status !== "200")).toEqual([]);
      expect(kept).toHaveLength(20);
      expect(new Set(kept.map((a) => a.body)).size).toBe(1);
      // Half-close: every byte comes back after the client's FIN, then the proxy's FIN.
      const block = randomBytes(1 << 20);
      const chunks = Array.from({ length: URING_BYTES / block.length }, () => block);
      const got = await exchange(portOf(ready, "pipe"), chunks);
      expect(got.error).toBeUndefined();
      expect(got.received.length).toBe(URING_BYTES);
      expect(sha256([got.received])).toBe(sha256(chunks));
      const counts = await tracer.stop();
      tracer = undefined;
      // Through epoll, 16 MiB each way take at least 256 recvfrom and 256 sendto of 64 KiB;
      // through the ring, each pair reads its client's first bytes with one recvfrom.
      const direct = (counts.get("recvfrom") ?? 0) + (counts.get("sendto") ?? 0);
      console.log(
        `zig ${version}: io_uring worker: ${direct} recvfrom + sendto, ` +
          `${counts.get("io_uring_enter") ?? 0} io_uring_enter for 20 requests and 2 x 16 MiB`,
      );
      expect(direct).toBeLessThan(16);
      expect(counts.get("io_uring_enter") ?? 0).toBeGreaterThan(0);
      uring.signal("SIGTERM");
      expect((await uring.waitForExit(STOP_TIMEOUT_MS)).code).toBe(0);
    } finally {
      await tracer?.stop().catch(() => undefined);
      if (uring.exit === undefined) uring.signal("SIGKILL");
    }
  });

  /** The same binary at a path of its own, with `--idle-timeout` (see the file's comment). */
  let second: { program: Program; ready: ReadyEvent; exe: string; real: string } | undefined;

  it("--idle-timeout replaces a proxy listener's idleTimeoutMs", { timeout }, async () => {
    const dir = path.join(tmp!, "second");
    await mkdir(dir);
    const exe = path.join(dir, "proxy-e2e");
    const real = path.join(dir, "proxy-e2e.real");
    for (const file of [exe, real]) {
      await copyFile(binary, file);
      await chmod(file, 0o755);
    }
    // A long drain: the upgrade case's held pair must end by itself, not by the drain timeout,
    // however slow the machine.
    const args = ["--workers", "2", "--drain-timeout", String(SECOND_DRAIN_TIMEOUT_MS)];
    args.push("--idle-timeout", String(FLAG_IDLE_TIMEOUT_MS));
    for (const name of LISTENERS) args.push("--listen", `${name}=127.0.0.1:0`);
    const started = Program.start(exe, args);
    const ready = await started.waitForEvent<ReadyEvent>("ready", READY_TIMEOUT_MS);
    second = { program: started, ready, exe, real };
    const idle = await exchange(portOf(ready, "pipe"), [], true);
    expect(idle.error).toBeUndefined();
    expect(idle.received.length).toBe(0);
    // The flag's 2000 ms, not the listener's own 1500 ms (a lower bound only: the machine
    // may be slow, never fast).
    expect(idle.elapsedMs).toBeGreaterThanOrEqual(FLAG_IDLE_TIMEOUT_MS - 200);
  });

  /** The pid of the worker that joined a new client of `port` (an echo listener) to the echo
   * server: the owner of the proxy's end of that pair. */
  async function pairOwner(port: number): Promise<number | undefined> {
    const before = seen.length;
    const socket = net.connect({ host: "127.0.0.1", port });
    try {
      await new Promise((resolve, reject) => {
        socket.once("connect", () => socket.write("probe"));
        socket.once("data", resolve);
        socket.once("error", reject);
      });
      const entry = seen.slice(before).at(-1);
      return entry === undefined ? undefined : await ownerOf(entry.remotePort);
    } finally {
      socket.destroy();
    }
  }

  it("upgrades the whole program under load through the proxy", { timeout }, async () => {
    if (second === undefined) throw new Error("the previous case did not start the program");
    const { program: old, ready, exe, real } = second;
    const url = `http://127.0.0.1:${portOf(ready, "web")}/`;
    const pipe = portOf(ready, "pipe");
    let next: (ReadyEvent & { upgraded_from?: number }) | undefined;
    let loadDone = false;
    let stopped = false;
    let load: Promise<unknown> | undefined;
    // A pair open across the upgrade: half of its bytes before, half after.
    const held = net.connect({ host: "127.0.0.1", port: pipe });
    const parts: Buffer[] = [];
    let heldError: string | undefined;
    held.on("data", (d: Buffer) => parts.push(d));
    held.on("error", (e: NodeJS.ErrnoException) => (heldError = e.code ?? e.message));
    const heldClosed = new Promise((resolve) => held.once("close", resolve));
    try {
      await new Promise((resolve) => held.once("connect", resolve));
      held.write("before,");
      await waitFor(() => Buffer.concat(parts).length >= "before,".length, 5_000);
      // One-request clients, in batches of 10 from 4 curls, until the upgrade is over.
      const answers: Answer[] = [];
      let after = 0;
      load = Promise.all(
        Array.from({ length: 4 }, async () => {
          while (!loadDone) {
            const afterStop = stopped;
            const batch = await client(url, 10);
            answers.push(...batch);
            if (afterStop) after += batch.length;
          }
        }),
      );
      // Another supervisor's identity when asked; the same program when run.
      const identity = `spec=0000000000000000 supervisor=${OTHER_SUPERVISOR_FINGERPRINT}`;
      const script =
        `#!/bin/sh\nif [ "$1" = --fingerprint ]; then echo '${identity}'; exit 0; fi\n` +
        `exec '${real}' "$@"\n`;
      await writeFile(`${exe}.new`, script, { mode: 0o755 });
      await rename(`${exe}.new`, exe);
      old.signal("SIGHUP");
      next = await old.waitForEvent<ReadyEvent & { upgraded_from?: number }>(
        "ready",
        READY_TIMEOUT_MS + 5_000,
        (e) => e.upgraded_from === old.pid,
      );
      // The old generation drains; its worker keeps the held pair meanwhile.
      await old.waitForEvent("stopping", 10_000, (e) => e.successor === next!.pid);
      stopped = true;
      expect(old.exit).toBeUndefined();
      // The held pair, served by a draining worker, ends by itself.
      held.end("after");
      await heldClosed;
      expect(heldError).toBeUndefined();
      expect(Buffer.concat(parts).toString()).toBe("before,after");
      // New clients reach the new generation (once the old workers heard they stop).
      const fresh = new Set(next.workers.map((w) => w.pid));
      await waitUntil(async () => fresh.has((await pairOwner(pipe)) ?? 0), 5_000);
      for (let i = 0; i < 3; i += 1) expect(fresh.has((await pairOwner(pipe)) ?? 0)).toBe(true);
      expect((await old.waitForExit(STOP_TIMEOUT_MS)).code).toBe(0);
      loadDone = true;
      await load;
      console.log(
        `zig ${version}: upgrade through the proxy: ${answers.length} clients, ` +
          `${after} of them begun after the old generation began to drain`,
      );
      expect(answers.filter((a) => a.status !== "200")).toEqual([]);
      expect(after).toBeGreaterThan(0);
      expect((await client(url, 4)).filter((a) => a.status === "200")).toHaveLength(4);
      process.kill(next.pid, "SIGTERM");
      const pids = [next.pid, ...next.workers.map((w) => w.pid)];
      expect(await waitUntilGone(pids, STOP_TIMEOUT_MS)).toEqual([]);
    } finally {
      loadDone = true;
      held.destroy();
      // The curls end within their --max-time.
      await load?.catch(() => undefined);
      // On failure: the new supervisor is no Program of this file's (stopAllPrograms).
      for (const pid of next === undefined ? [] : [next.pid, ...next.workers.map((w) => w.pid)]) {
        if (isAlive(pid)) process.kill(pid, "SIGKILL");
      }
    }
  });
});
