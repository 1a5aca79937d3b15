// What several benchmarks share: installing the Debian tools they drive, the CPU time of a
// server's process group from /proc, wrk's figures, and a median. One copy, so that every
// bench measures CPU and latency the same way.
import { execFileSync, spawnSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  writeFileSync,
} from "node:fs";

/**
 * Installs with apt-get the packages of the commands in `tools` (command → Debian package)
 * that are not on PATH; as another user than root, names them and exits 1.
 */
export function ensureTools(bench, tools) {
  const missing = Object.keys(tools).filter(
    (tool) => spawnSync("sh", ["-c", `command -v ${tool}`]).status !== 0,
  );
  if (missing.length === 0) return;
  const packages = [...new Set(missing.map((tool) => tools[tool]))];
  if (process.getuid?.() !== 0) {
    process.stderr.write(
      `${bench}: ${missing.join(", ")} not on PATH; install them ` +
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
    process.stderr.write(`${bench}: apt-get install ${packages.join(" ")} failed\n`);
    process.exit(1);
  }
}

/** CPU time (user, system) in clock ticks, summed over the processes of group `pgid`. */
export function groupCpuTicks(pgid) {
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

/**
 * One wrk run against `url` (`--latency`; `close` adds `Connection: close`, one request per
 * connection): requests, requests per second, p50 and p99 as wrk prints them, socket errors
 * and non-2xx/3xx answers.
 */
export function wrk(url, { threads, connections, seconds, close = false, script }) {
  const argv = ["--latency", `-t${threads}`, `-c${connections}`, `-d${seconds}s`];
  if (close) argv.push("-H", "Connection: close");
  if (script !== undefined) argv.push("-s", script);
  const out = execFileSync("wrk", [...argv, url], { encoding: "utf8", timeout: 120000 });
  const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? 0);
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? 0);
  const p50 = /50%\s+([\d.]+\w+)/.exec(out)?.[1] ?? "?";
  const p99 = /99%\s+([\d.]+\w+)/.exec(out)?.[1] ?? "?";
  const errors = /Socket errors: (.*)/.exec(out)?.[1] ?? "none";
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
  return { rps, p50, p99, errors, non2xx, requests };
}

/** wrk's latency text (`812.00us`, `1.20ms`, `2.01s`) in milliseconds. */
export function toMs(text) {
  const m = /^([\d.]+)(us|ms|s)$/.exec(text);
  if (m === null) return Number.NaN;
  return Number(m[1]) * { us: 0.001, ms: 1, s: 1000 }[m[2]];
}

/** The middle value (the upper one of an even count). */
export function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/**
 * Holds process `pid` (and the children it starts later) to `cpus` CPUs with a CFS quota, as a
 * container runtime does for a pod's `limits.cpu`: a cgroup of its own under cgroup v2
 * (`cpu.max`) or v1's `cpu` hierarchy (`cpu.cfs_quota_us`). Returns a function that removes
 * the cgroup once the process has ended. Needs root; exits 1 naming the reason otherwise.
 */
export function limitCpu(bench, name, pid, cpus) {
  const period = 100_000;
  const quota = Math.round(cpus * period);
  const v2 = "/sys/fs/cgroup";
  const v1 = "/sys/fs/cgroup/cpu";
  const leaf = `${bench.replace(/[^a-z0-9]/gi, "-")}-${name}-${process.pid}`;
  let dir;
  try {
    if (existsSync(`${v2}/cgroup.controllers`)) {
      const enabled = readFileSync(`${v2}/cgroup.subtree_control`, "utf8");
      if (!enabled.split(/\s+/).includes("cpu")) {
        writeFileSync(`${v2}/cgroup.subtree_control`, "+cpu");
      }
      dir = `${v2}/${leaf}`;
      mkdirSync(dir);
      writeFileSync(`${dir}/cpu.max`, `${quota} ${period}`);
    } else {
      dir = `${v1}/${leaf}`;
      mkdirSync(dir);
      writeFileSync(`${dir}/cpu.cfs_period_us`, String(period));
      writeFileSync(`${dir}/cpu.cfs_quota_us`, String(quota));
    }
    writeFileSync(`${dir}/cgroup.procs`, String(pid));
  } catch (err) {
    process.stderr.write(
      `${bench}: cannot hold ${name} to ${cpus} CPUs with a cgroup (${err.message}); ` +
        "--cpu-limit needs root and a writable cgroup v1 or v2 hierarchy\n",
    );
    process.exit(1);
  }
  return () => {
    for (let i = 0; i < 50; i += 1) {
      try {
        rmdirSync(dir);
        return;
      } catch {
        // Busy until the killed processes have been reaped.
        spawnSync("sleep", ["0.02"]);
      }
    }
  };
}
