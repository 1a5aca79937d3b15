//! The pid file: written atomically (temporary file, then rename) once the service is
//! ready, so a reader never sees a partial number; removed when the service exits, unless it
//! names another process by then (a new supervisor that took over in an upgrade).
//!
//! It is also the service's lock: the process that owns the path holds an exclusive `flock`
//! on the file there for as long as it runs, from its start (`claim`, on the file it finds or
//! creates) and then on the file it writes (locked before the rename puts it in place). A
//! second start with the same pid file finds it locked and stops, naming the running pid. An
//! upgrade's new supervisor does not claim (its parent holds the path) and takes the lock over
//! with its write; the old one's lock then rests on a file no path names any more.
const std = @import("std");
const compat = @import("../compat.zig");
const sys = @import("../net/sys.zig");
const linux = std.os.linux;

// flock(2) operations; the same numbers on every Linux architecture.
const lock_exclusive = 2;
const lock_nonblocking = 4;

/// The descriptor whose lock holds the path for this process; kept open until exit.
var held_fd: ?sys.Fd = null;

pub const Claim = union(enum) {
    /// This process holds the path now.
    claimed,
    /// Another process holds it; the pid it wrote there, or null while it is starting.
    running: ?i32,
    /// The file could not be opened (a missing directory, no permission): why.
    failed: linux.E,
};

/// Takes the path for this process, unless another process holds it.
pub fn claim(path: [*:0]const u8) Claim {
    // A holder that exits (or renames its own file into place) between our open and our
    // lock leaves us a file no path names: then open what the path names now.
    for (0..8) |_| {
        const flags: linux.O = .{ .ACCMODE = .RDWR, .CREAT = true, .CLOEXEC = true };
        const rc = linux.open(path, flags, 0o644);
        const e = compat.errno(rc);
        if (e != .SUCCESS) return .{ .failed = e };
        const fd: sys.Fd = @intCast(rc);
        if (!lock(fd)) {
            const pid = readPid(fd);
            sys.close(fd);
            return .{ .running = pid };
        }
        if (!unlinked(fd)) {
            held_fd = fd;
            return .claimed;
        }
        sys.close(fd);
    }
    return .{ .running = null };
}

fn lock(fd: sys.Fd) bool {
    return compat.errno(linux.flock(fd, lock_exclusive | lock_nonblocking)) == .SUCCESS;
}

fn readPid(fd: sys.Fd) ?i32 {
    var buf: [32]u8 = undefined;
    const rc = linux.pread(fd, &buf, buf.len, 0);
    if (compat.errno(rc) != .SUCCESS) return null;
    const text = std.mem.trim(u8, buf[0..rc], " \n");
    return std.fmt.parseInt(i32, text, 10) catch null;
}

/// Whether the file open at `fd` has no name any more (its path now names another file).
fn unlinked(fd: sys.Fd) bool {
    var link_buf: [32]u8 = undefined;
    const link = compat.bufPrint(&link_buf, "/proc/self/fd/{d}", .{fd}) catch return false;
    link_buf[link.len] = 0;
    var target: [4096]u8 = undefined;
    const rc = linux.readlink(link_buf[0..link.len :0], &target, target.len);
    if (compat.errno(rc) != .SUCCESS) return false;
    return std.mem.endsWith(u8, target[0..rc], " (deleted)");
}

/// Gives the path up when this process claimed it but never wrote its pid there (a start
/// that failed): the empty or stale file goes, as the lock does.
pub fn releaseClaim(path: [*:0]const u8) void {
    const fd = held_fd orelse return;
    if (written) return;
    if (!unlinked(fd)) _ = linux.unlink(path);
    sys.close(fd);
    held_fd = null;
}

/// Whether `held_fd` is a file `write` put in place (rather than the one `claim` found).
var written = false;

pub fn write(path: [*:0]const u8, pid: i32) sys.Error!void {
    var tmp_buf: [4096:0]u8 = undefined;
    const target = std.mem.span(path);
    const tmp = compat.bufPrint(&tmp_buf, "{s}.tmp", .{target}) catch return error.Unexpected;
    tmp_buf[tmp.len] = 0;
    const flags: linux.O = .{ .ACCMODE = .WRONLY, .CREAT = true, .TRUNC = true, .CLOEXEC = true };
    const rc = linux.open(&tmp_buf, flags, 0o644);
    if (compat.errno(rc) != .SUCCESS) return error.AccessDenied;
    const fd: sys.Fd = @intCast(rc);
    // Locked before the rename puts it in place: the path is never free of a lock.
    _ = lock(fd);
    var text: [16]u8 = undefined;
    const line = compat.bufPrint(&text, "{d}\n", .{pid}) catch unreachable;
    sys.writeAll(fd, line) catch |err| {
        sys.close(fd);
        return err;
    };
    if (compat.errno(linux.rename(&tmp_buf, path)) != .SUCCESS) {
        sys.close(fd);
        return error.AccessDenied;
    }
    if (held_fd) |old| sys.close(old);
    held_fd = fd;
    written = true;
}

pub fn remove(path: [*:0]const u8) void {
    _ = linux.unlink(path);
}

/// Removes the file when it still names `pid`: after an upgrade it names the new
/// supervisor, which owns it from then on.
pub fn removeIfOwn(path: [*:0]const u8, pid: i32) void {
    var buf: [32]u8 = undefined;
    const text = sys.readSmallFile(path, &buf) catch return;
    const named = std.fmt.parseInt(i32, std.mem.trim(u8, text, " \n"), 10) catch return;
    if (named == pid) _ = linux.unlink(path);
}

test "claim: one holder at a time; a second claim names the pid written" {
    var dir_buf: [64]u8 = undefined;
    const dir = compat.bufPrint(&dir_buf, "/tmp/pid-file-test-{d}", .{linux.getpid()}) catch
        unreachable;
    dir_buf[dir.len] = 0;
    _ = linux.mkdir(dir_buf[0..dir.len :0], 0o700);
    defer _ = linux.rmdir(dir_buf[0..dir.len :0]);
    var path_buf: [96]u8 = undefined;
    const path = compat.bufPrint(&path_buf, "{s}/pid", .{dir}) catch unreachable;
    path_buf[path.len] = 0;
    const p = path_buf[0..path.len :0];
    defer remove(p);
    const saved = .{ held_fd, written };
    defer held_fd, written = saved;
    held_fd = null;
    written = false;

    try std.testing.expectEqual(Claim.claimed, claim(p));
    const first = held_fd.?;
    // flock locks belong to the open file: a second open in this process is refused too.
    try std.testing.expectEqual(Claim{ .running = null }, claim(p));
    try write(p, 4242);
    try std.testing.expect(held_fd.? != first);
    try std.testing.expectEqual(Claim{ .running = 4242 }, claim(p));
    sys.close(held_fd.?);
    held_fd = null;
    // Released (the holder exited): the next start claims it.
    try std.testing.expectEqual(Claim.claimed, claim(p));
    sys.close(held_fd.?);
    held_fd = null;

    var missing_buf: [128]u8 = undefined;
    const missing = compat.bufPrint(&missing_buf, "{s}/no/such/dir/pid", .{dir}) catch
        unreachable;
    missing_buf[missing.len] = 0;
    const got = claim(missing_buf[0..missing.len :0]);
    try std.testing.expect(got == .failed);
}
