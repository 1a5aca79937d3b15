#!/usr/bin/env node
// bench:kv: the kv example (examples/kv.json, an HTTP JSON key-value API whose data lives in
// Redis through the upstream `store`) on 4 workers, against a redis-server of its own, next to
// a direct redis-benchmark of the same Redis: what the HTTP layer costs on top of Redis.
//
// The same work on both sides, with the same concurrency and no pipelining: a GET of a key
// that holds 3 bytes (kv: `GET /kv/bench`, which sends `GET kv:bench`; redis-benchmark: `-t
// get`, key `key:__rand_int__`, 3 bytes by default) and a SET of 3 bytes (kv: `PUT /kv/bench`
// with the body `"x"` through wrk's Lua script; redis-benchmark: `-t set`). The HTTP side is
// driven by wrk (`-c` connections, keep-alive, one request at a time per connection); the
// Redis side by redis-benchmark (`-c` clients, `-P 1`). Rounds alternate between the two so
// that a noisy machine affects both alike; the median of each is printed.
//
// CPU per request is read from /proc (user + system time of every process of a group, before
// and after a run) over the requests the run made: kv's own (supervisor and workers), and
// Redis's during each side's run. kv's total is both: the cost of one HTTP request to Redis.
// The load generators' own CPU is not counted on either side.
//
//   npm run bench:kv -- [--workers N] [--connections N] [--threads N] [--seconds S]
//                       [--requests N] [--rounds N] [--tests get,set] [--optimize MODE]
//
// Needs wrk, redis-server, redis-benchmark and redis-cli; when they are missing and we are
// root, installs them with apt-get (Debian's wrk, redis-server and redis-tools).
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { buildBenchService } from "./service.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "..");
const { values: args } = parseArgs({
  options: {
    workers: { type: "string", default: "4" },
    connections: { type: "string", default: "50" },
    threads: { type: "string", default: "2" },
    seconds: { type: "string", default: "5" },
    requests: { type: "string", default: "200000" },
    rounds: { type: "string", default: "3" },
    tests: { type: "string", default: "get,set" },
    optimize: { type: "string", default: "ReleaseFast" },
  },
});
const TICKS_PER_SECOND = Number(
  spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout.trim() || 100,
);
const KV_PORT = 18094;
const REDIS_PORT = 16394;
/** 3 bytes, as redis-benchmark's default value (`-d 3`), and valid JSON for kv. */
const VALUE = '"x"';
const TESTS = args.tests.split(",");
for (const test of TESTS) {
  if (test !== "get" && test !== "set") {
    process.stderr.write(`bench:kv: --tests takes get and set (got ${test})\n`);
    process.exit(2);
  }
}

const children = [];
const tmp = mkdtempSync(path.join(os.tmpdir(), "bench-kv-"));
process.on("exit", () => {
  // Each server runs in a process group of its own, so its workers go with it.
  for (const c of children) {
    try {
      process.kill(-c.pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
  rmSync(tmp, { recursive: true, force: true });
});
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => process.exit(130));

ensureTools();
const loadBefore = os.loadavg();
// examples/kv.json pointed at the bench's Redis, with the example's module over the stub.
const spec = JSON.parse(readFileSync(path.join(root, "examples/kv.json"), "utf8"));
delete spec.$schema;
spec.upstreams[0].servers = [`127.0.0.1:${REDIS_PORT}`];
const specFile = path.join(tmp, "kv.json");
writeFileSync(specFile, JSON.stringify(spec));
const binary = await buildBenchService("kv", path.join(tmp, "kv"), {
  optimize: args.optimize,
  name: "kv",
  specFile,
  modules: { kv: "examples/app/kv.zig" },
});
const putScript = path.join(tmp, "put.lua");
writeFileSync(
  putScript,
  `wrk.method = "PUT"\nwrk.body = '${VALUE}'\nwrk.headers["Content-Type"] = "application/json"\n`,
);

const redis = startRedis();
await waitForPing(REDIS_PORT);
const kv = await startKv();
await checkKv();

const sides = ["kv", "redis"];
const results = {};
for (const test of TESTS) {
  results[test] = { kv: [], redis: [] };
  for (let round = 1; round <= Number(args.rounds); round += 1) {
    const order = round % 2 ? sides : [...sides].reverse();
    for (const side of order) {
      results[test][side].push(side === "kv" ? measureKv(test) : measureRedis(test));
    }
  }
}
const loadAfter = os.loadavg();
report();
process.exit(0);

function ensureTools() {
  const tools = { wrk: "wrk", "redis-server": "redis-server", "redis-benchmark": "redis-tools" };
  tools["redis-cli"] = "redis-tools";
  const missing = Object.keys(tools).filter(
    (tool) => spawnSync("sh", ["-c", `command -v ${tool}`]).status !== 0,
  );
  if (missing.length === 0) return;
  const packages = [...new Set(missing.map((tool) => tools[tool]))];
  if (process.getuid?.() !== 0) {
    process.stderr.write(
      `bench:kv: ${missing.join(", ")} not on PATH; install them ` +
        `(Debian: apt-get install ${packages.join(" ")})\n`,
    );
    process.exit(1);
  }
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  process.stderr.write(`$ apt-get install -y ${packages.join(" ")}\n`);
  spawnSync("apt-get", ["update", "-q"], { stdio: "inherit", env });
  const installed = spawnSync("apt-get", ["install", "-y", "-q", ...packages], {
    stdio: "inherit",
    env,
  });
  if (installed.status !== 0) {
    process.stderr.write(`bench:kv: apt-get install ${packages.join(" ")} failed\n`);
    process.exit(1);
  }
}

function startRedis() {
  const argv = [
    "--port", String(REDIS_PORT), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
    "--daemonize", "no", "--io-threads", "1", "--dir", tmp,
  ];
  const child = spawn("redis-server", argv, { stdio: "ignore", detached: true });
  children.push(child);
  child.on("exit", (code) => {
    if (code !== null && code !== 0) {
      process.stderr.write(`bench:kv: redis-server exited ${code}\n`);
    }
  });
  return child.pid;
}

async function waitForPing(port) {
  for (let i = 0; i < 100; i += 1) {
    const r = spawnSync("redis-cli", ["-p", String(port), "PING"], { encoding: "utf8" });
    if (r.stdout?.trim() === "PONG") return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`nothing answers PING on port ${port}`);
}

function startKv() {
  const argv = ["--workers", args.workers, "--listen", `api=127.0.0.1:${KV_PORT}`];
  const child = spawn(binary, argv, { stdio: ["ignore", "pipe", "inherit"], detached: true });
  children.push(child);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("kv did not become ready")), 10_000);
    readline.createInterface({ input: child.stdout }).on("line", (line) => {
      if (line.includes('"event":"ready"')) {
        clearTimeout(timer);
        resolve(child.pid);
      }
    });
  });
}

/** The two sides hold what they serve, and kv answers as it should before it is measured. */
async function checkKv() {
  redisCli(["SET", "key:__rand_int__", "xxx"]);
  const base = `http://127.0.0.1:${KV_PORT}/kv/bench`;
  const put = await fetch(base, { method: "PUT", body: VALUE });
  const got = await fetch(base);
  const body = await got.text();
  if (put.status !== 204 || got.status !== 200 || body !== VALUE) {
    throw new Error(`kv answered PUT ${put.status}, GET ${got.status} ${body}`);
  }
  if (redisCli(["GET", "kv:bench"]).trim() !== VALUE) {
    throw new Error("Redis does not hold kv's value");
  }
}

function redisCli(argv) {
  return execFileSync("redis-cli", ["-p", String(REDIS_PORT), ...argv], { encoding: "utf8" });
}

/** CPU time (user, system) in clock ticks, summed over the processes of group `pgid`. */
function groupCpuTicks(pgid) {
  let user = 0;
  let system = 0;
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let stat;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, "utf8");
    } catch {
      continue;
    }
    // After the command name (in parentheses): state ppid pgrp ... utime(14) stime(15).
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (Number(fields[2]) !== pgid) continue;
    user += Number(fields[11]);
    system += Number(fields[12]);
  }
  return { user, system };
}

/** Microseconds of CPU per request of group `pgid` between `before` and now. */
function cpuUsPerRequest(pgid, before, requests) {
  const after = groupCpuTicks(pgid);
  const ticks = after.user - before.user + (after.system - before.system);
  return (ticks * 1e6) / TICKS_PER_SECOND / Math.max(requests, 1);
}

function measureKv(test) {
  const kvBefore = groupCpuTicks(kv);
  const redisBefore = groupCpuTicks(redis);
  const method = test === "set" ? ["-s", putScript] : [];
  const argv = [
    `-t${args.threads}`, `-c${args.connections}`, `-d${args.seconds}s`, ...method,
    `http://127.0.0.1:${KV_PORT}/kv/bench`,
  ];
  const out = execFileSync("wrk", argv, { encoding: "utf8", timeout: 120_000 });
  const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? 0);
  return {
    rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? 0),
    requests,
    cpuUs: cpuUsPerRequest(kv, kvBefore, requests),
    redisCpuUs: cpuUsPerRequest(redis, redisBefore, requests),
    errors: /Socket errors: (.*)/.exec(out)?.[1] ?? "none",
    non2xx: Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0),
  };
}

function measureRedis(test) {
  const redisBefore = groupCpuTicks(redis);
  const argv = [
    "-h", "127.0.0.1", "-p", String(REDIS_PORT), "-n", args.requests, "-c", args.connections,
    "-P", "1", "-t", test, "--csv",
  ];
  const out = execFileSync("redis-benchmark", argv, { encoding: "utf8", timeout: 300_000 });
  const row = out.split("\n").find((line) => line.startsWith(`"${test.toUpperCase()}"`));
  const rps = Number(row?.split(",")[1]?.replaceAll('"', "") ?? 0);
  const requests = Number(args.requests);
  return { rps, requests, redisCpuUs: cpuUsPerRequest(redis, redisBefore, requests) };
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

function report() {
  const cpu = os.cpus()[0]?.model ?? "unknown CPU";
  const redisVersion = spawnSync("redis-server", ["--version"], { encoding: "utf8" }).stdout;
  const load = (l) => l.map((x) => x.toFixed(2)).join(" ");
  console.log(
    `bench:kv  ${os.cpus().length} x ${cpu}, Linux ${os.release()}, node ${process.version}; ` +
      `${redisVersion.trim().split(" ").slice(0, 3).join(" ")}`,
  );
  console.log(`load average before ${load(loadBefore)}, after ${load(loadAfter)}`);
  const given = process.argv.slice(2);
  console.log(`command: npm run bench:kv${given.length > 0 ? ` -- ${given.join(" ")}` : ""}`);
  console.log(
    `kv: ${args.workers} workers, built ${args.optimize}, 16 Redis connections per worker; ` +
      `wrk -t${args.threads} -c${args.connections} -d${args.seconds}s; ` +
      `redis-benchmark -n ${args.requests} -c ${args.connections} -P 1; ` +
      `${args.rounds} alternating rounds, medians`,
  );
  for (const test of TESTS) {
    const what = test === "get" ? "GET /kv/bench  vs  GET" : "PUT /kv/bench  vs  SET";
    console.log(`\n${test}: ${what} (3-byte value)`);
    const k = results[test].kv;
    const r = results[test].redis;
    for (const run of k) {
      console.log(
        `  kv     ${Math.round(run.rps)} req/s, CPU kv ${run.cpuUs.toFixed(2)} + Redis ` +
          `${run.redisCpuUs.toFixed(2)} us/request, errors ${run.errors}, non-2xx ${run.non2xx}`,
      );
    }
    for (const run of r) {
      const cpuUs = run.redisCpuUs.toFixed(2);
      console.log(`  redis  ${Math.round(run.rps)} req/s, CPU Redis ${cpuUs} us/request`);
    }
    const kvRps = median(k.map((x) => x.rps));
    const kvCpu = median(k.map((x) => x.cpuUs));
    const kvRedisCpu = median(k.map((x) => x.redisCpuUs));
    const redisRps = median(r.map((x) => x.rps));
    const redisCpu = median(r.map((x) => x.redisCpuUs));
    console.log(
      `  median: kv ${Math.round(kvRps)} req/s, CPU ${kvCpu.toFixed(2)} us/request in kv + ` +
        `${kvRedisCpu.toFixed(2)} in Redis = ${(kvCpu + kvRedisCpu).toFixed(2)}; ` +
        `redis-benchmark ${Math.round(redisRps)} req/s, CPU ${redisCpu.toFixed(2)} us/request ` +
        `in Redis; kv/redis req/s ${(kvRps / redisRps).toFixed(2)}, CPU per request ` +
        `${((kvCpu + kvRedisCpu) / redisCpu).toFixed(2)}`,
    );
  }
}
