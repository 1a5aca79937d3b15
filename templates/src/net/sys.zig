//! Typed wrappers over the raw Linux system calls the program uses.
//!
//! Each wrapper turns a raw return value into a result or a Zig error, retries EINTR where
//! retrying is always right, and remembers the last error number for messages.
const std = @import("std");
const compat = @import("../compat.zig");
const linux = std.os.linux;

pub const Fd = linux.fd_t;

pub const Error = error{
    WouldBlock,
    Interrupted,
    AddressInUse,
    AddressNotAvailable,
    AccessDenied,
    ProcessFdQuotaExceeded,
    SystemFdQuotaExceeded,
    SystemResources,
    ConnectionReset,
    ConnectionAborted,
    BrokenPipe,
    NotFound,
    Unexpected,
};

/// The error number behind the most recent `Error.Unexpected`, for messages.
pub var last_errno: linux.E = .SUCCESS;

fn check(rc: usize) Error!usize {
    const e = compat.errno(rc);
    return switch (e) {
        .SUCCESS => rc,
        .AGAIN => error.WouldBlock,
        .INTR => error.Interrupted,
        .ADDRINUSE => error.AddressInUse,
        .ADDRNOTAVAIL => error.AddressNotAvailable,
        .ACCES, .PERM => error.AccessDenied,
        .MFILE => error.ProcessFdQuotaExceeded,
        .NFILE => error.SystemFdQuotaExceeded,
        .NOBUFS, .NOMEM => error.SystemResources,
        .CONNRESET => error.ConnectionReset,
        .CONNABORTED, .PROTO => error.ConnectionAborted,
        .PIPE => error.BrokenPipe,
        .NOENT => error.NotFound,
        else => {
            last_errno = e;
            return error.Unexpected;
        },
    };
}

/// An io_uring completion's result (a count or a descriptor, or an error number negated).
pub fn result(res: i32) Error!usize {
    return check(@bitCast(@as(isize, res)));
}

fn toFd(rc: usize) Fd {
    return @intCast(rc);
}

pub fn socket(domain: u32, sock_type: u32, protocol: u32) Error!Fd {
    return toFd(try check(linux.socket(domain, sock_type, protocol)));
}

pub fn setsockoptInt(fd: Fd, level: i32, name: u32, value: c_int) Error!void {
    const bytes = std.mem.asBytes(&value);
    _ = try check(linux.setsockopt(fd, level, name, bytes, @sizeOf(c_int)));
}

pub fn getsockoptInt(fd: Fd, level: i32, name: u32) Error!c_int {
    var value: c_int = 0;
    var len: linux.socklen_t = @sizeOf(c_int);
    _ = try check(linux.getsockopt(fd, level, name, std.mem.asBytes(&value), &len));
    return value;
}

pub fn bind(fd: Fd, addr: *const linux.sockaddr, len: linux.socklen_t) Error!void {
    _ = try check(linux.bind(fd, addr, len));
}

pub fn listen(fd: Fd, backlog: u31) Error!void {
    _ = try check(linux.listen(fd, backlog));
}

pub fn getsockname(fd: Fd, addr: *linux.sockaddr.storage) Error!linux.socklen_t {
    var len: linux.socklen_t = @sizeOf(linux.sockaddr.storage);
    _ = try check(linux.getsockname(fd, @ptrCast(addr), &len));
    return len;
}

pub fn accept(fd: Fd) Error!Fd {
    const flags = linux.SOCK.NONBLOCK | linux.SOCK.CLOEXEC;
    return toFd(try check(linux.accept4(fd, null, null, flags)));
}

pub fn close(fd: Fd) void {
    // Linux releases the descriptor even when close reports EINTR: never retry.
    _ = linux.close(fd);
}

pub fn read(fd: Fd, buf: []u8) Error!usize {
    return check(linux.read(fd, buf.ptr, buf.len));
}

/// A socket's bytes: as read(2), without the file layer's work (recvfrom(2), no flags).
pub fn recv(fd: Fd, buf: []u8) Error!usize {
    return check(linux.recvfrom(fd, buf.ptr, buf.len, 0, null, null));
}

pub fn write(fd: Fd, bytes: []const u8) Error!usize {
    return check(linux.write(fd, bytes.ptr, bytes.len));
}

/// `send` that never waits: WouldBlock when the socket's buffer is full.
pub fn sendNow(fd: Fd, bytes: []const u8) Error!usize {
    const flags = linux.MSG.NOSIGNAL | linux.MSG.DONTWAIT;
    return check(linux.sendto(fd, bytes.ptr, bytes.len, flags, null, 0));
}

/// Writes to a socket without raising SIGPIPE when the peer has gone.
pub fn send(fd: Fd, bytes: []const u8) Error!usize {
    return check(linux.sendto(fd, bytes.ptr, bytes.len, linux.MSG.NOSIGNAL, null, 0));
}

/// `send` of bytes our FIN follows at once (`shutdownWrite` or close, before the next wait):
/// MSG_MORE holds them until then, so that they and the FIN share a segment.
pub fn sendBeforeFin(fd: Fd, bytes: []const u8) Error!usize {
    const flags = linux.MSG.NOSIGNAL | linux.MSG.MORE;
    return check(linux.sendto(fd, bytes.ptr, bytes.len, flags, null, 0));
}

/// Ends our side of a connection (FIN) while the peer's bytes can still be read.
pub fn shutdownWrite(fd: Fd) void {
    _ = linux.shutdown(fd, linux.SHUT.WR);
}

/// Bytes the kernel holds for `fd` that have not been read; 0 when that cannot be told.
pub fn pendingInput(fd: Fd) usize {
    var n: c_int = 0;
    const rc = linux.ioctl(fd, linux.T.FIONREAD, @intFromPtr(&n));
    if (compat.errno(rc) != .SUCCESS or n < 0) return 0;
    return @intCast(n);
}

/// The soft and hard limits on open descriptors, when the kernel reports them.
pub const FdLimit = struct { soft: u64, hard: u64 };

pub fn fdLimit() ?FdLimit {
    var limit: linux.rlimit = undefined;
    if (compat.errno(linux.getrlimit(.NOFILE, &limit)) != .SUCCESS) return null;
    return .{ .soft = limit.cur, .hard = limit.max };
}

/// Raises the soft limit on open descriptors to `wanted`, or as close to it as the hard
/// limit allows; returns the soft limit in force afterwards.
pub fn raiseFdLimit(wanted: u64) ?u64 {
    const current = fdLimit() orelse return null;
    if (current.soft >= wanted) return current.soft;
    const target = @min(wanted, current.hard);
    const limit: linux.rlimit = .{ .cur = target, .max = current.hard };
    if (compat.errno(linux.setrlimit(.NOFILE, &limit)) != .SUCCESS) return current.soft;
    return target;
}

/// A peer's address, as recvfrom fills it in and sendto takes it back.
pub const Peer = struct {
    addr: linux.sockaddr.storage = undefined,
    len: linux.socklen_t = @sizeOf(linux.sockaddr.storage),
};

pub fn recvfrom(fd: Fd, buf: []u8, from: *Peer) Error!usize {
    from.len = @sizeOf(linux.sockaddr.storage);
    return check(linux.recvfrom(fd, buf.ptr, buf.len, 0, @ptrCast(&from.addr), &from.len));
}

pub fn sendto(fd: Fd, bytes: []const u8, to: *const Peer) Error!usize {
    const flags = linux.MSG.NOSIGNAL;
    return check(linux.sendto(fd, bytes.ptr, bytes.len, flags, @ptrCast(&to.addr), to.len));
}

/// One buffer of a scatter/gather list (the kernel's `struct iovec`).
pub const IoVec = extern struct {
    base: [*]u8,
    len: usize,
};

/// The kernel's `struct msghdr`, declared here because the standard library's shape of it
/// differs between Zig releases.
pub const MsgHdr = extern struct {
    name: ?*anyopaque,
    name_len: linux.socklen_t,
    iov: [*]IoVec,
    iov_len: usize = 1,
    control: ?*anyopaque = null,
    control_len: usize = 0,
    flags: u32 = 0,
};

/// One datagram of a `recvmmsg` or `sendmmsg` batch (the kernel's `struct mmsghdr`).
pub const MsgEntry = extern struct {
    hdr: MsgHdr,
    /// Bytes received or sent, filled in by the kernel.
    len: u32 = 0,
};

/// Receives up to `entries.len` datagrams without waiting: returns how many arrived (at
/// least 1; `error.WouldBlock` when none was queued).
pub fn recvmmsg(fd: Fd, entries: []MsgEntry) Error!usize {
    const flags = linux.MSG.DONTWAIT;
    const n: u32 = @intCast(entries.len);
    const fd_arg: usize = @as(u32, @bitCast(fd));
    return check(linux.syscall5(.recvmmsg, fd_arg, @intFromPtr(entries.ptr), n, flags, 0));
}

/// Sends the datagrams of `entries` in order without waiting: returns how many the kernel
/// took (at least 1); an error is about the first one.
pub fn sendmmsg(fd: Fd, entries: []MsgEntry) Error!usize {
    const flags = linux.MSG.DONTWAIT | linux.MSG.NOSIGNAL;
    const n: u32 = @intCast(entries.len);
    const fd_arg: usize = @as(u32, @bitCast(fd));
    return check(linux.syscall4(.sendmmsg, fd_arg, @intFromPtr(entries.ptr), n, flags));
}

test "a batch entry has the kernel's layout" {
    if (@sizeOf(usize) == 8) {
        try std.testing.expectEqual(@as(usize, 64), @sizeOf(MsgEntry));
        try std.testing.expectEqual(@as(usize, 56), @offsetOf(MsgEntry, "len"));
    }
}

/// Writes all of `bytes` to a blocking descriptor such as stdout or a pipe.
pub fn writeAll(fd: Fd, bytes: []const u8) Error!void {
    var done: usize = 0;
    while (done < bytes.len) {
        const rest = bytes[done..];
        const n = check(linux.write(fd, rest.ptr, rest.len)) catch |err| switch (err) {
            error.Interrupted => continue,
            else => return err,
        };
        done += n;
    }
}

pub fn epollCreate() Error!Fd {
    return toFd(try check(linux.epoll_create1(linux.EPOLL.CLOEXEC)));
}

pub fn epollCtl(epfd: Fd, op: u32, fd: Fd, events: u32, data: u64) Error!void {
    var event: linux.epoll_event = .{ .events = events, .data = .{ .u64 = data } };
    _ = try check(linux.epoll_ctl(epfd, op, fd, &event));
}

pub fn epollWait(epfd: Fd, events: []linux.epoll_event, timeout_ms: i32) Error!usize {
    const max: u32 = @intCast(events.len);
    return check(linux.epoll_wait(epfd, events.ptr, max, timeout_ms)) catch |err| switch (err) {
        error.Interrupted => 0,
        else => err,
    };
}

/// Blocks `set` for this process and returns a descriptor that reads them instead.
pub fn signalfd(set: *const linux.sigset_t) Error!Fd {
    _ = try check(linux.sigprocmask(linux.SIG.BLOCK, set, null));
    const flags = linux.SFD.NONBLOCK | linux.SFD.CLOEXEC;
    return toFd(try check(linux.signalfd(-1, set, flags)));
}

/// Sets signal `signo`'s disposition back to the default. The kernel's `struct sigaction`
/// is written zeroed (handler SIG_DFL, no flags, empty mask) rather than through std's
/// `Sigaction`, whose fields differ between Zig releases; 32 zero bytes cover its layout on
/// every architecture.
pub fn resetSignalToDefault(signo: u32) void {
    const action = [_]u64{ 0, 0, 0, 0 };
    const sigset_bytes = 8;
    _ = linux.syscall4(.rt_sigaction, signo, @intFromPtr(&action), 0, sigset_bytes);
}

/// Microseconds on the monotonic clock.
pub fn monotonicUs() u64 {
    var ts: linux.timespec = undefined;
    _ = linux.clock_gettime(.MONOTONIC, &ts);
    const sec: u64 = @intCast(ts.sec);
    const nsec: u64 = @intCast(ts.nsec);
    return sec * std.time.us_per_s + nsec / std.time.ns_per_us;
}

/// Seconds since the Unix epoch on the wall clock (for the `Date` header). The coarse clock
/// is the kernel's last tick (a few ms behind at most) and reads no time counter: about a
/// seventh of the plain clock's cost, paid once per HTTP response.
pub fn realtimeSeconds() i64 {
    var ts: linux.timespec = undefined;
    _ = linux.clock_gettime(.REALTIME_COARSE, &ts);
    return @intCast(ts.sec);
}

/// Milliseconds since the Unix epoch on the wall clock (for the time of events and log lines).
pub fn realtimeMs() i64 {
    var ts: linux.timespec = undefined;
    _ = linux.clock_gettime(.REALTIME, &ts);
    const sec: i64 = @intCast(ts.sec);
    const nsec: i64 = @intCast(ts.nsec);
    return sec * std.time.ms_per_s + @divTrunc(nsec, std.time.ns_per_ms);
}

/// Milliseconds on the monotonic clock.
pub fn monotonicMs() u64 {
    return monotonicUs() / std.time.us_per_ms;
}

/// Reads a file such as one under /proc into `buf`, up to its end or `buf`'s size (a /proc
/// file may come in several reads); returns the bytes read.
pub fn readSmallFile(path: [*:0]const u8, buf: []u8) Error![]const u8 {
    const fd = toFd(try check(linux.open(path, .{ .CLOEXEC = true }, 0)));
    defer close(fd);
    var len: usize = 0;
    while (len < buf.len) {
        const n = try check(linux.read(fd, buf[len..].ptr, buf.len - len));
        if (n == 0) break;
        len += n;
    }
    return buf[0..len];
}

/// The value of `name` in an environment block (`main`'s `envp`); null when it is not set.
pub fn getEnv(envp: [*:null]const ?[*:0]const u8, name: []const u8) ?[]const u8 {
    var i: usize = 0;
    while (envp[i]) |entry| : (i += 1) {
        if (entryValue(std.mem.span(entry), name)) |value| return value;
    }
    return null;
}

/// `getEnv` for code that has no `envp` (tests, application modules): this process's
/// environment as /proc/self/environ has it, read into `buf` (too small a `buf` cuts it).
pub fn getEnvFromProc(name: []const u8, buf: []u8) ?[]const u8 {
    const block = readSmallFile("/proc/self/environ", buf) catch return null;
    var entries = std.mem.splitScalar(u8, block, 0);
    while (entries.next()) |entry| {
        if (entryValue(entry, name)) |value| return value;
    }
    return null;
}

/// The value of a `NAME=value` entry when its name is `name`.
fn entryValue(entry: []const u8, name: []const u8) ?[]const u8 {
    if (entry.len <= name.len or entry[name.len] != '=') return null;
    if (!std.mem.startsWith(u8, entry, name)) return null;
    return entry[name.len + 1 ..];
}

test "reads a variable from an environment block" {
    const envp = [_:null]?[*:0]const u8{ "A=1", "NOTIFY_SOCKET=@sd", "NOTIFY=x", "E=" };
    try std.testing.expectEqualStrings("@sd", getEnv(&envp, "NOTIFY_SOCKET").?);
    try std.testing.expect(getEnv(&envp, "NOTIFY_SOCKE") == null);
    try std.testing.expectEqualStrings("", getEnv(&envp, "E").?);
}
