// The soak's clients beyond bench/load.mjs (which brings whoami connections, HTTP keep-alive
// and UDP echo): HTTP one request per connection, long polls on the notes module
// (`GET /notes/:id/changes`, a held request) and RESP sessions on the resp module (a stream).
// Every failure goes to `onFailure(kind, error, { localPort, startedAt })`; nothing retries
// behind the soak's back.
import net from "node:net";

const HOST = "127.0.0.1";
const TIMEOUT_MS = 3000;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const failure = (code, message) => Object.assign(new Error(message), { code });

/** One TCP connection read through a parser: `read(parse)` waits for one whole message. */
class Wire {
  constructor(port) {
    this.socket = net.connect({ host: HOST, port });
    this.openedAt = Date.now();
    this.buffer = Buffer.alloc(0);
    this.error = null;
    this.ended = false;
    this.wake = null;
    this.socket.on("connect", () => (this.localPort = this.socket.localPort));
    this.socket.on("data", (chunk) => {
      this.buffer = Buffer.concat([this.buffer, chunk]);
      this.wake?.();
    });
    this.socket.on("error", (err) => {
      this.error = err;
      this.wake?.();
    });
    this.socket.on("end", () => {
      this.ended = true;
      this.wake?.();
    });
    this.socket.on("close", () => {
      this.ended = true;
      this.wake?.();
    });
  }

  write(text) {
    this.socket.write(text);
  }

  /** Resolves with `parse`'s value once it finds a whole message; EOF, error and timeout throw. */
  async read(parse, timeoutMs = TIMEOUT_MS) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = parse(this.buffer);
      if (found !== undefined) {
        this.buffer = this.buffer.subarray(found.used);
        return found.value;
      }
      if (this.error) throw this.error;
      if (this.ended) throw failure("EOF", "closed before the answer");
      const left = deadline - Date.now();
      if (left <= 0) throw failure("ETIMEDOUT", `no answer in ${timeoutMs} ms`);
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(timer);
          this.wake = null;
          resolve();
        };
      });
    }
  }

  close() {
    this.socket.destroy();
  }
}

/** An HTTP/1.1 response framed by Content-Length (what these routes send). */
function parseHttp(buffer) {
  const headEnd = buffer.indexOf("\r\n\r\n");
  if (headEnd < 0) return undefined;
  const head = buffer.subarray(0, headEnd).toString("latin1");
  const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
  const total = headEnd + 4 + length;
  if (buffer.length < total) return undefined;
  const status = Number(/^HTTP\/1\.[01] (\d{3}) /.exec(head)?.[1] ?? 0);
  const close = /\r\nconnection: *close/i.test(head);
  const body = buffer.subarray(headEnd + 4, total).toString("utf8");
  return { used: total, value: { status, close, body } };
}

/** One RESP reply: a simple string, error, integer or bulk string. */
function parseResp(buffer) {
  const lineEnd = buffer.indexOf("\r\n");
  if (lineEnd < 0) return undefined;
  const line = buffer.subarray(0, lineEnd).toString("latin1");
  if (line[0] !== "$") return { used: lineEnd + 2, value: line };
  const length = Number(line.slice(1));
  if (length < 0) return { used: lineEnd + 2, value: null };
  const total = lineEnd + 2 + length + 2;
  if (buffer.length < total) return undefined;
  return { used: total, value: buffer.subarray(lineEnd + 2, lineEnd + 2 + length).toString() };
}

const resp = (...parts) =>
  `*${parts.length}\r\n${parts.map((p) => `$${Buffer.byteLength(p)}\r\n${p}\r\n`).join("")}`;

/** Starts the loops; `stop()` ends them and resolves once each has finished its request. */
export function startAppClients(
  ports,
  { oneShot = 2, polls = 3, streams = 2, onFailure = () => {} } = {},
) {
  const counts = {
    httpOneShot: 0,
    pollChanged: 0,
    pollQuiet: 0,
    pollPuts: 0,
    streamCommands: 0,
    streamSessions: 0,
  };
  let stopped = false;
  const fail = (kind, err, wire) =>
    onFailure(kind, err, { localPort: wire?.localPort, startedAt: wire?.openedAt });

  async function oneShotLoop() {
    while (!stopped) {
      const wire = new Wire(ports.web);
      try {
        wire.write("GET / HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n");
        const { status } = await wire.read(parseHttp);
        if (status !== 200) throw failure("STATUS", `status ${status}`);
        counts.httpOneShot += 1;
      } catch (err) {
        fail("http-one-shot", err, wire);
      } finally {
        wire.close();
      }
    }
  }

  // A long poll on one keep-alive connection: every fourth turn PUTs the note (the next poll
  // answers at once with the new version), the others wait 200–1500 ms for a change that does
  // not come (204 when the wait ends, or at once when the worker drains, with Connection: close).
  async function pollLoop(lane) {
    const id = 100 + lane;
    let wire = null;
    let version = 0;
    for (let turn = 0; !stopped; turn += 1) {
      wire ??= new Wire(ports.notes);
      try {
        let answer;
        if (turn % 4 === 0) {
          const body = `{"lane":${lane},"turn":${turn}}`;
          wire.write(
            `PUT /notes/${id} HTTP/1.1\r\nHost: soak\r\nContent-Type: application/json\r\n` +
              `Content-Length: ${body.length}\r\n\r\n${body}`,
          );
          answer = await wire.read(parseHttp);
          if (answer.status !== 200 && answer.status !== 201)
            throw failure("STATUS", `PUT: status ${answer.status}`);
          counts.pollPuts += 1;
        } else {
          const waitMs = 200 + ((turn * 337) % 1300);
          const sent = Date.now();
          wire.write(
            `GET /notes/${id}/changes?after=${version}&wait=${waitMs} HTTP/1.1\r\nHost: soak\r\n\r\n`,
          );
          answer = await wire.read(parseHttp, waitMs + TIMEOUT_MS);
          const took = Date.now() - sent;
          if (answer.status === 200) {
            version = JSON.parse(answer.body).version;
            counts.pollChanged += 1;
          } else if (answer.status === 204) {
            // Early only when the worker drains, which says Connection: close.
            if (took < waitMs - 100 && !answer.close)
              throw failure("EARLY", `204 after ${took} ms of a ${waitMs} ms wait`);
            counts.pollQuiet += 1;
          } else {
            throw failure("STATUS", `poll: status ${answer.status}`);
          }
        }
        if (answer.close) {
          wire.close();
          wire = null;
          version = 0;
        }
      } catch (err) {
        fail("long-poll", err, wire);
        wire.close();
        wire = null;
        version = 0;
      }
    }
    wire?.close();
  }

  // RESP sessions shorter than the drain timeout: a stream has no way to tell its client to
  // reconnect, so a session still open at the drain deadline is closed (see docs/development.md).
  async function streamLoop(lane) {
    for (let session = 0; !stopped; session += 1) {
      const wire = new Wire(ports.cache);
      const key = `soak:${lane}`;
      let value = null;
      // The counter lives on whichever worker holds the session: each INCR adds one to the
      // answer before it in the session.
      let counter = null;
      try {
        const commands = 3 + (session % 10);
        for (let i = 0; i < commands; i += 1) {
          let expected;
          switch (i % 4) {
            case 0:
              wire.write(resp("PING"));
              expected = "+PONG";
              break;
            case 1:
              value = `v${session}.${i}`;
              wire.write(resp("SET", key, value));
              expected = "+OK";
              break;
            case 2:
              wire.write(resp("GET", key));
              expected = value;
              break;
            default:
              wire.write(resp("INCR", `${key}:n`));
              expected = counter === null ? undefined : `:${counter + 1}`;
          }
          const got = await wire.read(parseResp);
          if (i % 4 === 3 && /^:\d+$/.test(got)) {
            expected ??= got;
            counter = Number(got.slice(1));
          }
          if (got !== expected)
            throw failure(
              "ANSWER",
              `expected ${JSON.stringify(expected)}, got ${JSON.stringify(got)}`,
            );
          counts.streamCommands += 1;
          await sleep(10 + ((session + i) % 40));
        }
        wire.write(resp("QUIT"));
        const bye = await wire.read(parseResp);
        if (bye !== "+OK") throw failure("ANSWER", `QUIT: got ${JSON.stringify(bye)}`);
        counts.streamSessions += 1;
      } catch (err) {
        fail("stream", err, wire);
      } finally {
        wire.close();
      }
    }
  }

  const loops = [];
  for (let i = 0; i < oneShot; i += 1) loops.push(oneShotLoop());
  for (let i = 0; i < polls; i += 1) loops.push(pollLoop(i));
  for (let i = 0; i < streams; i += 1) loops.push(streamLoop(i));
  return {
    counts,
    async stop() {
      stopped = true;
      await Promise.all(loops);
      return counts;
    },
  };
}

/** One whoami connection to `port`: resolves with the line, or rejects (ECONNREFUSED, …). */
export async function whoamiProbe(port) {
  const wire = new Wire(port);
  try {
    return await wire.read((b) =>
      b.includes("\n") ? { used: b.length, value: b.toString() } : undefined,
    );
  } finally {
    wire.close();
  }
}
