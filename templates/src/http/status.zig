//! HTTP status codes and their reason phrases (RFC 9110 §15): the one table of the built-in
//! `http` handler (its fixed answers and the parser's errors) and of application modules.
const std = @import("std");

/// The reason phrase of `code`; "Status" for a code this table does not name (clients
/// ignore the phrase, RFC 9112 §4).
pub fn reason(code: u16) []const u8 {
    return switch (code) {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        else => "Status",
    };
}

/// The status line's text after the version: "404 Not Found".
pub fn line(comptime code: u16) []const u8 {
    return std.fmt.comptimePrint("{d} {s}", .{ code, comptime reason(code) });
}

test "every status the runtime sends has its phrase" {
    const sent = [_]u16{ 100, 200, 400, 404, 405, 408, 413, 414, 417, 431, 500, 501, 503, 505 };
    for (sent) |code| try std.testing.expect(!std.mem.eql(u8, reason(code), "Status"));
    try std.testing.expectEqualStrings("Status", reason(299));
    try std.testing.expectEqualStrings("404 Not Found", line(404));
}
