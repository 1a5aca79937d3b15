//! The API of upstream calls for application modules, at the path every module file imports
//! (`const upstream = @import("../handlers/app_upstream.zig");`): an HTTP route sends a
//! request to an upstream of the spec and answers with its reply, without blocking its
//! worker. The runtime behind it is `upstream/pool.zig`.
//!
//! ```zig
//! pub fn getKey(state: *State, req: *http.Request, res: *http.Response) !void {
//!     const key = req.param("key").?;
//!     const reply = try upstream.command(.store, res, &.{ "GET", key }) orelse return;
//!     // ... answer from `reply` (a resp.Reply)
//! }
//! ```
//!
//! The first run of the route sends the command and holds the request (`res.later`), and
//! `command` returns null: the route returns at once. When the reply comes (or the call
//! fails), the route runs again with the same request, and the same `command` returns the
//! reply instead of sending anything. One call per request at a time.
//!
//! Stream and datagram modules `send` (or `sendCommand`) from any callback and get the reply
//! in their `upstreamReply` callback, with the `context` they gave:
//!
//! ```zig
//! pub fn frame(state: *State, conn: *Connection, line: []const u8, io: *stream.Io) !void {
//!     try upstream.sendCommand(.store, io, &.{ "GET", line }, 0);
//! }
//! pub fn upstreamReply(state: *State, conn: *Connection, context: u64,
//!     reply: upstream.Reply, io: *stream.Io) !void
//! {
//!     const bytes = reply catch |err| return io.print("error {s}\n", .{@errorName(err)});
//!     // ... answer from `bytes`
//! }
//! ```
//!
//! A stream connection makes one call at a time, and while it is pending no frame is
//! delivered and nothing is read: its answers stay in order. A datagram module's call keeps
//! the sender's address; `upstreamReply` answers it with `dg.reply`.
const std = @import("std");
const config = @import("../config.zig");
const sys = @import("../net/sys.zig");
const pool = @import("../upstream/pool.zig");
const api = @import("api.zig");
const http = @import("app/http.zig");
const stream = @import("app/stream.zig");
const datagram = @import("app/datagram.zig");
pub const resp = @import("../upstream/resp.zig");

/// Why a call has no reply. A route that lets them through answers 503 (with `Retry-After`)
/// for `UpstreamDown` and `UpstreamBusy`, 504 for `UpstreamTimeout`, 502 for
/// `UpstreamBadReply`, unless its `errorStatus` maps them to something other than 500.
pub const Error = api.UpstreamError;

/// What a stream or datagram module's `upstreamReply` is given: the reply's bytes (valid
/// until the callback returns), or why there is none.
pub const Reply = api.UpstreamReply;

/// A request is held a little past its call's deadline, so that the call's own deadline (and
/// its 504) comes first.
const hold_grace_ms = api.upstream_hold_grace_ms;

/// The reply to `request` for the HTTP request `res` answers: null when the request is held
/// for it (return from the route; it runs again once the reply or a failure is there).
pub fn call(
    comptime name: @TypeOf(.enum_literal),
    res: *http.Response,
    request: []const u8,
) Error!?[]const u8 {
    const u = comptime indexOf(name);
    if (pool.find(res.waiter)) |ref| return answer(ref, res);
    if (request.len > config.upstreams[u].max_reply_bytes) return error.UpstreamRequestTooLarge;
    const ref = try pool.begin(u, res.waiter);
    @memcpy(pool.buffer(ref)[0..request.len], request);
    try pool.send(ref, request.len, sys.monotonicMs());
    return answer(ref, res);
}

/// `call` for a `resp` upstream: sends `args` as a Redis command and returns the reply read.
pub fn command(
    comptime name: @TypeOf(.enum_literal),
    res: *http.Response,
    args: []const []const u8,
) Error!?resp.Reply {
    const u = comptime indexOf(name);
    if (config.upstreams[u].framing != .resp) {
        @compileError("upstream ." ++ @tagName(name) ++ " does not frame RESP; use call");
    }
    const bytes = if (pool.find(res.waiter)) |ref| try answer(ref, res) else sent: {
        const ref = try pool.begin(u, res.waiter);
        const written = resp.command(pool.buffer(ref), args) catch {
            pool.cancel(ref);
            return error.UpstreamRequestTooLarge;
        };
        try pool.send(ref, written.len, sys.monotonicMs());
        break :sent try answer(ref, res);
    };
    // A reply was framed as RESP before it was delivered, so it reads.
    return resp.parse(bytes orelse return null) catch error.UpstreamBadReply;
}

fn answer(ref: pool.Ref, res: *http.Response) Error!?[]const u8 {
    switch (pool.status(ref)) {
        .pending_until_ms => |at| {
            const now = sys.monotonicMs();
            const wait_ms = (if (at > now) at - now else 0) + hold_grace_ms;
            _ = res.later(@intCast(@min(wait_ms, std.math.maxInt(u32))));
            return null;
        },
        .reply => |bytes| return bytes,
        .failed => |failure| return pool.failureError(failure),
    }
}

/// Sends `request` for a stream connection (`from` is the callback's `*stream.Io`) or a
/// datagram's sender (`from` is the `datagram` callback's `*Datagram`). The module's
/// `upstreamReply` gets the reply, or the failure, with `context`. An error here means
/// nothing was sent and no callback will come.
pub fn send(
    comptime name: @TypeOf(.enum_literal),
    from: anytype,
    request: []const u8,
    context: u64,
) Error!void {
    return sendAt(comptime indexOf(name), from, request, context);
}

/// `send` to the upstream at index `u` of the spec (the runtime's own tests use it).
pub fn sendAt(comptime u: u16, from: anytype, request: []const u8, context: u64) Error!void {
    if (request.len > config.upstreams[u].max_reply_bytes) return error.UpstreamRequestTooLarge;
    const ref = try pool.beginFor(u, try originOf(from, context));
    @memcpy(pool.buffer(ref)[0..request.len], request);
    try sent(u, ref, request.len, from);
}

/// `send` for a `resp` upstream: `args` as a Redis command. Read the reply's bytes with
/// `resp.parse` (they frame as RESP: the parse fails only on what the framer let through).
pub fn sendCommand(
    comptime name: @TypeOf(.enum_literal),
    from: anytype,
    args: []const []const u8,
    context: u64,
) Error!void {
    const u = comptime indexOf(name);
    if (config.upstreams[u].framing != .resp) {
        @compileError("upstream ." ++ @tagName(name) ++ " does not frame RESP; use send");
    }
    const ref = try pool.beginFor(u, try originOf(from, context));
    const written = resp.command(pool.buffer(ref), args) catch {
        pool.cancel(ref);
        return error.UpstreamRequestTooLarge;
    };
    try sent(u, ref, written.len, from);
}

fn sent(u: u16, ref: pool.Ref, len: usize, from: anytype) Error!void {
    const now = sys.monotonicMs();
    try pool.send(ref, len, now);
    if (@TypeOf(from) == *stream.Io) {
        from.call_due_ms = now + config.upstreams[u].response_timeout_ms;
    }
}

/// Whom a call from `from` answers.
fn originOf(from: anytype, context: u64) Error!pool.Origin {
    switch (@TypeOf(from)) {
        *stream.Io => {
            if (from.call_due_ms != null or pool.find(from.waiter) != null) {
                return error.UpstreamCallPending;
            }
            return .{ .waiter = from.waiter, .context = context };
        },
        *datagram.Datagram => return .{
            .datagram = .{
                .listener_index = from.listener_index,
                .fd = from.fd,
                .peer = from.peer,
            },
            .context = context,
        },
        else => @compileError("upstream.send takes a stream module's io or a datagram " ++
            "module's dg; an HTTP route uses upstream.call or upstream.command"),
    }
}

/// The upstream a module names, or a build error that names it and the spec's upstreams.
fn indexOf(comptime name: @TypeOf(.enum_literal)) u16 {
    comptime {
        var names: []const u8 = "";
        for (config.upstreams, 0..) |u, i| {
            if (std.mem.eql(u8, u.name, @tagName(name))) return i;
            names = names ++ (if (names.len == 0) "" else ", ") ++ u.name;
        }
        const known = if (names.len == 0) "none" else names;
        @compileError("upstream ." ++ @tagName(name) ++ " is not in the spec (its upstreams: " ++
            known ++ "); add it to \"upstreams\" or fix the name");
    }
}
