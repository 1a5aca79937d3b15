// Builds the service a benchmark runs: generates bench/specs/<spec>.json (or an example spec)
// with this checkout's generator and builds it with the newest supported Zig (provisioned if
// needed), ReleaseFast, through the generator's own buildProject (the step the CLI, the tests
// and the demo share).
import { execFileSync } from "node:child_process";
import { copyFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "..");

/**
 * Returns the path of the built binary (named after the spec's "name", `<spec>-bench` unless
 * `name` says otherwise) under `out`, built with `optimize` (default ReleaseFast). `specFile`
 * replaces bench/specs/<spec>.json; `modules` maps application modules to the files put over
 * their generated stubs (`{ resp: "examples/app/resp.zig" }`, relative to the checkout).
 */
export async function buildBenchService(
  spec,
  out,
  {
    optimize = "ReleaseFast",
    name = `${spec}-bench`,
    specFile = path.join(here, "specs", `${spec}.json`),
    modules = {},
    edit = undefined,
  } = {},
) {
  const { buildProject, checkoutToolchainDir, ensureZig, SUPPORTED_ZIG, zigGlobalCacheDir } =
    await import(path.join(root, "dist/index.js"));
  const version = SUPPORTED_ZIG.at(-1);
  const dir = checkoutToolchainDir(process.env);
  const zig = await ensureZig(version, {
    dir,
    onInstall: (event) => process.stderr.write(`installing zig ${version} into ${event.path}\n`),
  });
  const cli = path.join(root, "bin/gen-reuseport.js");
  process.stderr.write(`$ ${[process.execPath, cli, specFile, "--out", out].join(" ")}\n`);
  execFileSync(process.execPath, [cli, specFile, "--out", out], {
    cwd: root,
    stdio: ["ignore", "inherit", "inherit"],
    timeout: 60_000,
  });
  for (const [module, file] of Object.entries(modules)) {
    copyFileSync(path.join(root, file), path.join(out, "src", "app", `${module}.zig`));
  }
  // A variant for a comparison (bench:udp's build without UDP GSO): edits the generated sources.
  if (edit !== undefined) edit(out);
  const args = ["build", `-Doptimize=${optimize}`];
  process.stderr.write(`$ (cd ${out} && ${zig} ${args.join(" ")})\n`);
  const built = await buildProject({
    zig,
    dir: out,
    steps: [args],
    env: { ZIG_GLOBAL_CACHE_DIR: zigGlobalCacheDir(dir, version) },
    output: process.stderr.isTTY ? "inherit" : (line) => process.stderr.write(`${line}\n`),
  });
  const [step] = built.steps;
  if (!built.ok) {
    const how = step.timedOut ? "timed out" : `exit code ${step.exitCode ?? step.signal}`;
    throw new Error(`zig build failed in ${out} (${how})`);
  }
  process.stderr.write(`built in ${(step.ms / 1000).toFixed(1)} s\n`);
  return path.join(out, "zig-out/bin", name);
}
