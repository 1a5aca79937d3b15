/**
 * The dns example: a datagram module (examples/app/dns.zig over the generated stub) answering
 * A and AAAA queries for the names of its table, on 2 workers with batched datagrams, asked by
 * `dig` (Debian's bind9-dnsutils, installed with apt-get when missing; under CI=true a missing
 * one fails the run) and by raw datagrams for what dig will not send. Only on the newest release
 * of the matrix, in one build: what differs between releases in this code (the module's parser,
 * the batches) is exercised on every release by the example's own `zig build test`
 * (build.test.ts), which also throws mutated and cut queries at the parser.
 */
import { execFile } from "node:child_process";
import dgram from "node:dgram";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { udpExchange } from "./support/net.js";
import { portOf, startReady, stopAllPrograms, type Program } from "./support/program.js";
import { programOf } from "./support/project.js";
import { ensureCommand } from "./support/tools.js";
import { FULL_MATRIX_VERSIONS, matrixOf } from "./support/zig.js";

const VERSIONS =
  matrixOf() === "full" ? FULL_MATRIX_VERSIONS : FULL_MATRIX_VERSIONS.slice(-1);

const SETUP_TIMEOUT_MS = 15 * 60_000;
const TEST_TIMEOUT_MS = 30_000;

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
  let program: Program;
  const timeout = TEST_TIMEOUT_MS;

  beforeAll(async () => {
    ensureCommand("dig", "bind9-dnsutils");
    const binary = await programOf("dns", version);
    const started = await startReady(binary, ["--listen", "dns=127.0.0.1:0"]);
    program = started.program;
    port = portOf(started.ready, "dns");
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
});
