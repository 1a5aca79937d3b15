//! A worker's TCP connections: a fixed table of slots, and the life of each connection in it,
//! from accept to close: read, hand the bytes to the listener's handler, send its output,
//! keep the connection's deadline, and close it without destroying what it was sent.
//!
//! Every buffer is reserved at start (pages are only backed once touched): nothing is
//! allocated per connection or per request. Each slot carries a generation, counted up every
//! time the slot is reused and carried in the slot's epoll token, so that an event for a
//! connection that was closed, even one whose descriptor number and slot were reused within
//! the same `epoll_wait` batch, is recognised and dropped.
const std = @import("std");
const config = @import("../config.zig");
const sys = @import("../net/sys.zig");
const compat = @import("../compat.zig");
const cli = @import("../cli.zig");
const handlers = @import("../handlers.zig");
const deadlines_mod = @import("deadlines.zig");
const timers_mod = @import("timers.zig");
const listener_mod = @import("../net/listener.zig");
const metrics = @import("../metrics/cell.zig");
const output_pool = @import("output_pool.zig");
const ring_mod = @import("ring.zig");
const linux = std.os.linux;
const assert = std.debug.assert;

const api = handlers.api;
const Deadlines = deadlines_mod.Deadlines;

/// An epoll token: what the event is about (`kind`), for connections the slot `index` and
/// the low bits of the slot's generation when the connection was registered.
pub const Token = struct {
    kind: u8,
    generation: u24 = 0,
    index: u32,

    pub fn encode(self: Token) u64 {
        return (@as(u64, self.kind) << 56) | (@as(u64, self.generation) << 32) | self.index;
    }

    pub fn decode(data: u64) Token {
        return .{
            .kind = @truncate(data >> 56),
            .generation = @truncate(data >> 32),
            .index = @truncate(data),
        };
    }
};

/// The token kind of every connection event (the worker owns the other kinds).
pub const connection_kind: u8 = 2;

/// How long a closing connection may take to read what its client still sends before it
/// is closed for good (nginx's lingering close uses a few seconds too).
pub const linger_ms = 2_000;

/// How long a connection must have been idle before it may be evicted. Its client may send
/// its next request just as we close: the request is then reset and lost, and the closer to
/// our last answer, the likelier that is (a busy client answers at once). Older idle
/// connections are closed only after asking the kernel that nothing of theirs has arrived.
pub const evict_min_idle_ms = 500;

/// A request in progress this long that has averaged fewer than `slow_bytes_per_s` is a slow
/// client, evicted before any idle connection (a trickled body or head holds a slot that a
/// fresh client could use; a real client's request arrives within a round trip or two).
pub const slow_request_ms = 1_000;
pub const slow_bytes_per_s = 1_024;

/// Candidates an eviction looks at, oldest first, in each list: bounded work per newcomer.
const evict_scan = 16;

const closed: sys.Fd = -1;

/// Who serves, handed to every handler call.
pub const Identity = struct {
    worker_index: u16,
    pid: i32,
    generation: u32,
};

const Sending = enum(u2) { no, queued, submitted };

/// Slots listed for a pass of the loop, each at most once until the pass takes it (with
/// io_uring: the connections ready to read, and those whose send waits for the turn's
/// io_uring_enter). A pass takes the first `n` one by one; a slot listed again meanwhile goes
/// after them, for the next pass.
const SlotList = struct {
    items: []u32 = &.{},
    len: u32 = 0,
    listed: []bool = &.{},

    fn init(allocator: std.mem.Allocator, slots: usize) !SlotList {
        // Every slot once, and once more when it is listed again while a pass runs.
        const list: SlotList = .{
            .items = try allocator.alloc(u32, 2 * slots),
            .listed = try allocator.alloc(bool, slots),
        };
        @memset(list.listed, false);
        return list;
    }

    fn add(self: *SlotList, slot: u32) void {
        if (self.listed[slot]) return;
        self.listed[slot] = true;
        self.items[self.len] = slot;
        self.len += 1;
    }

    /// The pass's `i`-th slot, no longer listed.
    fn take(self: *SlotList, i: usize) u32 {
        const slot = self.items[i];
        self.listed[slot] = false;
        return slot;
    }

    /// The pass over the first `n` is done: the slots listed since move up.
    fn endPass(self: *SlotList, n: usize) void {
        const later = self.items[n..self.len];
        compat.moveLeft(u32, self.items[0..later.len], later);
        self.len = @intCast(later.len);
    }
};

const Connection = struct {
    fd: sys.Fd = closed,
    generation: u32 = 0,
    listener_index: u16 = 0,
    in_len: u32 = 0,
    out_start: u32 = 0,
    out_end: u32 = 0,
    close_after_flush: bool = false,
    /// The handler used input and left some: it may use more once output is sent.
    more_input: bool = false,
    /// Waiting for EPOLLOUT (and not reading) rather than for EPOLLIN.
    watching_out: bool = false,
    /// Our side is shut down; the client's remaining bytes are read and discarded.
    lingering: bool = false,
    /// In the epoll set (a connection served at once after accept may never need to be).
    registered: bool = false,
    /// The per-connection socket options for ongoing writes are set (see `flush`).
    ongoing: bool = false,
    /// The last read left room in the buffer: the kernel held nothing more at that moment.
    drained: bool = false,
    /// The last answer refused a request or gave up waiting (an error status), or its
    /// handler closed while its client may still be sending (`Progress.linger`).
    refused: bool = false,
    /// Its handler paused reading: the socket is not watched for input.
    read_paused: bool = false,
    /// Its application timer fired while output was pending: it runs once that is sent.
    timer_due: bool = false,
    /// The worker drains and its handler is to hear of it (`handlers.onDrain`) once the
    /// output is sent.
    drain_due: bool = false,
    /// The client shut its side of the connection while more of its input waited unread.
    half_closed: bool = false,
    /// Its output is a reply in parts (`Progress.paced`): input is not read on meanwhile.
    paced: bool = false,
    /// What the connection is registered in epoll for (with io_uring: what it waits for).
    events: u32 = 0,
    /// With io_uring (see ring.zig): its multishot receive, its one-shot poll and the poll's
    /// events, and what the receive delivered that its handler has not read yet.
    recv: ring_mod.Op = .idle,
    poll: ring_mod.Op = .idle,
    poll_mask: u32 = 0,
    queue: ring_mod.Queue = .{},
    /// With io_uring, its output goes out through the ring (see `flushRing`): one send is
    /// queued for the turn's io_uring_enter, then submitted; until its completion is handled
    /// the output is not touched and the handler does not run. What the last one did: bytes
    /// went out (not yet reported to `serve`), the socket was full, or the send failed.
    sending: Sending = .no,
    send_spill: bool = false,
    send_progressed: bool = false,
    send_blocked: bool = false,
    send_failed: bool = false,
    /// Bytes read from the connection so far, and their count when its request began.
    read_bytes: u64 = 0,
    request_read_bytes: u64 = 0,
    phase: api.Phase = .idle,
    /// Output that went past the write buffer: it is sent before the buffer's bytes.
    spill: output_pool.Queue = .{},
    state: handlers.State = .none,
};

pub const Connections = struct {
    slots: []Connection,
    in_bufs: []u8,
    out_bufs: []u8,
    free: []u32,
    free_len: u32,
    deadlines: Deadlines,
    /// Application timers (stream modules), at most one per slot.
    timers: timers_mod.Timers,
    epfd: sys.Fd,
    identity: Identity,
    limits: cli.Limits,
    /// Chunks for output that waits beyond the write buffers (`outputPoolBytes`).
    pool: output_pool.Pool,
    draining: bool = false,
    /// With io_uring: the worker's ring, and the connections whose received bytes wait to be
    /// read on the loop's next turn (as epoll, level-triggered, would report them again).
    ring: ?*ring_mod.Ring = null,
    ready: SlotList = .{},
    /// With io_uring: the connections whose send waits for the turn's io_uring_enter.
    sends: SlotList = .{},

    pub fn init(
        allocator: std.mem.Allocator,
        epfd: sys.Fd,
        identity: Identity,
        limits: cli.Limits,
    ) !Connections {
        const max = config.max_connections;
        const slots = try allocator.alloc(Connection, max);
        errdefer allocator.free(slots);
        const free = try allocator.alloc(u32, max);
        errdefer allocator.free(free);
        for (slots, 0..) |*c, i| {
            c.* = .{};
            free[max - 1 - i] = @intCast(i);
        }
        var deadlines = try Deadlines.init(allocator, max, .{
            limits.header_timeout_ms,
            limits.body_timeout_ms,
            limits.idle_timeout_ms,
            limits.write_timeout_ms,
            linger_ms,
            limits.request_timeout_ms,
        });
        errdefer deadlines.deinit(allocator);
        var timers = try timers_mod.Timers.init(allocator, max);
        errdefer timers.deinit(allocator);
        var pool = try output_pool.Pool.init(allocator, config.output_pool_bytes);
        errdefer pool.deinit(allocator);
        return .{
            .slots = slots,
            // usize: the spec's limits multiply past u32 (1048576 connections of 1 MiB each).
            .in_bufs = try compat.mapMemory(@as(usize, max) * config.read_buffer_bytes),
            .out_bufs = try compat.mapMemory(@as(usize, max) * config.write_buffer_bytes),
            .free = free,
            .free_len = max,
            .deadlines = deadlines,
            .timers = timers,
            .epfd = epfd,
            .identity = identity,
            .limits = limits,
            .pool = pool,
        };
    }

    /// Serves the connections through `ring` from now on (before the first is opened).
    pub fn useRing(self: *Connections, allocator: std.mem.Allocator, ring: *ring_mod.Ring) !void {
        assert(self.openCount() == 0);
        self.ready = try SlotList.init(allocator, self.slots.len);
        self.sends = try SlotList.init(allocator, self.slots.len);
        self.ring = ring;
    }

    pub fn openCount(self: *const Connections) u32 {
        assert(self.free_len <= self.slots.len);
        return @intCast(self.slots.len - self.free_len);
    }

    /// When the loop must wake next for a connection: its nearest deadline or timer.
    pub fn nextMs(self: *const Connections) ?u64 {
        const deadline = self.deadlines.nextMs();
        const timer = self.timers.nextMs() orelse return deadline;
        return @min(deadline orelse timer, timer);
    }

    pub fn isFull(self: *const Connections) bool {
        return self.free_len == 0;
    }

    /// Whether `evictOne` would find a connection to close.
    pub fn canEvict(self: *const Connections, now_ms: u64) bool {
        return self.findVictim(now_ms) != null;
    }

    /// Whether a connection that cannot be evicted now may become evictable by waiting: an
    /// idle one not idle long enough, or a request in progress not slow for long enough.
    pub fn mayEvictSoon(self: *const Connections) bool {
        return self.deadlines.oldest(.idle) != null or self.deadlines.oldest(.request) != null;
    }

    const Victim = union(enum) {
        /// Already closing: its answer was sent.
        lingering: u32,
        /// Mid-request, and slower than `slow_bytes_per_s`.
        slow: u32,
        /// Nothing in flight, idle at least `evict_min_idle_ms`, and nothing of its client's
        /// waiting in the kernel.
        idle: u32,
    };

    /// The connection to close for a newcomer, if any: first one that is already closing,
    /// then a slow client, then the one idle longest (nginx's "reusable connections").
    fn findVictim(self: *const Connections, now_ms: u64) ?Victim {
        if (self.deadlines.oldest(.linger)) |slot| return .{ .lingering = slot };
        if (self.findSlow(now_ms)) |slot| return .{ .slow = slot };
        var candidate = self.deadlines.oldest(.idle);
        var looked: usize = 0;
        while (candidate) |slot| : (looked += 1) {
            if (looked == evict_scan) return null;
            const c = &self.slots[slot];
            assert(c.phase == .idle and c.fd != closed);
            // The idle list is in order: the rest are younger still.
            const since = self.deadlines.sinceMs(slot, .idle).?;
            if (now_ms -| since < evict_min_idle_ms) return null;
            // Its next request has arrived (the loop has not read it yet): serve it, and
            // close another.
            if (c.in_len == 0 and c.out_end == 0 and self.unread(slot) == 0) {
                return .{ .idle = slot };
            }
            candidate = self.deadlines.after(slot, .idle);
        }
        return null;
    }

    /// The oldest request in progress that has been slow for `slow_request_ms`, if any.
    fn findSlow(self: *const Connections, now_ms: u64) ?u32 {
        var candidate = self.deadlines.oldest(.request);
        var looked: usize = 0;
        while (candidate) |slot| : (looked += 1) {
            if (looked == evict_scan) return null;
            const c = &self.slots[slot];
            const age_ms = now_ms -| self.deadlines.sinceMs(slot, .request).?;
            if (age_ms < slow_request_ms) return null;
            const bytes = c.read_bytes - c.request_read_bytes;
            const quiet = !c.watching_out and !c.read_paused and c.out_start == c.out_end and
                c.sending == .no;
            if (quiet and bytes * 1000 < slow_bytes_per_s * age_ms) return slot;
            candidate = self.deadlines.after(slot, .request);
        }
        return null;
    }

    /// Closes one connection that nothing depends on, to make room for a new client (see
    /// `findVictim`); never one whose client's request has arrived. False when there is none.
    pub fn evictOne(self: *Connections, now_ms: u64) bool {
        switch (self.findVictim(now_ms) orelse return false) {
            .lingering => |slot| self.close(slot),
            .idle => |slot| {
                // Nothing of its client's is unread: the close is a FIN, not a reset.
                metrics.add(&self.countersOf(slot).evicted, 1);
                self.close(slot);
            },
            .slow => |slot| {
                metrics.add(&self.countersOf(slot).evicted, 1);
                self.evictSlow(slot);
            },
        }
        return true;
    }

    /// A slow client's request is cut short: its handler answers (HTTP's 408), the answer
    /// goes out once if the socket takes it (nothing else is pending), our side is shut and
    /// the input that came is read away, so that the close does not reset the answer.
    fn evictSlow(self: *Connections, slot: u32) void {
        const c = &self.slots[slot];
        assert(c.fd != closed and !c.lingering);
        assert(c.out_start == c.out_end and !c.watching_out);
        const ctx = self.context(slot);
        var out: api.Output = .{ .buf = self.outBuf(slot) };
        handlers.onTimeout(&ctx, &c.state, &out);
        self.countTimeoutAnswer(slot, out.len);
        if (out.len > 0) _ = sys.send(c.fd, out.buf[0..out.len]) catch 0;
        sys.shutdownWrite(c.fd);
        self.discardPending(slot);
        self.close(slot);
    }

    /// Reads and drops what the kernel holds for a connection (bounded).
    fn discardPending(self: *Connections, slot: u32) void {
        const buf = self.inBuf(slot);
        var reads: usize = 0;
        while (reads < 16) : (reads += 1) {
            const n = self.readInput(slot, buf) catch |err| switch (err) {
                error.Interrupted => continue,
                else => return,
            };
            if (n == 0) return;
        }
    }

    /// Takes a new connection into a free slot and lets its handler greet it.
    pub fn open(self: *Connections, fd: sys.Fd, listener_index: u16, now_ms: u64) void {
        assert(fd != closed);
        assert(listener_index < config.listeners.len);
        assert(self.free_len > 0);
        self.free_len -= 1;
        const slot = self.free[self.free_len];
        const c = &self.slots[slot];
        assert(c.fd == closed);
        c.* = .{
            .fd = fd,
            .generation = c.generation +% 1,
            .listener_index = listener_index,
            .state = handlers.initState(listener_index, self.limits),
        };
        const listener_counters = metrics.at(listener_index);
        metrics.add(&listener_counters.accepted, 1);
        metrics.add(&listener_counters.open, 1);
        const ctx = self.context(slot);
        var out = self.output(slot);
        const progress = handlers.onOpen(&ctx, &c.state, &out);
        self.afterHandler(slot, progress, out.len, now_ms);
        c.more_input = progress.want_writable;
        // Accepted from the queue of a draining worker: told of the drain after its greeting.
        c.drain_due = self.draining and handlers.wantsDrain(listener_index);
        // A greeting (or a close, or a module that wants to write more) is served now; `serve`
        // then registers the connection and arms the deadline of what it waits for, lingering
        // included.
        if (out.len > 0 or progress.close or c.more_input or c.drain_due) {
            return self.serve(slot, now_ms);
        }
        // A listener that defers accepting hands over connections with their first bytes
        // (TCP_DEFER_ACCEPT): read at once, and a one-request client is answered and closed
        // without ever being registered with epoll. Elsewhere the connection is registered
        // and read once epoll says so: a read right after accept may find nothing yet.
        if (config.listeners[listener_index].options.defer_accept) {
            return self.readAndHandle(slot, now_ms);
        }
        self.watch(slot, false);
        if (c.fd != closed) self.armPhase(slot, now_ms);
    }

    fn tokenOf(self: *const Connections, slot: u32) u64 {
        return self.tokenFor(slot, connection_kind);
    }

    /// The token of the connection in `slot` for an event or completion of `kind`.
    fn tokenFor(self: *const Connections, slot: u32, kind: u8) u64 {
        assert(self.slots[slot].fd != closed);
        const generation: u24 = @truncate(self.slots[slot].generation);
        return (Token{ .kind = kind, .generation = generation, .index = slot }).encode();
    }

    /// The connection a token is about, unless it closed since (or its slot was reused).
    fn current(self: *Connections, token: Token) ?*Connection {
        if (token.index >= self.slots.len) return null;
        const c = &self.slots[token.index];
        if (c.fd == closed) return null;
        if (@as(u24, @truncate(c.generation)) != token.generation) return null;
        return c;
    }

    fn context(self: *const Connections, slot: u32) api.Context {
        const listener_index = self.slots[slot].listener_index;
        assert(listener_index < config.listeners.len);
        return .{
            .listener = &config.listeners[listener_index],
            .listener_index = listener_index,
            .worker_index = self.identity.worker_index,
            .pid = self.identity.pid,
            .generation = self.identity.generation,
            .draining = self.draining,
            .fd = self.slots[slot].fd,
            .slot = slot,
            .connection_generation = self.slots[slot].generation,
        };
    }

    fn inBuf(self: *const Connections, slot: u32) []u8 {
        assert(slot < self.slots.len);
        const start = @as(usize, slot) * config.read_buffer_bytes;
        return self.in_bufs[start..][0..config.read_buffer_bytes];
    }

    fn outBuf(self: *const Connections, slot: u32) []u8 {
        assert(slot < self.slots.len);
        const start = @as(usize, slot) * config.write_buffer_bytes;
        return self.out_bufs[start..][0..config.write_buffer_bytes];
    }

    /// A handler's output: the empty write buffer, and past it the connection's spill.
    fn output(self: *Connections, slot: u32) api.Output {
        const c = &self.slots[slot];
        assert(c.out_start == c.out_end);
        const spill: ?api.Spill = if (self.pool.capacity() == 0) null else .{
            .queue = &c.spill,
            .pool = &self.pool,
            .limit = config.output_limit_bytes,
        };
        return .{ .buf = self.outBuf(slot), .spill = spill };
    }

    /// Whether output waits to be sent, in the write buffer or past it.
    fn outputWaits(c: *const Connection) bool {
        return c.out_start < c.out_end or !c.spill.isEmpty();
    }

    /// Whether a connection whose output waits for its client is read on meanwhile: a client
    /// that writes a whole pipeline before reading any answer (redis-py's pipeline, say)
    /// must have it read, or both sides wait for each other. Its answers go to the pool, up
    /// to its limit; once the pool is spent it is not read (back-pressure), nor while its
    /// handler paused reading, streams a reply in parts, or closes it.
    fn mayReadOn(self: *const Connections, c: *const Connection) bool {
        if (self.pool.free_len == 0) return false;
        if (c.close_after_flush or c.lingering or c.read_paused) return false;
        if (c.paced or c.timer_due or c.spill.over_limit) return false;
        return c.in_len < config.read_buffer_bytes;
    }

    const Spilled = enum { done, pool_spent, over_limit };

    /// Moves the write buffer's waiting bytes behind the connection's spill, so that its
    /// handler can write again.
    fn spillOutput(self: *Connections, slot: u32) Spilled {
        const c = &self.slots[slot];
        const waiting = self.outBuf(slot)[c.out_start..c.out_end];
        if (waiting.len == 0) return .done;
        if (self.pool.capacity() == 0) return .pool_spent;
        if (c.spill.len + waiting.len > config.output_limit_bytes) {
            c.spill.over_limit = true;
            return .over_limit;
        }
        if (!c.spill.append(&self.pool, waiting)) return .pool_spent;
        c.out_start = 0;
        c.out_end = 0;
        return .done;
    }

    /// A connection asked for more output than its limit (`outputLimitBytes`) while its
    /// client did not read: closed, and what waited for it dropped (Redis closes a client
    /// past its `client-output-buffer-limit` the same way).
    fn closeOverLimit(self: *Connections, slot: u32) void {
        metrics.add(&self.countersOf(slot).output_limit, 1);
        self.close(slot);
    }

    /// An epoll event for a connection; stale ones (closed, or the slot reused) are dropped.
    pub fn onEvent(self: *Connections, token: Token, events: u32, now_ms: u64) void {
        const c = self.current(token) orelse return;
        if (c.lingering) return self.discardInput(token.index);
        // A send on the ring: its completion serves on (received bytes wait in the queue).
        if (c.sending != .no) return;
        if (c.watching_out) {
            const generation = c.generation;
            const writable = linux.EPOLL.OUT | linux.EPOLL.HUP | linux.EPOLL.ERR;
            if (events & writable != 0) {
                c.send_blocked = false;
                self.serve(token.index, now_ms);
            }
            // Read on while the output waits, when `watch` asked for input too.
            if (c.fd == closed or c.generation != generation or c.lingering) return;
            if (c.sending != .no) return;
            const readable = linux.EPOLL.IN | linux.EPOLL.RDHUP;
            if (c.watching_out and c.events & linux.EPOLL.IN != 0 and events & readable != 0) {
                self.readAndHandle(token.index, now_ms);
            }
            return;
        }
        if (c.read_paused) {
            // Not read: only a broken connection reports, and it will not heal.
            if (events & (linux.EPOLL.HUP | linux.EPOLL.ERR) != 0) return self.close(token.index);
            if (events & linux.EPOLL.RDHUP != 0) self.onPeerShutdown(token.index);
            return;
        }
        const readable = linux.EPOLL.IN | linux.EPOLL.HUP | linux.EPOLL.ERR | linux.EPOLL.RDHUP;
        if (events & readable != 0) self.readAndHandle(token.index, now_ms);
    }

    /// The client of a request its handler holds shut its side: it has gone (a long poll
    /// given up), and its slot is freed now rather than when the handler's timer fires. A
    /// client that half-closes after pipelining more requests loses their answers, as with
    /// nginx, which checks such clients the same way; only while bytes are still unread in
    /// the kernel, before the end of its stream, is it kept (and no longer watched).
    fn onPeerShutdown(self: *Connections, slot: u32) void {
        const c = &self.slots[slot];
        assert(c.fd != closed);
        assert(c.read_paused);
        if (self.unread(slot) == 0) {
            metrics.add(&self.countersOf(slot).abandoned, 1);
            return self.close(slot);
        }
        c.half_closed = true;
        self.watch(slot, false);
    }

    fn readAndHandle(self: *Connections, slot: u32, now_ms: u64) void {
        const c = &self.slots[slot];
        assert(c.fd != closed);
        assert(!c.lingering);
        const buf = self.inBuf(slot);
        assert(c.in_len <= buf.len);
        if (c.in_len == buf.len) {
            // The handler could not use a full buffer (a custom handler's frame larger than
            // readBufferBytes): the connection cannot make progress. It is closed as after a
            // refusal, without a reset that would destroy what was sent before.
            c.close_after_flush = true;
            c.refused = true;
            c.more_input = false;
            return self.serve(slot, now_ms);
        }
        const n = self.readInput(slot, buf[c.in_len..]) catch |err| switch (err) {
            error.WouldBlock, error.Interrupted => {
                // Reading on while output waits: that wait goes on.
                if (c.watching_out) return;
                // Nothing after all (a spurious wakeup): wait for input, under the deadline
                // of what is awaited.
                self.watch(slot, false);
                if (c.fd != closed and self.deadlines.kindOf(slot) == null) {
                    self.armPhase(slot, now_ms);
                }
                return;
            },
            else => return self.close(slot),
        };
        if (n == 0) {
            // The peer closed its side: nothing more will arrive. What waits for it is sent
            // first (a client that shut its side after its pipeline still reads answers).
            if (!outputWaits(c)) return self.close(slot);
            c.close_after_flush = true;
            c.more_input = false;
            return self.watch(slot, true);
        }
        assert(n <= buf.len - c.in_len);
        c.in_len += @intCast(n);
        c.read_bytes += n;
        c.drained = c.in_len < buf.len and c.queue.bytes == 0;
        if (c.out_start < c.out_end) {
            // Read on while output waits: the handler's next output goes behind it.
            switch (self.spillOutput(slot)) {
                .done => {},
                .over_limit => return self.closeOverLimit(slot),
                .pool_spent => {
                    c.more_input = true;
                    return self.watch(slot, true);
                },
            }
        }
        self.handleInput(slot, now_ms);
        self.serve(slot, now_ms);
    }

    /// Runs the handler once over the buffered input; its output waits in the out buffer.
    fn handleInput(self: *Connections, slot: u32, now_ms: u64) void {
        const c = &self.slots[slot];
        assert(c.fd != closed);
        // The handler's output replaces the out buffer's: the last output was sent.
        assert(c.out_start == c.out_end);
        const ctx = self.context(slot);
        var out = self.output(slot);
        const progress = handlers.onData(&ctx, &c.state, self.inBuf(slot)[0..c.in_len], &out);
        self.consume(slot, progress.consumed);
        c.more_input = (progress.consumed > 0 and c.in_len > 0) or progress.want_writable;
        self.afterHandler(slot, progress, out.len, now_ms);
    }

    /// Runs the handler's timer callback; its output waits in the out buffer. The buffered
    /// input is offered too: a request that waited for its timer is still there, unanswered.
    fn handleTimer(self: *Connections, slot: u32, now_ms: u64) void {
        const c = &self.slots[slot];
        assert(c.out_start == c.out_end);
        const ctx = self.context(slot);
        var out = self.output(slot);
        const progress = handlers.onTimer(&ctx, &c.state, self.inBuf(slot)[0..c.in_len], &out);
        self.consume(slot, progress.consumed);
        const more_input = c.more_input;
        self.afterHandler(slot, progress, out.len, now_ms);
        c.more_input = c.more_input or more_input or progress.want_writable;
    }

    /// Tells the handler that the worker drains (a stream module's `draining`); what it
    /// writes waits in the out buffer.
    fn handleDrain(self: *Connections, slot: u32, now_ms: u64) void {
        const c = &self.slots[slot];
        assert(c.out_start == c.out_end);
        assert(self.draining);
        const ctx = self.context(slot);
        var out = self.output(slot);
        const progress = handlers.onDrain(&ctx, &c.state, &out);
        assert(progress.consumed == 0);
        const more_input = c.more_input;
        self.afterHandler(slot, progress, out.len, now_ms);
        c.more_input = more_input or progress.want_writable;
    }

    /// Drops the input a handler used up; the rest moves to the front of the buffer.
    fn consume(self: *Connections, slot: u32, consumed: usize) void {
        const c = &self.slots[slot];
        assert(consumed <= c.in_len);
        if (consumed == 0) return;
        const rest = self.inBuf(slot)[consumed..c.in_len];
        compat.copyLeft(self.inBuf(slot)[0..rest.len], rest);
        c.in_len = @intCast(rest.len);
    }

    fn afterHandler(
        self: *Connections,
        slot: u32,
        progress: api.Progress,
        out_len: usize,
        now_ms: u64,
    ) void {
        const c = &self.slots[slot];
        assert(c.fd != closed);
        assert(out_len <= config.write_buffer_bytes);
        const listener_counters = self.countersOf(slot);
        if (progress.requests != 0) metrics.add(&listener_counters.requests, progress.requests);
        if (progress.rejected != 0) {
            metrics.countRejected(listener_counters, progress.rejected);
            // An HTTP refusal is a response too (the handlers count the ones they route).
            if (isHttp(c.listener_index)) metrics.status(c.listener_index, progress.rejected);
        }
        c.out_start = 0;
        c.out_end = @intCast(out_len);
        c.close_after_flush = progress.close;
        c.paced = progress.paced;
        c.refused = progress.rejected != 0 or progress.linger;
        c.phase = progress.phase;
        switch (progress.timer) {
            .keep => {},
            .cancel => self.timers.cancel(slot),
            .after_ms => |ms| self.timers.arm(slot, c.generation, now_ms + ms),
        }
        switch (progress.reading) {
            .keep => {},
            .pause => c.read_paused = true,
            .unpause => {
                c.read_paused = false;
                // Input that waited while paused is offered again.
                if (c.in_len > 0) c.more_input = true;
            },
        }
        self.trackRequest(slot, progress.requests, now_ms);
    }

    /// Keeps the deadline of the whole request a client is sending: armed at its first byte
    /// (a head begun after none, or after the previous request was answered), held while its
    /// head and body arrive, gone once it is read (or its handler paused reading: the client
    /// then waits for us).
    fn trackRequest(self: *Connections, slot: u32, answered: u32, now_ms: u64) void {
        const c = &self.slots[slot];
        const sending = (c.phase == .head or c.phase == .body) and !c.read_paused;
        if (!sending or c.close_after_flush) return self.deadlines.disarmRequest(slot);
        if (self.limits.request_timeout_ms == 0) return;
        if (answered == 0 and self.deadlines.sinceMs(slot, .request) != null) return;
        self.deadlines.arm(slot, .request, now_ms);
        c.request_read_bytes = c.read_bytes;
    }

    /// Sends the output, then lets the handler use input that waited for it (pipelined
    /// requests beyond one output buffer). When the socket is full it waits for EPOLLOUT
    /// and stops reading meanwhile (back-pressure), under the write deadline.
    fn serve(self: *Connections, slot: u32, now_ms: u64) void {
        const c = &self.slots[slot];
        assert(c.fd != closed);
        assert(!c.lingering);
        // Each round consumes input, so the rounds are bounded by the input buffer.
        var rounds: usize = 0;
        var wrote = c.send_progressed;
        while (rounds <= config.read_buffer_bytes) : (rounds += 1) {
            if (c.spill.over_limit) return self.closeOverLimit(slot);
            wrote = wrote or outputWaits(c);
            switch (self.flush(slot)) {
                .blocked => |progressed| {
                    if (progressed or self.deadlines.kindOf(slot) != .write) {
                        self.deadlines.arm(slot, .write, now_ms);
                    }
                    // Input that waits is handled meanwhile, its answers queued behind: when
                    // the handler stopped for room (it wrote; a call that wrote nothing waits
                    // for more input or for the client to read, not for another round).
                    if (c.more_input and c.out_start < c.out_end and self.mayReadOn(c)) {
                        switch (self.spillOutput(slot)) {
                            .done => {
                                self.handleInput(slot, now_ms);
                                continue;
                            },
                            .over_limit => return self.closeOverLimit(slot),
                            .pool_spent => {},
                        }
                    }
                    return self.watch(slot, true);
                },
                .failed => return self.close(slot),
                .queued => |progressed| {
                    // Sent with the turn's io_uring_enter; `onSend` serves on.
                    if (progressed or self.deadlines.kindOf(slot) != .write) {
                        self.deadlines.arm(slot, .write, now_ms);
                    }
                    return;
                },
                .sent => {},
            }
            if (c.close_after_flush) return self.finish(slot, now_ms);
            if (c.timer_due) {
                c.timer_due = false;
                self.handleTimer(slot, now_ms);
                continue;
            }
            // Input first: a frame already sent (whole or in part, in the buffer or still in
            // the kernel) is answered before the module hears of the drain, whose goodbye may
            // close the connection. The chaos soak lost resp commands without this.
            if (c.drain_due and !c.more_input and c.in_len == 0 and self.unread(slot) == 0) {
                c.drain_due = false;
                self.handleDrain(slot, now_ms);
                continue;
            }
            if (!c.more_input) break;
            self.handleInput(slot, now_ms);
        } else if (c.more_input) {
            // Out of rounds with work left (a long reply in parts): let other connections
            // have a turn, and come back when the socket takes more.
            self.deadlines.arm(slot, .write, now_ms);
            return self.watch(slot, true);
        }
        self.watch(slot, false);
        if (c.fd == closed) return;
        // A paused connection's write timeout runs from its pause or its last write.
        if (c.read_paused and wrote) self.deadlines.arm(slot, .write, now_ms);
        self.armPhase(slot, now_ms);
    }

    /// The deadline of what the connection waits for now.
    fn armPhase(self: *Connections, slot: u32, now_ms: u64) void {
        const c = &self.slots[slot];
        assert(c.fd != closed);
        assert(!c.lingering);
        if (c.phase == .waiting) {
            // The handler's timer is the deadline of a request it holds (it is armed: see
            // `assertInvariants`); neither idle nor the client's fault.
            return self.deadlines.disarm(slot);
        }
        if (c.read_paused) {
            // Not idle: the client waits for us (and may not be evicted). The module must
            // resume or write within the write timeout, counted from the pause.
            if (self.deadlines.kindOf(slot) != .write) self.deadlines.arm(slot, .write, now_ms);
            return;
        }
        switch (c.phase) {
            .idle => self.deadlines.arm(slot, .idle, now_ms),
            // One deadline for the whole head: bytes that trickle in do not move it.
            .head => if (self.deadlines.kindOf(slot) != .header) {
                self.deadlines.arm(slot, .header, now_ms);
            },
            .body => self.deadlines.arm(slot, .body, now_ms),
            .waiting => unreachable,
        }
    }

    const FlushResult = union(enum) {
        sent,
        /// The socket is full; whether some bytes went out before it filled.
        blocked: bool,
        failed,
        /// With io_uring: a send waits for the turn's io_uring_enter; whether some bytes went
        /// out before.
        queued: bool,
    };

    fn flush(self: *Connections, slot: u32) FlushResult {
        if (self.ring != null) return self.flushRing(slot);
        const c = &self.slots[slot];
        const out = self.outBuf(slot);
        assert(c.out_start <= c.out_end);
        assert(c.out_end <= out.len);
        if (outputWaits(c) and !c.close_after_flush) markOngoing(c);
        var progressed = false;
        // What went past the write buffer was written before the buffer's bytes. Bounded:
        // each send takes bytes off the queue, or the loop ends.
        while (!c.spill.isEmpty()) {
            const front = c.spill.front(&self.pool);
            const n = sys.send(c.fd, front) catch |err| switch (err) {
                error.WouldBlock => {
                    markOngoing(c);
                    return .{ .blocked = progressed };
                },
                error.Interrupted => continue,
                else => return .failed,
            };
            c.spill.advance(&self.pool, n);
            progressed = true;
        }
        while (c.out_start < c.out_end) {
            const n = sys.send(c.fd, out[c.out_start..c.out_end]) catch |err| switch (err) {
                error.WouldBlock => {
                    // A last answer too large for the socket: from here on it goes out in
                    // pieces, and no piece should wait for an acknowledgement.
                    markOngoing(c);
                    return .{ .blocked = progressed };
                },
                error.Interrupted => continue,
                else => return .failed,
            };
            assert(n <= c.out_end - c.out_start);
            c.out_start += @intCast(n);
            progressed = true;
        }
        c.out_start = 0;
        c.out_end = 0;
        return .sent;
    }

    /// `flush` with io_uring: what the last send on the ring did is reported, and while output
    /// waits one send (of the spill's front chunk, or of the write buffer) is queued for the
    /// turn's io_uring_enter (`submitSends`); its completion (`onSend`) serves on.
    fn flushRing(self: *Connections, slot: u32) FlushResult {
        const c = &self.slots[slot];
        assert(c.sending == .no);
        assert(c.out_start <= c.out_end);
        if (c.send_failed) return .failed;
        if (outputWaits(c) and !c.close_after_flush) markOngoing(c);
        const progressed = c.send_progressed;
        c.send_progressed = false;
        if (c.send_blocked) {
            // Full until the ring's poll says otherwise (see `onEvent`).
            markOngoing(c);
            return .{ .blocked = progressed };
        }
        if (outputWaits(c)) {
            c.sending = .queued;
            self.sends.add(slot);
            return .{ .queued = progressed };
        }
        c.out_start = 0;
        c.out_end = 0;
        return .sent;
    }

    /// Queues on the ring the sends of the turn, just before its io_uring_enter: nothing
    /// touches their bytes between here and that system call, which completes them.
    pub fn submitSends(self: *Connections, ring: *ring_mod.Ring) void {
        const n = self.sends.len;
        for (0..n) |i| {
            const slot = self.sends.take(i);
            const c = &self.slots[slot];
            // Closed since (its slot perhaps reused): nothing goes out.
            if (c.fd == closed or c.sending != .queued) continue;
            c.send_spill = !c.spill.isEmpty();
            const bytes = if (c.send_spill)
                c.spill.front(&self.pool)
            else
                self.outBuf(slot)[c.out_start..c.out_end];
            assert(bytes.len > 0);
            ring.send(self.tokenFor(slot, ring_mod.Kind.send), c.fd, bytes) catch {
                // Only a full queue the kernel will not take: the next turn tries again.
                self.sends.add(slot);
                continue;
            };
            c.sending = .submitted;
        }
        self.sends.endPass(n);
    }

    /// A completion of a connection's send: bytes went out, the socket was full (`EAGAIN`),
    /// or the connection failed (`EPIPE`, `ECONNRESET`: closed as a failed `send` is). One
    /// for a connection closed since is ignored: its bytes were read by the io_uring_enter
    /// that submitted it, and nothing else refers to them.
    pub fn onSend(self: *Connections, token: Token, res: i32, now_ms: u64) void {
        const c = self.current(token) orelse return;
        if (c.sending != .submitted) return;
        c.sending = .no;
        if (res > 0) {
            const n: u32 = @intCast(res);
            if (c.send_spill) {
                c.spill.advance(&self.pool, n);
            } else {
                assert(n <= c.out_end - c.out_start);
                c.out_start += n;
            }
            c.send_progressed = true;
        } else if (res < 0) switch (compat.errnoOf(res)) {
            .AGAIN => c.send_blocked = true,
            // Sent again by `serve`.
            .INTR => {},
            else => c.send_failed = true,
        };
        self.serve(token.index, now_ms);
    }

    /// The connection sends something that is not its last answer: its socket options for
    /// that are set, once.
    fn markOngoing(c: *Connection) void {
        if (c.ongoing) return;
        c.ongoing = true;
        listener_mod.beforeOngoingWrite(c.fd, &config.listeners[c.listener_index]);
    }

    /// Switches a connection between reading and waiting to write, only when it changes;
    /// registers it with epoll the first time.
    fn watch(self: *Connections, slot: u32, out: bool) void {
        const c = &self.slots[slot];
        if (c.fd == closed) return;
        // A paused connection waiting for input is watched for nothing (errors still report),
        // except the shutdown of a client whose request its handler holds.
        const read_on: u32 = if (self.mayReadOn(c)) linux.EPOLL.IN | linux.EPOLL.RDHUP else 0;
        const events: u32 = if (out)
            linux.EPOLL.OUT | read_on
        else if (c.read_paused)
            if (c.phase == .waiting and !c.half_closed) linux.EPOLL.RDHUP else 0
        else
            linux.EPOLL.IN | linux.EPOLL.RDHUP;
        if (self.ring) |ring| return self.watchRing(ring, slot, out, events);
        if (c.registered and c.events == events) return;
        const op: u32 = if (c.registered) linux.EPOLL.CTL_MOD else linux.EPOLL.CTL_ADD;
        sys.epollCtl(self.epfd, op, c.fd, events, self.tokenOf(slot)) catch {
            return self.close(slot);
        };
        c.registered = true;
        c.watching_out = out;
        c.events = events;
    }

    /// `watch` with io_uring: the connection's multishot receive runs while it reads, and a
    /// one-shot poll waits for anything else (room to write; a paused client's shutdown).
    fn watchRing(self: *Connections, ring: *ring_mod.Ring, slot: u32, out: bool, events: u32) void {
        const c = &self.slots[slot];
        c.registered = true;
        c.watching_out = out;
        c.events = events;
        self.syncRing(ring, slot);
        if (c.fd == closed) return;
        // Bytes received already are read on the next turn, as epoll would report them.
        if (c.events & linux.EPOLL.IN != 0 and !c.queue.isEmpty()) self.markReady(slot);
    }

    /// Arms or cancels the connection's operations to match what it waits for (`events`).
    fn syncRing(self: *Connections, ring: *ring_mod.Ring, slot: u32) void {
        const c = &self.slots[slot];
        assert(c.fd != closed);
        const wants_input = c.events & linux.EPOLL.IN != 0;
        const reading = wants_input and c.queue.bytes < ring_mod.queue_limit;
        const recv_token = self.tokenFor(slot, ring_mod.Kind.recv);
        // After the end of the stream (or an error) nothing more comes: not armed again.
        const ended = c.queue.eof or c.queue.failed;
        if (reading and c.recv == .idle and !ended and ring.mayReceive()) {
            ring.armRecv(recv_token, c.fd) catch return self.close(slot);
            c.recv = .armed;
        } else if (!reading and c.recv == .armed) {
            // Back-pressure: what was received stays queued, nothing more is.
            ring.cancel(recv_token);
            c.recv = .cancelling;
        }
        // The receive reports the client's shutdown itself while it runs.
        const rdhup: u32 = if (wants_input) linux.EPOLL.RDHUP else 0;
        const mask = c.events & ~(linux.EPOLL.IN | rdhup);
        const poll_token = self.tokenFor(slot, ring_mod.Kind.poll);
        if (c.poll == .armed and mask & ~c.poll_mask != 0) {
            ring.cancel(poll_token);
            c.poll = .cancelling;
        }
        if (mask != 0 and c.poll == .idle) {
            ring.armPoll(poll_token, c.fd, mask) catch return self.close(slot);
            c.poll = .armed;
            c.poll_mask = mask;
        }
    }

    /// Buffers came back after a shortage: the receives left unarmed meanwhile are armed.
    pub fn armWaiting(self: *Connections) void {
        const ring = self.ring orelse return;
        for (self.slots, 0..) |*c, slot| {
            if (c.fd == closed or c.recv != .idle) continue;
            self.syncRing(ring, @intCast(slot));
            if (!ring.mayReceive()) return;
        }
    }

    fn markReady(self: *Connections, slot: u32) void {
        self.ready.add(slot);
    }

    /// Whether a connection has received bytes to read without waiting for the kernel.
    pub fn hasReady(self: *const Connections) bool {
        return self.ready.len > 0;
    }

    /// Reads on the connections whose received bytes wait (`markReady`), and arms again the
    /// receives that ended. One that becomes ready again meanwhile waits for the next turn.
    pub fn runReady(self: *Connections, now_ms: u64) void {
        const ring = self.ring orelse return;
        const n = self.ready.len;
        for (0..n) |i| {
            const slot = self.ready.take(i);
            const c = &self.slots[slot];
            if (c.fd == closed) continue;
            self.syncRing(ring, slot);
            if (c.fd == closed or c.events & linux.EPOLL.IN == 0 or c.queue.isEmpty()) continue;
            self.onEvent(Token.decode(self.tokenOf(slot)), linux.EPOLL.IN, now_ms);
        }
        self.ready.endPass(n);
    }

    /// A completion of a connection's multishot receive: bytes, the end of the stream, an
    /// error, or the end of the receive (no more buffers, or cancelled).
    pub fn onRecv(self: *Connections, token: Token, res: i32, flags: u32, now_ms: u64) void {
        const ring = self.ring.?;
        const c = self.current(token) orelse {
            // For a connection closed since: only its buffer matters.
            if (flags & linux.IORING_CQE_F_BUFFER != 0) ring.put(ring_mod.bufferId(flags));
            return;
        };
        if (!ring_mod.hasMore(flags)) c.recv = .idle;
        if (res > 0) {
            ring.buffers.push(&c.queue, ring_mod.bufferId(flags), @intCast(res));
        } else if (res == 0) {
            c.queue.eof = true;
        } else switch (compat.errnoOf(res)) {
            // Out of buffers: armed again once enough are back (see `Ring.short`).
            .NOBUFS => ring.starve(),
            // Cancelled or interrupted: armed again below if still wanted.
            .CANCELED, .INTR, .AGAIN => {},
            else => c.queue.failed = true,
        }
        const generation = c.generation;
        if (c.events & linux.EPOLL.IN != 0 and !c.queue.isEmpty()) {
            self.onEvent(token, linux.EPOLL.IN, now_ms);
        }
        if (c.fd != closed and c.generation == generation) self.syncRing(ring, token.index);
    }

    /// A completion of a connection's one-shot poll: what it waited for happened (or the
    /// poll was cancelled).
    pub fn onPoll(self: *Connections, token: Token, res: i32, now_ms: u64) void {
        const c = self.current(token) orelse return;
        c.poll = .idle;
        const generation = c.generation;
        const always = linux.EPOLL.ERR | linux.EPOLL.HUP;
        if (res > 0) self.onEvent(token, @as(u32, @intCast(res)) & (c.events | always), now_ms);
        if (c.fd != closed and c.generation == generation) self.syncRing(self.ring.?, token.index);
    }

    /// Reads what the client sent: from the socket, or with io_uring from what its receive
    /// delivered (then the end of the stream, or an error, after the bytes before it). With
    /// nothing received and no receive pending (a connection just accepted with its request,
    /// `deferAccept`), the socket is read directly: no other reader can come first.
    fn readInput(self: *Connections, slot: u32, buf: []u8) sys.Error!usize {
        const c = &self.slots[slot];
        const ring = self.ring orelse return sys.read(c.fd, buf);
        if (c.queue.isEmpty() and c.recv == .idle) return sys.read(c.fd, buf);
        const n = ring.take(&c.queue, buf);
        if (n > 0) return n;
        if (c.queue.failed) return error.ConnectionReset;
        if (c.queue.eof) return 0;
        return error.WouldBlock;
    }

    /// Bytes the client sent that the handler has not seen: in the kernel, or received.
    fn unread(self: *const Connections, slot: u32) usize {
        const c = &self.slots[slot];
        return c.queue.bytes + sys.pendingInput(c.fd);
    }

    /// Ends a closing connection's operations (the kernel's own reference to the socket
    /// would keep it open) and gives its unread buffers back.
    fn releaseRing(self: *Connections, ring: *ring_mod.Ring, slot: u32) void {
        const c = &self.slots[slot];
        if (c.recv == .armed) ring.cancel(self.tokenFor(slot, ring_mod.Kind.recv));
        if (c.poll == .armed) ring.cancel(self.tokenFor(slot, ring_mod.Kind.poll));
        var budget: usize = ring_mod.buffer_count;
        while (budget > 0) : (budget -= 1) {
            const id = ring.buffers.popFront(&c.queue);
            if (id == ring_mod.none) break;
            ring.put(id);
        }
        c.queue = .{};
    }

    /// Closes after the last answer without destroying it: `close()` with unread input makes
    /// the kernel reset the connection, and a reset discards what the client has not read
    /// yet (the 400 it was just sent, say). So when input is left, or more waits in the
    /// kernel, our side is shut down and the client's bytes are read and dropped until it
    /// closes or the linger deadline passes (nginx's lingering close).
    ///
    /// A refusal (an error status, a frame too large) always lingers, and so does a close
    /// that may come before the client is done sending (`Progress.linger`: a stream
    /// module's protocol error found in a command's header, say). Otherwise whether more
    /// waits in the kernel is asked (FIONREAD) unless the answer was a success
    /// to a request read whole by a read that emptied the socket: a client that asked for
    /// `Connection: close` has no reason to send more, and that system call is a tenth of a
    /// one-request connection's cost. nginx takes the same shortcut (it lingers only when it
    /// knows input is left); the window is a pipelined request that arrives after our last
    /// read, which a reset may then cut off.
    fn finish(self: *Connections, slot: u32, now_ms: u64) void {
        const c = &self.slots[slot];
        assert(c.fd != closed);
        assert(c.close_after_flush);
        // The last answer went out whole before the connection lingers.
        assert(c.out_start == c.out_end and c.spill.isEmpty());
        assert(!c.lingering);
        // A refusal always lingers: its client is likely still sending what was refused (a
        // body, a frame too large), and a close between two of its writes would reset it.
        if (c.in_len == 0 and !c.refused) {
            if (c.drained) return self.close(slot);
            if (self.unread(slot) == 0) return self.close(slot);
        }
        sys.shutdownWrite(c.fd);
        self.deadlines.disarmRequest(slot);
        c.lingering = true;
        c.in_len = 0;
        c.close_after_flush = false;
        c.more_input = false;
        c.read_paused = false;
        self.timers.cancel(slot);
        self.deadlines.arm(slot, .linger, now_ms);
        assert(!self.timers.isArmed(slot));
        self.watch(slot, false);
    }

    /// Reads and drops what a closing connection's client still sends.
    fn discardInput(self: *Connections, slot: u32) void {
        const c = &self.slots[slot];
        assert(c.fd != closed);
        assert(c.lingering);
        const buf = self.inBuf(slot);
        // Bounded: a client that sends faster than we read is cut off at the deadline.
        var reads: usize = 0;
        while (reads < 4) : (reads += 1) {
            const n = self.readInput(slot, buf) catch |err| switch (err) {
                error.WouldBlock => return,
                error.Interrupted => continue,
                else => return self.close(slot),
            };
            if (n == 0) return self.close(slot);
        }
    }

    /// Acts on every deadline that has passed.
    pub fn expire(self: *Connections, now_ms: u64) void {
        // Bounded by the table: each expiry disarms one slot's deadline.
        var budget: usize = self.slots.len + 1;
        while (budget > 0) : (budget -= 1) {
            const due = self.deadlines.popExpired(now_ms) orelse break;
            const c = &self.slots[due.slot];
            assert(c.fd != closed);
            switch (due.kind) {
                .header => {
                    self.countTimeout(due.slot, .header);
                    self.answerTimeout(due.slot, now_ms);
                },
                .body => {
                    self.countTimeout(due.slot, .body);
                    self.answerTimeout(due.slot, now_ms);
                },
                .idle => {
                    self.countTimeout(due.slot, .idle);
                    self.close(due.slot);
                },
                .write => {
                    self.countTimeout(due.slot, .write);
                    self.close(due.slot);
                },
                .linger => self.close(due.slot),
                .request => {
                    self.countTimeout(due.slot, .request);
                    // A client that neither finished its request nor reads our output.
                    if (c.watching_out or c.out_end != 0 or c.sending != .no) {
                        self.close(due.slot);
                    } else {
                        self.answerTimeout(due.slot, now_ms);
                    }
                },
            }
        }
        budget = self.slots.len + 1;
        while (budget > 0) : (budget -= 1) {
            const due = self.timers.popExpired(now_ms) orelse return;
            const c = &self.slots[due.slot];
            // Closing cancels a slot's timer; the generation guards the slot's next life.
            if (c.fd == closed or c.generation != due.generation) continue;
            self.fireTimer(due.slot, now_ms);
        }
    }

    /// A connection's application timer fired. With output pending the callback waits for
    /// it to be sent; a callback that writes nothing and changes nothing leaves the deadline
    /// alone (a timer is not traffic).
    fn fireTimer(self: *Connections, slot: u32, now_ms: u64) void {
        const c = &self.slots[slot];
        assert(c.fd != closed);
        if (c.lingering) return;
        if (c.watching_out or c.sending != .no) {
            c.timer_due = true;
            return;
        }
        const paused = c.read_paused;
        self.handleTimer(slot, now_ms);
        const quiet = !outputWaits(c) and !c.close_after_flush and !c.more_input and
            c.read_paused == paused;
        if (!quiet) self.serve(slot, now_ms);
    }

    /// A request that did not arrive in time: its handler may answer (HTTP's 408), then
    /// the connection closes.
    fn answerTimeout(self: *Connections, slot: u32, now_ms: u64) void {
        const c = &self.slots[slot];
        assert(c.fd != closed);
        assert(!c.lingering);
        assert(!c.watching_out and c.out_end == 0);
        const ctx = self.context(slot);
        var out = self.output(slot);
        handlers.onTimeout(&ctx, &c.state, &out);
        self.countTimeoutAnswer(slot, out.len);
        c.out_start = 0;
        c.out_end = @intCast(out.len);
        c.close_after_flush = true;
        c.more_input = false;
        c.refused = true;
        self.serve(slot, now_ms);
    }

    /// The worker stops: handlers learn it (`Context.draining`), and requests that wait for
    /// their handler's timer are run at once, so that they can be answered now rather than
    /// hold the drain up (a long poll ends early; its client asks the next process).
    ///
    /// Handlers that want it (a stream module's `draining`) hear of the drain on each of
    /// their connections, now or, where output waits, once it is sent: they may tell their
    /// client goodbye, or close, rather than be cut at the drain timeout.
    pub fn beginDrain(self: *Connections, now_ms: u64) void {
        self.draining = true;
        for (self.slots, 0..) |*c, i| {
            if (c.fd == closed) continue;
            if (c.phase == .waiting) self.timers.arm(@intCast(i), c.generation, now_ms);
            if (c.lingering or c.close_after_flush) continue;
            if (!handlers.wantsDrain(c.listener_index)) continue;
            c.drain_due = true;
            // Otherwise `serve` runs it once the output is sent.
            if (!outputWaits(c) and !c.watching_out) self.serve(@intCast(i), now_ms);
        }
    }

    /// Runs, on the loop's next turn, the waiting requests their handlers woke (an HTTP
    /// module's `http.wake`) since the last call. A waiter whose connection closed, or no
    /// longer waits, is ignored.
    pub fn applyWakes(self: *Connections, now_ms: u64) void {
        // Bounded: each woken waiter is taken off the handlers' queue once.
        var budget: usize = self.slots.len + 1;
        while (budget > 0) : (budget -= 1) {
            const w = handlers.takeWake() orelse return;
            if (w.slot >= self.slots.len) continue;
            const c = &self.slots[w.slot];
            if (c.fd == closed or c.generation != w.generation or c.phase != .waiting) continue;
            self.timers.arm(w.slot, c.generation, now_ms);
        }
    }

    /// Closes the connections of listeners with a request notion that have nothing in
    /// flight and no unread input in the kernel: a drain's idle sweep. A connection whose
    /// next request already arrived is left to be served (with `Connection: close`).
    pub fn closeIdle(self: *Connections) void {
        for (self.slots, 0..) |*c, i| {
            if (c.fd == closed or c.lingering) continue;
            if (!handlers.hasRequests(c.listener_index)) continue;
            if (c.phase != .idle or c.in_len != 0 or outputWaits(c)) continue;
            if (self.unread(@intCast(i)) != 0) continue;
            self.close(@intCast(i));
        }
    }

    /// The table's invariants, checked after every turn of the loop in Debug builds: every
    /// slot is either free (closed, no deadline) or open, never both; an open connection has
    /// exactly one deadline unless it is between a read and its answer.
    pub fn assertInvariants(self: *const Connections) void {
        var open_slots: u32 = 0;
        var spilled: u64 = 0;
        for (self.slots, 0..) |c, i| {
            if (c.fd == closed) {
                assert(self.deadlines.kindOf(@intCast(i)) == null);
                assert(self.deadlines.sinceMs(@intCast(i), .request) == null);
                assert(!self.timers.isArmed(@intCast(i)));
                assert(c.spill.isEmpty());
                continue;
            }
            spilled += c.spill.len;
            assert(c.spill.len <= config.output_limit_bytes);
            open_slots += 1;
            assert(c.in_len <= config.read_buffer_bytes);
            assert(c.out_start <= c.out_end and c.out_end <= config.write_buffer_bytes);
            assert(!c.lingering or self.deadlines.kindOf(@intCast(i)) == .linger);
            assert(!c.lingering or self.deadlines.sinceMs(@intCast(i), .request) == null);
            assert(!c.watching_out or self.deadlines.kindOf(@intCast(i)) == .write);
            // A request its handler holds has the handler's timer for a deadline.
            const held = c.phase == .waiting and !c.watching_out and !c.lingering;
            assert(!held or (self.timers.isArmed(@intCast(i)) and c.read_paused));
            assert(held or self.deadlines.kindOf(@intCast(i)) != null);
        }
        assert(open_slots + self.free_len == self.slots.len);
        assert(self.timers.isConsistent());
        // Every chunk in use holds some waiting byte of one connection.
        const used: u64 = self.pool.capacity() - self.pool.free_len;
        assert(spilled <= used * output_pool.chunk_bytes);
        assert(used <= spilled / output_pool.chunk_bytes + 2 * open_slots);
        for (self.free[0..self.free_len]) |slot| assert(self.slots[slot].fd == closed);
    }

    /// The counters of the listener of the connection in `slot` (this worker's metrics cell).
    fn countersOf(self: *const Connections, slot: u32) *metrics.Listener {
        return metrics.at(self.slots[slot].listener_index);
    }

    /// An HTTP handler answered a deadline (408): a response by status, for the metrics.
    fn countTimeoutAnswer(self: *const Connections, slot: u32, answer_len: usize) void {
        const listener_index = self.slots[slot].listener_index;
        if (answer_len > 0 and isHttp(listener_index)) metrics.status(listener_index, 408);
    }

    fn countTimeout(self: *const Connections, slot: u32, kind: metrics.TimeoutKind) void {
        metrics.add(&self.countersOf(slot).timeouts[compat.enumIndex(kind)], 1);
    }

    pub fn closeAll(self: *Connections) void {
        for (self.slots, 0..) |c, i| {
            if (c.fd != closed) self.close(@intCast(i));
        }
    }

    pub fn close(self: *Connections, slot: u32) void {
        const c = &self.slots[slot];
        assert(c.fd != closed);
        assert(self.free_len < self.slots.len);
        const ctx = self.context(slot);
        handlers.onClose(&ctx, &c.state);
        metrics.sub(&metrics.at(c.listener_index).open, 1);
        if (self.ring) |ring| self.releaseRing(ring, slot);
        // Closing the descriptor also takes it out of the epoll set.
        sys.close(c.fd);
        c.fd = closed;
        c.state = .none;
        c.spill.clear(&self.pool);
        self.deadlines.disarm(slot);
        self.deadlines.disarmRequest(slot);
        self.timers.cancel(slot);
        self.free[self.free_len] = slot;
        self.free_len += 1;
        assert(self.deadlines.kindOf(slot) == null);
        assert(!self.timers.isArmed(slot));
    }
};

/// Whether the listener answers HTTP (the built-in handler or an HTTP module): it has routes
/// for the metrics.
fn isHttp(listener_index: u16) bool {
    return config.listeners[listener_index].routes.len > 0;
}

test {
    _ = timers_mod;
    _ = output_pool;
    _ = ring_mod;
}

test "tokens carry kind, generation and slot through epoll's 64 bits" {
    const t: Token = .{ .kind = connection_kind, .generation = 0xabcdef, .index = 77 };
    const back = Token.decode(t.encode());
    try std.testing.expectEqual(t.kind, back.kind);
    try std.testing.expectEqual(t.generation, back.generation);
    try std.testing.expectEqual(t.index, back.index);
}
