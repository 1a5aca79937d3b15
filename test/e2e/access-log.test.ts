/**
 * The request log (`accessLog`, docs/operating.md), on the build notes.test.ts makes of
 * test/e2e/specs/notes-uploads.json (a built-in `http` listener beside the notes HTTP module, its
 * log on standard output, which `--access-log` moves to a file here), with real clients: curl,
 * raw sockets that send hostile bytes, keep-alive lanes of pipelined requests under load, and
 * Debian's own `logrotate` (installed with apt-get when missing; under CI=true a missing one
 * fails) whose `postrotate` sends SIGUSR1 to the supervisor. Every line of every file is
 * parsed; the count of lines equals the count of answers the clients received, each request's
 * unique target once.
 */
import { execFile, spawnSync } from "node:child_process";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  portOf,
  Program,
  startReady,
  stopAllPrograms,
  STOP_TIMEOUT_MS,
  type ReadyEvent,
  type ServiceEvent,
} from "./support/program.js";
import { programOf } from "./support/project.js";
import { ensureCommand } from "./support/tools.js";
import { FULL_MATRIX_VERSIONS } from "./support/zig.js";

const SETUP_TIMEOUT_MS = 15 * 60_000;
const TEST_TIMEOUT_MS = 60_000;
const HOST = "127.0.0.1";

interface JsonLine {
  readonly type: string;
  readonly ts: string;
  readonly worker: number;
  readonly listener: string;
  readonly peer: string;
  readonly peer_port: number;
  readonly method: string;
  readonly target: string;
  readonly protocol: string;
  readonly status: number;
  readonly body_bytes: number;
  readonly duration_us: number;
  readonly route: string | null;
  readonly referer: string | null;
  readonly user_agent: string | null;
}

/** The `stopped` event's per-worker counters this test reads. */
interface LogStopped extends ServiceEvent {
  readonly workers: readonly {
    requests: number;
    access_log_errors: number;
    access_log_dropped: number;
  }[];
}

const RFC3339_MS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
/** The combined format, then the extra fields (docs/operating.md), each a capture. */
const COMBINED = new RegExp(
  String.raw`^(\S+) - - \[(\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} \+0000)\] ` +
    String.raw`"([^"]*)" (\d{3}) (\d+) "([^"]*)" "([^"]*)" duration_us=(\d+) worker=(\d+) ` +
    String.raw`listener=([a-z_]+) route=(\S+) peer_port=(\d+) ts=(\S+)$`,
);

function curl(args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile("curl", ["-sS", "--max-time", "5", ...args], { timeout: 8_000 }, (error, stdout) =>
      error ? reject(error) : resolve(stdout),
    );
  });
}

/** Sends `bytes` raw and returns everything the server sent until it closed. */
function raw(port: number, bytes: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, HOST);
    const chunks: Buffer[] = [];
    socket.setTimeout(5_000, () => socket.destroy(new Error("raw exchange timed out")));
    socket.on("connect", () => socket.end(bytes));
    socket.on("data", (chunk) => chunks.push(chunk));
    socket.on("error", reject);
    socket.on("close", () => resolve(Buffer.concat(chunks)));
  });
}

/** Sends `bytes` raw without closing, and returns what the server sent until it closed. */
function partial(port: number, bytes: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, HOST);
    let text = "";
    socket.setTimeout(5_000, () => socket.destroy(new Error("partial exchange timed out")));
    socket.on("connect", () => socket.write(bytes));
    socket.on("data", (chunk) => (text += chunk.toString("latin1")));
    socket.on("error", reject);
    socket.on("close", () => resolve(text));
  });
}

/** Every line of a file, the last newline-terminated; fails on a torn last line. */
async function linesOf(file: string): Promise<string[]> {
  const text = await readFile(file, "utf8");
  if (text === "") return [];
  expect(text.endsWith("\n"), `${file} ends in a torn line`).toBe(true);
  return text.slice(0, -1).split("\n");
}

function parseJsonLines(lines: readonly string[]): JsonLine[] {
  return lines.map((line) => {
    const value = JSON.parse(line) as JsonLine;
    expect(value.type).toBe("access");
    expect(value).not.toHaveProperty("event");
    expect(value.ts).toMatch(RFC3339_MS);
    return value;
  });
}

async function stopGracefully(program: Program): Promise<void> {
  program.signal("SIGTERM");
  const exit = await program.waitForExit(STOP_TIMEOUT_MS);
  expect(exit.code, program.stderr).toBe(0);
}

/**
 * Keep-alive lanes, each a raw connection that writes `batch` pipelined GETs with unique
 * targets and waits for their answers before the next batch; stops between batches.
 */
class Load {
  private stopped = false;
  readonly targets: string[] = [];
  answered = 0;
  private readonly lanes: Promise<void>[] = [];

  constructor(port: number, lanes: number, batch = 8) {
    for (let i = 0; i < lanes; i++) this.lanes.push(this.lane(port, i, batch));
  }

  private async lane(port: number, lane: number, batch: number): Promise<void> {
    const socket = net.connect(port, HOST);
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve).once("error", reject);
    });
    let pending = "";
    let waiting = 0;
    let wake: (() => void) | undefined;
    socket.on("data", (chunk: Buffer) => {
      pending += chunk.toString("latin1");
      // The built-in handler answers every GET with the spec's default body, "OK\n".
      for (let end = pending.indexOf("\r\n\r\nOK\n"); end >= 0; ) {
        pending = pending.slice(end + 7);
        waiting--;
        this.answered++;
        end = pending.indexOf("\r\n\r\nOK\n");
      }
      if (waiting === 0) wake?.();
    });
    const deadline = Date.now() + 30_000;
    for (let seq = 0; !this.stopped && Date.now() < deadline; seq++) {
      let requests = "";
      for (let i = 0; i < batch; i++) {
        const target = `/load/${lane}/${seq}/${i}`;
        this.targets.push(target);
        requests += `GET ${target} HTTP/1.1\r\nHost: t\r\nUser-Agent: load-${lane}\r\n\r\n`;
      }
      waiting = batch;
      const answered = new Promise<void>((resolve) => (wake = resolve));
      socket.write(requests);
      await Promise.race([
        answered,
        new Promise((_, reject) => setTimeout(() => reject(new Error("lane stalled")), 5_000)),
      ]);
    }
    socket.end();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.lanes);
  }
}

describe.each(FULL_MATRIX_VERSIONS)("zig %s: the request log", (version) => {
  let binary: string;
  let tmp: string;
  let logrotate: string;

  beforeAll(async () => {
    ensureCommand("curl", "curl");
    logrotate = ensureCommand("logrotate", "logrotate");
    binary = await programOf("notes-uploads", version);
    tmp = await mkdtemp(path.join(tmpdir(), "gen-reuseport-access-log-"));
  }, SETUP_TIMEOUT_MS);

  afterEach(async () => {
    await stopAllPrograms();
  });

  afterAll(async () => {
    if (tmp !== undefined) await rm(tmp, { recursive: true, force: true });
  });

  function listen(): string[] {
    return ["--listen", "web=127.0.0.1:0", "--listen", "api=127.0.0.1:0"];
  }

  const timeout = TEST_TIMEOUT_MS;

  it("writes one valid JSON line per request, hostile bytes escaped", { timeout }, async () => {
    const file = path.join(tmp, "json", "access.log");
    await mkdir(path.dirname(file));
    const { program, ready } = await startReady(binary, [
      "--standalone",
      "--access-log",
      file,
      "--header-timeout",
      "300",
      ...listen(),
    ]);
    const web = portOf(ready, "web");
    const api = portOf(ready, "api");
    const agent = 'agent "quoted" \\ back';
    await curl(["-A", agent, "-e", "http://r/", `http://${HOST}:${web}/hello?a=1`]);
    await curl(["-X", "PUT", "--data", "hi", `http://${HOST}:${api}/notes/7`]);
    await curl([`http://${HOST}:${api}/notes/7`]);
    await curl([`http://${HOST}:${api}/missing`]);
    // Raw bytes a client may send: quotes and backslashes in the target (visible ASCII is all
    // a target may hold), obs-text (invalid UTF-8), a tab and JSON look-alikes in a header, and
    // a head the parser refuses (a control byte in the target: 400, logged too).
    const hostileAgent = Buffer.concat([
      Buffer.from('x"}\t\\'),
      Buffer.from([0xff, 0xc3, 0x28, 0xe2, 0x82, 0x80, 0xed, 0xa0, 0x80]),
      Buffer.from("{\"event\":\"ready\""),
    ]);
    const hostile = Buffer.concat([
      Buffer.from('GET /h%22\\"q?~{"a":1} HTTP/1.1\r\nHost: a\r\nUser-Agent: '),
      hostileAgent,
      Buffer.from("\r\nConnection: close\r\n\r\n"),
    ]);
    const answer = await raw(web, hostile);
    const bad = await raw(web, Buffer.from("GET /a\x01b HTTP/1.1\r\nHost: a\r\n\r\n", "latin1"));
    // Heads that never end: 408 once the header timeout passes, logged by both handlers.
    for (const port of [web, api]) {
      expect(await partial(port, "GET /slow HTTP/1.1\r\nHost: a\r\n")).toMatch(/^HTTP\/1\.1 408 /);
    }
    const stats = JSON.parse(await curl([`http://${HOST}:${api}/stats`])) as { requests: number };
    await stopGracefully(program);

    const lines = parseJsonLines(await linesOf(file));
    expect(answer.toString("latin1")).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    const badStatus = Number(bad.toString("latin1").split(" ")[1]);
    expect(badStatus).toBe(400);
    expect(lines.map((l) => [l.listener, l.status])).toEqual([
      ["web", 200],
      ["api", 201],
      ["api", 200],
      ["api", 404],
      ["web", 200],
      ["web", 400],
      ["web", 408],
      ["api", 408],
      ["api", 200],
    ]);
    const [hello, put, get, missing, hostileLine, badLine] = lines;
    expect(hello).toMatchObject({
      worker: 0,
      peer: HOST,
      method: "GET",
      target: "/hello?a=1",
      protocol: "HTTP/1.1",
      body_bytes: 3,
      route: null,
      referer: "http://r/",
      user_agent: 'agent "quoted" \\ back',
    });
    expect(hello!.peer_port).toBeGreaterThan(0);
    expect(hello!.duration_us).toBeGreaterThanOrEqual(0);
    expect(put).toMatchObject({ method: "PUT", target: "/notes/7", route: "putNote" });
    expect(get).toMatchObject({ method: "GET", route: "getNote", body_bytes: 2 });
    // The body of the notes module's routerError.
    const noRoute = '{"error":"no route","path":"/missing"}\n';
    expect(missing).toMatchObject({ route: null, body_bytes: noRoute.length });
    expect(hostileLine!.target).toBe('/h%22\\"q?~{"a":1}');
    expect(hostileLine!.user_agent).toBe(
      'x"}\t\\\ufffd\ufffd(\u2080\ufffd\ufffd\ufffd{"event":"ready"',
    );
    expect(badLine).toMatchObject({ method: "", target: "", status: 400 });
    for (const timedOut of lines.slice(6, 8)) {
      expect(timedOut).toMatchObject({ method: "", target: "", status: 408, body_bytes: 0 });
      // From the first byte to the answer: the header timeout, give or take the loop's wake.
      expect(timedOut.duration_us).toBeGreaterThanOrEqual(250_000);
    }
    // The module's own `access` hook still sees every answered request (all but /stats).
    expect(stats.requests).toBe(3);
  });

  it("writes the combined format, printable ASCII only", { timeout }, async () => {
    const file = path.join(tmp, "combined", "access.log");
    await mkdir(path.dirname(file));
    const { program, ready } = await startReady(binary, [
      "--standalone",
      "--access-log",
      file,
      "--access-log-format",
      "combined",
      ...listen(),
    ]);
    const web = portOf(ready, "web");
    const api = portOf(ready, "api");
    await curl(["-A", "curl-ish", `http://${HOST}:${web}/x?y=z`]);
    await curl(["-I", `http://${HOST}:${api}/notes`]);
    const agent = Buffer.from([0x22, 0x5c, 0xff, 0x41]);
    await raw(
      web,
      Buffer.concat([
        Buffer.from("GET /q HTTP/1.0\r\nUser-Agent: "),
        agent,
        Buffer.from("\r\n\r\n"),
      ]),
    );
    await stopGracefully(program);

    const lines = await linesOf(file);
    expect(lines).toHaveLength(3);
    for (const line of lines) {
      expect(line, line).toMatch(COMBINED);
      expect(/^[\x20-\x7e]*$/.test(line), line).toBe(true);
    }
    const fields = lines.map((l) => COMBINED.exec(l)!.slice(1));
    expect(fields[0]!.slice(2, 7)).toEqual(["GET /x?y=z HTTP/1.1", "200", "3", "-", "curl-ish"]);
    expect(fields[0]![9]).toBe("web");
    expect(fields[1]!.slice(2, 5)).toEqual(["HEAD /notes HTTP/1.1", "200", "0"]);
    expect(fields[1]![10]).toBe("listNotes");
    const escaped = "\\x22\\x5c\\xffA";
    expect(fields[2]!.slice(2, 7)).toEqual(["GET /q HTTP/1.0", "200", "3", "-", escaped]);
    expect(fields[2]![12]).toMatch(RFC3339_MS);
  });

  it(
    "writes to standard output beside the events, whole lines from both workers",
    { timeout },
    async () => {
      const { program, ready } = await startReady(binary, [
        "--workers",
        "2",
        "--access-log",
        "-",
        ...listen(),
      ]);
      await curl([`http://${HOST}:${portOf(ready, "web")}/out`]);
      const load = new Load(portOf(ready, "web"), 16);
      try {
        const until = Date.now() + 10_000;
        while (load.answered < 3_000 && Date.now() < until) {
          await new Promise((r) => setTimeout(r, 20));
        }
      } finally {
        await load.stop();
      }
      await stopGracefully(program);
      // Events are the lines with an "event" key; request lines have none, and every one of
      // them parses: two workers' pieces on one pipe never tore each other or an event.
      const stopped = program.find<LogStopped>("stopped")!;
      expect(stopped).toBeDefined();
      const lines = parseJsonLines(program.strayStdout);
      expect(lines.filter((l) => l.target === "/out")).toHaveLength(1);
      expect(new Set(lines.map((l) => l.worker)).size).toBe(2);
      // A pipe that was full when a piece came drops it (counted) rather than wait.
      const dropped = stopped.workers.reduce((n, w) => n + w.access_log_dropped, 0);
      expect(lines.length + dropped).toBe(load.answered + 1);
      const targets = lines.map((l) => l.target).filter((t) => t !== "/out");
      expect(new Set(targets).size).toBe(targets.length);
      for (const target of targets) expect(target).toMatch(/^\/load\/\d+\/\d+\/\d+$/);
    },
  );

  it(
    "loses and tears no line under load across logrotate runs with SIGUSR1",
    { timeout },
    async () => {
      const dir = path.join(tmp, "rotate");
      await mkdir(dir);
      const file = path.join(dir, "access.log");
      const { program, ready } = await startReady(binary, [
        "--workers",
        "2",
        "--access-log",
        file,
        ...listen(),
      ]);
      expect((ready as ReadyEvent).workers).toHaveLength(2);
      const config = path.join(dir, "logrotate.conf");
      await writeFile(
        config,
        `${file} {\n  rotate 10\n  nocompress\n  missingok\n  nocreate\n  sharedscripts\n` +
          `  postrotate\n    kill -USR1 ${program.pid}\n  endscript\n}\n`,
      );
      const load = new Load(portOf(ready, "web"), 16);
      const rotations = 3;
      try {
        for (let i = 0; i < rotations; i++) {
          // Let lines pile up in the current file, then rotate it while the load goes on.
          const before = load.answered;
          const until = Date.now() + 10_000;
          while (load.answered < before + 2_000 && Date.now() < until) {
            await new Promise((r) => setTimeout(r, 20));
          }
          const run = spawnSync(logrotate, ["-f", "-s", path.join(dir, "state"), config], {
            encoding: "utf8",
            timeout: 10_000,
          });
          expect(run.status, run.stderr).toBe(0);
        }
        const before = load.answered;
        const until = Date.now() + 10_000;
        while (load.answered < before + 2_000 && Date.now() < until) {
          await new Promise((r) => setTimeout(r, 20));
        }
      } finally {
        await load.stop();
      }
      await stopGracefully(program);

      const files = (await readdir(dir)).filter((f) => f.startsWith("access.log")).sort();
      expect(files).toEqual(["access.log", "access.log.1", "access.log.2", "access.log.3"]);
      const targets: string[] = [];
      const workers = new Set<number>();
      for (const name of files) {
        const lines = parseJsonLines(await linesOf(path.join(dir, name)));
        // Every file got lines: the ones after each SIGUSR1 went to the new file.
        expect(lines.length, name).toBeGreaterThan(0);
        for (const line of lines) {
          targets.push(line.target);
          workers.add(line.worker);
        }
      }
      // Both workers wrote (16 connections spread by the kernel), into the same files.
      expect([...workers].sort()).toEqual([0, 1]);
      expect(load.answered).toBe(load.targets.length);
      expect(targets.length).toBe(load.answered);
      expect(new Set(targets).size).toBe(targets.length);
      expect([...targets].sort()).toEqual([...load.targets].sort());
      const stopped = program.find<LogStopped>("stopped")!;
      for (const w of stopped.workers) expect(w.access_log_dropped).toBe(0);
      expect(program.stderr).toContain("SIGUSR1: 2 workers reopen the request log");
    },
  );

  it("counts and reports a full disk once, and keeps serving", { timeout }, async () => {
    // /dev/full takes the open and fails every write with ENOSPC.
    const { program, ready } = await startReady(binary, [
      "--standalone",
      "--access-log",
      "/dev/full",
      ...listen(),
    ]);
    const web = portOf(ready, "web");
    for (let i = 0; i < 3; i++) {
      expect(await curl([`http://${HOST}:${web}/full/${i}`])).toBe("OK\n");
      // Well past the 100 ms flush: each line is its own failed write (two at least, however
      // busy the machine), so "once" means once for several failures.
      await new Promise((r) => setTimeout(r, 300));
    }
    await stopGracefully(program);
    const stopped = program.find<LogStopped>("stopped")!;
    expect(stopped.workers[0]).toMatchObject({ requests: 3, access_log_dropped: 3 });
    expect(stopped.workers[0]!.access_log_errors).toBeGreaterThanOrEqual(2);
    const warnings = program.stderr
      .split("\n")
      .filter((l) => l.includes("access log: a write failed"));
    expect(warnings, program.stderr).toHaveLength(1);
    expect(warnings[0]).toContain("NOSPC");
  });

  it("refuses to start when the log's directory does not exist", { timeout }, async () => {
    const missing = path.join(tmp, "missing", "access.log");
    for (const mode of [[], ["--standalone"]]) {
      const program = Program.start(binary, [...mode, "--access-log", missing, ...listen()]);
      const exit = await program.waitForExit(STOP_TIMEOUT_MS);
      expect(exit.code, program.stderr).toBe(1);
      expect(program.stderr).toContain(`accessLog.path: cannot open ${missing}: its directory`);
      // Nothing started: no event at all, no worker.
      expect(program.events).toEqual([]);
    }
  });
});
