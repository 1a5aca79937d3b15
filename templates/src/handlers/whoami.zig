//! whoami: tells the client which process served it, as one line
//! `worker=<index> pid=<pid> gen=<generation>`. TCP writes the line and closes; UDP
//! answers every datagram with it.
const std = @import("std");
const compat = @import("../compat.zig");
const api = @import("api.zig");

fn line(ctx: *const api.Context, buf: []u8) []const u8 {
    return compat.bufPrint(buf, "worker={d} pid={d} gen={d}\n", .{
        ctx.worker_index,
        ctx.pid,
        ctx.generation,
    }) catch buf[0..0];
}

pub fn onOpen(ctx: *const api.Context, out: *api.Output) api.Progress {
    var buf: [80]u8 = undefined;
    _ = out.append(line(ctx, &buf));
    return .{ .consumed = 0, .requests = 1, .close = true };
}

pub fn onData(ctx: *const api.Context, input: []const u8, out: *api.Output) api.Progress {
    _ = ctx;
    _ = out;
    return .{ .consumed = input.len, .close = true };
}

pub fn onDatagram(ctx: *const api.Context, input: []const u8, reply: []u8) usize {
    _ = input;
    return line(ctx, reply).len;
}

test "whoami names the worker, the pid and the generation" {
    var buf: [128]u8 = undefined;
    var out: api.Output = .{ .buf = &buf };
    const ctx: api.Context = .{
        .listener = undefined,
        .listener_index = 0,
        .worker_index = 3,
        .pid = 42,
        .generation = 7,
        .draining = false,
    };
    const progress = onOpen(&ctx, &out);
    try std.testing.expect(progress.close);
    try std.testing.expectEqualStrings("worker=3 pid=42 gen=7\n", out.buf[0..out.len]);
}
