//! The dns module of examples/dns.json: an authoritative responder for a few names, kept in
//! the worker's `State`, over UDP (RFC 1035).
//!
//!   a query for A or AAAA of a name in the table   -> its addresses (NOERROR, AA)
//!   another type, or a name without that type     -> no answer (NOERROR)
//!   a name not in the table                        -> NXDOMAIN
//!   an opcode other than QUERY, a class other than IN, AXFR/IXFR/ANY... -> NOTIMP
//!   a malformed query (bad counts, bad name, trailing bytes) -> FORMERR
//!   fewer than 12 bytes, or a response (QR set)    -> nothing (no reply can be matched to it,
//!                                                     and answering responses makes loops)
//!
//! Parsing is strict and bounded: every read checks the length first, names are at most 255
//! bytes of labels of at most 63, and compression pointers are refused in a question. The
//! additional section (an EDNS OPT record) is ignored. This is the example's real
//! implementation; the e2e test copies it over the generated stub.
const std = @import("std");
const datagram_api = @import("../handlers/app_datagram.zig");
const service = @import("../handlers/app.zig").dns;

const header_bytes = 12;
const max_name_bytes = 255;
const ttl_s: u32 = 300;

const Type = struct {
    const a: u16 = 1;
    const aaaa: u16 = 28;
};
const class_in: u16 = 1;

/// Response codes (RFC 1035 4.1.1).
const Rcode = struct {
    const no_error: u8 = 0;
    const format_error: u8 = 1;
    const name_error: u8 = 3;
    const not_implemented: u8 = 4;
};

/// The names the responder answers for, and their addresses.
const table = [_]struct { name: []const u8, a: []const [4]u8, aaaa: []const [16]u8 }{
    .{
        .name = "example.test",
        .a = &.{.{ 192, 0, 2, 1 }},
        .aaaa = &.{ipv6(0x1)},
    },
    .{
        .name = "www.example.test",
        .a = &.{ .{ 192, 0, 2, 2 }, .{ 192, 0, 2, 3 } },
        .aaaa = &.{ipv6(0x2)},
    },
    .{ .name = "mail.example.test", .a = &.{.{ 192, 0, 2, 25 }}, .aaaa = &.{} },
    .{ .name = "v6.example.test", .a = &.{}, .aaaa = &.{ ipv6(0x6), ipv6(0x66) } },
};

/// 2001:db8::<last> (the documentation prefix).
fn ipv6(last: u16) [16]u8 {
    var bytes: [16]u8 = @splat(0);
    bytes[0..4].* = .{ 0x20, 0x01, 0x0d, 0xb8 };
    bytes[14] = @intCast(last >> 8);
    bytes[15] = @intCast(last & 0xff);
    return bytes;
}

/// One name of the table, in wire format (lower case), with its addresses.
const Entry = struct {
    wire: [max_name_bytes]u8,
    wire_len: usize,
    a: []const [4]u8,
    aaaa: []const [16]u8,
};

/// Per worker (per process): the table in wire format, and counters.
pub const State = struct {
    entries: [table.len]Entry,
    answered: u64 = 0,
    nxdomain: u64 = 0,
    refused: u64 = 0,

    pub fn init(allocator: std.mem.Allocator) !State {
        _ = allocator;
        var state: State = .{ .entries = undefined };
        for (table, &state.entries) |row, *entry| {
            entry.* = .{ .wire = undefined, .wire_len = 0, .a = row.a, .aaaa = row.aaaa };
            var labels = std.mem.splitScalar(u8, row.name, '.');
            while (labels.next()) |label| {
                entry.wire[entry.wire_len] = @intCast(label.len);
                @memcpy(entry.wire[entry.wire_len + 1 ..][0..label.len], label);
                entry.wire_len += 1 + label.len;
            }
            entry.wire[entry.wire_len] = 0;
            entry.wire_len += 1;
        }
        return state;
    }

    pub fn deinit(self: *State, allocator: std.mem.Allocator) void {
        _ = self;
        _ = allocator;
    }

    /// The entry whose name is `wire` (already lower case); null: none.
    fn find(self: *const State, wire: []const u8) ?*const Entry {
        for (&self.entries) |*entry| {
            if (std.mem.eql(u8, entry.wire[0..entry.wire_len], wire)) return entry;
        }
        return null;
    }
};

/// A question as read from a query: its name (wire format, lower case) and where the whole
/// question ends in the query.
const Question = struct {
    name: [max_name_bytes]u8,
    name_len: usize,
    qtype: u16,
    qclass: u16,
    end: usize,
};

fn read16(bytes: []const u8, at: usize) u16 {
    return std.mem.readInt(u16, bytes[at..][0..2], .big);
}

/// Reads the question that starts at offset 12; null: malformed.
fn parseQuestion(query: []const u8) ?Question {
    var q: Question = .{ .name = undefined, .name_len = 0, .qtype = 0, .qclass = 0, .end = 0 };
    var at: usize = header_bytes;
    while (true) {
        if (at >= query.len) return null;
        const len = query[at];
        // 0xc0: a compression pointer, 0x40 and 0x80: label types nobody uses.
        if (len > 63) return null;
        if (q.name_len + 1 + len > max_name_bytes) return null;
        if (at + 1 + len > query.len) return null;
        q.name[q.name_len] = len;
        for (query[at + 1 ..][0..len], q.name[q.name_len + 1 ..][0..len]) |c, *lower| {
            lower.* = std.ascii.toLower(c);
        }
        q.name_len += 1 + len;
        at += 1 + len;
        if (len == 0) break;
    }
    if (at + 4 > query.len) return null;
    q.qtype = read16(query, at);
    q.qclass = read16(query, at + 2);
    q.end = at + 4;
    return q;
}

pub fn datagram(state: *State, dg: *datagram_api.Datagram) !void {
    const query = dg.data;
    // Too short to hold an id to answer to, or a response: never answered.
    if (query.len < header_bytes or query[2] & 0x80 != 0) return;
    const opcode: u4 = @intCast((query[2] >> 3) & 0x0f);
    if (opcode != 0) return refuse(dg, query, Rcode.not_implemented);
    const counts = [4]u16{
        read16(query, 4), read16(query, 6), read16(query, 8), read16(query, 10),
    };
    if (counts[0] != 1 or counts[1] != 0 or counts[2] != 0) {
        return refuse(dg, query, Rcode.format_error);
    }
    const q = parseQuestion(query) orelse return refuse(dg, query, Rcode.format_error);
    // Bytes past the question belong to the additional section (EDNS); none without one.
    if (counts[3] == 0 and q.end != query.len) return refuse(dg, query, Rcode.format_error);
    const question = query[header_bytes..q.end];
    // Zone transfers and the meta types (251-255), and classes other than IN.
    if (q.qclass != class_in or (q.qtype >= 251 and q.qtype <= 255)) {
        state.refused += 1;
        try header(dg, query, Rcode.not_implemented, 1, 0);
        return dg.reply(question);
    }
    const entry = state.find(q.name[0..q.name_len]) orelse {
        state.nxdomain += 1;
        try header(dg, query, Rcode.name_error, 1, 0);
        return dg.reply(question);
    };
    state.answered += 1;
    const answers = switch (q.qtype) {
        Type.a => entry.a.len,
        Type.aaaa => entry.aaaa.len,
        else => 0,
    };
    try header(dg, query, Rcode.no_error, 1, @intCast(answers));
    try dg.reply(question);
    if (q.qtype == Type.a) {
        for (entry.a) |ip| try record(dg, Type.a, &ip);
    }
    if (q.qtype == Type.aaaa) {
        for (entry.aaaa) |ip| try record(dg, Type.aaaa, &ip);
    }
}

/// A reply of a header only, with `rcode`.
fn refuse(dg: *datagram_api.Datagram, query: []const u8, rcode: u8) !void {
    return header(dg, query, rcode, 0, 0);
}

/// The reply's header: the query's id, opcode and RD, QR and AA set, and the counts.
fn header(dg: *datagram_api.Datagram, query: []const u8, rcode: u8, qd: u16, an: u16) !void {
    var h: [header_bytes]u8 = @splat(0);
    @memcpy(h[0..2], query[0..2]);
    // QR, the opcode and RD from the query, AA.
    h[2] = 0x80 | (query[2] & 0x79) | 0x04;
    h[3] = rcode;
    std.mem.writeInt(u16, h[4..6], qd, .big);
    std.mem.writeInt(u16, h[6..8], an, .big);
    try dg.reply(&h);
}

/// One answer, its name a pointer to the question's (at offset 12).
fn record(dg: *datagram_api.Datagram, rtype: u16, data: []const u8) !void {
    var r: [12]u8 = undefined;
    std.mem.writeInt(u16, r[0..2], 0xc000 | header_bytes, .big);
    std.mem.writeInt(u16, r[2..4], rtype, .big);
    std.mem.writeInt(u16, r[4..6], class_in, .big);
    std.mem.writeInt(u32, r[6..10], ttl_s, .big);
    std.mem.writeInt(u16, r[10..12], @intCast(data.len), .big);
    try dg.reply(&r);
    try dg.reply(data);
}

const test_peer: datagram_api.Peer = .{ .address = .{ .ip4 = .{ 127, 0, 0, 1 } }, .port = 5300 };

/// A query for `name` (dotted) of `qtype`, id 0xbeef, RD set, in `buf`.
fn testQuery(buf: []u8, name: []const u8, qtype: u16) []u8 {
    @memcpy(buf[0..header_bytes], &[_]u8{ 0xbe, 0xef, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0 });
    var at: usize = header_bytes;
    var labels = std.mem.splitScalar(u8, name, '.');
    while (labels.next()) |label| {
        buf[at] = @intCast(label.len);
        @memcpy(buf[at + 1 ..][0..label.len], label);
        at += 1 + label.len;
    }
    buf[at] = 0;
    std.mem.writeInt(u16, buf[at + 1 ..][0..2], qtype, .big);
    std.mem.writeInt(u16, buf[at + 3 ..][0..2], class_in, .big);
    return buf[0 .. at + 5];
}

fn expectReply(reply: []const u8, rcode: u8, answers: u16) !void {
    try std.testing.expect(reply.len >= header_bytes);
    try std.testing.expectEqualSlices(u8, &.{ 0xbe, 0xef }, reply[0..2]);
    try std.testing.expectEqual(@as(u8, 0x85), reply[2]);
    try std.testing.expectEqual(rcode, reply[3]);
    try std.testing.expectEqual(answers, read16(reply, 6));
}

test "answers A and AAAA for the names of its table, in any case" {
    var state = try State.init(std.testing.allocator);
    defer state.deinit(std.testing.allocator);
    var buf: [300]u8 = undefined;
    const query = testQuery(&buf, "WWW.Example.test", Type.a);
    const reply = service.testDatagram(&state, query, test_peer);
    try expectReply(reply, Rcode.no_error, 2);
    // The question comes back as it was asked (its case kept), then two answers.
    try std.testing.expectEqualSlices(u8, query[header_bytes..], reply[header_bytes..query.len]);
    try std.testing.expectEqual(query.len + 2 * 16, reply.len);
    try std.testing.expectEqualSlices(u8, &.{ 192, 0, 2, 3 }, reply[reply.len - 4 ..]);
    const v6 = testQuery(&buf, "v6.example.test", Type.aaaa);
    const six = service.testDatagram(&state, v6, test_peer);
    try expectReply(six, Rcode.no_error, 2);
    try std.testing.expectEqualSlices(u8, &ipv6(0x66), six[six.len - 16 ..]);
}

test "a name without the type gets no answer, a name not in the table NXDOMAIN" {
    var state = try State.init(std.testing.allocator);
    defer state.deinit(std.testing.allocator);
    var buf: [300]u8 = undefined;
    const nodata = testQuery(&buf, "mail.example.test", Type.aaaa);
    try expectReply(service.testDatagram(&state, nodata, test_peer), Rcode.no_error, 0);
    const mx = testQuery(&buf, "example.test", 15);
    try expectReply(service.testDatagram(&state, mx, test_peer), Rcode.no_error, 0);
    const missing = testQuery(&buf, "nope.example.test", Type.a);
    try expectReply(service.testDatagram(&state, missing, test_peer), Rcode.name_error, 0);
    const parent = testQuery(&buf, "test", Type.a);
    try expectReply(service.testDatagram(&state, parent, test_peer), Rcode.name_error, 0);
    try std.testing.expectEqual(@as(u64, 2), state.nxdomain);
}

test "unsupported queries get NOTIMP, malformed ones FORMERR, some none at all" {
    var state = try State.init(std.testing.allocator);
    defer state.deinit(std.testing.allocator);
    var buf: [300]u8 = undefined;
    const any = testQuery(&buf, "example.test", 255);
    try expectReply(service.testDatagram(&state, any, test_peer), Rcode.not_implemented, 0);
    var status = testQuery(&buf, "example.test", Type.a);
    status[2] = 0x11; // opcode STATUS, RD
    const got = service.testDatagram(&state, status, test_peer);
    try std.testing.expectEqual(@as(usize, header_bytes), got.len);
    try std.testing.expectEqual(@as(u8, 0x80 | 0x10 | 0x04 | 0x01), got[2]);
    var chaos = testQuery(&buf, "example.test", Type.a);
    chaos[chaos.len - 1] = 3;
    try expectReply(service.testDatagram(&state, chaos, test_peer), Rcode.not_implemented, 0);
    var two = testQuery(&buf, "example.test", Type.a);
    two[5] = 2;
    try expectReply(service.testDatagram(&state, two, test_peer), Rcode.format_error, 0);
    var pointer = testQuery(&buf, "example.test", Type.a);
    pointer[header_bytes] = 0xc0;
    try expectReply(service.testDatagram(&state, pointer, test_peer), Rcode.format_error, 0);
    const query = testQuery(&buf, "example.test", Type.a);
    buf[query.len] = 0;
    const trailing = buf[0 .. query.len + 1];
    try expectReply(service.testDatagram(&state, trailing, test_peer), Rcode.format_error, 0);
    var response = testQuery(&buf, "example.test", Type.a);
    response[2] |= 0x80;
    const none = service.testDatagram(&state, response, test_peer);
    try std.testing.expectEqual(@as(usize, 0), none.len);
    const short = service.testDatagram(&state, "\x01\x02", test_peer);
    try std.testing.expectEqual(@as(usize, 0), short.len);
}

test "a name of more than 255 bytes is malformed" {
    var state = try State.init(std.testing.allocator);
    defer state.deinit(std.testing.allocator);
    var buf: [600]u8 = undefined;
    // Four labels of 63 bytes: 256 bytes with the lengths and the root.
    var name: [4 * 64 - 1]u8 = @splat('a');
    for ([_]usize{ 63, 127, 191 }) |dot| name[dot] = '.';
    const long = testQuery(&buf, &name, Type.a);
    try expectReply(service.testDatagram(&state, long, test_peer), Rcode.format_error, 0);
}

/// Whatever a reply is, it is well formed: no reply, or a header with the query's id.
fn expectSane(query: []const u8, reply: []const u8) !void {
    if (reply.len == 0) return;
    try std.testing.expect(reply.len >= header_bytes and reply.len <= 512);
    try std.testing.expectEqualSlices(u8, query[0..2], reply[0..2]);
    try std.testing.expect(reply[2] & 0x80 != 0);
}

test "every prefix, every byte changed, and random bytes: never a crash, a sane reply" {
    var state = try State.init(std.testing.allocator);
    defer state.deinit(std.testing.allocator);
    var buf: [300]u8 = undefined;
    const good = testQuery(&buf, "www.example.test", Type.aaaa);
    var copy: [300]u8 = undefined;
    for (0..good.len + 1) |len| {
        @memcpy(copy[0..len], good[0..len]);
        try expectSane(copy[0..len], service.testDatagram(&state, copy[0..len], test_peer));
    }
    for (0..good.len) |at| {
        for (0..256) |value| {
            @memcpy(copy[0..good.len], good);
            copy[at] = @intCast(value);
            const q = copy[0..good.len];
            try expectSane(q, service.testDatagram(&state, q, test_peer));
        }
    }
    var prng = std.Random.DefaultPrng.init(0x5eed);
    const random = prng.random();
    for (0..20_000) |_| {
        const len = random.uintAtMost(usize, copy.len);
        random.bytes(copy[0..len]);
        // Mostly queries with one question, so that the parser is what the bytes reach.
        if (len >= header_bytes and random.boolean()) {
            @memcpy(copy[2..header_bytes], good[2..header_bytes]);
        }
        try expectSane(copy[0..len], service.testDatagram(&state, copy[0..len], test_peer));
    }
}
