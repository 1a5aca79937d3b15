//! Where an HTTP/1.1 response from an upstream ends (framing `http`): its head, then a body of
//! `Content-Length` bytes or in chunks. Like the request parser, it is strict: what it cannot
//! frame with certainty is refused, and the connection is discarded rather than guessed at.
//!
//! Choices (each has a test):
//! - Lines end in CRLF; a bare CR or LF, whitespace before a colon, obs-fold, a control byte
//!   in a field: refused.
//! - 1xx interim responses (100 Continue, 103 Early Hints) are part of the reply that follows
//!   them (at most `max_interim`); 101 is refused (no protocol switch on a pooled connection).
//! - 204 and 304 have no body. A response to HEAD cannot be told from here: send none.
//! - `Transfer-Encoding` must be exactly `chunked`, and not beside `Content-Length`;
//!   `Content-Length` is digits, copies must agree. A response with neither ends when the
//!   server closes: it cannot be framed on a kept-alive connection and is refused.
const std = @import("std");
const compat = @import("../compat.zig");

pub const Error = error{BadReply};

/// Longest head (status line and fields) of one response.
pub const max_head_bytes = 16384;
/// Interim (1xx) responses before the final one.
pub const max_interim = 4;

/// The length of the first whole response in `bytes`; null while it is not all there.
pub fn replyLen(bytes: []const u8) Error!?usize {
    var pos: usize = 0;
    for (0..max_interim + 1) |_| {
        const head = try headAt(bytes[pos..]) orelse return null;
        pos += head.len;
        if (head.status >= 100 and head.status < 200) {
            if (head.status == 101) return error.BadReply;
            continue;
        }
        const body: ?usize = switch (head.body) {
            .none => 0,
            .length => |n| if (bytes.len - pos >= n) n else null,
            .chunked => try chunkedLen(bytes[pos..]),
        };
        return pos + (body orelse return null);
    }
    return error.BadReply;
}

const Body = union(enum) { none, length: u64, chunked };

const Head = struct {
    /// Bytes of the head, through its empty line.
    len: usize,
    status: u16,
    body: Body,
};

/// The response head at the start of `bytes`; null while its empty line has not come.
fn headAt(bytes: []const u8) Error!?Head {
    var pos: usize = 0;
    const status_line = try lineAt(bytes, &pos) orelse return null;
    const status = try statusOf(status_line);
    var length: ?u64 = null;
    var chunked = false;
    // Bounded by `max_head_bytes`: each pass consumes a line.
    while (true) {
        const line = try lineAt(bytes, &pos) orelse return null;
        if (line.len == 0) break;
        const colon = compat.findScalar(u8, line, ':') orelse return error.BadReply;
        const name = line[0..colon];
        const value = std.mem.trim(u8, line[colon + 1 ..], " \t");
        if (name.len == 0) return error.BadReply;
        for (name) |c| if (!isTokenChar(c)) return error.BadReply;
        for (value) |c| if (c < 0x20 and c != '\t' or c == 0x7f) return error.BadReply;
        if (std.ascii.eqlIgnoreCase(name, "content-length")) {
            const n = try digits(value);
            if (length != null and length.? != n) return error.BadReply;
            length = n;
        } else if (std.ascii.eqlIgnoreCase(name, "transfer-encoding")) {
            if (chunked or !std.ascii.eqlIgnoreCase(value, "chunked")) return error.BadReply;
            chunked = true;
        }
    }
    if (chunked and length != null) return error.BadReply;
    const no_body = status < 200 or status == 204 or status == 304;
    const body: Body = if (no_body) .none else if (chunked) .chunked else if (length) |n|
        .{ .length = n }
    else
        return error.BadReply;
    return .{ .len = pos, .status = status, .body = body };
}

/// The line at `pos.*` without its CRLF (and moves past it); null while it has not ended.
fn lineAt(bytes: []const u8, pos: *usize) Error!?[]const u8 {
    const rest = bytes[pos.*..];
    const nl = compat.findScalar(u8, rest, '\n') orelse {
        if (pos.* + rest.len > max_head_bytes) return error.BadReply;
        const cr = compat.findScalar(u8, rest, '\r');
        if (cr != null and cr.? + 1 < rest.len) return error.BadReply;
        return null;
    };
    if (pos.* + nl >= max_head_bytes) return error.BadReply;
    if (nl == 0 or rest[nl - 1] != '\r') return error.BadReply;
    const line = rest[0 .. nl - 1];
    if (compat.findScalar(u8, line, '\r') != null) return error.BadReply;
    pos.* += nl + 1;
    return line;
}

/// `HTTP/1.1 200 OK` (or HTTP/1.0): the status code.
fn statusOf(line: []const u8) Error!u16 {
    if (line.len < 12) return error.BadReply;
    const version_ok = std.mem.eql(u8, line[0..8], "HTTP/1.1") or
        std.mem.eql(u8, line[0..8], "HTTP/1.0");
    if (!version_ok or line[8] != ' ') return error.BadReply;
    var status: u16 = 0;
    for (line[9..12]) |c| {
        if (c < '0' or c > '9') return error.BadReply;
        status = status * 10 + (c - '0');
    }
    if (status < 100) return error.BadReply;
    if (line.len > 12 and line[12] != ' ') return error.BadReply;
    for (line[12..]) |c| if (c < 0x20 and c != '\t' or c == 0x7f) return error.BadReply;
    return status;
}

fn digits(value: []const u8) Error!u64 {
    if (value.len == 0) return error.BadReply;
    var n: u64 = 0;
    for (value) |c| {
        if (c < '0' or c > '9') return error.BadReply;
        n = std.math.mul(u64, n, 10) catch return error.BadReply;
        n = std.math.add(u64, n, c - '0') catch return error.BadReply;
    }
    return n;
}

fn isTokenChar(c: u8) bool {
    return switch (c) {
        'a'...'z', 'A'...'Z', '0'...'9' => true,
        '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~' => true,
        else => false,
    };
}

/// The length of a chunked body (chunks, the last chunk, trailers, the empty line).
fn chunkedLen(bytes: []const u8) Error!?usize {
    var pos: usize = 0;
    // Bounded: each pass consumes a chunk (or, after the last, a trailer line).
    while (true) {
        const line = try lineAt(bytes, &pos) orelse return null;
        // The size, up to its extensions and the whitespace before them.
        var end = compat.findScalar(u8, line, ';') orelse line.len;
        while (end > 0 and (line[end - 1] == ' ' or line[end - 1] == '\t')) end -= 1;
        const size = try hex(line[0..end]);
        if (size == 0) break;
        if (bytes.len - pos < size + 2) return null;
        const data_end = pos + @as(usize, @intCast(size));
        if (bytes[data_end] != '\r' or bytes[data_end + 1] != '\n') return error.BadReply;
        pos = data_end + 2;
    }
    // Trailers, until the empty line.
    while (true) {
        const line = try lineAt(bytes, &pos) orelse return null;
        if (line.len == 0) return pos;
        if (compat.findScalar(u8, line, ':') == null) return error.BadReply;
    }
}

fn hex(text: []const u8) Error!u64 {
    if (text.len == 0 or text.len > 15) return error.BadReply;
    var n: u64 = 0;
    for (text) |c| {
        const d: u64 = switch (c) {
            '0'...'9' => c - '0',
            'a'...'f' => c - 'a' + 10,
            'A'...'F' => c - 'A' + 10,
            else => return error.BadReply,
        };
        n = n * 16 + d;
    }
    return n;
}

const testing = std.testing;

const corpus = [_][]const u8{
    "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    "HTTP/1.1 204 No Content\r\nServer: x\r\n\r\n",
    "HTTP/1.1 304 Not Modified\r\nETag: \"a\"\r\n\r\n",
    "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nT: 1\r\n\r\n",
    "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
    "HTTP/1.1 404 Not Found\r\ncontent-length: 3\r\nContent-Length: 3\r\n\r\nno\n",
    "HTTP/1.1 200\r\nContent-Length: 1\r\n\r\nx",
};

test "every corpus response is whole at its last byte, and only there" {
    for (corpus) |reply| {
        try testing.expectEqual(@as(?usize, reply.len), try replyLen(reply));
        for (0..reply.len) |k| {
            try testing.expectEqual(@as(?usize, null), try replyLen(reply[0..k]));
        }
    }
}

test "what cannot be framed with certainty is refused" {
    const bad = [_][]const u8{
        "HTTP/1.1 200 OK\r\n\r\nbody until close",
        "HTTP/2 200\r\n\r\n",
        "HTTP/1.1 20 OK\r\n\r\n",
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
        "HTTP/1.1 200 OK\nContent-Length: 0\n\n",
        "HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx",
        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n",
        "HTTP/1.1 200 OK\r\nX: a\r\n folded\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX: a\rb\r\nContent-Length: 0\r\n\r\n",
    };
    for (bad) |reply| try testing.expectError(error.BadReply, replyLen(reply));
}

fn checkPrefixes(data: []const u8) !void {
    try @import("framing.zig").expectPrefixContract(@This(), data);
}

test "split at every byte: two responses back to back frame the first, at its end" {
    for (corpus) |a| for (corpus) |b| {
        var buf: [512]u8 = undefined;
        @memcpy(buf[0..a.len], a);
        @memcpy(buf[a.len..][0..b.len], b);
        try checkPrefixes(buf[0 .. a.len + b.len]);
        try testing.expectEqual(@as(?usize, a.len), try replyLen(buf[0 .. a.len + b.len]));
    };
}

const mutation_bytes = "\r\n :;0123456789aAfF-HTTP/1.chunked";

test "mutants: no crash, and the framing contract holds on every prefix" {
    var prng = std.Random.DefaultPrng.init(0x5eed_4777_0000_0003);
    const random = prng.random();
    var outcomes: [3]u32 = @splat(0); // whole, refused, incomplete
    for (0..10_000) |_| {
        var buffer: [256]u8 = undefined;
        const source = corpus[random.uintLessThan(usize, corpus.len)];
        @memcpy(buffer[0..source.len], source);
        var len = source.len;
        for (0..1 + random.uintLessThan(usize, 3)) |_| {
            const at = random.uintLessThan(usize, len + 1);
            const byte = mutation_bytes[random.uintLessThan(usize, mutation_bytes.len)];
            switch (random.uintLessThan(u8, 3)) {
                0 => if (at < len) {
                    buffer[at] = byte;
                },
                1 => if (len < buffer.len) {
                    var i = len;
                    while (i > at) : (i -= 1) buffer[i] = buffer[i - 1];
                    buffer[at] = byte;
                    len += 1;
                },
                else => if (at < len) {
                    compat.copyLeft(buffer[at .. len - 1], buffer[at + 1 .. len]);
                    len -= 1;
                },
            }
        }
        try checkPrefixes(buffer[0..len]);
        const result = replyLen(buffer[0..len]);
        const outcome: usize = if (result) |n| (if (n == null) 2 else 0) else |_| 1;
        outcomes[outcome] += 1;
    }
    // Strict framing refuses most mutants; some stay whole, a few wait for more bytes.
    try testing.expect(outcomes[0] > 500 and outcomes[1] > 500 and outcomes[2] > 50);
}

fn fuzzOne(_: void, data: []const u8) anyerror!void {
    try checkPrefixes(data);
}

test "fuzz: any bytes end in a length, more needed, or a refusal, consistently" {
    try compat.fuzz({}, fuzzOne, &corpus);
}
