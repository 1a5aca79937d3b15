//! systemd's service notification protocol (sd_notify), for units with `Type=notify` or
//! `Type=notify-reload`: READY=1 once the service accepts connections, RELOADING=1 with
//! MONOTONIC_USEC when a SIGHUP restart begins and READY=1 again when it is done (also when
//! it failed, with a STATUS saying so), STOPPING=1 when a stop begins.
//!
//! With systemd's watchdog on (`WatchdogSec=`, which sets WATCHDOG_USEC and WATCHDOG_PID),
//! the supervisor also sends WATCHDOG=1 at half the interval, from its loop: a supervisor
//! that stops turning is restarted by systemd.
//!
//! The file-descriptor store: with `FileDescriptorStoreMax=` set (systemd 254+ says so in
//! $FDSTORE; `--fd-store` says so for older versions) the supervisor sends systemd every
//! listening socket of every slot, each message "FDSTORE=1\nFDNAME=<listener>" carrying up to
//! 253 descriptors as SCM_RIGHTS. systemd keeps them while the service restarts or after it
//! crashed, and passes them back at the next start like activated sockets (LISTEN_FDS,
//! LISTEN_FDNAMES): the accept queues never close, so nothing queued on them is reset.
//! "FDSTOREREMOVE=1\nFDNAME=<listener>" drops a listener's stored sockets.
//!
//! The messages go to the datagram socket named by $NOTIFY_SOCKET (a path, or an abstract
//! name written with a leading "@"). Without that variable every call does nothing, so the
//! program behaves the same under systemd and anywhere else.
const std = @import("std");
const compat = @import("../compat.zig");
const sys = @import("../net/sys.zig");
const scm = @import("../net/scm.zig");
const linux = std.os.linux;

pub const Notifier = struct {
    fd: ?sys.Fd = null,
    addr: linux.sockaddr.un = undefined,
    len: linux.socklen_t = 0,

    /// Reads $NOTIFY_SOCKET from the environment; an unusable value disables notification.
    pub fn init(envp: [*:null]const ?[*:0]const u8) Notifier {
        const path = sys.getEnv(envp, "NOTIFY_SOCKET") orelse return .{};
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

    pub fn enabled(self: *const Notifier) bool {
        return self.fd != null;
    }

    /// Hands `fds` to systemd's store under `name`, in messages of at most
    /// `max_fds_per_message`; false when a message could not be sent.
    pub fn storeFds(self: *const Notifier, name: []const u8, fds: []const sys.Fd) bool {
        if (self.fd == null) return false;
        var text_buf: [96]u8 = undefined;
        const text = compat.bufPrint(&text_buf, "FDSTORE=1\nFDNAME={s}", .{name}) catch
            return false;
        var rest = fds;
        while (rest.len > 0) {
            const n = @min(rest.len, max_fds_per_message);
            if (!self.sendWithFds(text, rest[0..n])) return false;
            rest = rest[n..];
        }
        return true;
    }

    /// Drops every descriptor stored under `name`.
    pub fn removeStored(self: *const Notifier, name: []const u8) void {
        self.sendf("FDSTOREREMOVE=1\nFDNAME={s}", .{name});
    }

    fn sendWithFds(self: *const Notifier, text: []const u8, fds: []const sys.Fd) bool {
        // No address on a connected socket (the tests' socket pair).
        const to: ?*const anyopaque = if (self.len == 0) null else @ptrCast(&self.addr);
        return scm.send(self.fd.?, to, self.len, text, fds);
    }

    /// RELOADING=1 with the monotonic time in microseconds, which systemd requires to tell
    /// this reload from an earlier one.
    pub fn reloading(self: *const Notifier) void {
        self.sendf("RELOADING=1\nMONOTONIC_USEC={d}", .{sys.monotonicUs()});
    }
};

/// The most descriptors one message carries.
pub const max_fds_per_message = scm.max_fds;

/// Whether systemd keeps a file-descriptor store for this service: $FDSTORE (systemd 254+)
/// is FileDescriptorStoreMax=, set when it is above 0.
pub fn fdStoreOffered(envp: [*:null]const ?[*:0]const u8) bool {
    const text = sys.getEnv(envp, "FDSTORE") orelse return false;
    const max = std.fmt.parseInt(u32, text, 10) catch return false;
    return max > 0;
}

/// Half of WATCHDOG_USEC in milliseconds (at least 1), when systemd's watchdog is on for
/// process `pid`: WATCHDOG_PID names it or is absent. Null otherwise.
pub fn watchdogIntervalMs(envp: [*:null]const ?[*:0]const u8, pid: linux.pid_t) ?u64 {
    const usec_text = sys.getEnv(envp, "WATCHDOG_USEC") orelse return null;
    const usec = std.fmt.parseInt(u64, usec_text, 10) catch return null;
    if (usec == 0) return null;
    if (sys.getEnv(envp, "WATCHDOG_PID")) |pid_text| {
        const owner = std.fmt.parseInt(linux.pid_t, pid_text, 10) catch return null;
        if (owner != pid) return null;
    }
    return @max(1, usec / 2 / std.time.us_per_ms);
}

test "without NOTIFY_SOCKET nothing is sent" {
    const envp = [_:null]?[*:0]const u8{"PATH=/bin"};
    const notifier = Notifier.init(&envp);
    try std.testing.expect(notifier.fd == null);
    notifier.send("READY=1");
}

test "descriptors sent to the store arrive as SCM_RIGHTS with the store message" {
    // A socket pair stands in for $NOTIFY_SOCKET: the receiving end reads what systemd would.
    var pair: [2]i32 = undefined;
    const kind = linux.SOCK.DGRAM | linux.SOCK.CLOEXEC;
    const rc_pair = linux.socketpair(linux.AF.UNIX, kind, 0, &pair);
    try std.testing.expect(compat.errno(rc_pair) == .SUCCESS);
    defer sys.close(pair[0]);
    defer sys.close(pair[1]);
    const notifier: Notifier = .{ .fd = pair[1], .addr = undefined, .len = 0 };
    const stored = [_]sys.Fd{ pair[0], pair[1] };
    try std.testing.expect(notifier.storeFds("t", &stored));
    var text: [64]u8 = undefined;
    var fds: [scm.max_fds]sys.Fd = undefined;
    const got = try scm.receive(pair[0], &text, &fds);
    try std.testing.expectEqualStrings("FDSTORE=1\nFDNAME=t", got.text);
    try std.testing.expectEqual(@as(usize, 2), got.fds.len);
    for (got.fds) |fd| sys.close(fd);
}

test "the store is offered only when FDSTORE is above 0" {
    const on = [_:null]?[*:0]const u8{"FDSTORE=8"};
    const off = [_:null]?[*:0]const u8{"FDSTORE=0"};
    try std.testing.expect(fdStoreOffered(&on));
    try std.testing.expect(!fdStoreOffered(&off));
}

test "the watchdog interval is half of WATCHDOG_USEC, for the named process only" {
    const envp = [_:null]?[*:0]const u8{ "WATCHDOG_USEC=3000000", "WATCHDOG_PID=42" };
    try std.testing.expectEqual(@as(?u64, 1500), watchdogIntervalMs(&envp, 42));
    try std.testing.expectEqual(@as(?u64, null), watchdogIntervalMs(&envp, 43));
    const any = [_:null]?[*:0]const u8{"WATCHDOG_USEC=1000"};
    try std.testing.expectEqual(@as(?u64, 1), watchdogIntervalMs(&any, 7));
}
