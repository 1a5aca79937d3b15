/**
 * What an installed user does, with nothing of this checkout but the package it packs: `npm pack`
 * (its `prepack` builds dist/), `npm install -g` of the tarball into an empty prefix, then, with
 * that prefix's `bin/gen-reuseport`, in an empty directory outside the checkout and an
 * environment of its own (no `$ZIG`, no zig on `PATH`, a toolchain cache of its own):
 * `zig install`, `init --example notes`, generate with `--build --test`, `zig path` and
 * `zig exec -- build`, then the program on 127.0.0.1 with a kernel-picked port, asked with curl.
 *
 * Two things come from outside that user's world, for time alone: npm's package cache, and the
 * Zig global cache of this run's toolchain directory (`ZIG_GLOBAL_CACHE_DIR`, support/zig.ts),
 * which holds compiled artifacts only (a cold one made the first build take six minutes on two
 * cores). Zig itself is installed by the installed command from PyPI, as a user's is.
 */
import { mkdir, mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PACKAGE_ROOT } from "../../src/package.js";
import { DEFAULT_PROVISIONED_ZIG } from "../../src/zig-facts.js";
import {
  portOf,
  startReady,
  stopAllPrograms,
  STOP_TIMEOUT_MS,
} from "./support/program.js";
import { ensureCommand } from "./support/tools.js";
import { zigEnv } from "./support/zig.js";

const PACK_TIMEOUT_MS = 5 * 60_000;
const INSTALL_TIMEOUT_MS = 5 * 60_000;
const ZIG_INSTALL_TIMEOUT_MS = 5 * 60_000;
const BUILD_TIMEOUT_MS = 15 * 60_000;
const COMMAND_TIMEOUT_MS = 30_000;
const CURL_TIMEOUT_S = 5;

/** The release `zig install` installs without arguments: the one this test builds with. */
const VERSION = DEFAULT_PROVISIONED_ZIG;

interface Result {
  readonly exitCode: number | undefined;
  readonly stdout: string;
  readonly stderr: string;
}

describe("an installed gen-reuseport (npm pack, npm install -g)", () => {
  let root: string;
  /** The installed command. */
  let bin: string;
  /** The user's working directory: empty, outside the checkout. */
  let work: string;
  let env: NodeJS.ProcessEnv;
  let cache: string;

  /** Runs the installed command in `cwd` (default: the working directory). */
  const run = async (args: readonly string[], timeout: number, cwd = work): Promise<Result> => {
    const r = await execa(bin, [...args], {
      cwd,
      env,
      extendEnv: false,
      reject: false,
      timeout,
      stdin: "ignore",
    });
    return { exitCode: r.exitCode, stdout: String(r.stdout), stderr: String(r.stderr) };
  };
  const ok = (r: Result) => expect(r.exitCode, `${r.stdout}\n${r.stderr}`).toBe(0);

  beforeAll(async () => {
    ensureCommand("curl", "curl");
    root = await mkdtemp(path.join(tmpdir(), "gen-reuseport-installed-"));
    const packed = path.join(root, "pack");
    const prefix = path.join(root, "prefix");
    work = path.join(root, "work");
    cache = path.join(root, "cache");
    for (const dir of [packed, prefix, work, path.join(root, "home")]) await mkdir(dir);
    const pack = await execa("npm", ["pack", "--pack-destination", packed, "--silent"], {
      cwd: PACKAGE_ROOT,
      reject: false,
      timeout: PACK_TIMEOUT_MS,
      stdin: "ignore",
    });
    expect(pack.exitCode, pack.stderr).toBe(0);
    const [tarball] = (await readdir(packed)).filter((f) => f.endsWith(".tgz"));
    expect(tarball).toBeDefined();
    const install = await execa(
      "npm",
      ["install", "-g", "--prefix", prefix, "--no-audit", "--no-fund", path.join(packed, tarball!)],
      { cwd: root, reject: false, timeout: INSTALL_TIMEOUT_MS, stdin: "ignore" },
    );
    expect(install.exitCode, install.stderr).toBe(0);
    bin = path.join(prefix, "bin", "gen-reuseport");
    env = {
      // The installed command, node, and the system's programs (python3 for zig install); no zig.
      PATH: [path.dirname(bin), path.dirname(process.execPath), "/usr/bin", "/bin"].join(":"),
      HOME: path.join(root, "home"),
      GEN_REUSEPORT_CACHE: cache,
      ...zigEnv(VERSION),
      LANG: "C.UTF-8",
    };
  }, PACK_TIMEOUT_MS + INSTALL_TIMEOUT_MS);

  afterAll(async () => {
    await stopAllPrograms();
    if (root !== undefined) await rm(root, { recursive: true, force: true });
  });

  const zigInstall = { timeout: ZIG_INSTALL_TIMEOUT_MS };
  it("has no Zig until zig install, then zig path names it", zigInstall, async () => {
    const before = await run(["zig", "path"], COMMAND_TIMEOUT_MS);
    expect(before.exitCode).toBe(3);
    expect(before.stderr).toContain("no supported Zig is installed");
    expect(before.stderr).toContain('run "gen-reuseport zig install"');
    ok(await run(["zig", "install"], ZIG_INSTALL_TIMEOUT_MS));
    const where = await run(["zig", "path", "--json"], COMMAND_TIMEOUT_MS);
    ok(where);
    expect(JSON.parse(where.stdout)).toMatchObject({
      command: "zig path",
      zig: { version: VERSION, path: path.join(cache, `zig-${VERSION}`, "ziglang", "zig") },
    });
  });

  it("writes the notes example with its module, outside any checkout", async () => {
    const init = await run(["init", "--example", "notes"], COMMAND_TIMEOUT_MS);
    ok(init);
    const written = (await readdir(work)).sort();
    expect(written).toEqual(["gen-reuseport.schema.json", "notes", "notes.json"]);
    const module = await readFile(path.join(work, "notes/src/app/notes.zig"), "utf8");
    expect(module).toContain("pub fn putNote(");
  });

  const build = { timeout: BUILD_TIMEOUT_MS };
  it("generates, builds and tests it with the Zig it installed", build, async () => {
    const generated = await run(["notes.json", "--build", "--test"], BUILD_TIMEOUT_MS);
    ok(generated);
    expect(generated.stdout).toMatch(/^wrote \d+ files to notes\/ \(\d+ created, 1 kept\)$/m);
    expect(generated.stdout).toContain(`zig build: ok in`);
    expect(generated.stdout).toContain(`zig build test: ok in`);
    const readme = await readFile(path.join(work, "notes/README.md"), "utf8");
    expect(readme).toContain("gen-reuseport zig exec -- build");
    expect(readme).not.toContain(root);
  });

  it("runs that Zig with zig exec, passing its output and exit code through", build, async () => {
    const version = await run(["zig", "exec", "--", "version"], COMMAND_TIMEOUT_MS);
    expect(version).toEqual({ exitCode: 0, stdout: VERSION, stderr: "" });
    const dir = path.join(work, "notes");
    ok(await run(["zig", "exec", "--", "build"], BUILD_TIMEOUT_MS, dir));
    const wrong = await run(["zig", "exec", "--", "build", "no-such-step"], BUILD_TIMEOUT_MS, dir);
    expect(wrong.exitCode).not.toBe(0);
    expect(wrong.stderr).toContain("no-such-step");
  });

  it("serves what it built: PUT and GET a note with curl", { timeout: 60_000 }, async () => {
    const binary = path.join(work, "notes", "zig-out", "bin", "notes");
    const { program, ready } = await startReady(binary, [
      "--workers",
      "1",
      "--listen",
      "api=127.0.0.1:0",
    ]);
    const port = portOf(ready, "api");
    expect(port).toBeGreaterThan(0);
    const base = `http://127.0.0.1:${port}`;
    const curl = (args: readonly string[]) =>
      execa("curl", ["-sS", "--max-time", String(CURL_TIMEOUT_S), ...args], {
        reject: false,
        timeout: (CURL_TIMEOUT_S + 2) * 1000,
        stdin: "ignore",
      });
    const status = ["-w", "\n%{http_code}"];
    const note = ["--data-binary", '{"t":"hi"}'];
    const put = await curl([...status, "-X", "PUT", ...note, `${base}/notes/1`]);
    expect(put.stdout).toBe('{"id":1,"bytes":10}\n\n201');
    const got = await curl([...status, `${base}/notes/1`]);
    expect(got.stdout).toBe('{"t":"hi"}\n200');
    program.signal("SIGTERM");
    const exit = await program.waitForExit(STOP_TIMEOUT_MS);
    expect(exit).toEqual({ code: 0, signal: null });
  });
});
