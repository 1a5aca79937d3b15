//! The application timers of a worker's connections: at most one per connection, each with a
//! delay of the module's choosing (`io.setTimer` in a stream module).
//!
//! `deadlines.zig` can keep one sorted list per kind because every deadline of a kind has the
//! same duration; these delays differ, so they live in a binary min-heap of connection slots
//! instead. It is sized once for the whole connection table and never allocates afterwards:
//! arming, re-arming and cancelling are O(log n), the nearest expiry is the root, and the
//! worker's `epoll_wait` ends there like at any deadline.
//!
//! Each timer remembers the slot's generation when it was armed. The connection table cancels
//! a slot's timer when it closes, so a reused slot starts without one; the generation is the
//! second guard: an expiry whose generation is not the slot's is dropped by the caller.
const std = @import("std");
const assert = std.debug.assert;

const none = std.math.maxInt(u32);

pub const Expired = struct {
    slot: u32,
    generation: u32,
};

pub const Timers = struct {
    /// Slots ordered so that each one's expiry is no later than its children's.
    heap: []u32,
    len: u32 = 0,
    /// Per slot: its index in `heap`, or `none` when it has no timer.
    index: []u32,
    /// Per slot: when its timer fires (valid while it has one).
    at_ms: []u64,
    /// Per slot: the generation the timer was armed for.
    generation: []u32,

    pub fn init(allocator: std.mem.Allocator, capacity: u32) !Timers {
        // `none` marks a slot without a timer, so it cannot be a slot.
        assert(capacity < none);
        const heap = try allocator.alloc(u32, capacity);
        errdefer allocator.free(heap);
        const index = try allocator.alloc(u32, capacity);
        errdefer allocator.free(index);
        const at_ms = try allocator.alloc(u64, capacity);
        errdefer allocator.free(at_ms);
        const generation = try allocator.alloc(u32, capacity);
        @memset(index, none);
        @memset(at_ms, 0);
        @memset(generation, 0);
        return .{ .heap = heap, .index = index, .at_ms = at_ms, .generation = generation };
    }

    pub fn deinit(self: *Timers, allocator: std.mem.Allocator) void {
        allocator.free(self.heap);
        allocator.free(self.index);
        allocator.free(self.at_ms);
        allocator.free(self.generation);
        self.* = undefined;
    }

    pub fn isArmed(self: *const Timers, slot: u32) bool {
        assert(slot < self.index.len);
        return self.index[slot] != none;
    }

    /// Gives `slot` a timer that fires at `at_ms`, replacing the one it had.
    pub fn arm(self: *Timers, slot: u32, generation: u32, at_ms: u64) void {
        assert(slot < self.index.len);
        self.generation[slot] = generation;
        if (self.index[slot] != none) {
            assert(self.heap[self.index[slot]] == slot);
            const sooner = at_ms < self.at_ms[slot];
            self.at_ms[slot] = at_ms;
            if (sooner) self.up(self.index[slot]) else self.down(self.index[slot]);
        } else {
            assert(self.len < self.heap.len);
            self.at_ms[slot] = at_ms;
            self.heap[self.len] = slot;
            self.index[slot] = self.len;
            self.len += 1;
            self.up(self.len - 1);
        }
        assert(self.index[slot] < self.len);
        assert(self.heap[self.index[slot]] == slot);
        assert(self.at_ms[slot] == at_ms);
    }

    pub fn cancel(self: *Timers, slot: u32) void {
        assert(slot < self.index.len);
        const i = self.index[slot];
        if (i == none) return;
        assert(i < self.len);
        assert(self.heap[i] == slot);
        self.index[slot] = none;
        self.len -= 1;
        if (i == self.len) return;
        // The last leaf takes the hole; it may belong above or below it.
        const moved = self.heap[self.len];
        assert(moved != slot);
        self.heap[i] = moved;
        self.index[moved] = i;
        self.up(i);
        self.down(self.index[moved]);
        assert(self.heap[self.index[moved]] == moved);
    }

    /// The nearest expiry, if any timer is armed.
    pub fn nextMs(self: *const Timers) ?u64 {
        if (self.len == 0) return null;
        assert(self.index[self.heap[0]] == 0);
        return self.at_ms[self.heap[0]];
    }

    /// One timer that has fired at `now_ms`, removed; null when none has.
    pub fn popExpired(self: *Timers, now_ms: u64) ?Expired {
        if (self.len == 0) return null;
        const slot = self.heap[0];
        if (self.at_ms[slot] > now_ms) return null;
        self.cancel(slot);
        assert(!self.isArmed(slot));
        return .{ .slot = slot, .generation = self.generation[slot] };
    }

    fn earlier(self: *const Timers, a: u32, b: u32) bool {
        assert(a < self.len);
        assert(b < self.len);
        return self.at_ms[self.heap[a]] < self.at_ms[self.heap[b]];
    }

    fn swap(self: *Timers, a: u32, b: u32) void {
        assert(a < self.len);
        assert(b < self.len);
        assert(a != b);
        const slot_a = self.heap[a];
        const slot_b = self.heap[b];
        self.heap[a] = slot_b;
        self.heap[b] = slot_a;
        self.index[slot_b] = a;
        self.index[slot_a] = b;
    }

    fn up(self: *Timers, start: u32) void {
        assert(start < self.len);
        var i = start;
        // Each step moves one level towards the root.
        while (i > 0) {
            const parent = (i - 1) / 2;
            if (!self.earlier(i, parent)) return;
            self.swap(i, parent);
            i = parent;
        }
    }

    fn down(self: *Timers, start: u32) void {
        assert(start < self.len);
        var i = start;
        // Each step moves one level towards the leaves.
        while (true) {
            const left = 2 * i + 1;
            if (left >= self.len) return;
            const right = left + 1;
            var child = left;
            if (right < self.len and self.earlier(right, left)) child = right;
            if (!self.earlier(child, i)) return;
            self.swap(i, child);
            i = child;
        }
    }

    /// The heap order and the index agree (for tests and Debug invariant checks).
    pub fn isConsistent(self: *const Timers) bool {
        for (self.heap[0..self.len], 0..) |slot, i| {
            if (self.index[slot] != i) return false;
            if (i > 0 and self.at_ms[slot] < self.at_ms[self.heap[(i - 1) / 2]]) return false;
        }
        var armed: u32 = 0;
        for (self.index) |i| armed += @intFromBool(i != none);
        return armed == self.len;
    }
};

test "a timer fires at its time and not before, with its generation" {
    var t = try Timers.init(std.testing.allocator, 8);
    defer t.deinit(std.testing.allocator);
    t.arm(3, 7, 1250);
    try std.testing.expectEqual(@as(?u64, 1250), t.nextMs());
    try std.testing.expect(t.popExpired(1249) == null);
    const fired = t.popExpired(1250).?;
    try std.testing.expectEqual(@as(u32, 3), fired.slot);
    try std.testing.expectEqual(@as(u32, 7), fired.generation);
    try std.testing.expect(!t.isArmed(3));
    try std.testing.expect(t.nextMs() == null);
}

test "arbitrary delays fire in time order; re-arming and cancelling move them" {
    var t = try Timers.init(std.testing.allocator, 8);
    defer t.deinit(std.testing.allocator);
    t.arm(0, 1, 500);
    t.arm(1, 1, 100);
    t.arm(2, 1, 300);
    t.arm(3, 1, 50);
    t.arm(1, 1, 900); // later
    t.arm(2, 1, 10); // earlier
    t.cancel(3);
    t.cancel(3);
    try std.testing.expect(t.isConsistent());
    var order: [3]u32 = undefined;
    var n: usize = 0;
    while (t.popExpired(10_000)) |e| : (n += 1) order[n] = e.slot;
    try std.testing.expectEqual(@as(usize, 3), n);
    try std.testing.expectEqualSlices(u32, &.{ 2, 0, 1 }, &order);
}

test "a slot's next connection starts without the timer of the one before" {
    var t = try Timers.init(std.testing.allocator, 4);
    defer t.deinit(std.testing.allocator);
    t.arm(2, 1, 100);
    // The first connection closes (its timer is cancelled); the slot's next one arms later.
    t.cancel(2);
    try std.testing.expect(t.popExpired(1000) == null);
    t.arm(2, 2, 500);
    try std.testing.expect(t.popExpired(499) == null);
    const fired = t.popExpired(500).?;
    try std.testing.expectEqual(@as(u32, 2), fired.generation);
    try std.testing.expect(t.popExpired(1000) == null);
}

test "random arming, cancelling and popping agree with a plain table" {
    const capacity = 64;
    var t = try Timers.init(std.testing.allocator, capacity);
    defer t.deinit(std.testing.allocator);
    var model: [capacity]?u64 = @splat(null);
    var prng = std.Random.DefaultPrng.init(0x7157);
    const random = prng.random();
    var now: u64 = 0;
    var round: usize = 0;
    while (round < 20_000) : (round += 1) {
        now += random.uintLessThan(u64, 4);
        const slot = random.uintLessThan(u32, capacity);
        switch (random.uintLessThan(u8, 4)) {
            0 => {
                t.cancel(slot);
                model[slot] = null;
            },
            1 => if (t.popExpired(now)) |e| {
                // The earliest of the table, and due.
                var earliest: u64 = std.math.maxInt(u64);
                for (model) |m| if (m) |at| {
                    earliest = @min(earliest, at);
                };
                try std.testing.expectEqual(earliest, model[e.slot].?);
                try std.testing.expect(earliest <= now);
                model[e.slot] = null;
            },
            else => {
                const at = now + random.uintLessThan(u64, 1000);
                t.arm(slot, @intCast(round), at);
                model[slot] = at;
            },
        }
        try std.testing.expect(t.isConsistent());
    }
    for (model, 0..) |m, slot| {
        try std.testing.expectEqual(m != null, t.isArmed(@intCast(slot)));
    }
}
