#!/usr/bin/env node
// bench:resp: the resp example (a RESP2 subset as a stream module, examples/app/resp.zig)
// against redis-server, side by side with redis-benchmark on loopback, same machine. Both
// serve from one process with one thread (the example with --standalone, a worker of its
// own; redis-server with persistence off). Rounds alternate between the two servers so that
// a noisy machine affects both alike; the median of each test is printed with the ratio.
//
//   npm run bench:resp -- [--requests N] [--clients N] [--pipeline N] [--rounds N]
//                         [--tests ping,set,get,incr] [--optimize MODE] [--io io_uring]
//                         [--cpu-limit CPUS]
//
// With --cpu-limit 0.5 each server is held to half a CPU by a CFS quota (a cgroup of its own,
// as a container's CPU limit does). On a machine with two cores the client takes about as
// much CPU as the server, so without a limit redis-benchmark sets the pace and requests per
// second say little about either server; with one, each server is the bottleneck and its
// requests per second are what it does with the same CPU. Needs root.
// With --io io_uring the same binary started with --io io_uring joins the rounds as
// "uring" (issue 21's goals: at least 1.2x redis-server without pipelining, 1.3x with -P 16).
//
// Needs redis-server and redis-benchmark; when they are missing and we are root, installs
// them with apt-get (Debian's redis-server and redis-tools).
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { buildBenchService } from "./service.mjs";
import { ensureTools, groupCpuTicks, limitCpu, median } from "./common.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "..");
const { values: args } = parseArgs({
  options: {
    requests: { type: "string", default: "200000" },
    clients: { type: "string", default: "50" },
    pipeline: { type: "string", default: "1,16" },
    rounds: { type: "string", default: "3" },
    tests: { type: "string", default: "ping,set,get,incr" },
    optimize: { type: "string", default: "ReleaseFast" },
    io: { type: "string" },
    "cpu-limit": { type: "string" },
  },
});

const OURS_PORT = 16390;
const REDIS_PORT = 16391;
const URING_PORT = 16392;
const children = [];
/** What removes each server's cgroup (with --cpu-limit), run once the servers are killed. */
const cleanups = [];
const cpuLimit = args["cpu-limit"] === undefined ? undefined : Number(args["cpu-limit"]);
if (cpuLimit !== undefined && !(cpuLimit >= 0.05 && cpuLimit <= os.cpus().length)) {
  const most = os.cpus().length;
  process.stderr.write(`bench:resp: --cpu-limit wants a number of CPUs from 0.05 to ${most}\n`);
  process.exit(2);
}
/** The process group of each server (each is started as the leader of its own). */
const groups = {};
const CLK_TCK = Number(
  spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout.trim() || 100,
);
const tmp = mkdtempSync(path.join(os.tmpdir(), "bench-resp-"));
process.on("exit", () => {
  for (const c of children) {
    try {
      process.kill(-c.pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
  for (const cleanup of cleanups) cleanup();
  rmSync(tmp, { recursive: true, force: true });
});
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => process.exit(130));

ensureTools("bench:resp", { "redis-server": "redis-server", "redis-benchmark": "redis-tools" });
// examples/resp.json with the example's module over the generated stub.
const binary = await buildBenchService("resp", path.join(tmp, "resp"), {
  optimize: args.optimize,
  name: "resp",
  specFile: path.join(root, "examples/resp.json"),
  modules: { resp: "examples/app/resp.zig" },
});
await start("ours", binary, ["--standalone", "--listen", `cache=127.0.0.1:${OURS_PORT}`]);
await start("redis-server", "redis-server", [
  "--port", String(REDIS_PORT), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
  "--daemonize", "no", "--io-threads", "1", "--dir", tmp,
]);
const ports = { ours: OURS_PORT, "redis-server": REDIS_PORT };
if (args.io !== undefined) {
  ports.uring = URING_PORT;
  const listen = `cache=127.0.0.1:${URING_PORT}`;
  await start("uring", binary, ["--standalone", "--io", args.io, "--listen", listen]);
}
const names = Object.keys(ports);
for (const port of Object.values(ports)) await waitForPing(port);

const pipelines = args.pipeline.split(",").map(Number);
const results = {};
for (const pipeline of pipelines) {
  results[pipeline] = Object.fromEntries(names.map((name) => [name, []]));
  for (let round = 1; round <= Number(args.rounds); round += 1) {
    const order = round % 2 ? names : [...names].reverse();
    for (const name of order) {
      results[pipeline][name].push(benchmark(ports[name], pipeline, groups[name]));
    }
  }
}
report();
process.exit(0);

async function start(name, command, argv) {
  const child = spawn(command, argv, { detached: true, stdio: "ignore" });
  children.push(child);
  groups[name] = child.pid;
  if (cpuLimit !== undefined) cleanups.push(limitCpu("bench:resp", name, child.pid, cpuLimit));
  child.on("exit", (code) => {
    if (code !== null && code !== 0) process.stderr.write(`bench:resp: ${name} exited ${code}\n`);
  });
}

async function waitForPing(port) {
  for (let i = 0; i < 100; i += 1) {
    const r = spawnSync("redis-cli", ["-p", String(port), "PING"], { encoding: "utf8" });
    if (r.stdout?.trim() === "PONG") return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`nothing answers PING on port ${port}`);
}

/**
 * One redis-benchmark run: requests per second by test name, and the server's CPU time (user
 * and system, summed over its process group) per request over the whole run, in µs.
 */
function benchmark(port, pipeline, pgid) {
  const argv = [
    "-h", "127.0.0.1", "-p", String(port), "-n", args.requests, "-c", args.clients,
    "-P", String(pipeline), "-t", args.tests, "--csv",
  ];
  const before = groupCpuTicks(pgid);
  const out = execFileSync("redis-benchmark", argv, { encoding: "utf8", timeout: 300_000 });
  const after = groupCpuTicks(pgid);
  const rps = {};
  for (const line of out.split("\n").slice(1)) {
    const cells = line.split(",").map((c) => c.replaceAll('"', ""));
    if (cells.length < 2 || cells[0] === "") continue;
    rps[cells[0]] = Number(cells[1]);
  }
  const ticks = after.user + after.system - before.user - before.system;
  const requests = Number(args.requests) * Object.keys(rps).length;
  return { rps, cpuUs: (ticks / CLK_TCK) * 1e6 / requests };
}

function report() {
  const cpu = os.cpus()[0]?.model ?? "unknown CPU";
  console.log(
    `machine: ${cpu}, ${os.cpus().length} CPUs, Linux ${os.release()}; ` +
      `${spawnSync("redis-server", ["--version"], { encoding: "utf8" }).stdout.trim()}`,
  );
  if (cpuLimit !== undefined) {
    console.log(`each server held to ${cpuLimit} CPUs by a CFS quota (cgroup), the client not`);
  }
  for (const pipeline of pipelines) {
    console.log(
      `\nredis-benchmark -n ${args.requests} -c ${args.clients} -P ${pipeline} -t ${args.tests}` +
        ` (median of ${args.rounds} alternating rounds, requests/s)`,
    );
    const uring = results[pipeline].uring !== undefined;
    console.log(
      `${"test".padEnd(12)} ${"ours".padStart(12)} ${"redis".padStart(12)}  ratio` +
        (uring ? `  ${"io_uring".padStart(12)}  ratio` : ""),
    );
    const tests = Object.keys(results[pipeline].ours[0]?.rps ?? {});
    for (const test of tests) {
      const ours = median(results[pipeline].ours.map((r) => r.rps[test]));
      const redis = median(results[pipeline]["redis-server"].map((r) => r.rps[test]));
      const ratio = (ours / redis).toFixed(2);
      const ring = uring ? median(results[pipeline].uring.map((r) => r.rps[test])) : 0;
      console.log(
        `${test.padEnd(12)} ${ours.toFixed(0).padStart(12)} ${redis.toFixed(0).padStart(12)}  ${ratio}` +
          (uring ? `  ${ring.toFixed(0).padStart(12)}  ${(ring / redis).toFixed(2)}` : ""),
      );
    }
    // Over every test of a run: the figure that shows a server's cost when the client,
    // sharing the machine's cores, sets the pace.
    const cpu = (name) => median(results[pipeline][name].map((r) => r.cpuUs));
    const redisCpu = cpu("redis-server");
    const line = names.map((name) => {
      const ratio = name === "redis-server" ? "" : ` (${(cpu(name) / redisCpu).toFixed(2)}x redis)`;
      return `${name === "uring" ? "io_uring" : name} ${cpu(name).toFixed(2)}${ratio}`;
    });
    console.log(`server CPU per request, us (median of the rounds): ${line.join(", ")}`);
  }
}
