//! proxy: each client connection of a `proxy` listener is joined to a server of its upstream,
//! and bytes are pumped both ways until both sides are done (HAProxy's `mode tcp`, nginx's
//! `stream`, Envoy's TCP proxy).
//!
//! A proxied client never enters the worker's connection table, whose handlers are plain
//! functions over bytes: a pair holds two sockets, so it has a table of its own here, with
//! its own epoll token kind, reserved at start like the connection table. Per pair, a buffer
//! each way (`readBufferBytes` towards the server, `writeBufferBytes` towards the client);
//! nothing is allocated per connection.
//!
//! - Connect: non-blocking, to a server the listener's balance picks among those not ejected
//!   (`net/servers.zig`); a refusal or a timeout ejects the server and the client is tried
//!   on another, `retries` times, before it sees anything. When no server accepted, the client
//!   is closed at once, and counted. The client's first bytes are read meanwhile, and sent at
//!   once: a connect to a nearby server (loopback, above all) is often complete when connect(2)
//!   returns, and the send then saves the wait for EPOLLOUT and an epoll change (EAGAIN says
//!   it is not; a server whose connects never complete that fast is not tried so any more).
//! - Pumping: each direction on its own. A FIN from one side becomes `shutdown(SHUT_WR)` on
//!   the other once what is buffered was sent (half-close); the pair closes when both
//!   directions are done. A side is not read while its direction's buffer is full (the
//!   kernel's window then closes towards the sender) and is read again once the other side
//!   took bytes (EPOLLOUT): back-pressure both ways, memory flat. A reset (or any error) on
//!   one side resets the other: the proxy stays transparent, a broken transfer never looks
//!   complete.
//! - System calls: epoll events only mark a side readable or writable; the pairs they touched
//!   are pumped once the whole batch is marked (`endTurn`), so a pair whose two sides both
//!   ended in one batch is closed without a `shutdown` each way or an epoll change (close
//!   sends the FIN), and the FIN of a client that closes first is not crossed by ours. A
//!   short read means the socket is empty (epoll says when more comes); after EPOLLRDHUP a
//!   flow's last bytes go with its FIN in one segment (`readSome`, `sendSome`). Sockets are
//!   edge-triggered, registered once for input and once more for output (`rearm`), and a
//!   pump that stopped with work left goes again on the next turn (`canMove`). TCP_NODELAY
//!   is set on the listening socket, which accepted clients inherit.
//! - Deadlines: `connectTimeoutMs` per connect; `idleTimeoutMs` for a pair neither side of
//!   which moved a byte. Pairs are on lists per listener and kind, in deadline order (every
//!   pair of a list has the same timeout), so the next deadline is a list's head: O(1).
//! - Drain: a stopping worker accepts no more and keeps its pairs until they end or the drain
//!   timeout; new clients reach the next generation through the listening sockets.
//! - io_uring (`useRing`): a pair's sockets stay out of the epoll set and move bytes through
//!   the worker's ring (`pumpRing`, below); `zeroCopy` pairs keep the epoll pump.
const std = @import("std");
const config = @import("../config.zig");
const cli = @import("../cli.zig");
const sys = @import("../net/sys.zig");
const compat = @import("../compat.zig");
const address = @import("../address.zig");
const log = @import("../log.zig");
const metrics = @import("../metrics/cell.zig");
const listener_mod = @import("../net/listener.zig");
const connections_mod = @import("../worker/connections.zig");
const header = @import("proxy/header.zig");
const servers_mod = @import("../net/servers.zig");
const checks_mod = @import("proxy/checks.zig");
const splice = @import("proxy/splice.zig");
const ring_mod = @import("../worker/ring.zig");
const linux = std.os.linux;
const assert = std.debug.assert;

/// The epoll token kind of proxied sockets (the worker's `Kind.proxy`); a token's index is
/// the pair's slot times two, plus the side.
pub const token_kind: u8 = 7;

const closed: sys.Fd = -1;
const none: u32 = std.math.maxInt(u32);

const Phase = enum { free, connecting, open };

/// With io_uring, a side's send: none, one waiting for the turn's io_uring_enter
/// (`submitRing`), or one submitted whose completion has not been handled yet.
const Sending = enum(u2) { no, queued, submitted };

const client = 0;
const server = 1;

/// One direction: bytes read from one side that wait to be sent to the other.
const Flow = struct {
    start: u32 = 0,
    end: u32 = 0,
    /// Its source sent its FIN: once what is buffered is sent, the other side gets ours.
    eof: bool = false,
    /// Our FIN went on to the destination (`shutdown(SHUT_WR)`): the direction is done.
    shut: bool = false,

    fn pending(self: *const Flow) u32 {
        return self.end - self.start;
    }
};

const Pair = struct {
    fds: [2]sys.Fd = .{ closed, closed },
    generation: u24 = 0,
    listener_index: u16 = 0,
    phase: Phase = .free,
    /// The server connecting or connected to, and whether it is counted as one of its pairs.
    server: u16 = 0,
    counted: bool = false,
    tried: servers_mod.Tried = 0,
    tries: u8 = 0,
    /// `flows[client]` goes to the server, `flows[server]` to the client.
    flows: [2]Flow = .{ .{}, .{} },
    /// What epoll last said of each side, until a read or a send finds it untrue.
    readable: [2]bool = .{ false, false },
    writable: [2]bool = .{ false, false },
    /// EPOLLRDHUP said the side's FIN came: every byte it sent before is queued, so a read
    /// that empties the socket is followed by one that finds the end (see `readSome`).
    fin_seen: [2]bool = .{ false, false },
    /// What each side is registered for; null: not in the epoll set.
    events: [2]?u32 = .{ null, null },
    /// `zeroCopy`: a pipe per direction (`pipes[client]` towards the server), bytes moved
    /// with splice(2) and counted in the flow's `end`; null: the pair's buffers.
    pipes: ?[2]splice.Pipe = null,
    /// A splice into a flow's pipe met EAGAIN with bytes in it: full (its pages hold small
    /// fragments) until some leave.
    pipe_full: [2]bool = .{ false, false },
    /// On the list of pairs to pump at the end of the turn (`endTurn`).
    queued: bool = false,
    /// On the list of pairs to pump on the next turn (`later`).
    deferred: bool = false,
    /// The server socket's ACKs wait for bytes to ride on (TCP_QUICKACK off, see
    /// `startConnect`) until the first bytes went.
    acks_delayed: bool = false,
    deadline_ms: u64 = 0,
    /// The deadline list the pair is on and its neighbours there.
    list: u16 = 0,
    prev: u32 = none,
    next: u32 = none,
    /// With io_uring (`useRing`): the pair's bytes move through the worker's ring
    /// (`pumpRing`), and its sockets are not in the epoll set.
    on_ring: bool = false,
    /// Per side: its multishot receive, what the receive delivered and the pump has not
    /// taken yet, its one-shot poll (for room, or for its connect's end), and the send of
    /// the bytes that wait for it.
    recv: [2]ring_mod.Op = .{ .idle, .idle },
    queue: [2]ring_mod.Queue = .{ .{}, .{} },
    poll: [2]ring_mod.Op = .{ .idle, .idle },
    sending: [2]Sending = .{ .no, .no },
    /// On the list of pairs whose ring operations are brought up to date just before the
    /// turn's io_uring_enter (`submitRing`).
    syncing: bool = false,
};

const DeadlineKind = enum(u1) { connect, idle };

const List = struct {
    head: u32 = none,
    tail: u32 = none,
};

const list_count = config.listeners.len * 2;

var pairs: []Pair = &.{};
var free: []u32 = &.{};
var free_len: u32 = 0;
var up_bufs: []u8 = &.{};
var down_bufs: []u8 = &.{};
/// What every pair reads into while its bytes' destination takes bytes: they most often
/// leave at once, and a buffer all pairs share stays in the CPU's caches where a pair's own
/// is cold; only what the destination did not take is copied to the pair's buffer.
var scratch: []u8 = &.{};
var lists: [list_count]List = @splat(.{});
var servers: [config.listeners.len]servers_mod.Servers = undefined;
/// Each proxy listener's servers, copied at start (what a test points at its own listeners).
var targets: [config.listeners.len][servers_mod.max_servers]config.Server = undefined;
var checks: [config.listeners.len]checks_mod.Checks = @splat(.{});
/// Each proxy listener's idle timeout: its `idleTimeoutMs`, or `--idle-timeout` when given.
var idle_ms: [config.listeners.len]u32 = @splat(0);
var epoll_fd: sys.Fd = -1;
var ready = false;
/// The pairs events touched in this turn, pumped by `endTurn` (each at most once per generation).
const Queued = struct { slot: u32, generation: u24 };
var turn: []Queued = &.{};
var turn_len: usize = 0;
/// Pairs that can move on without a new event (`canMove`), pumped on the next turn: the
/// worker does not wait for events while there are some (`nextMs`).
var later: []Queued = &.{};
var later_len: usize = 0;
/// Per listener and server: connects to it have been seen complete by the time connect(2)
/// returned, so the client's first bytes are sent at once; otherwise a try every
/// `eager_probe` connects finds out whether that changed.
var eager: [config.listeners.len][servers_mod.max_servers]bool = undefined;
var eager_skipped: [config.listeners.len][servers_mod.max_servers]u8 = undefined;
const eager_probe = 16;
/// With io_uring: the worker's ring, and the pairs whose operations wait for the turn's end.
var ring: ?*ring_mod.Ring = null;
var syncs: []Queued = &.{};
var syncs_len: usize = 0;
/// A side with this much received and not taken into its flow's buffer stops receiving
/// until the pump takes some (its peer is slower): the buffer is the flow's store, the
/// queue only what arrived since the last turn.
const ring_queue_limit = 4 * ring_mod.buffer_bytes;
/// Clients closed because no server accepted them, and when that was last said.
var no_server_total: u64 = 0;
var no_server_warned_ms: u64 = 0;

/// Reserves the pair table and its buffers (virtual memory, backed once used).
pub fn init(allocator: std.mem.Allocator, epfd: sys.Fd, limits: cli.Limits) !void {
    const max = config.max_connections;
    pairs = try allocator.alloc(Pair, max);
    free = try allocator.alloc(u32, max);
    for (pairs, 0..) |*p, i| {
        p.* = .{};
        free[max - 1 - i] = @intCast(i);
    }
    free_len = max;
    // A slot closed and reused within a turn may be queued twice: twice the pairs is enough.
    turn = try allocator.alloc(Queued, @as(usize, max) * 2);
    turn_len = 0;
    later = try allocator.alloc(Queued, max);
    later_len = 0;
    eager = @splat(@splat(true));
    eager_skipped = @splat(@splat(0));
    scratch = try allocator.alloc(u8, @max(config.read_buffer_bytes, config.write_buffer_bytes));
    up_bufs = try compat.mapMemory(@as(usize, max) * config.read_buffer_bytes);
    down_bufs = try compat.mapMemory(@as(usize, max) * config.write_buffer_bytes);
    lists = @splat(.{});
    checks = @splat(.{});
    for (&config.listeners, 0..) |*l, i| {
        if (l.proxy) |*proxy| {
            servers[i] = servers_mod.Servers.init(proxy);
            const given = limits.idle_timeout_given;
            idle_ms[i] = if (given) limits.idle_timeout_ms else proxy.idle_timeout_ms;
            @memcpy(targets[i][0..proxy.servers.len], proxy.servers);
        }
    }
    epoll_fd = epfd;
    ready = true;
}

/// Moves the pairs' bytes through `r` from now on (see `pumpRing`); `zeroCopy` pairs stay
/// with epoll (splice has no ring form the pump could use as it is).
pub fn useRing(allocator: std.mem.Allocator, r: *ring_mod.Ring) !void {
    // A slot closed and reused within a turn may be listed twice, as in `turn`.
    syncs = try allocator.alloc(Queued, pairs.len * 2);
    syncs_len = 0;
    ring = r;
}

pub fn openCount() u32 {
    return @intCast(pairs.len - free_len);
}

pub fn isFull() bool {
    return free_len == 0;
}

fn proxyOf(p: *const Pair) *const config.Proxy {
    return &config.listeners[p.listener_index].proxy.?;
}

fn buffer(slot: u32, flow: usize) []u8 {
    const size: usize =
        if (flow == client) config.read_buffer_bytes else config.write_buffer_bytes;
    const bufs = if (flow == client) up_bufs else down_bufs;
    return bufs[@as(usize, slot) * size ..][0..size];
}

/// Takes an accepted client: a slot, the PROXY header if asked, and the first connect.
pub fn open(fd: sys.Fd, listener_index: u16, now_ms: u64) void {
    assert(ready and free_len > 0);
    assert(config.listeners[listener_index].handler == .proxy);
    free_len -= 1;
    const slot = free[free_len];
    const p = &pairs[slot];
    assert(p.phase == .free);
    p.* = .{
        .fds = .{ fd, closed },
        .generation = p.generation +% 1,
        .listener_index = listener_index,
        .phase = .connecting,
        .writable = .{ true, false },
    };
    const counters = metrics.at(listener_index);
    metrics.add(&counters.accepted, 1);
    metrics.add(&counters.open, 1);
    // TCP_NODELAY came from the listening socket (`prepareListener`).
    const proxy = proxyOf(p);
    // Out of descriptors for pipes: this pair copies through its buffers.
    if (proxy.zero_copy) p.pipes = splice.open();
    p.on_ring = ring != null and p.pipes == null;
    if (proxy.send_proxy_protocol != .none) writeHeader(slot, proxy.send_proxy_protocol);
    // The client's request is most often there already: read before the connect, so that
    // its first segment carries the handshake's last ACK (`startConnect`); sent at the
    // turn's end.
    p.readable[client] = true;
    if (p.pipes == null) {
        const f = &p.flows[client];
        const got = readSome(p, client, buffer(slot, client)[f.end..]) catch return abort(slot);
        if (got) |n| {
            if (n == 0) f.eof = true;
            f.end += @intCast(n);
        }
    }
    if (!connectNext(slot, now_ms)) return giveUp(slot, now_ms);
    queue(slot);
}

/// A proxy listener's socket: TCP_NODELAY on it is inherited by every client it accepts,
/// one system call per listening socket instead of one per client (bytes are forwarded as
/// they come; Nagle would hold small ones back). Set again by each worker, for sockets
/// that come from elsewhere (systemd, a previous program's handover).
pub fn prepareListener(fd: sys.Fd, listener_index: u16) void {
    const l = &config.listeners[listener_index];
    if (l.handler != .proxy or !l.options.no_delay) return;
    sys.setsockoptInt(fd, linux.IPPROTO.TCP, linux.TCP.NODELAY, 1) catch {}; // a hint only
}

/// The PROXY header goes first in the client's direction, before any byte of the client.
fn writeHeader(slot: u32, version: config.ProxyProtocol) void {
    const p = &pairs[slot];
    var peer: linux.sockaddr.storage = undefined;
    var local: linux.sockaddr.storage = undefined;
    var len: linux.socklen_t = @sizeOf(linux.sockaddr.storage);
    const got_peer = compat.errno(linux.getpeername(p.fds[client], @ptrCast(&peer), &len));
    const src = if (got_peer == .SUCCESS) header.endpointOf(&peer) else null;
    const got_local = sys.getsockname(p.fds[client], &local);
    const dst = if (got_local) |_| header.endpointOf(&local) else |_| null;
    var bytes: [header.max_bytes]u8 = undefined;
    const n = header.encode(version, src, dst, &bytes);
    if (p.pipes) |pipes| {
        // An empty pipe takes the 108 bytes at once; should it not, the pair copies.
        const written = sys.write(pipes[client][1], bytes[0..n]) catch 0;
        if (written == n) {
            p.flows[client].end = @intCast(n);
            return;
        }
        for (pipes) |pipe| splice.close(pipe);
        p.pipes = null;
    }
    // The spec's smallest read buffer (512 bytes) holds the longest header.
    @memcpy(buffer(slot, client)[0..n], bytes[0..n]);
    p.flows[client].end = @intCast(n);
}

/// Starts a connect to the next server to try; false when every try is spent.
fn connectNext(slot: u32, now_ms: u64) bool {
    const p = &pairs[slot];
    const proxy = proxyOf(p);
    const s = &servers[p.listener_index];
    // Bounded: each pass spends one try.
    while (p.tries <= proxy.retries) {
        const chosen = s.pick(now_ms, p.tried) orelse return false;
        p.tried |= servers_mod.Servers.bit(chosen);
        p.tries += 1;
        const waiting = p.flows[client].pending() > 0;
        const target = targets[p.listener_index][chosen];
        const fd = startConnect(target, waiting) catch |err| switch (err) {
            // Out of descriptors is not the server's fault: no other server would do better.
            error.NoSocket => return false,
            error.Refused => {
                metrics.add(&metrics.proxyServer(p.listener_index, chosen).connect_failures, 1);
                _ = s.eject(chosen, now_ms);
                continue;
            },
        };
        p.fds[server] = fd;
        p.acks_delayed = waiting;
        p.server = chosen;
        p.counted = true;
        p.phase = .connecting;
        // Tried at once when its connects complete that fast (`eager`), else on EPOLLOUT.
        p.writable[server] = eagerTry(p.listener_index, chosen);
        p.readable[server] = false;
        p.fin_seen[server] = false;
        p.events[server] = null;
        s.active[chosen] += 1;
        listMove(slot, .connect, now_ms + proxy.connect_timeout_ms);
        return true;
    }
    return false;
}

/// Whether to send to a server whose connect is under way before EPOLLOUT says it is done.
fn eagerTry(listener_index: u16, chosen: u16) bool {
    if (eager[listener_index][chosen]) return true;
    const skipped = &eager_skipped[listener_index][chosen];
    skipped.* +%= 1;
    return skipped.* % eager_probe == 0;
}

/// A non-blocking connect under way (or done); `Refused` when it failed at once, `NoSocket`
/// when no socket could be made. `waiting`: client bytes wait to be sent once it is done.
fn startConnect(target: config.Server, waiting: bool) error{ NoSocket, Refused }!sys.Fd {
    const family: u32 = if (target.address.isIp6()) linux.AF.INET6 else linux.AF.INET;
    const flags: u32 = linux.SOCK.STREAM | linux.SOCK.NONBLOCK | linux.SOCK.CLOEXEC;
    const fd = sys.socket(family, flags, 0) catch return error.NoSocket;
    // Bytes are forwarded as they come: no Nagle delay on the way.
    sys.setsockoptInt(fd, linux.IPPROTO.TCP, linux.TCP.NODELAY, 1) catch {}; // a hint only
    if (waiting) {
        // The handshake's last ACK waits for the first bytes, which go at once, and rides
        // on them: one segment less (HAProxy's `option tcp-smart-connect`). Without bytes to
        // send it would wait for the delayed-ACK timer, and delay a server that speaks first.
        sys.setsockoptInt(fd, linux.IPPROTO.TCP, linux.TCP.QUICKACK, 0) catch {}; // a hint
    }
    const sa = address.SockAddr.init(target.address, target.port);
    const rc = compat.errno(linux.connect(fd, sa.ptr(), sa.len));
    if (rc != .SUCCESS and rc != .INPROGRESS) {
        sys.close(fd);
        return error.Refused;
    }
    return fd;
}

/// The connect to the pair's server failed (refused, reset, timed out): the server is
/// ejected and another is tried; none left: the client is closed.
fn connectFailed(slot: u32, now_ms: u64) void {
    const p = &pairs[slot];
    assert(p.phase == .connecting and p.fds[server] != closed);
    const s = &servers[p.listener_index];
    metrics.add(&metrics.proxyServer(p.listener_index, p.server).connect_failures, 1);
    if (s.eject(p.server, now_ms)) {
        log.warn("proxy {s}: server {d} of upstream {s} refused or timed out; left out " ++
            "for {d} ms", .{
            config.listeners[p.listener_index].name, p.server, proxyOf(p).upstream, s.eject_ms,
        });
    }
    releaseSide(slot, server);
    sys.close(p.fds[server]);
    p.fds[server] = closed;
    p.events[server] = null;
    uncount(p);
    if (!connectNext(slot, now_ms)) return giveUp(slot, now_ms);
    queue(slot);
}

fn uncount(p: *Pair) void {
    if (!p.counted) return;
    servers[p.listener_index].active[p.server] -= 1;
    p.counted = false;
}

/// No server took the client: it is closed at once, and counted.
fn giveUp(slot: u32, now_ms: u64) void {
    no_server_total += 1;
    metrics.add(&metrics.at(pairs[slot].listener_index).no_server, 1);
    if (now_ms >= no_server_warned_ms + 1000) {
        no_server_warned_ms = now_ms;
        const p = &pairs[slot];
        log.warn("proxy {s}: no server of upstream {s} accepted a client (or all are down); " ++
            "closed it ({d} clients so far)", .{
            config.listeners[p.listener_index].name, proxyOf(p).upstream, no_server_total,
        });
    }
    close(slot);
}

/// The connect's outcome is known: the socket became writable or readable (done), or it
/// reported an error or a hang-up (failed; epoll says so without a getsockopt(SO_ERROR)).
fn finishConnect(slot: u32, events: u32, now_ms: u64) void {
    const p = &pairs[slot];
    if (events & (linux.EPOLL.ERR | linux.EPOLL.HUP) != 0) return connectFailed(slot, now_ms);
    p.writable[server] = true;
    // Watched for EPOLLIN (`connectingEvents`): the server spoke first.
    if (events & linux.EPOLL.IN != 0) p.readable[server] = true;
    if (events & linux.EPOLL.RDHUP != 0) p.fin_seen[server] = true;
    markConnected(slot, now_ms);
    queue(slot);
}

/// The pair's server took the connection (EPOLLOUT, or a first send that went through).
fn markConnected(slot: u32, now_ms: u64) void {
    const p = &pairs[slot];
    assert(p.phase == .connecting);
    p.phase = .open;
    servers[p.listener_index].restore(p.server);
    metrics.add(&metrics.at(p.listener_index).requests, 1);
    metrics.add(&metrics.proxyServer(p.listener_index, p.server).connections, 1);
    listMove(slot, .idle, now_ms + idle_ms[p.listener_index]);
}

pub fn onEvent(t: connections_mod.Token, events: u32, now_ms: u64) void {
    if (!ready) return;
    if (checks_mod.isCheck(t.index)) return checks_mod.onEvent(&checks, &servers, t, now_ms);
    const slot = t.index >> 1;
    const side: usize = t.index & 1;
    if (slot >= pairs.len) return;
    const p = &pairs[slot];
    // A pair closed (and maybe reused) since the event was queued.
    if (p.phase == .free or p.generation != t.generation or p.fds[side] == closed) return;
    if (p.phase == .connecting and side == server) return finishConnect(slot, events, now_ms);
    if (events & linux.EPOLL.ERR != 0) return abort(slot);
    if (events & (linux.EPOLL.IN | linux.EPOLL.HUP) != 0) p.readable[side] = true;
    if (events & linux.EPOLL.OUT != 0) p.writable[side] = true;
    if (events & linux.EPOLL.RDHUP != 0) p.fin_seen[side] = true;
    if (events & linux.EPOLL.HUP != 0 and p.flows[side].eof) {
        // Both ways closed for this side: our FIN went to it, or it reset.
        if (!p.flows[1 - side].shut) return abort(slot);
    }
    queue(slot);
}

/// Puts a pair on the turn's list, to be pumped once the batch of events is read.
fn queue(slot: u32) void {
    const p = &pairs[slot];
    if (p.queued) return;
    // Never full in practice (twice the pairs); should it be, the pair moves now.
    if (turn_len == turn.len) return pump(slot, sys.monotonicMs());
    p.queued = true;
    turn[turn_len] = .{ .slot = slot, .generation = p.generation };
    turn_len += 1;
}

/// Pumps the pairs events (or accepts, or expired connects) touched since the last call;
/// the worker calls it after each batch of events and before it waits again.
pub fn endTurn(now_ms: u64) void {
    if (!ready) return;
    // Bounded: a pump queues its pair again only after a failed connect, which spends a try.
    var i: usize = 0;
    while (i < turn_len) : (i += 1) {
        const q = turn[i];
        const p = &pairs[q.slot];
        if (p.phase == .free or p.generation != q.generation or !p.queued) continue;
        p.queued = false;
        pump(q.slot, now_ms);
    }
    turn_len = 0;
    // Deferred by this turn's pumps, or an earlier turn's: each is pumped once per turn.
    const deferred = later_len;
    later_len = 0;
    for (later[0..deferred]) |q| {
        const p = &pairs[q.slot];
        if (p.generation != q.generation or !p.deferred) continue;
        p.deferred = false;
        if (p.phase != .free) queue(q.slot);
    }
}

/// Moves what can move in both directions; closes the pair when both are done.
fn pump(slot: u32, now_ms: u64) void {
    if (pairs[slot].on_ring) return pumpRing(slot, now_ms);
    const p = &pairs[slot];
    var moved = false;
    const connecting = p.phase == .connecting;
    for ([_]usize{ client, server }) |from| {
        const progressed = transfer(slot, from, now_ms) catch |err| switch (err) {
            error.Refused => return connectFailed(slot, now_ms),
            error.Reset => return abort(slot),
        };
        moved = progressed or moved;
    }
    if (connecting) learnEager(p);
    moved = passFins(p) or moved;
    if (p.flows[client].shut and p.flows[server].shut) return close(slot);
    if (moved and p.phase == .open) listMove(slot, .idle, now_ms + idle_ms[p.listener_index]);
    rearm(slot);
    if (p.phase != .free and canMove(slot)) deferPump(slot);
}

/// Pumps the pair again on the next turn, after the worker's other events (`later`).
fn deferPump(slot: u32) void {
    const p = &pairs[slot];
    if (p.deferred) return;
    p.deferred = true;
    later[later_len] = .{ .slot = slot, .generation = p.generation };
    later_len += 1;
}

/// After a pump of a connecting pair: whether an eager send to its server went through
/// (the connect was done when connect(2) returned) or met EAGAIN (it was not).
fn learnEager(p: *const Pair) void {
    const fast = &eager[p.listener_index][p.server];
    if (p.phase == .open) {
        fast.* = true;
    } else if (!p.writable[server] and p.flows[client].pending() > 0) {
        fast.* = false;
    }
}

/// Each direction whose source ended and whose bytes all went on is ended on its
/// destination (`shutdown(SHUT_WR)`, half-close). When both end in the same pump, the
/// pair is closed right after, and close(2) sends each FIN: no shutdown is needed (both
/// sides' input was read to its end, so the close resets neither).
fn passFins(p: *Pair) bool {
    if (p.phase != .open) return false;
    const ends = [2]bool{ ended(&p.flows[client]), ended(&p.flows[server]) };
    var moved = false;
    for ([_]usize{ client, server }) |from| {
        const f = &p.flows[from];
        if (!ends[from] or f.shut) continue;
        if (!ends[1 - from]) sys.shutdownWrite(p.fds[1 - from]);
        f.shut = true;
        moved = true;
    }
    return moved;
}

/// The flow's source sent its FIN and every byte before it went on.
fn ended(f: *const Flow) bool {
    return f.eof and f.pending() == 0;
}

/// `Refused`: the eager send met the connect's failure (the next server is tried).
const Broken = error{ Reset, Refused };

/// One direction: sends what waits, passes a FIN on, reads more while there is room; a few
/// rounds at most, to stay fair to the worker's other connections. Returns whether a byte
/// (or a FIN) moved.
fn transfer(slot: u32, from: usize, now_ms: u64) Broken!bool {
    if (pairs[slot].pipes != null) return transferSpliced(slot, from, now_ms);
    const p = &pairs[slot];
    const to = 1 - from;
    const f = &p.flows[from];
    const buf = buffer(slot, from);
    var moved = false;
    var rounds: usize = 0;
    while (rounds < 4) : (rounds += 1) {
        var progressed = false;
        if (f.pending() > 0 and p.writable[to]) {
            const n = try sendSome(p, to, buf[f.start..f.end], f.eof);
            f.start += n;
            if (f.start == f.end) {
                f.start = 0;
                f.end = 0;
            }
            progressed = n > 0;
            if (progressed and p.phase == .connecting) markConnected(slot, now_ms);
        }
        if (!f.eof and p.readable[from] and f.pending() == 0 and p.writable[to]) {
            progressed = try passThrough(slot, from, now_ms);
        } else if (!f.eof and p.readable[from]) {
            if (f.end == buf.len and f.start > 0) {
                compat.copyLeft(buf[0..f.pending()], buf[f.start..f.end]);
                f.end -= f.start;
                f.start = 0;
            }
            if (f.end < buf.len) {
                const got = try readSome(p, from, buf[f.end..]);
                if (got) |n| {
                    if (n == 0) f.eof = true;
                    f.end += @intCast(n);
                    progressed = true;
                }
            }
        }
        moved = moved or progressed;
        if (!progressed) break;
    }
    return moved;
}

/// Reads from side `from` into the shared buffer and sends to the other side at once; what
/// it did not take waits in the flow's own buffer (empty until then). Whether a byte (or
/// the FIN) came.
fn passThrough(slot: u32, from: usize, now_ms: u64) Broken!bool {
    const p = &pairs[slot];
    const f = &p.flows[from];
    const buf = buffer(slot, from);
    assert(f.pending() == 0);
    const bytes = scratch[0..buf.len];
    const n = (try readSome(p, from, bytes)) orelse return false;
    if (n == 0) {
        f.eof = true;
        return true;
    }
    const sent = sendSome(p, 1 - from, bytes[0..n], f.eof) catch |err| {
        // Kept for the next server when the connect failed.
        @memcpy(buf[0..n], bytes[0..n]);
        f.start = 0;
        f.end = @intCast(n);
        return err;
    };
    if (sent > 0 and p.phase == .connecting) markConnected(slot, now_ms);
    @memcpy(buf[0..(n - sent)], bytes[sent..n]);
    f.start = 0;
    f.end = @intCast(n - sent);
    return true;
}

/// `transfer` for a zero-copy pair: the flow's bytes wait in its pipe (`end` counts them).
fn transferSpliced(slot: u32, from: usize, now_ms: u64) Broken!bool {
    const p = &pairs[slot];
    const to = 1 - from;
    const f = &p.flows[from];
    const pipe = p.pipes.?[from];
    assert(f.start == 0 and f.end <= splice.pipe_bytes);
    var moved = false;
    var rounds: usize = 0;
    while (rounds < 4) : (rounds += 1) {
        var progressed = false;
        if (f.end > 0 and p.writable[to]) {
            const n = try spliceSome(p, pipe[0], to, f.end);
            f.end -= n;
            if (n > 0) {
                p.pipe_full[from] = false;
                progressed = true;
                if (p.phase == .connecting) markConnected(slot, now_ms);
            }
        }
        if (!f.eof and p.readable[from] and !p.pipe_full[from] and f.end < splice.pipe_bytes) {
            const room = splice.pipe_bytes - f.end;
            if (splice.moveBytes(p.fds[from], pipe[1], room)) |n| {
                if (n == 0) f.eof = true;
                f.end += @intCast(n);
                progressed = true;
            } else |err| switch (err) {
                // Nothing to read, or (bytes in the pipe) the pipe is full.
                error.WouldBlock => if (f.end == 0) {
                    p.readable[from] = false;
                } else {
                    p.pipe_full[from] = true;
                },
                error.Interrupted => {},
                else => return error.Reset,
            }
        }
        moved = moved or progressed;
        if (!progressed) break;
    }
    return moved;
}

/// Bytes spliced from a flow's pipe into side `to` (0 when its socket is full).
fn spliceSome(p: *Pair, pipe_read: sys.Fd, to: usize, len: u32) Broken!u32 {
    return countMoved(p, to, splice.moveBytes(pipe_read, p.fds[to], len));
}

/// Bytes the socket took (0 when it is full: then it is watched for EPOLLOUT). `last`: they
/// are the last of their flow, whose FIN goes on in this pump once they all went (`passFins`,
/// or the pair's close): held for it with MSG_MORE, they and the FIN make one segment, one
/// wake-up of the receiver instead of two.
fn sendSome(p: *Pair, to: usize, bytes: []const u8, last: bool) Broken!u32 {
    const fd = p.fds[to];
    return countMoved(p, to, if (last) sys.sendBeforeFin(fd, bytes) else sys.send(fd, bytes));
}

/// What a send or splice towards side `to` did (`result`: its bytes or its error): the bytes,
/// counted for the pair's server; 0 when the socket was full or still connecting (it is then
/// watched for EPOLLOUT) or the call was interrupted; any other error breaks the pair, or,
/// before the server's connect is known done, is that connect's failure.
fn countMoved(p: *Pair, to: usize, result: anytype) Broken!u32 {
    const n = result catch |err| switch (err) {
        error.WouldBlock => {
            p.writable[to] = false;
            return 0;
        },
        error.Interrupted => return 0,
        else => return if (p.phase == .connecting) error.Refused else error.Reset,
    };
    if (to == server and n > 0 and p.acks_delayed) {
        // The handshake's ACK went with these bytes; from now on ACKs go as usual (delayed
        // ones would have the server resend its answer's last segment, a tail loss probe).
        p.acks_delayed = false;
        sys.setsockoptInt(p.fds[server], linux.IPPROTO.TCP, linux.TCP.QUICKACK, 1) catch {}; // hint
    }
    const counters = metrics.proxyServer(p.listener_index, p.server);
    metrics.add(if (to == server) &counters.bytes_to_server else &counters.bytes_to_client, n);
    return @intCast(n);
}

/// Bytes read (0: the side's FIN), or null when nothing waits. When the side's FIN is known
/// to have come, the read that empties the socket is followed by one that finds its end
/// (the flow's `eof`), so that the bytes and the FIN go on together (`sendSome`).
fn readSome(p: *Pair, from: usize, into: []u8) Broken!?usize {
    const n = sys.recv(p.fds[from], into) catch |err| switch (err) {
        error.WouldBlock => {
            p.readable[from] = false;
            return null;
        },
        error.Interrupted => return null,
        else => return error.Reset,
    };
    if (n == 0 or n == into.len) return n;
    // A short read emptied the socket; epoll says when more comes.
    p.readable[from] = false;
    if (!p.fin_seen[from]) return n;
    // Not assumed to be the end: a read also stops short at urgent data, with bytes behind.
    const more = sys.recv(p.fds[from], into[n..]) catch |err| switch (err) {
        error.WouldBlock, error.Interrupted => return n,
        else => return error.Reset,
    };
    if (more == 0) p.flows[from].eof = true;
    return n + more;
}

/// Registers each side for what it waits for when it is not registered for it yet: input
/// while its direction has room and no FIN came, output while bytes wait for it (or its
/// connect). Edge-triggered: epoll reports a change once, so what a side no longer waits
/// for stays registered (an end of input or a full buffer does not wake every wait), and a
/// side changes its registration at most twice (output is added on its first full buffer).
/// A side done both ways before it was registered is not.
fn rearm(slot: u32) void {
    const p = &pairs[slot];
    for ([_]usize{ client, server }) |side| {
        const fd = p.fds[side];
        if (fd == closed) continue;
        const from = &p.flows[side];
        var wanted: u32 = 0;
        if (!from.eof and hasRoom(slot, side)) wanted |= linux.EPOLL.IN | linux.EPOLL.RDHUP;
        if (p.flows[1 - side].pending() > 0) wanted |= linux.EPOLL.OUT;
        if (side == server and p.phase == .connecting) wanted = connectingEvents(p);
        const registered = p.events[side] orelse 0;
        if (p.events[side] != null and wanted & ~registered == 0) continue;
        if (p.events[side] == null and from.eof and p.flows[1 - side].shut) continue;
        const op: u32 = if (p.events[side] == null) linux.EPOLL.CTL_ADD else linux.EPOLL.CTL_MOD;
        const events = registered | wanted | linux.EPOLL.ET;
        sys.epollCtl(epoll_fd, op, fd, events, tokenOf(slot, side)) catch return abort(slot);
        p.events[side] = events;
    }
}

/// Whether the pair can move bytes without a new event: a pump stops after a few rounds
/// (`transfer`) with a side still readable or writable, and edge-triggered epoll says
/// nothing more of a state that did not change. Every other stop is a read or send that
/// found its socket empty or full, whose change epoll reports, or a full buffer, which a
/// send from it empties.
fn canMove(slot: u32) bool {
    const p = &pairs[slot];
    for ([_]usize{ client, server }) |from| {
        const to = 1 - from;
        const f = &p.flows[from];
        if (f.pending() > 0 and p.writable[to]) return true;
        if (!f.eof and p.readable[from] and hasRoom(slot, from)) return true;
    }
    return false;
}

/// What a connecting server socket waits for: EPOLLOUT (the connect's end) when bytes wait
/// for it; with none, and its connects done at once (`eager`), EPOLLIN, which is what it
/// waits for next once connected: the client's first bytes then go as they come, and no
/// epoll change follows the connect (a failure shows as EPOLLERR/EPOLLHUP either way; a
/// connect deadline checks whether it is connected before calling it failed).
fn connectingEvents(p: *const Pair) u32 {
    const input = linux.EPOLL.IN | linux.EPOLL.RDHUP;
    if (p.writable[server] and p.flows[client].pending() == 0) return input;
    return linux.EPOLL.OUT;
}

/// Whether the pair's server socket is connected (a connect watched for EPOLLIN only, at
/// its deadline).
fn connectedMeanwhile(p: *const Pair) bool {
    if (!p.writable[server]) return false;
    var peer: linux.sockaddr.storage = undefined;
    var len: linux.socklen_t = @sizeOf(linux.sockaddr.storage);
    return compat.errno(linux.getpeername(p.fds[server], @ptrCast(&peer), &len)) == .SUCCESS;
}

/// Whether the flow from `side` can take more bytes (its buffer, or its pipe).
fn hasRoom(slot: u32, side: usize) bool {
    const p = &pairs[slot];
    const f = &p.flows[side];
    if (p.pipes != null) return !p.pipe_full[side] and f.end < splice.pipe_bytes;
    return f.pending() < buffer(slot, side).len;
}

fn tokenOf(slot: u32, side: usize) u64 {
    return (connections_mod.Token{
        .kind = token_kind,
        .generation = pairs[slot].generation,
        .index = slot * 2 + @as(u32, @intCast(side)),
    }).encode();
}

/// A reset or error on one side: the other is reset too (SO_LINGER 0), so that its peer
/// learns the transfer broke rather than seeing a clean end.
fn abort(slot: u32) void {
    const p = &pairs[slot];
    // struct linger: on, for 0 seconds.
    const linger = [2]c_int{ 1, 0 };
    const bytes = std.mem.asBytes(&linger);
    for (p.fds) |fd| {
        if (fd == closed) continue;
        // Failing only leaves a FIN instead of a reset.
        _ = linux.setsockopt(fd, linux.SOL.SOCKET, linux.SO.LINGER, bytes, bytes.len);
    }
    close(slot);
}

/// Closes both sides and frees the slot.
fn close(slot: u32) void {
    const p = &pairs[slot];
    assert(p.phase != .free);
    releaseSide(slot, client);
    releaseSide(slot, server);
    for (p.fds) |fd| if (fd != closed) sys.close(fd);
    if (p.pipes) |pipes| for (pipes) |pipe| splice.close(pipe);
    uncount(p);
    listRemove(slot);
    metrics.sub(&metrics.at(p.listener_index).open, 1);
    p.* = .{ .generation = p.generation };
    free[free_len] = slot;
    free_len += 1;
}

/// Closes every pair (the worker is exiting).
pub fn closeAll() void {
    if (!ready) return;
    for (pairs, 0..) |p, slot| if (p.phase != .free) close(@intCast(slot));
    checks_mod.closeAll(&checks);
    turn_len = 0;
    later_len = 0;
    syncs_len = 0;
    ready = false;
}

fn listIndex(listener_index: u16, kind: DeadlineKind) u16 {
    return listener_index * 2 + @as(u16, @intCast(compat.enumIndex(kind)));
}

/// Puts the pair at the tail of its listener's list of `kind`, with a new deadline.
fn listMove(slot: u32, kind: DeadlineKind, deadline_ms: u64) void {
    listRemove(slot);
    const p = &pairs[slot];
    const index = listIndex(p.listener_index, kind);
    const l = &lists[index];
    p.list = index;
    p.deadline_ms = deadline_ms;
    p.prev = l.tail;
    p.next = none;
    if (l.tail == none) l.head = slot else pairs[l.tail].next = slot;
    l.tail = slot;
}

fn listRemove(slot: u32) void {
    const p = &pairs[slot];
    const l = &lists[p.list];
    const linked = p.prev != none or l.head == slot;
    if (!linked) return;
    if (p.prev == none) l.head = p.next else pairs[p.prev].next = p.next;
    if (p.next == none) l.tail = p.prev else pairs[p.next].prev = p.prev;
    p.prev = none;
    p.next = none;
}

/// The nearest connect or idle deadline; null for none; 0 (now) while pairs wait to be
/// pumped (`later`).
pub fn nextMs() ?u64 {
    if (!ready) return null;
    if (turn_len > 0 or later_len > 0) return 0;
    var next: ?u64 = checks_mod.nextMs(&checks);
    for (lists) |l| {
        if (l.head == none) continue;
        const at = pairs[l.head].deadline_ms;
        next = @min(next orelse at, at);
    }
    return next;
}

/// Ends connects that took too long (the next server is tried) and silent pairs; starts the
/// health checks that are due.
pub fn expire(now_ms: u64) void {
    if (!ready) return;
    checks_mod.expire(&checks, &servers, epoll_fd, now_ms);
    for (&lists, 0..) |*l, index| {
        // Bounded: each pass takes the list's head off it (a retry joins the tail).
        var budget: usize = pairs.len;
        while (budget > 0 and l.head != none) : (budget -= 1) {
            const slot = l.head;
            if (pairs[slot].deadline_ms > now_ms) break;
            if (index % 2 == compat.enumIndex(DeadlineKind.connect)) {
                if (connectedMeanwhile(&pairs[slot])) {
                    markConnected(slot, now_ms);
                    queue(slot);
                    continue;
                }
                connectFailed(slot, now_ms);
            } else {
                const counters = metrics.at(pairs[slot].listener_index);
                metrics.add(&counters.timeouts[compat.enumIndex(metrics.TimeoutKind.idle)], 1);
                close(slot);
            }
        }
    }
}

// With io_uring (`useRing`), a pair's sockets are not in the epoll set: each side has a
// multishot receive into the ring's provided buffers (its `queue`), the bytes waiting for a
// side go out with one send on the ring, put in the turn's one io_uring_enter with every
// other send (`submitRing`; `MSG_DONTWAIT`, so the kernel completes it there), and a side
// whose socket was full waits for a one-shot poll for room. The pump takes what the
// receives delivered into the flows' buffers, so back-pressure, half-close and the end are
// the epoll pump's: a flow's buffer full leaves its source's bytes queued, and a queue of
// `ring_queue_limit` cancels its receive until the pump takes some (the kernel's window
// then closes towards the sender). A send's bytes stay where they are (no compaction of
// its buffer) until its completion; the FIN (`shutdown` or close) follows that completion.

/// The generation in a side's ring tokens: the server side's changes with each connect,
/// so that a completion for the socket of a failed connect is not taken for the next's.
fn ringGeneration(p: *const Pair, side: usize) u24 {
    if (side == client) return p.generation;
    return p.generation +% (@as(u24, p.tries) << 16);
}

fn ringToken(slot: u32, side: usize, kind: u8) u64 {
    const index = slot * 2 + @as(u32, @intCast(side));
    return ring_mod.token(kind, ringGeneration(&pairs[slot], side), index);
}

/// `pump` for a pair on the ring: takes what the receives delivered into the flows'
/// buffers, queues a send of what waits for each side (one per side at a time), passes
/// FINs on; the ring's operations are brought up to date at the turn's end (`submitRing`).
fn pumpRing(slot: u32, now_ms: u64) void {
    const p = &pairs[slot];
    var moved = false;
    for ([_]usize{ client, server }) |from| {
        const took = takeQueued(slot, from) catch return abort(slot);
        moved = took or moved;
        const to = 1 - from;
        const waits = p.flows[from].pending() > 0 and p.fds[to] != closed;
        if (waits and p.sending[to] == .no and p.writable[to]) p.sending[to] = .queued;
    }
    moved = passFins(p) or moved;
    if (p.flows[client].shut and p.flows[server].shut) return close(slot);
    if (moved and p.phase == .open) listMove(slot, .idle, now_ms + idle_ms[p.listener_index]);
    listSync(slot);
}

/// Takes the bytes side `from`'s receive delivered into its flow's buffer, as far as it has
/// room; then its end (the flow's `eof`) or its error. Whether a byte (or the end) came.
fn takeQueued(slot: u32, from: usize) Broken!bool {
    const p = &pairs[slot];
    const r = ring.?;
    const f = &p.flows[from];
    const q = &p.queue[from];
    const buf = buffer(slot, from);
    if (f.eof) return false;
    // Room at the front, once no send reads from there.
    if (f.end == buf.len and f.start > 0 and p.sending[1 - from] == .no) {
        compat.copyLeft(buf[0..f.pending()], buf[f.start..f.end]);
        f.end -= f.start;
        f.start = 0;
    }
    const got = r.take(q, buf[f.end..]);
    f.end += @intCast(got);
    const moved = got > 0;
    if (q.head != ring_mod.none) return moved;
    if (q.failed) return error.Reset;
    if (q.eof) f.eof = true;
    return moved or q.eof;
}

/// Lists the pair for `submitRing`.
fn listSync(slot: u32) void {
    const p = &pairs[slot];
    if (!p.on_ring or p.syncing) return;
    // Never full in practice (twice the pairs); should it be, the pair's operations go now.
    if (syncs_len == syncs.len) return syncPair(ring.?, slot);
    p.syncing = true;
    syncs[syncs_len] = .{ .slot = slot, .generation = p.generation };
    syncs_len += 1;
}

/// Brings the ring operations of the pairs pumped this turn up to date, just before the
/// turn's io_uring_enter (the worker calls it): nothing touches a send's bytes between here
/// and that system call, which completes the send, and a pair closed meanwhile sends and
/// arms nothing.
pub fn submitRing() void {
    const r = ring orelse return;
    if (!ready) return;
    for (syncs[0..syncs_len]) |q| {
        const p = &pairs[q.slot];
        if (p.phase == .free or p.generation != q.generation or !p.syncing) continue;
        p.syncing = false;
        syncPair(r, q.slot);
    }
    syncs_len = 0;
}

/// Buffers came back after a shortage (see `Ring.short`): the receives of pairs left
/// unarmed meanwhile are armed.
pub fn armWaiting() void {
    const r = ring orelse return;
    if (!ready) return;
    for (pairs, 0..) |*p, slot| {
        if (p.phase == .free or !p.on_ring) continue;
        if (p.recv[client] != .idle and p.recv[server] != .idle) continue;
        syncPair(r, @intCast(slot));
        if (!r.mayReceive()) return;
    }
}

/// Per side: the send that waits, a receive while the side has more to give and room in its
/// queue (cancelled when not), a poll while its socket was full with bytes waiting for it or
/// its connect's end is not known.
fn syncPair(r: *ring_mod.Ring, slot: u32) void {
    const p = &pairs[slot];
    for ([_]usize{ client, server }) |side| {
        const fd = p.fds[side];
        if (fd == closed) continue;
        if (p.sending[side] == .queued) {
            const f = &p.flows[1 - side];
            const bytes = buffer(slot, 1 - side)[f.start..f.end];
            // The flow's last bytes: the FIN follows this send's completion (`passFins`).
            const more: u32 = if (f.eof) linux.MSG.MORE else 0;
            const data = ringToken(slot, side, ring_mod.Kind.proxy_send);
            r.sendWith(data, fd, bytes, more) catch return abort(slot);
            p.sending[side] = .submitted;
        }
        const q = &p.queue[side];
        const connected = side == client or p.phase == .open;
        const done = q.eof or q.failed or p.flows[side].eof;
        const receiving = connected and !done and q.bytes < ring_queue_limit;
        const recv_token = ringToken(slot, side, ring_mod.Kind.proxy_recv);
        if (receiving and p.recv[side] == .idle and r.mayReceive()) {
            r.armRecv(recv_token, fd) catch return abort(slot);
            p.recv[side] = .armed;
        } else if (!receiving and p.recv[side] == .armed) {
            r.cancel(recv_token);
            p.recv[side] = .cancelling;
        }
        const full = !p.writable[side] and p.flows[1 - side].pending() > 0;
        const connecting = side == server and p.phase == .connecting and p.sending[side] == .no;
        if ((full or connecting) and p.poll[side] == .idle) {
            const poll_token = ringToken(slot, side, ring_mod.Kind.proxy_poll);
            r.armPoll(poll_token, fd, linux.POLL.OUT) catch return abort(slot);
            p.poll[side] = .armed;
        }
    }
}

/// A completion of a pair's ring operation (kinds `proxy_recv`, `proxy_send`, `proxy_poll`).
/// One for a pair closed since, or for a failed connect's socket, only gives its buffer back.
pub fn onRing(t: connections_mod.Token, res: i32, flags: u32, now_ms: u64) void {
    const slot = t.index >> 1;
    const side: usize = t.index & 1;
    const live = ready and slot < pairs.len and pairs[slot].phase != .free and
        pairs[slot].on_ring and pairs[slot].fds[side] != closed and
        ringGeneration(&pairs[slot], side) == t.generation;
    const buffered = flags & linux.IORING_CQE_F_BUFFER != 0;
    if (!live or (buffered and res <= 0)) {
        if (buffered) if (ring) |r| r.put(ring_mod.bufferId(flags));
        if (!live) return;
    }
    switch (t.kind) {
        ring_mod.Kind.proxy_recv => onRingRecv(slot, side, res, flags),
        ring_mod.Kind.proxy_send => onRingSend(slot, side, res, now_ms),
        else => onRingPoll(slot, side, res, now_ms),
    }
}

fn onRingRecv(slot: u32, side: usize, res: i32, flags: u32) void {
    const p = &pairs[slot];
    if (!ring_mod.hasMore(flags)) p.recv[side] = .idle;
    const q = &p.queue[side];
    if (res > 0) {
        ring.?.buffers.push(q, ring_mod.bufferId(flags), @intCast(res));
    } else if (res == 0) {
        q.eof = true;
    } else switch (compat.errnoOf(res)) {
        // Out of buffers: armed again once enough are back (see `Ring.short`).
        .NOBUFS => ring.?.starve(),
        // Cancelled or interrupted: armed again while wanted.
        .CANCELED, .INTR, .AGAIN => {},
        else => q.failed = true,
    }
    queue(slot);
}

/// A send's completion: its bytes leave the flow's buffer; a full socket waits for room; an
/// error breaks the pair (or, connecting, is the connect's failure).
fn onRingSend(slot: u32, to: usize, res: i32, now_ms: u64) void {
    const p = &pairs[slot];
    if (p.sending[to] != .submitted) return;
    p.sending[to] = .no;
    const f = &p.flows[1 - to];
    const n = countMoved(p, to, sys.result(res)) catch |err| switch (err) {
        error.Refused => return connectFailed(slot, now_ms),
        error.Reset => return abort(slot),
    };
    assert(n <= f.pending());
    f.start += n;
    if (f.start == f.end) {
        f.start = 0;
        f.end = 0;
    }
    if (to == server and p.phase == .connecting) {
        if (n > 0) markConnected(slot, now_ms);
        learnEager(p);
    }
    if (n > 0 and p.phase == .open) listMove(slot, .idle, now_ms + idle_ms[p.listener_index]);
    queue(slot);
}

/// A poll's completion: the side's socket has room again, or (connecting) the connect ended.
fn onRingPoll(slot: u32, side: usize, res: i32, now_ms: u64) void {
    const p = &pairs[slot];
    p.poll[side] = .idle;
    if (res < 0) return queue(slot);
    const events: u32 = @intCast(res);
    if (p.phase == .connecting and side == server) return finishConnect(slot, events, now_ms);
    if (events & linux.POLL.ERR != 0) return abort(slot);
    if (events & (linux.POLL.OUT | linux.POLL.HUP) != 0) p.writable[side] = true;
    queue(slot);
}

/// Ends a side's ring operations (the kernel's own reference to the socket would keep it
/// open after close) and gives back the buffers its receive delivered.
fn releaseSide(slot: u32, side: usize) void {
    const r = ring orelse return;
    const p = &pairs[slot];
    if (!p.on_ring) return;
    if (p.recv[side] == .armed) r.cancel(ringToken(slot, side, ring_mod.Kind.proxy_recv));
    if (p.poll[side] == .armed) r.cancel(ringToken(slot, side, ring_mod.Kind.proxy_poll));
    p.recv[side] = .idle;
    p.poll[side] = .idle;
    p.sending[side] = .no;
    var budget: usize = ring_mod.buffer_count;
    while (budget > 0) : (budget -= 1) {
        const id = r.buffers.popFront(&p.queue[side]);
        if (id == ring_mod.none) break;
        r.put(id);
    }
    p.queue[side] = .{};
}

const testing = std.testing;

/// A loopback socket bound to a port the kernel picks: listening, or (`listening` false)
/// bound only, so that a connect to it is refused.
fn testSocket(listening: bool) !struct { fd: sys.Fd, server: config.Server } {
    const flags = linux.SOCK.STREAM | linux.SOCK.CLOEXEC | linux.SOCK.NONBLOCK;
    const fd = try sys.socket(linux.AF.INET, flags, 0);
    const sa = address.SockAddr.init(.{ .ip4 = .{ 127, 0, 0, 1 } }, 0);
    try sys.bind(fd, sa.ptr(), sa.len);
    if (listening) try sys.listen(fd, 16);
    var bound: address.SockAddr = .{ .storage = undefined, .len = 0 };
    bound.len = try sys.getsockname(fd, &bound.storage);
    const loopback: address.Address = .{ .ip4 = .{ 127, 0, 0, 1 } };
    return .{ .fd = fd, .server = .{ .address = loopback, .port = bound.port() } };
}

/// The next connection of a test listener, turning the loop meanwhile (bounded); `flags` of
/// accept4 (the worker's accept makes a proxied client non-blocking).
fn testAccept(epfd: sys.Fd, listen_fd: sys.Fd, flags: u32) !sys.Fd {
    for (0..100) |_| {
        const rc = linux.accept4(listen_fd, null, null, linux.SOCK.CLOEXEC | flags);
        switch (compat.errno(rc)) {
            .SUCCESS => return @intCast(rc),
            .AGAIN => try testTurn(epfd, 20),
            else => return error.AcceptFailed,
        }
    }
    return error.NoConnection;
}

/// The worker's side: epoll events of the proxy's sockets, for up to `timeout_ms`.
fn testTurn(epfd: sys.Fd, timeout_ms: i32) !void {
    if (ring) |r| return testRingTurn(r, timeout_ms);
    var events: [16]linux.epoll_event = undefined;
    const n = try sys.epollWait(epfd, &events, timeout_ms);
    for (events[0..n]) |e| {
        onEvent(connections_mod.Token.decode(e.data.u64), e.events, sys.monotonicMs());
    }
    endTurn(sys.monotonicMs());
}

/// The worker's side with io_uring: the pairs' operations go in, and their completions are
/// handled (any other only gives its buffer back).
fn testRingTurn(r: *ring_mod.Ring, timeout_ms: i32) !void {
    endTurn(sys.monotonicMs());
    submitRing();
    try r.wait(timeout_ms);
    var cqes: [64]linux.io_uring_cqe = undefined;
    const n = r.completions(&cqes);
    for (cqes[0..n]) |cqe| {
        const t = connections_mod.Token.decode(cqe.user_data);
        const ours = t.kind >= ring_mod.Kind.proxy_recv and t.kind <= ring_mod.Kind.proxy_poll;
        if (ours) {
            onRing(t, cqe.res, cqe.flags, sys.monotonicMs());
        } else if (cqe.flags & linux.IORING_CQE_F_BUFFER != 0) {
            r.put(ring_mod.bufferId(cqe.flags));
        }
    }
    endTurn(sys.monotonicMs());
}

/// The client's FIN reaches the server, which answers and ends too: the answer and the FIN
/// reach the client, and the pair is freed.
fn expectHalfClose(epfd: sys.Fd, user: sys.Fd, peer: sys.Fd) !void {
    var buf: [64]u8 = undefined;
    sys.shutdownWrite(user);
    try testing.expectEqual(@as(usize, 0), try testRead(epfd, peer, &buf));
    try sys.writeAll(peer, "bye");
    sys.shutdownWrite(peer);
    try testing.expectEqualStrings("bye", buf[0..try testRead(epfd, user, &buf)]);
    try testing.expectEqual(@as(usize, 0), try testRead(epfd, user, &buf));
    try testing.expectEqual(@as(u32, 0), openCount());
}

/// Turns the loop until `fd` has bytes or its end to give (bounded), then reads them.
fn testRead(epfd: sys.Fd, fd: sys.Fd, buf: []u8) !usize {
    for (0..100) |_| {
        const rc = linux.recvfrom(fd, buf.ptr, buf.len, linux.MSG.DONTWAIT, null, null);
        switch (compat.errno(rc)) {
            .SUCCESS => return rc,
            .AGAIN => try testTurn(epfd, 20),
            else => return error.ReadFailed,
        }
    }
    return error.NothingCame;
}

test "a refused server is retried on the next; bytes go both ways; FINs are passed on" {
    const li = comptime for (config.listeners, 0..) |l, i| {
        if (l.proxy != null) break i;
    } else unreachable;
    if (config.listeners[li].proxy.?.servers.len < 2 or config.listeners[li].proxy.?.retries < 1) {
        return;
    }
    const epfd = try sys.epollCreate();
    defer sys.close(epfd);
    try init(std.heap.page_allocator, epfd, .{});
    defer ready = false;
    const refusing = try testSocket(false);
    defer sys.close(refusing.fd);
    const upstream = try testSocket(true);
    defer sys.close(upstream.fd);
    const front = try testSocket(true);
    defer sys.close(front.fd);
    // Round-robin starts at the first server: the refusing one, then the retry.
    servers[li].next = 0;
    targets[li][0] = refusing.server;
    targets[li][1] = upstream.server;
    const user = try sys.socket(linux.AF.INET, linux.SOCK.STREAM | linux.SOCK.CLOEXEC, 0);
    defer sys.close(user);
    const front_sa = address.SockAddr.init(front.server.address, front.server.port);
    const connected = compat.errno(linux.connect(user, front_sa.ptr(), front_sa.len));
    try testing.expectEqual(.SUCCESS, connected);
    open(try testAccept(epfd, front.fd, linux.SOCK.NONBLOCK), @intCast(li), sys.monotonicMs());
    try testing.expectEqual(@as(u32, 1), openCount());
    const peer = try testAccept(epfd, upstream.fd, 0);
    defer sys.close(peer);
    try sys.writeAll(user, "hello");
    var buf: [64]u8 = undefined;
    try testing.expectEqualStrings("hello", buf[0..try testRead(epfd, peer, &buf)]);
    try sys.writeAll(peer, "world");
    try testing.expectEqualStrings("world", buf[0..try testRead(epfd, user, &buf)]);
    try expectHalfClose(epfd, user, peer);
    // The refusing server was left out; the other is in rotation.
    try testing.expect(servers[li].ejected_until_ms[0] > 0);
    try testing.expectEqual(@as(u64, 0), servers[li].ejected_until_ms[1]);
}

test "with io_uring, a pair's bytes and FINs go both ways through the ring" {
    const li = comptime for (config.listeners, 0..) |l, i| {
        if (l.proxy != null and !l.proxy.?.zero_copy) break i;
    } else unreachable;
    const epfd = try sys.epollCreate();
    defer sys.close(epfd);
    try init(std.heap.page_allocator, epfd, .{});
    defer ready = false;
    const r = switch (ring_mod.Ring.open(std.heap.page_allocator)) {
        .ring => |opened| opened,
        // The kernel (or a seccomp profile) refuses io_uring: the worker would use epoll.
        .refused => return error.SkipZigTest,
    };
    defer r.ring.deinit();
    try useRing(std.heap.page_allocator, r);
    defer ring = null;
    const upstream = try testSocket(true);
    defer sys.close(upstream.fd);
    const front = try testSocket(true);
    defer sys.close(front.fd);
    for (targets[li][0..config.listeners[li].proxy.?.servers.len]) |*t| t.* = upstream.server;
    const user = try sys.socket(linux.AF.INET, linux.SOCK.STREAM | linux.SOCK.CLOEXEC, 0);
    defer sys.close(user);
    const front_sa = address.SockAddr.init(front.server.address, front.server.port);
    const connected = compat.errno(linux.connect(user, front_sa.ptr(), front_sa.len));
    try testing.expectEqual(.SUCCESS, connected);
    try sys.writeAll(user, "first");
    open(try testAccept(epfd, front.fd, linux.SOCK.NONBLOCK), @intCast(li), sys.monotonicMs());
    try testing.expect(pairs[free[free_len]].on_ring);
    const peer = try testAccept(epfd, upstream.fd, 0);
    defer sys.close(peer);
    var buf: [64]u8 = undefined;
    try testing.expectEqualStrings("first", buf[0..try testRead(epfd, peer, &buf)]);
    // Several exchanges each way, through the receives and sends on the ring.
    for (0..3) |_| {
        try sys.writeAll(user, "ping");
        try testing.expectEqualStrings("ping", buf[0..try testRead(epfd, peer, &buf)]);
        try sys.writeAll(peer, "pong");
        try testing.expectEqualStrings("pong", buf[0..try testRead(epfd, user, &buf)]);
    }
    try expectHalfClose(epfd, user, peer);
}
