//! The resp module of examples/resp.json: a subset of the Redis protocol (RESP2) over a raw
//! stream. Commands: PING [message], ECHO message, GET key, SET key value, DEL key [key …],
//! INCR key, INCRBY key increment, KEYS pattern (Redis's glob: `*`, `?`, `[a-z]`, `[^x]`, `\`
//! escapes), CLIENT SETNAME name, CLIENT GETNAME, CONFIG GET parameter (empty values, for
//! clients that ask), SELECT 0, DEBUG SLEEP seconds, QUIT. Requests are
//! arrays of bulk strings or inline commands (`PING\r\n`); pipelined requests are answered in
//! one write. Integers and lengths are read as redis-server reads them (no `+`, `_` or leading
//! zero), and nothing pipelined after QUIT runs.
//!
//! Large values: a command may be as large as the spec's `maxFrameBytes` (16 MiB in
//! examples/resp.json; a command larger than the read buffer is gathered in a frame buffer).
//! A bulk length that would take its command past that is refused at once with
//! `-ERR Protocol error: invalid bulk length`, then the connection closes, as redis-server
//! does past its `proto-max-bulk-len`. Replies larger than the write buffer (a GET of such a
//! value, or the answers to a long pipeline that the client reads only at the end) wait in
//! the worker's output pool.
//!
//! DEBUG SLEEP shows a connection's timer and its own back-pressure: Redis stops its whole
//! server for that long; here only the connection waits. Its reading is paused (what the
//! client sends meanwhile stays in the kernel's buffers, which slows the client) and its
//! timer answers `+OK` and resumes reading when the time is up.
//!
//! When the worker drains (a stop or a restart), a connection between commands closes at once,
//! so that its client reconnects to the new workers now rather than at the drain timeout
//! (Redis clients reconnect after a server restart anyway); one in the middle of a command (a
//! DEBUG SLEEP, a command partly read) closes once what it sent is answered. Nothing is said
//! first: a RESP2 client would read an unasked message as the answer to its next command.
//!
//! Data lives in the worker's `State`: per process. Two clients served by different workers
//! see different data, as with one Redis per core; a client keeps its worker for the life of
//! its connection. This is the example's real implementation; the e2e test and the bench copy
//! it over the generated stub.
const std = @import("std");
const compat = @import("../compat.zig");
const stream = @import("../handlers/app_stream.zig");
const service = @import("../handlers/app.zig").resp;

/// Slots of the key table (a power of two); at most three quarters hold keys.
const table_slots = 1 << 16;
const max_keys = table_slots / 4 * 3;
const max_args = 16;
const max_name_bytes = 64;
/// The longest DEBUG SLEEP, in milliseconds.
const max_sleep_ms = 60_000;
/// Longest inline command line, and longest `*`/`$` header line.
const max_line_bytes = 4096;
/// A key and value this small live in the table itself: SET and INCR of small values
/// allocate nothing.
const inline_bytes = 112;

const Entry = struct {
    used: bool = false,
    /// A deleted key: probing continues past it.
    tombstone: bool = false,
    key_len: u32 = 0,
    len: u32 = 0,
    small: [inline_bytes]u8 = undefined,
    /// `key ++ value` when longer than `inline_bytes`.
    big: ?[]u8 = null,

    fn joined(self: *const Entry) []const u8 {
        return if (self.big) |b| b else self.small[0..self.len];
    }

    fn key(self: *const Entry) []const u8 {
        return self.joined()[0..self.key_len];
    }

    fn value(self: *const Entry) []const u8 {
        return self.joined()[self.key_len..];
    }
};

/// Per worker (per process): the key table.
pub const State = struct {
    allocator: std.mem.Allocator,
    entries: []Entry,
    keys: usize = 0,

    pub fn init(allocator: std.mem.Allocator) !State {
        const entries = try allocator.alloc(Entry, table_slots);
        @memset(entries, .{});
        return .{ .allocator = allocator, .entries = entries };
    }

    pub fn deinit(self: *State, allocator: std.mem.Allocator) void {
        for (self.entries) |e| {
            if (e.big) |b| allocator.free(b);
        }
        allocator.free(self.entries);
    }

    fn slotOf(k: []const u8) usize {
        return @truncate(std.hash.Wyhash.hash(0, k));
    }

    /// The slot holding `key`, or null.
    fn find(self: *State, k: []const u8) ?*Entry {
        var i = slotOf(k);
        var probes: usize = 0;
        while (probes < table_slots) : (probes += 1) {
            const e = &self.entries[i & (table_slots - 1)];
            if (!e.used and !e.tombstone) return null;
            if (e.used and std.mem.eql(u8, e.key(), k)) return e;
            i += 1;
        }
        return null;
    }

    fn set(self: *State, k: []const u8, v: []const u8) !void {
        const e = self.find(k) orelse try self.claim(k);
        const total = k.len + v.len;
        if (total <= inline_bytes) {
            if (e.big) |b| self.allocator.free(b);
            e.big = null;
            @memcpy(e.small[0..k.len], k);
            @memcpy(e.small[k.len..total], v);
        } else {
            const joined = try self.allocator.alloc(u8, total);
            @memcpy(joined[0..k.len], k);
            @memcpy(joined[k.len..], v);
            if (e.big) |b| self.allocator.free(b);
            e.big = joined;
        }
        e.key_len = @intCast(k.len);
        e.len = @intCast(total);
    }

    /// A free slot for a new key, marked used (its bytes are set by the caller).
    fn claim(self: *State, k: []const u8) !*Entry {
        if (self.keys >= max_keys) return error.TooManyKeys;
        var i = slotOf(k);
        var probes: usize = 0;
        while (probes < table_slots) : (probes += 1) {
            const e = &self.entries[i & (table_slots - 1)];
            if (!e.used) {
                e.* = .{ .used = true };
                self.keys += 1;
                return e;
            }
            i += 1;
        }
        unreachable; // At most three quarters of the slots are used.
    }

    fn del(self: *State, k: []const u8) bool {
        const e = self.find(k) orelse return false;
        if (e.big) |b| self.allocator.free(b);
        e.* = .{ .tombstone = true };
        self.keys -= 1;
        return true;
    }
};

/// Per connection: the name CLIENT SETNAME gave it, and whether it is in DEBUG SLEEP.
pub const Connection = struct {
    name: [max_name_bytes]u8 = undefined,
    name_len: u8 = 0,
    sleeping: bool = false,
    /// QUIT was answered: nothing after it runs.
    quitting: bool = false,
    /// Input waits that is not answered yet: part of a command, or commands behind a sleep.
    pending: bool = false,
    /// The worker drains: the connection closes once nothing waits.
    closing: bool = false,
};

const Command = struct {
    args: [max_args][]const u8 = undefined,
    argc: usize = 0,
    /// Bytes of input the command took.
    len: usize = 0,
};

const Parse = union(enum) {
    command: Command,
    need_more,
    protocol_error: []const u8,
};

fn line(input: []const u8) ?[]const u8 {
    const window = input[0..@min(input.len, max_line_bytes + 2)];
    for (window, 0..) |c, i| {
        if (c == '\n') return input[0..i];
    }
    return null;
}

fn trimCr(s: []const u8) []const u8 {
    return if (s.len > 0 and s[s.len - 1] == '\r') s[0 .. s.len - 1] else s;
}

/// An integer as Redis reads one (its string2ll): an optional '-' for a signed type, then
/// "0" or digits without a leading zero; no '+', no '_', no spaces, nothing after. Zig's
/// parseInt would take `+1`, `1_0` and `01`, which redis-server refuses.
fn strictInt(comptime T: type, text: []const u8) ?T {
    const negative = text.len > 0 and text[0] == '-';
    if (negative and @typeInfo(T).int.signedness == .unsigned) return null;
    const digits = if (negative) text[1..] else text;
    if (digits.len == 0 or digits.len > 20) return null;
    if (digits[0] == '0' and (digits.len > 1 or negative)) return null;
    var value: T = 0;
    for (digits) |c| {
        if (c < '0' or c > '9') return null;
        const d: T = @intCast(c - '0');
        value = std.math.mul(T, value, 10) catch return null;
        value = (if (negative) std.math.sub(T, value, d) else std.math.add(T, value, d)) catch
            return null;
    }
    return value;
}

/// Cuts the first command of `input`; a command longer than `max_input` bytes is refused
/// (the module is never handed more input than that at once).
fn parse(input: []const u8, max_input: usize) Parse {
    if (input.len == 0) return .need_more;
    if (input[0] != '*') return parseInline(input);
    var cmd: Command = .{};
    const head = line(input) orelse {
        if (input.len > max_line_bytes) return .{ .protocol_error = "too long header" };
        return .need_more;
    };
    const count = strictInt(usize, trimCr(head[1..])) orelse
        return .{ .protocol_error = "invalid multibulk length" };
    if (count > max_args) return .{ .protocol_error = "too many arguments" };
    var at = head.len + 1;
    while (cmd.argc < count) : (cmd.argc += 1) {
        const rest = input[at..];
        if (rest.len == 0) return .need_more;
        if (rest[0] != '$') return .{ .protocol_error = "expected '$'" };
        const size_line = line(rest) orelse return .need_more;
        const size = strictInt(usize, trimCr(size_line[1..])) orelse
            return .{ .protocol_error = "invalid bulk length" };
        const start = at + size_line.len + 1;
        if (size > max_input or start + size + 2 > max_input) {
            return .{ .protocol_error = "invalid bulk length" };
        }
        if (input.len < start + size + 2) return .need_more;
        cmd.args[cmd.argc] = input[start..][0..size];
        at = start + size + 2;
    }
    cmd.len = at;
    return .{ .command = cmd };
}

fn parseInline(input: []const u8) Parse {
    const text = line(input) orelse {
        if (input.len > max_line_bytes) return .{ .protocol_error = "too big inline request" };
        return .need_more;
    };
    var cmd: Command = .{ .len = text.len + 1 };
    var words = std.mem.tokenizeAny(u8, trimCr(text), " \t");
    while (words.next()) |w| {
        if (cmd.argc == max_args) return .{ .protocol_error = "too many arguments" };
        cmd.args[cmd.argc] = w;
        cmd.argc += 1;
    }
    return .{ .command = cmd };
}

fn is(arg: []const u8, name: []const u8) bool {
    return std.ascii.eqlIgnoreCase(arg, name);
}

/// Room a reply needs at most, besides the value it carries.
const reply_overhead = 64;

/// Parses and answers every complete command that fits in the output; returns the bytes used.
pub fn bytes(state: *State, conn: *Connection, input: []const u8, io: *stream.Io) !usize {
    var used: usize = 0;
    // Each command takes at least one byte.
    while (used < input.len) {
        const cmd = switch (parse(input[used..], io.maxInput())) {
            .need_more => break,
            .protocol_error => |why| {
                io.print("-ERR Protocol error: {s}\r\n", .{why}) catch {};
                io.close();
                return input.len;
            },
            .command => |c| c,
        };
        if (!try answer(state, conn, cmd.args[0..cmd.argc], io)) break;
        used += cmd.len;
        // Redis closes after QUIT's +OK: what was pipelined behind it is never run.
        if (conn.quitting) return input.len;
        // The commands after a DEBUG SLEEP wait for its end (reading is paused).
        if (conn.sleeping) break;
    }
    conn.pending = used < input.len;
    if (conn.closing and !conn.pending and !conn.sleeping) io.close();
    return used;
}

/// The worker drains: close now, or once what the client sent is answered.
pub fn draining(state: *State, conn: *Connection, io: *stream.Io) !void {
    _ = state;
    conn.closing = true;
    if (!conn.pending and !conn.sleeping) io.close();
}

/// Input larger than the module may be handed that is no command it can refuse by its
/// length (an inline command without its line end, say): answered, then closed.
pub fn tooLarge(state: *State, conn: *Connection, io: *stream.Io) !void {
    _ = state;
    _ = conn;
    try io.write("-ERR Protocol error: too big request\r\n");
}

/// The connection's timer: its DEBUG SLEEP is over.
pub fn timer(state: *State, conn: *Connection, io: *stream.Io) !void {
    _ = state;
    if (!conn.sleeping) return;
    conn.sleeping = false;
    try io.write("+OK\r\n");
    io.resumeReading();
    // Commands that waited behind the sleep are answered first (then `bytes` closes).
    if (conn.closing and !conn.pending) io.close();
}

/// The longest value the reply to `args` carries: GET's value, or an argument echoed back.
fn longestValue(state: *State, args: []const []const u8) usize {
    const name = args[0];
    var longest: usize = 0;
    if (is(name, "GET")) {
        const e = if (args.len == 2) state.find(args[1]) else null;
        longest = if (e) |found| found.value().len else 0;
    } else if (is(name, "PING") or is(name, "ECHO") or is(name, "CONFIG")) {
        for (args) |a| longest = @max(longest, a.len);
    }
    return longest;
}

/// Writes the reply; false when it does not fit now (the command is offered again later).
fn answer(state: *State, conn: *Connection, args: []const []const u8, io: *stream.Io) !bool {
    if (args.len == 0) return true;
    const name = args[0];
    if (io.free() < longestValue(state, args) + reply_overhead) return false;
    if (is(name, "PING")) {
        if (args.len == 1) try io.write("+PONG\r\n") else try bulk(io, args[1]);
    } else if (is(name, "ECHO")) {
        if (args.len != 2) return wrongArity(io, "echo");
        try bulk(io, args[1]);
    } else if (is(name, "GET")) {
        if (args.len != 2) return wrongArity(io, "get");
        if (state.find(args[1])) |e| try bulk(io, e.value()) else try io.write("$-1\r\n");
    } else if (is(name, "SET")) {
        if (args.len != 3) return try syntaxError(io);
        state.set(args[1], args[2]) catch |err| switch (err) {
            error.TooManyKeys => {
                try io.write("-ERR too many keys\r\n");
                return true;
            },
            else => return err,
        };
        try io.write("+OK\r\n");
    } else if (is(name, "DEL")) {
        if (args.len < 2) return wrongArity(io, "del");
        var n: usize = 0;
        for (args[1..]) |k| {
            if (state.del(k)) n += 1;
        }
        try io.print(":{d}\r\n", .{n});
    } else if (is(name, "INCR")) {
        if (args.len != 2) return wrongArity(io, "incr");
        try incrBy(state, args[1], 1, io);
    } else if (is(name, "INCRBY")) {
        if (args.len != 3) return wrongArity(io, "incrby");
        if (strictInt(i64, args[2])) |by| {
            try incrBy(state, args[1], by, io);
        } else {
            try io.write("-ERR value is not an integer or out of range\r\n");
        }
    } else if (is(name, "KEYS")) {
        if (args.len != 2) return wrongArity(io, "keys");
        return keys(state, args[1], io);
    } else if (is(name, "CLIENT")) {
        try client(conn, args, io);
    } else if (is(name, "CONFIG") and args.len == 3 and is(args[1], "GET")) {
        try io.write("*2\r\n");
        try bulk(io, args[2]);
        try io.write("$0\r\n\r\n");
    } else if (is(name, "SELECT")) {
        if (args.len == 2 and std.mem.eql(u8, args[1], "0")) {
            try io.write("+OK\r\n");
        } else {
            try io.write("-ERR DB index is out of range\r\n");
        }
    } else if (is(name, "DEBUG")) {
        try debug(conn, args, io);
    } else if (is(name, "QUIT")) {
        try io.write("+OK\r\n");
        conn.quitting = true;
        io.close();
    } else {
        const shown = name[0..@min(name.len, 32)];
        try io.print("-ERR unknown command '{s}'\r\n", .{shown});
    }
    return true;
}

fn bulk(io: *stream.Io, value: []const u8) !void {
    try io.print("${d}\r\n", .{value.len});
    try io.write(value);
    try io.write("\r\n");
}

fn wrongArity(io: *stream.Io, comptime command: []const u8) !bool {
    try io.write("-ERR wrong number of arguments for '" ++ command ++ "' command\r\n");
    return true;
}

fn syntaxError(io: *stream.Io) !bool {
    try io.write("-ERR syntax error\r\n");
    return true;
}

fn incrBy(state: *State, k: []const u8, by: i64, io: *stream.Io) !void {
    const current: i64 = if (state.find(k)) |e|
        strictInt(i64, e.value()) orelse {
            return io.write("-ERR value is not an integer or out of range\r\n");
        }
    else
        0;
    const next = std.math.add(i64, current, by) catch {
        return io.write("-ERR increment or decrement would overflow\r\n");
    };
    var buf: [24]u8 = undefined;
    const text = compat.bufPrint(&buf, "{d}", .{next}) catch unreachable;
    state.set(k, text) catch |err| switch (err) {
        error.TooManyKeys => return io.write("-ERR too many keys\r\n"),
        else => return err,
    };
    try io.print(":{d}\r\n", .{next});
}

/// KEYS pattern: an array of the keys that match, in table order (Redis's order is its hash
/// table's too). False when the reply does not fit now (offered again later, as GET's is).
fn keys(state: *State, pattern: []const u8, io: *stream.Io) !bool {
    var count: usize = 0;
    var size: usize = 0;
    for (state.entries) |*e| {
        if (!e.used or !globMatch(pattern, e.key())) continue;
        count += 1;
        size += e.key_len + 16;
    }
    if (io.free() < size + reply_overhead) return false;
    try io.print("*{d}\r\n", .{count});
    for (state.entries) |*e| {
        if (e.used and globMatch(pattern, e.key())) try bulk(io, e.key());
    }
    return true;
}

/// Redis's glob: `*` any bytes, `?` one byte, `[abc]`, `[a-z]` and `[^…]` one byte of (or
/// not of) a set, `\` takes the next byte as it is. Case matters. A star's match is widened
/// one byte at a time when what follows it fails (every other token takes one byte, so the
/// last star is the only one to go back to).
fn globMatch(pattern: []const u8, text: []const u8) bool {
    var p: usize = 0;
    var t: usize = 0;
    var star: ?usize = null;
    var star_text: usize = 0;
    while (t < text.len) {
        if (p < pattern.len and pattern[p] == '*') {
            star = p;
            star_text = t;
            p += 1;
            continue;
        }
        if (p < pattern.len) {
            if (oneByte(pattern[p..], text[t])) |taken| {
                p += taken;
                t += 1;
                continue;
            }
        }
        const s = star orelse return false;
        p = s + 1;
        star_text += 1;
        t = star_text;
    }
    while (p < pattern.len and pattern[p] == '*') p += 1;
    return p == pattern.len;
}

/// How many pattern bytes the token at the start of `pattern` takes when it matches `c`
/// (one byte of text), or null.
fn oneByte(pattern: []const u8, c: u8) ?usize {
    switch (pattern[0]) {
        '?' => return 1,
        '\\' => {
            if (pattern.len == 1) return if (c == '\\') 1 else null;
            return if (pattern[1] == c) 2 else null;
        },
        '[' => return byteClass(pattern, c),
        else => return if (pattern[0] == c) 1 else null,
    }
}

/// `[…]` at the start of `pattern` (an unclosed one runs to the pattern's end, as in Redis).
fn byteClass(pattern: []const u8, c: u8) ?usize {
    var i: usize = 1;
    const negated = i < pattern.len and pattern[i] == '^';
    if (negated) i += 1;
    var found = false;
    while (i < pattern.len and pattern[i] != ']') {
        if (pattern[i] == '\\' and i + 1 < pattern.len) {
            if (pattern[i + 1] == c) found = true;
            i += 2;
        } else if (i + 2 < pattern.len and pattern[i + 1] == '-' and pattern[i + 2] != ']') {
            const low = @min(pattern[i], pattern[i + 2]);
            const high = @max(pattern[i], pattern[i + 2]);
            if (c >= low and c <= high) found = true;
            i += 3;
        } else {
            if (pattern[i] == c) found = true;
            i += 1;
        }
    }
    const taken = if (i < pattern.len) i + 1 else i;
    return if (found != negated) taken else null;
}

/// DEBUG SLEEP seconds (a decimal, like Redis's): answers once they have passed.
fn debug(conn: *Connection, args: []const []const u8, io: *stream.Io) !void {
    if (args.len != 3 or !is(args[1], "SLEEP")) {
        return io.write("-ERR DEBUG subcommand not supported (only SLEEP)\r\n");
    }
    const seconds = std.fmt.parseFloat(f64, args[2]) catch
        return io.write("-ERR value is not a valid float\r\n");
    if (!(seconds >= 0)) return io.write("-ERR value is not a valid float\r\n");
    const ms: u32 = @intFromFloat(@min(seconds * 1000, max_sleep_ms));
    if (ms == 0) return io.write("+OK\r\n");
    conn.sleeping = true;
    io.setTimer(ms);
    io.pauseReading();
}

fn client(conn: *Connection, args: []const []const u8, io: *stream.Io) !void {
    if (args.len == 3 and is(args[1], "SETNAME")) {
        const name = args[2];
        if (name.len > max_name_bytes) return io.write("-ERR client name too long\r\n");
        for (name) |c| {
            if (c <= ' ' or c > '~') {
                return io.write("-ERR Client names cannot contain spaces, newlines or " ++
                    "special characters.\r\n");
            }
        }
        @memcpy(conn.name[0..name.len], name);
        conn.name_len = @intCast(name.len);
        return io.write("+OK\r\n");
    }
    if (args.len == 2 and is(args[1], "GETNAME")) {
        if (conn.name_len == 0) return io.write("$-1\r\n");
        return bulk(io, conn.name[0..conn.name_len]);
    }
    try io.write("-ERR unknown subcommand or wrong number of arguments for 'CLIENT'\r\n");
}

test "answers pipelined commands, arrays and inline, in order" {
    var state = try State.init(std.testing.allocator);
    defer state.deinit(std.testing.allocator);
    var conn: service.Connection = .{};
    const input = "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nv1\r\n" ++
        "*2\r\n$3\r\nGET\r\n$1\r\nk\r\nINCR n\r\nINCR n\r\nPING\r\n" ++
        "*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\nDEL k n missing\r\nGET k\r\n";
    const reply = try service.testBytes(&state, &conn, input);
    try std.testing.expectEqualStrings("+OK\r\n$2\r\nv1\r\n:1\r\n:2\r\n+PONG\r\n$2\r\nhi\r\n" ++
        ":2\r\n$-1\r\n", reply);
}

test "a connection keeps its name; a bad request closes with an error" {
    var state = try State.init(std.testing.allocator);
    defer state.deinit(std.testing.allocator);
    var conn: service.Connection = .{};
    const input = "CLIENT GETNAME\r\nCLIENT SETNAME app\r\nCLIENT GETNAME\r\n";
    const named = try service.testBytes(&state, &conn, input);
    try std.testing.expectEqualStrings("$-1\r\n+OK\r\n$3\r\napp\r\n", named);
    const bad = try service.testBytes(&state, &conn, "*x\r\n");
    try std.testing.expect(std.mem.startsWith(u8, bad, "-ERR Protocol error"));
}

test "DEBUG SLEEP answers from the connection's timer; commands after it wait" {
    var state = try State.init(std.testing.allocator);
    defer state.deinit(std.testing.allocator);
    var conn: service.Connection = .{};
    const slept = try service.testBytes(&state, &conn, "PING\r\nDEBUG SLEEP 0.25\r\nPING\r\n");
    try std.testing.expectEqualStrings("+PONG\r\n", slept);
    try std.testing.expectEqual(@as(?u32, 250), conn.timer_ms);
    try std.testing.expect(conn.reading_paused);
    try std.testing.expectEqualStrings("+OK\r\n", try service.testTimer(&state, &conn));
    try std.testing.expect(!conn.reading_paused);
    try std.testing.expectError(error.NoTimerArmed, service.testTimer(&state, &conn));
    const after = try service.testBytes(&state, &conn, "PING\r\n");
    try std.testing.expectEqualStrings("+PONG\r\n", after);
    const bad = try service.testBytes(&state, &conn, "DEBUG SLEEP x\r\nDEBUG SLEEP 0\r\n");
    try std.testing.expectEqualStrings("-ERR value is not a valid float\r\n+OK\r\n", bad);
}

test "integers and lengths as redis-server reads them; INCRBY; nothing runs after QUIT" {
    try std.testing.expectEqual(@as(?i64, -42), strictInt(i64, "-42"));
    try std.testing.expectEqual(@as(?usize, 0), strictInt(usize, "0"));
    for ([_][]const u8{ "+1", "1_0", "01", "-0", "", "-", " 1", "1 ", "-1" }) |bad| {
        try std.testing.expectEqual(@as(?usize, null), strictInt(usize, bad));
    }
    try std.testing.expectEqual(@as(?i64, null), strictInt(i64, "9223372036854775808"));
    var state = try State.init(std.testing.allocator);
    defer state.deinit(std.testing.allocator);
    var conn: service.Connection = .{};
    const counted = try service.testBytes(&state, &conn, "INCRBY n 10\r\nINCRBY n -3\r\n" ++
        "INCRBY n 1_0\r\nSET s 01\r\nINCR s\r\n");
    try std.testing.expectEqualStrings(":10\r\n:7\r\n" ++
        "-ERR value is not an integer or out of range\r\n+OK\r\n" ++
        "-ERR value is not an integer or out of range\r\n", counted);
    const bad_lengths = [_][]const u8{
        "*+1\r\n$4\r\nPING\r\n",
        "*1\r\n$+4\r\nPING\r\n",
        "*1\r\n$0_4\r\nPING\r\n",
    };
    for (bad_lengths) |bad| {
        var fresh: service.Connection = .{};
        const reply = try service.testBytes(&state, &fresh, bad);
        try std.testing.expect(std.mem.startsWith(u8, reply, "-ERR Protocol error"));
    }
    var quitter: service.Connection = .{};
    const quit = try service.testBytes(&state, &quitter, "PING\r\nQUIT\r\nSET q 1\r\nPING\r\n");
    try std.testing.expectEqualStrings("+PONG\r\n+OK\r\n", quit);
    try std.testing.expect(state.find("q") == null);
}

test "KEYS answers the keys a glob matches, as redis-server does" {
    var state = try State.init(std.testing.allocator);
    defer state.deinit(std.testing.allocator);
    var conn: service.Connection = .{};
    const set = try service.testBytes(&state, &conn, "SET kv:a 1\r\nSET kv:ab 2\r\n" ++
        "SET other 3\r\nSET kv:* 4\r\n");
    try std.testing.expectEqualStrings("+OK\r\n+OK\r\n+OK\r\n+OK\r\n", set);
    const none = try service.testBytes(&state, &conn, "KEYS nothing*\r\n");
    try std.testing.expectEqualStrings("*0\r\n", none);
    const one = try service.testBytes(&state, &conn, "KEYS kv:a?\r\n");
    try std.testing.expectEqualStrings("*1\r\n$5\r\nkv:ab\r\n", one);
    const escaped = try service.testBytes(&state, &conn, "*2\r\n$4\r\nKEYS\r\n$5\r\nkv:\\*\r\n");
    try std.testing.expectEqualStrings("*1\r\n$4\r\nkv:*\r\n", escaped);
    const arity = try service.testBytes(&state, &conn, "KEYS\r\n");
    try std.testing.expect(std.mem.startsWith(u8, arity, "-ERR wrong number of arguments"));
    // Table order is the hash's: the three kv: keys in some order.
    const all = try service.testBytes(&state, &conn, "KEYS kv:*\r\n");
    try std.testing.expect(std.mem.startsWith(u8, all, "*3\r\n"));
    try std.testing.expect(std.mem.indexOf(u8, all, "$4\r\nkv:a\r\n") != null);
    try std.testing.expect(std.mem.indexOf(u8, all, "$5\r\nkv:ab\r\n") != null);
    try std.testing.expect(std.mem.indexOf(u8, all, "$4\r\nkv:*\r\n") != null);
}

test "glob patterns: stars, classes, ranges, negation, escapes" {
    const cases = [_]struct { []const u8, []const u8, bool }{
        .{ "*", "", true },
        .{ "*", "anything", true },
        .{ "a*b*c", "aXbYbZc", true },
        .{ "a*b*c", "aXbYbZ", false },
        .{ "h?llo", "hello", true },
        .{ "h?llo", "hllo", false },
        .{ "h[ae]llo", "hallo", true },
        .{ "h[ae]llo", "hillo", false },
        .{ "h[^e]llo", "hallo", true },
        .{ "h[^e]llo", "hello", false },
        .{ "h[a-b]llo", "hbllo", true },
        .{ "h[b-a]llo", "hbllo", true },
        .{ "h[a-b]llo", "hcllo", false },
        .{ "h\\*", "h*", true },
        .{ "h\\*", "hx", false },
        .{ "[\\]]x", "]x", true },
        .{ "kv:", "kv:a", false },
        .{ "*a", "bbbba", true },
        .{ "*a", "bbbb", false },
        .{ "Kv:*", "kv:a", false },
    };
    for (cases) |c| {
        std.testing.expectEqual(c[2], globMatch(c[0], c[1])) catch |err| {
            std.debug.print("pattern {s} text {s}\n", .{ c[0], c[1] });
            return err;
        };
    }
}

test "draining closes a connection between commands at once, a sleeping one after its answer" {
    var state = try State.init(std.testing.allocator);
    defer state.deinit(std.testing.allocator);
    var idle: service.Connection = .{};
    const pong = try service.testBytes(&state, &idle, "PING\r\n");
    try std.testing.expectEqualStrings("+PONG\r\n", pong);
    const closed = try service.testDrain(&state, &idle);
    try std.testing.expect(closed.close);
    try std.testing.expectEqualStrings("", closed.bytes);
    var sleeper: service.Connection = .{};
    _ = try service.testBytes(&state, &sleeper, "DEBUG SLEEP 1\r\n");
    const told = try service.testDrain(&state, &sleeper);
    try std.testing.expect(!told.close);
    try std.testing.expect(sleeper.user.closing);
    try std.testing.expectEqualStrings("+OK\r\n", try service.testTimer(&state, &sleeper));
}
