//! The per-worker timer of an application module: a module that declares
//! `pub const tick_ms: u32` and `pub fn tick(state: *State, now_ms: u64) void` has `tick`
//! called by its worker's loop about every `tick_ms` milliseconds (never early; late by at
//! most the time the loop spends on one batch of events). Per worker means per process: each
//! worker ticks its own `State`. The loop's wait ends at the next tick, so no thread and no
//! timer descriptor is needed.
const std = @import("std");

pub fn Ticker(comptime M: type, comptime State: type) type {
    const enabled = @hasDecl(M, "tick_ms");
    comptime {
        if (enabled and !@hasDecl(M, "tick")) {
            @compileError("a module with tick_ms needs " ++
                "`pub fn tick(state: *State, now_ms: u64) void`");
        }
        if (enabled and M.tick_ms == 0) @compileError("tick_ms must be at least 1");
    }
    return struct {
        var next_ms: ?u64 = null;

        pub fn start(now_ms: u64) void {
            if (enabled) next_ms = now_ms + M.tick_ms;
        }

        pub fn stop() void {
            next_ms = null;
        }

        /// When the loop must wake for this module next; null: never.
        pub fn nextMs() ?u64 {
            return next_ms;
        }

        pub fn run(state: *State, now_ms: u64) void {
            if (!enabled) return;
            const due = next_ms orelse return;
            if (now_ms < due) return;
            M.tick(state, now_ms);
            // From now, not from `due`: a loop held up for several periods ticks once.
            next_ms = now_ms + M.tick_ms;
        }
    };
}

test "ticks when due, not before, and once after a long pause" {
    const M = struct {
        pub const tick_ms: u32 = 100;
        pub const State = struct { ticks: u32 = 0 };
        pub fn tick(state: *State, now_ms: u64) void {
            _ = now_ms;
            state.ticks += 1;
        }
    };
    const T = Ticker(M, M.State);
    var state: M.State = .{};
    T.start(1000);
    T.run(&state, 1099);
    try std.testing.expectEqual(@as(u32, 0), state.ticks);
    T.run(&state, 1100);
    try std.testing.expectEqual(@as(u32, 1), state.ticks);
    T.run(&state, 5000);
    try std.testing.expectEqual(@as(u32, 2), state.ticks);
    try std.testing.expectEqual(@as(?u64, 5100), T.nextMs());
    T.stop();
}
