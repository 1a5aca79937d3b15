/**
 * A raw HTTP/1.1 client on one TCP connection, to see what a browser hides: several requests
 * on one socket (keep-alive), several in one write (pipelining), and who closes when.
 */
import net from "node:net";
import { InputSignal, type LoopbackHost } from "./net.js";

export interface HttpResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

const MAX_RESPONSE_BYTES = 1 << 20;

export class HttpConnection {
  private buffer = Buffer.alloc(0);
  private closed = false;
  private error: Error | undefined;
  private readonly input = new InputSignal();

  private constructor(private readonly socket: net.Socket) {
    socket.on("data", (chunk: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, chunk]);
      this.input.wake();
    });
    socket.on("end", () => {
      this.closed = true;
      this.input.wake();
    });
    socket.on("close", () => {
      this.closed = true;
      this.input.wake();
    });
    socket.on("error", (error) => {
      this.error = error;
      this.input.wake();
    });
  }

  static async open(host: LoopbackHost, port: number, timeoutMs: number): Promise<HttpConnection> {
    const socket = net.connect({ host, port });
    await withTimeout(
      new Promise<void>((resolve, reject) => {
        socket.once("connect", resolve);
        socket.once("error", reject);
      }),
      timeoutMs,
      `connect to ${host}:${port}`,
    ).catch((error: unknown) => {
      socket.destroy();
      throw error;
    });
    return new HttpConnection(socket);
  }

  write(text: string) {
    this.socket.write(text);
  }

  /** Reads one complete response (status line, headers, Content-Length body). */
  async readResponse(timeoutMs: number): Promise<HttpResponse> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const response = this.takeResponse();
      if (response !== undefined) return response;
      if (this.error !== undefined) throw this.error;
      if (this.closed)
        throw new Error(
          `connection closed before a full response (${this.buffer.length} bytes pending)`,
        );
      if (this.buffer.length > MAX_RESPONSE_BYTES) throw new Error("response larger than 1 MiB");
      await this.input.next(deadline, "a response");
    }
  }

  /** Resolves when the server has closed the connection (reads nothing else). */
  async waitForClose(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed) {
      if (this.error !== undefined) return;
      await this.input.next(deadline, "the server to close");
    }
  }

  /** Bytes received and not yet parsed as a response. */
  pendingBytes(): number {
    return this.buffer.length;
  }

  close() {
    this.socket.destroy();
  }

  private takeResponse(): HttpResponse | undefined {
    const end = this.buffer.indexOf("\r\n\r\n");
    if (end < 0) return undefined;
    const head = this.buffer.subarray(0, end).toString("latin1").split("\r\n");
    const status = /^HTTP\/1\.1 (\d{3}) /.exec(head[0] ?? "");
    if (status === null) throw new Error(`not an HTTP/1.1 status line: ${JSON.stringify(head[0])}`);
    const headers: Record<string, string> = {};
    for (const line of head.slice(1)) {
      const colon = line.indexOf(":");
      if (colon > 0)
        headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    const length = Number(headers["content-length"] ?? "0");
    if (!Number.isInteger(length) || length < 0)
      throw new Error(`bad Content-Length ${headers["content-length"]}`);
    if (this.buffer.length < end + 4 + length) return undefined;
    const body = this.buffer.subarray(end + 4, end + 4 + length).toString("utf8");
    this.buffer = this.buffer.subarray(end + 4 + length);
    return { status: Number(status[1]), headers, body };
  }
}

export function httpGet(
  path: string,
  host: string,
  extraHeaders: Record<string, string> = {},
): string {
  const lines = [`GET ${path} HTTP/1.1`, `Host: ${host}`];
  for (const [name, value] of Object.entries(extraHeaders)) lines.push(`${name}: ${value}`);
  return `${lines.join("\r\n")}\r\n\r\n`;
}

async function withTimeout<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`timed out: ${what} (${timeoutMs} ms)`)),
          timeoutMs,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
