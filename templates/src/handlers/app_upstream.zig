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
const std = @import("std");
const config = @import("../config.zig");
const sys = @import("../net/sys.zig");
const pool = @import("../upstream/pool.zig");
const http = @import("app/http.zig");
pub const resp = @import("../upstream/resp.zig");

/// Why a call has no reply. A route that lets them through answers 503 (with `Retry-After`)
/// for `UpstreamDown` and `UpstreamBusy`, 504 for `UpstreamTimeout`, 502 for
/// `UpstreamBadReply`, unless its `errorStatus` maps them to something other than 500.
pub const Error = error{
    /// No connection to any server of the upstream could be made, or it closed.
    UpstreamDown,
    /// No reply within the upstream's `responseTimeoutMs`.
    UpstreamTimeout,
    /// The reply did not frame, or was larger than `maxReplyBytes`.
    UpstreamBadReply,
    /// Every connection's pipeline and the queue are full.
    UpstreamBusy,
    /// The request is larger than `maxReplyBytes`.
    UpstreamRequestTooLarge,
};

/// A request is held a little past its call's deadline, so that the call's own deadline (and
/// its 504) comes first.
const hold_grace_ms = 1000;

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
        .failed => |failure| return switch (failure) {
            .down => error.UpstreamDown,
            .timeout => error.UpstreamTimeout,
            .bad_reply => error.UpstreamBadReply,
        },
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
