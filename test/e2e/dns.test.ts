/**
 * The dns example: a datagram module (examples/app/dns.zig over the generated stub) answering
 * A and AAAA queries for the names of its table, on 2 workers with batched datagrams, asked by
 * `dig` (Debian's bind9-dnsutils, installed with apt-get when missing; under CI=true a missing
 * one fails the run) and by raw datagrams for what dig will not send. Only on the newest release
 * of the matrix, in one build: what differs between releases in this code (the module's parser,
 * the batches) is exercised on every release by the example's own `zig build test`
 * (build.test.ts), which also throws mutated and cut queries at the parser.
 *
 * The same binary shows the sending side of batches: a burst of same-size queries from one
 * socket answered one datagram each while the replies went as UDP GSO sends
 * (`reuseport_udp_gso_sends_total`, the UDP families checked by `promtool`); a namespace whose
 * loopback MTU is below a reply, where GSO is refused and each reply goes alone; and, in a
 * network namespace the test makes (`unshare -n`, root) where an htb class of `tc` (Debian's
 * iproute2) lets the service's replies out at 64 kbit/s, a flood from two sockets
 * (test/e2e/support/udp-flood.py, run there with nsenter and python3) that fills the socket's
 * send buffer: the replies that met EAGAIN wait in the socket's queue, the rest are dropped
 * and counted, receiving goes on, and a SIGTERM while replies wait has the worker send them
 * before it exits (the class is then let through at 10 Gbit/s); every reply the counters say
 * was sent arrives, in order per socket.
 */
import { execFile } from "node:child_process";
import dgram from "node:dgram";
import path from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PACKAGE_ROOT } from "../../src/index.js";
import { udpExchange } from "./support/net.js";
import {
  portOf,
  Program,
  startReady,
  STOP_TIMEOUT_MS,
  stopAllPrograms,
  type ReadyEvent,
  type ServiceEvent,
} from "./support/program.js";
import { programOf } from "./support/project.js";
import { ensureCommand } from "./support/tools.js";
import { FULL_MATRIX_VERSIONS, matrixOf } from "./support/zig.js";

const VERSIONS =
  matrixOf() === "full" ? FULL_MATRIX_VERSIONS : FULL_MATRIX_VERSIONS.slice(-1);

const SETUP_TIMEOUT_MS = 15 * 60_000;
const TEST_TIMEOUT_MS = 30_000;
const FLOOD = path.join(PACKAGE_ROOT, "test", "e2e", "support", "udp-flood.py");

interface AdminReadyEvent extends ReadyEvent {
  readonly admin?: { readonly address: string; readonly port: number };
}

/** The sum of every sample of `name` (any labels) in an exposition text. */
function total(lines: readonly string[], name: string, labels = ""): number {
  return lines
    .filter((line) => line.startsWith(`${name}{`) && line.includes(labels))
    .reduce((sum, line) => sum + Number(line.slice(line.lastIndexOf(" ") + 1)), 0);
}

/** What support/udp-flood.py prints. */
interface Flooded {
  readonly scraped: string[];
  readonly final: string[];
  readonly ids: number[][];
  readonly bad: number;
}

/**
 * How far a reply may arrive from its place in the order the worker sent them. Datagrams on
 * loopback pass through a per-CPU queue of the CPU that sent them (or that ran the qdisc), so
 * two sent close together from different CPUs may swap (seen: ids 84 and 86 of one socket);
 * an outbox that let new replies overtake those it kept would displace them by up to its
 * whole queue (256 here).
 */
const REORDER_SLACK = 8;

/** Every id once, each within `REORDER_SLACK` places of where the order puts it. */
function expectInOrder(ids: readonly number[], expected: readonly number[]) {
  expect(new Set(ids).size, "a reply came twice").toBe(ids.length);
  expect([...ids].sort((a, b) => a - b)).toEqual(expected);
  const place = new Map(expected.map((id, i) => [id, i]));
  const far = ids.filter((id, i) => Math.abs(place.get(id)! - i) > REORDER_SLACK);
  expect(far, `replies out of order: ${JSON.stringify(ids)}`).toEqual([]);
}

/** Runs support/udp-flood.py in the network namespace of process `pid`. */
async function flood(pid: number, args: readonly (string | number)[]): Promise<Flooded> {
  const argv = [`--net=/proc/${pid}/ns/net`, "python3", FLOOD, ...args.map(String)];
  const run = await execa("nsenter", argv, { timeout: 45_000 });
  return JSON.parse(run.stdout) as Flooded;
}

async function scrape(port: number): Promise<string[]> {
  const response = await fetch(`http://127.0.0.1:${port}/metrics`);
  expect(response.status).toBe(200);
  return (await response.text()).split("\n");
}

interface DigAnswer {
  readonly status: string;
  readonly flags: string;
  readonly answers: string[];
}

/** Runs dig against the service: its status, its header flags and its answer lines. */
function dig(port: number, args: readonly string[]): Promise<DigAnswer> {
  const all = ["@127.0.0.1", "-p", String(port), "+tries=3", "+time=2", "+nocookie", ...args];
  return new Promise((resolve, reject) => {
    execFile("dig", all, { timeout: 15_000 }, (error, stdout) => {
      const status = /status: ([A-Z]+)/.exec(stdout)?.[1];
      const flags = /;; flags: ([a-z ]+);/.exec(stdout)?.[1];
      if (status === undefined || flags === undefined) {
        reject(new Error(`dig ${all.join(" ")}: no answer (${String(error)}):\n${stdout}`));
        return;
      }
      const answerAt = stdout.indexOf(";; ANSWER SECTION:\n");
      const answers =
        answerAt < 0
          ? []
          : stdout
              .slice(answerAt)
              .split("\n\n")[0]!
              .split("\n")
              .slice(1)
              .map((line) => line.split(/\s+/).join(" "));
      resolve({ status, flags, answers });
    });
  });
}

/** A raw query: id 0x1234, the flags byte, one question for `name` of type `qtype`, class IN. */
function query(name: string, qtype: number, flags = 0x01): Buffer {
  const labels = name
    .split(".")
    .map((label) => Buffer.concat([Buffer.from([label.length]), Buffer.from(label)]));
  const header = Buffer.from([0x12, 0x34, flags, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
  const tail = Buffer.from([0, qtype >> 8, qtype & 0xff, 0, 1]);
  return Buffer.concat([header, ...labels, tail]);
}

describe.each(VERSIONS)("zig %s: the dns example (datagram module) asked by dig", (version) => {
  let port: number;
  let adminPort: number;
  let binary: string;
  let program: Program;
  const timeout = TEST_TIMEOUT_MS;

  beforeAll(async () => {
    ensureCommand("dig", "bind9-dnsutils");
    binary = await programOf("dns", version);
    const args = ["--listen", "dns=127.0.0.1:0", "--admin", "127.0.0.1:0"];
    const started = await startReady(binary, args);
    program = started.program;
    port = portOf(started.ready, "dns");
    const admin = (started.ready as AdminReadyEvent).admin;
    if (admin === undefined) throw new Error(`no admin in ${JSON.stringify(started.ready)}`);
    adminPort = admin.port;
  }, SETUP_TIMEOUT_MS);

  afterAll(async () => {
    await stopAllPrograms();
  });

  it("answers A and AAAA for the names of its table, authoritatively", { timeout }, async () => {
    const www = await dig(port, ["www.example.test", "A"]);
    expect(www.status).toBe("NOERROR");
    expect(www.flags.split(" ")).toEqual(expect.arrayContaining(["qr", "aa", "rd"]));
    expect(www.answers.sort()).toEqual([
      "www.example.test. 300 IN A 192.0.2.2",
      "www.example.test. 300 IN A 192.0.2.3",
    ]);
    const six = await dig(port, ["v6.example.test", "AAAA"]);
    expect(six.answers.sort()).toEqual([
      "v6.example.test. 300 IN AAAA 2001:db8::6",
      "v6.example.test. 300 IN AAAA 2001:db8::66",
    ]);
    // Names are matched whatever their case; the answer carries the name as it was asked.
    const mixed = await dig(port, ["ExAmple.TEST", "AAAA"]);
    expect(mixed.answers).toEqual(["ExAmple.TEST. 300 IN AAAA 2001:db8::1"]);
  });

  it("says NXDOMAIN for other names, no answer for a type a name lacks", { timeout }, async () => {
    const missing = await dig(port, ["nope.example.test", "A"]);
    expect(missing.status).toBe("NXDOMAIN");
    expect(missing.answers).toEqual([]);
    const nodata = await dig(port, ["mail.example.test", "AAAA"]);
    expect(nodata.status).toBe("NOERROR");
    expect(nodata.answers).toEqual([]);
    const mx = await dig(port, ["example.test", "MX"]);
    expect([mx.status, mx.answers]).toEqual(["NOERROR", []]);
  });

  it("says NOTIMP to ANY, to class CH and to other opcodes", { timeout }, async () => {
    // dig asks for ANY over TCP unless told not to; the service is UDP only.
    expect((await dig(port, ["+notcp", "example.test", "ANY"])).status).toBe("NOTIMP");
    expect((await dig(port, ["-c", "CH", "version.bind", "TXT"])).status).toBe("NOTIMP");
    // Opcode 2 (STATUS): dig cannot send it.
    const status = await udpExchange("127.0.0.1", port, query("example.test", 1, 0x11), {
      timeoutMs: 1_000,
    });
    expect([...status.subarray(0, 3), status.readUInt8(3) & 0x0f]).toEqual([0x12, 0x34, 0x95, 4]);
  });

  it("says FORMERR to malformed queries, and survives garbage", { timeout }, async () => {
    const good = query("www.example.test", 1);
    const cut = good.subarray(0, good.length - 3);
    const reply = await udpExchange("127.0.0.1", port, cut, { timeoutMs: 1_000 });
    expect([...reply.subarray(0, 2), reply.readUInt8(3) & 0x0f]).toEqual([0x12, 0x34, 1]);
    // A burst of pseudo-random datagrams of every length (half of them with the header of a
    // query of one question): answered or not, none ends a worker.
    const socket = dgram.createSocket("udp4");
    let seed = 0x5eed;
    const next = () => (seed = (seed * 1103515245 + 12345) >>> 0) >>> 24;
    try {
      for (let i = 0; i < 2_000; i += 1) {
        const bytes = Buffer.alloc(i % 300);
        for (let j = 0; j < bytes.length; j += 1) bytes[j] = next();
        if (i % 2 === 0 && bytes.length >= 12) good.copy(bytes, 2, 2, 12);
        socket.send(bytes, port, "127.0.0.1");
      }
    } finally {
      await new Promise<void>((resolve) => socket.close(() => resolve()));
    }
    const after = await dig(port, ["example.test", "A"]);
    expect(after.answers).toEqual(["example.test. 300 IN A 192.0.2.1"]);
    expect(program.exit).toBeUndefined();
    expect(program.events.filter((e) => e.event === "worker_exit")).toEqual([]);
  });

  it("with --io io_uring, takes datagrams from the ring: no recvmmsg while it serves", {
    timeout,
  }, async () => {
    const strace = ensureCommand("strace", "strace");
    const args = ["--io", "io_uring", "--workers", "1", "--listen", "dns=127.0.0.1:0"];
    const uring = await startReady(binary, args);
    const uringPort = portOf(uring.ready, "dns");
    const worker = uring.ready.workers[0].pid;
    // Counts the worker's system calls while it answers: attached, then 20 queries, then
    // detached (SIGINT), before the stop (whose drain reads the queue with recvmmsg).
    const traced = execa(strace, ["-f", "-c", "-p", String(worker)], {
      reject: false,
      timeout: 20_000,
    });
    let attached = "";
    traced.stderr?.on("data", (chunk: Buffer) => (attached += chunk.toString()));
    for (let wait = 0; wait < 100 && !attached.includes("attached"); wait += 1) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(attached).toContain("attached");
    const single = await udpExchange("127.0.0.1", port, query("www.example.test", 1), {
      timeoutMs: 2_000,
    });
    for (let i = 0; i < 20; i += 1) {
      const reply = await udpExchange("127.0.0.1", uringPort, query("www.example.test", 1), {
        timeoutMs: 2_000,
      });
      expect(reply.equals(single)).toBe(true);
    }
    traced.kill("SIGINT");
    const counts = (await traced).stderr;
    const calls = (name: string) => {
      const line = counts.split("\n").find((l) => l.trim().split(/\s+/).at(-1) === name);
      return line === undefined ? 0 : Number(line.trim().split(/\s+/)[3]);
    };
    expect(uring.program.events.filter((e) => e.event === "io_fallback")).toEqual([]);
    expect(calls("io_uring_enter"), counts).toBeGreaterThan(0);
    // Sent with sendmmsg; received by the ring, not recvmmsg (nor epoll, which wakes it).
    expect([calls("recvmmsg"), calls("recvfrom"), calls("epoll_pwait")], counts)
      .toEqual([0, 0, 0]);
    // strace may miss the call in progress as it attaches or detaches: most of the 20.
    expect(calls("sendmmsg"), counts).toBeGreaterThanOrEqual(10);
    uring.program.signal("SIGTERM");
    expect((await uring.program.waitForExit(STOP_TIMEOUT_MS)).code).toBe(0);
  });

  it("answers a burst from one socket one datagram per query, sent as UDP GSO", {
    timeout,
  }, async () => {
    const single = await udpExchange("127.0.0.1", port, query("www.example.test", 1), {
      timeoutMs: 1_000,
    });
    const socket = dgram.createSocket("udp4");
    const replies = new Map<number, Buffer>();
    let datagrams = 0;
    socket.on("message", (message) => {
      datagrams += 1;
      replies.set(message.readUInt16BE(0), message);
    });
    await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", resolve));
    const count = 64;
    const gso = 'reuseport_udp_gso_sends_total{listener="dns"';
    const before = total(await scrape(adminPort), "reuseport_udp_gso_sends_total");
    let after = before;
    try {
      // The worker takes what is queued when it wakes: a burst usually meets it mid-way, and
      // some of its batches hold several queries. A few bursts at most.
      for (let burst = 0; burst < 5 && after === before; burst += 1) {
        replies.clear();
        datagrams = 0;
        for (let id = 0; id < count; id += 1) {
          const q = query("www.example.test", 1);
          q.writeUInt16BE(id, 0);
          socket.send(q, port, "127.0.0.1");
        }
        for (let wait = 0; wait < 100 && replies.size < count; wait += 1) {
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
        expect([replies.size, datagrams]).toEqual([count, count]);
        for (const [id, reply] of replies) {
          // Each its own datagram, the query's answer: same bytes as a lone query's but the id.
          expect(reply.length).toBe(single.length);
          expect(reply.subarray(2).equals(single.subarray(2))).toBe(true);
          expect(id).toBeLessThan(count);
        }
        after = total(await scrape(adminPort), "reuseport_udp_gso_sends_total");
      }
    } finally {
      await new Promise<void>((resolve) => socket.close(() => resolve()));
    }
    expect(after, `${gso}} did not grow in 5 bursts`).toBeGreaterThan(before);
    // The UDP families pass Prometheus's own checker (Debian's prometheus package).
    const promtool = ensureCommand("promtool", "prometheus");
    const text = (await scrape(adminPort)).join("\n");
    expect(text).toContain('reuseport_udp_reply_drops_total{listener="dns",reason="queue_full"}');
    const checked = await execa(promtool, ["check", "metrics"], { input: text, reject: false });
    expect([checked.exitCode, checked.stdout + checked.stderr]).toEqual([0, ""]);
  });

  const kept = "keeps replies a full send buffer refuses, drops and counts past its queue, " +
    "and sends what it kept before a drain ends";
  it(kept, { timeout: 60_000 }, async () => {
    ensureCommand("tc", "iproute2");
    ensureCommand("unshare", "util-linux");
    ensureCommand("nsenter", "util-linux");
    ensureCommand("python3", "python3");
    // In a namespace of its own: loopback up, the service's replies (source port 8053) in an
    // htb class at 64 kbit/s with a queue that drops nothing, everything else unlimited.
    const tc = "tc qdisc add dev lo root handle 1: htb default 20 && " +
      "tc class add dev lo parent 1: classid 1:10 htb rate 64kbit ceil 64kbit && " +
      "tc class add dev lo parent 1: classid 1:20 htb rate 10gbit quantum 60000 && " +
      "tc qdisc add dev lo parent 1:10 handle 10: pfifo limit 1000000 && " +
      "tc filter add dev lo parent 1: protocol ip prio 1 u32 match ip sport 8053 0xffff " +
      "flowid 1:10";
    const script = `ip link set lo up && ${tc} && exec "$0" "$@"`;
    const args = ["--workers", "1", "--listen", "dns=127.0.0.1:8053", "--admin", "127.0.0.1:9901"];
    const flooded = Program.start("unshare", ["-n", "--", "bash", "-c", script, binary, ...args]);
    await flooded.waitForEvent<ReadyEvent>("ready", 15_000);
    const faster = ["tc", "class", "change", "dev", "lo", "parent", "1:", "classid", "1:10"];
    faster.push("htb", "rate", "10gbit", "quantum", "60000");
    const count = 8000;
    // Two sockets taking turns: no two replies in a row share a peer, so none is coalesced
    // and each takes its own room in the send buffer.
    const out = await flood(flooded.pid, [8053, 9901, count, 2, flooded.pid, ...faster]);
    const exit = await flooded.exited;
    expect(exit.code).toBe(0);
    // Right after the flood: replies met EAGAIN and waited; some still wait now.
    const received = total(out.scraped, "reuseport_datagrams_received_total");
    const sent = total(out.scraped, "reuseport_datagrams_sent_total");
    const drops = total(out.scraped, "reuseport_udp_reply_drops_total");
    expect(total(out.scraped, "reuseport_udp_replies_deferred_total")).toBeGreaterThan(0);
    const waiting = received - sent - drops;
    expect(waiting).toBeGreaterThan(0);
    // Every reply the worker counted as sent arrived, in order per socket, none twice; the
    // rest are counted as dropped; and those that waited at the SIGTERM went before the exit.
    type Exited = ServiceEvent & { datagrams: number; udp_reply_drops: number };
    const worker = flooded.events.find((e) => e.event === "worker_exit") as Exited | undefined;
    expect(worker).toBeDefined();
    const got = out.ids.reduce((n, ids) => n + ids.length, 0);
    expect(out.bad).toBe(0);
    expect(got).toBe(worker!.datagrams - worker!.udp_reply_drops);
    expect(got).toBeGreaterThanOrEqual(sent + waiting);
    for (const ids of out.ids) expectInOrder(ids, [...ids].sort((a, b) => a - b));
  });

  it("sends one message per reply once a route refuses GSO, and says so once", {
    timeout: 30_000,
  }, async () => {
    ensureCommand("unshare", "util-linux");
    ensureCommand("nsenter", "util-linux");
    ensureCommand("python3", "python3");
    // Loopback's MTU below a reply's datagram: a GSO send is refused (EMSGSIZE), a reply sent
    // alone crosses in fragments.
    const script = `ip link set lo up && ip link set lo mtu 90 && exec "$0" "$@"`;
    const args = ["--workers", "1", "--listen", "dns=127.0.0.1:8053", "--admin", "127.0.0.1:9901"];
    const small = Program.start("unshare", ["-n", "--", "bash", "-c", script, binary, ...args]);
    await small.waitForEvent<ReadyEvent>("ready", 15_000);
    const count = 300;
    const out = await flood(small.pid, [8053, 9901, count, 1, 0]);
    expect(out.bad).toBe(0);
    expectInOrder(out.ids[0]!, [...Array(count).keys()]);
    expect(total(out.final, "reuseport_datagrams_sent_total")).toBe(count);
    expect(total(out.final, "reuseport_udp_gso_sends_total")).toBe(0);
    expect(total(out.final, "reuseport_udp_reply_drops_total")).toBe(0);
    expect(small.stderr.match(/UDP GSO refused \(MSGSIZE\)/g)).toHaveLength(1);
    process.kill(small.pid, "SIGTERM");
    expect((await small.exited).code).toBe(0);
  });
});
