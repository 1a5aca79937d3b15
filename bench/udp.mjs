#!/usr/bin/env node
// bench:udp: the dns example (an authoritative DNS responder as a datagram module,
// examples/app/dns.zig) against NSD, both on loopback, driven by dnsperf. Ours runs twice:
// with batched datagrams (udpBatch 32, the default) and without (udpBatch 1: one recvmmsg and
// one sendmmsg per datagram, as the code before batches did with recvfrom and sendto). NSD
// runs with `reuseport: yes` and as many server processes as we have workers, from its own
// configuration in a temporary folder, serving the same names and addresses
// (`minimal-responses: yes`, as ours adds no authority section; response rate limiting off,
// as ours has none). Rounds alternate between the three servers so that a noisy machine
// affects them alike; queries per second and the CPU per query of each server's processes
// (from /proc, before and after each round) are printed as medians, with the machine, the
// command and the load average.
//
// --one-peer: the load is one client socket (dnsperf -c 1) asking one question
// (www.example.test A), so that the replies of a batch go to one peer with one size: the load
// UDP GSO (UDP_SEGMENT) serves. --gso-off: one more build of ours, batched but with GSO off
// (the generated datagrams.zig edited: at most one reply per message), in the same rounds.
// --io io_uring: the batched binary runs a second time with `--io io_uring` (its UDP socket
// receives through the ring: multishot recvmsg), in the same rounds.
//
//   npm run bench:udp -- [--workers N] [--seconds S] [--rounds N] [--clients N]
//                        [--outstanding N] [--optimize MODE] [--one-peer] [--gso-off]
//                        [--io io_uring]
//
// Needs dnsperf and nsd; when they are missing and we are root, installs them with apt-get
// (Debian's dnsperf and nsd).
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { buildBenchService } from "./service.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "..");
const { values: args } = parseArgs({
  options: {
    workers: { type: "string", default: String(os.cpus().length) },
    seconds: { type: "string", default: "10" },
    rounds: { type: "string", default: "3" },
    clients: { type: "string", default: "8" },
    outstanding: { type: "string", default: "500" },
    optimize: { type: "string", default: "ReleaseFast" },
    "one-peer": { type: "boolean", default: false },
    "gso-off": { type: "boolean", default: false },
    io: { type: "string" },
  },
});
if (args.io !== undefined && args.io !== "io_uring") {
  process.stderr.write(`bench:udp: --io must be io_uring (got ${args.io})\n`);
  process.exit(2);
}
if (args["one-peer"]) args.clients = "1";

const TICKS_PER_SECOND = 100;
const PORTS = { batched: 15353, unbatched: 15354, nsd: 15355, nogso: 15356, uring: 15357 };
/** The example's table (examples/app/dns.zig), as NSD's zone. */
const ZONE = `$ORIGIN example.test.
$TTL 300
@     IN SOA ns.example.test. hostmaster.example.test. 1 3600 900 604800 300
@     IN NS  ns.example.test.
@     IN A    192.0.2.1
@     IN AAAA 2001:db8::1
www   IN A    192.0.2.2
www   IN A    192.0.2.3
www   IN AAAA 2001:db8::2
mail  IN A    192.0.2.25
v6    IN AAAA 2001:db8::6
v6    IN AAAA 2001:db8::66
`;
/** What dnsperf asks, round robin: names and types that have answers on both servers. */
const QUERIES = args["one-peer"]
  ? ["www.example.test A"]
  : [
      "www.example.test A",
      "www.example.test AAAA",
      "example.test A",
      "example.test AAAA",
      "mail.example.test A",
      "v6.example.test AAAA",
    ];

const children = [];
const tmp = mkdtempSync(path.join(os.tmpdir(), "bench-udp-"));
process.on("exit", () => {
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
const queryFile = path.join(tmp, "queries.txt");
writeFileSync(queryFile, `${QUERIES.join("\n")}\n`);

const binaries = {
  batched: await buildDns("batched", undefined),
  unbatched: await buildDns("unbatched", 1),
};
if (args["gso-off"]) binaries.nogso = await buildDns("nogso", undefined, withoutGso);
const ours = Object.keys(binaries);
const servers = {};
for (const name of ours) {
  const listen = `dns=127.0.0.1:${PORTS[name]}`;
  servers[name] = start(name, binaries[name], ["--workers", args.workers, "--listen", listen]);
}
if (args.io === "io_uring") {
  const listen = `dns=127.0.0.1:${PORTS.uring}`;
  const argv = ["--io", "io_uring", "--workers", args.workers, "--listen", listen];
  servers.uring = start("uring", binaries.batched, argv);
}
servers.nsd = start("nsd", "nsd", ["-d", "-c", writeNsdConfig()]);
for (const name of Object.keys(servers)) await waitForAnswer(name, PORTS[name]);

const results = {
  batched: [],
  ...(args.io === "io_uring" ? { uring: [] } : {}),
  ...(args["gso-off"] ? { nogso: [] } : {}),
  unbatched: [],
  nsd: [],
};
const names = Object.keys(results);
for (let round = 0; round < Number(args.rounds); round += 1) {
  // Each server first, in the middle and last in turn.
  const order = names.map((_, i) => names[(i + round) % names.length]);
  for (const name of order) results[name].push(measure(servers[name], PORTS[name]));
}
report();
process.exit(0);

function ensureTools() {
  const wanted = { dnsperf: "dnsperf", nsd: "nsd" };
  const missing = Object.keys(wanted).filter(
    (tool) => spawnSync("sh", ["-c", `command -v ${tool}`]).status !== 0,
  );
  if (missing.length === 0) return;
  const packages = missing.map((tool) => wanted[tool]);
  if (process.getuid?.() !== 0) {
    process.stderr.write(
      `bench:udp: ${missing.join(" and ")} not on PATH; install them ` +
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
    process.stderr.write(`bench:udp: apt-get install ${packages.join(" ")} failed\n`);
    process.exit(1);
  }
}

/** examples/dns.json (with `udpBatch` when given) and the example's module, built. */
async function buildDns(name, udpBatch, edit) {
  const spec = JSON.parse(readFileSync(path.join(root, "examples/dns.json"), "utf8"));
  delete spec.$schema;
  if (udpBatch !== undefined) spec.udpBatch = udpBatch;
  const specFile = path.join(tmp, `dns-${name}.json`);
  writeFileSync(specFile, JSON.stringify(spec));
  return buildBenchService("dns", path.join(tmp, `dns-${name}`), {
    optimize: args.optimize,
    name: "dns",
    specFile,
    modules: { dns: "examples/app/dns.zig" },
    edit,
  });
}

/** Edits a generated project so that every reply goes in a message of its own (no GSO). */
function withoutGso(out) {
  const file = path.join(out, "src", "worker", "datagrams.zig");
  const source = readFileSync(file, "utf8");
  const edited = source.replace(
    "pub const gso_max_segments = 64;",
    "pub const gso_max_segments = 1;",
  );
  if (edited === source) throw new Error(`bench:udp: no gso_max_segments in ${file}`);
  writeFileSync(file, edited);
}

function writeNsdConfig() {
  const dir = path.join(tmp, "nsd");
  execFileSync("mkdir", ["-p", dir]);
  writeFileSync(path.join(dir, "example.test.zone"), ZONE);
  const config = path.join(dir, "nsd.conf");
  writeFileSync(
    config,
    [
      "server:",
      `  server-count: ${args.workers}`,
      "  reuseport: yes",
      `  ip-address: 127.0.0.1@${PORTS.nsd}`,
      "  do-ip6: no",
      `  port: ${PORTS.nsd}`,
      '  username: ""',
      '  chroot: ""',
      `  zonesdir: "${dir}"`,
      '  database: ""',
      `  zonelistfile: "${dir}/zone.list"`,
      `  xfrdfile: "${dir}/xfrd.state"`,
      `  pidfile: "${dir}/nsd.pid"`,
      `  logfile: "${dir}/nsd.log"`,
      "  verbosity: 0",
      "  minimal-responses: yes",
      // Response rate limiting (on in Debian's build, 200/s per client network) would throttle
      // the one client address of the bench.
      "  rrl-ratelimit: 0",
      "  rrl-whitelist-ratelimit: 0",
      "remote-control:",
      "  control-enable: no",
      "zone:",
      "  name: example.test",
      "  zonefile: example.test.zone",
      "",
    ].join("\n"),
  );
  process.stderr.write(`$ nsd -d -c ${config}\n`);
  return config;
}

/** Starts a server in a process group of its own (its CPU is that group's). */
function start(name, command, argv) {
  const child = spawn(command, argv, { detached: true, stdio: "ignore" });
  children.push(child);
  child.on("exit", (code) => {
    if (code !== null && code !== 0) process.stderr.write(`bench:udp: ${name} exited ${code}\n`);
  });
  return { name, pgid: child.pid };
}

async function waitForAnswer(name, port) {
  const argv = ["-s", "127.0.0.1", "-p", String(port), "-d", queryFile, "-n", "1", "-t", "1"];
  for (let i = 0; i < 100; i += 1) {
    const r = spawnSync("dnsperf", argv, { encoding: "utf8" });
    if (/Queries completed:\s+[1-9]/.test(r.stdout ?? "")) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`bench:udp: ${name} does not answer on port ${port}`);
}

/** CPU time (user + system) in clock ticks, summed over the processes of group `pgid`. */
function groupCpuTicks(pgid) {
  let ticks = 0;
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
    ticks += Number(fields[11]) + Number(fields[12]);
  }
  return ticks;
}

/** One dnsperf run against `port`: queries per second, CPU per query, losses. */
function measure(server, port) {
  const argv = [
    "-s", "127.0.0.1", "-p", String(port), "-d", queryFile, "-l", args.seconds,
    "-c", args.clients, "-q", args.outstanding,
  ];
  const before = groupCpuTicks(server.pgid);
  const out = execFileSync("dnsperf", argv, { encoding: "utf8", timeout: 600_000 });
  const after = groupCpuTicks(server.pgid);
  const completed = Number(/Queries completed:\s+(\d+)/.exec(out)?.[1] ?? 0);
  const lost = Number(/Queries lost:\s+(\d+)/.exec(out)?.[1] ?? 0);
  const qps = Number(/Queries per second:\s+([\d.]+)/.exec(out)?.[1] ?? 0);
  const cpuUs = ((after - before) * 1e6) / TICKS_PER_SECOND / Math.max(completed, 1);
  return { qps, cpuUs, completed, lost };
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

function report() {
  const cpu = os.cpus()[0]?.model ?? "unknown CPU";
  const nsd = spawnSync("nsd", ["-v"], { encoding: "utf8" }).stderr.split("\n")[0];
  const load = (l) => l.map((x) => x.toFixed(1)).join(" ");
  console.log(`bench:udp  ${os.cpus().length} x ${cpu}, Linux ${os.release()}; ${nsd}`);
  console.log(`command: npm run bench:udp -- ${process.argv.slice(2).join(" ")}`);
  console.log(
    `dnsperf -l ${args.seconds} -c ${args.clients} -q ${args.outstanding}, ` +
      `${QUERIES.length} queries round robin, ${args.rounds} alternating rounds; ` +
      `${args.workers} worker processes / NSD servers; ours built ${args.optimize}`,
  );
  console.log(`load average before ${load(loadBefore)}, after ${load(os.loadavg())}`);
  console.log(
    `${"server".padEnd(24)} ${"queries/s".padStart(10)} ${"CPU us/query".padStart(13)}` +
      `  ${"vs NSD".padStart(6)}  lost`,
  );
  const nsdCpu = median(results.nsd.map((r) => r.cpuUs));
  const label = {
    batched: "ours, udpBatch 32",
    nogso: "ours, 32, GSO off",
    uring: "ours, 32, io_uring",
    unbatched: "ours, udpBatch 1",
    nsd: "nsd (reuseport: yes)",
  };
  for (const name of names) {
    const rows = results[name];
    const cpuUs = median(rows.map((r) => r.cpuUs));
    const qps = median(rows.map((r) => r.qps));
    const lost = rows.reduce((sum, r) => sum + r.lost, 0);
    console.log(
      `${label[name].padEnd(24)} ${qps.toFixed(0).padStart(10)} ${cpuUs.toFixed(2).padStart(13)}` +
        `  ${(cpuUs / nsdCpu).toFixed(2).padStart(6)}  ${lost}`,
    );
  }
  console.log("rounds (queries/s, CPU us/query):");
  for (const name of names) {
    const cells = results[name].map((r) => `${r.qps.toFixed(0)} ${r.cpuUs.toFixed(2)}`);
    console.log(`  ${label[name].padEnd(22)} ${cells.join(" | ")}`);
  }
}
