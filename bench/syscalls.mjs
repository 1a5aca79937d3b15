#!/usr/bin/env node
// bench:syscalls: counts the system calls one worker of the generated `http` handler makes
// for N sequential keep-alive requests and for N pipelined requests sent in batches, with
// strace attached to that worker. The claim it backs: one read and one write per request in
// steady state, and one of each per batch of pipelined requests.
//
//   npm run bench:syscalls -- [--requests N] [--batch N] [--binary PATH] [--io io_uring]
//
// With --io io_uring the worker serves through io_uring: its receives are not system calls,
// and io_uring_enter replaces epoll_pwait.
//
// Needs strace on PATH (Debian: apt-get install strace).
import { spawn, spawnSync } from "node:child_process";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";
import { parseArgs } from "node:util";
import { buildBenchService } from "./service.mjs";
import { mkdtempSync, rmSync } from "node:fs";

const { values: args } = parseArgs({
  options: {
    requests: { type: "string", default: "2000" },
    batch: { type: "string", default: "10" },
    binary: { type: "string" },
    io: { type: "string" },
  },
});
const requests = Number(args.requests);
const batch = Number(args.batch);
const REQUEST = "GET / HTTP/1.1\r\nHost: bench\r\n\r\n";

if (spawnSync("sh", ["-c", "command -v strace"]).status !== 0) {
  process.stderr.write("bench:syscalls: strace is not on PATH (Debian: apt-get install strace)\n");
  process.exit(1);
}
const tmp = mkdtempSync(path.join(os.tmpdir(), "bench-syscalls-"));
const children = [];
process.on("exit", () => {
  for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
  rmSync(tmp, { recursive: true, force: true });
});

const binary = args.binary ?? (await buildBenchService("http", path.join(tmp, "service")));
const io = args.io === undefined ? [] : ["--io", args.io];
const service = spawn(binary, [...io, "--workers", "1", "--listen", "web=127.0.0.1:0"], {
  stdio: ["ignore", "pipe", "inherit"],
});
children.push(service);
const ready = await new Promise((resolve) => {
  readline.createInterface({ input: service.stdout }).on("line", (line) => {
    const event = JSON.parse(line);
    if (event.event === "ready") resolve(event);
  });
});
const port = ready.listeners[0].port;
const worker = ready.workers[0].pid;

const sequential = await traced(worker, (socket) => exchange(socket, requests, 1));
const pipelined = await traced(worker, (socket) => exchange(socket, requests, batch));
report();
process.exit(0);

/** Runs `work` on a fresh connection with strace counting the worker's system calls. */
async function traced(pid, work) {
  const socket = await new Promise((resolve, reject) => {
    const s = net.connect({ host: "127.0.0.1", port }, () => resolve(s));
    s.on("error", reject);
  });
  const strace = spawn("strace", ["-c", "-p", String(pid)], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  children.push(strace);
  let table = "";
  strace.stderr.on("data", (d) => (table += d));
  await new Promise((r) => setTimeout(r, 300)); // attached
  await work(socket);
  socket.destroy();
  await new Promise((r) => setTimeout(r, 100));
  strace.kill("SIGINT");
  await new Promise((r) => strace.once("exit", r));
  const calls = {};
  for (const line of table.split("\n")) {
    const m = /^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)$/.exec(line);
    if (m && m[2] !== "total") calls[m[2]] = Number(m[1]);
  }
  return calls;
}

/** `count` requests, `perWrite` of them in each write; waits for all their responses. */
function exchange(socket, count, perWrite) {
  return new Promise((resolve, reject) => {
    let pending = 0;
    let sent = 0;
    let buffer = "";
    const sendBatch = () => {
      const n = Math.min(perWrite, count - sent);
      if (n === 0) return resolve();
      pending = n;
      sent += n;
      socket.write(REQUEST.repeat(n));
    };
    socket.setEncoding("latin1");
    socket.on("data", (chunk) => {
      buffer += chunk;
      let end;
      while (pending > 0 && (end = buffer.indexOf("OK\n")) >= 0) {
        buffer = buffer.slice(end + 3);
        pending -= 1;
      }
      if (pending === 0) sendBatch();
    });
    socket.on("error", reject);
    sendBatch();
  });
}

function report() {
  console.log(
    `bench:syscalls  ${os.cpus().length} x ${os.cpus()[0]?.model ?? "cpu"}, Linux ${os.release()}`,
  );
  console.log(`command: npm run bench:syscalls -- ${process.argv.slice(2).join(" ")}`);
  for (const [name, calls, writes] of [
    [`${requests} sequential keep-alive requests`, sequential, requests],
    [`${requests} pipelined requests, ${batch} per write`, pipelined, Math.ceil(requests / batch)],
  ]) {
    const per = (k) => ((calls[k] ?? 0) / writes).toFixed(2);
    console.log(`  ${name}: ${JSON.stringify(calls)}`);
    console.log(
      `    per client write: read ${per("read")}, sendto ${per("sendto")}, ` +
        (args.io === "io_uring"
          ? `io_uring_enter ${per("io_uring_enter")}`
          : `epoll_pwait ${per("epoll_pwait") === "0.00" ? per("epoll_wait") : per("epoll_pwait")}`),
    );
  }
}
