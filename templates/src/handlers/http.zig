//! http: HTTP/1.1 with keep-alive and pipelining. Every request is answered `200 OK` with
//! the listener's configured body. The responses are built at compile time, so answering
//! is one copy; pipelined requests read together are answered with one write.
const std = @import("std");
const compat = @import("../compat.zig");
const config = @import("../config.zig");
const api = @import("api.zig");

const Responses = struct {
    keep_alive: []const u8,
    /// For HTTP/1.0 clients that asked for keep-alive: they need the header back.
    keep_alive_1_0: []const u8,
    close: []const u8,
    body_len: usize,
};

fn buildResponses(comptime http: config.Http) Responses {
    const head = "HTTP/1.1 200 OK\r\nServer: " ++ config.name ++ "\r\nContent-Type: " ++
        http.content_type ++ "\r\nContent-Length: " ++
        std.fmt.comptimePrint("{d}", .{http.body.len}) ++ "\r\n";
    return .{
        .keep_alive = head ++ "\r\n" ++ http.body,
        .keep_alive_1_0 = head ++ "Connection: keep-alive\r\n\r\n" ++ http.body,
        .close = head ++ "Connection: close\r\n\r\n" ++ http.body,
        .body_len = http.body.len,
    };
}

const responses = blk: {
    var table: [config.listeners.len]Responses = undefined;
    for (config.listeners, 0..) |listener, i| table[i] = buildResponses(listener.http);
    break :blk table;
};

const bad_request = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
const too_large = "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n" ++
    "Connection: close\r\n\r\n";
const not_implemented = "HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\n" ++
    "Connection: close\r\n\r\n";

pub const Request = struct {
    /// Bytes of head and body together.
    len: usize,
    keep_alive: bool,
    http_1_0: bool,
    head_only: bool,
};

pub const ParseResult = union(enum) {
    complete: Request,
    incomplete,
    bad_request,
    too_large,
    unsupported,
};

/// Parses the first request in `input`. Bodies are accepted when their length is known
/// (Content-Length) and they fit in the read buffer.
pub fn parse(input: []const u8) ParseResult {
    const head_end = compat.find(u8, input, "\r\n\r\n") orelse {
        return if (input.len >= config.read_buffer_bytes) .too_large else .incomplete;
    };
    const head = input[0..head_end];
    var lines = std.mem.splitSequence(u8, head, "\r\n");
    const request_line = lines.first();
    var parts = std.mem.splitScalar(u8, request_line, ' ');
    const method = parts.next() orelse return .bad_request;
    _ = parts.next() orelse return .bad_request;
    const protocol = parts.next() orelse return .bad_request;
    if (parts.next() != null or method.len == 0) return .bad_request;
    const http_1_0 = std.mem.eql(u8, protocol, "HTTP/1.0");
    if (!http_1_0 and !std.mem.eql(u8, protocol, "HTTP/1.1")) return .bad_request;

    var keep_alive = !http_1_0;
    var body_len: usize = 0;
    while (lines.next()) |header| {
        const colon = compat.findScalar(u8, header, ':') orelse return .bad_request;
        const name = header[0..colon];
        const value = std.mem.trim(u8, header[colon + 1 ..], " \t");
        if (std.ascii.eqlIgnoreCase(name, "connection")) {
            if (hasToken(value, "close")) keep_alive = false;
            if (hasToken(value, "keep-alive")) keep_alive = true;
        } else if (std.ascii.eqlIgnoreCase(name, "content-length")) {
            body_len = std.fmt.parseInt(usize, value, 10) catch return .bad_request;
        } else if (std.ascii.eqlIgnoreCase(name, "transfer-encoding")) {
            return .unsupported;
        }
    }
    const len = head_end + 4 + body_len;
    if (len > config.read_buffer_bytes) return .too_large;
    if (input.len < len) return .incomplete;
    return .{ .complete = .{
        .len = len,
        .keep_alive = keep_alive,
        .http_1_0 = http_1_0,
        .head_only = std.mem.eql(u8, method, "HEAD"),
    } };
}

fn hasToken(value: []const u8, token: []const u8) bool {
    var tokens = std.mem.splitScalar(u8, value, ',');
    while (tokens.next()) |t| {
        if (std.ascii.eqlIgnoreCase(std.mem.trim(u8, t, " \t"), token)) return true;
    }
    return false;
}

pub fn onOpen(ctx: *const api.Context, out: *api.Output) api.Progress {
    _ = ctx;
    _ = out;
    return .{ .consumed = 0 };
}

/// Answers every complete request in `input`, as many as the output holds.
pub fn onData(ctx: *const api.Context, input: []const u8, out: *api.Output) api.Progress {
    const table = &responses[ctx.listener_index];
    var progress: api.Progress = .{ .consumed = 0 };
    while (progress.consumed < input.len) {
        const request = switch (parse(input[progress.consumed..])) {
            .complete => |request| request,
            .incomplete => break,
            .bad_request => return fail(progress, out, bad_request),
            .too_large => return fail(progress, out, too_large),
            .unsupported => return fail(progress, out, not_implemented),
        };
        const keep_alive = request.keep_alive and !ctx.draining;
        const full = if (!keep_alive)
            table.close
        else if (request.http_1_0)
            table.keep_alive_1_0
        else
            table.keep_alive;
        const response = if (request.head_only) full[0 .. full.len - table.body_len] else full;
        if (!out.append(response)) break;
        progress.consumed += request.len;
        progress.requests += 1;
        if (!keep_alive) {
            progress.close = true;
            break;
        }
    }
    return progress;
}

fn fail(progress: api.Progress, out: *api.Output, response: []const u8) api.Progress {
    var result = progress;
    // Answers already queued go out first; the error answer only if it fits after them.
    _ = out.append(response);
    result.close = true;
    return result;
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

test "parses a request and its keep-alive intent" {
    const r = parse("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").complete;
    try std.testing.expect(!r.keep_alive);
    const r10 = parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").complete;
    try std.testing.expect(r10.keep_alive and r10.http_1_0);
    try std.testing.expect(parse("GET / HTTP/1.1\r\nHost: x\r\n") == .incomplete);
    try std.testing.expect(parse("GARBAGE\r\n\r\n") == .bad_request);
    try std.testing.expect(parse("POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\nab") == .incomplete);
}

test "answers pipelined requests in one output" {
    var buf: [4096]u8 = undefined;
    var out: api.Output = .{ .buf = &buf };
    const ctx = testContext(false);
    const input = "GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\nGET /partial HTTP/1.1\r\n";
    const progress = onData(&ctx, input, &out);
    try std.testing.expectEqual(@as(u32, 2), progress.requests);
    try std.testing.expect(!progress.close);
    try std.testing.expectEqual(@as(usize, 36), progress.consumed);
    const one = responses[0].keep_alive;
    try std.testing.expectEqual(one.len * 2, out.len);
}

test "a draining server answers with Connection: close" {
    var buf: [4096]u8 = undefined;
    var out: api.Output = .{ .buf = &buf };
    const ctx = testContext(true);
    const progress = onData(&ctx, "GET / HTTP/1.1\r\n\r\n", &out);
    try std.testing.expect(progress.close);
    const text = out.buf[0..out.len];
    try std.testing.expect(compat.find(u8, text, "Connection: close\r\n") != null);
}
