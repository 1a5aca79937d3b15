/**
 * Privilege drop, on the real binary started as root: with `"user": "nobody"` in the spec,
 * every worker runs as nobody (the four ids of its Uid and Gid lines, its Groups line, and
 * NoNewPrivs in /proc/<pid>/status) while the supervisor stays root, on port 80, which only
 * root may bind. curl is served, and a SIGHUP restart and a whole-program upgrade under a
 * small curl load lose nothing. Numeric ids and --user/--group override the spec; a
 * --standalone process drops itself after binding; an unknown user or group is a start-up
 * error (exit 1) naming the spec field or the flag, with nothing left running.
 *
 * Everything runs in a network namespace of its own (`unshare -n`, root), so port 80 of the
 * host is never touched; clients reach it with `nsenter --net`. The upgrade's new binary is
 * the same build with its supervisor fingerprint rewritten in the file (every occurrence of
 * the 16 hex digits, so that the copy is consistent with itself): what a binary of another
 * supervisor says it is, without a second build. The unknown-user case runs with an
 * /etc/passwd without nobody bind-mounted over the real one in a mount namespace of its own.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import {
  chmodSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmSync,
  statSync,
} from "node:fs";
import { chmod, copyFile, mkdtemp, readFile, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  isAlive,
  Program,
  READY_TIMEOUT_MS,
  STOP_TIMEOUT_MS,
  stopAllPrograms,
  waitUntilGone,
  type ReadyEvent,
  type ServiceEvent,
} from "./support/program.js";
import { binaryOf, processGroupMembers } from "./support/supervised.js";
import { ensureCommand } from "./support/tools.js";
import { FULL_MATRIX_VERSIONS } from "./support/zig.js";

const SETUP_TIMEOUT_MS = 15 * 60_000;
const TEST_TIMEOUT_MS = 60_000;
const SERVICE = "privileged";

interface PrivilegedReady extends ReadyEvent {
  readonly worker_uid: number;
  readonly worker_gid: number;
  readonly worker_groups?: number[];
  readonly upgraded_from?: number;
}

interface ErrorEvent extends ServiceEvent {
  readonly phase: string;
  readonly field?: string;
  readonly message: string;
}

/** An account as /etc/passwd and /etc/group describe it, read here independently. */
interface Account {
  readonly uid: number;
  readonly gid: number;
  /** The primary group and every group naming the user as a member, sorted. */
  readonly groups: number[];
}

function account(name: string, groupOverride?: number): Account {
  const line = readFileSync("/etc/passwd", "utf8")
    .split("\n")
    .find((l) => l.split(":")[0] === name);
  if (line === undefined) throw new Error(`no ${name} in /etc/passwd`);
  const [, , uid, gid] = line.split(":");
  const primary = groupOverride ?? Number(gid);
  const groups = new Set([primary]);
  for (const entry of readFileSync("/etc/group", "utf8").split("\n")) {
    const fields = entry.split(":");
    if (fields.length < 4) continue;
    if (fields[3]!.split(",").map((m) => m.trim()).includes(name)) groups.add(Number(fields[2]));
  }
  return { uid: Number(uid), gid: primary, groups: [...groups].sort((a, b) => a - b) };
}

/** The identity lines of /proc/<pid>/status. */
function identityOf(pid: number) {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const field = (name: string) => {
    const match = new RegExp(`^${name}:\\s*(.*)$`, "m").exec(status);
    if (match === null) throw new Error(`no ${name} in /proc/${pid}/status`);
    return match[1]!.trim();
  };
  const numbers = (text: string) => (text === "" ? [] : text.split(/\s+/).map(Number));
  return {
    uid: numbers(field("Uid")),
    gid: numbers(field("Gid")),
    groups: numbers(field("Groups")).sort((a, b) => a - b),
    noNewPrivs: Number(field("NoNewPrivs")),
    capEff: field("CapEff"),
  };
}

/**
 * Whether a line written to `fd` never blocks process `pid`: a socket is written with
 * MSG_DONTWAIT, and a pipe through a non-blocking description of the process's own, which
 * output.zig opens through /proc/self/fd and a process must open before it drops (it could
 * not afterwards).
 */
function neverBlocks(pid: number, fd: number): boolean {
  const target = readlinkSync(`/proc/${pid}/fd/${fd}`);
  if (target.startsWith("socket:")) return true;
  if (!target.startsWith("pipe:")) throw new Error(`fd ${fd} of ${pid} is ${target}`);
  return readdirSync(`/proc/${pid}/fd`).some((entry) => {
    if (Number(entry) === fd || readlinkSync(`/proc/${pid}/fd/${entry}`) !== target) return false;
    const flags = /^flags:\s*([0-7]+)$/m.exec(readFileSync(`/proc/${pid}/fdinfo/${entry}`, "utf8"));
    return flags !== null && (parseInt(flags[1]!, 8) & 0o4000) !== 0;
  });
}

/** Every id of each worker is the account's; no capability; no new privileges. */
function expectWorkersAre(ready: PrivilegedReady, who: Account) {
  expect(ready.workers.length).toBeGreaterThan(0);
  for (const worker of ready.workers) {
    const id = identityOf(worker.pid);
    expect(id.uid, `worker ${worker.pid} Uid`).toEqual([who.uid, who.uid, who.uid, who.uid]);
    expect(id.gid, `worker ${worker.pid} Gid`).toEqual([who.gid, who.gid, who.gid, who.gid]);
    expect(id.groups, `worker ${worker.pid} Groups`).toEqual(who.groups);
    expect(id.noNewPrivs, `worker ${worker.pid} NoNewPrivs`).toBe(1);
    expect(BigInt(`0x${id.capEff}`), `worker ${worker.pid} CapEff`).toBe(0n);
    expect(neverBlocks(worker.pid, 1), `worker ${worker.pid} stdout`).toBe(true);
    expect(neverBlocks(worker.pid, 2), `worker ${worker.pid} stderr`).toBe(true);
  }
  expect(ready.worker_uid).toBe(who.uid);
  expect(ready.worker_gid).toBe(who.gid);
  expect([...(ready.worker_groups ?? [])].sort((a, b) => a - b)).toEqual(who.groups);
}

function expectRoot(pid: number) {
  const id = identityOf(pid);
  expect(id.uid, `supervisor ${pid} Uid`).toEqual([0, 0, 0, 0]);
  expect(id.gid, `supervisor ${pid} Gid`).toEqual([0, 0, 0, 0]);
}

/**
 * Starts `binary args…` in a network namespace of its own with loopback up (and, with
 * `passwd`, that file over /etc/passwd in a mount namespace of its own). unshare and bash
 * exec it, so the program's pid is the one started. Its standard error is a pipe (to a cat
 * that passes it on), as under a shell or a service manager, rather than the socket Node
 * gives a child.
 */
function startIsolated(
  binary: string,
  args: readonly string[],
  options: { passwd?: string; userNamespace?: boolean } = {},
): Program {
  const { passwd, userNamespace = false } = options;
  const mount = passwd === undefined ? "" : `mount --bind '${passwd}' /etc/passwd && `;
  const script = `ip link set lo up && ${mount}exec "$0" "$@" 2> >(exec cat >&2)`;
  const namespaces = ["-n", ...(passwd === undefined ? [] : ["-m"])];
  // Root of a user namespace of its own in which only uid 0 is mapped and setgroups is denied.
  if (userNamespace) namespaces.push("--user", "--map-root-user");
  return Program.start("unshare", [...namespaces, "--", "bash", "-c", script, binary, ...args]);
}

/** `curl` inside `pid`'s network namespace; its output, or why it failed. */
function curlIn(pid: number, url: string): string {
  const result = spawnSync(
    "nsenter",
    [`--net=/proc/${pid}/ns/net`, "curl", "-sS", "--max-time", "5", url],
    { encoding: "utf8", timeout: 10_000 },
  );
  if (result.status !== 0) throw new Error(`curl ${url}: ${result.stderr}${result.error ?? ""}`);
  return result.stdout;
}

/**
 * Two shell loops of curl, each a new connection, against port 80 in `pid`'s namespace until
 * `stop()` (or 4000 requests each): what a client sees across a restart or an upgrade.
 */
class CurlLoad {
  private readonly children: ChildProcess[] = [];
  private readonly outputs: string[] = [];
  private readonly done: Promise<void>[] = [];

  constructor(
    pid: number,
    private readonly stopFile: string,
  ) {
    const loop =
      'n=0; while [ ! -e "$1" ] && [ $n -lt 4000 ]; do n=$((n+1)); ' +
      "if curl -sS -f -o /dev/null --max-time 5 http://127.0.0.1:80/; then echo ok; " +
      "else echo fail; fi; done";
    for (let i = 0; i < 2; i += 1) {
      const child = spawn(
        "nsenter",
        [`--net=/proc/${pid}/ns/net`, "sh", "-c", loop, "sh", stopFile],
        { stdio: ["ignore", "pipe", "pipe"], detached: true },
      );
      const index = this.outputs.push("") - 1;
      child.stdout!.setEncoding("utf8").on("data", (c: string) => (this.outputs[index] += c));
      child.stderr!.setEncoding("utf8").on("data", (c: string) => (this.outputs[index] += c));
      this.done.push(new Promise((resolve) => child.once("exit", () => resolve())));
      this.children.push(child);
    }
  }

  counts() {
    const lines = this.outputs.join("").split("\n");
    return {
      ok: lines.filter((l) => l === "ok").length,
      failed: lines.filter((l) => l === "fail").length,
      errors: lines.filter((l) => l !== "" && l !== "ok" && l !== "fail").slice(0, 5),
    };
  }

  /** Resolves once `more` further requests were answered (bounded in time). */
  async answered(more: number, timeoutMs = 20_000) {
    const target = this.counts().ok + more;
    const deadline = Date.now() + timeoutMs;
    while (this.counts().ok < target) {
      if (Date.now() > deadline) throw new Error(`load: ${JSON.stringify(this.counts())}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async stop() {
    await writeFile(this.stopFile, "");
    const timeout = new Promise((r) => setTimeout(r, 15_000));
    await Promise.race([Promise.all(this.done), timeout]);
    this.kill();
    return this.counts();
  }

  kill() {
    for (const child of this.children) {
      try {
        if (child.exitCode === null && child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
      } catch {
        // Its group is gone already.
      }
    }
  }
}

/** A copy of `binary` at `to` whose supervisor fingerprint is another: see the file comment. */
async function withOtherSupervisor(binary: string, to: string): Promise<string> {
  const said = spawnSync(binary, ["--fingerprint"], { encoding: "utf8" }).stdout;
  const own = /supervisor=([0-9a-f]{16})/.exec(said)?.[1];
  if (own === undefined) throw new Error(`${binary} --fingerprint said ${said}`);
  const other = [...own].map((c) => ((parseInt(c, 16) + 1) % 16).toString(16)).join("");
  const bytes = await readFile(binary);
  const from = Buffer.from(own, "latin1");
  let count = 0;
  for (let at = bytes.indexOf(from); at !== -1; at = bytes.indexOf(from, at + from.length)) {
    bytes.write(other, at, "latin1");
    count += 1;
  }
  expect(count).toBeGreaterThan(0);
  await writeFile(to, bytes, { mode: 0o755 });
  expect(spawnSync(to, ["--fingerprint"], { encoding: "utf8" }).stdout).toContain(
    `supervisor=${other}`,
  );
  return other;
}

describe.each(FULL_MATRIX_VERSIONS)("zig %s: privilege drop", (version) => {
  let binary: string;
  let scratch: string;
  const loads: CurlLoad[] = [];

  beforeAll(async () => {
    expect(process.getuid?.(), "these tests start the service as root").toBe(0);
    // The clients and the namespaces: installed like Zig when missing, never skipped.
    ensureCommand("curl", "curl");
    ensureCommand("ip", "iproute2");
    ensureCommand("mount", "mount");
    for (const command of ["unshare", "nsenter", "setpriv"]) ensureCommand(command, "util-linux");
    scratch = await mkdtemp(path.join(tmpdir(), "gen-reuseport-privileges-"));
    binary = await binaryOf("privileged", version);
  }, SETUP_TIMEOUT_MS);

  afterEach(async () => {
    for (const load of loads.splice(0)) load.kill();
    await stopAllPrograms();
  });

  afterAll(async () => {
    if (scratch !== undefined) await rm(scratch, { recursive: true, force: true });
  });

  it(
    'with "user": "nobody" on port 80 the workers run as nobody and the supervisor as root, ' +
      "across a SIGHUP restart and an upgrade under load, losing nothing",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const nobody = account("nobody");
      const dir = await mkdtemp(path.join(scratch, "drop-"));
      const exe = path.join(dir, SERVICE);
      await copyFile(binary, exe);
      await chmod(exe, 0o755);
      const program = startIsolated(exe, []);
      const first = await program.waitForEvent<PrivilegedReady>("ready", READY_TIMEOUT_MS);
      expect(first.listeners.find((l) => l.name === "web")?.port).toBe(80);
      expectRoot(program.pid);
      expectWorkersAre(first, nobody);
      expect(curlIn(program.pid, "http://127.0.0.1:80/")).toBe("OK\n");

      const load = new CurlLoad(program.pid, path.join(dir, "stop-load"));
      loads.push(load);
      await load.answered(20);
      program.signal("SIGHUP");
      const second = await program.waitForEvent<PrivilegedReady>(
        "ready",
        READY_TIMEOUT_MS,
        (e) => e.generation === 2,
      );
      expectWorkersAre(second, nobody);
      expectRoot(program.pid);
      await load.answered(20);

      // The upgrade: a binary of another supervisor renamed over the path, then SIGHUP.
      await withOtherSupervisor(binary, `${exe}.new`);
      await rename(`${exe}.new`, exe);
      program.signal("SIGHUP");
      const upgraded = await program.waitForEvent<PrivilegedReady>(
        "ready",
        READY_TIMEOUT_MS + 15_000,
        (e) => e.upgraded_from === program.pid,
      );
      await load.answered(20);
      const counts = await load.stop();
      const seen = JSON.stringify(counts);
      console.log(`zig ${version}: curl across a SIGHUP restart and an upgrade: ${seen}`);
      expect(counts.failed, JSON.stringify(counts)).toBe(0);
      expect(counts.errors).toEqual([]);
      expect(counts.ok).toBeGreaterThanOrEqual(60);

      // The new supervisor (started by the old one, which has exited) is root; its workers drop.
      expect(await program.waitForExit(STOP_TIMEOUT_MS)).toEqual({ code: 0, signal: null });
      expectRoot(upgraded.pid);
      expectWorkersAre(upgraded, nobody);
      expect(curlIn(upgraded.pid, "http://127.0.0.1:80/")).toBe("OK\n");
      process.kill(upgraded.pid, "SIGTERM");
      const pids = [upgraded.pid, ...upgraded.workers.map((w) => w.pid)];
      expect(await waitUntilGone(pids, STOP_TIMEOUT_MS)).toEqual([]);
    },
  );

  it(
    "the request log's file belongs to the workers' user, who reopen it after a rotation",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const dir = mkdtempSync(path.join(tmpdir(), "gen-reuseport-privileged-log-"));
      chmodSync(dir, 0o755);
      const file = path.join(dir, "access.log");
      const nobody = account("nobody");
      try {
        const program = startIsolated(binary, ["--access-log", file]);
        await program.waitForEvent("ready", READY_TIMEOUT_MS);
        expect(statSync(file).uid).toBe(nobody.uid);
        expect(curlIn(program.pid, "http://127.0.0.1:80/")).toBe("OK\n");
        // A rotation as logrotate does it: move the file, then SIGUSR1.
        renameSync(file, `${file}.1`);
        program.signal("SIGUSR1");
        const deadline = Date.now() + 5_000;
        while (!/SIGUSR1: \d+ workers reopen/.test(program.stderr) && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 50));
        }
        expect(statSync(file).uid).toBe(nobody.uid);
        await new Promise((r) => setTimeout(r, 300));
        for (let i = 0; i < 5; i += 1) {
          expect(curlIn(program.pid, "http://127.0.0.1:80/")).toBe("OK\n");
        }
        program.signal("SIGTERM");
        expect(await program.waitForExit(STOP_TIMEOUT_MS)).toEqual({ code: 0, signal: null });
        // Workers that could not reopen it (a file of root's) would write on to the old one.
        const lines = (f: string) => readFileSync(f, "utf8").split("\n").filter((l) => l !== "");
        expect(lines(`${file}.1`).length + lines(file).length).toBe(6);
        expect(lines(file).length).toBeGreaterThan(0);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );

  it(
    "numeric ids work, and --user and --group override the spec",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const numeric = startIsolated(binary, ["--user", "65534", "--group", "4"]);
      const ready = await numeric.waitForEvent<PrivilegedReady>("ready", READY_TIMEOUT_MS);
      expectWorkersAre(ready, account("nobody", 4));
      expect(curlIn(numeric.pid, "http://127.0.0.1:80/")).toBe("OK\n");
      numeric.signal("SIGTERM");
      expect(await numeric.waitForExit(STOP_TIMEOUT_MS)).toEqual({ code: 0, signal: null });

      // --user alone replaces the spec's user, with the new user's own groups.
      const daemon = startIsolated(binary, ["--user", "daemon"]);
      const asDaemon = await daemon.waitForEvent<PrivilegedReady>("ready", READY_TIMEOUT_MS);
      expectWorkersAre(asDaemon, account("daemon"));
      expect(curlIn(daemon.pid, "http://127.0.0.1:80/")).toBe("OK\n");
      daemon.signal("SIGTERM");
      expect(await daemon.waitForExit(STOP_TIMEOUT_MS)).toEqual({ code: 0, signal: null });
    },
  );

  it(
    "a --standalone process binds port 80, then drops itself; it ignores SIGHUP and serves on",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const nobody = account("nobody");
      const program = startIsolated(binary, ["--standalone"]);
      const ready = await program.waitForEvent<PrivilegedReady>("ready", READY_TIMEOUT_MS);
      expect(ready.mode).toBe("standalone");
      expectWorkersAre({ ...ready, workers: [{ index: 0, pid: program.pid }] }, nobody);
      expect(curlIn(program.pid, "http://127.0.0.1:80/")).toBe("OK\n");
      program.signal("SIGHUP");
      expect(curlIn(program.pid, "http://127.0.0.1:80/")).toBe("OK\n");
      expect(isAlive(program.pid)).toBe(true);
      // Its line about the SIGHUP, written after the drop, went through its own pipe copy.
      for (let i = 0; i < 100 && !program.stderr.includes("SIGHUP ignored"); i += 1) {
        await new Promise((r) => setTimeout(r, 20));
      }
      expect(program.stderr).toContain("SIGHUP ignored");
      program.signal("SIGTERM");
      expect(await program.waitForExit(STOP_TIMEOUT_MS)).toEqual({ code: 0, signal: null });
    },
  );

  it(
    "started as the spec's user it serves as is; started as another non-root user it refuses",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      // A copy nobody may execute (the run's build directory may be closed to it).
      const dir = await mkdtemp(path.join(scratch, "unprivileged-"));
      await chmod(scratch, 0o755);
      await chmod(dir, 0o755);
      const exe = path.join(dir, SERVICE);
      await copyFile(binary, exe);
      await chmod(exe, 0o755);
      const listen = ["--listen", "web=127.0.0.1:8080", "--listen", "who=127.0.0.1:8081"];
      const nobody = account("nobody");
      const asNobody = [`--reuid=${nobody.uid}`, `--regid=${nobody.gid}`, "--clear-groups", exe];
      const same = startIsolated("setpriv", [...asNobody, ...listen]);
      const ready = await same.waitForEvent<PrivilegedReady>("ready", READY_TIMEOUT_MS);
      expect(ready).toMatchObject({ worker_uid: nobody.uid, worker_gid: nobody.gid });
      expect(ready.worker_groups).toBeUndefined();
      expect(identityOf(same.pid).uid).toEqual([nobody.uid, nobody.uid, nobody.uid, nobody.uid]);
      expect(curlIn(same.pid, "http://127.0.0.1:8080/")).toBe("OK\n");
      same.signal("SIGTERM");
      expect(await same.waitForExit(STOP_TIMEOUT_MS)).toEqual({ code: 0, signal: null });

      const other = startIsolated("setpriv", [...asNobody, ...listen, "--user", "daemon"]);
      expect(await other.waitForExit(STOP_TIMEOUT_MS), other.stderr).toEqual({
        code: 1,
        signal: null,
      });
      const error = await other.waitForEvent<ErrorEvent>("error", 1_000);
      expect(error).toMatchObject({ phase: "privileges", field: "user" });
      expect(error.message).toContain(`runs as uid ${nobody.uid}, not root`);
      expect(error.message).toContain("(--user)");
      expect(other.events.some((e) => e.event === "ready")).toBe(false);
    },
  );

  it(
    "a worker that cannot drop says why and never serves: the first start exits 1",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const program = startIsolated(binary, [], { userNamespace: true });
      const exit = await program.waitForExit(STOP_TIMEOUT_MS);
      expect(exit, program.stderr).toEqual({ code: 1, signal: null });
      const refused = program.events.filter(
        (e): e is ErrorEvent => e.event === "error" && e.phase === "privileges",
      );
      expect(refused.length, program.failure("no privileges error").message).toBeGreaterThan(0);
      for (const error of refused) {
        expect(error).toMatchObject({ error: "SetGroupsFailed" });
        expect(error.message).toMatch(/^worker \d+ cannot become uid \d+ gid \d+ .*not serve$/);
      }
      expect(program.events.some((e) => e.event === "ready")).toBe(false);
      expect(program.find("error", (e) => /did not start/.test(String(e.message)))).toBeDefined();
      for (let i = 0; i < 100 && processGroupMembers(program.pid).length > 0; i += 1) {
        await new Promise((r) => setTimeout(r, 20));
      }
      expect(processGroupMembers(program.pid)).toEqual([]);
    },
  );

  it(
    "an unknown user or group exits 1 naming the spec field or the flag; nothing is left",
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const dir = await mkdtemp(path.join(scratch, "unknown-"));
      const passwd = path.join(dir, "passwd");
      const lines = readFileSync("/etc/passwd", "utf8").split("\n");
      await writeFile(passwd, lines.filter((l) => !l.startsWith("nobody:")).join("\n"));
      const cases = [
        { args: [], passwd, field: "user", named: 'unknown user "nobody" (spec field "user")' },
        { args: ["--user", "nosuchuser"], field: "user", named: '"nosuchuser" (--user)' },
        { args: ["--group", "nosuchgroup"], field: "group", named: '"nosuchgroup" (--group)' },
      ];
      for (const c of cases) {
        const pidFile = path.join(dir, "pid");
        const program = startIsolated(binary, [...c.args, "--pid-file", pidFile], {
          passwd: c.passwd,
        });
        const exit = await program.waitForExit(STOP_TIMEOUT_MS);
        expect(exit, program.stderr).toEqual({ code: 1, signal: null });
        const error = await program.waitForEvent<ErrorEvent>("error", 1_000);
        expect(error).toMatchObject({ phase: "privileges", field: c.field });
        expect(error.message).toContain(c.named);
        // Standard error comes through the cat, which may pass it on after the exit.
        for (let i = 0; i < 100 && !program.stderr.includes(c.named); i += 1) {
          await new Promise((r) => setTimeout(r, 20));
        }
        expect(program.stderr).toContain(c.named);
        expect(program.events.some((e) => e.event === "ready")).toBe(false);
        // It stopped before claiming the pid file, opening a socket or starting a worker.
        expect(existsSync(pidFile)).toBe(false);
        // (The cat passing its standard error on exits at the end of that pipe.)
        for (let i = 0; i < 100 && processGroupMembers(program.pid).length > 0; i += 1) {
          await new Promise((r) => setTimeout(r, 20));
        }
        expect(processGroupMembers(program.pid)).toEqual([]);
      }
    },
  );
});
