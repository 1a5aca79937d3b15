import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { composeFingerprint, zigFingerprint } from "../../../src/model/fingerprint.js";
import { buildModel } from "../../../src/model/model.js";
import { validateSpec } from "../../../src/spec/validate.js";

function model(raw: Record<string, unknown>, specFile = "/home/me/specs/svc.json") {
  const result = validateSpec({ name: "edge-echo", ...raw });
  if (!result.ok) throw new Error(JSON.stringify(result.diagnostics));
  return buildModel(result.spec, { generatorVersion: "9.9.9", specFile });
}

const tcp = { name: "api", protocol: "tcp", address: "127.0.0.1", port: 8080, handler: "echo" };

describe("buildModel", () => {
  it("computes the top-level fields from a minimal spec", () => {
    const m = model({ listeners: [tcp] });
    expect({ ...m, listeners: undefined, deploy: undefined }).toEqual({
      generatorVersion: "9.9.9",
      accessLog: null,
      specFile: "svc.json",
      name: "edge-echo",
      zigName: "edge_echo",
      fingerprint: zigFingerprint("edge_echo"),
      version: "0.1.0",
      minimumZigVersion: "0.14.1",
      workers: 0,
      drainTimeoutMs: 10000,
      readyTimeoutMs: 10000,
      shutdownDelayMs: 0,
      io: "epoll",
      cpuAffinity: false,
      maxConnections: 1024,
      readBufferBytes: 16384,
      writeBufferBytes: 65536,
      headerTimeoutMs: 10000,
      bodyTimeoutMs: 10000,
      requestTimeoutMs: 60000,
      idleTimeoutMs: 60000,
      writeTimeoutMs: 30000,
      watchdogMs: 2000,
      maxBodyBytes: 1048576,
      outputLimitBytes: 33554432,
      outputPoolBytes: 67108864,
      udpBatch: 32,
      user: null,
      group: null,
      specFingerprint: m.specFingerprint,
      hasCustomHandler: false,
      apps: [],
      hasApps: false,
      hasHttpApps: false,
      hasStreamApps: false,
      hasTcpApps: false,
      hasDatagramApps: false,
      hasTcp: true,
      hasUdp: false,
      listeners: undefined,
      // The deploy/ model has tests of its own (deploy.test.ts).
      deploy: undefined,
      systemd: {
        service: "edge-echo.service",
        sockets: "edge-echo-api.socket",
        // 10 s drain + 1 s kill grace + 5 s slack.
        timeoutStopSec: 16,
        watchdogSec: 2,
        // "auto" workers counted as the program's bound, 1024.
        limitNofile: 1024 + 1024 * 5 + 64,
        fdStoreMax: 64,
      },
      upstreams: [],
      hasUpstreams: false,
      hasProxy: false,
      proxyFdsPerClient: 0,
    });
  });

  it("models the request log: standard output or a file, with its format", () => {
    const toStdout = model({ accessLog: { path: "-" }, listeners: [tcp] });
    expect(toStdout.accessLog).toEqual({ path: "-", toStdout: true, format: "json" });
    const file = { path: "/var/log/svc/access.log", format: "combined" };
    const toFile = model({ accessLog: file, listeners: [tcp] });
    expect(toFile.accessLog).toEqual({ ...file, toStdout: false });
  });

  it("renders the systemd numbers from the spec: no WatchdogSec= without a watchdog", () => {
    const m = model({ workers: 2, watchdogMs: 0, drainTimeoutMs: 30000, listeners: [tcp] });
    expect(m.systemd.watchdogSec).toBe(0);
    expect(m.systemd.timeoutStopSec * 1000).toBeGreaterThan(30000);
    expect(m.systemd.limitNofile).toBe(1024 + 2 * 5 + 64);
    expect(m.systemd.fdStoreMax).toBe(2);
  });

  it("gives systemd's stop timeout room for the shutdown delay as well as the drain", () => {
    const plain = model({ drainTimeoutMs: 30000, listeners: [tcp] }).systemd.timeoutStopSec;
    const delayed = model({ drainTimeoutMs: 30000, shutdownDelayMs: 15000, listeners: [tcp] });
    expect(delayed.systemd.timeoutStopSec).toBe(plain + 15);
  });

  it("renders the admin listener's address in canonical form, and none without one", () => {
    expect(model({ listeners: [tcp] }).admin).toBeUndefined();
    const m = model({ admin: { address: "0:0:0:0:0:0:0:1", port: 9901 }, listeners: [tcp] });
    expect(m.admin).toEqual({
      isIpv6: true,
      address: "::1",
      addressBytes: ".{ 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1 }",
      port: 9901,
    });
    expect(model({ admin: { port: 9901 }, listeners: [tcp] }).admin?.address).toBe("127.0.0.1");
  });

  it("fingerprints the spec's meaning: defaults and key order do not change it, a port does", () => {
    const a = model({ listeners: [tcp] }).specFingerprint;
    expect(a).toMatch(/^[0-9a-f]{16}$/);
    expect(model({ workers: "auto", listeners: [tcp] }).specFingerprint).toBe(a);
    expect(model({ listeners: [{ ...tcp, port: tcp.port + 1 }] }).specFingerprint).not.toBe(a);
    expect(model({ idleTimeoutMs: 5, listeners: [tcp] }).specFingerprint).not.toBe(a);
  });

  it("maps the package name of a long or keyword service name to a valid Zig identifier", () => {
    const long = model({ name: "a".repeat(40), listeners: [tcp] });
    expect(long.name).toBe("a".repeat(40));
    expect(long.zigName).toMatch(/^a{23}_[0-9a-f]{8}$/);
    expect(long.fingerprint).toBe(zigFingerprint(long.zigName));
    expect(model({ name: "const", listeners: [tcp] }).zigName).toBe("const_");
  });

  it("keeps only the base name of the spec file, for either separator", () => {
    expect(model({ listeners: [tcp] }, "C:\\specs\\a.json").specFile).toBe("a.json");
    expect(model({ listeners: [tcp] }, "b.json").specFile).toBe("b.json");
  });

  it("models a tcp listener with every option", () => {
    const m = model({
      workers: 3,
      zig: "0.16.0",
      listeners: [
        {
          ...tcp,
          address: "0:0:0:0:0:0:0:1",
          handler: "http",
          backlog: 100,
          reuseAddress: false,
          v6Only: false,
          noDelay: false,
          recvBufferBytes: 8192,
          sendBufferBytes: 16384,
          keepalive: { idleSeconds: 5 },
          http: { body: "hi" },
        },
      ],
    });
    expect(m.workers).toBe(3);
    expect(m.minimumZigVersion).toBe("0.16.0");
    expect(m.listeners[0]).toEqual({
      index: 0,
      name: "api",
      protocol: "tcp",
      handler: "http",
      appIndex: 0,
      appModule: "",
      appKind: "",
      isIpv6: true,
      address: "::1",
      addressBytes: ".{ 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1 }",
      port: 8080,
      backlog: 100,
      reuseAddress: false,
      v6Only: false,
      noDelay: false,
      deferAccept: true,
      recvBufferBytes: 8192,
      sendBufferBytes: 16384,
      proxy: null,
      keepalive: true,
      keepaliveIdleSeconds: 5,
      keepaliveIntervalSeconds: 10,
      keepaliveProbes: 6,
      httpBody: "hi",
      httpContentType: "text/plain; charset=utf-8",
      metricRoutes: '&.{"*"}',
      socketUnit: "edge-echo-api.socket",
      listenDirective: "ListenStream",
      listenAddress: "[::1]:8080",
      bindIpv6Only: "both",
    });
  });

  it("defers accepting where the client speaks first by protocol, unless the spec says otherwise", () => {
    const deferOf = (listener: Record<string, unknown>) =>
      model({ listeners: [{ ...tcp, ...listener }] }).listeners[0]?.deferAccept;
    expect(deferOf({ handler: "http" })).toBe(true);
    expect(deferOf({ handler: "http", deferAccept: false })).toBe(false);
    expect(deferOf({ handler: "echo" })).toBe(false);
    expect(deferOf({ handler: "echo", deferAccept: true })).toBe(true);
    expect(deferOf({ handler: "whoami" })).toBe(false);
    expect(deferOf({ handler: "custom" })).toBe(false);
  });

  it("zeroes tcp-only numbers for udp and keepalive numbers when keepalive is off", () => {
    const m = model({
      listeners: [{ ...tcp, protocol: "udp", address: "10.1.2.3", handler: "custom" }],
    });
    expect(m.listeners[0]).toMatchObject({
      isIpv6: false,
      addressBytes: ".{ 10, 1, 2, 3 }",
      backlog: 0,
      noDelay: false,
      deferAccept: false,
      v6Only: false,
      keepalive: false,
      keepaliveIdleSeconds: 0,
      keepaliveIntervalSeconds: 0,
      keepaliveProbes: 0,
      recvBufferBytes: 0,
      sendBufferBytes: 0,
      httpBody: "",
      httpContentType: "",
      metricRoutes: "&.{}",
    });
    expect(m).toMatchObject({ hasCustomHandler: true, hasTcp: false, hasUdp: true });
  });

  it("gives http listeners the default response when the spec sets none", () => {
    const m = model({ listeners: [{ ...tcp, handler: "http" }] });
    expect(m.listeners[0]?.httpBody).toBe("OK\n");
    expect(m.listeners[0]?.httpContentType).toBe("text/plain; charset=utf-8");
  });

  it("keeps listeners in spec order with their indices", () => {
    const m = model({
      listeners: [
        { ...tcp, name: "z", port: 3 },
        { ...tcp, name: "a", port: 1 },
      ],
    });
    expect(m.listeners.map((l) => [l.index, l.name])).toEqual([
      [0, "z"],
      [1, "a"],
    ]);
  });
});

describe("zigFingerprint", () => {
  it("puts crc32 of the name in the high half, as Zig checks it", () => {
    // Zig 0.15 proposed this fingerprint for a package named "fpt" (its checksum half).
    expect(zigFingerprint("fpt").slice(0, 10)).toBe("0xcb4ca253");
    expect(zigFingerprint("mixed_edge")).toBe("0xec0c20029966e5cd");
  });

  it("takes the low half from the first 4 bytes of sha256(name)", () => {
    const id = createHash("sha256").update("edge_echo").digest().readUInt32BE(0);
    expect(zigFingerprint("edge_echo").slice(10)).toBe(id.toString(16).padStart(8, "0"));
  });

  it("is 0x and 16 lowercase hex digits, and deterministic", () => {
    for (const name of ["a", "edge_echo", "x".repeat(63)]) {
      expect(zigFingerprint(name)).toMatch(/^0x[0-9a-f]{16}$/);
      expect(zigFingerprint(name)).toBe(zigFingerprint(name));
    }
  });

  it("never uses the ids Zig rejects, 0 and 0xffffffff", () => {
    expect(composeFingerprint(0xcb4ca253, 0)).toBe("0xcb4ca25300000001");
    expect(composeFingerprint(0xcb4ca253, 0xffffffff)).toBe("0xcb4ca253fffffffe");
    expect(composeFingerprint(0, 7)).toBe("0x0000000000000007");
  });
});
