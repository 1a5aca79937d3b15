#!/usr/bin/env node
// bench:proxy: the generated `proxy` handler against HAProxy (`mode tcp`, as many threads as our
// workers), both in front of the same nginx backend, side by side with wrk on loopback. Rounds
// alternate between the two proxies so that a noisy machine affects both alike. Besides req/s
// and latency it reports each proxy's CPU time per proxied request (user and system, summed
// over all of its processes, read from /proc before and after each round; the backend's CPU is
// not counted), for keep-alive clients and for a new connection per request
// (`wrk -H 'Connection: close'`: a new proxied pair, and a new connect to the backend, each).
//
//   npm run bench:proxy -- [--workers N] [--connections N] [--threads N] [--seconds S]
//                          [--rounds N] [--mode keepalive|close|both] [--optimize MODE]
//                          [--body-bytes N] [--zero-copy] [--io io_uring] [--syscalls]
//
// --body-bytes sets the size of the file nginx answers (sendfile); --zero-copy builds the proxy
// with `zeroCopy` and gives HAProxy `option splice-auto`: the bulk case (1 MiB answers, say).
// --io io_uring starts the same binary a second time with `--io io_uring` (its pairs move
// bytes through the workers' rings) on a port of its own, and the rounds rotate among the
// three servers. --syscalls then counts each server's system calls per request under one
// more wrk run of each (`perf stat` on the syscall tracepoints of its worker processes, or of
// HAProxy's process), per system call.
//
// Needs wrk, nginx and haproxy; when they are missing and we are root, installs them with
// apt-get (Debian's wrk, nginx-light and haproxy), as CI would.
import { spawn, spawnSync } from "node:child_process";
import {
  mkdirSync,
  mkdtempSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";
import { parseArgs } from "node:util";
import { buildBenchService } from "./service.mjs";
import { ensureTools, groupCpuTicks, median, toMs, wrk } from "./common.mjs";

const { values: args } = parseArgs({
  options: {
    workers: { type: "string", default: String(os.cpus().length) },
    connections: { type: "string", default: "64" },
    threads: { type: "string", default: "2" },
    seconds: { type: "string", default: "5" },
    rounds: { type: "string", default: "3" },
    mode: { type: "string", default: "both" },
    optimize: { type: "string", default: "ReleaseFast" },
    "body-bytes": { type: "string", default: "3" },
    "zero-copy": { type: "boolean", default: false },
    io: { type: "string" },
    syscalls: { type: "boolean", default: false },
  },
});
if (args.io !== undefined && args.io !== "io_uring") {
  process.stderr.write(`bench:proxy: --io must be io_uring (got ${args.io})\n`);
  process.exit(2);
}
const TICKS_PER_SECOND = Number(
  spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout.trim() || 100,
);

const BACKEND_PORT = 18180;
const OURS_PORT = 18181;
const HAPROXY_PORT = 18182;
const URING_PORT = 18183;
/** The system calls `--syscalls` counts one by one (the total counts every one). */
const SYSCALLS = [
  "io_uring_enter",
  "recvfrom",
  "sendto",
  "epoll_pwait",
  "epoll_wait",
  "epoll_ctl",
  "accept4",
  "socket",
  "connect",
  "close",
  "setsockopt",
  "shutdown",
  "getpeername",
  "clock_gettime",
  "read",
  "write",
];
const BODY_BYTES = Number(args["body-bytes"]);

const children = [];
const tmp = mkdtempSync(path.join(os.tmpdir(), "bench-proxy-"));
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

ensureTools("bench:proxy", { wrk: "wrk", nginx: "nginx-light", haproxy: "haproxy" });
const modes = args.mode === "both" ? ["keepalive", "close"] : [args.mode];
for (const mode of modes) {
  if (mode !== "keepalive" && mode !== "close") {
    process.stderr.write(`bench:proxy: --mode must be keepalive, close or both (got ${mode})\n`);
    process.exit(2);
  }
}

const binary = await buildProxy();
await startNginx();
const ours = await startOurs(binary, OURS_PORT);
const haproxy = await startHaproxy();
const servers = {
  ours: { port: OURS_PORT, pgid: ours },
  haproxy: { port: HAPROXY_PORT, pgid: haproxy },
};
if (args.io !== undefined) {
  servers["ours+uring"] = {
    port: URING_PORT,
    pgid: await startOurs(binary, URING_PORT, ["--io", "io_uring"]),
  };
}
const names = Object.keys(servers);

const results = {};
for (const mode of modes) {
  results[mode] = Object.fromEntries(names.map((name) => [name, []]));
  for (let round = 1; round <= Number(args.rounds); round += 1) {
    // Each server goes first, middle and last in turn: a noisy machine affects all alike.
    const shift = (round - 1) % names.length;
    const order = [...names.slice(shift), ...names.slice(0, shift)];
    for (const name of order) results[mode][name].push(measure(servers[name], mode));
  }
}
report();
if (args.syscalls) for (const mode of modes) await countSyscalls(mode);
process.exit(0);

/**
 * System calls per request of each server under one wrk run (`perf stat` on the tracepoints,
 * attached to our workers, or to HAProxy's process, for the run's length).
 */
async function countSyscalls(mode) {
  const label = mode === "close" ? "new connection per request" : "keep-alive";
  console.log(`system calls per request, ${label} (perf stat, one run of wrk each):`);
  for (const name of names) {
    const server = servers[name];
    // Our supervisor makes few calls of its own; HAProxy's threads are one process.
    const children = spawnSync("pgrep", ["-P", String(server.pgid)], { encoding: "utf8" });
    const pids = name === "haproxy" ? [server.pgid] : children.stdout.trim().split(/\s+/);
    const events = ["raw_syscalls:sys_enter", ...SYSCALLS.map((c) => `syscalls:sys_enter_${c}`)];
    const perf = spawn(
      "perf",
      ["stat", "-x,", "-e", events.join(","), "-p", pids.join(","), "--", "sleep", args.seconds],
      { stdio: ["ignore", "ignore", "pipe"] },
    );
    let stderr = "";
    perf.stderr.on("data", (d) => (stderr += d));
    const done = new Promise((resolve) => perf.on("exit", resolve));
    const result = load(server.port, mode);
    // wrk ran as long as perf counts: both end within a moment of each other.
    await done;
    const counts = {};
    for (const line of stderr.split("\n")) {
      const [value, , event] = line.split(",");
      if (event === undefined || !/^\d+$/.test(value)) continue;
      counts[event.replace(/.*:sys_enter_?/, "")] = Number(value);
    }
    const requests = Math.max(result.requests, 1);
    const per = (n) => ((n ?? 0) / requests).toFixed(2);
    const named = SYSCALLS.filter((c) => (counts[c] ?? 0) > 0).map((c) => `${c} ${per(counts[c])}`);
    const rps = Math.round(result.rps);
    console.log(`  ${name.padEnd(10)} all ${per(counts[""])}: ${named.join(", ")} (${rps} req/s)`);
  }
}

/** The proxy spec (one listener, the backend as its only server), built like every bench. */
async function buildProxy() {
  const spec = {
    name: "proxy-bench",
    workers: 2,
    listeners: [
      {
        name: "web",
        protocol: "tcp",
        address: "127.0.0.1",
        port: OURS_PORT,
        handler: "proxy",
        backlog: 4096,
        proxy: { upstream: "backend", zeroCopy: args["zero-copy"] },
      },
    ],
    upstreams: [{ name: "backend", servers: [`127.0.0.1:${BACKEND_PORT}`] }],
  };
  const specFile = path.join(tmp, "proxy.json");
  writeFileSync(specFile, JSON.stringify(spec));
  return buildBenchService("proxy", path.join(tmp, "service"), {
    optimize: args.optimize,
    name: spec.name,
    specFile,
  });
}

function measure(server, mode) {
  const before = groupCpuTicks(server.pgid);
  const result = load(server.port, mode);
  const after = groupCpuTicks(server.pgid);
  const usPerTick = 1e6 / TICKS_PER_SECOND;
  const requests = Math.max(result.requests, 1);
  return {
    ...result,
    userUs: ((after.user - before.user) * usPerTick) / requests,
    systemUs: ((after.system - before.system) * usPerTick) / requests,
  };
}

/** Waits until something accepts connections on `port` (bounded: 5 s). */
async function waitForPort(port, what) {
  for (let i = 0; i < 50; i += 1) {
    await new Promise((r) => setTimeout(r, 100));
    if (spawnSync("bash", ["-c", `exec 3<>/dev/tcp/127.0.0.1/${port}`]).status === 0) return;
  }
  throw new Error(`${what} did not start`);
}

function startOurs(binary, port, extra = []) {
  const listen = ["--listen", `web=127.0.0.1:${port}`];
  const child = spawn(binary, ["--workers", args.workers, ...listen, ...extra], {
    stdio: ["ignore", "pipe", "inherit"],
    detached: true,
  });
  children.push(child);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("the proxy did not become ready")), 10000);
    readline.createInterface({ input: child.stdout }).on("line", (line) => {
      // A worker the kernel refused a ring to serves with epoll: not what was asked to measure.
      if (line.includes('"event":"io_fallback"')) {
        clearTimeout(timer);
        reject(new Error(`the kernel refused io_uring: ${line}`));
      }
      if (line.includes('"event":"ready"')) {
        clearTimeout(timer);
        resolve(child.pid);
      }
    });
  });
}

async function startHaproxy() {
  const conf = path.join(tmp, "haproxy.cfg");
  writeFileSync(
    conf,
    `global
  nbthread ${args.workers}
  maxconn 4096
defaults
  mode tcp
${args["zero-copy"] ? "  option splice-auto\n" : ""}  timeout connect 1s
  timeout client 60s
  timeout server 60s
frontend web
  bind 127.0.0.1:${HAPROXY_PORT}
  default_backend backend
backend backend
  server s1 127.0.0.1:${BACKEND_PORT}
`,
  );
  const child = spawn("haproxy", ["-db", "-f", conf], {
    stdio: ["ignore", "inherit", "inherit"],
    detached: true,
  });
  children.push(child);
  await waitForPort(HAPROXY_PORT, "haproxy");
  return child.pid;
}

async function startNginx() {
  const conf = path.join(tmp, "nginx.conf");
  const www = path.join(tmp, "www");
  mkdirSync(www);
  writeFileSync(path.join(www, "body"), Buffer.alloc(BODY_BYTES, "x"));
  writeFileSync(
    conf,
    `daemon off;
master_process on;
worker_processes ${args.workers};
pid ${tmp}/nginx.pid;
error_log stderr warn;
events { worker_connections 8192; }
http {
  access_log off;
  sendfile on;
  keepalive_requests 1000000;
  client_body_temp_path ${tmp}; proxy_temp_path ${tmp}; fastcgi_temp_path ${tmp}; uwsgi_temp_path ${tmp}; scgi_temp_path ${tmp};
  server {
    listen 127.0.0.1:${BACKEND_PORT} reuseport backlog=4096;
    root ${www};
  }
}
`,
  );
  const child = spawn("nginx", ["-p", tmp, "-e", "stderr", "-c", conf], {
    stdio: ["ignore", "inherit", "inherit"],
    detached: true,
  });
  children.push(child);
  await waitForPort(BACKEND_PORT, "nginx");
  return child.pid;
}

function report() {
  const cpu = os.cpus()[0]?.model ?? "unknown cpu";
  const version = spawnSync("haproxy", ["-v"], { encoding: "utf8" }).stdout.split("\n")[0];
  console.log(
    `bench:proxy  ${os.cpus().length} x ${cpu}, Linux ${os.release()}, node ${process.version}`,
  );
  console.log(`command: npm run bench:proxy -- ${process.argv.slice(2).join(" ")}`);
  console.log(
    `wrk -t${args.threads} -c${args.connections} -d${args.seconds}s, ${args.rounds} alternating ` +
      `rounds; ${args.workers} proxy workers / haproxy threads (${version}); backend nginx ` +
      `(${args.workers} workers, body ${BODY_BYTES} bytes, sendfile); ours built ${args.optimize}` +
      (args["zero-copy"] ? "; zeroCopy / option splice-auto" : ""),
  );
  for (const mode of modes) {
    console.log(mode === "close" ? "new connection per request (Connection: close):" : "keep-alive:");
    const summary = {};
    for (const name of names) {
      const rs = results[mode][name];
      summary[name] = {
        rps: median(rs.map((r) => r.rps)),
        cpu: median(rs.map((r) => r.userUs + r.systemUs)),
        p99: median(rs.map((r) => toMs(r.p99))),
      };
      console.log(
        `  ${name.padEnd(10)} median ${Math.round(summary[name].rps)} req/s, CPU ${summary[name].cpu.toFixed(2)} us/request, p99 ${summary[name].p99} ms`,
      );
      for (const r of rs) {
        console.log(
          `    ${Math.round(r.rps)} req/s, CPU user ${r.userUs.toFixed(2)} + system ${r.systemUs.toFixed(2)} us/request, ` +
            `p50 ${r.p50}, p99 ${r.p99}, errors ${r.errors}, non-2xx ${r.non2xx}`,
        );
      }
    }
    for (const name of names.filter((n) => n !== "haproxy")) {
      console.log(
        `  ${name}/haproxy: req/s ${(summary[name].rps / summary.haproxy.rps).toFixed(2)}, CPU per ` +
          `request ${(summary[name].cpu / summary.haproxy.cpu).toFixed(2)} (goal <= 0.8), p99 ` +
          `${(summary[name].p99 / summary.haproxy.p99).toFixed(2)}`,
      );
    }
    if (summary["ours+uring"] !== undefined) {
      console.log(
        `  ours+uring/ours: CPU per request ${(summary["ours+uring"].cpu / summary.ours.cpu).toFixed(2)}`,
      );
    }
  }
}

/** wrk through a proxy on `port` to the backend's `/body`, keep-alive or one per connection. */
function load(port, mode) {
  const { threads, connections, seconds } = args;
  const close = mode === "close";
  return wrk(`http://127.0.0.1:${port}/body`, { threads, connections, seconds, close });
}
