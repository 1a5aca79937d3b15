/**
 * The http handler as a client sees it on one TCP connection: keep-alive, pipelining, and
 * `Connection: close`.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HttpConnection, httpGet } from "./support/http.js";
import { portOf, startReady, stopAllPrograms } from "./support/program.js";
import { programOf } from "./support/project.js";
import { ZIG_VERSIONS } from "./support/zig.js";

const SETUP_TIMEOUT_MS = 15 * 60_000;
const TEST_TIMEOUT_MS = 30_000;
const IO_TIMEOUT_MS = 5_000;
const BODY = "Hello from gen-reuseport\n";

describe.each(ZIG_VERSIONS)("zig %s: the http example (--standalone)", (version) => {
  let port: number;
  const open = () => HttpConnection.open("127.0.0.1", port, IO_TIMEOUT_MS);

  beforeAll(async () => {
    const binary = await programOf("http", version);
    const { ready } = await startReady(binary, ["--standalone", "--listen", "api=127.0.0.1:0"]);
    port = portOf(ready, "api");
  }, SETUP_TIMEOUT_MS);

  afterAll(async () => {
    await stopAllPrograms();
  });

  it(
    "serves 5 sequential requests on one keep-alive connection",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const connection = await open();
      try {
        for (let i = 0; i < 5; i++) {
          connection.write(httpGet(`/seq/${i}`, "localhost"));
          const response = await connection.readResponse(IO_TIMEOUT_MS);
          expect(response.status).toBe(200);
          expect(response.body).toBe(BODY);
          expect(response.headers.connection ?? "keep-alive").not.toMatch(/close/i);
        }
      } finally {
        connection.close();
      }
    },
  );

  it(
    "answers 3 pipelined requests sent in one write with 3 responses, in order",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const connection = await open();
      try {
        connection.write(
          httpGet("/p/1", "localhost") +
            httpGet("/p/2", "localhost") +
            httpGet("/p/3", "localhost"),
        );
        for (let i = 0; i < 3; i++) {
          const response = await connection.readResponse(IO_TIMEOUT_MS);
          expect(response.status).toBe(200);
          expect(response.body).toBe(BODY);
        }
        expect(connection.pendingBytes()).toBe(0);
        // Still open afterwards: a fourth request on the same socket is answered too.
        connection.write(httpGet("/p/4", "localhost"));
        expect((await connection.readResponse(IO_TIMEOUT_MS)).status).toBe(200);
      } finally {
        connection.close();
      }
    },
  );

  it(
    "closes the connection after answering a request with Connection: close",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const connection = await open();
      try {
        connection.write(httpGet("/bye", "localhost", { Connection: "close" }));
        const response = await connection.readResponse(IO_TIMEOUT_MS);
        expect(response.status).toBe(200);
        expect(response.body).toBe(BODY);
        await connection.waitForClose(IO_TIMEOUT_MS);
      } finally {
        connection.close();
      }
    },
  );
});
