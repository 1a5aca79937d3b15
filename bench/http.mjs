#!/usr/bin/env node
// bench:http: the generated `http` handler against nginx with `reuseport`, same number of
// worker processes, same response body, side by side with wrk on loopback. Rounds alternate
// between the two servers so that a noisy machine affects both alike. Besides req/s and
// latency it reports each server's CPU time per request (user and system, summed over all of
// its processes, read from /proc before and after each round), for keep-alive clients and for
// a new connection per request (`wrk -H 'Connection: close'`).
//
// With --access-log, a second build of the same service with a request log (`accessLog`, JSON
// lines to a file in the bench's temporary folder, truncated after each round) joins the
// rounds, and the report puts its CPU per request beside the build without one: the cost of
// the log (the target is at most 1.15 times the figure without it).
//
// With --affinity, the same binary started with --cpu-affinity (`cpuAffinity`: workers pinned
// one per CPU, connections steered to the worker on the CPU that received them) joins the
// rounds as "ours+cpu", and the report puts its p99 and CPU per request beside the unpinned
// run. On loopback the receiving CPU is the one wrk's thread ran on when it connected.
//
// With --io io_uring, the same binary started with --io io_uring joins the rounds as
// "ours+uring", and the report puts its CPU per request and p99 beside epoll's and nginx's
// (issue 21's goals: CPU per keep-alive request at most 0.75x nginx's, per one-request
// connection at most 0.60x, p99 no worse than epoll's).
//
//   npm run bench:http -- [--workers N] [--connections N] [--threads N] [--seconds S]
//                         [--rounds N] [--mode keepalive|close|both] [--optimize MODE]
//                         [--binary PATH] [--access-log] [--affinity] [--io io_uring]
//
// Needs wrk and nginx; when they are missing and we are root, installs them with apt-get
// (Debian's wrk and nginx-light), as CI would.
import { spawn, spawnSync } from "node:child_process";
import {
  mkdtempSync,
  readFileSync,
  rmSync,
  truncateSync,
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
    optimize: { type: "string", default: "ReleaseSafe" },
    binary: { type: "string" },
    "access-log": { type: "boolean", default: false },
    affinity: { type: "boolean", default: false },
    io: { type: "string" },
  },
});
const TICKS_PER_SECOND = Number(
  spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout.trim() || 100,
);

const OURS_PORT = 18090;
const NGINX_PORT = 18091;
const LOGGED_PORT = 18092;
const PINNED_PORT = 18093;
const URING_PORT = 18094;
const BODY = "OK\n";

const children = [];
const tmp = mkdtempSync(path.join(os.tmpdir(), "bench-http-"));
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

ensureTools("bench:http", { wrk: "wrk", nginx: "nginx-light" });
const modes = args.mode === "both" ? ["keepalive", "close"] : [args.mode];
for (const mode of modes) {
  if (mode !== "keepalive" && mode !== "close") {
    process.stderr.write(`bench:http: --mode must be keepalive, close or both (got ${mode})\n`);
    process.exit(2);
  }
}

const binary =
  args.binary ??
  (await buildBenchService("http", path.join(tmp, "service"), { optimize: args.optimize }));
const logFile = path.join(tmp, "access.log");
const loggedBinary = args["access-log"] ? await buildLogged() : undefined;
const ours = await startOurs(binary, OURS_PORT);
const nginx = await startNginx();
const servers = { ours: { port: OURS_PORT, pgid: ours }, nginx: { port: NGINX_PORT, pgid: nginx } };
if (loggedBinary !== undefined) {
  servers["ours+log"] = { port: LOGGED_PORT, pgid: await startOurs(loggedBinary, LOGGED_PORT) };
}
if (args.affinity) {
  servers["ours+cpu"] = {
    port: PINNED_PORT,
    pgid: await startOurs(binary, PINNED_PORT, ["--cpu-affinity"]),
  };
}
if (args.io !== undefined) {
  if (args.io !== "io_uring") {
    process.stderr.write(`bench:http: --io must be io_uring (got ${args.io})\n`);
    process.exit(2);
  }
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
    const order = round % 2 ? names : [...names].reverse();
    for (const name of order) {
      results[mode][name].push(measure(servers[name], mode));
      // The log's lines of this round are counted; its file need not fill the disk.
      if (name === "ours+log") results[mode][name].at(-1).logLines = truncateLog();
    }
  }
}
report();
process.exit(0);

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

/** The bench spec with a request log to `logFile`, built as the service without one is. */
async function buildLogged() {
  const spec = JSON.parse(readFileSync(path.join(import.meta.dirname, "specs", "http.json")));
  spec.name = "http-log-bench";
  spec.accessLog = { path: logFile, format: "json" };
  const specFile = path.join(tmp, "http-log.json");
  writeFileSync(specFile, JSON.stringify(spec));
  return buildBenchService("http", path.join(tmp, "service-log"), {
    optimize: args.optimize,
    name: spec.name,
    specFile,
  });
}

/** Lines in the log so far (each answered request has one), then empties the file. */
function truncateLog() {
  // The workers write within 100 ms of an answer.
  spawnSync("sleep", ["0.3"]);
  let lines = 0;
  try {
    const text = readFileSync(logFile);
    for (const byte of text) if (byte === 10) lines += 1;
  } catch {
    return 0;
  }
  // The workers append (O_APPEND), so they write at the new end.
  truncateSync(logFile, 0);
  return lines;
}

function startOurs(binary, port, extra = []) {
  const child = spawn(
    binary,
    ["--workers", args.workers, "--listen", `web=127.0.0.1:${port}`, ...extra],
    {
      stdio: ["ignore", "pipe", "inherit"],
      detached: true,
    },
  );
  children.push(child);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error("the generated service did not become ready")),
      10000,
    );
    readline.createInterface({ input: child.stdout }).on("line", (line) => {
      if (line.includes('"event":"ready"')) {
        clearTimeout(timer);
        resolve(child.pid);
      }
    });
  });
}

async function startNginx() {
  const conf = path.join(tmp, "nginx.conf");
  writeFileSync(
    conf,
    `daemon off;
master_process on;
worker_processes ${args.workers};
pid ${tmp}/nginx.pid;
error_log stderr warn;
events { worker_connections 4096; }
http {
  access_log off;
  default_type "text/plain; charset=utf-8";
  keepalive_requests 1000000;
  client_body_temp_path ${tmp}; proxy_temp_path ${tmp}; fastcgi_temp_path ${tmp}; uwsgi_temp_path ${tmp}; scgi_temp_path ${tmp};
  server {
    listen 127.0.0.1:${NGINX_PORT} reuseport backlog=4096;
    location / { return 200 "${BODY.replace("\n", "\\n")}"; }
  }
}
`,
  );
  const child = spawn("nginx", ["-p", tmp, "-c", conf], {
    stdio: ["ignore", "inherit", "inherit"],
    detached: true,
  });
  children.push(child);
  for (let i = 0; i < 50; i += 1) {
    await new Promise((r) => setTimeout(r, 100));
    if (spawnSync("bash", ["-c", `exec 3<>/dev/tcp/127.0.0.1/${NGINX_PORT}`]).status === 0) {
      return child.pid;
    }
  }
  throw new Error("nginx did not start");
}

function report() {
  const cpu = os.cpus()[0]?.model ?? "unknown cpu";
  console.log(
    `bench:http  ${os.cpus().length} x ${cpu}, Linux ${os.release()}, node ${process.version}`,
  );
  console.log(`command: npm run bench:http -- ${process.argv.slice(2).join(" ")}`);
  console.log(
    `wrk -t${args.threads} -c${args.connections} -d${args.seconds}s, ${args.rounds} alternating rounds, ` +
      `${args.workers} worker processes each, body ${JSON.stringify(BODY)}, ours built ${args.binary ? "as given" : args.optimize}`,
  );
  for (const mode of modes) {
    console.log(mode === "close" ? "new connection per request (Connection: close):" : "keep-alive:");
    const summary = {};
    for (const name of names) {
      const rs = results[mode][name];
      const cpuUs = rs.map((r) => r.userUs + r.systemUs);
      summary[name] = {
        rps: median(rs.map((r) => r.rps)),
        cpu: median(cpuUs),
        p99: median(rs.map((r) => toMs(r.p99))),
      };
      console.log(
        `  ${name.padEnd(10)} median ${Math.round(summary[name].rps)} req/s, CPU ${summary[name].cpu.toFixed(2)} us/request, p99 ${summary[name].p99} ms`,
      );
      for (const r of rs) {
        const logged = r.logLines === undefined ? "" : `, ${r.logLines} log lines`;
        console.log(
          `    ${Math.round(r.rps)} req/s, CPU user ${r.userUs.toFixed(2)} + system ${r.systemUs.toFixed(2)} us/request, ` +
            `p50 ${r.p50}, p99 ${r.p99}, errors ${r.errors}, non-2xx ${r.non2xx}${logged}`,
        );
      }
    }
    console.log(
      `  ours/nginx: req/s ${(summary.ours.rps / summary.nginx.rps).toFixed(2)}, CPU per request ` +
        `${(summary.ours.cpu / summary.nginx.cpu).toFixed(2)}, p99 ${(summary.ours.p99 / summary.nginx.p99).toFixed(2)}`,
    );
    if (summary["ours+log"] !== undefined) {
      const logged = summary["ours+log"];
      console.log(
        `  request log: CPU per request ${summary.ours.cpu.toFixed(2)} us without, ` +
          `${logged.cpu.toFixed(2)} us with: ${(logged.cpu / summary.ours.cpu).toFixed(2)}x ` +
          `(target <= 1.15x); req/s ${(logged.rps / summary.ours.rps).toFixed(2)}x`,
      );
    }
    if (summary["ours+uring"] !== undefined) {
      const uring = summary["ours+uring"];
      const goal = mode === "close" ? "0.60" : "0.75";
      console.log(
        `  io_uring: CPU per request ${uring.cpu.toFixed(2)} us, epoll ${summary.ours.cpu.toFixed(2)}, ` +
          `nginx ${summary.nginx.cpu.toFixed(2)}: ${(uring.cpu / summary.nginx.cpu).toFixed(2)}x nginx's ` +
          `(goal <= ${goal}x), ${(uring.cpu / summary.ours.cpu).toFixed(2)}x epoll's; p99 ` +
          `${uring.p99} ms, epoll ${summary.ours.p99} ms (${(uring.p99 / summary.ours.p99).toFixed(2)}x, ` +
          `goal <= 1.00x); req/s ${(uring.rps / summary.ours.rps).toFixed(2)}x epoll's`,
      );
    }
    if (summary["ours+cpu"] !== undefined) {
      const pinned = summary["ours+cpu"];
      console.log(
        `  cpuAffinity: CPU per request ${summary.ours.cpu.toFixed(2)} us without, ` +
          `${pinned.cpu.toFixed(2)} us with (${(pinned.cpu / summary.ours.cpu).toFixed(2)}x); ` +
          `p99 ${summary.ours.p99} ms without, ${pinned.p99} ms with ` +
          `(${(pinned.p99 / summary.ours.p99).toFixed(2)}x); req/s ` +
          `${(pinned.rps / summary.ours.rps).toFixed(2)}x`,
      );
    }
  }
}

/** wrk against our server or nginx on `port`, keep-alive or one request per connection. */
function load(port, mode) {
  const { threads, connections, seconds } = args;
  const close = mode === "close";
  return wrk(`http://127.0.0.1:${port}/`, { threads, connections, seconds, close });
}
