//! The program's command line: flags, their defaults from the spec, and the help text.
const std = @import("std");
const compat = @import("compat.zig");
const config = @import("config.zig");
const address = @import("address.zig");
const privileges = @import("supervisor/privileges.zig");
const resolve = @import("net/resolve.zig");

pub const usage =
    \\Usage: 
++ config.name ++
    \\ [options]
    \\
    \\Options:
    \\  --workers N              worker processes (0: one per CPU it may use)
    \\  --standalone             serve every listener in this one process, without a
    \\                           supervisor; independent processes share the ports
    \\  --listen NAME=HOST:PORT  serve listener NAME at HOST:PORT instead (repeatable;
    \\                           IPv6 as [::1]:8080; port 0 picks a free port)
    \\  --drain-timeout MS       how long a graceful stop waits for open connections
    \\  --ready-timeout MS       how long new workers may take to say ready before their
    \\                           generation is abandoned (an upgrade's new program: 5 s more)
    \\  --shutdown-delay MS      how long a graceful stop keeps serving after /readyz
    \\                           turned 503, before the drain (0: none)
    \\  --header-timeout MS      deadline for a complete request head
    \\  --body-timeout MS        longest wait for the next byte of a request body
    \\  --request-timeout MS     deadline for a whole request, head and body (0: none)
    \\  --idle-timeout MS        how long a connection with nothing in flight stays open
    \\                           (proxy listeners' own idleTimeoutMs included)
    \\  --write-timeout MS       longest wait for a client to read what it is sent
    \\  --watchdog MS            kill and replace a worker silent for this long (0: off)
    \\  --max-body BYTES         largest request body an HTTP listener accepts
    \\  --admin HOST:PORT        serve /metrics, /healthz, /readyz and /status there
    \\                           (IPv6 as [::1]:9901; port 0 picks a free port)
    \\  --access-log PATH        write the request log to PATH instead ("-": standard
    \\                           output); only for a spec with "accessLog"
    \\  --access-log-format F    "json" or "combined" instead of the spec's format
    \\  --pid-file PATH          write the process id to PATH when ready; removed at exit;
    \\                           locked: a second start with the same PATH exits 1
    \\  --handover PATH          (with --standalone) take the listening sockets of the
    \\                           process serving the Unix socket PATH, and serve PATH for
    \\                           the next one: start the new process, then stop the old
    \\                           one, and no socket closes
    \\  --join                   serve ports that another program's SO_REUSEPORT group
    \\                           already serves, sharing its clients (a supervisor refuses
    \\                           that without --join; --standalone joins by design)
    \\  --user USER              run the workers as USER (a name or a numeric uid): they
    \\                           drop root once they have their sockets; the supervisor
    \\                           stays root (with --standalone the one process drops)
    \\  --group GROUP            with --user: the group (name or gid) instead of USER's
    \\                           primary group
    \\  --cpu-affinity           pin worker i to the (i mod n)-th allowed CPU and send each
    \\                           new connection to a worker on the CPU that received it;
    \\                           --no-cpu-affinity turns the spec's "cpuAffinity" off
    \\  --io epoll|io_uring      how workers do socket I/O instead of the spec's "io" (io_uring
    \\                           falls back to epoll, with an io_fallback event, where the
    \\                           kernel or a seccomp profile refuses it)
    \\  --fd-store               send the listening sockets to systemd's file-descriptor
    \\                           store (FDSTORE=1); on by itself when $FDSTORE is set
    \\  --help                   print this help and exit
    \\  --version                print the version and exit
    \\  --fingerprint            print the program's identity, "spec=HEX supervisor=HEX",
    \\                           and exit: SIGHUP restarts the workers when the binary on
    \\                           disk has this one's, and upgrades the whole program when not
    \\
    \\Signals: SIGTERM/SIGINT stop gracefully, SIGQUIT stops at once, SIGHUP restarts
    \\the workers (or, for another program, upgrades the supervisor too) from the binary
    \\on disk without dropping connections, SIGUSR1 reopens the request log.
    \\Events: one JSON object per line on standard output.
    \\
;

/// What a supervisor gives a worker process it starts, as the internal flag
/// `--worker INDEX:GENERATION:CONTROL_FD:REPORT_FD:IDENTITY:FD,FD,…[/SLOT=FD,FD,…]…[:M,C]`:
/// one FD per listener for its own slot, then the sockets of up to `max_ring` other slots
/// it may be asked to adopt (see `worker_link.zig`), then the metrics region's descriptor M
/// and the worker's cell C in it (see `metrics/region.zig`).
pub const WorkerRole = struct {
    index: u16,
    generation: u32,
    control_fd: i32,
    report_fd: i32,
    /// The identity (`config.identity`) of the supervisor that started this worker. When it
    /// is not this binary's, nothing after it is parsed: another spec may have other
    /// listeners, another supervisor another role format.
    fingerprint: [config.identity.len]u8,
    fds: [config.listeners.len]i32 = undefined,
    ring: [max_ring]RingSlot = undefined,
    ring_len: u8 = 0,
    /// The shared metrics region (-1: none) and this worker's cell in it.
    metrics_fd: i32 = -1,
    metrics_cell: u32 = 0,

    pub fn matchesIdentity(self: *const WorkerRole) bool {
        return std.mem.eql(u8, &self.fingerprint, config.identity);
    }
};

/// Another slot's sockets, which a worker holds without watching until told to adopt them.
pub const RingSlot = struct {
    slot: u16,
    fds: [config.listeners.len]i32,
};

/// How many other slots' sockets each worker holds for adoption: the next `max_ring`
/// slots after its own. Bounded so that descriptors grow as workers × listener count × 5
/// across all workers, not workers² × listeners.
pub const max_ring = 4;

pub const max_workers = 1024;

pub const Options = struct {
    workers: u16 = config.workers,
    standalone: bool = false,
    endpoints: [config.listeners.len]address.Endpoint = defaultEndpoints(),
    pid_file: ?[*:0]const u8 = null,
    /// Where the admin listener binds (see `admin/server.zig`); null: no admin listener.
    admin: ?address.Endpoint = defaultAdmin(),
    /// Whether `admin` came from `--admin` (messages name the flag) or the spec.
    admin_from_flag: bool = false,
    /// Where standalone processes hand their listening sockets on (see `handover.zig`).
    handover: ?[]const u8 = null,
    /// Keep the listening sockets in systemd's file-descriptor store (see `notify.zig`).
    fd_store: bool = false,
    /// Serve a port another program's reuseport group serves already (see `openSockets`).
    join: bool = false,
    /// Pin workers to CPUs and steer connections by CPU (see `net/locality.zig`).
    cpu_affinity: bool = config.cpu_affinity,
    limits: Limits = .{},
    /// The user and group to drop to, as named (see `privileges.zig`).
    privileges: privileges.Request = .{ .user = config.user, .group = config.group },
    worker: ?WorkerRole = null,
    /// What a worker drops to, resolved by its supervisor (the internal `--drop-to`).
    drop_to: ?privileges.Credentials = null,
    /// `--access-log`: the request log's file instead of the spec's ("-": standard output).
    access_log_path: ?[:0]const u8 = null,
    /// `--access-log-format`: "json" or "combined" instead of the spec's.
    access_log_format: ?[:0]const u8 = null,
    /// The addresses of upstream servers named by host, resolved by the supervisor (the
    /// internal `--upstream-addresses`).
    upstream_addresses: resolve.Table = .{},
};

/// The timeouts and limits a flag can override, and how workers do I/O (`--io`); a supervisor
/// passes them on to its workers.
pub const Limits = struct {
    io: config.Io = config.io,
    drain_timeout_ms: u32 = config.drain_timeout_ms,
    ready_timeout_ms: u32 = config.ready_timeout_ms,
    shutdown_delay_ms: u32 = config.shutdown_delay_ms,
    header_timeout_ms: u32 = config.header_timeout_ms,
    body_timeout_ms: u32 = config.body_timeout_ms,
    request_timeout_ms: u32 = config.request_timeout_ms,
    idle_timeout_ms: u32 = config.idle_timeout_ms,
    write_timeout_ms: u32 = config.write_timeout_ms,
    watchdog_ms: u32 = config.watchdog_ms,
    max_body_bytes: u64 = config.max_body_bytes,
    /// `--idle-timeout` was given: it then replaces proxy listeners' own `idleTimeoutMs` too
    /// (a supervisor passes the flag on to its workers only then).
    idle_timeout_given: bool = false,
};

/// A numeric flag and the `Limits` field it sets.
pub const LimitFlag = struct {
    flag: [:0]const u8,
    field: []const u8,
    unit: []const u8,
};

/// The shortest `--ready-timeout` (the spec's `readyTimeoutMs` has the same floor).
pub const min_ready_timeout_ms = 100;

pub const limit_flags = [_]LimitFlag{
    .{ .flag = "--drain-timeout", .field = "drain_timeout_ms", .unit = "milliseconds" },
    .{ .flag = "--ready-timeout", .field = "ready_timeout_ms", .unit = "milliseconds" },
    .{ .flag = "--shutdown-delay", .field = "shutdown_delay_ms", .unit = "milliseconds" },
    .{ .flag = "--header-timeout", .field = "header_timeout_ms", .unit = "milliseconds" },
    .{ .flag = "--body-timeout", .field = "body_timeout_ms", .unit = "milliseconds" },
    .{ .flag = "--request-timeout", .field = "request_timeout_ms", .unit = "milliseconds" },
    .{ .flag = "--idle-timeout", .field = "idle_timeout_ms", .unit = "milliseconds" },
    .{ .flag = "--write-timeout", .field = "write_timeout_ms", .unit = "milliseconds" },
    .{ .flag = "--watchdog", .field = "watchdog_ms", .unit = "milliseconds" },
    .{ .flag = "--max-body", .field = "max_body_bytes", .unit = "bytes" },
};

pub const Command = union(enum) {
    serve: Options,
    help,
    version,
    fingerprint,
};

fn defaultAdmin() ?address.Endpoint {
    const admin = config.admin orelse return null;
    return .{ .address = admin.address, .port = admin.port };
}

fn defaultEndpoints() [config.listeners.len]address.Endpoint {
    var endpoints: [config.listeners.len]address.Endpoint = undefined;
    for (config.listeners, 0..) |listener, i| {
        endpoints[i] = .{ .address = listener.address, .port = listener.port };
    }
    return endpoints;
}

/// A usage error, written into `message`.
pub const Diagnostic = struct {
    buf: [512]u8 = undefined,
    message: []const u8 = "",

    fn set(self: *Diagnostic, comptime format: []const u8, args: anytype) error{Usage} {
        self.message = compat.bufPrint(&self.buf, format, args) catch self.buf[0..];
        return error.Usage;
    }
};

pub fn parse(args: []const [*:0]const u8, diag: *Diagnostic) error{Usage}!Command {
    var options: Options = .{};
    var group_given = false;
    var i: usize = 1;
    while (i < args.len) : (i += 1) {
        const arg = std.mem.span(args[i]);
        if (eql(arg, "--help") or eql(arg, "-h")) return .help;
        if (eql(arg, "--version")) return .version;
        if (eql(arg, "--fingerprint")) return .fingerprint;
        if (eql(arg, "--standalone")) {
            options.standalone = true;
            continue;
        }
        if (eql(arg, "--fd-store")) {
            options.fd_store = true;
            continue;
        }
        if (eql(arg, "--join")) {
            options.join = true;
            continue;
        }
        if (eql(arg, "--cpu-affinity") or eql(arg, "--no-cpu-affinity")) {
            options.cpu_affinity = eql(arg, "--cpu-affinity");
            continue;
        }
        if (i + 1 >= args.len) {
            if (isValueFlag(arg)) return diag.set("{s} needs a value", .{arg});
            return diag.set("unknown argument \"{s}\"", .{arg});
        }
        try parseValueFlag(&options, arg, std.mem.span(args[i + 1]), &group_given, diag);
        i += 1;
    }
    if (options.handover != null and !options.standalone) {
        return diag.set("--handover is for --standalone processes (a supervisor keeps its " ++
            "sockets across restarts itself)", .{});
    }
    return .{ .serve = options };
}

/// A flag that takes a value (`arg value`), into `options`.
fn parseValueFlag(
    options: *Options,
    arg: []const u8,
    value: [:0]const u8,
    group_given: *bool,
    diag: *Diagnostic,
) error{Usage}!void {
    if (eql(arg, "--workers")) {
        const workers = std.fmt.parseInt(u16, value, 10) catch max_workers + 1;
        if (workers > max_workers) {
            return diag.set("--workers: expected a number from 0 to {d} (got \"{s}\")", .{
                max_workers,
                value,
            });
        }
        options.workers = workers;
    } else if (eql(arg, "--listen")) {
        try parseListen(value, &options.endpoints, diag);
    } else if (try parseLimit(arg, value, &options.limits, diag)) {
        // Set by parseLimit.
    } else if (eql(arg, "--io")) {
        options.limits.io = std.meta.stringToEnum(config.Io, value) orelse
            return diag.set("--io: expected \"epoll\" or \"io_uring\" (got \"{s}\")", .{value});
    } else if (eql(arg, "--admin")) {
        options.admin = address.parseEndpoint(value) catch
            return diag.set("--admin: expected HOST:PORT such as 127.0.0.1:9901 or " ++
                "[::1]:9901 (got \"{s}\")", .{value});
        options.admin_from_flag = true;
    } else if (eql(arg, "--pid-file")) {
        options.pid_file = value.ptr;
    } else if (eql(arg, "--handover")) {
        options.handover = value;
    } else if (eql(arg, "--user") or eql(arg, "--group")) {
        try parseAccount(arg, value, &options.privileges, group_given, diag);
    } else if (eql(arg, "--drop-to")) {
        options.drop_to = privileges.Credentials.parse(value) orelse
            return diag.set("--drop-to is for the supervisor's own use (got \"{s}\")", .{
                value,
            });
    } else if (eql(arg, "--access-log")) {
        try needsAccessLog(arg, diag);
        if (value.len == 0) return diag.set("--access-log: expected a file path or \"-\"", .{});
        options.access_log_path = value;
    } else if (eql(arg, "--access-log-format")) {
        try needsAccessLog(arg, diag);
        if (!eql(value, "json") and !eql(value, "combined")) {
            return diag.set("--access-log-format: expected \"json\" or \"combined\" " ++
                "(got \"{s}\")", .{value});
        }
        options.access_log_format = value;
    } else if (eql(arg, "--worker")) {
        options.worker = parseWorkerRole(value) orelse
            return diag.set("--worker is for the supervisor's own use (got \"{s}\")", .{value});
    } else if (eql(arg, "--upstream-addresses")) {
        options.upstream_addresses = resolve.Table.parse(value) orelse
            return diag.set("--upstream-addresses is for the supervisor's own use " ++
                "(got \"{s}\")", .{value});
    } else {
        return diag.set("unknown argument \"{s}\"", .{arg});
    }
}

fn eql(a: []const u8, b: []const u8) bool {
    return std.mem.eql(u8, a, b);
}

/// The request log's flags only change a log the spec asks for.
fn needsAccessLog(arg: []const u8, diag: *Diagnostic) error{Usage}!void {
    if (config.access_log != null) return;
    return diag.set("{s}: this service's spec has no \"accessLog\"; add one to the spec " ++
        "(docs/operating.md, Request log) and regenerate", .{arg});
}

fn isValueFlag(arg: []const u8) bool {
    const flags = [_][]const u8{
        "--workers", "--listen",     "--pid-file",          "--handover",
        "--worker",  "--user",       "--group",             "--drop-to",
        "--admin",   "--access-log", "--access-log-format", "--upstream-addresses",
        "--io",
    };
    for (flags) |flag| if (eql(arg, flag)) return true;
    inline for (limit_flags) |limit| if (eql(arg, limit.flag)) return true;
    return false;
}

/// Sets the limit `arg` names; false when `arg` is not a limit flag.
fn parseLimit(arg: []const u8, value: []const u8, limits: *Limits, diag: *Diagnostic) !bool {
    inline for (limit_flags) |limit| {
        if (eql(arg, limit.flag)) {
            const T = @TypeOf(@field(limits, limit.field));
            @field(limits, limit.field) = std.fmt.parseInt(T, value, 10) catch
                return diag.set("{s}: expected {s}, a whole number (got \"{s}\")", .{
                    limit.flag,
                    limit.unit,
                    value,
                });
            if (comptime eql(limit.field, "idle_timeout_ms")) limits.idle_timeout_given = true;
            if (comptime eql(limit.field, "ready_timeout_ms")) {
                if (limits.ready_timeout_ms < min_ready_timeout_ms) {
                    return diag.set("{s}: expected at least {d} milliseconds (got {s})", .{
                        limit.flag,
                        min_ready_timeout_ms,
                        value,
                    });
                }
            }
            return true;
        }
    }
    return false;
}

/// `--user` replaces the spec's user and, unless `--group` is given too, its group: the
/// user's primary group then. `--group` replaces the spec's group.
fn parseAccount(
    arg: []const u8,
    value: []const u8,
    request: *privileges.Request,
    group_given: *bool,
    diag: *Diagnostic,
) error{Usage}!void {
    if (value.len == 0 or value.len > 64 or compat.findScalar(u8, value, ':') != null) {
        return diag.set("{s}: expected a name or a numeric id (got \"{s}\")", .{ arg, value });
    }
    if (eql(arg, "--user")) {
        request.user = value;
        request.user_source = .flag;
        if (!group_given.*) request.group = null;
    } else {
        request.group = value;
        request.group_source = .flag;
        group_given.* = true;
    }
}

fn parseListen(
    value: []const u8,
    endpoints: *[config.listeners.len]address.Endpoint,
    diag: *Diagnostic,
) error{Usage}!void {
    const equals = compat.findScalar(u8, value, '=') orelse
        return diag.set("--listen: expected NAME=HOST:PORT (got \"{s}\")", .{value});
    const name = value[0..equals];
    const index = for (config.listeners, 0..) |listener, i| {
        if (eql(listener.name, name)) break i;
    } else return diag.set("--listen: no listener named \"{s}\" in this service", .{name});
    const endpoint = address.parseEndpoint(value[equals + 1 ..]) catch
        return diag.set("--listen {s}: expected HOST:PORT such as 127.0.0.1:8080 or " ++
            "[::1]:8080 (got \"{s}\")", .{ name, value[equals + 1 ..] });
    endpoints[index] = endpoint;
}

fn parseWorkerRole(value: []const u8) ?WorkerRole {
    var parts = std.mem.splitScalar(u8, value, ':');
    var role: WorkerRole = .{
        .index = parseField(u16, parts.next()) orelse return null,
        .generation = parseField(u32, parts.next()) orelse return null,
        .control_fd = parseField(i32, parts.next()) orelse return null,
        .report_fd = parseField(i32, parts.next()) orelse return null,
        .fingerprint = undefined,
    };
    const fingerprint = parts.next() orelse return null;
    if (fingerprint.len != role.fingerprint.len) return null;
    @memcpy(&role.fingerprint, fingerprint);
    if (!role.matchesIdentity()) return role;
    var slots = std.mem.splitScalar(u8, parts.next() orelse return null, '/');
    if (!parseFds(slots.next(), &role.fds)) return null;
    while (slots.next()) |text| {
        if (role.ring_len == max_ring) return null;
        const equals = compat.findScalar(u8, text, '=') orelse return null;
        const ring = &role.ring[role.ring_len];
        ring.slot = parseField(u16, text[0..equals]) orelse return null;
        if (!parseFds(text[equals + 1 ..], &ring.fds)) return null;
        role.ring_len += 1;
    }
    if (parts.next()) |metrics| {
        const comma = compat.findScalar(u8, metrics, ',') orelse return null;
        role.metrics_fd = parseField(i32, metrics[0..comma]) orelse return null;
        role.metrics_cell = parseField(u32, metrics[comma + 1 ..]) orelse return null;
    }
    if (parts.next() != null) return null;
    return role;
}

fn parseFds(text: ?[]const u8, fds: *[config.listeners.len]i32) bool {
    var fields = std.mem.splitScalar(u8, text orelse return false, ',');
    for (fds) |*fd| fd.* = parseField(i32, fields.next()) orelse return false;
    return fields.next() == null;
}

fn parseField(comptime T: type, text: ?[]const u8) ?T {
    return std.fmt.parseInt(T, text orelse return null, 10) catch null;
}

test "parses flags and rejects unknown ones with a message" {
    var diag: Diagnostic = .{};
    const args = [_][*:0]const u8{ "svc", "--workers", "3", "--standalone" };
    const options = (try parse(&args, &diag)).serve;
    try std.testing.expectEqual(@as(u16, 3), options.workers);
    try std.testing.expect(options.standalone);

    const limits = [_][*:0]const u8{ "svc", "--idle-timeout", "250", "--max-body", "7" };
    const limited = (try parse(&limits, &diag)).serve.limits;
    try std.testing.expectEqual(@as(u32, 250), limited.idle_timeout_ms);
    try std.testing.expectEqual(@as(u64, 7), limited.max_body_bytes);
    try std.testing.expectEqual(config.header_timeout_ms, limited.header_timeout_ms);
    // Given: it also replaces proxy listeners' own idle timeouts.
    try std.testing.expect(limited.idle_timeout_given);
    try std.testing.expect(!(try parse(&args, &diag)).serve.limits.idle_timeout_given);
    const negative = [_][*:0]const u8{ "svc", "--write-timeout", "-1" };
    try std.testing.expectError(error.Usage, parse(&negative, &diag));
    try std.testing.expect(compat.find(u8, diag.message, "--write-timeout") != null);

    const bad = [_][*:0]const u8{ "svc", "--bogus" };
    try std.testing.expectError(error.Usage, parse(&bad, &diag));
    try std.testing.expect(compat.find(u8, diag.message, "--bogus") != null);

    const handover = [_][*:0]const u8{ "svc", "--standalone", "--handover", "/run/svc.sock" };
    const parsed = try parse(&handover, &diag);
    try std.testing.expectEqualStrings("/run/svc.sock", parsed.serve.handover.?);
    const supervised = [_][*:0]const u8{ "svc", "--handover", "/run/svc.sock" };
    try std.testing.expectError(error.Usage, parse(&supervised, &diag));
    try std.testing.expect(compat.find(u8, diag.message, "--standalone") != null);
}

test "--ready-timeout sets how long new workers may take, with a floor of 100 ms" {
    var diag: Diagnostic = .{};
    const given = [_][*:0]const u8{ "svc", "--ready-timeout", "2500" };
    const limits = (try parse(&given, &diag)).serve.limits;
    try std.testing.expectEqual(@as(u32, 2500), limits.ready_timeout_ms);
    const none = [_][*:0]const u8{"svc"};
    const default = (try parse(&none, &diag)).serve.limits.ready_timeout_ms;
    try std.testing.expectEqual(config.ready_timeout_ms, default);
    const short = [_][*:0]const u8{ "svc", "--ready-timeout", "99" };
    try std.testing.expectError(error.Usage, parse(&short, &diag));
    try std.testing.expect(compat.find(u8, diag.message, "at least 100 milliseconds") != null);
}

test "--cpu-affinity and --no-cpu-affinity override the spec, the last one winning" {
    var diag: Diagnostic = .{};
    const none = [_][*:0]const u8{"svc"};
    try std.testing.expectEqual(config.cpu_affinity, (try parse(&none, &diag)).serve.cpu_affinity);
    const on = [_][*:0]const u8{ "svc", "--cpu-affinity" };
    try std.testing.expect((try parse(&on, &diag)).serve.cpu_affinity);
    const off = [_][*:0]const u8{ "svc", "--cpu-affinity", "--no-cpu-affinity" };
    try std.testing.expect(!(try parse(&off, &diag)).serve.cpu_affinity);
}

test "--user and --group override the spec's user and group" {
    var diag: Diagnostic = .{};
    const user = [_][*:0]const u8{ "svc", "--user", "www-data" };
    const alone = (try parse(&user, &diag)).serve.privileges;
    try std.testing.expectEqualStrings("www-data", alone.user.?);
    try std.testing.expect(alone.group == null);
    try std.testing.expectEqual(privileges.Source.flag, alone.user_source);
    const both = [_][*:0]const u8{ "svc", "--group", "33", "--user", "65534" };
    const request = (try parse(&both, &diag)).serve.privileges;
    try std.testing.expectEqualStrings("33", request.group.?);
    try std.testing.expectEqualStrings("65534", request.user.?);
    const empty = [_][*:0]const u8{ "svc", "--user", "" };
    try std.testing.expectError(error.Usage, parse(&empty, &diag));
    try std.testing.expect(compat.find(u8, diag.message, "--user") != null);
    const missing = [_][*:0]const u8{ "svc", "--group" };
    try std.testing.expectError(error.Usage, parse(&missing, &diag));
    const drop = [_][*:0]const u8{ "svc", "--drop-to", "65534:65534:65534,4" };
    const credentials = (try parse(&drop, &diag)).serve.drop_to.?;
    try std.testing.expectEqual(@as(u32, 65534), credentials.uid);
    try std.testing.expectEqualSlices(u32, &.{ 65534, 4 }, credentials.groupList());
}

test "--listen overrides one listener's endpoint" {
    var diag: Diagnostic = .{};
    const first = config.listeners[0].name;
    var text: [128:0]u8 = undefined;
    const flag = try compat.bufPrint(&text, "{s}=[::1]:0", .{first});
    text[flag.len] = 0;
    const args = [_][*:0]const u8{ "svc", "--listen", &text };
    const options = (try parse(&args, &diag)).serve;
    try std.testing.expect(options.endpoints[0].address.isIp6());
    try std.testing.expectEqual(@as(u16, 0), options.endpoints[0].port);

    const unknown = [_][*:0]const u8{ "svc", "--listen", "nope=127.0.0.1:1" };
    try std.testing.expectError(error.Usage, parse(&unknown, &diag));
}

test "parses the worker role, with the slots it may adopt" {
    var diag: Diagnostic = .{};
    var text: [256:0]u8 = undefined;
    var len: usize = (try compat.bufPrint(&text, "2:7:5:6:{s}:", .{config.identity})).len;
    for (0..3) |slot| {
        if (slot > 0) len += (try compat.bufPrint(text[len..], "/{d}=", .{slot + 2})).len;
        for (0..config.listeners.len) |i| {
            const separator: []const u8 = if (i == 0) "" else ",";
            len += (try compat.bufPrint(text[len..], "{s}{d}", .{ separator, 10 + i })).len;
        }
    }
    text[len] = 0;
    const args = [_][*:0]const u8{ "svc", "--worker", &text };
    const role = (try parse(&args, &diag)).serve.worker.?;
    try std.testing.expect(role.matchesIdentity());
    try std.testing.expectEqual(@as(u16, 2), role.index);
    try std.testing.expectEqual(@as(u8, 2), role.ring_len);
    try std.testing.expectEqual(@as(u16, 4), role.ring[1].slot);
    try std.testing.expectEqual(@as(i32, -1), role.metrics_fd);
    len += (try compat.bufPrint(text[len..], ":9,13", .{})).len;
    text[len] = 0;
    const with_metrics = (try parse(&args, &diag)).serve.worker.?;
    try std.testing.expectEqual(@as(i32, 9), with_metrics.metrics_fd);
    try std.testing.expectEqual(@as(u32, 13), with_metrics.metrics_cell);

    const other_identity = "0:1:5:6:0123456789abcdef-0123456789abcdef:x";
    const other = [_][*:0]const u8{ "svc", "--worker", other_identity };
    const foreign = (try parse(&other, &diag)).serve.worker.?;
    try std.testing.expect(!foreign.matchesIdentity());
}

test "--admin takes HOST:PORT (IPv6 in brackets) and says which flag a bad value was for" {
    var diag: Diagnostic = .{};
    const args = [_][*:0]const u8{ "svc", "--admin", "[::1]:9901", "--shutdown-delay", "5000" };
    const options = (try parse(&args, &diag)).serve;
    try std.testing.expect(options.admin.?.address.isIp6());
    try std.testing.expectEqual(@as(u16, 9901), options.admin.?.port);
    try std.testing.expect(options.admin_from_flag);
    try std.testing.expectEqual(@as(u32, 5000), options.limits.shutdown_delay_ms);
    const bad = [_][*:0]const u8{ "svc", "--admin", "localhost:9901" };
    try std.testing.expectError(error.Usage, parse(&bad, &diag));
    try std.testing.expect(compat.find(u8, diag.message, "--admin") != null);
    const missing = [_][*:0]const u8{ "svc", "--admin" };
    try std.testing.expectError(error.Usage, parse(&missing, &diag));
    try std.testing.expect(compat.find(u8, diag.message, "--admin needs a value") != null);
}
