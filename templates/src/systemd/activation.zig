//! systemd socket activation: listening sockets handed over by whoever started this process
//! (systemd's socket unit, its file-descriptor store, `systemd-socket-activate`), found the
//! way sd_listen_fds_with_names(3) finds them:
//!
//!   LISTEN_PID=<this process>  LISTEN_FDS=<n>  LISTEN_FDNAMES=<name>:<name>:…
//!   and the sockets themselves as descriptors 3, 4, … 3+n-1, in that order.
//!
//! A socket is matched to the listener whose spec name it carries (`FileDescriptorName=` in
//! the socket unit, `--fdname=` for systemd-socket-activate); several sockets may carry the
//! same name (the supervisor's per-slot sockets, kept in the store), and a listener no socket
//! names is opened as usual. Each one is checked before it is used: a descriptor that is not
//! a socket of the listener's protocol and address family, or a TCP socket that is not
//! listening, or a name no listener has, stops the program with a message (exit code 1)
//! rather than serving something the operator did not mean.
//!
//! The variables are removed from the environment children are given: a worker is not the
//! process they were meant for, and would otherwise see a LISTEN_PID that is not its own.
const std = @import("std");
const compat = @import("../compat.zig");
const config = @import("../config.zig");
const address = @import("../address.zig");
const sys = @import("../net/sys.zig");
const events = @import("../events.zig");
const upgrade = @import("../upgrade/upgrade.zig");
const log = @import("../log.zig");
const linux = std.os.linux;

/// SD_LISTEN_FDS_START: the first descriptor systemd passes.
pub const first_fd: sys.Fd = 3;
/// A bound on LISTEN_FDS, far above what a unit passes (one socket per listener per slot);
/// `upgrade.zig` hands over no more.
pub const max_passed = 4096;

/// The variables of a hand-over, which no child of this process is given (an upgrading
/// supervisor sets its own for the program it starts, see `upgrade.zig`).
const variables = [_][]const u8{ "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", upgrade.variable };

/// The sockets passed to this process, in the order they were passed.
pub const Passed = struct {
    fds: []sys.Fd = &.{},
    /// The listener (index into `config.listeners`) each socket belongs to.
    listeners: []u16 = &.{},
    /// Where each socket stood among the LISTEN_FDS passed (its descriptor minus 3).
    positions: []u16 = &.{},
    /// How many sockets were passed in all, those left out included.
    passed: usize = 0,

    pub fn count(self: Passed) usize {
        return self.fds.len;
    }

    /// How many sockets were passed for listener `index`.
    pub fn countFor(self: Passed, index: usize) usize {
        var n: usize = 0;
        for (self.listeners) |l| n += @intFromBool(l == index);
        return n;
    }

    /// The `nth` socket passed for listener `index`.
    pub fn nthFor(self: Passed, index: usize, nth: usize) ?sys.Fd {
        var seen: usize = 0;
        for (self.fds, self.listeners) |fd, l| {
            if (l != index) continue;
            if (seen == nth) return fd;
            seen += 1;
        }
        return null;
    }

    /// Where socket `fd` stood among those passed.
    pub fn positionOf(self: Passed, fd: sys.Fd) ?u16 {
        const at = compat.findScalar(sys.Fd, self.fds, fd) orelse return null;
        return self.positions[at];
    }
};

/// Who passed the sockets. systemd's are checked strictly: one that does not fit the spec
/// stops the program. A supervisor upgrading to this program passes every socket it has;
/// those of listeners this spec no longer has, or that moved to another address, are left
/// out (closed here, the old supervisor drains them). `upgrade[i]` says that listener i's
/// sockets came from systemd in the first place: then, as under systemd, where they are
/// bound decides where the listener is, whatever the spec says.
pub const Source = union(enum) { systemd, upgrade: []const bool };

/// Why the passed sockets cannot be used, as a sentence.
pub const Diagnostic = struct {
    buf: [512]u8 = undefined,
    message: []const u8 = "",

    fn set(self: *Diagnostic, comptime format: []const u8, args: anytype) error{Invalid} {
        self.message = compat.bufPrint(&self.buf, format, args) catch self.buf[0..];
        return error.Invalid;
    }
};

/// Takes the sockets passed to process `pid` (none when LISTEN_PID names another process or
/// is absent) and checks each against its listener's protocol and the address family of
/// `endpoints`. Every passed descriptor is made close-on-exec and non-blocking, like the
/// sockets the program opens itself.
pub fn take(
    allocator: std.mem.Allocator,
    envp: [*:null]const ?[*:0]const u8,
    pid: linux.pid_t,
    endpoints: []const address.Endpoint,
    diag: *Diagnostic,
) error{ Invalid, OutOfMemory }!Passed {
    return takeFrom(allocator, envp, pid, endpoints, .systemd, diag);
}

/// `take`, for sockets passed by `source`.
pub fn takeFrom(
    allocator: std.mem.Allocator,
    envp: [*:null]const ?[*:0]const u8,
    pid: linux.pid_t,
    endpoints: []const address.Endpoint,
    source: Source,
    diag: *Diagnostic,
) error{ Invalid, OutOfMemory }!Passed {
    const pid_text = sys.getEnv(envp, "LISTEN_PID") orelse return .{};
    const owner = std.fmt.parseInt(linux.pid_t, pid_text, 10) catch return .{};
    if (owner != pid) return .{};
    const count_text = sys.getEnv(envp, "LISTEN_FDS") orelse return .{};
    const n = std.fmt.parseInt(usize, count_text, 10) catch
        return diag.set("LISTEN_FDS is not a number (\"{s}\")", .{count_text});
    if (n == 0) return .{};
    if (n > max_passed) return diag.set("LISTEN_FDS={d}: more than {d} sockets", .{
        n, max_passed,
    });
    const names_text = sys.getEnv(envp, "LISTEN_FDNAMES") orelse
        return diag.set("{d} sockets passed without LISTEN_FDNAMES: name each after its " ++
            "listener (FileDescriptorName= in the socket unit)", .{n});

    const fds = try allocator.alloc(sys.Fd, n);
    const listeners = try allocator.alloc(u16, n);
    const positions = try allocator.alloc(u16, n);
    const cookies = try allocator.alloc(u64, n);
    var kept: usize = 0;
    var names = std.mem.splitScalar(u8, names_text, ':');
    for (0..n) |i| {
        const fd = first_fd + @as(sys.Fd, @intCast(i));
        const name = names.next() orelse
            return diag.set("LISTEN_FDNAMES names {d} sockets, LISTEN_FDS says {d}", .{ i, n });
        const matched = match(fd, name, endpoints, diag);
        if (source == .upgrade) {
            const l = fromPredecessor(fd, matched, source.upgrade, endpoints, diag) orelse
                continue;
            fds[kept] = fd;
            listeners[kept] = l;
            positions[kept] = @intCast(i);
            kept += 1;
            continue;
        }
        const l = try matched;
        fromSystemd(fd);
        // A socket unit's socket that a supervisor also put in the store comes twice: one
        // descriptor per socket is enough (closing the copy leaves the socket open).
        const id = cookie(fd);
        if (id != 0 and compat.findScalar(u64, cookies[0..kept], id) != null) {
            sys.close(fd);
            continue;
        }
        fds[kept] = fd;
        listeners[kept] = l;
        positions[kept] = @intCast(i);
        cookies[kept] = id;
        kept += 1;
    }
    if (names.next() != null) {
        return diag.set("LISTEN_FDNAMES names more sockets than LISTEN_FDS={d}", .{n});
    }
    return .{
        .fds = fds[0..kept],
        .listeners = listeners[0..kept],
        .positions = positions[0..kept],
        .passed = n,
    };
}

/// A socket passed by the supervisor this one takes over from: its listener, or null when
/// this program leaves it to the old supervisor (closed here: the old one still holds it).
/// `activated` tells, per listener, whether systemd decides where its socket listens.
fn fromPredecessor(
    fd: sys.Fd,
    matched: error{Invalid}!u16,
    activated: []const bool,
    endpoints: []const address.Endpoint,
    diag: *Diagnostic,
) ?u16 {
    const l = matched catch {
        log.info("upgrade: passed socket {d} left to the old supervisor: {s}", .{
            fd, diag.message,
        });
        sys.close(fd);
        return null;
    };
    if (!activated[l] and !boundWhereAsked(fd, endpoints[l])) {
        log.info("upgrade: listener {s} moved; its old socket {d} is left to the " ++
            "old supervisor", .{ config.listeners[l].name, fd });
        sys.close(fd);
        return null;
    }
    _ = linux.fcntl(fd, linux.F.SETFD, linux.FD_CLOEXEC);
    return l;
}

/// systemd passes sockets inheritable and, unless NonBlocking=yes, blocking: make them what
/// every other listening socket of the program is.
fn fromSystemd(fd: sys.Fd) void {
    _ = linux.fcntl(fd, linux.F.SETFD, linux.FD_CLOEXEC);
    var on: c_int = 1;
    _ = linux.ioctl(fd, linux.T.FIONBIO, @intFromPtr(&on));
}

/// The listener socket `fd`, passed under `name`, serves; checked against its protocol
/// and, for a hand-over from an upgrading supervisor, its address.
fn match(
    fd: sys.Fd,
    name: []const u8,
    endpoints: []const address.Endpoint,
    diag: *Diagnostic,
) error{Invalid}!u16 {
    const l = listenerNamed(name) orelse return diag.set("socket {d} is named \"{s}\", " ++
        "but no listener of this service has that name", .{ fd, name });
    try check(fd, l, endpoints[l], diag);
    return l;
}

/// Whether a socket handed over by an upgrading supervisor is bound where listener `index`
/// is asked to listen now (any port when the port asked for is 0).
pub fn boundWhereAsked(fd: sys.Fd, asked: address.Endpoint) bool {
    const bound = boundEndpoint(fd) catch return false;
    if (asked.port != 0 and asked.port != bound.port) return false;
    return switch (asked.address) {
        .ip4 => |ip| bound.address == .ip4 and std.mem.eql(u8, &ip, &bound.address.ip4),
        .ip6 => |ip| bound.address == .ip6 and std.mem.eql(u8, &ip, &bound.address.ip6),
    };
}

/// Says why the passed sockets were refused, as a log line and an `error` event.
pub fn report(diag: *const Diagnostic, err: anyerror) void {
    const message = if (err == error.Invalid) diag.message else @errorName(err);
    log.err("socket activation: {s}", .{message});
    var line = events.Line.begin("error");
    line.string("phase", "activation");
    line.string("message", message);
    line.emit();
}

fn listenerNamed(name: []const u8) ?u16 {
    for (config.listeners, 0..) |l, i| {
        if (std.mem.eql(u8, l.name, name)) return @intCast(i);
    }
    return null;
}

/// A passed descriptor must be a socket of the listener's protocol and address family, and
/// for TCP a listening one: anything else is a unit file that does not match the spec.
fn check(fd: sys.Fd, index: u16, endpoint: address.Endpoint, diag: *Diagnostic) !void {
    const l = &config.listeners[index];
    const kind = sys.getsockoptInt(fd, linux.SOL.SOCKET, linux.SO.TYPE) catch
        return diag.set("socket {d} (listener {s}) is not an open socket", .{ fd, l.name });
    const want_kind: c_int = switch (l.protocol) {
        .tcp => linux.SOCK.STREAM,
        .udp => linux.SOCK.DGRAM,
    };
    const kind_name: []const u8 = if (l.protocol == .tcp) "stream" else "datagram";
    if (kind != want_kind) return diag.set("socket {d} is named \"{s}\", a {s} listener, " ++
        "but is not a {s} socket ({s}= in the socket unit)", .{
        fd, l.name, @tagName(l.protocol), kind_name, listenDirective(l.protocol),
    });
    const family = sys.getsockoptInt(fd, linux.SOL.SOCKET, linux.SO.DOMAIN) catch 0;
    const want_family: c_int = if (endpoint.address.isIp6()) linux.AF.INET6 else linux.AF.INET;
    if (family != want_family) {
        const want: []const u8 = if (endpoint.address.isIp6()) "IPv6" else "IPv4";
        return diag.set("socket {d} (listener {s}) is not an {s} socket, as the listener's " ++
            "address is (change the socket unit or --listen)", .{ fd, l.name, want });
    }
    if (l.protocol == .tcp) {
        const listening = sys.getsockoptInt(fd, linux.SOL.SOCKET, linux.SO.ACCEPTCONN) catch 0;
        if (listening != 1) return diag.set("socket {d} (listener {s}) is a TCP socket that " ++
            "is not listening (Accept=no and ListenStream= in the socket unit)", .{
            fd, l.name,
        });
    }
}

fn listenDirective(protocol: config.Protocol) []const u8 {
    return switch (protocol) {
        .tcp => "ListenStream",
        .udp => "ListenDatagram",
    };
}

/// The endpoint a passed socket is bound to, for the `ready` event and for sockets that
/// join its reuseport group.
pub fn boundEndpoint(fd: sys.Fd) sys.Error!address.Endpoint {
    var bound: address.SockAddr = .{ .storage = undefined, .len = 0 };
    bound.len = try sys.getsockname(fd, &bound.storage);
    const family = @as(*const linux.sockaddr, @ptrCast(&bound.storage)).family;
    if (family == linux.AF.INET6) {
        const in6: *const linux.sockaddr.in6 = @ptrCast(&bound.storage);
        return .{ .address = .{ .ip6 = in6.addr }, .port = bound.port() };
    }
    const in: *const linux.sockaddr.in = @ptrCast(&bound.storage);
    return .{ .address = .{ .ip4 = @bitCast(in.addr) }, .port = bound.port() };
}

/// The socket's SO_COOKIE, unique per socket for the kernel's uptime (0 when unknown): two
/// descriptors of one socket share it.
fn cookie(fd: sys.Fd) u64 {
    var value: u64 = 0;
    var len: linux.socklen_t = @sizeOf(u64);
    const bytes = std.mem.asBytes(&value);
    const rc = linux.getsockopt(fd, linux.SOL.SOCKET, linux.SO.COOKIE, bytes, &len);
    if (compat.errno(rc) != .SUCCESS) return 0;
    return value;
}

/// Whether SO_REUSEPORT is set on `fd`: only then can sockets of our own join its group
/// (`ReusePort=yes` in the socket unit).
pub fn reusesPort(fd: sys.Fd) bool {
    const value = sys.getsockoptInt(fd, linux.SOL.SOCKET, linux.SO.REUSEPORT) catch return false;
    return value == 1;
}

/// F_DUPFD_CLOEXEC, part of the Linux ABI on every architecture (0.14's std lacks it).
const F_DUPFD_CLOEXEC: i32 = 1030;

/// A second, close-on-exec descriptor of the same socket: slots that share a passed socket
/// each get their own number, since epoll and the worker ring key on descriptor numbers.
pub fn duplicate(fd: sys.Fd) error{Unexpected}!sys.Fd {
    const rc = linux.fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (compat.errno(rc) != .SUCCESS) return error.Unexpected;
    return @intCast(rc);
}

/// `envp` without the socket-activation variables, for the processes this one starts.
pub fn withoutVariables(
    allocator: std.mem.Allocator,
    envp: [*:null]const ?[*:0]const u8,
) error{OutOfMemory}![*:null]const ?[*:0]const u8 {
    var len: usize = 0;
    while (envp[len] != null) len += 1;
    const kept = try allocator.allocSentinel(?[*:0]const u8, len, null);
    var n: usize = 0;
    for (0..len) |i| {
        const entry = envp[i].?;
        if (isActivationVariable(std.mem.span(entry))) continue;
        kept[n] = entry;
        n += 1;
    }
    kept[n] = null;
    return kept.ptr;
}

fn isActivationVariable(entry: []const u8) bool {
    for (variables) |name| {
        if (entry.len > name.len and entry[name.len] == '=' and
            std.mem.startsWith(u8, entry, name)) return true;
    }
    return false;
}

test "sockets meant for another process are not taken" {
    const envp = [_:null]?[*:0]const u8{ "LISTEN_PID=1", "LISTEN_FDS=2", "LISTEN_FDNAMES=a:b" };
    var diag: Diagnostic = .{};
    const endpoints = [_]address.Endpoint{};
    const passed = try take(std.testing.allocator, &envp, 2, &endpoints, &diag);
    try std.testing.expectEqual(@as(usize, 0), passed.count());
}

test "a name no listener has is refused, with the name in the message" {
    var pid_buf: [32:0]u8 = undefined;
    const pid_text = try compat.bufPrint(&pid_buf, "LISTEN_PID={d}", .{linux.getpid()});
    pid_buf[pid_text.len] = 0;
    const envp = [_:null]?[*:0]const u8{ &pid_buf, "LISTEN_FDS=1", "LISTEN_FDNAMES=no_such" };
    var arena = std.heap.ArenaAllocator.init(std.testing.allocator);
    defer arena.deinit();
    var diag: Diagnostic = .{};
    var endpoints: [config.listeners.len]address.Endpoint = undefined;
    for (&endpoints, config.listeners) |*e, l| e.* = .{ .address = l.address, .port = l.port };
    const result = take(arena.allocator(), &envp, linux.getpid(), &endpoints, &diag);
    try std.testing.expectError(error.Invalid, result);
    try std.testing.expect(compat.find(u8, diag.message, "\"no_such\"") != null);
}

test "children are given the environment without the activation variables" {
    const envp = [_:null]?[*:0]const u8{ "A=1", "LISTEN_PID=7", "LISTEN_FDS=1", "LISTEN_FDSX=2" };
    var arena = std.heap.ArenaAllocator.init(std.testing.allocator);
    defer arena.deinit();
    const kept = try withoutVariables(arena.allocator(), &envp);
    try std.testing.expectEqualStrings("A=1", std.mem.span(kept[0].?));
    try std.testing.expectEqualStrings("LISTEN_FDSX=2", std.mem.span(kept[1].?));
    try std.testing.expect(kept[2] == null);
}

test "a passed socket's bound endpoint is read back" {
    const fd = try sys.socket(linux.AF.INET, linux.SOCK.STREAM | linux.SOCK.CLOEXEC, 0);
    defer sys.close(fd);
    const loopback = address.SockAddr.init(.{ .ip4 = .{ 127, 0, 0, 1 } }, 0);
    try sys.bind(fd, loopback.ptr(), loopback.len);
    const endpoint = try boundEndpoint(fd);
    try std.testing.expectEqual([4]u8{ 127, 0, 0, 1 }, endpoint.address.ip4);
    try std.testing.expect(endpoint.port != 0);
    try std.testing.expect(!reusesPort(fd));
}
