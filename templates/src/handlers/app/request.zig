//! The request a route function is given: method, target, path and query, the path's
//! captures, header fields by case-insensitive name, the whole body, the client's address,
//! and the scratch allocator of this call. Every slice points into the connection's read
//! buffer (or a body buffer): nothing is copied. `json` parses the body with `std.json` into
//! the scratch arena.
const std = @import("std");
const sys = @import("../../net/sys.zig");
const compat = @import("../../compat.zig");
const parser = @import("../../http/parser.zig");
const router = @import("../../http/router.zig");
const app_peer = @import("peer.zig");

const Param = router.Param;
const Peer = app_peer.Peer;

/// `req.json`: the body is not JSON of the type asked for (`error.InvalidJson`), or its
/// parse needed more scratch memory than was left (`error.OutOfMemory`).
pub const JsonError = error{ InvalidJson, OutOfMemory };

/// Why `json` refused the body: std.json's error and where in the body it was found.
pub const JsonProblem = struct {
    err: anyerror,
    line: u64,
    column: u64,
};

pub const Request = struct {
    /// The method as sent (a route sees only its own method, or GET's for a HEAD).
    method: []const u8,
    /// The request target as sent: path and query.
    target: []const u8,
    /// The target up to `?`, not percent-decoded.
    path: []const u8,
    /// The target after `?` ("" when there is none), not percent-decoded.
    query: []const u8,
    /// The whole body ("" when there is none), decoded when it was chunked.
    body: []const u8,
    /// The path's `:param` and `*rest` captures, in path order.
    params: []const Param,
    fields: []const parser.Field,
    /// Scratch memory for this call only: reset once it returns.
    arena: std.mem.Allocator,
    fd: sys.Fd,
    /// How often the route held this request before this call (`res.later`): 0 on its first.
    waits: u32 = 0,
    /// Milliseconds since the route first held it (0 on its first call).
    waited_ms: u64 = 0,
    /// The worker is stopping: answer now rather than hold the request (a held request is
    /// run at once when the drain begins; this connection closes after its answer).
    draining: bool = false,
    /// Set by `json` when it refused the body: the default 400's message says why.
    json_problem: ?JsonProblem = null,

    /// The capture called `name` (`getNote` on `/notes/:id` has `req.param("id")`).
    pub fn param(self: *const Request, name: []const u8) ?[]const u8 {
        for (self.params) |p| {
            if (std.mem.eql(u8, p.name, name)) return p.value;
        }
        return null;
    }

    /// The first header field called `name`, compared case-insensitively.
    pub fn header(self: *const Request, name: []const u8) ?[]const u8 {
        for (self.fields) |f| {
            if (std.ascii.eqlIgnoreCase(f.name, name)) return f.value;
        }
        return null;
    }

    /// The raw value of the first `name=value` pair of the query ("" for a bare `name`).
    pub fn queryParam(self: *const Request, name: []const u8) ?[]const u8 {
        var pairs = std.mem.splitScalar(u8, self.query, '&');
        while (pairs.next()) |pair| {
            const eq = compat.findScalar(u8, pair, '=') orelse pair.len;
            if (!std.mem.eql(u8, pair[0..eq], name)) continue;
            return if (eq == pair.len) "" else pair[eq + 1 ..];
        }
        return null;
    }

    /// The body parsed as JSON into a `T` with std.json's default rules (a field `T` lacks is
    /// refused, one with a default may be missing). Strings and slices point into the body
    /// or into `arena`: they last until the route returns. Memory is bounded by the scratch
    /// arena (`scratchBytes`, reset after each call); nothing else is allocated.
    /// `error.InvalidJson` when the body does not parse as a `T`: a 400 unless the module's
    /// `errorStatus` maps it otherwise, with a message naming the problem and its place.
    pub fn json(self: *Request, comptime T: type) JsonError!T {
        return self.jsonWith(T, .{});
    }

    /// `json` with std.json's parse options (`.{ .ignore_unknown_fields = true }`, say).
    pub fn jsonWith(
        self: *Request,
        comptime T: type,
        options: std.json.ParseOptions,
    ) JsonError!T {
        var scanner = std.json.Scanner.initCompleteInput(self.arena, self.body);
        var diagnostics: std.json.Diagnostics = .{};
        scanner.enableDiagnostics(&diagnostics);
        return std.json.parseFromTokenSourceLeaky(T, self.arena, &scanner, options) catch |err| {
            if (err == error.OutOfMemory) return error.OutOfMemory;
            self.json_problem = .{
                .err = err,
                .line = diagnostics.getLine(),
                .column = diagnostics.getColumn(),
            };
            return error.InvalidJson;
        };
    }

    /// The client's address, asked of the kernel only when a route wants it.
    pub fn peer(self: *const Request) ?Peer {
        return app_peer.ofSocket(self.fd);
    }
};

test "json parses the body into a type in the arena, and says where it is not one" {
    var scratch: [4096]u8 = undefined;
    var fba = std.heap.FixedBufferAllocator.init(&scratch);
    const Point = struct { x: i32, y: i32 = 0, label: []const u8 };
    var req: Request = .{
        .method = "POST",
        .target = "/",
        .path = "/",
        .query = "",
        .body = "{\"x\": 3, \"label\": \"a\\nb\"}",
        .params = &.{},
        .fields = &.{},
        .arena = fba.allocator(),
        .fd = -1,
    };
    const point = try req.json(Point);
    try std.testing.expectEqual(@as(i32, 3), point.x);
    try std.testing.expectEqual(@as(i32, 0), point.y);
    try std.testing.expectEqualStrings("a\nb", point.label);
    try std.testing.expect(req.json_problem == null);
    req.body = "{\"x\": 3,\n \"z\": 1}";
    try std.testing.expectError(error.InvalidJson, req.json(Point));
    const problem = req.json_problem.?;
    try std.testing.expectEqual(error.UnknownField, problem.err);
    try std.testing.expectEqual(@as(u64, 2), problem.line);
    req.body = "{\"x\": 3, \"z\": 1, \"label\": \"\"}";
    const loose = try req.jsonWith(Point, .{ .ignore_unknown_fields = true });
    try std.testing.expectEqual(@as(i32, 3), loose.x);
    req.body = "{\"x\":";
    try std.testing.expectError(error.InvalidJson, req.json(Point));
    // A parse that needs more than the arena holds is not the body's fault.
    var tiny: [8]u8 = undefined;
    var small = std.heap.FixedBufferAllocator.init(&tiny);
    req.arena = small.allocator();
    req.body = "[1,2,3,4,5,6,7,8,9]";
    try std.testing.expectError(error.OutOfMemory, req.json([]const u32));
}
