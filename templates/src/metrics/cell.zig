//! The counters one worker process writes: its cell of the shared metrics region
//! (`region.zig`). A worker is the only writer of its cell, so a count is a plain load and
//! an atomic store (a `mov` on x86-64 and arm64, no locked instruction), and the supervisor
//! reads it with an atomic load whenever it is scraped: no system call and no message per
//! request. The worker's `Stats` (its `stats` report line and the counters of `worker_exit`
//! and `stopped`) are read from the same cell as it exits.
//!
//! Every field is a u64 in an `extern struct`, so that the layout does not depend on the Zig
//! release or build mode of the binary: a supervisor and a worker of the same identity (see
//! `config.identity`) agree on it. Application modules' own metrics (`app.zig`) follow the
//! built-in ones; their layout is the user's and is checked with a hash (`region.zig`).
const std = @import("std");
const compat = @import("../compat.zig");
const config = @import("../config.zig");
const stats_mod = @import("../worker/stats.zig");
const app = @import("app.zig");

const listener_count = config.listeners.len;

/// Upper bounds of the request-duration histogram's buckets, in microseconds (0.5 ms to
/// 10 s; the last bucket, +Inf, takes the rest).
pub const bucket_bounds_us = [_]u64{
    500,     1_000,   2_500,   5_000,     10_000,    25_000,    50_000,
    100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000,
};
/// The same bounds as exposition `le` labels.
pub const bucket_labels = [_][]const u8{
    "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05",
    "0.1",    "0.25",  "0.5",    "1",     "2.5",  "5",     "10",
};

/// The kinds of timeouts, in the order of `Listener.timeouts` and of `Stats.timeouts`.
pub const TimeoutKind = enum(u8) { header, body, idle, write, request };
pub const timeout_kinds = std.meta.fieldNames(TimeoutKind);

pub const rejected_statuses = stats_mod.rejected_statuses;

/// Why a UDP reply was never sent, in the order of `Listener.udp_reply_drops`: the socket's
/// queue of replies waiting for room was full, the kernel refused it (an error other than
/// EAGAIN), or the worker stopped (drain timeout, immediate stop) before it could go.
pub const UdpDrop = enum(u8) { queue_full, send_error, stopped };
pub const udp_drop_reasons = std.meta.fieldNames(UdpDrop);

/// Statuses counted each under its own number; any other under its class (`4xx`), so that a
/// cell has a fixed size and a code costs one table lookup.
pub const known_codes = [_]u16{
    100, 101, 200, 201, 202, 203, 204, 205, 206, 301, 302, 303, 304, 307, 308,
    400, 401, 403, 404, 405, 406, 408, 409, 410, 411, 412, 413, 414, 415, 416,
    417, 421, 422, 425, 426, 428, 429, 431, 451, 500, 501, 502, 503, 504, 505,
};
/// Known codes, then the classes 1xx to 9xx.
pub const code_slots = known_codes.len + 9;

/// The slot of each status from 0 to 999 (a status outside 100..999 counts as 5xx).
const code_slot_of: [1000]u8 = blk: {
    @setEvalBranchQuota(10_000);
    var table: [1000]u8 = undefined;
    for (&table, 0..) |*slot, code| {
        const class = if (code < 100) 5 else code / 100;
        slot.* = known_codes.len + class - 1;
    }
    for (known_codes, 0..) |code, i| table[code] = i;
    break :blk table;
};

/// The `code` label of a slot of `Listener.codes`.
pub fn codeLabel(slot: usize, buf: *[3]u8) []const u8 {
    if (slot < known_codes.len) {
        const code = known_codes[slot];
        buf[0] = @intCast('0' + code / 100);
        buf[1] = @intCast('0' + code / 10 % 10);
        buf[2] = @intCast('0' + code % 10);
    } else {
        buf[0] = @intCast('1' + slot - known_codes.len);
        buf[1] = 'x';
        buf[2] = 'x';
    }
    return buf;
}

pub fn codeSlot(code: u16) usize {
    return code_slot_of[if (code < 1000) code else 500];
}

/// One listener's counters in one worker's cell.
pub const Listener = extern struct {
    accepted: u64,
    /// A gauge: connections open now (not folded when the worker is gone).
    open: u64,
    /// Requests (or other units of work) handlers reported, as `Stats.requests`.
    requests: u64,
    datagrams_received: u64,
    datagrams_sent: u64,
    /// UDP replies that met a full send buffer (EAGAIN) and waited in the socket's queue.
    udp_replies_deferred: u64,
    udp_reply_drops: [udp_drop_reasons.len]u64,
    /// `sendmsg` calls that carried several replies to one peer as one UDP GSO send.
    udp_gso_sends: u64,
    evicted: u64,
    abandoned: u64,
    output_limit: u64,
    /// Proxy listeners: clients closed at once because no server of the upstream accepted
    /// them (every try spent, or every server down).
    no_server: u64,
    timeouts: [timeout_kinds.len]u64,
    rejected: [rejected_statuses.len]u64,
    /// HTTP responses by status (see `codeSlot`).
    codes: [code_slots]u64,
};

/// One (listener, route) request-duration histogram: counts per bucket (not cumulative; the
/// last is +Inf) and the sum of durations.
pub const Histogram = extern struct {
    buckets: [bucket_bounds_us.len + 1]u64,
    sum_us: u64,
};

/// Where each listener's histograms start in `Cell.histograms` (one per `routes` entry).
pub const route_base: [listener_count + 1]usize = blk: {
    var base: [listener_count + 1]usize = undefined;
    base[0] = 0;
    for (config.listeners, 0..) |l, i| base[i + 1] = base[i] + l.routes.len;
    break :blk base;
};
pub const histogram_count = route_base[listener_count];

/// Why an upstream call failed, in the order of `UpstreamServer.failures` (as
/// `upstream/pool.zig`'s `Failure`): no connection or it closed, no reply in time, a reply
/// that did not frame.
pub const UpstreamFailure = enum(u8) { down, timeout, bad_reply };
pub const upstream_failures = std.meta.fieldNames(UpstreamFailure);

/// One upstream server's passive health in one worker's cell.
pub const UpstreamServer = extern struct {
    /// Calls written to a connection to this server.
    calls: u64,
    /// Calls on a connection to this server that failed, by kind.
    failures: [upstream_failures.len]u64,
    /// Times the worker left the server out (it refused, or timed out).
    ejections: u64,
    /// A gauge: until when (monotonic milliseconds) the worker leaves it out; 0: it does not.
    ejected_until_ms: u64,
};

/// Calls of one upstream that failed before any server had them, in one worker's cell.
pub const UpstreamUnsent = extern struct {
    /// Every connection's pipeline and the queue were full: refused at once.
    busy: u64,
    /// No connection was open or could be opened.
    down: u64,
    /// Waited in the queue past the call's deadline.
    timeout: u64,
};
pub const unsent_reasons = std.meta.fieldNames(UpstreamUnsent);

/// Where each upstream's servers start in `Cell.upstream_servers`, in spec order.
pub const server_base: [config.upstreams.len + 1]usize = blk: {
    var base: [config.upstreams.len + 1]usize = undefined;
    base[0] = 0;
    for (config.upstreams, 0..) |u, i| base[i + 1] = base[i] + u.servers.len;
    break :blk base;
};
/// One server of a proxy listener, as one worker sees it (`handlers/proxy.zig`).
pub const ProxyServer = extern struct {
    /// Clients joined to it (its connect succeeded).
    connections: u64,
    /// Connects to it that were refused, reset or timed out (each retried elsewhere).
    connect_failures: u64,
    bytes_to_server: u64,
    bytes_to_client: u64,
    /// A gauge: 1 while this worker's health checks hold it down (not folded).
    down: u64,
};

/// Where each listener's servers start in `Cell.proxy_servers` (a proxy's upstream servers;
/// none for other listeners).
pub const proxy_server_base: [listener_count + 1]usize = blk: {
    var base: [listener_count + 1]usize = undefined;
    base[0] = 0;
    for (config.listeners, 0..) |l, i| {
        base[i + 1] = base[i] + if (l.proxy) |p| p.servers.len else 0;
    }
    break :blk base;
};
pub const proxy_server_count = proxy_server_base[listener_count];

pub const Cell = extern struct {
    listeners: [listener_count]Listener,
    histograms: [histogram_count]Histogram,
    upstream_servers: [server_base[config.upstreams.len]]UpstreamServer,
    upstream_unsent: [config.upstreams.len]UpstreamUnsent,
    app: [app.value_count]u64,
    proxy_servers: [proxy_server_count]ProxyServer,
};

/// Server `s` of upstream `u` in this process's cell.
pub inline fn upstreamServer(u: usize, s: usize) *UpstreamServer {
    return &own.upstream_servers[server_base[u] + s];
}

/// The cell this process writes: its own cell of the shared region once `attach`ed, and a
/// private one until then (tests, and a worker whose region could not be mapped).
var private: Cell = std.mem.zeroes(Cell);
pub var own: *Cell = &private;
/// Where application metrics go: `own.app`, or a private array when the region was laid out
/// for other application metrics (a module edited between two builds of the same identity).
var private_app: [app.value_count]u64 = @splat(0);
pub var app_values: *[app.value_count]u64 = &private_app;

pub fn attach(cell: *Cell, app_layout_matches: bool) void {
    own = cell;
    app_values = if (app_layout_matches) &cell.app else &private_app;
}

/// Back to the private cell (tests).
pub fn detach() void {
    own = &private;
    app_values = &private_app;
}

/// Adds to a counter of this process's own cell: a single writer, so a plain load and an
/// atomic store that a concurrent reader never sees torn.
pub inline fn add(counter: *u64, n: u64) void {
    @atomicStore(u64, counter, counter.* +% n, .monotonic);
}

pub inline fn sub(counter: *u64, n: u64) void {
    @atomicStore(u64, counter, counter.* -% n, .monotonic);
}

pub inline fn set(counter: *u64, value: u64) void {
    @atomicStore(u64, counter, value, .monotonic);
}

/// Reads a counter of any cell (the supervisor's side).
pub inline fn load(counter: *const u64) u64 {
    return @atomicLoad(u64, counter, .monotonic);
}

pub inline fn at(listener_index: u16) *Listener {
    return &own.listeners[listener_index];
}

/// The counters of server `server` of proxy listener `listener_index` (this worker's cell).
pub inline fn proxyServer(listener_index: u16, server: u16) *ProxyServer {
    const index = proxy_server_base[listener_index] + server;
    std.debug.assert(index < proxy_server_base[listener_index + 1]);
    return &own.proxy_servers[index];
}

pub fn bucketOf(duration_us: u64) usize {
    for (bucket_bounds_us, 0..) |bound, i| {
        if (duration_us <= bound) return i;
    }
    return bucket_bounds_us.len;
}

/// An HTTP response with `code` for a request of `route` (an index into the listener's
/// `routes`) that took `duration_us`.
pub fn response(listener_index: u16, route: usize, code: u16, duration_us: u64) void {
    add(&own.listeners[listener_index].codes[codeSlot(code)], 1);
    if (route >= config.listeners[listener_index].routes.len) return;
    // A service without HTTP routes has no histograms: not even the index is compiled.
    if (histogram_count > 0) {
        const h = &own.histograms[route_base[listener_index] + route];
        add(&h.buckets[bucketOf(duration_us)], 1);
        add(&h.sum_us, duration_us);
    }
}

/// An HTTP response that belongs to no request's route (an error answer of the parser, a
/// timeout's 408): counted by status only.
pub fn status(listener_index: u16, code: u16) void {
    add(&own.listeners[listener_index].codes[codeSlot(code)], 1);
}

pub fn countRejected(l: *Listener, code: u16) void {
    for (rejected_statuses, 0..) |s, i| {
        if (s == code) return add(&l.rejected[i], 1);
    }
    // Statuses outside the list (a custom handler's) are still counted, as 400s.
    add(&l.rejected[0], 1);
}

/// The worker's counters as its `stats` line and events carry them: every listener summed.
pub fn stats(cell: *const Cell) stats_mod.Stats {
    var s: stats_mod.Stats = .{};
    for (&cell.listeners) |*l| {
        s.connections += load(&l.accepted);
        s.requests += load(&l.requests);
        s.datagrams += load(&l.datagrams_received);
        s.evicted += load(&l.evicted);
        s.abandoned += load(&l.abandoned);
        s.output_limit += load(&l.output_limit);
        s.timeouts.header += load(&l.timeouts[compat.enumIndex(TimeoutKind.header)]);
        s.timeouts.body += load(&l.timeouts[compat.enumIndex(TimeoutKind.body)]);
        s.timeouts.idle += load(&l.timeouts[compat.enumIndex(TimeoutKind.idle)]);
        s.timeouts.write += load(&l.timeouts[compat.enumIndex(TimeoutKind.write)]);
        s.timeouts.request += load(&l.timeouts[compat.enumIndex(TimeoutKind.request)]);
        for (&s.rejected, &l.rejected) |*mine, *theirs| mine.* += load(theirs);
        for (&l.udp_reply_drops) |*n| s.udp_reply_drops += load(n);
    }
    return s;
}

/// Adds `from`'s counters into `into` (gauges are left out: they die with their process).
pub fn fold(into: *Cell, from: *const Cell) void {
    const skip = @offsetOf(Listener, "open") / @sizeOf(u64);
    for (&into.listeners, &from.listeners) |*a, *b| {
        const dst: *[@sizeOf(Listener) / 8]u64 = @ptrCast(a);
        const src: *const [@sizeOf(Listener) / 8]u64 = @ptrCast(b);
        for (dst, src, 0..) |*d, *s, i| {
            if (i != skip) d.* += load(s);
        }
    }
    for (&into.histograms, &from.histograms) |*a, *b| {
        const dst: *[@sizeOf(Histogram) / 8]u64 = @ptrCast(a);
        const src: *const [@sizeOf(Histogram) / 8]u64 = @ptrCast(b);
        for (dst, src) |*d, *s| d.* += load(s);
    }
    for (&into.upstream_servers, &from.upstream_servers) |*a, *b| {
        a.calls += load(&b.calls);
        for (&a.failures, &b.failures) |*d, *s| d.* += load(s);
        a.ejections += load(&b.ejections);
        // `ejected_until_ms` is a gauge: it dies with its process.
    }
    for (&into.upstream_unsent, &from.upstream_unsent) |*a, *b| {
        a.busy += load(&b.busy);
        a.down += load(&b.down);
        a.timeout += load(&b.timeout);
    }
    app.fold(&into.app, &from.app);
    for (&into.proxy_servers, &from.proxy_servers) |*a, *b| {
        a.connections += load(&b.connections);
        a.connect_failures += load(&b.connect_failures);
        a.bytes_to_server += load(&b.bytes_to_server);
        a.bytes_to_client += load(&b.bytes_to_client);
    }
}

test "codes map to their own slot or their class" {
    var buf: [3]u8 = undefined;
    try std.testing.expectEqualStrings("200", codeLabel(codeSlot(200), &buf));
    try std.testing.expectEqualStrings("404", codeLabel(codeSlot(404), &buf));
    try std.testing.expectEqualStrings("4xx", codeLabel(codeSlot(418), &buf));
    try std.testing.expectEqualStrings("9xx", codeLabel(codeSlot(999), &buf));
    try std.testing.expectEqualStrings("5xx", codeLabel(codeSlot(42), &buf));
    try std.testing.expectEqual(@as(usize, 0), bucketOf(0));
    try std.testing.expectEqual(@as(usize, 0), bucketOf(500));
    try std.testing.expectEqual(@as(usize, 1), bucketOf(501));
    try std.testing.expectEqual(bucket_bounds_us.len, bucketOf(10_000_001));
}

test "a cell's counters become the worker's Stats, and fold leaves gauges out" {
    var cell = std.mem.zeroes(Cell);
    var total = std.mem.zeroes(Cell);
    const l = &cell.listeners[0];
    add(&l.accepted, 3);
    add(&l.open, 2);
    add(&l.requests, 5);
    add(&l.timeouts[compat.enumIndex(TimeoutKind.idle)], 1);
    countRejected(l, 431);
    const s = stats(&cell);
    try std.testing.expectEqual(@as(u64, 3), s.connections);
    try std.testing.expectEqual(@as(u64, 1), s.timeouts.idle);
    try std.testing.expectEqual(@as(u64, 1), s.rejected[4]);
    fold(&total, &cell);
    fold(&total, &cell);
    try std.testing.expectEqual(@as(u64, 6), total.listeners[0].accepted);
    try std.testing.expectEqual(@as(u64, 0), total.listeners[0].open);
}
