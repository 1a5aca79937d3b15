//! The io_uring side of a worker (`"io": "io_uring"` or `--io io_uring`).
//!
//! The ring is where such a worker waits. Its TCP listeners (of connection handlers and of
//! the proxy) accept with one multishot accept each; connections receive with one multishot
//! receive each into a ring of provided buffers shared by the worker, and so do the sides of
//! the proxy's pairs (handlers/proxy.zig); UDP sockets receive with one multishot `recvmsg`
//! each into a buffer group of their own (their replies go with `sendmmsg`, see
//! datagrams.zig); everything else (signals, the supervisor's pipe, the admin listener,
//! upstream sockets, a proxy's health checks and `zeroCopy` pairs, a UDP socket's EPOLLOUT)
//! stays in the epoll set, which the ring watches with a multishot poll: the loop asks epoll
//! (without waiting) only when that poll fired or epoll had more to say last time.
//!
//! The kernel holds its own reference to every file an operation is pending on: closing a
//! descriptor does not end a multishot accept or receive on it. So a listener or connection
//! that closes first has its operations cancelled, and every completion carries the token of
//! what it is for (kind, slot, generation), so that one for a closed connection, or for the
//! previous connection of a slot, is recognised and only gives its buffer back.
const std = @import("std");
const config = @import("../config.zig");
const compat = @import("../compat.zig");
const sys = @import("../net/sys.zig");
const linux = std.os.linux;
const IoUring = linux.IoUring;
const assert = std.debug.assert;
const Token = @import("connections.zig").Token;

/// Bytes of one provided buffer: a request head or a few pipelined commands.
pub const buffer_bytes = 4096;
/// Buffers in the ring: one per connection up to 4096 (a connection holds one only until
/// its handler reads it, unless it may not read), at least 256.
pub const buffer_count: u16 = blk: {
    const wanted: u32 = std.math.ceilPowerOfTwoAssert(u32, @max(config.max_connections, 1));
    break :blk @intCast(@min(@as(u32, 4096), @max(@as(u32, 256), wanted)));
};
/// How many of the shared group's buffers must be back in the kernel after a shortage before
/// receives are armed again: enough for a turn of receives, not one that runs out at once.
const refill_at = buffer_count / 8;
/// A connection with this many bytes received and not read stops receiving until its handler
/// reads them: one fast sender cannot take every buffer from the others.
pub const queue_limit = 16 * buffer_bytes;
const group_id: u16 = 0;
/// The provided buffers of datagrams (UDP sockets' multishot `recvmsg`), a group of their own:
/// each holds the kernel's `io_uring_recvmsg_out`, the peer's address and the largest UDP
/// payload, so no datagram is cut short. A datagram's buffer goes back to the kernel as soon
/// as its handler has run, so a few suffice; the kernel waits for one otherwise (ENOBUFS ends
/// the receive, which the worker arms again, and the datagrams wait in the socket's queue).
const datagram_group: u16 = 1;
pub const datagram_name_bytes = @sizeOf(linux.sockaddr.storage);
const datagram_header_bytes = @sizeOf(RecvmsgOut) + datagram_name_bytes;
pub const datagram_buffer_bytes = datagram_header_bytes + 65536;
/// Whether the spec has UDP listeners (the datagrams' buffer group is set up only then).
const has_udp = blk: {
    for (config.listeners) |l| if (l.protocol == .udp) break :blk true;
    break :blk false;
};
/// The socket index of the probe's datagram token: no socket's (its buffer only goes back).
pub const datagram_probe: u32 = std.math.maxInt(u32);
pub const datagram_buffer_count: u16 = blk: {
    const wanted: u32 = std.math.ceilPowerOfTwoAssert(u32, @max(64, config.udp_batch));
    break :blk @intCast(@min(@as(u32, 512), wanted));
};
const sq_entries = 256;
const cq_entries = 8192;
/// No buffer (the end of a queue).
pub const none: u16 = std.math.maxInt(u16);

/// The token kinds of ring completions (after the epoll kinds, see worker.zig).
pub const Kind = struct {
    pub const epoll: u8 = 8;
    pub const accept: u8 = 9;
    pub const recv: u8 = 10;
    pub const poll: u8 = 11;
    /// A cancellation's own completion, and the probe's: nothing to do.
    pub const quiet: u8 = 12;
    pub const send: u8 = 13;
    /// A proxied pair's side (`handlers/proxy.zig`): its multishot receive, its send and
    /// its one-shot poll for room (or for its connect's end).
    pub const proxy_recv: u8 = 14;
    pub const proxy_send: u8 = 15;
    pub const proxy_poll: u8 = 16;
    /// A datagram of a UDP socket's multishot `recvmsg`.
    pub const datagram: u8 = 17;
};

/// The kernel's `struct io_uring_recvmsg_out`, at the start of a multishot `recvmsg`'s buffer
/// (declared here: not every Zig release has it).
pub const RecvmsgOut = extern struct {
    name_len: u32,
    control_len: u32,
    payload_len: u32,
    flags: u32,
};

/// One datagram a multishot `recvmsg` delivered: the sender's address and the payload, both
/// in the datagram's provided buffer.
pub const Datagram = struct {
    name: []const u8,
    payload: []const u8,
};

/// The state of a multishot (or one-shot) operation on the ring.
pub const Op = enum(u2) {
    /// Nothing pending: armed when wanted.
    idle,
    armed,
    /// Cancelled; its last completion (without IORING_CQE_F_MORE) has not come yet, and it is
    /// not armed again before then (the cancellation names it by its token).
    cancelling,
};

/// Bytes received for a connection and not read by its handler yet: a list of buffers in
/// arrival order, then perhaps the end of the stream or an error.
pub const Queue = struct {
    head: u16 = none,
    tail: u16 = none,
    bytes: u32 = 0,
    /// The client shut its side (a receive of 0 bytes): read after the bytes before it.
    eof: bool = false,
    /// The receive failed (a reset): reported after the bytes before it.
    failed: bool = false,

    pub fn isEmpty(self: *const Queue) bool {
        return self.head == none and !self.eof and !self.failed;
    }
};

/// The per-buffer bookkeeping of the queues: which buffer follows which, and what of each
/// is still unread. Pure: the ring is told of freed buffers by the caller.
pub const Buffers = struct {
    next: []u16,
    start: []u16,
    end: []u16,

    pub fn push(self: *Buffers, q: *Queue, id: u16, len: u16) void {
        assert(len > 0 and len <= buffer_bytes);
        self.next[id] = none;
        self.start[id] = 0;
        self.end[id] = len;
        if (q.tail == none) q.head = id else self.next[q.tail] = id;
        q.tail = id;
        q.bytes += len;
    }

    /// Copies from the front buffer into `dest`; the buffer is returned in `freed` once
    /// read whole (the caller gives it back to the kernel).
    pub fn takeFront(self: *Buffers, q: *Queue, mem: []const u8, dest: []u8, freed: *u16) usize {
        freed.* = none;
        const id = q.head;
        if (id == none) return 0;
        const from = @as(usize, id) * buffer_bytes;
        const avail = self.end[id] - self.start[id];
        const n: u16 = @intCast(@min(avail, dest.len));
        const src = mem[from + self.start[id] ..][0..n];
        @memcpy(dest[0..n], src);
        self.start[id] += n;
        q.bytes -= n;
        if (self.start[id] == self.end[id]) {
            q.head = self.next[id];
            if (q.head == none) q.tail = none;
            freed.* = id;
        }
        return n;
    }

    /// Takes the front buffer off the queue unread; `none` when the queue holds none.
    pub fn popFront(self: *Buffers, q: *Queue) u16 {
        const id = q.head;
        if (id == none) return none;
        q.bytes -= self.end[id] - self.start[id];
        q.head = self.next[id];
        if (q.head == none) q.tail = none;
        return id;
    }
};

/// What the kernel refused, for the `io_fallback` event: the error number's name and the
/// step that failed.
pub const Refusal = struct {
    errno: []const u8,
    step: []const u8,
};

pub const Opened = union(enum) {
    ring: *Ring,
    refused: Refusal,
};

pub const Ring = struct {
    ring: IoUring,
    br: compat.BufRing,
    mem: []u8,
    buffers: Buffers,
    /// The datagrams' buffer group, or null where multishot `recvmsg` is refused (UDP stays
    /// with epoll then).
    dgram_br: ?compat.BufRing = null,
    dgram_mem: []u8 = &.{},
    /// The template of every UDP socket's multishot `recvmsg`: the room for the peer's
    /// address, no control messages, the whole buffer for the payload.
    dgram_hdr: sys.MsgHdr = undefined,
    dgram_iov: [1]sys.IoVec = undefined,
    /// Never written (the kernel puts each address in its buffer), but a null name would
    /// have the kernel keep no room for one.
    dgram_name: linux.sockaddr.storage = undefined,
    /// Buffers of the shared group in user space: received into and not given back yet.
    held: u32 = 0,
    /// A receive ended for want of buffers (ENOBUFS), and too few have come back since:
    /// receives are not armed meanwhile, since each would end at once, turn after turn, and
    /// the worker would spin (clients that send and never read can hold every buffer).
    short: bool = false,
    /// Buffers came back after a shortage: the receives left unarmed are to be armed again.
    refilled: bool = false,

    /// Sets up the ring and its buffers and checks that multishot receive works; what the
    /// kernel (or a seccomp profile, or kernel.io_uring_disabled) refuses is returned
    /// instead, and the worker serves with epoll.
    pub fn open(allocator: std.mem.Allocator) Opened {
        const self = allocator.create(Ring) catch return refuse("ENOMEM", "allocation");
        // `create` leaves the memory undefined: the fields with defaults get them here.
        self.* = .{ .ring = undefined, .br = undefined, .mem = undefined, .buffers = undefined };
        self.ring = setup() catch |err| {
            allocator.destroy(self);
            return refuse(errnoName(err), "io_uring_setup");
        };
        if (self.ring.features & linux.IORING_FEAT_EXT_ARG == 0) {
            return self.giveUp(allocator, "EINVAL", "IORING_FEAT_EXT_ARG (Linux 5.11)");
        }
        self.br = compat.setupBufRing(self.ring.fd, buffer_count, group_id) catch |err| {
            return self.giveUp(allocator, errnoName(err), "buffer ring (Linux 5.19)");
        };
        self.initBuffers(allocator) catch return self.giveUp(allocator, "ENOMEM", "buffers");
        if (self.probeMultishot()) |errno| {
            return self.giveUp(allocator, errno, "multishot receive (Linux 6.0)");
        }
        self.openDatagrams();
        return .{ .ring = self };
    }

    /// Registers `fd` (the report pipe's end) with the ring, so that the kernel holds it open
    /// until it has let the ring go: a killed worker's ring is torn down after the process
    /// is reaped (by a kernel worker, some milliseconds later), and only then does it release
    /// the connections and listeners its operations hold. The supervisor, which reads the
    /// pipe, sees its end only once they are closed, as it does for an epoll worker.
    pub fn holdUntilGone(self: *Ring, fd: linux.fd_t) void {
        // Refused (ENOMEM, a kernel without registered files): the supervisor then waits
        // for the pipe a bounded time only (see `supervisor.zig`, `exit_grace_ms`).
        self.ring.register_files(&.{fd}) catch {};
    }

    fn refuse(errno: []const u8, step: []const u8) Opened {
        return .{ .refused = .{ .errno = errno, .step = step } };
    }

    fn giveUp(
        self: *Ring,
        allocator: std.mem.Allocator,
        errno: []const u8,
        step: []const u8,
    ) Opened {
        self.ring.deinit();
        allocator.destroy(self);
        return refuse(errno, step);
    }

    fn setup() !IoUring {
        const base = linux.IORING_SETUP_CQSIZE | linux.IORING_SETUP_SUBMIT_ALL;
        // Completions are run only when the worker asks for them (Linux 6.1), which is
        // every turn of its loop; older kernels take the plain ring.
        const deferred = linux.IORING_SETUP_SINGLE_ISSUER | linux.IORING_SETUP_DEFER_TASKRUN;
        return setupWith(base | deferred) catch |err| switch (err) {
            error.ArgumentsInvalid => setupWith(base),
            else => err,
        };
    }

    fn setupWith(flags: u32) !IoUring {
        var params = std.mem.zeroes(linux.io_uring_params);
        params.flags = flags;
        params.cq_entries = cq_entries;
        return IoUring.init_params(sq_entries, &params);
    }

    fn initBuffers(self: *Ring, allocator: std.mem.Allocator) !void {
        // The kernel takes the buffers in the order they were given back, the one given
        // back longest ago first: whatever the number of connections, every buffer is used
        // in turn and its page touched after `buffer_count` receives. Backed at once, the
        // memory is what it will be from the start, instead of growing under steady load.
        self.mem = try compat.mapResident(@as(usize, buffer_count) * buffer_bytes);
        self.buffers = .{
            .next = try allocator.alloc(u16, buffer_count),
            .start = try allocator.alloc(u16, buffer_count),
            .end = try allocator.alloc(u16, buffer_count),
        };
        IoUring.buf_ring_init(self.br);
        var id: u16 = 0;
        // Every buffer starts in user space and is given to the kernel.
        self.held = buffer_count;
        while (id < buffer_count) : (id += 1) self.put(id);
    }

    /// Sets up the datagrams' buffer group and checks that a multishot `recvmsg` delivers a
    /// datagram with its sender's address; where the kernel refuses, UDP stays with epoll.
    fn openDatagrams(self: *Ring) void {
        // A spec without UDP listeners needs neither the buffers nor the probe.
        if (!has_udp) return;
        const bytes = @as(usize, datagram_buffer_count) * datagram_buffer_bytes;
        self.dgram_mem = compat.mapMemory(bytes) catch return;
        const br = compat.setupBufRing(self.ring.fd, datagram_buffer_count, datagram_group) catch {
            _ = linux.munmap(self.dgram_mem.ptr, self.dgram_mem.len);
            self.dgram_mem = &.{};
            return;
        };
        IoUring.buf_ring_init(br);
        self.dgram_br = br;
        self.dgram_iov = .{.{ .base = self.dgram_mem.ptr, .len = 0 }};
        // No iovec: the kernel takes the whole provided buffer.
        self.dgram_hdr = .{
            .name = &self.dgram_name,
            .name_len = datagram_name_bytes,
            .iov = &self.dgram_iov,
            .iov_len = 0,
        };
        var id: u16 = 0;
        while (id < datagram_buffer_count) : (id += 1) self.putDatagram(id);
        if (!self.probeRecvmsg()) self.dgram_br = null;
    }

    /// A multishot `recvmsg` on a datagram socket pair must deliver one datagram and stay
    /// armed (Linux 6.0).
    fn probeRecvmsg(self: *Ring) bool {
        var pair: [2]i32 = undefined;
        const dgram = linux.SOCK.DGRAM | linux.SOCK.CLOEXEC;
        if (compat.errno(linux.socketpair(linux.AF.UNIX, dgram, 0, &pair)) != .SUCCESS) {
            return false;
        }
        defer _ = linux.close(pair[0]);
        defer _ = linux.close(pair[1]);
        const probe = token(Kind.datagram, 0, datagram_probe);
        self.armRecvmsg(probe, pair[0]) catch return false;
        _ = linux.write(pair[1], "xy", 2);
        const cqe = self.awaitCompletion(probe) orelse return false;
        if (cqe.res < 0 or cqe.flags & linux.IORING_CQE_F_BUFFER == 0) return false;
        const id = bufferId(cqe.flags);
        const got = self.datagramIn(id, cqe.res);
        const ok = if (got) |d| std.mem.eql(u8, d.payload, "xy") else false;
        self.putDatagram(id);
        // Its last completion comes on a later turn of the loop and is ignored there.
        self.cancel(probe);
        return ok and hasMore(cqe.flags);
    }

    /// Waits for the first completion of `user_data`; those of the receive probe's
    /// cancellation, which come first, give their buffers back.
    fn awaitCompletion(self: *Ring, user_data: u64) ?linux.io_uring_cqe {
        var tries: usize = 0;
        while (tries < 8) : (tries += 1) {
            _ = self.ring.submit_and_wait(1) catch return null;
            var cqes: [1]linux.io_uring_cqe = undefined;
            const n = self.ring.copy_cqes(&cqes, 1) catch return null;
            if (n != 1) continue;
            if (cqes[0].user_data == user_data) return cqes[0];
            self.giveBack(cqes[0].flags);
        }
        return null;
    }

    /// Whether UDP sockets receive through the ring.
    pub fn takesDatagrams(self: *const Ring) bool {
        return self.dgram_br != null;
    }

    /// A multishot `recvmsg` on a UDP socket: a completion per datagram, in a buffer of the
    /// datagrams' group.
    pub fn armRecvmsg(self: *Ring, user_data: u64, fd: linux.fd_t) !void {
        const e = try self.sqe();
        e.prep_rw(.RECVMSG, fd, @intFromPtr(&self.dgram_hdr), 1, 0);
        e.flags |= linux.IOSQE_BUFFER_SELECT;
        e.buf_index = datagram_group;
        e.ioprio |= linux.IORING_RECV_MULTISHOT;
        e.user_data = user_data;
    }

    /// The datagram in buffer `id`, of which the completion said `res` bytes are used; null
    /// when the kernel's layout is not what was asked for.
    pub fn datagramIn(self: *const Ring, id: u16, res: i32) ?Datagram {
        const buf = self.datagramBuffer(id);
        const used: usize = @intCast(@max(res, 0));
        if (used < datagram_header_bytes or used > buf.len) return null;
        const out = std.mem.bytesToValue(RecvmsgOut, buf[0..@sizeOf(RecvmsgOut)]);
        if (out.control_len != 0) return null;
        const name_len = @min(out.name_len, datagram_name_bytes);
        return .{
            .name = buf[@sizeOf(RecvmsgOut)..][0..name_len],
            // A payload larger than the buffer (MSG_TRUNC) cannot be: UDP's is at most 65535.
            .payload = buf[datagram_header_bytes..used],
        };
    }

    fn datagramBuffer(self: *const Ring, id: u16) []u8 {
        const at = @as(usize, id) * datagram_buffer_bytes;
        return self.dgram_mem[at..][0..datagram_buffer_bytes];
    }

    /// Gives datagram buffer `id` back to the kernel.
    pub fn putDatagram(self: *Ring, id: u16) void {
        const br = self.dgram_br orelse return;
        const buf = self.datagramBuffer(id);
        IoUring.buf_ring_add(br, buf, id, IoUring.buf_ring_mask(datagram_buffer_count), 0);
        IoUring.buf_ring_advance(br, 1);
    }

    /// A multishot receive on a socket pair must deliver a byte and stay armed; the error
    /// number's name otherwise (an old kernel's EINVAL).
    fn probeMultishot(self: *Ring) ?[]const u8 {
        var pair: [2]i32 = undefined;
        const stream = linux.SOCK.STREAM | linux.SOCK.CLOEXEC;
        const rc = linux.socketpair(linux.AF.UNIX, stream, 0, &pair);
        if (compat.errno(rc) != .SUCCESS) return @tagName(compat.errno(rc));
        defer _ = linux.close(pair[0]);
        defer _ = linux.close(pair[1]);
        const probe = token(Kind.quiet, 0, 0);
        self.armRecv(probe, pair[0]) catch return "EBUSY";
        _ = linux.write(pair[1], "x", 1);
        var cqes: [1]linux.io_uring_cqe = undefined;
        _ = self.ring.submit_and_wait(1) catch |err| return errnoName(err);
        const n = self.ring.copy_cqes(&cqes, 1) catch |err| return errnoName(err);
        if (n != 1) return "EIO";
        const cqe = cqes[0];
        if (cqe.res < 0) return @tagName(compat.errnoOf(cqe.res));
        self.giveBack(cqe.flags);
        if (cqe.flags & linux.IORING_CQE_F_MORE == 0) return "EINVAL";
        // Its last completion comes on a later turn of the loop and is ignored there.
        self.cancel(probe);
        return null;
    }

    fn errnoName(err: anyerror) []const u8 {
        return switch (err) {
            error.PermissionDenied => "EPERM",
            error.SystemOutdated => "ENOSYS",
            error.ArgumentsInvalid => "EINVAL",
            error.SystemResources => "ENOMEM",
            error.ProcessFdQuotaExceeded => "EMFILE",
            error.SystemFdQuotaExceeded => "ENFILE",
            else => @errorName(err),
        };
    }

    fn sqe(self: *Ring) !*linux.io_uring_sqe {
        return self.ring.get_sqe() catch {
            // Full: what is queued goes to the kernel now, and room is made.
            _ = try self.ring.submit();
            return self.ring.get_sqe();
        };
    }

    /// Watches the epoll set: a completion whenever one of its descriptors is ready.
    pub fn armEpoll(self: *Ring, epfd: linux.fd_t) !void {
        const e = try self.sqe();
        e.prep_poll_add(epfd, linux.POLL.IN);
        e.len = linux.IORING_POLL_ADD_MULTI;
        e.user_data = token(Kind.epoll, 0, 0);
    }

    pub fn armAccept(self: *Ring, user_data: u64, fd: linux.fd_t) !void {
        const e = try self.sqe();
        e.prep_multishot_accept(fd, null, null, linux.SOCK.NONBLOCK | linux.SOCK.CLOEXEC);
        e.user_data = user_data;
    }

    pub fn armRecv(self: *Ring, user_data: u64, fd: linux.fd_t) !void {
        const e = try self.sqe();
        e.prep_rw(.RECV, fd, 0, 0, 0);
        e.flags |= linux.IOSQE_BUFFER_SELECT;
        e.buf_index = group_id;
        e.ioprio |= linux.IORING_RECV_MULTISHOT;
        e.user_data = user_data;
    }

    /// A send that never waits (`MSG_DONTWAIT`): the kernel tries it while it takes the
    /// submission and completes it there, with the bytes it took or `EAGAIN`, rather than
    /// waiting for room later. So `bytes` are read by the `io_uring_enter` that submits it and
    /// not after: they may change once it returned, as after a `send` system call.
    pub fn send(self: *Ring, user_data: u64, fd: linux.fd_t, bytes: []const u8) !void {
        return self.sendWith(user_data, fd, bytes, 0);
    }

    /// `send` with more flags (`MSG_MORE`: a FIN follows the bytes, see handlers/proxy.zig).
    pub fn sendWith(
        self: *Ring,
        user_data: u64,
        fd: linux.fd_t,
        bytes: []const u8,
        flags: u32,
    ) !void {
        const e = try self.sqe();
        e.prep_send(fd, bytes, linux.MSG.DONTWAIT | linux.MSG.NOSIGNAL | flags);
        e.user_data = user_data;
    }

    pub fn armPoll(self: *Ring, user_data: u64, fd: linux.fd_t, mask: u32) !void {
        const e = try self.sqe();
        e.prep_poll_add(fd, mask);
        e.user_data = user_data;
    }

    /// Cancels the operation with token `target`; its last completion says when it ended.
    pub fn cancel(self: *Ring, target: u64) void {
        // Only a full queue that the kernel will not take fails this: the operation then
        // ends with its descriptor's connection (or at exit), as it would have anyway.
        const e = self.sqe() catch return;
        e.prep_cancel(target, 0);
        e.user_data = token(Kind.quiet, 0, 0);
    }

    /// Gives buffer `id` back to the kernel.
    pub fn put(self: *Ring, id: u16) void {
        const buf = self.mem[@as(usize, id) * buffer_bytes ..][0..buffer_bytes];
        IoUring.buf_ring_add(self.br, buf, id, IoUring.buf_ring_mask(buffer_count), 0);
        IoUring.buf_ring_advance(self.br, 1);
        assert(self.held > 0);
        self.held -= 1;
        if (self.short and buffer_count - self.held >= refill_at) {
            self.short = false;
            self.refilled = true;
        }
    }

    /// Copies what `q` holds into `dest`, the oldest bytes first, as far as `dest` has room,
    /// and gives each buffer it empties back to the kernel; the bytes copied.
    pub fn take(self: *Ring, q: *Queue, dest: []u8) usize {
        var n: usize = 0;
        // Bounded: each pass takes bytes, or the loop ends.
        while (n < dest.len) {
            var freed: u16 = undefined;
            const got = self.buffers.takeFront(q, self.mem, dest[n..], &freed);
            if (freed != none) self.put(freed);
            if (got == 0) break;
            n += got;
        }
        return n;
    }

    /// The buffer of a completion the probes read themselves (not through `completions`),
    /// if it has one of the shared group's, goes straight back.
    fn giveBack(self: *Ring, flags: u32) void {
        if (flags & linux.IORING_CQE_F_BUFFER == 0) return;
        self.took();
        self.put(bufferId(flags));
    }

    /// A completion brought one of the shared group's buffers to user space.
    pub fn took(self: *Ring) void {
        assert(self.held < buffer_count);
        self.held += 1;
    }

    /// A receive ended with ENOBUFS: none is armed again until `refill_at` buffers are back.
    pub fn starve(self: *Ring) void {
        self.short = true;
    }

    /// Whether a receive may be armed now (see `short`).
    pub fn mayReceive(self: *const Ring) bool {
        return !self.short;
    }

    /// Whether buffers came back after a shortage since the last call: the receives left
    /// unarmed are to be armed again, once.
    pub fn takeRefilled(self: *Ring) bool {
        defer self.refilled = false;
        return self.refilled;
    }

    /// Submits what is queued and waits up to `timeout_ms` (-1: no limit, 0: not at all) for
    /// a completion, in one io_uring_enter.
    pub fn wait(self: *Ring, timeout_ms: i32) !void {
        const to_submit = self.ring.flush_sq();
        var ts: linux.kernel_timespec = .{
            .sec = @divTrunc(timeout_ms, 1000),
            .nsec = @as(i64, @rem(timeout_ms, 1000)) * std.time.ns_per_ms,
        };
        var arg: linux.io_uring_getevents_arg = .{
            .sigmask = 0,
            .sigmask_sz = 0,
            .pad = 0,
            .ts = if (timeout_ms >= 0) @intFromPtr(&ts) else 0,
        };
        const min: u32 = if (timeout_ms == 0) 0 else 1;
        const flags = linux.IORING_ENTER_GETEVENTS | linux.IORING_ENTER_EXT_ARG;
        const rc = linux.syscall6(
            .io_uring_enter,
            @as(usize, @bitCast(@as(isize, self.ring.fd))),
            to_submit,
            min,
            flags,
            @intFromPtr(&arg),
            @sizeOf(linux.io_uring_getevents_arg),
        );
        switch (compat.errno(rc)) {
            // Timed out, a signal, or completions the kernel holds back until read.
            .SUCCESS, .TIME, .INTR, .BUSY, .AGAIN => {},
            else => |e| {
                enter_errno = e;
                return error.Unexpected;
            },
        }
    }

    /// Completions that arrived, into `cqes`; 0 when none is left.
    pub fn completions(self: *Ring, cqes: []linux.io_uring_cqe) u32 {
        const n = self.ring.copy_cqes(cqes, 0) catch 0;
        for (cqes[0..n]) |cqe| {
            if (cqe.flags & linux.IORING_CQE_F_BUFFER == 0) continue;
            // Datagrams' buffers are a group of their own, given back within the turn.
            if (Token.decode(cqe.user_data).kind != Kind.datagram) self.took();
        }
        return n;
    }
};

/// The error number of the last failed wait, for the message.
pub var enter_errno: linux.E = .SUCCESS;

/// A completion's token: what it is for (see `Kind`), the slot and its generation.
pub fn token(kind: u8, generation: u32, index: u32) u64 {
    return (Token{ .kind = kind, .generation = @truncate(generation), .index = index }).encode();
}

pub fn bufferId(flags: u32) u16 {
    return @intCast(flags >> linux.IORING_CQE_BUFFER_SHIFT);
}

pub fn hasMore(flags: u32) bool {
    return flags & linux.IORING_CQE_F_MORE != 0;
}

test "queues hand out bytes in arrival order and free each buffer once read whole" {
    var next: [4]u16 = undefined;
    var start: [4]u16 = undefined;
    var end: [4]u16 = undefined;
    var b: Buffers = .{ .next = &next, .start = &start, .end = &end };
    var mem: [4 * buffer_bytes]u8 = undefined;
    @memcpy(mem[2 * buffer_bytes ..][0..3], "abc");
    @memcpy(mem[1 * buffer_bytes ..][0..2], "de");
    var q: Queue = .{};
    try std.testing.expect(q.isEmpty());
    b.push(&q, 2, 3);
    b.push(&q, 1, 2);
    try std.testing.expectEqual(@as(u32, 5), q.bytes);
    var dest: [4]u8 = undefined;
    var freed: u16 = undefined;
    try std.testing.expectEqual(@as(usize, 2), b.takeFront(&q, &mem, dest[0..2], &freed));
    try std.testing.expectEqual(none, freed);
    try std.testing.expectEqual(@as(usize, 1), b.takeFront(&q, &mem, dest[2..], &freed));
    try std.testing.expectEqual(@as(u16, 2), freed);
    try std.testing.expectEqualStrings("abc", dest[0..3]);
    try std.testing.expectEqual(@as(u16, 1), b.popFront(&q));
    try std.testing.expectEqual(none, b.popFront(&q));
    try std.testing.expect(q.isEmpty() and q.bytes == 0 and q.tail == none);
    q.eof = true;
    try std.testing.expect(!q.isEmpty());
}

test "ring tokens carry kind, generation and slot" {
    const t = Token.decode(token(Kind.recv, 0x1abcdef, 42));
    try std.testing.expectEqual(Kind.recv, t.kind);
    try std.testing.expectEqual(@as(u24, 0xabcdef), t.generation);
    try std.testing.expectEqual(@as(u32, 42), t.index);
    try std.testing.expect(hasMore(linux.IORING_CQE_F_MORE));
    try std.testing.expectEqual(@as(u16, 7), bufferId(7 << linux.IORING_CQE_BUFFER_SHIFT | 1));
}
