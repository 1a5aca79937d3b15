/**
 * Clients that keep a service busy while something happens to it (an upgrade), and remember
 * every failure: whoami connections one after another, one HTTP keep-alive connection (a new
 * one after a `Connection: close` answer, as a client does), and numbered UDP echo datagrams
 * one at a time. Each loop runs until `stop()`, bounded by a deadline too.
 */
import dgram from "node:dgram";
import { httpGet, HttpConnection } from "./http.js";
import { parseWhoami, tcpExchange } from "./net.js";

const HOST = "127.0.0.1";
const REQUEST_TIMEOUT_MS = 3_000;
/** No loop runs longer than this, whatever the test does. */
const MAX_RUN_MS = 120_000;

export interface LoadPorts {
  readonly who: number;
  readonly web?: number;
  readonly uecho?: number;
}

export interface LoadResult {
  readonly whoami: number;
  readonly http: number;
  readonly datagrams: number;
  /** Every failure, described ("whoami: ECONNRESET …"). */
  readonly failures: readonly string[];
  /** The generations and pids that answered whoami. */
  readonly generations: ReadonlySet<number>;
  readonly pids: ReadonlySet<number>;
}

export class ClientLoad {
  private stopped = false;
  private readonly deadline = Date.now() + MAX_RUN_MS;
  private readonly loops: Promise<void>[] = [];
  private readonly failures: string[] = [];
  private readonly generations = new Set<number>();
  private readonly pids = new Set<number>();
  private counts = { whoami: 0, http: 0, datagrams: 0 };

  constructor(ports: LoadPorts, whoamiLanes = 3) {
    for (let i = 0; i < whoamiLanes; i++) this.loops.push(this.whoamiLoop(ports.who));
    if (ports.web !== undefined) this.loops.push(this.httpLoop(ports.web));
    if (ports.uecho !== undefined) this.loops.push(this.udpLoop(ports.uecho));
  }

  private running(): boolean {
    return !this.stopped && Date.now() < this.deadline;
  }

  private async whoamiLoop(port: number) {
    while (this.running()) {
      try {
        const text = await tcpExchange(HOST, port, { timeoutMs: REQUEST_TIMEOUT_MS });
        const who = parseWhoami(text.toString());
        this.generations.add(who.gen);
        this.pids.add(who.pid);
        this.counts.whoami++;
      } catch (error) {
        this.failures.push(`whoami: ${String(error)}`);
      }
    }
  }

  private async httpLoop(port: number) {
    let connection: HttpConnection | undefined;
    while (this.running()) {
      try {
        connection ??= await HttpConnection.open(HOST, port, REQUEST_TIMEOUT_MS);
        connection.write(httpGet("/", "upgrade.test"));
        const response = await connection.readResponse(REQUEST_TIMEOUT_MS);
        if (response.status !== 200) this.failures.push(`http: status ${response.status}`);
        else this.counts.http++;
        if (response.headers.connection === "close") {
          connection.close();
          connection = undefined;
        }
      } catch (error) {
        this.failures.push(`http: ${String(error)}`);
        connection?.close();
        connection = undefined;
      }
    }
    connection?.close();
  }

  private async udpLoop(port: number) {
    const socket = dgram.createSocket("udp4");
    await new Promise<void>((resolve) => socket.bind(0, HOST, resolve));
    let sequence = 0;
    try {
      while (this.running()) {
        const payload = `seq=${sequence++}`;
        const reply = await new Promise<string | undefined>((resolve) => {
          const timer = setTimeout(() => {
            socket.off("message", onMessage);
            resolve(undefined);
          }, REQUEST_TIMEOUT_MS);
          const onMessage = (message: Buffer) => {
            clearTimeout(timer);
            socket.off("message", onMessage);
            resolve(message.toString());
          };
          socket.on("message", onMessage);
          socket.send(payload, port, HOST);
        });
        if (reply === payload) this.counts.datagrams++;
        else this.failures.push(`udp: ${payload} ${reply === undefined ? "lost" : `got ${reply}`}`);
        // One datagram at a time, a few hundred a second: enough to cross every moment.
        await new Promise((r) => setTimeout(r, 2));
      }
    } finally {
      socket.close();
    }
  }

  /** Ends every loop (each finishes its request in flight) and returns what they saw. */
  async stop(): Promise<LoadResult> {
    this.stopped = true;
    await Promise.all(this.loops);
    return {
      ...this.counts,
      failures: this.failures,
      generations: this.generations,
      pids: this.pids,
    };
  }
}
