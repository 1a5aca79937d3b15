/**
 * The model stage: a valid `Spec` → the `ServiceModel` templates render. Pure. It computes every
 * name, literal and ordering so that templates only print fields.
 */
import { buildUpstreams, type UpstreamModel } from "./upstream.js";
import { buildProxy, type ProxyModel } from "./proxy.js";
import { createHash } from "node:crypto";
import { InternalError } from "../errors.js";
import { formatIp, parseIp } from "../spec/address.js";
import { DEFAULTS, type ListenerSpec, type Spec } from "../spec/schema.js";
import { DEFAULT_MINIMUM_ZIG } from "../zig-facts.js";
import {
  DEFAULT_PRE_STOP_SLEEP_SECONDS,
  graceSeconds,
  workersUnderLimit,
} from "../spec/deploy.js";
import { zigFingerprint } from "./fingerprint.js";
import { zigPackageName } from "./zig-name.js";

export interface ServiceModel {
  /** gen-reuseport's own version (package.json). */
  readonly generatorVersion: string;
  /**
   * Base name of the spec file, e.g. "http.json", escaped for every file it reaches (headers,
   * README, manifest): bytes outside `[A-Za-z0-9._+-]` are percent-encoded (`a b.json` →
   * `a%20b.json`), so no newline, quote or backtick of a file name reaches generated text.
   */
  readonly specFile: string;
  readonly name: string;
  /** The Zig package name (`.name = .edge_echo`): a bare identifier of at most 32 bytes. */
  readonly zigName: string;
  /** `build.zig.zon` fingerprint: "0x" + 16 lowercase hex digits. */
  readonly fingerprint: string;
  readonly version: string;
  readonly minimumZigVersion: string;
  /** 0 means "auto" (one per CPU). */
  readonly workers: number;
  readonly drainTimeoutMs: number;
  /** How long new workers may take to report ready. */
  readonly readyTimeoutMs: number;
  /** How long a graceful stop keeps serving after readiness turned 503. */
  readonly shutdownDelayMs: number;
  /** How workers do socket I/O: "epoll" or "io_uring" (falling back to epoll where refused). */
  readonly io: "epoll" | "io_uring";
  /** Pin workers to CPUs and steer connections to the worker on their CPU. */
  readonly cpuAffinity: boolean;
  /** The admin listener, when the spec has one. */
  readonly admin: AdminModel | undefined;
  readonly maxConnections: number;
  readonly readBufferBytes: number;
  readonly writeBufferBytes: number;
  readonly headerTimeoutMs: number;
  readonly bodyTimeoutMs: number;
  /** 0: no whole-request deadline. */
  readonly requestTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly writeTimeoutMs: number;
  readonly watchdogMs: number;
  readonly maxBodyBytes: number;
  readonly outputLimitBytes: number;
  readonly outputPoolBytes: number;
  /** Datagrams per recvmmsg/sendmmsg on UDP listeners. */
  readonly udpBatch: number;
  /** The user the workers drop to, as the spec names it (a numeric id as digits); null: none. */
  readonly user: string | null;
  /** Its group; null: the user's primary group. */
  readonly group: string | null;
  /** The request log; null when the spec has none. */
  readonly accessLog: AccessLogModel | null;
  /**
   * 16 hex digits identifying the validated spec (defaults applied): a supervisor refuses
   * workers built from another spec.
   */
  readonly specFingerprint: string;
  readonly hasCustomHandler: boolean;
  /** Application modules (section 8), each once, in order of first use. */
  readonly apps: readonly AppModel[];
  readonly hasApps: boolean;
  readonly hasHttpApps: boolean;
  readonly hasStreamApps: boolean;
  readonly hasTcpApps: boolean;
  readonly hasDatagramApps: boolean;
  readonly hasTcp: boolean;
  readonly hasUdp: boolean;
  /** In spec order. */
  readonly listeners: readonly ListenerModel[];
  /** What the systemd units under `systemd/` say (see `buildSystemd`). */
  readonly systemd: SystemdModel;
  /** The services app modules call, in spec order. */
  readonly upstreams: readonly UpstreamModel[];
  readonly hasUpstreams: boolean;
  /** Some listener is a proxy (handlers/proxy.zig and handlers/proxy/ are rendered). */
  readonly hasProxy: boolean;
  /** Descriptors a proxied client holds beside its own: its server's, and with zeroCopy two
   * pipes (four ends); 0 without a proxy listener. */
  readonly proxyFdsPerClient: number;
  /** What the image recipe and Kubernetes manifests under `deploy/` say (`buildDeploy`). */
  readonly deploy: DeployModel;
}

export interface DeployPort {
  /** An IANA service name (at most 15 of `[a-z0-9-]`), unique in the pod. */
  readonly name: string;
  readonly port: number;
  /** "TCP" or "UDP", as Kubernetes writes it. */
  readonly protocol: "TCP" | "UDP";
  /** "tcp" or "udp", as a Containerfile's EXPOSE writes it. */
  readonly exposeProtocol: "tcp" | "udp";
}

export interface DeployModel {
  /** The image's source URL label; "" when the spec has no `deploy.source`. */
  readonly source: string;
  readonly image: string;
  readonly replicas: number;
  /** "" when kustomization.yaml sets none. */
  readonly namespace: string;
  readonly cpu: string;
  /** The workers a pod starts: the spec's count, or one per CPU of the limit for "auto". */
  readonly workersPerPod: number;
  readonly memory: string;
  /** 0: no preStop hook. */
  readonly preStopSleepSeconds: number;
  readonly terminationGracePeriodSeconds: number;
  readonly shutdownDelayMs: number;
  /** The admin listener's port in the pod. */
  readonly adminPort: number;
  /** The admin address the pod is started with (`--admin`): every interface, for the probes. */
  readonly adminListen: string;
  /** Whether the spec has no admin listener, so the manifests pick the default address. */
  readonly adminDefaulted: boolean;
  /** The listeners' ports: the Service and the container ports. */
  readonly ports: readonly DeployPort[];
  /** Every port the image listens on, for EXPOSE: `8080/tcp 9901/tcp`. */
  readonly expose: string;
  /** A port below 1024: NET_BIND_SERVICE is added and the unprivileged port floor lowered. */
  readonly bindsPrivilegedPort: boolean;
  /** The lowest port, for `net.ipv4.ip_unprivileged_port_start` when it is below 1024. */
  readonly lowestPort: number;
  /** What the generator tells the user about the manifests (printed when writing). */
  readonly notes: readonly string[];
}

export interface AdminModel {
  readonly isIpv6: boolean;
  /** Canonical text (IPv6 in RFC 5952 form). */
  readonly address: string;
  /** Zig literal of the address bytes in network order: `.{ 127, 0, 0, 1 }`. */
  readonly addressBytes: string;
  readonly port: number;
}

export interface AccessLogModel {
  /** "-" for standard output, else the file's path as written in the spec. */
  readonly path: string;
  readonly toStdout: boolean;
  readonly format: "json" | "combined";
}

export interface SystemdModel {
  /** `<name>.service`. */
  readonly service: string;
  /** The socket units, one per listener, space-separated, for `Sockets=` and `Requires=`. */
  readonly sockets: string;
  /** Whole seconds past drainTimeoutMs and the supervisor's kill grace. */
  readonly timeoutStopSec: number;
  /** 0: no `WatchdogSec=` (the spec's watchdog is off). */
  readonly watchdogSec: number;
  /** What the program raises its own soft limit to (main.zig's raiseFdLimit). */
  readonly limitNofile: number;
  /** One stored socket per listener per worker slot ("auto" counted as 64 slots). */
  readonly fdStoreMax: number;
}

export interface ListenerModel {
  readonly index: number;
  readonly name: string;
  readonly protocol: "tcp" | "udp";
  readonly handler: "echo" | "http" | "whoami" | "custom" | "app" | "proxy";
  /** The proxy handler's settings; null for other handlers. */
  readonly proxy: ProxyModel | null;
  /** The module's index in `ServiceModel.apps`; 0 when the handler is not "app". */
  readonly appIndex: number;
  /** The module's name; "" when the handler is not "app". */
  readonly appModule: string;
  /** The module's kind; "" when the handler is not "app". */
  readonly appKind: "http" | "stream" | "datagram" | "";
  readonly isIpv6: boolean;
  /** Canonical text (IPv6 in RFC 5952 form). */
  readonly address: string;
  /** Zig literal of the address bytes in network order: `.{ 127, 0, 0, 1 }`. */
  readonly addressBytes: string;
  readonly port: number;
  /** 0 for udp. */
  readonly backlog: number;
  readonly reuseAddress: boolean;
  /** false for IPv4. */
  readonly v6Only: boolean;
  /** false for udp. */
  readonly noDelay: boolean;
  /** TCP_DEFER_ACCEPT: the spec's choice, else true for listeners where the client speaks
   * first by protocol (HTTP, built in or an app module); false for udp. */
  readonly deferAccept: boolean;
  /** 0 = kernel default. */
  readonly recvBufferBytes: number;
  /** 0 = kernel default. */
  readonly sendBufferBytes: number;
  readonly keepalive: boolean;
  /** The keepalive numbers are 0 when keepalive is off. */
  readonly keepaliveIdleSeconds: number;
  readonly keepaliveIntervalSeconds: number;
  readonly keepaliveProbes: number;
  /** Raw strings, "" when the handler is not http; templates pass them through `zigString`. */
  readonly httpBody: string;
  readonly httpContentType: string;
  /** Zig literal of the `route` label values of the listener's request-duration histograms:
   * each route of an HTTP app module then "" (no route answered), `"*"` for the built-in
   * `http` handler, none for other handlers: `&.{ "getNote", "" }`. */
  readonly metricRoutes: string;
  /** Its socket unit, `<service>-<listener>.socket` (FileDescriptorName= is per unit). */
  readonly socketUnit: string;
  /** `ListenStream` or `ListenDatagram`. */
  readonly listenDirective: string;
  /** The address as a socket unit writes it: `0.0.0.0:8080`, `[::]:8080`. */
  readonly listenAddress: string;
  /** `BindIPv6Only=` for IPv6 listeners ("ipv6-only" or "both"); "" for IPv4. */
  readonly bindIpv6Only: string;
}

export interface AppModel {
  readonly index: number;
  readonly module: string;
  /** The user-owned file, relative to the output directory: `src/app/<module>.zig`. */
  readonly file: string;
  /** Path of the file as the generated glue imports it, relative to `src/`. */
  readonly importPath: string;
  readonly scratchBytes: number;
  readonly kind: "http" | "stream" | "datagram";
  readonly isHttp: boolean;
  readonly isStream: boolean;
  readonly isDatagram: boolean;
  /** HTTP only; empty otherwise. */
  readonly routes: readonly RouteModel[];
  /** HTTP only: body buffers of maxBodyBytes per worker (0: none; 0 for other kinds). */
  readonly bodyBuffers: number;
  /** Stream only: the Zig literal of the module's framing (`.raw`, `.{ .line = … }`). */
  readonly framing: string;
  /** Stream only: the largest frame, gathered in a frame buffer (0: none, the read buffer). */
  readonly maxFrameBytes: number;
  /** Stream only: frame buffers of maxFrameBytes per worker (0 without maxFrameBytes). */
  readonly frameBuffers: number;
  readonly framingKind: "raw" | "line" | "length" | "";
  /** Length framing: the prefix's Zig integer type and byte order ("" otherwise). */
  readonly lengthInt: string;
  readonly lengthEndian: string;
  /** Stream stub's test: one frame as sent (its reply is the same bytes). */
  readonly exampleFrame: string;
}

export interface RouteModel {
  readonly index: number;
  readonly name: string;
  readonly method: string;
  readonly path: string;
  /** The function the module must declare, as the build error and the generator name it. */
  readonly signature: string;
  /** A request this route answers, for the stub's test (`:id` → `1`, `*rest` → `x`). */
  readonly exampleRequestLine: string;
  readonly exampleRequestFields: string;
}

function exampleRequest(method: string, path: string) {
  const concrete = path.replace(/:[A-Za-z0-9_]+/g, "1").replace(/\*[A-Za-z0-9_]+$/, "x");
  const body = method === "POST" || method === "PUT" || method === "PATCH";
  return {
    exampleRequestLine: `${method} ${concrete} HTTP/1.1\r\n`,
    exampleRequestFields: `Host: test\r\n${body ? "Content-Length: 0\r\n" : ""}\r\n`,
  };
}

/** What every route function looks like (DESIGN section 8). */
export function routeSignature(name: string): string {
  return `pub fn ${name}(state: *State, req: *http.Request, res: *http.Response) !void`;
}

export interface ModelOptions {
  readonly generatorVersion: string;
  /** The spec path as given; only its base name is kept. */
  readonly specFile: string;
}

const HTTP_DEFAULTS = { body: DEFAULTS.httpBody, contentType: DEFAULTS.httpContentType } as const;

export function buildModel(spec: Spec, options: ModelOptions): ServiceModel {
  const zigName = zigPackageName(spec.name);
  const apps = buildApps(spec);
  const appIndex = new Map(apps.map((a) => [a.module, a.index]));
  const listeners = spec.listeners.map((l, i) => buildListener(spec, spec.name, l, i, appIndex));
  return {
    generatorVersion: options.generatorVersion,
    specFile: safeFileName(baseName(options.specFile)),
    name: spec.name,
    zigName,
    fingerprint: zigFingerprint(zigName),
    version: spec.version,
    minimumZigVersion: spec.zig ?? DEFAULT_MINIMUM_ZIG,
    workers: spec.workers === "auto" ? 0 : spec.workers,
    drainTimeoutMs: spec.drainTimeoutMs,
    readyTimeoutMs: spec.readyTimeoutMs,
    shutdownDelayMs: spec.shutdownDelayMs,
    io: spec.io,
    cpuAffinity: spec.cpuAffinity,
    admin: buildAdmin(spec),
    maxConnections: spec.maxConnections,
    readBufferBytes: spec.readBufferBytes,
    writeBufferBytes: spec.writeBufferBytes,
    headerTimeoutMs: spec.headerTimeoutMs,
    bodyTimeoutMs: spec.bodyTimeoutMs,
    requestTimeoutMs: spec.requestTimeoutMs,
    idleTimeoutMs: spec.idleTimeoutMs,
    writeTimeoutMs: spec.writeTimeoutMs,
    watchdogMs: spec.watchdogMs,
    maxBodyBytes: spec.maxBodyBytes,
    outputLimitBytes: spec.outputLimitBytes,
    outputPoolBytes: spec.outputPoolBytes,
    udpBatch: spec.udpBatch,
    user: spec.user === undefined ? null : String(spec.user),
    group: spec.group === undefined ? null : String(spec.group),
    accessLog: spec.accessLog
      ? {
          path: spec.accessLog.path,
          toStdout: spec.accessLog.path === "-",
          format: spec.accessLog.format,
        }
      : null,
    specFingerprint: specFingerprint(spec),
    hasCustomHandler: listeners.some((l) => l.handler === "custom"),
    apps,
    hasApps: apps.length > 0,
    hasHttpApps: apps.some((a) => a.isHttp),
    hasStreamApps: apps.some((a) => a.isStream),
    hasTcpApps: apps.some((a) => !a.isDatagram),
    hasDatagramApps: apps.some((a) => a.isDatagram),
    hasTcp: listeners.some((l) => l.protocol === "tcp"),
    hasUdp: listeners.some((l) => l.protocol === "udp"),
    listeners,
    systemd: buildSystemd(spec, listeners),
    upstreams: buildUpstreams(spec),
    hasUpstreams: buildUpstreams(spec).length > 0,
    hasProxy: spec.listeners.some((l) => l.handler === "proxy"),
    proxyFdsPerClient: proxyFdsPerClient(spec),
    deploy: buildDeploy(spec, listeners),
  };
}

function proxyFdsPerClient(spec: Spec): number {
  const proxies = spec.listeners.flatMap((l) => (l.proxy === undefined ? [] : [l.proxy]));
  if (proxies.length === 0) return 0;
  return proxies.some((p) => p.zeroCopy) ? 5 : 1;
}

/** The supervisor's kill grace past the drain timeout (supervisor.zig `kill_grace_ms`). */
const KILL_GRACE_MS = 1000;
/** Slack on top of that for systemd's own stop timeout. */
const STOP_SLACK_SECONDS = 5;
/** Slots the fd store has room for when the worker count is "auto" (one per CPU). */
const AUTO_STORED_SLOTS = 64;
/** main.zig's bound for "auto" workers (`cli.max_workers`). */
const MAX_WORKERS = 1024;

function buildSystemd(spec: Spec, listeners: readonly ListenerModel[]): SystemdModel {
  const workers = spec.workers === "auto" ? MAX_WORKERS : spec.workers;
  return {
    service: `${spec.name}.service`,
    sockets: listeners.map((l) => l.socketUnit).join(" "),
    timeoutStopSec:
      Math.ceil((spec.shutdownDelayMs + spec.drainTimeoutMs + KILL_GRACE_MS) / 1000) +
      STOP_SLACK_SECONDS,
    // The supervisor sends WATCHDOG=1 at half this; it is given the budget its workers get.
    watchdogSec: spec.watchdogMs === 0 ? 0 : Math.max(1, Math.ceil(spec.watchdogMs / 1000)),
    limitNofile:
      spec.maxConnections +
      buildUpstreams(spec).reduce((n, u) => n + u.connectionsPerWorker, 0) +
      spec.maxConnections * proxyFdsPerClient(spec) +
      workers * (listeners.length + 4) +
      64,
    fdStoreMax: (spec.workers === "auto" ? AUTO_STORED_SLOTS : spec.workers) * listeners.length,
  };
}

/** The admin address a pod listens on when the spec names none (operations: `--admin`). */
export const DEFAULT_ADMIN_PORT = 9901;
const DEFAULT_REPLICAS = 2;
/** CPUs a pod gets when workers are "auto": they then start one worker per CPU of the limit. */
const DEFAULT_AUTO_CPU = "2";
const DEFAULT_MEMORY = "512Mi";

function buildDeploy(spec: Spec, listeners: readonly ListenerModel[]): DeployModel {
  const k8s = spec.deploy?.kubernetes ?? {};
  const shutdownDelayMs = spec.shutdownDelayMs;
  const preStop = k8s.preStopSleepSeconds ?? DEFAULT_PRE_STOP_SLEEP_SECONDS;
  const cpu = k8s.cpu ?? (spec.workers === "auto" ? DEFAULT_AUTO_CPU : String(spec.workers));
  const adminPort = spec.admin?.port ?? freeAdminPort(listeners);
  const ports = deployPorts(listeners);
  const all = [...ports.map((p) => p.port), adminPort];
  const lowestPort = Math.min(...all);
  const notes: string[] = [];
  if (spec.admin === undefined) {
    notes.push(
      `deploy/kubernetes/: the spec has no "admin" listener, so the pods start with ` +
        `--admin 0.0.0.0:${adminPort} for their probes and metrics`,
    );
  }
  for (const l of listeners) {
    if (l.address.startsWith("127.") || l.address === "::1") {
      notes.push(
        `deploy/kubernetes/: listener "${l.name}" binds ${l.address}, which a Service cannot ` +
          'reach; bind "0.0.0.0" or "::" for a pod',
      );
    }
  }
  return {
    source: spec.deploy?.source ?? "",
    image: k8s.image ?? `${spec.name}:${spec.version}`,
    replicas: k8s.replicas ?? DEFAULT_REPLICAS,
    namespace: k8s.namespace ?? "",
    cpu,
    workersPerPod: spec.workers === "auto" ? workersUnderLimit(cpu) : spec.workers,
    memory: k8s.memory ?? DEFAULT_MEMORY,
    preStopSleepSeconds: preStop,
    terminationGracePeriodSeconds:
      k8s.terminationGracePeriodSeconds ??
      graceSeconds(preStop, shutdownDelayMs, spec.drainTimeoutMs),
    shutdownDelayMs,
    adminPort,
    adminListen: `0.0.0.0:${adminPort}`,
    adminDefaulted: spec.admin === undefined,
    ports,
    expose: [
      ...ports.map((p) => `${p.port}/${p.exposeProtocol}`),
      `${adminPort}/tcp`,
    ].join(" "),
    bindsPrivilegedPort: lowestPort < 1024,
    lowestPort,
    notes,
  };
}

/** The default admin port, or the next one that no TCP listener uses. */
function freeAdminPort(listeners: readonly ListenerModel[]): number {
  const used = new Set(listeners.filter((l) => l.protocol === "tcp").map((l) => l.port));
  let port = DEFAULT_ADMIN_PORT;
  while (used.has(port)) port += 1;
  return port;
}

/**
 * One port per port number and protocol (an IPv4 and an IPv6 listener on one port are one
 * Service port), named as Kubernetes accepts (IANA service names: at most 15 of `[a-z0-9-]`, a
 * letter among them, no hyphen at either end or twice in a row) after the first listener on
 * it, unique in the pod; "admin" is the admin port's.
 */
function deployPorts(listeners: readonly ListenerModel[]): DeployPort[] {
  const taken = new Set(["admin"]);
  const seen = new Set<string>();
  const distinct = listeners.filter((l) => {
    const key = `${l.port}/${l.protocol}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
  return distinct.map((l) => {
    const base =
      l.name.replace(/_+/g, "-").replace(/-+$/, "").slice(0, 15).replace(/-+$/, "") || "port";
    let name = base;
    for (let n = 2; taken.has(name); n += 1) {
      const suffix = `-${n}`;
      name = `${base.slice(0, 15 - suffix.length).replace(/-+$/, "")}${suffix}`;
    }
    taken.add(name);
    const tcp = l.protocol === "tcp";
    return {
      name,
      port: l.port,
      protocol: tcp ? "TCP" : "UDP",
      exposeProtocol: tcp ? "tcp" : "udp",
    } as const;
  });
}

function buildAdmin(spec: Spec): AdminModel | undefined {
  if (spec.admin === undefined) return undefined;
  const ip = parseIp(spec.admin.address);
  if (ip === undefined)
    throw new InternalError(`admin.address ${spec.admin.address} passed validation unparsed`);
  return {
    isIpv6: ip.family === 6,
    address: formatIp(ip),
    addressBytes: `.{ ${ip.bytes.join(", ")} }`,
    port: spec.admin.port,
  };
}

function buildApps(spec: Spec): AppModel[] {
  const apps: AppModel[] = [];
  for (const listener of spec.listeners) {
    const app = listener.app;
    if (listener.handler !== "app" || app === undefined) continue;
    if (apps.some((a) => a.module === app.module)) continue;
    const routes = (app.http?.routes ?? []).map((r, index) => ({
      index,
      name: r.name,
      method: r.method,
      path: r.path,
      signature: routeSignature(r.name),
      ...exampleRequest(r.method, r.path),
    }));
    const kind = app.http !== undefined ? "http" : app.stream !== undefined ? "stream" : "datagram";
    apps.push({
      index: apps.length,
      module: app.module,
      file: `src/app/${app.module}.zig`,
      importPath: `app/${app.module}.zig`,
      scratchBytes: app.scratchBytes,
      kind,
      isHttp: kind === "http",
      isStream: kind === "stream",
      isDatagram: kind === "datagram",
      routes,
      bodyBuffers: app.http?.bodyBuffers ?? 0,
      maxFrameBytes: app.stream?.maxFrameBytes ?? 0,
      frameBuffers: app.stream !== undefined && app.stream.maxFrameBytes > 0 ? app.stream.frameBuffers : 0,
      ...framingOf(app.stream?.framing),
    });
  }
  return apps;
}

type Framing = NonNullable<NonNullable<ListenerSpec["app"]>["stream"]>["framing"];

function framingOf(framing: Framing | undefined) {
  const none = { lengthInt: "", lengthEndian: "" };
  if (framing === undefined) {
    return { framing: "", framingKind: "" as const, exampleFrame: "", ...none };
  }
  if (framing === "raw") {
    return { framing: ".raw", framingKind: "raw" as const, exampleFrame: "hello", ...none };
  }
  if ("line" in framing) {
    return {
      framing: `.{ .line = .{ .max_bytes = ${framing.line.maxBytes} } }`,
      framingKind: "line" as const,
      exampleFrame: "hello\n",
      ...none,
    };
  }
  const { bytes, endian, maxBytes } = framing.length;
  const prefix = Buffer.alloc(bytes);
  if (endian === "big") prefix[bytes - 1] = 5;
  else prefix[0] = 5;
  return {
    framing: `.{ .length = .{ .bytes = ${bytes}, .endian = .${endian}, .max_bytes = ${maxBytes} } }`,
    framingKind: "length" as const,
    exampleFrame: `${prefix.toString("latin1")}hello`,
    lengthInt: `u${bytes * 8}`,
    lengthEndian: endian,
  };
}

function buildListener(
  spec: Spec,
  service: string,
  listener: ListenerSpec,
  index: number,
  appIndex: ReadonlyMap<string, number>,
): ListenerModel {
  const ip = parseIp(listener.address);
  if (ip === undefined)
    throw new InternalError(`model got an unvalidated address ${listener.address}`);
  const isTcp = listener.protocol === "tcp";
  const isIpv6 = ip.family === 6;
  const keepalive = isTcp && listener.keepalive !== false ? listener.keepalive : undefined;
  const http = listener.handler === "http" ? (listener.http ?? HTTP_DEFAULTS) : undefined;
  return {
    index,
    name: listener.name,
    protocol: listener.protocol,
    handler: listener.handler,
    proxy: buildProxy(spec, listener),
    appIndex: listener.app === undefined ? 0 : (appIndex.get(listener.app.module) ?? 0),
    appModule: listener.app?.module ?? "",
    appKind:
      listener.app === undefined
        ? ""
        : listener.app.http !== undefined
          ? "http"
          : listener.app.stream !== undefined
            ? "stream"
            : "datagram",
    isIpv6,
    address: formatIp(ip),
    addressBytes: `.{ ${ip.bytes.join(", ")} }`,
    port: listener.port,
    backlog: isTcp ? listener.backlog : 0,
    reuseAddress: listener.reuseAddress,
    v6Only: isIpv6 && listener.v6Only,
    noDelay: isTcp && listener.noDelay,
    deferAccept:
      isTcp && (listener.deferAccept ?? (listener.handler === "http" || listener.app?.http !== undefined)),
    recvBufferBytes: listener.recvBufferBytes ?? 0,
    sendBufferBytes: listener.sendBufferBytes ?? 0,
    keepalive: keepalive !== undefined,
    keepaliveIdleSeconds: keepalive?.idleSeconds ?? 0,
    keepaliveIntervalSeconds: keepalive?.intervalSeconds ?? 0,
    keepaliveProbes: keepalive?.probes ?? 0,
    httpBody: http?.body ?? "",
    httpContentType: http?.contentType ?? "",
    metricRoutes: metricRoutes(listener),
    socketUnit: `${service}-${listener.name}.socket`,
    listenDirective: isTcp ? "ListenStream" : "ListenDatagram",
    listenAddress: isIpv6
      ? `[${formatIp(ip)}]:${listener.port}`
      : `${formatIp(ip)}:${listener.port}`,
    bindIpv6Only: isIpv6 ? (listener.v6Only ? "ipv6-only" : "both") : "",
  };
}

function metricRoutes(listener: ListenerSpec): string {
  const names =
    listener.handler === "http"
      ? ["*"]
      : listener.app?.http !== undefined
        ? [...listener.app.http.routes.map((r) => r.name), ""]
        : [];
  const items = names.map((n) => JSON.stringify(n)).join(", ");
  // zig fmt's spelling: no spaces inside the braces of a one-element list.
  if (names.length === 0) return "&.{}";
  return names.length === 1 ? `&.{${items}}` : `&.{ ${items} }`;
}

/**
 * A digest of the spec as validated (defaults applied, `$schema` left out, keys sorted), so that
 * two specs that mean the same service share it and any change that matters changes it.
 */
function specFingerprint(spec: Spec): string {
  const { $schema: _ignored, ...meaning } = spec;
  return createHash("sha256").update(canonicalJson(meaning)).digest("hex").slice(0, 16);
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

/** Base name for both separators, so no directory of the user's machine reaches the output. */
function baseName(file: string): string {
  const parts = file.split(/[\\/]/);
  return parts[parts.length - 1] ?? file;
}

/** Percent-encodes each UTF-8 byte outside `[A-Za-z0-9._+-]`; ordinary names stay as they are. */
export function safeFileName(name: string): string {
  let safe = "";
  for (const byte of Buffer.from(name, "utf8")) {
    const c = String.fromCharCode(byte);
    safe += /[A-Za-z0-9._+-]/.test(c) ? c : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return safe === "" ? "spec" : safe;
}
