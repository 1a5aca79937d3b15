/**
 * A TCP echo client that keeps its connection open between exchanges, to see what a stopping
 * server does to a connection in flight. Every read has a timeout.
 */
import net from "node:net";
import { InputSignal, type LoopbackHost } from "./net.js";

export class EchoConnection {
  private received = "";
  private closed = false;
  private error: Error | undefined;
  private readonly input = new InputSignal();

  private constructor(private readonly socket: net.Socket) {
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      this.received += chunk;
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

  static open(host: LoopbackHost, port: number, timeoutMs: number): Promise<EchoConnection> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host, port });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`connect to ${host}:${port}: timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      socket.once("connect", () => {
        clearTimeout(timer);
        resolve(new EchoConnection(socket));
      });
      socket.once("error", (error) => {
        clearTimeout(timer);
        reject(error);
      });
    });
  }

  /** Sends `text` and resolves with what comes back once as many characters arrived. */
  async exchange(text: string, timeoutMs: number): Promise<string> {
    this.socket.write(text);
    const deadline = Date.now() + timeoutMs;
    while (this.received.length < text.length) {
      if (this.error !== undefined) throw this.error;
      if (this.closed)
        throw new Error(`closed by the server after ${JSON.stringify(this.received)}`);
      await this.input.next(deadline, `the echo of ${JSON.stringify(text)}`);
    }
    const reply = this.received.slice(0, text.length);
    this.received = this.received.slice(text.length);
    return reply;
  }

  /** Resolves once the connection is closed (by either side, or reset). */
  async waitForClose(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed) await this.input.next(deadline, "the connection to close");
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Half-closes: the server sees end of file and, being an echo server, closes too. */
  end() {
    this.socket.end();
  }

  destroy() {
    this.socket.destroy();
  }
}
