/**
 * `"workers": "auto"` (`--workers 0`) counts the CPUs the service may really use: the smallest of
 * the CPUs online, the process's affinity mask and its cgroup's CPU quota, and the `ready` event
 * says which decided. Run with `taskset -c 0` (one CPU in the mask) and inside a cgroup this test
 * creates with a quota of half a CPU (v1 `cpu.cfs_quota_us` or v2 `cpu.max`, whichever the host
 * mounts; skipped, saying why, where the test cannot create one, e.g. without root; under
 * CI=true that fails instead).
 *
 * `--cpu-affinity` (`"cpuAffinity": true`) pins worker i to the i-th allowed CPU (read back from
 * /proc/PID/status) and steers each connection to the worker on the CPU that received it: on
 * loopback that is the client's CPU, so a client pinned with `taskset -c N` only ever reaches
 * the worker pinned to N (whoami names the pid); the same after a SIGHUP restart. It needs two
 * allowed CPUs: skipped with fewer, failed under CI=true.
 */
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { allowedCpus, whoamiFromCpu } from "./support/cpus.js";
import { parseWhoami, tcpExchange } from "./support/net.js";
import {
  portOf,
  READY_TIMEOUT_MS,
  startReady,
  STOP_TIMEOUT_MS,
  stopAllPrograms,
  type ReadyEvent,
} from "./support/program.js";
import { ANY_LOOPBACK_PORT, binaryOf } from "./support/supervised.js";
import { FULL_MATRIX_VERSIONS } from "./support/zig.js";

const BUILD_TIMEOUT_MS = 15 * 60_000;
const CPUS = availableParallelism();
const PINNED_CONNECTIONS = 10;

/** Each worker runs on its own CPU alone, and a client on that CPU reaches only that worker. */
async function expectPinnedAndSteered(ready: ReadyEvent, allowed: number[]) {
  expect(allowedCpus(ready.pid)).toEqual(allowed);
  const byCpu = new Map<number, number>();
  for (const worker of ready.workers) {
    const cpus = allowedCpus(worker.pid);
    expect(cpus, `worker ${worker.index}`).toEqual([allowed[worker.index % allowed.length]]);
    byCpu.set(cpus[0]!, worker.pid);
  }
  expect(byCpu.size).toBe(ready.workers.length);
  for (const [cpu, pid] of byCpu) {
    const answers = await whoamiFromCpu(cpu, portOf(ready, "who"), PINNED_CONNECTIONS);
    expect(answers.map((a) => a.pid), `clients on CPU ${cpu}`).toEqual(
      Array<number>(PINNED_CONNECTIONS).fill(pid),
    );
  }
}

interface AutoReady extends ReadyEvent {
  readonly workers_auto?: {
    decided_by: string;
    online_cpus: number;
    affinity: number;
    cpu_quota?: number;
  };
}

/** A cgroup with a quota of half a CPU, made for this test; null (with why) where impossible. */
function makeQuotaCgroup(): { dir: string; procs: string } | { why: string } {
  const mounts = readFileSync("/proc/self/mountinfo", "utf8").split("\n");
  const name = `gen-reuseport-test-${process.pid}`;
  try {
    for (const line of mounts) {
      const [left, right] = line.split(" - ");
      if (left === undefined || right === undefined) continue;
      const mountPoint = left.split(" ")[4]!;
      const [fstype, , superOptions] = right.split(" ");
      if (fstype === "cgroup" && superOptions?.split(",").includes("cpu")) {
        const dir = path.join(mountPoint, name);
        mkdirSync(dir);
        writeFileSync(path.join(dir, "cpu.cfs_period_us"), "100000");
        writeFileSync(path.join(dir, "cpu.cfs_quota_us"), "50000");
        return { dir, procs: path.join(dir, "cgroup.procs") };
      }
    }
    const v2 = mounts.find((line) => line.split(" - ")[1]?.startsWith("cgroup2 "));
    if (v2 === undefined) return { why: "no cgroup mount with the cpu controller" };
    const mountPoint = v2.split(" ")[4]!;
    const controllers = readFileSync(path.join(mountPoint, "cgroup.controllers"), "utf8");
    if (!controllers.split(/\s+/).includes("cpu")) return { why: "cgroup v2 without cpu" };
    writeFileSync(path.join(mountPoint, "cgroup.subtree_control"), "+cpu");
    const dir = path.join(mountPoint, name);
    mkdirSync(dir);
    writeFileSync(path.join(dir, "cpu.max"), "50000 100000");
    return { dir, procs: path.join(dir, "cgroup.procs") };
  } catch (error) {
    return { why: `cannot create a cgroup here: ${(error as Error).message}` };
  }
}

describe.each(FULL_MATRIX_VERSIONS)("zig %s: workers auto", (version) => {
  afterEach(async () => {
    await stopAllPrograms();
  });

  it(
    "under taskset -c 0 starts one worker and names the affinity mask as the reason",
    { timeout: BUILD_TIMEOUT_MS },
    async () => {
      const binary = await binaryOf("supervised", version);
      const { program, ready } = await startReady("taskset", [
        "-c",
        "0",
        binary,
        "--workers",
        "0",
        ...ANY_LOOPBACK_PORT,
      ]);
      const auto = (ready as AutoReady).workers_auto;
      expect(ready.workers).toHaveLength(1);
      expect(auto).toMatchObject({ affinity: 1, online_cpus: CPUS });
      // On a one-CPU machine the mask changes nothing, so the CPUs online decide.
      expect(auto?.decided_by).toBe(CPUS > 1 ? "affinity" : "online_cpus");
      const who = parseWhoami(
        (await tcpExchange("127.0.0.1", portOf(ready, "who"), { timeoutMs: 5_000 })).toString(),
      );
      expect(who.pid).toBe(ready.workers[0]!.pid);
      program.signal("SIGTERM");
      expect(await program.waitForExit(STOP_TIMEOUT_MS)).toEqual({ code: 0, signal: null });
    },
  );

  it(
    "--cpu-affinity pins each worker to its own CPU and steers a pinned client to it, " +
      "also after a SIGHUP restart",
    { timeout: BUILD_TIMEOUT_MS },
    async (context) => {
      const allowed = allowedCpus("self");
      if (allowed.length < 2) {
        const why = `${allowed.length} CPU allowed: pinning 2 workers apart needs 2`;
        if (process.env.CI === "true") throw new Error(`CI run fails: ${why}`);
        return context.skip(why);
      }
      const binary = await binaryOf("supervised", version);
      const { program, ready } = await startReady(binary, [
        "--workers",
        "2",
        "--cpu-affinity",
        ...ANY_LOOPBACK_PORT,
      ]);
      await expectPinnedAndSteered(ready, allowed);
      program.signal("SIGHUP");
      const next = await program.waitForEvent<ReadyEvent>(
        "ready",
        READY_TIMEOUT_MS,
        (e) => e.generation === 2,
      );
      await program.waitForEvent("drained", STOP_TIMEOUT_MS, (e) => e.generation === 1);
      await expectPinnedAndSteered(next, allowed);
      program.signal("SIGTERM");
      expect(await program.waitForExit(STOP_TIMEOUT_MS)).toEqual({ code: 0, signal: null });
    },
  );

  it(
    "without a limit starts one worker per CPU online and says so",
    { timeout: BUILD_TIMEOUT_MS },
    async () => {
      const binary = await binaryOf("supervised", version);
      const { ready } = await startReady(binary, ["--workers", "0", ...ANY_LOOPBACK_PORT]);
      expect(ready.workers).toHaveLength(CPUS);
      expect((ready as AutoReady).workers_auto).toMatchObject({
        decided_by: "online_cpus",
        online_cpus: CPUS,
        affinity: CPUS,
      });
    },
  );

  it(
    "in a cgroup with a quota of half a CPU starts one worker and names the quota",
    { timeout: BUILD_TIMEOUT_MS },
    async (context) => {
      const binary = await binaryOf("supervised", version);
      // Elsewhere a machine that cannot show it skips, saying why; CI's machine must show it.
      const cannot = (why: string) => {
        if (process.env.CI === "true") throw new Error(`CI run fails: ${why}`);
        context.skip(why);
      };
      if (CPUS < 2) return cannot("one CPU online: a quota cannot lower the count below it");
      const cgroup = makeQuotaCgroup();
      if ("why" in cgroup) return cannot(cgroup.why);
      try {
        // The shell moves itself into the cgroup, then becomes the service (same pid).
        const script = `echo $$ > '${cgroup.procs}' && exec "$0" "$@"`;
        const { program, ready } = await startReady("sh", [
          "-c",
          script,
          binary,
          "--workers",
          "0",
          ...ANY_LOOPBACK_PORT,
        ]);
        expect(ready.workers).toHaveLength(1);
        expect((ready as AutoReady).workers_auto).toEqual({
          decided_by: "cpu_quota",
          online_cpus: CPUS,
          affinity: CPUS,
          cpu_quota: 1,
        });
        program.signal("SIGTERM");
        expect(await program.waitForExit(STOP_TIMEOUT_MS)).toEqual({ code: 0, signal: null });
      } finally {
        await stopAllPrograms();
        if (existsSync(cgroup.dir)) rmdirSync(cgroup.dir);
      }
    },
  );
});
