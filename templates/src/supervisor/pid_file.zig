//! The pid file: written atomically (temporary file, then rename) once the service is
//! ready, so a reader never sees a partial number; removed when the service exits, unless it
//! names another process by then (a new supervisor that took over in an upgrade).
const std = @import("std");
const compat = @import("../compat.zig");
const sys = @import("../net/sys.zig");
const linux = std.os.linux;

pub fn write(path: [*:0]const u8, pid: i32) sys.Error!void {
    var tmp_buf: [4096:0]u8 = undefined;
    const target = std.mem.span(path);
    const tmp = compat.bufPrint(&tmp_buf, "{s}.tmp", .{target}) catch return error.Unexpected;
    tmp_buf[tmp.len] = 0;
    const flags: linux.O = .{ .ACCMODE = .WRONLY, .CREAT = true, .TRUNC = true, .CLOEXEC = true };
    const rc = linux.open(&tmp_buf, flags, 0o644);
    if (compat.errno(rc) != .SUCCESS) return error.AccessDenied;
    const fd: sys.Fd = @intCast(rc);
    var text: [16]u8 = undefined;
    const line = compat.bufPrint(&text, "{d}\n", .{pid}) catch unreachable;
    const written = sys.writeAll(fd, line);
    sys.close(fd);
    try written;
    if (compat.errno(linux.rename(&tmp_buf, path)) != .SUCCESS) return error.AccessDenied;
}

pub fn remove(path: [*:0]const u8) void {
    _ = linux.unlink(path);
}

/// Removes the file when it still names `pid`: after an upgrade it names the new
/// supervisor, which owns it from then on.
pub fn removeIfOwn(path: [*:0]const u8, pid: i32) void {
    var buf: [32]u8 = undefined;
    const text = sys.readSmallFile(path, &buf) catch return;
    const named = std.fmt.parseInt(i32, std.mem.trim(u8, text, " \n"), 10) catch return;
    if (named == pid) _ = linux.unlink(path);
}
