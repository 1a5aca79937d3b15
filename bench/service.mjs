// Builds the service a benchmark runs: generates bench/specs/<spec>.json with this checkout's
// generator and builds it with the newest supported Zig (provisioned if needed), ReleaseFast.
import { execFileSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "..");

/**
 * Returns the path of the built binary (named after the spec's "name") under `out`, built with
 * `optimize` (default ReleaseFast).
 */
export async function buildBenchService(spec, out, { optimize = "ReleaseFast" } = {}) {
  const { ensureZig, SUPPORTED_ZIG } = await import(path.join(root, "dist/index.js"));
  const zig = await ensureZig(SUPPORTED_ZIG.at(-1), { root });
  const specFile = path.join(here, "specs", `${spec}.json`);
  run(process.execPath, [path.join(root, "bin/gen-reuseport.js"), specFile, "--out", out], root);
  run(zig, ["build", `-Doptimize=${optimize}`], out);
  return path.join(out, "zig-out/bin", `${spec}-bench`);
}

function run(cmd, argv, cwd) {
  process.stderr.write(`$ ${[cmd, ...argv].join(" ")}\n`);
  execFileSync(cmd, argv, {
    cwd,
    stdio: ["ignore", "inherit", "inherit"],
    timeout: 10 * 60 * 1000,
  });
}
