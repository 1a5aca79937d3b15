/**
 * A proxy listener as `config.zig` states it: the upstream's servers copied in (as address
 * bytes), the balance and PROXY protocol as Zig enum tags, and every timeout resolved from
 * the proxy, its upstream or the spec.
 */
import type { ListenerSpec, Spec } from "../spec/schema.js";
import { parseServer } from "../spec/upstream.js";
import { InternalError } from "../errors.js";
import type { UpstreamServerModel } from "./upstream.js";

export interface ProxyModel {
  readonly upstream: string;
  /** IP literals only (a spec rule): a proxy's servers are never resolved by name. */
  readonly servers: readonly Omit<UpstreamServerModel, "host">[];
  readonly balance: "roundrobin" | "leastconn";
  readonly connectTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly retries: number;
  /** `none`, `v1` or `v2`. */
  readonly sendProxyProtocol: "none" | "v1" | "v2";
  readonly ejectMs: number;
  /** 0: no active health checks. */
  readonly checkIntervalMs: number;
  readonly rise: number;
  readonly fall: number;
  readonly zeroCopy: boolean;
}

export function buildProxy(spec: Spec, listener: ListenerSpec): ProxyModel | null {
  const proxy = listener.proxy;
  if (listener.handler !== "proxy" || proxy === undefined) return null;
  const upstream = spec.upstreams.find((u) => u.name === proxy.upstream);
  if (upstream === undefined) throw new InternalError(`unchecked upstream ${proxy.upstream}`);
  return {
    upstream: upstream.name,
    servers: upstream.servers.map((text) => {
      const server = parseServer(text);
      if (typeof server === "string" || server.ip === undefined) {
        throw new InternalError(`unchecked server ${text}`);
      }
      return {
        isIpv6: server.ip.family === 6,
        addressBytes: `.{ ${server.ip.bytes.join(", ")} }`,
        port: server.port,
      };
    }),
    balance: proxy.balance,
    connectTimeoutMs: proxy.connectTimeoutMs ?? upstream.connectTimeoutMs,
    idleTimeoutMs: proxy.idleTimeoutMs ?? spec.idleTimeoutMs,
    retries: proxy.retries,
    sendProxyProtocol: proxy.sendProxyProtocol === false ? "none" : proxy.sendProxyProtocol,
    ejectMs: upstream.ejectMs,
    checkIntervalMs: proxy.checkIntervalMs,
    rise: proxy.rise,
    fall: proxy.fall,
    zeroCopy: proxy.zeroCopy,
  };
}
