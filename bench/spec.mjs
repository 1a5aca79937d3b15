// `npm run bench:spec`: how long the generator takes to answer large invalid specs, each in a new
// node process: a 1 MB spec of 12,000 colliding listeners, one with 60,000 unknown keys, and one
// with a key of a megabyte. Each must be refused (exit 2) with a capped list of problems; the
// figure is the wall time per run (min / median / max over --runs N, default 5).
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const argv = process.argv.slice(2);
const runsAt = argv.indexOf("--runs");
const runs = runsAt === -1 ? 5 : Number(argv[runsAt + 1]);
const dir = mkdtempSync(path.join(os.tmpdir(), "gen-reuseport-bench-spec-"));
const listener = { name: "l", protocol: "tcp", port: 80, handler: "echo", v6Only: false };

const specs = {
  "1 MB of colliding listeners": {
    name: "a",
    listeners: Array.from({ length: 12_000 }, (_, i) => ({
      ...listener,
      address: i % 2 === 0 ? "0.0.0.0" : "::",
    })),
  },
  "60,000 unknown keys": {
    name: "a",
    ...Object.fromEntries(Array.from({ length: 60_000 }, (_, i) => [`k${i}`, i])),
    listeners: [{ ...listener, address: "127.0.0.1" }],
  },
  "one key of a megabyte": { name: "a", ["x".repeat(1_000_000)]: 1, listeners: [] },
};

try {
  console.log(`bench:spec  ${os.cpus().length} x ${os.cpus()[0]?.model ?? "unknown CPU"}, ` +
    `Linux ${os.release()}, node ${process.version}`);
  for (const [what, spec] of Object.entries(specs)) {
    const file = path.join(dir, "spec.json");
    const text = JSON.stringify(spec);
    writeFileSync(file, text);
    const times = [];
    for (let i = 0; i < runs; i += 1) {
      const start = process.hrtime.bigint();
      const result = spawnSync(
        process.execPath,
        [path.join(root, "bin/gen-reuseport.js"), file, "--dry-run", "--out", path.join(dir, "o")],
        { encoding: "utf8", timeout: 120_000 },
      );
      times.push(Number(process.hrtime.bigint() - start) / 1e6);
      if (result.status !== 2) throw new Error(`${what}: expected exit 2, got ${result.status}`);
    }
    times.sort((a, b) => a - b);
    const s = (ms) => `${(ms / 1000).toFixed(2)} s`;
    console.log(
      `  ${what} (${(text.length / 1e6).toFixed(2)} MB): exit 2; min ${s(times[0])}, ` +
        `median ${s(times[Math.floor(times.length / 2)])}, max ${s(times.at(-1))} over ${runs} runs`,
    );
  }
  console.log(`command: npm run bench:spec -- --runs ${runs}`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
