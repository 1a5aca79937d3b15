//! DNS messages (RFC 1035) for the upstreams' host names: the query for one name's A or AAAA
//! records, and the first such address in its response. Strict: every length is checked
//! against the message, a compression pointer may only point backwards and is followed a
//! bounded number of times, the response must answer our question (its id, the name, the
//! type), and anything malformed is an error, never a crash (the tests feed every prefix and
//! byte mutations of real responses).
const std = @import("std");
const address = @import("../address.zig");

pub const Type = enum {
    a,
    aaaa,

    /// The record type's number on the wire (RFC 1035, RFC 3596). A switch rather than
    /// `@intFromEnum`, which the `zig fmt` of 0.17 rewrites to a builtin older releases lack.
    pub fn code(t: Type) u16 {
        return switch (t) {
            .a => 1,
            .aaaa => 28,
        };
    }
};

/// What a response over UDP may hold without EDNS.
pub const max_message_bytes = 512;
/// A name as DNS carries it: at most 255 bytes encoded, 253 as text.
pub const max_name_bytes = 253;

const class_in: u16 = 1;
const header_bytes = 12;
/// Compression pointers followed while reading one name.
const max_jumps = 16;

pub const BuildError = error{ BadName, NoSpaceLeft };

/// Writes the query for `name`'s records of type `qtype` (recursion desired) into `buf`.
pub fn buildQuery(buf: []u8, id: u16, name: []const u8, qtype: Type) BuildError![]const u8 {
    const text = trimDot(name);
    if (text.len == 0 or text.len > max_name_bytes) return error.BadName;
    // Header, the name (a length byte per label and the root's), type and class.
    const needed = header_bytes + text.len + 2 + 4;
    if (buf.len < needed) return error.NoSpaceLeft;
    std.mem.writeInt(u16, buf[0..2], id, .big);
    // Flags: a standard query, recursion desired.
    std.mem.writeInt(u16, buf[2..4], 0x0100, .big);
    std.mem.writeInt(u16, buf[4..6], 1, .big);
    @memset(buf[6..12], 0);
    var at: usize = header_bytes;
    var labels = std.mem.splitScalar(u8, text, '.');
    while (labels.next()) |label| {
        if (label.len == 0 or label.len > 63) return error.BadName;
        buf[at] = @intCast(label.len);
        @memcpy(buf[at + 1 ..][0..label.len], label);
        at += 1 + label.len;
    }
    buf[at] = 0;
    at += 1;
    std.mem.writeInt(u16, buf[at..][0..2], qtype.code(), .big);
    std.mem.writeInt(u16, buf[at + 2 ..][0..2], class_in, .big);
    return buf[0 .. at + 4];
}

pub const ParseError = error{
    /// Shorter than its own lengths say, or a name or record that does not hold together.
    Malformed,
    /// Not a response to our query (its id, its question).
    NotOurs,
    /// The name does not exist (NXDOMAIN): asking again will not help.
    NoSuchName,
    /// The server could not answer (SERVFAIL, REFUSED, …): another server may.
    ServerFailure,
    /// The answer did not fit in a datagram and the part that came has no address.
    Truncated,
};

/// The first address of type `qtype` in the response `msg` to the query `id` for `name`;
/// null when the name exists without such records.
pub fn firstAddress(
    msg: []const u8,
    id: u16,
    name: []const u8,
    qtype: Type,
) ParseError!?address.Address {
    if (msg.len < header_bytes) return error.Malformed;
    if (std.mem.readInt(u16, msg[0..2], .big) != id) return error.NotOurs;
    const flags = std.mem.readInt(u16, msg[2..4], .big);
    // A response (QR), to a standard query (opcode 0).
    if (flags & 0x8000 == 0 or (flags >> 11) & 0xf != 0) return error.NotOurs;
    switch (flags & 0xf) {
        0 => {},
        3 => return error.NoSuchName,
        else => return error.ServerFailure,
    }
    const questions = std.mem.readInt(u16, msg[4..6], .big);
    const answers = std.mem.readInt(u16, msg[6..8], .big);
    if (questions != 1) return error.NotOurs;
    var at: usize = header_bytes;
    var text: [max_name_bytes + 2]u8 = undefined;
    const asked = try readName(msg, &at, &text);
    if (!std.ascii.eqlIgnoreCase(asked, trimDot(name))) return error.NotOurs;
    if (at + 4 > msg.len) return error.Malformed;
    if (std.mem.readInt(u16, msg[at..][0..2], .big) != qtype.code()) return error.NotOurs;
    at += 4;
    // Bounded by the count in the header, and each record moves `at` forward.
    for (0..answers) |_| {
        _ = try readName(msg, &at, &text);
        if (at + 10 > msg.len) return error.Malformed;
        const rtype = std.mem.readInt(u16, msg[at..][0..2], .big);
        const rclass = std.mem.readInt(u16, msg[at + 2 ..][0..2], .big);
        const length = std.mem.readInt(u16, msg[at + 8 ..][0..2], .big);
        at += 10;
        if (at + length > msg.len) return error.Malformed;
        const data = msg[at..][0..length];
        at += length;
        // A CNAME on the way to the address comes first; the address follows it.
        if (rclass != class_in or rtype != qtype.code()) continue;
        switch (qtype) {
            .a => if (length == 4) return .{ .ip4 = data[0..4].* },
            .aaaa => if (length == 16) return .{ .ip6 = data[0..16].* },
        }
        return error.Malformed;
    }
    if (flags & 0x0200 != 0) return error.Truncated;
    return null;
}

/// Reads the name at `at.*` into `out` as dotted text and moves `at` past it (past its
/// first pointer, when it has one).
fn readName(msg: []const u8, at: *usize, out: *[max_name_bytes + 2]u8) ParseError![]const u8 {
    var pos = at.*;
    var len: usize = 0;
    var jumps: usize = 0;
    var end: ?usize = null;
    // Bounded: each pass reads a label (forward) or follows a pointer (at most max_jumps).
    while (true) {
        if (pos >= msg.len) return error.Malformed;
        const byte = msg[pos];
        if (byte == 0) {
            at.* = end orelse pos + 1;
            return out[0..len];
        }
        switch (byte & 0xc0) {
            0xc0 => {
                if (pos + 1 >= msg.len) return error.Malformed;
                const target = (@as(usize, byte & 0x3f) << 8) | msg[pos + 1];
                // Only backwards: a pointer can never lead into a loop.
                if (target >= pos or jumps == max_jumps) return error.Malformed;
                jumps += 1;
                if (end == null) end = pos + 2;
                pos = target;
            },
            0 => {
                const label_len: usize = byte;
                if (pos + 1 + label_len > msg.len) return error.Malformed;
                const dot: usize = if (len == 0) 0 else 1;
                if (len + dot + label_len > max_name_bytes) return error.Malformed;
                if (dot == 1) out[len] = '.';
                @memcpy(out[len + dot ..][0..label_len], msg[pos + 1 ..][0..label_len]);
                len += dot + label_len;
                pos += 1 + label_len;
            },
            else => return error.Malformed,
        }
    }
}

fn trimDot(name: []const u8) []const u8 {
    if (name.len > 0 and name[name.len - 1] == '.') return name[0 .. name.len - 1];
    return name;
}

const testing = std.testing;

/// A response as a recursive server sends it for `db.example.com` A: the question, a CNAME
/// to `cache.example.com` (its owner a pointer to the question's name), and the A record of
/// the CNAME's target (a pointer into the CNAME's data), 10.1.2.3.
const captured_a = "\x12\x34\x81\x80\x00\x01\x00\x02\x00\x00\x00\x00" ++
    "\x02db\x07example\x03com\x00\x00\x01\x00\x01" ++
    "\xc0\x0c\x00\x05\x00\x01\x00\x00\x01\x2c\x00\x08\x05cache\xc0\x0f" ++
    "\xc0\x2c\x00\x01\x00\x01\x00\x00\x01\x2c\x00\x04\x0a\x01\x02\x03";

test "a query is a header, the name's labels, its type and class" {
    var buf: [max_message_bytes]u8 = undefined;
    const query = try buildQuery(&buf, 0x1234, "db.example.com.", .a);
    try testing.expectEqualStrings("\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" ++
        "\x02db\x07example\x03com\x00\x00\x01\x00\x01", query);
    try testing.expectError(error.BadName, buildQuery(&buf, 1, "a..b", .a));
    try testing.expectError(error.BadName, buildQuery(&buf, 1, "", .aaaa));
    const long_label: [64]u8 = @splat('x');
    try testing.expectError(error.BadName, buildQuery(&buf, 1, &long_label, .a));
    try testing.expectError(error.NoSpaceLeft, buildQuery(buf[0..20], 1, "db.example.com", .a));
}

test "the first address of the asked type, past a CNAME; errors by response code" {
    const got = (try firstAddress(captured_a, 0x1234, "DB.example.com", .a)).?;
    try testing.expectEqualSlices(u8, &.{ 10, 1, 2, 3 }, &got.ip4);
    try testing.expectError(error.NotOurs, firstAddress(captured_a, 0x1235, "db.example.com", .a));
    try testing.expectError(error.NotOurs, firstAddress(captured_a, 0x1234, "db.example.org", .a));
    const name = "db.example.com";
    try testing.expectError(error.NotOurs, firstAddress(captured_a, 0x1234, name, .aaaa));
    var nx = captured_a[0..32].*;
    nx[3] = 0x83;
    nx[7] = 0;
    try testing.expectError(error.NoSuchName, firstAddress(&nx, 0x1234, "db.example.com", .a));
    nx[3] = 0x82;
    try testing.expectError(error.ServerFailure, firstAddress(&nx, 0x1234, "db.example.com", .a));
    // No answer: the name has no A record (null), or the answer was cut (truncated).
    nx[3] = 0x80;
    try testing.expectEqual(@as(?address.Address, null), try firstAddress(&nx, 0x1234, name, .a));
    nx[2] = 0x83;
    try testing.expectError(error.Truncated, firstAddress(&nx, 0x1234, "db.example.com", .a));
}

test "an AAAA answer, and pointers that loop or point forward are malformed" {
    var buf: [max_message_bytes]u8 = undefined;
    const query = try buildQuery(&buf, 7, "h", .aaaa);
    var msg: [64]u8 = undefined;
    @memcpy(msg[0..query.len], query);
    msg[2] = 0x81;
    msg[3] = 0x80;
    msg[7] = 1;
    const record = "\xc0\x0c\x00\x1c\x00\x01\x00\x00\x00\x3c\x00\x10" ++
        "\x20\x01" ++ "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00" ++ "\x01";
    @memcpy(msg[query.len..][0..record.len], record);
    const total = query.len + record.len;
    const got = (try firstAddress(msg[0..total], 7, "h", .aaaa)).?;
    try testing.expectEqual(@as(u8, 0x20), got.ip6[0]);
    try testing.expectEqual(@as(u8, 1), got.ip6[15]);
    // The answer's owner pointing at itself (a loop), then forward.
    msg[query.len + 1] = @intCast(query.len);
    try testing.expectError(error.Malformed, firstAddress(msg[0..total], 7, "h", .aaaa));
    msg[query.len + 1] = @intCast(query.len + 4);
    try testing.expectError(error.Malformed, firstAddress(msg[0..total], 7, "h", .aaaa));
}

test "every prefix and every byte mutated: an answer or an error, never a crash" {
    // Bounded: 60-odd prefixes, and 60-odd bytes times 6 values.
    for (0..captured_a.len) |n| {
        _ = firstAddress(captured_a[0..n], 0x1234, "db.example.com", .a) catch continue;
        // Only the whole response parses: its two records are in its header's count.
        try testing.expectEqual(captured_a.len, n);
    }
    var msg = captured_a.*;
    for (0..msg.len) |i| {
        for ([_]u8{ 0, 1, 0x3f, 0x40, 0xc0, 0xff }) |value| {
            const kept = msg[i];
            msg[i] = value;
            // Errors are expected here: only a crash would fail the test.
            _ = firstAddress(&msg, 0x1234, "db.example.com", .a) catch {};
            msg[i] = kept;
        }
    }
    // Pseudo-random bytes from a fixed seed, at every length.
    var prng = std.Random.DefaultPrng.init(19);
    var junk: [max_message_bytes]u8 = undefined;
    for (0..200) |round| {
        prng.random().bytes(&junk);
        junk[0] = 0x12;
        junk[1] = 0x34;
        const msg_len = round % junk.len;
        // Errors are expected here: only a crash would fail the test.
        _ = firstAddress(junk[0..msg_len], 0x1234, "db.example.com", .a) catch {};
    }
}
