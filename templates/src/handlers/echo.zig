//! echo: TCP sends every byte back until the client closes; UDP sends every datagram back.
const std = @import("std");
const api = @import("api.zig");

pub fn onOpen(ctx: *const api.Context, out: *api.Output) api.Progress {
    _ = ctx;
    _ = out;
    return .{ .consumed = 0 };
}

pub fn onData(ctx: *const api.Context, input: []const u8, out: *api.Output) api.Progress {
    _ = ctx;
    const n = @min(input.len, out.free());
    std.debug.assert(out.append(input[0..n]));
    return .{ .consumed = n, .requests = @intFromBool(n > 0) };
}

pub fn onDatagram(ctx: *const api.Context, input: []const u8, reply: []u8) usize {
    _ = ctx;
    const n = @min(input.len, reply.len);
    @memcpy(reply[0..n], input[0..n]);
    return n;
}

test "echo returns what it was given, as much as fits" {
    var buf: [4]u8 = undefined;
    var out: api.Output = .{ .buf = &buf };
    const ctx: api.Context = undefined;
    const progress = onData(&ctx, "hello", &out);
    try std.testing.expectEqual(@as(usize, 4), progress.consumed);
    try std.testing.expectEqualStrings("hell", out.buf[0..out.len]);
}
