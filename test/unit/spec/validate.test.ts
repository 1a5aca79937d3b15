import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { formatDiagnostic, formatPath } from "../../../src/errors.js";
import { httpResponseHeaderBytes } from "../../../src/spec/rules.js";
import { closest } from "../../../src/did-you-mean.js";
import { validateSpec } from "../../../src/spec/validate.js";

const root = path.join(import.meta.dirname, "../../..");
const validDirs = [path.join(root, "test/fixtures/valid"), path.join(root, "examples")];

function listener(extra: Record<string, unknown> = {}) {
  return {
    name: "api",
    protocol: "tcp",
    address: "127.0.0.1",
    port: 8080,
    handler: "echo",
    ...extra,
  };
}

function lines(raw: unknown): string[] {
  const result = validateSpec(raw);
  return result.ok ? [] : result.diagnostics.map((d) => formatDiagnostic("spec.json", d));
}

describe("validateSpec", () => {
  for (const dir of validDirs) {
    for (const file of readdirSync(dir).filter((f) => f.endsWith(".json"))) {
      it(`accepts ${path.basename(dir)}/${file}`, () => {
        const raw = JSON.parse(readFileSync(path.join(dir, file), "utf8"));
        expect(lines(raw)).toEqual([]);
      });
    }
  }

  it("accepts a request log to standard output or a file, json by default", () => {
    const out = validateSpec({ name: "a", accessLog: { path: "-" }, listeners: [listener()] });
    expect(out.ok && out.spec.accessLog).toEqual({ path: "-", format: "json" });
    const file = { path: "/var/log/a/access.log", format: "combined" };
    const result = validateSpec({ name: "a", accessLog: file, listeners: [listener()] });
    expect(result.ok && result.spec.accessLog).toEqual(file);
  });

  it("takes cpuAffinity as true or false, and names the field for anything else", () => {
    const on = validateSpec({ name: "a", cpuAffinity: true, listeners: [listener()] });
    expect(on.ok && on.spec.cpuAffinity).toBe(true);
    const off = validateSpec({ name: "a", listeners: [listener()] });
    expect(off.ok && off.spec.cpuAffinity).toBe(false);
    const bad = lines({ name: "a", cpuAffinity: "yes", listeners: [listener()] }).join("\n");
    expect(bad).toContain("cpuAffinity: must be true or false");
  });

  it("refuses a request log without a path, with a directory path, or in an unknown format", () => {
    const bad = (accessLog: unknown) => lines({ name: "a", accessLog, listeners: [listener()] });
    expect(bad({ format: "json" }).join("\n")).toMatch(/^spec\.json: accessLog\.path: /);
    expect(bad({ path: "/var/log/" }).join("\n")).toContain("accessLog.path: must name a file");
    expect(bad({ path: "" }).join("\n")).toContain('accessLog.path: must be "-"');
    expect(bad({ path: "/var/log/a\nb.log" }).join("\n")).toContain("control characters");
    expect(bad({ path: "-", format: "clf" }).join("\n")).toContain(
      'accessLog.format: must be one of "json", "combined"',
    );
    expect(bad({ path: "-", fromat: "json" }).join("\n")).toContain('did you mean "format"?');
  });

  it("applies every default to the core form of the design", () => {
    const result = validateSpec({ name: "edge-echo", listeners: [listener()] });
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.spec).toEqual({
      name: "edge-echo",
      version: "0.1.0",
      workers: "auto",
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
      listeners: [
        {
          ...listener(),
          backlog: 511,
          reuseAddress: true,
          v6Only: true,
          noDelay: true,
          keepalive: false,
        },
      ],
      upstreams: [],
    });
  });

  it("fills keepalive defaults inside a partial keepalive object", () => {
    const result = validateSpec({ name: "a", listeners: [listener({ keepalive: { probes: 3 } })] });
    expect(result.ok && result.spec.listeners[0]?.keepalive).toEqual({
      idleSeconds: 60,
      intervalSeconds: 10,
      probes: 3,
    });
  });

  it("accepts $schema and ignores it", () => {
    expect(lines({ $schema: "x.json", name: "a", listeners: [listener()] })).toEqual([]);
  });

  it("reports every problem at once, grouped by listener", () => {
    const raw = {
      name: "A",
      workers: 2000,
      listeners: [listener({ port: 0 }), listener({ protocol: "udp", backlog: 3 })],
    };
    expect(lines(raw)).toEqual([
      "spec.json: name: must start with a lowercase letter followed by up to 62 lowercase " +
        'letters, digits or hyphens (got "A")',
      'spec.json: workers: must be an integer from 1 to 1024 or "auto" (got 2000)',
      "spec.json: listeners[0].port: must be an integer from 1 to 65535 (got 0)",
      "spec.json: listeners[1].backlog: only applies to tcp listeners; remove it from this " +
        "udp listener (got 3)",
      "spec.json: listeners[1].name: is already the name of listeners[0]; listener names must " +
        'be unique (got "api")',
    ]);
  });

  it("bounds udpBatch from 1 to 256", () => {
    expect(lines({ name: "a", udpBatch: 1, listeners: [listener()] })).toEqual([]);
    expect(lines({ name: "a", udpBatch: 0, listeners: [listener()] })).toEqual([
      "spec.json: udpBatch: must be an integer from 1 to 256 (got 0)",
    ]);
    expect(lines({ name: "a", udpBatch: 257, listeners: [listener()] })).toEqual([
      "spec.json: udpBatch: must be an integer from 1 to 256 (got 257)",
    ]);
  });

  it("cuts long offending values to about 40 characters", () => {
    const [line] = lines({ name: "x".repeat(100), listeners: [listener()] });
    expect(line).toMatch(/\(got "x{38}…\)$/);
  });

  it("suggests the nearest allowed key for a typo", () => {
    expect(lines({ name: "a", listeners: [listener()], workrs: 2 })).toEqual([
      'spec.json: workrs: unknown key (got 2); did you mean "workers"?',
    ]);
  });

  it("checks cross-field rules even while other fields are invalid", () => {
    const raw = { name: 5, listeners: [listener(), listener({ port: 8081 })] };
    expect(validateSpec(raw).ok).toBe(false);
    const result = validateSpec(raw);
    const paths = result.ok ? [] : result.diagnostics.map((d) => formatPath(d.path));
    expect(paths).toEqual(["name", "listeners[1].name"]);
  });

  it("does not let a dual-stack wildcard collide with IPv4 on another protocol or port", () => {
    const ok = {
      name: "a",
      listeners: [
        listener({ name: "v6", address: "::", v6Only: false }),
        listener({ name: "v4u", protocol: "udp", address: "0.0.0.0" }),
        listener({ name: "v4t", address: "0.0.0.0", port: 8081 }),
      ],
    };
    expect(lines(ok)).toEqual([]);
    const clash = {
      ...ok,
      listeners: [...ok.listeners, listener({ name: "v4", address: "127.0.0.1" })],
    };
    expect(lines(clash)).toHaveLength(1);
    expect(lines(clash)[0]).toContain("spec.json: listeners[3]: tcp port 8080");
  });

  it("accepts an http body that exactly fills the write buffer with its headers", () => {
    // "Server: a\r\n" and a three-digit Content-Length, as the spec below has.
    const headers = httpResponseHeaderBytes("a", "text/plain; charset=utf-8", 512 - 116);
    expect(headers).toBe(116);
    const fits = (bodyBytes: number) =>
      validateSpec({
        name: "a",
        writeBufferBytes: 512,
        listeners: [listener({ handler: "http", http: { body: "y".repeat(bodyBytes) } })],
      }).ok;
    expect(fits(512 - 116)).toBe(true);
    expect(fits(512 - 116 + 1)).toBe(false);
  });

  it("refuses the http handler on a udp listener, at the handler", () => {
    expect(lines({ name: "a", listeners: [listener({ protocol: "udp", handler: "http" })] })).toEqual([
      'spec.json: listeners[0].handler: is a tcp-only handler (HTTP needs a stream); a udp ' +
        'listener takes "echo", "whoami" or "custom" (got "http")',
    ]);
  });

  it("refuses deferAccept on whoami (it speaks first) and on udp, at the key", () => {
    expect(
      lines({ name: "a", listeners: [listener({ handler: "whoami", deferAccept: true })] }),
    ).toEqual([
      'spec.json: listeners[0].deferAccept: "whoami" speaks first, so its clients send nothing ' +
        "until answered: a deferred accept would hold them in the kernel; remove deferAccept or " +
        "set it to false (got true)",
    ]);
    expect(
      lines({ name: "a", listeners: [listener({ protocol: "udp", deferAccept: false })] }),
    ).toEqual([
      "spec.json: listeners[0].deferAccept: only applies to tcp listeners; remove it from this " +
        "udp listener (got false)",
    ]);
    expect(lines({ name: "a", listeners: [listener({ handler: "whoami", deferAccept: false })] })).toEqual([]);
  });

  it("accepts echo, whoami and custom on a udp listener", () => {
    for (const handler of ["echo", "whoami", "custom"]) {
      expect(lines({ name: "a", listeners: [listener({ protocol: "udp", handler })] })).toEqual([]);
    }
  });

  it("accepts a service name at the spec's 63-character limit and Zig keywords as names", () => {
    for (const name of ["a".repeat(63), "const", "fn", "test"]) {
      expect(lines({ name, listeners: [listener()] }), name).toEqual([]);
    }
  });

  it("measures the http body in UTF-8 bytes, not characters", () => {
    const body = "é".repeat(40000); // 40000 characters, 80000 bytes
    const [line] = lines({ name: "a", listeners: [listener({ handler: "http", http: { body } })] });
    expect(line).toContain("listeners[0].http.body: must be at most 65536 bytes of UTF-8");
  });
});

describe("closest", () => {
  it("finds a near key and refuses a far one", () => {
    expect(closest("listners", ["name", "listeners"])).toBe("listeners");
    expect(closest("Port", ["port", "name"])).toBe("port");
    expect(closest("colour", ["name", "port"])).toBeUndefined();
  });
});

describe("closest, with swapped neighbours", () => {
  it("counts a swap of two neighbouring letters as one edit", () => {
    expect(closest("bulid", ["build", "check"])).toBe("build");
    expect(closest("jsno", ["json"])).toBe("json");
    expect(closest("naem", ["name", "port"])).toBe("name");
    expect(closest("ab", ["ba"])).toBe("ba");
    expect(closest("abc", ["cab"])).toBeUndefined();
  });
});
