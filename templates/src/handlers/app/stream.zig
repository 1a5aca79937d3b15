//! Stream application modules (TCP): `Module` cuts a connection's bytes into frames as the
//! spec says (raw, lines, or length-prefixed) and calls the user's module for each, with the
//! module's own per-connection `Connection` and per-worker `State`.
//!
//! Memory: a frame is a slice of the connection's read buffer (`readBufferBytes`, checked
//! against the framing's `maxBytes` by the generator) or, with `maxFrameBytes` in the spec,
//! of a frame buffer: once a frame (or a raw module's unused input) fills the read buffer,
//! the connection takes one of the module's `frameBuffers` per worker, its input gathers
//! there up to `maxFrameBytes`, and the buffer is given back once it is empty. A frame larger
//! than that (or than the read buffer without frame buffers, or when every frame buffer is
//! taken) is refused: the module's `tooLarge` callback may answer, then the connection closes.
//!
//! Replies go into the connection's write buffer (`writeBufferBytes`) and past it into the
//! worker's output pool (`outputPoolBytes`), up to the connection's `outputLimitBytes`: a
//! client that pipelines without reading is read on while its answers wait (a connection
//! that asks for more than its limit is closed). `io.free()` says how much a write can take
//! now. A reply larger than that is written in parts: the module asks for
//! `io.wantWritable()`, and its `writable` callback runs once the output is sent. Until then
//! no further frame is delivered and nothing more is read from the socket (back-pressure:
//! the client's sends fill the kernel's buffers). `io.arena` is per-worker scratch memory
//! reset after each frame. Per worker means per process.
//!
//! A module may also stop reading its connection on its own (`io.pauseReading`: nothing more
//! is read or delivered, so a client that sends faster than the module answers fills the
//! kernel's buffers and is slowed by TCP) and start again (`io.resumeReading`) from a later
//! callback: `writable`, or `timer`. A connection's timer (`io.setTimer(ms)`, one per
//! connection, re-armed by each call, cancelled by `io.cancelTimer` and by the close) calls
//! the module's `timer` callback once that many milliseconds have passed.
//!
//! When the worker begins to drain (a stop or a restart), each connection of a module with a
//! `draining` callback hears of it once (`onDrain`), after the output that waits and any reply
//! in parts, so that it may tell its client goodbye or close before the drain timeout cuts it.
const std = @import("std");
const config = @import("../../config.zig");
const compat = @import("../../compat.zig");
const api = @import("../api.zig");
const app_timer = @import("timer.zig");
const app_metrics = @import("../../metrics/app.zig");
const app_peer = @import("peer.zig");
const sys = @import("../../net/sys.zig");
/// The worker's upstreams (`upstream/pool.zig`, or a stand-in when the spec has none):
/// a module with `upstreamReply` takes its calls' replies there.
const upstreams = @import("../../handlers.zig").upstream;
const app_wake = @import("wake.zig");
const assert = std.debug.assert;

pub const Peer = app_peer.Peer;
/// A metric a module declares in its `pub const metrics` (see `metrics/app.zig`).
pub const Metric = app_metrics.Metric;

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

/// Frames larger than the read buffer: `frame_buffers` buffers of `max_frame_bytes` per
/// worker (none when `max_frame_bytes` is 0).
pub const FrameBuffers = struct {
    max_frame_bytes: u32 = 0,
    frame_buffers: u16 = 0,
};

pub const WriteError = error{NoSpaceLeft};

/// What a callback may do with its connection.
pub const Io = struct {
    out: *api.Output,
    /// Scratch memory for this frame only (reset after it).
    arena: std.mem.Allocator,
    fd: i32,
    /// The most input the module can be handed at once (see `maxInput`).
    max_input: usize = config.read_buffer_bytes,
    close_requested: bool = false,
    writable_requested: bool = false,
    timer: api.TimerChange = .keep,
    reading: api.ReadingChange = .keep,
    /// This connection, for the reply of an upstream call (`app_upstream.send`).
    waiter: api.Waiter = .{ .slot = 0, .generation = 0 },
    /// Set by `app_upstream.send`: a call went out from this callback, due by this moment.
    call_due_ms: ?u64 = null,

    /// Appends all of `bytes` to the output, or nothing (`error.NoSpaceLeft`).
    pub fn write(self: *Io, bytes: []const u8) WriteError!void {
        if (!self.out.appendAll(bytes)) return error.NoSpaceLeft;
    }

    /// Appends formatted text (`std.fmt` syntax), all or nothing; the text must fit in the
    /// write buffer.
    pub fn print(self: *Io, comptime format: []const u8, args: anytype) WriteError!void {
        if (compat.bufPrint(self.out.buf[self.out.len..], format, args)) |written| {
            self.out.len += written.len;
            return;
        } else |_| {}
        // Past the buffer's free space: what it holds moves behind into the pool first.
        if (self.out.len == 0 or !self.out.emptyBuffer()) return error.NoSpaceLeft;
        const written = compat.bufPrint(self.out.buf, format, args) catch
            return error.NoSpaceLeft;
        self.out.len = written.len;
    }

    /// Bytes a write can surely take now: the write buffer's free space, or the room left
    /// for this connection in the worker's output pool (0 once it asked past its limit).
    pub fn free(self: *const Io) usize {
        return self.out.room();
    }

    /// The most input the module is handed at once: a raw module's `input` (or a frame)
    /// never exceeds it, so a request that would is refused at once, before its bytes
    /// arrive. `maxFrameBytes` with frame buffers, else `readBufferBytes`.
    pub fn maxInput(self: *const Io) usize {
        return self.max_input;
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

    /// Calls the module's `timer` callback `delay_ms` milliseconds from now (never earlier;
    /// later by at most the loop's turn), replacing the timer the connection had. One timer
    /// per connection; the module keeps in its `Connection` what the timer is for.
    pub fn setTimer(self: *Io, delay_ms: u32) void {
        self.timer = .{ .after_ms = delay_ms };
    }

    /// Forgets the connection's timer, if it has one.
    pub fn cancelTimer(self: *Io) void {
        self.timer = .cancel;
    }

    /// Stops reading the connection after this call: no frame is delivered (those already
    /// buffered wait) and the socket is not read, until `resumeReading` from a later callback
    /// (`writable` or `timer`). The connection is then under the write timeout: the module
    /// must resume, write or close within `writeTimeoutMs`.
    pub fn pauseReading(self: *Io) void {
        self.reading = .pause;
    }

    /// Reads again: buffered frames are delivered, then the socket is read.
    pub fn resumeReading(self: *Io) void {
        self.reading = .unpause;
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
    comptime source: []const u8,
    comptime framing: Framing,
    comptime scratch_bytes: usize,
    comptime large: FrameBuffers,
) type {
    const callback = if (framing == .raw) "bytes" else "frame";
    const frame_buffers: u16 = if (large.max_frame_bytes > config.read_buffer_bytes)
        large.frame_buffers
    else
        0;
    const max_input: usize = if (frame_buffers > 0)
        large.max_frame_bytes
    else
        config.read_buffer_bytes;
    const has_timer = @hasDecl(M, "timer");
    const has_upstream_reply = @hasDecl(M, "upstreamReply");
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
        if (!has_timer and callsOutsideComments(source, "setTimer(")) {
            @compileError(file ++ ": calls io.setTimer but has no timer callback; add:\n" ++
                "    pub fn timer(state: *State, conn: *Connection, io: *stream.Io) !void");
        }
        if (!has_upstream_reply and callsOutsideComments(source, "upstream.send")) {
            @compileError(file ++ ": sends upstream calls but has no upstreamReply callback; " ++
                "add:\n    pub fn upstreamReply(state: *State, conn: *Connection, " ++
                "context: u64, reply: upstream.Reply, io: *stream.Io) !void");
        }
        if (has_upstream_reply and config.upstreams.len == 0) {
            @compileError(file ++ ": has an upstreamReply callback but the spec has no " ++
                "upstreams; add one to \"upstreams\" or remove the callback");
        }
    }
    return struct {
        pub const State = M.State;
        /// The module's own metrics: `service.metrics.inc(.name)` (see `metrics/app.zig`).
        pub const metrics = app_metrics.Metrics(M);

        /// The module's per-connection state and the engine's own.
        pub const Connection = struct {
            user: M.Connection = .{},
            /// The module asked for `writable`: frames wait.
            writable_pending: bool = false,
            /// The module paused reading: frames wait.
            reading_paused: bool = false,
            /// The delay of the timer the module armed last, while it has not fired or been
            /// cancelled (the worker keeps the timer itself; tests look here).
            timer_ms: ?u32 = null,
            /// The frame buffer its input gathers in (a frame larger than the read buffer);
            /// null: the read buffer.
            frame_buffer: ?u16 = null,
            /// The frame buffer's input: `frame_start..frame_len` (what is before was used).
            frame_start: usize = 0,
            frame_len: usize = 0,
            /// The worker drains and the module's `draining` waits for a reply in parts.
            drain_due: bool = false,
            /// The module's timer as a moment, kept while an upstream call holds the
            /// worker's timer of the connection (see `holdTimer`).
            timer_at_ms: ?u64 = null,
            /// An upstream call of the connection waits for its reply: no frame is delivered
            /// and nothing is read until the module's `upstreamReply` has it.
            call_pending: bool = false,
            /// The worker runs the connection by then even without a reply (the call's own
            /// deadline comes first, and its failure is the reply).
            call_hold_until_ms: u64 = 0,
        };

        var state: State = undefined;
        var initialized = false;
        var scratch: [scratch_bytes]u8 = undefined;
        /// Frames refused for their size: larger than the module may be handed, or with every
        /// frame buffer taken.
        pub var frames_too_large: u64 = 0;

        /// `frame_buffers` buffers of `max_input` bytes, one after the other.
        var pool: []u8 = &.{};
        /// The free ones, taken from the end (the last freed is reused first: its pages are
        /// the ones most likely backed already).
        var pool_free: [frame_buffers]u16 = undefined;
        var pool_free_len: u16 = 0;

        const ticker = app_timer.Ticker(M, State);

        pub fn init(allocator: std.mem.Allocator, now_ms: u64) !void {
            if (initialized) return;
            // A call's reply wakes its connection through the worker's wake queue.
            if (has_upstream_reply) try app_wake.reserve();
            try reservePool();
            errdefer releasePool();
            state = try State.init(allocator);
            initialized = true;
            ticker.start(now_ms);
        }

        pub fn deinit(allocator: std.mem.Allocator) void {
            if (!initialized) return;
            ticker.stop();
            state.deinit(allocator);
            releasePool();
            initialized = false;
        }

        /// Reserves the frame buffers (at `init`; the test helpers too).
        pub fn reservePool() !void {
            if (frame_buffers == 0 or pool.len > 0) return;
            pool = try compat.mapMemory(@as(usize, frame_buffers) * max_input);
            for (&pool_free, 0..) |*f, i| f.* = @intCast(frame_buffers - 1 - i);
            pool_free_len = frame_buffers;
        }

        fn releasePool() void {
            if (pool.len > 0) _ = std.os.linux.munmap(pool.ptr, pool.len);
            pool = &.{};
            pool_free_len = 0;
        }

        fn frameBuffer(index: u16) []u8 {
            return pool[@as(usize, index) * max_input ..][0..max_input];
        }

        /// Moves `input` into a free frame buffer; false when every one is taken.
        fn takeFrameBuffer(conn: *Connection, input: []const u8) bool {
            assert(conn.frame_buffer == null);
            // Without frame buffers (known at compile time) there is nothing to take.
            if (frame_buffers == 0) return false;
            if (pool_free_len == 0) return false;
            pool_free_len -= 1;
            const index = pool_free[pool_free_len];
            @memcpy(frameBuffer(index)[0..input.len], input);
            conn.frame_buffer = index;
            conn.frame_start = 0;
            conn.frame_len = input.len;
            return true;
        }

        fn releaseFrameBuffer(conn: *Connection) void {
            if (frame_buffers == 0) return;
            const index = conn.frame_buffer orelse return;
            assert(pool_free_len < frame_buffers);
            pool_free[pool_free_len] = index;
            pool_free_len += 1;
            conn.frame_buffer = null;
            conn.frame_start = 0;
            conn.frame_len = 0;
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
            return lingering(holding(conn, open(&state, ctx, conn, out)));
        }

        pub fn onData(
            ctx: *const api.Context,
            conn: *Connection,
            input: []u8,
            out: *api.Output,
        ) api.Progress {
            return lingering(holding(conn, serve(&state, ctx, conn, input, out)));
        }

        pub fn onTimer(ctx: *const api.Context, conn: *Connection, out: *api.Output) api.Progress {
            return lingering(holding(conn, fire(&state, ctx, conn, out)));
        }

        /// A connection whose upstream call is pending waits for it (the worker's `.waiting`:
        /// no idle deadline, its timer armed by `holdTimer`).
        fn holding(conn: *const Connection, progress: api.Progress) api.Progress {
            var p = progress;
            if (conn.call_pending) p.phase = .waiting;
            return p;
        }

        /// Every close of a module lingers: the module may close in the middle of what its
        /// client sends (resp's protocol error is found in a command's header, with megabytes
        /// of it still to come), and only the client knows when it is done.
        fn lingering(progress: api.Progress) api.Progress {
            var p = progress;
            p.linger = p.close;
            return p;
        }

        /// Runs the module's `timer` callback for a connection whose timer fired.
        pub fn fire(
            s: *State,
            ctx: *const api.Context,
            conn: *Connection,
            out: *api.Output,
        ) api.Progress {
            var progress: api.Progress = .{ .consumed = 0 };
            if (has_upstream_reply and conn.call_pending) {
                const now = sys.monotonicMs();
                const generation = ctx.connection_generation;
                const waiter: api.Waiter = .{ .slot = ctx.slot, .generation = generation };
                if (upstreams.takeStreamReply(waiter)) |answer| {
                    return replied(s, ctx, conn, out, answer.context, answer.reply);
                }
                // Woken for something else: the module's own timer, or a drain.
                const due = if (conn.timer_at_ms) |at| at <= now else false;
                if (!due) {
                    progress.timer = holdTimer(conn, now);
                    return progress;
                }
            }
            conn.timer_ms = null;
            conn.timer_at_ms = null;
            if (!has_timer) return progress;
            var fba: std.heap.FixedBufferAllocator = undefined;
            var io = ioFor(&fba, ctx, out);
            M.timer(s, &conn.user, &io) catch {
                progress.close = true;
                return progress;
            };
            return after(conn, &io, progress);
        }

        /// The reply (or failure) of the connection's upstream call, for `upstreamReply`;
        /// reading resumes after it (unless the module paused, or made another call).
        fn replied(
            s: *State,
            ctx: *const api.Context,
            conn: *Connection,
            out: *api.Output,
            context: u64,
            reply: api.UpstreamReply,
        ) api.Progress {
            conn.call_pending = false;
            var progress: api.Progress = .{ .consumed = 0 };
            var fba: std.heap.FixedBufferAllocator = undefined;
            var io = ioFor(&fba, ctx, out);
            M.upstreamReply(s, &conn.user, context, reply, &io) catch {
                progress.close = true;
            };
            progress = after(conn, &io, progress);
            if (conn.call_pending) return progress;
            // The worker's timer held the call: it goes back to the module's own, if any.
            progress.timer = if (conn.timer_at_ms) |at|
                .{ .after_ms = @intCast(@min(at -| sys.monotonicMs(), std.math.maxInt(u32))) }
            else
                .cancel;
            if (!conn.reading_paused) {
                progress.reading = .unpause;
                // Frames that waited in the frame buffer are offered again.
                if (conn.frame_buffer != null) progress.want_writable = true;
            }
            return progress;
        }

        /// A call the callback sent (`app_upstream.send`) holds the connection until its
        /// reply; while one is pending, the worker's timer is `holdTimer`'s.
        fn afterCall(conn: *Connection, io: *const Io, progress: api.Progress) api.Progress {
            var p = progress;
            if (!has_upstream_reply) return p;
            if (io.call_due_ms) |due| {
                conn.call_pending = true;
                conn.call_hold_until_ms = due + api.upstream_hold_grace_ms;
            }
            if (conn.call_pending) p.timer = holdTimer(conn, sys.monotonicMs());
            return p;
        }

        /// The worker's timer while a call is pending: the module's timer or the call's
        /// hold, whichever comes first.
        fn holdTimer(conn: *const Connection, now_ms: u64) api.TimerChange {
            const at = @min(conn.call_hold_until_ms, conn.timer_at_ms orelse std.math.maxInt(u64));
            return .{ .after_ms = @intCast(@min(at -| now_ms, std.math.maxInt(u32))) };
        }

        /// Whether the module hears of the drain on each connection (`draining`).
        pub const wants_drain = @hasDecl(M, "draining");

        /// The worker began to drain: the module's `draining` callback runs for this
        /// connection (the worker calls this with the output sent).
        pub fn onDrain(ctx: *const api.Context, conn: *Connection, out: *api.Output) api.Progress {
            const told = drainConnection(&state, ctx, conn, out, .{ .consumed = 0 });
            return lingering(holding(conn, told));
        }

        /// Runs `draining` for a connection, once, adding to `base` what it asks for; while
        /// a reply in parts goes out (`io.wantWritable`), after the `writable` that ends it.
        pub fn drainConnection(
            s: *State,
            ctx: *const api.Context,
            conn: *Connection,
            out: *api.Output,
            base: api.Progress,
        ) api.Progress {
            var progress = base;
            if (!wants_drain) return progress;
            if (conn.writable_pending) {
                conn.drain_due = true;
                return progress;
            }
            conn.drain_due = false;
            var fba: std.heap.FixedBufferAllocator = undefined;
            var io = ioFor(&fba, ctx, out);
            M.draining(s, &conn.user, &io) catch {
                progress.close = true;
                return progress;
            };
            return after(conn, &io, progress);
        }

        pub fn onClose(conn: *Connection) void {
            releaseFrameBuffer(conn);
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
            var fba: std.heap.FixedBufferAllocator = undefined;
            var io = ioFor(&fba, ctx, out);
            M.open(s, &conn.user, &io) catch {
                progress.close = true;
                return progress;
            };
            return after(conn, &io, progress);
        }

        fn after(conn: *Connection, io: *const Io, progress: api.Progress) api.Progress {
            var p = progress;
            if (io.close_requested) p.close = true;
            switch (io.timer) {
                .keep => {},
                .cancel => {
                    conn.timer_ms = null;
                    conn.timer_at_ms = null;
                    p.timer = .cancel;
                },
                .after_ms => |ms| {
                    // A module without the callback is refused at build time when it names
                    // setTimer itself (see `callsOutsideComments`); one that arms it
                    // otherwise is closed.
                    if (!has_timer) p.close = true;
                    conn.timer_ms = ms;
                    if (has_upstream_reply) conn.timer_at_ms = sys.monotonicMs() + ms;
                    p.timer = io.timer;
                },
            }
            p = afterCall(conn, io, p);
            switch (io.reading) {
                .keep => {},
                .pause => conn.reading_paused = true,
                .unpause => {
                    conn.reading_paused = false;
                    // Frames that waited in the frame buffer are offered again: the worker
                    // only knows of its read buffer's.
                    if (conn.frame_buffer != null) p.want_writable = true;
                },
            }
            if (io.reading != .keep) p.reading = io.reading;
            // A pending call keeps the connection paused whatever the module's own pause.
            if (conn.call_pending) p.reading = .pause;
            if (io.writable_requested) {
                conn.writable_pending = true;
                p.want_writable = true;
                p.paced = true;
            }
            return p;
        }

        /// The module asked to hear when the output has room (`io.wantWritable`): it has.
        fn onWritable(
            s: *State,
            ctx: *const api.Context,
            conn: *Connection,
            out: *api.Output,
        ) api.Progress {
            conn.writable_pending = false;
            var progress: api.Progress = .{ .consumed = 0 };
            var fba: std.heap.FixedBufferAllocator = undefined;
            var io = ioFor(&fba, ctx, out);
            if (@hasDecl(M, "writable")) {
                M.writable(s, &conn.user, &io) catch {
                    progress.close = true;
                    return progress;
                };
            }
            progress = after(conn, &io, progress);
            if (conn.drain_due and !conn.writable_pending and !progress.close) {
                progress = drainConnection(s, ctx, conn, out, progress);
            }
            // A writable that wrote nothing and asks again would spin: it waits for input.
            if (progress.want_writable and out.len == 0 and !out.spilled()) {
                progress.want_writable = false;
                progress.paced = false;
            }
            return progress;
        }

        /// Delivers every complete frame of the connection's input while the output has
        /// room: `input` is the read buffer's, moved to a frame buffer when it fills with a
        /// frame that is not complete.
        pub fn serve(
            s: *State,
            ctx: *const api.Context,
            conn: *Connection,
            input: []u8,
            out: *api.Output,
        ) api.Progress {
            if (conn.frame_buffer) |index| {
                const buf = frameBuffer(index);
                const taken = @min(input.len, buf.len - conn.frame_len);
                @memcpy(buf[conn.frame_len..][0..taken], input[0..taken]);
                conn.frame_len += taken;
                var progress = deliver(s, ctx, conn, buf[conn.frame_start..conn.frame_len], out);
                if (conn.frame_buffer == null) {
                    // Refused (a frame too large for its framing): the connection closes.
                    progress.consumed = taken;
                    return progress;
                }
                const used = progress.consumed;
                progress.consumed = taken;
                conn.frame_start += used;
                if (conn.frame_start == conn.frame_len) {
                    releaseFrameBuffer(conn);
                    return progress;
                }
                // What is left moves to the front once it is full or half used (each byte
                // moves a bounded number of times).
                if (conn.frame_start > 0 and
                    (conn.frame_len == buf.len or conn.frame_start >= buf.len / 2))
                {
                    const rest = buf[conn.frame_start..conn.frame_len];
                    compat.copyLeft(buf[0..rest.len], rest);
                    conn.frame_len = rest.len;
                    conn.frame_start = 0;
                }
                if (stuck(conn, progress, used, conn.frame_len)) return refuse(s, ctx, conn, out);
                return progress;
            }
            const progress = deliver(s, ctx, conn, input, out);
            if (!stuck(conn, progress, progress.consumed, input.len)) return progress;
            if (takeFrameBuffer(conn, input)) {
                var gathering = progress;
                gathering.consumed = input.len;
                return gathering;
            }
            return refuse(s, ctx, conn, out);
        }

        /// Whether input can make no progress: it fills all the room it has (the read
        /// buffer, or a frame buffer) and the module used none of it, waiting for nothing
        /// but more input.
        fn stuck(conn: *const Connection, progress: api.Progress, used: usize, held: usize) bool {
            const room = if (conn.frame_buffer == null) config.read_buffer_bytes else max_input;
            if (used > 0 or held < room) return false;
            if (progress.close or progress.want_writable) return false;
            return !conn.reading_paused and !conn.writable_pending and !conn.call_pending;
        }

        /// What a module call gets to write and allocate with: the connection's output, and
        /// the scratch arena (`fba`, the caller's, lives as long as the call).
        fn ioFor(
            fba: *std.heap.FixedBufferAllocator,
            ctx: *const api.Context,
            out: *api.Output,
        ) Io {
            fba.* = std.heap.FixedBufferAllocator.init(&scratch);
            return .{
                .out = out,
                .arena = fba.allocator(),
                .fd = ctx.fd,
                .max_input = max_input,
                .waiter = .{ .slot = ctx.slot, .generation = ctx.connection_generation },
            };
        }

        /// A frame larger than the module may be handed: its `tooLarge` callback may answer,
        /// then the connection closes (counted as refused with 413, like a body too large).
        fn refuse(
            s: *State,
            ctx: *const api.Context,
            conn: *Connection,
            out: *api.Output,
        ) api.Progress {
            frames_too_large += 1;
            const progress: api.Progress = .{ .consumed = 0, .close = true, .rejected = 413 };
            if (@hasDecl(M, "tooLarge")) {
                var fba: std.heap.FixedBufferAllocator = undefined;
                var io = ioFor(&fba, ctx, out);
                // The answer is a courtesy: the connection closes whether or not it fits.
                M.tooLarge(s, &conn.user, &io) catch {};
            }
            releaseFrameBuffer(conn);
            return progress;
        }

        fn deliver(
            s: *State,
            ctx: *const api.Context,
            conn: *Connection,
            input: []u8,
            out: *api.Output,
        ) api.Progress {
            var progress: api.Progress = .{ .consumed = 0 };
            if (conn.writable_pending) {
                progress = onWritable(s, ctx, conn, out);
                if (conn.writable_pending or progress.close) return progress;
            }
            if (conn.reading_paused or conn.call_pending) return progress;
            // Each round consumes at least one byte or stops.
            var rounds: usize = 0;
            while (rounds <= input.len) : (rounds += 1) {
                if (progress.consumed == input.len) break;
                if (out.room() < reply_reserve_bytes) {
                    // Send what is written, then come back for the rest.
                    progress.want_writable = true;
                    break;
                }
                var fba: std.heap.FixedBufferAllocator = undefined;
                var io = ioFor(&fba, ctx, out);
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
                        if (out.len > 0 or out.spilled()) progress.want_writable = true;
                        break;
                    }
                    if (io.close_requested or io.writable_requested) break;
                    if (conn.reading_paused or conn.call_pending) break;
                    continue;
                }
                const frame = switch (cut(framing, rest)) {
                    .need_more => break,
                    .too_large => {
                        var refused = refuse(s, ctx, conn, out);
                        refused.consumed = progress.consumed;
                        refused.requests = progress.requests;
                        return refused;
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
                if (conn.reading_paused or conn.call_pending) break;
            }
            return progress;
        }

        /// Runs `bytes` through the module on a fresh connection without a socket and returns
        /// what it wrote (in a buffer reused by the next call). For tests.
        /// A module that pauses reading gets the frames before the pause; the rest is dropped
        /// (send it again after `testTimer`, say).
        pub fn testBytes(s: *State, conn: *Connection, bytes: []const u8) ![]const u8 {
            if (bytes.len > Buffers.input.len) return error.InputTooLarge;
            @memcpy(Buffers.input[0..bytes.len], bytes);
            var out: api.Output = .{ .buf = &Buffers.output };
            const ctx = testContext();
            const progress = serve(s, &ctx, conn, Buffers.input[0..bytes.len], &out);
            const waits = progress.close or conn.reading_paused;
            if (progress.consumed != bytes.len and !waits) return error.IncompleteFrame;
            return out.buf[0..out.len];
        }

        /// Fires the connection's timer as the worker would once its delay has passed, and
        /// returns what the module wrote (in a buffer reused by the next call). For tests.
        pub fn testTimer(s: *State, conn: *Connection) ![]const u8 {
            if (conn.timer_ms == null) return error.NoTimerArmed;
            var out: api.Output = .{ .buf = &Buffers.output };
            const ctx = testContext();
            _ = fire(s, &ctx, conn, &out);
            return out.buf[0..out.len];
        }

        /// Tells the connection the worker drains, as the worker would, and returns what the
        /// module wrote and whether it closes. For tests.
        pub fn testDrain(s: *State, conn: *Connection) !TestAnswer {
            var out: api.Output = .{ .buf = &Buffers.output };
            var ctx = testContext();
            ctx.draining = true;
            const progress = drainConnection(s, &ctx, conn, &out, .{ .consumed = 0 });
            return .{ .bytes = out.buf[0..out.len], .close = progress.close };
        }

        const Buffers = struct {
            var input: [config.read_buffer_bytes]u8 = undefined;
            var output: [config.write_buffer_bytes]u8 = undefined;
        };
    };
}

/// What a module wrote in a test, and whether it closes the connection after.
pub const TestAnswer = struct { bytes: []const u8, close: bool };

/// Whether a module's source names `needle` outside comments: a module that calls
/// `setTimer` needs the `timer` callback, one that calls `upstream.send` `upstreamReply`,
/// and the build says so rather than the first call.
fn callsOutsideComments(comptime source: []const u8, comptime needle: []const u8) bool {
    return comptime found: {
        @setEvalBranchQuota(20 * source.len + 1000);
        var lines = std.mem.splitScalar(u8, source, '\n');
        while (lines.next()) |text| {
            const code = if (compat.find(u8, text, "//")) |at| text[0..at] else text;
            if (compat.find(u8, code, needle) != null) break :found true;
        }
        break :found false;
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

test "a source that calls setTimer is told apart from one that only mentions it" {
    const timer = "setTimer(";
    const calls = "fn f(io: *Io) void {\n    io.setTimer(5);\n}";
    try std.testing.expect(comptime callsOutsideComments(calls, timer));
    const mentions = "// io.setTimer(ms) needs timer\nconst a = 1;";
    try std.testing.expect(!comptime callsOutsideComments(mentions, timer));
    try std.testing.expect(!comptime callsOutsideComments("fn f() void {}", timer));
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

test "a module pauses reading and arms its timer; the timer resumes and frames go on" {
    const M = struct {
        pub const State = struct {};
        pub const Connection = struct { waits: u32 = 0 };
        pub fn frame(state: *State, conn: *Connection, line: []const u8, io: *Io) !void {
            _ = state;
            if (std.mem.eql(u8, line, "wait")) {
                conn.waits += 1;
                io.pauseReading();
                io.setTimer(25);
                return;
            }
            if (std.mem.eql(u8, line, "later")) return io.setTimer(1000);
            if (std.mem.eql(u8, line, "never")) return io.cancelTimer();
            try io.print("{s}\n", .{line});
        }
        pub fn timer(state: *State, conn: *Connection, io: *Io) !void {
            _ = state;
            try io.print("waited {d}\n", .{conn.waits});
            io.resumeReading();
        }
    };
    const S = Module(M, "test.zig", "", .{ .line = .{ .max_bytes = 16 } }, 256, .{});
    var state: M.State = .{};
    var conn: S.Connection = .{};
    const Buffer = struct {
        var bytes: [config.write_buffer_bytes]u8 = undefined;
    };
    var out: api.Output = .{ .buf = &Buffer.bytes };
    const ctx = testContext();
    var input = "a\nwait\nb\n".*;
    const paused = S.serve(&state, &ctx, &conn, &input, &out);
    try std.testing.expectEqualStrings("a\n", out.buf[0..out.len]);
    try std.testing.expectEqual(@as(usize, 7), paused.consumed);
    try std.testing.expect(paused.reading == .pause);
    try std.testing.expectEqual(api.TimerChange{ .after_ms = 25 }, paused.timer);
    // While paused nothing is delivered.
    out.len = 0;
    const waiting = S.serve(&state, &ctx, &conn, input[7..], &out);
    try std.testing.expectEqual(@as(usize, 0), waiting.consumed);
    try std.testing.expectEqual(@as(usize, 0), out.len);
    const fired = S.fire(&state, &ctx, &conn, &out);
    try std.testing.expectEqualStrings("waited 1\n", out.buf[0..out.len]);
    try std.testing.expect(fired.reading == .unpause);
    try std.testing.expect(conn.timer_ms == null);
    out.len = 0;
    const resumed = S.serve(&state, &ctx, &conn, input[7..], &out);
    try std.testing.expectEqual(@as(usize, 2), resumed.consumed);
    try std.testing.expectEqualStrings("b\n", out.buf[0..out.len]);
    // Armed, then cancelled: the worker is told, and nothing is left to fire.
    out.len = 0;
    var more = "later\nnever\n".*;
    const cancelled = S.serve(&state, &ctx, &conn, &more, &out);
    try std.testing.expect(cancelled.timer == .cancel);
    try std.testing.expect(conn.timer_ms == null);
}

test "input that fills the read buffer gathers in a frame buffer; past its size it is refused" {
    const M = struct {
        pub const State = struct { lines: usize = 0, refused: usize = 0 };
        pub const Connection = struct {};
        /// A line at a time, however long.
        pub fn bytes(state: *State, conn: *Connection, input: []const u8, io: *Io) !usize {
            _ = conn;
            const end = compat.findScalar(u8, input, '\n') orelse return 0;
            state.lines += 1;
            try io.print("{d}\n", .{end});
            return end + 1;
        }
        pub fn tooLarge(state: *State, conn: *Connection, io: *Io) !void {
            _ = conn;
            state.refused += 1;
            try io.write("too large\n");
        }
    };
    const read_bytes = config.read_buffer_bytes;
    const S = Module(M, "test.zig", "", .raw, 256, .{
        .max_frame_bytes = 2 * read_bytes,
        .frame_buffers = 1,
    });
    try S.reservePool();
    defer S.releasePool();
    var state: M.State = .{};
    var conn: S.Connection = .{};
    const Buffers = struct {
        var input: [read_bytes]u8 = undefined;
        var output: [config.write_buffer_bytes]u8 = undefined;
    };
    var out: api.Output = .{ .buf = &Buffers.output };
    const ctx = testContext();
    // A full read buffer without a line end moves to the frame buffer, all of it used up.
    @memset(&Buffers.input, 'a');
    const gathered = S.serve(&state, &ctx, &conn, &Buffers.input, &out);
    try std.testing.expectEqual(@as(usize, read_bytes), gathered.consumed);
    try std.testing.expect(conn.frame_buffer != null and !gathered.close);
    // The rest of the line arrives: the module sees it whole, and the buffer is given back.
    Buffers.input[9] = '\n';
    const line = S.serve(&state, &ctx, &conn, Buffers.input[0..10], &out);
    try std.testing.expectEqual(@as(usize, 10), line.consumed);
    try std.testing.expectEqual(@as(usize, 1), state.lines);
    var text: [16]u8 = undefined;
    const want = try compat.bufPrint(&text, "{d}\n", .{read_bytes + 9});
    try std.testing.expectEqualStrings(want, out.buf[0..out.len]);
    try std.testing.expect(conn.frame_buffer == null);
    // Twice the read buffer without a line end fills the frame buffer: refused, answered.
    out.len = 0;
    @memset(&Buffers.input, 'b');
    _ = S.serve(&state, &ctx, &conn, &Buffers.input, &out);
    const refused = S.serve(&state, &ctx, &conn, &Buffers.input, &out);
    try std.testing.expect(refused.close);
    try std.testing.expectEqual(@as(u16, 413), refused.rejected);
    try std.testing.expectEqual(@as(usize, 1), state.refused);
    try std.testing.expectEqualStrings("too large\n", out.buf[0..out.len]);
    try std.testing.expect(conn.frame_buffer == null);
}

test "draining says goodbye once per connection, after the last part of a reply in parts" {
    const M = struct {
        pub const State = struct { drained: u32 = 0 };
        pub const Connection = struct { parts: u8 = 0 };
        pub fn frame(state: *State, conn: *Connection, line: []const u8, io: *Io) !void {
            _ = state;
            if (std.mem.eql(u8, line, "big")) {
                conn.parts = 2;
                try io.write("part\n");
                return io.wantWritable();
            }
            try io.print("{s}\n", .{line});
        }
        pub fn writable(state: *State, conn: *Connection, io: *Io) !void {
            _ = state;
            conn.parts -= 1;
            try io.write("part\n");
            if (conn.parts > 0) io.wantWritable();
        }
        pub fn draining(state: *State, conn: *Connection, io: *Io) !void {
            _ = conn;
            state.drained += 1;
            try io.write("bye\n");
            io.close();
        }
    };
    const S = Module(M, "test.zig", "", .{ .line = .{ .max_bytes = 16 } }, 256, .{});
    try std.testing.expect(S.wants_drain);
    var state: M.State = .{};
    var idle: S.Connection = .{};
    const told = try S.testDrain(&state, &idle);
    try std.testing.expectEqualStrings("bye\n", told.bytes);
    try std.testing.expect(told.close);
    const Buffer = struct {
        var bytes: [config.write_buffer_bytes]u8 = undefined;
    };
    var out: api.Output = .{ .buf = &Buffer.bytes };
    var ctx = testContext();
    var busy: S.Connection = .{};
    var input = "big\n".*;
    const started = S.serve(&state, &ctx, &busy, &input, &out);
    try std.testing.expect(started.want_writable);
    // The drain begins between two parts: the goodbye waits for the reply's end.
    out.len = 0;
    ctx.draining = true;
    const waiting = S.drainConnection(&state, &ctx, &busy, &out, .{ .consumed = 0 });
    try std.testing.expect(!waiting.close);
    try std.testing.expectEqual(@as(usize, 0), out.len);
    try std.testing.expectEqual(@as(u32, 1), state.drained);
    const second = S.serve(&state, &ctx, &busy, input[0..0], &out);
    try std.testing.expectEqualStrings("part\n", out.buf[0..out.len]);
    try std.testing.expect(second.want_writable and !second.close);
    out.len = 0;
    const last = S.serve(&state, &ctx, &busy, input[0..0], &out);
    try std.testing.expectEqualStrings("part\nbye\n", out.buf[0..out.len]);
    try std.testing.expect(last.close);
    try std.testing.expectEqual(@as(u32, 2), state.drained);
    // A module without the callback is not told.
    const Plain = Module(struct {
        pub const State = struct {};
        pub const Connection = struct {};
        pub fn frame(s: *State, conn: *Connection, line: []const u8, io: *Io) !void {
            _ = s;
            _ = conn;
            try io.write(line);
        }
    }, "test.zig", "", .{ .line = .{ .max_bytes = 16 } }, 256, .{});
    try std.testing.expect(!Plain.wants_drain);
}
