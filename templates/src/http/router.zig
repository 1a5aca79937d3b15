//! The router of HTTP application modules: the spec's routes, matched at compile time. A
//! pattern is `/`, or `/`-separated literal segments and `:param`s with an optional last
//! `*rest`; the generator has already refused patterns that overlap.
const std = @import("std");
const compat = @import("../compat.zig");
const assert = std.debug.assert;

pub const Method = enum { GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS };
/// Every method, in `Method` order (spelled out: `@typeInfo`'s shape differs across releases).
pub const all_methods = [_]Method{ .GET, .HEAD, .POST, .PUT, .DELETE, .PATCH, .OPTIONS };

/// One line of the spec's route table: the module function `name` answers `method` on
/// requests whose path matches `path` (literal segments, `:param`, a last `*rest`).
pub const Route = struct {
    name: []const u8,
    method: Method,
    path: []const u8,
};

/// The most parameters a route path can capture (each `:param` and `*rest`).
pub const max_params = 16;

pub const Param = struct { name: []const u8, value: []const u8 };

/// Matches `path` against a route pattern; captures go to `params`.
pub fn matchPath(comptime pattern: []const u8, path: []const u8, params: *Params) bool {
    comptime assert(pattern.len > 0 and pattern[0] == '/');
    if (comptime std.mem.eql(u8, pattern, "/")) return std.mem.eql(u8, path, "/");
    const mark = params.len;
    var rest = path;
    comptime var segments = std.mem.splitScalar(u8, pattern[1..], '/');
    inline while (comptime segments.next()) |segment| {
        if (rest.len == 0 or rest[0] != '/') return params.undo(mark);
        rest = rest[1..];
        if (comptime segment[0] == '*') {
            params.add(segment[1..], rest);
            return true;
        }
        const end = compat.findScalar(u8, rest, '/') orelse rest.len;
        if (comptime segment[0] == ':') {
            if (end == 0) return params.undo(mark);
            params.add(segment[1..], rest[0..end]);
        } else if (!std.mem.eql(u8, rest[0..end], segment)) {
            return params.undo(mark);
        }
        rest = rest[end..];
    }
    if (rest.len != 0) return params.undo(mark);
    return true;
}

pub const Params = struct {
    items: [max_params]Param = undefined,
    len: usize = 0,

    pub fn add(self: *Params, name: []const u8, value: []const u8) void {
        assert(self.len < max_params);
        self.items[self.len] = .{ .name = name, .value = value };
        self.len += 1;
    }

    fn undo(self: *Params, mark: usize) bool {
        self.len = mark;
        return false;
    }
};

pub fn methodIndex(method: Method) usize {
    for (all_methods, 0..) |m, i| {
        if (m == method) return i;
    }
    unreachable;
}

pub fn methodOf(text: []const u8) ?Method {
    inline for (all_methods) |m| {
        if (std.mem.eql(u8, text, @tagName(m))) return m;
    }
    return null;
}

/// The path of a request target: origin form `/a?b`, or absolute form `http://h/a?b`.
pub fn splitTarget(target: []const u8) struct { path: []const u8, query: []const u8 } {
    var t = target;
    if (t.len > 0 and t[0] != '/') {
        // Absolute form: skip the scheme and authority (RFC 9112 §3.2.2).
        const scheme_end = compat.find(u8, t, "://") orelse return .{ .path = "", .query = "" };
        const after = t[scheme_end + 3 ..];
        const slash = compat.findScalar(u8, after, '/') orelse after.len;
        t = if (slash == after.len) "/" else after[slash..];
    }
    const q = compat.findScalar(u8, t, '?') orelse return .{ .path = t, .query = "" };
    return .{ .path = t[0..q], .query = t[q + 1 ..] };
}

/// The `Allow` value for the methods marked in `allowed` (in `all_methods` order).
pub fn allowText(allowed: anytype, buf: []u8) []const u8 {
    var len: usize = 0;
    for (allowed, all_methods) |a, m| {
        if (!a) continue;
        const name = @tagName(m);
        if (len > 0) {
            @memcpy(buf[len..][0..2], ", ");
            len += 2;
        }
        @memcpy(buf[len..][0..name.len], name);
        len += name.len;
    }
    return buf[0..len];
}

test "a route pattern captures params and the rest" {
    var params: Params = .{};
    try std.testing.expect(matchPath("/notes/:id", "/notes/42", &params));
    try std.testing.expectEqualStrings("42", params.items[0].value);
    params.len = 0;
    try std.testing.expect(!matchPath("/notes/:id", "/notes/", &params));
    try std.testing.expect(!matchPath("/notes/:id", "/notes/1/x", &params));
    try std.testing.expectEqual(@as(usize, 0), params.len);
    try std.testing.expect(matchPath("/files/*path", "/files/a/b.txt", &params));
    try std.testing.expectEqualStrings("a/b.txt", params.items[0].value);
    params.len = 0;
    try std.testing.expect(matchPath("/", "/", &params));
    try std.testing.expect(!matchPath("/a", "/b", &params));
}

test "a target splits into path and query, in origin and absolute form" {
    const a = splitTarget("/notes?x=1&y");
    try std.testing.expectEqualStrings("/notes", a.path);
    try std.testing.expectEqualStrings("x=1&y", a.query);
    const b = splitTarget("http://example.com/n?q");
    try std.testing.expectEqualStrings("/n", b.path);
    try std.testing.expectEqualStrings("q", b.query);
}
