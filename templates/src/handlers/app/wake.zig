//! The wakes of held HTTP requests (`res.later`, `http.wake`): a queue of waiters that the
//! worker's loop empties on each turn (see `Connections.applyWakes`). Any callback of any
//! module of the worker may wake; one thread serves the worker, so no lock is needed.
const std = @import("std");
const config = @import("../../config.zig");
const compat = @import("../../compat.zig");
const api = @import("../api.zig");

pub const Waiter = api.Waiter;

/// The requests woken by `wake`, until the worker's loop takes them (`take`): at most one
/// entry per connection slot, so it never overflows. Reserved at the first module's `init`,
/// as zeroed virtual memory (backed only where touched).
const WakeQueue = struct {
    entries: []Waiter = &.{},
    /// Per slot: the generation of its queued wake; 0 for none (generations start at 1).
    queued: []u32 = &.{},
    head: usize = 0,
    len: usize = 0,
};

var wakes: WakeQueue = .{};

/// Reserves the queue once per process (each module's `init` and the test helpers call it).
pub fn reserve() !void {
    if (wakes.entries.len > 0) return;
    const n: usize = config.max_connections;
    const entries = try compat.mapMemory(n * @sizeOf(Waiter));
    errdefer _ = std.os.linux.munmap(entries.ptr, entries.len);
    const queued = try compat.mapMemory(n * @sizeOf(u32));
    wakes = .{
        .entries = @as([*]Waiter, @ptrCast(@alignCast(entries.ptr)))[0..n],
        .queued = @as([*]u32, @ptrCast(@alignCast(queued.ptr)))[0..n],
    };
}

/// Runs the request `waiter` names again on the worker loop's next turn (before the delay
/// its route gave `res.later`). Callable from any callback of any module of this worker: a
/// route, `tick`, a stream frame. A waiter that no longer waits is ignored; waking one
/// twice before it runs runs it once.
pub fn wake(waiter: Waiter) void {
    if (waiter.slot >= wakes.queued.len) return;
    if (waiter.generation == 0 or wakes.queued[waiter.slot] == waiter.generation) return;
    // Full only when stale waiters of a reused slot wait beside its current one: the
    // current one is then answered by its own delay.
    if (wakes.len == wakes.entries.len) return;
    wakes.queued[waiter.slot] = waiter.generation;
    wakes.entries[(wakes.head + wakes.len) % wakes.entries.len] = waiter;
    wakes.len += 1;
}

/// The next woken waiter, for the worker's loop.
pub fn take() ?Waiter {
    if (wakes.len == 0) return null;
    const w = wakes.entries[wakes.head];
    wakes.head = (wakes.head + 1) % wakes.entries.len;
    wakes.len -= 1;
    wakes.queued[w.slot] = 0;
    return w;
}

test "a waiter is queued once until the worker takes it; no wake reaches generation 0" {
    try reserve();
    while (take()) |_| {}
    wake(.{ .slot = 3, .generation = 7 });
    wake(.{ .slot = 3, .generation = 7 });
    wake(.{ .slot = 4, .generation = 0 });
    wake(.{ .slot = config.max_connections, .generation = 1 });
    const first = take().?;
    try std.testing.expectEqual(@as(u32, 3), first.slot);
    try std.testing.expectEqual(@as(u32, 7), first.generation);
    try std.testing.expectEqual(@as(?Waiter, null), take());
    // Taken, it may be woken again (a request held once more).
    wake(.{ .slot = 3, .generation = 7 });
    try std.testing.expectEqual(@as(u32, 7), take().?.generation);
}
