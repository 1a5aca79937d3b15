//! Human-readable messages on standard error, prefixed with the service name and pid.
const std = @import("std");
const builtin = @import("builtin");
const compat = @import("compat.zig");
const config = @import("config.zig");
const sys = @import("net/sys.zig");
const linux = std.os.linux;

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
    const head = compat.bufPrint(&buf, config.name ++ "[{d}]: {s}", .{
        linux.getpid(),
        prefix,
    }) catch unreachable;
    const body = compat.bufPrint(buf[head.len .. buf.len - 1], format, args) catch
        buf[head.len .. buf.len - 1];
    buf[head.len + body.len] = '\n';
    // A log line that cannot be written has nowhere else to go.
    sys.writeAll(2, buf[0 .. head.len + body.len + 1]) catch {};
}
