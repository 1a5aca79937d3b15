/**
 * The docs cannot rot: every fenced block marked `sh test` in README.md's quick start and in
 * docs/tutorial.md runs here, in order, in an empty temporary directory, with this checkout's
 * generator as `gen-reuseport` (a shim on PATH over a private build of `src/`) and a real Zig;
 * a command that fails fails the test. A block marked `sh test serve` is a command that runs
 * until stopped (the service, as the reader starts it in another terminal): it is started in
 * the background in a process group of its own, the test waits for its `ready` event, runs
 * the blocks after it, and stops it as Ctrl-C would if the doc did not stop it; it must exit 0.
 * Whatever it started is killed at the end, also on failure. Blocks marked plain `sh` (npm
 * test, the demo) are not run.
 *
 * Also, cheaply and without Zig: every relative link of README.md and docs/*.md resolves, to a
 * file that exists and, for a `#fragment` into Markdown, to a heading that is there.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { copyFile, mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PACKAGE_ROOT } from "../../src/package.js";
import { DEFAULT_PROVISIONED_ZIG } from "../../src/zig-facts.js";
import { ensureCommand } from "./support/tools.js";
import { provisionZig, TOOLCHAIN_DIR, ZIG_VERSIONS, zigEnv } from "./support/zig.js";

/** The documents whose `sh test` blocks run, in this order, each in a directory of its own. */
const TESTED_DOCS = ["README.md", "docs/tutorial.md"] as const;

const BUILD_GENERATOR_TIMEOUT_MS = 3 * 60_000;
/** A block that installs Zig or builds a project (a cold Zig cache takes minutes). */
const SLOW_BLOCK_TIMEOUT_MS = 10 * 60_000;
const BLOCK_TIMEOUT_MS = 60_000;
const READY_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 15_000;
const DOC_TIMEOUT_MS = 25 * 60_000;

/** The newest release under test: the docs run once, with the Zig a reader would install. */
const VERSION = ZIG_VERSIONS[ZIG_VERSIONS.length - 1]!;

// ---------------------------------------------------------------------------------------------
// Reading Markdown

interface Block {
  readonly doc: string;
  /** 1-based line of the opening fence. */
  readonly line: number;
  readonly serve: boolean;
  readonly code: string;
}

/** The fenced blocks whose info string is `sh test` or `sh test serve`, in document order. */
function testedBlocks(doc: string, text: string): Block[] {
  const blocks: Block[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(.*)$/.exec(lines[i]!);
    if (open === null) continue;
    const info = open[1]!.trim().split(/\s+/);
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && !lines[i]!.startsWith("```"); i++) body.push(lines[i]!);
    if (info[0] !== "sh" || info[1] !== "test") continue;
    if (info.length > 3 || (info[2] !== undefined && info[2] !== "serve")) {
      throw new Error(`${doc}:${start + 1}: unknown block marker "${open[1]}"`);
    }
    blocks.push({ doc, line: start + 1, serve: info[2] === "serve", code: body.join("\n") });
  }
  return blocks;
}

/** GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens. */
function anchorOf(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}_\- ]/gu, "")
    .replace(/ /g, "-");
}

/** The text of a document outside its fenced blocks and inline code spans. */
function prose(text: string): string {
  return text.replace(/^```[^\n]*\n[\s\S]*?^```$/gm, "").replace(/`[^`\n]*`/g, "");
}

/** The anchors of a document's headings (outside fenced blocks). */
function anchorsOf(text: string): Set<string> {
  const outsideFences = text.replace(/^```[^\n]*\n[\s\S]*?^```$/gm, "");
  return new Set([...outsideFences.matchAll(/^#{1,6} (.+)$/gm)].map((m) => anchorOf(m[1]!)));
}

/** Every relative link of `file` (repository path) that does not resolve, with the reason. */
function brokenLinks(root: string, file: string): string[] {
  const text = readFileSync(path.join(root, file), "utf8");
  const broken: string[] = [];
  for (const m of prose(text).matchAll(/\]\(([^)\s]+)\)/g)) {
    const target = m[1]!;
    if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // https:, mailto:
    const [where, fragment] = target.split("#", 2) as [string, string | undefined];
    const resolved = where === "" ? path.join(root, file) : path.join(root, path.dirname(file), where);
    if (!existsSync(resolved)) {
      broken.push(`${file}: ${target}: no such file`);
      continue;
    }
    if (fragment !== undefined && resolved.endsWith(".md")) {
      if (!anchorsOf(readFileSync(resolved, "utf8")).has(fragment)) {
        broken.push(`${file}: ${target}: no heading #${fragment}`);
      }
    }
  }
  return broken;
}

function docsFiles(): string[] {
  const docs = readdirSync(path.join(PACKAGE_ROOT, "docs"))
    .filter((f) => f.endsWith(".md"))
    .map((f) => `docs/${f}`);
  return ["README.md", ...docs.sort()];
}

describe("the docs' links", () => {
  it("finds a broken link and a missing heading (the check can fail)", async () => {
    const root = await mkdtemp(path.join(tmpdir(), "gen-reuseport-docs-links-"));
    try {
      await mkdir(path.join(root, "docs"));
      await writeFile(path.join(root, "docs/a.md"), "# A\n\n## The `x` part\n");
      const links = "[ok](docs/a.md#the-x-part) [no](docs/b.md) [bad](docs/a.md#nothing)";
      await writeFile(path.join(root, "README.md"), `${links} \`[code](x.md)\`\n`);
      expect(brokenLinks(root, "README.md")).toEqual([
        "README.md: docs/b.md: no such file",
        "README.md: docs/a.md#nothing: no heading #nothing",
      ]);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it("every relative link of README.md and docs/*.md resolves, anchors included", () => {
    const files = docsFiles();
    expect(files).toContain("docs/tutorial.md");
    expect(files.flatMap((file) => brokenLinks(PACKAGE_ROOT, file))).toEqual([]);
  });

  it("the tested docs have tested blocks, and only known markers", () => {
    for (const doc of TESTED_DOCS) {
      const blocks = testedBlocks(doc, readFileSync(path.join(PACKAGE_ROOT, doc), "utf8"));
      expect(blocks.length, doc).toBeGreaterThan(0);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Running the blocks

interface Exit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

/** A `sh test serve` block started in the background, in its own process group. */
interface Served {
  readonly block: Block;
  readonly child: ChildProcess;
  readonly exited: Promise<Exit>;
  stdout: string;
  stderr: string;
  done: boolean;
}

function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

/** SIGKILLs a process group and waits (bounded) until none of it is left. */
async function killGroup(pgid: number): Promise<boolean> {
  if (groupAlive(pgid)) process.kill(-pgid, "SIGKILL");
  return until(() => !groupAlive(pgid), 5000);
}

async function until(check: () => boolean, timeoutMs: number): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (check()) return true;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return check();
}

function where(block: Block): string {
  return `${block.doc}:${block.line}`;
}

/** Whether something accepts TCP connections on 127.0.0.1:`port`. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: "127.0.0.1", port, timeout: 2000 });
    const done = (answer: boolean) => {
      socket.destroy();
      resolve(answer);
    };
    socket.once("connect", () => done(true));
    socket.once("error", () => done(false));
    socket.once("timeout", () => done(false));
  });
}

describe(`the docs' shell blocks, with zig ${VERSION}`, () => {
  let root: string;
  let env: NodeJS.ProcessEnv;
  const served: Served[] = [];

  beforeAll(async () => {
    ensureCommand("curl", "curl");
    root = await mkdtemp(path.join(tmpdir(), "gen-reuseport-docs-"));
    const zig = await provisionZig(VERSION);
    // `gen-reuseport zig install` (no version) must find its release installed, not fetch it.
    await provisionZig(DEFAULT_PROVISIONED_ZIG);
    const bin = await privateGenerator(root);
    env = {
      ...process.env,
      PATH: `${bin}:${process.env.PATH ?? "/usr/bin:/bin"}`,
      ZIG: zig,
      GEN_REUSEPORT_CACHE: TOOLCHAIN_DIR,
      ...zigEnv(VERSION),
      LANG: "C.UTF-8",
      NO_COLOR: "1",
    };
  }, BUILD_GENERATOR_TIMEOUT_MS + 2 * SLOW_BLOCK_TIMEOUT_MS);

  afterAll(async () => {
    // Each test stops what it started; whatever is still there is killed and reported.
    const left = served.filter((s) => s.child.pid !== undefined && groupAlive(s.child.pid));
    for (const s of left) await killGroup(s.child.pid!);
    if (root !== undefined) await rm(root, { recursive: true, force: true });
    expect(left.map((s) => where(s.block)), "services left running").toEqual([]);
  });

  /** Starts a serve block and waits for its `ready` event. */
  async function serve(block: Block, cwd: string): Promise<Served> {
    const child = spawn("bash", ["-euo", "pipefail", "-c", block.code], {
      cwd,
      env,
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
    });
    const exited = new Promise<Exit>((resolve) =>
      child.once("exit", (code, signal) => resolve({ code, signal })),
    );
    const s: Served = { block, child, exited, stdout: "", stderr: "", done: false };
    served.push(s);
    child.stdout!.on("data", (chunk: Buffer) => (s.stdout += chunk.toString()));
    child.stderr!.on("data", (chunk: Buffer) => (s.stderr += chunk.toString()));
    void exited.then(() => (s.done = true));
    const ready = () => /^\{"event":"ready"/m.test(s.stdout);
    const ok = await until(() => ready() || s.done, READY_TIMEOUT_MS);
    if (!ok || !ready()) {
      throw new Error(
        `${where(block)}: ` +
          (s.done ? "exited before its ready event" : `no ready event in ${READY_TIMEOUT_MS} ms`) +
          `:\n${block.code}\n${s.stdout}\n${s.stderr}`,
      );
    }
    return s;
  }

  /** Stops a served command as Ctrl-C would, unless the doc stopped it; it must exit 0. */
  async function finish(s: Served): Promise<void> {
    const pgid = s.child.pid!;
    if (!s.done) process.kill(-pgid, "SIGINT");
    const stopped = await until(() => s.done, STOP_TIMEOUT_MS);
    if (!stopped) await killGroup(pgid);
    const exit = await s.exited;
    expect(exit, `${where(s.block)} exit\n${s.stderr}`).toEqual({ code: 0, signal: null });
    // Its workers go with it.
    expect(await until(() => !groupAlive(pgid), 5000), `${where(s.block)} left processes`).toBe(
      true,
    );
  }

  for (const doc of TESTED_DOCS) {
    it(`${doc}: every sh test block runs`, { timeout: DOC_TIMEOUT_MS }, async () => {
      const blocks = testedBlocks(doc, readFileSync(path.join(PACKAGE_ROOT, doc), "utf8"));
      const cwd = path.join(root, doc.replace(/\W/g, "-"));
      await mkdir(cwd);
      const ports = new Set(
        blocks.flatMap((b) => [...b.code.matchAll(/127\.0\.0\.1:(\d+)/g)].map((m) => Number(m[1]))),
      );
      for (const port of ports) {
        expect(await listening(port), `${doc} needs 127.0.0.1:${port} free`).toBe(false);
      }
      const mine: Served[] = [];
      try {
        for (const block of blocks) {
          if (block.serve) {
            mine.push(await serve(block, cwd));
            continue;
          }
          const slow = /--build|--test|zig install/.test(block.code);
          const r = await execa("bash", ["-euo", "pipefail", "-c", block.code], {
            cwd,
            env,
            reject: false,
            timeout: slow ? SLOW_BLOCK_TIMEOUT_MS : BLOCK_TIMEOUT_MS,
            stdin: "ignore",
          });
          const said = `${where(block)}:\n${block.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;
          expect(r.timedOut, `timed out: ${said}`).toBe(false);
          expect(r.exitCode, said).toBe(0);
        }
        for (const s of mine) await finish(s);
      } finally {
        // On failure (or a stop that did not finish): nothing it started stays.
        for (const s of mine) if (s.child.pid !== undefined) await killGroup(s.child.pid);
      }
    });
  }
});

/**
 * This checkout's generator as an installed command would run it: `src/` compiled into a
 * package directory of the test's own (the checkout's `dist/` may be stale or, while another
 * test packs the package, gone), with a `gen-reuseport` shim on a PATH directory. Returns that
 * directory.
 */
async function privateGenerator(root: string): Promise<string> {
  const pkg = path.join(root, "package");
  await mkdir(path.join(pkg, "bin"), { recursive: true });
  const tsc = path.join(PACKAGE_ROOT, "node_modules", ".bin", "tsc");
  const built = await execa(
    tsc,
    ["-p", "tsconfig.build.json", "--outDir", path.join(pkg, "dist"), "--declaration", "false",
      "--sourceMap", "false"],
    { cwd: PACKAGE_ROOT, reject: false, timeout: BUILD_GENERATOR_TIMEOUT_MS, stdin: "ignore" },
  );
  expect(built.exitCode, `${built.stdout}\n${built.stderr}`).toBe(0);
  await copyFile(path.join(PACKAGE_ROOT, "package.json"), path.join(pkg, "package.json"));
  await copyFile(
    path.join(PACKAGE_ROOT, "bin", "gen-reuseport.js"),
    path.join(pkg, "bin", "gen-reuseport.js"),
  );
  for (const dir of ["templates", "schemas", "examples", "node_modules"]) {
    await symlink(path.join(PACKAGE_ROOT, dir), path.join(pkg, dir));
  }
  const shims = path.join(root, "shims");
  await mkdir(shims);
  const shim = path.join(shims, "gen-reuseport");
  const script = `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(
    path.join(pkg, "bin", "gen-reuseport.js"),
  )} "$@"\n`;
  await writeFile(shim, script, { mode: 0o755 });
  return shims;
}
