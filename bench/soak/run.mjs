// One soak, inside its network namespace: starts the service from variant a, puts it under
// mixed load, deals the seeded schedule's actions (bench/soak/schedule.mjs) and checks the
// invariants all along. Returns the result the report is printed from (bench/soak.mjs).
//
// Invariants (each violation is recorded with its time; the run ends at the first one that
// leaves the service in an unknown state):
//   clients     every client failure is classified; only documented losses are allowed: a
//               connection held by a worker that was killed (SIGKILL, or the watchdog after a
//               SIGSTOP; the worker is stopped first and its connections' client ports read
//               from /proc, so the attribution is exact), and a UDP datagram in flight when a
//               worker was killed.
//   answers     every signal gets its event within a bound: SIGHUP → `ready` (or the planned
//               `error`), SIGKILL → `worker_exit` and `worker_replaced`, a long SIGSTOP →
//               `worker_hung` and `worker_replaced`, SIGTERM → `stopped`; and no event comes
//               that nothing asked for (an `error`, a worker that exits unexpectedly or is
//               killed at a drain deadline, `worker_hung` for a worker that was not stopped).
//   processes   at every quiet point the service's process group is exactly the serving
//               supervisor and its workers, each with the descriptors (other than TCP
//               connections) the first process of its role and variant had; the extra listener
//               answers exactly when the serving spec has it.
//   memory      RSS sampled at quiet points: a supervisor stays within 4 MiB of its first
//               sample; workers within 1.5 × the first quiet points' largest plus 16 MiB.
//   stop        the final SIGTERM ends in `stopped` and an empty process group within bounds.
import { spawn, spawnSync, execFileSync } from "node:child_process";
import { chmodSync, copyFileSync, mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";
import { startLoad, failureCount } from "../load.mjs";
import { startAppClients, whoamiProbe } from "./clients.mjs";
import {
  alive,
  clientPortsOf,
  commandLine,
  descriptorShape,
  describeSockets,
  groupMembers,
  rssKb,
  tcpConnections,
} from "./procs.mjs";
import { Schedule } from "./schedule.mjs";

export const PORTS = { who: 8001, web: 8002, echo: 8003, notes: 8004, cache: 8005, extra: 8010 };
const TCP_PORTS = new Set([PORTS.who, PORTS.web, PORTS.notes, PORTS.cache, PORTS.extra]);
const UPGRADE_ORDER = { a: "b", b: "c", c: "a" };
const DRAIN_TIMEOUT_MS = 3000;
/** A stall of the soak's own loop that makes its clients' 3 s timeouts unreliable. */
const LOOP_LAG_LIMIT_MS = 1000;
const WATCHDOG_MS = 2000;

/** Bounds on the answers, from the documented deadlines plus a margin for a busy machine. */
const BOUND_MS = {
  restart: 20_000, // probe 3 s + starting 10 s
  upgrade: 30_000, // probe 3 s + upgrading 15 s
  predecessor: 45_000, // an upgrade waiting for the previous supervisor: + 5 s + drain + 6 s
  handover: 20_000, // the old supervisor: left-behind wait 5 s + drain timeout, then exit
  failStart: 12_000,
  neverReady: 28_000, // upgrading 15 s, then the new one is stopped
  workerExit: 3000,
  replaced: 8000,
  hung: WATCHDOG_MS + 4000,
  quiet: 25_000,
  stop: DRAIN_TIMEOUT_MS + 7000,
};

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

class Violation extends Error {}

export class Soak {
  constructor({ seed, minutes, binaries, maxActions = Infinity }) {
    this.seed = seed;
    this.minutes = minutes;
    this.maxActions = maxActions;
    this.binaries = binaries; // { a, b, c }
    this.schedule = new Schedule(seed);
    this.t0 = Date.now();
    this.events = []; // { t, e }
    this.stderrTail = [];
    this.violations = [];
    this.actions = []; // { t, kind, detail }
    this.failures = []; // every client failure, classified
    this.kills = []; // { pid, index, stoppedAt, killedAt, ports }
    this.longStopped = new Set();
    this.expectErrors = 0;
    this.signals = { SIGHUP: 0, SIGKILL: 0, SIGSTOP: 0, SIGCONT: 0, SIGTERM: 0 };
    this.tally = {
      restarts: 0,
      upgrades: 0,
      upgradePaths: {},
      failedAsPlanned: { "fail-start": 0, "never-ready": 0 },
      kills: 0,
      stopsShort: 0,
      stopsLong: 0,
      queuedHups: 0,
      ignoredHups: 0,
      awaitedPredecessor: 0,
    };
    this.answerMs = {}; // kind → [ms]
    this.quietPoints = 0;
    this.fdBaselines = new Map(); // "role:variant" → shape
    this.rss = { supervisors: new Map(), workers: [] };
    this.workerRssBase = 0;
  }

  now() {
    return Date.now() - this.t0;
  }

  violate(kind, detail, fatal = false) {
    const v = { t: this.now(), kind, detail };
    this.violations.push(v);
    process.stderr.write(`soak: VIOLATION at ${v.t} ms: ${kind}: ${detail}\n`);
    if (fatal) throw new Violation(`${kind}: ${detail}`);
  }

  note(kind, detail = "") {
    this.actions.push({ t: this.now(), kind, detail });
    process.stderr.write(`soak: ${String(this.now()).padStart(7)} ms  ${kind} ${detail}\n`);
  }

  /** Sends `name` to `pid`; a target that must be there and is not is a violation. */
  signal(pid, name, { mayBeGone = false } = {}) {
    this.signals[name] += 1;
    try {
      process.kill(pid, name);
    } catch (err) {
      if (!(mayBeGone && err.code === "ESRCH"))
        this.violate("signal", `${name} to pid ${pid}: ${err.code}`);
    }
  }

  time(kind, ms) {
    (this.answerMs[kind] ??= []).push(ms);
  }

  // Deploying: a file renamed over the path the service runs from.

  deploy(variantOrScript) {
    const next = `${this.exe}.new`;
    if (variantOrScript in this.binaries) copyFileSync(this.binaries[variantOrScript], next);
    else writeFileSync(next, variantOrScript);
    chmodSync(next, 0o755);
    renameSync(next, this.exe);
  }

  /** A script that says it is another program when asked for its identity, then runs `rest`. */
  static impostor(rest) {
    const identity = "spec=0000000000000000 supervisor=0000000000000000";
    return `#!/bin/sh\nif [ "$1" = --fingerprint ]; then echo '${identity}'; exit 0; fi\n${rest}\n`;
  }

  // The service and its events.

  start() {
    this.workDir = mkdtempSync(path.join(os.tmpdir(), "soak-"));
    this.exe = path.join(this.workDir, "soak");
    this.fingerprints = new Map();
    for (const [variant, file] of Object.entries(this.binaries)) {
      const out = spawnSync(file, ["--fingerprint"], { encoding: "utf8", timeout: 10_000 });
      const spec = /spec=([0-9a-f]{16})/.exec(out.stdout)?.[1];
      if (!spec) throw new Error(`${file} --fingerprint: ${out.stdout}${out.stderr}`);
      this.fingerprints.set(spec, variant);
    }
    this.deploy("a");
    const child = spawn(
      this.exe,
      ["--drain-timeout", String(DRAIN_TIMEOUT_MS), "--watchdog", String(WATCHDOG_MS)],
      { stdio: ["ignore", "pipe", "pipe"], detached: true },
    );
    this.child = child;
    this.pgid = child.pid;
    readline.createInterface({ input: child.stdout }).on("line", (line) => {
      let e;
      try {
        e = JSON.parse(line);
      } catch {
        this.violate("stdout", `not a JSON event: ${line.slice(0, 200)}`);
        return;
      }
      this.events.push({ t: this.now(), e });
      this.watch(e);
    });
    readline.createInterface({ input: child.stderr }).on("line", (line) => {
      this.stderrTail.push(`${this.now()} ${line}`);
      if (this.stderrTail.length > 300) this.stderrTail.shift();
    });
  }

  /** Kills whatever is left of the service (on any exit path). */
  cleanup() {
    if (this.pgid === undefined) return;
    try {
      process.kill(-this.pgid, "SIGKILL");
    } catch {
      // The group is empty: the service stopped.
    }
    rmSync(this.workDir, { recursive: true, force: true });
  }

  /** Continuous checks of every event, and the serving state they describe. */
  watch(e) {
    switch (e.event) {
      case "ready":
        this.serving = {
          pid: e.pid,
          generation: e.generation,
          workers: new Map(e.workers.map((w) => [w.index, w.pid])),
          variant: this.fingerprints.get(e.spec_fingerprint) ?? "?",
        };
        break;
      case "worker_replaced":
        if (this.serving?.generation === e.generation) this.serving.workers.set(e.index, e.pid);
        break;
      case "error":
        if (this.expectErrors > 0) this.expectErrors -= 1;
        else this.violate("event", `an error nothing planned: ${JSON.stringify(e)}`);
        break;
      case "worker_hung":
        if (!this.longStopped.has(e.pid))
          this.violate(
            "event",
            `worker_hung for a worker the soak did not stop: ${JSON.stringify(e)}`,
          );
        else this.markKilled(e.pid);
        break;
      case "worker_exit": {
        const ours = this.kills.some((k) => k.pid === e.pid);
        if (!e.expected && !ours)
          this.violate("event", `a worker exited unexpectedly: ${JSON.stringify(e).slice(0, 300)}`);
        if (e.expected && (e.signal !== undefined || e.exit_code !== 0))
          this.violate(
            "event",
            `a draining worker did not exit 0: ${JSON.stringify(e).slice(0, 300)}`,
          );
        break;
      }
      default:
    }
  }

  mark() {
    return this.events.length;
  }

  /** The first event from index `from` on that matches, within `ms`; a violation otherwise. */
  async waitEvent(from, match, ms, what) {
    const deadline = Date.now() + ms;
    for (let i = from; ;) {
      for (; i < this.events.length; i += 1) if (match(this.events[i].e)) return this.events[i].e;
      if (Date.now() > deadline) {
        const tail = this.events
          .slice(-5)
          .map(({ t, e }) => `${t} ${JSON.stringify(e).slice(0, 160)}`);
        this.violate(
          "answer",
          `${what}: nothing within ${ms} ms; last events:\n  ${tail.join("\n  ")}`,
          true,
        );
      }
      await sleep(10);
    }
  }

  // Client failures.

  onFailure(kind, err, detail) {
    this.failures.push({
      t: this.now(),
      at: Date.now(),
      kind,
      code: err?.code ?? "",
      message: String(err?.message ?? err).slice(0, 200),
      ...detail,
      cause: null,
    });
  }

  /** A stopped or killed worker's connections are its clients' documented loss. */
  markKilled(pid) {
    for (const k of this.kills)
      if (k.pid === pid && k.killedAt === undefined) k.killedAt = Date.now();
  }

  /** Classifies the failures older than `ageMs` (a kill is recorded before its clients notice). */
  classify(ageMs) {
    const limit = Date.now() - ageMs;
    for (const f of this.failures) {
      if (f.cause !== null || f.at > limit) continue;
      f.cause = this.causeOf(f) ?? "undocumented";
      if (f.cause === "undocumented")
        this.violate(
          "client",
          `${f.kind} ${f.code} ${f.message} (port ${f.localPort ?? "-"}, at ${f.t} ms)`,
        );
    }
  }

  causeOf(f) {
    for (const k of this.kills) {
      if (k.killedAt === undefined) continue;
      if (f.kind === "udp") {
        if (f.sentAt <= k.killedAt + 100 && f.sentAt >= k.stoppedAt - 3500) {
          f.worker = k.pid;
          return "a datagram in flight at a worker's kill";
        }
      } else if (
        f.localPort !== undefined &&
        k.ports.has(f.localPort) &&
        // The same connection, not a later one that got the port again.
        f.startedAt <= k.stoppedAt &&
        f.at >= k.stoppedAt
      ) {
        f.worker = k.pid;
        return "a connection held by a killed worker";
      }
    }
    return undefined;
  }

  // Quiet points: processes, descriptors, memory, listeners.

  /** Waits until the group is the serving supervisor and its workers, then checks them. */
  async quiet(what) {
    const t = Date.now();
    const deadline = t + BOUND_MS.quiet;
    let expected;
    let members;
    for (;;) {
      expected = [this.serving.pid, ...this.serving.workers.values()].sort((a, b) => a - b);
      members = await groupMembers(this.pgid);
      if (members.join() === expected.join()) break;
      if (Date.now() > deadline) {
        const extra = members.filter((p) => !expected.includes(p));
        const missing = expected.filter((p) => !members.includes(p));
        this.violate(
          "processes",
          `after ${what}: ${members.length} processes, expected ${expected.length}; ` +
            `extra ${extra.map((p) => `${p} (${commandLine(p)})`).join(", ") || "none"}; ` +
            `missing ${missing.join(", ") || "none"}`,
          true,
        );
      }
      await sleep(50);
    }
    this.quietPoints += 1;
    this.time("settled", Date.now() - t);
    await this.checkDescriptors(what);
    this.sampleMemory(what);
    await this.checkExtraListener(what);
  }

  async checkDescriptors(what) {
    const { variant, pid } = this.serving;
    const roles = [
      ["supervisor", pid],
      ...[...this.serving.workers.values()].map((w) => ["worker", w]),
    ];
    for (const [role, p] of roles) {
      const key = `${role}:${variant}`;
      // A connection that closes between the two reads, or one in TCP's CLOSE state (its
      // peer's FIN or reset in, the worker not yet round to closing it: no table lists it),
      // looks like another descriptor for a moment. A leak stays: 8 looks over about 3 s.
      for (let attempt = 0; ; attempt += 1) {
        const shape = await descriptorShape(p, await tcpConnections());
        if (shape === undefined) break;
        const base = this.fdBaselines.get(key);
        if (base === undefined) {
          // The first process of its role sets the baseline, from two looks that agree: a
          // transient descriptor in a single look made every later process look one short.
          const steady = await this.steadyShape(p, shape);
          if (steady !== undefined) this.fdBaselines.set(key, { ...steady, pid: p });
          break;
        }
        if (base.rest === shape.rest) break;
        if (attempt === 7) {
          this.violate(
            "descriptors",
            `after ${what}: ${role} ${p} (${variant}) has ${shape.rest} descriptors besides ` +
              `connections ${JSON.stringify(shape.kinds)} for 3 s; the first ${role} of ` +
              `${variant} (pid ${base.pid}) had ${base.rest} ${JSON.stringify(base.kinds)}; ` +
              `its sockets: ${await describeSockets(p)}`,
          );
          break;
        }
        await sleep(400);
      }
    }
  }

  /**
   * `first` once a second look 400 ms later agrees with it (at most 8 looks over about 3 s);
   * otherwise the look with the fewest descriptors besides connections. Undefined when the
   * process is gone.
   */
  async steadyShape(pid, first) {
    let fewest = first;
    let previous = first;
    for (let look = 0; look < 7; look += 1) {
      await sleep(400);
      const shape = await descriptorShape(pid, await tcpConnections());
      if (shape === undefined) return undefined;
      if (shape.rest === previous.rest) return shape;
      if (shape.rest < fewest.rest) fewest = shape;
      previous = shape;
    }
    return fewest;
  }

  sampleMemory(what) {
    const { pid } = this.serving;
    const sup = rssKb(pid);
    if (sup !== undefined) {
      const series = this.rss.supervisors.get(pid) ?? [];
      series.push(sup);
      this.rss.supervisors.set(pid, series);
      if (sup > series[0] + 4096)
        this.violate(
          "memory",
          `after ${what}: supervisor ${pid} RSS ${sup} kB, first ${series[0]} kB`,
        );
    }
    const workers = [...this.serving.workers.values()].map(rssKb).filter((x) => x !== undefined);
    const max = Math.max(0, ...workers);
    this.rss.workers.push(max);
    if (this.rss.workers.length <= 3) this.workerRssBase = Math.max(this.workerRssBase, max);
    else if (max > this.workerRssBase * 1.5 + 16384)
      this.violate(
        "memory",
        `after ${what}: a worker's RSS ${max} kB, early quiet points ${this.workerRssBase} kB`,
      );
  }

  /** The listener only variant b has answers exactly when b serves. */
  async checkExtraListener(what) {
    const wanted = this.serving.variant === "b";
    let outcome;
    try {
      outcome = `answered ${JSON.stringify((await whoamiProbe(PORTS.extra)).trim())}`;
    } catch (err) {
      outcome = err.code;
    }
    const ok = wanted ? outcome.startsWith("answered") : outcome === "ECONNREFUSED";
    if (!ok)
      this.violate(
        "listeners",
        `after ${what}: the extra listener (only in b; ${this.serving.variant} serves): ${outcome}`,
      );
  }

  // Actions.

  async restartOnce(label) {
    const { pid, generation } = this.serving;
    this.deploy(this.serving.variant);
    const from = this.mark();
    const t = Date.now();
    this.signal(pid, "SIGHUP");
    const ready = await this.waitEvent(
      from,
      (e) => e.event === "ready" && e.pid === pid && e.generation > generation,
      BOUND_MS.restart,
      `${label}: the SIGHUP to ${pid} (restart)`,
    );
    this.time("restart", Date.now() - t);
    this.tally.restarts += 1;
    return ready;
  }

  async upgradeOnce(label, { hupOld = false, bound = BOUND_MS.upgrade } = {}) {
    const { pid, variant } = this.serving;
    const target = UPGRADE_ORDER[variant];
    this.deploy(target);
    const from = this.mark();
    const t = Date.now();
    this.signal(pid, "SIGHUP");
    const upgrading = await this.waitEvent(
      from,
      (e) => e.event === "upgrading",
      bound,
      `${label}: the SIGHUP to ${pid} (upgrade ${variant} → ${target}): upgrading`,
    );
    if (hupOld) {
      this.signal(pid, "SIGHUP");
      this.tally.ignoredHups += 1;
    }
    const ready = await this.waitEvent(
      from,
      (e) => e.event === "ready" && e.upgraded_from === pid,
      BOUND_MS.upgrade,
      `${label}: the SIGHUP to ${pid} (upgrade ${variant} → ${target}): ready`,
    );
    this.time("upgrade", Date.now() - t);
    if (ready.pid !== upgrading.successor)
      this.violate(
        "answer",
        `${label}: ready from ${ready.pid}, upgrading named ${upgrading.successor}`,
      );
    if (this.serving.variant !== target)
      this.violate("answer", `${label}: upgraded to ${this.serving.variant}, deployed ${target}`);
    const upgrades = this.events.slice(from).filter(({ e }) => e.event === "upgrading").length;
    if (upgrades !== 1)
      this.violate("answer", `${label}: ${upgrades} upgrading events for one upgrade`);
    this.tally.upgrades += 1;
    const pathKey = `${variant}→${target}`;
    this.tally.upgradePaths[pathKey] = (this.tally.upgradePaths[pathKey] ?? 0) + 1;
    return { old: pid, from, ready };
  }

  /** The old supervisor of an upgrade hands over, drains and exits 0 (`stopped` with successor). */
  async handedOver(label, { old, from, ready }) {
    await this.waitEvent(
      from,
      (e) => e.event === "stopped" && e.successor === ready.pid,
      BOUND_MS.handover,
      `${label}: pid ${old} to stop after handing over to ${ready.pid}`,
    );
    for (let i = 0; i < 100 && alive(old); i += 1) await sleep(50);
    if (alive(old))
      this.violate("processes", `${label}: pid ${old} still runs after its stopped event`);
  }

  /** A worker of the serving generation, stopped, with its connections' client ports read. */
  async stopWorker(slot) {
    const indexes = [...this.serving.workers.keys()];
    const index = indexes[slot % indexes.length];
    const pid = this.serving.workers.get(index);
    this.signal(pid, "SIGSTOP");
    await sleep(20);
    const stoppedAt = Date.now();
    const ports = await clientPortsOf(pid, TCP_PORTS);
    const kill = { pid, index, stoppedAt, killedAt: undefined, ports };
    this.kills.push(kill);
    return kill;
  }

  async replaced(label, kill, from) {
    await this.waitEvent(
      from,
      (e) => e.event === "worker_replaced" && e.index === kill.index,
      BOUND_MS.replaced,
      `${label}: worker ${kill.index} (pid ${kill.pid}) to be replaced`,
    );
  }

  async act(a) {
    const label = `#${this.actions.length} ${a.kind}`;
    switch (a.kind) {
      case "restart":
        this.note(a.kind, `pid ${this.serving.pid} (${this.serving.variant})`);
        await this.restartOnce(label);
        break;
      case "hup-during-restart": {
        this.note(a.kind, `pid ${this.serving.pid}`);
        const { pid } = this.serving;
        this.deploy(this.serving.variant);
        const from = this.mark();
        this.signal(pid, "SIGHUP");
        const first = await this.waitEvent(
          from,
          (e) => e.event === "restarting",
          BOUND_MS.restart,
          `${label}: restarting`,
        );
        this.signal(pid, "SIGHUP");
        this.tally.queuedHups += 1;
        // Generation numbers are not consecutive: a failed upgrade uses one up.
        await this.waitEvent(
          from,
          (e) => e.event === "ready" && e.pid === pid && e.generation === first.generation,
          BOUND_MS.restart,
          `${label}: generation ${first.generation} ready`,
        );
        this.tally.restarts += 1;
        const second = await this.waitEvent(
          from,
          (e) => e.event === "restarting" && e.generation > first.generation,
          BOUND_MS.restart,
          `${label}: the queued SIGHUP's restart`,
        );
        await this.waitEvent(
          from,
          (e) => e.event === "ready" && e.pid === pid && e.generation === second.generation,
          BOUND_MS.restart,
          `${label}: generation ${second.generation} ready`,
        );
        this.tally.restarts += 1;
        break;
      }
      case "hup-during-drain": {
        this.note(a.kind, `pid ${this.serving.pid}`);
        const ready = await this.restartOnce(label);
        await this.restartOnce(`${label} (gen ${ready.generation} draining)`);
        break;
      }
      case "upgrade":
      case "hup-during-upgrade": {
        this.note(
          a.kind,
          `pid ${this.serving.pid} ${this.serving.variant} → ${UPGRADE_ORDER[this.serving.variant]}`,
        );
        const up = await this.upgradeOnce(label, { hupOld: a.kind === "hup-during-upgrade" });
        await this.handedOver(label, up);
        break;
      }
      case "hup-after-handover": {
        this.note(a.kind, `pid ${this.serving.pid}`);
        const up = await this.upgradeOnce(label);
        const mark = this.mark();
        this.signal(up.old, "SIGHUP");
        this.tally.ignoredHups += 1;
        await this.handedOver(label, up);
        const stray = this.events
          .slice(mark)
          .filter(({ e }) => ["restarting", "upgrading"].includes(e.event));
        if (stray.length > 0)
          this.violate(
            "answer",
            `${label}: the old supervisor acted on a SIGHUP after handing over: ${JSON.stringify(stray)}`,
          );
        break;
      }
      case "upgrade-twice": {
        this.note(a.kind, `pid ${this.serving.pid}`);
        const first = await this.upgradeOnce(label);
        // Right away: the new supervisor holds this upgrade until its predecessor has exited.
        const second = await this.upgradeOnce(`${label} (second)`, {
          bound: BOUND_MS.predecessor,
        });
        this.tally.awaitedPredecessor += 1;
        await this.handedOver(label, first);
        await this.handedOver(`${label} (second)`, second);
        break;
      }
      case "kill": {
        const from = this.mark();
        const kill = await this.stopWorker(a.worker);
        this.note(a.kind, `worker ${kill.index} pid ${kill.pid} (${kill.ports.size} connections)`);
        const t = Date.now();
        kill.killedAt = Date.now();
        this.signal(kill.pid, "SIGKILL");
        await this.waitEvent(
          from,
          (e) => e.event === "worker_exit" && e.pid === kill.pid && e.signal === 9,
          BOUND_MS.workerExit,
          `${label}: worker_exit of pid ${kill.pid}`,
        );
        this.time("kill", Date.now() - t);
        await this.replaced(label, kill, from);
        this.time("replace", Date.now() - t);
        this.tally.kills += 1;
        break;
      }
      case "stop-short": {
        const indexes = [...this.serving.workers.keys()];
        const index = indexes[a.worker % indexes.length];
        const pid = this.serving.workers.get(index);
        this.note(a.kind, `worker ${index} pid ${pid} for ${a.stopMs} ms`);
        const from = this.mark();
        this.signal(pid, "SIGSTOP");
        await sleep(a.stopMs);
        this.signal(pid, "SIGCONT");
        await sleep(200);
        const gone = this.events.slice(from).find(({ e }) => e.pid === pid && e.event !== "ready");
        if (gone)
          this.violate(
            "answer",
            `${label}: a ${a.stopMs} ms stop ended pid ${pid}: ${JSON.stringify(gone.e)}`,
          );
        this.tally.stopsShort += 1;
        break;
      }
      case "stop-long": {
        const from = this.mark();
        const kill = await this.stopWorker(a.worker);
        this.longStopped.add(kill.pid);
        this.note(
          a.kind,
          `worker ${kill.index} pid ${kill.pid} until the watchdog (${kill.ports.size} connections)`,
        );
        const t = Date.now();
        try {
          await this.waitEvent(
            from,
            (e) => e.event === "worker_hung" && e.pid === kill.pid,
            BOUND_MS.hung,
            `${label}: worker_hung for pid ${kill.pid}`,
          );
        } finally {
          // The watchdog's SIGKILL may have ended it already; if not, it must not stay stopped.
          this.signal(kill.pid, "SIGCONT", { mayBeGone: true });
        }
        this.time("hung", Date.now() - t);
        await this.replaced(label, kill, from);
        this.tally.stopsLong += 1;
        break;
      }
      case "fail-start":
      case "never-ready": {
        const { pid, generation } = this.serving;
        this.note(a.kind, `pid ${pid}`);
        this.deploy(Soak.impostor(a.kind === "fail-start" ? "exit 1" : "exec sleep 120"));
        const from = this.mark();
        this.expectErrors += 1;
        const t = Date.now();
        this.signal(pid, "SIGHUP");
        const error = await this.waitEvent(
          from,
          (e) => e.event === "error",
          a.kind === "fail-start" ? BOUND_MS.failStart : BOUND_MS.neverReady,
          `${label}: the error event`,
        );
        this.time(a.kind, Date.now() - t);
        const why =
          a.kind === "fail-start" ? /exited with code 1 before it was ready/ : /not ready/;
        if (!why.test(error.message) || error.serving_generation !== generation)
          this.violate("answer", `${label}: ${JSON.stringify(error)}`);
        if (this.serving.pid !== pid || this.serving.generation !== generation)
          this.violate("answer", `${label}: the serving program changed after a failed upgrade`);
        this.deploy(this.serving.variant);
        this.tally.failedAsPlanned[a.kind] += 1;
        break;
      }
      default:
        throw new Error(`unknown action ${a.kind}`);
    }
  }

  // The run.

  async run() {
    execFileSync("ip", ["link", "set", "lo", "up"]);
    this.start();
    await this.waitEvent(0, (e) => e.event === "ready", 20_000, "the first ready");
    await this.quiet("the start");
    const failure = (kind, err, detail) => this.onFailure(kind, err, detail);
    this.load = startLoad(
      { host: "127.0.0.1", whoamiPort: PORTS.who, httpPort: PORTS.web, udpPort: PORTS.echo },
      { tcpConcurrency: 3, httpConnections: 3, udpWindow: 8, onFailure: failure },
    );
    this.apps = startAppClients(PORTS, { onFailure: failure });
    const classifier = setInterval(() => this.classify(4000), 1000);
    // The clients share this loop: if it stalls, their timeouts fire late, in a batch, before
    // the answers waiting in their sockets are read, and say nothing about the service.
    this.maxLoopLagMs = 0;
    let tick = Date.now();
    const lagMonitor = setInterval(() => {
      const lag = Date.now() - tick - 100;
      tick = Date.now();
      this.maxLoopLagMs = Math.max(this.maxLoopLagMs, lag);
      if (lag > LOOP_LAG_LIMIT_MS)
        this.violate(
          "soak",
          `the soak's own event loop stalled ${lag} ms: its clients' timeouts cannot be judged`,
        );
    }, 100);
    const end = this.t0 + this.minutes * 60_000;
    let outcome = "completed";
    try {
      while (
        Date.now() < end &&
        this.actions.length < this.maxActions &&
        this.violations.length === 0
      ) {
        const a = this.schedule.next();
        await sleep(a.gapMs);
        await this.act(a);
        await this.quiet(`#${this.actions.length - 1} ${a.kind}`);
      }
    } catch (err) {
      if (!(err instanceof Violation)) throw err;
    } finally {
      clearInterval(classifier);
      clearInterval(lagMonitor);
    }
    if (this.violations.length > 0) outcome = "stopped at a violation";
    const stats = await this.load.stop();
    const apps = await this.apps.stop();
    await sleep(100);
    this.classify(0);
    const stop = this.violations.some((v) => v.kind === "answer" || v.kind === "processes")
      ? { skipped: "the service is in an unknown state" }
      : await this.finalStop();
    return this.result(outcome, stats, apps, stop);
  }

  async finalStop() {
    const { pid, generation } = this.serving;
    const before = (await groupMembers(this.pgid)).length;
    const from = this.mark();
    const t = Date.now();
    this.note("SIGTERM", `pid ${pid}`);
    this.signal(pid, "SIGTERM");
    let stoppedMs;
    let leftMs;
    try {
      await this.waitEvent(
        from,
        (e) => e.event === "stopped" && e.successor === undefined && e.generation === generation,
        BOUND_MS.stop,
        `the final SIGTERM to ${pid}: stopped`,
      );
      stoppedMs = Date.now() - t;
      while (Date.now() - t < BOUND_MS.stop && (await groupMembers(this.pgid)).length > 0)
        await sleep(20);
      leftMs = Date.now() - t;
    } catch (err) {
      if (!(err instanceof Violation)) throw err;
    }
    const left = await groupMembers(this.pgid);
    if (left.length > 0)
      this.violate(
        "stop",
        `after SIGTERM: ${left.map((p) => `${p} (${commandLine(p)})`).join(", ")} still run`,
      );
    return { processesBefore: before, stoppedMs, goneMs: leftMs, left: left.length };
  }

  result(outcome, stats, apps, stop) {
    const byCause = {};
    for (const f of this.failures) byCause[f.cause] = (byCause[f.cause] ?? 0) + 1;
    const killsWithLosses = new Set(this.failures.map((f) => f.worker).filter((w) => w)).size;
    const documented = this.failures.filter((f) => f.cause !== "undocumented").length;
    const supervisors = [...this.rss.supervisors.entries()].map(([pid, s]) => ({
      pid,
      first: s[0],
      last: s.at(-1),
      max: Math.max(...s),
      samples: s.length,
    }));
    return {
      seed: this.seed,
      minutes: this.minutes,
      outcome,
      passed: this.violations.length === 0,
      durationMs: this.now(),
      signals: this.signals,
      tally: this.tally,
      answerMs: Object.fromEntries(
        Object.entries(this.answerMs).map(([k, v]) => [k, { n: v.length, max: Math.max(...v) }]),
      ),
      requests: {
        tcpWhoami: stats.tcp.ok,
        httpKeepAlive: stats.http.ok,
        httpKeepAliveReconnects: stats.http.reconnects,
        httpOneShot: apps.httpOneShot,
        longPollChanged: apps.pollChanged,
        longPollQuiet: apps.pollQuiet,
        longPollPuts: apps.pollPuts,
        streamCommands: apps.streamCommands,
        streamSessions: apps.streamSessions,
        udpSent: stats.udp.sent,
        udpAnswered: stats.udp.received,
      },
      loadFailures: failureCount(stats),
      failures: {
        total: this.failures.length,
        documented,
        undocumented: this.failures.length - documented,
        byCause,
        killsWithLosses,
      },
      undocumentedFailures: this.failures.filter((f) => f.cause === "undocumented").slice(0, 20),
      quietPoints: this.quietPoints,
      maxLoopLagMs: this.maxLoopLagMs,
      descriptors: Object.fromEntries(
        [...this.fdBaselines.entries()].map(([k, v]) => [k, { rest: v.rest, kinds: v.kinds }]),
      ),
      memory: {
        supervisors,
        workerMaxFirstKb: this.rss.workers[0],
        workerMaxLastKb: this.rss.workers.at(-1),
        workerMaxKb: Math.max(0, ...this.rss.workers),
      },
      stop,
      violations: this.violations,
      schedule: this.actions,
      stderrTail: this.violations.length > 0 ? this.stderrTail.slice(-60) : [],
    };
  }
}
