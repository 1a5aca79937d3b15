//! Which server of an upstream a new connection goes to, and which servers are left out for a
//! while (passive health): one `Servers` per proxy listener (`handlers/proxy.zig`) and per
//! app-module upstream (`upstream/pool.zig`, round-robin) in each worker. Workers decide
//! alone, as HAProxy's threads do with their own `leastconn` counts.
//!
//! A server that refuses a connect or lets it time out is ejected for `eject_ms`, unless it
//! is the last one of its upstream not ejected (as nginx never marks an upstream's only
//! server down); a connect that succeeds puts it back at once. Retries of one client skip the
//! servers it already tried.
//!
//! With active health checks (`check_interval_ms`, `proxy/checks.zig`), a server is down
//! after `fall` failed checks in a row and up after `rise` passed ones (HAProxy's `check
//! inter rise fall`); a down server gets no client at all, not even as a last resort: with
//! every server down, a client is closed at once.
const std = @import("std");
const config = @import("../config.zig");
const assert = std.debug.assert;

/// The spec allows 64 servers per upstream: one bit each in a client's `tried` set.
pub const max_servers = 64;
pub const Tried = u64;

pub const Servers = struct {
    count: u16,
    balance: config.Balance,
    eject_ms: u32,
    /// Where round-robin goes on from (and where `leastconn` breaks its ties).
    next: u16 = 0,
    ejected_until_ms: [max_servers]u64 = @splat(0),
    /// This worker's pairs connecting or connected to each server (`leastconn`).
    active: [max_servers]u32 = @splat(0),
    /// Marked down by the health checks; checks passed or failed in a row since the last
    /// change of state.
    down: [max_servers]bool = @splat(false),
    streak: [max_servers]u8 = @splat(0),
    rise: u8 = 1,
    fall: u8 = 1,

    /// An app-module upstream's servers: round-robin, no health checks.
    pub fn roundRobin(count: usize, eject_ms: u32) Servers {
        assert(count >= 1 and count <= max_servers);
        return .{ .count = @intCast(count), .balance = .roundrobin, .eject_ms = eject_ms };
    }

    pub fn init(proxy: *const config.Proxy) Servers {
        assert(proxy.servers.len >= 1 and proxy.servers.len <= max_servers);
        return .{
            .count = @intCast(proxy.servers.len),
            .balance = proxy.balance,
            .eject_ms = proxy.eject_ms,
            .rise = proxy.rise,
            .fall = proxy.fall,
        };
    }

    /// The server for a client's next connect: one it has not tried, not ejected, chosen by
    /// the balance; else the untried one whose ejection ends first (a retry's last resort);
    /// null once it tried them all.
    pub fn pick(self: *Servers, now_ms: u64, tried: Tried) ?u16 {
        var best: ?u16 = null;
        var fallback: ?u16 = null;
        for (0..self.count) |k| {
            const s: u16 = @intCast((self.next + k) % self.count);
            if (tried & bit(s) != 0 or self.down[s]) continue;
            if (self.ejected_until_ms[s] > now_ms) {
                const sooner = fallback == null or
                    self.ejected_until_ms[s] < self.ejected_until_ms[fallback.?];
                if (sooner) fallback = s;
                continue;
            }
            switch (self.balance) {
                .roundrobin => {
                    best = s;
                    break;
                },
                .leastconn => if (best == null or self.active[s] < self.active[best.?]) {
                    best = s;
                },
            }
        }
        const chosen = best orelse fallback orelse return null;
        self.next = (chosen + 1) % self.count;
        return chosen;
    }

    /// Leaves `server` out for `eject_ms`, unless every other server is left out already.
    /// Returns whether it did.
    pub fn eject(self: *Servers, server: u16, now_ms: u64) bool {
        assert(server < self.count);
        for (0..self.count) |s| {
            if (s == server or self.ejected_until_ms[s] > now_ms) continue;
            self.ejected_until_ms[server] = now_ms + self.eject_ms;
            return true;
        }
        return false;
    }

    /// A connect to `server` succeeded: it is in rotation again.
    pub fn restore(self: *Servers, server: u16) void {
        assert(server < self.count);
        self.ejected_until_ms[server] = 0;
    }

    /// Counts a health check of `server`; returns its new state when this check changed it.
    pub fn recordCheck(self: *Servers, server: u16, passed: bool) ?enum { up, down } {
        assert(server < self.count);
        // A check that agrees with the state ends any streak towards the other state.
        if (passed != self.down[server]) {
            self.streak[server] = 0;
            return null;
        }
        self.streak[server] +|= 1;
        const needed = if (passed) self.rise else self.fall;
        if (self.streak[server] < needed) return null;
        self.streak[server] = 0;
        self.down[server] = !passed;
        return if (passed) .up else .down;
    }

    pub fn bit(server: u16) Tried {
        return @as(Tried, 1) << @intCast(server);
    }
};

const testing = std.testing;

fn testServers(count: u16, balance: config.Balance) Servers {
    return .{ .count = count, .balance = balance, .eject_ms = 1000 };
}

test "round-robin takes each server in turn, and skips the ejected and the tried" {
    var s = testServers(3, .roundrobin);
    try testing.expectEqual(@as(?u16, 0), s.pick(0, 0));
    try testing.expectEqual(@as(?u16, 1), s.pick(0, 0));
    try testing.expectEqual(@as(?u16, 2), s.pick(0, 0));
    try testing.expectEqual(@as(?u16, 0), s.pick(0, 0));
    try testing.expect(s.eject(1, 100));
    try testing.expectEqual(@as(?u16, 2), s.pick(100, 0));
    try testing.expectEqual(@as(?u16, 0), s.pick(100, 0));
    try testing.expectEqual(@as(?u16, 2), s.pick(100, Servers.bit(0)));
    // Its time is up: back in turn.
    try testing.expectEqual(@as(?u16, 1), s.pick(1100, Servers.bit(0)));
}

test "leastconn takes the server with the fewest pairs, ties in turn" {
    var s = testServers(3, .leastconn);
    s.active = @splat(0);
    s.active[0] = 5;
    s.active[1] = 2;
    s.active[2] = 2;
    try testing.expectEqual(@as(?u16, 1), s.pick(0, 0));
    try testing.expectEqual(@as(?u16, 2), s.pick(0, 0));
    s.active[2] = 1;
    try testing.expectEqual(@as(?u16, 2), s.pick(0, 0));
}

test "the last server in rotation is never ejected; a retry may fall back to an ejected one" {
    var s = testServers(2, .roundrobin);
    try testing.expect(s.eject(0, 0));
    try testing.expect(!s.eject(1, 0));
    try testing.expectEqual(@as(?u16, 1), s.pick(0, 0));
    // Server 1 was tried: server 0 is the last resort, then nothing is left.
    try testing.expectEqual(@as(?u16, 0), s.pick(0, Servers.bit(1)));
    try testing.expectEqual(@as(?u16, null), s.pick(0, Servers.bit(0) | Servers.bit(1)));
    s.restore(0);
    try testing.expectEqual(@as(u64, 0), s.ejected_until_ms[0]);
}

test "health checks: down after fall failures in a row, up after rise passes; down gets none" {
    var s = testServers(2, .roundrobin);
    s.rise = 2;
    s.fall = 3;
    try testing.expectEqual(null, s.recordCheck(1, false));
    try testing.expectEqual(null, s.recordCheck(1, false));
    // A pass breaks the streak: three more failures are needed.
    try testing.expectEqual(null, s.recordCheck(1, true));
    try testing.expectEqual(null, s.recordCheck(1, false));
    try testing.expectEqual(null, s.recordCheck(1, false));
    try testing.expect(s.recordCheck(1, false).? == .down);
    for (0..4) |_| try testing.expectEqual(@as(?u16, 0), s.pick(0, 0));
    // Not even a retry's last resort.
    try testing.expectEqual(@as(?u16, null), s.pick(0, Servers.bit(0)));
    try testing.expectEqual(null, s.recordCheck(1, true));
    try testing.expect(s.recordCheck(1, true).? == .up);
    try testing.expectEqual(@as(?u16, 1), s.pick(0, Servers.bit(0)));
}

test "an app-module upstream's rotation: round-robin, ejection while another is in, back" {
    var r = Servers.roundRobin(3, 1000);
    try std.testing.expectEqual(@as(?u16, 0), r.pick(0, 0));
    try std.testing.expectEqual(@as(?u16, 1), r.pick(0, 0));
    try std.testing.expect(r.eject(2, 10));
    // Left out until 1010: the turn goes on over 0 and 1.
    try std.testing.expectEqual(@as(?u16, 0), r.pick(20, 0));
    try std.testing.expectEqual(@as(?u16, 1), r.pick(20, 0));
    try std.testing.expectEqual(@as(?u16, 0), r.pick(20, 0));
    try std.testing.expect(r.eject(0, 30));
    // The last one in rotation stays in.
    try std.testing.expect(!r.eject(1, 40));
    try std.testing.expectEqual(@as(?u16, 1), r.pick(50, 0));
    // Past its time (or after a connect that succeeds) a server takes its turn again.
    try std.testing.expectEqual(@as(?u16, 2), r.pick(1010, 0));
    r.restore(0);
    try std.testing.expectEqual(@as(?u16, 0), r.pick(1010, 0));
}
