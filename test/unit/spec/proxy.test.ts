import { describe, expect, it } from "vitest";
import { formatDiagnostic } from "../../../src/errors.js";
import { validateSpec } from "../../../src/spec/validate.js";
import { buildModel } from "../../../src/model/model.js";

const proxyListener = {
  name: "web",
  protocol: "tcp",
  address: "127.0.0.1",
  port: 8090,
  handler: "proxy",
  proxy: { upstream: "origin" },
};

const origin = { name: "origin", servers: ["127.0.0.1:8081", "[::1]:8082"] };

function lines(spec: Record<string, unknown>): string[] {
  const result = validateSpec({ name: "svc", ...spec });
  return result.ok ? [] : result.diagnostics.map((d) => formatDiagnostic("spec.json", d));
}

describe("proxy listeners in the spec", () => {
  it("applies the defaults, and takes an upstream without framing", () => {
    const result = validateSpec({ name: "svc", listeners: [proxyListener], upstreams: [origin] });
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.spec.listeners[0]?.proxy).toEqual({
      upstream: "origin",
      balance: "roundrobin",
      retries: 1,
      sendProxyProtocol: false,
      checkIntervalMs: 0,
      rise: 2,
      fall: 3,
      zeroCopy: false,
    });
    expect(result.spec.upstreams[0]?.framing).toBeUndefined();
  });

  it("models the servers, the resolved timeouts and the PROXY protocol for config.zig", () => {
    const result = validateSpec({
      name: "svc",
      idleTimeoutMs: 7000,
      listeners: [
        { ...proxyListener, proxy: { upstream: "origin", sendProxyProtocol: "v2" } },
        {
          ...proxyListener,
          name: "web2",
          port: 8091,
          proxy: {
            upstream: "origin",
            balance: "leastconn",
            connectTimeoutMs: 250,
            idleTimeoutMs: 900,
            retries: 0,
            checkIntervalMs: 500,
            rise: 1,
            fall: 5,
            zeroCopy: true,
          },
        },
      ],
      upstreams: [{ ...origin, connectTimeoutMs: 1500, ejectMs: 300 }],
    });
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    const m = buildModel(result.spec, { generatorVersion: "9.9.9", specFile: "spec.json" });
    expect(m.hasProxy).toBe(true);
    // A proxy's upstream is not one the app modules call.
    expect(m.upstreams).toEqual([]);
    expect(m.hasUpstreams).toBe(false);
    expect(m.listeners[0]?.proxy).toEqual({
      upstream: "origin",
      servers: [
        { isIpv6: false, addressBytes: ".{ 127, 0, 0, 1 }", port: 8081 },
        {
          isIpv6: true,
          addressBytes: `.{ ${[...Array(15).fill(0), 1].join(", ")} }`,
          port: 8082,
        },
      ],
      balance: "roundrobin",
      connectTimeoutMs: 1500,
      idleTimeoutMs: 7000,
      retries: 1,
      sendProxyProtocol: "v2",
      ejectMs: 300,
      checkIntervalMs: 0,
      rise: 2,
      fall: 3,
      zeroCopy: false,
    });
    expect(m.listeners[1]?.proxy).toMatchObject({
      balance: "leastconn",
      connectTimeoutMs: 250,
      idleTimeoutMs: 900,
      retries: 0,
      sendProxyProtocol: "none",
      checkIntervalMs: 500,
      rise: 1,
      fall: 5,
      zeroCopy: true,
    });
    // Each proxied client holds its server's descriptor and, with zeroCopy, two pipes: the
    // open-files limit counts them (then the listening sockets of up to 1024 "auto" workers).
    expect(m.proxyFdsPerClient).toBe(5);
    expect(m.systemd.limitNofile).toBe(1024 + 1024 * 5 + 1024 * (2 + 4) + 64);
  });

  it("refuses a proxy on a udp listener, naming the handler", () => {
    expect(
      lines({ listeners: [{ ...proxyListener, protocol: "udp" }], upstreams: [origin] }),
    ).toEqual([
      'spec.json: listeners[0].handler: "proxy" is a tcp-only handler (it joins stream ' +
        'connections); use "protocol": "tcp" (got "proxy")',
    ]);
  });

  it("refuses a host name among a proxy's servers, naming the server", () => {
    const named = { ...origin, servers: ["127.0.0.1:8081", "origin.internal:8082"] };
    expect(lines({ listeners: [proxyListener], upstreams: [named] })).toEqual([
      'spec.json: upstreams[0].servers[1]: is a host name, and upstream "origin" serves a ' +
        "proxy listener, whose servers must be IP addresses (host names are resolved for app " +
        "modules' upstreams only); write it as \"IPv4:PORT\" or \"[IPv6]:PORT\" " +
        '(got "origin.internal:8082")',
    ]);
  });

  it("refuses an unknown upstream, naming the ones there are", () => {
    expect(
      lines({
        listeners: [{ ...proxyListener, proxy: { upstream: "orign" } }],
        upstreams: [origin],
      }),
    ).toEqual([
      'spec.json: upstreams[0]: has no "framing" and no proxy listener names it: name it in a ' +
        'listener\'s "proxy": { "upstream": … }, or give it a "framing" for app modules to ' +
        'call it (got "origin")',
      'spec.json: listeners[0].proxy.upstream: names no upstream of the spec (its upstreams ' +
        'are "origin") (got "orign")',
    ]);
    expect(lines({ listeners: [proxyListener] })).toEqual([
      'spec.json: listeners[0].proxy.upstream: names an upstream, but the spec has no ' +
        '"upstreams": add one with its "servers" (got "origin")',
    ]);
  });

  it("refuses a wrong sendProxyProtocol, a wrong balance and unknown keys", () => {
    expect(
      lines({
        listeners: [
          {
            ...proxyListener,
            proxy: {
              upstream: "origin",
              sendProxyProtocol: "v3",
              balance: "random",
              zeroCopy: "yes",
              spliced: true,
              fall: 0,
            },
          },
        ],
        upstreams: [origin],
      }),
    ).toEqual([
      'spec.json: listeners[0].proxy.balance: must be one of "roundrobin", "leastconn" ' +
        '(got "random")',
      'spec.json: listeners[0].proxy.sendProxyProtocol: must be false, "v1" or "v2" (got "v3")',
      "spec.json: listeners[0].proxy.fall: must be an integer from 1 to 100 (got 0)",
      'spec.json: listeners[0].proxy.zeroCopy: must be true or false (got "yes")',
      "spec.json: listeners[0].proxy.spliced: unknown key (got true); allowed keys: upstream, " +
        "balance, connectTimeoutMs, idleTimeoutMs, retries, sendProxyProtocol, checkIntervalMs, " +
        "rise, fall, zeroCopy",
    ]);
    expect(
      lines({
        listeners: [{ ...proxyListener, proxy: { upstream: "origin", sendProxyProtocol: true } }],
        upstreams: [origin],
      }),
    ).toEqual([
      'spec.json: listeners[0].proxy.sendProxyProtocol: must be false, "v1" or "v2" (got true)',
    ]);
  });

  it("needs the proxy object with the proxy handler, and only there", () => {
    expect(
      lines({ listeners: [{ ...proxyListener, proxy: undefined }], upstreams: [] }),
    ).toEqual([
      'spec.json: listeners[0].handler: needs a "proxy" object naming the upstream: "proxy": ' +
        '{ "upstream": "…" }',
    ]);
    expect(
      lines({ listeners: [{ ...proxyListener, handler: "echo" }], upstreams: [origin] }),
    ).toContain(
      'spec.json: listeners[0].proxy: only applies when handler is "proxy" (handler is "echo") ' +
        '(got {"upstream":"origin"})',
    );
  });

  it("lets a proxy use an upstream with framing without an HTTP app module", () => {
    expect(
      lines({ listeners: [proxyListener], upstreams: [{ ...origin, framing: "line" }] }),
    ).toEqual([]);
  });
});
