/**
 * The spec's shape as a zod schema: types, ranges, defaults and the message that says what is
 * allowed for each field. Rules that relate fields to each other live in `rules.ts`.
 */
import { z } from "zod";
import { DEFAULT_MINIMUM_ZIG, SUPPORTED_ZIG } from "../zig-facts.js";
import { parseIp } from "./address.js";
import { UpstreamSchema } from "./upstream.js";
import { ProxySchema } from "./proxy.js";

/** An integer in `[min, max]`; every failure says the same thing: what is allowed. */
function intRange(min: number, max: number, error = `must be an integer from ${min} to ${max}`) {
  return z.int({ error }).min(min, { error }).max(max, { error });
}

function oneOf<const T extends readonly [string, ...string[]]>(values: T) {
  const error = `must be one of ${values.map((v) => JSON.stringify(v)).join(", ")}`;
  return z.enum(values, { error });
}

function bool() {
  return z.boolean({ error: "must be true or false" });
}

const utf8 = new TextEncoder();

/** Largest uid or gid: 2^32 - 1 means "unchanged" to the kernel, never an id. */
export const MAX_ACCOUNT_ID = 4294967294;

/** A user or group: a name as /etc/passwd and /etc/group hold them, or a numeric id. */
function account(kind: "user" | "group") {
  const error =
    `must be a ${kind} name (up to 32 letters, digits, "_", "-" or ".", not starting with ` +
    `"-" or ".") or a numeric id from 0 to ${MAX_ACCOUNT_ID}`;
  const name = z
    .string({ error })
    .regex(/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}$/, { error })
    .refine((s) => !/^[0-9]+$/.test(s) || Number(s) <= MAX_ACCOUNT_ID, { error });
  return z.union([intRange(0, MAX_ACCOUNT_ID, error), name], { error });
}

/** Defaults that other stages need too (the rules and the model), stated once. */
export const DEFAULTS = {
  httpBody: "OK\n",
  httpContentType: "text/plain; charset=utf-8",
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
  frameBuffers: 4,
  udpBatch: 32,
} as const;

/** Bytes of one chunk of a worker's output pool (templates/src/worker/output_pool.zig). */
export const OUTPUT_CHUNK_BYTES = 65536;

export const LIMITS = {
  httpBodyBytes: 65536,
} as const;

/** The longest `accessLog.path` (Linux's PATH_MAX, its terminating NUL left out). */
export const ACCESS_LOG_PATH_MAX = 4095;

export const AccessLogSchema = z
  .strictObject(
    {
      path: z
        .string({ error: 'must be a string: "-" (standard output) or a file path' })
        .refine((s) => s.length > 0 && utf8.encode(s).length <= ACCESS_LOG_PATH_MAX, {
          error:
            `must be "-" (standard output) or a file path of 1 to ${ACCESS_LOG_PATH_MAX} ` +
            "bytes",
        })
        .refine((s) => !/[\u0000-\u001f\u007f]/.test(s), {
          error: "must not contain control characters (NUL, newline, tab, …)",
        })
        .refine((s) => s === "-" || !s.endsWith("/"), {
          error: "must name a file, not a directory (it ends in /)",
        })
        .describe(
          'Where request lines go: "-" for standard output (beside the JSON events), or a file ' +
            "on the target machine, opened for appending (created if missing; its directory " +
            "must exist when the program starts). Relative paths are taken from the working " +
            "directory of the program.",
        ),
      format: oneOf(["json", "combined"] as const)
        .default("json")
        .describe(
          'Line format: "json" (one JSON object per line) or "combined" (the Apache/nginx ' +
            "combined format followed by the extra fields).",
        ),
    },
    { error: 'must be an object { path, format }, e.g. { "path": "-", "format": "json" }' },
  )
  .describe("The request log: one line per HTTP request (docs/operating.md, Request log).");

export const KeepaliveSchema = z
  .strictObject(
    {
      idleSeconds: intRange(1, 32767)
        .default(60)
        .describe("Seconds a connection is idle before the first probe (TCP_KEEPIDLE)."),
      intervalSeconds: intRange(1, 32767)
        .default(10)
        .describe("Seconds between probes (TCP_KEEPINTVL)."),
      probes: intRange(1, 127)
        .default(6)
        .describe("Unanswered probes before the connection is dropped (TCP_KEEPCNT)."),
    },
    { error: "must be false or an object { idleSeconds, intervalSeconds, probes }" },
  )
  .describe("TCP keepalive settings.");

export const HttpSchema = z
  .strictObject(
    {
      body: z
        .string({ error: "must be a string" })
        .refine((s) => utf8.encode(s).length <= LIMITS.httpBodyBytes, {
          error: `must be at most ${LIMITS.httpBodyBytes} bytes of UTF-8`,
        })
        .default(DEFAULTS.httpBody)
        .describe(
          `Response body of every request, at most ${LIMITS.httpBodyBytes} bytes of UTF-8.`,
        ),
      contentType: z
        .string({ error: "must be a string" })
        .regex(/^[\x20-\x7e]{1,256}$/, {
          error: "must be 1 to 256 printable ASCII characters (no control characters or CR/LF)",
        })
        .default(DEFAULTS.httpContentType)
        .describe("Content-Type header of every response."),
    },
    { error: "must be an object { body, contentType }" },
  )
  .describe('Response of the "http" handler (only when handler is "http").');

/** HTTP methods a route may name; HEAD is also answered from a GET route without its body. */
export const ROUTE_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"] as const;

/**
 * A route path: `/`, or `/`-separated segments, each a literal (RFC 3986 path characters, no
 * `%`), a `:param`, or, last only, a `*rest` that takes the rest of the path.
 */
export const ROUTE_PATH =
  /^\/$|^(\/([A-Za-z0-9._~!$&'()+,;=@-]+|:[a-z][A-Za-z0-9_]{0,62}))*(\/\*[a-z][A-Za-z0-9_]{0,62})?$/;

export const RouteSchema = z
  .strictObject(
    {
      name: z
        .string({ error: "must be a string" })
        .regex(/^[a-z][A-Za-z0-9_]{0,62}$/, {
          error:
            "must be a Zig function name: a lowercase letter followed by up to 62 letters, " +
            "digits or underscores",
        })
        .describe("The route's function in the module (camelCase, e.g. getNote)."),
      method: oneOf(ROUTE_METHODS).describe("HTTP method."),
      path: z
        .string({ error: "must be a string" })
        .max(1024, { error: "must be at most 1024 characters" })
        .regex(ROUTE_PATH, {
          error:
            'must be "/" or /-separated segments: literals, :param, and an optional last ' +
            '*rest, e.g. "/notes/:id" or "/files/*path"',
        })
        .describe('Path with :param segments and an optional trailing *rest: "/notes/:id".'),
    },
    { error: "must be a route object { name, method, path }" },
  )
  .describe("One route: the module function that answers a method and path.");

export const AppHttpSchema = z
  .strictObject(
    {
      routes: z
        .array(RouteSchema, { error: "must be an array of route objects" })
        .min(1, { error: "must list at least 1 route" })
        .max(256, { error: "must list at most 256 routes" })
        .describe("Routes, matched in this order (1 to 256)."),
      bodyBuffers: intRange(0, 4096)
        .default(0)
        .describe(
          "Buffers of maxBodyBytes per worker for request bodies that outgrow the read buffer " +
            "(reserved at start, backed once used): up to this many such bodies at once per " +
            "worker, one more gets 503. 0: a body must fit in the read buffer beside its head.",
        ),
    },
    { error: "must be an object { routes, bodyBuffers }" },
  )
  .describe("An HTTP module: the generated router calls one function per route.");

export const LineFramingSchema = z
  .strictObject(
    {
      maxBytes: intRange(1, 1048576)
        .default(4096)
        .describe("Longest line without its line ending; longer closes the connection."),
    },
    { error: "must be an object { maxBytes }" },
  )
  .describe("Frames are lines ending in LF (a CR before it is dropped too).");

export const LengthFramingSchema = z
  .strictObject(
    {
      bytes: z
        .union([z.literal(1), z.literal(2), z.literal(4), z.literal(8)], {
          error: "must be 1, 2, 4 or 8",
        })
        .default(4)
        .describe("Bytes of the length prefix."),
      endian: oneOf(["big", "little"]).default("big").describe("Byte order of the prefix."),
      maxBytes: intRange(0, 1073741824)
        .default(8192)
        .describe("Largest payload; larger closes the connection."),
    },
    { error: "must be an object { bytes, endian, maxBytes }" },
  )
  .describe("Frames are a length prefix and that many payload bytes.");

export const StreamSchema = z
  .strictObject(
    {
      framing: z
        .union(
          [
            z.literal("raw"),
            z.strictObject({ line: LineFramingSchema }),
            z.strictObject({ length: LengthFramingSchema }),
          ],
          {
            error:
              'must be "raw", { "line": { maxBytes } } or { "length": { bytes, endian, ' +
              "maxBytes } }",
          },
        )
        .default("raw")
        .describe("How the byte stream is cut into frames before the module sees them."),
      maxFrameBytes: intRange(0, 1073741824)
        .default(0)
        .describe(
          "Largest frame (raw framing: the most input the module is handed at once) when it is " +
            "more than readBufferBytes: such a frame is gathered in a frame buffer. 0: the read " +
            "buffer bounds a frame.",
        ),
      frameBuffers: intRange(1, 4096)
        .default(DEFAULTS.frameBuffers)
        .describe(
          "Frame buffers of maxFrameBytes per worker (reserved at start, backed once used): " +
            "frames larger than the read buffer gathered at once; one more is refused as too " +
            "large. Unused when maxFrameBytes is 0.",
        ),
    },
    { error: "must be an object { framing, maxFrameBytes, frameBuffers }" },
  )
  .describe("A TCP stream module: callbacks on open, frame (or bytes), writable, close.");

export const DatagramSchema = z
  .strictObject({}, { error: "must be an object {}" })
  .describe("A UDP datagram module: one callback per datagram, with the peer address.");

export const AppSchema = z
  .strictObject(
    {
      module: z
        .string({ error: "must be a string" })
        .regex(/^[a-z][a-z0-9_]{0,62}$/, {
          error:
            "must start with a lowercase letter followed by up to 62 lowercase letters, " +
            "digits or underscores",
        })
        .describe("Module name: the user-owned file src/app/<module>.zig."),
      scratchBytes: intRange(0, 67108864)
        .default(65536)
        .describe("Per-request scratch memory per worker, reserved at start, reset per request."),
      http: AppHttpSchema.optional(),
      stream: StreamSchema.optional(),
      datagram: DatagramSchema.optional(),
    },
    { error: "must be an object { module, http | stream | datagram }" },
  )
  .describe('The application module of a listener whose handler is "app".');

export const ListenerSchema = z
  .strictObject(
    {
      name: z
        .string({ error: "must be a string" })
        .regex(/^[a-z][a-z0-9_]{0,62}$/, {
          error:
            "must start with a lowercase letter followed by up to 62 lowercase letters, digits " +
            "or underscores",
        })
        .describe("Listener name, unique in the spec (used in logs and --listen NAME=HOST:PORT)."),
      protocol: oneOf(["tcp", "udp"]).describe("Transport protocol."),
      address: z
        .string({ error: "must be a string" })
        .refine((s) => parseIp(s) !== undefined, {
          error:
            'must be an IPv4 or IPv6 address literal such as "0.0.0.0", "127.0.0.1", "::" or ' +
            '"::1" (no brackets, no zone id, no host names)',
        })
        .describe('IPv4 or IPv6 address literal to bind: "0.0.0.0", "::", "127.0.0.1", "::1", …'),
      port: intRange(1, 65535).describe("Port to bind, shared by every worker with SO_REUSEPORT."),
      handler: oneOf(["echo", "http", "whoami", "custom", "app", "proxy"]).describe(
        "What the listener does with traffic.",
      ),
      backlog: intRange(1, 65535).default(511).describe("listen() backlog (tcp only)."),
      reuseAddress: bool().default(true).describe("Set SO_REUSEADDR before bind."),
      v6Only: bool()
        .default(true)
        .describe('Set IPV6_V6ONLY (IPv6 addresses only); false makes "::" dual-stack.'),
      noDelay: bool().default(true).describe("Set TCP_NODELAY on accepted connections (tcp only)."),
      deferAccept: bool()
        .optional()
        .describe(
          "Set TCP_DEFER_ACCEPT: a connection reaches the worker with its first bytes, not before " +
            '(tcp only; default true for HTTP listeners, false otherwise; never for "whoami", ' +
            "which speaks first).",
        ),
      recvBufferBytes: intRange(4096, 67108864)
        .optional()
        .describe("SO_RCVBUF in bytes; absent keeps the kernel default."),
      sendBufferBytes: intRange(4096, 67108864)
        .optional()
        .describe("SO_SNDBUF in bytes; absent keeps the kernel default."),
      keepalive: z
        .union([z.literal(false), KeepaliveSchema], {
          error: "must be false or an object { idleSeconds, intervalSeconds, probes }",
        })
        .default(false)
        .describe("TCP keepalive on accepted connections: false, or its settings (tcp only)."),
      http: HttpSchema.optional(),
      app: AppSchema.optional(),
      proxy: ProxySchema.optional(),
    },
    { error: "must be a listener object { name, protocol, address, port, handler, … }" },
  )
  .describe("One listening socket per worker, bound with SO_REUSEPORT.");

export const AdminSchema = z
  .strictObject(
    {
      address: z
        .string({ error: "must be a string" })
        .refine((s) => parseIp(s) !== undefined, {
          error:
            'must be an IPv4 or IPv6 address literal such as "127.0.0.1" or "::1" (no ' +
            "brackets, no zone id, no host names)",
        })
        .default("127.0.0.1")
        .describe('Address the admin listener binds: "127.0.0.1" (default), "::1", "0.0.0.0", …'),
      port: intRange(1, 65535).describe(
        "TCP port of the admin listener; it may not collide with a TCP listener's.",
      ),
    },
    { error: 'must be an object { "address": "127.0.0.1", "port": 9901 }' },
  )
  .describe(
    "The admin listener: /metrics, /healthz, /readyz and /status over HTTP, served by the " +
      "supervisor (by the process itself with --standalone), never by a worker.",
  );
/** A Kubernetes CPU quantity: cores ("2", "0.5") or millicores ("500m"). */
const CPU_QUANTITY = /^(?:[1-9][0-9]{0,3}(?:\.[0-9]{1,3})?|0\.[0-9]{1,3}|[1-9][0-9]{0,6}m)$/;
/** A Kubernetes memory quantity in bytes or with a binary or decimal suffix ("512Mi", "1G"). */
const MEMORY_QUANTITY = /^[1-9][0-9]{0,12}(?:Ki|Mi|Gi|Ti|k|M|G|T)?$/;
/** An RFC 1123 DNS label, as Kubernetes namespaces are. */
const DNS_LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
/** An OCI image reference: [registry[:port]/]path[:tag][@digest], lowercase path. */
const IMAGE_REFERENCE = new RegExp(
  [
    "^(?:[a-zA-Z0-9.-]+(?::[0-9]{1,5})?/)?", // registry[:port]/
    "[a-z0-9]+(?:[._-]+[a-z0-9]+)*(?:/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*", // path
    "(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?", // :tag
    "(?:@sha256:[a-f0-9]{64})?$", // @digest
  ].join(""),
);

export const KubernetesSchema = z
  .strictObject(
    {
      replicas: intRange(1, 10000)
        .optional()
        .describe(`Pods of the Deployment (default ${2}); each pod is one reuseport group.`),
      image: z
        .string({ error: "must be a string" })
        .max(255, { error: "must be an image reference of at most 255 characters" })
        .regex(IMAGE_REFERENCE, {
          error: 'must be an image reference such as "registry.example.com/team/edge:1.2.3"',
        })
        .optional()
        .describe('The image the Deployment runs (default "<name>:<version>").'),
      namespace: z
        .string({ error: "must be a string" })
        .regex(DNS_LABEL, {
          error: "must be a DNS label: up to 63 lowercase letters, digits or hyphens",
        })
        .optional()
        .describe("Namespace set by kustomization.yaml (default: none, kubectl's current)."),
      cpu: z
        .string({ error: 'must be a string such as "2" or "500m"' })
        .regex(CPU_QUANTITY, { error: 'must be a CPU quantity such as "2", "0.5" or "500m"' })
        .optional()
        .describe(
          "CPU request and limit of a pod (default: the worker count, or 2 with \"auto\" " +
            "workers, which then start one worker per CPU of the limit).",
        ),
      memory: z
        .string({ error: 'must be a string such as "512Mi"' })
        .regex(MEMORY_QUANTITY, { error: 'must be a memory quantity such as "512Mi" or "1Gi"' })
        .optional()
        .describe('Memory request and limit of a pod (default "512Mi").'),
      preStopSleepSeconds: intRange(0, 3600)
        .optional()
        .describe(
          "Seconds a terminating pod keeps serving before it gets SIGTERM, while the " +
            "endpoints controller removes it (the preStop sleep action, Kubernetes 1.30+; " +
            "default 5; 0: none, for older clusters).",
        ),
      terminationGracePeriodSeconds: intRange(1, 86400)
        .optional()
        .describe(
          "Override of the computed grace period (preStop sleep, shutdownDelayMs, " +
            "drainTimeoutMs, kill grace and a margin); shorter than that is an error.",
        ),
    },
    { error: "must be an object" },
  )
  .describe("Kubernetes manifests under deploy/kubernetes/.");

export const DeploySchema = z
  .strictObject(
    {
      source: z
        .string({ error: "must be a string" })
        .max(2048, { error: "must be a URL of at most 2048 characters" })
        .regex(/^https?:\/\/[^\s"'\\$]+$/, {
          error: 'must be an http(s) URL such as "https://github.com/team/edge"',
        })
        .optional()
        .describe("Where the source lives: the image's org.opencontainers.image.source label."),
      kubernetes: KubernetesSchema.optional(),
    },
    { error: "must be an object" },
  )
  .describe("The container image recipe and Kubernetes manifests under deploy/.");

export const SpecSchema = z
  .strictObject(
    {
      $schema: z.string({ error: "must be a string" }).optional().describe("Ignored."),
      name: z
        .string({ error: "must be a string" })
        .regex(/^[a-z][a-z0-9-]{0,62}$/, {
          error:
            "must start with a lowercase letter followed by up to 62 lowercase letters, digits " +
            "or hyphens",
        })
        .describe("Service name: binary, Zig package and default output directory name."),
      version: z
        .string({ error: "must be a string" })
        .regex(/^(0|[1-9]\d{0,8})\.(0|[1-9]\d{0,8})\.(0|[1-9]\d{0,8})$/, {
          error: 'must be a version "MAJOR.MINOR.PATCH" such as "1.2.3"',
        })
        .default("0.1.0")
        .describe("Service version (semver MAJOR.MINOR.PATCH)."),
      workers: z
        .union(
          [intRange(1, 1024, 'must be an integer from 1 to 1024 or "auto"'), z.literal("auto")],
          {
            error: 'must be an integer from 1 to 1024 or "auto"',
          },
        )
        .default("auto")
        .describe(
          'Worker processes: a count, or "auto" for one per CPU the service may use ' +
            "(online CPUs, affinity mask and cgroup CPU quota, whichever is smallest).",
        ),
      zig: oneOf(SUPPORTED_ZIG)
        .optional()
        .describe(
          `Oldest Zig release the generated code must build with (default ${DEFAULT_MINIMUM_ZIG}).`,
        ),
      drainTimeoutMs: intRange(0, 3600000)
        .default(10000)
        .describe("Milliseconds a stopping worker may spend finishing in-flight work."),
      readyTimeoutMs: intRange(100, 3600000)
        .default(10000)
        .describe(
          "Milliseconds new workers may take to report ready (their application's init " +
            "included) before their generation is abandoned; an upgrade's new program gets 5 s more.",
        ),
      maxConnections: intRange(1, 1048576)
        .default(1024)
        .describe("Open TCP connections per worker."),
      readBufferBytes: intRange(512, 1048576)
        .default(16384)
        .describe("Read buffer per TCP connection: the largest request (head and body) a handler can see at once."),
      writeBufferBytes: intRange(512, 1048576)
        .default(DEFAULTS.writeBufferBytes)
        .describe("Write buffer per connection."),
      headerTimeoutMs: intRange(1, 3600000)
        .default(DEFAULTS.headerTimeoutMs)
        .describe(
          "Milliseconds a client has to send a complete request head, from its first byte (or " +
            "the end of the previous response); partial reads do not extend it.",
        ),
      bodyTimeoutMs: intRange(1, 3600000)
        .default(DEFAULTS.bodyTimeoutMs)
        .describe("Milliseconds a request body may go without a byte arriving."),
      requestTimeoutMs: intRange(0, 3600000)
        .default(DEFAULTS.requestTimeoutMs)
        .describe(
          "Milliseconds a whole request (head and body) may take from its first byte, however " +
            "steadily its bytes trickle in (HTTP answers 408); 0: no whole-request deadline.",
        ),
      idleTimeoutMs: intRange(1, 86400000)
        .default(DEFAULTS.idleTimeoutMs)
        .describe(
          "Milliseconds a keep-alive or stream connection with nothing in flight stays open.",
        ),
      writeTimeoutMs: intRange(1, 3600000)
        .default(DEFAULTS.writeTimeoutMs)
        .describe("Milliseconds a connection may go without write progress (a client that does not read)."),
      watchdogMs: intRange(0, 600000)
        .default(DEFAULTS.watchdogMs)
        .refine((ms) => ms === 0 || ms >= 200, { error: "must be 0 (off) or from 200 to 600000" })
        .describe(
          "Milliseconds a worker's loop may go without reporting before it is killed and " +
            "replaced (0: no watchdog).",
        ),
      maxBodyBytes: intRange(0, 1099511627776)
        .default(DEFAULTS.maxBodyBytes)
        .describe("Largest request body an HTTP listener accepts (413 above it)."),
      outputLimitBytes: intRange(1, 1099511627776)
        .default(DEFAULTS.outputLimitBytes)
        .describe(
          "Output per TCP connection that may wait for its client beyond the write buffer (in " +
            "the worker's output pool) while its input is read on; a connection that asks for " +
            "more is closed (Redis's client-output-buffer-limit).",
        ),
      outputPoolBytes: intRange(0, 1099511627776)
        .default(DEFAULTS.outputPoolBytes)
        .refine((n) => n === 0 || n >= OUTPUT_CHUNK_BYTES, {
          error: `must be 0 (no pool) or from ${OUTPUT_CHUNK_BYTES} to 1099511627776`,
        })
        .describe(
          `Output pool per worker, in chunks of ${OUTPUT_CHUNK_BYTES} bytes (reserved at start, ` +
            "backed once used): output of its connections that waits beyond their write " +
            "buffers. Once it is spent, connections whose output waits are not read " +
            "(back-pressure). 0: a connection is not read while its write buffer waits.",
        ),
      udpBatch: intRange(1, 256)
        .default(DEFAULTS.udpBatch)
        .describe(
          "Datagrams a worker moves per system call on its UDP listeners (recvmmsg and " +
            "sendmmsg), with a buffer of 65536 bytes each way per datagram reserved at start. " +
            "A datagram never waits for a batch to fill. 1: one datagram per call.",
        ),
      user: account("user")
        .optional()
        .describe(
          "User the workers run as (a name or a numeric uid): started as root, each worker " +
            "drops to it once it has its sockets; the supervisor stays root. Resolved at start " +
            "from /etc/passwd. Overridden by --user.",
        ),
      group: account("group")
        .optional()
        .describe(
          "Group the workers run as (a name or a numeric gid), with \"user\"; default: the " +
            "user's primary group. Resolved at start from /etc/group. Overridden by --group.",
        ),
      shutdownDelayMs: intRange(0, 3600000)
        .default(0)
        .describe(
          "Milliseconds a graceful stop (SIGTERM) keeps accepting and serving after /readyz " +
            "turned 503, before the drain: time for load balancers to stop sending traffic.",
        ),
      io: oneOf(["epoll", "io_uring"] as const)
        .default("epoll")
        .describe(
          "How workers wait for and move socket bytes: \"epoll\" (readiness, then read and " +
            "send), or \"io_uring\" (multishot accept and receive into a ring of provided " +
            "buffers for TCP listeners and their connections, the proxy's pairs included, " +
            "zeroCopy ones excepted; multishot recvmsg for UDP listeners). A worker whose " +
            "kernel, seccomp profile or kernel.io_uring_disabled refuses io_uring serves " +
            "with epoll and says " +
            "so (an io_fallback event). --io overrides it.",
        ),
      cpuAffinity: bool()
        .default(false)
        .describe(
          "Pin worker slot i to the (i mod n)-th of the n CPUs the service may run on, and " +
            "steer each new connection or datagram to a worker pinned to the CPU that " +
            "received it (classic BPF on each reuseport group). --cpu-affinity and " +
            "--no-cpu-affinity override it.",
        ),
      admin: AdminSchema.optional(),
      accessLog: AccessLogSchema.optional().describe(
        "The request log of HTTP listeners (built-in and app); absent: no request log.",
      ),
      listeners: z
        .array(ListenerSchema, { error: "must be an array of listener objects" })
        .min(1, { error: "must list at least 1 listener" })
        .max(64, { error: "must list at most 64 listeners" })
        .describe("Listening sockets (1 to 64)."),
      upstreams: z
        .array(UpstreamSchema, { error: "must be an array of upstream objects" })
        .max(64, { error: "must list at most 64 upstreams" })
        .default([])
        .describe("Services the app modules call and proxies forward to (docs/spec.md#upstreams)."),
      deploy: DeploySchema.optional(),
    },
    { error: "must be a JSON object" },
  )
  .describe("A gen-reuseport service spec.");

/** A valid spec with every default applied. */
export type Spec = z.output<typeof SpecSchema>;
export type ListenerSpec = Spec["listeners"][number];
/** What a spec file may contain (defaults not yet applied). */
export type SpecInput = z.input<typeof SpecSchema>;

/** The keys each object of the spec allows, for "did you mean" hints. */
export const ALLOWED_KEYS = {
  spec: Object.keys(SpecSchema.shape),
  admin: Object.keys(AdminSchema.shape),
  listener: Object.keys(ListenerSchema.shape),
  keepalive: Object.keys(KeepaliveSchema.shape),
  http: Object.keys(HttpSchema.shape),
  app: Object.keys(AppSchema.shape),
  appHttp: Object.keys(AppHttpSchema.shape),
  route: Object.keys(RouteSchema.shape),
  stream: Object.keys(StreamSchema.shape),
  line: Object.keys(LineFramingSchema.shape),
  length: Object.keys(LengthFramingSchema.shape),
  upstream: Object.keys(UpstreamSchema.shape),
  proxy: Object.keys(ProxySchema.shape),
  deploy: Object.keys(DeploySchema.shape),
  kubernetes: Object.keys(KubernetesSchema.shape),
  accessLog: Object.keys(AccessLogSchema.shape),
} as const;

/** Options that only make sense on TCP listeners. */
export const TCP_ONLY_KEYS = ["backlog", "noDelay", "deferAccept", "keepalive"] as const;
