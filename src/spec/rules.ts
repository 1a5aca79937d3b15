/**
 * Rules that relate fields to each other (uniqueness, options that only apply to some listeners,
 * sizes that must fit together). They read the raw JSON defensively, so they report alongside
 * the shape errors of `schema.ts` instead of waiting for them to be fixed: a field of the wrong
 * type is skipped here (the schema already reports it).
 */
import type { Diagnostic } from "../errors.js";
import { formatIp, isIpv6Wildcard, parseIp, type IpAddress } from "./address.js";
import { ZIG_KEYWORDS } from "../zig-facts.js";
import { DEFAULTS, TCP_ONLY_KEYS } from "./schema.js";
import { parseServer } from "./upstream.js";
import { checkProxyListener, proxiedUpstreams } from "./proxy.js";
import {
  DEFAULT_PRE_STOP_SLEEP_SECONDS,
  graceSeconds,
  workersUnderLimit,
} from "./deploy.js";

type Json = Record<string, unknown>;

/**
 * Bytes of the headers the generated `http` handler writes before the body, in the longest form
 * it uses (`templates/src/handlers/http.zig.hbs`: `Server: <name>`, `Connection: keep-alive`).
 * The headers and the body must fit in one write buffer.
 */
export function httpResponseHeaderBytes(
  serviceName: string,
  contentType: string,
  bodyBytes: number,
): number {
  const head =
    "HTTP/1.1 200 OK\r\n" +
    `Server: ${serviceName}\r\n` +
    `Content-Type: ${contentType}\r\n` +
    `Content-Length: ${bodyBytes}\r\n` +
    "Connection: keep-alive\r\n" +
    "\r\n";
  return Buffer.byteLength(head, "latin1");
}

interface ListenerView {
  readonly index: number;
  readonly raw: Json;
  readonly protocol: "tcp" | "udp" | undefined;
  readonly ip: IpAddress | undefined;
  readonly port: number | undefined;
}

export function checkRules(raw: unknown): Diagnostic[] {
  if (!isObject(raw)) return [];
  const upstreams = [...checkUpstreams(raw.upstreams), ...checkUpstreamCallers(raw)];
  if (!Array.isArray(raw.listeners)) return upstreams;
  const listeners: ListenerView[] = [];
  for (const [index, item] of raw.listeners.entries()) {
    if (isObject(item)) listeners.push(viewListener(index, item));
  }
  return [
    ...checkAccounts(raw),
    ...listeners.flatMap(checkListenerOptions),
    ...checkUniqueNames(listeners),
    ...checkUniqueBindings(listeners),
    ...checkDualStack(listeners),
    ...listeners.flatMap((l) => checkHttpFits(l, raw)),
    ...listeners.flatMap(checkApp),
    ...listeners.flatMap((l) => checkProxyListener(l.index, l.raw, raw)),
    ...listeners.flatMap((l) => checkFramingFits(l, raw)),
    ...checkSharedModules(listeners),
    ...checkAdminPort(raw, listeners),
    ...upstreams,
    ...checkKubernetes(raw),
  ];
}

/** A group alone would leave the workers root: it only comes with a user. */
function checkAccounts(raw: Json): Diagnostic[] {
  if (!("group" in raw) || "user" in raw) return [];
  return [
    {
      path: ["group"],
      message: 'needs "user" as well: workers drop to a user and its group, never to a group alone',
      got: raw.group,
    },
  ];
}

/**
 * Every upstream serves someone: one without `framing` is a proxy's (bytes are not cut), so a
 * proxy listener must name it; one with `framing` is called by app modules (HTTP, stream,
 * datagram), unless a proxy names it, which ignores the framing.
 */
function checkUpstreamCallers(raw: Json): Diagnostic[] {
  if (!Array.isArray(raw.upstreams) || raw.upstreams.length === 0) return [];
  if (!Array.isArray(raw.listeners)) return [];
  const caller = raw.listeners.some((l) => isObject(l) && l.handler === "app" && isObject(l.app));
  const proxied = proxiedUpstreams(raw);
  const diagnostics: Diagnostic[] = [];
  let uncalled = false;
  for (const [index, u] of raw.upstreams.entries()) {
    if (!isObject(u) || typeof u.name !== "string" || proxied.has(u.name)) continue;
    if (u.framing !== undefined) {
      uncalled ||= !caller;
      continue;
    }
    diagnostics.push({
      path: ["upstreams", index],
      message:
        'has no "framing" and no proxy listener names it: name it in a listener\'s ' +
        '"proxy": { "upstream": … }, or give it a "framing" for app modules to call it',
      got: u.name,
    });
  }
  if (uncalled) {
    diagnostics.unshift({
      path: ["upstreams"],
      message:
        'are called from app modules only; add a listener with "handler": "app", ' +
        "or remove the upstreams",
    });
  }
  return diagnostics;
}

/** Upstream names are unique (a module calls `.name`) and every server parses. */
function checkUpstreams(upstreams: unknown): Diagnostic[] {
  if (!Array.isArray(upstreams)) return [];
  const diagnostics: Diagnostic[] = [];
  const first = new Map<string, number>();
  for (const [index, upstream] of upstreams.entries()) {
    if (!isObject(upstream)) continue;
    const name = upstream.name;
    if (typeof name === "string") {
      const earlier = first.get(name);
      if (earlier === undefined) first.set(name, index);
      else {
        diagnostics.push({
          path: ["upstreams", index, "name"],
          message: `is already the name of upstreams[${earlier}]; upstream names must be unique`,
          got: name,
        });
      }
      if (ZIG_KEYWORDS.has(name)) {
        diagnostics.push({
          path: ["upstreams", index, "name"],
          message: "is a Zig keyword; modules name an upstream as `.name`: pick another name",
          got: name,
        });
      }
    }
    if (!Array.isArray(upstream.servers)) continue;
    for (const [at, server] of upstream.servers.entries()) {
      if (typeof server !== "string") continue;
      const parsed = parseServer(server);
      if (typeof parsed === "string") {
        const path = ["upstreams", index, "servers", at];
        diagnostics.push({ path, message: parsed, got: server });
      }
    }
  }
  return diagnostics;
}

/** The defaults of `schema.ts` for fields `checkKubernetes` reads, when the spec omits them. */
const DRAIN_TIMEOUT_DEFAULT_MS = 10000;

/**
 * What the manifests could not honour: a CPU limit that throttles fixed workers, and a grace
 * period too short for the stop the spec asks for (the kubelet would SIGKILL mid-drain).
 */
function checkKubernetes(raw: Json): Diagnostic[] {
  const deploy = raw.deploy;
  if (!isObject(deploy) || !isObject(deploy.kubernetes)) return [];
  const k8s = deploy.kubernetes;
  const at = (key: string) => ["deploy", "kubernetes", key];
  const diagnostics: Diagnostic[] = [];
  if (isInt(raw.workers, 1, 1024) && typeof k8s.cpu === "string") {
    const cpus = workersUnderLimit(k8s.cpu);
    if (cpus < raw.workers) {
      diagnostics.push({
        path: at("cpu"),
        message:
          `gives a pod ${cpus} CPU${cpus === 1 ? "" : "s"} but "workers" is ${raw.workers}: ` +
          "the quota would throttle workers that wait for each other's time slices",
        got: k8s.cpu,
        hint: `set "cpu" to "${raw.workers}" or more, or "workers" to "auto" (one per CPU)`,
      });
    }
  }
  if (isInt(k8s.terminationGracePeriodSeconds, 1, 86400)) {
    const needed = graceSeconds(
      isInt(k8s.preStopSleepSeconds, 0, 3600)
        ? k8s.preStopSleepSeconds
        : DEFAULT_PRE_STOP_SLEEP_SECONDS,
      isInt(raw.shutdownDelayMs, 0, 3600000) ? raw.shutdownDelayMs : 0,
      isInt(raw.drainTimeoutMs, 0, 3600000) ? raw.drainTimeoutMs : DRAIN_TIMEOUT_DEFAULT_MS,
    );
    if (k8s.terminationGracePeriodSeconds < needed) {
      diagnostics.push({
        path: at("terminationGracePeriodSeconds"),
        message:
          `is shorter than the ${needed} s a pod needs to stop: preStopSleepSeconds, then ` +
          '"shutdownDelayMs" and "drainTimeoutMs", the kill grace (1 s) and a margin (5 s); ' +
          "the kubelet would kill the pod mid-drain",
        got: k8s.terminationGracePeriodSeconds,
        hint:
          `leave it out (computed: ${needed}), raise it to ${needed}, or lower ` +
          '"drainTimeoutMs" or "shutdownDelayMs"',
      });
    }
  }
  return diagnostics;
}

function viewListener(index: number, raw: Json): ListenerView {
  const protocol = raw.protocol === "tcp" || raw.protocol === "udp" ? raw.protocol : undefined;
  const ip = typeof raw.address === "string" ? parseIp(raw.address) : undefined;
  const port = isInt(raw.port, 1, 65535) ? raw.port : undefined;
  return { index, raw, protocol, ip, port };
}

function checkListenerOptions(l: ListenerView): Diagnostic[] {
  const diagnostics: Diagnostic[] = [];
  const at = (key: string) => ["listeners", l.index, key];
  if (l.protocol === "udp") {
    if (l.raw.handler === "http") {
      diagnostics.push({
        path: at("handler"),
        message:
          'is a tcp-only handler (HTTP needs a stream); a udp listener takes "echo", ' +
          '"whoami" or "custom"',
        got: l.raw.handler,
      });
    }
    for (const key of TCP_ONLY_KEYS) {
      if (key in l.raw) {
        diagnostics.push({
          path: at(key),
          message: "only applies to tcp listeners; remove it from this udp listener",
          got: l.raw[key],
        });
      }
    }
  }
  if ("v6Only" in l.raw && l.ip?.family === 4) {
    diagnostics.push({
      path: at("v6Only"),
      message: `only applies to IPv6 addresses; remove it (address is ${formatIp(l.ip)})`,
      got: l.raw.v6Only,
    });
  }
  const handler = l.raw.handler;
  if (l.raw.deferAccept === true && handler === "whoami") {
    diagnostics.push({
      path: at("deferAccept"),
      message:
        '"whoami" speaks first, so its clients send nothing until answered: a deferred accept ' +
        "would hold them in the kernel; remove deferAccept or set it to false",
      got: l.raw.deferAccept,
    });
  }
  if ("http" in l.raw && typeof handler === "string" && handler !== "http") {
    diagnostics.push({
      path: at("http"),
      message: `only applies when handler is "http" (handler is ${JSON.stringify(handler)})`,
      got: l.raw.http,
    });
  }
  return diagnostics;
}

function checkUniqueNames(listeners: readonly ListenerView[]): Diagnostic[] {
  const first = new Map<string, number>();
  const diagnostics: Diagnostic[] = [];
  for (const l of listeners) {
    const name = l.raw.name;
    if (typeof name !== "string") continue;
    const earlier = first.get(name);
    if (earlier === undefined) {
      first.set(name, l.index);
      continue;
    }
    diagnostics.push({
      path: ["listeners", l.index, "name"],
      message: `is already the name of listeners[${earlier}]; listener names must be unique`,
      got: name,
    });
  }
  return diagnostics;
}

function checkUniqueBindings(listeners: readonly ListenerView[]): Diagnostic[] {
  const first = new Map<string, ListenerView>();
  const diagnostics: Diagnostic[] = [];
  for (const l of listeners) {
    if (l.protocol === undefined || l.ip === undefined || l.port === undefined) continue;
    const key = `${l.protocol} ${formatIp(l.ip)} ${l.port}`;
    const earlier = first.get(key);
    if (earlier === undefined) {
      first.set(key, l);
      continue;
    }
    diagnostics.push({
      path: ["listeners", l.index],
      message:
        `${l.protocol} ${endpoint(l.ip, l.port)} is already bound by ` +
        `listeners[${earlier.index}]; each (protocol, address, port) must be unique`,
      got: l.raw.address,
    });
  }
  return diagnostics;
}

/**
 * `::` with v6Only false also receives IPv4 traffic, so it collides with IPv4 listeners of the
 * same protocol and port. Each listener is reported at most once, naming the first listener it
 * collides with: one pass with a map, so a spec of thousands of colliding listeners stays linear.
 */
function checkDualStack(listeners: readonly ListenerView[]): Diagnostic[] {
  const firstSix = new Map<string, ListenerView>();
  const firstFour = new Map<string, ListenerView>();
  const diagnostics: Diagnostic[] = [];
  for (const l of listeners) {
    if (l.ip === undefined || l.protocol === undefined || l.port === undefined) continue;
    const key = `${l.protocol} ${l.port}`;
    const isSix = isIpv6Wildcard(l.ip) && l.raw.v6Only === false;
    if (!isSix && l.ip.family !== 4) continue;
    const [mine, theirs] = isSix ? [firstSix, firstFour] : [firstFour, firstSix];
    if (!mine.has(key)) mine.set(key, l);
    const earlier = theirs.get(key);
    if (earlier === undefined) continue;
    const [six, four] = isSix ? [l, earlier] : [earlier, l];
    diagnostics.push({
      path: ["listeners", l.index],
      message:
        `${l.protocol} port ${l.port}: "::" with v6Only false (listeners[${six.index}]) ` +
        `also receives IPv4 and collides with ${formatIp(four.ip ?? l.ip)} ` +
        `(listeners[${four.index}]); set v6Only to true or use another port`,
      got: l.raw.address,
    });
  }
  return diagnostics;
}

function checkHttpFits(l: ListenerView, spec: Json): Diagnostic[] {
  if (l.raw.handler !== "http") return [];
  const http = l.raw.http === undefined ? {} : l.raw.http;
  if (!isObject(http)) return [];
  const body = http.body === undefined ? DEFAULTS.httpBody : http.body;
  const contentType = http.contentType === undefined ? DEFAULTS.httpContentType : http.contentType;
  const writeBufferBytes =
    spec.writeBufferBytes === undefined ? DEFAULTS.writeBufferBytes : spec.writeBufferBytes;
  if (typeof body !== "string" || typeof contentType !== "string") return [];
  if (!isInt(writeBufferBytes, 512, 1048576)) return [];
  const bodyBytes = Buffer.byteLength(body, "utf8");
  const name = typeof spec.name === "string" ? spec.name : "";
  const headerBytes = httpResponseHeaderBytes(name, contentType, bodyBytes);
  const total = bodyBytes + headerBytes;
  if (total <= writeBufferBytes) return [];
  return [
    {
      path: ["listeners", l.index, "http", "body"],
      message:
        `a response of ${bodyBytes} body bytes + ${headerBytes} header bytes = ${total} bytes ` +
        `does not fit in writeBufferBytes (${writeBufferBytes}); shorten the body or raise ` +
        `writeBufferBytes to at least ${total}`,
      got: body,
    },
  ];
}

/**
 * Names a module file declares besides its routes (its state and optional hooks): a route
 * with one of these names would collide with them.
 */
export const MODULE_RESERVED_NAMES: ReadonlySet<string> = new Set([
  "State", "Connection", "init", "deinit", "drain", "errorStatus", "access", "tick", "tick_ms",
  "routerError", "std", "http",
]);

/** Declarations of `src/handlers/app.zig` that a module's constant would collide with. */
export const GLUE_RESERVED_NAMES: ReadonlySet<string> = new Set([
  "std", "api", "http", "init", "deinit", "drain",
]);

function checkApp(l: ListenerView): Diagnostic[] {
  const at = (...keys: (string | number)[]) => ["listeners", l.index, ...keys];
  const handler = l.raw.handler;
  const app = l.raw.app;
  if (handler === "app" && app === undefined) {
    return [{ path: at("handler"), message: 'needs an "app" object naming the module' }];
  }
  if (app === undefined) return [];
  if (typeof handler === "string" && handler !== "app") {
    return [
      {
        path: at("app"),
        message: `only applies when handler is "app" (handler is ${JSON.stringify(handler)})`,
        got: app,
      },
    ];
  }
  if (!isObject(app)) return [];
  const diagnostics: Diagnostic[] = [];
  if (
    typeof app.module === "string" &&
    (ZIG_KEYWORDS.has(app.module) || GLUE_RESERVED_NAMES.has(app.module))
  ) {
    diagnostics.push({
      path: at("app", "module"),
      message:
        "is a Zig keyword or a name the generated glue (src/handlers/app.zig) uses; choose " +
        "another module name",
      got: app.module,
    });
  }
  const kinds = ["http", "stream", "datagram"].filter((k) => k in app);
  if (kinds.length !== 1) {
    diagnostics.push({
      path: at("app"),
      message:
        kinds.length === 0
          ? 'needs one module kind: "http", "stream" or "datagram"'
          : `has ${kinds.map((k) => JSON.stringify(k)).join(" and ")}; a module is of one kind`,
    });
  }
  for (const kind of ["http", "stream"]) {
    if (kind in app && l.protocol === "udp") {
      diagnostics.push({
        path: at("app", kind),
        message: `is a tcp-only module kind; this listener is udp (use "datagram")`,
      });
    }
  }
  if ("datagram" in app && l.protocol === "tcp") {
    diagnostics.push({
      path: at("app", "datagram"),
      message: 'is a udp-only module kind; this listener is tcp (use "http" or "stream")',
    });
  }
  if (isObject(app.http) && Array.isArray(app.http.routes)) {
    diagnostics.push(...checkRoutes(app.http.routes, at("app", "http", "routes")));
  }
  return diagnostics;
}

function checkRoutes(routes: unknown[], at: (string | number)[]): Diagnostic[] {
  const diagnostics: Diagnostic[] = [];
  const names = new Map<string, number>();
  const shapes = new Map<string, number>();
  for (const [i, route] of routes.entries()) {
    if (!isObject(route)) continue;
    const { name, method, path } = route;
    if (typeof name === "string") {
      const earlier = names.get(name);
      if (earlier !== undefined) {
        diagnostics.push({
          path: [...at, i, "name"],
          message: `is already the name of routes[${earlier}]; route names must be unique`,
          got: name,
        });
      } else names.set(name, i);
      if (ZIG_KEYWORDS.has(name) || MODULE_RESERVED_NAMES.has(name)) {
        diagnostics.push({
          path: [...at, i, "name"],
          message: "is a Zig keyword or a name the module uses for itself; choose another",
          got: name,
        });
      }
    }
    if (typeof path !== "string" || typeof method !== "string") continue;
    const params = path.split("/").filter((s) => s.startsWith(":") || s.startsWith("*"));
    const seen = new Set<string>();
    for (const p of params) {
      if (seen.has(p.slice(1))) {
        diagnostics.push({
          path: [...at, i, "path"],
          message: `names the parameter ${JSON.stringify(p.slice(1))} twice`,
          got: path,
        });
      }
      seen.add(p.slice(1));
    }
    // Two routes that match the same requests: the second could never answer.
    const shape = `${method} ${path.replace(/:[A-Za-z0-9_]+/g, ":").replace(/\*.*$/, "*")}`;
    const earlier = shapes.get(shape);
    if (earlier !== undefined) {
      diagnostics.push({
        path: [...at, i, "path"],
        message: `matches the same requests as routes[${earlier}] (${method}); remove one`,
        got: path,
      });
    } else shapes.set(shape, i);
  }
  return diagnostics;
}

/**
 * A frame must fit where it is handed over whole: the connection's read buffer, or a frame
 * buffer of maxFrameBytes; and a frame buffer must be larger than the read buffer.
 */
function checkFramingFits(l: ListenerView, spec: Json): Diagnostic[] {
  const app = l.raw.app;
  if (!isObject(app) || !isObject(app.stream)) return [];
  const readBufferBytes = spec.readBufferBytes === undefined ? 16384 : spec.readBufferBytes;
  if (!isInt(readBufferBytes, 512, 1048576)) return [];
  const maxFrameBytes = app.stream.maxFrameBytes === undefined ? 0 : app.stream.maxFrameBytes;
  if (!isInt(maxFrameBytes, 0, 1073741824)) return [];
  const at = ["listeners", l.index, "app", "stream"];
  if (maxFrameBytes > 0 && maxFrameBytes <= readBufferBytes) {
    return [
      {
        path: [...at, "maxFrameBytes"],
        message:
          `must be 0 or more than readBufferBytes (${readBufferBytes}): a frame that fits the ` +
          "read buffer needs no frame buffer; remove maxFrameBytes or raise it",
        got: maxFrameBytes,
      },
    ];
  }
  const framing = app.stream.framing;
  if (!isObject(framing)) return [];
  const room = Math.max(readBufferBytes, maxFrameBytes);
  const where =
    maxFrameBytes > 0 ? `maxFrameBytes (${maxFrameBytes})` : `readBufferBytes (${readBufferBytes})`;
  let need: number | undefined;
  let key = "";
  if (isObject(framing.line)) {
    const max = framing.line.maxBytes === undefined ? 4096 : framing.line.maxBytes;
    if (isInt(max, 1, 1048576)) need = max + 2;
    key = "line";
  } else if (isObject(framing.length)) {
    const max = framing.length.maxBytes === undefined ? 8192 : framing.length.maxBytes;
    const bytes = framing.length.bytes === undefined ? 4 : framing.length.bytes;
    const validBytes = bytes === 1 || bytes === 2 || bytes === 4 || bytes === 8;
    if (isInt(max, 0, 1073741824) && validBytes) need = max + bytes;
    key = "length";
  }
  if (need === undefined || need <= room) return [];
  return [
    {
      path: [...at, "framing", key, "maxBytes"],
      message:
        `a largest frame of ${need} bytes (with its ${key === "line" ? "line ending" : "prefix"}) ` +
        `does not fit in ${where}; lower maxBytes, or raise readBufferBytes or ` +
        `app.stream.maxFrameBytes to at least ${need}`,
    },
  ];
}

/** Listeners may share a module only when they agree on what it is. */
function checkSharedModules(listeners: readonly ListenerView[]): Diagnostic[] {
  const first = new Map<string, { index: number; config: string }>();
  const diagnostics: Diagnostic[] = [];
  for (const l of listeners) {
    if (l.raw.handler !== "app" || !isObject(l.raw.app)) continue;
    const { module, ...rest } = l.raw.app;
    if (typeof module !== "string") continue;
    const config = canonical(rest);
    const earlier = first.get(module);
    if (earlier === undefined) {
      first.set(module, { index: l.index, config });
      continue;
    }
    if (earlier.config === config) continue;
    diagnostics.push({
      path: ["listeners", l.index, "app"],
      message:
        `uses module ${JSON.stringify(module)} like listeners[${earlier.index}] but configures ` +
        "it differently; listeners that share a module must give it the same kind and settings",
    });
  }
  return diagnostics;
}

function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (isObject(value)) {
    const keys = Object.keys(value).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`).join(",")}}`;
  }
  return JSON.stringify(value) ?? "null";
}

function endpoint(ip: IpAddress, port: number): string {
  return ip.family === 6 ? `[${formatIp(ip)}]:${port}` : `${formatIp(ip)}:${port}`;
}

function isObject(value: unknown): value is Json {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isInt(value: unknown, min: number, max: number): value is number {
  return typeof value === "number" && Number.isInteger(value) && value >= min && value <= max;
}

/**
 * The admin listener is a TCP socket of its own, without SO_REUSEPORT: a TCP listener on the
 * same port whose address overlaps it (the same address, or a wildcard covering the other)
 * would make one of the two binds fail at start, or worse, share the port by accident.
 */
function checkAdminPort(spec: Json, listeners: readonly ListenerView[]): Diagnostic[] {
  const admin = spec.admin;
  if (!isObject(admin) || !isInt(admin.port, 1, 65535)) return [];
  const text = admin.address === undefined ? "127.0.0.1" : admin.address;
  const ip = typeof text === "string" ? parseIp(text) : undefined;
  if (ip === undefined) return [];
  const clash = listeners.find(
    (l) =>
      l.protocol === "tcp" && l.port === admin.port && l.ip !== undefined &&
      addressesOverlap(ip, l.ip),
  );
  if (clash === undefined || clash.ip === undefined) return [];
  return [
    {
      path: ["admin", "port"],
      message:
        `collides with listeners[${clash.index}] (tcp ${endpoint(clash.ip, clash.port ?? 0)}); ` +
        "give the admin listener a port no TCP listener uses on an overlapping address",
      got: admin.port,
    },
  ];
}

/** Two binds of one port collide: same address, or a wildcard that covers the other one. */
function addressesOverlap(a: IpAddress, b: IpAddress): boolean {
  if (formatIp(a) === formatIp(b)) return true;
  const wildcard = (ip: IpAddress) => ip.bytes.every((x) => x === 0);
  // "::" may be dual-stack: it is taken to cover IPv4 too.
  if (isIpv6Wildcard(a) || isIpv6Wildcard(b)) return true;
  return a.family === b.family && (wildcard(a) || wildcard(b));
}
