//! Zero-copy forwarding for `zeroCopy` proxy listeners: bytes go from one socket into a pipe
//! and from the pipe to the other socket with `splice(2)`, staying in the kernel (HAProxy's
//! `option splice-auto`). Each pair holds a pipe per direction while it lives.
const std = @import("std");
const compat = @import("../../compat.zig");
const sys = @import("../../net/sys.zig");
const linux = std.os.linux;

/// What a pipe holds before a splice into it would wait: Linux's default pipe size (16 pages).
/// Fewer bytes fit when the pages hold the fragments of small segments; the pump then meets
/// EAGAIN with bytes in the pipe and waits for them to leave (see `handlers/proxy.zig`).
pub const pipe_bytes: u32 = 65536;

const move: usize = 1; // SPLICE_F_MOVE
const nonblock: usize = 2; // SPLICE_F_NONBLOCK

/// A pipe: its read end, then its write end.
pub const Pipe = [2]sys.Fd;

/// Two non-blocking pipes, one per direction; null when the process is out of descriptors
/// (the pair then copies through its buffers).
pub fn open() ?[2]Pipe {
    var pipes: [2]Pipe = undefined;
    for (&pipes, 0..) |*p, i| {
        const rc = linux.pipe2(p, .{ .NONBLOCK = true, .CLOEXEC = true });
        if (compat.errno(rc) == .SUCCESS) continue;
        if (i == 1) close(pipes[0]);
        return null;
    }
    return pipes;
}

pub fn close(pipe: Pipe) void {
    sys.close(pipe[0]);
    sys.close(pipe[1]);
}

/// Moves up to `len` bytes from `from` to `to` (a socket into a pipe's write end, or a pipe's
/// read end into a socket); 0 is the end of the input.
pub fn moveBytes(from: sys.Fd, to: sys.Fd, len: u32) sys.Error!usize {
    const rc = linux.syscall6(
        .splice,
        @as(usize, @bitCast(@as(isize, from))),
        0,
        @as(usize, @bitCast(@as(isize, to))),
        0,
        len,
        move | nonblock,
    );
    return switch (compat.errno(rc)) {
        .SUCCESS => rc,
        .AGAIN => error.WouldBlock,
        .INTR => error.Interrupted,
        .PIPE => error.BrokenPipe,
        .CONNRESET => error.ConnectionReset,
        else => error.Unexpected,
    };
}

test "bytes move from a socket through a pipe to another socket, and the end is seen" {
    var pair: [2]i32 = undefined;
    var other: [2]i32 = undefined;
    const flags = linux.SOCK.STREAM | linux.SOCK.NONBLOCK;
    const made = compat.errno(linux.socketpair(linux.AF.UNIX, flags, 0, &pair));
    try std.testing.expectEqual(.SUCCESS, made);
    const made_other = compat.errno(linux.socketpair(linux.AF.UNIX, flags, 0, &other));
    try std.testing.expectEqual(.SUCCESS, made_other);
    defer for ([_]i32{ pair[0], pair[1], other[0], other[1] }) |fd| sys.close(fd);
    const pipes = open().?;
    defer for (pipes) |p| close(p);
    try std.testing.expectError(error.WouldBlock, moveBytes(pair[1], pipes[0][1], pipe_bytes));
    try sys.writeAll(pair[0], "through the kernel");
    try std.testing.expectEqual(@as(usize, 18), try moveBytes(pair[1], pipes[0][1], pipe_bytes));
    try std.testing.expectEqual(@as(usize, 18), try moveBytes(pipes[0][0], other[0], 18));
    var got: [32]u8 = undefined;
    const n = try sys.read(other[1], &got);
    try std.testing.expectEqualStrings("through the kernel", got[0..n]);
    sys.shutdownWrite(pair[0]);
    try std.testing.expectEqual(@as(usize, 0), try moveBytes(pair[1], pipes[0][1], pipe_bytes));
}
