//! HTTP application modules: `Module`, which turns a user's module and the spec's route
//! table into a handler (the request and response it gives routes are in `request.zig` and
//! `response.zig`, what goes on the wire in `framing.zig`): it
//! parses with `http/parser.zig` (the same strict rules, 408/413/431/… and `Date` as the
//! built-in `http` handler), routes at compile time (`http/router.zig`), and writes the
//! answer. Held requests are woken through `app_wake.zig`; the test helpers that run a
//! module from bytes are in `app_http_testing.zig`.
//!
//! Memory, all reserved before the first request, none allocated per request:
//! - A request body reaches its route whole, in the connection's read buffer (per
//!   connection, `readBufferBytes`): the head and the body must fit there together, so the
//!   largest body is the smaller of `maxBodyBytes` and the read buffer minus the head. A larger
//!   one is answered 413 (then a lingering close), whether its length was declared or it came
//!   in chunks. Chunked bodies are decoded in place; the chunk framing already decoded is
//!   squeezed out when the buffer fills, so it costs no room, but a chunk-size line or trailer
//!   section that does not fit beside the body makes it a 413 too.
//! - With `bodyBuffers` in the spec, a module also has that many body buffers per worker, of
//!   `maxBodyBytes` each (reserved at start, backed only once used): a body that outgrows the
//!   read buffer moves into one, so bodies reach `maxBodyBytes` whatever the read buffer.
//!   When every buffer is taken, such a request gets 503 (the connection then closes).
//! - The response body and headers are written into per-worker buffers (one worker serves
//!   one request at a time) and then copied behind the status line into the connection's
//!   write buffer: a response must fit in `writeBufferBytes` (a 500 otherwise).
//! - `req.arena` hands out per-worker scratch memory (`scratchBytes`), reset after each
//!   request. When it runs out the route gets `error.OutOfMemory` and the client a 503.
//!
//! Per worker means per process: each worker process has its own module `State`.
//!
//! A route may also answer later (a long poll, a request that waits for something of this
//! worker): `res.later(ms)` holds the request, and the worker runs the route again once `ms`
//! have passed or another callback called `http.wake` with the route's waiter, whichever
//! comes first. The held request stays in its connection's read buffer (nothing is copied or
//! allocated), the connection is not read meanwhile, and the route's delay is its only
//! deadline.
const std = @import("std");
const config = @import("../../config.zig");
const sys = @import("../../net/sys.zig");
const compat = @import("../../compat.zig");
const app_peer = @import("peer.zig");
const api = @import("../api.zig");
const app_timer = @import("timer.zig");
const parser = @import("../../http/parser.zig");
const router = @import("../../http/router.zig");
const app_metrics = @import("../../metrics/app.zig");
const metrics_cell = @import("../../metrics/cell.zig");
const builtin_http = @import("../http.zig");
const request_mod = @import("request.zig");
const response_mod = @import("response.zig");
const framing_mod = @import("framing.zig");
const app_wake = @import("wake.zig");
const app_http_testing = @import("testing.zig");
const access_log = @import("../../access_log.zig");
const assert = std.debug.assert;

/// Room for the headers a route adds (`res.header`), per worker.
pub const header_bytes = 4096;

pub const Method = router.Method;
/// A metric a module declares in its `pub const metrics` (see `metrics/app.zig`).
pub const Metric = app_metrics.Metric;
pub const Route = router.Route;
pub const Param = router.Param;
/// The most parameters a route path can capture (each `:param` and `*rest`).
pub const max_params = router.max_params;

/// A request held by `res.later`, for `wake`.
pub const Waiter = app_wake.Waiter;
/// Runs a held request's route again on the worker loop's next turn (see `app_wake.zig`).
pub const wake = app_wake.wake;
pub const takeWake = app_wake.take;
pub const TestResponse = app_http_testing.TestResponse;

/// The client's address and port.
pub const Peer = app_peer.Peer;

pub const Request = request_mod.Request;
pub const JsonError = request_mod.JsonError;
pub const JsonProblem = request_mod.JsonProblem;
pub const Response = response_mod.Response;
pub const WriteError = response_mod.WriteError;
pub const HeaderError = response_mod.HeaderError;
pub const Continuation = response_mod.Continuation;
pub const BodyWriter = response_mod.BodyWriter;
pub const continue_response = framing_mod.continue_response;
/// The request head or body did not arrive in time.
pub const onTimeout = framing_mod.onTimeout;

const Framing = framing_mod.Framing;
const appendResponse = framing_mod.appendResponse;
const appendStatus = framing_mod.appendStatus;
const chunkHead = framing_mod.chunkHead;
const hasNoBody = framing_mod.hasNoBody;
const refuse = framing_mod.refuse;

/// The clock of held requests and of `access` durations (the test helpers keep their own).
fn nowUs() u64 {
    return app_http_testing.clock_us orelse sys.monotonicUs();
}

/// Which of its own answers the router asks the optional `routerError` hook of a module to
/// fill: no route has the path (404), the path's routes have other methods (405, `Allow` is
/// set), or the body is larger than a request may bring (413, then the connection closes).
pub const RouterError = enum { not_found, method_not_allowed, content_too_large };

/// What the optional `access` hook of a module learns after each routed request.
pub const Access = struct {
    method: []const u8,
    path: []const u8,
    status: u16,
    /// Response body bytes (0 for HEAD).
    body_bytes: usize,
    duration_us: u64,
    /// The route's name; "" when no route answered (404, 405).
    route: []const u8,
};

/// One line in the request log: the request (`head`, null when refused before its head was
/// whole) and its answer.
fn logRequest(
    ctx: *const api.Context,
    conn: *Connection,
    head: ?*const parser.Head,
    status: u16,
    body_bytes: u64,
    route: []const u8,
) void {
    if (!access_log.enabled) return;
    const now_us = sys.monotonicUs();
    const since_us = conn.log.since_us orelse now_us;
    conn.log.peer.get(ctx.fd);
    var entry: access_log.Entry = .{
        .time_ms = sys.realtimeMs(),
        .worker = ctx.worker_index,
        .listener = ctx.listener.name,
        .peer = conn.log.peer.address(),
        .peer_port = conn.log.peer.port,
        .method = "",
        .target = "",
        .http_1_0 = false,
        .status = status,
        .body_bytes = body_bytes,
        .duration_us = now_us -| since_us,
        .route = route,
        .referer = null,
        .user_agent = null,
    };
    if (head) |h| {
        entry.method = h.method;
        entry.target = h.target;
        entry.http_1_0 = h.version == .http_1_0;
        entry.referer = h.field("referer");
        entry.user_agent = h.field("user-agent");
    }
    access_log.record(&entry, now_us / std.time.us_per_ms);
}

/// The current request timed out (answered 408): logged when part of it had arrived, as the
/// built-in handler logs its 408s.
pub fn logTimeout(ctx: *const api.Context, conn: *Connection) void {
    if (!access_log.enabled) return;
    if (conn.log.since_us == null) return;
    const head: ?*const parser.Head = if (conn.head) |*h| h else null;
    logRequest(ctx, conn, head, 408, 0, "");
    conn.log.since_us = null;
}

/// Drops the chunk framing that lies between a request's decoded body and its unparsed bytes
/// (the request starts `input`): head and body move right over it, and the returned count
/// of bytes at the front is to be consumed. The head's slices need no rebase: they move
/// right by that count, and the connection then moves everything left by as much.
fn squeeze(conn: *Connection, input: []u8) usize {
    // A body in a body buffer leaves only the head to keep.
    const kept = conn.body_start + if (conn.body_buffer == null) conn.body_len else 0;
    assert(conn.parsed >= kept);
    const gap = conn.parsed - kept;
    if (gap == 0) return 0;
    // Backwards: the destination overlaps the source from the right.
    var i = kept;
    while (i > 0) {
        i -= 1;
        input[gap + i] = input[i];
    }
    conn.parsed -= gap;
    return gap;
}

/// A connection's progress through its current request. The request's bytes stay in the
/// connection's read buffer until it is answered: the head is parsed in place and the body
/// is gathered behind it, so that the route sees both whole.
pub const Connection = struct {
    parser: parser.Parser,
    /// Bytes of the current request the parser has used, from the request's first byte.
    parsed: usize = 0,
    head: ?parser.Head = null,
    /// The gathered body starts `body_start` bytes after the request's first byte.
    body_start: usize = 0,
    body_len: usize = 0,
    /// A response body being streamed: no further request is read until it ends.
    streaming: ?Streaming = null,
    /// The largest body of any request (`maxBodyBytes`, at most the read buffer or a body
    /// buffer); without body buffers a chunked one is held to what fits beside its head.
    max_body_bytes: u64,
    /// The module's body buffer this request's body is gathered in; null: the read buffer.
    body_buffer: ?u16 = null,
    /// The current request is held by its route (`res.later`).
    held: ?Held = null,
    log: Logged = .{},

    /// What the request log keeps of the connection; nothing when the spec has no log.
    const Logged = if (access_log.enabled) struct {
        /// When the current request's first bytes were seen (monotonic µs).
        since_us: ?u64 = null,
        peer: access_log.PeerText = .{},
    } else struct {};

    const Held = struct {
        /// When the route first held it (µs, monotonic).
        since_us: u64,
        waits: u32,
    };

    const Streaming = struct {
        continuation: Continuation,
        sent: u64,
        chunked: bool,
        keep_alive: bool,
    };

    /// `body_buffers`: whether the module has body buffers (of `config.max_body_bytes`).
    pub fn init(max_body_bytes: u64, body_buffers: bool) Connection {
        // A route sees its body whole, so it must fit where it is gathered.
        const room: u64 = if (body_buffers) config.max_body_bytes else config.read_buffer_bytes;
        const body_bytes = @min(max_body_bytes, room);
        return .{
            .parser = parser.Parser.init(builtin_http.parserLimits(body_bytes)),
            .max_body_bytes = body_bytes,
        };
    }

    /// The bytes of the request moved `delta` bytes to the left (the connection dropped
    /// the answered requests before it): the parsed head's slices follow them.
    fn rebase(self: *Connection, delta: usize) void {
        const head = if (self.head) |*h| h else return;
        head.method = shift(head.method, delta);
        head.target = shift(head.target, delta);
        for (self.parser.fields[0..head.fields.len]) |*f| {
            f.name = shift(f.name, delta);
            f.value = shift(f.value, delta);
        }
    }

    fn shift(slice: []const u8, delta: usize) []const u8 {
        return (slice.ptr - delta)[0..slice.len];
    }
};

/// The status of the runtime's own errors when the route lets them through: a body that
/// `req.json` refused (400); an upstream call's failure (see app_upstream.zig): the upstream
/// is down or busy (503), slow (504), or its reply was bad (502).
fn runtimeStatus(err: anyerror) ?u16 {
    if (err == error.InvalidJson) return 400;
    if (err == error.UpstreamDown or err == error.UpstreamBusy) return 503;
    if (err == error.UpstreamTimeout) return 504;
    if (err == error.UpstreamBadReply) return 502;
    return null;
}

/// The handler of an HTTP module: `M` is the user's file, `routes` the spec's table,
/// `file` the module's path for build errors.
pub fn Module(
    comptime M: type,
    comptime file: []const u8,
    comptime routes: []const Route,
    comptime scratch_bytes: usize,
    comptime body_buffers: u16,
) type {
    comptime {
        if (!@hasDecl(M, "State")) {
            @compileError(file ++ ": declare `pub const State = struct { ... }` with " ++
                "`pub fn init(allocator: std.mem.Allocator) !State` and " ++
                "`pub fn deinit(self: *State, allocator: std.mem.Allocator) void`");
        }
        for (routes) |r| {
            if (!@hasDecl(M, r.name)) {
                @compileError(file ++ ": route " ++ r.name ++ " (" ++ @tagName(r.method) ++
                    " " ++ r.path ++ ") has no function; add:\n    pub fn " ++ r.name ++
                    "(state: *State, req: *http.Request, res: *http.Response) !void");
            }
        }
    }
    return struct {
        pub const State = M.State;
        /// The module's own metrics: `service.metrics.inc(.name)` (see `metrics/app.zig`).
        pub const metrics = app_metrics.Metrics(M);

        var state: State = undefined;
        var initialized = false;
        var scratch: [scratch_bytes]u8 = undefined;
        var body_buf: [config.write_buffer_bytes]u8 = undefined;
        var header_buf: [header_bytes]u8 = undefined;
        /// Requests whose route ran out of scratch memory (answered 503).
        pub var scratch_exhausted: u64 = 0;
        /// Requests refused because every body buffer was taken (answered 503).
        pub var body_buffers_exhausted: u64 = 0;

        /// `body_buffers` buffers of `config.max_body_bytes`, one after the other.
        var pool: []u8 = &.{};
        /// The free ones, taken from the end (the last freed is reused first: its pages are
        /// the ones most likely backed already).
        var pool_free: [body_buffers]u16 = undefined;
        var pool_free_len: u16 = 0;

        /// Makes this process's state; called once per worker before it serves.
        const ticker = app_timer.Ticker(M, State);

        pub fn init(allocator: std.mem.Allocator, now_ms: u64) !void {
            if (initialized) return;
            try app_wake.reserve();
            try reservePool();
            errdefer releasePool();
            state = try State.init(allocator);
            initialized = true;
            ticker.start(now_ms);
        }

        pub fn deinit(allocator: std.mem.Allocator) void {
            if (!initialized) return;
            ticker.stop();
            state.deinit(allocator);
            releasePool();
            initialized = false;
        }

        /// Reserves the body buffers (at `init`; the test helpers too).
        pub fn reservePool() !void {
            if (body_buffers == 0 or pool.len > 0) return;
            pool = try compat.mapMemory(@as(usize, body_buffers) * config.max_body_bytes);
            for (&pool_free, 0..) |*f, i| f.* = @intCast(body_buffers - 1 - i);
            pool_free_len = body_buffers;
        }

        fn releasePool() void {
            if (pool.len > 0) _ = std.os.linux.munmap(pool.ptr, pool.len);
            pool = &.{};
            pool_free_len = 0;
        }

        /// A connection's state for this module, its body limit from `--max-body`.
        pub fn initConnection(max_body_bytes: u64) Connection {
            return Connection.init(max_body_bytes, body_buffers > 0);
        }

        pub fn onClose(conn: *Connection) void {
            releaseBody(conn);
        }

        fn bodyBuffer(index: u16) []u8 {
            return pool[@as(usize, index) * config.max_body_bytes ..][0..config.max_body_bytes];
        }

        /// Moves the body gathered so far (the request starts `input`) into a free body buffer;
        /// false when every one is taken.
        fn takeBody(conn: *Connection, input: []const u8) bool {
            assert(conn.body_buffer == null);
            // Without body buffers (known at compile time) there is nothing to take.
            if (body_buffers > 0) {
                if (pool_free_len == 0) return false;
                pool_free_len -= 1;
                const index = pool_free[pool_free_len];
                const gathered = input[conn.body_start..][0..conn.body_len];
                @memcpy(bodyBuffer(index)[0..gathered.len], gathered);
                conn.body_buffer = index;
                return true;
            }
            return false;
        }

        pub fn releaseBody(conn: *Connection) void {
            if (body_buffers > 0) {
                const index = conn.body_buffer orelse return;
                assert(pool_free_len < body_buffers);
                pool_free[pool_free_len] = index;
                pool_free_len += 1;
                conn.body_buffer = null;
            }
        }

        /// The current request's body (its bytes start `request`).
        fn bodyOf(conn: *const Connection, request: []const u8) []const u8 {
            if (conn.body_buffer) |index| return bodyBuffer(index)[0..conn.body_len];
            return request[conn.body_start..][0..conn.body_len];
        }

        /// When the worker's loop must wake for this module's `tick`; null: never.
        pub fn nextTickMs() ?u64 {
            return ticker.nextMs();
        }

        pub fn tick(now_ms: u64) void {
            if (initialized) ticker.run(&state, now_ms);
        }

        /// The worker stops taking connections: the module may stop background work.
        pub fn drain() void {
            if (!initialized) return;
            if (@hasDecl(State, "drain")) state.drain();
        }

        /// Runs every complete request in `input` through the router, one response per
        /// call of the worker (each waits for the previous one's bytes to be sent).
        pub fn onData(
            ctx: *const api.Context,
            conn: *Connection,
            input: []u8,
            out: *api.Output,
        ) api.Progress {
            return serve(&state, ctx, conn, input, out);
        }

        /// Serves with an explicit state: the worker's, or a test's.
        pub fn serve(
            s: *State,
            ctx: *const api.Context,
            conn: *Connection,
            input: []u8,
            out: *api.Output,
        ) api.Progress {
            // A held request waits for its timer or its wake (reading is paused meanwhile).
            if (conn.held != null) return .{ .consumed = 0, .phase = .waiting };
            var progress: api.Progress = .{ .consumed = 0 };
            if (conn.streaming != null) {
                switch (continueStream(s, conn, out)) {
                    .more => {
                        progress.want_writable = true;
                        progress.paced = true;
                        return progress;
                    },
                    .failed, .done_close => {
                        progress.close = true;
                        return progress;
                    },
                    .done => {},
                }
            }
            const start = serveRequests(s, ctx, conn, input, out, &progress);
            assert(start <= input.len);
            // While the refused request's head still points into `input`.
            if (progress.rejected != 0) logRefused(ctx, conn, progress.rejected);
            progress.consumed = start;
            conn.rebase(start);
            if (start == 0 and conn.head != null and conn.held == null and !progress.close and
                input.len == config.read_buffer_bytes)
            {
                if (!makeRoom(s, conn, input, out, &progress)) {
                    logRefused(ctx, conn, if (progress.rejected != 0) progress.rejected else 503);
                    return progress;
                }
            }
            progress.phase = phaseOf(conn, input.len > start);
            return progress;
        }

        fn logRefused(ctx: *const api.Context, conn: *Connection, status: u16) void {
            if (!access_log.enabled) return;
            const head: ?*const parser.Head = if (conn.head) |*h| h else null;
            logRequest(ctx, conn, head, status, 0, "");
            conn.log.since_us = null;
        }

        /// Parses and answers the requests in `input`, one after the other, until one is
        /// incomplete, held, refused or streamed, or the connection is to close; returns the
        /// bytes of the requests answered (from the front of `input`).
        fn serveRequests(
            s: *State,
            ctx: *const api.Context,
            conn: *Connection,
            input: []u8,
            out: *api.Output,
            progress: *api.Progress,
        ) usize {
            var start: usize = 0;
            // Each step consumes input or moves the parser to its next event.
            var steps: usize = 0;
            const call_us: u64 = if (access_log.enabled) sys.monotonicUs() else 0;
            while (steps <= 2 * input.len + 2) : (steps += 1) {
                if (conn.head == null and conn.parsed == 0 and out.len > 0) break;
                if (access_log.enabled and conn.log.since_us == null and start < input.len) {
                    conn.log.since_us = call_us;
                }
                const step = conn.parser.next(input[start + conn.parsed ..]);
                switch (step.event) {
                    .need_more => {
                        conn.parsed += step.consumed;
                        break;
                    },
                    .head => |head| {
                        conn.parsed += step.consumed;
                        if (!startBody(s, conn, head, out, progress)) break;
                    },
                    .body => |piece| {
                        gatherBody(conn, input[start..], piece);
                        conn.parsed += step.consumed;
                    },
                    .end => {
                        conn.parsed += step.consumed;
                        const keep = switch (respond(s, ctx, conn, input[start..], out)) {
                            .later => |ms| {
                                // Its bytes stay (not consumed) until the route answers.
                                holdRequest(progress, ms);
                                break;
                            },
                            .sent => |keep| keep,
                        };
                        start += conn.parsed;
                        if (!nextRequest(conn, progress, keep)) break;
                    },
                    .err => |e| {
                        refuseRequest(s, conn, out, progress, e.status());
                        break;
                    },
                }
            }
            assert(start <= input.len);
            return start;
        }

        /// A request's head was parsed: its body is to be gathered right behind it. False
        /// when the request is refused (413) and nothing more is to be parsed.
        fn startBody(
            s: *State,
            conn: *Connection,
            head: parser.Head,
            out: *api.Output,
            progress: *api.Progress,
        ) bool {
            assert(conn.head == null);
            assert(conn.body_buffer == null);
            // A tunnel this server does not make: 501 and close, as the built-in handler
            // answers; routes never see it (RFC 9110 §9.3.6: never a 2xx to CONNECT).
            if (std.mem.eql(u8, head.method, "CONNECT")) {
                refuse(out, progress, 501);
                return false;
            }
            conn.head = head;
            conn.body_start = conn.parsed;
            conn.body_len = 0;
            const length = switch (head.body) {
                .length => |n| n,
                else => 0,
            };
            // With body buffers, a body that outgrows the read buffer moves.
            const fits = conn.body_start + length <= config.read_buffer_bytes;
            if (!fits and body_buffers == 0) {
                refuseRequest(s, conn, out, progress, 413);
                return false;
            }
            if (head.body == .chunked and body_buffers == 0) {
                // Chunk sizes that add up past the room beside the head: 413.
                const room = config.read_buffer_bytes - conn.body_start;
                conn.parser.limits.body_bytes = @min(conn.max_body_bytes, room);
            }
            if (head.expect_continue and head.body != .none) {
                _ = out.append(continue_response);
            }
            return true;
        }

        /// Appends a piece of the current request's body (which starts `request`) to the
        /// body gathered so far, in its body buffer or behind its head.
        fn gatherBody(conn: *Connection, request: []u8, piece: []const u8) void {
            assert(conn.head != null);
            if (conn.body_buffer) |index| {
                assert(conn.body_len + piece.len <= config.max_body_bytes);
                @memcpy(bodyBuffer(index)[conn.body_len..][0..piece.len], piece);
            } else {
                const at = conn.body_start + conn.body_len;
                assert(@intFromPtr(piece.ptr) >= @intFromPtr(request.ptr + at));
                compat.copyLeft(request[at..][0..piece.len], piece);
            }
            conn.body_len += piece.len;
        }

        /// The current request was answered (`keep`: the connection may carry another):
        /// whether the next one may be parsed now.
        fn nextRequest(conn: *Connection, progress: *api.Progress, keep: bool) bool {
            progress.requests += 1;
            endRequest(conn);
            if (conn.streaming != null) {
                // The body goes on once this output is sent; requests wait.
                progress.want_writable = true;
                progress.paced = true;
                return false;
            }
            if (!keep) {
                progress.close = true;
                return false;
            }
            return true;
        }

        /// A body fills the read buffer (which holds nothing else) and still is not whole:
        /// make room by moving it to a body buffer, or by dropping the chunk framing already
        /// decoded; 413 when neither makes any (503 when only a body buffer would). False
        /// when the request was refused and the connection is to close.
        fn makeRoom(
            s: *State,
            conn: *Connection,
            input: []u8,
            out: *api.Output,
            progress: *api.Progress,
        ) bool {
            assert(input.len == config.read_buffer_bytes);
            assert(conn.head != null);
            assert(conn.held == null);
            if (body_buffers > 0 and conn.body_buffer == null and !takeBody(conn, input)) {
                // Not the client's fault: counted here, not among the refused requests.
                body_buffers_exhausted += 1;
                appendStatus(out, 503, "", .{
                    .keep_alive = false,
                    .http_1_0 = false,
                    .head_only = false,
                });
                progress.close = true;
                return false;
            }
            const framing_bytes = squeeze(conn, input);
            if (framing_bytes == 0) {
                refuseRequest(s, conn, out, progress, 413);
                return false;
            }
            progress.consumed = framing_bytes;
            return true;
        }

        /// What the connection waits for; `unparsed`: bytes of a next request are buffered.
        fn phaseOf(conn: *const Connection, unparsed: bool) api.Phase {
            if (conn.held != null) return .waiting;
            if (conn.head != null) return .body;
            return if (unparsed) .head else .idle;
        }

        /// The current request is held: no more input until its route answers, and the
        /// route's delay is its deadline.
        fn holdRequest(progress: *api.Progress, ms: u32) void {
            progress.timer = .{ .after_ms = ms };
            progress.reading = .pause;
            progress.phase = .waiting;
        }

        /// Forgets the request just answered; the parser starts on the next one.
        fn endRequest(conn: *Connection) void {
            releaseBody(conn);
            conn.parsed = 0;
            conn.head = null;
            conn.held = null;
            if (access_log.enabled) conn.log.since_us = null;
            conn.parser.limits.body_bytes = conn.max_body_bytes;
        }

        /// A connection's timer fired: its held request (the first bytes of `input`) goes
        /// to its route again.
        pub fn onTimer(
            ctx: *const api.Context,
            conn: *Connection,
            input: []u8,
            out: *api.Output,
        ) api.Progress {
            return runHeld(&state, ctx, conn, input, out);
        }

        /// Runs a held request's route again, with an explicit state (the worker's or a
        /// test's): it answers, or holds the request once more.
        pub fn runHeld(
            s: *State,
            ctx: *const api.Context,
            conn: *Connection,
            input: []u8,
            out: *api.Output,
        ) api.Progress {
            // Only a held request arms this module's timer, and closing cancels it; were it
            // ever to fire otherwise, the connection goes on as it was.
            if (conn.held == null) {
                return .{ .consumed = 0, .phase = phaseOf(conn, input.len > 0) };
            }
            var progress: api.Progress = .{ .consumed = 0, .phase = .waiting };
            const keep = switch (respond(s, ctx, conn, input, out)) {
                .later => |ms| {
                    holdRequest(&progress, ms);
                    return progress;
                },
                .sent => |keep| keep,
            };
            progress.requests = 1;
            progress.consumed = conn.parsed;
            endRequest(conn);
            // Requests that arrived behind it are parsed once the connection reads again.
            progress.reading = .unpause;
            progress.phase = .idle;
            if (conn.streaming != null) {
                progress.want_writable = true;
                progress.paced = true;
            } else if (!keep) {
                progress.close = true;
            }
            return progress;
        }

        const Answer = union(enum) {
            /// Written; whether the connection may carry another request.
            sent: bool,
            /// Held by the route for this many milliseconds (nothing written).
            later: u32,
        };

        /// Routes one complete request (its bytes start `request`) and writes the answer,
        /// unless the route holds the request.
        fn respond(
            s: *State,
            ctx: *const api.Context,
            conn: *Connection,
            request: []u8,
            out: *api.Output,
        ) Answer {
            const head = conn.head.?;
            // Every request is timed, for the request-duration metrics (and `access`).
            const now_us = nowUs();
            const started_us = if (conn.held) |h| h.since_us else now_us;
            assert(started_us <= now_us);
            var framing: Framing = .{
                .keep_alive = head.persistent() and !ctx.draining,
                .http_1_0 = head.version == .http_1_0,
                .head_only = std.mem.eql(u8, head.method, "HEAD"),
            };
            const target = router.splitTarget(head.target);
            var fba = std.heap.FixedBufferAllocator.init(&scratch);
            var req: Request = .{
                .method = head.method,
                .target = head.target,
                .path = target.path,
                .query = target.query,
                .body = bodyOf(conn, request),
                .params = &.{},
                .fields = head.fields,
                .arena = fba.allocator(),
                .fd = ctx.fd,
                .waits = if (conn.held) |h| h.waits else 0,
                .waited_ms = (now_us - started_us) / std.time.us_per_ms,
                .draining = ctx.draining,
            };
            var res: Response = .{
                .body_buf = &body_buf,
                .header_buf = &header_buf,
                .waiter = .{ .slot = ctx.slot, .generation = ctx.connection_generation },
            };
            const route_name = runRoute(s, &req, &res);
            if (res.later_ms) |ms| {
                hold(conn, now_us);
                return .{ .later = ms };
            }
            writeAnswer(conn, &res, &framing, out);
            const duration_us = nowUs() - started_us;
            const route = routeIndex(route_name);
            metrics_cell.response(ctx.listener_index, route, res.status, duration_us);
            const body_bytes = if (framing.head_only) 0 else res.body_len;
            logRequest(ctx, conn, &head, res.status, body_bytes, route_name);
            if (@hasDecl(M, "access")) {
                M.access(s, .{
                    .method = head.method,
                    .path = target.path,
                    .status = res.status,
                    .body_bytes = if (framing.head_only) 0 else res.body_len,
                    .duration_us = duration_us,
                    .route = route_name,
                });
            }
            return .{ .sent = framing.keep_alive };
        }

        /// The position of a route (by the name `runRoute` returned) in the listener's
        /// metrics routes: the spec's routes, then "" for none.
        fn routeIndex(name: []const u8) usize {
            inline for (routes, 0..) |r, i| {
                if (std.mem.eql(u8, name, r.name)) return i;
            }
            return routes.len;
        }

        /// Runs the route that the request's method and path select; returns its name, or
        /// "" when there is none (then `res` is a 405 listing the path's methods, or a 404).
        fn runRoute(s: *State, req: *Request, res: *Response) []const u8 {
            assert(req.params.len == 0);
            const method = router.methodOf(req.method);
            var params: router.Params = .{};
            var allowed: [router.all_methods.len]bool = @splat(false);
            inline for (routes) |r| {
                if (router.matchPath(r.path, req.path, &params)) {
                    allowed[comptime router.methodIndex(r.method)] = true;
                    if (r.method == .GET) allowed[comptime router.methodIndex(.HEAD)] = true;
                    const wanted = method != null and (method.? == r.method or
                        (method.? == .HEAD and r.method == .GET and !hasRoute(.HEAD, r.path)));
                    if (wanted) {
                        req.params = params.items[0..params.len];
                        @field(M, r.name)(s, req, res) catch |err| answerError(req, res, err);
                        return r.name;
                    }
                    params.len = 0;
                }
            }
            answerUnrouted(allowed, res);
            customize(s, req, res, if (res.status == 404) .not_found else .method_not_allowed);
            return "";
        }

        /// The module's optional `routerError` writes the body (and headers) of the router's
        /// own answer into `res`, which holds its status (and a 405's `Allow`) already. The
        /// status stays; when the hook fails, what it wrote is dropped and the answer is the
        /// one without the hook.
        fn customize(s: *State, req: ?*const Request, res: *Response, kind: RouterError) void {
            if (!@hasDecl(M, "routerError")) return;
            assert(res.body_len == 0);
            const status = res.status;
            const header_len = res.header_len;
            res.body_buf = &body_buf;
            M.routerError(s, req, res, kind) catch {
                res.body_len = 0;
                res.header_len = header_len;
            };
            res.status = status;
            res.later_ms = null;
            res.continuation = null;
        }

        /// Refuses the current request with `status` and closes after a lingering close; a
        /// 413 carries what the module's `routerError` writes (no request: its body is not
        /// whole, and its head may not be parsed), unless that does not fit the output.
        fn refuseRequest(
            s: *State,
            conn: *const Connection,
            out: *api.Output,
            progress: *api.Progress,
            status: u16,
        ) void {
            if (status != 413 or !@hasDecl(M, "routerError")) return refuse(out, progress, status);
            var res: Response = .{ .status = 413, .body_buf = &.{}, .header_buf = &header_buf };
            customize(s, null, &res, .content_too_large);
            const head_only = if (conn.head) |h| std.mem.eql(u8, h.method, "HEAD") else false;
            const framing: Framing = .{
                .keep_alive = false,
                .http_1_0 = false,
                .head_only = head_only,
            };
            if (!appendResponse(out, &res, framing)) return refuse(out, progress, status);
            progress.rejected = status;
            progress.close = true;
        }

        /// The route returned `err`: what it wrote is dropped, and the answer is the error's
        /// status, with `Retry-After` for an upstream's 503 and a message for a body that
        /// `req.json` refused.
        fn answerError(req: *const Request, res: *Response, err: anyerror) void {
            const status = statusOf(err);
            res.* = .{ .status = status, .body_buf = &.{}, .header_buf = &header_buf };
            // The header buffer is empty here: one field always fits.
            if (status == 503 and runtimeStatus(err) != null) {
                res.header("Retry-After", "1") catch unreachable;
            }
            const problem = req.json_problem orelse return;
            if (err != error.InvalidJson or status != 400) return;
            res.body_buf = &body_buf;
            res.header("Content-Type", "application/json") catch unreachable;
            const format = "{{\"error\":\"the body is not the JSON this route takes: " ++
                "{s} at line {d}, column {d}\"}}\n";
            res.print(format, .{ @errorName(problem.err), problem.line, problem.column }) catch
                unreachable;
        }

        /// No route has the request's method and path: 405 when the path has routes for
        /// other methods (listed in `Allow`), 404 when it has none.
        fn answerUnrouted(allowed: [router.all_methods.len]bool, res: *Response) void {
            assert(res.later_ms == null);
            var any_allowed = false;
            for (allowed) |a| any_allowed = any_allowed or a;
            const status: u16 = if (any_allowed) 405 else 404;
            res.* = .{ .status = status, .body_buf = &.{}, .header_buf = &header_buf };
            if (any_allowed) {
                res.header("Allow", router.allowText(allowed, &allow_buf)) catch unreachable;
            }
        }

        /// The route held the current request (`res.later`): counts the wait, and keeps
        /// when it was first held (`now_us`, unless it was held before).
        fn hold(conn: *Connection, now_us: u64) void {
            const held = conn.held orelse Connection.Held{ .since_us = now_us, .waits = 0 };
            assert(held.since_us <= now_us);
            conn.held = .{ .since_us = held.since_us, .waits = held.waits + 1 };
        }

        /// Writes the route's answer (status line, headers, the body or its start), or a
        /// 500 when it does not fit the output; a body the route streams goes on later.
        /// Updates `framing` to what was written.
        fn writeAnswer(
            conn: *Connection,
            res: *Response,
            framing: *Framing,
            out: *api.Output,
        ) void {
            assert(conn.streaming == null);
            assert(res.later_ms == null);
            framing.keep_alive = framing.keep_alive and !res.close;
            const streamed = if (hasNoBody(res.status)) null else res.continuation;
            if (streamed) |c| {
                framing.chunked = c.length == null and !framing.http_1_0;
                // An HTTP/1.0 client knows where an unsized body ends only by the close.
                if (c.length == null and framing.http_1_0) framing.keep_alive = false;
            }
            if (!appendResponse(out, res, framing.*)) {
                // Headers and body beyond the write buffer: the route's answer cannot go out.
                framing.keep_alive = false;
                framing.chunked = false;
                res.continuation = null;
                appendStatus(out, 500, "", framing.*);
                res.status = 500;
            } else if (streamed) |c| if (!framing.head_only) {
                conn.streaming = .{
                    .continuation = c,
                    .sent = res.body_len,
                    .chunked = framing.chunked,
                    .keep_alive = framing.keep_alive,
                };
            };
        }

        var allow_buf: [64]u8 = undefined;

        const Next = *const fn (*State, *u64, *BodyWriter) anyerror!bool;

        const StreamStep = enum { more, done, done_close, failed };

        /// Lets the route's continuation write the next part of a streamed body into the
        /// output (as one chunk when chunked).
        fn continueStream(s: *State, conn: *Connection, out: *api.Output) StreamStep {
            const st = &conn.streaming.?;
            const next: Next = @ptrCast(@alignCast(st.continuation.next));
            const head_room: usize = if (st.chunked) 10 else 0;
            const tail_room: usize = if (st.chunked) 2 else 0;
            if (out.free() < head_room + tail_room + 1) return .more;
            var end = out.buf.len - tail_room;
            if (st.continuation.length) |n| {
                end = @min(end, out.len + head_room + @as(usize, @intCast(n - st.sent)));
            }
            var writer: BodyWriter = .{ .buf = out.buf[out.len + head_room .. end] };
            const done = next(s, &st.continuation.cursor, &writer) catch return .failed;
            if (writer.len > 0) {
                if (st.chunked) {
                    var head_buf: [10]u8 = undefined;
                    @memcpy(out.buf[out.len..][0..10], chunkHead(&head_buf, writer.len));
                }
                out.len += head_room + writer.len;
                if (st.chunked) _ = out.append("\r\n");
                st.sent += writer.len;
            }
            if (!done) {
                // A continuation that writes nothing into an empty output would spin.
                return if (writer.len == 0 and out.len == 0) .failed else .more;
            }
            if (st.chunked and !out.append("0\r\n\r\n")) {
                // The last chunk goes out with the next call.
                st.continuation.next = @ptrCast(&finished);
                return .more;
            }
            const complete = if (st.continuation.length) |n| st.sent == n else true;
            const keep = st.keep_alive and complete;
            conn.streaming = null;
            return if (!complete) .failed else if (keep) .done else .done_close;
        }

        fn finished(_: *State, _: *u64, _: *BodyWriter) anyerror!bool {
            return true;
        }

        fn hasRoute(comptime method: Method, comptime path: []const u8) bool {
            inline for (routes) |r| {
                if (r.method == method and comptime std.mem.eql(u8, r.path, path)) return true;
            }
            return false;
        }

        fn statusOf(err: anyerror) u16 {
            if (err == error.OutOfMemory) {
                scratch_exhausted += 1;
                return 503;
            }
            if (@hasDecl(M, "errorStatus")) {
                const status: u16 = M.errorStatus(err);
                // A 500 for the runtime's own errors is taken as "not mapped": their own
                // status (400, 503, 504, 502) says more.
                const unmapped = status == 500 and runtimeStatus(err) != null;
                if (status >= 100 and status <= 999 and !unmapped) return status;
            }
            return runtimeStatus(err) orelse 500;
        }

        const testing = app_http_testing.Helpers(@This());
        pub const testRequest = testing.testRequest;
        pub const testHold = testing.testHold;
        pub const TestHeld = testing.TestHeld;
    };
}

test {
    _ = router;
    _ = app_wake;
    _ = app_http_testing;
}

test "squeezing drops decoded chunk framing and keeps head and body in place" {
    var conn = Connection.init(1024, false);
    // A 4-byte head, a 3-byte decoded body, 5 bytes of framing already parsed, 2 unparsed.
    var input = "HEADabcFFFFFxy".*;
    conn.body_start = 4;
    conn.body_len = 3;
    conn.parsed = 12;
    const dropped = squeeze(&conn, &input);
    try std.testing.expectEqual(@as(usize, 5), dropped);
    try std.testing.expectEqualStrings("HEADabcxy", input[dropped..]);
    try std.testing.expectEqual(@as(usize, 7), conn.parsed);
    // Nothing left to drop: the caller answers 413.
    try std.testing.expectEqual(@as(usize, 0), squeeze(&conn, input[dropped..]));
}

test "a body in a body buffer leaves only the head to keep in the read buffer" {
    var conn = Connection.init(1024, true);
    var input = "HEADabcFFFFFxy".*;
    conn.body_start = 4;
    conn.body_len = 3;
    conn.parsed = 12;
    conn.body_buffer = 0;
    const dropped = squeeze(&conn, &input);
    try std.testing.expectEqual(@as(usize, 8), dropped);
    try std.testing.expectEqualStrings("HEADxy", input[dropped..]);
    try std.testing.expectEqual(@as(usize, 4), conn.parsed);
}

/// A module for the tests below: JSON in and out, and the router's own answers.
const TestJsonModule = struct {
    pub const State = struct {};
    const Point = struct { x: i32, y: i32 };
    pub fn flip(state: *State, req: *Request, res: *Response) !void {
        _ = state;
        const point = try req.json(Point);
        try res.json(.{ .x = point.y, .y = point.x });
    }
};

test "req.json and res.json: a point flipped; a body that is not one is a 400 that says why" {
    const M = Module(TestJsonModule, "test.zig", &.{
        .{ .name = "flip", .method = .POST, .path = "/flip" },
    }, 4096, 0);
    var state: TestJsonModule.State = .{};
    const post = "POST /flip HTTP/1.1\r\nHost: t\r\nContent-Length: ";
    const flipped = try M.testRequest(&state, post ++ "14\r\n\r\n{\"x\":1,\"y\":-2}");
    try std.testing.expectEqual(@as(u16, 200), flipped.status);
    try std.testing.expectEqualStrings("{\"x\":-2,\"y\":1}\n", flipped.body);
    try std.testing.expectEqualStrings("application/json", flipped.header("content-type").?);
    const missing = try M.testRequest(&state, post ++ "7\r\n\r\n{\"x\":1}");
    try std.testing.expectEqual(@as(u16, 400), missing.status);
    try std.testing.expectEqualStrings("{\"error\":\"the body is not the JSON this route " ++
        "takes: MissingField at line 1, column 8\"}\n", missing.body);
    const broken = try M.testRequest(&state, post ++ "4\r\n\r\n{\"x\"");
    try std.testing.expectEqual(@as(u16, 400), broken.status);
    try std.testing.expect(std.mem.startsWith(u8, broken.body, "{\"error\":"));
}

/// A module for the test below: bodies of its own for the router's answers.
const TestRouterModule = struct {
    pub const State = struct { calls: u32 = 0 };
    pub fn item(state: *State, req: *Request, res: *Response) !void {
        _ = state;
        _ = req;
        try res.write("item\n");
    }
    pub fn routerError(
        state: *State,
        req: ?*const Request,
        res: *Response,
        kind: RouterError,
    ) !void {
        state.calls += 1;
        // Ignored: the status is the router's.
        res.status = 200;
        switch (kind) {
            .not_found => {
                const path = req.?.path;
                if (std.mem.eql(u8, path, "/fail")) {
                    try res.header("X-Partial", "1");
                    return error.Broken;
                }
                try res.json(.{ .@"error" = "no such path", .path = path });
            },
            .method_not_allowed => try res.json(.{ .@"error" = "not with that method" }),
            .content_too_large => {
                assert(req == null);
                try res.json(.{ .@"error" = "body too large" });
            },
        }
    }
};

test "routerError writes the bodies of 404, 405 (Allow kept) and 413 (closed); without it none" {
    const routes: []const Route = &.{.{ .name = "item", .method = .PUT, .path = "/item" }};
    const M = Module(TestRouterModule, "test.zig", routes, 4096, 0);
    var state: TestRouterModule.State = .{};
    const missing = try M.testRequest(&state, "GET /nope HTTP/1.1\r\nHost: t\r\n\r\n");
    try std.testing.expectEqual(@as(u16, 404), missing.status);
    const not_found = "{\"error\":\"no such path\",\"path\":\"/nope\"}\n";
    try std.testing.expectEqualStrings(not_found, missing.body);
    try std.testing.expectEqualStrings("application/json", missing.header("Content-Type").?);
    const head = try M.testRequest(&state, "HEAD /nope HTTP/1.1\r\nHost: t\r\n\r\n");
    try std.testing.expectEqual(@as(u16, 404), head.status);
    try std.testing.expectEqualStrings("", head.body);
    try std.testing.expectEqualStrings("40", head.header("Content-Length").?);
    const wrong = try M.testRequest(&state, "GET /item HTTP/1.1\r\nHost: t\r\n\r\n");
    try std.testing.expectEqual(@as(u16, 405), wrong.status);
    try std.testing.expectEqualStrings("PUT", wrong.header("Allow").?);
    try std.testing.expectEqualStrings("{\"error\":\"not with that method\"}\n", wrong.body);
    // A hook that fails leaves the answer as it is without one.
    const failed = try M.testRequest(&state, "GET /fail HTTP/1.1\r\nHost: t\r\n\r\n");
    try std.testing.expectEqual(@as(u16, 404), failed.status);
    try std.testing.expect(failed.header("X-Partial") == null);
    try std.testing.expectEqualStrings("0", failed.header("Content-Length").?);
    const large = try M.testRequest(&state, "PUT /item HTTP/1.1\r\nHost: t\r\n" ++
        "Content-Length: 99999999999\r\n\r\n");
    try std.testing.expectEqual(@as(u16, 413), large.status);
    try std.testing.expectEqualStrings("close", large.header("Connection").?);
    try std.testing.expectEqualStrings("{\"error\":\"body too large\"}\n", large.body);
    try std.testing.expectEqual(@as(u32, 5), state.calls);
    // The same routes without the hook: empty bodies, as always.
    const Plain = Module(TestJsonModule, "test.zig", &.{
        .{ .name = "flip", .method = .POST, .path = "/flip" },
    }, 4096, 0);
    var plain: TestJsonModule.State = .{};
    const bare = try Plain.testRequest(&plain, "GET /flip HTTP/1.1\r\nHost: t\r\n\r\n");
    try std.testing.expectEqual(@as(u16, 405), bare.status);
    try std.testing.expectEqualStrings("0", bare.header("Content-Length").?);
    const none = try Plain.testRequest(&plain, "PUT /flip/x HTTP/1.1\r\nHost: t\r\n" ++
        "Content-Length: 99999999999\r\n\r\n");
    try std.testing.expectEqual(@as(u16, 413), none.status);
    try std.testing.expectEqualStrings("0", none.header("Content-Length").?);
}
