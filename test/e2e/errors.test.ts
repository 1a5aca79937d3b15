/**
 * Failures a user meets: a port held by a socket without SO_REUSEPORT, usage errors, and a
 * Zig the generator does not support.
 */
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { execa } from "execa";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { PACKAGE_ROOT } from "../../src/index.js";
import { holdTcpPort, holdUdpPort, type HeldPort } from "./support/net.js";
import { Program, stopAllPrograms, STOP_TIMEOUT_MS } from "./support/program.js";
import { programOf } from "./support/project.js";
import { ZIG_VERSIONS } from "./support/zig.js";

const TEST_TIMEOUT_MS = 15 * 60_000;

describe.each(ZIG_VERSIONS)("zig %s", (version) => {
  const held: HeldPort[] = [];

  afterEach(async () => {
    await Promise.all(held.splice(0).map((h) => h.release()));
    await stopAllPrograms();
  });

  async function expectRefusedPort(binary: string, listen: string, listener: string) {
    const program = Program.start(binary, ["--standalone", "--listen", listen]);
    const exit = await program.waitForExit(STOP_TIMEOUT_MS);
    expect(exit, program.stderr).toEqual({ code: 1, signal: null });
    expect(program.stderr).toContain("SO_REUSEPORT");
    expect(program.stderr).toContain(listener);
    expect(program.find("error")).toMatchObject({ event: "error", listener });
    expect(program.find("ready")).toBeUndefined();
  }

  it(
    "exits 1 with an error event and a stderr line naming SO_REUSEPORT when a plain TCP socket holds the port",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const binary = await programOf("http", version);
      const port = await holdTcpPort("127.0.0.1");
      held.push(port);
      await expectRefusedPort(binary, `api=127.0.0.1:${port.port}`, "api");
    },
  );

  it(
    "exits 1 the same way when a plain UDP socket holds the port",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const binary = await programOf("udp", version);
      const port = await holdUdpPort("127.0.0.1");
      held.push(port);
      await expectRefusedPort(binary, `echo=127.0.0.1:${port.port}`, "echo");
    },
  );

  it(
    "exits 2 on an unknown flag, with the flag in its message",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const binary = await programOf("http", version);
      const program = Program.start(binary, ["--bogus"]);
      expect(await program.waitForExit(STOP_TIMEOUT_MS)).toEqual({ code: 2, signal: null });
      expect(program.stderr).toContain("--bogus");
      expect(program.events).toEqual([]);
    },
  );

  it("prints its version and help and exits 0", { timeout: TEST_TIMEOUT_MS }, async () => {
    const binary = await programOf("http", version);
    const versionRun = await execa(binary, ["--version"], { reject: false, timeout: 5_000 });
    expect(versionRun.exitCode).toBe(0);
    expect(versionRun.stdout).toBe("http-hello 0.1.0");
    const helpRun = await execa(binary, ["--help"], { reject: false, timeout: 5_000 });
    expect(helpRun.exitCode).toBe(0);
    expect(helpRun.stdout).toContain("--standalone");
  });
});

describe("the generator with an unsupported zig", () => {
  let dir: string;

  afterAll(async () => {
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it(
    "refuses --zig naming a Zig 0.12.0 with exit 3 and one line",
    { timeout: 60_000 },
    async () => {
      dir = await mkdtemp(path.join(tmpdir(), "gen-reuseport-e2e-zig-"));
      const fake = path.join(dir, "zig");
      await writeFile(
        fake,
        '#!/bin/sh\nif [ "$1" = version ]; then echo 0.12.0; exit 0; fi\nexit 9\n',
      );
      await chmod(fake, 0o755);
      const result = await execa(
        process.execPath,
        [
          path.join(PACKAGE_ROOT, "bin", "gen-reuseport.js"),
          path.join(PACKAGE_ROOT, "examples", "http.json"),
          "--out",
          path.join(dir, "out"),
          "--build",
          "--zig",
          fake,
        ],
        { reject: false, timeout: 30_000, cwd: dir, stdin: "ignore" },
      );
      expect(result.exitCode).toBe(3);
      const lines = result.stderr.trim().split("\n");
      expect(lines, result.stderr).toHaveLength(1);
      expect(lines[0]).toContain("0.12.0");
      expect(lines[0]).toMatch(/not supported/);
    },
  );
});
