//! What the kernel says about a process, read from /proc when the metrics are scraped: CPU
//! time, resident memory, open descriptors and start time (the `process_*` series, as the
//! Prometheus client libraries name them). Raw system calls only: std's file API differs
//! between Zig releases.
const std = @import("std");
const sys = @import("../net/sys.zig");
const compat = @import("../compat.zig");
const linux = std.os.linux;

/// Clock ticks per second of /proc's times: USER_HZ, 100 on every Linux architecture.
const ticks_per_second = 100;

pub const Sample = struct {
    /// User and system CPU time, in clock ticks.
    cpu_ticks: u64,
    resident_bytes: u64,
    open_fds: u64,
    /// Seconds since the Unix epoch, in hundredths.
    start_time_centis: u64,

    /// CPU seconds as "S.CC".
    pub fn cpuSeconds(self: Sample, buf: []u8) []const u8 {
        return centis(buf, self.cpu_ticks * (100 / ticks_per_second));
    }

    pub fn startSeconds(self: Sample, buf: []u8) []const u8 {
        return centis(buf, self.start_time_centis);
    }
};

fn centis(buf: []u8, value: u64) []const u8 {
    return compat.bufPrint(buf, "{d}.{d:0>2}", .{ value / 100, value % 100 }) catch "0";
}

/// Reads process `pid`; null when it is gone (or /proc is not mounted).
pub fn sample(pid: i32, boot_time_s: u64) ?Sample {
    var path_buf: [64]u8 = undefined;
    var buf: [1024]u8 = undefined;
    const stat = sys.readSmallFile(pathOf(&path_buf, pid, "stat"), &buf) catch return null;
    const fields = statFields(stat) orelse return null;
    var statm_buf: [256]u8 = undefined;
    const statm = sys.readSmallFile(pathOf(&path_buf, pid, "statm"), &statm_buf) catch return null;
    var words = std.mem.tokenizeScalar(u8, statm, ' ');
    _ = words.next();
    const resident_pages = std.fmt.parseInt(u64, words.next() orelse return null, 10) catch
        return null;
    return .{
        .cpu_ticks = fields.utime + fields.stime,
        .resident_bytes = resident_pages * pageSize(),
        .open_fds = countFds(pathOf(&path_buf, pid, "fd")) orelse return null,
        .start_time_centis = boot_time_s * 100 + fields.start_ticks * (100 / ticks_per_second),
    };
}

fn pathOf(buf: *[64]u8, pid: i32, leaf: []const u8) [*:0]const u8 {
    const text = compat.bufPrint(buf[0 .. buf.len - 1], "/proc/{d}/{s}", .{ pid, leaf }) catch
        unreachable;
    buf[text.len] = 0;
    return buf[0..text.len :0].ptr;
}

const StatFields = struct { utime: u64, stime: u64, start_ticks: u64 };

/// The fields of /proc/PID/stat after the command name, which may hold spaces and
/// parentheses: everything up to its last ')' is skipped.
fn statFields(text: []const u8) ?StatFields {
    const close = compat.findScalarLast(u8, text, ')') orelse return null;
    var words = std.mem.tokenizeAny(u8, text[close + 1 ..], " \n");
    var result: StatFields = .{ .utime = 0, .stime = 0, .start_ticks = 0 };
    // Field 3 (state) is the first after the name; utime is 14, stime 15, starttime 22.
    var field: usize = 3;
    while (words.next()) |word| : (field += 1) {
        const slot: *u64 = switch (field) {
            14 => &result.utime,
            15 => &result.stime,
            22 => &result.start_ticks,
            else => continue,
        };
        slot.* = std.fmt.parseInt(u64, word, 10) catch return null;
        if (field == 22) return result;
    }
    return null;
}

fn pageSize() u64 {
    const AT_PAGESZ = 6;
    const size = linux.getauxval(AT_PAGESZ);
    return if (size == 0) 4096 else size;
}

/// Entries of a /proc/PID/fd directory, "." and ".." left out.
fn countFds(path: [*:0]const u8) ?u64 {
    const rc = linux.open(path, .{ .CLOEXEC = true, .DIRECTORY = true }, 0);
    if (compat.errno(rc) != .SUCCESS) return null;
    const fd: sys.Fd = @intCast(rc);
    defer sys.close(fd);
    var buf: [4096]u8 align(8) = undefined;
    var count: u64 = 0;
    // Bounded: a process holds at most its descriptor limit (a million by default).
    var reads: usize = 0;
    while (reads < 1 << 20) : (reads += 1) {
        const n = linux.syscall3(.getdents64, @intCast(fd), @intFromPtr(&buf), buf.len);
        if (compat.errno(n) != .SUCCESS) return null;
        if (n == 0) return count;
        var at: usize = 0;
        while (at < n) {
            // struct linux_dirent64: ino u64, off i64, reclen u16, type u8, name.
            const reclen = std.mem.readInt(u16, buf[at + 16 ..][0..2], .little);
            const name = std.mem.sliceTo(buf[at + 19 .. at + reclen], 0);
            if (!std.mem.eql(u8, name, ".") and !std.mem.eql(u8, name, "..")) count += 1;
            at += reclen;
        }
    }
    return count;
}

/// The boot time in seconds since the epoch, from /proc/stat's `btime` line; 0 when unknown.
pub fn bootTime() u64 {
    var buf: [16384]u8 = undefined;
    const text = sys.readSmallFile("/proc/stat", &buf) catch return 0;
    var lines = std.mem.tokenizeScalar(u8, text, '\n');
    while (lines.next()) |line| {
        if (std.mem.startsWith(u8, line, "btime ")) {
            return std.fmt.parseInt(u64, std.mem.trim(u8, line[6..], " "), 10) catch 0;
        }
    }
    return 0;
}

test "parses /proc/PID/stat past a command name with spaces and parentheses" {
    const text = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 555 1 2\n";
    const f = statFields(text).?;
    try std.testing.expectEqual(@as(u64, 7), f.utime);
    try std.testing.expectEqual(@as(u64, 3), f.stime);
    try std.testing.expectEqual(@as(u64, 555), f.start_ticks);
}

test "samples this very process" {
    const s = sample(linux.getpid(), bootTime()).?;
    try std.testing.expect(s.resident_bytes > 0);
    try std.testing.expect(s.open_fds >= 1);
    try std.testing.expect(s.start_time_centis > 1_600_000_000 * 100);
    var buf: [32]u8 = undefined;
    try std.testing.expect(compat.findScalar(u8, s.cpuSeconds(&buf), '.') != null);
}
