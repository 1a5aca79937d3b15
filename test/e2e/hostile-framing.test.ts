/**
 * Hostile and careless HTTP clients, framing: requests that break RFC 9112's rules each get
 * the status the RFC names, intact (lingering close: no reset even when the client sent more),
 * with a `Date`, and the connection closes; a request sent one byte at a time is served; a
 * pipeline cut by `Connection: close` is answered up to the close and no further. No worker
 * crashes, and the `rejected` counters of `stopped` add up to what the clients were answered.
 *
 * One service for the whole file (the `hostile` project, 2 workers, `--max-body 1000`), every
 * case on a fresh connection, read until the server closes.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  checkDate,
  describeCounters,
  exchangeUntilClose,
  expectNoCrash,
  header,
  HOST,
  parseResponses,
  RawClient,
  REJECTED_STATUSES,
  startService,
  stopAndCheck,
  type ParsedResponse,
} from "./support/hostile.js";
import { runBounded } from "./support/net.js";
import { portOf, stopAllPrograms, type Program, type ReadyEvent } from "./support/program.js";
import { binaryOf, HOSTILE_ANY_LOOPBACK_PORT } from "./support/supervised.js";
import { FULL_MATRIX_VERSIONS } from "./support/zig.js";

const SETUP_TIMEOUT_MS = 15 * 60_000;
const TEST_TIMEOUT_MS = 60_000;
const IO_TIMEOUT_MS = 5_000;
const MAX_BODY = 1000;
/** Passes of the whole table: one case by case, then these more for the counters. */
const MORE_PASSES = 2;

const CRLF = "\r\n";
/** A request head from its lines (the empty line that ends it added). */
const head = (...lines: string[]) => lines.join(CRLF) + CRLF + CRLF;

const CHUNKED_WITH_EXTENSIONS_AND_TRAILERS =
  "5;name=value" + CRLF + "hello" + CRLF +
  '6;a;b="quoted"' + CRLF + " world" + CRLF +
  "0;last" + CRLF + "X-Trailer: yes" + CRLF + "X-Other: 1" + CRLF + CRLF;

const HIDDEN_REQUEST = head("GET /smuggled HTTP/1.1", "Host: h");
const SMUGGLING_BODY = "0" + CRLF + CRLF + HIDDEN_REQUEST;

interface FramingCase {
  readonly name: string;
  /** The status of the one final response. */
  readonly status: number;
  /** Sent at once on a fresh connection. */
  readonly send?: string | Buffer;
  /** Or a conversation of its own; it must leave the connection closed by the server. */
  readonly converse?: (port: number) => Promise<RawClient>;
  /** Interim (1xx) statuses expected before the final response. */
  readonly interim?: readonly number[];
}

/** `Expect: 100-continue`: the head alone, the 100, then the body. */
async function continueThenBody(port: number): Promise<RawClient> {
  const client = await RawClient.connect(HOST, port, IO_TIMEOUT_MS);
  try {
    await client.write(
      head(
        "POST /upload HTTP/1.1",
        "Host: h",
        "Content-Length: 5",
        "Expect: 100-continue",
        "Connection: close",
      ),
    );
    await client.waitFor((d) => d.includes(CRLF + CRLF), IO_TIMEOUT_MS, "the 100 Continue");
    expect(client.text).toBe("HTTP/1.1 100 Continue\r\n\r\n");
    await client.write("hello");
    await client.waitForServerClose(IO_TIMEOUT_MS);
    await client.waitForClosed(IO_TIMEOUT_MS);
    return client;
  } finally {
    client.destroy();
  }
}

const CASES: readonly FramingCase[] = [
  {
    name: "Content-Length: 18446744073709551615 (2^64-1, the 70-byte request that once killed a worker)",
    status: 413,
    send: head("GET / HTTP/1.1", "Host: localhost", "Content-Length: 18446744073709551615"),
  },
  {
    name: "a 25-digit Content-Length",
    status: 400,
    send: head("POST / HTTP/1.1", "Host: h", "Content-Length: 1234567890123456789012345") + "hello",
  },
  {
    name: "Content-Length: +5",
    status: 400,
    send: head("POST / HTTP/1.1", "Host: h", "Content-Length: +5") + "hello",
  },
  {
    name: "Content-Length:  5 5 (a space inside)",
    status: 400,
    send: head("POST / HTTP/1.1", "Host: h", "Content-Length:  5 5") + "hello",
  },
  {
    name: "Content-Length: 0x5 (hex)",
    status: 400,
    send: head("POST / HTTP/1.1", "Host: h", "Content-Length: 0x5") + "hello",
  },
  {
    name: "two different Content-Length fields (5 and 6)",
    status: 400,
    send: head("POST / HTTP/1.1", "Host: h", "Content-Length: 5", "Content-Length: 6") + "hello!",
  },
  {
    name: "Content-Length: 5, 6 (a list of different values)",
    status: 400,
    send: head("POST / HTTP/1.1", "Host: h", "Content-Length: 5, 6") + "hello!",
  },
  {
    name: "whitespace between a field name and its colon",
    status: 400,
    send: head("GET / HTTP/1.1", "Host: h", "X-Pad : 1"),
  },
  {
    name: "obs-fold (a field line continued on the next line)",
    status: 400,
    send: head("GET / HTTP/1.1", "Host: h", "X-Folded: first", "  second"),
  },
  {
    name: "a bare CR inside a field value",
    status: 400,
    send: head("GET / HTTP/1.1", "Host: h", "X-Cr: a\rb"),
  },
  {
    name: "HTTP/1.1 without Host",
    status: 400,
    send: head("GET / HTTP/1.1", "Accept: */*"),
  },
  {
    name: "HTTP/1.1 with two Host fields",
    status: 400,
    send: head("GET / HTTP/1.1", "Host: a", "Host: b"),
  },
  {
    name: "Transfer-Encoding: gzip, chunked",
    status: 501,
    send: head("POST / HTTP/1.1", "Host: h", "Transfer-Encoding: gzip, chunked") + "0\r\n\r\n",
  },
  {
    name: "Transfer-Encoding in HTTP/1.0",
    status: 400,
    send: head("POST / HTTP/1.0", "Transfer-Encoding: chunked") + "0\r\n\r\n",
  },
  {
    name: "HTTP/2.0 in a request line",
    status: 505,
    send: head("GET / HTTP/2.0", "Host: h"),
  },
  {
    name: "GET /\\n\\n (no version, bare LFs: once never answered)",
    status: 400,
    send: "GET /\n\n",
  },
  {
    name: "a request line of 9000 bytes (> 8 KiB)",
    status: 414,
    send: head(`GET /${"a".repeat(9000)} HTTP/1.1`, "Host: h"),
  },
  {
    name: "a header section of 21 KB (30 fields of 700 bytes)",
    status: 431,
    send: head(
      "GET / HTTP/1.1",
      "Host: h",
      ...Array.from({ length: 30 }, (_, i) => `X-Big-${i}: ${"v".repeat(700)}`),
    ),
  },
  {
    name: `a body of 200000 bytes over --max-body ${MAX_BODY}, sent right behind the head`,
    status: 413,
    send: Buffer.concat([
      Buffer.from(head("POST /big HTTP/1.1", "Host: h", "Content-Length: 200000")),
      Buffer.alloc(200_000, "b"),
    ]),
  },
  {
    name: "Expect: 100-continue with a body over --max-body (413 at once, no 100)",
    status: 413,
    send: head(
      "POST /big HTTP/1.1",
      "Host: h",
      "Content-Length: 200000",
      "Expect: 100-continue",
    ),
  },
  {
    name: "Expect: 100-continue with a small body (the client waits for the 100)",
    status: 200,
    interim: [100],
    converse: continueThenBody,
  },
  {
    name: "Expect: something",
    status: 417,
    send: head("POST / HTTP/1.1", "Host: h", "Content-Length: 5", "Expect: something") + "hello",
  },
  {
    name: "a chunked body with chunk extensions and trailers",
    status: 200,
    send:
      head("POST /chunked HTTP/1.1", "Host: h", "Transfer-Encoding: chunked", "Connection: close") +
      CHUNKED_WITH_EXTENSIONS_AND_TRAILERS,
  },
  {
    name: "a Host that is not an authority (a space in it)",
    status: 400,
    send: head("GET / HTTP/1.1", "Host: a b"),
  },
  {
    name: "a Host with a path in it",
    status: 400,
    send: head("GET / HTTP/1.1", "Host: example.com/admin"),
  },
  {
    name: "CONNECT",
    status: 501,
    send: head("CONNECT example.com:443 HTTP/1.1", "Host: example.com:443"),
  },
  {
    name: "smuggling: Content-Length and Transfer-Encoding: chunked, a second request hidden in the body",
    status: 200,
    send:
      head(
        "POST /front HTTP/1.1",
        "Host: h",
        `Content-Length: ${SMUGGLING_BODY.length}`,
        "Transfer-Encoding: chunked",
      ) + SMUGGLING_BODY,
  },
];

/** What a client saw for one case, checked; returns the final status. */
function checkCase(c: FramingCase, client: RawClient): ParsedResponse {
  const seen = client.describe();
  expect(client.error, `no reset or error (${seen})`).toBeUndefined();
  expect(client.endAt, `the server closed (${seen})`).toBeDefined();
  const { responses, rest } = parseResponses(client.data);
  expect(rest.toString("latin1"), `nothing after the responses (${seen})`).toBe("");
  const interim = responses.filter((r) => r.status < 200);
  const final = responses.filter((r) => r.status >= 200);
  expect(interim.map((r) => r.status)).toEqual(c.interim ?? []);
  expect(final.map((r) => r.status), `exactly one final response (${seen})`).toEqual([c.status]);
  const response = final[0]!;
  expect(checkDate(header(response, "date")), "Date").toBeUndefined();
  expect(header(response, "connection")).toMatch(/^close$/i);
  if (c.status !== 200) expect(header(response, "content-length")).toBe("0");
  return response;
}

async function runCase(c: FramingCase, port: number): Promise<RawClient> {
  if (c.converse !== undefined) return c.converse(port);
  return exchangeUntilClose(port, c.send!, IO_TIMEOUT_MS);
}

/**
 * Every release, in a Debug build (every safety check on) and a ReleaseFast build (none): the
 * answers must not depend on the mode.
 */
const BUILDS = FULL_MATRIX_VERSIONS.flatMap((version) => [
  [version, "Debug", "hostile"] as const,
  [version, "ReleaseFast", "hostile-release-fast"] as const,
]);

describe.each(BUILDS)("zig %s (%s): hostile HTTP clients, framing", (version, _mode, project) => {
  let program: Program;
  let ready: ReadyEvent;
  let port: number;
  /** Final statuses the clients were answered, over the whole file. */
  const answered = new Map<number, number>();
  /** Requests the server completed (parsed to their end), as the clients saw them. */
  let completedRequests = 0;
  /** The same, for the cases of the table only. */
  const tableAnswered = new Map<number, number>();
  const tally = (status: number, table = false) => {
    answered.set(status, (answered.get(status) ?? 0) + 1);
    if (table) tableAnswered.set(status, (tableAnswered.get(status) ?? 0) + 1);
  };

  beforeAll(async () => {
    const binary = await binaryOf(project, version);
    ({ program, ready } = await startService(binary, [
      ...HOSTILE_ANY_LOOPBACK_PORT,
      "--max-body",
      String(MAX_BODY),
    ]));
    port = portOf(ready, "web");
  }, SETUP_TIMEOUT_MS);

  afterAll(async () => {
    await stopAllPrograms();
  });

  it.each(CASES)("$name → $status", { timeout: TEST_TIMEOUT_MS }, async (c) => {
    const client = await runCase(c, port);
    const response = checkCase(c, client);
    tally(response.status, true);
    // 200s and CONNECT's 501 are requests read to their end; the others were refused earlier.
    if (response.status === 200 || c.name === "CONNECT") completedRequests += 1;
    if (c.name.startsWith("smuggling")) expect(client.text).not.toContain("smuggled");
    expectNoCrash(program, ready);
  });

  it(
    "serves requests sent one byte at a time: a GET, then a chunked POST with trailers",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const client = await RawClient.connect(HOST, port, IO_TIMEOUT_MS);
      try {
        const get = head("GET /split HTTP/1.1", "Host: h", "User-Agent: trickle");
        const started = Date.now();
        for (const byte of get) {
          await client.write(byte);
          await sleep(5);
        }
        await client.waitFor(
          (d) => parseResponses(d).responses.length === 1,
          IO_TIMEOUT_MS,
          "the response to the trickled GET",
        );
        const first = parseResponses(client.data).responses[0]!;
        expect(first.status).toBe(200);
        expect(header(first, "connection") ?? "keep-alive").not.toMatch(/close/i);
        expect(checkDate(header(first, "date"))).toBeUndefined();

        const post =
          head("POST /split HTTP/1.1", "Host: h", "Transfer-Encoding: chunked", "Connection: close") +
          CHUNKED_WITH_EXTENSIONS_AND_TRAILERS;
        for (const byte of post) {
          await client.write(byte);
          await sleep(2);
        }
        await client.waitForServerClose(IO_TIMEOUT_MS);
        await client.waitForClosed(IO_TIMEOUT_MS);
        console.log(
          `zig ${version}: ${get.length + post.length} bytes sent one at a time in ${Date.now() - started} ms`,
        );
        expect(client.error).toBeUndefined();
        const { responses, rest } = parseResponses(client.data);
        expect(responses.map((r) => r.status)).toEqual([200, 200]);
        expect(header(responses[1]!, "connection")).toMatch(/^close$/i);
        expect(rest.length).toBe(0);
        tally(200);
        tally(200);
        completedRequests += 2;
      } finally {
        client.destroy();
      }
      expectNoCrash(program, ready);
    },
  );

  const pipelines = [
    { name: "2 more requests", more: 2 },
    { name: "200 KB more requests", more: 6000 },
  ];
  it.each(pipelines)(
    "answers a pipeline up to its Connection: close request, then closes without a reset ($name behind it)",
    { timeout: TEST_TIMEOUT_MS },
    async ({ more }) => {
      const pipeline =
        head("GET /p/1 HTTP/1.1", "Host: h") +
        head("GET /p/2 HTTP/1.1", "Host: h", "Connection: close") +
        Array.from({ length: more }, (_, i) => head(`GET /p/${i + 3} HTTP/1.1`, "Host: h")).join("");
      const client = await exchangeUntilClose(port, pipeline, IO_TIMEOUT_MS);
      expect(client.error, client.describe()).toBeUndefined();
      const { responses, rest } = parseResponses(client.data);
      expect(responses.map((r) => r.status)).toEqual([200, 200]);
      expect(header(responses[0]!, "connection") ?? "keep-alive").not.toMatch(/close/i);
      expect(header(responses[1]!, "connection")).toMatch(/^close$/i);
      for (const r of responses) expect(checkDate(header(r, "date"))).toBeUndefined();
      expect(rest.length).toBe(0);
      tally(200);
      tally(200);
      completedRequests += 2;
      expectNoCrash(program, ready);
    },
  );

  it(
    "answers empty lines before a request line (within their budget) followed by a large head: 200 or 431, never a reset",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      // 8000 bytes of CRLF (RFC 9112 §2.2: ignored; within the parser's 8192-byte budget for
      // them), then an 8.7 KB head (within the 16383-byte head budget): 16.7 KB in all, more
      // than the 16384-byte read buffer holds.
      const fields = Array.from({ length: 30 }, (_, i) => `X-F${i}: ${"v".repeat(280)}`);
      const request = CRLF.repeat(4000) + head("GET /late HTTP/1.1", "Host: h", "Connection: close", ...fields);
      const client = await exchangeUntilClose(port, request, IO_TIMEOUT_MS);
      const { responses } = parseResponses(client.data);
      console.log(
        `zig ${version}: ${request.length} bytes (8000 of them leading CRLF): ${client.describe().slice(0, 200)}`,
      );
      expect(client.error, `no reset (${client.describe()})`).toBeUndefined();
      expect(responses.length, client.describe()).toBe(1);
      const response = responses[0]!;
      expect([200, 431]).toContain(response.status);
      expect(checkDate(header(response, "date"))).toBeUndefined();
      tally(response.status);
      if (response.status === 200) completedRequests += 1;
      expectNoCrash(program, ready);
    },
  );

  it(
    `runs the table ${MORE_PASSES} more times; the rejected counters of stopped add up to what the clients were answered`,
    { timeout: 3 * TEST_TIMEOUT_MS },
    async () => {
      for (let pass = 0; pass < MORE_PASSES; pass++) {
        for (const c of CASES) {
          const client = await runCase(c, port);
          const response = checkCase(c, client);
          tally(response.status, true);
          if (response.status === 200 || c.name === "CONNECT") completedRequests += 1;
        }
      }
      const { total } = await stopAndCheck(program, ready);
      console.log(`zig ${version}: framing counters: ${describeCounters(total)}`);

      // What the table says the clients should have been answered, per pass.
      const perPass = new Map<number, number>();
      for (const c of CASES) perPass.set(c.status, (perPass.get(c.status) ?? 0) + 1);
      for (const status of REJECTED_STATUSES) {
        const expected = (perPass.get(Number(status)) ?? 0) * (1 + MORE_PASSES);
        expect(tableAnswered.get(Number(status)) ?? 0, `${status} answers seen`).toBe(expected);
        expect(total.rejected[status], `rejected ${status} counted`).toBe(
          answered.get(Number(status)) ?? 0,
        );
      }
      expect(total.requests, "requests read to their end").toBe(completedRequests);
      expect(total.timeouts).toEqual({ header: 0, body: 0, idle: 0, write: 0, request: 0 });
      expect(total.evicted).toBe(0);
    },
  );
});

/** mulberry32: a small seeded PRNG, so that a failing input can be found again. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Fixed, so a run can be repeated; `GEN_REUSEPORT_FUZZ_SEED` / `_CASES` explore further. */
const FUZZ_SEED = Number(process.env.GEN_REUSEPORT_FUZZ_SEED ?? 0x5eed_2026);
const FUZZ_CASES = Number(process.env.GEN_REUSEPORT_FUZZ_CASES ?? 240);
/**
 * Clients at once. About a third of the cases end by a 1 s timeout, so the case takes about
 * FUZZ_CASES / FUZZ_CONCURRENCY / 3 seconds; 32 stay well under the 64 slots of each of the
 * two workers, so no client is evicted or waits for a slot.
 */
const FUZZ_CONCURRENCY = 32;
/** Every status this server may answer a request with. */
const ANSWERABLE = [200, 400, 408, 413, 414, 417, 431, 501, 505];

const FUZZ_BASES = [
  head("GET /a?b=c HTTP/1.1", "Host: h", "Accept: */*", "Connection: keep-alive"),
  head("POST /form HTTP/1.1", "Host: h", "Content-Length: 5", "Content-Type: text/plain") + "hello",
  head("POST /up HTTP/1.1", "Host: h", "Transfer-Encoding: chunked") + "5;x=y\r\nhello\r\n0\r\nT: 1\r\n\r\n",
  head("PUT /c HTTP/1.1", "Host: h", "Expect: 100-continue", "Content-Length: 3") + "abc",
  head("GET / HTTP/1.0", "Connection: keep-alive"),
  head("HEAD / HTTP/1.1", "Host: h", "Connection: close"),
];

const INTERESTING = ["\r", "\n", "\r\n", " ", "\t", ":", ",", "\0", "0", "9", "-", "chunked", "Content-Length: 7\r\n", "Transfer-Encoding: chunked\r\n", "Host: x\r\n", "\x7f", "\xff"];

/** One to three random edits of a valid request: flip, insert, delete, duplicate a line, truncate. */
function mutate(base: string, random: () => number): { bytes: Buffer; edits: string[] } {
  let bytes = Buffer.from(base, "latin1");
  const edits: string[] = [];
  const at = (n: number) => Math.floor(random() * n);
  const count = 1 + at(3);
  for (let i = 0; i < count; i++) {
    const pos = at(bytes.length + 1);
    switch (at(5)) {
      case 0: {
        if (bytes.length === 0) break;
        const p = Math.min(pos, bytes.length - 1);
        const value = at(256);
        bytes = Buffer.concat([bytes.subarray(0, p), Buffer.from([value]), bytes.subarray(p + 1)]);
        edits.push(`flip @${p} to 0x${value.toString(16)}`);
        break;
      }
      case 1: {
        const piece = INTERESTING[at(INTERESTING.length)]!;
        bytes = Buffer.concat([bytes.subarray(0, pos), Buffer.from(piece, "latin1"), bytes.subarray(pos)]);
        edits.push(`insert ${JSON.stringify(piece)} @${pos}`);
        break;
      }
      case 2: {
        const len = 1 + at(4);
        bytes = Buffer.concat([bytes.subarray(0, pos), bytes.subarray(pos + len)]);
        edits.push(`delete ${len} @${pos}`);
        break;
      }
      case 3: {
        const lines = bytes.toString("latin1").split("\r\n");
        const which = 1 + at(Math.max(1, lines.length - 3));
        lines.splice(which, 0, lines[which] ?? "");
        bytes = Buffer.from(lines.join("\r\n"), "latin1");
        edits.push(`duplicate line ${which}`);
        break;
      }
      default: {
        bytes = bytes.subarray(0, pos);
        edits.push(`truncate to ${pos}`);
      }
    }
  }
  return { bytes, edits };
}

describe.each(BUILDS)("zig %s (%s): hostile HTTP clients, mutated requests", (version, _mode, project) => {
  afterEach(async () => {
    await stopAllPrograms();
  });

  it(
    `${FUZZ_CASES} mutated valid requests (seed 0x${FUZZ_SEED.toString(16)}): every byte back is a well-formed response with a Date, no reset, no crash, counters add up`,
    { timeout: 3 * TEST_TIMEOUT_MS },
    async () => {
      const binary = await binaryOf(project, version);
      const { program, ready } = await startService(binary, [
        ...HOSTILE_ANY_LOOPBACK_PORT,
        "--max-body",
        String(MAX_BODY),
        "--header-timeout",
        "1000",
        "--body-timeout",
        "1000",
        "--idle-timeout",
        "1000",
      ]);
      const port = portOf(ready, "web");
      const random = prng(FUZZ_SEED);
      const inputs = Array.from({ length: FUZZ_CASES }, (_, i) =>
        mutate(FUZZ_BASES[i % FUZZ_BASES.length]!, random),
      );
      const seen = new Map<number, number>();
      const problems: string[] = [];
      try {
        const results = await runBounded(FUZZ_CASES, FUZZ_CONCURRENCY, async (i) => {
          const { bytes, edits } = inputs[i]!;
          // Every connection ends by the server: an answer that closes, or a 1 s timeout.
          const client = await exchangeUntilClose(port, bytes, IO_TIMEOUT_MS);
          const what = `#${i} ${edits.join(", ")}: ${JSON.stringify(bytes.toString("latin1"))} → ${client.describe()}`;
          if (client.error !== undefined) return problems.push(`reset or error: ${what}`);
          let parsed: ReturnType<typeof parseResponses>;
          try {
            // A HEAD request's 200 has a Content-Length and no body.
            const headRequest = /^[\r\n]*HEAD /.test(bytes.toString("latin1"));
            parsed = parseResponses(client.data, { headRequest });
          } catch (error) {
            return problems.push(`${String(error)}: ${what}`);
          }
          if (parsed.rest.length > 0) problems.push(`bytes after the responses: ${what}`);
          for (const r of parsed.responses) {
            if (r.status === 100) continue;
            seen.set(r.status, (seen.get(r.status) ?? 0) + 1);
            if (!ANSWERABLE.includes(r.status)) problems.push(`status ${r.status}: ${what}`);
            const dateProblem = checkDate(header(r, "date"));
            if (dateProblem !== undefined) problems.push(`${dateProblem}: ${what}`);
          }
          return undefined;
        });
        for (const r of results) if (r.status === "rejected") problems.push(String(r.reason));
        expectNoCrash(program, ready);
      } finally {
        const summary = [...seen.entries()].sort((a, b) => a[0] - b[0]).map(([s, n]) => `${s}:${n}`);
        console.log(`zig ${version}: mutated requests answered ${summary.join(" ")}; ${problems.length} problems`);
      }
      expect(problems).toEqual([]);
      const { total } = await stopAndCheck(program, ready);
      console.log(`zig ${version}: mutated-request counters: ${describeCounters(total)}`);
      for (const status of REJECTED_STATUSES) {
        expect(total.rejected[status], `rejected ${status}`).toBe(seen.get(Number(status)) ?? 0);
      }
      expect(total.timeouts.header + total.timeouts.body, "408s").toBe(seen.get(408) ?? 0);
    },
  );
});
