/**
 * The notes example: an HTTP application module (examples/app/notes.zig over the generated
 * stub) served by the generated runtime, checked with curl, the reference HTTP client
 * (installed with apt-get when missing; under CI=true a missing curl fails the run), and with
 * raw sockets where the framing must be exact (chunk sizes).
 */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { tcpExchange } from "./support/net.js";
import {
  portOf,
  startReady,
  stopAllPrograms,
  STOP_TIMEOUT_MS,
  type Program,
  type StoppedEvent,
} from "./support/program.js";
import { programOf } from "./support/project.js";
import { ensureCommand } from "./support/tools.js";
import { FULL_MATRIX_VERSIONS } from "./support/zig.js";

const SETUP_TIMEOUT_MS = 15 * 60_000;
const TEST_TIMEOUT_MS = 30_000;
const CURL_TIMEOUT_S = 5;

interface CurlResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Buffer;
}

/** Runs curl once; `-i` output split into the last response's head and body. */
function curl(args: readonly string[]): Promise<CurlResponse> {
  const full = ["-sS", "-i", "--max-time", String(CURL_TIMEOUT_S), ...args];
  return new Promise((resolve, reject) => {
    execFile(
      "curl",
      full,
      { encoding: "buffer", maxBuffer: 8 << 20, timeout: (CURL_TIMEOUT_S + 2) * 1000 },
      (error, stdout, stderr) => {
        if (error) return reject(new Error(`curl ${full.join(" ")}: ${stderr.toString()}`));
        let rest = stdout;
        for (let i = 0; i < 4; i += 1) {
          const end = rest.indexOf("\r\n\r\n");
          if (end < 0) return reject(new Error(`curl: no response head in ${rest.toString()}`));
          const head = rest.subarray(0, end).toString("latin1").split("\r\n");
          const body = rest.subarray(end + 4);
          const status = Number(head[0]?.split(" ")[1]);
          if (status === 100) {
            rest = body;
            continue;
          }
          const headers: Record<string, string> = {};
          for (const line of head.slice(1)) {
            const colon = line.indexOf(":");
            headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
          }
          return resolve({ status, headers, body });
        }
        reject(new Error("curl: too many interim responses"));
      },
    );
  });
}

/** A PUT of `body` in chunks of `chunkBytes`, as raw bytes (curl picks its own chunk sizes). */
function chunkedPut(target: string, body: Buffer, chunkBytes: number, extra = ""): Buffer {
  const head = `PUT ${target} HTTP/1.1\r\nHost: notes\r\nTransfer-Encoding: chunked\r\n`;
  const parts: Buffer[] = [Buffer.from(`${head}Connection: close\r\n${extra}\r\n`)];
  for (let at = 0; at < body.length; at += chunkBytes) {
    const piece = body.subarray(at, at + chunkBytes);
    parts.push(Buffer.from(`${piece.length.toString(16)}\r\n`), piece, Buffer.from("\r\n"));
  }
  parts.push(Buffer.from("0\r\n\r\n"));
  return Buffer.concat(parts);
}

/** Sends `request`, half-closes, and reads until the server closes. */
function exchange(port: number, request: Buffer): Promise<Buffer> {
  return tcpExchange("127.0.0.1", port, { send: request, endAfterSend: true, timeoutMs: 5_000 });
}

function sleepMs(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function statusOf(reply: Buffer): number {
  return Number(reply.subarray(0, 12).toString("latin1").split(" ")[1]);
}

describe.each(FULL_MATRIX_VERSIONS)("zig %s: the notes example (HTTP module, curl)", (version) => {
  let base: string;
  let tmp: string;
  let program: Program;
  /** The 413 answers this suite saw, to compare with the worker's counters at the end. */
  let refused413 = 0;
  /** Long polls whose clients leave before the answer (counted `abandoned`). */
  const abandonedPolls = 3;
  let port: number;
  const expect413 = (status: number) => {
    expect(status).toBe(413);
    refused413 += 1;
  };

  beforeAll(async () => {
    ensureCommand("curl", "curl");
    const binary = await programOf("notes", version);
    const args = ["--standalone", "--listen", "api=127.0.0.1:0"];
    const started = await startReady(binary, args);
    program = started.program;
    const ready = started.ready;
    port = portOf(ready, "api");
    base = `http://127.0.0.1:${port}`;
    tmp = await mkdtemp(path.join(tmpdir(), "gen-reuseport-notes-"));
  }, SETUP_TIMEOUT_MS);

  afterAll(async () => {
    await stopAllPrograms();
    if (tmp !== undefined) await rm(tmp, { recursive: true, force: true });
  });

  const timeout = TEST_TIMEOUT_MS;

  it("stores, lists, reads, replaces and deletes a note", { timeout }, async () => {
    const json = ["-H", "Content-Type: application/json"];
    const body = ["--data-binary", '{"t":"hi"}'];
    const created = await curl(["-X", "PUT", ...json, ...body, `${base}/notes/1`]);
    expect(created.status).toBe(201);
    expect(created.body.toString()).toBe('{"id":1,"bytes":10}\n');
    expect(created.headers.date).toMatch(/^[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} [\d:]{8} GMT$/);
    const read = await curl([`${base}/notes/1`]);
    expect(read.status).toBe(200);
    expect(read.headers["content-type"]).toBe("application/json");
    expect(read.body.toString()).toBe('{"t":"hi"}');
    const list = await curl([`${base}/notes`]);
    expect(list.body.toString()).toBe('{"notes":[{"id":1,"bytes":10}]}\n');
    const replaced = await curl(["-X", "PUT", ...json, "--data-binary", "{}", `${base}/notes/1`]);
    expect(replaced.status).toBe(200);
    expect((await curl(["-X", "DELETE", `${base}/notes/1`])).status).toBe(204);
    expect((await curl([`${base}/notes/1`])).status).toBe(404);
    expect((await curl(["-X", "DELETE", `${base}/notes/1`])).status).toBe(404);
  });

  it("answers 404, 405 with Allow, HEAD with no body, 400 for a bad id", { timeout }, async () => {
    // The router's answers carry the module's routerError bodies.
    const missing = await curl([`${base}/elsewhere`]);
    expect(missing.status).toBe(404);
    expect(missing.headers["content-type"]).toBe("application/json");
    expect(JSON.parse(missing.body.toString())).toEqual({ error: "no route", path: "/elsewhere" });
    const missingHead = await curl(["-I", `${base}/elsewhere`]);
    expect(missingHead.status).toBe(404);
    expect(Number(missingHead.headers["content-length"])).toBe(missing.body.length);
    expect(missingHead.body.length).toBe(0);
    const wrong = await curl(["-X", "POST", "--data-binary", "x", `${base}/notes/5`]);
    expect(wrong.status).toBe(405);
    expect(wrong.headers.allow).toBe("GET, HEAD, PUT, DELETE");
    expect(JSON.parse(wrong.body.toString())).toEqual({
      error: "method not allowed",
      method: "POST",
      path: "/notes/5",
    });
    const head = await curl(["-I", `${base}/notes`]);
    expect(head.status).toBe(200);
    expect(Number(head.headers["content-length"])).toBeGreaterThan(0);
    expect(head.body.length).toBe(0);
    expect((await curl([`${base}/notes/abc`])).status).toBe(400);
  });

  it("takes a 64 KiB body whole (length or chunked), not a byte more", { timeout }, async () => {
    const big = randomBytes(65536);
    const file = path.join(tmp, "big");
    await writeFile(file, big);
    const octet = ["-H", "Content-Type: application/octet-stream"];
    const put = await curl(["-X", "PUT", ...octet, "--data-binary", `@${file}`, `${base}/notes/2`]);
    expect(put.status).toBe(201);
    const got = await curl([`${base}/notes/2`]);
    expect(got.headers["content-type"]).toBe("application/octet-stream");
    expect(Buffer.compare(got.body, big)).toBe(0);
    const chunked = ["-H", "Transfer-Encoding: chunked", ...octet];
    const data = ["--data-binary", `@${file}`];
    const putChunked = await curl(["-X", "PUT", ...chunked, ...data, `${base}/notes/3`]);
    expect(putChunked.status).toBe(201);
    expect(Buffer.compare((await curl([`${base}/notes/3`])).body, big)).toBe(0);
    const over = path.join(tmp, "over");
    await writeFile(over, randomBytes(65537));
    const refused = await curl(["-X", "PUT", "--data-binary", `@${over}`, `${base}/notes/4`]);
    expect413(refused.status);
    expect(refused.body.toString()).toBe('{"error":"body too large"}\n');
    expect(refused.headers.connection).toBe("close");
    const overData = ["--data-binary", `@${over}`];
    const refusedChunked = await curl(["-X", "PUT", ...chunked, ...overData, `${base}/notes/4`]);
    expect413(refusedChunked.status);
    expect(refusedChunked.headers.connection).toBe("close");
    expect((await curl([`${base}/notes/4`])).status).toBe(404);
  });

  it("takes 64 KiB in small chunks whose framing overflows the buffer", { timeout }, async () => {
    const body = randomBytes(65536);
    // 16-byte chunks: 90 KB on the wire for an 80 KiB read buffer.
    const request = chunkedPut("/notes/5", body, 16);
    expect(request.length).toBeGreaterThan(81920);
    const reply = await exchange(port, request);
    expect(statusOf(reply)).toBe(201);
    expect(Buffer.compare((await curl([`${base}/notes/5`])).body, body)).toBe(0);
    // One byte more is a 413 that reaches the client whole, however it is framed.
    const over = chunkedPut("/notes/6", randomBytes(65537), 16);
    const refused = await exchange(port, over);
    expect(refused.toString("latin1")).toMatch(/^HTTP\/1\.1 413 Content Too Large\r\n/);
    expect(refused.toString("latin1")).toMatch(/\r\n\r\n\{"error":"body too large"\}\n$/);
    expect413(statusOf(refused));
    expect((await curl([`${base}/notes/6`])).status).toBe(404);
  });

  it("limits the body to what fits beside its head: 413 past it", { timeout }, async () => {
    // A 20 KB header leaves 60 KiB of the 80 KiB read buffer: a 64 KiB body no longer fits.
    const pad = `X-Pad: ${"p".repeat(20_000)}\r\n`;
    const body = randomBytes(65536);
    const chunked = chunkedPut("/notes/7", body, 4096, pad);
    const refusedChunked = await exchange(port, chunked);
    expect413(statusOf(refusedChunked));
    const length = Buffer.concat([
      Buffer.from(`PUT /notes/7 HTTP/1.1\r\nHost: notes\r\n${pad}Content-Length: 65536\r\n\r\n`),
      body,
    ]);
    const refusedLength = await exchange(port, length);
    expect413(statusOf(refusedLength));
    // 50 000 bytes fit beside that head.
    const fits = chunkedPut("/notes/7", body.subarray(0, 50_000), 4096, pad);
    const taken = await exchange(port, fits);
    expect(statusOf(taken)).toBe(201);
  });

  it("streams an export larger than the write buffer, chunked", { timeout }, async () => {
    const parts = [randomBytes(65536), randomBytes(65536), randomBytes(1000)];
    const octet = ["-H", "Content-Type: application/octet-stream"];
    for (const [i, part] of parts.entries()) {
      const file = path.join(tmp, `part${i}`);
      await writeFile(file, part);
      const put = ["-X", "PUT", ...octet, "--data-binary", `@${file}`];
      expect((await curl([...put, `${base}/notes/${100 + i}`])).status).toBe(201);
    }
    const exported = await curl([`${base}/export`]);
    expect(exported.status).toBe(200);
    expect(exported.headers["transfer-encoding"]).toBe("chunked");
    // Notes 2 and 3 of the test above may be there too: ours are the last, in slot order.
    const ours = Buffer.concat(parts);
    expect(exported.body.length).toBeGreaterThanOrEqual(ours.length);
    expect(exported.body.includes(ours)).toBe(true);
    // HTTP/1.0 has no chunks: the body ends with the connection.
    const old = await curl(["-0", `${base}/export`]);
    expect(old.headers["transfer-encoding"]).toBeUndefined();
    expect(Buffer.compare(old.body, exported.body)).toBe(0);
  });

  it("serves several requests on one keep-alive connection", { timeout }, async () => {
    // curl reuses its connection for several URLs of one command line; -w counts new ones.
    const urls = Array.from({ length: 5 }, () => ["-o", "/dev/null", `${base}/notes`]).flat();
    const out = await new Promise<string>((resolve, reject) => {
      execFile(
        "curl",
        ["-sS", "--max-time", "5", "-w", "%{http_code} %{num_connects}\\n", ...urls],
        { timeout: 10_000 },
        (error, stdout) => (error ? reject(error) : resolve(stdout)),
      );
    });
    const lines = out.trim().split("\n");
    expect(lines).toEqual(["200 1", "200 0", "200 0", "200 0", "200 0"]);
  });

  it("calls the module's access hook after each answered request (GET /stats)", { timeout }, async () => {
    interface Served {
      requests: number;
      by_class: number[];
      unrouted: number;
      body_bytes: number;
      slowest_us: number;
      slowest_route: string;
    }
    const stats = async (): Promise<Served> => {
      const reply = await curl([`${base}/stats`]);
      expect(reply.status).toBe(200);
      return JSON.parse(reply.body.toString()) as Served;
    };
    const before = await stats();
    expect((await curl([`${base}/notes`])).status).toBe(200);
    expect((await curl([`${base}/no/such/path`])).status).toBe(404);
    expect((await curl(["-X", "POST", `${base}/notes`])).status).toBe(405);
    expect((await curl([`${base}/notes/x`])).status).toBe(400);
    const after = await stats();
    // The first GET /stats is counted too: the hook runs once its answer is written.
    expect(after.requests - before.requests).toBe(5);
    expect(after.by_class[1]! - before.by_class[1]!).toBe(2);
    expect(after.by_class[3]! - before.by_class[3]!).toBe(3);
    expect(after.unrouted - before.unrouted).toBe(2);
    expect(after.body_bytes).toBeGreaterThan(before.body_bytes);
    expect(after.slowest_us).toBeGreaterThan(0);
    // The slowest so far: a route's name, or "" when the router answered (404, 405).
    const routes = ["listNotes", "getNote", "putNote", "deleteNote", "watchNote", "exportNotes"];
    expect(["", ...routes, "servedStats"]).toContain(after.slowest_route);
  });

  it("answers a long poll at the change, serving other requests meanwhile", { timeout }, async () => {
    let polled = false;
    const poll = curl([`${base}/notes/40/changes?wait=4000`]).finally(() => {
      polled = true;
    });
    await sleepMs(300);
    // The poll is held by its worker, which serves everyone else in the meantime.
    const list = await curl([`${base}/notes`]);
    expect(list.status).toBe(200);
    expect(polled).toBe(false);
    const put = await curl(["-X", "PUT", "--data-binary", "hi", `${base}/notes/40`]);
    expect(put.status).toBe(201);
    // 200 with the new version: the change woke it (its wait would end in a 204).
    const answer = await poll;
    expect(answer.status).toBe(200);
    const body = JSON.parse(answer.body.toString()) as { id: number; version: number };
    expect(body).toMatchObject({ id: 40, bytes: 2 });
    expect(body.version).toBeGreaterThan(0);
    // Asked again with that version, it waits out its time: 204.
    const started = Date.now();
    const quiet = await curl([`${base}/notes/40/changes?after=${body.version}&wait=400`]);
    expect(quiet.status).toBe(204);
    expect(Date.now() - started).toBeGreaterThanOrEqual(400);
    expect((await curl([`${base}/notes/40/changes?wait=x`])).status).toBe(400);
  });

  it("wakes every long poll of a note with one change", { timeout }, async () => {
    const polls = Array.from({ length: 64 }, () =>
      tcpExchange("127.0.0.1", port, {
        send: "GET /notes/41/changes?wait=8000 HTTP/1.1\r\nHost: notes\r\nConnection: close\r\n\r\n",
        timeoutMs: 10_000,
      }),
    );
    await sleepMs(500);
    expect((await curl(["-X", "PUT", "--data-binary", "x", `${base}/notes/41`])).status).toBe(201);
    const replies = await Promise.all(polls);
    for (const reply of replies) {
      expect(statusOf(reply)).toBe(200);
      expect(reply.toString()).toMatch(/\{"id":41,"version":\d+,"bytes":1\}\n$/);
    }
  });

  it("answers CONNECT 501 and closes, as the built-in handler does, and 400 to a bad Host", { timeout }, async () => {
    for (const target of ["a:80", "/notes"]) {
      const reply = await tcpExchange("127.0.0.1", port, {
        send: `CONNECT ${target} HTTP/1.1\r\nHost: a:80\r\n\r\nGET /notes HTTP/1.1\r\nHost: a\r\n\r\n`,
        timeoutMs: 5_000,
      });
      const text = reply.toString("latin1");
      // One answer, then the close: the GET behind it is never served.
      expect([...text.matchAll(/^HTTP\/1\.1 (\d+)/gm)].map((m) => m[1])).toEqual(["501"]);
      expect(text).toMatch(/^Connection: close\r$/im);
    }
    const badHost = await tcpExchange("127.0.0.1", port, {
      send: "GET /notes HTTP/1.1\r\nHost: a b\r\n\r\n",
      timeoutMs: 5_000,
    });
    expect(badHost.toString("latin1")).toMatch(/^HTTP\/1\.1 400 /);
  });

  it("answers a request pipelined behind a held one after it, in order", { timeout }, async () => {
    const reply = await tcpExchange("127.0.0.1", port, {
      send:
        "GET /notes/42/changes?wait=300 HTTP/1.1\r\nHost: notes\r\n\r\n" +
        "GET /notes HTTP/1.1\r\nHost: notes\r\nConnection: close\r\n\r\n",
      timeoutMs: 5_000,
    });
    const statuses = [...reply.toString("latin1").matchAll(/^HTTP\/1\.1 (\d+)/gm)].map((m) => m[1]);
    expect(statuses).toEqual(["204", "200"]);
  });

  it("frees the connection of a client that leaves its long poll", { timeout }, async () => {
    for (let i = 0; i < abandonedPolls; i += 1) {
      const socket = net.connect(port, "127.0.0.1");
      await new Promise<void>((resolve, reject) => {
        socket.once("connect", resolve);
        socket.once("error", reject);
      });
      socket.write("GET /notes/43/changes?wait=60000 HTTP/1.1\r\nHost: notes\r\n\r\n");
      await sleepMs(100);
      socket.end();
      await new Promise((resolve) => socket.once("close", resolve));
    }
    // Counted as abandoned in `stopped` (checked when the service stops, below).
  });

  it("answers a held poll at once when stopping; counts 413s and abandoned polls", { timeout }, async () => {
    expect(refused413).toBe(5);
    const started = Date.now();
    const poll = tcpExchange("127.0.0.1", port, {
      send: "GET /notes/44/changes?wait=20000 HTTP/1.1\r\nHost: notes\r\n\r\n",
      timeoutMs: 15_000,
    });
    await sleepMs(300);
    program.signal("SIGTERM");
    const reply = await poll;
    expect(statusOf(reply)).toBe(204);
    expect(reply.toString("latin1")).toMatch(/\r\nConnection: close\r\n/);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(await program.waitForExit(STOP_TIMEOUT_MS)).toEqual({ code: 0, signal: null });
    const stopped = await program.waitForEvent<StoppedEvent>("stopped", 1_000);
    const workers = stopped.workers as unknown as {
      rejected: Record<string, number>;
      abandoned: number;
    }[];
    const counted = workers.reduce((n, w) => n + (w.rejected["413"] ?? 0), 0);
    expect(counted).toBe(refused413);
    expect(workers.reduce((n, w) => n + w.abandoned, 0)).toBe(abandonedPolls);
  });
});

describe.each(FULL_MATRIX_VERSIONS)("zig %s: notes with body buffers", (version) => {
  let base: string;
  let port: number;
  let tmp: string;
  const timeout = TEST_TIMEOUT_MS;

  beforeAll(async () => {
    ensureCommand("curl", "curl");
    // readBufferBytes 16 KiB, maxBodyBytes 256 KiB, one body buffer (one worker).
    const binary = await programOf("notes-uploads", version);
    // Its request log (access-log.test.ts) goes to standard output here.
    const { ready } = await startReady(binary, [
      "--standalone",
      "--listen",
      "api=127.0.0.1:0",
      "--listen",
      "web=127.0.0.1:0",
    ]);
    port = portOf(ready, "api");
    base = `http://127.0.0.1:${port}`;
    tmp = await mkdtemp(path.join(tmpdir(), "gen-reuseport-uploads-"));
  }, SETUP_TIMEOUT_MS);

  afterAll(async () => {
    await stopAllPrograms();
    if (tmp !== undefined) await rm(tmp, { recursive: true, force: true });
  });

  it("takes 256 KiB through a 16 KiB read buffer, by length or chunked", { timeout }, async () => {
    const big = randomBytes(262144);
    const file = path.join(tmp, "big");
    await writeFile(file, big);
    const data = ["--data-binary", `@${file}`];
    expect((await curl(["-X", "PUT", ...data, `${base}/notes/1`])).status).toBe(201);
    expect(Buffer.compare((await curl([`${base}/notes/1`])).body, big)).toBe(0);
    const chunked = ["-H", "Transfer-Encoding: chunked"];
    expect((await curl(["-X", "PUT", ...chunked, ...data, `${base}/notes/2`])).status).toBe(201);
    expect(Buffer.compare((await curl([`${base}/notes/2`])).body, big)).toBe(0);
    const small = chunkedPut("/notes/3", big, 7);
    expect(statusOf(await exchange(port, small))).toBe(201);
    expect(Buffer.compare((await curl([`${base}/notes/3`])).body, big)).toBe(0);
    const over = path.join(tmp, "over");
    await writeFile(over, randomBytes(262145));
    const overData = ["--data-binary", `@${over}`];
    expect((await curl(["-X", "PUT", ...overData, `${base}/notes/4`])).status).toBe(413);
    const refused = await curl(["-X", "PUT", ...chunked, ...overData, `${base}/notes/4`]);
    expect(refused.status).toBe(413);
    // Past the body buffer (the squeeze finds no room): routerError's body, then the close.
    expect(refused.body.toString()).toBe('{"error":"body too large"}\n');
    expect(refused.headers.connection).toBe("close");
  });

  it("503 while the one body buffer is taken; it is freed after", { timeout }, async () => {
    const body = randomBytes(100_000);
    const head = `PUT /notes/5 HTTP/1.1\r\nHost: notes\r\nContent-Length: ${2 * body.length}\r\n`;
    // A holds the buffer: half its body sent, the rest later.
    const holder = net.connect(port, "127.0.0.1");
    await new Promise<void>((resolve, reject) => {
      holder.once("connect", resolve);
      holder.once("error", reject);
    });
    const holderReply: Buffer[] = [];
    holder.on("data", (d: Buffer) => holderReply.push(d));
    holder.write(Buffer.concat([Buffer.from(`${head}Connection: close\r\n\r\n`), body]));
    await sleepMs(300);
    const put = (id: number) =>
      Buffer.concat([
        Buffer.from(`PUT /notes/${id} HTTP/1.1\r\nHost: notes\r\nConnection: close\r\n`),
        Buffer.from(`Content-Length: ${body.length}\r\n\r\n`),
        body,
      ]);
    expect(statusOf(await exchange(port, put(6)))).toBe(503);
    // Small bodies need no body buffer.
    expect((await curl(["-X", "PUT", "--data-binary", "hi", `${base}/notes/7`])).status).toBe(201);
    holder.end(body);
    await new Promise((resolve) => holder.once("close", resolve));
    expect(statusOf(Buffer.concat(holderReply))).toBe(201);
    expect(statusOf(await exchange(port, put(6)))).toBe(201);
    // A client that leaves mid-body gives its buffer back.
    const leaver = net.connect(port, "127.0.0.1");
    await new Promise<void>((resolve) => leaver.once("connect", resolve));
    leaver.write(Buffer.concat([Buffer.from(`${head}\r\n`), body]));
    await sleepMs(200);
    leaver.destroy();
    await sleepMs(200);
    expect(statusOf(await exchange(port, put(8)))).toBe(201);
  });
});

