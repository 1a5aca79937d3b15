/**
 * The upstreams as `config.zig` states them: each server's address as bytes, the framing as a
 * Zig enum tag, and the size of each worker's call table.
 */
import type { Spec } from "../spec/schema.js";
import { parseServer } from "../spec/upstream.js";
import { InternalError } from "../errors.js";

export interface UpstreamServerModel {
  /** A host name the program resolves (its address bytes are zeros until then); "" for none. */
  readonly host: string;
  readonly isIpv6: boolean;
  /** A Zig array literal of the address bytes. */
  readonly addressBytes: string;
  readonly port: number;
}

export interface UpstreamModel {
  readonly index: number;
  readonly name: string;
  readonly framing: string;
  readonly servers: readonly UpstreamServerModel[];
  readonly connectionsPerWorker: number;
  readonly connectTimeoutMs: number;
  readonly responseTimeoutMs: number;
  readonly pipeline: number;
  readonly maxQueuedCalls: number;
  readonly maxReplyBytes: number;
  readonly ejectMs: number;
}

/**
 * The upstreams the app modules call: those with a framing, when the spec has an app module of
 * any kind (an upstream without framing is a proxy's, which copies its servers into its own
 * listener: see `proxy.ts`).
 */
export function buildUpstreams(spec: Spec): UpstreamModel[] {
  const called = spec.listeners.some((l) => l.handler === "app" && l.app !== undefined);
  if (!called) return [];
  const framed = spec.upstreams.flatMap((u) =>
    u.framing === undefined ? [] : [{ ...u, framing: u.framing }],
  );
  return framed.map((u, index) => ({
    index,
    name: u.name,
    framing: u.framing,
    servers: u.servers.map((text) => {
      const server = parseServer(text);
      if (typeof server === "string") throw new InternalError(`unchecked server ${text}`);
      const ip = server.ip ?? { family: 4, bytes: [0, 0, 0, 0] };
      return {
        host: server.host ?? "",
        isIpv6: ip.family === 6,
        addressBytes: `.{ ${ip.bytes.join(", ")} }`,
        port: server.port,
      };
    }),
    connectionsPerWorker: u.connectionsPerWorker,
    connectTimeoutMs: u.connectTimeoutMs,
    responseTimeoutMs: u.responseTimeoutMs,
    pipeline: u.pipeline,
    maxQueuedCalls: u.maxQueuedCalls,
    maxReplyBytes: u.maxReplyBytes,
    ejectMs: u.ejectMs,
  }));
}
