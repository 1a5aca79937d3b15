//! Stream application modules (TCP): `Module` cuts a connection's bytes into frames as the
//! spec says (raw, lines, or length-prefixed) and calls the user's module for each, with the
//! module's own per-connection `Connection` and per-worker `State`.
//!
//! Memory: a frame is a slice of the connection's read buffer (`readBufferBytes`, checked
//! against the framing's `maxBytes` by the generator); replies go straight into the
//! connection's write buffer (`writeBufferBytes`). A reply larger than the free space is
//! written in parts: the module asks for `io.wantWritable()`, and its `writable` callback
//! runs once the output is sent. Until then no further frame is delivered and nothing more
//! is read from the socket (back-pressure: the client's sends fill the kernel's buffers).
//! `io.arena` is per-worker scratch memory reset after each frame. Per worker means per
//! process.
const std = @import("std");
const config = @import("../config.zig");
const compat = @import("../compat.zig");
const api = @import("api.zig");
const app_timer = @import("app_timer.zig");
const app_peer = @import("app_peer.zig");
const assert = std.debug.assert;

pub const Peer = app_peer.Peer;

pub const Framing = union(enum) {
    /// The module sees the bytes as they come and says how many it used.
    raw,
    /// Frames are lines ending in LF; the LF and a CR before it are not part of the frame.
    line: struct { max_bytes: u32 },
    /// Frames are a `bytes`-byte length prefix and that many payload bytes.
    length: struct { bytes: u8, endian: std.builtin.Endian, max_bytes: u32 },
};

/// Room a frame is delivered with: a reply of up to this many bytes always fits.
pub const reply_reserve_bytes = @min(4096, config.write_buffer_bytes / 2);

pub const WriteError = error{NoSpaceLeft};

/// What a callback may do with its connection.
pub const Io = struct {
    out: *api.Output,
    /// Scratch memory for this frame only (reset after it).
    arena: std.mem.Allocator,
    fd: i32,
    close_requested: bool = false,
    writable_requested: bool = false,

    /// Appends all of `bytes` to the output, or nothing (`error.NoSpaceLeft`).
    pub fn write(self: *Io, bytes: []const u8) WriteError!void {
        if (!self.out.append(bytes)) return error.NoSpaceLeft;
    }

    /// Appends formatted text (`std.fmt` syntax), all or nothing.
    pub fn print(self: *Io, comptime format: []const u8, args: anytype) WriteError!void {
        const written = compat.bufPrint(self.out.buf[self.out.len..], format, args) catch
            return error.NoSpaceLeft;
        self.out.len += written.len;
    }

    /// Bytes the output can take now.
    pub fn free(self: *const Io) usize {
        return self.out.free();
    }

    /// Closes the connection once the output is sent.
    pub fn close(self: *Io) void {
        self.close_requested = true;
    }

    /// Calls the module's `writable` once the output is sent; no frame is delivered and
    /// nothing is read meanwhile. For replies larger than the write buffer.
    pub fn wantWritable(self: *Io) void {
        self.writable_requested = true;
    }

    /// The client's address (one `getpeername`, only when asked).
    pub fn peer(self: *const Io) ?Peer {
        return app_peer.ofSocket(self.fd);
    }
};

/// Where the next frame ends in `input`, or why there is none yet.
const Cut = union(enum) {
    frame: struct { payload: []const u8, len: usize },
    need_more,
    /// Longer than the framing allows: the connection closes.
    too_large,
};

fn cut(comptime framing: Framing, input: []const u8) Cut {
    switch (framing) {
        .raw => unreachable,
        .line => |line| {
            const window = input[0..@min(input.len, line.max_bytes + 2)];
            const end = compat.findScalar(u8, window, '\n') orelse {
                return if (window.len >= line.max_bytes + 2) .too_large else .need_more;
            };
            var payload = input[0..end];
            if (payload.len > 0 and payload[payload.len - 1] == '\r') {
                payload = payload[0 .. payload.len - 1];
            }
            if (payload.len > line.max_bytes) return .too_large;
            return .{ .frame = .{ .payload = payload, .len = end + 1 } };
        },
        .length => |length| {
            const n = length.bytes;
            if (input.len < n) return .need_more;
            const Int = switch (n) {
                1 => u8,
                2 => u16,
                4 => u32,
                8 => u64,
                else => @compileError("a length prefix is 1, 2, 4 or 8 bytes"),
            };
            const size = std.mem.readInt(Int, input[0..n], length.endian);
            if (size > length.max_bytes) return .too_large;
            const total = n + @as(usize, @intCast(size));
            if (input.len < total) return .need_more;
            return .{ .frame = .{ .payload = input[n..total], .len = total } };
        },
    }
}

/// The handler of a stream module: `M` is the user's file, `file` its path for build
/// errors.
pub fn Module(
    comptime M: type,
    comptime file: []const u8,
    comptime framing: Framing,
    comptime scratch_bytes: usize,
) type {
    const callback = if (framing == .raw) "bytes" else "frame";
    const signature = if (framing == .raw)
        "pub fn bytes(state: *State, conn: *Connection, input: []const u8, io: *stream.Io) " ++
            "!usize"
    else
        "pub fn frame(state: *State, conn: *Connection, frame: []const u8, io: *stream.Io) " ++
            "!void";
    comptime {
        if (!@hasDecl(M, "State")) @compileError(file ++ ": declare `pub const State`");
        if (!@hasDecl(M, "Connection")) {
            @compileError(file ++ ": declare `pub const Connection = struct { ... }` " ++
                "(per-connection state; every field needs a default)");
        }
        if (!@hasDecl(M, callback)) {
            @compileError(file ++ ": the stream module has no " ++ callback ++
                " function; add:\n    " ++ signature);
        }
    }
    return struct {
        pub const State = M.State;

        /// The module's per-connection state and the engine's own.
        pub const Connection = struct {
            user: M.Connection = .{},
            /// The module asked for `writable`: frames wait.
            writable_pending: bool = false,
        };

        var state: State = undefined;
        var initialized = false;
        var scratch: [scratch_bytes]u8 = undefined;

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

        pub fn onOpen(ctx: *const api.Context, conn: *Connection, out: *api.Output) api.Progress {
            return open(&state, ctx, conn, out);
        }

        pub fn onData(
            ctx: *const api.Context,
            conn: *Connection,
            input: []u8,
            out: *api.Output,
        ) api.Progress {
            return serve(&state, ctx, conn, input, out);
        }

        pub fn onClose(conn: *Connection) void {
            if (@hasDecl(M, "close")) M.close(&state, &conn.user);
        }

        pub fn open(
            s: *State,
            ctx: *const api.Context,
            conn: *Connection,
            out: *api.Output,
        ) api.Progress {
            conn.* = .{};
            var progress: api.Progress = .{ .consumed = 0 };
            if (!@hasDecl(M, "open")) return progress;
            var fba = std.heap.FixedBufferAllocator.init(&scratch);
            var io: Io = .{ .out = out, .arena = fba.allocator(), .fd = ctx.fd };
            M.open(s, &conn.user, &io) catch {
                progress.close = true;
                return progress;
            };
            return after(conn, &io, progress);
        }

        fn after(conn: *Connection, io: *const Io, progress: api.Progress) api.Progress {
            var p = progress;
            if (io.close_requested) p.close = true;
            if (io.writable_requested) {
                conn.writable_pending = true;
                p.want_writable = true;
            }
            return p;
        }

        /// Delivers every complete frame in `input` while the output has room.
        pub fn serve(
            s: *State,
            ctx: *const api.Context,
            conn: *Connection,
            input: []u8,
            out: *api.Output,
        ) api.Progress {
            var progress: api.Progress = .{ .consumed = 0 };
            if (conn.writable_pending) {
                conn.writable_pending = false;
                var fba = std.heap.FixedBufferAllocator.init(&scratch);
                var io: Io = .{ .out = out, .arena = fba.allocator(), .fd = ctx.fd };
                if (@hasDecl(M, "writable")) {
                    M.writable(s, &conn.user, &io) catch {
                        progress.close = true;
                        return progress;
                    };
                }
                progress = after(conn, &io, progress);
                // A writable that wrote nothing and asks again would spin: it waits for input.
                if (progress.want_writable and out.len == 0) progress.want_writable = false;
                if (conn.writable_pending or progress.close) return progress;
            }
            // Each round consumes at least one byte or stops.
            var rounds: usize = 0;
            while (rounds <= input.len) : (rounds += 1) {
                if (progress.consumed == input.len) break;
                if (out.free() < reply_reserve_bytes) {
                    // Send what is written, then come back for the rest.
                    progress.want_writable = true;
                    break;
                }
                var fba = std.heap.FixedBufferAllocator.init(&scratch);
                var io: Io = .{ .out = out, .arena = fba.allocator(), .fd = ctx.fd };
                const rest = input[progress.consumed..];
                if (framing == .raw) {
                    const used = M.bytes(s, &conn.user, rest, &io) catch {
                        progress.close = true;
                        break;
                    };
                    assert(used <= rest.len);
                    progress.consumed += used;
                    if (used > 0) progress.requests += 1;
                    progress = after(conn, &io, progress);
                    if (used == 0) {
                        // Waiting for room (the module's reply did not fit): come back once
                        // the output is sent; with nothing to send it waits for more input.
                        if (out.len > 0) progress.want_writable = true;
                        break;
                    }
                    if (io.close_requested or io.writable_requested) break;
                    continue;
                }
                const frame = switch (cut(framing, rest)) {
                    .need_more => break,
                    .too_large => {
                        progress.close = true;
                        break;
                    },
                    .frame => |f| f,
                };
                M.frame(s, &conn.user, frame.payload, &io) catch {
                    progress.close = true;
                    break;
                };
                progress.consumed += frame.len;
                progress.requests += 1;
                progress = after(conn, &io, progress);
                if (io.close_requested or io.writable_requested) break;
            }
            return progress;
        }

        /// Runs `bytes` through the module on a fresh connection without a socket and returns
        /// what it wrote (in a buffer reused by the next call). For tests.
        pub fn testBytes(s: *State, conn: *Connection, bytes: []const u8) ![]const u8 {
            const Buffers = struct {
                var input: [config.read_buffer_bytes]u8 = undefined;
                var output: [config.write_buffer_bytes]u8 = undefined;
            };
            if (bytes.len > Buffers.input.len) return error.InputTooLarge;
            @memcpy(Buffers.input[0..bytes.len], bytes);
            var out: api.Output = .{ .buf = &Buffers.output };
            const ctx = testContext();
            const progress = serve(s, &ctx, conn, Buffers.input[0..bytes.len], &out);
            if (progress.consumed != bytes.len and !progress.close) return error.IncompleteFrame;
            return out.buf[0..out.len];
        }
    };
}

fn testContext() api.Context {
    return .{
        .listener = &config.listeners[0],
        .listener_index = 0,
        .worker_index = 0,
        .pid = 1,
        .generation = 1,
        .draining = false,
        .fd = -1,
    };
}

test "lines and length prefixes cut into frames" {
    const line: Framing = .{ .line = .{ .max_bytes = 4 } };
    try std.testing.expectEqualStrings("ab", cut(line, "ab\r\ncd").frame.payload);
    try std.testing.expectEqual(@as(usize, 4), cut(line, "ab\r\ncd").frame.len);
    try std.testing.expect(cut(line, "abc") == .need_more);
    try std.testing.expect(cut(line, "abcdef") == .too_large);
    const length: Framing = .{ .length = .{ .bytes = 2, .endian = .big, .max_bytes = 8 } };
    try std.testing.expectEqualStrings("hey", cut(length, "\x00\x03heyz").frame.payload);
    try std.testing.expect(cut(length, "\x00\x03he") == .need_more);
    try std.testing.expect(cut(length, "\x00\x09") == .too_large);
}
