//! The reflect module of examples/reflect.json: tells a UDP client the address and port it is
//! seen from (what a STUN binding request is for: a client behind NAT learns its public
//! endpoint), and relays a message to another endpoint.
//!
//!   ADDR                     -> "<address> <port>\n" of the sender
//!   PING                     -> "PONG\n"
//!   TICKS                    -> "<n>\n": how often this worker's 100 ms timer has fired
//!   RELAY <addr> <port> <text>  sends "<sender address> <sender port> <text>" to that
//!                               endpoint, answers "SENT\n" (or "ERR …\n")
//!
//! The counters live in the worker's `State`: per process. This is the example's real
//! implementation; the e2e test copies it over the generated stub.
const std = @import("std");
const address = @import("../address.zig");
const compat = @import("../compat.zig");
const datagram_api = @import("../handlers/app_datagram.zig");
const service = @import("../handlers/app.zig").reflect;

/// Per worker (per process).
pub const State = struct {
    answered: u64 = 0,
    relayed: u64 = 0,
    ticks: u64 = 0,

    pub fn init(allocator: std.mem.Allocator) !State {
        _ = allocator;
        return .{};
    }

    pub fn deinit(self: *State, allocator: std.mem.Allocator) void {
        _ = self;
        _ = allocator;
    }
};

/// The per-worker timer: the worker's loop calls `tick` about every `tick_ms`.
pub const tick_ms: u32 = 100;

pub fn tick(state: *State, now_ms: u64) void {
    _ = now_ms;
    state.ticks += 1;
}

pub fn datagram(state: *State, dg: *datagram_api.Datagram) !void {
    state.answered += 1;
    const text = std.mem.trim(u8, dg.data, " \r\n");
    var words = std.mem.tokenizeScalar(u8, text, ' ');
    const command = words.next() orelse return dg.reply("ERR empty\n");
    var buf: [46]u8 = undefined;
    if (std.ascii.eqlIgnoreCase(command, "ADDR")) {
        return dg.print("{s} {d}\n", .{ dg.peer.format(&buf), dg.peer.port });
    }
    if (std.ascii.eqlIgnoreCase(command, "PING")) return dg.reply("PONG\n");
    if (std.ascii.eqlIgnoreCase(command, "TICKS")) return dg.print("{d}\n", .{state.ticks});
    if (std.ascii.eqlIgnoreCase(command, "RELAY")) return relay(state, dg, &words);
    return dg.reply("ERR unknown command\n");
}

const usage = "ERR usage: RELAY <addr> <port> <text>\n";

fn relay(state: *State, dg: *datagram_api.Datagram, words: anytype) !void {
    const host = words.next() orelse return dg.reply(usage);
    const port_text = words.next() orelse return dg.reply(usage);
    const to_address = address.parse(host) catch return dg.reply("ERR bad address\n");
    const port = std.fmt.parseInt(u16, port_text, 10) catch return dg.reply("ERR bad port\n");
    const message = words.rest();
    var buf: [46]u8 = undefined;
    const from = dg.peer.format(&buf);
    // Scratch memory for the relayed text: reset after this datagram.
    const out = try dg.arena.alloc(u8, from.len + 8 + message.len);
    const text = try compat.bufPrint(out, "{s} {d} {s}", .{ from, dg.peer.port, message });
    dg.sendTo(.{ .address = to_address, .port = port }, text) catch {
        return dg.reply("ERR send failed\n");
    };
    state.relayed += 1;
    try dg.reply("SENT\n");
}

test "tells the sender its address and port" {
    var state = try State.init(std.testing.allocator);
    defer state.deinit(std.testing.allocator);
    const from: datagram_api.Peer = .{ .address = .{ .ip4 = .{ 127, 0, 0, 1 } }, .port = 40000 };
    const addr = service.testDatagram(&state, "ADDR", from);
    try std.testing.expectEqualStrings("127.0.0.1 40000\n", addr);
    try std.testing.expectEqualStrings("PONG\n", service.testDatagram(&state, "PING\n", from));
    const bad = service.testDatagram(&state, "RELAY ::1 x hi", from);
    try std.testing.expectEqualStrings("ERR bad port\n", bad);
}
