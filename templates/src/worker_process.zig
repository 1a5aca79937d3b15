//! A worker as a process of its own: how the supervisor starts one, and the two pipes
//! between them.
//!
//! A worker is this same binary executed again with the internal flag `--worker`
//! (see `cli.WorkerRole`). It inherits exactly its slot's listening sockets and its ends of
//! two pipes; every other descriptor is close-on-exec.
//!   control (supervisor → worker): the supervisor closes its end to ask for a graceful
//!     stop; the worker also sees the hang-up when the supervisor dies.
//!   report (worker → supervisor): the line "ready" once the worker's loop is accepting,
//!     and "stats C R D" (connections, requests, datagrams) as it exits.
const std = @import("std");
const config = @import("config.zig");
const compat = @import("compat.zig");
const cli = @import("cli.zig");
const worker_mod = @import("worker.zig");
const stats_mod = @import("stats.zig");
const log = @import("log.zig");
const sys = @import("sys.zig");
const linux = std.os.linux;

const listener_count = config.listeners.len;

/// prctl(2) option; its value is part of the Linux ABI on every architecture.
const PR_SET_PDEATHSIG: i32 = 1;

pub const StartOptions = struct {
    exe_path: [*:0]const u8,
    envp: [*:null]const ?[*:0]const u8,
    /// The slot's listening sockets, one per listener, in `config.listeners` order.
    sockets: []const sys.Fd,
    index: u16,
    generation: u32,
    /// Passed on as flags, so that the supervisor's overrides reach every worker.
    limits: cli.Limits,
};

/// A started worker and the supervisor's ends of its pipes.
pub const Started = struct {
    pid: linux.pid_t,
    control_fd: sys.Fd,
    report_fd: sys.Fd,
};

/// Forks and executes a worker.
pub fn start(options: StartOptions) !Started {
    std.debug.assert(options.sockets.len == listener_count);
    var control: [2]sys.Fd = undefined;
    var report: [2]sys.Fd = undefined;
    try pipe(&control);
    errdefer closePair(control);
    try pipe(&report);
    errdefer closePair(report);

    // Everything the child needs is prepared before fork: after it, the child only makes
    // system calls.
    var role_buf: [64 + 12 * listener_count:0]u8 = undefined;
    const role = try formatRole(&role_buf, options, control[0], report[1]);
    var limit_bufs: [cli.limit_flags.len][24:0]u8 = undefined;
    const argc = 3 + 2 * cli.limit_flags.len;
    var argv: [argc:null]?[*:0]const u8 = @splat(null);
    argv[0] = options.exe_path;
    argv[1] = "--worker";
    argv[2] = role;
    inline for (cli.limit_flags, 0..) |limit, i| {
        const value = @field(options.limits, limit.field);
        const text = try compat.bufPrint(&limit_bufs[i], "{d}", .{value});
        limit_bufs[i][text.len] = 0;
        argv[3 + 2 * i] = limit.flag.ptr;
        argv[4 + 2 * i] = &limit_bufs[i];
    }
    const parent = linux.getpid();

    const rc = linux.fork();
    if (compat.errno(rc) != .SUCCESS) return error.ForkFailed;
    if (rc == 0) becomeWorker(options, parent, control[0], report[1], &argv);

    sys.close(control[0]);
    sys.close(report[1]);
    return .{ .pid = @intCast(rc), .control_fd = control[1], .report_fd = report[0] };
}

/// The value of the internal `--worker` flag.
fn formatRole(buf: [:0]u8, options: StartOptions, control: sys.Fd, report: sys.Fd) ![*:0]const u8 {
    const head = try compat.bufPrint(buf, "{d}:{d}:{d}:{d}:", .{
        options.index, options.generation, control, report,
    });
    var len = head.len;
    for (options.sockets, 0..) |fd, i| {
        const separator: []const u8 = if (i == 0) "" else ",";
        len += (try compat.bufPrint(buf[len..], "{s}{d}", .{ separator, fd })).len;
    }
    buf[len] = 0;
    return buf[0..len :0].ptr;
}

/// The child side of fork: keep only what the worker needs and become it.
fn becomeWorker(
    options: StartOptions,
    parent: linux.pid_t,
    control: sys.Fd,
    report: sys.Fd,
    argv: [*:null]const ?[*:0]const u8,
) noreturn {
    // A worker must never outlive its supervisor, even one killed with SIGKILL; the parent
    // check closes the window in which the supervisor died before prctl.
    _ = linux.prctl(PR_SET_PDEATHSIG, compat.signalNumber(linux.SIG.KILL), 0, 0, 0);
    if (linux.getppid() != parent) linux.exit_group(1);
    for (options.sockets) |fd| _ = linux.fcntl(fd, linux.F.SETFD, 0);
    _ = linux.fcntl(control, linux.F.SETFD, 0);
    _ = linux.fcntl(report, linux.F.SETFD, 0);
    // The signal mask stays blocked across exec, so a signal that arrives before the worker
    // reads its signalfd waits for it instead of killing it.
    _ = linux.execve(options.exe_path, argv, options.envp);
    linux.exit_group(127);
}

fn pipe(fds: *[2]sys.Fd) !void {
    if (compat.errno(linux.pipe2(fds, .{ .CLOEXEC = true, .NONBLOCK = true })) != .SUCCESS) {
        return error.PipeFailed;
    }
}

fn closePair(fds: [2]sys.Fd) void {
    sys.close(fds[0]);
    sys.close(fds[1]);
}

/// A line a worker reports.
pub const Report = union(enum) {
    ready,
    stats: stats_mod.Stats,

    /// Parses one line without its newline; null for a line this version does not know.
    pub fn parse(line: []const u8) ?Report {
        if (std.mem.eql(u8, line, "ready")) return .ready;
        if (!std.mem.startsWith(u8, line, "stats ")) return null;
        return .{ .stats = stats_mod.Stats.parseFields(line["stats ".len..]) orelse return null };
    }
};

/// Worker mode: serve the inherited sockets until the supervisor asks for a stop.
pub fn runWorker(role: cli.WorkerRole, options: cli.Options) u8 {
    var sockets: [listener_count]worker_mod.Socket = undefined;
    for (&sockets, role.fds, 0..) |*s, fd, i| s.* = .{ .fd = fd, .listener_index = @intCast(i) };
    var w = worker_mod.Worker.init(std.heap.page_allocator, .{
        .sockets = &sockets,
        .index = role.index,
        .generation = role.generation,
        .limits = options.limits,
        .control_fd = role.control_fd,
    }) catch |err| {
        log.err("worker {d} cannot start: {s}", .{ role.index, @errorName(err) });
        return 1;
    };
    sys.writeAll(role.report_fd, "ready\n") catch return 1;
    _ = w.run();
    var buf: [512]u8 = undefined;
    const line = w.stats().formatLine(&buf) catch unreachable;
    sys.writeAll(role.report_fd, line) catch {};
    return 0;
}

test "parses the lines a worker reports" {
    try std.testing.expect(Report.parse("ready").? == .ready);
    const stats = Report.parse("stats connections=3 requests=5 datagrams=7").?.stats;
    try std.testing.expectEqual(@as(u64, 5), stats.requests);
    try std.testing.expect(Report.parse("stats requests=x") == null);
    try std.testing.expect(Report.parse("hello") == null);
}
