//! The metrics exposition: the Prometheus text format 0.0.4, or OpenMetrics 1.0 when the
//! scraper's `Accept` asks for it (`formatFor`), rendered from the shared region
//! (`region.zig`) and what the supervisor knows (`View`) into a caller's buffer.
//!
//! Per-worker series (`worker` label: the slot) add a slot's retired totals to its live cells,
//! so that they only grow while the supervisor lives; series without the label add every slot.
//! A series appears once it has counted something where its labels are open-ended (an HTTP
//! status code), and always otherwise.
const std = @import("std");
const builtin = @import("builtin");
const config = @import("../config.zig");
const compat = @import("../compat.zig");
const cell_mod = @import("cell.zig");
const region_mod = @import("region.zig");
const app = @import("app.zig");
const proc = @import("proc.zig");
const address = @import("../address.zig");
const sys = @import("../net/sys.zig");

const Cell = cell_mod.Cell;
const Listener = cell_mod.Listener;
const Region = region_mod.Region;

pub const Format = enum { prometheus, openmetrics };

/// The format an `Accept` header value asks for: OpenMetrics when it names
/// `application/openmetrics-text` (with a q above 0), else the Prometheus text format.
pub fn formatFor(accept: ?[]const u8) Format {
    var types = std.mem.splitScalar(u8, accept orelse return .prometheus, ',');
    while (types.next()) |entry| {
        var params = std.mem.splitScalar(u8, entry, ';');
        const media = std.mem.trim(u8, params.first(), " \t");
        if (!std.ascii.eqlIgnoreCase(media, "application/openmetrics-text")) continue;
        var refused = false;
        while (params.next()) |param| {
            const p = std.mem.trim(u8, param, " \t");
            if (p.len >= 2 and (p[0] == 'q' or p[0] == 'Q') and p[1] == '=') {
                const q = std.mem.trim(u8, p[2..], " \t");
                refused = std.mem.trim(u8, q, "0.").len == 0;
            }
        }
        if (!refused) return .openmetrics;
    }
    return .prometheus;
}

pub fn contentType(format: Format) []const u8 {
    return switch (format) {
        .prometheus => "text/plain; version=0.0.4; charset=utf-8",
        .openmetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
    };
}

/// Workers by state (`reuseport_workers{state}`).
pub const WorkerStates = struct {
    /// Started, not yet ready.
    starting: u32 = 0,
    /// Ready and serving.
    ready: u32 = 0,
    /// Asked to stop (an old generation, a stop), not yet exited.
    draining: u32 = 0,
};

/// A process of the service, for the `process_*` series.
pub const Process = struct {
    /// The worker's slot; null for the supervisor (or the standalone process) itself.
    slot: ?u16,
    pid: i32,
};

/// What the supervisor knows and the region does not.
pub const View = struct {
    region: *const Region,
    generation: u32,
    workers: WorkerStates,
    /// The supervisor first, then every live worker process.
    processes: []const Process,
};

/// A buffer size that holds the exposition of `view`: the size it has now, with room for
/// series that appear and numbers that grow before `render` runs. `render` fails with
/// `error.NoSpaceLeft` only when more changed meanwhile; ask again and retry then.
pub fn bufferBytes(view: *const View) usize {
    var out: Out = .{ .buf = &.{}, .counting = true };
    writeAll(&out, .openmetrics, view) catch unreachable;
    return out.len + out.len / 4 + 16 * 1024;
}

/// Renders the exposition of `view` into `buf` (see `bufferBytes` for its size).
pub fn render(buf: []u8, format: Format, view: *const View) error{NoSpaceLeft}![]const u8 {
    var out: Out = .{ .buf = buf };
    try writeAll(&out, format, view);
    return buf[0..out.len];
}

const Out = struct {
    buf: []u8,
    len: usize = 0,
    /// Measures only (see `bufferBytes`).
    counting: bool = false,

    fn raw(self: *Out, bytes: []const u8) error{NoSpaceLeft}!void {
        if (!self.counting) {
            if (bytes.len > self.buf.len - self.len) return error.NoSpaceLeft;
            @memcpy(self.buf[self.len..][0..bytes.len], bytes);
        }
        self.len += bytes.len;
    }

    fn print(self: *Out, comptime fmt: []const u8, args: anytype) error{NoSpaceLeft}!void {
        var tmp: [64]u8 = undefined;
        try self.raw(compat.bufPrint(&tmp, fmt, args) catch return error.NoSpaceLeft);
    }

    /// A label value, with backslash, double quote and line feed escaped (both formats).
    fn escaped(self: *Out, text: []const u8) error{NoSpaceLeft}!void {
        var start: usize = 0;
        for (text, 0..) |c, i| {
            const escape: []const u8 = switch (c) {
                '\\' => "\\\\",
                '"' => "\\\"",
                '\n' => "\\n",
                else => continue,
            };
            try self.raw(text[start..i]);
            try self.raw(escape);
            start = i + 1;
        }
        try self.raw(text[start..]);
    }
};

pub const Label = struct { name: []const u8, value: []const u8 };

const Kind = enum { counter, gauge, histogram };

/// `# HELP` and `# TYPE` of a family. `base` is the name without `_total`, which OpenMetrics
/// uses for counter families and the Prometheus format does not.
fn family(out: *Out, format: Format, base: []const u8, kind: Kind, help: []const u8) !void {
    const suffix = if (kind == .counter and format == .prometheus) "_total" else "";
    try out.raw("# HELP ");
    try out.raw(base);
    try out.raw(suffix);
    try out.raw(" ");
    try out.raw(help);
    try out.raw("\n# TYPE ");
    try out.raw(base);
    try out.raw(suffix);
    try out.raw(" ");
    try out.raw(@tagName(kind));
    try out.raw("\n");
}

/// One sample line: `name{labels} value`.
fn sample(
    out: *Out,
    name: []const u8,
    suffix: []const u8,
    labels: []const Label,
    value: []const u8,
) !void {
    try out.raw(name);
    try out.raw(suffix);
    if (labels.len > 0) {
        try out.raw("{");
        for (labels, 0..) |l, i| {
            if (i > 0) try out.raw(",");
            try out.raw(l.name);
            try out.raw("=\"");
            try out.escaped(l.value);
            try out.raw("\"");
        }
        try out.raw("}");
    }
    try out.raw(" ");
    try out.raw(value);
    try out.raw("\n");
}

fn sampleInt(
    out: *Out,
    name: []const u8,
    suffix: []const u8,
    labels: []const Label,
    value: u64,
) !void {
    var buf: [24]u8 = undefined;
    try sample(out, name, suffix, labels, compat.bufPrint(&buf, "{d}", .{value}) catch unreachable);
}

// Reading the region: a value is a word of a cell, the same word in every cell.

const cell_words = @sizeOf(Cell) / 8;

fn wordOf(c: *const Cell, i: usize) u64 {
    const words: *const [cell_words]u64 = @ptrCast(c);
    return cell_mod.load(&words[i]);
}

/// A slot's total of word `i`: its retired totals and its live cells.
fn slotSum(r: *const Region, slot: u16, i: usize) u64 {
    var total = wordOf(&r.retired[slot], i);
    var cells = r.liveCells(slot);
    while (cells.next()) |c| total +%= wordOf(c, i);
    return total;
}

fn totalSum(r: *const Region, i: usize) u64 {
    var total: u64 = 0;
    for (0..r.slotCount()) |slot| total +%= slotSum(r, @intCast(slot), i);
    return total;
}

fn listenerWord(listener: usize, comptime field: []const u8) usize {
    return (listener * @sizeOf(Listener) + @offsetOf(Listener, field)) / 8;
}

fn histogramWord(h: usize) usize {
    return (@offsetOf(Cell, "histograms") + h * @sizeOf(cell_mod.Histogram)) / 8;
}

fn appWord(i: usize) usize {
    return @offsetOf(Cell, "app") / 8 + i;
}

fn decimal(buf: *[12]u8, value: anytype) []const u8 {
    return compat.bufPrint(buf, "{d}", .{value}) catch unreachable;
}

/// A process's `worker` label: its slot, or "supervisor".
fn workerLabel(buf: *[8]u8, slot: ?u16) []const u8 {
    return if (slot) |s| slotLabel(buf, s) else "supervisor";
}

fn slotLabel(buf: *[8]u8, slot: usize) []const u8 {
    return compat.bufPrint(buf, "{d}", .{slot}) catch unreachable;
}

fn isTcp(l: config.Listener) bool {
    return l.protocol == .tcp;
}

fn writeAll(out: *Out, format: Format, view: *const View) !void {
    try writeService(out, format, view);
    try writeConnections(out, format, view.region);
    try writeRequests(out, format, view.region);
    try writeDurations(out, format, view.region);
    try writeDatagrams(out, format, view.region);
    try writeUpstreams(out, format, view.region);
    try writeLimits(out, format, view.region);
    try writeProcesses(out, format, view.processes);
    try writeApp(out, format, view.region);
    try writeProxyServers(out, format, view.region);
    if (format == .openmetrics) try out.raw("# EOF\n");
}

fn writeService(out: *Out, format: Format, view: *const View) !void {
    try family(out, format, "reuseport_build_info", .gauge, "The program's version, the Zig " ++
        "release that built it and its identity (spec-supervisor fingerprints); always 1.");
    try sample(out, "reuseport_build_info", "", &.{
        .{ .name = "version", .value = config.version },
        .{ .name = "zig", .value = builtin.zig_version_string },
        .{ .name = "fingerprint", .value = config.identity },
    }, "1");
    try family(out, format, "reuseport_generation", .gauge, "The generation of workers " ++
        "serving: 1 at start, one more for each restart (SIGHUP).");
    try sampleInt(out, "reuseport_generation", "", &.{}, view.generation);
    try family(out, format, "reuseport_workers", .gauge, "Worker processes by state.");
    inline for (comptime std.meta.fieldNames(WorkerStates)) |state| {
        const labels = [_]Label{.{ .name = "state", .value = state }};
        try sampleInt(out, "reuseport_workers", "", &labels, @field(view.workers, state));
    }
    try family(out, format, "reuseport_worker_restarts", .counter, "Workers replaced, by " ++
        "reason: crash (exited unexpectedly), hung (killed by the watchdog), reload (SIGHUP).");
    inline for (comptime std.meta.fieldNames(region_mod.RestartReason)) |reason| {
        const labels = [_]Label{.{ .name = "reason", .value = reason }};
        const count = view.region.restartCount(@field(region_mod.RestartReason, reason));
        try sampleInt(out, "reuseport_worker_restarts", "_total", &labels, count);
    }
}

/// A per-listener, per-worker series over the listeners `which` accepts.
fn perWorker(
    out: *Out,
    r: *const Region,
    name: []const u8,
    suffix: []const u8,
    comptime field: []const u8,
    comptime which: fn (config.Listener) bool,
) !void {
    for (config.listeners, 0..) |l, li| {
        if (!which(l)) continue;
        for (0..r.slotCount()) |slot| {
            var buf: [8]u8 = undefined;
            const labels = [_]Label{
                .{ .name = "listener", .value = l.name },
                .{ .name = "worker", .value = slotLabel(&buf, slot) },
            };
            const value = slotSum(r, @intCast(slot), listenerWord(li, field));
            try sampleInt(out, name, suffix, &labels, value);
        }
    }
}

fn writeConnections(out: *Out, format: Format, r: *const Region) !void {
    if (!anyListener(isTcp)) return;
    const accepted = "reuseport_connections_accepted";
    try family(out, format, accepted, .counter, "TCP connections accepted, by listener and " ++
        "worker slot.");
    try perWorker(out, r, accepted, "_total", "accepted", isTcp);
    const open = "reuseport_connections_open";
    try family(out, format, open, .gauge, "TCP connections open now, by listener and worker slot.");
    try perWorker(out, r, open, "", "open", isTcp);
}

fn isHttp(l: config.Listener) bool {
    return l.routes.len > 0;
}

fn isUdp(l: config.Listener) bool {
    return l.protocol == .udp;
}

fn anyListener(comptime which: fn (config.Listener) bool) bool {
    for (config.listeners) |l| if (which(l)) return true;
    return false;
}

fn writeRequests(out: *Out, format: Format, r: *const Region) !void {
    if (!anyListener(isHttp)) return;
    const name = "reuseport_http_requests";
    try family(out, format, name, .counter, "HTTP responses, by listener, worker slot and " ++
        "status code (a code without a series of its own counts under its class, as 4xx).");
    for (config.listeners, 0..) |l, li| {
        if (!isHttp(l)) continue;
        for (0..r.slotCount()) |slot| {
            for (0..cell_mod.code_slots) |code| {
                const word = listenerWord(li, "codes") + code;
                const value = slotSum(r, @intCast(slot), word);
                if (value == 0) continue;
                var slot_buf: [8]u8 = undefined;
                var code_buf: [3]u8 = undefined;
                const labels = [_]Label{
                    .{ .name = "listener", .value = l.name },
                    .{ .name = "worker", .value = slotLabel(&slot_buf, slot) },
                    .{ .name = "code", .value = cell_mod.codeLabel(code, &code_buf) },
                };
                try sampleInt(out, name, "_total", &labels, value);
            }
        }
    }
}

fn writeDurations(out: *Out, format: Format, r: *const Region) !void {
    if (!anyListener(isHttp)) return;
    const name = "reuseport_http_request_duration_seconds";
    try family(out, format, name, .histogram, "Time from a request's complete head to its " ++
        "answer, by listener and route (route * is the built-in handler, an empty route none).");
    for (config.listeners, 0..) |l, li| {
        for (l.routes, 0..) |route, ri| {
            const words = histogramWord(cell_mod.route_base[li] + ri);
            var counts: [cell_mod.bucket_bounds_us.len + 1]u64 = undefined;
            for (&counts, 0..) |*c, b| c.* = totalSum(r, words + b);
            const sum_us = totalSum(r, words + counts.len);
            const base = [_]Label{
                .{ .name = "listener", .value = l.name },
                .{ .name = "route", .value = route },
            };
            try histogram(out, name, &base, &cell_mod.bucket_labels, &counts, sum_us, 1_000_000);
        }
    }
}

/// A histogram's samples: cumulative buckets, +Inf, count and sum (`sum / divisor`).
fn histogram(
    out: *Out,
    name: []const u8,
    base: []const Label,
    bounds: []const []const u8,
    counts: []const u64,
    sum: u64,
    divisor: u64,
) !void {
    var labels: [4]Label = undefined;
    @memcpy(labels[0..base.len], base);
    var cumulative: u64 = 0;
    for (counts, 0..) |c, b| {
        cumulative += c;
        const le = if (b < bounds.len) bounds[b] else "+Inf";
        labels[base.len] = .{ .name = "le", .value = le };
        try sampleInt(out, name, "_bucket", labels[0 .. base.len + 1], cumulative);
    }
    var buf: [48]u8 = undefined;
    const sum_text = if (divisor == 1)
        compat.bufPrint(&buf, "{d}", .{sum}) catch unreachable
    else
        compat.bufPrint(&buf, "{d}.{d:0>6}", .{ sum / divisor, sum % divisor }) catch unreachable;
    try sample(out, name, "_sum", base, sum_text);
    try sampleInt(out, name, "_count", base, cumulative);
}

fn writeDatagrams(out: *Out, format: Format, r: *const Region) !void {
    if (!anyListener(isUdp)) return;
    const received = "reuseport_datagrams_received";
    try family(out, format, received, .counter, "UDP datagrams received, by listener and " ++
        "worker slot.");
    try perWorker(out, r, received, "_total", "datagrams_received", isUdp);
    const sent = "reuseport_datagrams_sent";
    try family(out, format, sent, .counter, "UDP datagrams sent, by listener and worker slot.");
    try perWorker(out, r, sent, "_total", "datagrams_sent", isUdp);
    const deferred = "reuseport_udp_replies_deferred";
    try family(out, format, deferred, .counter, "UDP replies that found the socket's send " ++
        "buffer full and waited in its queue, by listener and worker slot.");
    try perWorker(out, r, deferred, "_total", "udp_replies_deferred", isUdp);
    const gso = "reuseport_udp_gso_sends";
    try family(out, format, gso, .counter, "Sends that carried several UDP replies to one " ++
        "peer as one GSO (UDP_SEGMENT) send, by listener and worker slot.");
    try perWorker(out, r, gso, "_total", "udp_gso_sends", isUdp);
    const drops = "reuseport_udp_reply_drops";
    try family(out, format, drops, .counter, "UDP replies never sent, by listener and reason " ++
        "(queue_full, send_error, stopped).");
    for (config.listeners, 0..) |l, li| {
        if (!isUdp(l)) continue;
        for (cell_mod.udp_drop_reasons, 0..) |reason, k| {
            const labels = [_]Label{
                .{ .name = "listener", .value = l.name },
                .{ .name = "reason", .value = reason },
            };
            const value = totalSum(r, listenerWord(li, "udp_reply_drops") + k);
            try sampleInt(out, drops, "_total", &labels, value);
        }
    }
}

fn upstreamServerWord(u: usize, s: usize, comptime field: []const u8) usize {
    const at = @offsetOf(Cell, "upstream_servers") +
        (cell_mod.server_base[u] + s) * @sizeOf(cell_mod.UpstreamServer);
    return (at + @offsetOf(cell_mod.UpstreamServer, field)) / 8;
}

/// A server's `server` label: as the spec gives it, `host:port` or `address:port`.
fn serverLabel(buf: *[320]u8, server: config.Server) []const u8 {
    if (server.host.len > 0) {
        return compat.bufPrint(buf, "{s}:{d}", .{ server.host, server.port }) catch unreachable;
    }
    var text: [64]u8 = undefined;
    const ip = address.format(server.address, &text);
    if (server.address.isIp6()) {
        return compat.bufPrint(buf, "[{s}]:{d}", .{ ip, server.port }) catch unreachable;
    }
    return compat.bufPrint(buf, "{s}:{d}", .{ ip, server.port }) catch unreachable;
}

/// The upstreams' passive health: calls and failures per server, ejections, and how many
/// live workers leave each server out now; calls that failed before reaching a server.
fn writeUpstreams(out: *Out, format: Format, r: *const Region) !void {
    if (config.upstreams.len == 0) return;
    const calls = "reuseport_upstream_calls";
    try family(out, format, calls, .counter, "Upstream calls written to a server, by " ++
        "upstream and server.");
    try perServer(out, r, calls, "_total", "calls", null);
    const failures = "reuseport_upstream_failures";
    try family(out, format, failures, .counter, "Upstream calls on a connection to a server " ++
        "that failed, by kind: down (refused, or closed before the reply), timeout, bad_reply.");
    inline for (cell_mod.upstream_failures, 0..) |kind, k| {
        try perServer(out, r, failures, "_total", "failures", .{ .kind = kind, .index = k });
    }
    const ejections = "reuseport_upstream_ejections";
    try family(out, format, ejections, .counter, "Times a worker left an upstream server " ++
        "out of its rotation (it refused a connection or timed out).");
    try perServer(out, r, ejections, "_total", "ejections", null);
    try writeEjected(out, format, r);
    const unsent = "reuseport_upstream_unsent";
    try family(out, format, unsent, .counter, "Upstream calls that failed before any server " ++
        "had them, by reason: busy (every pipeline and the queue full), down (no connection " ++
        "could be made), timeout (waited in the queue past the deadline).");
    for (config.upstreams, 0..) |u, ui| {
        inline for (cell_mod.unsent_reasons) |reason| {
            const labels = [_]Label{
                .{ .name = "upstream", .value = u.name },
                .{ .name = "reason", .value = reason },
            };
            const word = (@offsetOf(Cell, "upstream_unsent") +
                ui * @sizeOf(cell_mod.UpstreamUnsent) +
                @offsetOf(cell_mod.UpstreamUnsent, reason)) / 8;
            try sampleInt(out, unsent, "_total", &labels, totalSum(r, word));
        }
    }
}

const FailureKind = struct { kind: []const u8, index: usize };

/// A counter per upstream server, summed over every worker (and the ones retired).
fn perServer(
    out: *Out,
    r: *const Region,
    name: []const u8,
    suffix: []const u8,
    comptime field: []const u8,
    failure: ?FailureKind,
) !void {
    for (config.upstreams, 0..) |u, ui| {
        for (u.servers, 0..) |server, si| {
            var buf: [320]u8 = undefined;
            var labels: [3]Label = .{
                .{ .name = "upstream", .value = u.name },
                .{ .name = "server", .value = serverLabel(&buf, server) },
                undefined,
            };
            var word = upstreamServerWord(ui, si, field);
            var n: usize = 2;
            if (failure) |f| {
                labels[2] = .{ .name = "kind", .value = f.kind };
                word += f.index;
                n = 3;
            }
            try sampleInt(out, name, suffix, labels[0..n], totalSum(r, word));
        }
    }
}

/// How many live worker processes leave each server out now (their cells' gauge holds the
/// moment the ejection ends, on the monotonic clock all processes share).
fn writeEjected(out: *Out, format: Format, r: *const Region) !void {
    const name = "reuseport_upstream_ejected";
    try family(out, format, name, .gauge, "Live worker processes that leave an upstream " ++
        "server out of their rotation now (passive health).");
    const now = sys.monotonicMs();
    for (config.upstreams, 0..) |u, ui| {
        for (u.servers, 0..) |server, si| {
            const word = upstreamServerWord(ui, si, "ejected_until_ms");
            var count: u64 = 0;
            for (0..r.slotCount()) |slot| {
                var cells = r.liveCells(@intCast(slot));
                while (cells.next()) |c| {
                    if (wordOf(c, word) > now) count += 1;
                }
            }
            var buf: [320]u8 = undefined;
            const labels = [_]Label{
                .{ .name = "upstream", .value = u.name },
                .{ .name = "server", .value = serverLabel(&buf, server) },
            };
            try sampleInt(out, name, "", &labels, count);
        }
    }
}

fn writeLimits(out: *Out, format: Format, r: *const Region) !void {
    if (!anyListener(isTcp)) return;
    const timeouts = "reuseport_timeouts";
    try family(out, format, timeouts, .counter, "Connections whose deadline passed, by " ++
        "listener and kind (header, body, idle, write, request).");
    for (config.listeners, 0..) |l, li| {
        if (!isTcp(l)) continue;
        for (cell_mod.timeout_kinds, 0..) |kind, k| {
            const labels = [_]Label{
                .{ .name = "listener", .value = l.name },
                .{ .name = "kind", .value = kind },
            };
            const value = totalSum(r, listenerWord(li, "timeouts") + k);
            try sampleInt(out, timeouts, "_total", &labels, value);
        }
    }
    const rejected = "reuseport_rejected";
    try family(out, format, rejected, .counter, "Requests refused for breaking a rule or a " ++
        "limit, by listener and status code.");
    for (config.listeners, 0..) |l, li| {
        if (!isTcp(l)) continue;
        for (cell_mod.rejected_statuses, 0..) |code, k| {
            var buf: [12]u8 = undefined;
            const labels = [_]Label{
                .{ .name = "listener", .value = l.name },
                .{ .name = "code", .value = decimal(&buf, code) },
            };
            const value = totalSum(r, listenerWord(li, "rejected") + k);
            try sampleInt(out, rejected, "_total", &labels, value);
        }
    }
    const evicted = "reuseport_evicted";
    try family(out, format, evicted, .counter, "Connections closed to make room for new " ++
        "clients at the connection limit, by listener.");
    for (config.listeners, 0..) |l, li| {
        if (!isTcp(l)) continue;
        const labels = [_]Label{.{ .name = "listener", .value = l.name }};
        try sampleInt(out, evicted, "_total", &labels, totalSum(r, listenerWord(li, "evicted")));
    }
}

fn writeProcesses(out: *Out, format: Format, processes: []const Process) !void {
    const boot = proc.bootTime();
    const families = [_]struct { name: []const u8, kind: Kind, help: []const u8 }{
        .{ .name = "process_cpu_seconds", .kind = .counter, .help = "User and system CPU time." },
        .{ .name = "process_resident_memory_bytes", .kind = .gauge, .help = "Resident memory." },
        .{ .name = "process_open_fds", .kind = .gauge, .help = "Open file descriptors." },
        .{ .name = "process_start_time_seconds", .kind = .gauge, .help = "Start time since " ++
            "the Unix epoch." },
    };
    inline for (families, 0..) |f, which| {
        try family(out, format, f.name, f.kind, f.help ++ " By process: the supervisor " ++
            "or a worker's slot.");
        for (processes) |p| {
            const s = proc.sample(p.pid, boot) orelse continue;
            var slot_buf: [8]u8 = undefined;
            var pid_buf: [12]u8 = undefined;
            const labels = [_]Label{
                .{ .name = "worker", .value = workerLabel(&slot_buf, p.slot) },
                .{ .name = "pid", .value = decimal(&pid_buf, p.pid) },
            };
            var buf: [32]u8 = undefined;
            switch (which) {
                0 => try sample(out, f.name, "_total", &labels, s.cpuSeconds(&buf)),
                1 => try sampleInt(out, f.name, "", &labels, s.resident_bytes),
                2 => try sampleInt(out, f.name, "", &labels, s.open_fds),
                else => try sample(out, f.name, "", &labels, s.startSeconds(&buf)),
            }
        }
    }
}

fn writeApp(out: *Out, format: Format, r: *const Region) !void {
    inline for (app.entries) |e| {
        switch (e.metric.kind) {
            .counter, .gauge => {
                const kind: Kind = if (e.metric.kind == .counter) .counter else .gauge;
                const suffix = if (kind == .counter) "_total" else "";
                try family(out, format, e.exported, kind, e.metric.help);
                for (0..r.slotCount()) |slot| {
                    var buf: [8]u8 = undefined;
                    const labels = [_]Label{.{ .name = "worker", .value = slotLabel(&buf, slot) }};
                    const value = slotSum(r, @intCast(slot), appWord(e.base));
                    if (kind == .gauge) {
                        const signed: i64 = @bitCast(value);
                        var text: [24]u8 = undefined;
                        const shown = compat.bufPrint(&text, "{d}", .{signed}) catch unreachable;
                        try sample(out, e.exported, suffix, &labels, shown);
                    } else {
                        try sampleInt(out, e.exported, suffix, &labels, value);
                    }
                }
            },
            .histogram => {
                try family(out, format, e.exported, .histogram, e.metric.help);
                const buckets = e.metric.buckets;
                var counts: [buckets.len + 1]u64 = undefined;
                for (&counts, 0..) |*c, b| c.* = totalSum(r, appWord(e.base + b));
                const sum = totalSum(r, appWord(e.base + buckets.len + 1));
                const bounds = comptime boundLabels(buckets);
                try histogram(out, e.exported, &.{}, &bounds, &counts, sum, 1);
            },
        }
    }
}

fn proxyServerWord(index: usize, comptime field: []const u8) usize {
    const at = @offsetOf(Cell, "proxy_servers") + index * @sizeOf(cell_mod.ProxyServer);
    return (at + @offsetOf(cell_mod.ProxyServer, field)) / 8;
}

const ProxyFamily = struct { name: []const u8, field: []const u8, help: []const u8 };

const proxy_families = [_]ProxyFamily{
    .{
        .name = "reuseport_proxy_server_connections",
        .field = "connections",
        .help = "Clients a proxy listener joined to each server of its upstream.",
    },
    .{
        .name = "reuseport_proxy_server_connect_failures",
        .field = "connect_failures",
        .help = "Connects to each server that were refused, reset or timed out.",
    },
    .{
        .name = "reuseport_proxy_server_sent_bytes",
        .field = "bytes_to_server",
        .help = "Bytes a proxy listener sent each server (its clients' bytes).",
    },
    .{
        .name = "reuseport_proxy_server_received_bytes",
        .field = "bytes_to_client",
        .help = "Bytes a proxy listener sent its clients from each server.",
    },
};

/// Per server of each proxy listener: the counters above, summed over the workers, and how
/// many live workers' health checks hold it down.
fn writeProxyServers(out: *Out, format: Format, r: *const Region) !void {
    if (cell_mod.proxy_server_count == 0) return;
    inline for (proxy_families) |f| {
        try family(out, format, f.name, .counter, f.help ++ " By listener and server.");
        try proxyServerSamples(out, r, f.name, "_total", f.field);
    }
    const down = "reuseport_proxy_server_down";
    try family(out, format, down, .gauge, "Workers whose health checks hold the server down " ++
        "(0: up for every worker), by listener and server.");
    try proxyServerSamples(out, r, down, "", "down");
    const no_server = "reuseport_proxy_no_server";
    try family(out, format, no_server, .counter, "Clients a proxy listener closed at once " ++
        "because no server of its upstream accepted them, by listener.");
    for (config.listeners, 0..) |l, li| {
        if (l.proxy == null) continue;
        const labels = [_]Label{.{ .name = "listener", .value = l.name }};
        const total = totalSum(r, listenerWord(li, "no_server"));
        try sampleInt(out, no_server, "_total", &labels, total);
    }
}

fn proxyServerSamples(
    out: *Out,
    r: *const Region,
    name: []const u8,
    suffix: []const u8,
    comptime field: []const u8,
) !void {
    for (config.listeners, 0..) |l, li| {
        const proxy = l.proxy orelse continue;
        for (proxy.servers, 0..) |server, s| {
            var endpoint: [320]u8 = undefined;
            const shown = serverLabel(&endpoint, server);
            const labels = [_]Label{
                .{ .name = "listener", .value = l.name },
                .{ .name = "server", .value = shown },
            };
            const index = cell_mod.proxy_server_base[li] + s;
            try sampleInt(out, name, suffix, &labels, totalSum(r, proxyServerWord(index, field)));
        }
    }
}

fn boundLabels(comptime buckets: []const u64) [buckets.len][]const u8 {
    var labels: [buckets.len][]const u8 = undefined;
    for (buckets, 0..) |b, i| labels[i] = std.fmt.comptimePrint("{d}", .{b});
    return labels;
}

test "label values escape backslash, double quote and line feed" {
    var buf: [128]u8 = undefined;
    var out: Out = .{ .buf = &buf };
    const labels = [_]Label{
        .{ .name = "a", .value = "x\\y\"z\nw" },
        .{ .name = "b", .value = "" },
    };
    try sample(&out, "m", "_total", &labels, "1");
    const expected = "m_total{a=\"x\\\\y\\\"z\\nw\",b=\"\"} 1\n";
    try std.testing.expectEqualStrings(expected, buf[0..out.len]);
}

test "the format follows Accept" {
    try std.testing.expectEqual(Format.prometheus, formatFor(null));
    try std.testing.expectEqual(Format.prometheus, formatFor("text/plain;version=0.0.4"));
    const om = "application/openmetrics-text;version=1.0.0;q=0.75,text/plain;version=0.0.4;q=0.5";
    try std.testing.expectEqual(Format.openmetrics, formatFor(om));
    try std.testing.expectEqual(Format.openmetrics, formatFor("Application/OpenMetrics-Text"));
    try std.testing.expectEqual(Format.prometheus, formatFor("application/openmetrics-text; q=0"));
}

test "renders both formats from the region, and says when the buffer is short" {
    var region = try Region.create(std.testing.allocator, 2, 8);
    defer region.deinit(std.testing.allocator);
    region.claim(0, 0, 1);
    region.claim(5, 1, 1);
    const words: *[cell_words]u64 = @ptrCast(region.cell(5));
    cell_mod.add(&words[listenerWord(0, "accepted")], 4);
    cell_mod.add(&words[listenerWord(0, "codes") + cell_mod.codeSlot(404)], 2);
    if (cell_mod.histogram_count > 0) cell_mod.add(&words[histogramWord(0) + 2], 3);
    region.fold(5, .{ .expected = false });
    const processes = [_]Process{.{ .slot = null, .pid = std.os.linux.getpid() }};
    const view: View = .{
        .region = &region,
        .generation = 3,
        .workers = .{ .ready = 2 },
        .processes = &processes,
    };
    const size = bufferBytes(&view);
    const buf = try std.testing.allocator.alloc(u8, size);
    defer std.testing.allocator.free(buf);
    const text = try render(buf, .prometheus, &view);
    const has = struct {
        fn f(haystack: []const u8, needle: []const u8) bool {
            return compat.find(u8, haystack, needle) != null;
        }
    }.f;
    try std.testing.expect(has(text, "reuseport_generation 3\n"));
    try std.testing.expect(has(text, "reuseport_workers{state=\"ready\"} 2\n"));
    try std.testing.expect(has(text, "reuseport_worker_restarts_total{reason=\"crash\"} 1\n"));
    try std.testing.expect(has(text, "process_open_fds{worker=\"supervisor\",pid=\""));
    try std.testing.expect(!has(text, "# EOF"));
    const first = config.listeners[0];
    if (first.protocol == .tcp) {
        try std.testing.expect(has(text, "# TYPE reuseport_connections_accepted_total counter\n"));
        var line: [160]u8 = undefined;
        const expected = try compat.bufPrint(&line, "reuseport_connections_accepted_total" ++
            "{{listener=\"{s}\",worker=\"1\"}} 4\n", .{first.name});
        try std.testing.expect(has(text, expected));
    }
    if (first.routes.len > 0) {
        try std.testing.expect(has(text, "code=\"404\"} 2\n"));
        try std.testing.expect(has(text, "le=\"0.0025\"} 3\n"));
        try std.testing.expect(has(text, "le=\"+Inf\"} 3\n"));
    }
    const om = try render(buf, .openmetrics, &view);
    try std.testing.expect(std.mem.endsWith(u8, om, "\n# EOF\n"));
    try std.testing.expect(has(om, "# TYPE reuseport_worker_restarts counter\n"));
    try std.testing.expect(has(om, "reuseport_worker_restarts_total{reason=\"hung\"} 0\n"));
    var small: [64]u8 = undefined;
    try std.testing.expectError(error.NoSpaceLeft, render(&small, .openmetrics, &view));
}

test "upstream servers' calls, failures and ejections, and who leaves them out now" {
    if (config.upstreams.len == 0) return;
    var region = try Region.create(std.testing.allocator, 2, 8);
    defer region.deinit(std.testing.allocator);
    region.claim(0, 0, 1);
    region.claim(1, 1, 1);
    // Worker 1 made 5 calls, 2 of which timed out, ejected the server once and leaves it
    // out for an hour; its successor (after a fold) too; worker 0 left it out in the past.
    const live: *[cell_words]u64 = @ptrCast(region.cell(1));
    cell_mod.add(&live[upstreamServerWord(0, 0, "calls")], 5);
    const timeout = compat.enumIndex(cell_mod.UpstreamFailure.timeout);
    cell_mod.add(&live[upstreamServerWord(0, 0, "failures") + timeout], 2);
    cell_mod.add(&live[upstreamServerWord(0, 0, "ejections")], 1);
    const an_hour_ahead = sys.monotonicMs() + 3_600_000;
    cell_mod.set(&live[upstreamServerWord(0, 0, "ejected_until_ms")], an_hour_ahead);
    const past: *[cell_words]u64 = @ptrCast(region.cell(0));
    cell_mod.set(&past[upstreamServerWord(0, 0, "ejected_until_ms")], 1);
    const unsent = (@offsetOf(Cell, "upstream_unsent") +
        @offsetOf(cell_mod.UpstreamUnsent, "busy")) / 8;
    cell_mod.add(&live[unsent], 7);
    const processes = [_]Process{.{ .slot = null, .pid = std.os.linux.getpid() }};
    const view: View = .{
        .region = &region,
        .generation = 1,
        .workers = .{},
        .processes = &processes,
    };
    const buf = try std.testing.allocator.alloc(u8, bufferBytes(&view));
    defer std.testing.allocator.free(buf);
    const text = try render(buf, .prometheus, &view);
    var server_buf: [320]u8 = undefined;
    const server = serverLabel(&server_buf, config.upstreams[0].servers[0]);
    const name = config.upstreams[0].name;
    var calls_buf: [512]u8 = undefined;
    const calls = try compat.bufPrint(&calls_buf, "reuseport_upstream_calls_total{{" ++
        "upstream=\"{s}\",server=\"{s}\"}} 5\n", .{ name, server });
    try std.testing.expect(compat.find(u8, text, calls) != null);
    var want: [512]u8 = undefined;
    const checks = [_]struct { []const u8, []const u8 }{
        .{ "reuseport_upstream_failures_total", ",kind=\"timeout\"} 2\n" },
        .{ "reuseport_upstream_failures_total", ",kind=\"down\"} 0\n" },
        .{ "reuseport_upstream_ejections_total", "} 1\n" },
        .{ "reuseport_upstream_ejected", "} 1\n" },
    };
    for (checks) |check| {
        const line = try compat.bufPrint(&want, "{s}{{upstream=\"{s}\",server=\"{s}\"{s}", .{
            check[0], name, server, check[1],
        });
        try std.testing.expect(compat.find(u8, text, line) != null);
    }
    const busy = try compat.bufPrint(&want, "reuseport_upstream_unsent_total{{upstream=\"{s}\"," ++
        "reason=\"busy\"}} 7\n", .{name});
    try std.testing.expect(compat.find(u8, text, busy) != null);
    // Retired: the counters stay, the gauge goes with the process.
    region.fold(1, .{ .expected = true });
    const after = try render(buf, .prometheus, &view);
    try std.testing.expect(compat.find(u8, after, calls) != null);
    const gone = try compat.bufPrint(&want, "reuseport_upstream_ejected{{upstream=\"{s}\"," ++
        "server=\"{s}\"}} 0\n", .{ name, server });
    try std.testing.expect(compat.find(u8, after, gone) != null);
}

test "a proxy's servers: counters summed over workers and folded; down counts live workers" {
    if (cell_mod.proxy_server_count == 0) return;
    var region = try Region.create(std.testing.allocator, 2, 8);
    defer region.deinit(std.testing.allocator);
    region.claim(0, 0, 1);
    region.claim(1, 1, 1);
    const li = for (config.listeners, 0..) |l, i| {
        if (l.proxy != null) break i;
    } else unreachable;
    const index = cell_mod.proxy_server_base[li];
    for ([_]u32{ 0, 1 }) |c| {
        const words: *[cell_words]u64 = @ptrCast(region.cell(c));
        cell_mod.add(&words[proxyServerWord(index, "connections")], 3);
        cell_mod.add(&words[proxyServerWord(index, "bytes_to_client")], 1000);
        cell_mod.set(&words[proxyServerWord(index, "down")], 1);
        cell_mod.add(&words[listenerWord(li, "no_server")], 2);
    }
    // Worker 1 is gone: its counts stay, its view of the server's health does not.
    region.fold(1, .{ .expected = false });
    const processes = [_]Process{};
    const view: View = .{
        .region = &region,
        .generation = 1,
        .workers = .{ .ready = 1 },
        .processes = &processes,
    };
    const buf = try std.testing.allocator.alloc(u8, bufferBytes(&view));
    defer std.testing.allocator.free(buf);
    const text = try render(buf, .prometheus, &view);
    const server = config.listeners[li].proxy.?.servers[0];
    var host: [64]u8 = undefined;
    var line: [256]u8 = undefined;
    const labels = try compat.bufPrint(&line, "{{listener=\"{s}\",server=\"{s}:{d}\"}}", .{
        config.listeners[li].name, address.format(server.address, &host), server.port,
    });
    var want: [320]u8 = undefined;
    const cases = [_]struct { name: []const u8, value: u64 }{
        .{ .name = "reuseport_proxy_server_connections_total", .value = 6 },
        .{ .name = "reuseport_proxy_server_received_bytes_total", .value = 2000 },
        .{ .name = "reuseport_proxy_server_down", .value = 1 },
    };
    for (cases) |case| {
        const expected = try compat.bufPrint(&want, "{s}{s} {d}\n", .{
            case.name, labels, case.value,
        });
        try std.testing.expect(compat.find(u8, text, expected) != null);
    }
    const no_server = try compat.bufPrint(&want, "reuseport_proxy_no_server_total" ++
        "{{listener=\"{s}\"}} 4\n", .{config.listeners[li].name});
    try std.testing.expect(compat.find(u8, text, no_server) != null);
}
