//! How an HTTP module's answer goes on the wire: the status line and the server's header
//! fields (`Server`, `Date`, `Content-Length` or chunked, `Connection`), the route's header
//! fields and the body, written into the connection's output all at once or not at all; and
//! the bodiless answers of errors, timeouts and refusals.
const std = @import("std");
const config = @import("../../config.zig");
const compat = @import("../../compat.zig");
const statuses = @import("../../http/status.zig");
const api = @import("../api.zig");
const builtin_http = @import("../http.zig");
const Response = @import("response.zig").Response;
const assert = std.debug.assert;

/// A response without a body never has one (RFC 9110 §15: 1xx, 204, 304).
pub fn hasNoBody(status: u16) bool {
    return status < 200 or status == 204 or status == 304;
}

/// What the engine needs to write a response head.
pub const Framing = struct {
    keep_alive: bool,
    http_1_0: bool,
    head_only: bool,
    /// A streamed body of unknown length to an HTTP/1.1 client.
    chunked: bool = false,
};

/// Writes status line, server headers, the route's headers and the body into `out`; false
/// when it does not fit (nothing written then).
pub fn appendResponse(out: *api.Output, res: *const Response, framing: Framing) bool {
    assert(res.status >= 100 and res.status <= 999);
    const start = out.len;
    var length_buf: [48]u8 = undefined;
    const no_body = hasNoBody(res.status);
    const chunked = !no_body and framing.chunked;
    const length = if (no_body)
        ""
    else if (chunked)
        "Transfer-Encoding: chunked\r\n"
    else if (res.continuation) |c|
        if (c.length) |n|
            compat.bufPrint(&length_buf, "Content-Length: {d}\r\n", .{n}) catch unreachable
        else
            "" // HTTP/1.0: the body ends when the connection closes.
    else
        compat.bufPrint(&length_buf, "Content-Length: {d}\r\n", .{res.body_len}) catch
            unreachable;
    var status_buf: [64]u8 = undefined;
    const status_line = compat.bufPrint(&status_buf, "HTTP/1.1 {d} {s}\r\nServer: ", .{
        res.status, statuses.reason(res.status),
    }) catch unreachable;
    const connection = if (!framing.keep_alive)
        "Connection: close\r\n"
    else if (framing.http_1_0)
        "Connection: keep-alive\r\n"
    else
        "";
    const body = if (no_body or framing.head_only) "" else res.body();
    var chunk_buf: [10]u8 = undefined;
    const chunk_head = if (chunked and body.len > 0) chunkHead(&chunk_buf, body.len) else "";
    const chunk_tail = if (chunk_head.len > 0) "\r\n" else "";
    const parts = [_][]const u8{
        status_line,
        config.name,
        "\r\nDate: ",
        builtin_http.currentDate(),
        "\r\n",
        res.header_buf[0..res.header_len],
        length,
        connection,
        "\r\n",
        chunk_head,
        body,
        chunk_tail,
    };
    var total: usize = 0;
    for (parts) |p| total += p.len;
    if (total > out.free()) return false;
    for (parts) |p| _ = out.append(p);
    assert(out.len == start + total);
    return true;
}

/// A chunk-size line of fixed width (leading zeros are allowed, RFC 9112 §7.1), so that its
/// room can be reserved before the chunk's size is known.
pub fn chunkHead(buf: *[10]u8, size: usize) []const u8 {
    assert(size > 0 and size <= 0xffffffff);
    return compat.bufPrint(buf, "{x:0>8}\r\n", .{size}) catch unreachable;
}

/// An answer with an empty body and no route headers: errors, 404, 405 (with `Allow`).
pub fn appendStatus(out: *api.Output, status: u16, allow: []const u8, framing: Framing) void {
    var header_buf: [96]u8 = undefined;
    var res: Response = .{ .status = status, .body_buf = &.{}, .header_buf = &header_buf };
    if (allow.len > 0) res.header("Allow", allow) catch unreachable;
    if (!appendResponse(out, &res, framing)) {
        // The caller starts a request only with an empty write buffer, which holds this.
        unreachable;
    }
}

pub const continue_response = "HTTP/1.1 100 Continue\r\n\r\n";

/// Answers with an error status and closes (after a lingering close, see connections.zig).
pub fn refuse(out: *api.Output, progress: *api.Progress, status: u16) void {
    appendStatus(out, status, "", .{ .keep_alive = false, .http_1_0 = false, .head_only = false });
    progress.rejected = status;
    progress.close = true;
}

/// The request head or body did not arrive in time.
pub fn onTimeout(out: *api.Output) void {
    if (out.len > 0) return;
    appendStatus(out, 408, "", .{ .keep_alive = false, .http_1_0 = false, .head_only = false });
}
