//! The kv module of examples/kv.json: a JSON key-value store over HTTP that keeps its data in
//! Redis, through the upstream `store`, so that every worker (and every restart) sees the same
//! data.
//!
//!   GET    /kv/:key        the value stored (a JSON document), or 404
//!   PUT    /kv/:key        stores the body, which must be JSON (400 otherwise): 204
//!   DELETE /kv/:key        204, or 404
//!   GET    /kv?prefix=P    {"keys":["a","ab",…]}: the keys that start with P (all without it)
//!   GET    /health         200 from the worker itself, without Redis
//!
//! Keys live in Redis as `kv:<key>`. Each route sends one command and holds its request until
//! the reply comes (`upstream.command` returns null meanwhile): the worker serves other
//! requests in between. When Redis is down the answer is 503 (with `Retry-After`), when it is
//! slower than `responseTimeoutMs` 504, when its reply does not parse 502: those are the
//! upstream errors' default statuses, which `errorStatus` below leaves alone.
//! This is the example's real implementation; the e2e test copies it over the generated stub.
const std = @import("std");
const http = @import("../handlers/app_http.zig");
const upstream = @import("../handlers/app_upstream.zig");
const resp = upstream.resp;

/// Keys are path segments of at most this many bytes.
const max_key_bytes = 256;
const key_prefix = "kv:";

pub const State = struct {
    pub fn init(allocator: std.mem.Allocator) !State {
        _ = allocator;
        return .{};
    }

    pub fn deinit(self: *State, allocator: std.mem.Allocator) void {
        _ = self;
        _ = allocator;
    }
};

/// The Redis key of the route's `:key`, in `buf`.
fn redisKey(req: *http.Request, buf: *[key_prefix.len + max_key_bytes]u8) ![]const u8 {
    const key = req.param("key") orelse return error.BadKey;
    if (key.len == 0 or key.len > max_key_bytes) return error.BadKey;
    @memcpy(buf[0..key_prefix.len], key_prefix);
    @memcpy(buf[key_prefix.len..][0..key.len], key);
    return buf[0 .. key_prefix.len + key.len];
}

/// A reply Redis refused with: the module's error, a 500.
fn refused(reply: resp.Reply) error{Refused}!void {
    if (reply == .err) {
        std.log.warn("redis: {s}", .{reply.err});
        return error.Refused;
    }
}

/// GET /kv/:key
pub fn getKey(state: *State, req: *http.Request, res: *http.Response) !void {
    _ = state;
    var buf: [key_prefix.len + max_key_bytes]u8 = undefined;
    const key = try redisKey(req, &buf);
    const reply = try upstream.command(.store, res, &.{ "GET", key }) orelse return;
    try refused(reply);
    switch (reply) {
        .bulk => |value| {
            try res.header("Content-Type", "application/json");
            try res.write(value);
        },
        .nil => {
            res.status = 404;
            try res.header("Content-Type", "application/json");
            try res.write("{\"error\":\"no such key\"}\n");
        },
        else => return error.UnexpectedReply,
    }
}

/// PUT /kv/:key
pub fn putKey(state: *State, req: *http.Request, res: *http.Response) !void {
    _ = state;
    var buf: [key_prefix.len + max_key_bytes]u8 = undefined;
    const key = try redisKey(req, &buf);
    // Checked on the first run only: a held request runs again with the same body. Any JSON
    // document will do; one that does not parse is a 400 that says where (`req.json`).
    if (req.waits == 0) _ = try req.json(std.json.Value);
    const reply = try upstream.command(.store, res, &.{ "SET", key, req.body }) orelse return;
    try refused(reply);
    res.status = 204;
}

/// DELETE /kv/:key
pub fn deleteKey(state: *State, req: *http.Request, res: *http.Response) !void {
    _ = state;
    var buf: [key_prefix.len + max_key_bytes]u8 = undefined;
    const key = try redisKey(req, &buf);
    const reply = try upstream.command(.store, res, &.{ "DEL", key }) orelse return;
    try refused(reply);
    if (reply != .integer) return error.UnexpectedReply;
    res.status = if (reply.integer == 0) 404 else 204;
}

/// GET /kv?prefix=P: KEYS walks every key of the database, which is fine for an example; a
/// large one would page with SCAN over several calls.
pub fn listKeys(state: *State, req: *http.Request, res: *http.Response) !void {
    _ = state;
    const prefix = req.queryParam("prefix") orelse "";
    if (prefix.len > max_key_bytes) return error.BadKey;
    var pattern_buf: [key_prefix.len + 2 * max_key_bytes + 1]u8 = undefined;
    const pattern = globPattern(prefix, &pattern_buf);
    const reply = try upstream.command(.store, res, &.{ "KEYS", pattern }) orelse return;
    try refused(reply);
    if (reply != .array) return error.UnexpectedReply;
    // The keys, without their prefix, as slices of the reply (an array in the scratch arena).
    const keys = try req.arena.alloc([]const u8, @intCast(reply.array.count));
    var count: usize = 0;
    var items = reply.array;
    while (items.next()) |key| {
        if (key != .bulk or !std.mem.startsWith(u8, key.bulk, key_prefix)) continue;
        keys[count] = key.bulk[key_prefix.len..];
        count += 1;
    }
    try res.json(.{ .keys = keys[0..count] });
}

/// GET /health: answered by the worker without Redis (the service itself is up).
pub fn health(state: *State, req: *http.Request, res: *http.Response) !void {
    _ = state;
    _ = req;
    try res.write("ok\n");
}

/// `kv:<prefix>*`, with the glob's special bytes of the prefix escaped.
fn globPattern(prefix: []const u8, buf: []u8) []const u8 {
    var len: usize = key_prefix.len;
    @memcpy(buf[0..len], key_prefix);
    for (prefix) |c| {
        if (c == '*' or c == '?' or c == '[' or c == ']' or c == '\\') {
            buf[len] = '\\';
            len += 1;
        }
        buf[len] = c;
        len += 1;
    }
    buf[len] = '*';
    return buf[0 .. len + 1];
}

/// A bad key or body is the client's fault; what Redis refused is ours.
pub fn errorStatus(err: anyerror) u16 {
    return switch (err) {
        // error.InvalidJson (a body `req.json` refused) is a 400 by default.
        error.BadKey => 400,
        else => 500,
    };
}

const service = @import("../handlers/app.zig").kv;

test "outside a worker no upstream answers: 503 with Retry-After; bad input is a 400 first" {
    var state = try State.init(std.testing.allocator);
    defer state.deinit(std.testing.allocator);
    const health_answer = try service.testRequest(&state, "GET /health HTTP/1.1\r\nHost: t\r\n\r\n");
    try std.testing.expectEqual(@as(u16, 200), health_answer.status);
    const bad = try service.testRequest(&state, "PUT /kv/a HTTP/1.1\r\nHost: t\r\n" ++
        "Content-Length: 3\r\n\r\n{x}");
    try std.testing.expectEqual(@as(u16, 400), bad.status);
    try std.testing.expectEqualStrings("{\"error\":\"the body is not the JSON this route takes: " ++
        "SyntaxError at line 1, column 2\"}\n", bad.body);
    const down = try service.testRequest(&state, "GET /kv/a HTTP/1.1\r\nHost: t\r\n\r\n");
    try std.testing.expectEqual(@as(u16, 503), down.status);
    try std.testing.expectEqualStrings("1", down.header("retry-after").?);
}

test "glob patterns escape the prefix" {
    var buf: [64]u8 = undefined;
    try std.testing.expectEqualStrings("kv:a\\*b*", globPattern("a*b", &buf));
    try std.testing.expectEqualStrings("kv:*", globPattern("", &buf));
}
