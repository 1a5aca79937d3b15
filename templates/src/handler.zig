//! Your handler: the listeners whose spec says `"handler": "custom"` call these functions.
//!
//! gen-reuseport created this file once and never overwrites it: it is yours to change.
//! The contract (see src/handlers/api.zig): handlers work on byte slices only, never block
//! and never allocate; the worker does every read and write. Return how much input you
//! used; what you leave is offered again together with the next bytes that arrive.
//!
//! The example below answers each line of a TCP stream with the line in upper case, and
//! each UDP datagram with its upper-case copy.
const std = @import("std");
const compat = @import("compat.zig");
const api = @import("handlers/api.zig");

/// Called once when a TCP connection is accepted; may write a greeting.
pub fn onOpen(ctx: *const api.Context, out: *api.Output) api.Progress {
    _ = ctx;
    _ = out;
    return .{ .consumed = 0 };
}

/// Called when bytes arrive on a TCP connection.
pub fn onData(ctx: *const api.Context, input: []const u8, out: *api.Output) api.Progress {
    _ = ctx;
    var progress: api.Progress = .{ .consumed = 0 };
    while (compat.findScalar(u8, input[progress.consumed..], '\n')) |end| {
        const line = input[progress.consumed..][0 .. end + 1];
        if (line.len > out.free()) break;
        for (line) |c| _ = out.append(&.{std.ascii.toUpper(c)});
        progress.consumed += line.len;
        progress.requests += 1;
    }
    return progress;
}

/// Called for every UDP datagram; returns the length of the reply written to `reply`
/// (0 sends nothing).
pub fn onDatagram(ctx: *const api.Context, input: []const u8, reply: []u8) usize {
    _ = ctx;
    const n = @min(input.len, reply.len);
    for (input[0..n], reply[0..n]) |c, *r| r.* = std.ascii.toUpper(c);
    return n;
}

test "answers each complete line in upper case" {
    var buf: [64]u8 = undefined;
    var out: api.Output = .{ .buf = &buf };
    const ctx: api.Context = undefined;
    const progress = onData(&ctx, "hello\nwor", &out);
    try std.testing.expectEqual(@as(usize, 6), progress.consumed);
    try std.testing.expectEqualStrings("HELLO\n", out.buf[0..out.len]);
}
