#!/usr/bin/env node
// `npm run demo`: generate examples/mixed.json, build it with Zig (DEMO_ZIG, below), run it
// with 4 worker processes on loopback, put some TCP, UDP and HTTP traffic through it, show
// which worker served what, and stop it with SIGTERM. Exits non-zero on any failure and never
// leaves the service running.
import { spawn } from "node:child_process";
import dgram from "node:dgram";
import { mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import {
  buildProject,
  checkoutToolchainDir,
  ensureZig,
  generate,
  PACKAGE_ROOT,
  zigGlobalCacheDir,
} from "../dist/index.js";

const SPEC = "examples/mixed.json";
/**
 * The supported release with the cheapest first build on a new machine, which is what a
 * newcomer's first command pays (`npm run bench:first-build`, 2 cores): 0.15.2 installs and
 * compiles its build runner in about 20 s, while 0.17 compiles its build system's maker in
 * release mode once per installation, about 130 CPU seconds. The build is Debug, the mode a
 * developer starts in (about 2 CPU seconds instead of 23 for ReleaseFast on 0.17.1); the
 * generated code is the same on every supported release.
 */
const DEMO_ZIG = "0.15.2";
const WORKERS = 4;
const TCP_CONNECTIONS = 400;
const UDP_DATAGRAMS = 400;
const HTTP_CONNECTIONS = 20;
const HTTP_REQUESTS_EACH = 10;
const CONCURRENCY = 16;
const IO_TIMEOUT_MS = 5_000;
const EVENT_TIMEOUT_MS = 15_000;
const LISTEN = {
  echo4: "127.0.0.1:0",
  echo6: "[::1]:0",
  who4: "127.0.0.1:0",
  who6: "[::1]:0",
  web4: "127.0.0.1:0",
  web6: "[::1]:0",
};

const dim = (text) => (process.stdout.isTTY ? `\x1b[2m${text}\x1b[0m` : text);
const bold = (text) => (process.stdout.isTTY ? `\x1b[1m${text}\x1b[0m` : text);
const say = (line = "") => process.stdout.write(`${line}\n`);
const command = (line) => say(`${bold("$")} ${line}`);
const seconds = (ms) => `${(ms / 1000).toFixed(1)} s`;

async function main() {
  say(bold(`gen-reuseport demo: ${SPEC} as a ${WORKERS}-worker SO_REUSEPORT service on loopback`));
  const dir = await mkdtemp(path.join(tmpdir(), "gen-reuseport-demo-"));
  let service;
  try {
    const outDir = path.join(dir, "mixed-edge");
    command(`gen-reuseport ${SPEC} --out ${outDir}`);
    const generated = await generate({ specFile: SPEC, outDir, cwd: PACKAGE_ROOT });
    say(dim(`  ${generated.counts.create} files written`));

    const toolchainDir = checkoutToolchainDir(process.env);
    const zig = await ensureZig(DEMO_ZIG, {
      dir: toolchainDir,
      onInstall: (event) => say(dim(`  installing zig ${event.version} into ${event.path}`)),
    });
    command(`zig build    ${dim(`(zig ${DEMO_ZIG}, Debug, in ${outDir})`)}`);
    // The generator's own build step: Zig's live progress on a terminal, its lines otherwise.
    const build = await buildProject({
      zig,
      dir: outDir,
      steps: [["build"]],
      env: { ZIG_GLOBAL_CACHE_DIR: zigGlobalCacheDir(toolchainDir, DEMO_ZIG) },
      output: process.stderr.isTTY ? "inherit" : (line) => process.stderr.write(`${line}\n`),
    });
    const [step] = build.steps;
    if (!build.ok) {
      const how = step.timedOut ? "timed out" : `exit code ${step.exitCode ?? step.signal}`;
      throw new Error(`zig build failed (${how})`);
    }
    say(dim(`  built in ${seconds(step.ms)}`));

    const binary = path.join(outDir, "zig-out", "bin", generated.model.name);
    const args = ["--workers", String(WORKERS)];
    for (const [name, at] of Object.entries(LISTEN)) args.push("--listen", `${name}=${at}`);
    const shown = args.map((a) => (a.includes("[") ? `'${a}'` : a)).join(" ");
    command(`./zig-out/bin/${generated.model.name} ${shown}    ${dim(`(in ${outDir})`)}`);
    service = startService(binary, args);
    const ready = await service.waitFor("ready", EVENT_TIMEOUT_MS);
    const ports = Object.fromEntries(ready.listeners.map((l) => [l.name, l.port]));
    say(
      dim(
        `  ready: ${ready.mode} pid ${ready.pid}, workers ${ready.workers.map((w) => w.pid).join(" ")}`,
      ),
    );
    say(
      dim(
        `  ${ready.listeners.map((l) => `${l.name} ${l.protocol} ${l.handler} :${l.port}`).join(" · ")}`,
      ),
    );

    say();
    say(
      `load: ${TCP_CONNECTIONS} TCP echo connections, ${UDP_DATAGRAMS} UDP whoami datagrams ` +
        `(a new socket each), ${HTTP_CONNECTIONS}×${HTTP_REQUESTS_EACH} HTTP keep-alive requests`,
    );
    const loadStart = Date.now();
    const whoami = new Map();
    const failures = [
      ...(await bounded(TCP_CONNECTIONS, (i) =>
        i % 2 === 0 ? echo("127.0.0.1", ports.echo4, i) : echo("::1", ports.echo6, i),
      )),
      ...(await bounded(UDP_DATAGRAMS, async (i) => {
        const [host, port] = i % 2 === 0 ? ["127.0.0.1", ports.who4] : ["::1", ports.who6];
        const pid = Number(/pid=(\d+)/.exec(await udpAsk(host, port, "who?"))?.[1]);
        whoami.set(pid, (whoami.get(pid) ?? 0) + 1);
      })),
      ...(await bounded(HTTP_CONNECTIONS, (i) =>
        i % 2 === 0 ? httpRequests("127.0.0.1", ports.web4) : httpRequests("::1", ports.web6),
      )),
    ];
    say(dim(`  done in ${seconds(Date.now() - loadStart)}, ${failures.length} failures`));
    for (const failure of failures.slice(0, 5)) say(`  failure: ${failure.message}`);

    command(`kill -TERM ${ready.pid}`);
    service.child.kill("SIGTERM");
    const stopped = await service.waitFor("stopped", EVENT_TIMEOUT_MS);
    const exit = await service.exit(EVENT_TIMEOUT_MS);
    say();
    printTable(stopped, whoami);
    say();
    say(`stopped: ${stopped.reason}, generation ${stopped.generation}, exit code ${exit.code}`);
    const servedEvery = stopped.workers.every((w) => w.connections > 0 || w.datagrams > 0);
    if (failures.length > 0) throw new Error(`${failures.length} client operations failed`);
    if (exit.code !== 0) throw new Error(`the service exited with ${exit.code ?? exit.signal}`);
    if (stopped.reason !== "graceful")
      throw new Error(`stop reason ${stopped.reason}, expected graceful`);
    if (!servedEvery)
      say(dim("note: some worker served nothing this time (the kernel's hash decides)"));
    return 0;
  } finally {
    service?.kill();
    await rm(dir, { recursive: true, force: true });
  }
}

function printTable(stopped, whoami) {
  const rows = [["worker", "pid", "connections", "requests", "datagrams", "whoami answers"]];
  for (const w of stopped.workers) {
    rows.push(
      [w.index, w.pid, w.connections, w.requests, w.datagrams, whoami.get(w.pid) ?? 0].map(String),
    );
  }
  const sum = (k) => stopped.workers.reduce((n, w) => n + w[k], 0);
  const answers = [...whoami.values()].reduce((n, c) => n + c, 0);
  rows.push(
    ["total", "", sum("connections"), sum("requests"), sum("datagrams"), answers].map(String),
  );
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  rows.forEach((row, r) => {
    const line = row
      .map((cell, c) => (c < 2 ? cell.padEnd(widths[c]) : cell.padStart(widths[c])))
      .join("  ");
    say(r === 0 ? bold(line) : r === rows.length - 1 ? dim(line) : line);
  });
}

/** The service: its stdout events, and a kill that always works (its whole process group). */
function startService(binary, args) {
  const child = spawn(binary, args, { stdio: ["ignore", "pipe", "pipe"], detached: true });
  const events = [];
  let stderr = "";
  let exited;
  const waiters = new Set();
  const wake = () => waiters.forEach((w) => w());
  const exitPromise = new Promise((resolve) =>
    child.once("exit", (code, signal) => {
      exited = { code, signal };
      wake();
      resolve(exited);
    }),
  );
  createInterface({ input: child.stdout }).on("line", (line) => {
    try {
      events.push(JSON.parse(line));
    } catch {
      say(dim(`  (stdout) ${line}`));
    }
    wake();
  });
  child.stderr.setEncoding("utf8").on("data", (chunk) => (stderr += chunk));
  const within = (promise, ms, what) =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${what} within ${ms} ms\n${stderr}`)), ms);
      promise.then(
        (v) => (clearTimeout(timer), resolve(v)),
        (e) => (clearTimeout(timer), reject(e)),
      );
    });
  return {
    child,
    waitFor: (name, ms) =>
      within(
        new Promise((resolve, reject) => {
          const check = () => {
            const found = events.find((e) => e.event === name);
            if (found) return (waiters.delete(check), resolve(found));
            if (exited)
              (waiters.delete(check),
                reject(new Error(`service exited before "${name}":\n${stderr}`)));
          };
          waiters.add(check);
          check();
        }),
        ms,
        `no "${name}" event`,
      ),
    exit: (ms) => within(exitPromise, ms, "the service did not exit"),
    kill: () => {
      if (exited) return;
      try {
        process.kill(-child.pid, "SIGKILL");
      } catch {
        child.kill("SIGKILL");
      }
    },
  };
}

/** Runs `count` tasks, CONCURRENCY at a time; returns the errors. */
async function bounded(count, task) {
  const errors = [];
  let next = 0;
  const lane = async () => {
    while (next < count) {
      const i = next++;
      await task(i).catch((error) => errors.push(error));
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, count) }, lane));
  return errors;
}

function withTimeout(what, run) {
  return new Promise((resolve, reject) => {
    let cleanup = () => {};
    const timer = setTimeout(
      () => (cleanup(), reject(new Error(`${what}: timed out`))),
      IO_TIMEOUT_MS,
    );
    cleanup = run(
      (v) => (clearTimeout(timer), resolve(v)),
      (e) => (clearTimeout(timer), cleanup(), reject(new Error(`${what}: ${e.message}`))),
    );
  });
}

function echo(host, port, i) {
  const message = `hello ${i}\n`;
  return withTimeout(`tcp echo ${host}:${port}`, (resolve, reject) => {
    const socket = net.connect({ host, port }, () => socket.end(message));
    let reply = "";
    socket.setEncoding("utf8").on("data", (d) => (reply += d));
    socket.on("error", reject);
    socket.on("close", () =>
      reply === message ? resolve() : reject(new Error(`got ${JSON.stringify(reply)}`)),
    );
    return () => socket.destroy();
  });
}

function udpAsk(host, port, text) {
  return withTimeout(`udp ${host}:${port}`, (resolve, reject) => {
    const socket = dgram.createSocket(host.includes(":") ? "udp6" : "udp4");
    socket.on("error", reject);
    socket.once("message", (m) => (socket.close(), resolve(m.toString())));
    socket.send(text, port, host);
    return () => socket.close();
  });
}

function httpRequests(host, port) {
  return withTimeout(`http ${host}:${port}`, (resolve, reject) => {
    const socket = net.connect({ host, port });
    let buffer = "";
    let answered = 0;
    const send = () => socket.write(`GET /${answered} HTTP/1.1\r\nHost: demo\r\n\r\n`);
    socket.on("connect", send);
    socket.setEncoding("latin1").on("data", (d) => {
      buffer += d;
      for (;;) {
        const end = buffer.indexOf("\r\n\r\n");
        if (end < 0) return;
        const length = Number(/content-length:\s*(\d+)/i.exec(buffer.slice(0, end))?.[1] ?? 0);
        if (buffer.length < end + 4 + length) return;
        if (!buffer.startsWith("HTTP/1.1 200")) return reject(new Error(buffer.split("\r\n")[0]));
        buffer = buffer.slice(end + 4 + length);
        if (++answered === HTTP_REQUESTS_EACH) return (socket.end(), resolve());
        send();
      }
    });
    socket.on("error", reject);
    return () => socket.destroy();
  });
}

main().then(
  (code) => (process.exitCode = code),
  (error) => {
    process.stderr.write(
      `demo failed: ${error instanceof Error ? error.message : String(error)}\n`,
    );
    process.exitCode = 1;
  },
);
