//! Active health checks of a proxy's servers (HAProxy's `check inter rise fall`): every
//! `check_interval_ms`, each worker makes a non-blocking TCP connect to each server of its
//! proxy listeners; the connect's outcome (within `connect_timeout_ms`) is a passed or failed
//! check, and `net/servers.zig` turns a streak of them into up or down. Each worker checks
//! on its own (they share no memory), so a server sees one connect per worker per interval,
//! and each worker says when it marks a server down or up.
const std = @import("std");
const config = @import("../../config.zig");
const compat = @import("../../compat.zig");
const sys = @import("../../net/sys.zig");
const address = @import("../../address.zig");
const log = @import("../../log.zig");
const connections_mod = @import("../../worker/connections.zig");
const servers_mod = @import("../../net/servers.zig");
const metrics = @import("../../metrics/cell.zig");
const linux = std.os.linux;
const assert = std.debug.assert;

const closed: sys.Fd = -1;
const max_servers = servers_mod.max_servers;

/// Token indexes of checks start here, above every pair's (`(slot * 2) + side`).
pub const index_base: u32 = 0x8000_0000;

/// One listener's checks: per server, the connect under way (or none) and its deadline, or
/// when the next one starts.
pub const Checks = struct {
    fds: [max_servers]sys.Fd = @splat(closed),
    /// A connect under way: its deadline; else when the next check starts.
    due_ms: [max_servers]u64 = @splat(0),
    /// Bumped at every check, so that an event of an earlier connect is dropped.
    generation: [max_servers]u24 = @splat(0),
};

/// Whether `index` (an epoll token's) names a check rather than a pair's side.
pub fn isCheck(index: u32) bool {
    return index >= index_base;
}

fn tokenOf(listener_index: u16, server: u16, generation: u24) u64 {
    const index = index_base | (@as(u32, listener_index) << 8) | server;
    return (connections_mod.Token{
        .kind = @import("../proxy.zig").token_kind,
        .generation = generation,
        .index = index,
    }).encode();
}

/// The listener's proxy when it checks its servers; null otherwise.
fn proxyOf(listener_index: u16) ?*const config.Proxy {
    if (config.listeners[listener_index].proxy == null) return null;
    const proxy = &config.listeners[listener_index].proxy.?;
    if (proxy.check_interval_ms == 0) return null;
    return proxy;
}

/// Starts the checks that are due and fails those past their deadline.
pub fn expire(
    all: []Checks,
    servers: []servers_mod.Servers,
    epfd: sys.Fd,
    now_ms: u64,
) void {
    for (all, 0..) |*c, l| {
        const listener_index: u16 = @intCast(l);
        const proxy = proxyOf(listener_index) orelse continue;
        for (0..proxy.servers.len) |i| {
            const s: u16 = @intCast(i);
            if (c.due_ms[s] > now_ms) continue;
            if (c.fds[s] != closed) {
                finish(c, &servers[l], listener_index, s, false, now_ms);
                continue;
            }
            start(c, &servers[l], listener_index, s, epfd, now_ms);
        }
    }
}

fn start(
    c: *Checks,
    servers: *servers_mod.Servers,
    listener_index: u16,
    s: u16,
    epfd: sys.Fd,
    now_ms: u64,
) void {
    const proxy = proxyOf(listener_index).?;
    const target = proxy.servers[s];
    const family: u32 = if (target.address.isIp6()) linux.AF.INET6 else linux.AF.INET;
    const flags: u32 = linux.SOCK.STREAM | linux.SOCK.NONBLOCK | linux.SOCK.CLOEXEC;
    const fd = sys.socket(family, flags, 0) catch {
        // Out of descriptors is not the server's fault: try again at the next interval.
        c.due_ms[s] = now_ms + proxy.check_interval_ms;
        return;
    };
    const sa = address.SockAddr.init(target.address, target.port);
    const rc = compat.errno(linux.connect(fd, sa.ptr(), sa.len));
    if (rc != .SUCCESS and rc != .INPROGRESS) {
        sys.close(fd);
        return finishClosed(c, servers, listener_index, s, false, now_ms);
    }
    c.generation[s] +%= 1;
    const data = tokenOf(listener_index, s, c.generation[s]);
    sys.epollCtl(epfd, linux.EPOLL.CTL_ADD, fd, linux.EPOLL.OUT, data) catch {
        sys.close(fd);
        c.due_ms[s] = now_ms + proxy.check_interval_ms;
        return;
    };
    c.fds[s] = fd;
    c.due_ms[s] = now_ms + proxy.connect_timeout_ms;
}

/// A check's connect is done (writable, or failed): passed when it connected.
pub fn onEvent(
    all: []Checks,
    servers: []servers_mod.Servers,
    t: connections_mod.Token,
    now_ms: u64,
) void {
    assert(isCheck(t.index));
    const listener_index: u16 = @intCast((t.index >> 8) & 0xffff);
    const s: u16 = @intCast(t.index & 0xff);
    if (listener_index >= all.len or s >= max_servers) return;
    const c = &all[listener_index];
    if (c.fds[s] == closed or c.generation[s] != t.generation) return;
    const failed = sys.getsockoptInt(c.fds[s], linux.SOL.SOCKET, linux.SO.ERROR) catch 1;
    finish(c, &servers[listener_index], listener_index, s, failed == 0, now_ms);
}

fn finish(
    c: *Checks,
    servers: *servers_mod.Servers,
    listener_index: u16,
    s: u16,
    passed: bool,
    now_ms: u64,
) void {
    assert(c.fds[s] != closed);
    // Closing also takes it out of the epoll set.
    sys.close(c.fds[s]);
    c.fds[s] = closed;
    finishClosed(c, servers, listener_index, s, passed, now_ms);
}

fn finishClosed(
    c: *Checks,
    servers: *servers_mod.Servers,
    listener_index: u16,
    s: u16,
    passed: bool,
    now_ms: u64,
) void {
    const proxy = proxyOf(listener_index).?;
    c.due_ms[s] = now_ms + proxy.check_interval_ms;
    const change = servers.recordCheck(s, passed) orelse return;
    metrics.set(&metrics.proxyServer(listener_index, s).down, @intFromBool(change == .down));
    const listener = config.listeners[listener_index].name;
    var text: [64]u8 = undefined;
    const where = address.format(proxy.servers[s].address, &text);
    const port = proxy.servers[s].port;
    const upstream = proxy.upstream;
    switch (change) {
        .down => log.warn("proxy {s}: server {d} ({s} port {d}) of upstream {s} is down: " ++
            "{d} checks failed in a row", .{ listener, s, where, port, upstream, proxy.fall }),
        .up => log.info("proxy {s}: server {d} ({s} port {d}) of upstream {s} is up: " ++
            "{d} checks passed in a row", .{ listener, s, where, port, upstream, proxy.rise }),
    }
}

/// The nearest check to start or to give up on; null for none.
pub fn nextMs(all: []const Checks) ?u64 {
    var next: ?u64 = null;
    for (all, 0..) |*c, l| {
        const proxy = proxyOf(@intCast(l)) orelse continue;
        for (c.due_ms[0..proxy.servers.len]) |at| next = @min(next orelse at, at);
    }
    return next;
}

/// Closes every check under way (the worker is exiting).
pub fn closeAll(all: []Checks) void {
    for (all) |*c| {
        for (&c.fds) |*fd| {
            if (fd.* == closed) continue;
            sys.close(fd.*);
            fd.* = closed;
        }
    }
}
