//! The upstreams of one worker: per upstream, a pool of non-blocking, kept-alive connections
//! driven by the worker's epoll loop, and a call table reserved at start.
//!
//! A call is a request an app module sends and the reply it waits for. Its bytes go into one
//! of the table's entries (nothing is allocated per call); the entry joins the in-order queue
//! of a connection (an idle one first, then a new one, then the least busy one, pipelining
//! where the framing allows) or, when every connection is full, the upstream's bounded queue;
//! past that the call fails at once (`busy`). The reply, cut by the framing, is copied into
//! the same entry (the request is sent by then) and the HTTP request that made the call is
//! woken (`wake.zig`); its route reads the reply, and the entry is free again on the loop's
//! next turn.
//!
//! Failure is an answer, never a hang. A connect has `connect_timeout_ms`, a call
//! `response_timeout_ms` from when it was made; both are deadlines the worker's loop waits
//! for (`nextMs`, `expire`), like its connections' deadlines. A connection that fails, times
//! out or sends bytes that do not frame is discarded with every call on it (the replies that
//! would follow cannot be matched to their calls any more). A server that refuses or times
//! out is ejected for `eject_ms` while another server of the upstream is not (as nginx never
//! marks an upstream's only server down): calls go round-robin over the others, and the
//! server gets calls again once its time is up (passive health). Nothing needs a restart.
const std = @import("std");
const config = @import("../config.zig");
const compat = @import("../compat.zig");
const sys = @import("../net/sys.zig");
const address = @import("../address.zig");
const resolve = @import("../net/resolve.zig");
const servers_mod = @import("../net/servers.zig");
const metrics = @import("../metrics/cell.zig");
const log = @import("../log.zig");
const api = @import("../handlers/api.zig");
const wake = @import("../handlers/app/wake.zig");
const app_peer = @import("../handlers/app/peer.zig");
const connections_mod = @import("../worker/connections.zig");
const framing = @import("framing.zig");
const linux = std.os.linux;
const assert = std.debug.assert;

pub const Waiter = api.Waiter;

/// The epoll token kind of upstream connections (the worker's `Kind.upstream`).
pub const token_kind: u8 = 6;

/// Why a call ended without a reply.
pub const Failure = enum {
    /// No connection could be made, or it closed before the reply: 503.
    down,
    /// No reply within `response_timeout_ms`: 504.
    timeout,
    /// The reply did not frame (or was larger than `max_reply_bytes`): 502.
    bad_reply,
};

pub const StartError = error{ UpstreamBusy, UpstreamDown, UpstreamRequestTooLarge };

const none: u32 = std.math.maxInt(u32);

const CallState = enum(u8) { free, queued, sent, done, taken };

/// Whom a datagram module's call answers: the sender of the datagram that made it.
pub const DatagramOrigin = struct {
    listener_index: u16,
    /// The listener's socket, which the answer is sent from.
    fd: i32,
    peer: app_peer.Peer,
};

const Call = struct {
    state: CallState = .free,
    failure: ?Failure = null,
    /// No request waits for it any more (its HTTP connection closed): freed once it ends.
    orphan: bool = false,
    /// The connection the call wakes once over (a held HTTP request, a stream connection);
    /// a datagram's call has none (slot `none`) and is handed out by `takeDatagramReply`.
    waiter: Waiter = .{ .slot = none, .generation = 0 },
    datagram: ?DatagramOrigin = null,
    /// The module's own word for what the call is for, given back with its reply.
    context: u64 = 0,
    deadline_ms: u64 = 0,
    /// Bytes of the request, then of the reply, in the entry's buffer.
    len: u32 = 0,
    /// The next call of the list this one is on (free, queue, connection, taken).
    next: u32 = none,
};

const Phase = enum { closed, connecting, ready };

const Conn = struct {
    fd: sys.Fd = -1,
    phase: Phase = .closed,
    /// Bumped at each close, so that an event of an earlier descriptor is dropped.
    generation: u24 = 0,
    server: u16 = 0,
    connect_deadline_ms: u64 = 0,
    /// The calls on this connection, oldest first: their replies come in this order.
    head: u32 = none,
    tail: u32 = none,
    count: u32 = 0,
    /// The first call not wholly written yet, and how much of it was.
    unsent: u32 = none,
    unsent_offset: u32 = 0,
    /// Bytes read and not yet delivered.
    in_len: u32 = 0,
    watching_out: bool = false,
};

/// A list of calls linked through `Call.next`.
const List = struct {
    head: u32 = none,
    tail: u32 = none,
    len: u32 = 0,
};

const Pool = struct {
    index: u16,
    spec: *const config.Upstream,
    calls: []Call,
    /// One buffer of `max_reply_bytes` per call, then one per connection (its input).
    buffers: []u8,
    conns: []Conn,
    free: List = .{},
    queue: List = .{},
    taken: List = .{},
    /// Datagram calls over (answered or failed), for `takeDatagramReply`.
    answered: List = .{},
    /// The spec's servers, copied at start (what a test points at its own listener).
    servers: []config.Server,
    /// Round-robin over them, and which are left out for now.
    rotation: servers_mod.Servers,

    fn callBuffer(self: *const Pool, c: u32) []u8 {
        const size: usize = self.spec.max_reply_bytes;
        return self.buffers[@as(usize, c) * size ..][0..size];
    }

    fn input(self: *const Pool, i: usize) []u8 {
        const size: usize = self.spec.max_reply_bytes;
        return self.buffers[(self.calls.len + i) * size ..][0..size];
    }
};

/// Calls per upstream: every connection's pipeline, and the queue.
fn callCount(spec: *const config.Upstream) usize {
    return @as(usize, spec.connections_per_worker) * spec.pipeline + spec.max_queued_calls;
}

var pools: [config.upstreams.len]Pool = undefined;
var ready = false;
var epoll_fd: sys.Fd = -1;
/// Per HTTP connection slot: the call its held request made (`Ref.encode`), or `none`.
var by_slot: []u32 = &.{};
/// Entries that datagram calls hold (from `beginFor` to `release`).
var datagram_calls: u32 = 0;

/// A call of an upstream, as the HTTP glue names it.
pub const Ref = struct {
    upstream: u16,
    call: u32,

    fn encode(self: Ref) u32 {
        return (@as(u32, self.upstream) << 24) | self.call;
    }

    fn decode(value: u32) Ref {
        return .{ .upstream = @intCast(value >> 24), .call = value & 0xff_ffff };
    }
};

/// Reserves every call table, buffer and connection of this worker (virtual memory, backed
/// once used). Called once per worker before it serves; nothing is allocated afterwards.
pub fn init(allocator: std.mem.Allocator, epfd: sys.Fd) !void {
    if (config.upstreams.len == 0) return;
    epoll_fd = epfd;
    const slots = try compat.mapMemory(@as(usize, config.max_connections) * @sizeOf(u32));
    by_slot = @as([*]u32, @ptrCast(@alignCast(slots.ptr)))[0..config.max_connections];
    @memset(by_slot, none);
    for (&pools, &config.upstreams, 0..) |*p, *spec, u| {
        const calls = try allocator.alloc(Call, callCount(spec));
        @memset(calls, .{});
        const conns = try allocator.alloc(Conn, spec.connections_per_worker);
        @memset(conns, .{});
        const servers = try allocator.alloc(config.Server, spec.servers.len);
        @memcpy(servers, spec.servers);
        for (servers, 0..) |*s, i| {
            // A name as resolved by the supervisor: the copy's `host` is cleared once it has
            // an address, so a server still named has none (see `open`).
            const resolved = resolve.current.get(u, i) orelse continue;
            s.address = resolved;
            s.host = "";
        }
        const buffer_count = calls.len + conns.len;
        p.* = .{
            .index = @intCast(u),
            .spec = spec,
            .calls = calls,
            .buffers = try compat.mapMemory(buffer_count * @as(usize, spec.max_reply_bytes)),
            .conns = conns,
            .servers = servers,
            .rotation = servers_mod.Servers.roundRobin(servers.len, spec.eject_ms),
        };
        for (0..calls.len) |c| push(p, &p.free, @intCast(c));
    }
    ready = true;
}

/// Closes every upstream connection (the worker is exiting).
pub fn deinit() void {
    if (!ready) return;
    for (&pools) |*p| {
        for (p.conns) |*conn| if (conn.phase != .closed) sys.close(conn.fd);
    }
    ready = false;
}

fn push(p: *Pool, list: *List, c: u32) void {
    p.calls[c].next = none;
    if (list.tail == none) list.head = c else p.calls[list.tail].next = c;
    list.tail = c;
    list.len += 1;
}

fn pop(p: *Pool, list: *List) ?u32 {
    const c = list.head;
    if (c == none) return null;
    list.head = p.calls[c].next;
    if (list.head == none) list.tail = none;
    list.len -= 1;
    p.calls[c].next = none;
    return c;
}

fn release(p: *Pool, c: u32) void {
    assert(p.calls[c].state != .free);
    if (p.calls[c].datagram != null) datagram_calls -= 1;
    p.calls[c] = .{};
    push(p, &p.free, c);
}

/// The call the held request `waiter` made, if it made one that is not over.
pub fn find(waiter: Waiter) ?Ref {
    if (!ready or waiter.slot >= by_slot.len) return null;
    const value = by_slot[waiter.slot];
    if (value == none) return null;
    const ref = Ref.decode(value);
    const call = &pools[ref.upstream].calls[ref.call];
    const same = call.waiter.slot == waiter.slot and call.waiter.generation == waiter.generation;
    if (call.state == .free or call.state == .taken or !same) return null;
    return ref;
}

/// Takes a free entry of `upstream`'s call table for the request `waiter` names; the caller
/// writes the request into `buffer(ref)` and sends it with `send`.
pub fn begin(upstream: u16, waiter: Waiter) StartError!Ref {
    return beginFor(upstream, .{ .waiter = waiter });
}

/// Whom a call answers, and the module's word for it.
pub const Origin = struct {
    waiter: Waiter = .{ .slot = none, .generation = 0 },
    datagram: ?DatagramOrigin = null,
    context: u64 = 0,
};

/// `begin` for any origin: a connection to wake (`waiter`), or a datagram's sender.
pub fn beginFor(upstream: u16, origin: Origin) StartError!Ref {
    // Outside a worker (a module's tests) no upstream is reachable.
    if (!ready) return error.UpstreamDown;
    assert((origin.datagram == null) != (origin.waiter.slot == none));
    const p = &pools[upstream];
    const c = pop(p, &p.free) orelse {
        metrics.add(&metrics.own.upstream_unsent[upstream].busy, 1);
        return error.UpstreamBusy;
    };
    p.calls[c] = .{
        .state = .queued,
        .waiter = origin.waiter,
        .datagram = origin.datagram,
        .context = origin.context,
    };
    if (origin.datagram != null) datagram_calls += 1;
    return .{ .upstream = upstream, .call = c };
}

/// Gives back an entry `begin` took whose request was never sent.
pub fn cancel(ref: Ref) void {
    const p = &pools[ref.upstream];
    assert(p.calls[ref.call].state == .queued);
    release(p, ref.call);
}

pub fn buffer(ref: Ref) []u8 {
    return pools[ref.upstream].callBuffer(ref.call);
}

/// Sends the `len` bytes written into the call's buffer, or queues them; on an error the
/// entry is free again.
pub fn send(ref: Ref, len: usize, now_ms: u64) StartError!void {
    const p = &pools[ref.upstream];
    const call = &p.calls[ref.call];
    assert(call.state == .queued and len <= p.spec.max_reply_bytes);
    call.len = @intCast(len);
    call.deadline_ms = now_ms + p.spec.response_timeout_ms;
    if (pickConn(p, now_ms)) |i| {
        assign(p, i, ref.call);
    } else if (p.queue.len < p.spec.max_queued_calls and anyOpen(p)) {
        push(p, &p.queue, ref.call);
    } else {
        const down = !anyOpen(p);
        release(p, ref.call);
        const unsent = &metrics.own.upstream_unsent[p.index];
        metrics.add(if (down) &unsent.down else &unsent.busy, 1);
        return if (down) error.UpstreamDown else error.UpstreamBusy;
    }
    if (call.waiter.slot < by_slot.len) by_slot[call.waiter.slot] = ref.encode();
}

/// What became of a call: still waiting (until its deadline), or its reply or failure. A
/// reply is taken: its bytes stay valid until the loop's next turn, and the call is over.
pub const Status = union(enum) {
    pending_until_ms: u64,
    reply: []const u8,
    failed: Failure,
};

pub fn status(ref: Ref) Status {
    const p = &pools[ref.upstream];
    const call = &p.calls[ref.call];
    switch (call.state) {
        .queued, .sent => return .{ .pending_until_ms = call.deadline_ms },
        .done => {},
        .free, .taken => unreachable,
    }
    call.state = .taken;
    if (call.waiter.slot < by_slot.len) by_slot[call.waiter.slot] = none;
    push(p, &p.taken, ref.call);
    if (call.failure) |f| return .{ .failed = f };
    return .{ .reply = p.callBuffer(ref.call)[0..call.len] };
}

/// The reply of the call the stream connection `waiter` made, once it is over; null while
/// it is pending. The reply's bytes stay valid until the loop's next turn.
pub fn takeStreamReply(waiter: Waiter) ?api.StreamReply {
    // A connection marked as waiting always has its call (it is freed only at its close).
    const ref = find(waiter) orelse return .{ .context = 0, .reply = error.UpstreamDown };
    const word = pools[ref.upstream].calls[ref.call].context;
    return switch (status(ref)) {
        .pending_until_ms => null,
        .reply => |bytes| .{ .context = word, .reply = bytes },
        .failed => |failure| .{ .context = word, .reply = failureError(failure) },
    };
}

/// The error a module meets for a failure.
pub fn failureError(failure: Failure) api.UpstreamError {
    return switch (failure) {
        .down => error.UpstreamDown,
        .timeout => error.UpstreamTimeout,
        .bad_reply => error.UpstreamBadReply,
    };
}

/// A datagram module's call that is over: whom it answers, and its reply or failure.
pub const DatagramReply = struct {
    upstream: u16,
    origin: DatagramOrigin,
    context: u64,
    /// The reply's bytes (valid until the loop's next turn) or why there is none.
    status: Status,
};

/// The next datagram call that is over, for the worker's loop to hand to its module; the
/// entry is free again on the loop's next turn.
pub fn takeDatagramReply() ?DatagramReply {
    if (!ready) return null;
    for (&pools) |*p| {
        const c = pop(p, &p.answered) orelse continue;
        const call = &p.calls[c];
        assert(call.state == .done);
        call.state = .taken;
        push(p, &p.taken, c);
        return .{
            .upstream = p.index,
            .origin = call.datagram.?,
            .context = call.context,
            .status = if (call.failure) |f|
                .{ .failed = f }
            else
                .{ .reply = p.callBuffer(c)[0..call.len] },
        };
    }
    return null;
}

/// Datagram calls not over yet: a draining worker waits for them (up to its drain timeout),
/// as it waits for its connections.
pub fn datagramsInFlight() u32 {
    return if (ready) datagram_calls else 0;
}

/// The start of a loop turn: the replies routes took on the previous one are let go.
pub fn beginTurn() void {
    if (!ready) return;
    for (&pools) |*p| {
        while (pop(p, &p.taken)) |c| release(p, c);
    }
}

/// An HTTP connection closed: the call its request made, if any, is no one's any more.
pub fn forgetSlot(slot: u32) void {
    if (!ready or slot >= by_slot.len) return;
    const value = by_slot[slot];
    if (value == none) return;
    by_slot[slot] = none;
    const ref = Ref.decode(value);
    const p = &pools[ref.upstream];
    const call = &p.calls[ref.call];
    if (call.waiter.slot != slot) return;
    switch (call.state) {
        .done => release(p, ref.call),
        .queued, .sent => call.orphan = true,
        .free, .taken => {},
    }
}

/// Whether the upstream has a connection open or opening: without one, a queued call would
/// wait for nothing.
fn anyOpen(p: *const Pool) bool {
    for (p.conns) |*conn| if (conn.phase != .closed) return true;
    return false;
}

/// The connection a new call goes to: an idle one, else a new one, else the least busy one
/// with room in its pipeline; null when all are full (or none could be opened).
fn pickConn(p: *Pool, now_ms: u64) ?usize {
    var closed: ?usize = null;
    var least: ?usize = null;
    for (p.conns, 0..) |*conn, i| {
        switch (conn.phase) {
            .closed => if (closed == null) {
                closed = i;
            },
            .ready => if (conn.count == 0) return i,
            .connecting => {},
        }
        if (conn.phase == .closed) continue;
        const room = conn.count < p.spec.pipeline and
            (conn.count == 0 or framing.pipelines(p.spec.framing));
        if (room and (least == null or conn.count < p.conns[least.?].count)) least = i;
    }
    if (closed) |i| {
        if (open(p, i, now_ms)) return i;
    }
    return least;
}

/// The next server for a new connection: round-robin over those not ejected (when all are,
/// the one whose ejection ends first).
fn pickServer(p: *Pool, now_ms: u64) u16 {
    // Null only for a server every try has had or a health check holds down: neither here.
    return p.rotation.pick(now_ms, 0).?;
}

/// Leaves a server out for `eject_ms`, unless it is the only one of its upstream not left out.
fn eject(p: *Pool, server: u16, now_ms: u64, why: []const u8) void {
    if (!p.rotation.eject(server, now_ms)) return;
    const health = metrics.upstreamServer(p.index, server);
    metrics.add(&health.ejections, 1);
    metrics.set(&health.ejected_until_ms, p.rotation.ejected_until_ms[server]);
    log.warn("upstream {s}: server {d} {s}; left out for {d} ms", .{
        p.spec.name, server, why, p.spec.eject_ms,
    });
}

fn token(p: *const Pool, i: usize) u64 {
    const conn = &p.conns[i];
    return (connections_mod.Token{
        .kind = token_kind,
        .generation = conn.generation,
        .index = (@as(u32, p.index) << 16) | @as(u32, @intCast(i)),
    }).encode();
}

/// Starts a non-blocking connect; false when it failed at once (the server is down).
fn open(p: *Pool, i: usize, now_ms: u64) bool {
    const conn = &p.conns[i];
    assert(conn.phase == .closed and conn.count == 0);
    const server_index = pickServer(p, now_ms);
    const server = p.servers[server_index];
    // A host name without an address (never resolved: a worker started without its
    // supervisor's table) is a server that cannot be reached.
    if (server.host.len > 0) return false;
    const family: u32 = if (server.address.isIp6()) linux.AF.INET6 else linux.AF.INET;
    const flags: u32 = linux.SOCK.STREAM | linux.SOCK.NONBLOCK | linux.SOCK.CLOEXEC;
    const fd = sys.socket(family, flags, 0) catch return false;
    // Requests are small and each waits for its reply: no Nagle delay.
    sys.setsockoptInt(fd, linux.IPPROTO.TCP, linux.TCP.NODELAY, 1) catch {};
    const sa = address.SockAddr.init(server.address, server.port);
    const rc = compat.errno(linux.connect(fd, sa.ptr(), sa.len));
    if (rc != .SUCCESS and rc != .INPROGRESS) {
        sys.close(fd);
        eject(p, server_index, now_ms, "refused a connection");
        return false;
    }
    const generation = conn.generation;
    conn.* = .{
        .fd = fd,
        .phase = if (rc == .SUCCESS) .ready else .connecting,
        .generation = generation,
        .server = server_index,
        .connect_deadline_ms = now_ms + p.spec.connect_timeout_ms,
        .watching_out = true,
    };
    const events = linux.EPOLL.IN | linux.EPOLL.OUT | linux.EPOLL.RDHUP;
    sys.epollCtl(epoll_fd, linux.EPOLL.CTL_ADD, fd, events, token(p, i)) catch {
        sys.close(fd);
        conn.phase = .closed;
        return false;
    };
    return true;
}

/// Puts a call on connection `i`, and writes it when the connection is ready.
fn assign(p: *Pool, i: usize, c: u32) void {
    const conn = &p.conns[i];
    assert(conn.phase != .closed);
    p.calls[c].state = .sent;
    p.calls[c].next = none;
    metrics.add(&metrics.upstreamServer(p.index, conn.server).calls, 1);
    if (conn.tail == none) conn.head = c else p.calls[conn.tail].next = c;
    conn.tail = c;
    conn.count += 1;
    if (conn.unsent == none) {
        conn.unsent = c;
        conn.unsent_offset = 0;
    }
    if (conn.phase == .ready) flush(p, i);
}

/// Writes the connection's unsent calls, in order, until the kernel takes no more.
fn flush(p: *Pool, i: usize) void {
    const conn = &p.conns[i];
    assert(conn.phase == .ready);
    // Bounded: each pass writes a whole call or stops.
    var passes: u32 = 0;
    while (conn.unsent != none and passes <= conn.count) : (passes += 1) {
        const call = &p.calls[conn.unsent];
        const bytes = p.callBuffer(conn.unsent)[conn.unsent_offset..call.len];
        const n = sys.sendNow(conn.fd, bytes) catch |err| switch (err) {
            error.WouldBlock => break,
            error.Interrupted => continue,
            else => return discard(p, i, .down),
        };
        conn.unsent_offset += @intCast(n);
        if (conn.unsent_offset < call.len) break;
        conn.unsent = call.next;
        conn.unsent_offset = 0;
    }
    watchOut(p, i, conn.unsent != none);
}

fn watchOut(p: *Pool, i: usize, want: bool) void {
    const conn = &p.conns[i];
    if (conn.watching_out == want) return;
    var events: u32 = linux.EPOLL.IN | linux.EPOLL.RDHUP;
    if (want) events |= linux.EPOLL.OUT;
    sys.epollCtl(epoll_fd, linux.EPOLL.CTL_MOD, conn.fd, events, token(p, i)) catch {
        return discard(p, i, .down);
    };
    conn.watching_out = want;
}

/// Ends a call: its request is woken (or, when no one waits for it, it is freed).
fn finish(p: *Pool, c: u32, failure: ?Failure) void {
    const call = &p.calls[c];
    assert(call.state == .queued or call.state == .sent);
    if (call.orphan) return release(p, c);
    call.state = .done;
    call.failure = failure;
    if (failure != null) call.len = 0;
    if (call.datagram != null) return push(p, &p.answered, c);
    wake.wake(call.waiter);
}

/// Closes connection `i`, ending every call on it with `failure`; the queued calls then go
/// to the other connections, or fail when none is open.
fn discard(p: *Pool, i: usize, failure: Failure) void {
    const conn = &p.conns[i];
    assert(conn.phase != .closed);
    _ = linux.epoll_ctl(epoll_fd, linux.EPOLL.CTL_DEL, conn.fd, null);
    sys.close(conn.fd);
    const failures = &metrics.upstreamServer(p.index, conn.server).failures;
    var c = conn.head;
    while (c != none) {
        const next = p.calls[c].next;
        metrics.add(&failures[compat.enumIndex(failure)], 1);
        finish(p, c, failure);
        c = next;
    }
    const generation = conn.generation +% 1;
    conn.* = .{ .generation = generation };
}

/// An event of upstream connection `t` (see `token`).
pub fn onEvent(t: connections_mod.Token, events: u32, now_ms: u64) void {
    if (!ready) return;
    const u = t.index >> 16;
    if (u >= pools.len) return;
    const p = &pools[u];
    const i: usize = t.index & 0xffff;
    if (i >= p.conns.len) return;
    const conn = &p.conns[i];
    if (conn.phase == .closed or conn.generation != t.generation) return;
    if (conn.phase == .connecting) {
        const failed = sys.getsockoptInt(conn.fd, linux.SOL.SOCKET, linux.SO.ERROR) catch 1;
        if (failed != 0) {
            eject(p, conn.server, now_ms, "refused a connection");
            discard(p, i, .down);
            return pumpQueue(p, now_ms);
        }
        conn.phase = .ready;
        p.rotation.restore(conn.server);
        metrics.set(&metrics.upstreamServer(p.index, conn.server).ejected_until_ms, 0);
        flush(p, i);
        if (conn.phase == .closed) return pumpQueue(p, now_ms);
    }
    if (events & linux.EPOLL.OUT != 0 and conn.phase == .ready) flush(p, i);
    const readable = linux.EPOLL.IN | linux.EPOLL.HUP | linux.EPOLL.ERR | linux.EPOLL.RDHUP;
    if (events & readable != 0 and conn.phase == .ready) readReplies(p, i);
    pumpQueue(p, now_ms);
}

/// Reads what the server sent and delivers every whole reply, oldest call first.
fn readReplies(p: *Pool, i: usize) void {
    const conn = &p.conns[i];
    const in = p.input(i);
    // Bounded: a few reads per event keep the loop fair to the worker's other connections.
    for (0..4) |_| {
        if (conn.in_len == in.len) return discard(p, i, .bad_reply);
        const n = sys.read(conn.fd, in[conn.in_len..]) catch |err| switch (err) {
            error.WouldBlock => return,
            error.Interrupted => continue,
            else => return discard(p, i, .down),
        };
        // The server closed: an idle connection is only forgotten; calls on it are lost.
        if (n == 0) return discard(p, i, .down);
        conn.in_len += @intCast(n);
        deliver(p, i);
        if (conn.phase == .closed) return;
    }
}

/// Hands every whole reply in the connection's input to the oldest call on it.
fn deliver(p: *Pool, i: usize) void {
    const conn = &p.conns[i];
    const in = p.input(i);
    // Bounded: each pass delivers one call's reply.
    while (conn.in_len > 0) {
        // Bytes nobody asked for (or for a call not wholly sent) cannot be matched to a call.
        if (conn.head == none or conn.head == conn.unsent) return discard(p, i, .bad_reply);
        const len = framing.replyLen(p.spec.framing, in[0..conn.in_len], in.len) catch {
            return discard(p, i, .bad_reply);
        } orelse return;
        const c = conn.head;
        @memcpy(p.callBuffer(c)[0..len], in[0..len]);
        p.calls[c].len = @intCast(len);
        conn.head = p.calls[c].next;
        if (conn.head == none) conn.tail = none;
        conn.count -= 1;
        compat.copyLeft(in[0 .. conn.in_len - len], in[len..conn.in_len]);
        conn.in_len -= @intCast(len);
        finish(p, c, null);
    }
}

/// Gives queued calls to connections with room (opening new ones as needed).
fn pumpQueue(p: *Pool, now_ms: u64) void {
    // Bounded: each pass takes one call off the queue.
    while (p.queue.len > 0) {
        const i = pickConn(p, now_ms) orelse break;
        assign(p, i, pop(p, &p.queue).?);
    }
    if (!anyOpen(p)) {
        while (pop(p, &p.queue)) |c| {
            metrics.add(&metrics.own.upstream_unsent[p.index].down, 1);
            finish(p, c, .down);
        }
    }
}

/// Ends what is past its deadline: connects (the server is ejected, its calls fail as
/// `down`), calls waiting for their reply (the connection is discarded: `timeout`), and
/// queued calls.
pub fn expire(now_ms: u64) void {
    if (!ready) return;
    for (&pools) |*p| {
        for (p.conns, 0..) |*conn, i| {
            if (conn.phase == .connecting and conn.connect_deadline_ms <= now_ms) {
                eject(p, conn.server, now_ms, "did not accept a connection in time");
                discard(p, i, .down);
            } else if (conn.head != none and p.calls[conn.head].deadline_ms <= now_ms) {
                eject(p, conn.server, now_ms, "did not answer in time");
                discard(p, i, .timeout);
            }
        }
        // Queued calls share one timeout and queue in order: the oldest expires first.
        while (p.queue.head != none and p.calls[p.queue.head].deadline_ms <= now_ms) {
            metrics.add(&metrics.own.upstream_unsent[p.index].timeout, 1);
            finish(p, pop(p, &p.queue).?, .timeout);
        }
        pumpQueue(p, now_ms);
    }
}

/// The nearest connect or call deadline; null for none.
pub fn nextMs() ?u64 {
    if (!ready) return null;
    var next: ?u64 = null;
    for (&pools) |*p| {
        for (p.conns) |*conn| {
            if (conn.phase == .connecting) {
                const at = conn.connect_deadline_ms;
                next = @min(next orelse at, at);
            }
            if (conn.head != none) {
                const at = p.calls[conn.head].deadline_ms;
                next = @min(next orelse at, at);
            }
        }
        if (p.queue.head != none) {
            const at = p.calls[p.queue.head].deadline_ms;
            next = @min(next orelse at, at);
        }
    }
    return next;
}

/// Calls of this worker not over yet (sent, queued, or answered and not yet read).
pub fn inFlight() u32 {
    if (!ready) return 0;
    var n: u32 = 0;
    for (&pools) |*p| n += @intCast(p.calls.len - p.free.len - p.taken.len);
    return n;
}

const testing = std.testing;

/// The pool is reserved once for all the tests below, and `ready` only while one runs: a
/// module's own tests, which run without a worker, see no upstream.
var test_reserved = false;

/// A loopback listener standing in for the first upstream's server, and the pool pointed at it.
const TestServer = struct {
    listen_fd: sys.Fd,
    epfd: sys.Fd,

    fn start() !TestServer {
        try wake.reserve();
        while (wake.take()) |_| {}
        const epfd = try sys.epollCreate();
        if (!test_reserved) try init(std.heap.page_allocator, epfd);
        test_reserved = true;
        ready = true;
        epoll_fd = epfd;
        const fd = try sys.socket(linux.AF.INET, linux.SOCK.STREAM | linux.SOCK.CLOEXEC, 0);
        const sa = address.SockAddr.init(.{ .ip4 = .{ 127, 0, 0, 1 } }, 0);
        try sys.bind(fd, sa.ptr(), sa.len);
        try sys.listen(fd, 16);
        var bound: linux.sockaddr.storage = undefined;
        _ = try sys.getsockname(fd, &bound);
        const port = std.mem.bigToNative(u16, @as(*const linux.sockaddr.in, @ptrCast(&bound)).port);
        pools[0].servers[0] = .{ .address = .{ .ip4 = .{ 127, 0, 0, 1 } }, .port = port };
        const p = &pools[0];
        p.rotation = servers_mod.Servers.roundRobin(p.servers.len, p.spec.eject_ms);
        return .{ .listen_fd = fd, .epfd = epfd };
    }

    fn stop(self: *TestServer) void {
        const p = &pools[0];
        while (pop(p, &p.queue)) |c| finish(p, c, .down);
        for (p.conns, 0..) |conn, i| if (conn.phase != .closed) discard(p, i, .down);
        for (p.calls, 0..) |call, c| if (call.state == .done) release(p, @intCast(c));
        beginTurn();
        while (wake.take()) |_| {}
        sys.close(self.listen_fd);
        sys.close(self.epfd);
        ready = false;
    }

    /// The server's side of the pool's next connection (blocking).
    fn accept(self: *TestServer) !sys.Fd {
        const rc = linux.accept4(self.listen_fd, null, null, linux.SOCK.CLOEXEC);
        if (compat.errno(rc) != .SUCCESS) return error.AcceptFailed;
        return @intCast(rc);
    }

    /// Runs the worker's side (epoll events, deadlines) until `ref`'s call is over.
    fn drive(self: *TestServer, ref: Ref) !Status {
        for (0..50) |_| {
            const st = status(ref);
            if (st != .pending_until_ms) return st;
            try self.turn(100);
        }
        return error.NeverAnswered;
    }

    /// One wait of the worker's loop: the events of the pool's connections.
    fn turn(self: *TestServer, timeout_ms: i32) !void {
        var events: [8]linux.epoll_event = undefined;
        const n = try sys.epollWait(self.epfd, &events, timeout_ms);
        for (events[0..n]) |e| {
            onEvent(connections_mod.Token.decode(e.data.u64), e.events, sys.monotonicMs());
        }
    }
};

/// A call from the HTTP connection in slot `slot`.
fn testCall(slot: u32, request: []const u8) !Ref {
    const ref = try begin(0, .{ .slot = slot, .generation = 1 });
    @memcpy(buffer(ref)[0..request.len], request);
    try send(ref, request.len, sys.monotonicMs());
    return ref;
}

/// A request and a reply that frame in every framing (a length prefix of 4, then 4 bytes).
const request_bytes = "\x00\x00\x00\x04ping";
const reply_bytes = switch (config.upstreams[0].framing) {
    .resp => "+ping\r\n",
    .line => "pong\n",
    .length => "\x00\x00\x00\x04pong",
    .http => "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\npong",
};

test "a call connects, is written, and its reply wakes its request; the entry comes back" {
    var server = try TestServer.start();
    defer server.stop();
    const free_before = pools[0].free.len;
    const ref = try testCall(3, request_bytes);
    try testing.expect(find(.{ .slot = 3, .generation = 1 }) != null);
    try testing.expect(find(.{ .slot = 3, .generation = 2 }) == null);
    const peer = try server.accept();
    defer sys.close(peer);
    try server.turn(1000);
    var got: [64]u8 = undefined;
    const len = try sys.read(peer, &got);
    try testing.expectEqualStrings(request_bytes, got[0..len]);
    try sys.writeAll(peer, reply_bytes);
    const st = try server.drive(ref);
    try testing.expectEqualStrings(reply_bytes, st.reply);
    try testing.expectEqual(@as(u32, 3), wake.take().?.slot);
    // Taken: no longer found, and free again on the next turn.
    try testing.expect(find(.{ .slot = 3, .generation = 1 }) == null);
    beginTurn();
    try testing.expectEqual(free_before, pools[0].free.len);
    try testing.expectEqual(@as(u32, 0), inFlight());
}

test "a reply that does not frame is a bad reply, and its connection is discarded" {
    var server = try TestServer.start();
    defer server.stop();
    const ref = try testCall(4, request_bytes);
    const peer = try server.accept();
    defer sys.close(peer);
    // More than `max_reply_bytes` that never frames (no line end, no valid RESP).
    var junk: [256]u8 = undefined;
    @memset(&junk, 0xff);
    var sent: usize = 0;
    while (sent <= config.upstreams[0].max_reply_bytes) : (sent += junk.len) {
        sys.writeAll(peer, &junk) catch break;
        if (pools[0].calls[ref.call].state == .done) break;
        try server.turn(10);
    }
    try testing.expectEqual(Failure.bad_reply, (try server.drive(ref)).failed);
    for (pools[0].conns) |conn| try testing.expect(conn.phase == .closed);
}

test "no connect by its deadline: down; no reply by the call's deadline: a timeout" {
    var server = try TestServer.start();
    defer server.stop();
    // The connect is still in progress (the loop has not run): whichever deadline comes
    // first ends the call, as down (the connect's) or as a timeout (the call's).
    const unconnected = try testCall(5, request_bytes);
    const connect_deadline = pools[0].conns[0].connect_deadline_ms;
    const call_deadline = pools[0].calls[unconnected.call].deadline_ms;
    const first = @min(connect_deadline, call_deadline);
    try testing.expectEqual(@as(?u64, first), nextMs());
    expire(first - 1);
    try testing.expect(status(unconnected) == .pending_until_ms);
    expire(first);
    const why: Failure = if (connect_deadline <= call_deadline) .down else .timeout;
    try testing.expectEqual(why, status(unconnected).failed);
    // Connected and written, never answered.
    const ref = try testCall(6, request_bytes);
    const peer = try server.accept();
    defer sys.close(peer);
    try server.turn(1000);
    const deadline = pools[0].calls[ref.call].deadline_ms;
    try testing.expectEqual(@as(?u64, deadline), nextMs());
    expire(deadline - 1);
    try testing.expect(status(ref) == .pending_until_ms);
    expire(deadline);
    try testing.expectEqual(Failure.timeout, status(ref).failed);
    for (pools[0].conns) |conn| try testing.expect(conn.phase == .closed);
    try testing.expectEqual(@as(?u64, null), nextMs());
}

test "a server that refuses: the call fails as down, and the next call tries again" {
    var server = try TestServer.start();
    defer server.stop();
    // Nobody listens on the port any more: the connect is refused.
    sys.close(server.listen_fd);
    server.listen_fd = try sys.socket(linux.AF.INET, linux.SOCK.STREAM | linux.SOCK.CLOEXEC, 0);
    const ref = try testCall(7, request_bytes);
    try testing.expectEqual(Failure.down, (try server.drive(ref)).failed);
    // The only server is never left out: the next call gets its own try (and fails too).
    const again = try testCall(9, request_bytes);
    try testing.expectEqual(Failure.down, (try server.drive(again)).failed);
}

test "a request whose connection closed: its call is freed when it ends, and wakes nothing" {
    var server = try TestServer.start();
    defer server.stop();
    const free_before = pools[0].free.len;
    const ref = try testCall(8, request_bytes);
    const peer = try server.accept();
    defer sys.close(peer);
    forgetSlot(8);
    expire(pools[0].calls[ref.call].deadline_ms);
    try testing.expectEqual(free_before, pools[0].free.len);
    try testing.expectEqual(@as(?Waiter, null), wake.take());
}

test "calls pipeline in order once every connection is busy, then queue, then fail at once" {
    var server = try TestServer.start();
    defer server.stop();
    const spec = pools[0].spec;
    const conns: u32 = spec.connections_per_worker;
    // One call per connection: each opens its own (an idle connection is used first).
    var first: [1024]Ref = undefined;
    for (0..conns) |i| first[i] = try testCall(@intCast(100 + i), request_bytes);
    for (pools[0].conns) |conn| try testing.expectEqual(@as(u32, 1), conn.count);
    if (!framing.pipelines(spec.framing) or spec.pipeline < 2) return;
    // The next one waits behind the first connection's call, on the same connection.
    const behind = try testCall(99, request_bytes);
    try testing.expectEqual(@as(u32, 2), pools[0].conns[0].count);
    // Serve the first connection: both requests arrive, two replies come in one write.
    const peer = try server.accept();
    defer sys.close(peer);
    try server.turn(1000);
    var got: [64]u8 = undefined;
    var len: usize = 0;
    while (len < 2 * request_bytes.len) len += try sys.read(peer, got[len..]);
    try testing.expectEqualStrings(request_bytes ++ request_bytes, got[0..len]);
    const early = comptime switch (config.upstreams[0].framing) {
        .resp => "+early\r\n",
        .line => "early\n",
        .length => "\x00\x00\x00\x05early",
        .http => "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nearly",
    };
    try sys.writeAll(peer, early ++ reply_bytes);
    try testing.expectEqualStrings(reply_bytes, (try server.drive(behind)).reply);
    try testing.expectEqualStrings(early, status(first[0]).reply);
    // Fill every pipeline, then the queue: the call after that fails at once (the replies
    // taken above hold their entries until the loop's next turn).
    beginTurn();
    var made: u32 = 0;
    while (made < conns * spec.pipeline + spec.max_queued_calls) : (made += 1) {
        _ = testCall(200 + made, request_bytes) catch break;
    }
    try testing.expectEqual(@as(u32, spec.max_queued_calls), pools[0].queue.len);
    try testing.expectError(error.UpstreamBusy, testCall(9999, request_bytes));
}

/// A stream module that sends one call per line and writes what became of it, with the
/// line's length as the call's context.
const TestLines = struct {
    const app_stream = @import("../handlers/app/stream.zig");
    const upstream_api = @import("../handlers/app_upstream.zig");

    pub const State = struct {};
    pub const Connection = struct { replies: u32 = 0 };

    pub fn frame(state: *State, conn: *Connection, line: []const u8, io: *app_stream.Io) !void {
        _ = state;
        _ = conn;
        try upstream_api.sendAt(0, io, request_bytes, line.len);
        // One call at a time per connection.
        try testing.expectError(error.UpstreamCallPending, upstream_api.sendAt(0, io, "x", 0));
    }

    pub fn upstreamReply(
        state: *State,
        conn: *Connection,
        context: u64,
        reply: api.UpstreamReply,
        io: *app_stream.Io,
    ) !void {
        _ = state;
        conn.replies += 1;
        const bytes = reply catch |err| return io.print("{s} {d}\n", .{ @errorName(err), context });
        try io.print("{d} bytes for {d}\n", .{ bytes.len, context });
    }

    const Module = app_stream.Module(TestLines, "test.zig", "", .{
        .line = .{ .max_bytes = 64 },
    }, 256, .{});

    fn testContext(slot: u32, generation: u32) api.Context {
        return .{
            .listener = &config.listeners[0],
            .listener_index = 0,
            .worker_index = 0,
            .pid = 1,
            .generation = 1,
            .draining = false,
            .slot = slot,
            .connection_generation = generation,
        };
    }
};

/// Runs the pool until a wake comes (the worker's loop would then fire the connection's
/// timer), answering `peer`'s requests with `reply_bytes` as they arrive.
fn serveUntilWake(server: *TestServer, peer: sys.Fd) !Waiter {
    var got: [64]u8 = undefined;
    for (0..50) |_| {
        if (wake.take()) |w| return w;
        try server.turn(100);
        // The test's end of the connection blocks: it reads only what has arrived.
        if (sys.pendingInput(peer) < request_bytes.len) continue;
        const n = try sys.read(peer, got[0..request_bytes.len]);
        try testing.expectEqualStrings(request_bytes, got[0..n]);
        try sys.writeAll(peer, reply_bytes);
    }
    return error.NeverWoken;
}

test "a stream frame's call holds its connection; the reply comes to upstreamReply, in order" {
    var server = try TestServer.start();
    defer server.stop();
    const free_before = pools[0].free.len;
    const Lines = TestLines.Module;
    var conn: Lines.Connection = .{};
    const ctx = TestLines.testContext(11, 5);
    const Buffer = struct {
        var bytes: [config.write_buffer_bytes]u8 = undefined;
    };
    var out: api.Output = .{ .buf = &Buffer.bytes };
    var input = "ab\nabcd\n".*;
    // The first line's call holds the connection: the second line waits, unread.
    const held = Lines.onData(&ctx, &conn, &input, &out);
    try testing.expectEqual(@as(usize, 3), held.consumed);
    try testing.expectEqual(api.Phase.waiting, held.phase);
    try testing.expectEqual(api.ReadingChange.pause, held.reading);
    try testing.expect(held.timer == .after_ms);
    try testing.expectEqual(@as(usize, 0), out.len);
    // More input is not delivered while the call is pending.
    const waiting = Lines.onData(&ctx, &conn, input[3..], &out);
    try testing.expectEqual(@as(usize, 0), waiting.consumed);
    try testing.expectEqual(api.Phase.waiting, waiting.phase);
    const peer = try server.accept();
    defer sys.close(peer);
    const woken = try serveUntilWake(&server, peer);
    try testing.expectEqual(@as(u32, 11), woken.slot);
    try testing.expectEqual(@as(u32, 5), woken.generation);
    // The worker fires the connection's timer: the module gets its reply and reads again.
    const answered = Lines.onTimer(&ctx, &conn, &out);
    var want: [64]u8 = undefined;
    const line = try compat.bufPrint(&want, "{d} bytes for 2\n", .{reply_bytes.len});
    try testing.expectEqualStrings(line, out.buf[0..out.len]);
    try testing.expectEqual(api.ReadingChange.unpause, answered.reading);
    try testing.expectEqual(api.Phase.idle, answered.phase);
    try testing.expect(answered.timer == .cancel);
    // The second line is delivered now, and makes its call.
    out.len = 0;
    const second = Lines.onData(&ctx, &conn, input[3..], &out);
    try testing.expectEqual(@as(usize, 5), second.consumed);
    try testing.expectEqual(api.Phase.waiting, second.phase);
    _ = try serveUntilWake(&server, peer);
    _ = Lines.onTimer(&ctx, &conn, &out);
    const both = try compat.bufPrint(&want, "{d} bytes for 4\n", .{reply_bytes.len});
    try testing.expectEqualStrings(both, out.buf[0..out.len]);
    try testing.expectEqual(@as(u32, 2), conn.user.replies);
    beginTurn();
    try testing.expectEqual(free_before, pools[0].free.len);
}

test "a stream connection closed while its call is pending gets no callback" {
    var server = try TestServer.start();
    defer server.stop();
    const free_before = pools[0].free.len;
    const Lines = TestLines.Module;
    var conn: Lines.Connection = .{};
    const ctx = TestLines.testContext(12, 7);
    const Buffer = struct {
        var bytes: [config.write_buffer_bytes]u8 = undefined;
    };
    var out: api.Output = .{ .buf = &Buffer.bytes };
    var input = "abc\n".*;
    _ = Lines.onData(&ctx, &conn, &input, &out);
    const peer = try server.accept();
    defer sys.close(peer);
    try server.turn(1000);
    // The connection closes (the worker calls `forgetSlot` for every close): the reply that
    // comes later frees the entry and wakes no one, and the slot's next connection, which
    // makes its own call, is not answered with the old one's reply.
    forgetSlot(12);
    Lines.onClose(&conn);
    try sys.writeAll(peer, reply_bytes);
    for (0..20) |_| {
        if (pools[0].free.len == free_before) break;
        try server.turn(100);
    }
    try testing.expectEqual(free_before, pools[0].free.len);
    try testing.expectEqual(@as(?Waiter, null), wake.take());
    // Asked anyway (it is not: the connection is gone), the call is over as down.
    const gone = takeStreamReply(.{ .slot = 12, .generation = 7 }).?;
    try testing.expectError(error.UpstreamDown, gone.reply);
    try testing.expectEqual(@as(u32, 0), conn.user.replies);
}

/// A datagram module that sends one call per datagram, with a context of 42, and answers
/// its sender with what became of it.
const TestDatagrams = struct {
    const app_datagram = @import("../handlers/app/datagram.zig");
    const upstream_api = @import("../handlers/app_upstream.zig");

    pub const State = struct {};

    pub fn datagram(state: *State, dg: *app_datagram.Datagram) !void {
        _ = state;
        try upstream_api.sendAt(0, dg, request_bytes, 42);
    }

    pub fn upstreamReply(
        state: *State,
        context: u64,
        reply: api.UpstreamReply,
        dg: *app_datagram.Datagram,
    ) !void {
        _ = state;
        const bytes = reply catch |err| return dg.print("{s} {d}", .{ @errorName(err), context });
        try dg.print("{d} bytes for {d}", .{ bytes.len, context });
    }

    const Module = app_datagram.Module(TestDatagrams, "test.zig", "", 256);
};

test "a datagram's call keeps its sender: the reply is handed back with it" {
    var server = try TestServer.start();
    defer server.stop();
    const Datagrams = TestDatagrams.Module;
    const ctx = TestLines.testContext(0, 0);
    var from: sys.Peer = .{};
    const sa = address.SockAddr.init(.{ .ip4 = .{ 127, 0, 0, 9 } }, 4321);
    from.addr = sa.storage;
    from.len = sa.len;
    var reply: [128]u8 = undefined;
    // Nothing to answer at once: the answer comes with the reply.
    try testing.expectEqual(@as(usize, 0), Datagrams.onDatagram(&ctx, "q", &from, &reply));
    try testing.expectEqual(@as(u32, 1), datagramsInFlight());
    const peer = try server.accept();
    defer sys.close(peer);
    try server.turn(1000);
    var got: [64]u8 = undefined;
    const n = try sys.read(peer, &got);
    try testing.expectEqualStrings(request_bytes, got[0..n]);
    try sys.writeAll(peer, reply_bytes);
    var answer: ?DatagramReply = null;
    for (0..50) |_| {
        answer = takeDatagramReply();
        if (answer != null) break;
        try server.turn(100);
    }
    const r = answer orelse return error.NeverAnswered;
    try testing.expectEqual(@as(u16, 4321), r.origin.peer.port);
    try testing.expectEqual(@as(u64, 42), r.context);
    try testing.expectEqualStrings(reply_bytes, r.status.reply);
    const len = Datagrams.onUpstreamReply(0, -1, r.origin.peer, r.context, r.status.reply, &reply);
    var want: [64]u8 = undefined;
    const text = try compat.bufPrint(&want, "{d} bytes for 42", .{reply_bytes.len});
    try testing.expectEqualStrings(text, reply[0..len]);
    // Taken on this turn, free on the next: the drain no longer waits for it.
    beginTurn();
    try testing.expectEqual(@as(u32, 0), datagramsInFlight());
    try testing.expect(takeDatagramReply() == null);
}

test "a server's calls and failures, and calls no server had, reach the metrics cell" {
    comptime assert(std.mem.eql(u8, @tagName(Failure.bad_reply), metrics.upstream_failures[2]));
    var server = try TestServer.start();
    defer server.stop();
    const health = metrics.upstreamServer(0, 0);
    const calls = metrics.load(&health.calls);
    const down = metrics.load(&health.failures[compat.enumIndex(Failure.down)]);
    const unsent = &metrics.own.upstream_unsent[0];
    const unsent_down = metrics.load(&unsent.down);
    // Answered: one call, no failure.
    const ref = try testCall(21, request_bytes);
    const peer = try server.accept();
    try server.turn(1000);
    var got: [64]u8 = undefined;
    _ = try sys.read(peer, &got);
    try sys.writeAll(peer, reply_bytes);
    _ = try server.drive(ref);
    try testing.expectEqual(calls + 1, metrics.load(&health.calls));
    // The server closes with a call on the connection: a failure (down) of that server.
    const lost = try testCall(22, request_bytes);
    try server.turn(100);
    sys.close(peer);
    try testing.expectEqual(Failure.down, (try server.drive(lost)).failed);
    try testing.expectEqual(calls + 2, metrics.load(&health.calls));
    try testing.expectEqual(down + 1, metrics.load(&health.failures[0]));
    // Nobody listens any more: a call refused before any server had it (the connect fails
    // at once) or, if the connect is in progress, a failure of the server.
    sys.close(server.listen_fd);
    server.listen_fd = try sys.socket(linux.AF.INET, linux.SOCK.STREAM | linux.SOCK.CLOEXEC, 0);
    const refused = testCall(23, request_bytes);
    if (refused) |r| {
        try testing.expectEqual(Failure.down, (try server.drive(r)).failed);
        try testing.expectEqual(down + 2, metrics.load(&health.failures[0]));
    } else |err| {
        try testing.expectEqual(error.UpstreamDown, err);
        try testing.expectEqual(unsent_down + 1, metrics.load(&unsent.down));
    }
}

/// A stream module that arms its timer at once and sends a call from the same frame.
const TestTimed = struct {
    const app_stream = @import("../handlers/app/stream.zig");
    const upstream_api = @import("../handlers/app_upstream.zig");

    pub const State = struct {};
    pub const Connection = struct {};

    pub fn frame(state: *State, conn: *Connection, line: []const u8, io: *app_stream.Io) !void {
        _ = state;
        _ = conn;
        _ = line;
        io.setTimer(0);
        try upstream_api.sendAt(0, io, request_bytes, 0);
    }

    pub fn timer(state: *State, conn: *Connection, io: *app_stream.Io) !void {
        _ = state;
        _ = conn;
        try io.write("tick\n");
    }

    pub fn upstreamReply(
        state: *State,
        conn: *Connection,
        context: u64,
        reply: api.UpstreamReply,
        io: *app_stream.Io,
    ) !void {
        _ = state;
        _ = conn;
        _ = context;
        _ = try reply;
        try io.write("reply\n");
    }

    const Module = app_stream.Module(TestTimed, "test.zig", "", .{
        .line = .{ .max_bytes = 64 },
    }, 256, .{});
};

test "a stream connection's own timer fires while its call is pending; the hold goes on" {
    var server = try TestServer.start();
    defer server.stop();
    const Timed = TestTimed.Module;
    var conn: Timed.Connection = .{};
    const ctx = TestLines.testContext(13, 3);
    const Buffer = struct {
        var bytes: [config.write_buffer_bytes]u8 = undefined;
    };
    var out: api.Output = .{ .buf = &Buffer.bytes };
    var input = "go\n".*;
    // The worker's timer is the earlier of the module's (now) and the call's hold.
    const held = Timed.onData(&ctx, &conn, &input, &out);
    try testing.expectEqual(api.TimerChange{ .after_ms = 0 }, held.timer);
    const ticked = Timed.onTimer(&ctx, &conn, &out);
    try testing.expectEqualStrings("tick\n", out.buf[0..out.len]);
    // Still waiting for the reply: paused, held, the timer back on the call's hold.
    try testing.expectEqual(api.Phase.waiting, ticked.phase);
    try testing.expect(ticked.reading != .unpause);
    try testing.expect(ticked.timer.after_ms > 0);
    out.len = 0;
    const peer = try server.accept();
    defer sys.close(peer);
    _ = try serveUntilWake(&server, peer);
    const answered = Timed.onTimer(&ctx, &conn, &out);
    try testing.expectEqualStrings("reply\n", out.buf[0..out.len]);
    try testing.expectEqual(api.ReadingChange.unpause, answered.reading);
    try testing.expect(answered.timer == .cancel);
}
