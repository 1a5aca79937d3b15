//! One request as a log line, in either format, written into a caller's buffer without
//! allocation.
//!
//! Every string a client chose (method, target, referer, user agent) is escaped so that a line
//! stays one line and stays valid: in JSON, `"` `\` and control bytes are escaped and bytes
//! that are not valid UTF-8 become U+FFFD, so every line parses; in the combined format, as
//! nginx writes it, `"`, `\`, control bytes and bytes above 0x7e become `\xHH`, so every line
//! is printable ASCII. Each such field is cut at a fixed length (`max_*_bytes` of the
//! client's bytes) and then ends in `...`, which bounds a line (`max_bytes`).
const std = @import("std");
const calendar = @import("../calendar.zig");
const compat = @import("../compat.zig");
const assert = std.debug.assert;

pub const Format = enum { json, combined };

/// The client's bytes kept of each field it chose; the rest is cut and marked `...`.
pub const max_method_bytes = 64;
/// The parser's longest request line, so a target is never cut.
pub const max_target_bytes = 8192;
pub const max_header_bytes = 1024;

/// The most an escaped byte takes: `\u00XX` in JSON (U+FFFD as `\ufffd`, also 6).
const escape_factor = 6;
/// Room for everything but the client's strings: names, numbers, times, peer, route.
const fixed_bytes = 1024;

/// The longest line either format writes.
pub const max_bytes = fixed_bytes + escape_factor *
    (max_method_bytes + max_target_bytes + 2 * max_header_bytes) + 4 * "...".len;

/// What one line says about one request.
pub const Entry = struct {
    /// Wall-clock time of the answer, milliseconds since the Unix epoch.
    time_ms: i64,
    worker: u16,
    listener: []const u8,
    /// The client's address, as text (`127.0.0.1`, `::1`), and port; "" when unknown.
    peer: []const u8,
    peer_port: u16,
    /// "" for a request refused before its head was whole.
    method: []const u8,
    target: []const u8,
    http_1_0: bool,
    status: u16,
    body_bytes: u64,
    duration_us: u64,
    /// The app route that answered; "" for none (the built-in handler, 404, 405, errors).
    route: []const u8,
    referer: ?[]const u8,
    user_agent: ?[]const u8,
};

/// A cursor over the caller's buffer, which holds `max_bytes`.
const Out = struct {
    buf: []u8,
    len: usize = 0,

    // No assertion per call: `max_bytes` bounds the line (asserted once it is written), and
    // the slices' own bounds checks stand behind it. A byte loop rather than @memcpy: these
    // copies are a few bytes each, and in ReleaseSafe @memcpy's checks cost more than the
    // copy (measured: a JSON line took 430 ns in ReleaseSafe with both, 183 ns without them
    // and with client strings copied in runs).
    fn raw(self: *Out, bytes: []const u8) void {
        const dest = self.buf[self.len..][0..bytes.len];
        for (dest, bytes) |*d, c| d.* = c;
        self.len += bytes.len;
    }

    fn byte(self: *Out, c: u8) void {
        self.buf[self.len] = c;
        self.len += 1;
    }

    fn int(self: *Out, value: u64) void {
        var digits: [20]u8 = undefined;
        var i: usize = digits.len;
        var rest = value;
        while (true) {
            i -= 1;
            digits[i] = '0' + @as(u8, @intCast(rest % 10));
            rest /= 10;
            if (rest == 0) break;
        }
        self.raw(digits[i..]);
    }

    fn hex(self: *Out, c: u8) void {
        const digits = "0123456789abcdef";
        self.byte(digits[c >> 4]);
        self.byte(digits[c & 15]);
    }
};

/// Writes `entry` as one line, newline included; `buf` holds `max_bytes`.
pub fn write(format: Format, entry: *const Entry, buf: []u8) []const u8 {
    assert(buf.len >= max_bytes);
    var out: Out = .{ .buf = buf };
    switch (format) {
        .json => writeJson(&out, entry),
        .combined => writeCombined(&out, entry),
    }
    out.byte('\n');
    assert(out.len <= max_bytes);
    return buf[0..out.len];
}

fn writeJson(out: *Out, e: *const Entry) void {
    var ts: [calendar.rfc3339_len]u8 = undefined;
    calendar.formatRfc3339Ms(&ts, e.time_ms);
    out.raw("{\"type\":\"access\",\"ts\":\"");
    out.raw(&ts);
    out.raw("\",\"worker\":");
    out.int(e.worker);
    out.raw(",\"listener\":");
    jsonString(out, e.listener, max_method_bytes);
    out.raw(",\"peer\":");
    jsonString(out, e.peer, 64);
    out.raw(",\"peer_port\":");
    out.int(e.peer_port);
    out.raw(",\"method\":");
    jsonString(out, e.method, max_method_bytes);
    out.raw(",\"target\":");
    jsonString(out, e.target, max_target_bytes);
    out.raw(if (e.http_1_0) ",\"protocol\":\"HTTP/1.0\"" else ",\"protocol\":\"HTTP/1.1\"");
    out.raw(",\"status\":");
    out.int(e.status);
    out.raw(",\"body_bytes\":");
    out.int(e.body_bytes);
    out.raw(",\"duration_us\":");
    out.int(e.duration_us);
    out.raw(",\"route\":");
    if (e.route.len == 0) out.raw("null") else jsonString(out, e.route, max_method_bytes);
    out.raw(",\"referer\":");
    if (e.referer) |r| jsonString(out, r, max_header_bytes) else out.raw("null");
    out.raw(",\"user_agent\":");
    if (e.user_agent) |ua| jsonString(out, ua, max_header_bytes) else out.raw("null");
    out.byte('}');
}

/// A JSON string of `text`'s first `limit` bytes (then `...`): valid UTF-8 is kept as it is,
/// every other byte becomes U+FFFD.
fn jsonString(out: *Out, text: []const u8, limit: usize) void {
    const kept = text[0..@min(text.len, limit)];
    out.byte('"');
    var i: usize = 0;
    // Each turn consumes at least one byte.
    while (i < kept.len) {
        // A run of bytes that need no escape goes as one copy.
        const run = plainRun(kept, i);
        if (run > i) {
            out.raw(kept[i..run]);
            i = run;
            continue;
        }
        const c = kept[i];
        if (c >= 0x80) {
            const n = utf8SequenceLength(kept[i..]);
            if (n == 0) {
                out.raw("\\ufffd");
                i += 1;
            } else {
                out.raw(kept[i..][0..n]);
                i += n;
            }
            continue;
        }
        switch (c) {
            '"' => out.raw("\\\""),
            '\\' => out.raw("\\\\"),
            '\n' => out.raw("\\n"),
            '\r' => out.raw("\\r"),
            '\t' => out.raw("\\t"),
            0...8, 0x0b, 0x0c, 0x0e...0x1f, 0x7f => {
                out.raw("\\u00");
                out.hex(c);
            },
            else => out.byte(c),
        }
        i += 1;
    }
    if (kept.len < text.len) out.raw("...");
    out.byte('"');
}

/// The bytes either format keeps as they are: printable ASCII but `"` and `\`.
const plain_bytes = blk: {
    var table: [256]bool = @splat(false);
    for (0x20..0x7f) |c| table[c] = c != '"' and c != '\\';
    break :blk table;
};

/// Where the run of plain bytes that starts at `start` ends.
fn plainRun(text: []const u8, start: usize) usize {
    var end = start;
    while (end < text.len and plain_bytes[text[end]]) end += 1;
    return end;
}

/// The length of the well-formed UTF-8 sequence (RFC 3629: no overlong forms, no surrogates,
/// nothing above U+10FFFF) that starts `bytes`; 0 when it is not one.
pub fn utf8SequenceLength(bytes: []const u8) usize {
    assert(bytes.len > 0);
    const first = bytes[0];
    // The allowed range of the second byte, which rules out overlong forms and surrogates.
    const n: usize, const lo: u8, const hi: u8 = switch (first) {
        0x00...0x7f => return 1,
        0xc2...0xdf => .{ 2, 0x80, 0xbf },
        0xe0 => .{ 3, 0xa0, 0xbf },
        0xe1...0xec, 0xee...0xef => .{ 3, 0x80, 0xbf },
        0xed => .{ 3, 0x80, 0x9f },
        0xf0 => .{ 4, 0x90, 0xbf },
        0xf1...0xf3 => .{ 4, 0x80, 0xbf },
        0xf4 => .{ 4, 0x80, 0x8f },
        else => return 0,
    };
    if (bytes.len < n) return 0;
    if (bytes[1] < lo or bytes[1] > hi) return 0;
    for (bytes[2..n]) |c| {
        if (c < 0x80 or c > 0xbf) return 0;
    }
    return n;
}

const months = [12]*const [3]u8{
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
};

/// `127.0.0.1 - - [07/Dec/2026:09:16:06 +0000] "GET / HTTP/1.1" 200 3 "-" "curl/8.5.0"`,
/// then the fields the combined format lacks, as `key=value`.
fn writeCombined(out: *Out, e: *const Entry) void {
    out.raw(if (e.peer.len == 0) "-" else e.peer);
    out.raw(" - - [");
    writeClf(out, e.time_ms);
    out.raw("] \"");
    if (e.method.len == 0) {
        out.byte('-');
    } else {
        clfEscaped(out, e.method, max_method_bytes);
        out.byte(' ');
        clfEscaped(out, e.target, max_target_bytes);
        out.raw(if (e.http_1_0) " HTTP/1.0" else " HTTP/1.1");
    }
    out.raw("\" ");
    out.int(e.status);
    out.byte(' ');
    out.int(e.body_bytes);
    out.raw(" \"");
    if (e.referer) |r| clfEscaped(out, r, max_header_bytes) else out.byte('-');
    out.raw("\" \"");
    if (e.user_agent) |ua| clfEscaped(out, ua, max_header_bytes) else out.byte('-');
    out.raw("\" duration_us=");
    out.int(e.duration_us);
    out.raw(" worker=");
    out.int(e.worker);
    out.raw(" listener=");
    out.raw(e.listener);
    out.raw(" route=");
    out.raw(if (e.route.len == 0) "-" else e.route);
    out.raw(" peer_port=");
    out.int(e.peer_port);
    var ts: [calendar.rfc3339_len]u8 = undefined;
    calendar.formatRfc3339Ms(&ts, e.time_ms);
    out.raw(" ts=");
    out.raw(&ts);
}

/// The common log format's time, in UTC: `07/Dec/2026:09:16:06 +0000`.
fn writeClf(out: *Out, time_ms: i64) void {
    var ts: [calendar.rfc3339_len]u8 = undefined;
    calendar.formatRfc3339Ms(&ts, time_ms);
    // From "2026-12-07T09:16:06.123Z": day, month, year, then the time of day.
    const month = (ts[5] - '0') * 10 + (ts[6] - '0');
    assert(month >= 1 and month <= 12);
    out.raw(ts[8..10]);
    out.byte('/');
    out.raw(months[month - 1]);
    out.byte('/');
    out.raw(ts[0..4]);
    out.byte(':');
    out.raw(ts[11..19]);
    out.raw(" +0000");
}

/// nginx's escaping: `"`, `\`, control bytes and bytes above 0x7e as `\xHH`.
fn clfEscaped(out: *Out, text: []const u8, limit: usize) void {
    const kept = text[0..@min(text.len, limit)];
    var i: usize = 0;
    // Each turn consumes at least one byte.
    while (i < kept.len) {
        const run = plainRun(kept, i);
        if (run > i) {
            out.raw(kept[i..run]);
            i = run;
            continue;
        }
        out.raw("\\x");
        out.hex(kept[i]);
        i += 1;
    }
    if (kept.len < text.len) out.raw("...");
}

const testing = std.testing;

fn sample() Entry {
    return .{
        .time_ms = 1_796_623_243_123,
        .worker = 2,
        .listener = "api",
        .peer = "127.0.0.1",
        .peer_port = 54321,
        .method = "GET",
        .target = "/notes/1?x=y",
        .http_1_0 = false,
        .status = 200,
        .body_bytes = 3,
        .duration_us = 41,
        .route = "getNote",
        .referer = null,
        .user_agent = "curl/8.5.0",
    };
}

test "json: one object per line with every field" {
    var buf: [max_bytes]u8 = undefined;
    const entry = sample();
    try testing.expectEqualStrings("{\"type\":\"access\",\"ts\":\"2026-12-07T06:00:43.123Z\"," ++
        "\"worker\":2,\"listener\":\"api\",\"peer\":\"127.0.0.1\",\"peer_port\":54321," ++
        "\"method\":\"GET\",\"target\":\"/notes/1?x=y\",\"protocol\":\"HTTP/1.1\"," ++
        "\"status\":200,\"body_bytes\":3,\"duration_us\":41,\"route\":\"getNote\"," ++
        "\"referer\":null,\"user_agent\":\"curl/8.5.0\"}\n", write(.json, &entry, &buf));
}

test "combined: the Apache/nginx format, then the extra fields" {
    var buf: [max_bytes]u8 = undefined;
    var entry = sample();
    entry.route = "";
    const line = write(.combined, &entry, &buf);
    try testing.expectEqualStrings("127.0.0.1 - - [07/Dec/2026:06:00:43 +0000] " ++
        "\"GET /notes/1?x=y HTTP/1.1\" 200 3 \"-\" \"curl/8.5.0\" duration_us=41 worker=2 " ++
        "listener=api route=- peer_port=54321 ts=2026-12-07T06:00:43.123Z\n", line);
}

test "hostile bytes: json stays valid UTF-8 JSON, combined stays printable ASCII" {
    var buf: [max_bytes]u8 = undefined;
    var entry = sample();
    entry.target = "/a\"b\\c\x00\x1b\x7f\xff\xc3\xa9\xed\xa0\x80\xf0\x9f\x98\x80\xe2\x82";
    entry.user_agent = "\"}\n{\"event\":\"x";
    const json = write(.json, &entry, &buf);
    try testing.expect(std.unicode.utf8ValidateSlice(json));
    try testing.expectEqual(@as(usize, 1), std.mem.count(u8, json, "\n"));
    try testing.expect(compat.find(u8, json, "\"target\":\"/a\\\"b\\\\c\\u0000\\u001b\\u007f" ++
        "\\ufffd\xc3\xa9\\ufffd\\ufffd\\ufffd\xf0\x9f\x98\x80\\ufffd\\ufffd\"") != null);
    const combined = write(.combined, &entry, &buf);
    for (combined[0 .. combined.len - 1]) |c| try testing.expect(c >= 0x20 and c <= 0x7e);
    try testing.expect(compat.find(u8, combined, "\"GET /a\\x22b\\x5cc\\x00") != null);
}

test "the longest fields are cut, marked, and fit in max_bytes" {
    var buf: [max_bytes]u8 = undefined;
    var entry = sample();
    const long: [max_target_bytes + 10]u8 = @splat(0x01);
    entry.method = &long;
    entry.target = &long;
    entry.referer = &long;
    entry.user_agent = &long;
    for ([_]Format{ .json, .combined }) |format| {
        const line = write(format, &entry, &buf);
        try testing.expect(line.len <= max_bytes);
        try testing.expect(std.mem.count(u8, line, "...") == 4);
    }
}

test "utf8SequenceLength: accepts well-formed sequences only" {
    try testing.expectEqual(@as(usize, 2), utf8SequenceLength("\xc3\xa9"));
    try testing.expectEqual(@as(usize, 0), utf8SequenceLength("\xc0\x80")); // overlong
    try testing.expectEqual(@as(usize, 0), utf8SequenceLength("\xed\xa0\x80")); // surrogate
    try testing.expectEqual(@as(usize, 0), utf8SequenceLength("\xf4\x90\x80\x80")); // too big
    try testing.expectEqual(@as(usize, 4), utf8SequenceLength("\xf4\x8f\xbf\xbf"));
    try testing.expectEqual(@as(usize, 0), utf8SequenceLength("\xe2\x82")); // cut short
}
