//! Output that waits beyond a connection's write buffer: a per-worker pool of fixed chunks
//! (`outputPoolBytes`, reserved at start, backed once touched) and, per connection, a queue
//! of chunks in the order its bytes are to be sent (at most `outputLimitBytes`).
//!
//! A client that writes a whole pipeline before it reads (redis-py's pipeline, say) is read
//! on while its answers wait here: without it, the worker stops reading once the write buffer
//! is full, the client never gets to read, and both wait for each other until the write
//! timeout. Redis keeps such output in its client's reply list under
//! `client-output-buffer-limit`; this is the same with a fixed memory bound per worker.
const std = @import("std");
const compat = @import("../compat.zig");
const assert = std.debug.assert;

/// Bytes of one chunk of the pool.
pub const chunk_bytes: u32 = 64 * 1024;

const none = std.math.maxInt(u32);

pub const Pool = struct {
    memory: []u8,
    /// Per chunk: the next chunk in its queue or in the free list.
    next: []u32,
    free_head: u32,
    free_len: u32,

    /// A pool of `pool_bytes` (rounded down to whole chunks); 0 chunks: nothing waits.
    pub fn init(allocator: std.mem.Allocator, pool_bytes: u64) !Pool {
        const chunks: u32 = @intCast(@min(pool_bytes / chunk_bytes, none - 1));
        const next = try allocator.alloc(u32, chunks);
        errdefer allocator.free(next);
        for (next, 0..) |*n, i| n.* = if (i + 1 < chunks) @intCast(i + 1) else none;
        const memory: []u8 = if (chunks == 0)
            &.{}
        else
            try compat.mapMemory(@as(usize, chunks) * chunk_bytes);
        return .{
            .memory = memory,
            .next = next,
            .free_head = if (chunks == 0) none else 0,
            .free_len = chunks,
        };
    }

    pub fn deinit(self: *Pool, allocator: std.mem.Allocator) void {
        if (self.memory.len > 0) _ = std.os.linux.munmap(self.memory.ptr, self.memory.len);
        allocator.free(self.next);
        self.* = undefined;
    }

    /// Bytes `queue` can take: the room left in its last chunk and the free chunks.
    pub fn room(self: *const Pool, queue: *const Queue) usize {
        const tail_room = if (queue.tail == none) 0 else chunk_bytes - queue.tail_end;
        return tail_room + @as(usize, self.free_len) * chunk_bytes;
    }

    pub fn capacity(self: *const Pool) u32 {
        return @intCast(self.next.len);
    }

    fn chunk(self: *const Pool, index: u32) []u8 {
        assert(index < self.next.len);
        return self.memory[@as(usize, index) * chunk_bytes ..][0..chunk_bytes];
    }

    fn take(self: *Pool) u32 {
        assert(self.free_len > 0);
        const index = self.free_head;
        self.free_head = self.next[index];
        self.next[index] = none;
        self.free_len -= 1;
        return index;
    }

    fn give(self: *Pool, index: u32) void {
        assert(self.free_len < self.next.len);
        self.next[index] = self.free_head;
        self.free_head = index;
        self.free_len += 1;
    }
};

/// One connection's waiting output: chunks of the pool, sent front first.
pub const Queue = struct {
    head: u32 = none,
    tail: u32 = none,
    /// Bytes of the head chunk already sent.
    head_start: u32 = 0,
    /// Bytes written into the tail chunk.
    tail_end: u32 = 0,
    /// Bytes waiting, over all its chunks.
    len: u64 = 0,
    /// More was offered than the connection's limit allows: it is to be closed.
    over_limit: bool = false,

    pub fn isEmpty(self: *const Queue) bool {
        return self.len == 0;
    }

    /// Appends all of `bytes`, or nothing when the pool lacks the chunks.
    pub fn append(self: *Queue, pool: *Pool, bytes: []const u8) bool {
        if (bytes.len == 0) return true;
        const room: usize = if (self.tail == none) 0 else chunk_bytes - self.tail_end;
        const needed = if (bytes.len <= room) 0 else (bytes.len - room - 1) / chunk_bytes + 1;
        if (needed > pool.free_len) return false;
        var rest = bytes;
        // Bounded: each turn fills the tail chunk, or ends.
        while (rest.len > 0) {
            if (self.tail == none or self.tail_end == chunk_bytes) {
                const index = pool.take();
                if (self.tail == none) {
                    self.head = index;
                    self.head_start = 0;
                } else {
                    pool.next[self.tail] = index;
                }
                self.tail = index;
                self.tail_end = 0;
            }
            const n = @min(rest.len, chunk_bytes - self.tail_end);
            @memcpy(pool.chunk(self.tail)[self.tail_end..][0..n], rest[0..n]);
            self.tail_end += @intCast(n);
            self.len += n;
            rest = rest[n..];
        }
        return true;
    }

    /// The next bytes to send (all of the head chunk that waits); empty when none wait.
    pub fn front(self: *const Queue, pool: *const Pool) []const u8 {
        if (self.head == none) return &.{};
        const end = if (self.head == self.tail) self.tail_end else chunk_bytes;
        return pool.chunk(self.head)[self.head_start..end];
    }

    /// `n` bytes of `front` went out: chunks sent whole return to the pool.
    pub fn advance(self: *Queue, pool: *Pool, n: usize) void {
        assert(n <= self.front(pool).len);
        self.head_start += @intCast(n);
        self.len -= n;
        const end = if (self.head == self.tail) self.tail_end else chunk_bytes;
        if (self.head_start < end) return;
        const sent = self.head;
        if (self.head == self.tail) {
            assert(self.len == 0);
            self.* = .{ .over_limit = self.over_limit };
        } else {
            self.head = pool.next[sent];
            self.head_start = 0;
        }
        pool.give(sent);
    }

    /// Drops what waits (the connection closes).
    pub fn clear(self: *Queue, pool: *Pool) void {
        var index = self.head;
        // Bounded by the pool: each chunk is given back once.
        var budget: usize = pool.next.len + 1;
        while (index != none and budget > 0) : (budget -= 1) {
            const next = pool.next[index];
            pool.give(index);
            if (index == self.tail) break;
            index = next;
        }
        self.* = .{};
    }
};

test "a queue spans chunks, sends in order, and gives every chunk back" {
    var pool = try Pool.init(std.testing.allocator, 3 * chunk_bytes + 100);
    defer pool.deinit(std.testing.allocator);
    try std.testing.expectEqual(@as(u32, 3), pool.capacity());
    var a: Queue = .{};
    var b: Queue = .{};
    var bytes: [chunk_bytes + 10]u8 = undefined;
    for (&bytes, 0..) |*x, i| x.* = @truncate(i *% 7);
    try std.testing.expect(a.append(&pool, &bytes));
    try std.testing.expectEqual(@as(u32, 1), pool.free_len);
    try std.testing.expect(a.append(&pool, "tail"));
    // Two chunks more than the pool has: nothing is taken.
    try std.testing.expect(!b.append(&pool, &bytes));
    try std.testing.expect(b.isEmpty());
    try std.testing.expect(b.append(&pool, "other"));
    try std.testing.expectEqual(@as(u32, 0), pool.free_len);
    const Sent = struct {
        var out: [chunk_bytes + 14]u8 = undefined;
    };
    var sent: usize = 0;
    var turns: usize = 0;
    while (!a.isEmpty() and turns < 100) : (turns += 1) {
        const f = a.front(&pool);
        const n = @min(f.len, 1000);
        @memcpy(Sent.out[sent..][0..n], f[0..n]);
        sent += n;
        a.advance(&pool, n);
    }
    try std.testing.expect(a.isEmpty());
    try std.testing.expectEqual(Sent.out.len, sent);
    try std.testing.expectEqualSlices(u8, &bytes, Sent.out[0..bytes.len]);
    try std.testing.expectEqualStrings("tail", Sent.out[bytes.len..]);
    try std.testing.expectEqual(@as(u32, 2), pool.free_len);
    b.clear(&pool);
    try std.testing.expectEqual(@as(u32, 3), pool.free_len);
}

test "a pool of no chunks takes nothing" {
    var pool = try Pool.init(std.testing.allocator, chunk_bytes - 1);
    defer pool.deinit(std.testing.allocator);
    var q: Queue = .{};
    try std.testing.expect(!q.append(&pool, "x"));
    try std.testing.expect(q.append(&pool, ""));
}
