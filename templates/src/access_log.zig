//! The request log (`accessLog` in the spec): one line per HTTP request, written by the worker
//! that answered it.
//!
//! Lines are gathered in a per-process buffer and written when it holds 64 KiB, when its first
//! line has waited 100 ms (the worker's loop wakes for it like for any deadline), and when the
//! worker stops. Each write carries whole lines only, so the lines of different workers
//! never interleave: a file is opened with O_APPEND, whose writes Linux keeps whole; standard
//! output, often a pipe, is written in pieces of at most PIPE_BUF (4096) bytes that end at a
//! line's end, which the kernel keeps whole too (a single line longer than that, a huge
//! target, may be split on a pipe).
//!
//! Writing never blocks a worker: a file is written with one plain write per flush, and
//! standard output through `output.zig` without waiting for room. A write that fails (a full
//! disk, an I/O error, a pipe nobody reads) drops the lines it carried: they are counted
//! (`access_log_errors`, `access_log_dropped` in the worker's counters), the first failure of
//! a burst is said on standard error, and the first write that succeeds again says how many
//! lines the burst lost. The worker keeps serving meanwhile.
//!
//! SIGUSR1 reopens the file (`reopen`), for log rotation: the lines already gathered go to the
//! old file, the following ones to the file now at the path.
const std = @import("std");
const config = @import("config.zig");
const compat = @import("compat.zig");
const sys = @import("net/sys.zig");
const log = @import("log.zig");
const output = @import("output.zig");
const ip_address = @import("address.zig");
const file = @import("access_log/file.zig");
const privileges = @import("supervisor/privileges.zig");

/// The file belongs to the user the workers (or a `--standalone` process) drop to, so that
/// they can reopen it after a rotation: nginx's master gives its logs to its workers' user
/// the same way. Null (the file keeps its owner) when nobody drops.
pub fn ownerFor(drop_to: ?privileges.Credentials) ?file.Owner {
    const to = drop_to orelse return null;
    return .{ .uid = to.uid, .gid = to.gid };
}
pub const line = @import("access_log/line.zig");
const linux = std.os.linux;
const assert = std.debug.assert;

pub const Entry = line.Entry;

/// Whether the spec asks for a request log: handlers skip every step of it otherwise.
pub const enabled = config.access_log != null;

/// Where lines go and how they look: the spec's, or the flags' (`configure`).
pub const Settings = struct {
    /// null: standard output.
    path: ?[:0]const u8,
    format: line.Format,
};

var settings: ?Settings = if (config.access_log) |spec| .{
    .path = spec.path,
    .format = switch (spec.format) {
        .json => .json,
        .combined => .combined,
    },
} else null;

/// Applies `--access-log` and `--access-log-format` (the command line accepts them only when
/// the spec has a log). Called once, before anything opens the file.
pub fn configure(path_flag: ?[:0]const u8, format_flag: ?[]const u8) void {
    const current = &(settings orelse return);
    if (path_flag) |path| current.path = if (std.mem.eql(u8, path, "-")) null else path;
    if (format_flag) |name| {
        current.format = if (std.mem.eql(u8, name, "combined")) .combined else .json;
    }
}

/// A flush starts once this much is gathered.
pub const flush_bytes = 64 * 1024;
/// The longest a line waits in the buffer.
pub const flush_interval_ms = 100;
/// Room for a flush's worth and one more line of the largest size.
const buffer_bytes = flush_bytes + line.max_bytes;
/// Writes to a pipe of at most this many bytes are never split or mixed with others' writes.
const pipe_buf = 4096;

const Sink = union(enum) {
    none,
    stdout,
    fd: sys.Fd,
};

/// Counters of failed writes, read into the worker's `Stats`.
pub const Counters = struct {
    /// Writes that failed or went through only in part.
    errors: u64 = 0,
    /// Lines lost with them.
    dropped: u64 = 0,
};

var sink: Sink = .none;
var buffer: []u8 = &.{};
var len: usize = 0;
/// When the oldest line in the buffer must be written (monotonic ms); null when empty.
var due_ms: ?u64 = null;
pub var counters: Counters = .{};
/// Lines dropped since the last write that went through, for the burst's closing note.
var burst_dropped: u64 = 0;
var in_burst = false;

/// Opens the log for this worker: reserves the buffer and opens the file. Called once per
/// process, before it serves; false (and said on standard error) when the file cannot be
/// opened.
pub fn open() bool {
    const chosen = settings orelse return true;
    assert(sink == .none);
    buffer = compat.mapMemory(buffer_bytes) catch {
        log.err("accessLog: cannot reserve {d} bytes for the request log", .{buffer_bytes});
        return false;
    };
    const path = chosen.path orelse {
        sink = .stdout;
        return true;
    };
    switch (file.openAppend(path)) {
        .fd => |fd| sink = .{ .fd = fd },
        .errno => |e| {
            file.reportOpenFailure(path, e);
            return false;
        },
    }
    return true;
}

/// The supervisor's (or a standalone process's) check at start and before each reopen:
/// the file exists, with its owner (see `file.giveTo`). True when there is no file.
pub fn prepareFile(owner: ?file.Owner) bool {
    const chosen = settings orelse return true;
    const path = chosen.path orelse return true;
    return file.prepare(path, owner);
}

/// Gathers one line; writes the buffer once it holds `flush_bytes`.
pub fn record(entry: *const Entry, now_ms: u64) void {
    if (!enabled or sink == .none) return;
    assert(buffer.len - len >= line.max_bytes);
    const text = line.write(settings.?.format, entry, buffer[len..]);
    len += text.len;
    if (due_ms == null) due_ms = now_ms + flush_interval_ms;
    if (len >= flush_bytes) flush();
    assert(buffer.len - len >= line.max_bytes);
}

/// When the worker's loop must wake to write the buffer; null when it is empty.
pub fn nextFlushMs() ?u64 {
    return due_ms;
}

pub fn flushIfDue(now_ms: u64) void {
    const at = due_ms orelse return;
    if (now_ms >= at) flush();
}

/// Writes every gathered line (the worker stops, the buffer is full, a line waited long
/// enough, or a reopen comes).
pub fn flush() void {
    if (len == 0) return;
    const bytes = buffer[0..len];
    assert(bytes[bytes.len - 1] == '\n');
    const written = switch (sink) {
        .none => unreachable,
        .stdout => writeStdout(bytes),
        .fd => |fd| writeFile(fd, bytes),
    };
    const lost = std.mem.count(u8, bytes[written..], "\n");
    if (lost > 0) failed(lost) else recovered();
    len = 0;
    due_ms = null;
}

/// One write for the whole buffer; returns the bytes that went through. What a write that
/// went through only in part left out is lost (a full disk): a retry would only fail again,
/// and a worker must not wait for room.
fn writeFile(fd: sys.Fd, bytes: []const u8) usize {
    var tries: usize = 0;
    // Bounded: EINTR is retried a few times, nothing else.
    while (tries < 4) : (tries += 1) {
        const rc = linux.write(fd, bytes.ptr, bytes.len);
        switch (compat.errno(rc)) {
            .SUCCESS => return rc,
            .INTR => continue,
            else => |e| {
                last_errno = e;
                return 0;
            },
        }
    }
    return 0;
}

/// Pieces of at most `pipe_buf` bytes that end at a line's end (a longer line alone), none
/// of which waits for room; returns the bytes of the pieces that went through, up to the
/// first that did not.
fn writeStdout(bytes: []const u8) usize {
    var done: usize = 0;
    // Each turn writes at least one whole line.
    while (done < bytes.len) {
        const end = pieceEnd(bytes, done);
        if (!output.writeWhole(.stdout, bytes[done..end])) {
            last_errno = .AGAIN;
            return done;
        }
        done = end;
    }
    return done;
}

/// Where the piece that starts at `start` ends: after the last newline within `pipe_buf`
/// bytes, or after the first line when that line alone is longer.
fn pieceEnd(bytes: []const u8, start: usize) usize {
    assert(start < bytes.len);
    const limit = @min(bytes.len, start + pipe_buf);
    if (limit == bytes.len) return limit;
    if (compat.findScalarLast(u8, bytes[start..limit], '\n')) |i| return start + i + 1;
    const i = compat.findScalar(u8, bytes[start..], '\n').?;
    return start + i + 1;
}

var last_errno: linux.E = .SUCCESS;

fn failed(lost: u64) void {
    counters.errors += 1;
    counters.dropped += lost;
    burst_dropped += lost;
    if (in_burst) return;
    in_burst = true;
    log.warn("access log: a write failed ({s}): {d} request lines lost; further failures " ++
        "are counted until a write succeeds", .{ @tagName(last_errno), lost });
}

fn recovered() void {
    if (!in_burst) return;
    log.warn("access log: writing again; {d} request lines were lost", .{burst_dropped});
    in_burst = false;
    burst_dropped = 0;
}

/// SIGUSR1: the gathered lines go to the file that was open, then the file now at the path
/// replaces it. When it cannot be opened the old one stays in use, and the reason is said.
pub fn reopen() void {
    if (!enabled) return;
    flush();
    const path = settings.?.path orelse return;
    const old = switch (sink) {
        .fd => |fd| fd,
        else => return,
    };
    switch (file.openAppend(path)) {
        .fd => |fd| {
            sink = .{ .fd = fd };
            sys.close(old);
        },
        .errno => |e| file.reportOpenFailure(path, e),
    }
}

/// The worker stops: everything gathered is written.
pub fn close() void {
    if (!enabled or sink == .none) return;
    flush();
}

/// A connection's peer as text, asked of the kernel once per connection (on its first
/// logged request) rather than once per request.
pub const PeerText = struct {
    text: [46]u8 = undefined,
    len: u8 = 0,
    port: u16 = 0,
    known: bool = false,

    pub fn get(self: *PeerText, fd: i32) void {
        if (self.known) return;
        self.known = true;
        if (fd < 0) return;
        var storage: linux.sockaddr.storage = undefined;
        var size: linux.socklen_t = @sizeOf(linux.sockaddr.storage);
        const rc = linux.getpeername(fd, @ptrCast(&storage), &size);
        if (compat.errno(rc) != .SUCCESS) return;
        const ip: ip_address.Address = switch (storage.family) {
            linux.AF.INET => blk: {
                const in: *const linux.sockaddr.in = @ptrCast(@alignCast(&storage));
                self.port = std.mem.bigToNative(u16, in.port);
                break :blk .{ .ip4 = @bitCast(in.addr) };
            },
            linux.AF.INET6 => blk: {
                const in6: *const linux.sockaddr.in6 = @ptrCast(@alignCast(&storage));
                self.port = std.mem.bigToNative(u16, in6.port);
                break :blk .{ .ip6 = in6.addr };
            },
            else => return,
        };
        self.len = @intCast(ip_address.format(ip, &self.text).len);
    }

    pub fn address(self: *const PeerText) []const u8 {
        return self.text[0..self.len];
    }
};

test "pieces for a pipe end at a line's end and hold at most PIPE_BUF, or one long line" {
    var bytes: [3 * pipe_buf]u8 = @splat('a');
    bytes[100] = '\n';
    bytes[pipe_buf + 50] = '\n';
    bytes[bytes.len - 1] = '\n';
    try std.testing.expectEqual(@as(usize, 101), pieceEnd(&bytes, 0));
    // From 101 the next newline within 4096 bytes is at pipe_buf + 50.
    try std.testing.expectEqual(@as(usize, pipe_buf + 51), pieceEnd(&bytes, 101));
    // From there, one line longer than PIPE_BUF goes alone.
    try std.testing.expectEqual(bytes.len, pieceEnd(&bytes, pipe_buf + 51));
}

test "a failed write loses its lines and counts them; the next good write ends the burst" {
    var bytes: [64]u8 = undefined;
    const saved_buffer = buffer;
    const saved_sink = sink;
    defer {
        buffer = saved_buffer;
        sink = saved_sink;
        len = 0;
        due_ms = null;
        counters = .{};
        in_burst = false;
        burst_dropped = 0;
    }
    buffer = &bytes;
    const full = file.openAppend("/dev/full").fd;
    defer sys.close(full);
    sink = .{ .fd = full };
    @memcpy(bytes[0..4], "a\nb\n");
    len = 4;
    due_ms = 1;
    flush();
    try std.testing.expectEqual(Counters{ .errors = 1, .dropped = 2 }, counters);
    try std.testing.expect(in_burst and len == 0 and due_ms == null);

    const path = "/tmp/gen-reuseport-access-log-flush-test.log";
    _ = linux.unlink(path);
    defer _ = linux.unlink(path);
    const good = file.openAppend(path).fd;
    defer sys.close(good);
    sink = .{ .fd = good };
    @memcpy(bytes[0..2], "c\n");
    len = 2;
    flush();
    try std.testing.expect(!in_burst);
    try std.testing.expectEqual(Counters{ .errors = 1, .dropped = 2 }, counters);
    var back: [8]u8 = undefined;
    const fd = linux.open(path, .{ .ACCMODE = .RDONLY, .CLOEXEC = true }, 0);
    defer sys.close(@intCast(fd));
    const n = try sys.read(@intCast(fd), &back);
    try std.testing.expectEqualStrings("c\n", back[0..n]);
}
