import { describe, expect, it } from "vitest";
import { formatDiagnostic } from "../../../src/errors.js";
import { validateSpec } from "../../../src/spec/validate.js";
import { parseServer } from "../../../src/spec/upstream.js";
import { buildUpstreams } from "../../../src/model/upstream.js";

const listener = {
  name: "api",
  protocol: "tcp",
  address: "127.0.0.1",
  port: 8080,
  handler: "app",
  app: { module: "kv", http: { routes: [{ name: "get", method: "GET", path: "/" }] } },
};

function lines(upstreams: unknown): string[] {
  const result = validateSpec({ name: "svc", listeners: [listener], upstreams });
  return result.ok ? [] : result.diagnostics.map((d) => formatDiagnostic("spec.json", d));
}

describe("upstreams in the spec", () => {
  it("applies the defaults to the shortest upstream", () => {
    const result = validateSpec({
      name: "svc",
      listeners: [listener],
      upstreams: [{ name: "store", servers: ["127.0.0.1:6379"], framing: "resp" }],
    });
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.spec.upstreams).toEqual([
      {
        name: "store",
        servers: ["127.0.0.1:6379"],
        framing: "resp",
        connectionsPerWorker: 16,
        connectTimeoutMs: 1000,
        responseTimeoutMs: 5000,
        pipeline: 8,
        maxQueuedCalls: 64,
        maxReplyBytes: 1048576,
        ejectMs: 2000,
      },
    ]);
  });

  it("defaults to no upstreams", () => {
    const result = validateSpec({ name: "svc", listeners: [listener] });
    expect(result.ok && result.spec.upstreams).toEqual([]);
  });

  it("names every bad upstream at its place: duplicates, missing ports, unknown framing", () => {
    expect(
      lines([
        { name: "store", servers: ["127.0.0.1"], framing: "resp" },
        { name: "store", servers: ["[::1]:1", "db_local:5432", "::1"], framing: "xml" },
        { name: "if", servers: [], framing: "line", connectTimeoutMs: 0 },
      ]),
    ).toEqual([
      'spec.json: upstreams[1].framing: must be one of "resp", "line", "length", "http" ' +
        '(got "xml")',
      "spec.json: upstreams[2].servers: must list at least 1 server (got [])",
      "spec.json: upstreams[2].connectTimeoutMs: must be an integer from 1 to 600000 (got 0)",
      'spec.json: upstreams[0].servers[0]: has no port: write it as "ADDRESS:PORT" ' +
        '(got "127.0.0.1")',
      "spec.json: upstreams[1].name: is already the name of upstreams[0]; upstream names must " +
        'be unique (got "store")',
      "spec.json: upstreams[1].servers[1]: is neither an IP literal nor a host name: give an " +
        'IPv4 address, [IPv6] in brackets, or a name such as db.internal (got "db_local:5432")',
      'spec.json: upstreams[1].servers[2]: has no port: write an IPv6 server as "[ADDRESS]:PORT" ' +
        '(got "::1")',
      "spec.json: upstreams[2].name: is a Zig keyword; modules name an upstream as `.name`: " +
        'pick another name (got "if")',
    ]);
  });

  it("refuses upstreams that no app module could call", () => {
    const result = validateSpec({
      name: "svc",
      listeners: [{ ...listener, handler: "http", app: undefined }],
      upstreams: [{ name: "store", servers: ["127.0.0.1:6379"], framing: "resp" }],
    });
    const found = result.ok ? [] : result.diagnostics.map((d) => formatDiagnostic("spec.json", d));
    expect(found).toEqual([
      'spec.json: upstreams: are called from app modules only; add a listener with ' +
        '"handler": "app", or remove the upstreams',
    ]);
  });

  it("suggests the key a typo meant", () => {
    expect(lines([{ name: "s", servers: ["10.0.0.1:1"], framing: "line", pipelin: 2 }])).toEqual([
      'spec.json: upstreams[0].pipelin: unknown key (got 2); did you mean "pipeline"?',
    ]);
  });
});

describe("parseServer", () => {
  it("reads IPv4 and bracketed IPv6 servers", () => {
    expect(parseServer("127.0.0.1:6379")).toEqual({
      ip: { family: 4, bytes: [127, 0, 0, 1] },
      port: 6379,
    });
    expect(parseServer("[::1]:80")).toMatchObject({ ip: { family: 6 }, port: 80 });
  });

  it("reads host names, lower-cased and without a trailing dot", () => {
    expect(parseServer("Db.Internal.:6379")).toEqual({
      ip: undefined,
      host: "db.internal",
      port: 6379,
    });
    expect(parseServer("localhost:1")).toMatchObject({ host: "localhost", port: 1 });
  });

  it("refuses what is neither an IP literal nor a host name", () => {
    for (const bad of ["1.2.3.256:1", "-db:1", "db-:1", "a..b:1", "db_x:1", "[db]:1", "9.9:1"]) {
      expect(parseServer(bad)).toMatch(/neither an IP literal nor a host name/);
    }
    expect(parseServer(`${"a".repeat(64)}.b:1`)).toMatch(/neither/);
    expect(parseServer("db.internal")).toMatch(/has no port/);
  });

  it("refuses ports out of range, empty ports and IPv4 in brackets", () => {
    expect(parseServer("127.0.0.1:0")).toMatch(/port that is not an integer/);
    expect(parseServer("127.0.0.1:65536")).toMatch(/port that is not an integer/);
    expect(parseServer("127.0.0.1:")).toMatch(/has no port/);
    expect(parseServer("[127.0.0.1]:1")).toMatch(/IPv4 address in brackets/);
  });
});

describe("buildUpstreams", () => {
  it("gives config.zig each server's address bytes, port and family", () => {
    const result = validateSpec({
      name: "svc",
      listeners: [listener],
      upstreams: [
        { name: "store", servers: ["127.0.0.1:6379", "[::1]:6380", "db:1"], framing: "resp" },
        { name: "api", servers: ["10.0.0.2:80"], framing: "http", pipeline: 1 },
      ],
    });
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    const [store, api] = buildUpstreams(result.spec);
    const ip6 = `.{ ${[...Array(15).fill(0), 1].join(", ")} }`;
    expect(store?.servers).toEqual([
      { host: "", isIpv6: false, addressBytes: ".{ 127, 0, 0, 1 }", port: 6379 },
      { host: "", isIpv6: true, addressBytes: ip6, port: 6380 },
      { host: "db", isIpv6: false, addressBytes: ".{ 0, 0, 0, 0 }", port: 1 },
    ]);
    expect(api).toMatchObject({ index: 1, name: "api", framing: "http", pipeline: 1 });
  });
});
