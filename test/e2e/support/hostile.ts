/**
 * What the hostile-client tests share: a raw TCP client that records what it saw and when
 * (bytes, the server's FIN, a reset), a parser for the HTTP responses in those bytes, and the
 * checks that no worker crashed, that a graceful stop exits 0, and what the counters say.
 */
import net from "node:net";
import { expect } from "vitest";
import { InputSignal, type LoopbackHost } from "./net.js";
import {
  Program,
  startReady,
  STOP_TIMEOUT_MS,
  type ReadyEvent,
  type ServiceEvent,
} from "./program.js";
import { processGroupMembers } from "./supervised.js";

export const HOST: LoopbackHost = "127.0.0.1";

/** The statuses the program counts under `rejected`. */
export const REJECTED_STATUSES = ["400", "413", "414", "417", "431", "501", "505"] as const;
export type RejectedStatus = (typeof REJECTED_STATUSES)[number];

export interface Counters {
  connections: number;
  requests: number;
  datagrams: number;
  timeouts: { header: number; body: number; idle: number; write: number; request: number };
  evicted: number;
  rejected: Record<RejectedStatus, number>;
}

export interface WorkerCounters extends Counters {
  readonly index: number;
  readonly pid: number;
  readonly exit_code?: number;
  readonly signal?: number;
}

export interface CountedStoppedEvent extends ServiceEvent {
  readonly generation: number;
  readonly reason: string;
  readonly workers: readonly WorkerCounters[];
}

export interface WorkerExitEvent extends ServiceEvent, Counters {
  readonly generation: number;
  readonly index: number;
  readonly pid: number;
  readonly exit_code?: number;
  readonly signal?: number;
  readonly expected: boolean;
}

/** Starts `binary` (supervisor mode, the spec's worker count) with `args`; waits for `ready`. */
export async function startService(
  binary: string,
  args: readonly string[],
): Promise<{ program: Program; ready: ReadyEvent }> {
  return startReady(binary, args);
}

/**
 * Events that mean a worker died, hung or was replaced: any `worker_exit` before the stop was
 * asked for (`stopping`), and any unexpected one.
 */
export function crashEvents(program: Program): ServiceEvent[] {
  const stopping = program.events.findIndex((e) => e.event === "stopping");
  return program.events.filter(
    (e, i) =>
      e.event === "worker_hung" ||
      e.event === "worker_replaced" ||
      (e.event === "worker_exit" &&
        ((e as WorkerExitEvent).expected !== true || stopping < 0 || i < stopping)),
  );
}

/** Every worker of `ready` is alive, and the program said nothing about a crash. */
export function expectNoCrash(program: Program, ready: ReadyEvent): void {
  expect(program.exit, "the program is still running").toBeUndefined();
  expect(crashEvents(program), "worker crash, hang or replacement events").toEqual([]);
  const members = processGroupMembers(program.pid);
  for (const worker of ready.workers) {
    expect(members, `worker ${worker.index} (pid ${worker.pid}) is alive`).toContain(worker.pid);
  }
}

/**
 * SIGTERM; expects exit 0, a graceful `stopped` event listing the same worker pids as `ready`
 * (no worker was replaced), each with exit code 0, and no unexpected `worker_exit`. Returns
 * the `stopped` event and its counters summed over the workers.
 */
export async function stopAndCheck(
  program: Program,
  ready: ReadyEvent,
): Promise<{ stopped: CountedStoppedEvent; total: Counters }> {
  expectNoCrash(program, ready);
  program.signal("SIGTERM");
  const exit = await program.waitForExit(STOP_TIMEOUT_MS);
  expect(exit, program.stderr).toEqual({ code: 0, signal: null });
  const stopped = await program.waitForEvent<CountedStoppedEvent>("stopped", 1_000);
  expect(stopped.reason).toBe("graceful");
  expect(stopped.workers.map((w) => w.pid).sort()).toEqual(
    ready.workers.map((w) => w.pid).sort(),
  );
  for (const worker of stopped.workers) {
    expect(worker, `worker ${worker.index} exit`).toMatchObject({ exit_code: 0 });
    expect(worker.signal, `worker ${worker.index} signal`).toBeUndefined();
  }
  const exits = program.events.filter((e) => e.event === "worker_exit") as WorkerExitEvent[];
  expect(exits.filter((e) => !e.expected || e.exit_code !== 0)).toEqual([]);
  expect(program.events.filter((e) => e.event === "worker_replaced")).toEqual([]);
  expect(processGroupMembers(program.pid)).toEqual([]);
  return { stopped, total: sumCounters(stopped.workers) };
}

export function emptyCounters(): Counters {
  return {
    connections: 0,
    requests: 0,
    datagrams: 0,
    timeouts: { header: 0, body: 0, idle: 0, write: 0, request: 0 },
    evicted: 0,
    rejected: { "400": 0, "413": 0, "414": 0, "417": 0, "431": 0, "501": 0, "505": 0 },
  };
}

export function sumCounters(workers: readonly Counters[]): Counters {
  const total = emptyCounters();
  for (const w of workers) {
    total.connections += w.connections;
    total.requests += w.requests;
    total.datagrams += w.datagrams;
    for (const kind of ["header", "body", "idle", "write", "request"] as const) {
      total.timeouts[kind] += w.timeouts[kind];
    }
    total.evicted += w.evicted;
    for (const status of REJECTED_STATUSES) total.rejected[status] += w.rejected[status];
  }
  return total;
}

/** One line for the log: the counters that matter to these tests. */
export function describeCounters(c: Counters): string {
  const t = c.timeouts;
  const rejected = REJECTED_STATUSES.map((s) => `${s}:${c.rejected[s]}`).join(" ");
  return (
    `connections=${c.connections} requests=${c.requests} datagrams=${c.datagrams} ` +
    `timeouts(header=${t.header} body=${t.body} idle=${t.idle} write=${t.write} request=${t.request}) ` +
    `evicted=${c.evicted} rejected(${rejected})`
  );
}

/**
 * A TCP client that does nothing on its own but record: every byte received, when the first
 * one came, when the server's FIN came, when the socket closed, and any error (a reset shows
 * here as ECONNRESET). When the server ends its side, the client ends its side too (Node's
 * default), so a lingering server sees the close it waits for.
 */
export class RawClient {
  data = Buffer.alloc(0);
  readonly openedAt = Date.now();
  firstDataAt: number | undefined;
  endAt: number | undefined;
  closedAt: number | undefined;
  error: NodeJS.ErrnoException | undefined;
  private readonly input = new InputSignal();

  private constructor(readonly socket: net.Socket) {
    socket.on("data", (chunk: Buffer) => {
      this.firstDataAt ??= Date.now();
      this.data = Buffer.concat([this.data, chunk]);
      this.input.wake();
    });
    socket.on("end", () => {
      this.endAt ??= Date.now();
      this.input.wake();
    });
    socket.on("close", () => {
      this.closedAt ??= Date.now();
      this.input.wake();
    });
    socket.on("error", (error: NodeJS.ErrnoException) => {
      this.error ??= error;
      this.input.wake();
    });
  }

  static connect(host: LoopbackHost, port: number, timeoutMs: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host, port, noDelay: true });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`connect to ${host}:${port}: timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      const client = new RawClient(socket);
      socket.once("connect", () => {
        clearTimeout(timer);
        resolve(client);
      });
      socket.once("error", (error) => {
        clearTimeout(timer);
        socket.destroy();
        reject(error);
      });
    });
  }

  /** Writes; resolves once Node handed the bytes to the kernel (or the socket failed). */
  write(bytes: string | Buffer): Promise<void> {
    return new Promise((resolve) => {
      if (this.socket.destroyed) return resolve();
      this.socket.write(bytes, () => resolve());
    });
  }

  get text(): string {
    return this.data.toString("latin1");
  }

  /** Whether the server ended the connection (FIN, reset or error). */
  get serverClosed(): boolean {
    return this.endAt !== undefined || this.closedAt !== undefined || this.error !== undefined;
  }

  /** Waits until `predicate(data)` holds; rejects (with what arrived) at the deadline or close. */
  async waitFor(
    predicate: (data: Buffer) => boolean,
    timeoutMs: number,
    what: string,
  ): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate(this.data)) {
      if (this.serverClosed) {
        throw new Error(`closed before ${what}: ${this.describe()}`);
      }
      await this.input.next(deadline, what).catch(() => {
        throw new Error(`timed out (${timeoutMs} ms) waiting for ${what}: ${this.describe()}`);
      });
    }
  }

  /** Waits until the server ends the connection; rejects with what arrived at the deadline. */
  async waitForServerClose(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.serverClosed) {
      await this.input.next(deadline, "the server to close").catch(() => {
        throw new Error(
          `the server did not close within ${timeoutMs} ms: ${this.describe()}`,
        );
      });
    }
  }

  /** Waits until the socket is fully closed (after the server's FIN and our own). */
  async waitForClosed(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.closedAt === undefined) {
      await this.input.next(deadline, "the socket to close").catch(() => {
        throw new Error(`the socket did not close within ${timeoutMs} ms: ${this.describe()}`);
      });
    }
  }

  describe(): string {
    const shown = this.data.length > 600 ? `${this.text.slice(0, 600)}…` : this.text;
    return (
      `${this.data.length} bytes ${JSON.stringify(shown)}, ` +
      `end=${this.endAt === undefined ? "no" : `${this.endAt - this.openedAt} ms`}, ` +
      `error=${this.error?.code ?? this.error?.message ?? "none"}`
    );
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** Connects, sends `bytes` at once, and records everything until the server closes. */
export async function exchangeUntilClose(
  port: number,
  bytes: string | Buffer,
  timeoutMs: number,
): Promise<RawClient> {
  const client = await RawClient.connect(HOST, port, timeoutMs);
  try {
    await client.write(bytes);
    await client.waitForServerClose(timeoutMs);
    // The server's FIN came; let our own FIN and the final close happen (a reset would show).
    await client.waitForClosed(timeoutMs);
    return client;
  } finally {
    client.destroy();
  }
}

export interface ParsedResponse {
  readonly status: number;
  readonly reason: string;
  /** Lower-case names; a repeated field keeps every value, in order. */
  readonly headers: Readonly<Record<string, readonly string[]>>;
  readonly body: Buffer;
}

/**
 * Every complete HTTP/1.1 response in `data`, interim (1xx, no body) and final (body framed by
 * Content-Length; absent means empty, which is what this server always sends), and the bytes
 * left after them. Throws on anything that is not an HTTP/1.1 response. `headRequest`: the
 * responses answer HEAD requests (a Content-Length, no body).
 */
export function parseResponses(
  data: Buffer,
  options: { headRequest?: boolean } = {},
): { responses: ParsedResponse[]; rest: Buffer } {
  const responses: ParsedResponse[] = [];
  let rest = data;
  for (let i = 0; i < 1000; i++) {
    const end = rest.indexOf("\r\n\r\n");
    if (end < 0) break;
    const lines = rest.subarray(0, end).toString("latin1").split("\r\n");
    const statusLine = /^HTTP\/1\.1 (\d{3}) (.*)$/.exec(lines[0] ?? "");
    if (statusLine === null) throw new Error(`not an HTTP/1.1 status line: ${JSON.stringify(lines[0])}`);
    const headers: Record<string, string[]> = {};
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(":");
      if (colon <= 0) throw new Error(`not a header line: ${JSON.stringify(line)}`);
      const name = line.slice(0, colon).toLowerCase();
      (headers[name] ??= []).push(line.slice(colon + 1).trim());
    }
    const status = Number(statusLine[1]);
    const lengths = headers["content-length"] ?? [];
    if (lengths.length > 1) throw new Error(`several Content-Length fields: ${lengths.join(", ")}`);
    const length = status < 200 || options.headRequest === true ? 0 : Number(lengths[0] ?? "0");
    if (!Number.isSafeInteger(length) || length < 0) throw new Error(`bad Content-Length ${lengths[0]}`);
    if (rest.length < end + 4 + length) break;
    responses.push({
      status,
      reason: statusLine[2] ?? "",
      headers,
      body: rest.subarray(end + 4, end + 4 + length),
    });
    rest = rest.subarray(end + 4 + length);
  }
  return { responses, rest };
}

/** The first value of header `name` (lower case) of `response`. */
export function header(response: ParsedResponse, name: string): string | undefined {
  return response.headers[name]?.[0];
}

/** RFC 9110 §5.6.7 IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`. */
export const IMF_FIXDATE =
  /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\d{2}) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) (\d{4}) (\d{2}):(\d{2}):(\d{2}) GMT$/;

/**
 * Whether `value` is an IMF-fixdate within `slackS` seconds of this machine's clock (the
 * weekday matching the date); the reason when it is not.
 */
export function checkDate(value: string | undefined, slackS = 10): string | undefined {
  if (value === undefined) return "no Date header";
  const m = IMF_FIXDATE.exec(value);
  if (m === null) return `Date ${JSON.stringify(value)} is not an IMF-fixdate`;
  const at = Date.parse(value);
  if (Number.isNaN(at)) return `Date ${JSON.stringify(value)} does not parse`;
  const weekday = new Date(at).toUTCString().slice(0, 3);
  if (weekday !== m[1]) return `Date ${JSON.stringify(value)}: the weekday should be ${weekday}`;
  if (Math.abs(at - Date.now()) > slackS * 1000)
    return `Date ${JSON.stringify(value)} is more than ${slackS} s from now`;
  return undefined;
}
