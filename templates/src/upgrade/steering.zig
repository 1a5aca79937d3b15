//! Steering a reuseport group away from its last members before they close.
//!
//! The kernel keeps a group's sockets in an array, in the order they joined (listen() for
//! TCP, bind() for UDP), and picks one per new connection or datagram by hashing. A classic
//! BPF program attached to any member (SO_ATTACH_REUSEPORT_CBPF; no privilege needed) picks
//! for the whole group instead: the number it returns is an index into that array, and an
//! index past the end falls back to the hash. The program here returns a random index below
//! `count`, so new connections only reach the first `count` members.
//!
//! Why it is safe to name sockets by index: this program opens a listener's per-slot
//! sockets in slot order, so slot k is index k; and when a member leaves, the kernel moves
//! the last one into its place, so removing the highest slots never moves a lower one.
//! Sockets systemd passed may have joined in another order: they are never steered.
//!
//! A random index rather than a hash: a UDP flow may land on another kept socket from one
//! datagram to the next while the program is attached (every kept socket is served, so
//! nothing is lost, but per-worker state of a datagram module sees the flow move).
const std = @import("std");
const compat = @import("../compat.zig");
const config = @import("../config.zig");
const sys = @import("../net/sys.zig");
const linux = std.os.linux;

/// struct sock_filter: one classic BPF instruction.
pub const Instruction = extern struct { code: u16, jt: u8, jf: u8, k: u32 };
/// struct sock_fprog.
const Program = extern struct { len: u16, filter: [*]const Instruction };

// Classic BPF opcodes (linux/filter.h and linux/bpf_common.h).
const ld_w_abs: u16 = 0x00 | 0x00 | 0x20; // BPF_LD | BPF_W | BPF_ABS
const alu_mod_k: u16 = 0x04 | 0x90 | 0x00; // BPF_ALU | BPF_MOD | BPF_K
const ret_a: u16 = 0x06 | 0x10; // BPF_RET | BPF_A
/// SKF_AD_OFF + SKF_AD_RANDOM: a load from this offset reads a random 32-bit number.
const random_offset: u32 = @bitCast(@as(i32, -0x1000 + 56));

/// The three instructions: A = random; A %= count; return A.
fn instructions(count: u16) [3]Instruction {
    std.debug.assert(count > 0);
    return .{
        .{ .code = ld_w_abs, .jt = 0, .jf = 0, .k = random_offset },
        .{ .code = alu_mod_k, .jt = 0, .jf = 0, .k = count },
        .{ .code = ret_a, .jt = 0, .jf = 0, .k = 0 },
    };
}

/// From now on the group `fd` belongs to sends new connections (or datagrams) only to its
/// first `count` members.
pub fn steerToFirst(fd: sys.Fd, count: u16) sys.Error!void {
    const code = instructions(count);
    try attach(fd, &code);
}

/// Attaches `code` to the reuseport group `fd` belongs to, replacing any program there.
pub fn attach(fd: sys.Fd, code: []const Instruction) sys.Error!void {
    const program: Program = .{ .len = @intCast(code.len), .filter = code.ptr };
    const bytes = std.mem.asBytes(&program);
    const option = linux.SO.ATTACH_REUSEPORT_CBPF;
    const rc = linux.setsockopt(fd, linux.SOL.SOCKET, option, bytes, bytes.len);
    if (compat.errno(rc) != .SUCCESS) return error.Unexpected;
}

/// The group `fd` belongs to hashes over all its members again (no program attached is
/// not an error).
pub fn stopSteering(fd: sys.Fd) void {
    var unused: c_int = 0;
    const bytes = std.mem.asBytes(&unused);
    _ = linux.setsockopt(fd, linux.SOL.SOCKET, linux.SO.DETACH_REUSEPORT_BPF, bytes, bytes.len);
}

/// Whether anything still waits on a socket left behind: a connection not yet accepted (TCP)
/// or a datagram not yet read (UDP). Unknown counts as nothing.
pub fn isEmpty(fd: sys.Fd, protocol: config.Protocol) bool {
    return switch (protocol) {
        .tcp => (queuedConnections(fd) orelse 0) == 0,
        .udp => sys.pendingInput(fd) == 0,
    };
}

/// Connections queued on a listening TCP socket and not yet accepted: for a socket in the
/// LISTEN state, TCP_INFO reports its accept backlog in `tcpi_unacked`. Handshakes still in
/// flight are not counted; a caller adds a grace period for them. Null when unknown.
pub fn queuedConnections(fd: sys.Fd) ?u32 {
    // struct tcp_info starts with eight one-byte fields, then tcpi_rto, tcpi_ato,
    // tcpi_snd_mss, tcpi_rcv_mss and tcpi_unacked as 32-bit numbers.
    const unacked_offset = 8 + 4 * 4;
    var info: [104]u8 align(4) = undefined;
    var len: linux.socklen_t = info.len;
    const rc = linux.getsockopt(fd, linux.IPPROTO.TCP, linux.TCP.INFO, &info, &len);
    if (compat.errno(rc) != .SUCCESS or len < unacked_offset + 4) return null;
    return std.mem.readInt(u32, info[unacked_offset..][0..4], @import("builtin").cpu.arch.endian());
}

// The kernel's rules, so the tests run against the real kernel on loopback.

const address = @import("../address.zig");
const loopback: address.Address = .{ .ip4 = .{ 127, 0, 0, 1 } };

fn reusePortSocket(kind: u32, port: u16) !sys.Fd {
    const fd = try sys.socket(linux.AF.INET, kind | linux.SOCK.NONBLOCK | linux.SOCK.CLOEXEC, 0);
    errdefer sys.close(fd);
    try sys.setsockoptInt(fd, linux.SOL.SOCKET, linux.SO.REUSEPORT, 1);
    const sockaddr = address.SockAddr.init(loopback, port);
    try sys.bind(fd, sockaddr.ptr(), sockaddr.len);
    return fd;
}

fn portOf(fd: sys.Fd) !u16 {
    var bound: address.SockAddr = .{ .storage = undefined, .len = 0 };
    bound.len = try sys.getsockname(fd, &bound.storage);
    return bound.port();
}

test "a steered UDP group delivers only to its first members" {
    const first = try reusePortSocket(linux.SOCK.DGRAM, 0);
    defer sys.close(first);
    const port = try portOf(first);
    const second = try reusePortSocket(linux.SOCK.DGRAM, port);
    defer sys.close(second);
    const third = try reusePortSocket(linux.SOCK.DGRAM, port);
    defer sys.close(third);
    try steerToFirst(third, 2);

    const count = 48;
    const to = address.SockAddr.init(loopback, port);
    for (0..count) |_| {
        const client = try sys.socket(linux.AF.INET, linux.SOCK.DGRAM | linux.SOCK.CLOEXEC, 0);
        defer sys.close(client);
        _ = linux.sendto(client, "x", 1, 0, to.ptr(), to.len);
    }
    var buf: [16]u8 = undefined;
    var peer: sys.Peer = .{};
    try std.testing.expectError(error.WouldBlock, sys.recvfrom(third, &buf, &peer));
    var received: usize = 0;
    for ([_]sys.Fd{ first, second }) |fd| {
        while (received < count) : (received += 1) {
            _ = sys.recvfrom(fd, &buf, &peer) catch break;
        }
    }
    try std.testing.expectEqual(@as(usize, count), received);

    stopSteering(third);
    stopSteering(third);
}

test "a listening socket's accept queue length is read from TCP_INFO" {
    const fd = try reusePortSocket(linux.SOCK.STREAM, 0);
    defer sys.close(fd);
    try sys.listen(fd, 8);
    try std.testing.expectEqual(@as(?u32, 0), queuedConnections(fd));
    const to = address.SockAddr.init(loopback, try portOf(fd));
    const client = try sys.socket(linux.AF.INET, linux.SOCK.STREAM | linux.SOCK.CLOEXEC, 0);
    defer sys.close(client);
    try std.testing.expect(compat.errno(linux.connect(client, to.ptr(), to.len)) == .SUCCESS);
    try std.testing.expectEqual(@as(?u32, 1), queuedConnections(fd));
    sys.close(try sys.accept(fd));
    try std.testing.expectEqual(@as(?u32, 0), queuedConnections(fd));
}
