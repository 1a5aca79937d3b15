//! A worker: one single-threaded epoll loop that serves its share of every listener.
//!
//! Level-triggered epoll throughout, chosen deliberately: listening sockets may be shared
//! with a worker of another generation during a restart, and a connection is read once
//! per wakeup (one read, one write per request in steady state) without having to drain
//! the socket, so no readiness is ever lost. A connection with unsent output stops being
//! read until the output is gone, which bounds memory by the fixed buffers allocated at
//! start: nothing is allocated per connection or per request.
const std = @import("std");
const config = @import("config.zig");
const sys = @import("sys.zig");
const compat = @import("compat.zig");
const listener_mod = @import("listener.zig");
const handlers = @import("handlers.zig");
const log = @import("log.zig");
const linux = std.os.linux;

/// A listening socket this worker serves, and the listener it belongs to.
pub const Socket = struct {
    fd: sys.Fd,
    listener_index: u16,
};

pub const Options = struct {
    sockets: []const Socket,
    index: u16,
    generation: u32,
    drain_timeout_ms: u32,
    /// A descriptor whose hang-up means "stop gracefully" (the supervisor's end of a pipe);
    /// null when signals alone control the worker.
    control_fd: ?sys.Fd = null,
};

pub const Stats = struct {
    connections: u64 = 0,
    requests: u64 = 0,
    datagrams: u64 = 0,
};

pub const StopReason = enum { graceful, immediate, control };

/// What an epoll event is about: the high half of its 64-bit token is the kind, the low
/// half an index into the worker's sockets or connection slots.
const Kind = struct {
    const signal: u32 = 0;
    const listener: u32 = 1;
    const connection: u32 = 2;
    const control: u32 = 3;
};

fn token(kind: u32, index: u32) u64 {
    return (@as(u64, kind) << 32) | index;
}

/// Accepts per listener wakeup before giving connections a turn: fair, and bounded.
const accept_batch = 64;
/// Datagrams per UDP wakeup, for the same reason.
const datagram_batch = 64;
const max_events = 256;
/// How long idle keep-alive connections may stay open once a drain starts.
const idle_grace_ms = 1000;
const max_datagram_bytes = 65536;

const Connection = struct {
    fd: sys.Fd,
    socket_index: u16,
    in_len: u32,
    out_start: u32,
    out_end: u32,
    close_after_flush: bool,
    /// The handler used input and left some: it may use more once output is sent.
    more_input: bool,
    /// Waiting for EPOLLOUT (and not reading) rather than for EPOLLIN.
    watching_out: bool,
};

const no_connection: sys.Fd = -1;

pub const Worker = struct {
    options: Options,
    epfd: sys.Fd,
    sigfd: sys.Fd,
    /// Held open so that a worker out of descriptors can still accept and close, instead
    /// of spinning on a listener that stays readable (the EMFILE trick).
    spare_fd: ?sys.Fd,
    pid: i32,
    connections: []Connection,
    in_bufs: []u8,
    out_bufs: []u8,
    free: []u32,
    free_len: usize,
    open_count: usize = 0,
    accepting: bool = true,
    listeners_paused: bool = false,
    draining: bool = false,
    drain_deadline_ms: u64 = 0,
    /// When idle keep-alive connections are closed during a drain (see `beginStop`).
    idle_sweep_at_ms: ?u64 = null,
    stop: ?StopReason = null,
    stats: Stats = .{},
    datagram: []u8,
    reply: []u8,

    /// Allocates every buffer the worker will ever use and registers the sockets.
    pub fn init(allocator: std.mem.Allocator, options: Options) !Worker {
        const max = config.max_connections;
        const connections = try allocator.alloc(Connection, max);
        // usize: the spec's limits multiply past u32 (1048576 connections of 1 MiB each).
        const in_bufs = try compat.mapMemory(@as(usize, max) * config.read_buffer_bytes);
        const out_bufs = try compat.mapMemory(@as(usize, max) * config.write_buffer_bytes);
        const free = try allocator.alloc(u32, max);
        for (connections, 0..) |*c, i| {
            c.fd = no_connection;
            free[max - 1 - i] = @intCast(i);
        }
        const datagram = try compat.mapMemory(max_datagram_bytes);
        const reply = try compat.mapMemory(max_datagram_bytes);

        var set = compat.emptySigset();
        linux.sigaddset(&set, linux.SIG.TERM);
        linux.sigaddset(&set, linux.SIG.INT);
        linux.sigaddset(&set, linux.SIG.QUIT);
        linux.sigaddset(&set, linux.SIG.HUP);
        linux.sigaddset(&set, linux.SIG.PIPE);
        const sigfd = try sys.signalfd(&set);
        const epfd = try sys.epollCreate();
        try sys.epollCtl(epfd, linux.EPOLL.CTL_ADD, sigfd, linux.EPOLL.IN, token(Kind.signal, 0));
        for (options.sockets, 0..) |socket, i| {
            const data = token(Kind.listener, @intCast(i));
            try sys.epollCtl(epfd, linux.EPOLL.CTL_ADD, socket.fd, linux.EPOLL.IN, data);
        }
        if (options.control_fd) |fd| {
            try sys.epollCtl(epfd, linux.EPOLL.CTL_ADD, fd, linux.EPOLL.IN, token(Kind.control, 0));
        }
        return .{
            .options = options,
            .epfd = epfd,
            .sigfd = sigfd,
            .spare_fd = openSpare(),
            .pid = linux.getpid(),
            .connections = connections,
            .in_bufs = in_bufs,
            .out_bufs = out_bufs,
            .free = free,
            .free_len = max,
            .datagram = datagram,
            .reply = reply,
        };
    }

    fn openSpare() ?sys.Fd {
        const rc = linux.open("/dev/null", .{ .CLOEXEC = true }, 0);
        if (compat.errno(rc) != .SUCCESS) return null;
        return @intCast(rc);
    }

    /// Serves until stopped; returns why it stopped.
    pub fn run(self: *Worker) StopReason {
        var events: [max_events]linux.epoll_event = undefined;
        while (true) {
            if (self.stop) |reason| {
                if (reason == .immediate) return self.closeAll(reason);
                if (self.open_count == 0) return self.closeAll(reason);
                if (self.idle_sweep_at_ms) |at| if (sys.monotonicMs() >= at) {
                    self.idle_sweep_at_ms = null;
                    self.closeIdleConnections();
                    continue;
                };
                if (sys.monotonicMs() >= self.drain_deadline_ms) {
                    log.warn("drain timeout: closing {d} open connections", .{self.open_count});
                    return self.closeAll(reason);
                }
            }
            const n = sys.epollWait(self.epfd, &events, self.waitTimeoutMs()) catch |err| {
                log.err("epoll_wait failed: {s}", .{@errorName(err)});
                return self.closeAll(.immediate);
            };
            for (events[0..n]) |event| self.dispatch(event);
        }
    }

    fn waitTimeoutMs(self: *const Worker) i32 {
        if (self.stop == null) return -1;
        const now = sys.monotonicMs();
        const sweep = self.idle_sweep_at_ms orelse self.drain_deadline_ms;
        const next = @min(self.drain_deadline_ms, sweep);
        if (now >= next) return 0;
        return @intCast(@min(next - now, std.math.maxInt(i32)));
    }

    fn dispatch(self: *Worker, event: linux.epoll_event) void {
        const data = event.data.u64;
        const index: u32 = @truncate(data);
        switch (@as(u32, @intCast(data >> 32))) {
            Kind.signal => self.onSignal(),
            Kind.control => {
                // The supervisor closed its end (or died): stop, and stop watching the
                // pipe, whose hang-up would otherwise wake every wait.
                const control = self.options.control_fd.?;
                _ = linux.epoll_ctl(self.epfd, linux.EPOLL.CTL_DEL, control, null);
                self.beginStop(.control);
            },
            Kind.listener => {
                const socket = self.options.sockets[index];
                switch (config.listeners[socket.listener_index].protocol) {
                    .tcp => _ = self.acceptBatch(@intCast(index)),
                    .udp => _ = self.serveDatagrams(@intCast(index)),
                }
            },
            Kind.connection => self.onConnectionEvent(index, event.events),
            else => unreachable,
        }
    }

    fn onSignal(self: *Worker) void {
        var info: linux.signalfd_siginfo = undefined;
        while (true) {
            const n = sys.read(self.sigfd, std.mem.asBytes(&info)) catch return;
            if (n != @sizeOf(linux.signalfd_siginfo)) return;
            const signo = info.signo;
            if (signo == compat.signalNumber(linux.SIG.TERM) or
                signo == compat.signalNumber(linux.SIG.INT))
            {
                self.beginStop(.graceful);
            } else if (signo == compat.signalNumber(linux.SIG.QUIT)) {
                self.stop = .immediate;
            } else if (signo == compat.signalNumber(linux.SIG.HUP)) {
                if (self.options.control_fd == null) {
                    log.warn("SIGHUP ignored: a restart needs the supervisor " ++
                        "(run without --standalone)", .{});
                }
            }
        }
    }

    /// Stops accepting, serves what the kernel already queued, and lets open connections
    /// finish until the drain deadline.
    ///
    /// Keep-alive HTTP connections are not closed at once: a client may have sent its next
    /// request already, and closing under it would reset the request (the keep-alive race
    /// of reloads). Each gets `Connection: close` on its next response instead. The ones
    /// still idle after a short grace are closed then: an active client has been told by
    /// that time, so only clients that really are idle remain.
    pub fn beginStop(self: *Worker, reason: StopReason) void {
        if (self.stop != null) return;
        self.stop = reason;
        self.draining = true;
        const now = sys.monotonicMs();
        self.drain_deadline_ms = now + self.options.drain_timeout_ms;
        self.idle_sweep_at_ms = now + @min(self.options.drain_timeout_ms, idle_grace_ms);
        self.closeListeners();
    }

    /// Takes what is already queued on each listener, then closes this worker's
    /// descriptor. When the socket is shared (a supervisor keeps it open for the next
    /// generation) the queue stays with the socket; when this process is its last holder,
    /// whatever arrives between the last accept and close is reset by the kernel unless
    /// net.ipv4.tcp_migrate_req=1 moves it to another member of the group.
    fn closeListeners(self: *Worker) void {
        if (!self.accepting) return;
        for (self.options.sockets, 0..) |socket, i| {
            // A socket of our own (standalone mode) can leave its UDP group before the last
            // reads; a supervisor's socket is shared with the next generation and must not.
            const owned = self.options.control_fd == null;
            if (owned and self.listenerOf(@intCast(i)).protocol == .udp) {
                listener_mod.leaveUdpGroup(socket.fd);
            }
            self.drainQueue(@intCast(i));
            _ = linux.epoll_ctl(self.epfd, linux.EPOLL.CTL_DEL, socket.fd, null);
            sys.close(socket.fd);
        }
        self.accepting = false;
    }

    /// Serves what is queued on one listener, in batches, until the queue is empty or the
    /// connection slots are full.
    fn drainQueue(self: *Worker, socket_index: u16) void {
        const protocol = self.listenerOf(socket_index).protocol;
        const max_passes = config.max_connections / accept_batch + 1;
        var passes: usize = 0;
        while (passes < max_passes) : (passes += 1) {
            const more = switch (protocol) {
                .tcp => self.acceptBatch(socket_index),
                .udp => self.serveDatagrams(socket_index),
            };
            if (!more) return;
        }
    }

    /// Closes the HTTP connections with no request in progress and nothing to send.
    fn closeIdleConnections(self: *Worker) void {
        for (self.connections, 0..) |*c, i| {
            if (c.fd == no_connection) continue;
            if (self.isIdleHttp(@intCast(i)) and c.out_end == c.out_start) {
                self.closeConnection(@intCast(i));
            }
        }
    }

    fn closeAll(self: *Worker, reason: StopReason) StopReason {
        self.closeListeners();
        for (self.connections, 0..) |c, i| {
            if (c.fd != no_connection) self.closeConnection(@intCast(i));
        }
        return reason;
    }

    /// Accepts up to `accept_batch` connections; returns whether the queue may hold more.
    fn acceptBatch(self: *Worker, socket_index: u16) bool {
        const socket = self.options.sockets[socket_index];
        var accepted: usize = 0;
        while (accepted < accept_batch) : (accepted += 1) {
            if (self.free_len == 0) {
                self.pauseListeners();
                return false;
            }
            const fd = sys.accept(socket.fd) catch |err| switch (err) {
                error.WouldBlock => return false,
                error.ConnectionAborted, error.ConnectionReset, error.Interrupted => continue,
                error.ProcessFdQuotaExceeded, error.SystemFdQuotaExceeded => {
                    self.shedOne(socket.fd);
                    return false;
                },
                else => {
                    log.warn("accept failed: {s}", .{@errorName(err)});
                    return false;
                },
            };
            self.openConnection(fd, socket_index);
        }
        return true;
    }

    /// Out of descriptors: release the spare, accept one connection and close it at once
    /// so the client learns immediately instead of waiting in a queue nobody drains.
    fn shedOne(self: *Worker, listen_fd: sys.Fd) void {
        log.warn("out of file descriptors: refusing a connection (raise ulimit -n)", .{});
        const spare = self.spare_fd orelse return;
        sys.close(spare);
        if (sys.accept(listen_fd)) |fd| sys.close(fd) else |_| {}
        self.spare_fd = openSpare();
    }

    /// With every connection slot busy, stop watching listeners: new connections wait in
    /// the kernel's accept queue (or go to another worker) instead of being refused.
    fn pauseListeners(self: *Worker) void {
        if (self.listeners_paused or !self.accepting) return;
        self.listeners_paused = true;
        for (self.options.sockets, 0..) |socket, i| {
            if (config.listeners[socket.listener_index].protocol != .tcp) continue;
            self.watchListener(socket.fd, @intCast(i), 0);
        }
    }

    fn watchListener(self: *Worker, fd: sys.Fd, socket_index: u16, events: u32) void {
        const data = token(Kind.listener, socket_index);
        sys.epollCtl(self.epfd, linux.EPOLL.CTL_MOD, fd, events, data) catch {};
    }

    fn listenerOf(self: *const Worker, socket_index: u16) *const config.Listener {
        return &config.listeners[self.options.sockets[socket_index].listener_index];
    }

    fn resumeListeners(self: *Worker) void {
        if (!self.listeners_paused or !self.accepting) return;
        self.listeners_paused = false;
        for (self.options.sockets, 0..) |socket, i| {
            if (config.listeners[socket.listener_index].protocol != .tcp) continue;
            self.watchListener(socket.fd, @intCast(i), linux.EPOLL.IN);
        }
    }

    fn context(self: *const Worker, socket_index: u16) handlers.api.Context {
        const listener_index = self.options.sockets[socket_index].listener_index;
        return .{
            .listener = &config.listeners[listener_index],
            .listener_index = listener_index,
            .worker_index = self.options.index,
            .pid = self.pid,
            .generation = self.options.generation,
            .draining = self.draining,
        };
    }

    fn openConnection(self: *Worker, fd: sys.Fd, socket_index: u16) void {
        self.free_len -= 1;
        const slot = self.free[self.free_len];
        const c = &self.connections[slot];
        c.* = .{
            .fd = fd,
            .socket_index = socket_index,
            .in_len = 0,
            .out_start = 0,
            .out_end = 0,
            .close_after_flush = false,
            .more_input = false,
            .watching_out = false,
        };
        self.open_count += 1;
        self.stats.connections += 1;
        const ctx = self.context(socket_index);
        listener_mod.onAccept(fd, ctx.listener);
        const events = linux.EPOLL.IN | linux.EPOLL.RDHUP;
        const data = token(Kind.connection, slot);
        sys.epollCtl(self.epfd, linux.EPOLL.CTL_ADD, fd, events, data) catch {
            self.closeConnection(slot);
            return;
        };
        var out: handlers.api.Output = .{ .buf = self.outBuf(slot) };
        const progress = handlers.onOpen(&ctx, &out);
        self.afterHandler(slot, progress, out.len);
        self.serve(slot);
    }

    fn inBuf(self: *Worker, slot: u32) []u8 {
        return self.in_bufs[slot * config.read_buffer_bytes ..][0..config.read_buffer_bytes];
    }

    fn outBuf(self: *Worker, slot: u32) []u8 {
        return self.out_bufs[slot * config.write_buffer_bytes ..][0..config.write_buffer_bytes];
    }

    fn onConnectionEvent(self: *Worker, slot: u32, events: u32) void {
        const c = &self.connections[slot];
        if (c.fd == no_connection) return;
        if (c.watching_out) {
            const writable = linux.EPOLL.OUT | linux.EPOLL.HUP | linux.EPOLL.ERR;
            if (events & writable != 0) self.serve(slot);
            return;
        }
        const readable = linux.EPOLL.IN | linux.EPOLL.HUP | linux.EPOLL.ERR | linux.EPOLL.RDHUP;
        if (events & readable != 0) {
            self.readAndHandle(slot);
        }
    }

    fn readAndHandle(self: *Worker, slot: u32) void {
        const c = &self.connections[slot];
        const buf = self.inBuf(slot);
        if (c.in_len == buf.len) {
            // The handler could not use a full buffer: the request cannot be served.
            self.closeConnection(slot);
            return;
        }
        const n = sys.read(c.fd, buf[c.in_len..]) catch |err| switch (err) {
            error.WouldBlock, error.Interrupted => return,
            else => {
                self.closeConnection(slot);
                return;
            },
        };
        if (n == 0) {
            // The peer closed its side: nothing more will arrive.
            self.closeConnection(slot);
            return;
        }
        c.in_len += @intCast(n);
        self.handleInput(slot);
        self.serve(slot);
    }

    /// Runs the handler once over the buffered input; its output waits in the out buffer.
    fn handleInput(self: *Worker, slot: u32) void {
        const c = &self.connections[slot];
        const ctx = self.context(c.socket_index);
        var out: handlers.api.Output = .{ .buf = self.outBuf(slot) };
        const input = self.inBuf(slot)[0..c.in_len];
        const progress = handlers.onData(&ctx, input, &out);
        if (progress.consumed > 0) {
            const rest = input[progress.consumed..];
            compat.copyLeft(self.inBuf(slot)[0..rest.len], rest);
            c.in_len = @intCast(rest.len);
        }
        c.more_input = progress.consumed > 0 and c.in_len > 0;
        self.afterHandler(slot, progress, out.len);
    }

    fn afterHandler(
        self: *Worker,
        slot: u32,
        progress: handlers.api.Progress,
        out_len: usize,
    ) void {
        const c = &self.connections[slot];
        self.stats.requests += progress.requests;
        c.out_start = 0;
        c.out_end = @intCast(out_len);
        c.close_after_flush = progress.close;
    }

    /// Sends the output, then lets the handler use input that waited for it (pipelined
    /// requests beyond one output buffer). When the socket is full it waits for EPOLLOUT
    /// and stops reading meanwhile: the worker's back-pressure.
    fn serve(self: *Worker, slot: u32) void {
        const c = &self.connections[slot];
        // Each round consumes input, so the rounds are bounded by the input buffer.
        var rounds: usize = 0;
        while (rounds <= config.read_buffer_bytes) : (rounds += 1) {
            switch (self.flush(slot)) {
                .blocked => return self.watch(slot, true),
                .failed => return self.closeConnection(slot),
                .sent => {},
            }
            if (c.close_after_flush) return self.closeConnection(slot);
            if (!c.more_input) break;
            self.handleInput(slot);
        }
        self.watch(slot, false);
    }

    const FlushResult = enum { sent, blocked, failed };

    fn flush(self: *Worker, slot: u32) FlushResult {
        const c = &self.connections[slot];
        const out = self.outBuf(slot);
        while (c.out_start < c.out_end) {
            const n = sys.send(c.fd, out[c.out_start..c.out_end]) catch |err| switch (err) {
                error.WouldBlock => return .blocked,
                error.Interrupted => continue,
                else => return .failed,
            };
            c.out_start += @intCast(n);
        }
        c.out_start = 0;
        c.out_end = 0;
        return .sent;
    }

    fn isIdleHttp(self: *const Worker, slot: u32) bool {
        const c = &self.connections[slot];
        const listener_index = self.options.sockets[c.socket_index].listener_index;
        return config.listeners[listener_index].handler == .http and c.in_len == 0;
    }

    /// Switches a connection between reading and waiting to write, only when it changes.
    fn watch(self: *Worker, slot: u32, out: bool) void {
        const c = &self.connections[slot];
        if (c.watching_out == out) return;
        const events: u32 = if (out) linux.EPOLL.OUT else linux.EPOLL.IN | linux.EPOLL.RDHUP;
        const data = token(Kind.connection, slot);
        sys.epollCtl(self.epfd, linux.EPOLL.CTL_MOD, c.fd, events, data) catch {
            return self.closeConnection(slot);
        };
        c.watching_out = out;
    }

    fn closeConnection(self: *Worker, slot: u32) void {
        const c = &self.connections[slot];
        std.debug.assert(c.fd != no_connection);
        sys.close(c.fd);
        c.fd = no_connection;
        self.free[self.free_len] = slot;
        self.free_len += 1;
        self.open_count -= 1;
        self.resumeListeners();
    }

    fn serveDatagrams(self: *Worker, socket_index: u16) bool {
        const socket = self.options.sockets[socket_index];
        const ctx = self.context(socket_index);
        var served: usize = 0;
        while (served < datagram_batch) : (served += 1) {
            var from: sys.Peer = .{};
            const n = sys.recvfrom(socket.fd, self.datagram, &from) catch |err| switch (err) {
                error.WouldBlock => return false,
                error.Interrupted => continue,
                else => {
                    log.warn("recvfrom failed: {s}", .{@errorName(err)});
                    return false;
                },
            };
            self.stats.datagrams += 1;
            const reply_len = handlers.onDatagram(&ctx, self.datagram[0..n], self.reply);
            if (reply_len == 0) continue;
            _ = sys.sendto(socket.fd, self.reply[0..reply_len], &from) catch {};
        }
        return true;
    }
};
