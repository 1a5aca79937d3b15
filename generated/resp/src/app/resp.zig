//! The resp module: what the `resp` stream listeners do with each
//! connection. gen-reuseport created this file once and never overwrites or removes it: it
//! is yours.
//!
//! Framing "raw": `bytes` sees what has arrived and returns how much it used; the rest is
//! offered again with the next bytes.
//!
//! Callbacks get the worker's `State` (per worker means per process: each worker process has
//! its own), the connection's `Connection` and an `io` to write replies (`io.write`,
//! `io.print`, `io.free`), close (`io.close`), ask for `writable` once the output is sent
//! (`io.wantWritable`, for replies larger than the write buffer: no frame arrives and nothing
//! is read meanwhile), learn the client (`io.peer`) and scratch memory (`io.arena`, reset
//! after each call). An error closes the connection. Never block.
//!
//! A timer per connection: `io.setTimer(ms)` (one per connection, re-armed by each call,
//! `io.cancelTimer()` forgets it) calls
//! `pub fn timer(state: *State, conn: *Connection, io: *stream.Io) !void` once `ms` have
//! passed; declare it before you arm one (the build says so otherwise). Back-pressure of your
//! own: `io.pauseReading()` delivers no further frame and reads nothing (the client's sends
//! wait in the kernel, which slows it) until `io.resumeReading()` from `writable` or `timer`;
//! a paused connection must resume, write or close within writeTimeoutMs.
//!
//! A per-worker timer: declare `pub const tick_ms: u32 = 1000;` and
//! `pub fn tick(state: *State, now_ms: u64) void`.
const std = @import("std");
const stream = @import("../handlers/app_stream.zig");
const service = @import("../handlers/app.zig").resp;

/// Per-worker state.
pub const State = struct {
    frames: u64 = 0,

    /// Called once per worker before it serves; may allocate.
    pub fn init(allocator: std.mem.Allocator) !State {
        _ = allocator;
        return .{};
    }

    pub fn deinit(self: *State, allocator: std.mem.Allocator) void {
        _ = self;
        _ = allocator;
    }
};

/// Per-connection state: a new connection starts as `.{}`, so every field has a default.
pub const Connection = struct {
    frames: u64 = 0,
};

/// A client connected; may greet it.
pub fn open(state: *State, conn: *Connection, io: *stream.Io) !void {
    _ = state;
    _ = conn;
    _ = io;
}

/// Echoes what fits in the output; returns the bytes used.
pub fn bytes(state: *State, conn: *Connection, input: []const u8, io: *stream.Io) !usize {
    const n = @min(input.len, io.free());
    try io.write(input[0..n]);
    state.frames += 1;
    conn.frames += 1;
    return n;
}

/// The connection closed.
pub fn close(state: *State, conn: *Connection) void {
    _ = state;
    _ = conn;
}

test "echoes a frame" {
    var state = try State.init(std.testing.allocator);
    defer state.deinit(std.testing.allocator);
    var conn: service.Connection = .{};
    const frame_bytes = "hello";
    const reply = try service.testBytes(&state, &conn, frame_bytes);
    try std.testing.expectEqualStrings(frame_bytes, reply);
}
