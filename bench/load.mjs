// Load generator for restart measurements: three kinds of traffic at once, every failure
// classified. Used by bench/restart.mjs (and through it by the end-to-end restart tests).
//
//   tcp:  a new connection per request to a `whoami` listener (connect, read to EOF)
//   http: a pool of keep-alive connections to an `http` listener, one request at a time
//   udp:  sequence-numbered datagrams to a UDP `echo` listener, a bounded window in flight
//
// Every response is tagged with who served it (whoami line), so the spread over workers
// and generations can be counted. An `onFailure(kind, error, detail)` option hears every
// failure as it happens, with what a caller needs to explain it (bench/soak.mjs): the
// client's local port of a TCP connection (`localPort`, undefined when it never connected),
// when the request or connection began (`startedAt`, ms since the epoch) and, for UDP, the
// datagram's send time (`sentAt`).
import net from "node:net";
import dgram from "node:dgram";

const TIMEOUT_MS = 3000;

export function newStats() {
  return {
    tcp: { ok: 0, refused: 0, reset: 0, timeout: 0, eof: 0, other: 0 },
    http: { ok: 0, reconnects: 0, refused: 0, reset: 0, timeout: 0, eof: 0, other: 0 },
    udp: { sent: 0, received: 0, lost: 0, duplicate: 0 },
    byWorker: new Map(), // "index" -> connections (tcp whoami)
    byGeneration: new Map(),
    errors: [], // first few error messages, for diagnosis
  };
}

function classify(err) {
  switch (err?.code) {
    case "ECONNREFUSED":
      return "refused";
    case "ECONNRESET":
    case "EPIPE":
      return "reset";
    case "ETIMEDOUT":
      return "timeout";
    default:
      return "other";
  }
}

function noteError(stats, kind, err) {
  if (stats.errors.length < 20)
    stats.errors.push(`${kind}: ${err?.code ?? ""} ${err?.message ?? err}`);
}

/** One whoami connection: resolves with the line, or rejects with a classified error. */
function whoamiOnce(host, port) {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port });
    let data = "";
    let settled = false;
    let localPort;
    socket.on("connect", () => (localPort = socket.localPort));
    const done = (fn, value) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      if (value instanceof Error) value.localPort = localPort;
      fn(value);
    };
    const timer = setTimeout(
      () => done(reject, Object.assign(new Error("timeout"), { code: "ETIMEDOUT" })),
      TIMEOUT_MS,
    );
    socket.setEncoding("utf8");
    socket.on("data", (chunk) => (data += chunk));
    socket.on("error", (err) => done(reject, err));
    socket.on("end", () => {
      if (data.endsWith("\n")) done(resolve, data);
      else done(reject, Object.assign(new Error("EOF before the whole line"), { code: "EOF" }));
    });
  });
}

function parseWhoami(line) {
  const m = /^worker=(\d+) pid=(\d+) gen=(\d+)\n$/.exec(line);
  return m ? { worker: Number(m[1]), pid: Number(m[2]), gen: Number(m[3]) } : null;
}

async function tcpLoop(ctx) {
  const { stats, target } = ctx;
  while (!ctx.stopped) {
    const startedAt = Date.now();
    try {
      const line = await whoamiOnce(target.host, target.whoamiPort);
      const who = parseWhoami(line);
      if (!who) {
        stats.tcp.other += 1;
        ctx.onFailure("tcp", new Error(`not a whoami line: ${JSON.stringify(line)}`), {
          startedAt,
        });
        continue;
      }
      stats.tcp.ok += 1;
      stats.byWorker.set(who.worker, (stats.byWorker.get(who.worker) ?? 0) + 1);
      stats.byGeneration.set(who.gen, (stats.byGeneration.get(who.gen) ?? 0) + 1);
    } catch (err) {
      const kind = err?.code === "EOF" ? "eof" : classify(err);
      stats.tcp[kind] += 1;
      noteError(stats, "tcp", err);
      ctx.onFailure("tcp", err, { localPort: err?.localPort, startedAt });
    }
  }
}

/** A keep-alive HTTP connection that sends one request at a time. */
class HttpConnection {
  constructor(host, port) {
    this.socket = net.connect({ host, port });
    this.openedAt = Date.now();
    this.socket.on("connect", () => (this.localPort = this.socket.localPort));
    this.buffer = Buffer.alloc(0);
    this.pending = null;
    this.closedByServer = false;
    this.socket.on("data", (chunk) => {
      this.buffer = Buffer.concat([this.buffer, chunk]);
      this.tryComplete();
    });
    this.socket.on("error", (err) => this.fail(err));
    this.socket.on("end", () =>
      this.fail(Object.assign(new Error("EOF before response"), { code: "EOF" })),
    );
    this.socket.on("close", () =>
      this.fail(Object.assign(new Error("closed before response"), { code: "EOF" })),
    );
  }

  request() {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => this.fail(Object.assign(new Error("timeout"), { code: "ETIMEDOUT" })),
        TIMEOUT_MS,
      );
      this.pending = { resolve, reject, timer };
      this.socket.write("GET / HTTP/1.1\r\nHost: bench\r\n\r\n");
    });
  }

  tryComplete() {
    if (!this.pending) return;
    const headEnd = this.buffer.indexOf("\r\n\r\n");
    if (headEnd < 0) return;
    const head = this.buffer.subarray(0, headEnd).toString("latin1");
    const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
    const total = headEnd + 4 + length;
    if (this.buffer.length < total) return;
    this.buffer = this.buffer.subarray(total);
    const close = /\r\nconnection: *close/i.test(head);
    const ok = head.startsWith("HTTP/1.1 200 ");
    const { resolve, timer } = this.pending;
    this.pending = null;
    clearTimeout(timer);
    resolve({ ok, close });
  }

  fail(err) {
    if (!this.pending) return;
    const { reject, timer } = this.pending;
    this.pending = null;
    clearTimeout(timer);
    reject(err);
  }

  close() {
    this.socket.destroy();
  }
}

async function httpLoop(ctx) {
  const { stats, target } = ctx;
  let conn = null;
  while (!ctx.stopped) {
    conn ??= new HttpConnection(target.host, target.httpPort);
    try {
      const { ok, close } = await conn.request();
      if (ok) stats.http.ok += 1;
      else {
        stats.http.other += 1;
        const detail = { localPort: conn.localPort, startedAt: conn.openedAt };
        ctx.onFailure("http", new Error("a status other than 200"), detail);
      }
      if (close) {
        // The server is draining and said so: a clean end of this connection, not a failure.
        conn.close();
        conn = null;
        stats.http.reconnects += 1;
      }
    } catch (err) {
      const kind = err?.code === "EOF" ? "eof" : classify(err);
      stats.http[kind] += 1;
      noteError(stats, "http", err);
      ctx.onFailure("http", err, { localPort: conn.localPort, startedAt: conn.openedAt });
      conn.close();
      conn = null;
    }
  }
  conn?.close();
}

/** UDP: keeps `window` datagrams in flight; a datagram not answered in time is lost. */
function udpLoop(ctx, window) {
  const { stats, target } = ctx;
  return new Promise((resolve) => {
    const socket = dgram.createSocket(target.host.includes(":") ? "udp6" : "udp4");
    const inFlight = new Map(); // seq -> timer
    let seq = 0;
    const sendNext = () => {
      if (ctx.stopped) return;
      const n = seq++;
      const sentAt = Date.now();
      const timer = setTimeout(() => {
        inFlight.delete(n);
        stats.udp.lost += 1;
        const err = new Error(`seq=${n} sent at ${sentAt} not answered`);
        noteError(stats, "udp", err);
        ctx.onFailure("udp", err, { sentAt });
        sendNext();
      }, TIMEOUT_MS);
      inFlight.set(n, timer);
      stats.udp.sent += 1;
      socket.send(`seq=${n}`, target.udpPort, target.host);
    };
    socket.on("message", (msg) => {
      const n = Number(/^seq=(\d+)$/.exec(msg.toString())?.[1] ?? -1);
      const timer = inFlight.get(n);
      if (timer === undefined) {
        stats.udp.duplicate += 1;
        return;
      }
      clearTimeout(timer);
      inFlight.delete(n);
      stats.udp.received += 1;
      sendNext();
    });
    socket.on("error", (err) => noteError(stats, "udp", err));
    socket.bind(0, () => {
      for (let i = 0; i < window; i += 1) sendNext();
    });
    ctx.finishUdp = () =>
      new Promise((done) => {
        // Answers still on their way get the full timeout to arrive before counting as lost.
        const check = setInterval(() => {
          if (inFlight.size === 0) {
            clearInterval(check);
            socket.close();
            done();
            resolve();
          }
        }, 20);
      });
  });
}

/**
 * Starts the load; returns { stats, stop() } where stop() ends every loop and resolves once
 * all outstanding requests have completed or timed out.
 */
export function startLoad(
  target,
  { tcpConcurrency = 8, httpConnections = 8, udpWindow = 16, onFailure = () => {} } = {},
) {
  const ctx = { stats: newStats(), target, stopped: false, finishUdp: null, onFailure };
  const loops = [];
  for (let i = 0; i < tcpConcurrency; i += 1) loops.push(tcpLoop(ctx));
  for (let i = 0; i < httpConnections; i += 1) loops.push(httpLoop(ctx));
  const udp = target.udpPort ? udpLoop(ctx, udpWindow) : Promise.resolve();
  return {
    stats: ctx.stats,
    async stop() {
      ctx.stopped = true;
      await Promise.all(loops);
      if (ctx.finishUdp) await ctx.finishUdp();
      await udp;
      return ctx.stats;
    },
  };
}

export function failureCount(stats) {
  const { tcp, http, udp } = stats;
  return (
    tcp.refused +
    tcp.reset +
    tcp.timeout +
    tcp.eof +
    tcp.other +
    http.refused +
    http.reset +
    http.timeout +
    http.eof +
    http.other +
    udp.lost
  );
}
