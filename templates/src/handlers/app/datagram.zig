//! Datagram application modules (UDP): one call of the module's `datagram` function per
//! datagram, with the sender's address. The module replies (`dg.reply`) into the reply
//! buffer the worker gives this datagram, sent back to the sender with the rest of its
//! batch (worker/datagrams.zig), or sends to any peer at once (`dg.sendTo`). Nothing
//! blocks: a send the kernel cannot take now is dropped, as UDP allows. `dg.arena` is
//! per-worker scratch memory reset after each datagram. Per worker means per process.
const std = @import("std");
const compat = @import("../../compat.zig");
const sys = @import("../../net/sys.zig");
const api = @import("../api.zig");
const app_timer = @import("timer.zig");
const app_metrics = @import("../../metrics/app.zig");
const app_peer = @import("peer.zig");
const linux = std.os.linux;

pub const Peer = app_peer.Peer;
/// A metric a module declares in its `pub const metrics` (see `metrics/app.zig`).
pub const Metric = app_metrics.Metric;

pub const WriteError = error{NoSpaceLeft};
pub const SendError = error{SendFailed};

pub const Datagram = struct {
    /// The datagram's bytes.
    data: []const u8,
    /// Who sent it.
    peer: Peer,
    /// Scratch memory for this datagram only.
    arena: std.mem.Allocator,
    reply_buf: []u8,
    reply_len: usize = 0,
    fd: i32,
    /// The listener it came to (where an upstream call's reply is handed back).
    listener_index: u16 = 0,

    /// Appends to the reply (sent to `peer` after the call), all or nothing.
    pub fn reply(self: *Datagram, bytes: []const u8) WriteError!void {
        if (bytes.len > self.reply_buf.len - self.reply_len) return error.NoSpaceLeft;
        @memcpy(self.reply_buf[self.reply_len..][0..bytes.len], bytes);
        self.reply_len += bytes.len;
    }

    /// Appends formatted text to the reply (`std.fmt` syntax), all or nothing.
    pub fn print(self: *Datagram, comptime format: []const u8, args: anytype) WriteError!void {
        const written = compat.bufPrint(self.reply_buf[self.reply_len..], format, args) catch
            return error.NoSpaceLeft;
        self.reply_len += written.len;
    }

    /// Sends one datagram to any peer now, from this listener's socket.
    pub fn sendTo(self: *const Datagram, to: Peer, bytes: []const u8) SendError!void {
        if (self.fd < 0) return error.SendFailed;
        const sa = to.sockAddr();
        // The socket is non-blocking: a full send buffer drops the datagram.
        const flags = linux.MSG.NOSIGNAL;
        const rc = linux.sendto(self.fd, bytes.ptr, bytes.len, flags, sa.ptr(), sa.len);
        if (compat.errno(rc) != .SUCCESS) return error.SendFailed;
    }
};

/// Whether a module's source calls `upstream.send` outside comments: it then needs the
/// `upstreamReply` callback, and the build says so.
fn sendsUpstream(comptime source: []const u8) bool {
    return comptime found: {
        @setEvalBranchQuota(20 * source.len + 1000);
        var lines = std.mem.splitScalar(u8, source, '\n');
        while (lines.next()) |text| {
            const code = if (compat.find(u8, text, "//")) |at| text[0..at] else text;
            if (compat.find(u8, code, "upstream.send") != null) break :found true;
        }
        break :found false;
    };
}

pub fn Module(
    comptime M: type,
    comptime file: []const u8,
    comptime source: []const u8,
    comptime scratch_bytes: usize,
) type {
    const has_upstream_reply = @hasDecl(M, "upstreamReply");
    comptime {
        if (!@hasDecl(M, "State")) @compileError(file ++ ": declare `pub const State`");
        if (!@hasDecl(M, "datagram")) {
            @compileError(file ++ ": the datagram module has no datagram function; add:\n" ++
                "    pub fn datagram(state: *State, dg: *datagram_api.Datagram) !void");
        }
        if (!has_upstream_reply and sendsUpstream(source)) {
            @compileError(file ++ ": sends upstream calls but has no upstreamReply callback; " ++
                "add:\n    pub fn upstreamReply(state: *State, context: u64, " ++
                "reply: upstream.Reply, dg: *datagram_api.Datagram) !void");
        }
    }
    return struct {
        pub const State = M.State;
        /// The module's own metrics: `service.metrics.inc(.name)` (see `metrics/app.zig`).
        pub const metrics = app_metrics.Metrics(M);

        var state: State = undefined;
        var initialized = false;
        var scratch: [scratch_bytes]u8 = undefined;
        /// Datagrams whose module call failed (nothing is sent for them).
        pub var failed: u64 = 0;

        const ticker = app_timer.Ticker(M, State);

        pub fn init(allocator: std.mem.Allocator, now_ms: u64) !void {
            if (initialized) return;
            state = try State.init(allocator);
            initialized = true;
            ticker.start(now_ms);
        }

        pub fn deinit(allocator: std.mem.Allocator) void {
            if (!initialized) return;
            ticker.stop();
            state.deinit(allocator);
            initialized = false;
        }

        /// When the worker's loop must wake for this module's `tick`; null: never.
        pub fn nextTickMs() ?u64 {
            return ticker.nextMs();
        }

        pub fn tick(now_ms: u64) void {
            if (initialized) ticker.run(&state, now_ms);
        }

        pub fn drain() void {
            if (!initialized) return;
            if (@hasDecl(State, "drain")) state.drain();
        }

        /// The reply's length in `reply` (0: none).
        pub fn onDatagram(
            ctx: *const api.Context,
            input: []const u8,
            from: *const sys.Peer,
            reply: []u8,
        ) usize {
            const peer = app_peer.fromStorage(&from.addr) orelse return 0;
            return handleAt(&state, ctx.listener_index, ctx.fd, input, peer, reply);
        }

        pub fn handle(s: *State, fd: i32, input: []const u8, peer: Peer, reply: []u8) usize {
            return handleAt(s, 0, fd, input, peer, reply);
        }

        fn handleAt(
            s: *State,
            listener_index: u16,
            fd: i32,
            input: []const u8,
            peer: Peer,
            reply: []u8,
        ) usize {
            var fba = std.heap.FixedBufferAllocator.init(&scratch);
            var dg: Datagram = .{
                .data = input,
                .peer = peer,
                .arena = fba.allocator(),
                .reply_buf = reply,
                .fd = fd,
                .listener_index = listener_index,
            };
            M.datagram(s, &dg) catch {
                failed += 1;
                return 0;
            };
            return dg.reply_len;
        }

        /// A call the module sent (`app_upstream.send`) is over: its `upstreamReply` may
        /// answer the datagram's sender (`dg.reply`; `dg.data` is empty). The answer's
        /// length in `reply`, sent by the caller.
        pub fn onUpstreamReply(
            listener_index: u16,
            fd: i32,
            peer: Peer,
            context: u64,
            result: api.UpstreamReply,
            reply: []u8,
        ) usize {
            if (!has_upstream_reply) return 0;
            var fba = std.heap.FixedBufferAllocator.init(&scratch);
            var dg: Datagram = .{
                .data = "",
                .peer = peer,
                .arena = fba.allocator(),
                .reply_buf = reply,
                .fd = fd,
                .listener_index = listener_index,
            };
            M.upstreamReply(&state, context, result, &dg) catch {
                failed += 1;
                return 0;
            };
            return dg.reply_len;
        }

        /// Runs one datagram through the module without a socket; returns the reply (in a
        /// buffer reused by the next call). `dg.sendTo` fails here: there is no socket.
        pub fn testDatagram(s: *State, bytes: []const u8, from: Peer) []const u8 {
            const Buffers = struct {
                var reply: [65536]u8 = undefined;
            };
            const len = handle(s, -1, bytes, from, &Buffers.reply);
            return Buffers.reply[0..len];
        }
    };
}
