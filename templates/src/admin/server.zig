//! The admin listener: a small HTTP/1.1 server for operators and their tools (`/metrics`,
//! `/healthz`, `/readyz`, `/status`), run inside an epoll loop that someone else owns: the
//! supervisor's (never a worker's), or the process's own with `--standalone`.
//!
//! It must never hold that loop up: its socket and connections are non-blocking, a bounded
//! number of connections is served at once (a newcomer beyond them takes the place of the
//! one that has been reading a head the longest), each has a deadline (the head within
//! `headerTimeoutMs` of the connection or of the previous response, a write that makes no
//! progress for `writeTimeoutMs`), and requests are parsed by the same strict parser as
//! every HTTP listener, with the same limits. A response is built whole into the
//! connection's output buffer and written as the socket takes it. After a response that
//! closes the connection (an error, `Connection: close`, a request with a body) the server
//! shuts its side and reads what the client still sends for a moment before it closes
//! (lingering close), so the answer is not lost to a reset.
//!
//! The socket does not share its port (no SO_REUSEPORT): two processes serving one admin
//! port would answer for each other. In an upgrade the old supervisor closes it when the
//! new one has taken over, and the new one binds it then (`Server.open` is retried).
const std = @import("std");
const compat = @import("../compat.zig");
const address = @import("../address.zig");
const sys = @import("../net/sys.zig");
const parser = @import("../http/parser.zig");
const status = @import("../http/status.zig");
const date = @import("../http/date.zig");
const config = @import("../config.zig");
const events = @import("../events.zig");
const log = @import("../log.zig");
const linux = std.os.linux;
const assert = std.debug.assert;

/// Connections served at once.
pub const max_connections = 16;
/// A request head must fit here (the parser's limits leave room for its line ending).
const read_buffer_bytes = 8192;
/// The largest response (head and body); a larger body is a 500.
pub const output_bytes = 4 << 20;
/// How long a closing connection may still send before it is closed for good.
const linger_ms = 1_000;
const accept_batch = 32;
/// A connection is not closed for a newcomer before it had this long to send its head: a
/// burst of clients does not evict its own members before they are read.
const evict_min_age_ms = 100;

pub const Path = enum { metrics, healthz, readyz, status };

pub const Request = struct {
    path: Path,
    /// The `Accept` header ("" when absent), for content negotiation.
    accept: []const u8,
};

/// What a responder put in the body: its status and type.
pub const Answer = struct { status: u16, content_type: []const u8 };

/// Where a responder writes a body; what does not fit makes the answer a 500.
pub const Body = struct {
    buf: []u8,
    len: usize = 0,
    overflow: bool = false,

    pub fn write(self: *Body, bytes: []const u8) void {
        if (self.overflow or bytes.len > self.buf.len - self.len) {
            self.overflow = true;
            return;
        }
        @memcpy(self.buf[self.len..][0..bytes.len], bytes);
        self.len += bytes.len;
    }

    pub fn print(self: *Body, comptime format: []const u8, args: anytype) void {
        if (self.overflow) return;
        const out = compat.bufPrint(self.buf[self.len..], format, args) catch {
            self.overflow = true;
            return;
        };
        self.len += out.len;
    }

    pub fn written(self: *const Body) []const u8 {
        return self.buf[0..self.len];
    }
};

/// Who answers: the supervisor, or the standalone process.
pub const Responder = struct {
    context: *anyopaque,
    answer: *const fn (context: *anyopaque, request: Request, body: *Body) Answer,
};

pub const Options = struct {
    epfd: sys.Fd,
    /// The epoll data of the event with `index` (0: the listening socket).
    token: *const fn (index: u32) u64,
    header_timeout_ms: u32,
    write_timeout_ms: u32,
    max_body_bytes: u64,
};

const State = enum { free, reading, writing, lingering };

const Conn = struct {
    fd: sys.Fd = -1,
    state: State = .free,
    /// Tells an event for this connection from one for an earlier one in the same slot.
    serial: u24 = 0,
    parser: parser.Parser = undefined,
    in: [read_buffer_bytes]u8 = undefined,
    in_len: usize = 0,
    out: []u8 = &.{},
    out_len: usize = 0,
    sent: usize = 0,
    keep_alive: bool = false,
    /// When reading began (the head's deadline counts from it), for eviction too.
    since_ms: u64 = 0,
    deadline_ms: u64 = 0,
};

pub const Server = struct {
    fd: sys.Fd,
    port: u16,
    options: Options,
    conns: *[max_connections]Conn,
    /// Where a responder writes a body before it is copied behind the head.
    scratch: []u8,
    dates: date.Cache = .{},
    /// Set by the loop's owner before the first event.
    responder: ?Responder = null,

    pub const OpenError = sys.Error || error{ OutOfMemory, Collision };

    /// Binds `endpoint` (port 0: the kernel picks one) and watches it in `options.epfd`.
    pub fn open(endpoint: address.Endpoint, options: Options) OpenError!Server {
        const family: u32 = if (endpoint.address.isIp6()) linux.AF.INET6 else linux.AF.INET;
        const kind = linux.SOCK.STREAM | linux.SOCK.NONBLOCK | linux.SOCK.CLOEXEC;
        const fd = try sys.socket(family, kind, 0);
        errdefer sys.close(fd);
        // TIME_WAIT connections of a previous run must not keep the port; no SO_REUSEPORT.
        try sys.setsockoptInt(fd, linux.SOL.SOCKET, linux.SO.REUSEADDR, 1);
        if (endpoint.address.isIp6()) {
            try sys.setsockoptInt(fd, linux.IPPROTO.IPV6, linux.IPV6.V6ONLY, 1);
        }
        const sockaddr = address.SockAddr.init(endpoint.address, endpoint.port);
        try sys.bind(fd, sockaddr.ptr(), sockaddr.len);
        try sys.listen(fd, 64);
        var bound: address.SockAddr = .{ .storage = undefined, .len = 0 };
        bound.len = try sys.getsockname(fd, &bound.storage);
        const memory = try compat.mapMemory(@sizeOf([max_connections]Conn));
        const conns: *[max_connections]Conn = @ptrCast(@alignCast(memory.ptr));
        @memset(conns, .{});
        for (conns) |*c| c.out = try compat.mapMemory(output_bytes);
        const scratch = try compat.mapMemory(output_bytes);
        try sys.epollCtl(options.epfd, linux.EPOLL.CTL_ADD, fd, linux.EPOLL.IN, options.token(0));
        return .{
            .fd = fd,
            .port = bound.port(),
            .options = options,
            .conns = conns,
            .scratch = scratch,
        };
    }

    /// Closes the listening socket and every connection (the buffers stay mapped).
    pub fn close(self: *Server) void {
        for (self.conns) |*c| {
            if (c.state != .free) self.drop(c);
        }
        _ = linux.epoll_ctl(self.options.epfd, linux.EPOLL.CTL_DEL, self.fd, null);
        sys.close(self.fd);
    }

    fn connToken(self: *const Server, slot: usize) u64 {
        const serial: u32 = self.conns[slot].serial;
        return self.options.token((serial << 8) | @as(u32, @intCast(slot + 1)));
    }

    /// An epoll event whose data `options.token(index)` made.
    pub fn onEvent(self: *Server, index: u32, now_ms: u64) void {
        if (index == 0) return self.acceptBatch(now_ms);
        const slot = (index & 0xff) - 1;
        if (slot >= max_connections) return;
        const c = &self.conns[slot];
        // An event of the same batch about a connection closed meanwhile.
        if (c.state == .free or c.serial != @as(u24, @truncate(index >> 8))) return;
        switch (c.state) {
            .free => unreachable,
            .reading => self.onReadable(c, slot, now_ms),
            .writing => self.flush(c, slot, now_ms),
            .lingering => self.discard(c),
        }
    }

    /// The earliest connection deadline; null without connections.
    pub fn nextDeadlineMs(self: *const Server) ?u64 {
        var next: ?u64 = null;
        for (self.conns) |c| {
            if (c.state == .free) continue;
            next = if (next) |n| @min(n, c.deadline_ms) else c.deadline_ms;
        }
        return next;
    }

    /// Ends what ran out of time: a head not complete in time gets a 408, a client that
    /// does not read or keeps sending while closed is dropped.
    pub fn expire(self: *Server, now_ms: u64) void {
        for (self.conns, 0..) |*c, slot| {
            if (c.state == .free or now_ms < c.deadline_ms) continue;
            if (c.state == .reading and c.in_len > 0) {
                self.respondError(c, 408);
                c.deadline_ms = now_ms + self.options.write_timeout_ms;
                self.flush(c, slot, now_ms);
            } else self.drop(c);
        }
    }

    fn acceptBatch(self: *Server, now_ms: u64) void {
        var n: usize = 0;
        while (n < accept_batch) : (n += 1) {
            const fd = sys.accept(self.fd) catch |err| switch (err) {
                error.ConnectionAborted, error.ConnectionReset, error.Interrupted => continue,
                // WouldBlock, or out of descriptors: what waits stays in the kernel's queue.
                else => return,
            };
            const slot = self.freeSlot(now_ms) orelse {
                sys.close(fd);
                continue;
            };
            const c = &self.conns[slot];
            c.serial +%= 1;
            c.fd = fd;
            c.state = .reading;
            c.parser = parser.Parser.init(self.parserLimits());
            c.in_len = 0;
            self.startReading(c, now_ms);
            const data = self.connToken(slot);
            sys.epollCtl(self.options.epfd, linux.EPOLL.CTL_ADD, fd, linux.EPOLL.IN, data) catch {
                self.drop(c);
            };
        }
    }

    fn parserLimits(self: *const Server) parser.Limits {
        return .{
            .request_line_bytes = read_buffer_bytes / 2,
            .head_bytes = read_buffer_bytes - 1,
            .body_bytes = self.options.max_body_bytes,
        };
    }

    /// A free slot, or the one of the connection that has been reading a head the longest
    /// (closed for the newcomer); null when every one is busy answering or just arrived.
    fn freeSlot(self: *Server, now_ms: u64) ?usize {
        var oldest: ?usize = null;
        for (self.conns, 0..) |c, slot| {
            if (c.state == .free) return slot;
            if (c.state != .reading or now_ms -| c.since_ms < evict_min_age_ms) continue;
            if (oldest == null or c.since_ms < self.conns[oldest.?].since_ms) oldest = slot;
        }
        const slot = oldest orelse return null;
        self.drop(&self.conns[slot]);
        return slot;
    }

    fn startReading(self: *const Server, c: *Conn, now_ms: u64) void {
        c.state = .reading;
        c.since_ms = now_ms;
        c.deadline_ms = now_ms + self.options.header_timeout_ms;
    }

    fn onReadable(self: *Server, c: *Conn, slot: usize, now_ms: u64) void {
        const n = sys.read(c.fd, c.in[c.in_len..]) catch |err| switch (err) {
            error.WouldBlock, error.Interrupted => return,
            else => return self.drop(c),
        };
        if (n == 0) return self.drop(c);
        c.in_len += n;
        self.serve(c, slot, now_ms);
    }

    /// Answers the request whose head is in the input, if it is complete.
    fn serve(self: *Server, c: *Conn, slot: usize, now_ms: u64) void {
        assert(c.state == .reading);
        const step = c.parser.next(c.in[0..c.in_len]);
        switch (step.event) {
            // The head limit is below the buffer: the parser answers 431 before it fills.
            .need_more => return consume(c, step.consumed),
            .err => |e| self.respondError(c, e.status()),
            .head => |head| {
                self.respond(c, &head);
                // Without a body the message ends with its head; a body is not read.
                if (head.body == .none or std.meta.eql(head.body, parser.Body{ .length = 0 })) {
                    consume(c, step.consumed);
                    const end = c.parser.next(c.in[0..c.in_len]);
                    if (end.event == .end) consume(c, end.consumed) else c.keep_alive = false;
                } else c.keep_alive = false;
            },
            .body, .end => self.respondError(c, 400),
        }
        c.deadline_ms = now_ms + self.options.write_timeout_ms;
        self.flush(c, slot, now_ms);
    }

    fn consume(c: *Conn, n: usize) void {
        compat.copyLeft(c.in[0 .. c.in_len - n], c.in[n..c.in_len]);
        c.in_len -= n;
    }

    fn respond(self: *Server, c: *Conn, head: *const parser.Head) void {
        c.keep_alive = head.persistent();
        const target = head.target;
        const path_end = compat.findScalar(u8, target, '?') orelse target.len;
        const path = pathOf(target[0..path_end]) orelse return self.respondError(c, 404);
        const get = std.mem.eql(u8, head.method, "GET");
        const head_only = std.mem.eql(u8, head.method, "HEAD");
        if (!get and !head_only) return self.respondError(c, 405);
        var body: Body = .{ .buf = self.scratch };
        const request: Request = .{ .path = path, .accept = head.field("accept") orelse "" };
        const responder = self.responder.?;
        const answer = responder.answer(responder.context, request, &body);
        if (body.overflow) return self.respondError(c, 500);
        self.writeResponse(c, answer.status, answer.content_type, body.written(), head_only);
    }

    fn pathOf(text: []const u8) ?Path {
        inline for (comptime std.enums.values(Path)) |p| {
            if (std.mem.eql(u8, text, "/" ++ @tagName(p))) return p;
        }
        return null;
    }

    fn respondError(self: *Server, c: *Conn, code: u16) void {
        if (code != 404) c.keep_alive = false;
        var buf: [64]u8 = undefined;
        const text = compat.bufPrint(&buf, "{d} {s}\n", .{ code, status.reason(code) }) catch "";
        self.writeResponse(c, code, "text/plain; charset=utf-8", text, false);
    }

    fn writeResponse(
        self: *Server,
        c: *Conn,
        code: u16,
        content_type: []const u8,
        body: []const u8,
        head_only: bool,
    ) void {
        const now_s = sys.realtimeSeconds();
        const allow = if (code == 405) "Allow: GET, HEAD\r\n" else "";
        const connection = if (c.keep_alive) "keep-alive" else "close";
        const head = compat.bufPrint(c.out, "HTTP/1.1 {d} {s}\r\nDate: {s}\r\n" ++
            "Content-Type: {s}\r\nContent-Length: {d}\r\nCache-Control: no-store\r\n" ++
            "{s}Connection: {s}\r\n\r\n", .{
            code,         status.reason(code), self.dates.get(now_s),
            content_type, body.len,            allow,
            connection,
        }) catch unreachable; // a few hundred bytes in megabytes
        c.out_len = head.len;
        c.sent = 0;
        if (!head_only) {
            assert(body.len <= c.out.len - c.out_len);
            @memcpy(c.out[c.out_len..][0..body.len], body);
            c.out_len += body.len;
        }
        c.state = .writing;
    }

    /// Writes what the socket takes; then reads the next request, or closes.
    fn flush(self: *Server, c: *Conn, slot: usize, now_ms: u64) void {
        assert(c.state == .writing);
        var progressed = false;
        while (c.sent < c.out_len) {
            const n = sys.sendNow(c.fd, c.out[c.sent..c.out_len]) catch |err| switch (err) {
                error.Interrupted => continue,
                error.WouldBlock => break,
                else => return self.drop(c),
            };
            c.sent += n;
            progressed = true;
        }
        if (c.sent < c.out_len) {
            if (progressed) c.deadline_ms = now_ms + self.options.write_timeout_ms;
            return self.watch(c, slot, linux.EPOLL.OUT);
        }
        if (!c.keep_alive) {
            // Our FIN first; what the client still sends is read away until it closes.
            sys.shutdownWrite(c.fd);
            c.state = .lingering;
            c.deadline_ms = now_ms + linger_ms;
            return self.watch(c, slot, linux.EPOLL.IN);
        }
        self.startReading(c, now_ms);
        self.watch(c, slot, linux.EPOLL.IN);
        // A pipelined request may be waiting in the input already.
        if (c.in_len > 0) self.serve(c, slot, now_ms);
    }

    fn watch(self: *const Server, c: *const Conn, slot: usize, interest: u32) void {
        const data = self.connToken(slot);
        // Registered at accept: only ENOMEM fails this, and the deadline still ends it.
        sys.epollCtl(self.options.epfd, linux.EPOLL.CTL_MOD, c.fd, interest, data) catch {};
    }

    fn discard(self: *Server, c: *Conn) void {
        var scratch: [4096]u8 = undefined;
        var reads: usize = 0;
        while (reads < 16) : (reads += 1) {
            const n = sys.read(c.fd, &scratch) catch |err| switch (err) {
                error.WouldBlock => return,
                error.Interrupted => continue,
                else => return self.drop(c),
            };
            if (n == 0) return self.drop(c);
        }
    }

    fn drop(self: *Server, c: *Conn) void {
        _ = self;
        assert(c.state != .free);
        sys.close(c.fd);
        c.fd = -1;
        c.state = .free;
        c.in_len = 0;
        c.out_len = 0;
        c.sent = 0;
    }
};

/// The TCP listener whose port `endpoint` would take too (the same port and an address
/// that overlaps: equal, or a wildcard covering the other; "::" may be dual-stack).
pub fn collidingListener(
    endpoint: address.Endpoint,
    endpoints: *const [config.listeners.len]address.Endpoint,
) ?usize {
    if (endpoint.port == 0) return null;
    for (config.listeners, endpoints, 0..) |l, e, i| {
        if (l.protocol != .tcp or e.port != endpoint.port) continue;
        if (overlaps(e.address, endpoint.address)) return i;
    }
    return null;
}

fn overlaps(a: address.Address, b: address.Address) bool {
    if (std.meta.eql(a, b)) return true;
    if (isWildcard(a) and (a.isIp6() or !b.isIp6())) return true;
    return isWildcard(b) and (b.isIp6() or !a.isIp6());
}

fn isWildcard(a: address.Address) bool {
    return switch (a) {
        .ip4 => |bytes| std.mem.allEqual(u8, &bytes, 0),
        .ip6 => |bytes| std.mem.allEqual(u8, &bytes, 0),
    };
}

/// Where the admin endpoint came from, for messages that name what to change.
pub const Origin = enum { spec, flag };

/// Opens the admin listener, or says why not (an `error` event naming `admin` or `--admin`
/// and a log line) and returns null. `quiet_in_use`: a port in use is the caller's to retry
/// (an upgrade's new supervisor, while the old one still holds it).
pub fn start(
    endpoint: address.Endpoint,
    origin: Origin,
    endpoints: *const [config.listeners.len]address.Endpoint,
    options: Options,
    quiet_in_use: bool,
) Server.OpenError!Server {
    const what = switch (origin) {
        .spec => "admin (in the spec)",
        .flag => "--admin",
    };
    var text: [64]u8 = undefined;
    const host = address.format(endpoint.address, &text);
    if (collidingListener(endpoint, endpoints)) |i| {
        const l = config.listeners[i];
        var other: [64]u8 = undefined;
        const theirs = address.format(endpoints[i].address, &other);
        const port = endpoints[i].port;
        reportFailure("{s} {s}:{d} collides with tcp listener {s} at {s}:{d}; give the admin " ++
            "listener another port", .{ what, host, endpoint.port, l.name, theirs, port });
        return error.Collision;
    }
    return Server.open(endpoint, options) catch |err| {
        if (err == error.AddressInUse and quiet_in_use) return err;
        reportFailure("{s} {s}:{d}: cannot open the admin listener: {s}", .{
            what, host, endpoint.port, @errorName(err),
        });
        return err;
    };
}

fn reportFailure(comptime format: []const u8, args: anytype) void {
    var buf: [512]u8 = undefined;
    const message = compat.bufPrint(&buf, format, args) catch "cannot open the admin listener";
    log.err("{s}", .{message});
    var line = events.Line.begin("error");
    line.string("message", message);
    line.string("phase", "admin");
    line.emit();
}

test "the admin port collides with a TCP listener on an overlapping address only" {
    const ep = struct {
        fn v4(a: u8, port: u16) address.Endpoint {
            return .{ .address = .{ .ip4 = .{ a, 0, 0, a } }, .port = port };
        }
    };
    try std.testing.expect(overlaps(ep.v4(0, 1).address, ep.v4(127, 1).address));
    try std.testing.expect(!overlaps(ep.v4(10, 1).address, ep.v4(127, 1).address));
    const six: address.Address = .{ .ip6 = @splat(0) };
    try std.testing.expect(overlaps(six, ep.v4(127, 1).address));
    var loopback6: [16]u8 = @splat(0);
    loopback6[15] = 1;
    try std.testing.expect(!overlaps(.{ .ip6 = loopback6 }, ep.v4(127, 1).address));
    try std.testing.expect(!overlaps(.{ .ip6 = loopback6 }, ep.v4(0, 1).address));
}

test "a request path names an endpoint only exactly" {
    try std.testing.expectEqual(Path.metrics, Server.pathOf("/metrics").?);
    try std.testing.expectEqual(Path.readyz, Server.pathOf("/readyz").?);
    try std.testing.expect(Server.pathOf("/metrics/") == null);
    try std.testing.expect(Server.pathOf("/") == null);
}

test "a body that does not fit says so instead of being cut" {
    var buf: [8]u8 = undefined;
    var body: Body = .{ .buf = &buf };
    body.print("{d}", .{1234});
    body.write("5678");
    try std.testing.expectEqualStrings("12345678", body.written());
    body.write("9");
    try std.testing.expect(body.overflow);
}
