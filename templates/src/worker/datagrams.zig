//! Batched datagrams: a worker receives up to `config.udp_batch` datagrams with one
//! `recvmmsg`, runs each through its handler at once, in arrival order, then sends every
//! reply of the batch with one `sendmmsg`. A datagram never waits for a batch to fill: what
//! one call returned is served before the next call. The buffers (one of `slot_bytes` each
//! way per datagram) are reserved at start and reused; nothing is allocated per datagram.
//! With io_uring the ring receives (one completion per datagram): `hold` serves each as it
//! comes and `sendHeld` sends the turn's replies the same way.
//!
//! Consecutive replies of a batch to one peer, all of one size but the last (which may be
//! shorter), go as one message with a `UDP_SEGMENT` control message (UDP GSO): the kernel
//! cuts it into the datagrams. A socket whose route refuses GSO (EIO, EINVAL, EMSGSIZE)
//! sends one message per reply from then on.
//!
//! Replies that meet a full send buffer (EAGAIN) wait in their socket's `Outbox`, in order,
//! and go when the socket is writable (the worker watches EPOLLOUT meanwhile); new replies
//! queue behind them. A full outbox drops what comes, counted. Receiving goes on meanwhile.
const std = @import("std");
const compat = @import("../compat.zig");
const sys = @import("../net/sys.zig");
const log = @import("../log.zig");
const linux = std.os.linux;
const assert = std.debug.assert;

/// Room for the largest UDP payload, each way.
pub const slot_bytes = 65536;

/// The kernel's `SOL_UDP` and `UDP_SEGMENT` (linux/udp.h).
const sol_udp = 17;
const udp_segment = 103;
/// Segments one GSO send may carry: the kernel's `UDP_MAX_SEGMENTS` (64 before Linux 6.9).
pub const gso_max_segments = 64;
/// Bytes one GSO send may carry: an IP datagram's payload, with room for the headers.
pub const gso_max_bytes = 65000;
/// The largest reply sent as a GSO segment. Each segment must fit the route's MTU (EINVAL
/// otherwise); 1400 bytes fit an Ethernet MTU with IPv6 headers, so a larger reply, rare in
/// DNS, goes alone instead of costing the socket its GSO.
pub const gso_max_segment = 1400;

/// A handler of one datagram: its reply's length in `reply` (0: none).
pub fn Handler(comptime Context: type) type {
    return fn (ctx: Context, input: []const u8, from: *const sys.Peer, reply: []u8) usize;
}

/// What one batch, or one flush of an outbox, did.
pub const Tally = struct {
    received: usize = 0,
    /// Replies the kernel took.
    sent: usize = 0,
    /// Replies that met a full send buffer and were kept in the outbox.
    deferred: usize = 0,
    /// Replies dropped: the outbox was full; the kernel refused them (not EAGAIN).
    dropped_full: usize = 0,
    dropped_error: usize = 0,
    /// Messages sent with `UDP_SEGMENT`, each carrying several replies.
    gso_sends: usize = 0,
};

/// One reply to send: its peer and its bytes, both owned by the caller.
pub const Reply = struct {
    peer: *const sys.Peer,
    bytes: []const u8,
};

pub fn samePeer(a: *const sys.Peer, b: *const sys.Peer) bool {
    if (a.len != b.len) return false;
    const len = @min(a.len, @sizeOf(linux.sockaddr.storage));
    const x: [*]const u8 = @ptrCast(&a.addr);
    const y: [*]const u8 = @ptrCast(&b.addr);
    return std.mem.eql(u8, x[0..len], y[0..len]);
}

/// How many of `replies`, from the first, one GSO send can carry (1: send it alone): the
/// same peer, the first one's size for each but the last, which may be shorter.
pub fn coalescible(replies: []const Reply) usize {
    if (replies.len < 2) return replies.len;
    const size = replies[0].bytes.len;
    if (size == 0 or size > gso_max_segment) return 1;
    var n: usize = 1;
    var total: usize = size;
    while (n < replies.len and n < gso_max_segments) {
        const r = replies[n];
        if (r.bytes.len == 0 or r.bytes.len > size) break;
        if (total + r.bytes.len > gso_max_bytes) break;
        if (!samePeer(r.peer, replies[0].peer)) break;
        total += r.bytes.len;
        n += 1;
        if (r.bytes.len < size) break;
    }
    return n;
}

/// A `struct cmsghdr` with a `UDP_SEGMENT` value (the segment size), padded as
/// `CMSG_SPACE(sizeof(u16))`.
const GsoCmsg = extern struct {
    len: usize,
    level: i32 = sol_udp,
    kind: i32 = udp_segment,
    segment: u16,

    fn of(segment: usize) GsoCmsg {
        const len = @offsetOf(GsoCmsg, "segment") + @sizeOf(u16);
        return .{ .len = len, .segment = @intCast(segment) };
    }
};

/// Whether an error from a GSO send is the route refusing GSO rather than a failure of one
/// datagram: EIO (no checksum offload, an IPsec route), EINVAL, or EMSGSIZE (a segment
/// larger than the route's MTU, which a datagram of its own may still cross in fragments).
fn refusesGso(err: sys.Error) bool {
    if (err != error.Unexpected) return false;
    return switch (sys.last_errno) {
        .IO, .INVAL, .MSGSIZE => true,
        else => false,
    };
}

/// One socket's replies waiting for room in its send buffer, oldest first, and whether its
/// route takes GSO. The buffers are mapped at the first reply kept (address space; most
/// sockets never need them).
pub const Outbox = struct {
    allocator: std.mem.Allocator,
    capacity: usize,
    memory: []u8 = &.{},
    waiting: []Waiting = &.{},
    head: usize = 0,
    count: usize = 0,
    /// The route refused a GSO send: one message per reply from then on.
    gso_refused: bool = false,
    /// The worker watches the socket for EPOLLOUT.
    watching: bool = false,
    /// The worker stops: the socket is closed once the outbox is empty.
    closing: bool = false,

    const Waiting = struct { peer: sys.Peer, len: usize };

    pub fn init(allocator: std.mem.Allocator, capacity: usize) Outbox {
        assert(capacity > 0);
        return .{ .allocator = allocator, .capacity = capacity };
    }

    pub fn deinit(self: *Outbox) void {
        if (self.waiting.len > 0) self.allocator.free(self.waiting);
        if (self.memory.len > 0) _ = linux.munmap(self.memory.ptr, self.memory.len);
        self.* = init(self.allocator, self.capacity);
    }

    /// Keeps a copy of `reply` behind the others; false when there is no room.
    pub fn keep(self: *Outbox, reply: Reply) bool {
        if (self.count == self.capacity or reply.bytes.len > slot_bytes) return false;
        if (self.waiting.len == 0) {
            self.waiting = self.allocator.alloc(Waiting, self.capacity) catch return false;
            self.memory = compat.mapMemory(self.capacity * slot_bytes) catch {
                self.allocator.free(self.waiting);
                self.waiting = &.{};
                return false;
            };
        }
        const at = (self.head + self.count) % self.capacity;
        self.waiting[at] = .{ .peer = reply.peer.*, .len = reply.bytes.len };
        @memcpy(self.memory[at * slot_bytes ..][0..reply.bytes.len], reply.bytes);
        self.count += 1;
        return true;
    }

    /// The `i`-th reply waiting, the oldest first.
    pub fn peek(self: *const Outbox, i: usize) Reply {
        assert(i < self.count);
        const at = (self.head + i) % self.capacity;
        const w = &self.waiting[at];
        return .{ .peer = &w.peer, .bytes = self.memory[at * slot_bytes ..][0..w.len] };
    }

    /// Forgets the `n` oldest replies (sent or dropped).
    pub fn forget(self: *Outbox, n: usize) void {
        assert(n <= self.count);
        self.head = (self.head + n) % self.capacity;
        self.count -= n;
        if (self.count == 0) self.head = 0;
    }
};

pub const Batch = struct {
    input: []u8,
    output: []u8,
    peers: []sys.Peer,
    /// The input buffers' entries first, then the replies'.
    iov: []sys.IoVec,
    received: []sys.MsgEntry,
    replies: []sys.MsgEntry,
    /// The replies of the batch being served, and those of an outbox being flushed.
    fresh: []Reply,
    kept: []Reply,
    /// A GSO control message per entry of `replies`.
    cmsgs: []GsoCmsg,
    /// The reply each entry of `replies` starts with (one more: the end).
    first: []usize,
    /// Datagrams served one at a time (through io_uring, see `hold`) since the last
    /// `sendHeld`, and how many replies of theirs wait in `fresh`.
    held_in: usize = 0,
    held: usize = 0,

    /// Reserves the buffers of `datagrams` datagrams (address space, backed once used).
    pub fn init(allocator: std.mem.Allocator, datagrams: usize) !Batch {
        assert(datagrams > 0);
        const self: Batch = .{
            .input = try compat.mapMemory(datagrams * slot_bytes),
            .output = try compat.mapMemory(datagrams * slot_bytes),
            .peers = try allocator.alloc(sys.Peer, datagrams),
            .iov = try allocator.alloc(sys.IoVec, 2 * datagrams),
            .received = try allocator.alloc(sys.MsgEntry, datagrams),
            .replies = try allocator.alloc(sys.MsgEntry, datagrams),
            .fresh = try allocator.alloc(Reply, datagrams),
            .kept = try allocator.alloc(Reply, datagrams),
            .cmsgs = try allocator.alloc(GsoCmsg, datagrams),
            .first = try allocator.alloc(usize, datagrams + 1),
        };
        for (self.received, 0..) |*entry, i| {
            self.iov[i] = .{ .base = self.input[i * slot_bytes ..].ptr, .len = slot_bytes };
            const name = &self.peers[i].addr;
            entry.* = .{ .hdr = .{ .name = name, .name_len = 0, .iov = self.iov[i..].ptr } };
        }
        return self;
    }

    pub fn deinit(self: *Batch, allocator: std.mem.Allocator) void {
        _ = linux.munmap(self.input.ptr, self.input.len);
        _ = linux.munmap(self.output.ptr, self.output.len);
        allocator.free(self.peers);
        allocator.free(self.iov);
        allocator.free(self.received);
        allocator.free(self.replies);
        allocator.free(self.fresh);
        allocator.free(self.kept);
        allocator.free(self.cmsgs);
        allocator.free(self.first);
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
    /// was queued (or receiving failed, which is logged). Replies go behind those `box`
    /// kept, and what the send buffer cannot take now is kept there.
    pub fn serve(
        self: *Batch,
        fd: sys.Fd,
        box: *Outbox,
        ctx: anytype,
        comptime handle: Handler(@TypeOf(ctx)),
    ) ?Tally {
        const n = self.receive(fd) orelse return null;
        var tally: Tally = .{ .received = n };
        var count: usize = 0;
        for (self.received[0..n], 0..) |entry, i| {
            const peer = &self.peers[i];
            peer.len = entry.hdr.name_len;
            const input = self.input[i * slot_bytes ..][0..entry.len];
            const reply = self.output[i * slot_bytes ..][0..slot_bytes];
            const reply_len = handle(ctx, input, peer, reply);
            if (reply_len == 0) continue;
            self.fresh[count] = .{ .peer = peer, .bytes = reply[0..reply_len] };
            count += 1;
        }
        self.sendBehind(fd, box, self.fresh[0..count], &tally);
        return tally;
    }

    /// Runs the handler of one datagram received on its own (a ring completion, with the
    /// sender's address as the kernel wrote it) and holds its reply, to be sent with the
    /// others of the turn by `sendHeld`. The caller sends before holding more than a batch
    /// (`isFull`), and before holding a datagram of another socket.
    pub fn hold(
        self: *Batch,
        input: []const u8,
        from: []const u8,
        ctx: anytype,
        comptime handle: Handler(@TypeOf(ctx)),
    ) void {
        assert(!self.isFull());
        const i = self.held;
        const peer = &self.peers[i];
        const len = @min(from.len, @sizeOf(linux.sockaddr.storage));
        @memcpy(std.mem.asBytes(&peer.addr)[0..len], from[0..len]);
        peer.len = @intCast(len);
        const reply = self.output[i * slot_bytes ..][0..slot_bytes];
        self.held_in += 1;
        const reply_len = handle(ctx, input, peer, reply);
        if (reply_len == 0) return;
        self.fresh[i] = .{ .peer = peer, .bytes = reply[0..reply_len] };
        self.held += 1;
    }

    pub fn isFull(self: *const Batch) bool {
        return self.held == self.size();
    }

    /// Whether datagrams were held since the last `sendHeld`.
    pub fn holds(self: *const Batch) bool {
        return self.held_in > 0;
    }

    /// Sends the replies `hold` kept, in order, behind what `box` kept (as `serve` does).
    pub fn sendHeld(self: *Batch, fd: sys.Fd, box: *Outbox) Tally {
        var tally: Tally = .{ .received = self.held_in };
        const list = self.fresh[0..self.held];
        self.held = 0;
        self.held_in = 0;
        self.sendBehind(fd, box, list, &tally);
        return tally;
    }

    /// Sends one reply outside a batch (a module's answer to an upstream call; its bytes are
    /// the caller's, such as `spareReply`), behind what `box` kept.
    pub fn sendOne(self: *Batch, fd: sys.Fd, box: *Outbox, reply: Reply, tally: *Tally) void {
        self.fresh[0] = reply;
        self.sendBehind(fd, box, self.fresh[0..1], tally);
    }

    /// Sends `list` after what `box` kept; what the send buffer cannot take now is kept too.
    fn sendBehind(self: *Batch, fd: sys.Fd, box: *Outbox, list: []const Reply, tally: *Tally) void {
        if (box.count > 0) self.flush(fd, box, tally);
        const done = if (box.count > 0) 0 else self.sendList(fd, list, box, tally);
        for (list[done..]) |reply| {
            if (box.keep(reply)) tally.deferred += 1 else tally.dropped_full += 1;
        }
    }

    /// Sends what `box` kept, oldest first, until it is empty or the send buffer is full.
    pub fn flush(self: *Batch, fd: sys.Fd, box: *Outbox, tally: *Tally) void {
        var passes: usize = 0;
        while (box.count > 0 and passes <= box.capacity) : (passes += 1) {
            const take = @min(box.count, self.size());
            for (self.kept[0..take], 0..) |*reply, i| reply.* = box.peek(i);
            const done = self.sendList(fd, self.kept[0..take], box, tally);
            box.forget(done);
            if (done < take) return;
        }
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

    /// Lays `list[from..]` out as messages in `replies`, runs to one peer as GSO sends when
    /// `gso`; returns how many messages.
    fn plan(self: *Batch, list: []const Reply, from: usize, gso: bool) usize {
        const base = self.size();
        var e: usize = 0;
        var i = from;
        while (i < list.len) : (e += 1) {
            const run = if (gso) coalescible(list[i..]) else 1;
            for (list[i..][0..run], i..) |reply, j| {
                const bytes: [*]u8 = @constCast(reply.bytes.ptr);
                self.iov[base + j] = .{ .base = bytes, .len = reply.bytes.len };
            }
            const peer = list[i].peer;
            self.replies[e] = .{ .hdr = .{
                .name = @constCast(&peer.addr),
                .name_len = peer.len,
                .iov = self.iov[base + i ..].ptr,
                .iov_len = run,
            } };
            if (run > 1) {
                self.cmsgs[e] = GsoCmsg.of(list[i].bytes.len);
                self.replies[e].hdr.control = &self.cmsgs[e];
                self.replies[e].hdr.control_len = @sizeOf(GsoCmsg);
            }
            self.first[e] = i;
            i += run;
        }
        self.first[e] = list.len;
        return e;
    }

    /// Sends `list` (at most a batch) in order; returns how many of its replies were sent or
    /// dropped: fewer than all when the send buffer filled up (EAGAIN), and the rest wait.
    /// A reply the kernel refuses otherwise is dropped, and the rest go on. A GSO send the
    /// route refuses is sent again one reply per message, and `box` remembers the refusal.
    fn sendList(self: *Batch, fd: sys.Fd, list: []const Reply, box: *Outbox, tally: *Tally) usize {
        assert(list.len <= self.size());
        var entries = self.plan(list, 0, !box.gso_refused);
        var start: usize = 0;
        // Each pass sends or drops at least one message, but for an interruption or a refusal.
        var passes: usize = 0;
        while (start < entries and passes < 2 * list.len + 4) : (passes += 1) {
            const k = sys.sendmmsg(fd, self.replies[start..entries]) catch |err| {
                switch (err) {
                    error.Interrupted => continue,
                    error.WouldBlock => return self.first[start],
                    else => {},
                }
                if (self.replies[start].hdr.control_len != 0 and refusesGso(err)) {
                    box.gso_refused = true;
                    log.info("UDP GSO refused ({s}): one message per reply on this socket", .{
                        @tagName(sys.last_errno),
                    });
                    entries = self.plan(list, self.first[start], false);
                    start = 0;
                    continue;
                }
                tally.dropped_error += self.first[start + 1] - self.first[start];
                start += 1;
                continue;
            };
            for (self.replies[start..][0..k]) |entry| {
                if (entry.hdr.control_len != 0) tally.gso_sends += 1;
            }
            tally.sent += self.first[start + k] - self.first[start];
            start += k;
        }
        return list.len;
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
    defer batch.deinit(std.testing.allocator);
    var box = Outbox.init(std.testing.allocator, 8);
    defer box.deinit();
    var counter: usize = 0;
    const none = batch.serve(server.fd, &box, &counter, numbered);
    try std.testing.expectEqual(@as(?Tally, null), none);
    // Six datagrams: one full batch, then the two left, one of which has no reply.
    for ([_][]const u8{ "a", "bb", "-", "ccc", "d", "-e" }) |text| {
        _ = try sys.sendto(client.fd, text, &server.peer);
    }
    const first = batch.serve(server.fd, &box, &counter, numbered).?;
    try std.testing.expectEqual(Tally{ .received = 4, .sent = 3 }, first);
    const second = batch.serve(server.fd, &box, &counter, numbered).?;
    try std.testing.expectEqual(Tally{ .received = 2, .sent = 1 }, second);
    var buf: [64]u8 = undefined;
    for ([_][]const u8{ "1:a", "2:bb", "4:ccc", "5:d" }) |want| {
        var from: sys.Peer = .{};
        const n = try sys.recvfrom(client.fd, &buf, &from);
        try std.testing.expectEqualStrings(want, buf[0..n]);
    }
    var from: sys.Peer = .{};
    try std.testing.expectError(error.WouldBlock, sys.recvfrom(client.fd, &buf, &from));
}

fn testPeer(port: u16) sys.Peer {
    var peer: sys.Peer = .{ .len = @sizeOf(linux.sockaddr.in) };
    @memset(std.mem.asBytes(&peer.addr), 0);
    const in: *linux.sockaddr.in = @ptrCast(&peer.addr);
    in.* = .{ .port = std.mem.nativeToBig(u16, port), .addr = 0x0100007f };
    return peer;
}

test "replies to one peer of one size, the last maybe shorter, make one GSO send" {
    const a = testPeer(1);
    const b = testPeer(2);
    const r = struct {
        fn of(peer: *const sys.Peer, len: usize) Reply {
            const bytes: [2000]u8 = @splat('x');
            return .{ .peer = peer, .bytes = bytes[0..len] };
        }
    }.of;
    try std.testing.expectEqual(@as(usize, 0), coalescible(&.{}));
    try std.testing.expectEqual(@as(usize, 1), coalescible(&.{r(&a, 10)}));
    // Three of 10 then a shorter one ends the run; the next is another peer's.
    const mixed = [_]Reply{ r(&a, 10), r(&a, 10), r(&a, 10), r(&a, 4), r(&a, 10), r(&b, 10) };
    try std.testing.expectEqual(@as(usize, 4), coalescible(&mixed));
    try std.testing.expectEqual(@as(usize, 1), coalescible(mixed[4..]));
    // A longer one ends it too, and so does another port of the same address.
    try std.testing.expectEqual(@as(usize, 2), coalescible(&.{ r(&a, 10), r(&a, 10), r(&a, 11) }));
    try std.testing.expectEqual(@as(usize, 1), coalescible(&.{ r(&a, 10), r(&b, 10) }));
    // Too large a segment goes alone; a long run stops at the kernel's segment count.
    try std.testing.expectEqual(@as(usize, 1), coalescible(&.{ r(&a, 1401), r(&a, 1401) }));
    var many: [gso_max_segments + 5]Reply = undefined;
    for (&many) |*m| m.* = r(&a, 100);
    try std.testing.expectEqual(@as(usize, gso_max_segments), coalescible(&many));
    // And at the bytes one send may carry.
    var big: [60]Reply = undefined;
    for (&big) |*m| m.* = r(&a, 1400);
    try std.testing.expectEqual(@as(usize, gso_max_bytes / 1400), coalescible(&big));
}

test "an outbox keeps replies in order, wraps around, and refuses when full" {
    var box = Outbox.init(std.testing.allocator, 3);
    defer box.deinit();
    const a = testPeer(7);
    try std.testing.expect(box.keep(.{ .peer = &a, .bytes = "one" }));
    try std.testing.expect(box.keep(.{ .peer = &a, .bytes = "two" }));
    box.forget(1);
    try std.testing.expect(box.keep(.{ .peer = &a, .bytes = "three" }));
    try std.testing.expect(box.keep(.{ .peer = &a, .bytes = "four" }));
    try std.testing.expect(!box.keep(.{ .peer = &a, .bytes = "five" }));
    try std.testing.expectEqual(@as(usize, 3), box.count);
    for ([_][]const u8{ "two", "three", "four" }, 0..) |want, i| {
        try std.testing.expectEqualStrings(want, box.peek(i).bytes);
        try std.testing.expect(samePeer(box.peek(i).peer, &a));
    }
    box.forget(3);
    try std.testing.expectEqual(@as(usize, 0), box.count);
}

/// Replies "<input>" padded with dots to 100 bytes, or 37 bytes for input "short".
fn padded(_: *usize, input: []const u8, from: *const sys.Peer, reply: []u8) usize {
    _ = from;
    const len: usize = if (std.mem.eql(u8, input, "short")) 37 else 100;
    @memset(reply[0..len], '.');
    @memcpy(reply[0..input.len], input);
    return len;
}

test "a GSO send reaches the peer as separate datagrams; a kept reply goes first" {
    const server = try testSocket();
    defer sys.close(server.fd);
    const client = try testSocket();
    defer sys.close(client.fd);
    var batch = try Batch.init(std.testing.allocator, 8);
    defer batch.deinit(std.testing.allocator);
    var box = Outbox.init(std.testing.allocator, 4);
    defer box.deinit();
    // As if the send buffer had been full: one reply waits for the client already.
    try std.testing.expect(box.keep(.{ .peer = &client.peer, .bytes = "kept" }));
    for ([_][]const u8{ "q1", "q2", "q3", "q4", "short" }) |text| {
        _ = try sys.sendto(client.fd, text, &server.peer);
    }
    var unused: usize = 0;
    const tally = batch.serve(server.fd, &box, &unused, padded).?;
    try std.testing.expectEqual(Tally{ .received = 5, .sent = 6, .gso_sends = 1 }, tally);
    try std.testing.expectEqual(@as(usize, 0), box.count);
    var buf: [256]u8 = undefined;
    const wants = [_][]const u8{ "kept", "q1", "q2", "q3", "q4", "short" };
    const lens = [_]usize{ 4, 100, 100, 100, 100, 37 };
    for (wants, lens) |want, len| {
        var from: sys.Peer = .{};
        const n = try sys.recvfrom(client.fd, &buf, &from);
        try std.testing.expect(std.mem.startsWith(u8, buf[0..n], want));
        try std.testing.expectEqual(len, n);
    }
    var from: sys.Peer = .{};
    try std.testing.expectError(error.WouldBlock, sys.recvfrom(client.fd, &buf, &from));
}

test "datagrams held one at a time are answered together, in order, behind a kept reply" {
    const server = try testSocket();
    defer sys.close(server.fd);
    const client = try testSocket();
    defer sys.close(client.fd);
    var batch = try Batch.init(std.testing.allocator, 2);
    defer batch.deinit(std.testing.allocator);
    var box = Outbox.init(std.testing.allocator, 4);
    defer box.deinit();
    try std.testing.expect(box.keep(.{ .peer = &client.peer, .bytes = "kept" }));
    var counter: usize = 0;
    const from = std.mem.asBytes(&client.peer.addr)[0..client.peer.len];
    try std.testing.expect(!batch.holds());
    batch.hold("a", from, &counter, numbered);
    batch.hold("-", from, &counter, numbered);
    try std.testing.expect(batch.holds() and !batch.isFull());
    batch.hold("b", from, &counter, numbered);
    try std.testing.expect(batch.isFull());
    const tally = batch.sendHeld(server.fd, &box);
    // The two replies, one size and one peer, go as one GSO send.
    try std.testing.expectEqual(Tally{ .received = 3, .sent = 3, .gso_sends = 1 }, tally);
    try std.testing.expect(!batch.holds() and box.count == 0);
    var buf: [64]u8 = undefined;
    for ([_][]const u8{ "kept", "1:a", "3:b" }) |want| {
        var peer: sys.Peer = .{};
        const n = try sys.recvfrom(client.fd, &buf, &peer);
        try std.testing.expectEqualStrings(want, buf[0..n]);
    }
}
