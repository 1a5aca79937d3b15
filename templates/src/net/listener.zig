//! Every listening socket of the program is made here, in named phases, so that the order
//! the kernel requires is visible in one place:
//!
//!   create → before bind → bind → before listen → listen → after listen
//!   (per socket, and `steerGroup` once a whole reuseport group listens)
//!   and, for each accepted TCP connection, `beforeOngoingWrite` (TCP_NODELAY, set lazily).
//!
//! SO_REUSEPORT is set on every socket, the first one included, before bind: the kernel
//! only lets a socket join a port's reuseport group when every member set the option
//! before binding and all members belong to the same effective user.
const std = @import("std");
const compat = @import("../compat.zig");
const config = @import("../config.zig");
const address = @import("../address.zig");
const sys = @import("sys.zig");
const steering = @import("../upgrade/steering.zig");
const linux = std.os.linux;

pub const Phase = enum { create, before_bind, bind, before_listen, listen, after_listen };

/// Why opening a listener failed: the phase and the system error, for a useful message.
pub const Failure = struct {
    phase: Phase = .create,
    err: sys.Error = error.Unexpected,

    /// A sentence that says what went wrong and what to do about it.
    pub fn describe(self: Failure, buf: []u8) []const u8 {
        const why: []const u8 = switch (self.err) {
            error.AddressInUse => "the port is held by a socket that did not set SO_REUSEPORT " ++
                "before bind, or by a process of another user (the kernel groups only sockets " ++
                "that all set SO_REUSEPORT and share an effective UID); stop that process or " ++
                "choose another port",
            error.AccessDenied => "permission denied: ports below 1024 need root or " ++
                "CAP_NET_BIND_SERVICE",
            error.AddressNotAvailable => "no local interface has this address",
            error.ProcessFdQuotaExceeded, error.SystemFdQuotaExceeded => "out of file " ++
                "descriptors: raise the limit (ulimit -n)",
            else => @errorName(self.err),
        };
        return compat.bufPrint(buf, "{s} failed: {s}", .{ @tagName(self.phase), why }) catch
            buf[0..0];
    }
};

pub const Bound = struct {
    fd: sys.Fd,
    /// The port the socket is bound to: the requested one, or the kernel's choice for 0.
    port: u16,
};

/// Opens, configures, binds and (for TCP) listens one socket of `listener` at `endpoint`.
pub fn open(
    listener: *const config.Listener,
    endpoint: address.Endpoint,
    failure: *Failure,
) sys.Error!Bound {
    failure.phase = .create;
    const family: u32 = if (endpoint.address.isIp6()) linux.AF.INET6 else linux.AF.INET;
    const kind: u32 = switch (listener.protocol) {
        .tcp => linux.SOCK.STREAM,
        .udp => linux.SOCK.DGRAM,
    };
    const fd = sys.socket(family, kind | linux.SOCK.NONBLOCK | linux.SOCK.CLOEXEC, 0) catch |err|
        return fail(failure, err);
    errdefer sys.close(fd);

    failure.phase = .before_bind;
    beforeBind(fd, listener, endpoint.address) catch |err| return fail(failure, err);
    failure.phase = .bind;
    const sockaddr = address.SockAddr.init(endpoint.address, endpoint.port);
    sys.bind(fd, sockaddr.ptr(), sockaddr.len) catch |err| return fail(failure, err);
    if (listener.protocol == .tcp) {
        failure.phase = .before_listen;
        beforeListen(fd, listener) catch |err| return fail(failure, err);
        failure.phase = .listen;
        sys.listen(fd, listener.options.backlog) catch |err| return fail(failure, err);
    }
    failure.phase = .after_listen;
    const port = afterListen(fd) catch |err| return fail(failure, err);
    return .{ .fd = fd, .port = port };
}

/// Who holds a port this program means to open: nobody, a group it can join (sockets with
/// SO_REUSEPORT of the same user), or a socket that shares it with nobody (a listener
/// without SO_REUSEPORT, another user's, or an outgoing connection's local port).
pub const Holder = enum { none, group, other };

/// Who holds `endpoint` already for this listener's protocol: probed with a socket that does
/// not ask to share it, then (when that one meets a holder) with one that does. `.none` when
/// the probe cannot tell (the real open then says what is wrong).
pub fn portHolder(listener: *const config.Listener, endpoint: address.Endpoint) Holder {
    if (endpoint.port == 0 or !probeInUse(listener, endpoint, false)) return .none;
    return if (probeInUse(listener, endpoint, true)) .other else .group;
}

/// Whether binding a socket to `endpoint` meets EADDRINUSE; with `share`, the socket asks
/// for SO_REUSEPORT as the listeners do. SO_REUSEADDR for TCP only, so that connections in
/// TIME_WAIT do not count. The socket is closed at once.
fn probeInUse(listener: *const config.Listener, endpoint: address.Endpoint, share: bool) bool {
    const family: u32 = if (endpoint.address.isIp6()) linux.AF.INET6 else linux.AF.INET;
    const kind: u32 = switch (listener.protocol) {
        .tcp => linux.SOCK.STREAM,
        .udp => linux.SOCK.DGRAM,
    };
    const fd = sys.socket(family, kind | linux.SOCK.CLOEXEC, 0) catch return false;
    defer sys.close(fd);
    if (listener.protocol == .tcp) {
        sys.setsockoptInt(fd, linux.SOL.SOCKET, linux.SO.REUSEADDR, 1) catch return false;
    }
    if (share) {
        sys.setsockoptInt(fd, linux.SOL.SOCKET, linux.SO.REUSEPORT, 1) catch return false;
    }
    if (endpoint.address.isIp6()) {
        const v6_only: c_int = @intFromBool(listener.options.v6_only);
        sys.setsockoptInt(fd, linux.IPPROTO.IPV6, linux.IPV6.V6ONLY, v6_only) catch
            return false;
    }
    const sockaddr = address.SockAddr.init(endpoint.address, endpoint.port);
    sys.bind(fd, sockaddr.ptr(), sockaddr.len) catch |err| return err == error.AddressInUse;
    return false;
}

fn fail(failure: *Failure, err: sys.Error) sys.Error {
    failure.err = err;
    return err;
}

fn beforeBind(fd: sys.Fd, listener: *const config.Listener, addr: address.Address) sys.Error!void {
    const options = listener.options;
    if (options.reuse_address) {
        // Lets a restarted process bind while old connections sit in TIME_WAIT.
        try sys.setsockoptInt(fd, linux.SOL.SOCKET, linux.SO.REUSEADDR, 1);
    }
    try sys.setsockoptInt(fd, linux.SOL.SOCKET, linux.SO.REUSEPORT, 1);
    if (addr.isIp6()) {
        // Set explicitly: the kernel default follows net.ipv6.bindv6only, which varies
        // between hosts, and the option cannot be changed after bind.
        const v6_only: c_int = @intFromBool(options.v6_only);
        try sys.setsockoptInt(fd, linux.IPPROTO.IPV6, linux.IPV6.V6ONLY, v6_only);
    }
    if (options.recv_buffer_bytes != 0) {
        const bytes: c_int = @intCast(options.recv_buffer_bytes);
        try sys.setsockoptInt(fd, linux.SOL.SOCKET, linux.SO.RCVBUF, bytes);
    }
    if (options.send_buffer_bytes != 0) {
        const bytes: c_int = @intCast(options.send_buffer_bytes);
        try sys.setsockoptInt(fd, linux.SOL.SOCKET, linux.SO.SNDBUF, bytes);
    }
}

/// How long, in seconds, the kernel holds a connection that has sent nothing when the listener
/// defers accepting: one SYN-ACK retransmission (after 1 s) ends the wait, and the client's
/// answer to it hands the connection over, silent or not; from then on the worker's header
/// timeout applies. Longer would keep silent clients out of reach of our own deadlines and,
/// while a socket leaves its reuseport group, expose them longer to its close.
pub const defer_accept_s: c_int = 1;

fn beforeListen(fd: sys.Fd, listener: *const config.Listener) sys.Error!void {
    if (listener.options.defer_accept) {
        // The first read finds the request there: accept, read, answer and (for a
        // connection-per-request client) close, without registering with epoll at all.
        try sys.setsockoptInt(fd, linux.IPPROTO.TCP, linux.TCP.DEFER_ACCEPT, defer_accept_s);
    }
    if (listener.handler == .proxy and listener.options.no_delay) {
        // Inherited by every accepted client: one call here instead of one per client (the
        // worker sets it again on sockets from elsewhere, see `handlers/proxy.zig`).
        try sys.setsockoptInt(fd, linux.IPPROTO.TCP, linux.TCP.NODELAY, 1);
    }
    // Keepalive settings on a listening socket are inherited by every connection it
    // accepts, which saves four system calls per connection.
    const keepalive = listener.options.keepalive orelse return;
    try sys.setsockoptInt(fd, linux.SOL.SOCKET, linux.SO.KEEPALIVE, 1);
    try sys.setsockoptInt(fd, linux.IPPROTO.TCP, linux.TCP.KEEPIDLE, keepalive.idle_s);
    try sys.setsockoptInt(fd, linux.IPPROTO.TCP, linux.TCP.KEEPINTVL, keepalive.interval_s);
    try sys.setsockoptInt(fd, linux.IPPROTO.TCP, linux.TCP.KEEPCNT, keepalive.probes);
}

/// The after-listen phase of a whole reuseport group, once all its members listen: new
/// connections (or datagrams) go only to its first `members` sockets, so that the others
/// can be emptied and closed without a reset (`steering.zig`); null sends them to every
/// member again. `fd` is any member: the choice applies to the group.
pub fn steerGroup(fd: sys.Fd, members: ?u16) sys.Error!void {
    const count = members orelse return steering.stopSteering(fd);
    try steering.steerToFirst(fd, count);
}

fn afterListen(fd: sys.Fd) sys.Error!u16 {
    var bound: address.SockAddr = .{ .storage = undefined, .len = 0 };
    bound.len = try sys.getsockname(fd, &bound.storage);
    return bound.port();
}

/// Takes a UDP socket out of its reuseport group before it is closed, so that no datagram
/// lands on it after its last read: a connected UDP socket only receives from its peer, and
/// the kernel leaves connected members out when it picks a socket of the group for a
/// datagram. Connecting it to its own address (a peer that never sends) does that, while the
/// datagrams already queued stay readable. Without this, a process that stops while others
/// keep the port loses what arrives between its last read and close().
pub fn leaveUdpGroup(fd: sys.Fd) void {
    var own: address.SockAddr = .{ .storage = undefined, .len = 0 };
    own.len = sys.getsockname(fd, &own.storage) catch return;
    _ = linux.connect(fd, own.ptr(), own.len);
}

/// Before an accepted connection sends bytes that are not its last: TCP_NODELAY only matters
/// then. Nagle's algorithm holds a small segment back while earlier data is unacknowledged,
/// but a connection's last answer leaves with its FIN, which Nagle never holds. So a
/// connection that answers once and closes (HTTP `Connection: close`, whoami) never needs the
/// system call; nginx also sets tcp_nodelay only once a connection turns keep-alive. Failing
/// to set an option is not worth dropping the connection for, so errors are ignored.
pub fn beforeOngoingWrite(fd: sys.Fd, listener: *const config.Listener) void {
    if (listener.options.no_delay) {
        sys.setsockoptInt(fd, linux.IPPROTO.TCP, linux.TCP.NODELAY, 1) catch {}; // see above
    }
}

/// The kernel's net.ipv4.tcp_migrate_req for this network namespace, or null when it
/// cannot be read (kernels before 5.14 do not have it).
pub fn tcpMigrateReq() ?u8 {
    var buf: [16]u8 = undefined;
    const text = sys.readSmallFile("/proc/sys/net/ipv4/tcp_migrate_req", &buf) catch return null;
    return std.fmt.parseInt(u8, std.mem.trim(u8, text, " \n"), 10) catch null;
}

// The rules below are the kernel's, so the tests run against the real kernel on loopback.

fn testListener(protocol: config.Protocol, v6_only: bool) config.Listener {
    return .{
        .name = "test",
        .protocol = protocol,
        .handler = .echo,
        .address = .{ .ip4 = .{ 127, 0, 0, 1 } },
        .port = 0,
        .options = .{
            .reuse_address = true,
            .v6_only = v6_only,
            .backlog = 16,
            .no_delay = true,
            .defer_accept = false,
            .recv_buffer_bytes = 0,
            .send_buffer_bytes = 0,
            .keepalive = null,
        },
        .http = .{ .body = "", .content_type = "" },
        .routes = &.{},
    };
}

const loopback4: address.Address = .{ .ip4 = .{ 127, 0, 0, 1 } };

test "a listener reports SO_REUSEPORT=1 after bind" {
    const listener = testListener(.tcp, false);
    var failure: Failure = .{};
    const bound = try open(&listener, .{ .address = loopback4, .port = 0 }, &failure);
    defer sys.close(bound.fd);
    const value = try sys.getsockoptInt(bound.fd, linux.SOL.SOCKET, linux.SO.REUSEPORT);
    try std.testing.expectEqual(@as(c_int, 1), value);
    try std.testing.expect(bound.port != 0);
}

fn expectSharedPort(protocol: config.Protocol) !void {
    const listener = testListener(protocol, false);
    var failure: Failure = .{};
    const first = try open(&listener, .{ .address = loopback4, .port = 0 }, &failure);
    defer sys.close(first.fd);
    const second = try open(&listener, .{ .address = loopback4, .port = first.port }, &failure);
    defer sys.close(second.fd);
    try std.testing.expectEqual(first.port, second.port);
}

test "two listeners share one TCP port" {
    try expectSharedPort(.tcp);
}

test "two listeners share one UDP port" {
    try expectSharedPort(.udp);
}

/// A socket bound the way a program unaware of SO_REUSEPORT binds it.
fn bindPlain(kind: u32, port: u16) sys.Error!sys.Fd {
    const fd = try sys.socket(linux.AF.INET, kind | linux.SOCK.CLOEXEC, 0);
    errdefer sys.close(fd);
    const sockaddr = address.SockAddr.init(loopback4, port);
    try sys.bind(fd, sockaddr.ptr(), sockaddr.len);
    return fd;
}

fn expectPlainSocketRefused(protocol: config.Protocol, kind: u32) !void {
    const listener = testListener(protocol, false);
    var failure: Failure = .{};
    const bound = try open(&listener, .{ .address = loopback4, .port = 0 }, &failure);
    defer sys.close(bound.fd);
    try std.testing.expectError(error.AddressInUse, bindPlain(kind, bound.port));
}

test "a TCP socket without SO_REUSEPORT cannot join the group" {
    try expectPlainSocketRefused(.tcp, linux.SOCK.STREAM);
}

test "a UDP socket without SO_REUSEPORT cannot join the group" {
    try expectPlainSocketRefused(.udp, linux.SOCK.DGRAM);
}

test "a port held without SO_REUSEPORT is refused with a message that says why" {
    const plain = try bindPlain(linux.SOCK.STREAM, 0);
    defer sys.close(plain);
    var held: address.SockAddr = .{ .storage = undefined, .len = 0 };
    held.len = try sys.getsockname(plain, &held.storage);
    try sys.listen(plain, 1);

    const listener = testListener(.tcp, false);
    var failure: Failure = .{};
    const endpoint: address.Endpoint = .{ .address = loopback4, .port = held.port() };
    try std.testing.expectError(error.AddressInUse, open(&listener, endpoint, &failure));
    try std.testing.expectEqual(Phase.bind, failure.phase);
    var buf: [512]u8 = undefined;
    const message = failure.describe(&buf);
    try std.testing.expect(compat.find(u8, message, "SO_REUSEPORT") != null);
    try std.testing.expect(compat.find(u8, message, "another user") != null);
}

const loopback6: address.Address = .{ .ip6 = .{ 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1 } };

test "IPV6_V6ONLY is what the spec asked for" {
    for ([_]bool{ true, false }) |wanted| {
        const listener = testListener(.tcp, wanted);
        const fd = try sys.socket(linux.AF.INET6, linux.SOCK.STREAM | linux.SOCK.CLOEXEC, 0);
        defer sys.close(fd);
        try beforeBind(fd, &listener, loopback6);
        const value = try sys.getsockoptInt(fd, linux.IPPROTO.IPV6, linux.IPV6.V6ONLY);
        try std.testing.expectEqual(@as(c_int, @intFromBool(wanted)), value);
    }
}

test "an IPv6 listener on a specific address is IPv6-only whatever was asked" {
    // The kernel forces IPV6_V6ONLY when binding to an address that is neither the
    // wildcard nor IPv4-mapped: only "::" listeners can be dual-stack.
    const listener = testListener(.tcp, false);
    var failure: Failure = .{};
    const bound = try open(&listener, .{ .address = loopback6, .port = 0 }, &failure);
    defer sys.close(bound.fd);
    const value = try sys.getsockoptInt(bound.fd, linux.IPPROTO.IPV6, linux.IPV6.V6ONLY);
    try std.testing.expectEqual(@as(c_int, 1), value);
}

test "a UDP socket that left its group receives nothing more, and its group loses nothing" {
    const listener = testListener(.udp, false);
    var failure: Failure = .{};
    const leaving = try open(&listener, .{ .address = loopback4, .port = 0 }, &failure);
    defer sys.close(leaving.fd);
    const staying = try open(&listener, .{ .address = loopback4, .port = leaving.port }, &failure);
    defer sys.close(staying.fd);
    leaveUdpGroup(leaving.fd);

    // A new client socket per datagram: different source ports, so that the group's hash
    // would have picked the leaving socket for some of them.
    const count = 32;
    const to = address.SockAddr.init(loopback4, leaving.port);
    for (0..count) |_| {
        const client = try sys.socket(linux.AF.INET, linux.SOCK.DGRAM | linux.SOCK.CLOEXEC, 0);
        defer sys.close(client);
        _ = linux.sendto(client, "x", 1, 0, to.ptr(), to.len);
    }
    var buf: [16]u8 = undefined;
    var peer: sys.Peer = .{};
    try std.testing.expectError(error.WouldBlock, sys.recvfrom(leaving.fd, &buf, &peer));
    var received: usize = 0;
    while (received < count) : (received += 1) {
        _ = sys.recvfrom(staying.fd, &buf, &peer) catch break;
    }
    try std.testing.expectEqual(@as(usize, count), received);
}
