//! The notes module of examples/notes.json: a small JSON document store over HTTP.
//!
//!   GET    /notes       {"notes":[{"id":1,"bytes":12},…]}
//!   GET    /notes/:id   the note as it was stored, with the Content-Type it was stored with
//!   PUT    /notes/:id   stores the body (up to maxBodyBytes): 201 when new, 200 when replaced
//!   DELETE /notes/:id   204, or 404
//!   GET    /export      every note's bytes, one after the other, streamed (chunked): the
//!                       export may be far larger than the write buffer
//!   GET    /notes/:id/changes?after=V&wait=MS
//!                       a long poll: {"id":1,"version":3,"bytes":12} as soon as the note's
//!                       version is not V (version 0: no such note), 204 once MS milliseconds
//!                       (default 30000, at most 120000) have passed, at once when the
//!                       worker stops. Other requests are served meanwhile.
//!   GET    /stats       what this worker answered, counted by the `access` hook:
//!                       {"requests":7,"by_class":[0,5,0,2,0],"unrouted":1,…}
//!
//! The router's own answers are JSON too (`routerError`): 404 {"error":"no route",…},
//! 405 {"error":"method not allowed",…} with `Allow`, 413 {"error":"body too large"}.
//!
//! Notes live in the worker's `State`: per process. Each worker keeps its own notes, so a
//! client that wants to read what it wrote talks to one worker (one keep-alive connection),
//! as with any per-process cache. This is the example's real implementation; the e2e test
//! copies it over the generated stub.
const std = @import("std");
const compat = @import("../compat.zig");
const http = @import("../handlers/app_http.zig");
const service = @import("../handlers/app.zig").notes;

const max_notes = 1024;
const max_content_type_bytes = 128;
/// Long polls remembered per worker; past that the oldest is forgotten, and answers when its
/// own wait ends rather than at the change.
const max_watchers = 4096;
const default_wait_ms = 30_000;
const max_wait_ms = 120_000;

const Note = struct {
    id: u64,
    /// The worker's change count when the note was last stored.
    version: u64,
    text: []u8,
    content_type_buf: [max_content_type_bytes]u8,
    content_type_len: u8,

    fn contentType(self: *const Note) []const u8 {
        return self.content_type_buf[0..self.content_type_len];
    }
};

/// This module's own metrics, exported by the service's metrics endpoint as
/// `notes_notes_created_total`, `notes_notes_held` and `notes_note_bytes_*` (by worker, summed
/// over workers for the histogram); updated with `service.metrics`.
pub const metrics = .{
    .notes_created = http.Metric.counter("Notes stored under an id that had none."),
    .notes_held = http.Metric.gauge("Notes the worker holds now."),
    .note_bytes = http.Metric.histogram(
        "Size of each note stored, in bytes.",
        &.{ 64, 1024, 16384, 65536 },
    ),
};

/// Requests this worker answered, counted by `access` after each one (see `GET /stats`).
const Served = struct {
    requests: u64 = 0,
    /// By status class: 1xx … 5xx.
    by_class: [5]u64 = @splat(0),
    /// Requests no route answered (404, 405).
    unrouted: u64 = 0,
    body_bytes: u64 = 0,
    slowest_us: u64 = 0,
    slowest_route_buf: [64]u8 = undefined,
    slowest_route_len: usize = 0,
};

/// Per worker (per process).
pub const State = struct {
    allocator: std.mem.Allocator,
    notes: []?Note,
    count: usize = 0,
    /// Stores and deletes so far: every change gets the next version.
    changes: u64 = 0,
    /// Held long polls (a ring: the oldest is overwritten when it is full).
    watchers: []?Watcher,
    next_watcher: usize = 0,
    /// What this worker answered, as the `access` hook saw it.
    served: Served = .{},

    const Watcher = struct { id: u64, waiter: http.Waiter };

    pub fn init(allocator: std.mem.Allocator) !State {
        const notes = try allocator.alloc(?Note, max_notes);
        errdefer allocator.free(notes);
        @memset(notes, null);
        const watchers = try allocator.alloc(?Watcher, max_watchers);
        @memset(watchers, null);
        return .{ .allocator = allocator, .notes = notes, .watchers = watchers };
    }

    pub fn deinit(self: *State, allocator: std.mem.Allocator) void {
        for (self.notes) |*slot| {
            if (slot.*) |note| allocator.free(note.text);
        }
        allocator.free(self.notes);
        allocator.free(self.watchers);
    }

    fn watch(self: *State, id: u64, waiter: http.Waiter) void {
        self.watchers[self.next_watcher] = .{ .id = id, .waiter = waiter };
        self.next_watcher = (self.next_watcher + 1) % self.watchers.len;
    }

    /// Note `id` changed: its long polls run again (and answer) on the loop's next turn.
    /// Watchers whose requests were answered meanwhile are stale; waking them does nothing.
    fn changed(self: *State, id: u64) void {
        self.changes += 1;
        for (self.watchers) |*slot| {
            const w = slot.* orelse continue;
            if (w.id != id) continue;
            http.wake(w.waiter);
            slot.* = null;
        }
    }

    fn find(self: *State, id: u64) ?*Note {
        for (self.notes) |*slot| {
            if (slot.*) |*note| if (note.id == id) return note;
        }
        return null;
    }

    fn freeSlot(self: *State) ?*?Note {
        for (self.notes) |*slot| {
            if (slot.* == null) return slot;
        }
        return null;
    }
};

pub const Error = error{ InvalidId, InvalidQuery, NotFound, TooManyNotes, InvalidContentType };

/// Statuses for this module's errors; anything else stays a 500.
pub fn errorStatus(err: anyerror) u16 {
    return switch (err) {
        error.InvalidId, error.InvalidQuery, error.InvalidContentType => 400,
        error.NotFound => 404,
        error.TooManyNotes => 507,
        else => 500,
    };
}

/// The bodies of the router's own answers, in this API's JSON: no route has the path (404),
/// the path's routes take other methods (405; the router sets `Allow`), or the body is
/// larger than the service takes (413; no request then, and the connection closes after).
pub fn routerError(
    state: *State,
    req: ?*const http.Request,
    res: *http.Response,
    kind: http.RouterError,
) !void {
    _ = state;
    switch (kind) {
        .not_found => try res.json(.{ .@"error" = "no route", .path = req.?.path }),
        .method_not_allowed => try res.json(.{
            .@"error" = "method not allowed",
            .method = req.?.method,
            .path = req.?.path,
        }),
        .content_too_large => try res.json(.{ .@"error" = "body too large" }),
    }
}

fn idOf(req: *const http.Request) Error!u64 {
    const text = req.param("id") orelse return error.InvalidId;
    return std.fmt.parseInt(u64, text, 10) catch error.InvalidId;
}

fn queryNumber(req: *const http.Request, name: []const u8, default: u64) Error!u64 {
    const text = req.queryParam(name) orelse return default;
    return std.fmt.parseInt(u64, text, 10) catch error.InvalidQuery;
}

/// Runs after every request a route or the router answered, once its answer is written.
pub fn access(state: *State, entry: http.Access) void {
    const served = &state.served;
    served.requests += 1;
    if (entry.status >= 100 and entry.status < 600) served.by_class[entry.status / 100 - 1] += 1;
    if (entry.route.len == 0) served.unrouted += 1;
    served.body_bytes += entry.body_bytes;
    if (entry.duration_us >= served.slowest_us) {
        served.slowest_us = entry.duration_us;
        const n = @min(entry.route.len, served.slowest_route_buf.len);
        @memcpy(served.slowest_route_buf[0..n], entry.route[0..n]);
        served.slowest_route_len = n;
    }
}

/// This worker's counts so far (each worker keeps its own: a keep-alive connection asks one).
pub fn servedStats(state: *State, req: *http.Request, res: *http.Response) !void {
    _ = req;
    const served = &state.served;
    try res.json(.{
        .requests = served.requests,
        .by_class = served.by_class,
        .unrouted = served.unrouted,
        .body_bytes = served.body_bytes,
        .slowest_us = served.slowest_us,
        .slowest_route = served.slowest_route_buf[0..served.slowest_route_len],
    });
}

pub fn listNotes(state: *State, req: *http.Request, res: *http.Response) !void {
    _ = req;
    try res.header("Content-Type", "application/json");
    try res.write("{\"notes\":[");
    var first = true;
    for (state.notes) |slot| {
        const note = slot orelse continue;
        if (!first) try res.write(",");
        first = false;
        try res.print("{{\"id\":{d},\"bytes\":{d}}}", .{ note.id, note.text.len });
    }
    try res.write("]}\n");
}

pub fn getNote(state: *State, req: *http.Request, res: *http.Response) !void {
    const note = state.find(try idOf(req)) orelse return error.NotFound;
    try res.header("Content-Type", note.contentType());
    try res.write(note.text);
}

pub fn putNote(state: *State, req: *http.Request, res: *http.Response) !void {
    const id = try idOf(req);
    const content_type = req.header("Content-Type") orelse "application/json";
    if (content_type.len > max_content_type_bytes) return error.InvalidContentType;
    const text = try state.allocator.dupe(u8, req.body);
    errdefer state.allocator.free(text);
    var note: Note = .{
        .id = id,
        .version = state.changes + 1,
        .text = text,
        .content_type_buf = undefined,
        .content_type_len = @intCast(content_type.len),
    };
    @memcpy(note.content_type_buf[0..content_type.len], content_type);
    if (state.find(id)) |old| {
        state.allocator.free(old.text);
        old.* = note;
        res.status = 200;
    } else {
        const slot = state.freeSlot() orelse return error.TooManyNotes;
        slot.* = note;
        state.count += 1;
        res.status = 201;
        service.metrics.inc(.notes_created);
    }
    service.metrics.observe(.note_bytes, req.body.len);
    service.metrics.set(.notes_held, @intCast(state.count));
    state.changed(id);
    try res.header("Content-Type", "application/json");
    try res.print("{{\"id\":{d},\"bytes\":{d}}}\n", .{ id, req.body.len });
}

pub fn deleteNote(state: *State, req: *http.Request, res: *http.Response) !void {
    const id = try idOf(req);
    for (state.notes) |*slot| {
        const note = slot.* orelse continue;
        if (note.id != id) continue;
        state.allocator.free(note.text);
        slot.* = null;
        state.count -= 1;
        service.metrics.set(.notes_held, @intCast(state.count));
        state.changed(id);
        res.status = 204;
        return;
    }
    return error.NotFound;
}

pub fn watchNote(state: *State, req: *http.Request, res: *http.Response) !void {
    const id = try idOf(req);
    const after = try queryNumber(req, "after", 0);
    const wait_ms = @min(try queryNumber(req, "wait", default_wait_ms), max_wait_ms);
    const note = state.find(id);
    const version = if (note) |n| n.version else 0;
    if (version != after) {
        try res.header("Content-Type", "application/json");
        const bytes = if (note) |n| n.text.len else 0;
        const format = "{{\"id\":{d},\"version\":{d},\"bytes\":{d}}}\n";
        try res.print(format, .{ id, version, bytes });
        return;
    }
    if (req.waited_ms >= wait_ms or req.draining) {
        res.status = 204;
        return;
    }
    // Held until the note changes (`changed` wakes it) or the rest of the wait has passed.
    state.watch(id, res.later(@intCast(wait_ms - req.waited_ms)));
}

pub fn exportNotes(state: *State, req: *http.Request, res: *http.Response) !void {
    _ = state;
    _ = req;
    try res.header("Content-Type", "application/octet-stream");
    res.stream(State, nextExportPart, 0, null);
}

/// `cursor`: the slot of the note being sent (high 32 bits) and the offset in it (low 32).
/// Notes changed between calls show up as they are then: an export is not a snapshot.
fn nextExportPart(state: *State, cursor: *u64, body: *http.BodyWriter) anyerror!bool {
    var slot: usize = @intCast(cursor.* >> 32);
    var offset: usize = @intCast(cursor.* & 0xffff_ffff);
    while (slot < state.notes.len) : ({
        slot += 1;
        offset = 0;
    }) {
        const note = state.notes[slot] orelse continue;
        if (offset >= note.text.len) continue;
        const n = @min(body.free(), note.text.len - offset);
        if (n == 0) break;
        try body.write(note.text[offset..][0..n]);
        offset += n;
        if (offset < note.text.len) break;
    }
    cursor.* = (@as(u64, slot) << 32) | offset;
    return slot >= state.notes.len;
}

test "a note is stored, listed, read, replaced and deleted" {
    var state = try State.init(std.testing.allocator);
    defer state.deinit(std.testing.allocator);
    const put = try service.testRequest(&state, "PUT /notes/7 HTTP/1.1\r\nHost: t\r\n" ++
        "Content-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"text\":\"hi\"}");
    try std.testing.expectEqual(@as(u16, 201), put.status);
    const get = try service.testRequest(&state, "GET /notes/7 HTTP/1.1\r\nHost: t\r\n\r\n");
    try std.testing.expectEqual(@as(u16, 200), get.status);
    try std.testing.expectEqualStrings("{\"text\":\"hi\"}", get.body);
    try std.testing.expectEqualStrings("application/json", get.header("content-type").?);
    const list = try service.testRequest(&state, "GET /notes HTTP/1.1\r\nHost: t\r\n\r\n");
    try std.testing.expectEqualStrings("{\"notes\":[{\"id\":7,\"bytes\":13}]}\n", list.body);
    const replaced = try service.testRequest(&state, "PUT /notes/7 HTTP/1.1\r\nHost: t\r\n" ++
        "Content-Length: 2\r\n\r\n{}");
    try std.testing.expectEqual(@as(u16, 200), replaced.status);
    const del = try service.testRequest(&state, "DELETE /notes/7 HTTP/1.1\r\nHost: t\r\n\r\n");
    try std.testing.expectEqual(@as(u16, 204), del.status);
    const gone = try service.testRequest(&state, "GET /notes/7 HTTP/1.1\r\nHost: t\r\n\r\n");
    try std.testing.expectEqual(@as(u16, 404), gone.status);
}

test "an export larger than the write buffer is streamed in chunks" {
    var state = try State.init(std.testing.allocator);
    defer state.deinit(std.testing.allocator);
    // Three notes of 60000 bytes: the export (180000 bytes) exceeds the write buffer.
    const note: [60000]u8 = @splat('n');
    const put = "PUT /notes/{d} HTTP/1.1\r\nHost: t\r\nContent-Length: 60000\r\n\r\n";
    for (1..4) |id| {
        var buf: [128]u8 = undefined;
        const head = try compat.bufPrint(&buf, put, .{id});
        var request: [128 + note.len]u8 = undefined;
        @memcpy(request[0..head.len], head);
        @memcpy(request[head.len..][0..note.len], &note);
        const res = try service.testRequest(&state, request[0 .. head.len + note.len]);
        try std.testing.expectEqual(@as(u16, 201), res.status);
    }
    const got = try service.testRequest(&state, "GET /export HTTP/1.1\r\nHost: t\r\n\r\n");
    try std.testing.expectEqual(@as(u16, 200), got.status);
    try std.testing.expectEqualStrings("chunked", got.header("Transfer-Encoding").?);
    try std.testing.expectEqual(@as(usize, 3 * note.len), got.body.len);
}

test "a long poll answers at the change, or with 204 once its wait has passed" {
    var state = try State.init(std.testing.allocator);
    defer state.deinit(std.testing.allocator);
    // No note 3 yet (version 0): the poll is held until note 3 changes.
    var held = try service.testHold(&state, "GET /notes/3/changes?wait=5000 HTTP/1.1\r\n" ++
        "Host: t\r\n\r\n");
    try std.testing.expectEqual(@as(u32, 5000), held.delay_ms);
    try std.testing.expect(!held.woken());
    const put = try service.testRequest(&state, "PUT /notes/3 HTTP/1.1\r\nHost: t\r\n" ++
        "Content-Length: 2\r\n\r\nhi");
    try std.testing.expectEqual(@as(u16, 201), put.status);
    try std.testing.expect(held.woken());
    const changed = try held.run(&state);
    try std.testing.expectEqual(@as(u16, 200), changed.status);
    try std.testing.expectEqualStrings("{\"id\":3,\"version\":1,\"bytes\":2}\n", changed.body);
    // Nothing changes after version 1: the route holds the poll for the rest of its wait.
    var quiet = try service.testHold(&state, "GET /notes/3/changes?after=1&wait=100 " ++
        "HTTP/1.1\r\nHost: t\r\n\r\n");
    try std.testing.expectEqual(@as(u32, 100), quiet.delay_ms);
    const timed_out = try quiet.expire(&state);
    try std.testing.expectEqual(@as(u16, 204), timed_out.status);
    // testRequest lets the test clock run through every hold.
    const polled = try service.testRequest(&state, "GET /notes/3/changes?after=1&wait=250 " ++
        "HTTP/1.1\r\nHost: t\r\n\r\n");
    try std.testing.expectEqual(@as(u16, 204), polled.status);
    const bad = try service.testRequest(&state, "GET /notes/3/changes?wait=x HTTP/1.1\r\n" ++
        "Host: t\r\n\r\n");
    try std.testing.expectEqual(@as(u16, 400), bad.status);
}

test "the router answers 404, 405 with Allow and 413 in JSON, and HEAD from GET" {
    var state = try State.init(std.testing.allocator);
    defer state.deinit(std.testing.allocator);
    const missing = try service.testRequest(&state, "GET /nope HTTP/1.1\r\nHost: t\r\n\r\n");
    try std.testing.expectEqual(@as(u16, 404), missing.status);
    const no_route = "{\"error\":\"no route\",\"path\":\"/nope\"}\n";
    try std.testing.expectEqualStrings(no_route, missing.body);
    const wrong = try service.testRequest(&state, "POST /notes/1 HTTP/1.1\r\nHost: t\r\n" ++
        "Content-Length: 0\r\n\r\n");
    try std.testing.expectEqual(@as(u16, 405), wrong.status);
    try std.testing.expectEqualStrings("GET, HEAD, PUT, DELETE", wrong.header("Allow").?);
    try std.testing.expectEqualStrings("{\"error\":\"method not allowed\",\"method\":\"POST\"," ++
        "\"path\":\"/notes/1\"}\n", wrong.body);
    const large = try service.testRequest(&state, "PUT /notes/1 HTTP/1.1\r\nHost: t\r\n" ++
        "Content-Length: 9999999\r\n\r\n");
    try std.testing.expectEqual(@as(u16, 413), large.status);
    try std.testing.expectEqualStrings("{\"error\":\"body too large\"}\n", large.body);
    const head = try service.testRequest(&state, "HEAD /notes HTTP/1.1\r\nHost: t\r\n\r\n");
    try std.testing.expectEqual(@as(u16, 200), head.status);
    try std.testing.expectEqualStrings("", head.body);
    try std.testing.expectEqualStrings("13", head.header("Content-Length").?);
    const bad = try service.testRequest(&state, "GET /notes/x HTTP/1.1\r\nHost: t\r\n\r\n");
    try std.testing.expectEqual(@as(u16, 400), bad.status);
}
