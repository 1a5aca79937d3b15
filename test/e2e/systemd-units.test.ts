/**
 * The systemd units a project is generated with (`systemd/<name>.service` and one
 * `systemd/<name>-<listener>.socket` per listener): `systemd-analyze verify` accepts them with
 * the built binary as ExecStart=, and the program accepts the sockets they describe, passed
 * the way systemd passes them (each socket unit's ListenStream/ListenDatagram, its
 * FileDescriptorName and ReusePort).
 */
import { spawnSync } from "node:child_process";
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startActivated, type ActivatedSocket } from "./support/activator.js";
import { freePort, parseWhoami, tcpExchange, udpExchange } from "./support/net.js";
import {
  portOf,
  READY_TIMEOUT_MS,
  STOP_TIMEOUT_MS,
  stopAllPrograms,
  type ReadyEvent,
} from "./support/program.js";
import { binaryOf, SUPERVISED_SPEC } from "./support/supervised.js";
import { ensureCommand } from "./support/tools.js";
import { FULL_MATRIX_VERSIONS } from "./support/zig.js";

const SETUP_TIMEOUT_MS = 15 * 60_000;
const TEST_TIMEOUT_MS = 60_000;
const IO_TIMEOUT_MS = 5_000;
const NAME = SUPERVISED_SPEC.name;

/**
 * Directives the generated units use that are newer than some systemd still in use, with the
 * version that introduced them: an older `systemd-analyze` warns about them, and only about
 * them.
 */
const NEWER_THAN: readonly { pattern: RegExp; since: number }[] = [
  { pattern: /Failed to parse service type, ignoring: notify-reload/, since: 253 },
  { pattern: /Unknown key 'ReloadSignal'/, since: 253 },
  { pattern: /Unknown key 'FileDescriptorStorePreserve'/, since: 254 },
];

function systemdVersion(): number {
  const analyze = ensureCommand("systemd-analyze", "systemd");
  const out = spawnSync(analyze, ["--version"], { encoding: "utf8" });
  return Number(/systemd (\d+)/.exec(out.stdout)?.[1]);
}

/** `Key=value` lines of a unit file's section-less view (every key, in order). */
function directives(text: string): [string, string][] {
  return text
    .split("\n")
    .filter((line) => /^[A-Za-z]+=/.test(line))
    .map((line) => {
      const at = line.indexOf("=");
      return [line.slice(0, at), line.slice(at + 1)];
    });
}

describe.each(FULL_MATRIX_VERSIONS)("zig %s", (version) => {
  let binary: string;
  let unitsDir: string;
  let scratch: string;

  beforeAll(async () => {
    binary = await binaryOf("supervised", version);
    unitsDir = path.join(path.dirname(path.dirname(path.dirname(binary))), "systemd");
    scratch = await mkdtemp(path.join(tmpdir(), "gen-reuseport-units-"));
  }, SETUP_TIMEOUT_MS);

  afterEach(async () => {
    await stopAllPrograms();
  });

  afterAll(async () => {
    if (scratch !== undefined) await rm(scratch, { recursive: true, force: true });
  });

  it("has a service and one socket unit per listener", async () => {
    const files = (await readdir(unitsDir)).sort();
    expect(files).toEqual(
      [
        `${NAME}.service`,
        ...SUPERVISED_SPEC.listeners.map((l) => `${NAME}-${l.name}.socket`),
      ].sort(),
    );
    const text = await readFile(path.join(unitsDir, `${NAME}.service`), "utf8");
    const service = new Map(directives(text));
    expect(service.get("Type")).toBe("notify-reload");
    expect(service.get("KillMode")).toBe("mixed");
    expect(Number(service.get("FileDescriptorStoreMax"))).toBe(
      SUPERVISED_SPEC.workers * SUPERVISED_SPEC.listeners.length,
    );
    expect(Number(service.get("TimeoutStopSec")) * 1000).toBeGreaterThan(
      SUPERVISED_SPEC.drainTimeoutMs,
    );
  });

  it(
    "passes systemd-analyze verify with the built binary as ExecStart",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const installed = systemdVersion();
      const dir = path.join(scratch, `verify-${version}`);
      await rm(dir, { recursive: true, force: true });
      await mkdir(dir, { recursive: true });
      const units: string[] = [];
      for (const file of await readdir(unitsDir)) {
        const target = path.join(dir, file);
        if (file.endsWith(".service")) {
          // Only the install path changes: verify checks that ExecStart= exists.
          const text = await readFile(path.join(unitsDir, file), "utf8");
          const placed = text.replace(`ExecStart=/usr/local/bin/${NAME}`, `ExecStart=${binary}`);
          expect(placed).not.toBe(text);
          await writeFile(target, placed);
        } else {
          await copyFile(path.join(unitsDir, file), target);
        }
        units.push(target);
      }
      const run = spawnSync("systemd-analyze", ["verify", ...units], {
        encoding: "utf8",
        timeout: 30_000,
      });
      const output = `${run.stdout}${run.stderr}`;
      expect(run.status, output).toBe(0);
      const unexplained = output
        .split("\n")
        .filter((line) => line.trim() !== "")
        .filter((line) => !NEWER_THAN.some((n) => installed < n.since && n.pattern.test(line)));
      expect(unexplained).toEqual([]);
    },
  );

  it(
    "serves the sockets its socket units describe, passed as systemd passes them",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const sockets: ActivatedSocket[] = [];
      for (const l of SUPERVISED_SPEC.listeners) {
        const unit = new Map(
          directives(await readFile(path.join(unitsDir, `${NAME}-${l.name}.socket`), "utf8")),
        );
        const listen = unit.get("ListenStream") ?? unit.get("ListenDatagram");
        expect(listen).toBe(`${l.address}:${l.port}`);
        expect(unit.get("FileDescriptorName")).toBe(l.name);
        // The unit's port may be taken on the machine running the test: a free one instead.
        sockets.push({
          name: unit.get("FileDescriptorName")!,
          protocol: unit.has("ListenStream") ? "tcp" : "udp",
          host: "127.0.0.1",
          port: await freePort(l.protocol, "127.0.0.1"),
          reusePort: unit.get("ReusePort") === "yes",
        });
      }
      const program = startActivated(binary, sockets, ["--workers", "2"]);
      const ready = await program.waitForEvent<ReadyEvent>("ready", READY_TIMEOUT_MS);
      for (const s of sockets) expect(portOf(ready, s.name)).toBe(s.port);
      const who = sockets.find((s) => s.name === "who")!;
      const text = await tcpExchange("127.0.0.1", who.port, { timeoutMs: IO_TIMEOUT_MS });
      expect(ready.workers.map((w) => w.pid)).toContain(parseWhoami(text.toString()).pid);
      const uecho = sockets.find((s) => s.name === "uecho")!;
      const reply = await udpExchange("127.0.0.1", uecho.port, "datagram", {
        timeoutMs: IO_TIMEOUT_MS,
      });
      expect(reply.toString()).toBe("datagram");
      program.signal("SIGTERM");
      expect((await program.waitForExit(STOP_TIMEOUT_MS)).code).toBe(0);
    },
  );
});
