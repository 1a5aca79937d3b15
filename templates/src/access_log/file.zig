//! The request log's file (`accessLog.path`): how every process opens it, and the one place
//! that decides who owns it.
//!
//! As with nginx, the process that starts the others (the supervisor, or the process itself in
//! `--standalone`) opens the file first: at start, so that a path in a directory that does not
//! exist stops the program before anything serves (exit 1, naming `accessLog.path`), and on
//! SIGUSR1 before it tells the workers to reopen, so that the new file exists, with the right
//! owner, by the time they look for it. Each worker then opens it itself, for appending.
const std = @import("std");
const compat = @import("../compat.zig");
const log = @import("../log.zig");
const sys = @import("../net/sys.zig");
const linux = std.os.linux;

/// Who should own the file once it exists; null fields are left as they are.
pub const Owner = struct {
    uid: ?u32 = null,
    gid: ?u32 = null,
};

/// The file's mode when it is created (the umask applies), as nginx creates its logs.
const create_mode = 0o644;

/// The descriptor, or why the file could not be opened (the errno, for the message).
pub const Opened = union(enum) { fd: sys.Fd, errno: linux.E };

/// Opens (creating it when missing) the file at `path` for appending: every write lands at
/// the end, whoever else appends (the other workers, a rotation that moved it).
pub fn openAppend(path: [:0]const u8) Opened {
    const flags: linux.O = .{
        .ACCMODE = .WRONLY,
        .CREAT = true,
        .APPEND = true,
        .CLOEXEC = true,
        .NOCTTY = true,
    };
    while (true) {
        const rc = linux.open(path.ptr, flags, create_mode);
        switch (compat.errno(rc)) {
            .SUCCESS => return .{ .fd = @intCast(rc) },
            .INTR => continue,
            else => |e| return .{ .errno = e },
        }
    }
}

/// Makes sure the file exists and belongs to `owner`: at start and on SIGUSR1, before any
/// worker opens it. Says what went wrong on standard error; false then.
pub fn prepare(path: [:0]const u8, owner: ?Owner) bool {
    const fd = switch (openAppend(path)) {
        .fd => |fd| fd,
        .errno => |e| {
            reportOpenFailure(path, e);
            return false;
        },
    };
    defer sys.close(fd);
    return giveTo(fd, path, owner);
}

/// THE PLACE FOR PRIVILEGE DROP: when workers run as another user than the supervisor (who
/// stays root to reopen logs and bind new listeners), the supervisor hands them the file here,
/// before they open it: `fchown(fd, owner.uid, owner.gid)`. Today every process runs as the
/// same user, so callers pass null and nothing changes.
pub fn giveTo(fd: sys.Fd, path: [:0]const u8, owner: ?Owner) bool {
    const who = owner orelse return true;
    const uid: u32 = who.uid orelse std.math.maxInt(u32);
    const gid: u32 = who.gid orelse std.math.maxInt(u32);
    const rc = linux.fchown(fd, uid, gid);
    if (compat.errno(rc) == .SUCCESS) return true;
    log.err("accessLog.path: cannot give {s} to uid {d} gid {d}: {s}", .{
        path, uid, gid, @tagName(compat.errno(rc)),
    });
    return false;
}

/// One line on standard error naming the field, the path and what to do.
pub fn reportOpenFailure(path: []const u8, errno: linux.E) void {
    const what: []const u8 = switch (errno) {
        .NOENT => "its directory does not exist (create it, or change accessLog.path)",
        .NOTDIR => "a component of the path is not a directory (change accessLog.path)",
        .ACCES, .PERM => "permission denied (let this user write there, or change " ++
            "accessLog.path)",
        .ISDIR => "it is a directory (accessLog.path must name a file)",
        .ROFS => "the file system is read-only (change accessLog.path)",
        .NOSPC => "no space left on the device",
        else => "",
    };
    if (what.len > 0) {
        log.err("accessLog.path: cannot open {s}: {s}", .{ path, what });
    } else {
        log.err("accessLog.path: cannot open {s}: {s}", .{ path, @tagName(errno) });
    }
}

test "a missing directory fails with NOENT; an existing one is created and appended to" {
    const missing = openAppend("/nonexistent-dir-of-gen-reuseport/access.log");
    try std.testing.expectEqual(linux.E.NOENT, missing.errno);
    const path = "/tmp/gen-reuseport-access-log-file-test.log";
    _ = linux.unlink(path);
    defer _ = linux.unlink(path);
    const fd = openAppend(path).fd;
    defer sys.close(fd);
    try std.testing.expect(giveTo(fd, path, null));
    try std.testing.expectEqual(@as(usize, 3), try sys.write(fd, "ab\n"));
}
