/**
 * The `proxy` object of a listener whose handler is `"proxy"`: a layer-4 proxy that joins each
 * client connection to a server of one of the spec's `upstreams` and pumps bytes both ways
 * (HAProxy's `mode tcp`, nginx's `stream`). The shape is here; the rules that relate it to the
 * listener and to the upstreams (TCP only, an upstream that exists) are `checkProxies`.
 */
import { z } from "zod";
import { parseServer } from "./upstream.js";
import type { Diagnostic } from "../errors.js";

export const PROXY_BALANCES = ["roundrobin", "leastconn"] as const;
export const PROXY_PROTOCOL_VERSIONS = ["v1", "v2"] as const;

export const PROXY_DEFAULTS = {
  balance: "roundrobin",
  retries: 1,
  sendProxyProtocol: false,
  checkIntervalMs: 0,
  rise: 2,
  fall: 3,
  zeroCopy: false,
} as const;

function intRange(min: number, max: number) {
  const error = `must be an integer from ${min} to ${max}`;
  return z.int({ error }).min(min, { error }).max(max, { error });
}

const PROTOCOL_ERROR = 'must be false, "v1" or "v2"';

export const ProxySchema = z
  .strictObject(
    {
      upstream: z
        .string({ error: "must be a string: the name of one of the spec's upstreams" })
        .describe("The upstream whose servers the proxy connects its clients to."),
      balance: z
        .enum(PROXY_BALANCES, { error: 'must be one of "roundrobin", "leastconn"' })
        .default(PROXY_DEFAULTS.balance)
        .describe(
          'How a worker picks a server for a new client: "roundrobin" (in turn) or ' +
            '"leastconn" (the fewest of this worker\'s open pairs); ejected servers are skipped.',
        ),
      connectTimeoutMs: intRange(1, 600000)
        .optional()
        .describe(
          "Milliseconds a connect to a server may take before the next server is tried; " +
            "absent: the upstream's connectTimeoutMs.",
        ),
      idleTimeoutMs: intRange(1, 86400000)
        .optional()
        .describe(
          "Milliseconds a client and its server may both stay silent before the pair is " +
            "closed; absent: the spec's idleTimeoutMs. The program's --idle-timeout flag " +
            "replaces it.",
        ),
      retries: intRange(0, 16)
        .default(PROXY_DEFAULTS.retries)
        .describe(
          "Connects tried on other servers after a failed one, before the client is closed.",
        ),
      sendProxyProtocol: z
        .union([z.literal(false), z.enum(PROXY_PROTOCOL_VERSIONS)], { error: PROTOCOL_ERROR })
        .default(PROXY_DEFAULTS.sendProxyProtocol)
        .describe(
          'A PROXY protocol header with the client\'s address to the server: false, "v1" ' +
            '(text) or "v2" (binary).',
        ),
      checkIntervalMs: intRange(0, 3600000)
        .default(PROXY_DEFAULTS.checkIntervalMs)
        .describe(
          "Milliseconds between active health checks of each server (a TCP connect, by every " +
            "worker); 0: none, only the passive ejection of servers that refuse clients.",
        ),
      rise: intRange(1, 100)
        .default(PROXY_DEFAULTS.rise)
        .describe("Checks in a row that must pass before a server that was down gets clients."),
      fall: intRange(1, 100)
        .default(PROXY_DEFAULTS.fall)
        .describe("Checks in a row that must fail before a server is marked down."),
      zeroCopy: z
        .boolean({ error: "must be true or false" })
        .default(PROXY_DEFAULTS.zeroCopy)
        .describe(
          "Move bytes with splice(2) through a pipe per direction of each pair, in the " +
            "kernel (for large transfers; small messages are cheaper copied).",
        ),
    },
    {
      error:
        'must be an object { upstream, balance, connectTimeoutMs, idleTimeoutMs, retries, ' +
        "sendProxyProtocol, checkIntervalMs, rise, fall, zeroCopy }",
    },
  )
  .describe('The layer-4 proxy of a listener whose handler is "proxy".');

type Json = Record<string, unknown>;

function isObject(value: unknown): value is Json {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function quoted(names: readonly string[]): string {
  return names.map((n) => JSON.stringify(n)).join(", ");
}

/**
 * A proxy listener is TCP, has its `proxy` object, and names an upstream the spec has; a
 * `proxy` object goes with the proxy handler only.
 */
export function checkProxyListener(index: number, raw: Json, spec: Json): Diagnostic[] {
  const at = (...keys: (string | number)[]) => ["listeners", index, ...keys];
  const handler = raw.handler;
  const proxy = raw.proxy;
  if (handler === "proxy" && raw.protocol === "udp") {
    return [
      {
        path: at("handler"),
        message:
          '"proxy" is a tcp-only handler (it joins stream connections); use "protocol": "tcp"',
        got: handler,
      },
    ];
  }
  if (handler === "proxy" && proxy === undefined) {
    return [
      {
        path: at("handler"),
        message: 'needs a "proxy" object naming the upstream: "proxy": { "upstream": "…" }',
      },
    ];
  }
  if (proxy === undefined) return [];
  if (typeof handler === "string" && handler !== "proxy") {
    return [
      {
        path: at("proxy"),
        message: `only applies when handler is "proxy" (handler is ${JSON.stringify(handler)})`,
        got: proxy,
      },
    ];
  }
  if (!isObject(proxy) || typeof proxy.upstream !== "string") return [];
  const names = Array.isArray(spec.upstreams)
    ? spec.upstreams.flatMap((u) => (isObject(u) && typeof u.name === "string" ? [u.name] : []))
    : [];
  if (names.includes(proxy.upstream)) return proxyServersByAddress(spec, proxy.upstream);
  return [
    {
      path: at("proxy", "upstream"),
      message:
        names.length === 0
          ? 'names an upstream, but the spec has no "upstreams": add one with its "servers"'
          : `names no upstream of the spec (its upstreams are ${quoted(names)})`,
      got: proxy.upstream,
    },
  ];
}

/**
 * A proxy copies its upstream's servers into its listener when the project is generated:
 * host names, which app-module upstreams resolve at start and on SIGHUP, are not resolved for
 * a proxy (yet), so its servers must be IP literals.
 */
function proxyServersByAddress(spec: Json, name: string): Diagnostic[] {
  if (!Array.isArray(spec.upstreams)) return [];
  const index = spec.upstreams.findIndex((u) => isObject(u) && u.name === name);
  const upstream = spec.upstreams[index];
  if (!isObject(upstream) || !Array.isArray(upstream.servers)) return [];
  return upstream.servers.flatMap((text, s): Diagnostic[] => {
    if (typeof text !== "string") return [];
    const server = parseServer(text);
    if (typeof server === "string" || server.ip !== undefined) return [];
    return [
      {
        path: ["upstreams", index, "servers", s],
        message:
          `is a host name, and upstream "${name}" serves a proxy listener, whose servers ` +
          "must be IP addresses (host names are resolved for app modules' upstreams only); " +
          'write it as "IPv4:PORT" or "[IPv6]:PORT"',
        got: text,
      },
    ];
  });
}

/** The names of the upstreams some proxy listener uses. */
export function proxiedUpstreams(spec: Json): Set<string> {
  const used = new Set<string>();
  if (!Array.isArray(spec.listeners)) return used;
  for (const l of spec.listeners) {
    if (!isObject(l) || l.handler !== "proxy" || !isObject(l.proxy)) continue;
    if (typeof l.proxy.upstream === "string") used.add(l.proxy.upstream);
  }
  return used;
}
