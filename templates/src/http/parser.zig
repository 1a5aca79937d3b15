//! The strict, incremental HTTP/1.1 request parser of every HTTP listener (RFC 9112, RFC 9110).
//!
//! The caller owns the bytes. It passes everything it has read and not consumed yet; the parser
//! answers with one `Step`: how many bytes it consumed and one `Event`. Nothing is allocated and
//! nothing is copied: method, target, field names and values and body pieces are slices of the
//! caller's input. The parser faces the open internet, so every input ends in a defined event in
//! every build mode: no panic, no overflow, no read outside `input`, no state that grows.
//!
//! Choices where the RFCs leave one (each has a test):
//! - A bare LF ends a line everywhere: request line, fields, chunk-size lines, chunk data
//!   endings and trailers (RFC 9112 §2.2 MAY). A CR that is not followed by LF is a 400.
//! - The search for a line's end is also its check for control bytes (one pass, 16 bytes at a
//!   time): a NUL, a bare CR or any other control byte but HTAB is a 400 as soon as it
//!   arrives, before its line is complete (after the limits, checked on the bytes before it).
//! - Empty lines before the request line are skipped while they fit in `request_line_bytes`;
//!   more of them is a 400. Each is consumed at once (a step of its own), so that none of them
//!   holds room the head needs in the caller's buffer.
//! - `request_line_bytes` counts the request line without its line ending; `head_bytes` counts
//!   the request line through the empty line that ends the head, line endings included (the
//!   trailer section of a chunked body has a budget of the same size of its own).
//! - A Content-Length or chunk size that does not fit in 64 bits is a 400 (it is not a number we
//!   can frame with); one that fits but exceeds `body_bytes` is a 413, reported with the head.
//! - Transfer-Encoding: a final coding other than chunked is a 400 (RFC 9112 §6.3: the length
//!   cannot be determined); chunked applied twice is a 400; chunked preceded by any other coding
//!   (gzip, identity, unknown) is a 501 (we decode no other coding). In HTTP/1.0 it is a 400.
//! - An expectation other than 100-continue is a 417; 100-continue in HTTP/1.0 is ignored
//!   (RFC 9110 §10.1.1).
//! - Connection members must be tokens (else 400); "close" wins over "keep-alive".
//! - Problems are reported in input order: a line's own problems when the line is read (limits
//!   before content), the head's as a whole (missing Host, framing, 413) at its empty line. The
//!   result never depends on how the bytes were split into reads (tested on every split).
//!
//! A `Parser` is about 3 KiB (the field table of one head) and never grows; `Head.fields`
//! points into it, so a parser must not move while a head it returned is in use.
const std = @import("std");
const compat = @import("../compat.zig");

const assert = std.debug.assert;

pub const Limits = struct {
    /// The longest request line, without its line ending. Longer: 414.
    request_line_bytes: u32,
    /// The longest head: request line through the empty line, line endings included. Longer: 431.
    /// The trailer section of a chunked body gets a budget of the same size of its own.
    head_bytes: u32,
    /// The largest body: a Content-Length above it, or chunk sizes summing above it: 413.
    body_bytes: u64,
};

/// More header (or trailer) fields than this: 431.
pub const max_fields = 64;

/// The longest chunk-size line (size and ignored extensions, without line ending). Longer: 400.
pub const chunk_line_bytes = 4096;

pub const Version = enum { http_1_0, http_1_1 };

/// A header field; `value` is trimmed of the optional whitespace around it.
pub const Field = struct { name: []const u8, value: []const u8 };

pub const Body = union(enum) {
    none,
    /// Content-Length framing (the value may be 0: then `.end` follows the head directly).
    length: u64,
    chunked,
};

pub const Head = struct {
    method: []const u8,
    target: []const u8,
    version: Version,
    /// In order. Names and values are slices of the caller's input (valid until it moves
    /// those bytes); the array itself lives in the `Parser` (valid until the next head).
    fields: []const Field,
    /// From the version default (1.1: yes, 1.0: no) and the Connection options close and
    /// keep-alive.
    keep_alive: bool,
    /// `Expect: 100-continue` in an HTTP/1.1 request.
    expect_continue: bool,
    body: Body,
    /// The framing was ambiguous (Transfer-Encoding and Content-Length both present, the
    /// length ignored): the connection must close after the response (RFC 9112 §6.1).
    must_close: bool,

    /// The value of the first field called `name`, compared case-insensitively.
    pub fn field(self: *const Head, name: []const u8) ?[]const u8 {
        for (self.fields) |f| {
            if (std.ascii.eqlIgnoreCase(f.name, name)) return f.value;
        }
        return null;
    }

    /// Whether the connection may carry another request after the response to this one.
    pub fn persistent(self: *const Head) bool {
        return self.keep_alive and !self.must_close;
    }
};

pub const Error = enum {
    bad_request,
    uri_too_long,
    content_too_large,
    header_fields_too_large,
    not_implemented,
    version_not_supported,
    expectation_failed,

    pub fn status(e: Error) u16 {
        return switch (e) {
            .bad_request => 400,
            .uri_too_long => 414,
            .content_too_large => 413,
            .header_fields_too_large => 431,
            .not_implemented => 501,
            .version_not_supported => 505,
            .expectation_failed => 417,
        };
    }
};

pub const Event = union(enum) {
    /// Everything given was used or is being kept; call again with more bytes.
    need_more,
    /// The request head is complete.
    head: Head,
    /// A piece of decoded body (a slice of the input); a body may come in many pieces.
    body: []const u8,
    /// The message (head, body, trailers) is complete; the parser is ready for the next one.
    end,
    /// The request is invalid. The parser stays in this state: every later call says the same.
    err: Error,
};

pub const Step = struct { consumed: usize, event: Event };

const State = enum {
    request_line,
    header_fields,
    body_length,
    chunk_size,
    chunk_data,
    chunk_data_end,
    trailers,
    end_pending,
    failed,
};

/// A piece of the head, as offsets from the start of the request line: the caller may move
/// the bytes between two calls, so slices are only made when the head is complete.
const Span = struct { start: u32, len: u32 };

const FieldSpan = struct { name: Span, value: Span };

/// A complete line of the section being scanned: content `start..end` (line ending excluded),
/// the next line starting at `next`.
const Line = struct { start: usize, end: usize, next: usize };

const LineScan = union(enum) {
    line: Line,
    /// No line end yet: every byte given so far may belong to the line.
    incomplete,
    /// The offset of a byte no line may hold: a control byte other than HTAB (a bare CR
    /// included) or DEL.
    forbidden: usize,
};

/// What the header fields said about framing and connection, gathered field by field.
const Framing = struct {
    host_fields: u32 = 0,
    content_length: ?u64 = null,
    te_fields: u32 = 0,
    te_chunked: u32 = 0,
    te_last_chunked: bool = false,
    te_other: bool = false,
    connection_close: bool = false,
    connection_keep_alive: bool = false,
    expect_continue: bool = false,
};

pub const Parser = struct {
    limits: Limits,
    state: State,
    /// Valid when `state == .failed`.
    failure: Error,
    /// Line scanning in the section being parsed (head or trailers), as offsets from the first
    /// unconsumed byte: `scan` bytes were already searched for LF, the current line starts at
    /// `line_start`. Kept across calls so that each byte is searched once.
    scan: usize,
    line_start: usize,
    /// Offset of the request line (after skipped empty lines).
    head_start: u32,
    /// Bytes of empty lines before this message's request line that were already consumed
    /// (they count against `request_line_bytes`).
    skipped: u32,
    method: Span,
    target: Span,
    version: Version,
    /// Header fields recorded so far (or trailer fields counted so far).
    field_count: u32,
    spans: [max_fields]FieldSpan,
    /// Filled from `spans` when the head is complete; `Head.fields` points here.
    fields: [max_fields]Field,
    framing: Framing,
    /// Bytes left of the Content-Length body or of the current chunk.
    remaining: u64,
    /// Sum of the chunk sizes so far.
    body_total: u64,

    pub fn init(limits: Limits) Parser {
        return .{
            .limits = limits,
            .state = .request_line,
            .failure = .bad_request,
            .scan = 0,
            .line_start = 0,
            .head_start = 0,
            .skipped = 0,
            .method = .{ .start = 0, .len = 0 },
            .target = .{ .start = 0, .len = 0 },
            .version = .http_1_1,
            .field_count = 0,
            .spans = undefined,
            .fields = undefined,
            .framing = .{},
            .remaining = 0,
            .body_total = 0,
        };
    }

    /// `input` always begins at the first byte the caller has not consumed yet (the caller
    /// removes `consumed` bytes after each step and appends newly read bytes at the end). Bytes
    /// of a head that is not complete are not consumed (consumed = 0, event need_more): the
    /// parser remembers how far it scanned and on the next call scans only the new bytes. The
    /// same holds for a partial chunk-size line and for the trailer section.
    pub fn next(self: *Parser, input: []const u8) Step {
        if (self.state == .failed) return .{ .consumed = 0, .event = .{ .err = self.failure } };
        // The caller keeps every byte it has not consumed, so the input never gets shorter than
        // what was scanned. Checked rather than asserted: a caller bug must not become a read
        // out of bounds in a release build.
        if (input.len < self.scan) return self.fail(.bad_request);
        return switch (self.state) {
            .request_line, .header_fields => self.nextHead(input),
            .body_length => self.nextLengthBody(input),
            .chunk_size, .chunk_data, .chunk_data_end, .trailers => self.nextChunked(input),
            .end_pending => self.endMessage(0),
            .failed => unreachable,
        };
    }

    fn fail(self: *Parser, e: Error) Step {
        self.state = .failed;
        self.failure = e;
        return .{ .consumed = 0, .event = .{ .err = e } };
    }

    fn needMore(consumed: usize) Step {
        return .{ .consumed = consumed, .event = .need_more };
    }

    fn endMessage(self: *Parser, consumed: usize) Step {
        self.state = .request_line;
        self.scan = 0;
        self.line_start = 0;
        self.head_start = 0;
        self.skipped = 0;
        self.field_count = 0;
        self.framing = .{};
        self.remaining = 0;
        self.body_total = 0;
        return .{ .consumed = consumed, .event = .end };
    }

    /// Scans `section` for the end of the current line, from where the last call stopped. One
    /// pass, 16 bytes at a time: the search for the line end also rejects every control byte,
    /// so that field values need no second look. Every line of a head, a chunked framing or a
    /// trailer section is free of them (HTAB aside): tokens, targets and versions have none,
    /// field values and chunk extensions allow HTAB only.
    fn nextLine(self: *Parser, section: []const u8) LineScan {
        assert(self.line_start <= self.scan);
        assert(self.scan <= section.len);
        const at = findControl(section, self.scan) orelse {
            self.scan = section.len;
            return .incomplete;
        };
        assert(at >= self.scan and at < section.len);
        const next_line = switch (section[at]) {
            '\n' => at + 1,
            '\r' => crlf: {
                if (at + 1 == section.len) {
                    // Whether this CR ends the line shows with the next byte: look at it again
                    // on the next call.
                    self.scan = at;
                    return .incomplete;
                }
                if (section[at + 1] != '\n') return .{ .forbidden = at };
                break :crlf at + 2;
            },
            else => return .{ .forbidden = at },
        };
        const line: Line = .{ .start = self.line_start, .end = at, .next = next_line };
        self.line_start = next_line;
        self.scan = next_line;
        return .{ .line = line };
    }

    /// Content length of the unfinished line that ends `section` (cut short at a forbidden
    /// byte, or at the end of the input).
    fn partialLineLen(self: *const Parser, section: []const u8) usize {
        assert(self.line_start <= section.len);
        var len = section.len - self.line_start;
        // A CR at the very end may be the first half of a CRLF: not counted yet, so that the
        // limit is applied to the same content as once the line is complete.
        if (len > 0 and section[section.len - 1] == '\r') len -= 1;
        return len;
    }

    fn nextHead(self: *Parser, input: []const u8) Step {
        // Each pass takes one complete line (its LF at least) or returns.
        for (0..input.len + 1) |_| {
            const line = switch (self.nextLine(input)) {
                .line => |line| line,
                .incomplete => {
                    if (self.headLimit(input)) |e| return self.fail(e);
                    return needMore(0);
                },
                // The limits are checked first on the bytes before it, as they were (or would
                // have been) had the input ended there: the outcome does not depend on the split.
                .forbidden => |at| {
                    return self.fail(self.headLimit(input[0..at]) orelse .bad_request);
                },
            };
            if (self.state == .request_line) {
                if (line.end == line.start) {
                    // RFC 9112 §2.2: empty lines before the request line are ignored, within
                    // the budget of a request line so that a stream of them ends.
                    if (self.skipped + line.next > self.limits.request_line_bytes) {
                        return self.fail(.bad_request);
                    }
                    // Consumed at once, so that they never hold room that the head needs in
                    // the caller's buffer (and the outcome does not depend on the reads).
                    assert(line.start == 0);
                    self.skipped += @intCast(line.next);
                    self.scan = 0;
                    self.line_start = 0;
                    return needMore(line.next);
                }
                if (line.end - line.start > self.limits.request_line_bytes) {
                    return self.fail(.uri_too_long);
                }
                if (line.next - line.start > self.limits.head_bytes) {
                    return self.fail(.header_fields_too_large);
                }
                // Bounded by the empty-line check above.
                assert(line.start <= self.limits.request_line_bytes);
                self.head_start = @intCast(line.start);
                if (self.parseRequestLine(input[line.start..line.end])) |e| return self.fail(e);
                self.state = .header_fields;
            } else {
                assert(self.state == .header_fields);
                if (line.next - self.head_start > self.limits.head_bytes) {
                    return self.fail(.header_fields_too_large);
                }
                if (line.end == line.start) return self.finishHead(input, line.next);
                if (self.parseHeaderField(input, line)) |e| return self.fail(e);
            }
        }
        unreachable;
    }

    /// The limit that the unfinished head in `input` already exceeds, if any. Limits apply as
    /// soon as they are passed, before the line or head is complete, and these checks match
    /// those made on complete lines, so the outcome does not depend on the split.
    fn headLimit(self: *const Parser, input: []const u8) ?Error {
        if (self.state == .request_line) {
            const len = self.partialLineLen(input);
            if (len > self.limits.request_line_bytes) return .uri_too_long;
            // Nothing but a CR so far may still become an empty line, skipped before the
            // request line and counted against request_line_bytes only.
            if (len > 0 and input.len - self.line_start > self.limits.head_bytes) {
                return .header_fields_too_large;
            }
        } else {
            assert(self.state == .header_fields);
            if (input.len - self.head_start > self.limits.head_bytes) {
                return .header_fields_too_large;
            }
        }
        return null;
    }

    /// request-line = method SP request-target SP HTTP-version (RFC 9112 §3).
    fn parseRequestLine(self: *Parser, line: []const u8) ?Error {
        assert(line.len > 0);
        var i: usize = 0;
        while (i < line.len and tchar[line[i]]) : (i += 1) {}
        if (i == 0 or i == line.len or line[i] != ' ') return .bad_request;
        const method_len = i;
        const target_start = method_len + 1;
        // A missing version (HTTP/0.9 style "GET /") has no second SP.
        const target_len = compat.findScalar(u8, line[target_start..], ' ') orelse
            return .bad_request;
        if (target_len == 0) return .bad_request;
        if (!isTarget(line[target_start..][0..target_len])) return .bad_request;
        const version = line[target_start + target_len + 1 ..];
        if (version.len != 8) return .bad_request;
        if (!std.mem.eql(u8, version[0..5], "HTTP/")) return .bad_request;
        if (!isDigit(version[5]) or version[6] != '.' or !isDigit(version[7])) {
            return .bad_request;
        }
        if (version[5] != '1') return .version_not_supported;
        // HTTP/1.x with x >= 2 is answered as 1.1, the highest minor we speak (RFC 9110 §2.5).
        self.version = if (version[7] == '0') .http_1_0 else .http_1_1;
        // The line is inside the head, whose size fits the u32 limit.
        self.method = .{ .start = 0, .len = @intCast(method_len) };
        self.target = .{ .start = @intCast(target_start), .len = @intCast(target_len) };
        return null;
    }

    fn parseHeaderField(self: *Parser, input: []const u8, line: Line) ?Error {
        const parts = splitField(input[line.start..line.end]) orelse return .bad_request;
        if (self.field_count == max_fields) return .header_fields_too_large;
        assert(self.field_count < max_fields);
        assert(line.start >= self.head_start);
        // Offsets from the request line fit in u32: the head was checked against head_bytes.
        const base: u32 = @intCast(line.start - self.head_start);
        const name: Span = .{ .start = base, .len = @intCast(parts.name_len) };
        const value: Span = .{
            .start = base + @as(u32, @intCast(parts.value_start)),
            .len = @intCast(parts.value_end - parts.value_start),
        };
        self.spans[self.field_count] = .{ .name = name, .value = value };
        self.field_count += 1;
        const bytes = input[line.start..line.end];
        return self.noteField(
            bytes[0..parts.name_len],
            bytes[parts.value_start..parts.value_end],
        );
    }

    /// Gathers what a field says about framing and the connection. Names are compared
    /// case-insensitively, and only for the few lengths that matter.
    fn noteField(self: *Parser, name: []const u8, value: []const u8) ?Error {
        switch (name.len) {
            4 => if (std.ascii.eqlIgnoreCase(name, "host")) {
                self.framing.host_fields += 1;
                // RFC 9112 §3.2: more than one Host field, or one that is not a valid
                // authority, is a 400.
                if (self.framing.host_fields > 1) return .bad_request;
                if (!isHost(value)) return .bad_request;
            },
            6 => if (std.ascii.eqlIgnoreCase(name, "expect")) return self.noteExpect(value),
            10 => if (std.ascii.eqlIgnoreCase(name, "connection")) {
                return self.noteConnection(value);
            },
            14 => if (std.ascii.eqlIgnoreCase(name, "content-length")) {
                return self.noteContentLength(value);
            },
            17 => if (std.ascii.eqlIgnoreCase(name, "transfer-encoding")) {
                return self.noteTransferEncoding(value);
            },
            else => {},
        }
        return null;
    }

    /// Content-Length = 1*DIGIT. A list of equal values ("5, 5") and repeated fields with the
    /// same value are one length (RFC 9110 §8.6); anything else is a 400, because two parties
    /// that pick different copies would frame the body differently (request smuggling).
    fn noteContentLength(self: *Parser, value: []const u8) ?Error {
        var list: ListIterator = .{ .rest = value };
        // A list of n commas has n + 1 members, and one more call returns null.
        for (0..value.len + 2) |_| {
            const member = list.next() orelse return null;
            const length = parseDecimal(member) orelse return .bad_request;
            if (self.framing.content_length) |previous| {
                if (previous != length) return .bad_request;
            }
            self.framing.content_length = length;
        }
        unreachable;
    }

    /// Transfer-Encoding = #transfer-coding, gathered over every such field in order.
    fn noteTransferEncoding(self: *Parser, value: []const u8) ?Error {
        const framing = &self.framing;
        framing.te_fields += 1;
        var list: ListIterator = .{ .rest = value };
        for (0..value.len + 2) |_| {
            const member = list.next() orelse return null;
            // RFC 9110 §5.6.1: empty list members are ignored.
            if (member.len == 0) continue;
            const params = compat.findScalar(u8, member, ';') orelse member.len;
            const coding = trimOws(member[0..params]);
            if (!isToken(coding)) return .bad_request;
            if (std.ascii.eqlIgnoreCase(coding, "chunked")) {
                // chunked takes no parameters.
                if (params != member.len) return .bad_request;
                framing.te_chunked += 1;
                framing.te_last_chunked = true;
            } else {
                framing.te_other = true;
                framing.te_last_chunked = false;
            }
        }
        unreachable;
    }

    fn noteConnection(self: *Parser, value: []const u8) ?Error {
        var list: ListIterator = .{ .rest = value };
        for (0..value.len + 2) |_| {
            const member = list.next() orelse return null;
            if (member.len == 0) continue;
            if (!isToken(member)) return .bad_request;
            if (std.ascii.eqlIgnoreCase(member, "close")) self.framing.connection_close = true;
            if (std.ascii.eqlIgnoreCase(member, "keep-alive")) {
                self.framing.connection_keep_alive = true;
            }
        }
        unreachable;
    }

    fn noteExpect(self: *Parser, value: []const u8) ?Error {
        var list: ListIterator = .{ .rest = value };
        for (0..value.len + 2) |_| {
            const member = list.next() orelse return null;
            if (member.len == 0) continue;
            if (!std.ascii.eqlIgnoreCase(member, "100-continue")) return .expectation_failed;
            self.framing.expect_continue = true;
        }
        unreachable;
    }

    /// The empty line ended the head at `head_end`: decide the framing (RFC 9112 §6.3) and
    /// hand out the head.
    fn finishHead(self: *Parser, input: []const u8, head_end: usize) Step {
        assert(self.state == .header_fields);
        assert(head_end <= input.len);
        const framing = &self.framing;
        if (self.version == .http_1_1 and framing.host_fields == 0) {
            return self.fail(.bad_request);
        }
        var body: Body = .none;
        var must_close = false;
        if (framing.te_fields > 0) {
            // HTTP/1.0 has no chunked encoding: a Transfer-Encoding there is a framing attack
            // or a broken client.
            if (self.version == .http_1_0) return self.fail(.bad_request);
            // No coding at all, or a final coding other than chunked: no length can be known.
            if (!framing.te_last_chunked) return self.fail(.bad_request);
            if (framing.te_chunked > 1) return self.fail(.bad_request);
            if (framing.te_other) return self.fail(.not_implemented);
            body = .chunked;
            // RFC 9112 §6.1: Transfer-Encoding overrides Content-Length, and the connection
            // must close after the response.
            must_close = framing.content_length != null;
        } else if (framing.content_length) |length| {
            if (length > self.limits.body_bytes) return self.fail(.content_too_large);
            body = .{ .length = length };
        }
        const keep_alive = if (framing.connection_close) false else switch (self.version) {
            .http_1_1 => true,
            .http_1_0 => framing.connection_keep_alive,
        };
        const head_bytes = input[self.head_start..head_end];
        const count = self.field_count;
        for (self.spans[0..count], self.fields[0..count]) |span, *out| {
            out.* = .{
                .name = spanSlice(head_bytes, span.name),
                .value = spanSlice(head_bytes, span.value),
            };
        }
        const head: Head = .{
            .method = spanSlice(head_bytes, self.method),
            .target = spanSlice(head_bytes, self.target),
            .version = self.version,
            .fields = self.fields[0..count],
            .keep_alive = keep_alive,
            // RFC 9110 §10.1.1: a server MUST ignore 100-continue in an HTTP/1.0 request.
            .expect_continue = framing.expect_continue and self.version == .http_1_1,
            .body = body,
            .must_close = must_close,
        };
        self.scan = 0;
        self.line_start = 0;
        switch (body) {
            .none => self.state = .end_pending,
            .length => |length| {
                self.remaining = length;
                self.state = if (length == 0) .end_pending else .body_length;
            },
            .chunked => self.state = .chunk_size,
        }
        return .{ .consumed = head_end, .event = .{ .head = head } };
    }

    fn nextLengthBody(self: *Parser, input: []const u8) Step {
        assert(self.remaining > 0);
        if (input.len == 0) return needMore(0);
        // At most input.len, so it fits in usize.
        const take: usize = @intCast(@min(self.remaining, @as(u64, input.len)));
        assert(take > 0);
        self.remaining -= take;
        if (self.remaining == 0) self.state = .end_pending;
        return .{ .consumed = take, .event = .{ .body = input[0..take] } };
    }

    /// Chunked framing (RFC 9112 §7.1). Size lines and data endings are consumed as they are
    /// read, so one call may consume framing bytes before the body piece it returns.
    fn nextChunked(self: *Parser, input: []const u8) Step {
        var pos: usize = 0;
        // Each pass consumes a byte at least, or returns.
        for (0..input.len + 1) |_| {
            assert(pos <= input.len);
            switch (self.state) {
                .chunk_size => {
                    const section = input[pos..];
                    const line = switch (self.nextLine(section)) {
                        .line => |line| line,
                        .incomplete => {
                            // Too long a line is a 400 like a forbidden byte: no need to wait.
                            if (self.partialLineLen(section) > chunk_line_bytes) {
                                return self.fail(.bad_request);
                            }
                            return needMore(pos);
                        },
                        .forbidden => return self.fail(.bad_request),
                    };
                    if (line.end - line.start > chunk_line_bytes) return self.fail(.bad_request);
                    const size = parseChunkSize(section[line.start..line.end]) orelse
                        return self.fail(.bad_request);
                    const total = @addWithOverflow(self.body_total, size);
                    if (total[1] != 0 or total[0] > self.limits.body_bytes) {
                        return self.fail(.content_too_large);
                    }
                    self.body_total = total[0];
                    pos += line.next;
                    self.scan = 0;
                    self.line_start = 0;
                    if (size == 0) {
                        self.state = .trailers;
                        self.field_count = 0;
                        return self.nextTrailers(input, pos);
                    }
                    self.remaining = size;
                    self.state = .chunk_data;
                },
                .chunk_data => {
                    assert(self.remaining > 0);
                    if (pos == input.len) return needMore(pos);
                    const take: usize = @intCast(@min(self.remaining, @as(u64, input.len - pos)));
                    const piece = input[pos..][0..take];
                    pos += take;
                    self.remaining -= take;
                    if (self.remaining == 0) self.state = .chunk_data_end;
                    return .{ .consumed = pos, .event = .{ .body = piece } };
                },
                .chunk_data_end => {
                    const rest = input[pos..];
                    if (rest.len == 0) return needMore(pos);
                    if (rest[0] == '\n') {
                        pos += 1;
                    } else if (rest[0] == '\r') {
                        // Keep a lone CR until the byte after it shows whether it ends a line.
                        if (rest.len < 2) return needMore(pos);
                        if (rest[1] != '\n') return self.fail(.bad_request);
                        pos += 2;
                    } else {
                        return self.fail(.bad_request);
                    }
                    self.state = .chunk_size;
                },
                .trailers => return self.nextTrailers(input, pos),
                else => unreachable,
            }
        }
        unreachable;
    }

    /// trailer-section = *( field-line CRLF ) CRLF: checked like header fields, then
    /// discarded. Kept unconsumed until the final empty line, like the head.
    fn nextTrailers(self: *Parser, input: []const u8, pos: usize) Step {
        assert(self.state == .trailers);
        const section = input[pos..];
        for (0..section.len + 1) |_| {
            const line = switch (self.nextLine(section)) {
                .line => |line| line,
                .incomplete => {
                    if (section.len > self.limits.head_bytes) {
                        return self.fail(.header_fields_too_large);
                    }
                    return needMore(pos);
                },
                // As in the head: the limit first, on the bytes before the forbidden one.
                .forbidden => |at| return self.fail(if (at > self.limits.head_bytes)
                    .header_fields_too_large
                else
                    .bad_request),
            };
            if (line.next > self.limits.head_bytes) return self.fail(.header_fields_too_large);
            if (line.end == line.start) return self.endMessage(pos + line.next);
            if (splitField(section[line.start..line.end]) == null) {
                return self.fail(.bad_request);
            }
            if (self.field_count == max_fields) return self.fail(.header_fields_too_large);
            self.field_count += 1;
        }
        unreachable;
    }
};

const FieldParts = struct { name_len: usize, value_start: usize, value_end: usize };

/// field-line = field-name ":" OWS field-value OWS (RFC 9112 §5), or null when malformed.
fn splitField(line: []const u8) ?FieldParts {
    assert(line.len > 0);
    var i: usize = 0;
    while (i < line.len and tchar[line[i]]) : (i += 1) {}
    // The name ends at the colon and nowhere else. This rejects whitespace before the colon
    // (RFC 9112 §5.1: a smuggling vector), a line starting with SP or HTAB (obs-fold, §5.2),
    // an empty name, a line without colon and any byte outside tchar.
    if (i == 0 or i == line.len or line[i] != ':') return null;
    // The value needs no check: `nextLine` let no control byte other than HTAB through.
    var start = i + 1;
    var end = line.len;
    while (start < end and isOws(line[start])) start += 1;
    while (end > start and isOws(line[end - 1])) end -= 1;
    return .{ .name_len = i, .value_start = start, .value_end = end };
}

/// chunk-size [ chunk-ext ]: the size, or null when malformed or above 64 bits.
fn parseChunkSize(line: []const u8) ?u64 {
    var size: u64 = 0;
    var i: usize = 0;
    while (i < line.len) : (i += 1) {
        const digit = hexValue(line[i]) orelse break;
        // Leading zeros are fine; a value that needs more than 64 bits is not.
        if (size > std.math.maxInt(u64) >> 4) return null;
        size = (size << 4) | digit;
    }
    if (i == 0) return null;
    if (i == line.len) return size;
    // chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] ): ignored, but
    // it must start with ";" (`nextLine` already rejected control bytes in it).
    var rest = line[i..];
    while (rest.len > 0 and isOws(rest[0])) rest = rest[1..];
    if (rest.len == 0 or rest[0] != ';') return null;
    return size;
}

/// 1*DIGIT as a u64, or null when empty, not all digits, or above 64 bits.
fn parseDecimal(text: []const u8) ?u64 {
    if (text.len == 0) return null;
    var value: u64 = 0;
    for (text) |c| {
        if (!isDigit(c)) return null;
        const times_ten = @mulWithOverflow(value, 10);
        if (times_ten[1] != 0) return null;
        const sum = @addWithOverflow(times_ten[0], c - '0');
        if (sum[1] != 0) return null;
        value = sum[0];
    }
    return value;
}

/// The members of a comma-separated list (RFC 9110 §5.6.1), trimmed of OWS. Empty members are
/// returned too: each caller decides about them.
const ListIterator = struct {
    rest: ?[]const u8,

    fn next(self: *ListIterator) ?[]const u8 {
        const rest = self.rest orelse return null;
        if (compat.findScalar(u8, rest, ',')) |comma| {
            self.rest = rest[comma + 1 ..];
            return trimOws(rest[0..comma]);
        }
        self.rest = null;
        return trimOws(rest);
    }
};

fn spanSlice(bytes: []const u8, span: Span) []const u8 {
    return bytes[span.start..][0..span.len];
}

fn trimOws(text: []const u8) []const u8 {
    var start: usize = 0;
    var end: usize = text.len;
    while (start < end and isOws(text[start])) start += 1;
    while (end > start and isOws(text[end - 1])) end -= 1;
    return text[start..end];
}

fn isOws(c: u8) bool {
    return c == ' ' or c == '\t';
}

fn isDigit(c: u8) bool {
    return c >= '0' and c <= '9';
}

fn hexValue(c: u8) ?u8 {
    return switch (c) {
        '0'...'9' => c - '0',
        'a'...'f' => c - 'a' + 10,
        'A'...'F' => c - 'A' + 10,
        else => null,
    };
}

fn isToken(text: []const u8) bool {
    if (text.len == 0) return false;
    for (text) |c| {
        if (!tchar[c]) return false;
    }
    return true;
}

/// tchar (RFC 9110 §5.6.2): the bytes of a method, a field name or a token.
const tchar: [256]bool = table: {
    var table: [256]bool = undefined;
    for (&table, 0..) |*entry, c| {
        entry.* = switch (c) {
            '0'...'9', 'a'...'z', 'A'...'Z' => true,
            '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~' => true,
            else => false,
        };
    }
    break :table table;
};

const vector_len = 16;
const Chunk = @Vector(vector_len, u8);
const Flags = @Vector(vector_len, bool);

/// request-target bytes: visible ASCII 0x21-0x7E only, checked 16 bytes at a time.
/// Host = uri-host [ ":" port ] (RFC 9110 §7.2, RFC 3986 §3.2.2): an IP literal in
/// brackets, or a reg-name of unreserved, percent-encoded and sub-delim characters (an IPv4
/// address is one too), then an optional port of digits. Empty is valid: the target had no
/// authority.
fn isHost(value: []const u8) bool {
    var host = value;
    var rest: []const u8 = "";
    if (value.len > 0 and value[0] == '[') {
        const close = compat.findScalar(u8, value, ']') orelse return false;
        for (value[1..close]) |c| {
            if (!(isUnreserved(c) or isSubDelim(c) or c == ':')) return false;
        }
        if (close == 1) return false;
        rest = value[close + 1 ..];
        host = "";
    } else if (compat.findScalar(u8, value, ':')) |colon| {
        host = value[0..colon];
        rest = value[colon..];
    }
    var i: usize = 0;
    while (i < host.len) : (i += 1) {
        const c = host[i];
        if (isUnreserved(c) or isSubDelim(c)) continue;
        if (c != '%' or i + 2 >= host.len) return false;
        if (hexValue(host[i + 1]) == null or hexValue(host[i + 2]) == null) return false;
        i += 2;
    }
    if (rest.len == 0) return true;
    if (rest[0] != ':') return false;
    for (rest[1..]) |c| {
        if (!isDigit(c)) return false;
    }
    return true;
}

fn isUnreserved(c: u8) bool {
    return std.ascii.isAlphanumeric(c) or c == '-' or c == '.' or c == '_' or c == '~';
}

fn isSubDelim(c: u8) bool {
    return switch (c) {
        '!', '$', '&', '\'', '(', ')', '*', '+', ',', ';', '=' => true,
        else => false,
    };
}

fn isTarget(bytes: []const u8) bool {
    var i: usize = 0;
    while (i + vector_len <= bytes.len) : (i += vector_len) {
        const chunk: Chunk = bytes[i..][0..vector_len].*;
        // One comparison checks both bounds: bytes below 0x21 wrap around to large values.
        const offset = chunk -% @as(Chunk, @splat(0x21));
        if (@reduce(.Or, offset > @as(Chunk, @splat(0x7e - 0x21)))) return false;
    }
    for (bytes[i..]) |c| {
        if (c -% 0x21 > 0x7e - 0x21) return false;
    }
    return true;
}

/// The offset of the first byte from `start` on that is a control byte other than HTAB (so CR
/// and LF too) or DEL, checked 16 bytes at a time; what remains allowed is what a field value
/// may hold: HTAB, SP, VCHAR and obs-text (0x80-0xFF).
fn findControl(bytes: []const u8, start: usize) ?usize {
    var i: usize = start;
    while (i + vector_len <= bytes.len) : (i += vector_len) {
        const chunk: Chunk = bytes[i..][0..vector_len].*;
        const control = chunk < @as(Chunk, @splat(0x20));
        const tab = chunk == @as(Chunk, @splat('\t'));
        const del = chunk == @as(Chunk, @splat(0x7f));
        const bad_control = @select(bool, tab, @as(Flags, @splat(false)), control);
        const bad = @select(bool, del, @as(Flags, @splat(true)), bad_control);
        if (std.simd.firstTrue(bad)) |lane| return i + lane;
    }
    for (bytes[i..], i..) |c, at| {
        if (isControl(c)) return at;
    }
    return null;
}

fn isControl(c: u8) bool {
    return (c < 0x20 and c != '\t') or c == 0x7f;
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

const testing = std.testing;

const test_limits: Limits = .{
    .request_line_bytes = 8192,
    .head_bytes = 16384,
    .body_bytes = 1 << 20,
};

const small_limits: Limits = .{ .request_line_bytes = 40, .head_bytes = 120, .body_bytes = 16 };

/// The extremes: nothing fits, and everything does.
const zero_limits: Limits = .{ .request_line_bytes = 0, .head_bytes = 0, .body_bytes = 0 };
const max_limits: Limits = .{
    .request_line_bytes = std.math.maxInt(u32),
    .head_bytes = std.math.maxInt(u32),
    .body_bytes = std.math.maxInt(u64),
};

/// Request line and Host of most test requests.
const get = "GET / HTTP/1.1\r\nHost: a\r\n";
const post = "POST / HTTP/1.1\r\nHost: a\r\n";
const get_10 = "GET / HTTP/1.0\r\n";

fn expect400(input: []const u8) !void {
    return expectErr(test_limits, input, .bad_request);
}

/// `text` repeated `count` times (array `**` is gone from 0.17).
fn repeat(comptime text: []const u8, comptime count: usize) *const [text.len * count]u8 {
    return comptime result: {
        @setEvalBranchQuota(10 * count + 1000);
        var out: [text.len * count]u8 = undefined;
        for (0..count) |i| @memcpy(out[i * text.len ..][0..text.len], text);
        const final = out;
        break :result &final;
    };
}

/// Feeds all of `input` at once and returns the first head (the parser must outlive it).
fn expectHead(parser: *Parser, input: []const u8) !Head {
    const step = parser.next(input);
    switch (step.event) {
        .head => |head| return head,
        else => {
            std.debug.print("expected a head, got {s}\n", .{@tagName(step.event)});
            return error.TestUnexpectedResult;
        },
    }
}

/// Drives a parser over all of `input` (given at once, consumed bytes removed) until it needs
/// more or fails, and returns that last event.
fn lastEvent(limits: Limits, input: []const u8) !Event {
    var parser = Parser.init(limits);
    var rest = input;
    for (0..2 * input.len + 8) |_| {
        const step = parser.next(rest);
        try testing.expect(step.consumed <= rest.len);
        rest = rest[step.consumed..];
        switch (step.event) {
            .need_more => if (step.consumed == 0) return step.event,
            .err => return step.event,
            else => {},
        }
    }
    return error.TestUnexpectedResult;
}

fn expectErr(limits: Limits, input: []const u8, expected: Error) !void {
    const event = try lastEvent(limits, input);
    switch (event) {
        .err => |e| if (e == expected) return else {
            std.debug.print("expected {s}, got {s}: {any}\n", .{
                @tagName(expected), @tagName(e), input,
            });
        },
        else => std.debug.print("expected {s}, got {s}: {any}\n", .{
            @tagName(expected), @tagName(event), input,
        }),
    }
    return error.TestUnexpectedResult;
}

/// Every request in `input` parses completely (the last event is need_more).
fn expectValid(limits: Limits, input: []const u8) !void {
    const event = try lastEvent(limits, input);
    switch (event) {
        .need_more => {},
        else => {
            std.debug.print("expected a valid request, got {s}: {any}\n", .{
                @tagName(event),
                input,
            });
            return error.TestUnexpectedResult;
        },
    }
}

/// A transcript of everything a parser reported: heads in full, each message's body
/// concatenated (so it does not show how the body was split into pieces), ends and errors.
const Transcript = struct {
    text: [1 << 14]u8 = undefined,
    len: usize = 0,

    fn print(self: *Transcript, comptime format: []const u8, args: anytype) !void {
        const written = try compat.bufPrint(self.text[self.len..], format, args);
        self.len += written.len;
    }

    fn slice(self: *const Transcript) []const u8 {
        return self.text[0..self.len];
    }

    fn addHead(self: *Transcript, head: Head) !void {
        try self.print("H {s} {s} {s} ka={} ec={} mc={} ", .{
            head.method,            head.target,
            @tagName(head.version), head.keep_alive,
            head.expect_continue,   head.must_close,
        });
        switch (head.body) {
            .none => try self.print("none\n", .{}),
            .length => |length| try self.print("length {d}\n", .{length}),
            .chunked => try self.print("chunked\n", .{}),
        }
        for (head.fields) |f| try self.print("F {s}: {s}\n", .{ f.name, f.value });
    }
};

/// How the emulated caller hands bytes to the parser.
const Feed = union(enum) {
    /// Everything at once.
    all,
    /// The bytes before this offset, then the rest.
    split: usize,
    /// Pieces of this many bytes.
    pieces: usize,
    /// Pieces of random sizes, sometimes appended before the parser asked for more.
    random: std.Random,
};

/// Emulates the caller: a fixed read buffer from which consumed bytes are removed and to which
/// new bytes are appended. Checks the contract at every step and writes a transcript. The
/// stream ends when all of `data` was given and the parser needs more without consuming.
fn drive(limits: Limits, data: []const u8, feed: Feed, out: *Transcript) !void {
    var driver: Driver = .{
        .limits = limits,
        .data = data,
        .feed = feed,
        .out = out,
        .parser = Parser.init(limits),
    };
    // Every step consumes a byte or is a head or end (one each per message), or asks for more
    // once per piece given: a bound on steps catches a parser that stops making progress.
    const max_steps = 4 * data.len + 64;
    for (0..max_steps) |_| {
        if (try driver.turn()) return;
    }
    std.debug.print("no progress after {d} steps\n", .{max_steps});
    return error.TestUnexpectedResult;
}

/// The state of `drive`'s emulated caller: its read buffer, what of `data` it has given,
/// and what it has seen of the current message.
const Driver = struct {
    limits: Limits,
    data: []const u8,
    feed: Feed,
    out: *Transcript,
    parser: Parser,
    buffer: [1 << 16]u8 = undefined,
    len: usize = 0,
    given: usize = 0,
    in_message: bool = false,
    body_length: ?u64 = null,
    body_seen: u64 = 0,

    /// One call of the parser, its event checked, its consumed bytes removed and more
    /// bytes given when it asks; true when the stream ended (or the parser failed).
    fn turn(self: *Driver) !bool {
        assert(self.len <= self.buffer.len);
        assert(self.given <= self.data.len);
        switch (self.feed) {
            .random => |random| if (self.given < self.data.len and
                random.uintLessThan(u8, 4) == 0)
            {
                self.given += try append(&self.buffer, &self.len, self.data[self.given..], random);
            },
            else => {},
        }
        const input = self.buffer[0..self.len];
        const step = self.parser.next(input);
        try testing.expect(step.consumed <= input.len);
        switch (step.event) {
            .need_more => {},
            .head => |head| try self.onHead(head, step.consumed),
            .body => |piece| try self.onBody(input, piece, step.consumed),
            .end => try self.onEnd(),
            .err => |e| {
                try self.onError(input, e);
                return true;
            },
        }
        // The caller removes the consumed bytes.
        compat.copyLeft(&self.buffer, self.buffer[step.consumed..self.len]);
        self.len -= step.consumed;
        if (step.event != .need_more) return false;
        return self.give(step.consumed);
    }

    fn onHead(self: *Driver, head: Head, consumed: usize) !void {
        try testing.expect(!self.in_message);
        try testing.expect(consumed > 0);
        self.in_message = true;
        self.body_seen = 0;
        self.body_length = switch (head.body) {
            .length => |length| length,
            else => null,
        };
        try testing.expect(head.body != .length or head.body.length <= self.limits.body_bytes);
        try self.out.addHead(head);
    }

    fn onBody(self: *Driver, input: []const u8, piece: []const u8, consumed: usize) !void {
        try testing.expect(self.in_message);
        try testing.expect(piece.len > 0);
        // The piece lies within the consumed bytes of the input.
        const start = @intFromPtr(piece.ptr) - @intFromPtr(input.ptr);
        try testing.expect(@intFromPtr(piece.ptr) >= @intFromPtr(input.ptr));
        try testing.expect(start + piece.len <= consumed);
        if (self.body_seen == 0) try self.out.print("B ", .{});
        self.body_seen += piece.len;
        try testing.expect(self.body_seen <= self.limits.body_bytes);
        if (self.body_length) |length| try testing.expect(self.body_seen <= length);
        try self.out.print("{s}", .{piece});
    }

    fn onEnd(self: *Driver) !void {
        try testing.expect(self.in_message);
        if (self.body_length) |length| try testing.expectEqual(length, self.body_seen);
        self.in_message = false;
        try self.out.print("\nE\n", .{});
    }

    fn onError(self: *Driver, input: []const u8, e: Error) !void {
        try self.out.print("\nX {d}\n", .{e.status()});
        // The error state is sticky.
        const again = self.parser.next(input);
        try testing.expectEqual(@as(usize, 0), again.consumed);
        try testing.expect(again.event == .err and again.event.err == e);
    }

    /// The parser asked for more after consuming `consumed` bytes: gives it the next piece
    /// of `data`; true when the stream ended (all given and nothing consumed).
    fn give(self: *Driver, consumed: usize) !bool {
        const data = self.data;
        const given = self.given;
        if (given == data.len) {
            if (consumed == 0) {
                try self.out.print("\nN {d}\n", .{self.len});
                return true;
            }
            return false;
        }
        const piece = switch (self.feed) {
            .all => data[given..],
            .split => |at| if (given < at) data[given..at] else data[given..],
            .pieces => |size| data[given..@min(data.len, given + size)],
            .random => |random| {
                self.given += try append(&self.buffer, &self.len, data[given..], random);
                return false;
            },
        };
        // The limits keep what the parser holds far below the buffer's size.
        try testing.expect(piece.len <= self.buffer.len - self.len);
        @memcpy(self.buffer[self.len..][0..piece.len], piece);
        self.len += piece.len;
        self.given += piece.len;
        assert(self.given <= data.len);
        return false;
    }
};

fn append(buffer: []u8, len: *usize, rest: []const u8, random: std.Random) !usize {
    const size = @min(rest.len, 1 + random.uintLessThan(usize, 97));
    try testing.expect(size <= buffer.len - len.*);
    @memcpy(buffer[len.*..][0..size], rest[0..size]);
    len.* += size;
    return size;
}

/// Valid requests, written to cover every framing.
const corpus = [_][]const u8{
    "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
    "GET /search?q=zig&lang=en HTTP/1.1\r\nHost: example.com\r\nUser-Agent: test/1.0\r\n" ++
        "Accept: */*\r\nAccept-Encoding: gzip, br\r\nConnection: keep-alive\r\n" ++
        "X-Empty:\r\nX-Spaces: \t padded value \t\r\n\r\n",
    "POST /submit HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\nContent-Type: text/plain\r\n" ++
        "\r\nhello world",
    "POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" ++
        "5;name=value\r\nhello\r\n6 ; x=\"y\"\r\n world\r\n0\r\nChecksum: abc\r\n" ++
        "X-Trailer: 1\r\n\r\n",
    "GET /a HTTP/1.1\r\nHost: a\r\n\r\nPOST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n" ++
        "\r\nabc",
    "POST /lf HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n\n3\nabc\n0\n\n",
    "\r\n\r\nGET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    "PUT /x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\ndata",
    "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123456789abcdef" ++
        "\r\n0\r\n\r\nGET /after HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
};

test "corpus: every request is valid and parses completely" {
    for (corpus) |data| {
        var transcript: Transcript = .{};
        try drive(test_limits, data, .all, &transcript);
        try testing.expect(compat.find(u8, transcript.slice(), "\nX ") == null);
        try testing.expect(std.mem.endsWith(u8, transcript.slice(), "\nN 0\n"));
    }
}

test "split at every byte: the events do not depend on where the reads fell" {
    for (corpus) |data| {
        var whole: Transcript = .{};
        try drive(test_limits, data, .all, &whole);
        for (0..data.len + 1) |at| {
            var split: Transcript = .{};
            try drive(test_limits, data, .{ .split = at }, &split);
            try testing.expectEqualStrings(whole.slice(), split.slice());
        }
        var bytes: Transcript = .{};
        try drive(test_limits, data, .{ .pieces = 1 }, &bytes);
        try testing.expectEqualStrings(whole.slice(), bytes.slice());
    }
}

test "an incomplete head is searched once: each call scans only the new bytes" {
    const data = corpus[1];
    var parser = Parser.init(test_limits);
    for (1..data.len) |len| {
        const step = parser.next(data[0..len]);
        try testing.expect(step.event == .need_more);
        try testing.expectEqual(@as(usize, 0), step.consumed);
        // Everything given was searched; the next call starts from here. (A CR at the end is
        // looked at again, with the byte after it.)
        const searched = if (data[len - 1] == '\r') len - 1 else len;
        try testing.expectEqual(searched, parser.scan);
    }
    _ = try expectHead(&parser, data);
}

test "leading empty lines before the request line are ignored, within the request-line limit" {
    var parser = Parser.init(test_limits);
    const input = "\r\n\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
    // Each empty line is consumed by a step of its own, then the head comes.
    var rest: []const u8 = input;
    for ([_]usize{ 2, 1, 2 }) |len| {
        const skip = parser.next(rest);
        try testing.expect(skip.event == .need_more);
        try testing.expectEqual(len, skip.consumed);
        rest = rest[skip.consumed..];
    }
    const step = parser.next(rest);
    try testing.expectEqual(rest.len, step.consumed);
    try testing.expectEqualStrings("GET", step.event.head.method);
    // Empty lines beyond the request-line budget: a 400, not an endless skip.
    const limits: Limits = .{ .request_line_bytes = 16, .head_bytes = 100, .body_bytes = 0 };
    try expectValid(limits, repeat("\r\n", 8) ++ "GET / HTTP/1.0\r\n\r\n");
    try expectErr(limits, repeat("\r\n", 9) ++ "GET / HTTP/1.0\r\n\r\n", .bad_request);
    try expectErr(limits, repeat("\n", 17), .bad_request);
    // Between pipelined requests too.
    try expectValid(test_limits, "GET / HTTP/1.0\r\n\r\n\r\nGET / HTTP/1.0\r\n\r\n");
}

test "line endings: a bare LF is a line ending throughout the head and the chunked framing" {
    var parser = Parser.init(test_limits);
    const input = "POST /p HTTP/1.1\nHost: a\r\nTransfer-Encoding: chunked\n\n" ++
        "2;x=y\nab\r\n1\r\nc\n0\nT: 1\n\n";
    const head = try expectHead(&parser, input);
    try testing.expectEqualStrings("/p", head.target);
    try testing.expectEqualStrings("a", head.field("host").?);
    try testing.expect(head.body == .chunked);
    try expectValid(test_limits, input);
}

test "line endings: a bare CR anywhere is a 400" {
    const cases = [_][]const u8{
        "GET / HTTP/1.1\rHost: a\r\n\r\n",
        "GET /\r HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\n\r\r\n",
        "GET / HTTP/1.1\r\n\rHost: a\r\n\r\n",
        "\r\rGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\r\na\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1;a\rb\r\na\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\rx0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: 1\r\r\n\r\n",
    };
    for (cases) |input| try expectErr(test_limits, input, .bad_request);
}

test "a forbidden byte is a 400 as soon as it arrives, unless a limit was passed before it" {
    var parser = Parser.init(test_limits);
    try testing.expectEqual(Error.bad_request, parser.next(get ++ "X: a\x00").event.err);
    var parser_cr = Parser.init(test_limits);
    try testing.expect(parser_cr.next(get ++ "X: a\r").event == .need_more);
    try testing.expectEqual(Error.bad_request, parser_cr.next(get ++ "X: a\rb").event.err);
    const limits: Limits = .{ .request_line_bytes = 20, .head_bytes = 30, .body_bytes = 0 };
    try expectErr(limits, "GET /abcdefghijklmnop\x00", .uri_too_long);
    try expectErr(limits, "GET /abcde\x00", .bad_request);
    try expectErr(limits, "GET / HTTP/1.1\r\nX: 0123456789abcdef\x01", .header_fields_too_large);
    try expectErr(limits, "GET / HTTP/1.1\r\nX: 0123456789\x01", .bad_request);
}

test "Host: an authority, else 400 (RFC 9112 §3.2)" {
    const valid = [_][]const u8{
        "a",         "example.com:8080", "127.0.0.1",        "[::1]:80", "[v1.x]", "",
        "xn--d-%41", "a:",               "a_b~c!$&'()*+,;=",
    };
    for (valid) |host| try testing.expect(isHost(host));
    const invalid = [_][]const u8{
        "a b", "a/b", "a?b",  "a#b",  "user@a", "a:8x",  "a:1:2", "[::1",
        "[]",  "%4",  "%zz1", "a\\b", "[::1]x", "\"a\"",
    };
    for (invalid) |host| try testing.expect(!isHost(host));
    try expect400("GET / HTTP/1.1\r\nHost: a b\r\n\r\n");
    try expect400("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n");
}

test "request line: the method is a token" {
    var parser = Parser.init(test_limits);
    const head = try expectHead(&parser, "M-SEARCH.x~ * HTTP/1.1\r\nHost: a\r\n\r\n");
    try testing.expectEqualStrings("M-SEARCH.x~", head.method);
    try testing.expectEqualStrings("*", head.target);
    try expectErr(test_limits, "G(T / HTTP/1.1\r\nHost: a\r\n\r\n", .bad_request);
    try expectErr(test_limits, "GE\x00T / HTTP/1.1\r\nHost: a\r\n\r\n", .bad_request);
    try expectErr(test_limits, "G\xc3\xa9T / HTTP/1.1\r\nHost: a\r\n\r\n", .bad_request);
    try expectErr(test_limits, " / HTTP/1.1\r\nHost: a\r\n\r\n", .bad_request);
    try expectErr(test_limits, "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", .bad_request);
}

test "request line: exactly one SP between method, target and version" {
    try expectErr(test_limits, "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", .bad_request);
    try expectErr(test_limits, "GET /  HTTP/1.1\r\nHost: a\r\n\r\n", .bad_request);
    try expectErr(test_limits, "GET / HTTP/1.1 \r\nHost: a\r\n\r\n", .bad_request);
    try expectErr(test_limits, " GET / HTTP/1.1\r\nHost: a\r\n\r\n", .bad_request);
    try expectErr(test_limits, "GET / x HTTP/1.1\r\nHost: a\r\n\r\n", .bad_request);
    try expectErr(test_limits, "GET /\tHTTP/1.1\r\nHost: a\r\n\r\n", .bad_request);
    try expectValid(test_limits, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
}

test "request line: the target is visible ASCII only" {
    var parser = Parser.init(test_limits);
    const target = "/a/long/path/over/sixteen/bytes?with=query&and=%20escapes#frag!$'()*+,;:@~";
    const head = try expectHead(&parser, "GET " ++ target ++ " HTTP/1.1\r\nHost: a\r\n\r\n");
    try testing.expectEqualStrings(target, head.target);
    const bad = [_][]const u8{ "\x7f", "\x80", "\xff", "\x00", "\x01", "\x1f", "\t" };
    inline for (bad) |byte| {
        const short = "GET /a" ++ byte ++ " HTTP/1.1\r\nHost: a\r\n\r\n";
        try expectErr(test_limits, short, .bad_request);
        // Past the first 16 bytes, where the vector loop checks.
        const long = "GET /0123456789abcdefghij" ++ byte ++ "k HTTP/1.1\r\nHost: a\r\n\r\n";
        try expectErr(test_limits, long, .bad_request);
    }
}

test "request line: the version is HTTP/DIGIT.DIGIT and is required" {
    try expectErr(test_limits, "GET /\r\n\r\n", .bad_request);
    try expectErr(test_limits, "GET / \r\n\r\n", .bad_request);
    try expectErr(test_limits, "GET / http/1.1\r\nHost: a\r\n\r\n", .bad_request);
    try expectErr(test_limits, "GET / HTTP/1\r\nHost: a\r\n\r\n", .bad_request);
    try expectErr(test_limits, "GET / HTTP/1.1.1\r\nHost: a\r\n\r\n", .bad_request);
    try expectErr(test_limits, "GET / HTTP/11.1\r\nHost: a\r\n\r\n", .bad_request);
    try expectErr(test_limits, "GET / HTTP/1,1\r\nHost: a\r\n\r\n", .bad_request);
    try expectErr(test_limits, "GET / HTTP/a.1\r\nHost: a\r\n\r\n", .bad_request);
    try expectErr(test_limits, "GET / HTTP/2\r\nHost: a\r\n\r\n", .bad_request);
    try expectErr(test_limits, "GET\r\n\r\n", .bad_request);
}

test "request line: a major version other than 1 is a 505" {
    try expectErr(test_limits, "GET / HTTP/2.0\r\nHost: a\r\n\r\n", .version_not_supported);
    try expectErr(test_limits, "GET / HTTP/3.1\r\nHost: a\r\n\r\n", .version_not_supported);
    try expectErr(test_limits, "GET / HTTP/0.9\r\nHost: a\r\n\r\n", .version_not_supported);
    try expectErr(test_limits, "GET / HTTP/9.9\r\n", .version_not_supported);
}

test "request line: HTTP/1.x with x of 2 or more is served as 1.1" {
    var parser = Parser.init(test_limits);
    const head = try expectHead(&parser, "GET / HTTP/1.9\r\nHost: a\r\n\r\n");
    try testing.expectEqual(Version.http_1_1, head.version);
    try testing.expect(head.keep_alive);
    // And it is held to the 1.1 rules: Host is required.
    try expectErr(test_limits, "GET / HTTP/1.2\r\n\r\n", .bad_request);
    var parser_10 = Parser.init(test_limits);
    const head_10 = try expectHead(&parser_10, "GET / HTTP/1.0\r\n\r\n");
    try testing.expectEqual(Version.http_1_0, head_10.version);
}

test "request line: longer than the limit is a 414, as soon as the limit is passed" {
    const limits: Limits = .{ .request_line_bytes = 20, .head_bytes = 1000, .body_bytes = 0 };
    // Exactly 20 bytes is fine, with either line ending.
    try expectValid(limits, "GET /234567 HTTP/1.0\r\n\r\n");
    try expectValid(limits, "GET /234567 HTTP/1.0\n\n");
    try expectErr(limits, "GET /2345678 HTTP/1.0\r\n\r\n", .uri_too_long);
    // Before the line ends: 21 bytes without LF are already too many; 20 and a CR are not.
    var parser = Parser.init(limits);
    try testing.expect(parser.next("GET /234567 HTTP/1.0\r").event == .need_more);
    const step = parser.next("GET /2345678901234567");
    try testing.expectEqual(Error.uri_too_long, step.event.err);
}

test "header field: the name is a token, and not empty" {
    var parser = Parser.init(test_limits);
    const head = try expectHead(&parser, "GET / HTTP/1.1\r\nHost: a\r\nX-A.b_c~1!: v\r\n\r\n");
    try testing.expectEqualStrings("X-A.b_c~1!", head.fields[1].name);
    try expectErr(test_limits, "GET / HTTP/1.1\r\nHost: a\r\n: v\r\n\r\n", .bad_request);
    try expectErr(test_limits, "GET / HTTP/1.1\r\nHost: a\r\nX(y): v\r\n\r\n", .bad_request);
    try expectErr(test_limits, "GET / HTTP/1.1\r\nHost: a\r\nX\x00y: v\r\n\r\n", .bad_request);
    try expectErr(test_limits, "GET / HTTP/1.1\r\nHost: a\r\n\xc3\xa9: v\r\n\r\n", .bad_request);
    try expectErr(test_limits, "GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", .bad_request);
}

test "header field: whitespace between the name and the colon is a 400" {
    try expectErr(test_limits, "GET / HTTP/1.1\r\nHost : a\r\n\r\n", .bad_request);
    try expectErr(test_limits, "GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", .bad_request);
    const smuggle = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\nhello";
    try expectErr(test_limits, smuggle, .bad_request);
}

test "header field: the value is VCHAR, SP, HTAB and obs-text; other control bytes are a 400" {
    var parser = Parser.init(test_limits);
    const value = "a\tb c \x80\xff~!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}";
    const head = try expectHead(&parser, "GET / HTTP/1.1\r\nHost: a\r\nX: " ++ value ++ "\r\n\r\n");
    try testing.expectEqualStrings(value, head.field("x").?);
    const bad = [_][]const u8{ "\x00", "\x01", "\x08", "\x0b", "\x0c", "\x1b", "\x1f", "\x7f" };
    inline for (bad) |byte| {
        try expect400(get ++ "X: a" ++ byte ++ "b\r\n\r\n");
        const long = get ++ "X: 0123456789abcdefghijklmno" ++ byte ++ "\r\n\r\n";
        try expectErr(test_limits, long, .bad_request);
    }
}

test "header field: OWS around the value is trimmed" {
    var parser = Parser.init(test_limits);
    const input = "GET / HTTP/1.1\r\nHost:a\r\nX: \t v  a \t \r\nY:\r\nZ: \t\r\n\r\n";
    const head = try expectHead(&parser, input);
    try testing.expectEqualStrings("a", head.field("Host").?);
    try testing.expectEqualStrings("v  a", head.field("X").?);
    try testing.expectEqualStrings("", head.field("Y").?);
    try testing.expectEqualStrings("", head.field("Z").?);
    try testing.expectEqual(@as(usize, 4), head.fields.len);
}

test "header field: obs-fold (a line starting with SP or HTAB) is a 400" {
    try expectErr(test_limits, "GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n c\r\n\r\n", .bad_request);
    try expectErr(test_limits, "GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n\tc\r\n\r\n", .bad_request);
    // Whitespace between the request line and the first field, too.
    try expectErr(test_limits, "GET / HTTP/1.1\r\n Host: a\r\n\r\n", .bad_request);
    try expectErr(test_limits, "GET / HTTP/1.1\r\n \r\n\r\n", .bad_request);
}

test "header section: more than head_bytes is a 431, as soon as it is exceeded" {
    const head = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    const exact: Limits = .{ .request_line_bytes = 100, .head_bytes = head.len, .body_bytes = 0 };
    try expectValid(exact, head);
    const short: Limits = .{
        .request_line_bytes = 100,
        .head_bytes = head.len - 1,
        .body_bytes = 0,
    };
    try expectErr(short, head, .header_fields_too_large);
    // Without an end in sight: the error comes once the budget is passed.
    var parser = Parser.init(short);
    try testing.expect(parser.next(head[0 .. head.len - 1]).event == .need_more);
    try testing.expectEqual(Error.header_fields_too_large, parser.next(head ++ "X").event.err);
    // A request line longer than the whole head budget (but within its own).
    const tiny: Limits = .{ .request_line_bytes = 100, .head_bytes = 10, .body_bytes = 0 };
    try expectErr(tiny, "GET /abcdef HTTP/1.1\r\n", .header_fields_too_large);
    try expectErr(tiny, "GET /abcdefghijk", .header_fields_too_large);
}

test "header section: more than max_fields fields is a 431" {
    const line = "X: y\r\n";
    const fields = repeat(line, max_fields - 1);
    var parser = Parser.init(test_limits);
    const head = try expectHead(&parser, "GET / HTTP/1.1\r\nHost: a\r\n" ++ fields ++ "\r\n");
    try testing.expectEqual(@as(usize, max_fields), head.fields.len);
    const input = "GET / HTTP/1.1\r\nHost: a\r\n" ++ fields ++ line ++ "\r\n";
    try expectErr(test_limits, input, .header_fields_too_large);
}

test "Host: HTTP/1.1 without Host is a 400, two Host fields are a 400" {
    try expectErr(test_limits, "GET / HTTP/1.1\r\n\r\n", .bad_request);
    try expectErr(test_limits, "GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", .bad_request);
    try expectErr(test_limits, "GET / HTTP/1.0\r\nHost: a\r\nHOST: b\r\n\r\n", .bad_request);
    try expectValid(test_limits, "GET / HTTP/1.0\r\n\r\n");
    try expectValid(test_limits, "GET / HTTP/1.1\r\nhOsT: \r\n\r\n");
}

test "Content-Length: 1*DIGIT only" {
    var parser = Parser.init(test_limits);
    const head = try expectHead(&parser, post ++ "Content-Length: 007\r\n\r\n");
    try testing.expectEqual(@as(u64, 7), head.body.length);
    const bad = [_][]const u8{ "", " ", "+5", "-5", "5 5", "0x5", "5a", "a", "1_0", "5.0", "5;" };
    inline for (bad) |value| {
        const input = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: " ++ value ++ "\r\n\r\n";
        try expectErr(test_limits, input, .bad_request);
    }
    var parser_zero = Parser.init(test_limits);
    const zero = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n";
    try testing.expectEqual(@as(u64, 0), (try expectHead(&parser_zero, zero)).body.length);
    try testing.expect(parser_zero.next("").event == .end);
}

test "Content-Length: a value that does not fit in 64 bits is a 400, never a wrap-around" {
    const limits: Limits = .{
        .request_line_bytes = 100,
        .head_bytes = 1000,
        .body_bytes = 1 << 63,
    };
    const max = "18446744073709551615";
    const over = comptime [_][]const u8{
        "18446744073709551616",
        "99999999999999999999",
        repeat("1", 40),
    };
    inline for (over) |value| {
        const input = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: " ++ value ++ "\r\n\r\n";
        try expectErr(limits, input, .bad_request);
    }
    // The largest u64 parses, and is over any sensible limit.
    const largest = post ++ "Content-Length: " ++ max ++ "\r\n\r\n";
    try expectErr(limits, largest, .content_too_large);
    // Leading zeros do not count against the width.
    var parser = Parser.init(test_limits);
    const zeros = post ++ "Content-Length: 00000000000000000000000003\r\n\r\n";
    try testing.expectEqual(@as(u64, 3), (try expectHead(&parser, zeros)).body.length);
}

test "Content-Length: a list or repeated fields are accepted only when all values are equal" {
    var parser = Parser.init(test_limits);
    const same = post ++ "Content-Length: 5, 5\r\nContent-length: 05\r\n\r\nhello";
    try testing.expectEqual(@as(u64, 5), (try expectHead(&parser, same)).body.length);
    try expectValid(test_limits, same);
    try expect400(post ++ "Content-Length: 5, 6\r\n\r\n");
    try expect400(post ++ "Content-Length: 5\r\nContent-Length: 6\r\n\r\n");
    try expect400(post ++ "Content-Length: 5,\r\n\r\n");
    try expect400(post ++ "Content-Length: ,5\r\n\r\n");
}

test "Content-Length: above body_bytes is a 413, before the body is read" {
    const limits: Limits = .{ .request_line_bytes = 100, .head_bytes = 1000, .body_bytes = 10 };
    try expectValid(limits, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n0123456789");
    // No body byte has arrived: the 413 is known from the head alone.
    try expectErr(limits, post ++ "Content-Length: 11\r\n\r\n", .content_too_large);
}

test "Transfer-Encoding: chunked as the final (and only) coding frames the body" {
    const forms = [_][]const u8{
        "chunked", "Chunked", "CHUNKED", " chunked ", "chunked,", ", chunked", "\tchunked",
    };
    inline for (forms) |value| {
        var parser = Parser.init(test_limits);
        const input = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: " ++ value ++ "\r\n\r\n";
        const head = try expectHead(&parser, input);
        try testing.expect(head.body == .chunked);
        try testing.expect(!head.must_close);
    }
}

test "Transfer-Encoding: any coding besides chunked is a 501" {
    const values = [_][]const u8{
        "gzip, chunked", "identity, chunked", "x-unknown, chunked", "gzip;q=1, chunked",
    };
    inline for (values) |value| {
        const input = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: " ++ value ++ "\r\n\r\n";
        try expectErr(test_limits, input, .not_implemented);
    }
    // Spread over two fields, in order.
    const two = post ++ "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n";
    try expectErr(test_limits, two, .not_implemented);
}

test "Transfer-Encoding: a final coding other than chunked is a 400 (RFC 9112 6.3)" {
    const values = [_][]const u8{
        "gzip",        "identity", "chunked, gzip", "chunked, chunked", "", ",",
        "chunked;a=b", "chu nked", "\"chunked\"",
    };
    inline for (values) |value| {
        const input = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: " ++ value ++ "\r\n\r\n";
        try expectErr(test_limits, input, .bad_request);
    }
    try expect400(post ++ "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n");
}

test "Transfer-Encoding: in an HTTP/1.0 request is a 400" {
    try expect400("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
    try expect400("POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n");
}

test "Transfer-Encoding with Content-Length: the length is ignored and the connection closes" {
    var parser = Parser.init(test_limits);
    const input = post ++ "Content-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n" ++
        "3\r\nabc\r\n0\r\n\r\n";
    const head = try expectHead(&parser, input);
    try testing.expect(head.body == .chunked);
    try testing.expect(head.must_close);
    try testing.expect(head.keep_alive);
    try testing.expect(!head.persistent());
    try expectValid(test_limits, input);
    // The ignored length is still checked: conflicting copies remain a 400.
    try expect400(post ++ "Content-Length: 1, 2\r\nTransfer-Encoding: chunked\r\n\r\n");
}

/// The body of the first message of `input` (complete, given at once), concatenated.
fn collectBody(limits: Limits, input: []const u8, out: []u8) ![]const u8 {
    var parser = Parser.init(limits);
    var rest = input;
    var len: usize = 0;
    for (0..input.len + 4) |_| {
        const step = parser.next(rest);
        rest = rest[step.consumed..];
        switch (step.event) {
            .head => {},
            .body => |piece| {
                @memcpy(out[len..][0..piece.len], piece);
                len += piece.len;
            },
            .end => return out[0..len],
            else => return error.TestUnexpectedResult,
        }
    }
    return error.TestUnexpectedResult;
}

test "chunked: chunk-size is hex, overflow-checked" {
    const prefix = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    var out: [64]u8 = undefined;
    const chunks = "A\r\n0123456789\r\n00000000000000000000001\r\nx\r\n0\r\n\r\n";
    const body = try collectBody(test_limits, prefix ++ chunks, &out);
    try testing.expectEqualStrings("0123456789x", body);
    const zeros = try collectBody(test_limits, prefix ++ "2\r\nab\r\n000\r\n\r\n", &out);
    try testing.expectEqualStrings("ab", zeros);
    const bad = [_][]const u8{ "", "g", "-1", "+1", " 1", "0x1", "1 ", "1\t", "1 x" };
    inline for (bad) |size| try expect400(prefix ++ size ++ "\r\nx\r\n0\r\n\r\n");
    const huge: Limits = .{
        .request_line_bytes = 100,
        .head_bytes = 1000,
        .body_bytes = std.math.maxInt(u64),
    };
    try expectErr(huge, prefix ++ "10000000000000000\r\n", .bad_request);
    try expectErr(huge, prefix ++ repeat("f", 40) ++ "\r\n", .bad_request);
    // 16 hex digits fit.
    try testing.expect((try lastEvent(huge, prefix ++ "ffffffffffffffff\r\nab")) == .need_more);
}

test "chunked: extensions are ignored, and the size line is bounded" {
    const prefix = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    var out: [64]u8 = undefined;
    const input = prefix ++ "3;a=b;c=\"d e\"\r\nabc\r\n1 ; x\t;y\r\nd\r\n0;last\r\n\r\n";
    try testing.expectEqualStrings("abcd", try collectBody(test_limits, input, &out));
    const long = "1;" ++ repeat("x", chunk_line_bytes - 2);
    const longest = try collectBody(test_limits, prefix ++ long ++ "\r\na\r\n0\r\n\r\n", &out);
    try testing.expectEqualStrings("a", longest);
    try expectErr(test_limits, prefix ++ long ++ "x\r\na\r\n0\r\n\r\n", .bad_request);
    // Without a line end in sight: an error once the bound is passed.
    try expectErr(test_limits, prefix ++ long ++ "xx", .bad_request);
    try expectErr(test_limits, prefix ++ "1;a\x00\r\nx\r\n0\r\n\r\n", .bad_request);
}

test "chunked: chunk data must be followed by CRLF or LF" {
    const prefix = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    try expectValid(test_limits, prefix ++ "1\r\na\n0\r\n\r\n");
    try expectErr(test_limits, prefix ++ "1\r\nab\r\n0\r\n\r\n", .bad_request);
    try expectErr(test_limits, prefix ++ "1\r\na\rb0\r\n\r\n", .bad_request);
    try expectErr(test_limits, prefix ++ "1\r\na 0\r\n\r\n", .bad_request);
    // A CR at the end of the input waits for the next byte.
    try testing.expect((try lastEvent(test_limits, prefix ++ "1\r\na\r")) == .need_more);
}

test "chunked: chunk sizes summing above body_bytes are a 413" {
    const limits: Limits = .{ .request_line_bytes = 100, .head_bytes = 1000, .body_bytes = 5 };
    const prefix = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    try expectValid(limits, prefix ++ "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");
    // Known from the size line, before the chunk's data.
    try expectErr(limits, prefix ++ "3\r\nabc\r\n3\r\n", .content_too_large);
    try expectErr(limits, prefix ++ "6\r\n", .content_too_large);
}

test "chunked: trailer fields are checked like header fields, discarded and bounded" {
    const prefix = post ++ "Transfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n";
    try expectValid(test_limits, prefix ++ "A: 1\r\nB-c: x y\r\n\r\n");
    try expectErr(test_limits, prefix ++ "A : 1\r\n\r\n", .bad_request);
    try expectErr(test_limits, prefix ++ "A: 1\r\n folded\r\n\r\n", .bad_request);
    try expectErr(test_limits, prefix ++ "A: \x00\r\n\r\n", .bad_request);
    try expectValid(test_limits, prefix ++ repeat("T: 1\r\n", max_fields) ++ "\r\n");
    const many = prefix ++ repeat("T: 1\r\n", max_fields + 1) ++ "\r\n";
    try expectErr(test_limits, many, .header_fields_too_large);
    const limits: Limits = .{ .request_line_bytes = 100, .head_bytes = 100, .body_bytes = 10 };
    const trailer = "T: " ++ repeat("x", 80) ++ "\r\n";
    try expectValid(limits, prefix ++ trailer ++ "\r\n");
    try expectErr(limits, prefix ++ trailer ++ trailer ++ "\r\n", .header_fields_too_large);
    // Without an end in sight.
    try expectErr(limits, prefix ++ "T: " ++ repeat("x", 100), .header_fields_too_large);
}

test "Expect: 100-continue sets expect_continue; any other expectation is a 417" {
    var parser = Parser.init(test_limits);
    const input = post ++ "Expect: 100-Continue\r\nContent-Length: 1\r\n\r\nx";
    const head = try expectHead(&parser, input);
    try testing.expect(head.expect_continue);
    var parser_10 = Parser.init(test_limits);
    const input_10 = "POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx";
    try testing.expect(!(try expectHead(&parser_10, input_10)).expect_continue);
    var parser_none = Parser.init(test_limits);
    const plain = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    try testing.expect(!(try expectHead(&parser_none, plain)).expect_continue);
    try expectErr(test_limits, post ++ "Expect: 200-ok\r\n\r\n", .expectation_failed);
    const listed = post ++ "Expect: 100-continue, x\r\n\r\n";
    try expectErr(test_limits, listed, .expectation_failed);
}

test "Connection: a token list; close and keep-alive; 1.1 defaults to keep-alive, 1.0 to close" {
    const two_lists = get_10 ++ "Connection: x\r\nConnection: ,keep-alive,\r\n\r\n";
    const cases = [_]struct { input: []const u8, keep_alive: bool }{
        .{ .input = "GET / HTTP/1.1\r\nHost: a\r\n\r\n", .keep_alive = true },
        .{ .input = "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", .keep_alive = false },
        .{ .input = get ++ "Connection: Upgrade, CLOSE\r\n\r\n", .keep_alive = false },
        .{ .input = "GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n", .keep_alive = true },
        .{ .input = "GET / HTTP/1.0\r\n\r\n", .keep_alive = false },
        .{ .input = "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", .keep_alive = true },
        .{ .input = get_10 ++ "Connection: keep-alive, close\r\n\r\n", .keep_alive = false },
        .{ .input = two_lists, .keep_alive = true },
    };
    for (cases) |case| {
        var parser = Parser.init(test_limits);
        const head = try expectHead(&parser, case.input);
        try testing.expectEqual(case.keep_alive, head.keep_alive);
        try testing.expectEqual(case.keep_alive, head.persistent());
    }
    try expect400(get ++ "Connection: clo se\r\n\r\n");
}

test "GET / with bare LFs is an error, never need_more forever" {
    var parser = Parser.init(test_limits);
    try testing.expectEqual(Error.bad_request, parser.next("GET /\n\n").event.err);
}

test "after an error every call returns the same error" {
    var parser = Parser.init(test_limits);
    const first = parser.next("GET / HTTP/2.0\r\n\r\n");
    try testing.expectEqual(Error.version_not_supported, first.event.err);
    for ([_][]const u8{ "", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", "x" }) |input| {
        const step = parser.next(input);
        try testing.expectEqual(@as(usize, 0), step.consumed);
        try testing.expectEqual(Error.version_not_supported, step.event.err);
    }
}

test "a message without body is a head then an end; pipelined requests follow" {
    var parser = Parser.init(test_limits);
    const input = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n";
    const first = parser.next(input);
    try testing.expectEqualStrings("/1", first.event.head.target);
    const rest = input[first.consumed..];
    const end = parser.next(rest);
    try testing.expect(end.event == .end);
    try testing.expectEqual(@as(usize, 0), end.consumed);
    const second = parser.next(rest);
    try testing.expectEqualStrings("/2", second.event.head.target);
    try testing.expectEqual(rest.len, second.consumed);
    try testing.expect(parser.next("").event == .end);
    try testing.expect(parser.next("").event == .need_more);
}

test "body pieces are handed out as soon as bytes arrive" {
    var parser = Parser.init(test_limits);
    const head = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n";
    try testing.expectEqual(head.len, parser.next(head ++ "abc").consumed);
    const piece = parser.next("abc");
    try testing.expectEqualStrings("abc", piece.event.body);
    try testing.expectEqual(@as(usize, 3), piece.consumed);
    try testing.expect(parser.next("").event == .need_more);
    // Bytes of the next request are not taken as body.
    const last = parser.next("defghijGET");
    try testing.expectEqualStrings("defghij", last.event.body);
    try testing.expect(parser.next("GET").event == .end);
    try testing.expect(parser.next("GET").event == .need_more);
}

test "Head.field compares names case-insensitively and returns the first match" {
    var parser = Parser.init(test_limits);
    const head = try expectHead(&parser, get ++ "X-Tag: 1\r\nx-tag: 2\r\n\r\n");
    try testing.expectEqualStrings("1", head.field("X-TAG").?);
    try testing.expect(head.field("X-Ta") == null);
    try testing.expect(head.field("missing") == null);
}

test "Error: status codes (their phrases are in status.zig)" {
    try testing.expectEqual(@as(u16, 400), Error.bad_request.status());
    try testing.expectEqual(@as(u16, 414), Error.uri_too_long.status());
    try testing.expectEqual(@as(u16, 413), Error.content_too_large.status());
    try testing.expectEqual(@as(u16, 431), Error.header_fields_too_large.status());
    try testing.expectEqual(@as(u16, 501), Error.not_implemented.status());
    try testing.expectEqual(@as(u16, 505), Error.version_not_supported.status());
    try testing.expectEqual(@as(u16, 417), Error.expectation_failed.status());
}

test "a caller that shrinks the input below what was scanned gets an error, not a bad read" {
    var parser = Parser.init(test_limits);
    try testing.expect(parser.next("GET / HTTP/1.1\r\nHo").event == .need_more);
    try testing.expectEqual(Error.bad_request, parser.next("GET").event.err);
}

const all_errors = [_]Error{
    .bad_request,
    .uri_too_long,
    .content_too_large,
    .header_fields_too_large,
    .not_implemented,
    .version_not_supported,
    .expectation_failed,
};

/// Bytes the mutator likes to insert: line and field syntax, and what parsers trip over.
const special_bytes = "\r\n\x00 \t:,;\x7f\x80\xff0fF9-+\"";

/// Lines the mutator inserts at line starts: framing fields, alone or in conflict.
const special_lines = [_][]const u8{
    "Transfer-Encoding: chunked\r\n",
    "Transfer-Encoding: gzip, chunked\r\n",
    "Content-Length: 5\r\n",
    "Content-Length: 99999999999999999999999\r\n",
    "Host: b\r\n",
    "Expect: 100-continue\r\n",
    "Connection: close\r\n",
    " folded\r\n",
    "\r\n",
    "\n",
    "0\r\n\r\n",
    "ffffffffffffffffff\r\n",
};

/// Applies one random mutation to `buffer[0..len.*]` (bounded by `buffer.len`).
fn mutate(buffer: []u8, len: *usize, random: std.Random) void {
    const n = len.*;
    switch (random.uintLessThan(u8, 9)) {
        // Flip a bit.
        0 => if (n > 0) {
            const at = random.uintLessThan(usize, n);
            buffer[at] ^= @as(u8, 1) << random.int(u3);
        },
        // Insert a random byte or a special one.
        1, 2 => {
            const byte = if (random.boolean())
                random.int(u8)
            else
                special_bytes[random.uintLessThan(usize, special_bytes.len)];
            insert(buffer, len, random.uintAtMost(usize, n), &[1]u8{byte});
        },
        // Delete a run of bytes.
        3 => if (n > 0) {
            const at = random.uintLessThan(usize, n);
            const count = @min(n - at, 1 + random.uintLessThan(usize, 4));
            compat.copyLeft(buffer[at..], buffer[at + count .. n]);
            len.* = n - count;
        },
        // Duplicate a line.
        4 => if (lineAt(buffer[0..n], random)) |line| {
            if (line.end - line.start <= 256) {
                var copy: [256]u8 = undefined;
                @memcpy(copy[0 .. line.end - line.start], buffer[line.start..line.end]);
                insert(buffer, len, line.start, copy[0 .. line.end - line.start]);
            }
        },
        // Drop a line.
        5 => if (lineAt(buffer[0..n], random)) |line| {
            compat.copyLeft(buffer[line.start..], buffer[line.end..n]);
            len.* = n - (line.end - line.start);
        },
        // A huge number, decimal or hex.
        6 => {
            var digits: [48]u8 = undefined;
            const count = 17 + random.uintLessThan(usize, 32);
            const hex = random.boolean();
            for (digits[0..count]) |*d| {
                d.* = if (hex) "0123456789abcdef"[random.int(u4)] else '0' + random.int(u8) % 10;
            }
            insert(buffer, len, random.uintAtMost(usize, n), digits[0..count]);
        },
        // A framing line at a line start.
        7 => {
            const at = if (lineAt(buffer[0..n], random)) |line| line.start else 0;
            insert(buffer, len, at, special_lines[random.uintLessThan(usize, special_lines.len)]);
        },
        // Truncate.
        8 => len.* = random.uintAtMost(usize, n),
        else => unreachable,
    }
}

/// A random line of `bytes` (start of the line to just after its LF), if it has one.
fn lineAt(bytes: []const u8, random: std.Random) ?struct { start: usize, end: usize } {
    if (bytes.len == 0) return null;
    const from = random.uintLessThan(usize, bytes.len);
    const start = if (compat.findScalarLast(u8, bytes[0..from], '\n')) |lf| lf + 1 else 0;
    const end = if (compat.findScalar(u8, bytes[from..], '\n')) |lf| from + lf + 1 else bytes.len;
    return .{ .start = start, .end = end };
}

fn insert(buffer: []u8, len: *usize, at: usize, bytes: []const u8) void {
    const n = len.*;
    assert(at <= n);
    if (n + bytes.len > buffer.len) return;
    // Move the tail right, from its end.
    var i = n;
    while (i > at) : (i -= 1) buffer[i - 1 + bytes.len] = buffer[i - 1];
    @memcpy(buffer[at..][0..bytes.len], bytes);
    len.* = n + bytes.len;
}

test "mutants: no crash, the contract holds, and the outcome does not depend on the reads" {
    var prng = std.Random.DefaultPrng.init(0x5eed_1234_abcd_0001);
    const random = prng.random();
    var outcomes: [3]u32 = @splat(0); // complete, error, truncated
    var statuses: [all_errors.len]u32 = @splat(0);
    for (0..20_000) |i| {
        var buffer: [4096]u8 = undefined;
        const source = corpus[random.uintLessThan(usize, corpus.len)];
        @memcpy(buffer[0..source.len], source);
        var len = source.len;
        for (0..1 + random.uintLessThan(usize, 4)) |_| mutate(&buffer, &len, random);
        const data = buffer[0..len];
        // Every fourth mutant meets small limits, so that 413, 414 and 431 are reached; some
        // meet the extremes.
        const limits = switch (i % 8) {
            0, 4 => small_limits,
            1 => zero_limits,
            2 => max_limits,
            else => test_limits,
        };
        var whole: Transcript = .{};
        try drive(limits, data, .all, &whole);
        var pieces: Transcript = .{};
        try drive(limits, data, .{ .random = random }, &pieces);
        try testing.expectEqualStrings(whole.slice(), pieces.slice());
        if (compat.find(u8, whole.slice(), "\nX ") != null) {
            outcomes[1] += 1;
            for (all_errors, &statuses) |e, *count| {
                var text: [8]u8 = undefined;
                const mark = try compat.bufPrint(&text, "\nX {d}\n", .{e.status()});
                if (std.mem.endsWith(u8, whole.slice(), mark)) count.* += 1;
            }
        } else if (std.mem.endsWith(u8, whole.slice(), "\nN 0\n")) {
            outcomes[0] += 1;
        } else {
            outcomes[2] += 1;
        }
    }
    // The mutants reach every outcome, and every error.
    for (outcomes) |count| try testing.expect(count > 1000);
    for (statuses) |count| try testing.expect(count > 0);
}

/// Inputs the fuzz test received with bytes in them (to check that the corpus gets through
/// `compat.fuzz` on every release).
var fuzz_inputs: u32 = 0;

fn fuzzOne(_: void, data: []const u8) anyerror!void {
    if (data.len > 0) fuzz_inputs += 1;
    for ([_]Limits{ test_limits, small_limits, zero_limits, max_limits }) |limits| {
        var whole: Transcript = .{};
        try drive(limits, data, .all, &whole);
        var halves: Transcript = .{};
        try drive(limits, data, .{ .split = data.len / 2 }, &halves);
        try testing.expectEqualStrings(whole.slice(), halves.slice());
        var bytes: Transcript = .{};
        try drive(limits, data, .{ .pieces = 1 }, &bytes);
        try testing.expectEqualStrings(whole.slice(), bytes.slice());
    }
}

test "fuzz: any bytes, split anywhere, end in the same defined events" {
    fuzz_inputs = 0;
    try compat.fuzz({}, fuzzOne, &corpus);
    // Without --fuzz, the test runs the corpus only: each entry must arrive whole.
    if (!@import("builtin").fuzz) try testing.expectEqual(@as(u32, corpus.len), fuzz_inputs);
}
