//! The kv module: the functions that answer the routes of the `kv`
//! application listeners. gen-reuseport created this file once and never overwrites or
//! removes it: it is yours. When the spec gains a route, add its function here (the
//! generator names it, and the build says which one is missing).
//!
//! A route function gets the worker's `State`, the request (`req.param`, `req.header`,
//! `req.queryParam`, `req.body`, `req.peer()`, `req.arena`) and the response (`res.status`,
//! `res.header`, `res.write`, `res.print`). A returned error becomes a 500 (declare
//! `pub fn errorStatus(err: anyerror) u16` to choose), `error.OutOfMemory` from `req.arena` a
//! 503. Optional: `State.drain` (the worker is stopping) and, in this file,
//! `pub fn access(state: *State, entry: http.Access) void` (after each routed request).
//! Never block: one worker serves all its connections from one thread.
//!
//! `req.body` is whole: the head and the body share the connection's read buffer, so the
//! largest body is min(maxBodyBytes, readBufferBytes - the request's head); a larger one, sent
//! with Content-Length or chunked, is answered 413 before any route runs. With `bodyBuffers`
//! in the spec's `http`, bodies that outgrow the read buffer move to one of that many buffers
//! of maxBodyBytes per worker and reach maxBodyBytes (503 while all are taken). When this file
//! was created the spec said maxBodyBytes 8192, readBufferBytes
//! 16384, bodyBuffers 0.
//!
//! A body larger than the write buffer: `res.stream(State, next, cursor, length)`. An answer
//! that must wait (a long poll): `const waiter = res.later(ms);` holds the request, and the
//! route runs again with it after `ms`, or sooner once any callback calls `http.wake(waiter)`
//! (`req.waits`, `req.waited_ms` and `req.draining` help it decide); `service.testHold` tests
//! that.
//!
//! A per-worker timer: declare `pub const tick_ms: u32 = 1000;` and
//! `pub fn tick(state: *State, now_ms: u64) void`.
const std = @import("std");
const http = @import("../handlers/app_http.zig");
const service = @import("../handlers/app.zig").kv;

/// Per-worker state. Per worker means per process: every worker process has its own copy,
/// nothing here is shared between workers.
pub const State = struct {
    requests: u64 = 0,

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

/// GET /kv
pub fn listKeys(state: *State, req: *http.Request, res: *http.Response) !void {
    state.requests += 1;
    try res.header("Content-Type", "text/plain; charset=utf-8");
    try res.print("listKeys: {s}\n", .{req.path});
}

/// GET /kv/:key
pub fn getKey(state: *State, req: *http.Request, res: *http.Response) !void {
    state.requests += 1;
    try res.header("Content-Type", "text/plain; charset=utf-8");
    try res.print("getKey: {s}\n", .{req.path});
}

/// PUT /kv/:key
pub fn putKey(state: *State, req: *http.Request, res: *http.Response) !void {
    state.requests += 1;
    try res.header("Content-Type", "text/plain; charset=utf-8");
    try res.print("putKey: {s}\n", .{req.path});
}

/// DELETE /kv/:key
pub fn deleteKey(state: *State, req: *http.Request, res: *http.Response) !void {
    state.requests += 1;
    try res.header("Content-Type", "text/plain; charset=utf-8");
    try res.print("deleteKey: {s}\n", .{req.path});
}

/// GET /health
pub fn health(state: *State, req: *http.Request, res: *http.Response) !void {
    state.requests += 1;
    try res.header("Content-Type", "text/plain; charset=utf-8");
    try res.print("health: {s}\n", .{req.path});
}

test "listKeys answers GET /kv" {
    var state = try State.init(std.testing.allocator);
    defer state.deinit(std.testing.allocator);
    const res = try service.testRequest(&state, "GET /kv HTTP/1.1\r\n" ++
        "Host: test\r\n\r\n");
    try std.testing.expectEqual(@as(u16, 200), res.status);
}

test "getKey answers GET /kv/:key" {
    var state = try State.init(std.testing.allocator);
    defer state.deinit(std.testing.allocator);
    const res = try service.testRequest(&state, "GET /kv/1 HTTP/1.1\r\n" ++
        "Host: test\r\n\r\n");
    try std.testing.expectEqual(@as(u16, 200), res.status);
}

test "putKey answers PUT /kv/:key" {
    var state = try State.init(std.testing.allocator);
    defer state.deinit(std.testing.allocator);
    const res = try service.testRequest(&state, "PUT /kv/1 HTTP/1.1\r\n" ++
        "Host: test\r\nContent-Length: 0\r\n\r\n");
    try std.testing.expectEqual(@as(u16, 200), res.status);
}

test "deleteKey answers DELETE /kv/:key" {
    var state = try State.init(std.testing.allocator);
    defer state.deinit(std.testing.allocator);
    const res = try service.testRequest(&state, "DELETE /kv/1 HTTP/1.1\r\n" ++
        "Host: test\r\n\r\n");
    try std.testing.expectEqual(@as(u16, 200), res.status);
}

test "health answers GET /health" {
    var state = try State.init(std.testing.allocator);
    defer state.deinit(std.testing.allocator);
    const res = try service.testRequest(&state, "GET /health HTTP/1.1\r\n" ++
        "Host: test\r\n\r\n");
    try std.testing.expectEqual(@as(u16, 200), res.status);
}
