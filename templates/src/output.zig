//! Standard output (events) and standard error (log lines) that never stop the process.
//!
//! Both go wherever the program was started with them: a terminal, a file, a pipe read by a
//! service manager, a container runtime or a log shipper, journald's stream socket. A reader
//! that stops reading fills a pipe (64 KiB) or a socket buffer, and a blocking write then
//! waits for it forever: a supervisor stuck in write(2) answers no signal, reaps no child
//! and lets no deadline fire, so an upgrade under way never ends. (Seen: both supervisors
//! of an upgrade stuck in `anon_pipe_write` on a standard error nobody read.)
//!
//! So a write that cannot go through waits a bounded time for room (`budget_ms`), then the
//! line is dropped and counted; while a stream is dropping, later lines do not wait again
//! until one goes through, and the first that does says how many were lost. The descriptor
//! itself is left as it is: its file description is shared with whoever started us (a shell,
//! a terminal), which must not find it non-blocking. Instead a pipe gets a non-blocking
//! description of its own (reopened through /proc/self/fd), and a socket is written with
//! MSG_DONTWAIT. Files never block for long; a terminal paused with ^S is the user's choice.
const std = @import("std");
const compat = @import("compat.zig");
const sys = @import("net/sys.zig");
const calendar = @import("calendar.zig");
const config = @import("config.zig");
const linux = std.os.linux;
const assert = std.debug.assert;

pub const Which = enum { stdout, stderr };

/// fcntl(2)'s F_GETPIPE_SZ: succeeds on a pipe or FIFO only (Linux ABI).
const F_GETPIPE_SZ: i32 = 1032;

const Kind = enum { unknown, plain, pipe, socket };

const Stream = struct {
    /// The standard descriptor (1 or 2).
    fd: sys.Fd,
    kind: Kind = .unknown,
    /// For a pipe: this process's own non-blocking description of it (close-on-exec).
    own_fd: sys.Fd = -1,
    /// Lines dropped since the last one that went through.
    dropped: u64 = 0,

    /// Once per process: children are executed right after fork, and write nothing before.
    fn prepare(self: *Stream) void {
        if (self.kind != .unknown) return;
        self.kind = .plain;
        if (compat.errno(linux.fcntl(self.fd, F_GETPIPE_SZ, 0)) == .SUCCESS) {
            var path: [32:0]u8 = undefined;
            const text = compat.bufPrint(&path, "/proc/self/fd/{d}", .{self.fd}) catch return;
            path[text.len] = 0;
            const flags: linux.O = .{ .ACCMODE = .WRONLY, .NONBLOCK = true, .CLOEXEC = true };
            const rc = linux.open(path[0..text.len :0], flags, 0);
            if (compat.errno(rc) != .SUCCESS) return;
            self.own_fd = @intCast(rc);
            self.kind = .pipe;
        } else if (sys.getsockoptInt(self.fd, linux.SOL.SOCKET, linux.SO.TYPE)) |_| {
            self.kind = .socket;
        } else |_| {}
    }

    /// One attempt; the bytes written, or an error (WouldBlock when there is no room now).
    fn attempt(self: *const Stream, bytes: []const u8) sys.Error!usize {
        return switch (self.kind) {
            .unknown => unreachable,
            .plain => sys.write(self.fd, bytes),
            .pipe => sys.write(self.own_fd, bytes),
            .socket => sys.sendNow(self.fd, bytes),
        };
    }

    /// Waits at most `ms` for room to write.
    fn waitForRoom(self: *const Stream, ms: u64) void {
        const fd = if (self.kind == .pipe) self.own_fd else self.fd;
        var fds = [_]linux.pollfd{.{ .fd = fd, .events = linux.POLL.OUT, .revents = 0 }};
        _ = linux.poll(&fds, 1, @intCast(@min(ms, std.math.maxInt(i32))));
    }

    /// Writes `bytes` whole, or drops what is left of them once `budget_ms` has passed
    /// (at once while the stream is already dropping). Returns whether all went through.
    fn writeBounded(self: *Stream, bytes: []const u8, budget_ms: u32) bool {
        self.prepare();
        assert(self.kind != .unknown);
        const start_ms = sys.monotonicMs();
        var done: usize = 0;
        while (done < bytes.len) {
            const n = self.attempt(bytes[done..]) catch |err| switch (err) {
                error.Interrupted => continue,
                error.WouldBlock => {
                    const waited = sys.monotonicMs() - start_ms;
                    if (self.dropped > 0 or waited >= budget_ms) break;
                    self.waitForRoom(budget_ms - waited);
                    continue;
                },
                // The reader is gone (EPIPE) or the descriptor is not writable.
                else => break,
            };
            done += n;
        }
        assert(done <= bytes.len);
        if (done < bytes.len) {
            self.dropped += 1;
            return false;
        }
        return true;
    }
};

var stdout_stream: Stream = .{ .fd = 1 };
var stderr_stream: Stream = .{ .fd = 2 };

fn streamOf(which: Which) *Stream {
    return switch (which) {
        .stdout => &stdout_stream,
        .stderr => &stderr_stream,
    };
}

/// Readies both streams now rather than at their first line: a worker about to drop
/// privileges could not reopen its pipes through /proc/self/fd afterwards (a pipe its
/// starter made is not the new user's, and /proc/self/fd is closed to a process that
/// changed ids), and would then write them blocking.
pub fn prepare() void {
    stdout_stream.prepare();
    stderr_stream.prepare();
}

/// Writes one whole line to standard output or error without ever blocking for longer than
/// `budget_ms`. After lines were dropped, the first line that goes through is preceded by a
/// note saying how many (on standard error).
pub fn writeLine(which: Which, line: []const u8, budget_ms: u32) void {
    assert(line.len > 0 and line[line.len - 1] == '\n');
    const stream = streamOf(which);
    const dropped_before = stream.dropped;
    if (!stream.writeBounded(line, budget_ms)) return;
    if (dropped_before == 0) return;
    stream.dropped = 0;
    var buf: [512]u8 = undefined;
    var ts: [calendar.rfc3339_len]u8 = undefined;
    calendar.formatRfc3339Ms(&ts, sys.realtimeMs());
    const note = compat.bufPrint(&buf, "{s} " ++ config.name ++ "[{d}]: warning: {d} line(s) " ++
        "of standard {s} were dropped: it was not being read\n", .{
        &ts,
        linux.getpid(),
        dropped_before,
        @tagName(which)[3..],
    }) catch return;
    _ = stderr_stream.writeBounded(note, budget_ms);
}

/// Writes `bytes` (whole lines) at once or not at all, never waiting for room: for the
/// request log, which counts what it loses itself. Leaves the stream's count of dropped
/// lines to the callers of `writeLine`.
pub fn writeWhole(which: Which, bytes: []const u8) bool {
    assert(bytes.len > 0 and bytes[bytes.len - 1] == '\n');
    const stream = streamOf(which);
    const dropped_before = stream.dropped;
    const ok = stream.writeBounded(bytes, 0);
    stream.dropped = dropped_before;
    return ok;
}

test "a pipe nobody reads drops lines after the budget instead of blocking, then says so" {
    var pair: [2]sys.Fd = undefined;
    try std.testing.expect(compat.errno(linux.pipe2(&pair, .{ .CLOEXEC = true })) == .SUCCESS);
    defer sys.close(pair[0]);
    var stream: Stream = .{ .fd = pair[1] };
    defer {
        sys.close(pair[1]);
        if (stream.own_fd >= 0) sys.close(stream.own_fd);
    }
    stream.prepare();
    try std.testing.expectEqual(Kind.pipe, stream.kind);
    // The pipe's own description stays blocking: only ours is non-blocking.
    const own_flags = linux.fcntl(pair[1], linux.F.GETFL, 0);
    try std.testing.expect(own_flags & @as(usize, 0o4000) == 0);
    var line: [1024]u8 = @splat('x');
    line[line.len - 1] = '\n';
    var written: usize = 0;
    // Bounded: a pipe holds at most 1 MiB by default, 1024 such lines.
    while (written < 1024 and stream.writeBounded(&line, 20)) written += 1;
    try std.testing.expect(written < 1024);
    try std.testing.expectEqual(@as(u64, 1), stream.dropped);
    // While dropping, a line does not wait again.
    const before = sys.monotonicMs();
    try std.testing.expect(!stream.writeBounded(&line, 5_000));
    try std.testing.expect(sys.monotonicMs() - before < 1_000);
    try std.testing.expectEqual(@as(u64, 2), stream.dropped);
    // Once there is room again, lines go through.
    var buf: [65536]u8 = undefined;
    _ = try sys.read(pair[0], &buf);
    try std.testing.expect(stream.writeBounded("ok\n", 20));
}

test "a descriptor that is neither pipe nor socket is written plainly; a failed write drops" {
    var stream: Stream = .{ .fd = -1 };
    stream.prepare();
    try std.testing.expectEqual(Kind.plain, stream.kind);
    try std.testing.expect(!stream.writeBounded("lost\n", 10));
}
