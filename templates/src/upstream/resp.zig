//! RESP, the protocol of Redis (and Valkey, KeyDB, Dragonfly): where a reply ends, what a
//! reply says, and how a command is written.
//!
//! `replyLen` cuts the byte stream of a connection into replies: it looks only at the bytes it
//! is given (what the connection has read and not yet delivered) and says how long the first
//! reply is, that more bytes are needed, or that the bytes are not RESP (the connection is
//! then discarded: after a framing error nothing on it can be trusted). It knows RESP2
//! (`+ - : $ *`) and the RESP3 types a server sends after `HELLO 3` (`_ , # ( ! = % ~ >`);
//! RESP3 attributes (`|`) and streamed strings (`$?`) are refused. Nesting is bounded and
//! nothing is allocated: a server's reply faces the same suspicion as a client's request.
const std = @import("std");
const compat = @import("../compat.zig");

pub const Error = error{BadReply};

/// Aggregates nested deeper than this are refused (Redis itself sends a few levels at most).
pub const max_depth = 32;
/// Largest length a bulk string or aggregate may claim (Redis's proto-max-bulk-len is 512 MB).
const max_length: u64 = 1 << 32;
/// Longest header or simple line.
const max_line_bytes = 65536;

/// The length of the first complete reply at the start of `bytes`; null while it is not all
/// there; `error.BadReply` as soon as the bytes cannot be the start of a RESP reply.
pub fn replyLen(bytes: []const u8) Error!?usize {
    var pending: [max_depth]u64 = undefined;
    var depth: usize = 0;
    var pos: usize = 0;
    // Bounded: each pass consumes at least one line of `bytes`.
    while (pos < bytes.len) {
        const line = try lineAt(bytes, pos) orelse return null;
        const after = pos + line.len + 3;
        var opened: u64 = 0;
        switch (bytes[pos]) {
            '+', '-' => pos = after,
            ':' => {
                _ = try integer(line);
                pos = after;
            },
            '(' => {
                try bigNumber(line);
                pos = after;
            },
            ',' => {
                if (line.len == 0) return error.BadReply;
                pos = after;
            },
            '#' => {
                if (line.len != 1 or (line[0] != 't' and line[0] != 'f')) return error.BadReply;
                pos = after;
            },
            '_' => {
                if (line.len != 0) return error.BadReply;
                pos = after;
            },
            '$', '!', '=' => {
                const n = try length(line, bytes[pos] == '$');
                if (n == null) {
                    pos = after;
                } else {
                    if (bytes[pos] == '=' and n.? < 4) return error.BadReply;
                    const end = after + n.? + 2;
                    if (bytes.len < end) return null;
                    if (bytes[end - 2] != '\r' or bytes[end - 1] != '\n') return error.BadReply;
                    if (bytes[pos] == '=' and bytes[after + 3] != ':') return error.BadReply;
                    pos = end;
                }
            },
            '*', '~', '>', '%' => {
                const n = try length(line, bytes[pos] == '*') orelse 0;
                opened = if (bytes[pos] == '%') n * 2 else n;
                pos = after;
            },
            else => return error.BadReply,
        }
        if (opened > 0) {
            if (depth == max_depth) return error.BadReply;
            pending[depth] = opened;
            depth += 1;
            continue;
        }
        // One element ended: it counts towards its aggregate, which may end with it.
        while (depth > 0) {
            pending[depth - 1] -= 1;
            if (pending[depth - 1] > 0) break;
            depth -= 1;
        }
        if (depth == 0) return pos;
    }
    return null;
}

/// The line after the type byte at `pos`, without its CRLF; null while its end has not come.
/// A CR or LF inside a line is refused.
fn lineAt(bytes: []const u8, pos: usize) Error!?[]const u8 {
    const rest = bytes[pos + 1 ..];
    const nl = compat.findScalar(u8, rest, '\n') orelse {
        if (rest.len > max_line_bytes) return error.BadReply;
        if (compat.findScalar(u8, rest, '\r')) |cr| {
            if (cr + 1 < rest.len) return error.BadReply;
        }
        return null;
    };
    if (nl == 0 or rest[nl - 1] != '\r' or nl > max_line_bytes) return error.BadReply;
    const line = rest[0 .. nl - 1];
    if (compat.findScalar(u8, line, '\r') != null) return error.BadReply;
    return line;
}

/// A RESP integer: an optional minus and at least one digit, within 64 bits.
fn integer(line: []const u8) Error!i64 {
    if (line.len == 0) return error.BadReply;
    const negative = line[0] == '-';
    const digits = if (negative) line[1..] else line;
    if (digits.len == 0 or digits.len > 19) return error.BadReply;
    var value: i64 = 0;
    for (digits) |d| {
        if (d < '0' or d > '9') return error.BadReply;
        value = std.math.mul(i64, value, 10) catch return error.BadReply;
        value = std.math.add(i64, value, d - '0') catch return error.BadReply;
    }
    return if (negative) -value else value;
}

/// A RESP3 big number: an optional minus and at least one digit, of any length.
fn bigNumber(line: []const u8) Error!void {
    const digits = if (line.len > 0 and line[0] == '-') line[1..] else line;
    if (digits.len == 0) return error.BadReply;
    for (digits) |d| if (d < '0' or d > '9') return error.BadReply;
}

/// A length: null for `-1` where a null is allowed (RESP2's null bulk string and array).
fn length(line: []const u8, null_allowed: bool) Error!?u64 {
    const n = try integer(line);
    if (n == -1 and null_allowed) return null;
    if (n < 0 or n > max_length) return error.BadReply;
    return @intCast(n);
}

/// One reply, read: what a module does with the bytes a call was answered with.
pub const Reply = union(enum) {
    /// `+OK`
    simple: []const u8,
    /// `-ERR ...` or a RESP3 blob error: the server refused the command.
    err: []const u8,
    integer: i64,
    /// A bulk (or RESP3 verbatim) string.
    bulk: []const u8,
    /// A RESP2 null bulk string or array, or RESP3's null.
    nil,
    /// An array, set, push or map (a map's count is its keys and values).
    array: Elements,
    /// A double, boolean or big number, as sent.
    other: []const u8,
};

/// The elements of an aggregate, one `Reply` at a time.
pub const Elements = struct {
    count: u64,
    rest: []const u8,

    pub fn next(self: *Elements) ?Reply {
        if (self.count == 0) return null;
        const n = (replyLen(self.rest) catch return null) orelse return null;
        const element = parse(self.rest[0..n]) catch return null;
        self.rest = self.rest[n..];
        self.count -= 1;
        return element;
    }
};

/// Reads a complete reply (as cut by `replyLen`).
pub fn parse(bytes: []const u8) Error!Reply {
    const n = try replyLen(bytes) orelse return error.BadReply;
    const line = (try lineAt(bytes, 0)).?;
    const after = line.len + 3;
    return switch (bytes[0]) {
        '+' => .{ .simple = line },
        '-' => .{ .err = line },
        ':' => .{ .integer = try integer(line) },
        '_' => .nil,
        '$', '=' => if (try length(line, true)) |len|
            .{ .bulk = bytes[after..][0..@intCast(len)] }
        else
            .nil,
        '!' => .{ .err = bytes[after..][0..@intCast((try length(line, false)).?)] },
        '*', '~', '>', '%' => if (try length(line, true)) |count|
            .{ .array = .{
                .count = if (bytes[0] == '%') count * 2 else count,
                .rest = bytes[after..n],
            } }
        else
            .nil,
        else => .{ .other = line },
    };
}

/// Writes a command as RESP's array of bulk strings, which carries any bytes; returns the
/// bytes written (`error.NoSpaceLeft` when `buf` is too small).
pub fn command(buf: []u8, args: []const []const u8) error{NoSpaceLeft}![]const u8 {
    var len = (try compat.bufPrint(buf, "*{d}\r\n", .{args.len})).len;
    for (args) |arg| {
        len += (try compat.bufPrint(buf[len..], "${d}\r\n", .{arg.len})).len;
        if (buf.len - len < arg.len + 2) return error.NoSpaceLeft;
        @memcpy(buf[len..][0..arg.len], arg);
        buf[len + arg.len ..][0..2].* = "\r\n".*;
        len += arg.len + 2;
    }
    return buf[0..len];
}

const testing = std.testing;

/// Replies of every type, RESP2 and RESP3, and nested ones: the corpus of the tests below.
const corpus = [_][]const u8{
    "+OK\r\n",
    "-ERR unknown command 'FOO'\r\n",
    ":0\r\n",
    ":-9223372036854775807\r\n",
    "$5\r\nhello\r\n",
    "$0\r\n\r\n",
    "$-1\r\n",
    "*-1\r\n",
    "*0\r\n",
    "*2\r\n$3\r\nfoo\r\n:42\r\n",
    "*3\r\n*1\r\n+a\r\n*0\r\n$-1\r\n",
    "_\r\n",
    ",3.14\r\n",
    "#t\r\n",
    "(3492890328409238509324850943850943825024385\r\n",
    "!21\r\nSYNTAX invalid syntax\r\n",
    "=15\r\ntxt:Some string\r\n",
    "%2\r\n+first\r\n:1\r\n+second\r\n:2\r\n",
    "~2\r\n+a\r\n+b\r\n",
    ">2\r\n+message\r\n$2\r\nhi\r\n",
    "$4\r\nab\r\n\r\n",
};

test "every corpus reply is whole at its last byte, and only there" {
    for (corpus) |reply| {
        try testing.expectEqual(@as(?usize, reply.len), try replyLen(reply));
        for (0..reply.len) |k| {
            try testing.expectEqual(@as(?usize, null), try replyLen(reply[0..k]));
        }
    }
}

test "a reply is cut from the bytes behind it (pipelined replies)" {
    const two = "*2\r\n$3\r\nfoo\r\n:42\r\n+OK\r\n";
    try testing.expectEqual(@as(?usize, 18), try replyLen(two));
    try testing.expectEqual(@as(?usize, 5), try replyLen(two[18..]));
}

test "bytes that are not RESP are refused as soon as they show it" {
    const bad = [_][]const u8{
        "hello\r\n",
        "+OK\n",
        "+O\rK\r\n",
        ":12a\r\n",
        ":\r\n",
        ":99999999999999999999\r\n",
        "$-2\r\n",
        "$3\r\nabcd\r\n",
        "!-1\r\n",
        "#x\r\n",
        "_x\r\n",
        "=2\r\nab\r\n",
        "=4\r\nabcd\r\n",
        "|1\r\n+a\r\n+b\r\n+c\r\n",
        "$?\r\n",
        "*-3\r\n",
    };
    for (bad) |reply| try testing.expectError(error.BadReply, replyLen(reply));
    var deep: [max_depth * 4 + 8]u8 = undefined;
    for (0..max_depth + 1) |i| deep[i * 4 ..][0..4].* = "*1\r\n".*;
    try testing.expectError(error.BadReply, replyLen(deep[0 .. (max_depth + 1) * 4]));
}

test "split at every byte: a prefix is incomplete or the same refusal, never another length" {
    for (corpus) |a| for (corpus) |b| {
        var buf: [512]u8 = undefined;
        const both = buf[0 .. a.len + b.len];
        @memcpy(both[0..a.len], a);
        @memcpy(both[a.len..], b);
        try checkPrefixes(both);
    };
}

/// The framing contract on `data` and each of its prefixes: a prefix of a whole reply is
/// incomplete; a prefix of refused bytes is incomplete or refused; a whole reply stays whole
/// (and as long) however many bytes follow it.
fn checkPrefixes(data: []const u8) !void {
    try @import("framing.zig").expectPrefixContract(@This(), data);
    // A whole reply also reads, and its elements add up to it.
    const len = (replyLen(data) catch return) orelse return;
    {
        const reply = try parse(data[0..len]);
        if (reply == .array) {
            var elements = reply.array;
            var seen: u64 = 0;
            while (elements.next()) |_| seen += 1;
            try testing.expectEqual(reply.array.count, seen);
            try testing.expectEqual(@as(usize, 0), elements.rest.len);
        }
    }
}

/// Bytes the mutator likes: RESP's type bytes, line ends, digits and signs.
const mutation_bytes = "+-:$*_,#(!=%~>|\r\n0123456789?";

fn mutate(buffer: []u8, len: *usize, random: std.Random) void {
    const at = random.uintLessThan(usize, len.* + 1);
    switch (random.uintLessThan(u8, 3)) {
        0 => if (at < len.*) {
            buffer[at] = mutation_bytes[random.uintLessThan(usize, mutation_bytes.len)];
        },
        1 => if (len.* < buffer.len) {
            var i = len.*;
            while (i > at) : (i -= 1) buffer[i] = buffer[i - 1];
            buffer[at] = mutation_bytes[random.uintLessThan(usize, mutation_bytes.len)];
            len.* += 1;
        },
        else => if (at < len.*) {
            compat.copyLeft(buffer[at .. len.* - 1], buffer[at + 1 .. len.*]);
            len.* -= 1;
        },
    }
}

test "mutants: no crash, and the framing contract holds on every prefix" {
    var prng = std.Random.DefaultPrng.init(0x5eed_4e59_0000_0001);
    const random = prng.random();
    var outcomes: [3]u32 = @splat(0); // whole, refused, incomplete
    for (0..20_000) |_| {
        var buffer: [256]u8 = undefined;
        const source = corpus[random.uintLessThan(usize, corpus.len)];
        @memcpy(buffer[0..source.len], source);
        var len = source.len;
        for (0..1 + random.uintLessThan(usize, 3)) |_| mutate(&buffer, &len, random);
        try checkPrefixes(buffer[0..len]);
        const result = replyLen(buffer[0..len]);
        const outcome: usize = if (result) |n| (if (n == null) 2 else 0) else |_| 1;
        outcomes[outcome] += 1;
    }
    for (outcomes) |count| try testing.expect(count > 1000);
}

fn fuzzOne(_: void, data: []const u8) anyerror!void {
    try checkPrefixes(data);
}

test "fuzz: any bytes end in a length, more needed, or a refusal, consistently" {
    try compat.fuzz({}, fuzzOne, &corpus);
}

test "a command is an array of bulk strings, and reads back as one" {
    var buf: [64]u8 = undefined;
    const bytes = try command(&buf, &.{ "SET", "k", "a\r\nb" });
    try testing.expectEqualStrings("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\na\r\nb\r\n", bytes);
    const reply = try parse(bytes);
    var elements = reply.array;
    try testing.expectEqualStrings("SET", elements.next().?.bulk);
    try testing.expectEqualStrings("k", elements.next().?.bulk);
    try testing.expectEqualStrings("a\r\nb", elements.next().?.bulk);
    try testing.expectEqual(@as(?Reply, null), elements.next());
    var small: [8]u8 = undefined;
    try testing.expectError(error.NoSpaceLeft, command(&small, &.{"PING PING"}));
}

test "replies read as what they say" {
    try testing.expectEqualStrings("OK", (try parse("+OK\r\n")).simple);
    try testing.expectEqual(@as(i64, -3), (try parse(":-3\r\n")).integer);
    try testing.expect((try parse("$-1\r\n")) == .nil);
    try testing.expect((try parse("_\r\n")) == .nil);
    try testing.expectEqualStrings("txt:hi", (try parse("=6\r\ntxt:hi\r\n")).bulk);
    try testing.expectEqualStrings("SYNTAX", (try parse("!6\r\nSYNTAX\r\n")).err);
    try testing.expectEqual(@as(u64, 4), (try parse("%2\r\n+a\r\n:1\r\n+b\r\n:2\r\n")).array.count);
    try testing.expectError(error.BadReply, parse("+OK"));
}
