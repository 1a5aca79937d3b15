//! What every handler implements and what it is given. A handler is a set of plain
//! functions over byte slices: it never touches a socket, never allocates, and never
//! blocks, which keeps the worker's loop in charge of every system call.
const config = @import("../config.zig");
const output_pool = @import("../worker/output_pool.zig");

/// Who is serving, for handlers that report it, and whether the process is stopping.
pub const Context = struct {
    listener: *const config.Listener,
    /// The listener's position in `config.listeners`.
    listener_index: u16,
    worker_index: u16,
    pid: i32,
    generation: u32,
    /// Set once the process is stopping: keep-alive protocols should close after the
    /// current response.
    draining: bool,
    /// The connection's socket, for the one question a handler may ask the kernel about it
    /// (the peer's address, asked only when an application module wants it); -1 for none.
    fd: i32 = -1,
    /// The connection's slot in its worker's table and the slot's generation when it was
    /// opened: together they name this connection, and no later one (see `Waiter`).
    slot: u32 = 0,
    connection_generation: u32 = 0,
};

/// Why an upstream call has no reply (see app_upstream.zig, where modules meet them).
pub const UpstreamError = error{
    /// No connection to any server of the upstream could be made, or it closed.
    UpstreamDown,
    /// No reply within the upstream's `responseTimeoutMs`.
    UpstreamTimeout,
    /// The reply did not frame, or was larger than `maxReplyBytes`.
    UpstreamBadReply,
    /// Every connection's pipeline and the queue are full.
    UpstreamBusy,
    /// The request is larger than `maxReplyBytes`.
    UpstreamRequestTooLarge,
    /// A stream connection's call is still pending (one call per connection at a time).
    UpstreamCallPending,
};

/// What a stream or datagram module's `upstreamReply` is given: the reply's bytes (valid
/// until the callback returns), or why there is none.
pub const UpstreamReply = UpstreamError![]const u8;

/// A stream connection's call that is over, for its module (see `Module.fire`).
pub const StreamReply = struct {
    context: u64,
    reply: UpstreamReply,
};

/// A connection waits for its call a little past the call's deadline, so that the call's
/// own failure (a timeout) comes first.
pub const upstream_hold_grace_ms = 1000;

/// Names one connection of this worker for a later call (an HTTP route's `res.later`):
/// a connection closed since, and its slot's next connection, do not answer to it.
pub const Waiter = struct {
    slot: u32,
    generation: u32,
};

/// The bytes a handler wants sent. It is empty whenever a handler is called, and holds
/// `config.write_buffer_bytes`. `free` and `append` are about that buffer only; `room` and
/// `appendAll` also use the connection's `Spill`, when it has one (stream modules do).
pub const Output = struct {
    buf: []u8,
    len: usize = 0,
    spill: ?Spill = null,

    pub fn free(self: *const Output) usize {
        return self.buf.len - self.len;
    }

    /// Appends all of `bytes`, or nothing when they do not fit.
    pub fn append(self: *Output, bytes: []const u8) bool {
        if (bytes.len > self.free()) return false;
        @memcpy(self.buf[self.len..][0..bytes.len], bytes);
        self.len += bytes.len;
        return true;
    }

    /// Bytes one `appendAll` can surely take now: the buffer's free space, or what the
    /// worker's pool has left once the buffer's bytes moved there (nothing past the limit).
    pub fn room(self: *const Output) usize {
        const spill = self.spill orelse return self.free();
        return @max(self.free(), spill.room() -| self.len);
    }

    /// Appends all of `bytes`, or nothing: into the buffer, or behind it into the spill
    /// (the buffer's bytes go first, so that the order is kept).
    pub fn appendAll(self: *Output, bytes: []const u8) bool {
        if (self.append(bytes)) return true;
        if (!self.emptyBuffer()) return false;
        if (self.append(bytes)) return true;
        const spill = self.spill orelse return false;
        return spill.take(bytes);
    }

    /// Moves what the buffer holds into the spill, so that the whole buffer is free; false
    /// when it cannot (no spill, no room).
    pub fn emptyBuffer(self: *Output) bool {
        if (self.len == 0) return true;
        const spill = self.spill orelse return false;
        if (!spill.take(self.buf[0..self.len])) return false;
        self.len = 0;
        return true;
    }

    /// Whether output waits in the spill besides the buffer's.
    pub fn spilled(self: *const Output) bool {
        const spill = self.spill orelse return false;
        return !spill.queue.isEmpty();
    }
};

/// Where a connection's output goes once its buffer is full: its queue of chunks in the
/// worker's pool, up to its limit (`outputLimitBytes`). Bytes that would take it past the
/// limit are refused and mark it: the worker closes such a connection.
pub const Spill = struct {
    queue: *output_pool.Queue,
    pool: *output_pool.Pool,
    limit: u64,

    pub fn room(self: Spill) usize {
        if (self.queue.over_limit) return 0;
        return self.pool.room(self.queue);
    }

    pub fn take(self: Spill, bytes: []const u8) bool {
        if (self.queue.over_limit) return false;
        if (self.queue.len + bytes.len > self.limit) {
            self.queue.over_limit = true;
            return false;
        }
        return self.queue.append(self.pool, bytes);
    }
};

/// Where a connection stands once its output is sent: it decides the connection's deadline.
pub const Phase = enum {
    /// Nothing in flight (a stream between messages, a keep-alive connection between
    /// requests): the idle timeout applies, and the connection may be evicted at the limit.
    idle,
    /// Part of a request head has arrived: the head must be complete by its deadline.
    head,
    /// A request body is being read: each byte must follow the last within the body timeout.
    body,
    /// A request waits for its handler (an HTTP route's `res.later`): the handler's timer is
    /// its only deadline, its input is not read, and it is never evicted as idle.
    waiting,
};

/// What a handler asks of its connection's application timer (stream modules arm one).
pub const TimerChange = union(enum) {
    keep,
    cancel,
    /// Fire this many milliseconds from now, replacing the timer the connection had.
    after_ms: u32,
};

/// Whether the connection's socket is read (a module's own back-pressure).
pub const ReadingChange = enum { keep, pause, unpause };

/// What a handler did with the input it was given.
pub const Progress = struct {
    /// Input bytes used up; the rest is offered again with more input.
    consumed: usize,
    /// Requests answered, for the worker's counters.
    requests: u32 = 0,
    /// Close the connection once the output is sent.
    close: bool = false,
    /// With `close`: the client may still be sending (a stream module that closes on its own
    /// cannot say it is done), so the close lingers even when the last read emptied the
    /// socket: a close while it sends would reset it and destroy the answer unread.
    linger: bool = false,
    phase: Phase = .idle,
    /// A request refused with this status (400, 413, …), for the worker's counters; 0: none.
    rejected: u16 = 0,
    /// Call the handler again once the output is sent, even without new input (a reply
    /// larger than the write buffer goes out in parts; reading waits meanwhile).
    want_writable: bool = false,
    /// With `want_writable`: the output is a reply in parts, each sent before the next is
    /// made, so no further input is read or handled meanwhile. Without it, input is read on
    /// while output waits for the client (into the worker's output pool; see
    /// `Output.appendAll`).
    paced: bool = false,
    timer: TimerChange = .keep,
    /// Paused, the connection is not read (its client's sends fill the kernel's buffers) and
    /// its buffered input is not offered, until a later call unpauses it.
    reading: ReadingChange = .keep,
};
