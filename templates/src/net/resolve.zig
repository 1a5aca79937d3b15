//! The addresses of upstream servers given as host names. The supervisor resolves them before
//! its first workers start (a name that does not resolve stops the start: exit 1) and again
//! on SIGHUP before the next generation (a name that fails then keeps its address), and hands
//! them to each worker on its command line (`--upstream-addresses`); a standalone process
//! resolves at its own start. Without libc: /etc/hosts first, then DNS A (then AAAA) over
//! UDP to the nameservers of /etc/resolv.conf, each query with a short timeout and a bounded
//! number of tries. A name resolves to one address (the first found); list a name several
//! times, or several names, for several servers.
const std = @import("std");
const config = @import("../config.zig");
const address = @import("../address.zig");
const compat = @import("../compat.zig");
const sys = @import("sys.zig");
const dns = @import("dns.zig");
const log = @import("../log.zig");
const linux = std.os.linux;

/// Every server of every upstream, in spec order.
pub const server_count = count: {
    var n: usize = 0;
    for (config.upstreams) |u| n += u.servers.len;
    break :count n;
};

/// The spec's servers that are host names, by their place in `server_count`.
const named = count: {
    var n: usize = 0;
    for (config.upstreams) |u| {
        for (u.servers) |s| {
            if (s.host.len > 0) n += 1;
        }
    }
    break :count n;
};

/// The resolved address of each server that is a host name (null: not resolved).
pub const Table = struct {
    addresses: [server_count]?address.Address = @splat(null),

    /// The resolved address of server `s` of upstream `u`, if it is a name resolved.
    pub fn get(self: *const Table, u: usize, s: usize) ?address.Address {
        return self.addresses[flatIndex(u, s)];
    }

    /// The value of `--upstream-addresses`: `U.S=ADDRESS` for each resolved server, comma
    /// separated; "" when there are none.
    pub fn toText(self: *const Table, buf: []u8) ![]const u8 {
        var len: usize = 0;
        for (config.upstreams, 0..) |u, ui| {
            for (0..u.servers.len) |si| {
                const a = self.addresses[flatIndex(ui, si)] orelse continue;
                var text: [64]u8 = undefined;
                const separator: []const u8 = if (len == 0) "" else ",";
                const item = try compat.bufPrint(buf[len..], "{s}{d}.{d}={s}", .{
                    separator, ui, si, address.format(a, &text),
                });
                len += item.len;
            }
        }
        return buf[0..len];
    }

    /// Reads what `toText` wrote; null when it does not parse (or names no host server).
    pub fn parse(text: []const u8) ?Table {
        var table: Table = .{};
        if (text.len == 0) return table;
        var items = std.mem.splitScalar(u8, text, ',');
        while (items.next()) |item| {
            const eq = compat.findScalar(u8, item, '=') orelse return null;
            const dot = compat.findScalar(u8, item[0..eq], '.') orelse return null;
            const u = std.fmt.parseInt(usize, item[0..dot], 10) catch return null;
            const s = std.fmt.parseInt(usize, item[dot + 1 .. eq], 10) catch return null;
            if (u >= config.upstreams.len or s >= config.upstreams[u].servers.len) return null;
            if (config.upstreams[u].servers[s].host.len == 0) return null;
            table.addresses[flatIndex(u, s)] = address.parse(item[eq + 1 ..]) catch return null;
        }
        return table;
    }
};

fn flatIndex(u: usize, s: usize) usize {
    var i: usize = 0;
    for (config.upstreams[0..u]) |earlier| i += earlier.servers.len;
    return i + s;
}

/// The addresses this process's upstreams use: set from `--upstream-addresses` in a worker,
/// by `resolveAll` in a standalone process; read by the pool when it starts.
pub var current: Table = .{};

/// Where names are looked up.
pub const Sources = struct {
    hosts_path: [*:0]const u8 = "/etc/hosts",
    resolv_path: [*:0]const u8 = "/etc/resolv.conf",
    /// Per query and try.
    timeout_ms: i32 = 700,
    /// Tries per nameserver.
    tries: u8 = 2,
    /// The nameservers' port (a test's own nameserver listens elsewhere).
    port: u16 = 53,
};

pub const Error = error{ NotFound, NoAnswer };

/// Why a name did not resolve, for messages.
pub const Failure = struct {
    upstream: []const u8 = "",
    server: []const u8 = "",
    port: u16 = 0,
    reason: []const u8 = "",
};

/// What to do when a name does not resolve: stop at it, or keep its address, tell
/// `each` (when given) and go on with the others.
pub const OnFailure = union(enum) {
    stop,
    keep: ?*const fn (Failure) void,
};

/// Resolves every host-named server into `table`; the first failure, if any (see
/// `OnFailure`).
pub fn resolveAll(table: *Table, sources: Sources, on_failure: OnFailure) ?Failure {
    if (named == 0) return null;
    var first: ?Failure = null;
    for (config.upstreams, 0..) |u, ui| {
        for (u.servers, 0..) |s, si| {
            if (s.host.len == 0) continue;
            if (resolve(s.host, sources)) |a| {
                table.addresses[flatIndex(ui, si)] = a;
            } else |err| {
                const failure: Failure = .{
                    .upstream = u.name,
                    .server = s.host,
                    .port = s.port,
                    .reason = reasonOf(err),
                };
                switch (on_failure) {
                    .stop => return failure,
                    .keep => |each| if (each) |tell| tell(failure),
                }
                if (first == null) first = failure;
            }
        }
    }
    return first;
}

/// Resolves the upstream servers given as host names, before anything opens; false, with
/// the upstream and the server named, when one does not resolve (the start fails: exit 1).
pub fn atStart(table: *Table) bool {
    const failure = resolveAll(table, .{}, .stop) orelse return true;
    log.err("upstream {s}: server {s}:{d} does not resolve: {s}; fix the name in the " ++
        "spec, /etc/hosts or /etc/resolv.conf", .{
        failure.upstream, failure.server, failure.port, failure.reason,
    });
    return false;
}

fn reasonOf(err: Error) []const u8 {
    return switch (err) {
        error.NotFound => "the name does not exist (not in the hosts file; DNS: no such name)",
        error.NoAnswer => "no nameserver gave an address in time",
    };
}

/// One name's address: the hosts file, then each nameserver (A, then AAAA).
pub fn resolve(name: []const u8, sources: Sources) Error!address.Address {
    var buf: [64 * 1024]u8 = undefined;
    if (sys.readSmallFile(sources.hosts_path, &buf)) |text| {
        if (fromHosts(text, name)) |a| return a;
    } else |_| {}
    var servers: [3]address.Address = undefined;
    const conf = sys.readSmallFile(sources.resolv_path, &buf) catch "";
    const n = nameservers(conf, &servers);
    var nxdomain = false;
    for (0..sources.tries) |_| {
        for (servers[0..n]) |server| {
            inline for (.{ dns.Type.a, dns.Type.aaaa }) |qtype| {
                if (ask(server, sources.port, name, qtype, sources.timeout_ms)) |found| {
                    if (found) |a| return a;
                } else |err| switch (err) {
                    error.NoSuchName => nxdomain = true,
                    else => {},
                }
            }
            if (nxdomain) return error.NotFound;
        }
    }
    return error.NoAnswer;
}

/// The first address the hosts file gives `name` (`ADDRESS NAME ALIAS…` lines, `#` comments).
pub fn fromHosts(text: []const u8, name: []const u8) ?address.Address {
    const dotted = name.len > 0 and name[name.len - 1] == '.';
    const wanted = if (dotted) name[0 .. name.len - 1] else name;
    var lines = std.mem.splitScalar(u8, text, '\n');
    while (lines.next()) |raw| {
        const line = if (compat.findScalar(u8, raw, '#')) |at| raw[0..at] else raw;
        var fields = std.mem.tokenizeAny(u8, line, " \t\r");
        const ip_text = fields.next() orelse continue;
        while (fields.next()) |alias| {
            if (!std.ascii.eqlIgnoreCase(alias, wanted)) continue;
            // A link-local IPv6 with a zone (`fe80::1%eth0`) does not parse: skipped.
            return address.parse(ip_text) catch break;
        }
    }
    return null;
}

/// The `nameserver` lines of resolv.conf (at most 3, as the C library reads); 127.0.0.1
/// when there are none.
pub fn nameservers(text: []const u8, out: *[3]address.Address) usize {
    var n: usize = 0;
    var lines = std.mem.splitScalar(u8, text, '\n');
    while (lines.next()) |line| {
        if (n == out.len) break;
        var fields = std.mem.tokenizeAny(u8, line, " \t\r");
        const key = fields.next() orelse continue;
        if (!std.mem.eql(u8, key, "nameserver")) continue;
        const value = fields.next() orelse continue;
        out[n] = address.parse(value) catch continue;
        n += 1;
    }
    if (n == 0) {
        out[0] = .{ .ip4 = .{ 127, 0, 0, 1 } };
        n = 1;
    }
    return n;
}

/// One query to one nameserver: its address, null (no record of this type), or an error.
fn ask(
    server: address.Address,
    port: u16,
    name: []const u8,
    qtype: dns.Type,
    timeout_ms: i32,
) !?address.Address {
    var query_buf: [dns.max_message_bytes]u8 = undefined;
    const id: u16 = @truncate(sys.monotonicUs() ^ @as(u64, @intCast(linux.getpid())));
    const query = try dns.buildQuery(&query_buf, id, name, qtype);
    const family: u32 = if (server.isIp6()) linux.AF.INET6 else linux.AF.INET;
    const fd = try sys.socket(family, linux.SOCK.DGRAM | linux.SOCK.CLOEXEC, 0);
    defer sys.close(fd);
    // Connected: the kernel drops datagrams from anyone but the nameserver.
    const sa = address.SockAddr.init(server, port);
    if (compat.errno(linux.connect(fd, sa.ptr(), sa.len)) != .SUCCESS) return error.Unreachable;
    _ = try sys.sendNow(fd, query);
    const deadline = sys.monotonicMs() + @as(u64, @intCast(timeout_ms));
    var reply: [dns.max_message_bytes]u8 = undefined;
    // Bounded: each pass waits until the deadline at most, and stale answers are few.
    for (0..8) |_| {
        const now = sys.monotonicMs();
        if (now >= deadline) return error.Timeout;
        var pfd = [_]linux.pollfd{.{ .fd = fd, .events = linux.POLL.IN, .revents = 0 }};
        const rc = linux.poll(&pfd, 1, @intCast(deadline - now));
        if (compat.errno(rc) != .SUCCESS) continue;
        if (rc == 0) return error.Timeout;
        const n = sys.read(fd, &reply) catch return error.Unreachable;
        return dns.firstAddress(reply[0..n], id, name, qtype) catch |err| switch (err) {
            // Someone else's answer (an earlier query's, late): wait on for ours.
            error.NotOurs => continue,
            else => return err,
        };
    }
    return error.Timeout;
}

const testing = std.testing;

test "the hosts file: the first line that names it, comments and case aside" {
    const hosts = "# comment\n127.0.0.1 localhost\n::1 localhost ip6-localhost\n" ++
        "10.0.0.5\tdb.internal  DB # the database\nfe80::1%eth0 linklocal\n";
    try testing.expectEqualSlices(u8, &.{ 127, 0, 0, 1 }, &fromHosts(hosts, "localhost").?.ip4);
    try testing.expectEqualSlices(u8, &.{ 10, 0, 0, 5 }, &fromHosts(hosts, "db").?.ip4);
    try testing.expectEqualSlices(u8, &.{ 10, 0, 0, 5 }, &fromHosts(hosts, "DB.internal.").?.ip4);
    try testing.expectEqual(@as(u8, 1), fromHosts(hosts, "ip6-localhost").?.ip6[15]);
    try testing.expect(fromHosts(hosts, "comment") == null);
    try testing.expect(fromHosts(hosts, "the") == null);
    try testing.expect(fromHosts(hosts, "linklocal") == null);
}

test "resolv.conf: up to three nameservers, 127.0.0.1 without one" {
    var out: [3]address.Address = undefined;
    const conf = "search example.com\nnameserver 10.0.0.2\nnameserver ::1\n" ++
        "nameserver bad\nnameserver 10.0.0.3\nnameserver 10.0.0.4\n";
    try testing.expectEqual(@as(usize, 3), nameservers(conf, &out));
    try testing.expectEqual(@as(u8, 2), out[0].ip4[3]);
    try testing.expect(out[1].isIp6());
    try testing.expectEqual(@as(u8, 3), out[2].ip4[3]);
    try testing.expectEqual(@as(usize, 1), nameservers("options ndots:2\n", &out));
    try testing.expectEqual(@as(u8, 1), out[0].ip4[3]);
}

test "a name not in the hosts file, answered by a nameserver on loopback over UDP" {
    // A nameserver of the test's own: a child process on a free loopback UDP port that
    // answers the first query (A) with 192.0.2.7.
    const fd = try sys.socket(linux.AF.INET, linux.SOCK.DGRAM | linux.SOCK.CLOEXEC, 0);
    defer sys.close(fd);
    const any = address.SockAddr.init(.{ .ip4 = .{ 127, 0, 0, 1 } }, 0);
    try sys.bind(fd, any.ptr(), any.len);
    var bound: linux.sockaddr.storage = undefined;
    _ = try sys.getsockname(fd, &bound);
    const port = std.mem.bigToNative(u16, @as(*const linux.sockaddr.in, @ptrCast(&bound)).port);
    const pid = linux.fork();
    try testing.expectEqual(linux.E.SUCCESS, compat.errno(pid));
    if (pid == 0) answerOnce(fd);
    // The child has answered and exited by the time `resolve` returns; reaped either way.
    defer _ = compat.waitpid(@intCast(pid), 0) catch null;
    // No hosts file, no resolv.conf (so 127.0.0.1): the query goes to the child.
    const sources: Sources = .{
        .hosts_path = "/nonexistent/hosts",
        .resolv_path = "/nonexistent/resolv.conf",
        .port = port,
        .timeout_ms = 5000,
        .tries = 1,
    };
    const a = try resolve("svc.test", sources);
    try testing.expectEqualSlices(u8, &.{ 192, 0, 2, 7 }, &a.ip4);
}

/// The child side of the test above: one query read, one answer sent, then exit.
fn answerOnce(fd: sys.Fd) noreturn {
    var got: [dns.max_message_bytes]u8 = undefined;
    var from: sys.Peer = .{};
    const n = sys.recvfrom(fd, &got, &from) catch linux.exit_group(1);
    if (n < 12 or n + 16 > got.len) linux.exit_group(1);
    // The query turned into a response with one A record.
    got[2] = 0x81;
    got[3] = 0x80;
    got[7] = 1;
    const record = "\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\xc0\x00\x02\x07";
    @memcpy(got[n..][0..record.len], record);
    _ = sys.sendto(fd, got[0 .. n + record.len], &from) catch linux.exit_group(1);
    linux.exit_group(0);
}

test "a name that no source knows: not found, or no answer (nobody listens)" {
    const sources: Sources = .{
        .hosts_path = "/nonexistent/hosts",
        .resolv_path = "/nonexistent/resolv.conf",
        // A port nobody listens on: each query is refused (ICMP) or times out.
        .port = 9,
        .timeout_ms = 200,
        .tries = 1,
    };
    try testing.expectError(error.NoAnswer, resolve("nobody.test", sources));
}

test "the table handed to workers reads back as written" {
    var table: Table = .{};
    var buf: [256]u8 = undefined;
    try testing.expectEqualStrings("", try table.toText(&buf));
    try testing.expect(Table.parse("") != null);
    try testing.expect(Table.parse("x") == null);
    try testing.expect(Table.parse("99.0=127.0.0.1") == null);
    if (named == 0) return;
    // The first host-named server of the spec.
    const at: struct { u: usize, s: usize } = comptime found: {
        for (config.upstreams, 0..) |u, ui| {
            for (u.servers, 0..) |s, si| if (s.host.len > 0) break :found .{ .u = ui, .s = si };
        }
        unreachable;
    };
    table.addresses[flatIndex(at.u, at.s)] = .{ .ip6 = @as([15]u8, @splat(0)) ++ [_]u8{1} };
    const text = try table.toText(&buf);
    const back = Table.parse(text).?;
    try testing.expect(back.get(at.u, at.s).?.isIp6());
}

test "a name that fails again keeps its address; at start it is a failure naming it" {
    if (named == 0) return;
    const nowhere: Sources = .{
        .hosts_path = "/nonexistent/hosts",
        .resolv_path = "/nonexistent/resolv.conf",
        .port = 9,
        .timeout_ms = 200,
        .tries = 1,
    };
    var table: Table = .{};
    const failed = resolveAll(&table, nowhere, .stop).?;
    try testing.expect(failed.upstream.len > 0 and failed.server.len > 0);
    try testing.expectEqualStrings(reasonOf(error.NoAnswer), failed.reason);
    // Resolved once (the hosts file knows every name here), then failing: kept.
    for (&table.addresses) |*a| a.* = .{ .ip4 = .{ 10, 9, 8, 7 } };
    const Told = struct {
        var count: usize = 0;
        fn tell(failure: Failure) void {
            _ = failure;
            count += 1;
        }
    };
    Told.count = 0;
    try testing.expect(resolveAll(&table, nowhere, .{ .keep = &Told.tell }) != null);
    try testing.expectEqual(named, Told.count);
    for (table.addresses) |a| try testing.expectEqual(@as(u8, 7), a.?.ip4[3]);
}
