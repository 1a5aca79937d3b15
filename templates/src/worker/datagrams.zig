//! Batched datagrams: a worker receives up to `config.udp_batch` datagrams with one
//! `recvmmsg`, runs each through its handler at once, in arrival order, then sends every
//! reply of the batch with one `sendmmsg`. A datagram never waits for a batch to fill: what
//! one call returned is served before the next call. The buffers (one of `slot_bytes` each
//! way per datagram) are reserved at start and reused; nothing is allocated per datagram.
const std = @import("std");
const compat = @import("../compat.zig");
const sys = @import("../net/sys.zig");
const log = @import("../log.zig");
const linux = std.os.linux;

/// Room for the largest UDP payload, each way.
pub const slot_bytes = 65536;

/// A handler of one datagram: its reply's length in `reply` (0: none).
pub fn Handler(comptime Context: type) type {
    return fn (ctx: Context, input: []const u8, from: *const sys.Peer, reply: []u8) usize;
}

/// What one batch did.
pub const Served = struct {
    received: usize,
    sent: usize,
};

pub const Batch = struct {
    input: []u8,
    output: []u8,
    peers: []sys.Peer,
    /// The input buffers' entries first, then the replies'.
    iov: []sys.IoVec,
    received: []sys.MsgEntry,
    replies: []sys.MsgEntry,

    /// Reserves the buffers of `datagrams` datagrams (address space, backed once used).
    pub fn init(allocator: std.mem.Allocator, datagrams: usize) !Batch {
        std.debug.assert(datagrams > 0);
        const self: Batch = .{
            .input = try compat.mapMemory(datagrams * slot_bytes),
            .output = try compat.mapMemory(datagrams * slot_bytes),
            .peers = try allocator.alloc(sys.Peer, datagrams),
            .iov = try allocator.alloc(sys.IoVec, 2 * datagrams),
            .received = try allocator.alloc(sys.MsgEntry, datagrams),
            .replies = try allocator.alloc(sys.MsgEntry, datagrams),
        };
        for (self.received, 0..) |*entry, i| {
            self.iov[i] = .{ .base = self.input[i * slot_bytes ..].ptr, .len = slot_bytes };
            const name = &self.peers[i].addr;
            entry.* = .{ .hdr = .{ .name = name, .name_len = 0, .iov = self.iov[i..].ptr } };
        }
        return self;
    }

    /// A reply buffer for answers sent outside a batch (a datagram module's upstream replies,
    /// between turns): the first slot, free whenever `serve` is not running.
    pub fn spareReply(self: *Batch) []u8 {
        return self.output[0..slot_bytes];
    }

    pub fn size(self: *const Batch) usize {
        return self.received.len;
    }

    /// Receives what is queued on `fd`, up to a batch, and answers it; null when nothing
    /// was queued (or receiving failed, which is logged).
    pub fn serve(
        self: *Batch,
        fd: sys.Fd,
        ctx: anytype,
        comptime handle: Handler(@TypeOf(ctx)),
    ) ?Served {
        const n = self.receive(fd) orelse return null;
        var count: usize = 0;
        for (self.received[0..n], 0..) |entry, i| {
            const peer = &self.peers[i];
            peer.len = entry.hdr.name_len;
            const input = self.input[i * slot_bytes ..][0..entry.len];
            const reply = self.output[i * slot_bytes ..][0..slot_bytes];
            const reply_len = handle(ctx, input, peer, reply);
            if (reply_len == 0) continue;
            const iov = self.iov[self.size() + count ..];
            iov[0] = .{ .base = reply.ptr, .len = reply_len };
            self.replies[count] = .{
                .hdr = .{ .name = &peer.addr, .name_len = peer.len, .iov = iov.ptr },
            };
            count += 1;
        }
        return .{ .received = n, .sent = self.send(fd, count) };
    }

    fn receive(self: *Batch, fd: sys.Fd) ?usize {
        for (self.received) |*entry| {
            entry.hdr.name_len = @sizeOf(linux.sockaddr.storage);
            entry.hdr.flags = 0;
        }
        // Signals arrive through a signalfd, so an interruption is rare: a few tries.
        var tries: usize = 0;
        while (tries < 3) : (tries += 1) {
            return sys.recvmmsg(fd, self.received) catch |err| switch (err) {
                error.WouldBlock => null,
                error.Interrupted => continue,
                else => {
                    log.warn("recvmmsg failed: {s}", .{@errorName(err)});
                    return null;
                },
            };
        }
        return null;
    }

    /// Sends the first `count` replies; returns how many the kernel took. UDP promises
    /// nothing: a reply the kernel refuses is a datagram lost, and the rest go on; with the
    /// socket's send buffer full (EAGAIN) the rest of the batch is lost too.
    fn send(self: *Batch, fd: sys.Fd, count: usize) usize {
        var start: usize = 0;
        var sent: usize = 0;
        // Each pass sends or drops at least one reply, but for an interruption.
        var passes: usize = 0;
        while (start < count and passes < 2 * count + 2) : (passes += 1) {
            const k = sys.sendmmsg(fd, self.replies[start..count]) catch |err| switch (err) {
                error.Interrupted => continue,
                error.WouldBlock => return sent,
                else => {
                    start += 1;
                    continue;
                },
            };
            start += k;
            sent += k;
        }
        return sent;
    }
};

fn testSocket() !struct { fd: sys.Fd, peer: sys.Peer } {
    const flags = linux.SOCK.DGRAM | linux.SOCK.NONBLOCK | linux.SOCK.CLOEXEC;
    const fd = try sys.socket(linux.AF.INET, flags, 0);
    var addr: linux.sockaddr.in = .{ .port = 0, .addr = std.mem.nativeToBig(u32, 0x7f000001) };
    try sys.bind(fd, @ptrCast(&addr), @sizeOf(linux.sockaddr.in));
    var peer: sys.Peer = .{};
    peer.len = @sizeOf(linux.sockaddr.storage);
    const rc = linux.getsockname(fd, @ptrCast(&peer.addr), &peer.len);
    if (compat.errno(rc) != .SUCCESS) return error.Unexpected;
    return .{ .fd = fd, .peer = peer };
}

/// Replies "<n>:<input>" to every datagram but those starting with "-" (no reply).
fn numbered(counter: *usize, input: []const u8, from: *const sys.Peer, reply: []u8) usize {
    _ = from;
    counter.* += 1;
    if (input.len > 0 and input[0] == '-') return 0;
    return (compat.bufPrint(reply, "{d}:{s}", .{ counter.*, input }) catch unreachable).len;
}

test "a batch serves what is queued at once, in order, and replies to each sender" {
    const server = try testSocket();
    defer sys.close(server.fd);
    const client = try testSocket();
    defer sys.close(client.fd);
    var batch = try Batch.init(std.testing.allocator, 4);
    defer {
        std.testing.allocator.free(batch.peers);
        std.testing.allocator.free(batch.iov);
        std.testing.allocator.free(batch.received);
        std.testing.allocator.free(batch.replies);
    }
    var counter: usize = 0;
    try std.testing.expectEqual(@as(?Served, null), batch.serve(server.fd, &counter, numbered));
    // Six datagrams: one full batch, then the two left, one of which has no reply.
    for ([_][]const u8{ "a", "bb", "-", "ccc", "d", "-e" }) |text| {
        _ = try sys.sendto(client.fd, text, &server.peer);
    }
    const first = batch.serve(server.fd, &counter, numbered).?;
    try std.testing.expectEqual(Served{ .received = 4, .sent = 3 }, first);
    const second = batch.serve(server.fd, &counter, numbered).?;
    try std.testing.expectEqual(Served{ .received = 2, .sent = 1 }, second);
    var buf: [64]u8 = undefined;
    for ([_][]const u8{ "1:a", "2:bb", "4:ccc", "5:d" }) |want| {
        var from: sys.Peer = .{};
        const n = try sys.recvfrom(client.fd, &buf, &from);
        try std.testing.expectEqualStrings(want, buf[0..n]);
    }
    var from: sys.Peer = .{};
    try std.testing.expectError(error.WouldBlock, sys.recvfrom(client.fd, &buf, &from));
}
