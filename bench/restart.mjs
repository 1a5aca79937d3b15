#!/usr/bin/env node
// bench:restart: restarts a generated service again and again under continuous load and
// counts every failure a client sees, by kind.
//
//   npm run bench:restart -- [--restarts N] [--migrate 0|1|both]
//                            [--mode supervisor|standalone|upgrade] [--handover yes|no]
//                            [--workers N] [--interval-ms MS] [--binary PATH] [--binaries P,P,…]
//                            [--json] [--io epoll|io_uring]
//                            [--tcp-concurrency N] [--http-connections N] [--udp-window N]
//
// --io passes `--io` to every process the bench starts (default: $GEN_REUSEPORT_IO, else the
// spec's mode).
//
// Each run happens in a network namespace of its own (`unshare -n`, root), so that
// net.ipv4.tcp_migrate_req can be set there without touching the host, and all traffic
// stays on that namespace's loopback.
//
// Modes:
//   supervisor  SIGHUP to the supervisor: a new generation of workers takes over the same
//               listening sockets (the generated program's restart).
//   standalone  two independent --standalone processes: start the new one, wait for it to be
//               ready, SIGTERM the old one (the pattern of unrelated processes). With
//               `--handover yes` (the default) both run with `--handover PATH`, so the new
//               one serves the old one's sockets; `--handover no` measures the bare pattern,
//               whose old sockets leave the group when it stops.
//   upgrade     whole-program upgrades: each round renames a binary built from another spec
//               over the path the service was started by, and sends SIGHUP to the serving
//               supervisor; a new supervisor takes the sockets over. The specs cycle through
//               bench/specs/upgrade-{a,b,c,d}.json: 4 → 2 → 6 → 4 workers, a listener moved to
//               another port, one added, both removed. The load runs on the listeners every
//               variant has (who, web, echo), so every failure counted is one on a listener that
//               exists before and after. --workers does not apply (the specs set the count).
import { spawn, execFileSync } from "node:child_process";
import { once } from "node:events";
import {
  chmodSync,
  copyFileSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
} from "node:fs";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { startLoad, failureCount } from "./load.mjs";
import { buildBenchService } from "./service.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));

const { values: args } = parseArgs({
  options: {
    restarts: { type: "string", default: "20" },
    migrate: { type: "string", default: "both" },
    mode: { type: "string", default: "supervisor" },
    handover: { type: "string", default: "yes" },
    workers: { type: "string", default: "4" },
    "interval-ms": { type: "string", default: "300" },
    "tcp-concurrency": { type: "string", default: "8" },
    "http-connections": { type: "string", default: "8" },
    "udp-window": { type: "string", default: "16" },
    binary: { type: "string" },
    binaries: { type: "string" },
    json: { type: "boolean", default: false },
    inside: { type: "boolean", default: false },
    io: { type: "string", default: process.env.GEN_REUSEPORT_IO || undefined },
  },
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function main() {
  if (process.getuid?.() !== 0)
    fail("bench:restart needs root for `unshare -n` (a network namespace of its own)");
  const upgrade = args.mode === "upgrade";
  const binary = upgrade ? undefined : (args.binary ?? (await buildService()));
  const binaries = upgrade ? (args.binaries ?? (await buildUpgradeVariants())) : undefined;
  const migrates = args.migrate === "both" ? ["0", "1"] : [args.migrate];
  const results = [];
  for (const migrate of migrates) {
    const inner = [
      path.join(here, "restart.mjs"),
      "--inside",
      ...(upgrade ? ["--binaries", binaries] : ["--binary", binary]),
      "--migrate",
      migrate,
      "--restarts",
      args.restarts,
      "--mode",
      args.mode,
      "--handover",
      args.handover,
      "--workers",
      args.workers,
      "--interval-ms",
      args["interval-ms"],
      "--tcp-concurrency",
      args["tcp-concurrency"],
      "--http-connections",
      args["http-connections"],
      "--udp-window",
      args["udp-window"],
      ...(args.io === undefined ? [] : ["--io", args.io]),
    ];
    const out = execFileSync("unshare", ["-n", process.execPath, ...inner], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "inherit"],
      timeout: 30 * 60 * 1000,
    });
    results.push(JSON.parse(out.trim().split("\n").at(-1)));
  }
  if (args.json) {
    process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
  } else {
    report(results);
  }
}

function fail(message) {
  process.stderr.write(`bench:restart: ${message}\n`);
  process.exit(1);
}

/** Builds bench/specs/restart.json in a temporary directory removed at exit. */
async function buildService() {
  const out = mkdtempSync(path.join(os.tmpdir(), "bench-restart-"));
  process.on("exit", () => rmSync(out, { recursive: true, force: true }));
  return buildBenchService("restart", out);
}

/** The variants an upgrade run cycles through, built once; their paths, comma-separated. */
async function buildUpgradeVariants() {
  const out = mkdtempSync(path.join(os.tmpdir(), "bench-upgrade-"));
  process.on("exit", () => rmSync(out, { recursive: true, force: true }));
  const paths = [];
  for (const spec of UPGRADE_SPECS) {
    const dir = path.join(out, spec);
    paths.push(await buildBenchService(spec, dir, { name: "upgrade-bench" }));
  }
  return paths.join(",");
}

const UPGRADE_SPECS = ["upgrade-a", "upgrade-b", "upgrade-c", "upgrade-d"];

// Inside the namespace.

const PORTS = { who: 8001, web: 8002, echo: 8003 };

function nstat() {
  const text = execFileSync(
    "nstat",
    [
      "-az",
      "TcpExtListenOverflows",
      "TcpExtListenDrops",
      "TcpExtTCPMigrateReqSuccess",
      "TcpExtTCPMigrateReqFailure",
      "TcpExtTCPAbortOnClose",
      "UdpRcvbufErrors",
      "UdpSndbufErrors",
      "UdpNoPorts",
      "UdpInErrors",
    ],
    { encoding: "utf8" },
  );
  const counters = {};
  for (const line of text.split("\n")) {
    const m = /^(\w+)\s+(\d+)/.exec(line);
    if (m) counters[m[1]] = Number(m[2]);
  }
  return counters;
}

/** A started service process with its events. */
function startService(binary, extra) {
  const listen = Object.entries(PORTS).flatMap(([name, port]) => [
    "--listen",
    `${name}=127.0.0.1:${port}`,
  ]);
  const io = args.io === undefined ? [] : ["--io", args.io];
  const child = spawn(binary, [...io, ...listen, "--drain-timeout", "3000", ...extra], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  const service = { child, events: [], waiters: [], stderr: "" };
  child.stderr.on("data", (d) => (service.stderr += d));
  readline.createInterface({ input: child.stdout }).on("line", (line) => {
    let event;
    try {
      event = JSON.parse(line);
    } catch {
      return;
    }
    service.events.push(event);
    for (const w of [...service.waiters]) {
      if (w.match(event)) {
        service.waiters.splice(service.waiters.indexOf(w), 1);
        w.resolve(event);
      }
    }
  });
  service.exited = once(child, "exit");
  // "exit" may come before the last lines of its standard output are read (its `stopped`
  // event); "close" comes once they have been.
  service.closed = once(child, "close");
  return service;
}

function waitFor(service, match, timeoutMs, what) {
  const seen = service.events.find(match);
  if (seen) return Promise.resolve(seen);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`timed out waiting for ${what}\n${service.stderr}`)),
      timeoutMs,
    );
    service.waiters.push({ match, resolve: (e) => (clearTimeout(timer), resolve(e)) });
  });
}

function percentile(sorted, p) {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

async function runInside() {
  execFileSync("ip", ["link", "set", "lo", "up"]);
  execFileSync("sysctl", ["-q", "-w", `net.ipv4.tcp_migrate_req=${args.migrate}`]);
  if (args.mode === "upgrade") return runUpgrades();
  const restarts = Number(args.restarts);
  const interval = Number(args["interval-ms"]);
  const standalone = args.mode === "standalone";
  const started = [];
  const stopAll = () =>
    started.forEach((s) => s.child.exitCode === null && s.child.kill("SIGKILL"));
  process.on("exit", stopAll);

  const handoverDir = mkdtempSync(path.join(os.tmpdir(), "bench-handover-"));
  process.on("exit", () => rmSync(handoverDir, { recursive: true, force: true }));
  const standaloneFlags =
    args.handover === "yes"
      ? ["--standalone", "--handover", path.join(handoverDir, "restart.sock")]
      : ["--standalone"];
  const launch = () => {
    const s = startService(
      args.binary,
      standalone ? standaloneFlags : ["--workers", args.workers],
    );
    started.push(s);
    return s;
  };
  let current = launch();
  await waitFor(current, (e) => e.event === "ready", 15000, "the first ready event");
  const before = nstat();
  const load = startLoad(
    { host: "127.0.0.1", whoamiPort: PORTS.who, httpPort: PORTS.web, udpPort: PORTS.echo },
    {
      tcpConcurrency: Number(args["tcp-concurrency"]),
      httpConnections: Number(args["http-connections"]),
      udpWindow: Number(args["udp-window"]),
    },
  );
  await sleep(300);

  const latencies = [];
  for (let k = 1; k <= restarts; k += 1) {
    await sleep(interval / 2 + Math.random() * interval);
    const t0 = performance.now();
    if (standalone) {
      const next = launch();
      await waitFor(next, (e) => e.event === "ready", 15000, "the new process to be ready");
      latencies.push(performance.now() - t0);
      current.child.kill("SIGTERM");
      await current.exited;
      current = next;
    } else {
      current.child.kill("SIGHUP");
      await waitFor(
        current,
        (e) => e.event === "ready" && e.generation === k + 1,
        15000,
        `generation ${k + 1}`,
      );
      latencies.push(performance.now() - t0);
    }
  }
  await sleep(500);
  const stats = await load.stop();
  const after = nstat();
  current.child.kill("SIGTERM");
  const [code] = await current.exited;
  await Promise.race([current.closed, sleep(5000)]);
  const stopped = current.events.find((e) => e.event === "stopped");
  const errors = current.events.filter((e) => e.event === "error");
  return {
    mode: args.mode,
    handover: standalone ? args.handover : null,
    tcp_migrate_req: Number(args.migrate),
    restarts,
    workers: standalone ? 1 : Number(args.workers),
    ...summarize(stats, latencies, before, after),
    exit_code: code,
    stopped: stopped ?? null,
    error_events: errors,
    first_errors: stats.errors,
  };
}

/** Whether process `pid` is still running (a zombie counts as gone). */
function running(pid) {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

/**
 * --mode upgrade, inside the namespace. Only the first supervisor is this script's child:
 * each later one is started by its predecessor and shares its standard output, so every
 * event arrives on the first child's stdout; the serving supervisor's pid comes from the
 * `ready` event that says whom it took over from.
 */
async function runUpgrades() {
  const variants = args.binaries.split(",");
  const restarts = Number(args.restarts);
  const interval = Number(args["interval-ms"]);
  const workDir = mkdtempSync(path.join(os.tmpdir(), "bench-upgrade-run-"));
  const exe = path.join(workDir, "upgrade-bench");
  const deploy = (file) => {
    copyFileSync(file, `${exe}.new`);
    chmodSync(`${exe}.new`, 0o755);
    renameSync(`${exe}.new`, exe);
  };
  const pids = new Set();
  process.on("exit", () => {
    for (const pid of pids) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // Gone already.
      }
    }
    rmSync(workDir, { recursive: true, force: true });
  });
  deploy(variants[0]);
  const service = startService(exe, []);
  let ready = await waitFor(service, (e) => e.event === "ready", 15000, "the first ready event");
  pids.add(ready.pid);
  const workerCounts = [ready.workers.length];
  const before = nstat();
  const load = startLoad(
    { host: "127.0.0.1", whoamiPort: PORTS.who, httpPort: PORTS.web, udpPort: PORTS.echo },
    {
      tcpConcurrency: Number(args["tcp-concurrency"]),
      httpConnections: Number(args["http-connections"]),
      udpWindow: Number(args["udp-window"]),
    },
  );
  await sleep(300);
  const latencies = [];
  const rounds = [];
  for (let k = 1; k <= restarts; k += 1) {
    await sleep(interval / 2 + Math.random() * interval);
    deploy(variants[k % variants.length]);
    const from = ready.pid;
    const t0 = performance.now();
    process.kill(from, "SIGHUP");
    ready = await waitFor(
      service,
      (e) => e.event === "ready" && e.upgraded_from === from,
      30000,
      `the supervisor taking over from pid ${from} (round ${k})`,
    );
    latencies.push(performance.now() - t0);
    pids.add(ready.pid);
    workerCounts.push(ready.workers.length);
    rounds.push({
      round: k,
      signalled_at: Date.now() - Math.round(performance.now() - t0),
      from,
      to: ready.pid,
      workers: ready.workers.length,
    });
  }
  await sleep(500);
  const stats = await load.stop();
  const after = nstat();
  const last = ready;
  process.kill(last.pid, "SIGTERM");
  const stopped = await waitFor(
    service,
    (e) => e.event === "stopped" && e.generation === last.generation && e.successor === undefined,
    15000,
    "the last supervisor to stop",
  );
  for (let i = 0; i < 100 && [...pids].some(running); i += 1) await sleep(50);
  const left = [...pids].filter(running);
  const errors = service.events.filter((e) => e.event === "error");
  const exited = service.events.filter((e) => e.event === "stopped" && e.successor !== undefined);
  const badExits = service.events.filter(
    (e) =>
      e.event === "worker_exit" && (!e.expected || e.signal !== undefined || e.exit_code !== 0),
  );
  return {
    mode: "upgrade",
    tcp_migrate_req: Number(args.migrate),
    restarts,
    workers: [...new Set(workerCounts)].join("/"),
    ...summarize(stats, latencies, before, after),
    // The last supervisor is not this script's child: its exit code is not ours to read.
    exit_code: left.length === 0 ? 0 : null,
    supervisors_exited_after_handover: exited.length,
    workers_exited_badly: badExits,
    stderr: service.stderr.split("\n").filter((l) => /warning|error/.test(l)).slice(0, 20),
    rounds,
    processes_left: left,
    stopped: stopped ?? null,
    error_events: errors,
    first_errors: stats.errors,
  };
}

/**
 * What both kinds of run report: what the clients saw, restart times, spread, and the change
 * of the kernel's counters from `before` to `after` (nstat).
 */
function summarize(stats, latencies, before, after) {
  latencies.sort((a, b) => a - b);
  const perWorker = [...stats.byWorker.values()];
  const kernel = Object.fromEntries(
    Object.keys(after).map((k) => [k, after[k] - (before[k] ?? 0)]),
  );
  return {
    tcp: stats.tcp,
    http: stats.http,
    udp: stats.udp,
    failures: failureCount(stats),
    restart_latency_ms: {
      p50: round(percentile(latencies, 50)),
      p99: round(percentile(latencies, 99)),
      max: round(latencies.at(-1) ?? 0),
    },
    spread: {
      by_worker: Object.fromEntries([...stats.byWorker.entries()].sort((a, b) => a[0] - b[0])),
      max_over_min: perWorker.length
        ? Math.round((Math.max(...perWorker) / Math.max(1, Math.min(...perWorker))) * 1000) / 1000
        : 0,
    },
    generations_seen: stats.byGeneration.size,
    kernel,
  };
}

function round(x) {
  return Math.round(x * 10) / 10;
}

function report(results) {
  const cpu = os.cpus()[0]?.model ?? "unknown cpu";
  console.log(
    `bench:restart  ${os.cpus().length} x ${cpu}, Linux ${os.release()}, node ${process.version}`,
  );
  console.log(`command: npm run bench:restart -- ${process.argv.slice(2).join(" ")}`);
  for (const r of results) {
    console.log(
      `\nmode=${r.mode}${r.handover ? ` handover=${r.handover}` : ""} tcp_migrate_req=${r.tcp_migrate_req} restarts=${r.restarts} workers=${r.workers}`,
    );
    console.log(
      `  tcp connections   ok=${r.tcp.ok} refused=${r.tcp.refused} reset=${r.tcp.reset} timeout=${r.tcp.timeout} eof=${r.tcp.eof} other=${r.tcp.other}`,
    );
    console.log(
      `  http keep-alive   ok=${r.http.ok} refused=${r.http.refused} reset=${r.http.reset} timeout=${r.http.timeout} eof=${r.http.eof} other=${r.http.other} (clean reconnects after Connection: close: ${r.http.reconnects})`,
    );
    console.log(
      `  udp datagrams     sent=${r.udp.sent} received=${r.udp.received} lost=${r.udp.lost}`,
    );
    console.log(`  failures total    ${r.failures}`);
    console.log(
      `  restart latency   p50=${r.restart_latency_ms.p50} ms p99=${r.restart_latency_ms.p99} ms max=${r.restart_latency_ms.max} ms (signal to ready)`,
    );
    console.log(
      `  spread (tcp conns per worker index) ${JSON.stringify(r.spread.by_worker)} max/min=${r.spread.max_over_min}`,
    );
    console.log(`  kernel counters   ${JSON.stringify(r.kernel)}`);
    if (r.mode === "upgrade")
      console.log(
        `  supervisors       ${r.supervisors_exited_after_handover} exited 0 after handing over; left running: ${r.processes_left.length}`,
      );
    if (r.error_events.length) console.log(`  error events      ${JSON.stringify(r.error_events)}`);
    if (r.first_errors.length)
      console.log(`  first errors      ${r.first_errors.slice(0, 5).join(" | ")}`);
  }
}

if (args.inside) {
  const result = await runInside();
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(0);
} else {
  await main();
}
