//! The address of the other end, as every application module sees it: the client of a TCP
//! connection, the sender of a datagram.
const std = @import("std");
const address = @import("../../address.zig");
const compat = @import("../../compat.zig");
const linux = std.os.linux;

pub const Peer = struct {
    address: address.Address,
    port: u16,

    /// `127.0.0.1` or `::1` (no port); `buf` needs 46 bytes.
    pub fn format(self: Peer, buf: []u8) []const u8 {
        return address.format(self.address, buf);
    }

    /// The socket address to send to.
    pub fn sockAddr(self: Peer) address.SockAddr {
        return address.SockAddr.init(self.address, self.port);
    }
};

/// The peer in a socket address the kernel filled in; null for a family other than IP.
pub fn fromStorage(storage: *const linux.sockaddr.storage) ?Peer {
    switch (storage.family) {
        linux.AF.INET => {
            const in: *const linux.sockaddr.in = @ptrCast(@alignCast(storage));
            const bytes: [4]u8 = @bitCast(in.addr);
            return .{ .address = .{ .ip4 = bytes }, .port = std.mem.bigToNative(u16, in.port) };
        },
        linux.AF.INET6 => {
            const in6: *const linux.sockaddr.in6 = @ptrCast(@alignCast(storage));
            return .{
                .address = .{ .ip6 = in6.addr },
                .port = std.mem.bigToNative(u16, in6.port),
            };
        },
        else => return null,
    }
}

/// The peer of a connected socket, asked of the kernel (one `getpeername`).
pub fn ofSocket(fd: i32) ?Peer {
    if (fd < 0) return null;
    var storage: linux.sockaddr.storage = undefined;
    var len: linux.socklen_t = @sizeOf(linux.sockaddr.storage);
    const rc = linux.getpeername(fd, @ptrCast(&storage), &len);
    if (compat.errno(rc) != .SUCCESS) return null;
    return fromStorage(&storage);
}

test "a peer round-trips through a socket address" {
    const peer: Peer = .{ .address = .{ .ip4 = .{ 127, 0, 0, 1 } }, .port = 6379 };
    const sa = peer.sockAddr();
    const back = fromStorage(&sa.storage).?;
    try std.testing.expectEqual(@as(u16, 6379), back.port);
    var buf: [46]u8 = undefined;
    try std.testing.expectEqualStrings("127.0.0.1", back.format(&buf));
}
