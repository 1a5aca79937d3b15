//! The test helpers of HTTP application modules: they run a module's routes from bytes,
//! without sockets, in `zig build test` (`service.testRequest`, `service.testHold`). They
//! drive the module as the worker does (`serve`, `runHeld`), and keep a clock of their own for
//! held requests, so that a 30-second long poll takes no time in a test.
const std = @import("std");
const config = @import("../../config.zig");
const sys = @import("../../net/sys.zig");
const compat = @import("../../compat.zig");
const api = @import("../api.zig");
const app_http = @import("http.zig");
const app_wake = @import("wake.zig");

/// The clock of held requests while tests run (µs); null outside tests, where they use the
/// monotonic clock.
pub var clock_us: ?u64 = null;

/// How often `testRequest` lets a route hold its request before giving up.
pub const max_test_holds = 100_000;

/// The connection generation of the last `testHold`: each held request is a new connection.
var test_generation: u32 = 0;

/// The largest response `testRequest` collects.
pub const test_response_bytes = 4 << 20;

/// A connection of no worker; `connection_generation` 0 makes its waiter one that no wake
/// reaches.
fn testContext(connection_generation: u32) api.Context {
    return .{
        .listener = &config.listeners[0],
        .listener_index = 0,
        .worker_index = 0,
        .pid = 1,
        .generation = 1,
        .draining = false,
        .fd = -1,
        .slot = 0,
        .connection_generation = connection_generation,
    };
}

/// The helpers of one module; `Engine` is its `app_http.Module(...)` type.
pub fn Helpers(comptime Engine: type) type {
    const State = Engine.State;
    return struct {
        /// Runs one request through the module without a socket: `bytes` is what a client
        /// sends, the answer is parsed back. For tests (`zig build test`). A request its
        /// route holds (`res.later`) runs again as its timer would, on a test clock that
        /// jumps by each delay, until answered; `testHold` tests wakes.
        pub fn testRequest(s: *State, bytes: []const u8) !TestResponse {
            const Buffers = struct {
                var input: [config.read_buffer_bytes]u8 = undefined;
                var output: [config.write_buffer_bytes]u8 = undefined;
            };
            try Engine.reservePool();
            var conn = Engine.initConnection(config.max_body_bytes);
            defer Engine.releaseBody(&conn);
            var out: api.Output = .{ .buf = &Buffers.output };
            const ctx = testContext(0);
            const fed = try feed(s, &ctx, &conn, bytes, &Buffers.input, &out);
            var progress = fed.progress;
            var holds: usize = 0;
            while (conn.held != null) : (holds += 1) {
                if (holds == max_test_holds) return error.NeverAnswered;
                clock_us.? += @as(u64, delayOf(progress)) * std.time.us_per_ms;
                progress = Engine.runHeld(s, &ctx, &conn, Buffers.input[0..fed.in_len], &out);
            }
            return collect(s, &ctx, &conn, progress, &out);
        }

        /// Sends `bytes` as the worker reads: the read buffer takes what fits, the module
        /// uses what it can, the rest moves to the front (so bodies larger than the buffer
        /// work too). Ends with the first answer, a close or a held request.
        fn feed(
            s: *State,
            ctx: *const api.Context,
            conn: *app_http.Connection,
            bytes: []const u8,
            input: []u8,
            out: *api.Output,
        ) !struct { progress: api.Progress, in_len: usize } {
            if (clock_us == null) clock_us = sys.monotonicUs();
            var in_len: usize = 0;
            var fed: usize = 0;
            var progress: api.Progress = .{ .consumed = 0 };
            var rounds: usize = 0;
            while (rounds <= bytes.len) : (rounds += 1) {
                const take = @min(input.len - in_len, bytes.len - fed);
                @memcpy(input[in_len..][0..take], bytes[fed..][0..take]);
                in_len += take;
                fed += take;
                progress = Engine.serve(s, ctx, conn, input[0..in_len], out);
                if (progress.requests > 0 or progress.close or conn.held != null) break;
                const rest = input[progress.consumed..in_len];
                compat.copyLeft(input[0..rest.len], rest);
                in_len = rest.len;
                if (fed == bytes.len and progress.consumed == 0) break;
            }
            if (progress.requests == 0 and !progress.close and conn.held == null) {
                return error.IncompleteRequest;
            }
            return .{ .progress = progress, .in_len = in_len };
        }

        /// The whole answer in `out`, streamed parts included, as a client would read it.
        fn collect(
            s: *State,
            ctx: *const api.Context,
            conn: *app_http.Connection,
            first: api.Progress,
            out: *api.Output,
        ) !TestResponse {
            const Collected = struct {
                var response: [test_response_bytes]u8 = undefined;
            };
            var progress = first;
            var len: usize = 0;
            // A streamed body comes in one call per output buffer, as the worker would make.
            var calls: usize = 0;
            while (calls < test_response_bytes) : (calls += 1) {
                if (out.len > Collected.response.len - len) return error.ResponseTooLarge;
                @memcpy(Collected.response[len..][0..out.len], out.buf[0..out.len]);
                len += out.len;
                if (conn.streaming == null or progress.close) break;
                out.len = 0;
                progress = Engine.serve(s, ctx, conn, out.buf[0..0], out);
            }
            return TestResponse.parse(Collected.response[0..len]);
        }

        fn delayOf(progress: api.Progress) u32 {
            return switch (progress.timer) {
                .after_ms => |ms| ms,
                .keep, .cancel => unreachable,
            };
        }

        /// Starts a request that its route holds (`res.later`), for a test to wake or to
        /// let time out; `error.NotHeld` when the route answered at once. One at a time:
        /// the held request keeps its bytes in buffers of this helper until it is answered.
        pub fn testHold(s: *State, bytes: []const u8) !TestHeld {
            const Buffers = struct {
                var input: [config.read_buffer_bytes]u8 = undefined;
                var output: [config.write_buffer_bytes]u8 = undefined;
            };
            try Engine.reservePool();
            try app_wake.reserve();
            test_generation +%= 1;
            if (test_generation == 0) test_generation = 1;
            var held: TestHeld = .{
                .conn = Engine.initConnection(config.max_body_bytes),
                .ctx = testContext(test_generation),
                .input = &Buffers.input,
                .out = .{ .buf = &Buffers.output },
            };
            const fed = try feed(s, &held.ctx, &held.conn, bytes, held.input, &held.out);
            if (held.conn.held == null) {
                Engine.releaseBody(&held.conn);
                return error.NotHeld;
            }
            held.in_len = fed.in_len;
            held.delay_ms = delayOf(fed.progress);
            return held;
        }

        /// A request held by its route, in a test (see `testHold`).
        pub const TestHeld = struct {
            conn: app_http.Connection,
            ctx: api.Context,
            input: []u8,
            in_len: usize = 0,
            out: api.Output,
            /// The delay the route gave `res.later` last.
            delay_ms: u32 = 0,

            /// Whether `http.wake` was called for this request since it was held (or last
            /// run). Takes every queued wake, as the worker's loop would.
            pub fn woken(self: *const TestHeld) bool {
                var found = false;
                var budget: usize = config.max_connections;
                while (budget > 0) : (budget -= 1) {
                    const w = app_wake.take() orelse break;
                    const ours = w.generation == self.ctx.connection_generation;
                    if (w.slot == self.ctx.slot and ours) {
                        found = true;
                    }
                }
                return found;
            }

            /// Runs the route again as the worker does after a wake: no time passes.
            /// `error.StillHeld` when the route holds the request once more.
            pub fn run(self: *TestHeld, s: *State) !TestResponse {
                return self.again(s, 0);
            }

            /// Runs the route again as the worker does once the delay has passed.
            pub fn expire(self: *TestHeld, s: *State) !TestResponse {
                return self.again(s, self.delay_ms);
            }

            fn again(self: *TestHeld, s: *State, elapsed_ms: u32) !TestResponse {
                if (self.conn.held == null) return error.NotHeld;
                clock_us.? += @as(u64, elapsed_ms) * std.time.us_per_ms;
                const input = self.input[0..self.in_len];
                const progress = Engine.runHeld(s, &self.ctx, &self.conn, input, &self.out);
                if (self.conn.held != null) {
                    self.delay_ms = delayOf(progress);
                    return error.StillHeld;
                }
                defer Engine.releaseBody(&self.conn);
                return collect(s, &self.ctx, &self.conn, progress, &self.out);
            }
        };
    };
}

/// A response as a test sees it: status, one header at a time, body.
pub const TestResponse = struct {
    status: u16,
    head: []const u8,
    body: []const u8,

    fn parse(bytes: []const u8) !TestResponse {
        var text = bytes;
        const interim = app_http.continue_response;
        if (std.mem.startsWith(u8, text, interim)) text = text[interim.len..];
        const end = compat.find(u8, text, "\r\n\r\n") orelse return error.NoResponse;
        if (text.len < 12 or !std.mem.startsWith(u8, text, "HTTP/1.1 ")) return error.NoResponse;
        const status = std.fmt.parseInt(u16, text[9..12], 10) catch return error.NoResponse;
        var response: TestResponse = .{
            .status = status,
            .head = text[0 .. end + 2],
            .body = text[end + 4 ..],
        };
        const te = response.header("Transfer-Encoding") orelse return response;
        if (!std.ascii.eqlIgnoreCase(te, "chunked")) return response;
        // Decoded in place: each chunk moves left over the framing before it.
        const raw: []u8 = @constCast(response.body);
        var read: usize = 0;
        var written: usize = 0;
        while (read < raw.len) {
            const line_end = compat.find(u8, raw[read..], "\r\n") orelse return error.BadChunk;
            const size = std.fmt.parseInt(usize, raw[read..][0..line_end], 16) catch
                return error.BadChunk;
            read += line_end + 2;
            if (size == 0) break;
            if (read + size + 2 > raw.len) return error.BadChunk;
            compat.copyLeft(raw[written..][0..size], raw[read..][0..size]);
            written += size;
            read += size + 2;
        }
        response.body = raw[0..written];
        return response;
    }

    /// The value of the header `name` (case-insensitive), if the response has it.
    pub fn header(self: *const TestResponse, name: []const u8) ?[]const u8 {
        var lines = std.mem.splitSequence(u8, self.head, "\r\n");
        _ = lines.next();
        while (lines.next()) |line| {
            const colon = compat.findScalar(u8, line, ':') orelse continue;
            if (std.ascii.eqlIgnoreCase(line[0..colon], name)) {
                return std.mem.trim(u8, line[colon + 1 ..], " ");
            }
        }
        return null;
    }
};
