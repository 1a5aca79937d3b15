//! Privilege drop: the user and group the workers serve as (`"user"`, `"group"` in the spec,
//! `--user`, `--group`).
//!
//! Who runs as whom: the supervisor keeps the identity it was started with (root, to bind
//! ports below 1024): it opens new listeners when an upgrade adds or moves one, execs the new
//! supervisor of an upgrade (which must be root in turn) and reopens files. Each worker
//! drops right after exec, with its listening sockets already inherited: `setgroups`,
//! `setresgid`, `setresuid` (setgid and setuid, with the real, effective and saved ids all
//! set, so none is left to switch back to), then `PR_SET_NO_NEW_PRIVS`, then a check that
//! root cannot be regained; a worker that fails it does not serve. A `--standalone` process
//! opens its sockets, then drops itself (see `standalone.zig`).
//!
//! Names are resolved once, at start, by the process that was started (the supervisor or the
//! standalone process), from /etc/passwd and /etc/group read directly: the binary is static,
//! without the C library's name service switch. Workers get the numbers (`--drop-to`).
const std = @import("std");
const compat = @import("../compat.zig");
const sys = @import("../net/sys.zig");
const linux = std.os.linux;

/// Supplementary groups kept at most (the kernel allows 65536; a service user has a few).
pub const max_groups = 32;
/// Largest /etc/passwd or /etc/group read; a larger one is a start-up error, not a guess.
pub const max_file_bytes = 4 << 20;

/// prctl(2) options; their values are part of the Linux ABI on every architecture.
const PR_SET_NO_NEW_PRIVS: i32 = 38;
const PR_SET_PDEATHSIG: i32 = 1;

/// What a worker becomes: numbers only, resolved by the supervisor.
pub const Credentials = struct {
    uid: u32,
    gid: u32,
    /// Supplementary groups: `gid` first, then every group of /etc/group naming the user.
    groups: [max_groups]u32 = undefined,
    groups_len: u8 = 0,

    pub fn groupList(self: *const Credentials) []const u32 {
        return self.groups[0..self.groups_len];
    }

    fn addGroup(self: *Credentials, gid: u32) void {
        if (compat.findScalar(u32, self.groupList(), gid) != null) return;
        if (self.groups_len == max_groups) return;
        self.groups[self.groups_len] = gid;
        self.groups_len += 1;
    }

    /// "UID:GID:G1,G2,…", the value of the internal `--drop-to` flag.
    pub fn toText(self: *const Credentials, buf: []u8) ![]const u8 {
        var len = (try compat.bufPrint(buf, "{d}:{d}:", .{ self.uid, self.gid })).len;
        for (self.groupList(), 0..) |gid, i| {
            const sep: []const u8 = if (i == 0) "" else ",";
            len += (try compat.bufPrint(buf[len..], "{s}{d}", .{ sep, gid })).len;
        }
        return buf[0..len];
    }

    pub fn parse(text: []const u8) ?Credentials {
        var parts = std.mem.splitScalar(u8, text, ':');
        var c: Credentials = .{
            .uid = parseId(parts.next() orelse return null) orelse return null,
            .gid = parseId(parts.next() orelse return null) orelse return null,
        };
        var groups = std.mem.splitScalar(u8, parts.next() orelse return null, ',');
        while (groups.next()) |g| {
            if (c.groups_len == max_groups) return null;
            c.groups[c.groups_len] = parseId(g) orelse return null;
            c.groups_len += 1;
        }
        if (parts.next() != null or c.groups_len == 0) return null;
        return c;
    }
};

/// Where a user or group came from, for messages.
pub const Source = enum {
    spec,
    flag,

    fn describe(self: Source, comptime field: []const u8) []const u8 {
        return switch (self) {
            .spec => "spec field \"" ++ field ++ "\"",
            .flag => "--" ++ field,
        };
    }
};

pub const Request = struct {
    user: ?[]const u8 = null,
    group: ?[]const u8 = null,
    user_source: Source = .spec,
    group_source: Source = .spec,
};

/// Why names did not resolve, written for the operator.
pub const Diagnostic = struct {
    buf: [512]u8 = undefined,
    message: []const u8 = "",
    /// "user" or "group": the field the message is about.
    field: []const u8 = "user",

    fn set(
        self: *Diagnostic,
        field: []const u8,
        comptime format: []const u8,
        args: anytype,
    ) error{Refused} {
        self.field = field;
        self.message = compat.bufPrint(&self.buf, format, args) catch self.buf[0..];
        return error.Refused;
    }
};

/// The account databases as text.
pub const Databases = struct {
    passwd: []const u8,
    group: []const u8,
};

/// A numeric id: digits only (ids above 2^32 - 2 are not ids: -1 means "unchanged").
fn parseId(text: []const u8) ?u32 {
    if (text.len == 0 or text.len > 10) return null;
    for (text) |c| if (c < '0' or c > '9') return null;
    const id = std.fmt.parseInt(u32, text, 10) catch return null;
    return if (id == std.math.maxInt(u32)) null else id;
}

/// One /etc/passwd entry: name, uid, primary gid.
pub const User = struct { name: []const u8, uid: u32, gid: u32 };

/// The entry of `wanted` (a name, or a uid when all digits) in passwd text; the first
/// matching line wins, as with getpwnam. Lines that do not parse are skipped.
pub fn findUser(passwd: []const u8, wanted: []const u8) ?User {
    const id = parseId(wanted);
    var lines = std.mem.splitScalar(u8, passwd, '\n');
    while (lines.next()) |line| {
        var fields = std.mem.splitScalar(u8, line, ':');
        const name = fields.next() orelse continue;
        _ = fields.next() orelse continue;
        const uid = parseId(fields.next() orelse continue) orelse continue;
        const gid = parseId(fields.next() orelse continue) orelse continue;
        const match = if (id) |n| uid == n else std.mem.eql(u8, name, wanted);
        if (match and name.len > 0) return .{ .name = name, .uid = uid, .gid = gid };
    }
    return null;
}

/// The gid of `wanted` (a name, or a gid when all digits) in group text.
pub fn findGroup(group: []const u8, wanted: []const u8) ?u32 {
    const id = parseId(wanted);
    var lines = std.mem.splitScalar(u8, group, '\n');
    while (lines.next()) |line| {
        var fields = std.mem.splitScalar(u8, line, ':');
        const name = fields.next() orelse continue;
        _ = fields.next() orelse continue;
        const gid = parseId(fields.next() orelse continue) orelse continue;
        if (if (id) |n| gid == n else std.mem.eql(u8, name, wanted)) return gid;
    }
    return null;
}

/// Adds every group whose member list names `user` (what initgroups does).
fn addMemberGroups(c: *Credentials, group: []const u8, user: []const u8) void {
    var lines = std.mem.splitScalar(u8, group, '\n');
    while (lines.next()) |line| {
        var fields = std.mem.splitScalar(u8, line, ':');
        _ = fields.next() orelse continue;
        _ = fields.next() orelse continue;
        const gid = parseId(fields.next() orelse continue) orelse continue;
        var members = std.mem.splitScalar(u8, fields.next() orelse continue, ',');
        while (members.next()) |m| {
            if (std.mem.eql(u8, std.mem.trim(u8, m, " \r"), user)) c.addGroup(gid);
        }
    }
}

/// The credentials `request` names, from the databases' text. A numeric user missing from
/// passwd is accepted with a group; a name must be there.
pub fn resolve(request: Request, db: Databases, diag: *Diagnostic) error{Refused}!Credentials {
    const wanted = request.user orelse return diag.set("group", "{s} needs a user as well", .{
        request.group_source.describe("group"),
    });
    const user = findUser(db.passwd, wanted);
    if (user == null and parseId(wanted) == null) {
        return diag.set("user", "unknown user \"{s}\" ({s}): no such entry in /etc/passwd; " ++
            "create the user, or name an existing one", .{
            wanted, request.user_source.describe("user"),
        });
    }
    var c: Credentials = .{ .uid = if (user) |u| u.uid else parseId(wanted).?, .gid = 0 };
    if (request.group) |g| {
        c.gid = findGroup(db.group, g) orelse parseId(g) orelse
            return diag.set("group", "unknown group \"{s}\" ({s}): no such entry in " ++
                "/etc/group; create the group, or name an existing one", .{
                g, request.group_source.describe("group"),
            });
    } else if (user) |u| {
        c.gid = u.gid;
    } else {
        return diag.set("user", "user {s} ({s}) has no entry in /etc/passwd to take its " ++
            "group from: name the group too (\"group\", --group)", .{
            wanted, request.user_source.describe("user"),
        });
    }
    c.addGroup(c.gid);
    if (user) |u| addMemberGroups(&c, db.group, u.name);
    return c;
}

/// Reads /etc/passwd and /etc/group and resolves `request`. Null when nothing is to be
/// dropped: no user asked for, or this process runs as that user and group already (a
/// service started unprivileged with its own user named). Refused when names do not
/// resolve, or when the process is not root and is asked for another user.
pub fn resolveAtStart(request: Request, diag: *Diagnostic) error{Refused}!?Credentials {
    if (request.user == null and request.group == null) return null;
    const allocator = std.heap.page_allocator;
    const buf = allocator.alloc(u8, 2 * (max_file_bytes + 1)) catch
        return diag.set("user", "no memory to read /etc/passwd and /etc/group", .{});
    defer allocator.free(buf);
    const db: Databases = .{
        .passwd = try readDatabase("/etc/passwd", buf[0 .. max_file_bytes + 1], diag),
        .group = try readDatabase("/etc/group", buf[max_file_bytes + 1 ..], diag),
    };
    const c = try resolve(request, db, diag);
    const uid = linux.geteuid();
    if (c.uid == uid and c.gid == linux.getegid()) return null;
    if (uid != 0) {
        return diag.set("user", "this process runs as uid {d}, not root, and cannot switch " ++
            "its workers to uid {d} gid {d} ({s}); start it as root, or leave the user out", .{
            uid, c.uid, c.gid, request.user_source.describe("user"),
        });
    }
    return c;
}

fn readDatabase(path: [*:0]const u8, buf: []u8, diag: *Diagnostic) error{Refused}![]const u8 {
    const text = sys.readSmallFile(path, buf) catch |err|
        return diag.set("user", "cannot read {s} to resolve the user: {s}", .{
            path, @errorName(err),
        });
    if (text.len == buf.len) {
        return diag.set("user", "{s} is larger than {d} bytes; not read", .{
            path, max_file_bytes,
        });
    }
    return text;
}

pub const DropError = error{
    SetGroupsFailed,
    SetGidFailed,
    SetUidFailed,
    NoNewPrivsFailed,
    RootRegained,
    IdsDiffer,
};

/// Becomes `c` for good: supplementary groups, group, user, no new privileges, then checks
/// that none of it can be undone. Called by a worker with its sockets in hand.
pub fn drop(c: *const Credentials) DropError!void {
    const groups = c.groupList();
    if (failed(linux.setgroups(groups.len, groups.ptr))) return error.SetGroupsFailed;
    if (failed(linux.setresgid(c.gid, c.gid, c.gid))) return error.SetGidFailed;
    if (failed(linux.setresuid(c.uid, c.uid, c.uid))) return error.SetUidFailed;
    if (failed(linux.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))) return error.NoNewPrivsFailed;
    try verify(c);
}

/// A change of ids clears the parent-death signal a worker was started with: a worker arms
/// it again after `drop`, and checks that `parent` (its supervisor) did not die meanwhile.
pub fn rearmParentDeath(parent: linux.pid_t) bool {
    _ = linux.prctl(PR_SET_PDEATHSIG, compat.signalNumber(linux.SIG.KILL), 0, 0, 0);
    return linux.getppid() == parent;
}

/// Root cannot be regained, and every id is the target's.
fn verify(c: *const Credentials) DropError!void {
    if (c.uid != 0 and !failed(linux.setuid(0))) return error.RootRegained;
    if (c.gid != 0 and !failed(linux.setgid(0))) return error.RootRegained;
    var r: linux.uid_t = undefined;
    var e: linux.uid_t = undefined;
    var s: linux.uid_t = undefined;
    if (failed(linux.getresuid(&r, &e, &s))) return error.IdsDiffer;
    if (r != c.uid or e != c.uid or s != c.uid) return error.IdsDiffer;
    var rg: linux.gid_t = undefined;
    var eg: linux.gid_t = undefined;
    var sg: linux.gid_t = undefined;
    if (failed(linux.getresgid(&rg, &eg, &sg))) return error.IdsDiffer;
    if (rg != c.gid or eg != c.gid or sg != c.gid) return error.IdsDiffer;
}

fn failed(rc: usize) bool {
    return compat.errno(rc) != .SUCCESS;
}

const test_passwd =
    \\root:x:0:0:root:/root:/bin/bash
    \\# a comment, and a broken line
    \\broken:x:abc
    \\www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin
    \\nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
;
const test_group =
    \\root:x:0:
    \\www-data:x:33:
    \\adm:x:4:syslog,www-data
    \\logs:x:1200:alice, www-data
    \\nogroup:x:65534:
;
const test_db: Databases = .{ .passwd = test_passwd, .group = test_group };

test "resolves a user by name with its primary and member groups" {
    var diag: Diagnostic = .{};
    const c = try resolve(.{ .user = "www-data" }, test_db, &diag);
    try std.testing.expectEqual(@as(u32, 33), c.uid);
    try std.testing.expectEqual(@as(u32, 33), c.gid);
    try std.testing.expectEqualSlices(u32, &.{ 33, 4, 1200 }, c.groupList());
    const nobody = try resolve(.{ .user = "nobody" }, test_db, &diag);
    try std.testing.expectEqualSlices(u32, &.{65534}, nobody.groupList());
}

test "numeric ids, an explicit group, and unknown names" {
    var diag: Diagnostic = .{};
    const by_id = try resolve(.{ .user = "65534", .group = "33" }, test_db, &diag);
    try std.testing.expectEqual(@as(u32, 65534), by_id.uid);
    try std.testing.expectEqual(@as(u32, 33), by_id.gid);
    const by_name = try resolve(.{ .user = "33", .group = "nogroup" }, test_db, &diag);
    try std.testing.expectEqual(@as(u32, 65534), by_name.gid);
    try std.testing.expectEqualSlices(u32, &.{ 65534, 4, 1200 }, by_name.groupList());
    const unlisted = try resolve(.{ .user = "4000", .group = "4000" }, test_db, &diag);
    try std.testing.expectEqualSlices(u32, &.{4000}, unlisted.groupList());

    const unknown = Request{ .user = "nosuch", .user_source = .flag };
    try std.testing.expectError(error.Refused, resolve(unknown, test_db, &diag));
    try std.testing.expect(compat.find(u8, diag.message, "--user") != null);
    try std.testing.expect(compat.find(u8, diag.message, "\"nosuch\"") != null);
    const bad_group = Request{ .user = "nobody", .group = "nosuch" };
    try std.testing.expectError(error.Refused, resolve(bad_group, test_db, &diag));
    try std.testing.expectEqualStrings("group", diag.field);
    try std.testing.expect(compat.find(u8, diag.message, "spec field \"group\"") != null);
    try std.testing.expectError(error.Refused, resolve(.{ .user = "4000" }, test_db, &diag));
    try std.testing.expectError(error.Refused, resolve(.{ .group = "adm" }, test_db, &diag));
}

test "credentials travel as text to a worker" {
    var diag: Diagnostic = .{};
    const c = try resolve(.{ .user = "www-data" }, test_db, &diag);
    var buf: [64]u8 = undefined;
    const text = try c.toText(&buf);
    try std.testing.expectEqualStrings("33:33:33,4,1200", text);
    const back = Credentials.parse(text).?;
    try std.testing.expectEqualSlices(u32, c.groupList(), back.groupList());
    try std.testing.expect(Credentials.parse("1:2:") == null);
    try std.testing.expect(Credentials.parse("1:2:3:4") == null);
    try std.testing.expect(Credentials.parse("x:2:3") == null);
}
