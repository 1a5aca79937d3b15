//! A worker: one single-threaded epoll loop that serves its share of every listener.
//!
//! The loop owns the listening sockets, the signals and the supervisor's control pipe; the
//! connections and their deadlines live in `connections.zig`, the drain policy in
//! `drain.zig`, and what is said on a connection in the handlers.
//!
//! Level-triggered epoll throughout, chosen deliberately: listening sockets may be shared
//! with a worker of another generation during a restart, and a connection is read once
//! per wakeup (one read, one write per request in steady state) without having to drain
//! the socket, so no readiness is ever lost.
const std = @import("std");
const config = @import("../config.zig");
const sys = @import("../net/sys.zig");
const compat = @import("../compat.zig");
const cli = @import("../cli.zig");
const listener_mod = @import("../net/listener.zig");
const handlers = @import("../handlers.zig");
const connections_mod = @import("connections.zig");
const drain_mod = @import("drain.zig");
const datagrams_mod = @import("datagrams.zig");
const stats_mod = @import("stats.zig");
const metrics = @import("../metrics/cell.zig");
const log = @import("../log.zig");
const access_log = @import("../access_log.zig");
const worker_link = @import("../supervisor/worker_link.zig");
const handover = @import("../upgrade/handover.zig");
const admin_server = @import("../admin/server.zig");
const admin_view = @import("admin_view.zig");
const events_mod = @import("../events.zig");
const ring_mod = @import("ring.zig");
const linux = std.os.linux;
const assert = std.debug.assert;

const Token = connections_mod.Token;

/// A listening socket this worker serves, and the listener it belongs to.
pub const Socket = struct {
    fd: sys.Fd,
    listener_index: u16,
    /// Someone else keeps the socket open after this process (systemd, for a socket it
    /// passed): it must stay a full member of its group.
    held_elsewhere: bool = false,
};

pub const Options = struct {
    sockets: []const Socket,
    index: u16,
    generation: u32,
    limits: cli.Limits,
    /// A descriptor whose hang-up means "stop gracefully" (the supervisor's end of a pipe);
    /// null when signals alone control the worker.
    control_fd: ?sys.Fd = null,
    /// The supervisor link (heartbeats, adopt/release commands); null in standalone mode.
    /// With a link, `sockets` holds this slot's sockets first, then those of the slots it
    /// may adopt, which are watched only while adopted.
    link: ?*worker_link.Link = null,
    /// Standalone with `--handover`: where the next process asks for this one's sockets.
    handover: ?*const handover.Server = null,
    /// Standalone only: the admin listener this process serves itself.
    admin: ?admin_view.Admin = null,
};

pub const Stats = stats_mod.Stats;

pub const StopReason = @import("stop.zig").StopReason;

/// What an epoll event is about (the `kind` of its token).
const Kind = struct {
    const signal: u8 = 0;
    const listener: u8 = 1;
    const connection: u8 = connections_mod.connection_kind;
    const control: u8 = 3;
    const handover: u8 = 4;
    const admin: u8 = 5;
    const upstream: u8 = handlers.upstream.token_kind;
    const proxy: u8 = handlers.proxy.token_kind;
};

/// Accepts per listener wakeup before giving connections a turn: fair, and bounded.
const accept_batch = 64;
/// Datagrams per UDP wakeup, for the same reason (at least one batch).
const datagram_turn = @max(64, config.udp_batch);
/// Replies a UDP socket keeps while its send buffer is full: four batches, and at least 64.
pub const reply_queue = @max(64, 4 * @as(usize, config.udp_batch));
const max_events = 256;
/// After an accept error that another try would repeat at once (no memory, no descriptor
/// to spare), listeners rest this long instead of spinning on a readable socket.
const accept_backoff_ms = 100;

/// How soon a worker whose table is full and holds nothing it may close looks again: an idle
/// connection then becomes old enough to be evicted (`evict_min_idle_ms`), or a slow request
/// slow enough.
const evict_retry_ms = 50;
const max_sockets = (cli.max_ring + 1) * config.listeners.len;
/// How often, and how long, a --handover successor tries to bind the admin port.
const admin_retry_ms = 100;
const admin_retry_window_ms = 20_000;

/// Completions taken per call, and calls per turn (the rest waits for the next turn).
const completion_batch = 256;
const completion_passes = 16;

const Accepted = struct { fd: sys.Fd, socket_index: u16 };

/// Lets one warning of a kind through per second, and says how many were held back.
const Throttle = struct {
    next_ms: u64 = 0,
    suppressed: u64 = 0,

    fn allow(self: *Throttle, now_ms: u64) ?u64 {
        if (now_ms < self.next_ms) {
            self.suppressed += 1;
            return null;
        }
        self.next_ms = now_ms + 1000;
        const held = self.suppressed;
        self.suppressed = 0;
        return held;
    }
};

pub const Worker = struct {
    /// Gave the buffers, and gives the application modules their per-worker state.
    allocator: std.mem.Allocator,
    options: Options,
    epfd: sys.Fd,
    sigfd: sys.Fd,
    /// Held open so that a worker out of descriptors can still accept and close, instead
    /// of spinning on a listener that stays readable (the EMFILE trick).
    spare_fd: ?sys.Fd,
    pid: i32,
    conns: connections_mod.Connections,
    /// Whether each of `options.sockets` is still open (events of a closed one are dropped).
    listening: [max_sockets]bool = @splat(false),
    accepting: bool = true,
    listeners_paused: bool = false,
    /// Listeners rest until then after an accept error that would repeat at once.
    accept_resume_ms: ?u64 = null,
    /// With the table full and nothing in it evictable yet, listeners rest until a slot frees
    /// up or until then, when an eviction may have become possible.
    full_retry_ms: ?u64 = null,
    drain: ?drain_mod.Drain = null,
    stop: ?StopReason = null,
    /// Standalone with a shutdown delay: a SIGTERM arrived, the process is not ready any
    /// more (the admin listener's /readyz) and serves on until then; then it drains.
    shutdown_delay_until_ms: ?u64 = null,
    /// The buffers of `config.udp_batch` datagrams, shared by the UDP listeners.
    datagrams: datagrams_mod.Batch,
    /// Per socket of `options.sockets`: the UDP replies waiting for room in its send buffer.
    outboxes: []datagrams_mod.Outbox,
    accept_warnings: Throttle = .{},
    /// The listening sockets went to a successor (`--handover`), which serves them now:
    /// stopping only closes this process's descriptors.
    handed_over: bool = false,
    /// Standalone: the admin listener, served by this loop.
    admin: ?admin_server.Server = null,
    /// With --handover the admin port may still be the previous process's: bound again
    /// at this time, until `admin_retry_until_ms` (that process closes it at the hand-over).
    admin_retry_at_ms: ?u64 = null,
    admin_retry_until_ms: u64 = 0,
    started_ms: u64 = 0,
    /// With io_uring (see ring.zig): the ring, which sockets accept through it and the state
    /// of their multishot accepts, and whether epoll may have more to report than its poll
    /// on the ring said.
    ring: ?*ring_mod.Ring = null,
    on_ring: [max_sockets]bool = @splat(false),
    accepts: [max_sockets]ring_mod.Op = @splat(.idle),
    /// Listeners on the ring closed by the worker whose accept has not ended yet: each is
    /// closed at its accept's last completion, after taking what is queued (`closeNow`).
    close_due: [max_sockets]bool = @splat(false),
    epoll_hot: bool = true,
    /// Connections the ring accepted, given slots once every completion of the turn is in (a
    /// request that arrived with them is then queued on its connection, which is not evicted
    /// for them, as `FIONREAD` tells with epoll). Those that find no slot (the table full,
    /// nothing evictable yet) wait here for a later turn, as they would wait in the
    /// listener's queue with epoll.
    accepted: [completion_passes * completion_batch]Accepted = undefined,
    accepted_len: u32 = 0,
    /// The UDP socket whose datagrams' replies `datagrams` holds (see `onRingDatagram`).
    held_socket: u16 = 0,
    /// With io_uring: a socket's operation on the ring ended or could not be armed this
    /// turn; `armAccepts` runs after the turn's completions (otherwise only when an accept
    /// completes, a listener pauses or resumes, or the worker stops).
    rearm_due: bool = false,

    /// Allocates every buffer the worker will ever use and registers the sockets.
    pub fn init(allocator: std.mem.Allocator, options: Options) !Worker {
        assert(options.sockets.len <= max_sockets);
        var set = compat.emptySigset();
        linux.sigaddset(&set, linux.SIG.TERM);
        linux.sigaddset(&set, linux.SIG.INT);
        linux.sigaddset(&set, linux.SIG.QUIT);
        linux.sigaddset(&set, linux.SIG.HUP);
        linux.sigaddset(&set, linux.SIG.PIPE);
        // Reopen the request log (log rotation); taken, and harmless, without one.
        linux.sigaddset(&set, linux.SIG.USR1);
        const sigfd = try sys.signalfd(&set);
        const epfd = try sys.epollCreate();
        try sys.epollCtl(epfd, linux.EPOLL.CTL_ADD, sigfd, linux.EPOLL.IN, token(Kind.signal, 0));
        const ring = if (options.limits.io == .io_uring) openRing(allocator, options) else null;
        var listening: [max_sockets]bool = @splat(false);
        var on_ring: [max_sockets]bool = @splat(false);
        for (options.sockets, 0..) |socket, i| {
            listening[i] = true;
            handlers.proxy.prepareListener(socket.fd, socket.listener_index);
            // Another slot's sockets are watched only once adopted (see worker_link.zig).
            if (options.link != null and !worker_link.Link.watchedAtStart(i)) continue;
            on_ring[i] = if (ring) |r| onRing(r, socket) else false;
            const udp = config.listeners[socket.listener_index].protocol == .udp;
            if (on_ring[i] and !udp) continue;
            // A UDP socket receiving through the ring is in the epoll set for its outbox's
            // EPOLLOUT only (see `watchOutbox`).
            const events: u32 = if (on_ring[i]) 0 else linux.EPOLL.IN;
            const data = token(Kind.listener, @intCast(i));
            try sys.epollCtl(epfd, linux.EPOLL.CTL_ADD, socket.fd, events, data);
        }
        if (options.control_fd) |fd| {
            try sys.epollCtl(epfd, linux.EPOLL.CTL_ADD, fd, linux.EPOLL.IN, token(Kind.control, 0));
        }
        if (options.handover) |server| {
            const data = token(Kind.handover, 0);
            try sys.epollCtl(epfd, linux.EPOLL.CTL_ADD, server.fd, linux.EPOLL.IN, data);
        }
        const pid = linux.getpid();
        if (!access_log.open()) return error.AccessLogUnavailable;
        try handlers.initApps(allocator);
        errdefer handlers.deinitApps(allocator);
        try handlers.upstream.init(allocator, epfd);
        try handlers.proxy.init(allocator, epfd, options.limits);
        const identity: connections_mod.Identity = .{
            .worker_index = options.index,
            .pid = pid,
            .generation = options.generation,
        };
        var conns = try connections_mod.Connections.init(allocator, epfd, identity, options.limits);
        if (ring) |r| try conns.useRing(allocator, r);
        if (ring) |r| try handlers.proxy.useRing(allocator, r);
        if (ring) |r| if (options.link) |link| r.holdUntilGone(link.report_fd);
        return .{
            .allocator = allocator,
            .options = options,
            .epfd = epfd,
            .sigfd = sigfd,
            .spare_fd = openSpare(),
            .pid = pid,
            .conns = conns,
            .listening = listening,
            .datagrams = try datagrams_mod.Batch.init(allocator, config.udp_batch),
            .outboxes = try initOutboxes(allocator, options.sockets.len),
            .ring = ring,
            .on_ring = on_ring,
        };
    }

    fn initOutboxes(allocator: std.mem.Allocator, n: usize) ![]datagrams_mod.Outbox {
        const all = try allocator.alloc(datagrams_mod.Outbox, n);
        for (all) |*box| box.* = datagrams_mod.Outbox.init(allocator, reply_queue);
        return all;
    }

    /// The ring asked for, or null (and one `io_fallback` event) where the kernel refuses it.
    fn openRing(allocator: std.mem.Allocator, options: Options) ?*ring_mod.Ring {
        switch (ring_mod.Ring.open(allocator)) {
            .ring => |r| return r,
            .refused => |why| {
                events_mod.emitIoFallback(options.index, why.errno, why.step);
                return null;
            },
        }
    }

    /// Whether a socket is served through the ring: a TCP listener (a proxy's clients are
    /// handed to it, `place`, whose pairs move bytes through the ring too, see
    /// handlers/proxy.zig), and a UDP socket where the kernel has multishot `recvmsg`.
    fn onRing(ring: *const ring_mod.Ring, socket: Socket) bool {
        return switch (config.listeners[socket.listener_index].protocol) {
            .tcp => true,
            .udp => ring.takesDatagrams(),
        };
    }

    /// Opens the standalone admin listener, if one is asked for. With --handover a port in
    /// use is the previous process's, which lets it go at the hand-over: tried again later.
    pub fn openAdmin(self: *Worker) !void {
        const a = self.options.admin orelse return;
        const retry = self.options.handover != null;
        self.admin = a.open(self.epfd, adminToken, self.options.limits, retry) catch |err| {
            if (!retry or err != error.AddressInUse) return err;
            const now = sys.monotonicMs();
            self.admin_retry_at_ms = now + admin_retry_ms;
            self.admin_retry_until_ms = now + admin_retry_window_ms;
            return;
        };
    }

    fn retryAdmin(self: *Worker, now_ms: u64) void {
        self.admin_retry_at_ms = null;
        const a = self.options.admin orelse return;
        const last = now_ms >= self.admin_retry_until_ms;
        self.admin = a.open(self.epfd, adminToken, self.options.limits, !last) catch {
            if (!last) self.admin_retry_at_ms = now_ms + admin_retry_ms;
            return;
        };
        self.admin.?.responder = admin_view.responder(self);
        log.info("admin listener on port {d}", .{self.admin.?.port});
    }

    fn adminToken(index: u32) u64 {
        return token(Kind.admin, index);
    }

    fn token(kind: u8, index: u32) u64 {
        return (Token{ .kind = kind, .index = index }).encode();
    }

    fn listenerToken(index: u32) u64 {
        return token(Kind.listener, index);
    }

    fn openSpare() ?sys.Fd {
        const rc = linux.open("/dev/null", .{ .CLOEXEC = true }, 0);
        if (compat.errno(rc) != .SUCCESS) return null;
        return @intCast(rc);
    }

    pub fn stats(self: *const Worker) Stats {
        _ = self;
        var all = metrics.stats(metrics.own);
        all.access_log_errors = access_log.counters.errors;
        all.access_log_dropped = access_log.counters.dropped;
        return all;
    }

    /// Connections open: the connection table's and the proxied clients'.
    fn openCount(self: *const Worker) u32 {
        return self.conns.openCount() + handlers.proxy.openCount();
    }

    /// Serves until stopped; returns why it stopped.
    pub fn run(self: *Worker) StopReason {
        self.started_ms = sys.monotonicMs();
        if (self.admin) |*a| a.responder = admin_view.responder(self);
        if (self.ring) |ring| {
            ring.armEpoll(self.epfd) catch |err| {
                log.err("io_uring: cannot watch the epoll set: {s}", .{@errorName(err)});
                return self.closeAll(.immediate);
            };
            self.armAccepts();
        }
        var events: [max_events]linux.epoll_event = undefined;
        while (true) {
            // The heartbeat comes from the loop itself: a loop that stops turning stops
            // beating, and the supervisor's watchdog notices.
            if (self.options.link) |link| link.onTick();
            const now = sys.monotonicMs();
            if (self.shutdown_delay_until_ms) |at| if (now >= at) {
                self.shutdown_delay_until_ms = null;
                self.beginStop(.graceful, now);
            };
            if (self.stop) |reason| {
                if (reason == .immediate) return self.closeAll(reason);
                // Datagram modules' calls in flight are answered first, as connections are.
                const calls = handlers.upstream.datagramsInFlight();
                // So are UDP replies kept for room, and connections the ring accepted.
                const waiting = self.repliesWaiting();
                const settled = self.acceptsSettled();
                if (self.openCount() == 0 and calls == 0 and waiting == 0 and settled) {
                    return self.closeAll(reason);
                }
                const drain = &self.drain.?;
                if (drain.takeSweep(now)) self.conns.closeIdle();
                if (drain.expired(now)) {
                    log.warn("drain timeout: closing {d} open connections", .{
                        self.openCount(),
                    });
                    return self.closeAll(reason);
                }
            }
            // The replies routes read on the previous turn are let go before new ones come.
            handlers.upstream.beginTurn();
            self.conns.expire(now);
            handlers.upstream.expire(now);
            handlers.proxy.expire(now);
            if (self.admin) |*a| a.expire(now);
            access_log.flushIfDue(now);
            if (self.admin_retry_at_ms) |at| if (now >= at) self.retryAdmin(now);
            handlers.tickApps(now);
            self.conns.applyWakes(now);
            handlers.deliverUpstreamReplies(self.datagrams.spareReply(), self);
            self.resumeListenersIfRoom(now);
            // Proxied pairs touched since the last batch (accepts of a drain, say) move now.
            handlers.proxy.endTurn(now);
            const n = self.waitForEvents(&events, now) catch |err| {
                // With io_uring, the error number io_uring_enter returned.
                const errno = ring_mod.enter_errno;
                const detail: []const u8 = if (self.ring == null) "" else @tagName(errno);
                log.err("waiting for events failed: {s} {s}", .{ @errorName(err), detail });
                return self.closeAll(.immediate);
            };
            const woke = sys.monotonicMs();
            for (events[0..n]) |event| self.dispatch(event, woke);
            handlers.proxy.endTurn(woke);
            if (compat.is_debug) self.conns.assertInvariants();
        }
    }

    /// Waits (until the nearest deadline, see `waitTimeoutMs`) and returns epoll's events.
    /// With io_uring the ring is where it waits; its completions are handled here, and epoll
    /// is asked without waiting when its poll on the ring fired or it had more last time.
    fn waitForEvents(self: *Worker, events: []linux.epoll_event, now_ms: u64) !usize {
        const ring = self.ring orelse
            return sys.epollWait(self.epfd, events, self.waitTimeoutMs(now_ms));
        const busy = self.epoll_hot or self.conns.hasReady();
        // The turn's sends go with its one io_uring_enter, and complete in it.
        self.conns.submitSends(ring);
        handlers.proxy.submitRing();
        try ring.wait(if (busy) 0 else self.waitTimeoutMs(now_ms));
        const woke = sys.monotonicMs();
        var cqes: [completion_batch]linux.io_uring_cqe = undefined;
        // Bounded: multishot operations may keep completing; the rest waits for a next turn.
        var passes: usize = 0;
        while (passes < completion_passes) : (passes += 1) {
            const got = ring.completions(&cqes);
            for (cqes[0..got]) |cqe| self.complete(ring, cqe, woke);
            if (got < cqes.len) break;
        }
        self.sendHeldDatagrams();
        // A UDP socket's receive that ended (or could not be armed) is armed again.
        if (self.rearm_due) self.armAccepts();
        self.placeAccepted(woke);
        self.closeEnded(woke);
        if (ring.takeRefilled()) {
            self.conns.armWaiting();
            handlers.proxy.armWaiting();
        }
        self.conns.runReady(woke);
        if (!self.epoll_hot) return 0;
        const n = try sys.epollWait(self.epfd, events, 0);
        self.epoll_hot = n > 0;
        return n;
    }

    fn complete(self: *Worker, ring: *ring_mod.Ring, cqe: linux.io_uring_cqe, now_ms: u64) void {
        const t = Token.decode(cqe.user_data);
        switch (t.kind) {
            ring_mod.Kind.epoll => {
                self.epoll_hot = true;
                if (ring_mod.hasMore(cqe.flags)) return;
                // Only a full queue the kernel will not take fails this: epoll is then asked
                // on every turn instead.
                ring.armEpoll(self.epfd) catch {};
            },
            ring_mod.Kind.accept => {
                self.onRingAccept(@intCast(t.index), cqe.res, cqe.flags, now_ms);
            },
            ring_mod.Kind.recv => self.conns.onRecv(t, cqe.res, cqe.flags, now_ms),
            ring_mod.Kind.poll => self.conns.onPoll(t, cqe.res, now_ms),
            ring_mod.Kind.send => self.conns.onSend(t, cqe.res, now_ms),
            ring_mod.Kind.proxy_recv, ring_mod.Kind.proxy_send, ring_mod.Kind.proxy_poll => {
                handlers.proxy.onRing(t, cqe.res, cqe.flags, now_ms);
            },
            ring_mod.Kind.datagram => self.onRingDatagram(ring, t.index, cqe),
            // A cancellation's own completion, or the probe's receive (whose buffer goes back).
            else => if (cqe.flags & linux.IORING_CQE_F_BUFFER != 0) {
                ring.put(ring_mod.bufferId(cqe.flags));
            },
        }
    }

    /// A completion of a listener's multishot accept: a connection, an error, or its end.
    fn onRingAccept(self: *Worker, socket_index: u16, res: i32, flags: u32, now_ms: u64) void {
        // Its end, for one closed by the worker meanwhile: it closes once the turn's other
        // completions are in (`closeEnded`).
        if (!ring_mod.hasMore(flags)) self.accepts[socket_index] = .idle;
        if (res >= 0) {
            // Accepted by the kernel before a pause or close took effect: served all the same,
            // once the turn's other completions are in (see `accepted`).
            if (self.accepted_len == self.accepted.len) return refuse(res);
            self.accepted[self.accepted_len] = .{ .fd = res, .socket_index = socket_index };
            self.accepted_len += 1;
        } else if (compat.errnoOf(res) != .CANCELED) {
            const fd = self.options.sockets[socket_index].fd;
            if (sys.result(res)) |_| {} else |err| _ = self.acceptFailed(fd, err, now_ms);
        }
        self.armAccepts();
    }

    /// With io_uring: whether every listener's multishot accept has ended (its last completion
    /// is in) and every connection it accepted has a slot. A stopping worker exits only then:
    /// a connection the kernel accepted for it after its last turn would be left unserved.
    fn acceptsSettled(self: *const Worker) bool {
        if (self.accepted_len > 0) return false;
        for (self.accepts[0..self.options.sockets.len]) |op| if (op != .idle) return false;
        return true;
    }

    /// Arms the multishot accept (or a UDP socket's multishot `recvmsg`) of every socket on
    /// the ring that should accept and does not, and cancels those that should not (paused,
    /// or closing).
    fn armAccepts(self: *Worker) void {
        const ring = self.ring orelse return;
        self.rearm_due = false;
        for (self.options.sockets, 0..) |socket, i| {
            if (!self.on_ring[i]) continue;
            const data = ringToken(self.listenerOf(@intCast(i)).protocol, @intCast(i));
            const udp = self.listenerOf(@intCast(i)).protocol == .udp;
            // Paused listeners are TCP's (a full table); a UDP socket whose worker stops but
            // whose outbox still holds replies stays open without receiving.
            const wanted = self.accepting and
                if (udp) !self.outboxes[i].closing else !self.listeners_paused;
            const op = &self.accepts[i];
            if (self.close_due[i]) continue;
            if (wanted and self.listening[i] and op.* == .idle) {
                // Only a full queue the kernel will not take fails this: tried again on the
                // next accept, pause or resume (a UDP socket's, on the next turn).
                const armed = if (udp)
                    ring.armRecvmsg(data, socket.fd)
                else
                    ring.armAccept(data, socket.fd);
                armed catch {
                    self.rearm_due = true;
                    continue;
                };
                op.* = .armed;
            } else if ((!wanted or !self.listening[i]) and op.* == .armed) {
                ring.cancel(data);
                op.* = .cancelling;
            }
        }
    }

    /// Until the nearest deadline, drain step, listener rest or heartbeat.
    fn waitTimeoutMs(self: *const Worker, now_ms: u64) i32 {
        const timeout = self.deadlineTimeoutMs(now_ms);
        if (self.options.link) |link| return link.limitWait(timeout);
        return timeout;
    }

    /// Until the nearest deadline, drain step or listener rest; -1 (forever) for none.
    fn deadlineTimeoutMs(self: *const Worker, now_ms: u64) i32 {
        var next: ?u64 = self.conns.nextMs();
        if (handlers.upstream.nextMs()) |at| next = @min(next orelse at, at);
        if (handlers.proxy.nextMs()) |at| next = @min(next orelse at, at);
        if (handlers.nextAppTickMs()) |at| next = @min(next orelse at, at);
        if (access_log.nextFlushMs()) |at| next = @min(next orelse at, at);
        if (self.drain) |drain| next = @min(next orelse drain.nextMs(), drain.nextMs());
        if (self.accept_resume_ms) |at| next = @min(next orelse at, at);
        if (self.full_retry_ms) |at| next = @min(next orelse at, at);
        if (self.shutdown_delay_until_ms) |at| next = @min(next orelse at, at);
        if (self.admin) |*a| if (a.nextDeadlineMs()) |at| {
            next = @min(next orelse at, at);
        };
        if (self.admin_retry_at_ms) |at| next = @min(next orelse at, at);
        const at = next orelse return -1;
        if (at <= now_ms) return 0;
        return @intCast(@min(at - now_ms, std.math.maxInt(i32)));
    }

    fn dispatch(self: *Worker, event: linux.epoll_event, now_ms: u64) void {
        const t = Token.decode(event.data.u64);
        switch (t.kind) {
            Kind.signal => self.onSignal(now_ms),
            Kind.control => {
                // Adopt or release another slot's sockets, or (end of file) the supervisor
                // closed its end or died: stop. The link stops watching the pipe then, whose
                // hang-up would otherwise wake every wait.
                const link = self.options.link.?;
                const outcome = link.onControlReadable(
                    self.epfd,
                    self.options.sockets,
                    listenerToken,
                    self.accepting,
                    self.listeners_paused,
                );
                if (outcome == .stop) self.beginStop(.control, now_ms);
            },
            Kind.listener => {
                // An event of the same batch may be about a listener closed meanwhile.
                if (t.index >= self.options.sockets.len or !self.listening[t.index]) return;
                const index: u16 = @intCast(t.index);
                switch (self.listenerOf(index).protocol) {
                    .tcp => _ = self.acceptBatch(index, now_ms),
                    .udp => self.onUdpEvent(index, event.events),
                }
            },
            Kind.connection => self.conns.onEvent(t, event.events, now_ms),
            Kind.handover => self.handOver(),
            Kind.admin => if (self.admin) |*a| a.onEvent(t.index, now_ms),
            Kind.upstream => handlers.upstream.onEvent(t, event.events, now_ms),
            Kind.proxy => handlers.proxy.onEvent(t, event.events, now_ms),
            else => unreachable,
        }
    }

    fn onSignal(self: *Worker, now_ms: u64) void {
        var info: linux.signalfd_siginfo = undefined;
        // Bounded: the signalfd holds at most one pending instance of each signal.
        var reads: usize = 0;
        while (reads < 64) : (reads += 1) {
            const n = sys.read(self.sigfd, std.mem.asBytes(&info)) catch return;
            if (n != @sizeOf(linux.signalfd_siginfo)) return;
            const signo = info.signo;
            if (signo == compat.signalNumber(linux.SIG.TERM) or
                signo == compat.signalNumber(linux.SIG.INT))
            {
                self.onTermSignal(now_ms);
            } else if (signo == compat.signalNumber(linux.SIG.QUIT)) {
                self.stop = .immediate;
            } else if (signo == compat.signalNumber(linux.SIG.USR1)) {
                access_log.reopen();
            } else if (signo == compat.signalNumber(linux.SIG.HUP)) {
                if (self.options.control_fd == null) {
                    log.warn("SIGHUP ignored: a restart needs the supervisor " ++
                        "(run without --standalone)", .{});
                }
            }
        }
    }

    /// In standalone mode a shutdown delay comes first: not ready, serving on, then the drain;
    /// a second SIGTERM ends the delay. A supervisor's worker drains at once: the delay is
    /// its supervisor's, which asks it to stop when the delay is over.
    fn onTermSignal(self: *Worker, now_ms: u64) void {
        const delay = self.options.limits.shutdown_delay_ms;
        const standalone = self.options.control_fd == null;
        if (self.shutdown_delay_until_ms != null or !standalone or delay == 0) {
            self.shutdown_delay_until_ms = null;
            return self.beginStop(.graceful, now_ms);
        }
        if (self.stop != null) return;
        self.shutdown_delay_until_ms = now_ms + delay;
        log.info("stopping: not ready; serving {d} ms more before the drain", .{delay});
        var line = events_mod.Line.begin("unready");
        line.int("shutdown_delay_ms", delay);
        line.emit();
    }

    /// Whether this process still wants traffic: no stop, and no shutdown delay, has begun.
    pub fn isReady(self: *const Worker) bool {
        return self.stop == null and self.shutdown_delay_until_ms == null;
    }

    /// Stops accepting, serves what the kernel already queued, and lets open connections
    /// finish until the drain deadline (see `drain.zig`).
    pub fn beginStop(self: *Worker, reason: StopReason, now_ms: u64) void {
        if (self.stop != null) return;
        self.stop = reason;
        self.drain = drain_mod.Drain.begin(now_ms, self.options.limits.drain_timeout_ms);
        self.conns.beginDrain(now_ms);
        self.closeListeners(now_ms);
        handlers.drainApps();
        access_log.flush();
    }

    /// Takes what is already queued on each listener, then closes this worker's
    /// descriptor. When the socket is shared (a supervisor keeps it open for the next
    /// generation) the queue stays with the socket; when this process is its last holder,
    /// whatever arrives between the last accept and close is reset by the kernel unless
    /// net.ipv4.tcp_migrate_req=1 moves it to another member of the group.
    fn closeListeners(self: *Worker, now_ms: u64) void {
        if (!self.accepting) return;
        // A successor arriving from now on opens its own sockets.
        if (self.options.handover) |server| server.close();
        for (self.options.sockets, 0..) |socket, i| {
            if (self.handed_over) {
                // The successor holds the same sockets and takes what is queued on them.
                self.closeSocket(@intCast(i));
                continue;
            }
            // Another slot's socket that is not adopted is only closed (the supervisor keeps
            // it open): taking its queue would serve another worker's share.
            if (self.options.link) |link| if (!link.watches(i)) {
                self.dropWaiting(@intCast(i));
                self.closeNow(@intCast(i));
                continue;
            };
            // A socket of our own (standalone mode) can leave its UDP group before the last
            // reads; a supervisor's socket is shared with the next generation and must not.
            const owned = self.options.control_fd == null and !socket.held_elsewhere;
            if (owned and self.listenerOf(@intCast(i)).protocol == .udp) {
                listener_mod.leaveUdpGroup(socket.fd);
            }
            self.drainQueue(@intCast(i), now_ms);
            self.closeSocket(@intCast(i));
        }
        self.accepting = false;
    }

    /// Closes a listening socket, or keeps it open while it still has work: UDP replies
    /// waiting for room in its send buffer (watched for that room only), or datagram modules'
    /// upstream calls in flight, whose answers go out on it (watched for nothing). Called
    /// again as that work ends (`flushOutbox`, `answer`); `closeAll` closes what is left.
    fn closeSocket(self: *Worker, socket_index: u16) void {
        const box = &self.outboxes[socket_index];
        const udp = self.listenerOf(socket_index).protocol == .udp;
        if (box.count > 0 or (udp and handlers.upstream.datagramsInFlight() > 0)) {
            box.closing = true;
            // It stops receiving, as it would stop watching for EPOLLIN.
            self.cancelRingOp(socket_index);
            self.watchDatagrams(socket_index, if (box.count > 0) linux.EPOLL.OUT else 0);
            return;
        }
        self.closeNow(socket_index);
    }

    /// Closes one of this worker's listening sockets. One whose multishot accept on the ring
    /// is pending closes at the accept's last completion, on a later turn (`close_due`): the
    /// kernel's reference would keep the socket in its reuseport group, taking connections,
    /// after `close`, so the accept is cancelled first, and a connection it accepted before
    /// is served. What is queued on the socket then is accepted before it closes: the ring's
    /// accept waits for connections as an exclusive waiter (one connection wakes one waiter),
    /// so connections that woke this worker's accept while its cancellation was on its way
    /// woke no other process that holds the socket (a `--handover` successor, the next
    /// generation's worker), and would wait in its queue until another client came.
    fn closeNow(self: *Worker, socket_index: u16) void {
        if (self.ring != null and self.accepts[socket_index] != .idle) {
            self.cancelRingOp(socket_index);
            self.close_due[socket_index] = true;
            return;
        }
        self.closeFd(socket_index);
    }

    /// Cancels a socket's multishot accept or `recvmsg` on the ring, if armed.
    fn cancelRingOp(self: *Worker, socket_index: u16) void {
        const ring = self.ring orelse return;
        if (self.accepts[socket_index] != .armed) return;
        ring.cancel(ringToken(self.listenerOf(socket_index).protocol, socket_index));
        self.accepts[socket_index] = .cancelling;
    }

    /// The token of a socket's operation on the ring: its accept, or its `recvmsg`.
    fn ringToken(protocol: config.Protocol, socket_index: u16) u64 {
        return token(switch (protocol) {
            .tcp => ring_mod.Kind.accept,
            .udp => ring_mod.Kind.datagram,
        }, socket_index);
    }

    /// Closes the listeners closed by the worker (`closeNow`) whose accept has ended since:
    /// what is queued on each is served, then its descriptor closes.
    fn closeEnded(self: *Worker, now_ms: u64) void {
        for (self.close_due[0..self.options.sockets.len], 0..) |*due, i| {
            if (!due.* or self.accepts[i] != .idle) continue;
            due.* = false;
            self.drainQueue(@intCast(i), now_ms);
            // A UDP socket whose outbox the drain filled stays open until it is sent.
            if (self.listenerOf(@intCast(i)).protocol == .udp) {
                self.closeSocket(@intCast(i));
            } else {
                self.closeFd(@intCast(i));
            }
        }
    }

    fn closeFd(self: *Worker, socket_index: u16) void {
        const fd = self.options.sockets[socket_index].fd;
        // Not in the epoll set (another slot's, or on the ring): ENOENT, and nothing to do.
        _ = linux.epoll_ctl(self.epfd, linux.EPOLL.CTL_DEL, fd, null);
        sys.close(fd);
        self.listening[socket_index] = false;
        self.outboxes[socket_index].closing = false;
        self.outboxes[socket_index].watching = false;
    }

    /// Serves what is queued on one listener, in batches, until the queue is empty or the
    /// connection slots are full.
    fn drainQueue(self: *Worker, socket_index: u16, now_ms: u64) void {
        const protocol = self.listenerOf(socket_index).protocol;
        const max_passes = config.max_connections / accept_batch + 1;
        var passes: usize = 0;
        while (passes < max_passes) : (passes += 1) {
            const more = switch (protocol) {
                .tcp => self.acceptBatch(socket_index, now_ms),
                .udp => self.serveDatagrams(socket_index),
            };
            if (!more) return;
        }
    }

    /// Gives every listening socket to the processes waiting at the handover path.
    fn handOver(self: *Worker) void {
        const server = self.options.handover orelse return;
        if (!self.accepting) return;
        var fds: [max_sockets]sys.Fd = undefined;
        var listeners: [max_sockets]u16 = undefined;
        for (self.options.sockets, 0..) |socket, i| {
            fds[i] = socket.fd;
            listeners[i] = socket.listener_index;
        }
        const n = self.options.sockets.len;
        const answered = server.serve(fds[0..n], listeners[0..n]);
        if (answered == 0) return;
        self.handed_over = true;
        // The next process binds the admin port once this one let it go.
        if (self.admin) |*a| a.close();
        self.admin = null;
        log.info("handover: {d} listening sockets handed to the next process at {s}", .{
            n, server.socketPath(),
        });
    }

    fn closeAll(self: *Worker, reason: StopReason) StopReason {
        self.closeListeners(sys.monotonicMs());
        self.closeOutboxes();
        // Accepted by the ring and still waiting for a slot: closed cleanly.
        for (self.accepted[0..self.accepted_len]) |a| refuse(a.fd);
        self.accepted_len = 0;
        // Listeners whose accept did not end in time (a drain timeout, SIGQUIT): closed.
        for (self.close_due[0..self.options.sockets.len], 0..) |*due, i| if (due.*) {
            due.* = false;
            self.closeFd(@intCast(i));
        };
        if (self.admin) |*a| a.close();
        self.admin = null;
        self.conns.closeAll();
        handlers.proxy.closeAll();
        handlers.upstream.deinit();
        handlers.deinitApps(self.allocator);
        access_log.close();
        return reason;
    }

    /// Accepts up to `accept_batch` connections; returns whether the queue may hold more.
    ///
    /// At the connection limit a new client takes the place of a slow client or of the
    /// connection idle the longest (nginx's reusable connections): thousands of idle clients
    /// cannot keep a fresh one waiting. A connection whose client's next request has arrived
    /// is never the one closed. When none can be closed (every connection has a request in
    /// flight, or has been idle only an instant) the worker stops accepting for a moment,
    /// and the kernel queues (or another worker takes) the newcomers.
    fn acceptBatch(self: *Worker, socket_index: u16, now_ms: u64) bool {
        const socket = self.options.sockets[socket_index];
        const proxied = config.listeners[socket.listener_index].handler == .proxy;
        var accepted: usize = 0;
        while (accepted < accept_batch) : (accepted += 1) {
            // A full proxy table waits for a pair to end (pairs are never evicted).
            if (proxied and handlers.proxy.isFull()) {
                self.pauseListeners(now_ms + evict_retry_ms);
                return false;
            }
            if (!proxied and self.conns.isFull() and !self.conns.canEvict(now_ms)) {
                self.pauseWhileFull(now_ms);
                return false;
            }
            const fd = sys.accept(socket.fd) catch |err| switch (err) {
                error.WouldBlock => return false,
                else => if (self.acceptFailed(socket.fd, err, now_ms)) continue else return false,
            };
            if (proxied) {
                handlers.proxy.open(fd, socket.listener_index, now_ms);
                continue;
            }
            if (!self.takeAccepted(socket_index, fd, now_ms)) return false;
        }
        return true;
    }

    /// Gives an accepted connection a slot; false when there is none (it is refused, and the
    /// listeners pause). Only a newcomer that is really there takes another connection's
    /// place. The victim found before `accept` may have received its next request since: when
    /// no other can be closed, the newcomer is refused (cleanly), not that request.
    fn takeAccepted(self: *Worker, socket_index: u16, fd: sys.Fd, now_ms: u64) bool {
        if (self.place(.{ .fd = fd, .socket_index = socket_index }, now_ms)) return true;
        refuse(fd);
        return false;
    }

    /// A slot for an accepted connection, by eviction if need be; false (the listeners pause)
    /// when there is none.
    fn place(self: *Worker, a: Accepted, now_ms: u64) bool {
        const listener_index = self.options.sockets[a.socket_index].listener_index;
        if (config.listeners[listener_index].handler == .proxy) {
            // A full proxy table waits for a pair to end (pairs are never evicted).
            if (handlers.proxy.isFull()) {
                self.pauseListeners(now_ms + evict_retry_ms);
                return false;
            }
            handlers.proxy.open(a.fd, listener_index, now_ms);
            return true;
        }
        if (self.conns.isFull() and !self.conns.evictOne(now_ms)) {
            self.pauseWhileFull(now_ms);
            return false;
        }
        self.conns.open(a.fd, listener_index, now_ms);
        return true;
    }

    /// Places the connections the ring accepted (see `accepted`), oldest first.
    fn placeAccepted(self: *Worker, now_ms: u64) void {
        var placed: u32 = 0;
        while (placed < self.accepted_len) : (placed += 1) {
            if (!self.place(self.accepted[placed], now_ms)) break;
        }
        const waiting = self.accepted[placed..self.accepted_len];
        compat.moveLeft(Accepted, self.accepted[0..waiting.len], waiting);
        self.accepted_len = @intCast(waiting.len);
    }

    /// An accept failed: whether to try the next at once (true), or the listeners rest.
    fn acceptFailed(self: *Worker, listen_fd: sys.Fd, err: sys.Error, now_ms: u64) bool {
        switch (err) {
            // Failures of one connection, gone before we took it (accept(2)).
            error.ConnectionAborted, error.ConnectionReset, error.Interrupted => return true,
            error.WouldBlock => return false,
            error.ProcessFdQuotaExceeded, error.SystemFdQuotaExceeded => {
                if (self.conns.evictOne(now_ms)) return true;
                if (self.conns.mayEvictSoon()) {
                    // Idle only an instant (or a request not slow yet): the newcomer waits in
                    // the queue a moment rather than be refused.
                    self.pauseListeners(now_ms + evict_retry_ms);
                    return false;
                }
                self.warnAccept(now_ms, err);
                self.shedOne(listen_fd);
                self.pauseListeners(now_ms + accept_backoff_ms);
                return false;
            },
            else => {
                self.warnAccept(now_ms, err);
                self.pauseListeners(now_ms + accept_backoff_ms);
                return false;
            },
        }
    }

    fn warnAccept(self: *Worker, now_ms: u64, err: anyerror) void {
        const held = self.accept_warnings.allow(now_ms) orelse return;
        if (err == error.ProcessFdQuotaExceeded or err == error.SystemFdQuotaExceeded) {
            log.warn("out of file descriptors: refusing a connection (raise ulimit -n; " ++
                "{d} similar warnings held back)", .{held});
        } else {
            log.warn("accept failed: {s}; pausing {d} ms ({d} similar warnings held back)", .{
                @errorName(err), accept_backoff_ms, held,
            });
        }
    }

    /// Out of descriptors: release the spare, accept one connection and close it at once
    /// so the client learns immediately instead of waiting in a queue nobody drains.
    fn shedOne(self: *Worker, listen_fd: sys.Fd) void {
        const spare = self.spare_fd orelse return;
        sys.close(spare);
        if (sys.accept(listen_fd)) |fd| refuse(fd) else |_| {}
        self.spare_fd = openSpare();
    }

    /// Closes a connection that has no slot without resetting it: `close()` with unread input
    /// makes the kernel send a reset, so what its client sent so far is read away first
    /// (bounded), after our FIN.
    fn refuse(fd: sys.Fd) void {
        sys.shutdownWrite(fd);
        var scratch: [4096]u8 = undefined;
        var reads: usize = 0;
        while (reads < 16) : (reads += 1) {
            const n = sys.read(fd, &scratch) catch |err| switch (err) {
                error.Interrupted => continue,
                else => break,
            };
            if (n == 0) break;
        }
        sys.close(fd);
    }

    /// The table is full and nothing in it may be closed yet: listeners rest until a slot
    /// frees up or `evict_retry_ms` passes.
    fn pauseWhileFull(self: *Worker, now_ms: u64) void {
        self.full_retry_ms = now_ms + evict_retry_ms;
        self.pauseListeners(null);
    }

    /// Stops watching the TCP listeners: until a connection slot frees up (`resume_ms`
    /// null), or until `resume_ms`.
    fn pauseListeners(self: *Worker, resume_ms: ?u64) void {
        if (resume_ms) |at| self.accept_resume_ms = at;
        if (self.listeners_paused or !self.accepting) return;
        self.listeners_paused = true;
        self.watchTcpListeners(0);
    }

    fn resumeListenersIfRoom(self: *Worker, now_ms: u64) void {
        // A retry time that passed is spent whatever follows, or the loop's wait would
        // keep ending at once (a drain stops accepting meanwhile, say).
        var retry = false;
        if (self.full_retry_ms) |at| {
            retry = now_ms >= at;
            if (retry) self.full_retry_ms = null;
        }
        if (self.accept_resume_ms) |at| {
            if (now_ms < at) return;
            self.accept_resume_ms = null;
        }
        if (!self.listeners_paused or !self.accepting) return;
        // Full: time to look again all the same; `acceptBatch` pauses again if it must.
        if (self.conns.isFull() and !retry) return;
        self.full_retry_ms = null;
        self.listeners_paused = false;
        self.watchTcpListeners(linux.EPOLL.IN);
    }

    fn watchTcpListeners(self: *Worker, events: u32) void {
        self.armAccepts();
        for (self.options.sockets, 0..) |socket, i| {
            if (config.listeners[socket.listener_index].protocol != .tcp) continue;
            if (self.on_ring[i]) continue;
            // Another slot's sockets are in the epoll set only while adopted.
            if (self.options.link) |link| if (!link.watches(i)) continue;
            const data = token(Kind.listener, @intCast(i));
            // Registered at start, so only ENOMEM fails this: the listener keeps its interest
            // until the next pause or resume changes it.
            sys.epollCtl(self.epfd, linux.EPOLL.CTL_MOD, socket.fd, events, data) catch {};
        }
    }

    fn listenerOf(self: *const Worker, socket_index: u16) *const config.Listener {
        return &config.listeners[self.options.sockets[socket_index].listener_index];
    }

    fn onUdpEvent(self: *Worker, socket_index: u16, events: u32) void {
        if (events & linux.EPOLL.OUT != 0) self.flushOutbox(socket_index);
        if (events & linux.EPOLL.IN != 0 and self.accepting) _ = self.serveDatagrams(socket_index);
    }

    fn datagramContext(self: *const Worker, socket_index: u16) handlers.api.Context {
        const socket = self.options.sockets[socket_index];
        return .{
            .listener = &config.listeners[socket.listener_index],
            .listener_index = socket.listener_index,
            .worker_index = self.options.index,
            .pid = self.pid,
            .generation = self.options.generation,
            .draining = self.stop != null,
            .fd = socket.fd,
        };
    }

    /// A completion of a UDP socket's multishot `recvmsg`: one datagram, served at once; its
    /// reply is held and sent with the turn's others (`sendHeldDatagrams`), and its buffer
    /// goes back to the kernel. An error, or the end of the receive (ENOBUFS: the buffers
    /// were all taken; a cancellation), arms it again after the turn where wanted.
    fn onRingDatagram(
        self: *Worker,
        ring: *ring_mod.Ring,
        index: u32,
        cqe: linux.io_uring_cqe,
    ) void {
        const has_buffer = cqe.flags & linux.IORING_CQE_F_BUFFER != 0;
        const id = ring_mod.bufferId(cqe.flags);
        defer if (has_buffer) ring.putDatagram(id);
        if (index >= self.options.sockets.len) return; // the probe's (see ring.zig)
        const socket_index: u16 = @intCast(index);
        if (!ring_mod.hasMore(cqe.flags)) {
            self.accepts[socket_index] = .idle;
            self.rearm_due = true;
        }
        if (cqe.res < 0) {
            switch (compat.errnoOf(cqe.res)) {
                .CANCELED, .NOBUFS => {},
                else => |e| log.warn("recvmsg on the ring failed: {s}", .{@tagName(e)}),
            }
            return;
        }
        if (!has_buffer or !self.listening[socket_index]) return;
        const datagram = ring.datagramIn(id, cqe.res) orelse return;
        if (self.held_socket != socket_index or self.datagrams.isFull()) self.sendHeldDatagrams();
        self.held_socket = socket_index;
        const ctx = self.datagramContext(socket_index);
        self.datagrams.hold(datagram.payload, datagram.name, &ctx, handlers.onDatagram);
    }

    /// Sends the replies of the datagrams the ring delivered (see `onRingDatagram`).
    fn sendHeldDatagrams(self: *Worker) void {
        if (!self.datagrams.holds()) return;
        const socket_index = self.held_socket;
        const socket = self.options.sockets[socket_index];
        const tally = self.datagrams.sendHeld(socket.fd, &self.outboxes[socket_index]);
        countDatagrams(socket.listener_index, tally);
        self.watchOutbox(socket_index);
    }

    fn serveDatagrams(self: *Worker, socket_index: u16) bool {
        const socket = self.options.sockets[socket_index];
        const ctx = self.datagramContext(socket_index);
        const box = &self.outboxes[socket_index];
        defer self.watchOutbox(socket_index);
        var served: usize = 0;
        while (served < datagram_turn) {
            const batch = self.datagrams.serve(socket.fd, box, &ctx, handlers.onDatagram) orelse
                return false;
            countDatagrams(socket.listener_index, batch);
            served += batch.received;
            // A short batch: recvmmsg stopped at an empty queue (epoll says when more come).
            if (batch.received < config.udp_batch) return false;
        }
        return true;
    }

    fn countDatagrams(listener_index: u16, tally: datagrams_mod.Tally) void {
        const counters = metrics.at(listener_index);
        const drops = &counters.udp_reply_drops;
        metrics.add(&counters.datagrams_received, tally.received);
        metrics.add(&counters.datagrams_sent, tally.sent);
        metrics.add(&counters.udp_replies_deferred, tally.deferred);
        metrics.add(&counters.udp_gso_sends, tally.gso_sends);
        metrics.add(&drops[compat.enumIndex(metrics.UdpDrop.queue_full)], tally.dropped_full);
        metrics.add(&drops[compat.enumIndex(metrics.UdpDrop.send_error)], tally.dropped_error);
    }

    /// The socket is writable again: sends what its outbox kept; a stopping worker closes
    /// the socket once the outbox is empty.
    fn flushOutbox(self: *Worker, socket_index: u16) void {
        const socket = self.options.sockets[socket_index];
        const box = &self.outboxes[socket_index];
        var tally: datagrams_mod.Tally = .{};
        self.datagrams.flush(socket.fd, box, &tally);
        countDatagrams(socket.listener_index, tally);
        if (box.closing) return self.closeSocket(socket_index);
        self.watchOutbox(socket_index);
    }

    /// Watches a UDP socket for room in its send buffer while its outbox holds replies.
    fn watchOutbox(self: *Worker, socket_index: u16) void {
        const box = &self.outboxes[socket_index];
        const waiting = box.count > 0;
        if (waiting == box.watching or box.closing) return;
        // A socket on the ring receives there, not through epoll.
        const in: u32 = if (self.accepting and !self.on_ring[socket_index]) linux.EPOLL.IN else 0;
        self.watchDatagrams(socket_index, if (waiting) in | linux.EPOLL.OUT else in);
    }

    fn watchDatagrams(self: *Worker, socket_index: u16, events: u32) void {
        const fd = self.options.sockets[socket_index].fd;
        const data = token(Kind.listener, socket_index);
        // Registered since start (or adoption), so only ENOMEM fails this; a socket released
        // to its own slot meanwhile is not watched here any more, and its outbox waits.
        sys.epollCtl(self.epfd, linux.EPOLL.CTL_MOD, fd, events, data) catch {};
        self.outboxes[socket_index].watching = events & linux.EPOLL.OUT != 0;
    }

    /// A datagram module's answer to an upstream call, sent between batches on the socket its
    /// datagram came to: behind what that socket's outbox holds, kept there when the send
    /// buffer is full. A socket closed meanwhile (the worker stops) drops it, counted.
    pub fn answer(
        self: *Worker,
        fd: sys.Fd,
        listener_index: u16,
        to: *const sys.Peer,
        bytes: []const u8,
    ) void {
        const counters = metrics.at(listener_index);
        for (self.options.sockets, 0..) |socket, i| {
            if (socket.fd != fd or !self.listening[i]) continue;
            var tally: datagrams_mod.Tally = .{};
            const reply: datagrams_mod.Reply = .{ .peer = to, .bytes = bytes };
            self.datagrams.sendOne(fd, &self.outboxes[i], reply, &tally);
            countDatagrams(listener_index, tally);
            // A stopping worker closes the socket once its last call is answered and sent.
            if (self.outboxes[i].closing) return self.closeSocket(@intCast(i));
            self.watchOutbox(@intCast(i));
            return;
        }
        const stopped = compat.enumIndex(metrics.UdpDrop.stopped);
        metrics.add(&counters.udp_reply_drops[stopped], 1);
    }

    fn repliesWaiting(self: *const Worker) usize {
        var total: usize = 0;
        for (self.outboxes) |box| total += box.count;
        return total;
    }

    /// Drops (and counts) the replies waiting in a socket's outbox.
    fn dropWaiting(self: *Worker, socket_index: u16) void {
        const box = &self.outboxes[socket_index];
        const listener_index = self.options.sockets[socket_index].listener_index;
        const stopped = compat.enumIndex(metrics.UdpDrop.stopped);
        metrics.add(&metrics.at(listener_index).udp_reply_drops[stopped], box.count);
        box.forget(box.count);
    }

    /// The worker ends: replies still waiting are dropped (counted) and their sockets closed.
    fn closeOutboxes(self: *Worker) void {
        for (self.outboxes, 0..) |box, i| {
            self.dropWaiting(@intCast(i));
            if (box.closing) self.closeNow(@intCast(i));
        }
    }
};
