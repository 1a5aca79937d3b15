//! The kvline module: kv's keys over a line protocol on TCP, through the same upstream `store`
//! as examples/app/kv.zig (test/e2e/upstream.test.ts adds a listener with it to kv's spec). It
//! shows a stream module's upstream calls: one per line, its reply in `upstreamReply`.
//!
//!   GET key          the value, or (nil)
//!   SET key value    OK
//!
//! While a line's call is pending the connection reads nothing more, so that the answers of
//! lines sent together come back in their order.
const std = @import("std");
const stream = @import("../handlers/app_stream.zig");
const upstream = @import("../handlers/app_upstream.zig");

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

pub const Connection = struct {};

pub fn frame(state: *State, conn: *Connection, line: []const u8, io: *stream.Io) !void {
    _ = state;
    _ = conn;
    var words = std.mem.tokenizeScalar(u8, line, ' ');
    const verb = words.next() orelse return io.write("ERR empty line\n");
    const key = words.next() orelse return io.write("ERR no key\n");
    if (key.len > max_key_bytes) return io.write("ERR key too long\n");
    var buf: [key_prefix.len + max_key_bytes]u8 = undefined;
    @memcpy(buf[0..key_prefix.len], key_prefix);
    @memcpy(buf[key_prefix.len..][0..key.len], key);
    const redis_key = buf[0 .. key_prefix.len + key.len];
    const sent = if (std.mem.eql(u8, verb, "GET"))
        upstream.sendCommand(.store, io, &.{ "GET", redis_key }, 0)
    else if (std.mem.eql(u8, verb, "SET"))
        upstream.sendCommand(.store, io, &.{ "SET", redis_key, words.rest() }, 0)
    else
        return io.write("ERR unknown command\n");
    // Not sent (every connection busy, or none can be made): said at once.
    sent catch |err| return failed(io, err);
}

/// The reply of the line's call, or why there is none.
pub fn upstreamReply(
    state: *State,
    conn: *Connection,
    context: u64,
    reply: upstream.Reply,
    io: *stream.Io,
) !void {
    _ = state;
    _ = conn;
    _ = context;
    const bytes = reply catch |err| return failed(io, err);
    switch (upstream.resp.parse(bytes) catch return failed(io, error.UpstreamBadReply)) {
        .bulk => |value| {
            try io.write(value);
            try io.write("\n");
        },
        .nil => try io.write("(nil)\n"),
        .simple => |text| try io.print("{s}\n", .{text}),
        .err => |text| try io.print("ERR redis: {s}\n", .{text}),
        else => try io.write("ERR unexpected reply\n"),
    }
}

fn failed(io: *stream.Io, err: anyerror) !void {
    try io.print("ERR {s}\n", .{@errorName(err)});
}

const service = @import("../handlers/app.zig").kvline;

test "outside a worker no upstream answers: each line says so, in order" {
    var state = try State.init(std.testing.allocator);
    defer state.deinit(std.testing.allocator);
    var conn: service.Connection = .{};
    const out = try service.testBytes(&state, &conn, "GET a\nPUT a\nSET b 1\nGET\n");
    try std.testing.expectEqualStrings("ERR UpstreamDown\nERR unknown command\n" ++
        "ERR UpstreamDown\nERR no key\n", out);
}
