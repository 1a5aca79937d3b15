//! The worker's side of its link to the supervisor: heartbeats on the report pipe, and the
//! commands that arrive on the control pipe.
//!
//! Heartbeat: the line "beat" every `heartbeatIntervalMs(watchdog_ms)`, written from the
//! worker's loop, so that a loop that stops iterating (an endless handler, SIGSTOP, a
//! blocking call) stops beating and the supervisor notices.
//!
//! Control pipe (supervisor → worker), one command per line:
//!   "adopt SLOT"    start accepting on slot SLOT's sockets as if they were our own: that
//!                   slot's worker is dead, crash-looping or hung, and the kernel keeps
//!                   putting connections on its sockets;
//!   "release SLOT"  stop watching them: the slot's own worker is back and ready. What
//!                   was accepted stays served here; what is queued goes to the owner.
//!   end of file     the supervisor closed its end (or died): drain and stop.
//! A draining worker ignores "adopt": it is leaving, and its sockets are closing.
//!
//! Why adoption rather than taking a dead slot's sockets out of the reuseport group: a
//! listening socket cannot leave its group without being closed, and closing the last
//! descriptor of a group member resets every connection queued on it. Adoption keeps the
//! socket, serves its queue, and needs no kernel support beyond epoll. Steering new
//! connections away with SO_ATTACH_REUSEPORT_CBPF would leave what is already queued on
//! the dark socket unserved, and needs a new program at every change of which slots are
//! dark, indexed by the group's join order, which closing and reopening sockets reshuffles.
const std = @import("std");
const cli = @import("../cli.zig");
const config = @import("../config.zig");
const compat = @import("../compat.zig");
const log = @import("../log.zig");
const sys = @import("../net/sys.zig");
const linux = std.os.linux;

const listener_count = config.listeners.len;

/// How often a worker reports that its loop turns: a quarter of the watchdog, at most
/// 100 ms so that a hung worker's slot is adopted well within a second, at least 10 ms so
/// that beats stay cheap. 0 (no heartbeat) when the watchdog is off.
pub fn heartbeatIntervalMs(watchdog_ms: u32) u32 {
    if (watchdog_ms == 0) return 0;
    return std.math.clamp(watchdog_ms / 4, 10, 100);
}

/// How long a worker may be silent before the supervisor has another worker adopt its
/// slot: three missed beats, and at least 250 ms so that a machine busy for a moment
/// causes no churn (adoption is harmless anyway: it ends at the next beat). Never later
/// than the watchdog itself.
pub fn adoptAfterMs(watchdog_ms: u32) u32 {
    const interval = heartbeatIntervalMs(watchdog_ms);
    return @min(watchdog_ms, @max(3 * interval, 250));
}

/// One other slot whose sockets this worker holds, and whether it currently serves them.
const RingEntry = struct {
    slot: u16,
    /// Index of the slot's first socket in the worker's socket list.
    first_socket: u16,
    adopted: bool = false,
};

/// What the worker must do after the control pipe was read.
pub const Outcome = enum { none, stop };

pub const Link = struct {
    control_fd: sys.Fd,
    report_fd: sys.Fd,
    interval_ms: u32,
    next_beat_ms: u64,
    ring: [cli.max_ring]RingEntry = undefined,
    ring_len: u8 = 0,
    buf: [64]u8 = undefined,
    len: usize = 0,

    /// `role.ring` slots are expected after the own slot's sockets in the worker's socket
    /// list, `listener_count` sockets per slot, in `config.listeners` order.
    pub fn init(role: *const cli.WorkerRole, watchdog_ms: u32) Link {
        var link: Link = .{
            .control_fd = role.control_fd,
            .report_fd = role.report_fd,
            .interval_ms = heartbeatIntervalMs(watchdog_ms),
            .next_beat_ms = 0,
        };
        for (role.ring[0..role.ring_len], 0..) |ring, i| {
            link.ring[i] = .{
                .slot = ring.slot,
                .first_socket = @intCast((i + 1) * listener_count),
            };
        }
        link.ring_len = role.ring_len;
        return link;
    }

    /// Sockets the worker watches from the start: its own slot's, not the ring's.
    pub fn watchedAtStart(socket_index: usize) bool {
        return socket_index < listener_count;
    }

    /// Whether the worker currently serves the socket at `socket_index`.
    pub fn watches(self: *const Link, socket_index: usize) bool {
        if (watchedAtStart(socket_index)) return true;
        for (self.ring[0..self.ring_len]) |entry| {
            if (socket_index >= entry.first_socket and
                socket_index < entry.first_socket + listener_count) return entry.adopted;
        }
        return false;
    }

    /// Call site "on tick": once per loop iteration. Sends a heartbeat when one is due.
    pub fn onTick(self: *Link) void {
        if (self.interval_ms == 0) return;
        const now = sys.monotonicMs();
        if (now < self.next_beat_ms) return;
        self.next_beat_ms = now + self.interval_ms;
        // A full pipe means the supervisor is not reading: a lost beat is then harmless.
        _ = linux.write(self.report_fd, "beat\n", 5);
    }

    /// Call site "wake-up time for the next heartbeat": `timeout_ms` (as for epoll_wait,
    /// -1 for none) shortened so that the loop wakes for the next beat.
    pub fn limitWait(self: *const Link, timeout_ms: i32) i32 {
        if (self.interval_ms == 0) return timeout_ms;
        const now = sys.monotonicMs();
        const until: i32 = if (self.next_beat_ms <= now)
            0
        else
            @intCast(@min(self.next_beat_ms - now, std.math.maxInt(i32)));
        if (timeout_ms < 0) return until;
        return @min(timeout_ms, until);
    }

    /// Call site "control pipe readable → command": reads the commands waiting on the
    /// control pipe and carries them out on `epfd`, where a listening socket's token is
    /// `listener_token(socket index)`. `accepting` is false once the worker drains;
    /// `paused` when it stopped watching listeners because its connection slots are full.
    pub fn onControlReadable(
        self: *Link,
        epfd: sys.Fd,
        sockets: anytype,
        comptime listener_token: fn (u32) u64,
        accepting: bool,
        paused: bool,
    ) Outcome {
        // Each read either fills the buffer, which lines then empty, or ends the loop.
        var reads: usize = 0;
        while (reads < 64) : (reads += 1) {
            const n = sys.read(self.control_fd, self.buf[self.len..]) catch |err| switch (err) {
                error.WouldBlock => return .none,
                error.Interrupted => continue,
                else => 0,
            };
            if (n == 0) {
                // Hang-up: the supervisor asks for a graceful stop, or is gone.
                _ = linux.epoll_ctl(epfd, linux.EPOLL.CTL_DEL, self.control_fd, null);
                return .stop;
            }
            self.len += n;
            while (compat.findScalar(u8, self.buf[0..self.len], '\n')) |end| {
                self.apply(self.buf[0..end], epfd, sockets, listener_token, accepting, paused);
                const rest = self.len - end - 1;
                compat.copyLeft(self.buf[0..rest], self.buf[end + 1 .. self.len]);
                self.len = rest;
            }
            if (self.len == self.buf.len) self.len = 0; // a line too long: drop it
        }
        return .none;
    }

    fn apply(
        self: *Link,
        line: []const u8,
        epfd: sys.Fd,
        sockets: anytype,
        comptime listener_token: fn (u32) u64,
        accepting: bool,
        paused: bool,
    ) void {
        const command = Command.parse(line) orelse {
            log.warn("unknown command from the supervisor: \"{s}\"", .{line});
            return;
        };
        const slot = switch (command) {
            .adopt, .release => |slot| slot,
        };
        const entry = for (self.ring[0..self.ring_len]) |*entry| {
            if (entry.slot == slot) break entry;
        } else {
            log.warn("asked to {s} slot {d}, whose sockets this worker does not hold", .{
                @tagName(command), slot,
            });
            return;
        };
        switch (command) {
            .adopt => {
                if (!accepting or entry.adopted) return;
                entry.adopted = true;
                // Level-triggered like the worker's own listeners; paused (no events) while
                // every connection slot is busy, which the worker's resume then undoes.
                const events: u32 = if (paused) 0 else linux.EPOLL.IN;
                for (0..listener_count) |i| {
                    const index: u32 = entry.first_socket + @as(u32, @intCast(i));
                    const fd = sockets[index].fd;
                    const data = listener_token(index);
                    sys.epollCtl(epfd, linux.EPOLL.CTL_ADD, fd, events, data) catch |err| {
                        log.warn("cannot adopt slot {d}: {s}", .{ slot, @errorName(err) });
                    };
                }
                log.info("adopted slot {d}", .{slot});
            },
            .release => {
                if (!entry.adopted) return;
                entry.adopted = false;
                // After a drain began the sockets are closed already; nothing to undo.
                if (!accepting) return;
                for (0..listener_count) |i| {
                    const fd = sockets[entry.first_socket + i].fd;
                    _ = linux.epoll_ctl(epfd, linux.EPOLL.CTL_DEL, fd, null);
                }
                log.info("released slot {d}", .{slot});
            },
        }
    }
};

/// A line on the control pipe.
pub const Command = union(enum) {
    adopt: u16,
    release: u16,

    pub fn parse(line: []const u8) ?Command {
        if (std.mem.startsWith(u8, line, "adopt ")) {
            return .{ .adopt = std.fmt.parseInt(u16, line["adopt ".len..], 10) catch return null };
        }
        if (std.mem.startsWith(u8, line, "release ")) {
            const slot = std.fmt.parseInt(u16, line["release ".len..], 10) catch return null;
            return .{ .release = slot };
        }
        return null;
    }

    /// The line (with its newline) that carries this command.
    pub fn format(self: Command, buf: []u8) []const u8 {
        return switch (self) {
            .adopt => |slot| compat.bufPrint(buf, "adopt {d}\n", .{slot}),
            .release => |slot| compat.bufPrint(buf, "release {d}\n", .{slot}),
        } catch unreachable;
    }
};

test "control commands round-trip" {
    var buf: [32]u8 = undefined;
    const line = (Command{ .adopt = 12 }).format(&buf);
    try std.testing.expectEqualStrings("adopt 12\n", line);
    try std.testing.expectEqual(@as(u16, 12), Command.parse(line[0 .. line.len - 1]).?.adopt);
    try std.testing.expectEqual(@as(u16, 3), Command.parse("release 3").?.release);
    try std.testing.expect(Command.parse("adopt x") == null);
    try std.testing.expect(Command.parse("bogus") == null);
}

test "heartbeat and adoption thresholds" {
    try std.testing.expectEqual(@as(u32, 0), heartbeatIntervalMs(0));
    try std.testing.expectEqual(@as(u32, 100), heartbeatIntervalMs(2000));
    try std.testing.expectEqual(@as(u32, 10), heartbeatIntervalMs(20));
    try std.testing.expectEqual(@as(u32, 300), adoptAfterMs(2000));
    try std.testing.expectEqual(@as(u32, 100), adoptAfterMs(100));
}

test "adopt and release a slot through the control pipe; a draining worker adopts nothing" {
    const Fd = struct { fd: sys.Fd };
    var control: [2]sys.Fd = undefined;
    try std.testing.expect(compat.errno(linux.pipe2(&control, .{ .NONBLOCK = true })) == .SUCCESS);
    defer sys.close(control[0]);
    // Pipes stand in for listening sockets: epoll watches either the same way.
    var sockets: [2 * listener_count]Fd = undefined;
    var ends: [2 * listener_count]sys.Fd = undefined;
    for (&sockets, &ends) |*s, *end| {
        var p: [2]sys.Fd = undefined;
        try std.testing.expect(compat.errno(linux.pipe2(&p, .{ .NONBLOCK = true })) == .SUCCESS);
        s.* = .{ .fd = p[0] };
        end.* = p[1];
    }
    defer for (sockets, ends) |s, end| {
        sys.close(s.fd);
        sys.close(end);
    };
    const epfd = try sys.epollCreate();
    defer sys.close(epfd);
    var role: cli.WorkerRole = .{
        .index = 0,
        .generation = 1,
        .control_fd = control[0],
        .report_fd = -1,
        .fingerprint = undefined,
    };
    role.ring[0] = .{ .slot = 5, .fds = undefined };
    role.ring_len = 1;
    var link = Link.init(&role, 0);
    const first = listener_count;
    try std.testing.expect(Link.watchedAtStart(0) and !link.watches(first));

    const Run = struct {
        fn token(index: u32) u64 {
            return index;
        }
        fn read(l: *Link, e: sys.Fd, s: []const Fd, accepting: bool) Outcome {
            return l.onControlReadable(e, s, token, accepting, false);
        }
    };
    try sys.writeAll(control[1], "adopt 5\n");
    try std.testing.expectEqual(Outcome.none, Run.read(&link, epfd, &sockets, true));
    try std.testing.expect(link.watches(first));
    // Watched now: adding it again fails.
    const again = linux.epoll_ctl(epfd, linux.EPOLL.CTL_ADD, sockets[first].fd, null);
    try std.testing.expect(compat.errno(again) != .SUCCESS);

    try sys.writeAll(control[1], "release 5\nadopt 9\n");
    try std.testing.expectEqual(Outcome.none, Run.read(&link, epfd, &sockets, true));
    try std.testing.expect(!link.watches(first));

    try sys.writeAll(control[1], "adopt 5\n");
    try std.testing.expectEqual(Outcome.none, Run.read(&link, epfd, &sockets, false));
    try std.testing.expect(!link.watches(first));

    sys.close(control[1]);
    try std.testing.expectEqual(Outcome.stop, Run.read(&link, epfd, &sockets, true));
}
