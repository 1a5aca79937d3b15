//! systemd's service notification protocol (sd_notify), for units with `Type=notify` or
//! `Type=notify-reload`: READY=1 once the service accepts connections, RELOADING=1 with
//! MONOTONIC_USEC when a SIGHUP restart begins and READY=1 again when it is done (also when
//! it failed, with a STATUS saying so), STOPPING=1 when a stop begins.
//!
//! With systemd's watchdog on (`WatchdogSec=`, which sets WATCHDOG_USEC and WATCHDOG_PID),
//! the supervisor also sends WATCHDOG=1 at half the interval, from its loop: a supervisor
//! that stops turning is restarted by systemd.
//!
//! The messages go to the datagram socket named by $NOTIFY_SOCKET (a path, or an abstract
//! name written with a leading "@"). Without that variable every call does nothing, so the
//! program behaves the same under systemd and anywhere else.
const std = @import("std");
const compat = @import("compat.zig");
const sys = @import("sys.zig");
const linux = std.os.linux;

pub const Notifier = struct {
    fd: ?sys.Fd = null,
    addr: linux.sockaddr.un = undefined,
    len: linux.socklen_t = 0,

    /// Reads $NOTIFY_SOCKET from the environment; an unusable value disables notification.
    pub fn init(envp: [*:null]const ?[*:0]const u8) Notifier {
        const path = lookup(envp, "NOTIFY_SOCKET") orelse return .{};
        var notifier: Notifier = .{};
        notifier.addr = .{ .path = std.mem.zeroes([108]u8) };
        if (path.len == 0 or path.len >= notifier.addr.path.len) return .{};
        if (path[0] != '/' and path[0] != '@') return .{};
        @memcpy(notifier.addr.path[0..path.len], path);
        // An abstract socket's name starts with a zero byte where the "@" stands.
        if (path[0] == '@') notifier.addr.path[0] = 0;
        notifier.len = @intCast(@offsetOf(linux.sockaddr.un, "path") + path.len);
        const kind = linux.SOCK.DGRAM | linux.SOCK.CLOEXEC;
        notifier.fd = sys.socket(linux.AF.UNIX, kind, 0) catch return .{};
        return notifier;
    }

    /// Sends one notification; a lost one is not worth failing the service for.
    pub fn send(self: *const Notifier, message: []const u8) void {
        const fd = self.fd orelse return;
        const flags = linux.MSG.NOSIGNAL;
        _ = linux.sendto(fd, message.ptr, message.len, flags, @ptrCast(&self.addr), self.len);
    }

    /// Formats and sends one notification.
    pub fn sendf(self: *const Notifier, comptime format: []const u8, args: anytype) void {
        if (self.fd == null) return;
        var buf: [256]u8 = undefined;
        self.send(compat.bufPrint(&buf, format, args) catch return);
    }

    /// RELOADING=1 with the monotonic time in microseconds, which systemd requires to tell
    /// this reload from an earlier one.
    pub fn reloading(self: *const Notifier) void {
        self.sendf("RELOADING=1\nMONOTONIC_USEC={d}", .{sys.monotonicUs()});
    }
};

/// Half of WATCHDOG_USEC in milliseconds (at least 1), when systemd's watchdog is on for
/// process `pid`: WATCHDOG_PID names it or is absent. Null otherwise.
pub fn watchdogIntervalMs(envp: [*:null]const ?[*:0]const u8, pid: linux.pid_t) ?u64 {
    const usec_text = lookup(envp, "WATCHDOG_USEC") orelse return null;
    const usec = std.fmt.parseInt(u64, usec_text, 10) catch return null;
    if (usec == 0) return null;
    if (lookup(envp, "WATCHDOG_PID")) |pid_text| {
        const owner = std.fmt.parseInt(linux.pid_t, pid_text, 10) catch return null;
        if (owner != pid) return null;
    }
    return @max(1, usec / 2 / std.time.us_per_ms);
}

fn lookup(envp: [*:null]const ?[*:0]const u8, name: []const u8) ?[]const u8 {
    var i: usize = 0;
    while (envp[i]) |entry| : (i += 1) {
        const text = std.mem.span(entry);
        if (text.len > name.len and text[name.len] == '=' and std.mem.startsWith(u8, text, name)) {
            return text[name.len + 1 ..];
        }
    }
    return null;
}

test "reads a variable from an environment block" {
    const envp = [_:null]?[*:0]const u8{ "A=1", "NOTIFY_SOCKET=@sd", "NOTIFY=x" };
    try std.testing.expectEqualStrings("@sd", lookup(&envp, "NOTIFY_SOCKET").?);
    try std.testing.expect(lookup(&envp, "NOTIFY_SOCKE") == null);
}

test "without NOTIFY_SOCKET nothing is sent" {
    const envp = [_:null]?[*:0]const u8{"PATH=/bin"};
    const notifier = Notifier.init(&envp);
    try std.testing.expect(notifier.fd == null);
    notifier.send("READY=1");
}

test "the watchdog interval is half of WATCHDOG_USEC, for the named process only" {
    const envp = [_:null]?[*:0]const u8{ "WATCHDOG_USEC=3000000", "WATCHDOG_PID=42" };
    try std.testing.expectEqual(@as(?u64, 1500), watchdogIntervalMs(&envp, 42));
    try std.testing.expectEqual(@as(?u64, null), watchdogIntervalMs(&envp, 43));
    const any = [_:null]?[*:0]const u8{"WATCHDOG_USEC=1000"};
    try std.testing.expectEqual(@as(?u64, 1), watchdogIntervalMs(&any, 7));
}
