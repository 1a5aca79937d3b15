//! Human-readable messages on standard error, prefixed with the time (RFC 3339 UTC, with
//! milliseconds), the service name and the pid.
const std = @import("std");
const builtin = @import("builtin");
const compat = @import("compat.zig");
const config = @import("config.zig");
const output = @import("output.zig");
const calendar = @import("calendar.zig");
const sys = @import("net/sys.zig");
const linux = std.os.linux;

/// How long a log line may wait for a reader that does not keep up (see `output.zig`).
const budget_ms = 100;

pub fn info(comptime format: []const u8, args: anytype) void {
    write("", format, args);
}

pub fn warn(comptime format: []const u8, args: anytype) void {
    write("warning: ", format, args);
}

pub fn err(comptime format: []const u8, args: anytype) void {
    write("error: ", format, args);
}

fn write(prefix: []const u8, comptime format: []const u8, args: anytype) void {
    // Unit tests exercise paths that log; their output would only bury the test report.
    if (builtin.is_test) return;
    var buf: [1024]u8 = undefined;
    var ts: [calendar.rfc3339_len]u8 = undefined;
    calendar.formatRfc3339Ms(&ts, sys.realtimeMs());
    const head = compat.bufPrint(&buf, "{s} " ++ config.name ++ "[{d}]: {s}", .{
        &ts,
        linux.getpid(),
        prefix,
    }) catch unreachable;
    const body = compat.bufPrint(buf[head.len .. buf.len - 1], format, args) catch
        buf[head.len .. buf.len - 1];
    buf[head.len + body.len] = '\n';
    output.writeLine(.stderr, buf[0 .. head.len + body.len + 1], budget_ms);
}
