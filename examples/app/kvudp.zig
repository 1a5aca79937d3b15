//! The kvudp module: kv's values by datagram, through the same upstream `store` as
//! examples/app/kv.zig (test/e2e/upstream.test.ts adds a listener with it to kv's spec). It
//! shows a datagram module's upstream calls: the call keeps the sender's address, and
//! `upstreamReply` answers it.
//!
//!   a datagram holding a key    answered with its value, `(nil)`, or `ERR <why>`
const std = @import("std");
const datagram_api = @import("../handlers/app_datagram.zig");
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

pub fn datagram(state: *State, dg: *datagram_api.Datagram) !void {
    _ = state;
    const key = std.mem.trim(u8, dg.data, "\r\n");
    if (key.len == 0 or key.len > max_key_bytes) return dg.reply("ERR bad key");
    var buf: [key_prefix.len + max_key_bytes]u8 = undefined;
    @memcpy(buf[0..key_prefix.len], key_prefix);
    @memcpy(buf[key_prefix.len..][0..key.len], key);
    const redis_key = buf[0 .. key_prefix.len + key.len];
    // Not sent: answered at once; sent: answered by `upstreamReply`.
    upstream.sendCommand(.store, dg, &.{ "GET", redis_key }, 0) catch |err| {
        try dg.print("ERR {s}", .{@errorName(err)});
    };
}

pub fn upstreamReply(
    state: *State,
    context: u64,
    reply: upstream.Reply,
    dg: *datagram_api.Datagram,
) !void {
    _ = state;
    _ = context;
    const bytes = reply catch |err| return dg.print("ERR {s}", .{@errorName(err)});
    switch (upstream.resp.parse(bytes) catch return dg.reply("ERR UpstreamBadReply")) {
        .bulk => |value| try dg.reply(value),
        .nil => try dg.reply("(nil)"),
        else => try dg.reply("ERR unexpected reply"),
    }
}

const service = @import("../handlers/app.zig").kvudp;

test "outside a worker no upstream answers: the datagram is answered at once" {
    var state = try State.init(std.testing.allocator);
    defer state.deinit(std.testing.allocator);
    const from: datagram_api.Peer = .{ .address = .{ .ip4 = .{ 127, 0, 0, 1 } }, .port = 9 };
    try std.testing.expectEqualStrings("ERR UpstreamDown", service.testDatagram(&state, "a", from));
    try std.testing.expectEqualStrings("ERR bad key", service.testDatagram(&state, "\n", from));
}
