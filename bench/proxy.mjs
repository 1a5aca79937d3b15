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
//                          [--body-bytes N] [--zero-copy]
//
// --body-bytes sets the size of the file nginx answers (sendfile); --zero-copy builds the proxy
// with `zeroCopy` and gives HAProxy `option splice-auto`: the bulk case (1 MiB answers, say).
//
// Needs wrk, nginx and haproxy; when they are missing and we are root, installs them with
// apt-get (Debian's wrk, nginx-light and haproxy), as CI would.
import { spawn, execFileSync, spawnSync } from "node:child_process";
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";
import { parseArgs } from "node:util";
import { buildBenchService } from "./service.mjs";

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
  },
});
const TICKS_PER_SECOND = Number(
  spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout.trim() || 100,
);

const BACKEND_PORT = 18180;
const OURS_PORT = 18181;
const HAPROXY_PORT = 18182;
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

ensureTools();
const modes = args.mode === "both" ? ["keepalive", "close"] : [args.mode];
for (const mode of modes) {
  if (mode !== "keepalive" && mode !== "close") {
    process.stderr.write(`bench:proxy: --mode must be keepalive, close or both (got ${mode})\n`);
    process.exit(2);
  }
}

const binary = await buildProxy();
await startNginx();
const ours = await startOurs(binary);
const haproxy = await startHaproxy();
const servers = {
  ours: { port: OURS_PORT, pgid: ours },
  haproxy: { port: HAPROXY_PORT, pgid: haproxy },
};
const names = Object.keys(servers);

const results = {};
for (const mode of modes) {
  results[mode] = Object.fromEntries(names.map((name) => [name, []]));
  for (let round = 1; round <= Number(args.rounds); round += 1) {
    const order = round % 2 ? names : [...names].reverse();
    for (const name of order) results[mode][name].push(measure(servers[name], mode));
  }
}
report();
process.exit(0);

function ensureTools() {
  const packages = { wrk: "wrk", nginx: "nginx-light", haproxy: "haproxy" };
  const missing = Object.keys(packages).filter(
    (tool) => spawnSync("sh", ["-c", `command -v ${tool}`]).status !== 0,
  );
  if (missing.length === 0) return;
  const wanted = missing.map((tool) => packages[tool]);
  if (process.getuid?.() !== 0) {
    process.stderr.write(
      `bench:proxy: ${missing.join(", ")} not on PATH; install them (Debian: apt-get install ${wanted.join(" ")})\n`,
    );
    process.exit(1);
  }
  process.stderr.write(`$ apt-get install -y ${wanted.join(" ")}\n`);
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  spawnSync("apt-get", ["update", "-q"], { stdio: "inherit", env });
  const installed = spawnSync("apt-get", ["install", "-y", "-q", ...wanted], {
    stdio: "inherit",
    env,
  });
  if (installed.status !== 0) {
    process.stderr.write(`bench:proxy: apt-get install ${wanted.join(" ")} failed\n`);
    process.exit(1);
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

function measure(server, mode) {
  const before = groupCpuTicks(server.pgid);
  const result = wrk(server.port, mode);
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

function startOurs(binary) {
  const child = spawn(binary, ["--workers", args.workers], {
    stdio: ["ignore", "pipe", "inherit"],
    detached: true,
  });
  children.push(child);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("the proxy did not become ready")), 10000);
    readline.createInterface({ input: child.stdout }).on("line", (line) => {
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

function wrk(port, mode) {
  const close = mode === "close" ? ["-H", "Connection: close"] : [];
  const out = execFileSync(
    "wrk",
    [
      "--latency",
      `-t${args.threads}`,
      `-c${args.connections}`,
      `-d${args.seconds}s`,
      ...close,
      `http://127.0.0.1:${port}/body`,
    ],
    { encoding: "utf8", timeout: 120000 },
  );
  const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? 0);
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? 0);
  const p50 = /50%\s+([\d.]+\w+)/.exec(out)?.[1] ?? "?";
  const p99 = /99%\s+([\d.]+\w+)/.exec(out)?.[1] ?? "?";
  const errors = /Socket errors: (.*)/.exec(out)?.[1] ?? "none";
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
  return { rps, p50, p99, errors, non2xx, requests };
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function toMs(text) {
  const m = /^([\d.]+)(us|ms|s)$/.exec(text);
  if (m === null) return Number.NaN;
  return Number(m[1]) * { us: 0.001, ms: 1, s: 1000 }[m[2]];
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
        `  ${name.padEnd(8)} median ${Math.round(summary[name].rps)} req/s, CPU ${summary[name].cpu.toFixed(2)} us/request, p99 ${summary[name].p99} ms`,
      );
      for (const r of rs) {
        console.log(
          `    ${Math.round(r.rps)} req/s, CPU user ${r.userUs.toFixed(2)} + system ${r.systemUs.toFixed(2)} us/request, ` +
            `p50 ${r.p50}, p99 ${r.p99}, errors ${r.errors}, non-2xx ${r.non2xx}`,
        );
      }
    }
    console.log(
      `  ours/haproxy: req/s ${(summary.ours.rps / summary.haproxy.rps).toFixed(2)}, CPU per request ` +
        `${(summary.ours.cpu / summary.haproxy.cpu).toFixed(2)} (goal <= 0.8), p99 ` +
        `${(summary.ours.p99 / summary.haproxy.p99).toFixed(2)}`,
    );
  }
}
