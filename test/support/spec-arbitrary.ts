/**
 * fast-check arbitraries that draw *valid* specs across the whole schema: service names at their
 * length limits and Zig keywords, every handler on every protocol it allows, every listener
 * option, IPv4 and IPv6 (compressed, full, dual-stack wildcard), http bodies and content types.
 * Used by the property test (validate → model → render) and the end-to-end build of drawn specs.
 */
import fc from "fast-check";
import { httpResponseHeaderBytes } from "../../src/spec/rules.js";
import { DEFAULTS } from "../../src/spec/schema.js";
import { SUPPORTED_ZIG } from "../../src/zig-facts.js";
import { ZIG_KEYWORDS } from "../../src/zig-facts.js";

type Json = Record<string, unknown>;

const LOWER = "abcdefghijklmnopqrstuvwxyz";

/** `^[a-z][a-z0-9-]{0,62}$`, biased to the edges: 1, 32, 33 and 63 characters, keywords. */
export const serviceName: fc.Arbitrary<string> = fc.oneof(
  fc.stringMatching(/^[a-z][a-z0-9-]{0,62}$/),
  fc.constantFrom(...ZIG_KEYWORDS),
  fc.constantFrom(1, 31, 32, 33, 40, 62, 63).chain((length) =>
    fc
      .tuple(
        fc.constantFrom(...LOWER),
        fc.array(fc.constantFrom(..."abcxyz0189-"), {
          minLength: length - 1,
          maxLength: length - 1,
        }),
      )
      .map(([first, rest]) => first + rest.join("")),
  ),
);

/** `^[a-z][a-z0-9_]{0,62}$`. */
const listenerName: fc.Arbitrary<string> = fc.oneof(
  fc.stringMatching(/^[a-z][a-z0-9_]{0,62}$/),
  fc.constantFrom("a", "api", "const", "fn", "x".repeat(63)),
);

const ipv4: fc.Arbitrary<string> = fc.oneof(fc.ipV4(), fc.constantFrom("0.0.0.0", "127.0.0.1"));
const ipv6: fc.Arbitrary<string> = fc.oneof(
  fc.ipV6(),
  fc.constantFrom("::", "::1", "0:0:0:0:0:0:0:1", "fe80::1", "::ffff:127.0.0.1"),
);

const bufferBytes = fc.integer({ min: 4096, max: 67108864 });

const keepalive = fc.oneof(
  fc.constant(false),
  fc.record(
    {
      idleSeconds: fc.integer({ min: 1, max: 32767 }),
      intervalSeconds: fc.integer({ min: 1, max: 32767 }),
      probes: fc.integer({ min: 1, max: 127 }),
    },
    { requiredKeys: [] },
  ),
);

const http = fc.record(
  {
    body: fc.oneof(fc.string({ maxLength: 64 }), fc.string({ unit: "binary", maxLength: 64 })),
    contentType: fc.stringMatching(/^[\x20-\x7e]{1,256}$/),
  },
  { requiredKeys: [] },
);

interface ListenerDraw {
  readonly name: string;
  readonly protocol: "tcp" | "udp";
  readonly ip6: boolean;
  readonly tcpHandler: "echo" | "http" | "whoami" | "custom";
  readonly udpHandler: "echo" | "whoami" | "custom";
  readonly address4: string;
  readonly address6: string;
  readonly common: Json;
  readonly tcpOptions: Json;
  readonly v6Only: Json;
  readonly http: Json;
}

const listenerDraw: fc.Arbitrary<ListenerDraw> = fc.record({
  name: listenerName,
  protocol: fc.constantFrom("tcp", "udp"),
  ip6: fc.boolean(),
  tcpHandler: fc.constantFrom("echo", "http", "whoami", "custom"),
  udpHandler: fc.constantFrom("echo", "whoami", "custom"),
  address4: ipv4,
  address6: ipv6,
  common: fc.record(
    { reuseAddress: fc.boolean(), recvBufferBytes: bufferBytes, sendBufferBytes: bufferBytes },
    { requiredKeys: [] },
  ),
  tcpOptions: fc.record(
    { backlog: fc.integer({ min: 1, max: 65535 }), noDelay: fc.boolean(), keepalive },
    { requiredKeys: [] },
  ),
  v6Only: fc.record({ v6Only: fc.boolean() }, { requiredKeys: [] }),
  http: fc.option(http, { nil: undefined }).map((h): Json => (h === undefined ? {} : { http: h })),
});

/** One listener object; every port is distinct, so no two bindings can collide. */
function listenerOf(draw: ListenerDraw, port: number): Json {
  const tcp = draw.protocol === "tcp";
  const handler = tcp ? draw.tcpHandler : draw.udpHandler;
  return {
    name: draw.name,
    protocol: draw.protocol,
    address: draw.ip6 ? draw.address6 : draw.address4,
    port,
    handler,
    ...draw.common,
    ...(tcp ? draw.tcpOptions : {}),
    ...(draw.ip6 ? draw.v6Only : {}),
    ...(handler === "http" ? draw.http : {}),
  };
}

const topLevel = fc.record(
  {
    $schema: fc.string({ maxLength: 40 }),
    version: fc.oneof(
      fc.constantFrom("0.1.0", "999999999.999999999.999999999"),
      fc.stringMatching(/^(0|[1-9]\d{0,8})\.(0|[1-9]\d{0,8})\.(0|[1-9]\d{0,8})$/),
    ),
    workers: fc.oneof(fc.integer({ min: 1, max: 1024 }), fc.constant("auto")),
    zig: fc.constantFrom(...SUPPORTED_ZIG),
    drainTimeoutMs: fc.integer({ min: 0, max: 3600000 }),
    maxConnections: fc.integer({ min: 1, max: 1048576 }),
    readBufferBytes: fc.integer({ min: 512, max: 1048576 }),
    writeBufferBytes: fc.integer({ min: 512, max: 1048576 }),
    outputLimitBytes: fc.integer({ min: 1, max: 1099511627776 }),
    outputPoolBytes: fc.oneof(fc.constant(0), fc.integer({ min: 65536, max: 1099511627776 })),
  },
  { requiredKeys: [] },
);

/** The write buffer an http listener needs for its whole response (the rule of `rules.ts`). */
function httpNeeds(name: string, listener: Json): number {
  if (listener.handler !== "http") return 0;
  const h = (listener.http ?? {}) as Json;
  const body = typeof h.body === "string" ? h.body : DEFAULTS.httpBody;
  const type = typeof h.contentType === "string" ? h.contentType : DEFAULTS.httpContentType;
  const bodyBytes = Buffer.byteLength(body, "utf8");
  return bodyBytes + httpResponseHeaderBytes(name, type, bodyBytes);
}

export interface SpecArbitraryOptions {
  /** At most this many listeners (the schema allows 64). */
  readonly maxListeners?: number;
}

/** A valid spec as a user would write it (defaults left out at random). */
export function validSpec(options: SpecArbitraryOptions = {}): fc.Arbitrary<Json> {
  const maxLength = options.maxListeners ?? 8;
  return fc
    .record({
      name: serviceName,
      top: topLevel,
      draws: fc.uniqueArray(listenerDraw, {
        minLength: 1,
        maxLength,
        selector: (d) => d.name,
      }),
      ports: fc.uniqueArray(fc.integer({ min: 1, max: 65535 }), {
        minLength: maxLength,
        maxLength,
      }),
    })
    .map(({ name, top, draws, ports }) => {
      const listeners = draws.map((d, i) => listenerOf(d, ports[i] ?? i + 1));
      const needs = Math.max(...listeners.map((l) => httpNeeds(name, l)));
      const writeBufferBytes = top.writeBufferBytes ?? DEFAULTS.writeBufferBytes;
      const fitted = needs > writeBufferBytes ? { writeBufferBytes: needs } : {};
      return { name, ...top, ...fitted, listeners };
    });
}
