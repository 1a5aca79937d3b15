#!/usr/bin/env node
// soak: a chaos soak of the process model. Mixed load (whoami connections, HTTP keep-alive and
// one request per connection, UDP echo, long polls on the notes module, RESP sessions on the
// resp module) while a seeded schedule restarts, upgrades (specs a → b → c: 4, 2 and 6
// workers, a listener added and removed), kills and stops workers, deploys binaries that fail
// or never get ready, and sends SIGHUP during restarts, upgrades and drains. The invariants it
// checks all along are in bench/soak/run.mjs and docs/development.md.
//
//   npm run soak -- [--minutes N] [--seed S] [--optimize ReleaseSafe|Debug|ReleaseFast]
//                   [--binaries A,B,C [--built TEXT]] [--migrate 0|1] [--actions N]
//                   [--result FILE]
//
// --minutes: how long the schedule deals actions (the action under way then finishes);
// --actions: stop dealing after N actions (a deck of 13 holds every kind once, kill twice);
// --binaries: the three variants already built (otherwise built here with --optimize), and
// --built: how, for the summary;
// --result: also write the result as JSON to FILE.
//
// It prints its seed first; a failure prints the seed and the schedule it ran, and the same
// --seed deals the same actions again. Exit status: 0 when every invariant held, 1 otherwise.
// Needs root: it runs in a network namespace of its own (`unshare -n`), all on its loopback.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const here = path.dirname(fileURLToPath(import.meta.url));

const { values: args } = parseArgs({
  options: {
    minutes: { type: "string", default: "10" },
    seed: { type: "string" },
    optimize: { type: "string", default: "ReleaseSafe" },
    binaries: { type: "string" },
    migrate: { type: "string", default: "0" },
    actions: { type: "string" },
    result: { type: "string" },
    inside: { type: "boolean", default: false },
    built: { type: "string", default: "" },
  },
});

const VARIANTS = ["a", "b", "c"];
/** The application modules the specs use, copied over their generated stubs. */
const MODULES = { notes: "examples/app/notes.zig", resp: "examples/app/resp.zig" };

function fail(message) {
  process.stderr.write(`soak: ${message}\n`);
  process.exit(2);
}

function seedOf(text) {
  if (text === undefined) return Math.floor(Math.random() * 2 ** 32);
  if (!/^\d+$/.test(text) || Number(text) >= 2 ** 32)
    fail(`--seed ${text}: expected 0 … 4294967295`);
  return Number(text);
}

async function buildVariants(optimize) {
  const { buildBenchService } = await import("./service.mjs");
  const out = mkdtempSync(path.join(os.tmpdir(), "soak-build-"));
  process.on("exit", () => rmSync(out, { recursive: true, force: true }));
  const paths = [];
  for (const v of VARIANTS) {
    paths.push(
      await buildBenchService(`soak-${v}`, path.join(out, v), {
        optimize,
        name: "soak",
        modules: MODULES,
      }),
    );
  }
  const { SUPPORTED_ZIG } = await import(path.join(here, "../dist/index.js"));
  return { binaries: paths.join(","), built: `${optimize}, zig ${SUPPORTED_ZIG.at(-1)}` };
}

async function outside() {
  const seed = seedOf(args.seed);
  const minutes = Number(args.minutes);
  if (!(minutes > 0)) fail(`--minutes ${args.minutes}: expected a positive number`);
  process.stdout.write(`soak: seed ${seed}\n`);
  if (process.getuid?.() !== 0)
    fail("needs root for `unshare -n` (a network namespace of its own)");
  const { binaries, built } = args.binaries
    ? {
        binaries: args.binaries,
        built: `given with --binaries${args.built ? ` (${args.built})` : ""}`,
      }
    : await buildVariants(args.optimize);
  const resultDir = mkdtempSync(path.join(os.tmpdir(), "soak-result-"));
  const result = args.result ?? path.join(resultDir, "result.json");
  const inner = [
    path.join(here, "soak.mjs"),
    "--inside",
    ...["--seed", String(seed), "--minutes", String(minutes), "--binaries", binaries],
    ...["--migrate", args.migrate, "--result", result, "--built", built],
    ...(args.actions ? ["--actions", args.actions] : []),
  ];
  const child = spawn("unshare", ["-n", process.execPath, ...inner], { stdio: "inherit" });
  // Bounded: the run itself, the longest action (about a minute) and the final stop.
  const limit = setTimeout(() => child.kill("SIGTERM"), (minutes * 60 + 300) * 1000);
  const forward = (signal) => child.kill(signal);
  process.on("SIGINT", forward);
  process.on("SIGTERM", forward);
  const [code, signal] = await new Promise((r) => child.on("exit", (c, s) => r([c, s])));
  clearTimeout(limit);
  rmSync(resultDir, { recursive: true, force: true });
  if (signal)
    fail(
      `the soak ended by ${signal}; replay: npm run soak -- --minutes ${minutes} --seed ${seed}`,
    );
  process.exit(code ?? 1);
}

async function inside() {
  const { Soak } = await import("./soak/run.mjs");
  const [a, b, c] = args.binaries.split(",");
  const seed = Number(args.seed);
  const maxActions = args.actions ? Number(args.actions) : Infinity;
  const soak = new Soak({ seed, minutes: Number(args.minutes), binaries: { a, b, c }, maxActions });
  const stop = () => {
    soak.cleanup();
    process.exit(1);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  let result;
  try {
    const { execFileSync } = await import("node:child_process");
    execFileSync("sysctl", ["-q", "-w", `net.ipv4.tcp_migrate_req=${args.migrate}`]);
    result = await soak.run();
  } catch (err) {
    soak.cleanup();
    throw err;
  }
  soak.cleanup();
  result.machine = machine();
  const actions = args.actions ? ` --actions ${args.actions}` : "";
  result.command = `npm run soak -- --minutes ${args.minutes} --seed ${seed}${actions}`;
  result.built = args.built;
  result.migrate = Number(args.migrate);
  writeFileSync(args.result, `${JSON.stringify(result, null, 2)}\n`);
  report(result);
  process.exit(result.passed ? 0 : 1);
}

function machine() {
  const cpus = os.cpus();
  const load = os
    .loadavg()
    .map((x) => x.toFixed(2))
    .join(" ");
  return `${cpus.length} x ${cpus[0]?.model ?? "unknown cpu"}, Linux ${os.release()}, node ${process.version}, load average at the end ${load}`;
}

function report(r) {
  const out = (line = "") => process.stdout.write(`${line}\n`);
  const t = r.tally;
  const q = r.requests;
  out();
  out(`soak summary (seed ${r.seed})`);
  out(`  command       ${r.command}`);
  out(`  machine       ${r.machine}`);
  out(`  binaries      ${r.built}; net.ipv4.tcp_migrate_req=${r.migrate}`);
  const dealt = r.schedule.filter((a) => a.kind !== "SIGTERM").length;
  out(
    `  ran           ${(r.durationMs / 1000).toFixed(1)} s, ${dealt} actions, ${r.outcome}; the soak's own loop lagged at most ${r.maxLoopLagMs} ms`,
  );
  const sig = Object.entries(r.signals)
    .map(([k, v]) => `${k} ${v}`)
    .join(", ");
  out(`  signals sent  ${Object.values(r.signals).reduce((a, b) => a + b, 0)} (${sig})`);
  out(`  restarts      ${t.restarts} ok (${t.queuedHups} SIGHUPs queued during a restart)`);
  const paths = Object.entries(t.upgradePaths)
    .map(([k, v]) => `${k} ${v}`)
    .join(", ");
  out(
    `  upgrades      ${t.upgrades} ok (${paths || "none"}; ${t.awaitedPredecessor} waited for a predecessor; ${t.ignoredHups} SIGHUPs to an old supervisor ignored as documented)`,
  );
  const failed = r.tally.failedAsPlanned;
  out(
    `                ${failed["fail-start"] + failed["never-ready"]} failed as planned (${failed["fail-start"]} exits at start, ${failed["never-ready"]} never ready), each an error event with the old program serving`,
  );
  out(
    `  kills         ${t.kills} SIGKILL, ${t.stopsLong} SIGSTOP until the watchdog, ${t.stopsShort} SIGSTOP/SIGCONT`,
  );
  const answers = Object.entries(r.answerMs)
    .map(([k, v]) => `${k} ${v.n}× ≤ ${v.max} ms`)
    .join(", ");
  out(`  answered      ${answers}`);
  out(
    `  requests      whoami ${q.tcpWhoami}, http keep-alive ${q.httpKeepAlive} (${q.httpKeepAliveReconnects} reconnects after Connection: close), http one-shot ${q.httpOneShot}`,
  );
  out(
    `                long polls ${q.longPollChanged} answered at a change, ${q.longPollQuiet} at the end of the wait or a drain (${q.longPollPuts} PUTs)`,
  );
  out(
    `                stream commands ${q.streamCommands} in ${q.streamSessions} sessions, udp ${q.udpAnswered}/${q.udpSent} answered`,
  );
  const causes = Object.entries(r.failures.byCause)
    .map(([k, v]) => `${v} ${k}`)
    .join("; ");
  const kills = r.failures.killsWithLosses;
  out(
    `  failures      ${r.failures.undocumented}/${r.failures.total} undocumented${causes ? ` (${causes}; ${kills} of the ${t.kills + t.stopsLong} kills cost a client something)` : ""}`,
  );
  out(
    `  processes     ${r.quietPoints} quiet points: the serving supervisor and its workers only; descriptors besides connections ${Object.entries(
      r.descriptors,
    )
      .map(([k, v]) => `${k}=${v.rest}`)
      .join(" ")}`,
  );
  const sups = r.memory.supervisors;
  const supGrowth = Math.max(0, ...sups.map((s) => s.max - s.first));
  out(
    `  memory        ${sups.length} supervisors, largest RSS growth over a life ${supGrowth} kB; largest worker RSS ${r.memory.workerMaxFirstKb} kB at the first quiet point, ${r.memory.workerMaxLastKb} kB at the last, ${r.memory.workerMaxKb} kB max`,
  );
  const s = r.stop;
  out(
    `  final stop    ${s.skipped ?? `SIGTERM: stopped in ${s.stoppedMs} ms, all ${s.processesBefore} processes gone in ${s.goneMs} ms, ${s.left} left`}`,
  );
  out(`  result        ${r.passed ? "PASS" : `FAIL: ${r.violations.length} violation(s)`}`);
  if (!r.passed) {
    out();
    out(`violations:`);
    for (const v of r.violations) out(`  ${v.t} ms ${v.kind}: ${v.detail}`);
    for (const f of r.undocumentedFailures) out(`  failure: ${JSON.stringify(f)}`);
    out(`schedule (seed ${r.seed}; times in ms since the start):`);
    for (const a of r.schedule) out(`  ${String(a.t).padStart(7)}  ${a.kind} ${a.detail}`);
    out(`service stderr (last lines):`);
    for (const line of r.stderrTail) out(`  ${line}`);
    out(`replay: ${r.command}`);
  }
}

if (args.inside) await inside();
else await outside();
