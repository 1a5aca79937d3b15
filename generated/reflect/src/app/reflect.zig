//! The reflect module: what the `reflect` UDP listeners do with each datagram.
//! gen-reuseport created this file once and never overwrites or removes it: it is yours.
//!
//! `datagram` gets the worker's `State` (per worker means per process: each worker process
//! has its own) and the datagram: its bytes (`dg.data`), its sender (`dg.peer`), a reply
//! sent back to the sender with its batch (`dg.reply`, `dg.print`), a send to any peer now
//! (`dg.sendTo`) and scratch memory (`dg.arena`, reset after each datagram). An error sends
//! nothing. Never block.
//!
//! A per-worker timer: declare `pub const tick_ms: u32 = 1000;` and
//! `pub fn tick(state: *State, now_ms: u64) void`.
const std = @import("std");
const datagram_api = @import("../handlers/app_datagram.zig");
const service = @import("../handlers/app.zig").reflect;

/// Per-worker state.
pub const State = struct {
    datagrams: u64 = 0,

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

/// Answers each datagram with its sender's address and the bytes it sent.
pub fn datagram(state: *State, dg: *datagram_api.Datagram) !void {
    state.datagrams += 1;
    var buf: [46]u8 = undefined;
    try dg.print("{s} {d} ", .{ dg.peer.format(&buf), dg.peer.port });
    try dg.reply(dg.data);
}

test "answers with the sender and the bytes" {
    var state = try State.init(std.testing.allocator);
    defer state.deinit(std.testing.allocator);
    const from: datagram_api.Peer = .{ .address = .{ .ip4 = .{ 127, 0, 0, 1 } }, .port = 5353 };
    const reply = service.testDatagram(&state, "hi", from);
    try std.testing.expectEqualStrings("127.0.0.1 5353 hi", reply);
}
