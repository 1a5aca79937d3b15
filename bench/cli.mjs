// `npm run bench:cli [-- --runs N] [-- ARGS...]`: how long a cold `gen-reuseport` takes (a new
// node process each run), by default `examples/mixed.json --dry-run --out <tmp>`. Prints the
// command, the machine, and min / median / mean / max wall time. A figure, not a test.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const argv = process.argv.slice(2);
const runsAt = argv.indexOf("--runs");
const runs = runsAt === -1 ? 30 : Number(argv.splice(runsAt, 2)[1]);
const out = mkdtempSync(path.join(os.tmpdir(), "gen-reuseport-bench-cli-"));
const args =
  argv.length > 0 ? argv : ["examples/mixed.json", "--dry-run", "--out", path.join(out, "x")];
const cli = path.join("bin", "gen-reuseport.js");

function once() {
  const start = process.hrtime.bigint();
  const result = spawnSync(process.execPath, [cli, ...args], {
    cwd: root,
    stdio: ["ignore", "ignore", "pipe"],
    timeout: 30_000,
  });
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  if (result.status !== 0) {
    throw new Error(`exit ${result.status}: ${String(result.stderr).trim()}`);
  }
  return ms;
}

try {
  once(); // warm the file system cache; every measured run is still a new process
  const times = Array.from({ length: runs }, once).sort((a, b) => a - b);
  const at = (q) => times[Math.min(times.length - 1, Math.floor(q * times.length))];
  const mean = times.reduce((a, b) => a + b, 0) / times.length;
  const fmt = (ms) => `${(ms / 1000).toFixed(3)} s`;
  const cpu = os.cpus()[0]?.model ?? "unknown CPU";
  console.log(`command: node ${cli} ${args.join(" ")}`);
  const cores = os.cpus().length;
  console.log(`machine: ${cpu}, ${cores} cores, ${os.type()} ${os.release()}, node ${process.version}`);
  console.log(
    `${runs} cold runs: min ${fmt(times[0])}, median ${fmt(at(0.5))}, ` +
      `mean ${fmt(mean)}, max ${fmt(times.at(-1))}`,
  );
} finally {
  rmSync(out, { recursive: true, force: true });
}
