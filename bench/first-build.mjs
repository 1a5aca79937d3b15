// `npm run bench:first-build [-- --zig 0.17.1,0.16.0] [--example http] [--download]`: what a
// new user's first build costs, per Zig release, step by step. For each release it starts
// from an empty Zig global cache and times, as whole processes:
//   - `zig build --help`: what Zig compiles before it can read build.zig (0.14-0.16: the build
//     runner; 0.17: the "maker", built once per installation in release mode, and the
//     project's "configurer");
//   - `zig build`, then `zig build test` of the example;
//   - `zig build -Doptimize=ReleaseFast` of the same project (what `npm run demo` builds);
//   - a second, new project (another name) with the cache now warm: `zig build`, then
//     `zig build test`: a user's first `--build` once Zig has run on the machine.
// With --download it also times installing the release from PyPI into an empty folder.
// Prints the command, the machine, wall and CPU seconds per step. A figure, not a test.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import {
  checkoutToolchainDir,
  ensureZig,
  generate,
  SUPPORTED_ZIG,
} from "../dist/index.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const argv = process.argv.slice(2);
const option = (name, fallback) => {
  const at = argv.indexOf(name);
  return at === -1 ? fallback : argv[at + 1];
};
const versions = option("--zig", SUPPORTED_ZIG.join(",")).split(",");
const example = option("--example", "http");
const download = argv.includes("--download");
const STEP_TIMEOUT_MS = 20 * 60_000;

/** Runs `command args` in `cwd`; wall and CPU (user + system, children included) seconds. */
function timed(command, args, cwd, env) {
  const quoted = [command, ...args].map((a) => `'${a.replaceAll("'", "'\\''")}'`).join(" ");
  const script = `TIMEFORMAT='%R %U %S'; time ${quoted} >/dev/null 2>/tmp/first-build-err`;
  const result = spawnSync("bash", ["-c", script], {
    cwd,
    env: { ...process.env, ...env },
    encoding: "utf8",
    timeout: STEP_TIMEOUT_MS,
  });
  const line = result.stderr.trim().split("\n").at(-1) ?? "";
  const [wall, user, sys] = line.split(" ").map(Number);
  if (result.status !== 0 || !Number.isFinite(wall)) {
    const err = readFileSync("/tmp/first-build-err", "utf8").slice(-2000);
    throw new Error(`${command} ${args.join(" ")} in ${cwd} failed:\n${err}${result.stderr}`);
  }
  return { wall, cpu: user + sys };
}

async function project(dir, name) {
  const outDir = path.join(dir, name);
  const spec = JSON.parse(readFileSync(path.join(root, "examples", `${example}.json`), "utf8"));
  spec.name = name;
  delete spec.$schema;
  const specFile = path.join(dir, `${name}.json`);
  writeFileSync(specFile, JSON.stringify(spec));
  await generate({ specFile, outDir, cwd: root });
  return outDir;
}

const fmt = (s) => (Number.isFinite(s) ? `${s.toFixed(1)} s` : "-");

async function measure(version) {
  const dir = mkdtempSync(path.join(os.tmpdir(), "gen-reuseport-first-build-"));
  try {
    console.log(`\nzig ${version}`);
    const rows = {
      push([step, { wall, cpu }]) {
        const figures = `wall ${fmt(wall).padStart(8)}  cpu ${fmt(cpu).padStart(8)}`;
        console.log(`  ${step.padEnd(34)} ${figures}`);
      },
    };
    let zig;
    if (download) {
      const start = process.hrtime.bigint();
      zig = await ensureZig(version, { dir: path.join(dir, "toolchain") });
      const wall = Number(process.hrtime.bigint() - start) / 1e9;
      rows.push(["install from PyPI", { wall, cpu: Number.NaN }]);
    } else {
      zig = await ensureZig(version, { dir: checkoutToolchainDir(process.env) });
    }
    const env = { ZIG_GLOBAL_CACHE_DIR: path.join(dir, "zig-global-cache") };
    const first = await project(dir, "first-service");
    rows.push(["zig build --help (cold)", timed(zig, ["build", "--help"], first, env)]);
    rows.push(["zig build", timed(zig, ["build"], first, env)]);
    rows.push(["zig build test", timed(zig, ["build", "test"], first, env)]);
    const fast = ["build", "-Doptimize=ReleaseFast"];
    rows.push(["zig build -Doptimize=ReleaseFast", timed(zig, fast, first, env)]);
    const second = await project(dir, "second-service");
    rows.push(["new project: zig build", timed(zig, ["build"], second, env)]);
    rows.push(["new project: zig build test", timed(zig, ["build", "test"], second, env)]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const cpuModel = os.cpus()[0]?.model ?? "unknown CPU";
console.log(`command: node bench/first-build.mjs ${argv.join(" ")}`.trim());
console.log(
  `machine: ${cpuModel}, ${os.cpus().length} cores, ${os.type()} ${os.release()}, ` +
    `node ${process.version}, load ${os.loadavg().map((l) => l.toFixed(1)).join(" ")}`,
);
console.log(`example: examples/${example}.json (Debug builds, an empty Zig global cache each)`);
for (const version of versions) await measure(version);
