#!/usr/bin/env node
// bench:http: the generated `http` handler against nginx with `reuseport`, same number of
// worker processes, same response body, side by side with wrk on loopback. Rounds alternate
// between the two servers so that a noisy machine affects both alike.
//
//   npm run bench:http -- [--workers N] [--connections N] [--threads N] [--seconds S]
//                         [--rounds N] [--binary PATH]
//
// Needs wrk and nginx on PATH (Debian: apt-get install wrk nginx-light).
import { spawn, execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
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
    binary: { type: "string" },
  },
});
const OURS_PORT = 18090;
const NGINX_PORT = 18091;
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

for (const tool of ["wrk", "nginx"]) {
  if (spawnSync("sh", ["-c", `command -v ${tool}`]).status !== 0) {
    process.stderr.write(
      `bench:http: ${tool} is not on PATH (Debian: apt-get install wrk nginx-light)\n`,
    );
    process.exit(1);
  }
}

const binary = args.binary ?? (await buildBenchService("http", path.join(tmp, "service")));
await startOurs();
await startNginx();

const results = { ours: [], nginx: [] };
for (let round = 1; round <= Number(args.rounds); round += 1) {
  for (const [name, port] of round % 2
    ? [
        ["ours", OURS_PORT],
        ["nginx", NGINX_PORT],
      ]
    : [
        ["nginx", NGINX_PORT],
        ["ours", OURS_PORT],
      ]) {
    results[name].push(wrk(port));
  }
}
report();
process.exit(0);

function startOurs() {
  const child = spawn(
    binary,
    ["--workers", args.workers, "--listen", `web=127.0.0.1:${OURS_PORT}`],
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
        resolve();
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
    if (spawnSync("bash", ["-c", `exec 3<>/dev/tcp/127.0.0.1/${NGINX_PORT}`]).status === 0) return;
  }
  throw new Error("nginx did not start");
}

function wrk(port) {
  const out = execFileSync(
    "wrk",
    [
      "--latency",
      `-t${args.threads}`,
      `-c${args.connections}`,
      `-d${args.seconds}s`,
      `http://127.0.0.1:${port}/`,
    ],
    { encoding: "utf8", timeout: 120000 },
  );
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? 0);
  const p50 = /50%\s+([\d.]+\w+)/.exec(out)?.[1] ?? "?";
  const p99 = /99%\s+([\d.]+\w+)/.exec(out)?.[1] ?? "?";
  const errors = /Socket errors: (.*)/.exec(out)?.[1] ?? "none";
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
  return { rps, p50, p99, errors, non2xx };
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function report() {
  const cpu = os.cpus()[0]?.model ?? "unknown cpu";
  console.log(
    `bench:http  ${os.cpus().length} x ${cpu}, Linux ${os.release()}, node ${process.version}`,
  );
  console.log(`command: npm run bench:http -- ${process.argv.slice(2).join(" ")}`);
  console.log(
    `wrk -t${args.threads} -c${args.connections} -d${args.seconds}s, ${args.rounds} alternating rounds, ` +
      `${args.workers} worker processes each, body ${JSON.stringify(BODY)}`,
  );
  for (const name of ["ours", "nginx"]) {
    const rs = results[name];
    console.log(
      `  ${name.padEnd(6)} median ${Math.round(median(rs.map((r) => r.rps)))} req/s  rounds: ` +
        rs
          .map(
            (r) =>
              `${Math.round(r.rps)} (p50 ${r.p50}, p99 ${r.p99}, errors ${r.errors}, non-2xx ${r.non2xx})`,
          )
          .join("; "),
    );
  }
  const ratio = median(results.ours.map((r) => r.rps)) / median(results.nginx.map((r) => r.rps));
  console.log(`  ours/nginx = ${ratio.toFixed(2)}`);
}
