/**
 * The `upstreams` of a spec: the services an app module calls (a cache, a database, another
 * API), each a set of servers that every worker reaches through its own pool of kept-alive,
 * non-blocking connections. The shape is here; names that must be unique and servers that
 * must parse are checked in `rules.ts`, which can say which server is wrong and why.
 */
import { z } from "zod";
import { parseIp, type IpAddress } from "./address.js";

export const UPSTREAM_FRAMINGS = ["resp", "line", "length", "http"] as const;

export const UPSTREAM_DEFAULTS = {
  connectionsPerWorker: 16,
  connectTimeoutMs: 1000,
  responseTimeoutMs: 5000,
  pipeline: 8,
  maxQueuedCalls: 64,
  maxReplyBytes: 1048576,
  ejectMs: 2000,
} as const;

function intRange(min: number, max: number) {
  const error = `must be an integer from ${min} to ${max}`;
  return z.int({ error }).min(min, { error }).max(max, { error });
}

export const UpstreamSchema = z
  .strictObject(
    {
      name: z
        .string({ error: "must be a string" })
        .regex(/^[a-z][a-z0-9_]{0,62}$/, {
          error:
            "must start with a lowercase letter followed by up to 62 lowercase letters, " +
            "digits or underscores",
        })
        .describe("Upstream name: modules call it as `.name` (unique in the spec)."),
      servers: z
        .array(z.string({ error: 'must be a string "ADDRESS:PORT"' }), {
          error: 'must be an array of "ADDRESS:PORT" strings',
        })
        .min(1, { error: "must list at least 1 server" })
        .max(64, { error: "must list at most 64 servers" })
        .describe(
          'Servers as "IPv4:PORT", "[IPv6]:PORT" or "HOSTNAME:PORT" (a name is resolved ' +
            "at start and on SIGHUP: /etc/hosts, then DNS); calls go round-robin to those " +
            "not ejected.",
        ),
      framing: z
        .enum(UPSTREAM_FRAMINGS, {
          error: `must be one of ${UPSTREAM_FRAMINGS.map((f) => JSON.stringify(f)).join(", ")}`,
        })
        .optional()
        .describe(
          'How replies are cut: "resp" (Redis RESP2/RESP3), "line" (up to LF), "length" ' +
            '(a 4-byte big-endian length, then that many bytes), "http" (an HTTP/1.1 response ' +
            "with Content-Length or chunked; one call at a time per connection). Needed by app " +
            "modules; a proxy moves bytes uncut and ignores it (omit it for a proxy's upstream).",
        ),
      connectionsPerWorker: intRange(1, 1024)
        .default(UPSTREAM_DEFAULTS.connectionsPerWorker)
        .describe("Connections each worker may keep open to this upstream."),
      connectTimeoutMs: intRange(1, 600000)
        .default(UPSTREAM_DEFAULTS.connectTimeoutMs)
        .describe("Milliseconds a connect may take; then the server is ejected (503)."),
      responseTimeoutMs: intRange(1, 3600000)
        .default(UPSTREAM_DEFAULTS.responseTimeoutMs)
        .describe("Milliseconds a call may wait for its reply, from when it is made (504)."),
      pipeline: intRange(1, 256)
        .default(UPSTREAM_DEFAULTS.pipeline)
        .describe("Calls sent on one connection before their replies come (in order)."),
      maxQueuedCalls: intRange(0, 65536)
        .default(UPSTREAM_DEFAULTS.maxQueuedCalls)
        .describe(
          "Calls per worker that wait for a connection when every one is busy (503 past it).",
        ),
      maxReplyBytes: intRange(16, 67108864)
        .default(UPSTREAM_DEFAULTS.maxReplyBytes)
        .describe(
          "Largest request and reply of one call (a larger reply is a 502); per call a buffer " +
            "of this size is reserved at start (virtual memory, backed once used).",
        ),
      ejectMs: intRange(1, 3600000)
        .default(UPSTREAM_DEFAULTS.ejectMs)
        .describe("Milliseconds a server that refused, failed or timed out is left out."),
    },
    { error: "must be an upstream object { name, servers, framing, … }" },
  )
  .describe("A service the app modules call through per-worker connection pools.");

export interface UpstreamServer {
  /** The IP literal; undefined for a host name, resolved by the program (see `host`). */
  readonly ip: IpAddress | undefined;
  /** The host name, lower-cased, without a trailing dot; undefined for an IP literal. */
  readonly host: string | undefined;
  readonly port: number;
}

/**
 * A host name as DNS carries it (RFC 1123): dot-separated labels of letters, digits and
 * hyphens (not first or last), 1 to 63 bytes each, 253 at most in all, and a last label that
 * is not all digits (which would be an IPv4 address that did not parse).
 */
export function isHostName(text: string): boolean {
  const name = text.endsWith(".") ? text.slice(0, -1) : text;
  if (name.length === 0 || name.length > 253) return false;
  const labels = name.split(".");
  const label = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i;
  if (!labels.every((l) => label.test(l))) return false;
  return !/^\d+$/.test(labels[labels.length - 1] ?? "");
}

/**
 * Parses `"127.0.0.1:6379"`, `"[::1]:6379"` or `"db.internal:6379"`; a string is the reason
 * it does not parse.
 */
export function parseServer(text: string): UpstreamServer | string {
  const bracketed = /^\[([^\]]*)\](?::(.*))?$/.exec(text);
  let host: string;
  let port: string | undefined;
  if (bracketed) {
    host = bracketed[1] ?? "";
    port = bracketed[2];
  } else {
    const colon = text.lastIndexOf(":");
    const colons = text.split(":").length - 1;
    if (colons > 1) return 'has no port: write an IPv6 server as "[ADDRESS]:PORT"';
    host = colon < 0 ? text : text.slice(0, colon);
    port = colon < 0 ? undefined : text.slice(colon + 1);
  }
  if (port === undefined || port === "") return 'has no port: write it as "ADDRESS:PORT"';
  const ip = parseIp(host);
  if (ip === undefined && (bracketed || !isHostName(host))) {
    return (
      "is neither an IP literal nor a host name: give an IPv4 address, [IPv6] in brackets, " +
      "or a name such as db.internal"
    );
  }
  if (bracketed && ip?.family !== 6) return "has an IPv4 address in brackets";
  if (!/^\d{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535) {
    return "has a port that is not an integer from 1 to 65535";
  }
  const name = ip === undefined ? host.toLowerCase().replace(/\.$/, "") : undefined;
  return { ip, host: name, port: Number(port) };
}
