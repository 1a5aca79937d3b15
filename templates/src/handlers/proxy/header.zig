//! The PROXY protocol header (HAProxy's "PROXY protocol" specification, versions 1 and 2): the
//! first bytes a proxy sends its server, saying who the client really is, so that the server
//! can log and check the client's address instead of the proxy's (nginx reads it with
//! `listen … proxy_protocol` and `$proxy_protocol_addr`).
//!
//! Version 1 is one text line, `PROXY TCP4 <src> <dst> <sport> <dport>\r\n`, at most 107
//! bytes. Version 2 is binary: a 12-byte signature, version and command, family and
//! transport, the length of what follows, then the addresses and ports in network order.
const std = @import("std");
const config = @import("../../config.zig");
const address = @import("../../address.zig");
const compat = @import("../../compat.zig");
const linux = std.os.linux;
const assert = std.debug.assert;

pub const Endpoint = address.Endpoint;

/// The longest header of either version (a version 1 line of two full IPv6 addresses).
pub const max_bytes = 108;

const v2_signature = "\r\n\r\n\x00\r\nQUIT\n";

/// The endpoint a socket address holds, or null for a family that is not IP.
pub fn endpointOf(storage: *const linux.sockaddr.storage) ?Endpoint {
    switch (storage.family) {
        linux.AF.INET => {
            const in: *const linux.sockaddr.in = @ptrCast(storage);
            const port = std.mem.bigToNative(u16, in.port);
            return .{ .address = .{ .ip4 = @bitCast(in.addr) }, .port = port };
        },
        linux.AF.INET6 => {
            const in6: *const linux.sockaddr.in6 = @ptrCast(storage);
            const port = std.mem.bigToNative(u16, in6.port);
            return .{ .address = .{ .ip6 = in6.addr }, .port = port };
        },
        else => return null,
    }
}

/// An IPv4 client of a dual-stack listener shows as `::ffff:a.b.c.d`; the header names it
/// as the IPv4 address it is.
fn unmapped(e: Endpoint) Endpoint {
    const bytes = switch (e.address) {
        .ip4 => return e,
        .ip6 => |b| b,
    };
    const prefix = [12]u8{ 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
    if (!std.mem.eql(u8, bytes[0..12], &prefix)) return e;
    return .{ .address = .{ .ip4 = bytes[12..16].* }, .port = e.port };
}

/// Writes the header of `version` for a client at `src` that reached the proxy at `dst`;
/// returns its length (0 for `.none`). Addresses of different families, or unknown ones,
/// are sent as unknown, as the specification says.
pub fn encode(
    version: config.ProxyProtocol,
    src: ?Endpoint,
    dst: ?Endpoint,
    out: *[max_bytes]u8,
) usize {
    var pair: ?[2]Endpoint = null;
    if (src != null and dst != null) {
        const s = unmapped(src.?);
        const d = unmapped(dst.?);
        if (std.meta.activeTag(s.address) == std.meta.activeTag(d.address)) pair = .{ s, d };
    }
    const len = switch (version) {
        .none => 0,
        .v1 => encodeV1(pair, out),
        .v2 => encodeV2(pair, out),
    };
    assert(len <= max_bytes);
    return len;
}

fn encodeV1(pair: ?[2]Endpoint, out: *[max_bytes]u8) usize {
    const p = pair orelse {
        const line = "PROXY UNKNOWN\r\n";
        @memcpy(out[0..line.len], line);
        return line.len;
    };
    const family = if (p[0].address.isIp6()) "TCP6" else "TCP4";
    var src_text: [64]u8 = undefined;
    var dst_text: [64]u8 = undefined;
    const text = compat.bufPrint(out, "PROXY {s} {s} {s} {d} {d}\r\n", .{
        family,
        address.format(p[0].address, &src_text),
        address.format(p[1].address, &dst_text),
        p[0].port,
        p[1].port,
    }) catch unreachable;
    return text.len;
}

fn encodeV2(pair: ?[2]Endpoint, out: *[max_bytes]u8) usize {
    @memcpy(out[0..12], v2_signature);
    const p = pair orelse {
        // LOCAL: the receiver uses the connection's own addresses.
        out[12] = 0x20;
        out[13] = 0x00;
        std.mem.writeInt(u16, out[14..16], 0, .big);
        return 16;
    };
    // Version 2, command PROXY.
    out[12] = 0x21;
    var len: usize = 16;
    switch (p[0].address) {
        .ip4 => |s| {
            out[13] = 0x11; // TCP over IPv4
            @memcpy(out[len..][0..4], &s);
            @memcpy(out[len + 4 ..][0..4], &p[1].address.ip4);
            len += 8;
        },
        .ip6 => |s| {
            out[13] = 0x21; // TCP over IPv6
            @memcpy(out[len..][0..16], &s);
            @memcpy(out[len + 16 ..][0..16], &p[1].address.ip6);
            len += 32;
        },
    }
    std.mem.writeInt(u16, out[len..][0..2], p[0].port, .big);
    std.mem.writeInt(u16, out[len + 2 ..][0..2], p[1].port, .big);
    len += 4;
    std.mem.writeInt(u16, out[14..16], @intCast(len - 16), .big);
    return len;
}

const testing = std.testing;

/// `::1`, or with `last` for its last byte.
fn ip6Ending(last: u8) [16]u8 {
    var bytes: [16]u8 = @splat(0);
    bytes[15] = last;
    return bytes;
}

fn ip4(a: u8, b: u8, c: u8, d: u8, port: u16) Endpoint {
    return .{ .address = .{ .ip4 = .{ a, b, c, d } }, .port = port };
}

test "version 1: the specification's TCP4 example, and its longest lines" {
    var out: [max_bytes]u8 = undefined;
    var len = encode(.v1, ip4(192, 168, 0, 1, 56324), ip4(192, 168, 0, 11, 443), &out);
    const example = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n";
    try testing.expectEqualStrings(example, out[0..len]);
    const top = ip4(255, 255, 255, 255, 65535);
    len = encode(.v1, top, top, &out);
    try testing.expectEqualStrings(
        "PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n",
        out[0..len],
    );
    const all: Endpoint = .{ .address = .{ .ip6 = @as([16]u8, @splat(0xff)) }, .port = 65535 };
    len = encode(.v1, all, all, &out);
    const group = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
    const longest = "PROXY TCP6 " ++ group ++ " " ++ group ++ " 65535 65535\r\n";
    try testing.expectEqualStrings(longest, out[0..len]);
    // The specification's worst case: 104 bytes with the line end.
    try testing.expectEqual(@as(usize, 104), len);
}

test "version 1: mixed or unknown families are UNKNOWN; IPv4-mapped clients are IPv4" {
    var out: [max_bytes]u8 = undefined;
    const six: Endpoint = .{ .address = .{ .ip6 = ip6Ending(1) }, .port = 80 };
    var len = encode(.v1, ip4(10, 0, 0, 1, 1000), six, &out);
    try testing.expectEqualStrings("PROXY UNKNOWN\r\n", out[0..len]);
    len = encode(.v1, null, six, &out);
    try testing.expectEqualStrings("PROXY UNKNOWN\r\n", out[0..len]);
    const mapped = [16]u8{ 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1 };
    const client: Endpoint = .{ .address = .{ .ip6 = mapped }, .port = 40000 };
    const local: Endpoint = .{ .address = .{ .ip6 = mapped }, .port = 8080 };
    len = encode(.v1, client, local, &out);
    try testing.expectEqualStrings("PROXY TCP4 127.0.0.1 127.0.0.1 40000 8080\r\n", out[0..len]);
    len = encode(.v1, six, six, &out);
    try testing.expectEqualStrings("PROXY TCP6 ::1 ::1 80 80\r\n", out[0..len]);
}

test "version 2: signature, PROXY command, TCP over IPv4, addresses and ports, byte for byte" {
    var out: [max_bytes]u8 = undefined;
    const len = encode(.v2, ip4(192, 168, 0, 1, 56324), ip4(192, 168, 0, 11, 443), &out);
    const expected = [_]u8{
        0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, // signature
        0x21, 0x11, 0x00, 0x0c, // v2 PROXY, TCP over IPv4, 12 bytes follow
        0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0x0b, // 192.168.0.1, 192.168.0.11
        0xdc, 0x04, 0x01, 0xbb, // 56324, 443
    };
    try testing.expectEqualSlices(u8, &expected, out[0..len]);
}

test "version 2: TCP over IPv6 carries 36 bytes; unknown families are LOCAL with none" {
    var out: [max_bytes]u8 = undefined;
    var src_bytes = ip6Ending(1);
    src_bytes[0] = 0x20;
    src_bytes[1] = 0x01;
    const src: Endpoint = .{ .address = .{ .ip6 = src_bytes }, .port = 1 };
    const dst: Endpoint = .{ .address = .{ .ip6 = ip6Ending(1) }, .port = 0x1f90 };
    var len = encode(.v2, src, dst, &out);
    try testing.expectEqual(@as(usize, 52), len);
    try testing.expectEqualSlices(u8, &[_]u8{ 0x21, 0x21, 0x00, 0x24 }, out[12..16]);
    try testing.expectEqualSlices(u8, &src_bytes, out[16..32]);
    try testing.expectEqualSlices(u8, &dst.address.ip6, out[32..48]);
    try testing.expectEqualSlices(u8, &[_]u8{ 0x00, 0x01, 0x1f, 0x90 }, out[48..52]);
    len = encode(.v2, null, dst, &out);
    try testing.expectEqualSlices(u8, v2_signature ++ "\x20\x00\x00\x00", out[0..len]);
    try testing.expectEqual(@as(usize, 0), encode(.none, src, dst, &out));
}

test "a socket address gives its endpoint; other families none" {
    var storage: linux.sockaddr.storage = undefined;
    @memset(std.mem.asBytes(&storage), 0);
    const sa = address.SockAddr.init(.{ .ip4 = .{ 10, 1, 2, 3 } }, 4567);
    @memcpy(std.mem.asBytes(&storage)[0..sa.len], std.mem.asBytes(&sa.storage)[0..sa.len]);
    const e = endpointOf(&storage).?;
    try testing.expectEqual(@as(u16, 4567), e.port);
    try testing.expectEqualSlices(u8, &.{ 10, 1, 2, 3 }, &e.address.ip4);
    storage.family = linux.AF.UNIX;
    try testing.expectEqual(@as(?Endpoint, null), endpointOf(&storage));
}
