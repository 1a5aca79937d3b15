//! `--handover PATH` (standalone mode): each process hands its listening sockets to the next
//! one started with the same PATH, so that "start the new process, then stop the old one"
//! closes no socket of the port's group and resets nothing, whatever
//! net.ipv4.tcp_migrate_req says. Without it, the old process's own sockets leave the group
//! when it stops, and a connection that completes its handshake between its last accept and
//! its close is reset (see `standalone.zig`).
//!
//! The protocol, over a Unix SOCK_SEQPACKET socket at PATH:
//!   - A starting process connects to PATH. Nobody there (no file, or a file no process
//!     listens on): it opens its sockets itself.
//!   - The process listening there answers from its loop with one message: the text
//!     "gen-reuseport-handover 1 pid=<pid>\n" then one listener name per line, and the
//!     listening sockets themselves attached (SCM_RIGHTS), in the same order.
//!   - The new process serves those sockets (the same sockets, not new members of the
//!     group), opens what the old one did not have, and then takes PATH over: it binds a
//!     temporary name next to it and renames it onto PATH, so PATH always answers.
//!   - When the old process stops it closes its descriptors; the sockets stay open in the
//!     new process, with everything queued on them.
//!
//! Both ends check the other's user (SO_PEERCRED: the same effective UID, or root) and PATH
//! is made 0600: listening sockets go only to a process that could have opened them.
//! A received socket is used only for the listener of that name, when it is a socket of that
//! listener's protocol bound to the address this process would bind; any other is closed.
const std = @import("std");
const compat = @import("../compat.zig");
const config = @import("../config.zig");
const address = @import("../address.zig");
const activation = @import("../systemd/activation.zig");
const events = @import("../events.zig");
const log = @import("../log.zig");
const scm = @import("../net/scm.zig");
const sys = @import("../net/sys.zig");
const linux = std.os.linux;

/// sun_path holds 108 bytes, the terminating zero included.
pub const max_path_bytes = 107;
const greeting = "gen-reuseport-handover 1";
/// How long a starting process waits for the old one to answer: it answers from its loop,
/// at once unless it is stopping or hung, and then its sockets are not worth waiting for.
const answer_timeout_s = 2;

pub const Error = error{ Invalid, OutOfMemory };

/// The sockets taken from the previous process, by listener.
pub const Taken = struct {
    fds: []sys.Fd = &.{},
    listeners: []u16 = &.{},
    from_pid: i32 = 0,

    pub fn forListener(self: Taken, index: usize) ?sys.Fd {
        for (self.fds, self.listeners) |fd, l| {
            if (l == index) return fd;
        }
        return null;
    }
};

/// Says what is wrong with PATH, as a log line and an `error` event; exit code 1 follows.
fn fail(comptime format: []const u8, args: anytype) error{Invalid} {
    var buf: [512]u8 = undefined;
    const message = compat.bufPrint(&buf, format, args) catch buf[0..0];
    log.err("handover: {s}", .{message});
    var line = events.Line.begin("error");
    line.string("phase", "handover");
    line.string("message", message);
    line.emit();
    return error.Invalid;
}

const UnixAddress = struct {
    addr: linux.sockaddr.un,
    len: linux.socklen_t,

    fn init(path: []const u8) ?UnixAddress {
        if (path.len == 0 or path.len > max_path_bytes) return null;
        var self: UnixAddress = .{
            .addr = .{ .family = linux.AF.UNIX, .path = @splat(0) },
            .len = 0,
        };
        @memcpy(self.addr.path[0..path.len], path);
        self.len = @intCast(@offsetOf(linux.sockaddr.un, "path") + path.len + 1);
        return self;
    }

    fn pathZ(self: *const UnixAddress) [*:0]const u8 {
        return @ptrCast(&self.addr.path);
    }
};

const FileKind = enum { missing, socket, other };

/// What is at `path` (not following a symbolic link), and its inode number.
fn inspect(path: [*:0]const u8) struct { kind: FileKind, inode: u64 } {
    // struct statx: stx_mode (u16) at byte 28, stx_ino (u64) at byte 32. Read by offset
    // because std's Statx type changed between Zig releases.
    var buf: [256]u8 align(8) = undefined;
    const at_fdcwd: usize = @bitCast(@as(isize, linux.AT.FDCWD));
    const mask_type_ino: usize = 0x1 | 0x100; // STATX_TYPE | STATX_INO
    const rc = linux.syscall5(
        .statx,
        at_fdcwd,
        @intFromPtr(path),
        linux.AT.SYMLINK_NOFOLLOW,
        mask_type_ino,
        @intFromPtr(&buf),
    );
    if (compat.errno(rc) != .SUCCESS) return .{ .kind = .missing, .inode = 0 };
    const mode = std.mem.readInt(u16, buf[28..30], .little);
    const inode = std.mem.readInt(u64, buf[32..40], .little);
    const is_socket = mode & 0o170000 == 0o140000;
    return .{ .kind = if (is_socket) .socket else .other, .inode = inode };
}

/// Whether the process at the other end of `fd` runs as this one's effective user or root.
fn trusted(fd: sys.Fd) bool {
    var cred: extern struct { pid: i32, uid: u32, gid: u32 } = undefined;
    var len: linux.socklen_t = @sizeOf(@TypeOf(cred));
    const bytes = std.mem.asBytes(&cred);
    const rc = linux.getsockopt(fd, linux.SOL.SOCKET, linux.SO.PEERCRED, bytes, &len);
    if (compat.errno(rc) != .SUCCESS) return false;
    return cred.uid == 0 or cred.uid == linux.geteuid();
}

/// Refuses a PATH that cannot work or that is not ours to replace, before anything is opened.
pub fn checkPath(path: []const u8) error{Invalid}!void {
    const where = UnixAddress.init(path) orelse return fail("--handover {s}: a socket path " ++
        "must be 1 to {d} bytes; choose a shorter path", .{ path, max_path_bytes });
    if (inspect(where.pathZ()).kind == .other) return fail("--handover {s}: exists and is not " ++
        "a socket; remove it or choose another path", .{path});
}

/// Takes the listening sockets of the process serving `path`, if one does. `endpoints` are
/// the addresses this process would bind (port 0: any port).
pub fn take(
    allocator: std.mem.Allocator,
    path: []const u8,
    endpoints: []const address.Endpoint,
) Error!Taken {
    try checkPath(path);
    const where = UnixAddress.init(path).?;
    const fd = sys.socket(linux.AF.UNIX, linux.SOCK.SEQPACKET | linux.SOCK.CLOEXEC, 0) catch
        return fail("cannot create a Unix socket", .{});
    defer sys.close(fd);
    const rc = linux.connect(fd, &where.addr, where.len);
    switch (compat.errno(rc)) {
        .SUCCESS => {},
        // No file, or a file nobody listens on (the previous process is gone): start afresh.
        .NOENT, .CONNREFUSED => return .{},
        else => |e| return fail("--handover {s}: cannot connect: {s}", .{ path, @tagName(e) }),
    }
    if (!trusted(fd)) return fail("--handover {s}: served by a process of another user; " ++
        "remove it or choose another path", .{path});
    const timeout: linux.timeval = .{ .sec = answer_timeout_s, .usec = 0 };
    const bytes = std.mem.asBytes(&timeout);
    _ = linux.setsockopt(fd, linux.SOL.SOCKET, linux.SO.RCVTIMEO, bytes, @sizeOf(linux.timeval));

    var text: [8192]u8 = undefined;
    var fds_buf: [scm.max_fds]sys.Fd = undefined;
    const got = scm.receive(fd, &text, &fds_buf) catch |err| {
        log.warn("handover: {s} did not hand its sockets over ({s}); opening them here", .{
            path, @errorName(err),
        });
        return .{};
    };
    return keepUsable(allocator, got, endpoints);
}

/// Keeps the received sockets this process can serve as they are; closes the others.
fn keepUsable(
    allocator: std.mem.Allocator,
    got: scm.Received,
    endpoints: []const address.Endpoint,
) Error!Taken {
    var lines = std.mem.splitScalar(u8, got.text, '\n');
    const head = lines.next() orelse "";
    const pid_word = compat.find(u8, head, " pid=");
    if (!std.mem.startsWith(u8, head, greeting ++ " ") or pid_word == null) {
        for (got.fds) |fd| sys.close(fd);
        return fail("the previous process speaks another handover protocol (\"{s}\")", .{head});
    }
    const from_pid = std.fmt.parseInt(i32, head[pid_word.? + 5 ..], 10) catch 0;
    const fds = try allocator.alloc(sys.Fd, got.fds.len);
    const listeners = try allocator.alloc(u16, got.fds.len);
    var kept: usize = 0;
    for (got.fds) |fd| {
        const name = lines.next() orelse "";
        if (usable(fd, name, endpoints)) |index| {
            if (compat.findScalar(u16, listeners[0..kept], index) == null) {
                fds[kept] = fd;
                listeners[kept] = index;
                kept += 1;
                continue;
            }
        }
        sys.close(fd);
    }
    return .{ .fds = fds[0..kept], .listeners = listeners[0..kept], .from_pid = from_pid };
}

/// The listener a received socket can serve as it is, or null (with the reason logged).
fn usable(fd: sys.Fd, name: []const u8, endpoints: []const address.Endpoint) ?u16 {
    const index = for (config.listeners, 0..) |l, i| {
        if (std.mem.eql(u8, l.name, name)) break @as(u16, @intCast(i));
    } else {
        log.info("handover: listener {s} is not in this spec; its socket is left to close", .{
            name,
        });
        return null;
    };
    const l = &config.listeners[index];
    const kind = sys.getsockoptInt(fd, linux.SOL.SOCKET, linux.SO.TYPE) catch return null;
    const want_kind: c_int = if (l.protocol == .tcp) linux.SOCK.STREAM else linux.SOCK.DGRAM;
    const bound = activation.boundEndpoint(fd) catch return null;
    const wanted = endpoints[index];
    const same_place = std.meta.eql(bound.address, wanted.address) and
        (wanted.port == 0 or wanted.port == bound.port);
    if (kind != want_kind or !same_place) {
        var was: [64]u8 = undefined;
        log.info("handover: listener {s} changed (protocol or address, now {s}); " ++
            "opening it anew", .{
            name, address.format(wanted.address, &was),
        });
        return null;
    }
    return index;
}

/// The listening end at PATH, from which the next process takes this one's sockets.
pub const Server = struct {
    fd: sys.Fd,
    where: UnixAddress,
    /// The inode of the socket file this process made: PATH is removed at the end only while
    /// it is still that file (a successor replaces it with its own).
    inode: u64,

    /// Listens at `path`, replacing (atomically, by rename) the previous process's socket
    /// file, so that PATH always answers.
    pub fn open(path: []const u8) error{Invalid}!Server {
        try checkPath(path);
        const where = UnixAddress.init(path).?;
        // The socket is made under PATH.<pid> and renamed onto PATH.
        var temporary_buf: [max_path_bytes + 1]u8 = undefined;
        const pid = linux.getpid();
        const temporary = compat.bufPrint(&temporary_buf, "{s}.{d}", .{ path, pid }) catch "";
        const staged = UnixAddress.init(temporary) orelse return fail("--handover {s}: the " ++
            "path is too long for a temporary name next to it; choose a shorter path", .{path});
        const kind = linux.SOCK.SEQPACKET | linux.SOCK.NONBLOCK | linux.SOCK.CLOEXEC;
        const fd = sys.socket(linux.AF.UNIX, kind, 0) catch
            return fail("cannot create a Unix socket", .{});
        errdefer sys.close(fd);
        // A leftover of a process with our pid that died here is ours to replace.
        if (inspect(staged.pathZ()).kind == .socket) _ = linux.unlink(staged.pathZ());
        sys.bind(fd, @ptrCast(&staged.addr), staged.len) catch |err|
            return fail("--handover {s}: cannot bind {s}: {s}", .{
                path, temporary, @errorName(err),
            });
        // Only this user (and root) may connect; the peer's UID is checked on top of that.
        _ = linux.chmod(staged.pathZ(), 0o600);
        sys.listen(fd, 8) catch |err| {
            _ = linux.unlink(staged.pathZ());
            return fail("--handover {s}: cannot listen: {s}", .{ path, @errorName(err) });
        };
        const at_fdcwd = linux.AT.FDCWD;
        const rc = linux.renameat(at_fdcwd, staged.pathZ(), at_fdcwd, where.pathZ());
        if (compat.errno(rc) != .SUCCESS) {
            _ = linux.unlink(staged.pathZ());
            return fail("--handover {s}: cannot put the socket in place: {s}", .{
                path, @tagName(compat.errno(rc)),
            });
        }
        return .{ .fd = fd, .where = where, .inode = inspect(where.pathZ()).inode };
    }

    /// Answers every process waiting at PATH with `fds` (named after their listeners);
    /// returns how many were answered.
    pub fn serve(self: *const Server, fds: []const sys.Fd, listener_indices: []const u16) usize {
        var answered: usize = 0;
        while (true) {
            const rc = linux.accept4(self.fd, null, null, linux.SOCK.CLOEXEC);
            if (compat.errno(rc) != .SUCCESS) return answered;
            const peer: sys.Fd = @intCast(rc);
            defer sys.close(peer);
            if (!trusted(peer)) {
                log.warn("handover: refused a process of another user at {s}", .{
                    self.socketPath(),
                });
                continue;
            }
            if (fds.len == 0 or fds.len > scm.max_fds) continue;
            var text_buf: [8192]u8 = undefined;
            const text = describe(&text_buf, listener_indices) orelse continue;
            if (scm.send(peer, null, 0, text, fds)) answered += 1;
        }
    }

    fn describe(buf: []u8, listener_indices: []const u16) ?[]const u8 {
        var len = (compat.bufPrint(buf, greeting ++ " pid={d}", .{linux.getpid()}) catch
            return null).len;
        for (listener_indices) |index| {
            const name = config.listeners[index].name;
            if (len + 1 + name.len > buf.len) return null;
            buf[len] = '\n';
            @memcpy(buf[len + 1 ..][0..name.len], name);
            len += 1 + name.len;
        }
        return buf[0..len];
    }

    pub fn socketPath(self: *const Server) []const u8 {
        return std.mem.sliceTo(self.where.pathZ(), 0);
    }

    /// Stops answering; removes PATH unless a successor has put its own socket there.
    pub fn close(self: *const Server) void {
        sys.close(self.fd);
        const now = inspect(self.where.pathZ());
        if (now.kind == .socket and now.inode == self.inode) _ = linux.unlink(self.where.pathZ());
    }
};

test "a process hands its sockets to the next one at the same path, which takes the path over" {
    var dir_buf: [64]u8 = undefined;
    const dir = try compat.bufPrint(&dir_buf, "/tmp/handover-test-{d}", .{linux.getpid()});
    var path_buf: [96]u8 = undefined;
    const path = try compat.bufPrint(&path_buf, "{s}.sock", .{dir});
    const old = try Server.open(path);
    var closed_old = false;
    defer if (!closed_old) old.close();

    // Any descriptor travels the same way: a socket pair stands in for the listeners.
    var pair: [2]i32 = undefined;
    const kind = linux.SOCK.STREAM | linux.SOCK.CLOEXEC;
    const rc = linux.socketpair(linux.AF.UNIX, kind, 0, &pair);
    try std.testing.expect(compat.errno(rc) == .SUCCESS);
    defer sys.close(pair[0]);
    defer sys.close(pair[1]);

    // The new process connects; the old one answers from its loop.
    const where = UnixAddress.init(path).?;
    const client = try sys.socket(linux.AF.UNIX, linux.SOCK.SEQPACKET | linux.SOCK.CLOEXEC, 0);
    defer sys.close(client);
    try std.testing.expect(compat.errno(linux.connect(client, &where.addr, where.len)) == .SUCCESS);
    const indices = [_]u16{0};
    try std.testing.expectEqual(@as(usize, 1), old.serve(pair[0..1], &indices));
    var text: [256]u8 = undefined;
    var fds: [scm.max_fds]sys.Fd = undefined;
    const got = try scm.receive(client, &text, &fds);
    defer for (got.fds) |fd| sys.close(fd);
    try std.testing.expectEqual(@as(usize, 1), got.fds.len);
    try std.testing.expect(std.mem.startsWith(u8, got.text, greeting ++ " pid="));
    try std.testing.expect(std.mem.endsWith(u8, got.text, "\n" ++ config.listeners[0].name));

    // The successor takes the path over; the old one's close leaves it in place.
    const new = try Server.open(path);
    defer new.close();
    try std.testing.expect(new.inode != old.inode);
    old.close();
    closed_old = true;
    try std.testing.expectEqual(FileKind.socket, inspect(new.where.pathZ()).kind);
}

test "a path that is not a socket is refused, and left alone" {
    var path_buf: [64]u8 = undefined;
    const path = try compat.bufPrint(&path_buf, "/tmp/handover-file-{d}", .{linux.getpid()});
    var z_buf: [65]u8 = undefined;
    const z: [*:0]const u8 = @ptrCast((try compat.bufPrint(&z_buf, "{s}\x00", .{path})).ptr);
    const fd = linux.open(z, .{ .CREAT = true, .ACCMODE = .WRONLY, .CLOEXEC = true }, 0o600);
    try std.testing.expect(compat.errno(fd) == .SUCCESS);
    sys.close(@intCast(fd));
    defer _ = linux.unlink(z);
    try std.testing.expectError(error.Invalid, checkPath(path));
    try std.testing.expectEqual(FileKind.other, inspect(z).kind);
    try std.testing.expectError(error.Invalid, checkPath(""));
}
