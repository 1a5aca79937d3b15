/**
 * A program's identity: its spec fingerprint and its supervisor fingerprint (the generator
 * version and the supervisor's sources). `--fingerprint` prints both and `ready` reports them.
 * A SIGHUP asks the binary on disk for its identity first: when it differs, the whole program
 * is upgraded (upgrade.test.ts). Workers check it again, so that a binary replaced between
 * that question and their start (here: one that answers it with this program's identity)
 * refuses to serve, saying which part differs, while the serving generation goes on.
 */
import { spawnSync } from "node:child_process";
import { chmod, copyFile, mkdtemp, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { parseWhoami, tcpExchange } from "./support/net.js";
import {
  portOf,
  READY_TIMEOUT_MS,
  startReady,
  STOP_TIMEOUT_MS,
  stopAllPrograms,
  type ReadyEvent,
  type ServiceEvent,
} from "./support/program.js";
import {
  ANY_LOOPBACK_PORT,
  binaryOf,
  OTHER_SUPERVISOR_FINGERPRINT,
  UPGRADE_ANY_LOOPBACK_PORT,
  UPGRADE_SERVICE,
  upgradeBinaryOf,
} from "./support/supervised.js";
import { FULL_MATRIX_VERSIONS } from "./support/zig.js";

const SETUP_TIMEOUT_MS = 15 * 60_000;
const TEST_TIMEOUT_MS = 60_000;
const HOST = "127.0.0.1";

interface IdentityReady extends ReadyEvent {
  readonly spec_fingerprint: string;
  readonly supervisor_fingerprint: string;
}

interface ErrorEvent extends ServiceEvent {
  readonly message: string;
  readonly generation?: number;
  readonly serving_generation?: number;
}

function fingerprintOf(binary: string): { spec: string; supervisor: string } {
  const run = spawnSync(binary, ["--fingerprint"], { encoding: "utf8", timeout: 10_000 });
  expect(run.status, run.stderr).toBe(0);
  const match = /^spec=([0-9a-f]{16}) supervisor=([0-9a-f]{16})\n$/.exec(run.stdout);
  if (match === null) throw new Error(`not an identity line: ${JSON.stringify(run.stdout)}`);
  return { spec: match[1]!, supervisor: match[2]! };
}

describe.each(FULL_MATRIX_VERSIONS)("zig %s", (version) => {
  let binary: string;
  let scratch: string;

  beforeAll(async () => {
    binary = await binaryOf("supervised", version);
    scratch = await mkdtemp(path.join(tmpdir(), "gen-reuseport-identity-"));
  }, SETUP_TIMEOUT_MS);

  afterEach(async () => {
    await stopAllPrograms();
  });

  afterAll(async () => {
    if (scratch !== undefined) await rm(scratch, { recursive: true, force: true });
  });

  it(
    "prints its identity with --fingerprint and reports it in ready",
    { timeout: SETUP_TIMEOUT_MS },
    async () => {
      const own = fingerprintOf(binary);
      const other = fingerprintOf(await binaryOf("restart-bench", version));
      // Another spec, the same generator: only the spec part differs.
      expect(other.spec).not.toBe(own.spec);
      expect(other.supervisor).toBe(own.supervisor);
      const { program, ready } = await startReady(binary, ["--workers", "1", ...ANY_LOOPBACK_PORT]);
      const identity = ready as IdentityReady;
      expect(identity.spec_fingerprint).toBe(own.spec);
      expect(identity.supervisor_fingerprint).toBe(own.supervisor);
      program.signal("SIGTERM");
      expect((await program.waitForExit(STOP_TIMEOUT_MS)).code).toBe(0);
    },
  );

  it(
    "a worker from a binary with another supervisor refuses to serve, and generation 1 goes on",
    { timeout: SETUP_TIMEOUT_MS },
    async () => {
      // The upgrade tests' base service, and the same spec built with a supervisor fingerprint
      // no generator produces (both built once per run for upgrade.test.ts too). Every
      // listener on a port the kernel picks: also `gone` and `moved`, whose spec ports are
      // upgrade.test.ts's.
      const base = await upgradeBinaryOf("base", version);
      const foreign = await upgradeBinaryOf("other-supervisor", version);
      expect(fingerprintOf(foreign).spec).toBe(fingerprintOf(base).spec);
      expect(fingerprintOf(foreign).supervisor).not.toBe(fingerprintOf(base).supervisor);
      const dir = await mkdtemp(path.join(scratch, "other-supervisor-"));
      const copy = path.join(dir, UPGRADE_SERVICE);
      await copyFile(base, copy);
      await chmod(copy, 0o755);
      const listen = [...UPGRADE_ANY_LOOPBACK_PORT, ...["gone", "moved"].flatMap((name) => [
        "--listen",
        `${name}=127.0.0.1:0`,
      ])];
      const { program, ready } = await startReady(copy, ["--workers", "2", ...listen]);
      // Asked for its identity, the binary on disk gives this program's; started as a
      // worker, it is the other supervisor's build.
      const script =
        `#!/bin/sh\nif [ "$1" = --fingerprint ]; then exec '${base}' --fingerprint; fi\n` +
        `exec '${foreign}' "$@"\n`;
      await writeFile(`${copy}.new`, script, { mode: 0o755 });
      await rename(`${copy}.new`, copy);
      program.signal("SIGHUP");
      const error = await program.waitForEvent<ErrorEvent>("error", READY_TIMEOUT_MS);
      expect(error).toMatchObject({ generation: 2, serving_generation: 1 });
      expect(error.message).toMatch(/the binary on disk has another supervisor/);
      expect(error.message).toContain(`-${OTHER_SUPERVISOR_FINGERPRINT}`);
      for (let i = 0; i < 10; i++) {
        const text = await tcpExchange(HOST, portOf(ready, "who"), { timeoutMs: 5_000 });
        expect(parseWhoami(text.toString()).gen).toBe(1);
      }
      expect(program.events.filter((e) => e.event === "ready")).toHaveLength(1);
      program.signal("SIGTERM");
      expect((await program.waitForExit(STOP_TIMEOUT_MS)).code).toBe(0);
    },
  );
});
