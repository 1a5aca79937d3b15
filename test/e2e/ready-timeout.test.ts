/**
 * `--ready-timeout` (`readyTimeoutMs`): how long a new generation's workers may take to say
 * ready. The service's datagram module (test/e2e/fixtures/slowinit.zig) makes each worker's
 * start last as many milliseconds as a file says, read anew by every worker, so the test sets
 * how slow each generation is. On the newest release of the matrix: the limit is the
 * supervisor's core and loop, the same code on every release (the simulator draws it too).
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { udpExchange } from "./support/net.js";
import {
  Program,
  READY_TIMEOUT_MS,
  STOP_TIMEOUT_MS,
  portOf,
  stopAllPrograms,
  type ReadyEvent,
  type ServiceEvent,
} from "./support/program.js";
import { binaryOf } from "./support/supervised.js";
import { FULL_MATRIX_VERSIONS, newestOf } from "./support/zig.js";

const VERSION = newestOf(FULL_MATRIX_VERSIONS)!;
const TEST_TIMEOUT_MS = 60_000;
const SETUP_TIMEOUT_MS = 15 * 60_000;
const LIMIT_MS = 1_000;

interface ErrorEvent extends ServiceEvent {
  readonly message: string;
  readonly generation?: number;
  readonly serving_generation?: number;
}

describe(`zig ${VERSION}: --ready-timeout`, () => {
  let binary: string;
  let dir: string;
  let delayFile: string;

  beforeAll(async () => {
    binary = await binaryOf("slow-init", VERSION);
    dir = mkdtempSync(path.join(os.tmpdir(), "ready-timeout-"));
    delayFile = path.join(dir, "init-ms");
  }, SETUP_TIMEOUT_MS);

  afterEach(async () => {
    await stopAllPrograms();
  });

  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  /** Workers started from now on take `ms` to say ready. */
  const initTakes = (ms: number) => writeFileSync(delayFile, `${ms}\n`);

  const start = (limitMs: number) =>
    Program.start(
      binary,
      ["--ready-timeout", String(limitMs), "--listen", "echo=127.0.0.1:0"],
      { SLOW_INIT_FILE: delayFile },
    );

  it("stops a start whose workers are not ready in time: exit 1, and an error naming it", {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    initTakes(4 * LIMIT_MS);
    const program = start(LIMIT_MS);
    const exit = await program.exited;
    expect(exit.code).toBe(1);
    const error = program.find<ErrorEvent>("error");
    expect(error?.message).toMatch(/generation 1 did not start \(workers not ready in time/);
    expect(program.find("ready")).toBeUndefined();
  });

  it("starts and serves when the workers take 1 s of a 4 s limit", {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    initTakes(LIMIT_MS);
    const program = start(4 * LIMIT_MS);
    const ready = await program.waitForEvent<ReadyEvent>("ready", READY_TIMEOUT_MS);
    const reply = await udpExchange("127.0.0.1", portOf(ready, "echo"), "hello", {
      timeoutMs: 2_000,
    });
    expect(reply.toString()).toBe("hello");
    program.signal("SIGTERM");
    expect((await program.exited).code).toBe(0);
  });

  it("abandons a restart whose workers are too slow, keeps serving, and takes a later one", {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    initTakes(0);
    const program = start(LIMIT_MS);
    const ready = await program.waitForEvent<ReadyEvent>("ready", READY_TIMEOUT_MS);
    const port = portOf(ready, "echo");
    initTakes(4 * LIMIT_MS);
    program.signal("SIGHUP");
    const failed = await program.waitForEvent<ErrorEvent>("error", 4 * LIMIT_MS + 5_000);
    expect(failed.message).toMatch(/generation 2 did not start \(workers not ready in time/);
    expect(failed.serving_generation).toBe(1);
    // Generation 1 still serves.
    const during = await udpExchange("127.0.0.1", port, "still", { timeoutMs: 2_000 });
    expect(during.toString()).toBe("still");
    initTakes(LIMIT_MS / 4);
    program.signal("SIGHUP");
    const next = await program.waitForEvent<ReadyEvent>(
      "ready",
      READY_TIMEOUT_MS,
      (e) => e.generation > 1,
    );
    expect(next.generation).toBeGreaterThan(1);
    const after = await udpExchange("127.0.0.1", port, "again", { timeoutMs: 2_000 });
    expect(after.toString()).toBe("again");
    program.signal("SIGTERM");
    expect((await program.exited).code).toBe(0);
  });
});
