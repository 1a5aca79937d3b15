#!/usr/bin/env node
// bench:limits: the connection limit and slow clients, tried as the tools that found issue
// 15's defects try them, against the `http` handler with 2 workers of 512 connections each
// (bench/specs/limits.json):
//
//   1. h2load --h1 -c 2000 -n 200000: more keep-alive clients than both tables hold; every
//      request must succeed (eviction never loses a request that has arrived).
//   2. slowhttptest -B (slow bodies, a few bytes every 2 s) with 4000 connections at 1000 per
//      second for --slow-seconds: its probe must find the service available throughout
//      (slow clients are evicted, 408, before idle ones, and bounded by requestTimeoutMs).
//
// It prints the commands, the machine, the figures and the service's counters; it exits 1
// when a request failed or the service was found unavailable.
//
//   npm run bench:limits -- [--optimize MODE] [--binary PATH] [--clients N] [--requests N]
//                           [--slow-seconds S] [--skip h2load|slowhttptest]
//
// Needs h2load and slowhttptest; when they are missing and we are root, installs them with
// apt-get (Debian's nghttp2-client and slowhttptest).
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";
import { parseArgs } from "node:util";
import { buildBenchService } from "./service.mjs";

const { values: args } = parseArgs({
  options: {
    optimize: { type: "string", default: "ReleaseSafe" },
    binary: { type: "string" },
    clients: { type: "string", default: "2000" },
    requests: { type: "string", default: "200000" },
    "slow-seconds": { type: "string", default: "30" },
    skip: { type: "string" },
  },
});
const PORT = 18095;
const TOOLS = { h2load: "nghttp2-client", slowhttptest: "slowhttptest" };

const tmp = mkdtempSync(path.join(os.tmpdir(), "bench-limits-"));
let service;
process.on("exit", () => {
  if (service !== undefined) {
    try {
      process.kill(-service.child.pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
  rmSync(tmp, { recursive: true, force: true });
});

ensureTools();
const binary =
  args.binary ??
  (await buildBenchService("limits", path.join(tmp, "service"), { optimize: args.optimize }));

console.log(
  `machine: ${os.cpus().length} × ${os.cpus()[0]?.model ?? "?"}, Linux ${os.release()}, ` +
    `load ${os.loadavg().map((l) => l.toFixed(2)).join(" ")}; service built ${args.binary ? "as given" : args.optimize}, ` +
    `2 workers × maxConnections 512 (bench/specs/limits.json)`,
);
let failed = false;

if (args.skip !== "h2load") {
  service = await startService();
  const command = ["h2load", "--h1", "-c", args.clients, "-n", args.requests, `http://127.0.0.1:${PORT}/`];
  console.log(`\n$ ${command.join(" ")}`);
  const run = spawnSync(command[0], command.slice(1), { encoding: "utf8", maxBuffer: 1 << 26 });
  const lines = run.stdout.split("\n").filter((l) => /^(finished in|requests:|status codes:|time for request:)/.test(l));
  for (const line of lines) console.log(`  ${line}`);
  const m = /requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed/.exec(run.stdout);
  const counters = await stopService(service);
  service = undefined;
  console.log(`  service: ${counters}`);
  if (m === null) {
    console.log(`  h2load said nothing we could read (exit ${run.status}):\n${run.stdout}${run.stderr}`);
    failed = true;
  } else if (Number(m[3]) !== 0) {
    console.log(`  FAILED: ${m[3]} of ${m[1]} requests failed`);
    failed = true;
  }
}

if (args.skip !== "slowhttptest") {
  service = await startService();
  const prefix = path.join(tmp, "slow");
  const command = [
    "slowhttptest", "-B", "-c", "4000", "-r", "1000", "-i", "2", "-s", "8192", "-p", "3",
    "-l", args["slow-seconds"], "-u", `http://127.0.0.1:${PORT}/`, "-g", "-o", prefix,
  ];
  console.log(`\n$ ${command.join(" ")}`);
  spawnSync(command[0], command.slice(1), { cwd: tmp, stdio: "ignore" });
  // One row a second: seconds, closed, pending, connected, and "service available" (the
  // connection target when the probe was answered within -p seconds, 0 when not).
  const rows = readFileSync(`${prefix}.csv`, "utf8").trim().split("\n").slice(1).map((r) => r.split(",").map(Number));
  const down = rows.filter((r) => r[4] === 0).map((r) => r[0]);
  const most = Math.max(...rows.map((r) => r[3]));
  const counters = await stopService(service);
  service = undefined;
  console.log(
    `  ${rows.length} seconds sampled; at most ${most} attacking connections open at once; ` +
      `service available: ${down.length === 0 ? "YES throughout" : `NO at seconds ${down.join(",")}`}`,
  );
  console.log(`  service: ${counters}`);
  if (down.length > 0) failed = true;
}
process.exit(failed ? 1 : 0);

function ensureTools() {
  const missing = Object.keys(TOOLS).filter(
    (tool) => args.skip !== tool && spawnSync("sh", ["-c", `command -v ${tool}`]).status !== 0,
  );
  if (missing.length === 0) return;
  const packages = missing.map((tool) => TOOLS[tool]);
  if (process.getuid?.() !== 0) {
    process.stderr.write(
      `bench:limits: ${missing.join(" and ")} not on PATH; install them (Debian: apt-get install ${packages.join(" ")})\n`,
    );
    process.exit(1);
  }
  process.stderr.write(`$ apt-get install -y ${packages.join(" ")}\n`);
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  spawnSync("apt-get", ["update", "-q"], { stdio: "inherit", env });
  const installed = spawnSync("apt-get", ["install", "-y", "-q", ...packages], { stdio: "inherit", env });
  if (installed.status !== 0) {
    process.stderr.write(`bench:limits: apt-get install ${packages.join(" ")} failed\n`);
    process.exit(1);
  }
}

/** Starts the service in a process group of its own; resolves on its `ready` event. */
function startService() {
  const child = spawn(binary, ["--listen", `web=127.0.0.1:${PORT}`], {
    stdio: ["ignore", "pipe", "inherit"],
    detached: true,
  });
  const events = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("the service did not become ready")), 10_000);
    readline.createInterface({ input: child.stdout }).on("line", (line) => {
      events.push(line);
      if (line.includes('"event":"ready"')) {
        clearTimeout(timer);
        resolve({ child, events });
      }
    });
  });
}

/** SIGTERM; waits for the exit; returns the workers' counters summed, from `stopped`. */
async function stopService({ child, events }) {
  const exited = new Promise((resolve) => child.once("exit", resolve));
  process.kill(child.pid, "SIGTERM");
  await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 15_000))]);
  const line = events.find((l) => l.includes('"event":"stopped"'));
  if (line === undefined) return "(no stopped event)";
  const sum = { connections: 0, requests: 0, evicted: 0, timeouts: {} };
  for (const w of JSON.parse(line).workers) {
    sum.connections += w.connections;
    sum.requests += w.requests;
    sum.evicted += w.evicted;
    for (const [k, v] of Object.entries(w.timeouts)) sum.timeouts[k] = (sum.timeouts[k] ?? 0) + v;
  }
  const t = Object.entries(sum.timeouts).map(([k, v]) => `${k}=${v}`).join(" ");
  return `connections=${sum.connections} requests=${sum.requests} evicted=${sum.evicted} timeouts(${t})`;
}
