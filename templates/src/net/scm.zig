//! Descriptors passed over Unix sockets (SCM_RIGHTS): to systemd's file-descriptor store
//! (`notify.zig`) and from one standalone process to the next (`handover.zig`).
//!
//! The kernel's struct msghdr, iovec and cmsghdr are declared here because their std names
//! and field names moved between Zig releases; `extern` gives them the C layout on every
//! target.
const std = @import("std");
const compat = @import("../compat.zig");
const sys = @import("sys.zig");
const linux = std.os.linux;

/// SCM_MAX_FD: the kernel refuses a message with more descriptors than this.
pub const max_fds = 253;
/// SCM_RIGHTS, part of the Linux ABI.
const scm_rights: i32 = 1;
/// MSG_CTRUNC: the receiver's control buffer was too small and descriptors were dropped.
const msg_ctrunc: i32 = 0x8;
/// MSG_TRUNC: the message was longer than the receiver's buffer.
const msg_trunc: i32 = 0x20;
/// MSG_CMSG_CLOEXEC: received descriptors are close-on-exec from the start.
const msg_cmsg_cloexec: u32 = 0x40000000;

const IoVec = extern struct { base: [*]const u8, len: usize };
const MsgHeader = extern struct {
    name: ?*const anyopaque,
    namelen: u32,
    iov: [*]const IoVec,
    iovlen: usize,
    control: ?*anyopaque,
    controllen: usize,
    flags: i32,
};
const CmsgHeader = extern struct { len: usize, level: i32, type: i32 };
const header_bytes = std.mem.alignForward(usize, @sizeOf(CmsgHeader), @sizeOf(usize));
/// CMSG_SPACE for `max_fds` descriptors: the header, then the data padded to a word.
const control_bytes = header_bytes + std.mem.alignForward(usize, max_fds * @sizeOf(i32), 8);

/// Sends `text` with `fds` attached in one message, to `to` (a `sockaddr_un` of `to_len`
/// bytes) or, with `to_len` 0, over a connected socket. False when it could not be sent.
pub fn send(
    fd: sys.Fd,
    to: ?*const anyopaque,
    to_len: linux.socklen_t,
    text: []const u8,
    fds: []const sys.Fd,
) bool {
    std.debug.assert(fds.len > 0 and fds.len <= max_fds);
    var control: [control_bytes]u8 align(8) = undefined;
    const data_bytes = fds.len * @sizeOf(i32);
    const header: *CmsgHeader = @ptrCast(&control);
    header.* = .{ .len = header_bytes + data_bytes, .level = linux.SOL.SOCKET, .type = scm_rights };
    @memcpy(control[header_bytes..][0..data_bytes], std.mem.sliceAsBytes(fds));
    const iov = [_]IoVec{.{ .base = text.ptr, .len = text.len }};
    const message: MsgHeader = .{
        .name = if (to_len == 0) null else to,
        .namelen = to_len,
        .iov = &iov,
        .iovlen = iov.len,
        .control = &control,
        .controllen = std.mem.alignForward(usize, header_bytes + data_bytes, @sizeOf(usize)),
        .flags = 0,
    };
    const rc = linux.syscall3(
        .sendmsg,
        @as(usize, @intCast(fd)),
        @intFromPtr(&message),
        linux.MSG.NOSIGNAL,
    );
    return compat.errno(rc) == .SUCCESS;
}

/// One message received: its text (in the caller's buffer) and the descriptors it carried
/// (close-on-exec, in `fds_buf`).
pub const Received = struct {
    text: []const u8,
    fds: []const sys.Fd,
};

pub const ReceiveError = error{ WouldBlock, Truncated, Unexpected };

/// Receives one message. A message whose descriptors did not all fit is refused, with the
/// ones that did arrive closed: a partial set must never be mistaken for the whole.
pub fn receive(fd: sys.Fd, text_buf: []u8, fds_buf: *[max_fds]sys.Fd) ReceiveError!Received {
    var control: [control_bytes]u8 align(8) = undefined;
    const iov = [_]IoVec{.{ .base = text_buf.ptr, .len = text_buf.len }};
    var message: MsgHeader = .{
        .name = null,
        .namelen = 0,
        .iov = &iov,
        .iovlen = iov.len,
        .control = &control,
        .controllen = control.len,
        .flags = 0,
    };
    const rc = linux.syscall3(
        .recvmsg,
        @as(usize, @intCast(fd)),
        @intFromPtr(&message),
        msg_cmsg_cloexec,
    );
    switch (compat.errno(rc)) {
        .SUCCESS => {},
        .AGAIN => return error.WouldBlock,
        else => return error.Unexpected,
    }
    var count: usize = 0;
    if (message.controllen >= header_bytes) {
        const header: *const CmsgHeader = @ptrCast(&control);
        if (header.level == linux.SOL.SOCKET and header.type == scm_rights and
            header.len >= header_bytes and header.len <= message.controllen)
        {
            count = @min((header.len - header_bytes) / @sizeOf(i32), max_fds);
            const data = control[header_bytes..][0 .. count * @sizeOf(i32)];
            @memcpy(std.mem.sliceAsBytes(fds_buf[0..count]), data);
        }
    }
    if (message.flags & (msg_ctrunc | msg_trunc) != 0) {
        for (fds_buf[0..count]) |received| sys.close(received);
        return error.Truncated;
    }
    return .{ .text = text_buf[0..rc], .fds = fds_buf[0..count] };
}

/// Two connected Unix datagram sockets, for the tests.
fn datagramPair() ![2]sys.Fd {
    var pair: [2]i32 = undefined;
    const kind = linux.SOCK.DGRAM | linux.SOCK.CLOEXEC;
    if (compat.errno(linux.socketpair(linux.AF.UNIX, kind, 0, &pair)) != .SUCCESS) {
        return error.SocketPairFailed;
    }
    return pair;
}

test "descriptors sent arrive with their text, close-on-exec" {
    const pair = try datagramPair();
    defer sys.close(pair[0]);
    defer sys.close(pair[1]);
    const sent = [_]sys.Fd{ pair[0], pair[1] };
    try std.testing.expect(send(pair[1], null, 0, "two", &sent));
    var text: [16]u8 = undefined;
    var fds: [max_fds]sys.Fd = undefined;
    const got = try receive(pair[0], &text, &fds);
    try std.testing.expectEqualStrings("two", got.text);
    try std.testing.expectEqual(@as(usize, 2), got.fds.len);
    for (got.fds) |received| {
        const flags = linux.fcntl(received, linux.F.GETFD, 0);
        try std.testing.expect(flags & linux.FD_CLOEXEC != 0);
        sys.close(received);
    }
}

test "a message whose text does not fit is refused, its descriptors closed" {
    const pair = try datagramPair();
    defer sys.close(pair[0]);
    defer sys.close(pair[1]);
    const sent = [_]sys.Fd{pair[1]};
    try std.testing.expect(send(pair[1], null, 0, "longer than four", &sent));
    var text: [4]u8 = undefined;
    var fds: [max_fds]sys.Fd = undefined;
    // recvmsg returns the bytes that fit and says MSG_TRUNC: the caller never sees a part.
    if (receive(pair[0], &text, &fds)) |_| {
        return error.TestUnexpectedResult;
    } else |err| try std.testing.expectEqual(error.Truncated, err);
}
