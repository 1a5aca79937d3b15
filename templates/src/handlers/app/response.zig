//! The response a route function fills: status, header fields and body, written in place
//! into per-worker buffers; `later` holds the request, `stream` sends a body larger than the
//! write buffer through a continuation (`BodyWriter`); `json` writes a value with `std.json`.
const std = @import("std");
const compat = @import("../../compat.zig");
const app_wake = @import("wake.zig");

const Waiter = app_wake.Waiter;

pub const WriteError = error{NoSpaceLeft};
pub const HeaderError = error{ NoSpaceLeft, InvalidHeader };

pub const Response = struct {
    status: u16 = 200,
    /// Close the connection once this response is sent.
    close: bool = false,
    body_buf: []u8,
    body_len: usize = 0,
    header_buf: []u8,
    header_len: usize = 0,
    /// Set by `stream`: the rest of the body comes from a continuation.
    continuation: ?Continuation = null,
    /// Set by `later`: no answer now, run the route again after this many milliseconds.
    later_ms: ?u32 = null,
    /// This request's name for `wake`.
    waiter: Waiter = .{ .slot = 0, .generation = 0 },

    /// Answers later: the route is run again with the same request (`req.waits` counts the
    /// calls) after `ms` milliseconds, or sooner when a callback passes the returned waiter
    /// to `http.wake`. Whatever the route wrote to this response is dropped; an error it
    /// returns still answers at once. The route decides every time, so it also decides how
    /// long a request may wait in all (`req.waited_ms`). Keep the waiter (in `State`) to
    /// wake it. A waiter names the connection: once it has closed, or holds no request,
    /// `wake` ignores it; should it hold a newer request, that one's route runs early and
    /// decides again. A stale waiter is harmless.
    pub fn later(self: *Response, ms: u32) Waiter {
        self.later_ms = ms;
        return self.waiter;
    }

    /// Sends a body larger than the write buffer. What `write` put in the body goes first;
    /// then `next` is called each time the connection's output has room, with `cursor` (yours:
    /// an offset, an index; it starts at the value given here), until it returns true. With
    /// `length` the response has that Content-Length (the bytes must add up to it, or the
    /// connection closes); with null it is chunked (close-delimited for HTTP/1.0 clients).
    /// The request's bytes are gone by then: keep what `next` needs in `cursor` or `State`.
    pub fn stream(
        self: *Response,
        comptime S: type,
        next: *const fn (state: *S, cursor: *u64, body: *BodyWriter) anyerror!bool,
        cursor: u64,
        length: ?u64,
    ) void {
        self.continuation = .{ .next = @ptrCast(next), .cursor = cursor, .length = length };
    }

    /// Adds a header field. Content-Length, Date, Server and Connection are the server's.
    pub fn header(self: *Response, name: []const u8, value: []const u8) HeaderError!void {
        if (name.len == 0) return error.InvalidHeader;
        for (name) |c| if (!isTokenChar(c)) return error.InvalidHeader;
        for (value) |c| if (c == '\r' or c == '\n' or c == 0) return error.InvalidHeader;
        const line_len = name.len + 2 + value.len + 2;
        if (line_len > self.header_buf.len - self.header_len) return error.NoSpaceLeft;
        const line = self.header_buf[self.header_len..][0..line_len];
        @memcpy(line[0..name.len], name);
        @memcpy(line[name.len..][0..2], ": ");
        @memcpy(line[name.len + 2 ..][0..value.len], value);
        @memcpy(line[line_len - 2 ..], "\r\n");
        self.header_len += line_len;
    }

    /// Appends to the body.
    pub fn write(self: *Response, bytes: []const u8) WriteError!void {
        if (bytes.len > self.body_buf.len - self.body_len) return error.NoSpaceLeft;
        @memcpy(self.body_buf[self.body_len..][0..bytes.len], bytes);
        self.body_len += bytes.len;
    }

    /// Appends formatted text to the body (`std.fmt` syntax).
    pub fn print(self: *Response, comptime format: []const u8, args: anytype) WriteError!void {
        const written = compat.bufPrint(self.body_buf[self.body_len..], format, args) catch
            return error.NoSpaceLeft;
        self.body_len += written.len;
    }

    /// Appends `value` as JSON (`std.json`, compact) and a newline, as Go's `json.Encoder`
    /// ends each value, so that a terminal shows it on its own line; adds
    /// `Content-Type: application/json` unless the route set a Content-Type. All or nothing:
    /// `error.NoSpaceLeft` leaves body and headers as they were. Nothing is allocated.
    pub fn json(self: *Response, value: anytype) HeaderError!void {
        const free = self.body_buf[self.body_len..];
        const text = compat.jsonPrint(free, value) catch return error.NoSpaceLeft;
        if (text.len == free.len) return error.NoSpaceLeft;
        free[text.len] = '\n';
        if (!self.hasHeader("Content-Type")) try self.header("Content-Type", "application/json");
        self.body_len += text.len + 1;
    }

    /// Whether the route added a header field called `name` (compared case-insensitively).
    pub fn hasHeader(self: *const Response, name: []const u8) bool {
        var lines = std.mem.splitSequence(u8, self.header_buf[0..self.header_len], "\r\n");
        while (lines.next()) |line| {
            if (line.len <= name.len or line[name.len] != ':') continue;
            if (std.ascii.eqlIgnoreCase(line[0..name.len], name)) return true;
        }
        return false;
    }

    /// The body written so far.
    pub fn body(self: *const Response) []const u8 {
        return self.body_buf[0..self.body_len];
    }
};

/// A streamed body's progress, kept per connection between calls.
pub const Continuation = struct {
    /// The module's `fn (*State, *u64, *BodyWriter) anyerror!bool`, its type erased here
    /// (the connection state is the same type for every module) and restored by `Module`.
    next: *const anyopaque,
    cursor: u64,
    /// Total body bytes; null: chunked (or close-delimited).
    length: ?u64,
};

/// Where a continuation writes the next part of a streamed body: the connection's output.
pub const BodyWriter = struct {
    buf: []u8,
    len: usize = 0,

    /// Appends all of `bytes`, or nothing (`error.NoSpaceLeft`): write what `free` allows.
    pub fn write(self: *BodyWriter, bytes: []const u8) WriteError!void {
        if (bytes.len > self.buf.len - self.len) return error.NoSpaceLeft;
        @memcpy(self.buf[self.len..][0..bytes.len], bytes);
        self.len += bytes.len;
    }

    pub fn free(self: *const BodyWriter) usize {
        return self.buf.len - self.len;
    }
};

fn isTokenChar(c: u8) bool {
    return switch (c) {
        'a'...'z', 'A'...'Z', '0'...'9' => true,
        '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~' => true,
        else => false,
    };
}

test "a response refuses header injection and reports a full body" {
    var body: [4]u8 = undefined;
    var headers: [64]u8 = undefined;
    var res: Response = .{ .body_buf = &body, .header_buf = &headers };
    try std.testing.expectError(error.InvalidHeader, res.header("X-A", "a\r\nB: c"));
    try std.testing.expectError(error.InvalidHeader, res.header("X A", "b"));
    try res.write("abc");
    try std.testing.expectError(error.NoSpaceLeft, res.write("de"));
    try std.testing.expectEqualStrings("abc", res.body());
}

test "json writes a value and a newline, with its Content-Type unless the route set one" {
    var body: [64]u8 = undefined;
    var headers: [128]u8 = undefined;
    var res: Response = .{ .body_buf = &body, .header_buf = &headers };
    const keys: []const []const u8 = &.{ "a", "b\"c" };
    try res.json(.{ .keys = keys, .count = @as(u32, 2), .next = @as(?u32, null) });
    try std.testing.expectEqualStrings(
        "{\"keys\":[\"a\",\"b\\\"c\"],\"count\":2,\"next\":null}\n",
        res.body(),
    );
    try std.testing.expectEqualStrings(
        "Content-Type: application/json\r\n",
        headers[0..res.header_len],
    );
    // Too large for what is left: nothing changes.
    const before = res.body_len;
    try std.testing.expectError(error.NoSpaceLeft, res.json("0123456789012345678901234567890"));
    try std.testing.expectEqual(before, res.body_len);
    var other: Response = .{ .body_buf = &body, .header_buf = &headers };
    try other.header("content-type", "application/problem+json");
    try other.json(.{ .title = "gone" });
    try std.testing.expect(other.hasHeader("Content-Type"));
    try std.testing.expect(!other.hasHeader("Content"));
    const own = "content-type: application/problem+json\r\n";
    try std.testing.expectEqualStrings(own, headers[0..other.header_len]);
}
