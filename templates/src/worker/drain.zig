//! How a worker drains: when a stop begins it stops accepting (serving what the kernel had
//! already queued), lets connections with work in flight finish until the drain deadline,
//! and closes idle keep-alive connections after a short grace.
//!
//! Why the grace: a keep-alive client may have sent its next request already, and closing
//! under it would reset that request (the keep-alive race of reloads). During a drain every
//! response says `Connection: close`, so by the end of the grace every active client has
//! been told; the sweep then closes only connections that have nothing in flight and no
//! unread bytes waiting in the kernel (see `Connections.closeIdle`).
const std = @import("std");

/// How long idle keep-alive connections may stay open once a drain starts.
pub const idle_grace_ms = 1000;

pub const Drain = struct {
    deadline_ms: u64,
    /// When idle keep-alive connections are closed; null once done.
    sweep_at_ms: ?u64,

    pub fn begin(now_ms: u64, drain_timeout_ms: u32) Drain {
        return .{
            .deadline_ms = now_ms + drain_timeout_ms,
            .sweep_at_ms = now_ms + @min(drain_timeout_ms, idle_grace_ms),
        };
    }

    /// True once, when the idle sweep is due.
    pub fn takeSweep(self: *Drain, now_ms: u64) bool {
        const at = self.sweep_at_ms orelse return false;
        if (now_ms < at) return false;
        self.sweep_at_ms = null;
        return true;
    }

    pub fn expired(self: *const Drain, now_ms: u64) bool {
        return now_ms >= self.deadline_ms;
    }

    /// The next moment the drain needs the loop to wake up.
    pub fn nextMs(self: *const Drain) u64 {
        return @min(self.deadline_ms, self.sweep_at_ms orelse self.deadline_ms);
    }
};

test "the sweep comes once, after the grace, and never after the deadline" {
    var drain = Drain.begin(100, 5000);
    try std.testing.expect(!drain.takeSweep(1099));
    try std.testing.expectEqual(@as(u64, 1100), drain.nextMs());
    try std.testing.expect(drain.takeSweep(1100));
    try std.testing.expect(!drain.takeSweep(2000));
    try std.testing.expectEqual(@as(u64, 5100), drain.nextMs());
    try std.testing.expect(drain.expired(5100));

    var short = Drain.begin(0, 300);
    try std.testing.expectEqual(@as(u64, 300), short.nextMs());
}
