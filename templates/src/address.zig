//! IP addresses: parsing the text forms an operator types, and the socket address the
//! kernel wants. The standard library's address types moved between releases (std.net
//! was removed in 0.16), so the program keeps its own small, tested implementation.
const std = @import("std");
const compat = @import("compat.zig");
const linux = std.os.linux;

pub const Address = union(enum) {
    ip4: [4]u8,
    ip6: [16]u8,

    pub fn isIp6(self: Address) bool {
        return self == .ip6;
    }
};

/// A socket address for `bind`, large enough for either family.
pub const SockAddr = struct {
    storage: linux.sockaddr.storage,
    len: linux.socklen_t,

    pub fn init(address: Address, port_number: u16) SockAddr {
        var result: SockAddr = .{ .storage = undefined, .len = 0 };
        @memset(std.mem.asBytes(&result.storage), 0);
        switch (address) {
            .ip4 => |bytes| {
                const in: *linux.sockaddr.in = @ptrCast(&result.storage);
                in.* = .{
                    .port = std.mem.nativeToBig(u16, port_number),
                    .addr = @bitCast(bytes),
                };
                result.len = @sizeOf(linux.sockaddr.in);
            },
            .ip6 => |bytes| {
                const in6: *linux.sockaddr.in6 = @ptrCast(&result.storage);
                in6.* = .{
                    .port = std.mem.nativeToBig(u16, port_number),
                    .flowinfo = 0,
                    .addr = bytes,
                    .scope_id = 0,
                };
                result.len = @sizeOf(linux.sockaddr.in6);
            },
        }
        return result;
    }

    pub fn ptr(self: *const SockAddr) *const linux.sockaddr {
        return @ptrCast(&self.storage);
    }

    /// The port of an address the kernel filled in (getsockname).
    pub fn port(self: *const SockAddr) u16 {
        const in: *const linux.sockaddr.in = @ptrCast(&self.storage);
        return std.mem.bigToNative(u16, in.port);
    }
};

pub const ParseError = error{InvalidAddress};

pub fn parse(text: []const u8) ParseError!Address {
    if (compat.findScalar(u8, text, ':') != null) return .{ .ip6 = try parseIp6(text) };
    return .{ .ip4 = try parseIp4(text) };
}

fn parseIp4(text: []const u8) ParseError![4]u8 {
    var result: [4]u8 = undefined;
    var parts = std.mem.splitScalar(u8, text, '.');
    var count: usize = 0;
    while (parts.next()) |part| : (count += 1) {
        if (count == 4) return error.InvalidAddress;
        if (part.len == 0 or part.len > 3) return error.InvalidAddress;
        if (part.len > 1 and part[0] == '0') return error.InvalidAddress;
        for (part) |c| if (!std.ascii.isDigit(c)) return error.InvalidAddress;
        result[count] = std.fmt.parseInt(u8, part, 10) catch return error.InvalidAddress;
    }
    if (count != 4) return error.InvalidAddress;
    return result;
}

fn parseIp6(text: []const u8) ParseError![16]u8 {
    if (text.len < 2 or text.len > 45) return error.InvalidAddress;
    var head: [8]u16 = undefined;
    var tail: [8]u16 = undefined;
    var head_len: usize = 0;
    var tail_len: usize = 0;
    var gap = false;
    var rest = text;
    if (std.mem.startsWith(u8, rest, "::")) {
        gap = true;
        rest = rest[2..];
    }
    var ipv4_tail: ?[4]u8 = null;
    while (rest.len > 0) {
        const end = compat.findScalar(u8, rest, ':') orelse rest.len;
        const group = rest[0..end];
        if (group.len == 0) return error.InvalidAddress;
        if (end == rest.len and compat.findScalar(u8, group, '.') != null) {
            ipv4_tail = try parseIp4(group);
        } else {
            if (group.len > 4) return error.InvalidAddress;
            const value = std.fmt.parseInt(u16, group, 16) catch return error.InvalidAddress;
            if (gap) {
                if (tail_len == 8) return error.InvalidAddress;
                tail[tail_len] = value;
                tail_len += 1;
            } else {
                if (head_len == 8) return error.InvalidAddress;
                head[head_len] = value;
                head_len += 1;
            }
        }
        if (end == rest.len) break;
        rest = rest[end + 1 ..];
        if (std.mem.startsWith(u8, rest, ":")) {
            if (gap) return error.InvalidAddress;
            gap = true;
            rest = rest[1..];
        } else if (rest.len == 0) {
            return error.InvalidAddress;
        }
        if (ipv4_tail != null) return error.InvalidAddress;
    }
    const groups_from_ip4: usize = if (ipv4_tail != null) 2 else 0;
    const used = head_len + tail_len + groups_from_ip4;
    if (gap and used > 7) return error.InvalidAddress;
    if (!gap and used != 8) return error.InvalidAddress;

    var result = std.mem.zeroes([16]u8);
    for (head[0..head_len], 0..) |value, i| {
        std.mem.writeInt(u16, result[i * 2 ..][0..2], value, .big);
    }
    const tail_start = 16 - groups_from_ip4 * 2 - tail_len * 2;
    for (tail[0..tail_len], 0..) |value, i| {
        std.mem.writeInt(u16, result[tail_start + i * 2 ..][0..2], value, .big);
    }
    if (ipv4_tail) |bytes| @memcpy(result[12..16], &bytes);
    return result;
}

pub const Endpoint = struct {
    address: Address,
    port: u16,
};

/// Parses `HOST:PORT`, with an IPv6 host in brackets: `127.0.0.1:8080`, `[::1]:8080`.
/// Port 0 asks the kernel for a free port.
pub fn parseEndpoint(text: []const u8) ParseError!Endpoint {
    const colon = compat.findScalarLast(u8, text, ':') orelse return error.InvalidAddress;
    var host = text[0..colon];
    const port = std.fmt.parseInt(u16, text[colon + 1 ..], 10) catch return error.InvalidAddress;
    if (std.mem.startsWith(u8, host, "[")) {
        if (!std.mem.endsWith(u8, host, "]")) return error.InvalidAddress;
        host = host[1 .. host.len - 1];
        return .{ .address = .{ .ip6 = try parseIp6(host) }, .port = port };
    }
    return .{ .address = .{ .ip4 = try parseIp4(host) }, .port = port };
}

/// Writes the address in its usual text form (IPv6 compressed as in RFC 5952).
pub fn format(address: Address, buf: []u8) []const u8 {
    return switch (address) {
        .ip4 => |b| compat.bufPrint(buf, "{d}.{d}.{d}.{d}", .{ b[0], b[1], b[2], b[3] }) catch
            unreachable,
        .ip6 => |b| formatIp6(b, buf),
    };
}

fn formatIp6(bytes: [16]u8, buf: []u8) []const u8 {
    var groups: [8]u16 = undefined;
    for (&groups, 0..) |*g, i| g.* = std.mem.readInt(u16, bytes[i * 2 ..][0..2], .big);
    // The longest run of two or more zero groups is written as "::".
    var best_start: usize = 8;
    var best_len: usize = 1;
    var i: usize = 0;
    while (i < 8) {
        if (groups[i] != 0) {
            i += 1;
            continue;
        }
        var j = i;
        while (j < 8 and groups[j] == 0) j += 1;
        if (j - i > best_len) {
            best_start = i;
            best_len = j - i;
        }
        i = j;
    }
    var len: usize = 0;
    i = 0;
    while (i < 8) {
        if (i == best_start) {
            buf[len] = ':';
            buf[len + 1] = ':';
            len += 2;
            i += best_len;
            continue;
        }
        if (i > 0 and i != best_start + best_len) {
            buf[len] = ':';
            len += 1;
        }
        const written = compat.bufPrint(buf[len..], "{x}", .{groups[i]}) catch unreachable;
        len += written.len;
        i += 1;
    }
    return buf[0..len];
}

test "parses IPv4 and rejects malformed quads" {
    try std.testing.expectEqual([4]u8{ 127, 0, 0, 1 }, (try parse("127.0.0.1")).ip4);
    try std.testing.expectError(error.InvalidAddress, parse("256.0.0.1"));
    try std.testing.expectError(error.InvalidAddress, parse("1.2.3"));
    try std.testing.expectError(error.InvalidAddress, parse("01.2.3.4"));
}

test "parses and formats IPv6 forms" {
    const cases = [_][2][]const u8{
        .{ "::", "::" },
        .{ "::1", "::1" },
        .{ "fe80::1:2", "fe80::1:2" },
        .{ "2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1" },
        .{ "::ffff:127.0.0.1", "::ffff:7f00:1" },
    };
    for (cases) |case| {
        var buf: [64]u8 = undefined;
        const address = try parse(case[0]);
        try std.testing.expectEqualStrings(case[1], format(address, &buf));
    }
    try std.testing.expectError(error.InvalidAddress, parse("1::2::3"));
    try std.testing.expectError(error.InvalidAddress, parse("1:2:3:4:5:6:7:8:9"));
    try std.testing.expectError(error.InvalidAddress, parse("12345::"));
}

test "parses endpoints with bracketed IPv6 hosts" {
    const v6 = try parseEndpoint("[::1]:8080");
    try std.testing.expectEqual(@as(u16, 8080), v6.port);
    try std.testing.expect(v6.address.isIp6());
    const v4 = try parseEndpoint("0.0.0.0:0");
    try std.testing.expectEqual(@as(u16, 0), v4.port);
    try std.testing.expectError(error.InvalidAddress, parseEndpoint("::1:8080"));
    try std.testing.expectError(error.InvalidAddress, parseEndpoint("127.0.0.1:70000"));
}
