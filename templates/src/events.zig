//! Lifecycle events: one JSON object per line on standard output, for operators and tests
//! (`ready`, `stopping`, `stopped`, `error`, …). Human-readable logs go to standard error.
const std = @import("std");
const compat = @import("compat.zig");
const config = @import("config.zig");
const address = @import("address.zig");
const listener = @import("net/listener.zig");
const stop = @import("worker/stop.zig");
const stats_mod = @import("worker/stats.zig");
const log = @import("log.zig");
const output = @import("output.zig");
const calendar = @import("calendar.zig");
const sys = @import("net/sys.zig");
const privileges = @import("supervisor/privileges.zig");

pub const Mode = enum { standalone, supervisor };

/// How a process ended, decoded from its wait status.
pub const Exit = union(enum) {
    code: u8,
    signal: u8,

    pub fn fromWaitStatus(status: u32) Exit {
        // The layout of a wait status is fixed by Linux: the low 7 bits are the signal that
        // ended the process, 0 when it exited, and then the next byte is its exit code.
        const signal: u8 = @intCast(status & 0x7f);
        if (signal == 0) return .{ .code = @intCast((status >> 8) & 0xff) };
        return .{ .signal = signal };
    }

    /// Adds `exit_code` or `signal` to an event.
    pub fn write(self: Exit, line: *Line) void {
        switch (self) {
            .code => |code| line.int("exit_code", code),
            .signal => |signal| line.int("signal", signal),
        }
    }

    /// "exited with code 3" or "was killed by signal 9".
    pub fn describe(self: Exit, buf: []u8) []const u8 {
        return switch (self) {
            .code => |code| compat.bufPrint(buf, "exited with code {d}", .{code}),
            .signal => |signal| compat.bufPrint(buf, "was killed by signal {d}", .{signal}),
        } catch buf[0..0];
    }
};

pub const WorkerReport = struct {
    index: u16,
    pid: i32,
    stats: stats_mod.Stats,
    /// How the worker ended, when a supervisor collected it.
    exit: ?Exit = null,
};

/// Every listener of every worker of `generation` is accepting.
pub fn emitReady(
    mode: Mode,
    generation: u32,
    pids: []const i32,
    endpoints: [config.listeners.len]address.Endpoint,
    ports: [config.listeners.len]u16,
) void {
    var line: Line = undefined;
    readyLine(&line, mode, generation, pids, endpoints, ports);
    line.emit();
}

/// The `ready` event, for a caller that adds fields of its own before emitting it.
pub fn readyLine(
    line: *Line,
    mode: Mode,
    generation: u32,
    pids: []const i32,
    endpoints: [config.listeners.len]address.Endpoint,
    ports: [config.listeners.len]u16,
) void {
    line.* = Line.begin("ready");
    line.string("service", config.name);
    line.string("version", config.version);
    line.string("mode", @tagName(mode));
    line.string("spec_fingerprint", config.spec_fingerprint);
    line.string("supervisor_fingerprint", config.supervisor_fingerprint);
    line.int("generation", generation);
    line.int("pid", std.os.linux.getpid());
    line.beginArray("workers");
    for (pids, 0..) |pid, i| {
        line.beginObject();
        line.int("index", @intCast(i));
        line.int("pid", pid);
        line.endObject();
    }
    line.endArray();
    listenersField(line, endpoints, &ports);
    if (listener.tcpMigrateReq()) |value| line.int("tcp_migrate_req", value);
}

/// The first fields of the admin listener's `/status` document, the same in both modes.
pub fn statusHeader(line: *Line, mode: Mode, pid: i32, generation: u32, uptime_ms: u64) void {
    line.string("service", config.name);
    line.string("version", config.version);
    line.string("mode", @tagName(mode));
    line.int("pid", pid);
    line.int("generation", generation);
    line.string("spec_fingerprint", config.spec_fingerprint);
    line.string("supervisor_fingerprint", config.supervisor_fingerprint);
    line.int("uptime_ms", @intCast(uptime_ms));
}

/// The `listeners` array of `ready` and of the admin listener's `/status`: each listener,
/// where it is bound, and the port it got.
pub fn listenersField(
    line: *Line,
    endpoints: [config.listeners.len]address.Endpoint,
    ports: *const [config.listeners.len]u16,
) void {
    line.beginArray("listeners");
    for (config.listeners, endpoints, ports) |l, endpoint, port| {
        var text: [64]u8 = undefined;
        line.beginObject();
        line.string("name", l.name);
        line.string("protocol", @tagName(l.protocol));
        line.string("handler", @tagName(l.handler));
        line.string("address", address.format(endpoint.address, &text));
        line.int("port", port);
        line.endObject();
    }
    line.endArray();
}

/// Adds who the workers (a standalone process: itself) serve as: `worker_uid` and
/// `worker_gid`, and `worker_groups` when they dropped to `drop_to`.
pub fn workerIdentity(line: *Line, drop_to: ?privileges.Credentials) void {
    const c = drop_to orelse {
        line.int("worker_uid", std.os.linux.geteuid());
        line.int("worker_gid", std.os.linux.getegid());
        return;
    };
    line.int("worker_uid", c.uid);
    line.int("worker_gid", c.gid);
    line.beginArray("worker_groups");
    for (c.groupList()) |gid| {
        line.separator();
        line.number(gid);
    }
    line.endArray();
}

/// The `admin` object of the `ready` event: where the admin listener is bound.
pub fn adminField(line: *Line, endpoint: address.Endpoint, port: u16) void {
    var text: [64]u8 = undefined;
    line.beginNamedObject("admin");
    line.string("address", address.format(endpoint.address, &text));
    line.int("port", port);
    line.endObject();
}

pub fn emitStopped(generation: u32, reason: stop.StopReason, reports: []const WorkerReport) void {
    emitStoppedFor(generation, reason, reports, null);
}

/// `stopped`, with the pid of the supervisor that took over (`successor`) after an upgrade:
/// the service goes on, only this process ended.
pub fn emitStoppedFor(
    generation: u32,
    reason: stop.StopReason,
    reports: []const WorkerReport,
    successor: ?i32,
) void {
    var line = Line.begin("stopped");
    line.int("generation", generation);
    line.string("reason", @tagName(reason));
    if (successor) |pid| line.int("successor", pid);
    line.beginArray("workers");
    for (reports) |report| {
        line.beginObject();
        line.int("index", report.index);
        line.int("pid", report.pid);
        line.counters(report.stats);
        if (report.exit) |exit| exit.write(&line);
        line.endObject();
    }
    line.endArray();
    line.emit();
}

/// A listener could not be opened: say which, where, and why, as a log line and an event.
pub fn reportOpenFailure(
    l: *const config.Listener,
    endpoint: address.Endpoint,
    failure: listener.Failure,
) void {
    var text: [64]u8 = undefined;
    var why: [512]u8 = undefined;
    const host = address.format(endpoint.address, &text);
    const message = failure.describe(&why);
    const open = if (endpoint.address.isIp6()) "[" else "";
    const close = if (endpoint.address.isIp6()) "]" else "";
    log.err("listener {s} ({s} {s}{s}{s}:{d}): {s}", .{
        l.name, @tagName(l.protocol), open, host, close, endpoint.port, message,
    });
    var line = Line.begin("error");
    line.string("listener", l.name);
    line.string("phase", @tagName(failure.phase));
    line.string("error", @errorName(failure.err));
    line.string("message", message);
    line.emit();
}

/// A listener opened on a port whose reuseport group already had members (another
/// program's): clients are shared with them from now on.
pub fn emitJoined(l: *const config.Listener, endpoint: address.Endpoint) void {
    var text: [64]u8 = undefined;
    const host = address.format(endpoint.address, &text);
    log.info("listener {s}: joined the SO_REUSEPORT group already serving {s} port {d}; " ++
        "clients are shared with its other members", .{
        l.name,
        @tagName(l.protocol),
        endpoint.port,
    });
    var line = Line.begin("joined");
    line.string("listener", l.name);
    line.string("protocol", @tagName(l.protocol));
    line.string("address", host);
    line.int("port", endpoint.port);
    line.emit();
}

/// A feature the environment refuses (a container's hard limits, seccomp profile or missing
/// capabilities) runs in a lesser form rather than failing the start: said once, as an event
/// and a warning. `feature` is a fixed name (`open_files`, `steering`); `detail` says what
/// was refused and what the service does instead.
pub fn emitDegraded(feature: []const u8, detail: []const u8) void {
    log.warn("{s}: {s}", .{ feature, detail });
    var line = Line.begin("degraded");
    line.string("feature", feature);
    line.string("detail", detail);
    line.emit();
}

/// A worker asked for io_uring (`"io": "io_uring"`, `--io io_uring`) that the kernel refused
/// (a seccomp profile, kernel.io_uring_disabled, an old kernel) serves with epoll instead:
/// said once per worker, with the error number's name and the step that failed.
pub fn emitIoFallback(index: u16, errno: []const u8, step: []const u8) void {
    log.warn("worker {d}: io_uring refused ({s} at {s}); serving with epoll", .{
        index, errno, step,
    });
    var line = Line.begin("io_fallback");
    line.int("index", index);
    line.string("error", errno);
    line.string("step", step);
    line.string("io", "epoll");
    line.emit();
}

/// A supervisor refuses to join another program's group by accident (two supervisors
/// would split the clients between them without either knowing).
pub fn reportHeldPort(l: *const config.Listener, endpoint: address.Endpoint) void {
    var text: [64]u8 = undefined;
    const host = address.format(endpoint.address, &text);
    var why: [512]u8 = undefined;
    const message = compat.bufPrint(&why, "{s} port {d} on {s} is already served by another " ++
        "program's SO_REUSEPORT group (is this service running already?); stop that program, " ++
        "or start with --join to share its clients on purpose", .{
        @tagName(l.protocol), endpoint.port, host,
    }) catch why[0..0];
    reportJoinError(l, "PortServedByAnotherGroup", message);
}

/// A port this supervisor would open is held by a socket that shares it with nobody: no
/// SO_REUSEPORT socket can bind it, so the start would fail anyway; said plainly.
pub fn reportPortInUse(l: *const config.Listener, endpoint: address.Endpoint) void {
    var text: [64]u8 = undefined;
    const host = address.format(endpoint.address, &text);
    var why: [512]u8 = undefined;
    const message = compat.bufPrint(&why, "{s} port {d} on {s} is in use by a socket that " ++
        "does not share it (a listener without SO_REUSEPORT, another user's, or a " ++
        "connection's local port: `ss -anp 'sport = :{d}'` shows it); free the port or " ++
        "listen on another", .{ @tagName(l.protocol), endpoint.port, host, endpoint.port }) catch
        why[0..0];
    reportJoinError(l, "PortInUse", message);
}

/// Logs and emits the `error` event (phase `join`) that refuses a port at start.
fn reportJoinError(l: *const config.Listener, error_name: []const u8, message: []const u8) void {
    log.err("listener {s}: {s}", .{ l.name, message });
    var line = Line.begin("error");
    line.string("listener", l.name);
    line.string("phase", "join");
    line.string("error", error_name);
    line.string("message", message);
    line.emit();
}

/// Says at start what a stop or restart will do with connections queued on a closing
/// listener, given the kernel's net.ipv4.tcp_migrate_req.
pub fn logMigrationPolicy(mode: Mode) void {
    const value = listener.tcpMigrateReq();
    switch (mode) {
        .supervisor => if (value == @as(?u8, 1)) {
            log.info("net.ipv4.tcp_migrate_req=1: restarts hand the same listening sockets to " ++
                "the new workers; an upgrade to fewer workers steers connections away from the " ++
                "sockets it leaves behind, and the kernel moves what is still queued on them " ++
                "when they close", .{});
        } else {
            log.info("net.ipv4.tcp_migrate_req={d}: restarts hand the same listening sockets " ++
                "to the new workers, so no queued connection is reset; an upgrade to fewer " ++
                "workers steers connections away from the sockets it leaves behind and empties " ++
                "them before they close (a handshake still completing then would be reset: " ++
                "set it to 1 to have the kernel move it)", .{value orelse 0});
        },
        .standalone => if (value == @as(?u8, 1)) {
            log.info("net.ipv4.tcp_migrate_req=1: connections queued on this process's " ++
                "listeners move to another process of the group when it stops", .{});
        } else {
            log.info("net.ipv4.tcp_migrate_req=0: when this process stops, connections " ++
                "queued on its listeners in the instant after its last accept are reset; set " ++
                "it to 1 (Linux 5.14+) or use the supervisor's SIGHUP restart to lose none", .{});
        },
    }
}

/// Builds one JSON line in a fixed buffer; keys and values the program writes are plain
/// ASCII, and strings are escaped anyway.
pub const Line = struct {
    buf: [1 << 17]u8 = undefined,
    len: usize = 0,
    /// Whether the next value needs a comma before it.
    comma: bool = false,

    pub fn begin(event: []const u8) Line {
        var line: Line = .{};
        line.raw("{");
        line.string("event", event);
        var ts: [calendar.rfc3339_len]u8 = undefined;
        calendar.formatRfc3339Ms(&ts, sys.realtimeMs());
        line.string("ts", &ts);
        return line;
    }

    /// A JSON object that is not an event (an admin endpoint's body): no name, no time.
    pub fn document() Line {
        var line: Line = .{};
        line.raw("{");
        return line;
    }

    /// The object, closed; valid while the line is.
    pub fn finish(self: *Line) []const u8 {
        self.raw("}\n");
        return self.buf[0..self.len];
    }

    fn raw(self: *Line, bytes: []const u8) void {
        const n = @min(bytes.len, self.buf.len - self.len);
        @memcpy(self.buf[self.len..][0..n], bytes[0..n]);
        self.len += n;
    }

    fn separator(self: *Line) void {
        if (self.comma) self.raw(",");
        self.comma = true;
    }

    fn key(self: *Line, name: []const u8) void {
        self.separator();
        self.quoted(name);
        self.raw(":");
        self.comma = false;
    }

    fn quoted(self: *Line, text: []const u8) void {
        self.raw("\"");
        for (text) |c| {
            switch (c) {
                '"' => self.raw("\\\""),
                '\\' => self.raw("\\\\"),
                0...0x1f => {
                    var esc: [6]u8 = undefined;
                    self.raw(compat.bufPrint(&esc, "\\u{x:0>4}", .{c}) catch unreachable);
                },
                else => self.raw(&.{c}),
            }
        }
        self.raw("\"");
    }

    fn number(self: *Line, v: i64) void {
        var digits: [24]u8 = undefined;
        self.raw(compat.bufPrint(&digits, "{d}", .{v}) catch unreachable);
        self.comma = true;
    }

    pub fn string(self: *Line, name: []const u8, text: []const u8) void {
        self.key(name);
        self.quoted(text);
        self.comma = true;
    }

    pub fn int(self: *Line, name: []const u8, v: i64) void {
        self.key(name);
        self.number(v);
    }

    pub fn boolean(self: *Line, name: []const u8, v: bool) void {
        self.key(name);
        self.raw(if (v) "true" else "false");
        self.comma = true;
    }

    pub fn beginArray(self: *Line, name: []const u8) void {
        self.key(name);
        self.raw("[");
    }

    pub fn endArray(self: *Line) void {
        self.raw("]");
        self.comma = true;
    }

    pub fn beginObject(self: *Line) void {
        self.separator();
        self.raw("{");
        self.comma = false;
    }

    pub fn endObject(self: *Line) void {
        self.raw("}");
        self.comma = true;
    }

    pub fn beginNamedObject(self: *Line, name: []const u8) void {
        self.key(name);
        self.raw("{");
        self.comma = false;
    }

    /// A worker's counters: `connections`, `requests`, `datagrams`, `timeouts` by kind,
    /// `evicted`, `abandoned`, `output_limit`, `access_log_errors`, `access_log_dropped`,
    /// `udp_reply_drops`, and `rejected` by status.
    pub fn counters(self: *Line, stats: stats_mod.Stats) void {
        self.int("connections", @intCast(stats.connections));
        self.int("requests", @intCast(stats.requests));
        self.int("datagrams", @intCast(stats.datagrams));
        self.beginNamedObject("timeouts");
        self.int("header", @intCast(stats.timeouts.header));
        self.int("body", @intCast(stats.timeouts.body));
        self.int("idle", @intCast(stats.timeouts.idle));
        self.int("write", @intCast(stats.timeouts.write));
        self.int("request", @intCast(stats.timeouts.request));
        self.endObject();
        self.int("evicted", @intCast(stats.evicted));
        self.int("abandoned", @intCast(stats.abandoned));
        self.int("output_limit", @intCast(stats.output_limit));
        self.int("access_log_errors", @intCast(stats.access_log_errors));
        self.int("access_log_dropped", @intCast(stats.access_log_dropped));
        self.int("udp_reply_drops", @intCast(stats.udp_reply_drops));
        self.beginNamedObject("rejected");
        for (stats_mod.rejected_statuses, stats.rejected) |status, n| {
            var name: [8]u8 = undefined;
            self.int(compat.bufPrint(&name, "{d}", .{status}) catch unreachable, @intCast(n));
        }
        self.endObject();
    }

    /// Writes the line to standard output: waiting up to a second for a reader that does
    /// not keep up, never longer (see `output.zig`); a reader that went away is not our
    /// problem. Not in tests: standard output is the test runner's channel to the build
    /// runner.
    pub fn emit(self: *Line) void {
        self.raw("}\n");
        if (@import("builtin").is_test) return;
        output.writeLine(.stdout, self.buf[0..self.len], 1_000);
    }
};

test "builds a JSON line with nested arrays and objects" {
    var line: Line = .{};
    line.raw("{");
    line.string("event", "ready");
    line.int("generation", 2);
    line.beginArray("workers");
    line.beginObject();
    line.int("index", 0);
    line.string("name", "a\"b");
    line.endObject();
    line.endArray();
    line.boolean("ok", true);
    line.raw("}");
    try std.testing.expectEqualStrings(
        "{\"event\":\"ready\",\"generation\":2," ++
            "\"workers\":[{\"index\":0,\"name\":\"a\\\"b\"}],\"ok\":true}",
        line.buf[0..line.len],
    );
}

test "decodes wait statuses into an exit code or a signal" {
    try std.testing.expectEqual(Exit{ .code = 3 }, Exit.fromWaitStatus(3 << 8));
    try std.testing.expectEqual(Exit{ .signal = 9 }, Exit.fromWaitStatus(9));
    var buf: [48]u8 = undefined;
    const text = Exit.fromWaitStatus(9).describe(&buf);
    try std.testing.expectEqualStrings("was killed by signal 9", text);
}

test "every event starts with its name and an RFC 3339 UTC time with milliseconds" {
    var line = Line.begin("stopping");
    const text = line.buf[0..line.len];
    const head = "{\"event\":\"stopping\",\"ts\":\"";
    try std.testing.expectStringStartsWith(text, head);
    const ts = text[head.len..][0..calendar.rfc3339_len];
    try std.testing.expectEqual(@as(u8, 'T'), ts[10]);
    try std.testing.expectEqual(@as(u8, 'Z'), ts[23]);
    try std.testing.expect(std.mem.startsWith(u8, ts, "20"));
}
