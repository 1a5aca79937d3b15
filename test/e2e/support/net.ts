/**
 * Loopback clients for the end-to-end tests: every operation has a timeout, every loop a
 * bound. Addresses are 127.0.0.1 or ::1 only.
 */
import dgram from "node:dgram";
import net from "node:net";

export type LoopbackHost = "127.0.0.1" | "::1";

/** A port that was free a moment ago (bound to port 0 and released). */
export async function freePort(protocol: "tcp" | "udp", host: LoopbackHost): Promise<number> {
  if (protocol === "tcp") {
    const server = net.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen({ host, port: 0, exclusive: true }, resolve);
    });
    const port = (server.address() as net.AddressInfo).port;
    await new Promise((resolve) => server.close(resolve));
    return port;
  }
  const socket = dgram.createSocket(host === "::1" ? "udp6" : "udp4");
  await new Promise<void>((resolve, reject) => {
    socket.once("error", reject);
    socket.bind(0, host, resolve);
  });
  const port = socket.address().port;
  await new Promise<void>((resolve) => socket.close(() => resolve()));
  return port;
}

export interface HeldPort {
  readonly port: number;
  release(): Promise<void>;
}

/** Binds a TCP listener the way a program unaware of SO_REUSEPORT does (Node's default). */
export async function holdTcpPort(host: LoopbackHost, port = 0): Promise<HeldPort> {
  const server = net.createServer((socket) => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host, port, exclusive: true }, resolve);
  });
  return {
    port: (server.address() as net.AddressInfo).port,
    release: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/** Binds a UDP socket without SO_REUSEPORT (and without SO_REUSEADDR). */
export async function holdUdpPort(host: LoopbackHost, port = 0): Promise<HeldPort> {
  const socket = dgram.createSocket({ type: host === "::1" ? "udp6" : "udp4", reuseAddr: false });
  await new Promise<void>((resolve, reject) => {
    socket.once("error", reject);
    socket.bind(port, host, resolve);
  });
  return {
    port: socket.address().port,
    release: () => new Promise((resolve) => socket.close(() => resolve())),
  };
}

export interface TcpExchange {
  /** Bytes to send after connecting. */
  readonly send?: string | Buffer;
  /** Half-close (FIN) after sending, so that an echo server ends the stream. */
  readonly endAfterSend?: boolean;
  readonly timeoutMs: number;
}

/** Connects, optionally sends, and reads until the server closes; rejects on timeout. */
export function tcpExchange(
  host: LoopbackHost,
  port: number,
  options: TcpExchange,
): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = net.connect({ host, port });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(
        new Error(
          `tcp ${host}:${port}: no close within ${options.timeoutMs} ms (got ${JSON.stringify(Buffer.concat(chunks).toString())})`,
        ),
      );
    }, options.timeoutMs);
    socket.on("connect", () => {
      if (options.send !== undefined) socket.write(options.send);
      if (options.endAfterSend === true) socket.end();
    });
    socket.on("data", (chunk: Buffer) => chunks.push(chunk));
    socket.on("error", (error) => {
      clearTimeout(timer);
      socket.destroy();
      reject(new Error(`tcp ${host}:${port}: ${error.message}`));
    });
    socket.on("end", () => {
      socket.end();
    });
    socket.on("close", (hadError) => {
      clearTimeout(timer);
      if (!hadError) resolve(Buffer.concat(chunks));
    });
  });
}

/** One datagram out, one back; retried (bounded) because UDP may drop even on loopback. */
export async function udpExchange(
  host: LoopbackHost,
  port: number,
  payload: string | Buffer,
  options: { timeoutMs: number; attempts?: number },
): Promise<Buffer> {
  const attempts = options.attempts ?? 3;
  const socket = dgram.createSocket(host === "::1" ? "udp6" : "udp4");
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once("error", reject);
      socket.bind(0, host, resolve);
    });
    for (let attempt = 1; attempt <= attempts; attempt++) {
      const reply = await new Promise<Buffer | undefined>((resolve, reject) => {
        const timer = setTimeout(() => {
          socket.off("message", onMessage);
          resolve(undefined);
        }, options.timeoutMs);
        const onMessage = (message: Buffer) => {
          clearTimeout(timer);
          resolve(message);
        };
        socket.once("message", onMessage);
        socket.send(payload, port, host, (error) => {
          if (error) {
            clearTimeout(timer);
            reject(error);
          }
        });
      });
      if (reply !== undefined) return reply;
    }
    throw new Error(
      `udp ${host}:${port}: no answer in ${attempts} attempts of ${options.timeoutMs} ms`,
    );
  } finally {
    socket.close();
  }
}

/** Runs `count` tasks, at most `concurrency` at once; returns every outcome in order. */
export async function runBounded<T>(
  count: number,
  concurrency: number,
  task: (i: number) => Promise<T>,
): Promise<PromiseSettledResult<T>[]> {
  const results: PromiseSettledResult<T>[] = new Array(count);
  let next = 0;
  const lane = async () => {
    while (next < count) {
      const i = next++;
      try {
        results[i] = { status: "fulfilled", value: await task(i) };
      } catch (reason) {
        results[i] = { status: "rejected", reason };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, lane));
  return results;
}

/** `worker=<index> pid=<pid> gen=<generation>` → its numbers; throws on anything else. */
export function parseWhoami(text: string): { worker: number; pid: number; gen: number } {
  const match = /^worker=(\d+) pid=(\d+) gen=(\d+)\n$/.exec(text);
  if (match === null) throw new Error(`not a whoami line: ${JSON.stringify(text)}`);
  return { worker: Number(match[1]), pid: Number(match[2]), gen: Number(match[3]) };
}

/**
 * Lets a client that buffers socket events wait for the next one: `wake()` from the socket's
 * handlers, `next(deadline, what)` from the reader, which rejects once the deadline passes.
 */
export class InputSignal {
  private waiter: (() => void) | undefined;

  wake(): void {
    this.waiter?.();
  }

  next(deadline: number, what: string): Promise<void> {
    const left = deadline - Date.now();
    if (left <= 0) return Promise.reject(new Error(`timed out waiting for ${what}`));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        reject(new Error(`timed out waiting for ${what}`));
      }, left);
      this.waiter = () => {
        clearTimeout(timer);
        this.waiter = undefined;
        resolve();
      };
    });
  }
}
