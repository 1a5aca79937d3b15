//! The request a route function is given: method, target, path and query, the path's
//! captures, header fields by case-insensitive name, the whole body, the client's address,
//! and the scratch allocator of this call. Every slice points into the connection's read
//! buffer (or a body buffer): nothing is copied.
const std = @import("std");
const sys = @import("../../net/sys.zig");
const compat = @import("../../compat.zig");
const parser = @import("../../http/parser.zig");
const router = @import("../../http/router.zig");
const app_peer = @import("peer.zig");

const Param = router.Param;
const Peer = app_peer.Peer;

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

    /// The client's address, asked of the kernel only when a route wants it.
    pub fn peer(self: *const Request) ?Peer {
        return app_peer.ofSocket(self.fd);
    }
};
