//! http: HTTP/1.1 with keep-alive and pipelining. Every request is answered `200 OK` with
//! the listener's configured body; requests that break RFC 9112's rules get the status the
//! RFC names (see `http/parser.zig`) and the connection closes after it.
//!
//! The parts of each response that never change are built at compile time, so answering is
//! three copies (head, `Date`, rest); pipelined requests read together are answered with
//! one write. Request bodies are read as they arrive and dropped, so a body larger than the
//! read buffer passes through, up to `maxBodyBytes`.
const std = @import("std");
const config = @import("../config.zig");
const cli = @import("../cli.zig");
const sys = @import("../net/sys.zig");
const compat = @import("../compat.zig");
const api = @import("api.zig");
const parser = @import("../http/parser.zig");
const date = @import("../http/date.zig");
const statuses = @import("../http/status.zig");
const metrics = @import("../metrics/cell.zig");
const access_log = @import("../access_log.zig");

const date_len = 29;

/// A response in two fixed parts around its `Date` value.
const Response = struct {
    before_date: []const u8,
    after_date: []const u8,

    fn len(self: Response) usize {
        return self.before_date.len + date_len + self.after_date.len;
    }
};

const Responses = struct {
    keep_alive: Response,
    /// For HTTP/1.0 clients that asked for keep-alive: they need the header back.
    keep_alive_1_0: Response,
    close: Response,
    body_len: usize,
};

fn status(comptime line: []const u8) []const u8 {
    return "HTTP/1.1 " ++ line ++ "\r\nServer: " ++ config.name ++ "\r\nDate: ";
}

fn buildResponses(comptime http: config.Http) Responses {
    const before = status(statuses.line(200));
    const fields = "\r\nContent-Type: " ++ http.content_type ++ "\r\nContent-Length: " ++
        std.fmt.comptimePrint("{d}", .{http.body.len}) ++ "\r\n";
    return .{
        .keep_alive = .{ .before_date = before, .after_date = fields ++ "\r\n" ++ http.body },
        .keep_alive_1_0 = .{
            .before_date = before,
            .after_date = fields ++ "Connection: keep-alive\r\n\r\n" ++ http.body,
        },
        .close = .{
            .before_date = before,
            .after_date = fields ++ "Connection: close\r\n\r\n" ++ http.body,
        },
        .body_len = http.body.len,
    };
}

const responses = blk: {
    var table: [config.listeners.len]Responses = undefined;
    for (config.listeners, 0..) |listener, i| table[i] = buildResponses(listener.http);
    break :blk table;
};

/// An answer that ends the connection: an error status, empty body.
fn closing(comptime line: []const u8) Response {
    return .{
        .before_date = status(line),
        .after_date = "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    };
}

const timeout_response = closing(statuses.line(408));
const not_implemented = closing(statuses.line(501));

fn errorResponse(comptime e: parser.Error) Response {
    return closing(statuses.line(e.status()));
}

const continue_response = "HTTP/1.1 100 Continue\r\n\r\n";

/// Room an answer may need: the largest response of any listener, or of any error, after a
/// 100 Continue.
const max_answer_len = blk: {
    var max: usize = timeout_response.len();
    for (responses) |r| max = @max(max, r.close.len(), r.keep_alive_1_0.len());
    const all_errors = [_]parser.Error{
        .bad_request,             .uri_too_long,    .content_too_large,
        .header_fields_too_large, .not_implemented, .version_not_supported,
        .expectation_failed,
    };
    for (all_errors) |e| max = @max(max, errorResponse(e).len());
    break :blk max + continue_response.len;
};

comptime {
    // The generator checks that every configured response fits the write buffer.
    std.debug.assert(max_answer_len <= config.write_buffer_bytes);
}

/// A request whose head has arrived and whose end has not.
const Pending = struct {
    keep_alive: bool,
    http_1_0: bool,
    head_only: bool,
    /// Refused once its body has been read (a method this handler does not implement).
    refuse: bool,
    /// When its head was complete (µs, monotonic), for the request-duration histogram; null
    /// while that was during the current `onData` call, whose requests read whole took no
    /// time of ours to speak of: most requests are answered without reading the clock.
    head_us: ?u64,
};

pub const State = struct {
    parser: parser.Parser,
    pending: ?Pending = null,
    log: Logged = .{},
};

/// What the request log keeps of a connection's current request; nothing when the spec has
/// no log.
const Logged = if (access_log.enabled) struct {
    /// When the request's first bytes were seen (monotonic µs); null between requests.
    since_us: ?u64 = null,
    peer: access_log.PeerText = .{},
    /// The head of a request whose body outlasts the read that brought the head: its bytes
    /// are gone by the time the request ends, so the fields the log needs are copied.
    copy: HeadCopy = .{},
} else struct {};

/// A request head's method, target, referer and user agent, each cut to a fixed size (then
/// ending in `...`).
const HeadCopy = struct {
    method: Field(access_log.line.max_method_bytes) = .{},
    target: Field(1024) = .{},
    referer: Field(256) = .{},
    user_agent: Field(256) = .{},
    has_referer: bool = false,
    has_user_agent: bool = false,
    http_1_0: bool = false,

    fn Field(comptime size: usize) type {
        return struct {
            bytes: [size]u8 = undefined,
            len: u16 = 0,

            fn set(self: *@This(), text: []const u8) void {
                if (text.len <= size) {
                    @memcpy(self.bytes[0..text.len], text);
                    self.len = @intCast(text.len);
                    return;
                }
                @memcpy(self.bytes[0 .. size - 3], text[0 .. size - 3]);
                @memcpy(self.bytes[size - 3 ..], "...");
                self.len = size;
            }

            fn get(self: *const @This()) []const u8 {
                return self.bytes[0..self.len];
            }
        };
    }

    fn save(self: *HeadCopy, head: *const parser.Head) void {
        self.method.set(head.method);
        self.target.set(head.target);
        const referer = head.field("referer");
        self.has_referer = referer != null;
        self.referer.set(referer orelse "");
        const user_agent = head.field("user-agent");
        self.has_user_agent = user_agent != null;
        self.user_agent.set(user_agent orelse "");
        self.http_1_0 = head.version == .http_1_0;
    }
};

/// The request fields of a log line: from the head parsed in this call, or from its copy.
const RequestView = struct {
    method: []const u8 = "",
    target: []const u8 = "",
    http_1_0: bool = false,
    referer: ?[]const u8 = null,
    user_agent: ?[]const u8 = null,

    fn ofHead(head: *const parser.Head) RequestView {
        return .{
            .method = head.method,
            .target = head.target,
            .http_1_0 = head.version == .http_1_0,
            .referer = head.field("referer"),
            .user_agent = head.field("user-agent"),
        };
    }

    fn ofCopy(copy: *const HeadCopy) RequestView {
        return .{
            .method = copy.method.get(),
            .target = copy.target.get(),
            .http_1_0 = copy.http_1_0,
            .referer = if (copy.has_referer) copy.referer.get() else null,
            .user_agent = if (copy.has_user_agent) copy.user_agent.get() else null,
        };
    }
};

/// One line in the request log for the request that just ended (or was refused).
fn logRequest(
    ctx: *const api.Context,
    state: *State,
    view: RequestView,
    status_code: u16,
    body_bytes: u64,
) void {
    if (!access_log.enabled) return;
    const now_us = sys.monotonicUs();
    const since_us = state.log.since_us orelse now_us;
    state.log.peer.get(ctx.fd);
    const entry: access_log.Entry = .{
        .time_ms = sys.realtimeMs(),
        .worker = ctx.worker_index,
        .listener = ctx.listener.name,
        .peer = state.log.peer.address(),
        .peer_port = state.log.peer.port,
        .method = view.method,
        .target = view.target,
        .http_1_0 = view.http_1_0,
        .status = status_code,
        .body_bytes = body_bytes,
        .duration_us = now_us -| since_us,
        .route = "",
        .referer = view.referer,
        .user_agent = view.user_agent,
    };
    access_log.record(&entry, now_us / std.time.us_per_ms);
}

pub fn initState(limits: cli.Limits) State {
    return .{ .parser = parser.Parser.init(parserLimits(limits.max_body_bytes)) };
}

/// The parser's limits for every HTTP listener, built-in or application. The head must fit
/// the read buffer: its bytes stay there until it is complete, so one byte short of a full
/// buffer is a 431 rather than a buffer nobody can empty.
pub fn parserLimits(body_bytes: u64) parser.Limits {
    return .{
        .request_line_bytes = @min(8192, config.read_buffer_bytes - 2),
        .head_bytes = config.read_buffer_bytes - 1,
        .body_bytes = body_bytes,
    };
}

/// The `Date` value of this second, formatted once per second per process and shared by
/// every HTTP listener.
var date_cache: date.Cache = .{};

pub fn currentDate() *const [date_len]u8 {
    return date_cache.get(sys.realtimeSeconds());
}

fn appendResponse(out: *api.Output, response: Response, head_only: bool, body_len: usize) void {
    const now = currentDate();
    const after = if (head_only)
        response.after_date[0 .. response.after_date.len - body_len]
    else
        response.after_date;
    std.debug.assert(out.free() >= response.before_date.len + date_len + after.len);
    _ = out.append(response.before_date);
    _ = out.append(now);
    _ = out.append(after);
}

pub fn onOpen(ctx: *const api.Context, out: *api.Output) api.Progress {
    _ = ctx;
    _ = out;
    return .{ .consumed = 0 };
}

/// Answers every complete request in `input`, as many as the output holds.
pub fn onData(
    ctx: *const api.Context,
    state: *State,
    input: []const u8,
    out: *api.Output,
) api.Progress {
    var progress: api.Progress = .{ .consumed = 0 };
    var clock: Clock = .{};
    // The head parsed in this call, whose bytes are still in `input` (request log only).
    var head_here: ?parser.Head = null;
    const call_us: u64 = if (access_log.enabled) sys.monotonicUs() else 0;
    if (access_log.enabled and state.log.since_us == null and input.len > 0) {
        state.log.since_us = call_us;
    }
    // Each step consumes input or moves the parser to its next event (a head, then an end),
    // so the steps are bounded by twice the input plus one.
    var steps: usize = 0;
    while (steps <= 2 * input.len + 1) : (steps += 1) {
        // A new request starts only with room for its whole answer.
        if (state.pending == null and out.free() < max_answer_len) break;
        const step = state.parser.next(input[progress.consumed..]);
        progress.consumed += step.consumed;
        switch (step.event) {
            // Bytes the parser used up without an event (chunk framing, skipped empty lines):
            // what follows them may complete one.
            .need_more => if (step.consumed == 0) break,
            .head => |head| {
                startRequest(ctx, state, &head, out);
                if (access_log.enabled) head_here = head;
            },
            // The built-in handler has no use for a request body: it is read and dropped.
            .body => {},
            .end => {
                const view = viewOf(state, head_here);
                head_here = null;
                answer(ctx, state, view, out, &progress, &clock);
                if (progress.close) break;
                if (access_log.enabled) {
                    // Requests behind it in this input arrived with this read.
                    state.log.since_us = if (progress.consumed < input.len) call_us else null;
                }
            },
            .err => |e| {
                appendError(out, e);
                const view = if (state.pending != null) viewOf(state, head_here) else RequestView{};
                logRequest(ctx, state, view, e.status(), 0);
                progress.rejected = e.status();
                progress.close = true;
                break;
            },
        }
    }
    // A body still to come: the clock is read for its head, and its head's bytes go with
    // this input, so the log keeps a copy.
    if (state.pending) |*pending| {
        if (pending.head_us == null) pending.head_us = clock.now();
        if (access_log.enabled) {
            if (head_here) |head| state.log.copy.save(&head);
        }
    }
    progress.phase = phaseOf(state, input.len - progress.consumed);
    return progress;
}

/// A request's head is whole: what its answer will be, and 100 Continue when it asks.
fn startRequest(
    ctx: *const api.Context,
    state: *State,
    head: *const parser.Head,
    out: *api.Output,
) void {
    const connect = std.mem.eql(u8, head.method, "CONNECT");
    state.pending = .{
        .keep_alive = head.persistent() and !ctx.draining and !connect,
        .http_1_0 = head.version == .http_1_0,
        .head_only = std.mem.eql(u8, head.method, "HEAD"),
        .refuse = connect,
        .head_us = null,
    };
    if (head.expect_continue and head.body != .none) _ = out.append(continue_response);
}

/// The current request is whole: its answer, and its line in the request log.
fn answer(
    ctx: *const api.Context,
    state: *State,
    view: RequestView,
    out: *api.Output,
    progress: *api.Progress,
    clock: *Clock,
) void {
    const table = &responses[ctx.listener_index];
    const request = state.pending orelse unreachable;
    state.pending = null;
    progress.requests += 1;
    if (request.refuse) {
        // A tunnel this server does not make must not get a 2xx (RFC 9110 §9.3.6).
        appendResponse(out, not_implemented, false, 0);
        logRequest(ctx, state, view, 501, 0);
        progress.rejected = 501;
        progress.close = true;
        return;
    }
    // Refusals are counted by the worker, from `progress.rejected`.
    const took_us = if (request.head_us) |head_us| clock.now() -| head_us else 0;
    metrics.response(ctx.listener_index, 0, 200, took_us);
    const response = if (!request.keep_alive)
        table.close
    else if (request.http_1_0)
        table.keep_alive_1_0
    else
        table.keep_alive;
    appendResponse(out, response, request.head_only, table.body_len);
    logRequest(ctx, state, view, 200, if (request.head_only) 0 else table.body_len);
    if (!request.keep_alive) progress.close = true;
}

/// The current request as the log sees it: its head parsed in this call, or its copy.
fn viewOf(state: *const State, head_here: ?parser.Head) RequestView {
    if (!access_log.enabled) return .{};
    if (head_here) |head| return RequestView.ofHead(&head);
    return RequestView.ofCopy(&state.log.copy);
}

/// The monotonic clock, read at most once per `onData` call, when a request's head and end
/// come in different calls: a request read whole in one call took no time of ours to speak of
/// (its duration is 0), one whose body trickled in took the time between the reads.
const Clock = struct {
    us: ?u64 = null,

    fn now(self: *Clock) u64 {
        if (self.us == null) self.us = sys.monotonicUs();
        return self.us.?;
    }
};

fn appendError(out: *api.Output, e: parser.Error) void {
    switch (e) {
        inline else => |comptime_e| appendResponse(out, errorResponse(comptime_e), false, 0),
    }
}

/// What the connection waits for: the rest of a head, more body, or the next request.
fn phaseOf(state: *const State, unconsumed: usize) api.Phase {
    if (state.pending != null) return .body;
    return if (unconsumed > 0) .head else .idle;
}

/// The head or body did not arrive in time.
pub fn onTimeout(ctx: *const api.Context, state: *State, out: *api.Output) void {
    if (out.free() >= timeout_response.len()) appendResponse(out, timeout_response, false, 0);
    // Logged when part of a request had arrived, as nginx logs its 408s.
    if (access_log.enabled and state.log.since_us != null) {
        const view = if (state.pending != null) viewOf(state, null) else RequestView{};
        logRequest(ctx, state, view, 408, 0);
        state.log.since_us = null;
    }
}

pub fn onDatagram(ctx: *const api.Context, input: []const u8, reply: []u8) usize {
    _ = ctx;
    _ = input;
    _ = reply;
    return 0;
}

fn testContext(draining: bool) api.Context {
    return .{
        .listener = &config.listeners[0],
        .listener_index = 0,
        .worker_index = 0,
        .pid = 1,
        .generation = 1,
        .draining = draining,
    };
}

fn testState() State {
    return initState(.{});
}

fn find(haystack: []const u8, needle: []const u8) bool {
    return compat.find(u8, haystack, needle) != null;
}

test "answers pipelined requests in one output, with a Date" {
    var buf: [config.write_buffer_bytes]u8 = undefined;
    var out: api.Output = .{ .buf = &buf };
    var state = testState();
    const ctx = testContext(false);
    const input = "GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n" ++
        "GET /partial HTTP/1.1\r\n";
    const progress = onData(&ctx, &state, input, &out);
    try std.testing.expectEqual(@as(u32, 2), progress.requests);
    try std.testing.expect(!progress.close);
    try std.testing.expectEqual(api.Phase.head, progress.phase);
    try std.testing.expectEqual(@as(usize, 54), progress.consumed);
    try std.testing.expectEqual(responses[0].keep_alive.len() * 2, out.len);
    try std.testing.expect(find(out.buf[0..out.len], "\r\nDate: "));
    try std.testing.expect(find(out.buf[0..out.len], " GMT\r\n"));
}

test "a draining server answers with Connection: close" {
    var buf: [config.write_buffer_bytes]u8 = undefined;
    var out: api.Output = .{ .buf = &buf };
    var state = testState();
    const ctx = testContext(true);
    const progress = onData(&ctx, &state, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", &out);
    try std.testing.expect(progress.close);
    try std.testing.expect(find(out.buf[0..out.len], "Connection: close\r\n"));
}

test "an invalid request gets its status, is counted, and closes the connection" {
    const cases = [_]struct { input: []const u8, status: u16 }{
        .{
            .input = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551615\r\n\r\n",
            .status = 413,
        },
        .{
            .input = "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            .status = 400,
        },
        .{ .input = "GET / HTTP/1.1\r\n\r\n", .status = 400 },
        .{ .input = "GET / HTTP/2.0\r\nHost: a\r\n\r\n", .status = 505 },
        .{ .input = "GET /\n\n", .status = 400 },
        .{ .input = "CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n", .status = 501 },
    };
    for (cases) |case| {
        var buf: [config.write_buffer_bytes]u8 = undefined;
        var out: api.Output = .{ .buf = &buf };
        var state = testState();
        const ctx = testContext(false);
        const progress = onData(&ctx, &state, case.input, &out);
        try std.testing.expect(progress.close);
        try std.testing.expectEqual(case.status, progress.rejected);
        var line: [16]u8 = undefined;
        const expected = try compat.bufPrint(&line, "HTTP/1.1 {d} ", .{case.status});
        try std.testing.expect(std.mem.startsWith(u8, out.buf[0..out.len], expected));
    }
}

test "a chunked body is read and dropped; 100-continue is answered first" {
    var buf: [config.write_buffer_bytes]u8 = undefined;
    var out: api.Output = .{ .buf = &buf };
    var state = testState();
    const ctx = testContext(false);
    const head = "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n" ++
        "Transfer-Encoding: chunked\r\n\r\n";
    const first = onData(&ctx, &state, head, &out);
    try std.testing.expectEqual(api.Phase.body, first.phase);
    try std.testing.expectEqualStrings(continue_response, out.buf[0..out.len]);
    // Its end comes in a later call: the clock was read for its duration.
    try std.testing.expect(state.pending.?.head_us != null);
    out.len = 0;
    const rest = "5\r\nhello\r\n0\r\n\r\n";
    const second = onData(&ctx, &state, rest, &out);
    try std.testing.expectEqual(@as(u32, 1), second.requests);
    try std.testing.expectEqual(rest.len, second.consumed);
    try std.testing.expectEqual(api.Phase.idle, second.phase);
    try std.testing.expect(std.mem.startsWith(u8, out.buf[0..out.len], "HTTP/1.1 200 OK\r\n"));
}
