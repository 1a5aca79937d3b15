//! Every connection's deadline, in one structure per worker, without allocation after init.
//!
//! Each kind of deadline has one duration for the whole process (the spec's timeouts, or the
//! flags that override them), so arming a deadline always puts it after every deadline of the
//! same kind that was armed earlier. Keeping one list per kind in arming order therefore keeps
//! each list sorted: arming, re-arming and disarming are O(1) list operations, the nearest
//! deadline is the earliest of the list heads, and the head of the `idle` list is the
//! connection that has been idle longest, which is the one to evict when the table is full.
//!
//! A slot holds two deadlines at most: the one of its phase (any kind but `request`) and the
//! one of its whole request (`request`), each a node of its own in its kind's list.
const std = @import("std");
const compat = @import("../compat.zig");
const assert = std.debug.assert;

pub const Kind = enum {
    /// A request head has begun (or a response ended with bytes of the next one waiting):
    /// it must be complete by then. Further bytes do not move it.
    header,
    /// A request body is being read: the next byte must arrive by then.
    body,
    /// Nothing in flight: a keep-alive or stream connection waiting for its client.
    idle,
    /// Output waits for a client that does not read: it must make progress by then.
    write,
    /// The connection is closing and its unread input is being discarded (lingering close).
    linger,
    /// A request has begun: all of it, head and body, must have arrived by then, however
    /// steadily its bytes trickle in. Held beside the phase's deadline, not instead of it.
    request,
};

/// Every kind, in the order of `durations_ms`.
pub const kinds = [_]Kind{ .header, .body, .idle, .write, .linger, .request };
pub const kind_count = kinds.len;

/// A kind's position in `kinds` (spelled out: enum and integer conversions are builtins whose
/// names differ across the supported Zig releases).
fn position(kind: Kind) usize {
    return switch (kind) {
        .header => 0,
        .body => 1,
        .idle => 2,
        .write => 3,
        .linger => 4,
        .request => 5,
    };
}

const none = std.math.maxInt(u32);

const Node = struct {
    prev: u32 = none,
    next: u32 = none,
    at_ms: u64 = 0,
    kind: ?Kind = null,
};

const List = struct {
    head: u32 = none,
    tail: u32 = none,
    len: u32 = 0,
};

pub const Expired = struct {
    slot: u32,
    kind: Kind,
};

pub const Deadlines = struct {
    durations_ms: [kind_count]u32,
    /// Slots' phase deadlines at `[0, capacity)`, their request deadlines after them.
    nodes: []Node,
    capacity: u32,
    lists: [kind_count]List = @splat(.{}),

    pub fn init(
        allocator: std.mem.Allocator,
        capacity: u32,
        durations_ms: [kind_count]u32,
    ) !Deadlines {
        // `none` ends a list, so it cannot be a node.
        assert(capacity < none / 2);
        const nodes = try allocator.alloc(Node, @as(usize, capacity) * 2);
        for (nodes) |*node| node.* = .{};
        return .{ .durations_ms = durations_ms, .nodes = nodes, .capacity = capacity };
    }

    /// The node that holds `slot`'s deadline of `kind`.
    fn nodeOf(self: *const Deadlines, slot: u32, kind: Kind) u32 {
        assert(slot < self.capacity);
        return if (kind == .request) self.capacity + slot else slot;
    }

    fn slotOf(self: *const Deadlines, node: u32) u32 {
        assert(node < self.nodes.len);
        return if (node >= self.capacity) node - self.capacity else node;
    }

    pub fn deinit(self: *Deadlines, allocator: std.mem.Allocator) void {
        allocator.free(self.nodes);
        self.* = undefined;
    }

    /// Gives `slot` the deadline `kind` from `now_ms`, replacing the one it had of its phase
    /// (or, for `request`, of its request).
    pub fn arm(self: *Deadlines, slot: u32, kind: Kind, now_ms: u64) void {
        const index = self.nodeOf(slot, kind);
        self.unlink(index);
        const node = &self.nodes[index];
        node.* = .{ .at_ms = now_ms + self.durations_ms[position(kind)], .kind = kind };
        const list = &self.lists[position(kind)];
        node.prev = list.tail;
        if (list.tail != none) {
            // The invariant that keeps every list sorted: one duration per kind, and a
            // clock that never goes back.
            assert(self.nodes[list.tail].at_ms <= node.at_ms);
            self.nodes[list.tail].next = index;
        } else {
            list.head = index;
        }
        list.tail = index;
        list.len += 1;
        assert(list.len <= self.capacity);
        assert(node.next == none);
        assert(self.nodes[list.head].prev == none);
    }

    /// Takes away `slot`'s phase deadline (its request deadline stays).
    pub fn disarm(self: *Deadlines, slot: u32) void {
        self.unlink(self.nodeOf(slot, .header));
    }

    pub fn disarmRequest(self: *Deadlines, slot: u32) void {
        self.unlink(self.nodeOf(slot, .request));
    }

    fn unlink(self: *Deadlines, slot: u32) void {
        assert(slot < self.nodes.len);
        const node = &self.nodes[slot];
        const kind = node.kind orelse return;
        const list = &self.lists[position(kind)];
        assert(list.len > 0);
        // Linked both ways: its neighbours (or the list's ends) point at it.
        assert(slot == if (node.prev != none) self.nodes[node.prev].next else list.head);
        assert(slot == if (node.next != none) self.nodes[node.next].prev else list.tail);
        if (node.prev != none) self.nodes[node.prev].next = node.next else list.head = node.next;
        if (node.next != none) self.nodes[node.next].prev = node.prev else list.tail = node.prev;
        list.len -= 1;
        node.* = .{};
        assert((list.len == 0) == (list.head == none));
        assert((list.len == 0) == (list.tail == none));
    }

    /// The kind of `slot`'s phase deadline, if it has one.
    pub fn kindOf(self: *const Deadlines, slot: u32) ?Kind {
        return self.nodes[self.nodeOf(slot, .header)].kind;
    }

    /// When `slot`'s deadline of `kind` was armed; null when it has none of that kind.
    pub fn sinceMs(self: *const Deadlines, slot: u32, kind: Kind) ?u64 {
        const node = self.nodes[self.nodeOf(slot, kind)];
        if (node.kind == null or node.kind.? != kind) return null;
        return node.at_ms - self.durations_ms[position(kind)];
    }

    pub fn count(self: *const Deadlines, kind: Kind) u32 {
        const len = self.lists[position(kind)].len;
        assert(len <= self.nodes.len);
        return len;
    }

    /// The slot whose deadline of `kind` comes first: for `idle`, the longest idle.
    pub fn oldest(self: *const Deadlines, kind: Kind) ?u32 {
        const head = self.lists[position(kind)].head;
        if (head == none) return null;
        assert(self.nodes[head].kind.? == kind);
        assert(self.nodes[head].prev == none);
        return self.slotOf(head);
    }

    /// The slot whose deadline of `kind` comes next after `slot`'s (which must be armed).
    pub fn after(self: *const Deadlines, slot: u32, kind: Kind) ?u32 {
        const node = self.nodes[self.nodeOf(slot, kind)];
        assert(node.kind.? == kind);
        if (node.next == none) return null;
        return self.slotOf(node.next);
    }

    /// The nearest deadline of all, if any is armed.
    pub fn nextMs(self: *const Deadlines) ?u64 {
        var next: ?u64 = null;
        for (self.lists) |list| {
            if (list.head == none) continue;
            const at = self.nodes[list.head].at_ms;
            next = if (next) |n| @min(n, at) else at;
        }
        return next;
    }

    /// One deadline that has passed at `now_ms`, disarmed; null when none has.
    pub fn popExpired(self: *Deadlines, now_ms: u64) ?Expired {
        for (self.lists, 0..) |list, i| {
            if (list.head == none) continue;
            if (self.nodes[list.head].at_ms > now_ms) continue;
            const index = list.head;
            assert(self.nodes[index].kind.? == kinds[i]);
            self.unlink(index);
            assert(self.nodes[index].kind == null);
            return .{ .slot = self.slotOf(index), .kind = kinds[i] };
        }
        return null;
    }
};

fn testDeadlines() !Deadlines {
    return Deadlines.init(std.testing.allocator, 8, .{ 100, 200, 300, 50, 10, 400 });
}

test "a deadline fires after its kind's duration and not before" {
    var d = try testDeadlines();
    defer d.deinit(std.testing.allocator);
    d.arm(3, .header, 1000);
    try std.testing.expectEqual(@as(?u64, 1100), d.nextMs());
    try std.testing.expect(d.popExpired(1099) == null);
    const fired = d.popExpired(1100).?;
    try std.testing.expectEqual(@as(u32, 3), fired.slot);
    try std.testing.expectEqual(Kind.header, fired.kind);
    try std.testing.expect(d.kindOf(3) == null);
    try std.testing.expect(d.nextMs() == null);
}

test "re-arming moves a slot to the back of its list; the head is the longest idle" {
    var d = try testDeadlines();
    defer d.deinit(std.testing.allocator);
    d.arm(0, .idle, 0);
    d.arm(1, .idle, 10);
    d.arm(2, .idle, 20);
    try std.testing.expectEqual(@as(?u32, 0), d.oldest(.idle));
    d.arm(0, .idle, 30);
    try std.testing.expectEqual(@as(?u32, 1), d.oldest(.idle));
    try std.testing.expectEqual(@as(u32, 3), d.count(.idle));
    d.disarm(1);
    d.disarm(1);
    try std.testing.expectEqual(@as(?u32, 2), d.oldest(.idle));
    try std.testing.expectEqual(@as(u32, 2), d.count(.idle));
}

test "a slot holds one deadline: arming another kind replaces it" {
    var d = try testDeadlines();
    defer d.deinit(std.testing.allocator);
    d.arm(5, .idle, 0);
    d.arm(5, .write, 0);
    try std.testing.expectEqual(@as(u32, 0), d.count(.idle));
    try std.testing.expectEqual(@as(u32, 1), d.count(.write));
    try std.testing.expectEqual(@as(?u64, 50), d.nextMs());
}

test "the nearest deadline is the earliest across kinds, and they expire in order" {
    var d = try testDeadlines();
    defer d.deinit(std.testing.allocator);
    d.arm(0, .idle, 0); // 300
    d.arm(1, .header, 0); // 100
    d.arm(2, .linger, 0); // 10
    d.arm(3, .header, 5); // 105
    try std.testing.expectEqual(@as(?u64, 10), d.nextMs());
    var order: [4]u32 = undefined;
    var n: usize = 0;
    while (d.popExpired(1000)) |e| : (n += 1) order[n] = e.slot;
    try std.testing.expectEqual(@as(usize, 4), n);
    // Each list in order; the lists in any order.
    try std.testing.expect(compat.findScalar(u32, order[0..n], 1).? <
        compat.findScalar(u32, order[0..n], 3).?);
}

test "random arming keeps every list sorted (the invariant the asserts check)" {
    var d = try Deadlines.init(std.testing.allocator, 64, .{ 7, 3, 11, 5, 2, 13 });
    defer d.deinit(std.testing.allocator);
    var prng = std.Random.DefaultPrng.init(0x5eed);
    const random = prng.random();
    var now: u64 = 0;
    var round: usize = 0;
    while (round < 20_000) : (round += 1) {
        now += random.uintLessThan(u64, 3);
        const slot = random.uintLessThan(u32, 64);
        switch (random.uintLessThan(u8, 4)) {
            0 => d.disarm(slot),
            1 => _ = d.popExpired(now),
            else => d.arm(slot, kinds[random.uintLessThan(usize, kind_count)], now),
        }
    }
    var total: u32 = 0;
    for (kinds) |k| total += d.count(k);
    var armed: u32 = 0;
    for (0..64) |s| {
        armed += @intFromBool(d.kindOf(@intCast(s)) != null);
        armed += @intFromBool(d.sinceMs(@intCast(s), .request) != null);
    }
    try std.testing.expectEqual(armed, total);
}

test "a request deadline is held beside the phase's: arming and disarming one leaves the other" {
    var d = try testDeadlines();
    defer d.deinit(std.testing.allocator);
    d.arm(2, .request, 1000);
    d.arm(2, .header, 1000);
    d.arm(2, .body, 1050);
    try std.testing.expectEqual(@as(?u64, 1000), d.sinceMs(2, .request));
    try std.testing.expectEqual(Kind.body, d.kindOf(2).?);
    d.disarm(2);
    try std.testing.expectEqual(@as(?u64, 1000), d.sinceMs(2, .request));
    d.arm(2, .body, 1250);
    d.arm(5, .request, 1100);
    try std.testing.expectEqual(@as(?u32, 2), d.oldest(.request));
    try std.testing.expectEqual(@as(?u32, 5), d.after(2, .request));
    try std.testing.expect(d.after(5, .request) == null);
    // 1000 + 400 passes before 1250 + 200: the request's deadline fires first, as slot 2's.
    const first = d.popExpired(1400).?;
    try std.testing.expectEqual(@as(u32, 2), first.slot);
    try std.testing.expectEqual(Kind.request, first.kind);
    try std.testing.expectEqual(Kind.body, d.kindOf(2).?);
    d.disarmRequest(5);
    try std.testing.expect(d.oldest(.request) == null);
}
