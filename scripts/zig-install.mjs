// `npm run zig:install [-- VERSION...]`: installs Zig releases (every supported one by default)
// for this checkout's test suite, demo and benchmarks, with the CLI's own `zig install`, into the
// checkout's .toolchain/ (or $GEN_REUSEPORT_CACHE when set). Installed users run
// `npx gen-reuseport zig install` instead, which uses the per-user cache.
import { spawnSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const { CACHE_ENV, checkoutToolchainDir } = await import(path.join(root, "dist/index.js"));
const versions = process.argv.slice(2);
const result = spawnSync(
  process.execPath,
  [
    path.join(root, "bin/gen-reuseport.js"),
    "zig",
    "install",
    ...(versions.length > 0 ? versions : ["--all"]),
  ],
  {
    stdio: "inherit",
    env: { ...process.env, [CACHE_ENV]: checkoutToolchainDir(process.env) },
    timeout: 30 * 60_000,
  },
);
process.exitCode = result.status ?? 1;
