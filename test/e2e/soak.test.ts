/**
 * A short chaos soak (`bench/soak.mjs`, one deck of the schedule: every kind of action once,
 * kill twice, about 45 s) with a fixed seed, on the newest
 * Zig release under test: the service built from the soak's three specs (Debug: every safety
 * check and the runtime's invariant assertions on) runs in a network namespace of its own under
 * whoami, HTTP keep-alive and one-shot, UDP, long-poll and RESP load while the seeded schedule
 * restarts, upgrades, kills and stops workers, deploys binaries that fail or never get ready,
 * and sends SIGHUP during restarts, upgrades and drains. Every invariant of the soak must hold
 * (see docs/development.md); `npm run soak -- --minutes 30` is the long run.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PACKAGE_ROOT } from "../../src/index.js";
import { compareZigVersions, parseZigVersion } from "../../src/zig-facts.js";
import { binaryOf } from "./support/supervised.js";
import { FULL_MATRIX_VERSIONS } from "./support/zig.js";

const SEED = 20261207;
/** One deck: every kind of action once, kill twice. */
const ACTIONS = 13;
/** A bound the deck ends well within (about 45 s on this 2-core machine under the suite). */
const MINUTES = 3;
const SETUP_TIMEOUT_MS = 15 * 60_000;
const RUN_TIMEOUT_MS = MINUTES * 60_000 + 60_000;

/** The newest release of those that run the whole suite. */
function newest(versions: readonly string[]): string {
  return [...versions].sort((a, b) => {
    const [pa, pb] = [parseZigVersion(a), parseZigVersion(b)];
    return pa === undefined || pb === undefined ? a.localeCompare(b) : compareZigVersions(pa, pb);
  })[versions.length - 1]!;
}

interface SoakResult {
  readonly seed: number;
  readonly passed: boolean;
  readonly outcome: string;
  readonly signals: Record<string, number>;
  readonly tally: {
    restarts: number;
    upgrades: number;
    kills: number;
    stopsShort: number;
    stopsLong: number;
    failedAsPlanned: Record<string, number>;
  };
  readonly requests: Record<string, number>;
  readonly failures: { total: number; documented: number; undocumented: number };
  readonly quietPoints: number;
  readonly stop: { left?: number; stoppedMs?: number; skipped?: string };
  readonly violations: { t: number; kind: string; detail: string }[];
  readonly schedule: { t: number; kind: string; detail: string }[];
}

const version = newest(FULL_MATRIX_VERSIONS);

describe(`zig ${version}`, () => {
  let binaries: string[];
  let scratch: string;

  beforeAll(async () => {
    binaries = await Promise.all(
      (["soak-a", "soak-b", "soak-c"] as const).map((key) => binaryOf(key, version)),
    );
    scratch = await mkdtemp(path.join(tmpdir(), "gen-reuseport-soak-"));
  }, SETUP_TIMEOUT_MS);

  afterAll(async () => {
    if (scratch !== undefined) await rm(scratch, { recursive: true, force: true });
  });

  it(
    `holds every invariant through a chaos soak of ${ACTIONS} actions under load (seed ${SEED})`,
    // Retried once (each try checks every invariant): in one of three fresh-clone runs on
    // 2026-12-07 (at 7424008, zig 0.17.1) the descriptor check found the later workers of spec
    // c with one socket fewer than its first worker after a SIGHUP during an upgrade. The
    // baseline was then one look at the first worker, so a descriptor there for a moment made
    // every later worker look one short; since then the baseline takes two looks that agree
    // (`steadyShape` in bench/soak/run.mjs). The retry stays until runs show it was that.
    { timeout: RUN_TIMEOUT_MS + 10_000, retry: 1 },
    async () => {
      const result = path.join(scratch, "result.json");
      const argv = ["bench/soak.mjs", "--minutes", String(MINUTES), "--seed", String(SEED)];
      argv.push("--actions", String(ACTIONS), "--binaries", binaries.join(","), "--result", result);
      process.stdout.write(`soak seed ${SEED}: node ${argv.join(" ")}\n`);
      // A process group of its own, killed whole afterwards: nothing outlives a timeout.
      const child = execa(process.execPath, argv, {
        cwd: PACKAGE_ROOT,
        timeout: RUN_TIMEOUT_MS,
        reject: false,
        stdin: "ignore",
        detached: true,
        all: true,
      });
      let run: SoakResult;
      try {
        const done = await child;
        process.stdout.write(`${done.stdout}\n`);
        if (done.exitCode !== 0 && done.exitCode !== 1)
          throw new Error(`node ${argv.join(" ")}: ${done.shortMessage}\n${done.all}`);
        const text = await readFile(result, "utf8").catch(() => {
          throw new Error(
            `node ${argv.join(" ")} wrote no result (exit ${done.exitCode}):\n${done.all}`,
          );
        });
        run = JSON.parse(text) as SoakResult;
        expect(done.exitCode, done.stdout).toBe(run.passed ? 0 : 1);
      } finally {
        if (child.pid !== undefined) {
          try {
            process.kill(-child.pid, "SIGKILL");
          } catch {
            // The group is gone: the soak stopped everything it started.
          }
        }
      }
      expect(run.seed).toBe(SEED);
      expect(run.violations).toEqual([]);
      expect(run.passed).toBe(true);
      expect(run.failures.undocumented).toBe(0);
      expect(run.stop.left).toBe(0);
      // The whole deck ran (every kind of action) and the load flowed through it.
      const kinds = run.schedule.map((a) => a.kind).filter((k) => k !== "SIGTERM");
      expect(kinds).toHaveLength(ACTIONS);
      expect(new Set(kinds).size).toBe(ACTIONS - 1);
      // upgrade, upgrade-twice (2), hup-during-upgrade, hup-after-handover.
      expect(run.tally.upgrades).toBe(5);
      expect(run.tally.kills).toBe(2);
      expect(run.tally.stopsLong).toBe(1);
      expect(run.tally.stopsShort).toBe(1);
      expect(run.tally.failedAsPlanned).toEqual({ "fail-start": 1, "never-ready": 1 });
      for (const [kind, n] of Object.entries(run.requests))
        if (kind !== "httpKeepAliveReconnects") expect(n, kind).toBeGreaterThan(0);
      expect(run.quietPoints).toBeGreaterThan(5);
    },
  );
});
