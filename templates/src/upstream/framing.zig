//! Where a reply of an upstream ends, by the framing its spec names: `resp` (see resp.zig),
//! `line` (up to and with LF), `length` (a 4-byte big-endian length, then that many bytes) or
//! `http` (an HTTP/1.1 response, see http_reply.zig).
//! Each looks at the bytes a connection has read and not delivered, and says how long the
//! first reply is, that more is needed, or that the bytes cannot be a reply.
const std = @import("std");
const config = @import("../config.zig");
const compat = @import("../compat.zig");
const resp = @import("resp.zig");
const http_reply = @import("http_reply.zig");

pub const Error = error{BadReply};

/// Bytes of a `length` reply's prefix.
pub const length_prefix_bytes = 4;

/// The length of the first reply in `bytes` (at most `max_bytes`); null while incomplete.
pub fn replyLen(framing: config.Framing, bytes: []const u8, max_bytes: usize) Error!?usize {
    const len = switch (framing) {
        .resp => try resp.replyLen(bytes),
        .line => lineLen(bytes),
        .length => try lengthLen(bytes, max_bytes),
        .http => try http_reply.replyLen(bytes),
    } orelse {
        // A reply that cannot end within the largest allowed is refused now.
        if (bytes.len >= max_bytes) return error.BadReply;
        return null;
    };
    if (len > max_bytes) return error.BadReply;
    return len;
}

/// Whether calls may be sent on a connection before the replies of earlier ones arrived: the
/// replies come back in order and each can be cut from the others. HTTP/1.1 allows it, but
/// too many servers handle pipelined requests badly (or close after the first): one at a time.
pub fn pipelines(framing: config.Framing) bool {
    return switch (framing) {
        .resp, .line, .length => true,
        .http => false,
    };
}

fn lineLen(bytes: []const u8) ?usize {
    const nl = compat.findScalar(u8, bytes, '\n') orelse return null;
    return nl + 1;
}

/// A reply whose prefix announces more than `max_bytes` is refused as soon as the prefix is in.
fn lengthLen(bytes: []const u8, max_bytes: usize) Error!?usize {
    if (bytes.len < length_prefix_bytes) return null;
    const n = std.mem.readInt(u32, bytes[0..length_prefix_bytes], .big);
    const total = @as(u64, n) + length_prefix_bytes;
    if (total > max_bytes) return error.BadReply;
    if (bytes.len < total) return null;
    return @intCast(total);
}

const testing = std.testing;

test "line replies end with their LF; length replies after their prefix and payload" {
    try testing.expectEqual(@as(?usize, 4), try replyLen(.line, "abc\ndef", 100));
    try testing.expectEqual(@as(?usize, null), try replyLen(.line, "abc", 100));
    try testing.expectError(error.BadReply, replyLen(.line, "abcdef", 4));
    const framed = "\x00\x00\x00\x03abc\x00";
    try testing.expectEqual(@as(?usize, 7), try replyLen(.length, framed, 100));
    for (0..7) |k| {
        try testing.expectEqual(@as(?usize, null), try replyLen(.length, framed[0..k], 100));
    }
    try testing.expectError(error.BadReply, replyLen(.length, "\x00\x00\x01\x00abc", 16));
    try testing.expectEqual(@as(?usize, 5), try replyLen(.resp, "+OK\r\n+OK\r\n", 100));
    try testing.expectEqual(@as(?usize, null), try replyLen(.resp, "$100\r\n", 16));
    try testing.expectError(error.BadReply, replyLen(.resp, "$100\r\n0123456789", 16));
}

/// The framing contract every framer's tests check, on `data` and each of its prefixes: a
/// prefix of a whole reply is incomplete; a whole one keeps its length whatever follows; a
/// refusal is never undone. `framer` has `replyLen(bytes)`: a framer's file (`resp.zig`) or a
/// value that carries its settings.
pub fn expectPrefixContract(framer: anytype, data: []const u8) !void {
    const whole = framer.replyLen(data);
    for (0..data.len + 1) |k| {
        const part = framer.replyLen(data[0..k]);
        const len = (whole catch {
            if (part) |p| try testing.expectEqual(@as(?usize, null), p) else |_| {}
            continue;
        }) orelse {
            try testing.expectEqual(@as(?usize, null), try part);
            continue;
        };
        const expected: ?usize = if (k < len) null else len;
        try testing.expectEqual(expected, try part);
    }
}

/// Line or length framing with its bound, as `expectPrefixContract` takes a framer.
const Framed = struct {
    framing: config.Framing,
    max_bytes: usize,

    fn replyLen(self: Framed, bytes: []const u8) Error!?usize {
        return framingLen(self.framing, bytes, self.max_bytes);
    }
};

const framingLen = replyLen;

test "mutants of line and length replies: the contract holds at every split" {
    var prng = std.Random.DefaultPrng.init(0x5eed_f4a3_0000_0002);
    const random = prng.random();
    var outcomes: [3]u32 = @splat(0); // whole, refused, incomplete
    for (0..5_000) |i| {
        var buffer: [64]u8 = undefined;
        const len = random.uintLessThan(usize, buffer.len);
        for (buffer[0..len]) |*b| b.* = switch (random.uintLessThan(u8, 4)) {
            0 => '\n',
            1 => 0,
            2 => random.uintLessThan(u8, 12),
            else => 'a',
        };
        const framing: config.Framing = if (i % 2 == 0) .line else .length;
        const max_bytes = 4 + random.uintLessThan(usize, 40);
        const framer: Framed = .{ .framing = framing, .max_bytes = max_bytes };
        try expectPrefixContract(framer, buffer[0..len]);
        const result = replyLen(framing, buffer[0..len], max_bytes);
        const outcome: usize = if (result) |n| (if (n == null) 2 else 0) else |_| 1;
        outcomes[outcome] += 1;
    }
    for (outcomes) |count| try testing.expect(count > 200);
}
