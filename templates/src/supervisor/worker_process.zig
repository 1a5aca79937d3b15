//! A worker as a process of its own: how the supervisor starts one, and the two pipes
//! between them.
//!
//! A worker is this same binary executed again with the internal flag `--worker`
//! (see `cli.WorkerRole`). It inherits its slot's listening sockets, those of the next
//! `cli.max_ring` slots (to adopt while their workers are down), and its ends of two
//! pipes; every other descriptor is close-on-exec.
//!   control (supervisor → worker): "adopt SLOT" and "release SLOT" lines; the supervisor
//!     closes its end to ask for a graceful stop, and the worker also sees the hang-up
//!     when the supervisor dies (see `worker_link.zig`).
//!   report (worker → supervisor), one line each:
//!     "ready" once the worker's loop is accepting;
//!     "beat" every heartbeat interval while its loop turns (when the watchdog is on);
//!     "mismatch IDENTITY" instead of serving, when the binary's identity
//!       ("<spec fingerprint>-<supervisor fingerprint>") is not the supervisor's;
//!     "stats connections=C requests=R …" (see `stats.zig`) as it exits; key=value, and keys a
//!       supervisor does not know are skipped, so counters can be added freely.
const std = @import("std");
const config = @import("../config.zig");
const compat = @import("../compat.zig");
const cli = @import("../cli.zig");
const stats_mod = @import("../worker/stats.zig");
const worker_link = @import("worker_link.zig");
const privileges = @import("privileges.zig");
const sys = @import("../net/sys.zig");
const resolve = @import("../net/resolve.zig");
const locality = @import("../net/locality.zig");
const linux = std.os.linux;

const listener_count = config.listeners.len;

/// prctl(2) option; its value is part of the Linux ABI on every architecture.
const PR_SET_PDEATHSIG: i32 = 1;

pub const StartOptions = struct {
    exe_path: [*:0]const u8,
    envp: [*:null]const ?[*:0]const u8,
    /// Every slot's listening sockets, `listener_count` per slot, in `config.listeners`
    /// order; the worker inherits its own slot's and those of the next slots of its ring.
    sockets: []const sys.Fd,
    workers: u16,
    index: u16,
    generation: u32,
    /// Passed on as flags, so that the supervisor's overrides reach every worker.
    limits: cli.Limits,
    /// What the worker drops to once it has its sockets (`--drop-to`); null: nothing.
    drop_to: ?privileges.Credentials = null,
    /// The shared metrics region (inherited; -1: none) and the worker's cell in it.
    metrics_fd: sys.Fd = -1,
    metrics_cell: u32 = 0,
    /// `--access-log` and `--access-log-format`, passed on when given.
    access_log_path: ?[:0]const u8 = null,
    access_log_format: ?[:0]const u8 = null,
    /// The addresses of upstream servers named by host (`--upstream-addresses`).
    upstream_addresses: ?*const resolve.Table = null,
    /// The CPU the worker runs on alone (`cpuAffinity`); null: every CPU it inherits.
    pin_to: ?u16 = null,
};

/// A started worker and the supervisor's ends of its pipes.
pub const Started = struct {
    pid: linux.pid_t,
    control_fd: sys.Fd,
    report_fd: sys.Fd,
};

/// Forks and executes a worker.
pub fn start(options: StartOptions) !Started {
    std.debug.assert(options.sockets.len == @as(usize, options.workers) * listener_count);
    std.debug.assert(options.index < options.workers);
    var control: [2]sys.Fd = undefined;
    var report: [2]sys.Fd = undefined;
    try pipe(&control);
    errdefer closePair(control);
    try pipe(&report);
    errdefer closePair(report);

    // Everything the child needs is prepared before fork: after it, the child only makes
    // system calls.
    var role_buf: [128 + (cli.max_ring + 1) * (8 + 12 * listener_count):0]u8 = undefined;
    const role = try formatRole(&role_buf, options, control[0], report[1]);
    var limit_bufs: [cli.limit_flags.len][24:0]u8 = undefined;
    // The limits, then the request log's flags and --drop-to when given, one after the other
    // (argv ends at its first null).
    const argc = 3 + 2 * cli.limit_flags.len + 4 + 2 + 2 + 2;
    var argv: [argc:null]?[*:0]const u8 = @splat(null);
    argv[0] = options.exe_path;
    argv[1] = "--worker";
    argv[2] = role;
    var next: usize = 3 + try limitArgs(options.limits, &limit_bufs, argv[3..]);
    next = addIoFlag(&argv, next, options.limits.io);
    if (options.access_log_path) |path| {
        argv[next] = "--access-log";
        argv[next + 1] = path.ptr;
        next += 2;
    }
    if (options.access_log_format) |format| {
        argv[next] = "--access-log-format";
        argv[next + 1] = format.ptr;
        next += 2;
    }
    var upstream_buf: [resolve.server_count * 64 + 1:0]u8 = undefined;
    if (options.upstream_addresses) |table| {
        const text = try table.toText(&upstream_buf);
        if (text.len > 0) {
            upstream_buf[text.len] = 0;
            argv[next] = "--upstream-addresses";
            argv[next + 1] = &upstream_buf;
            next += 2;
        }
    }
    var drop_buf: [24 + 11 * privileges.max_groups:0]u8 = undefined;
    if (options.drop_to) |credentials| {
        const text = try credentials.toText(&drop_buf);
        drop_buf[text.len] = 0;
        argv[next] = "--drop-to";
        argv[next + 1] = &drop_buf;
        next += 2;
    }
    const parent = linux.getpid();

    const rc = linux.fork();
    if (compat.errno(rc) != .SUCCESS) return error.ForkFailed;
    if (rc == 0) becomeWorker(options, parent, control[0], report[1], &argv);

    sys.close(control[0]);
    sys.close(report[1]);
    return .{ .pid = @intCast(rc), .control_fd = control[1], .report_fd = report[0] };
}

/// Writes the limit flags and their values (in `bufs`) into `argv`; how many entries.
/// The idle timeout only when it was given: a worker then lets it replace proxy listeners'
/// own idle timeouts, which the spec's value does not.
fn limitArgs(
    limits: cli.Limits,
    bufs: *[cli.limit_flags.len][24:0]u8,
    argv: []?[*:0]const u8,
) !usize {
    var next: usize = 0;
    inline for (cli.limit_flags, 0..) |limit, i| {
        const idle = comptime std.mem.eql(u8, limit.field, "idle_timeout_ms");
        if (!idle or limits.idle_timeout_given) {
            const text = try compat.bufPrint(&bufs[i], "{d}", .{@field(limits, limit.field)});
            bufs[i][text.len] = 0;
            argv[next] = limit.flag.ptr;
            argv[next + 1] = &bufs[i];
            next += 2;
        }
    }
    return next;
}

/// `--io` when the supervisor's differs from the spec's; returns the next free argument.
fn addIoFlag(argv: [*:null]?[*:0]const u8, next: usize, io: config.Io) usize {
    if (io == config.io) return next;
    argv[next] = "--io";
    argv[next + 1] = @tagName(io);
    return next + 2;
}

/// How many other slots a worker of `workers` holds the sockets of.
pub fn ringLength(workers: u16) u16 {
    return @min(workers - 1, cli.max_ring);
}

/// The slot `distance` places after `index` in the ring of `workers` slots.
pub fn ringSlot(index: u16, distance: u16, workers: u16) u16 {
    return @intCast((@as(u32, index) + distance) % workers);
}

fn slotSockets(options: StartOptions, slot: u16) []const sys.Fd {
    return options.sockets[@as(usize, slot) * listener_count ..][0..listener_count];
}

/// The value of the internal `--worker` flag (see `cli.WorkerRole`).
fn formatRole(buf: [:0]u8, options: StartOptions, control: sys.Fd, report: sys.Fd) ![*:0]const u8 {
    const head = try compat.bufPrint(buf, "{d}:{d}:{d}:{d}:{s}:", .{
        options.index, options.generation, control, report, config.identity,
    });
    var len = head.len;
    var distance: u16 = 0;
    while (distance <= ringLength(options.workers)) : (distance += 1) {
        const slot = ringSlot(options.index, distance, options.workers);
        if (distance > 0) len += (try compat.bufPrint(buf[len..], "/{d}=", .{slot})).len;
        for (slotSockets(options, slot), 0..) |fd, i| {
            const separator: []const u8 = if (i == 0) "" else ",";
            len += (try compat.bufPrint(buf[len..], "{s}{d}", .{ separator, fd })).len;
        }
    }
    if (options.metrics_fd >= 0) {
        const metrics = .{ options.metrics_fd, options.metrics_cell };
        len += (try compat.bufPrint(buf[len..], ":{d},{d}", metrics)).len;
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
    var distance: u16 = 0;
    while (distance <= ringLength(options.workers)) : (distance += 1) {
        const slot = ringSlot(options.index, distance, options.workers);
        for (slotSockets(options, slot)) |fd| _ = linux.fcntl(fd, linux.F.SETFD, 0);
    }
    _ = linux.fcntl(control, linux.F.SETFD, 0);
    _ = linux.fcntl(report, linux.F.SETFD, 0);
    if (options.metrics_fd >= 0) _ = linux.fcntl(options.metrics_fd, linux.F.SETFD, 0);
    // Pinned before exec, so the worker never runs a turn elsewhere; a CPU taken away
    // since the supervisor read its mask leaves the worker unpinned (the kernel refuses).
    if (options.pin_to) |cpu| _ = locality.pinTo(cpu);
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
    beat,
    /// The identity of a worker binary generated from another spec or supervisor.
    mismatch: []const u8,
    stats: stats_mod.Stats,

    /// Parses one line without its newline; null for a line this version does not know.
    pub fn parse(line: []const u8) ?Report {
        if (std.mem.eql(u8, line, "ready")) return .ready;
        if (std.mem.eql(u8, line, "beat")) return .beat;
        if (std.mem.startsWith(u8, line, "mismatch ")) return .{ .mismatch = line[9..] };
        if (!std.mem.startsWith(u8, line, "stats ")) return null;
        return .{ .stats = stats_mod.Stats.parseFields(line["stats ".len..]) orelse return null };
    }
};

test "parses the lines a worker reports" {
    try std.testing.expect(Report.parse("ready").? == .ready);
    try std.testing.expect(Report.parse("beat").? == .beat);
    try std.testing.expectEqualStrings("0123", Report.parse("mismatch 0123").?.mismatch);
    const stats = Report.parse("stats connections=3 requests=5 datagrams=7").?.stats;
    try std.testing.expectEqual(@as(u64, 5), stats.requests);
    const newer = Report.parse("stats requests=5 evicted=2 some_future_counter=1").?.stats;
    try std.testing.expectEqual(@as(u64, 2), newer.evicted);
    try std.testing.expect(Report.parse("stats requests=x") == null);
    try std.testing.expect(Report.parse("hello") == null);
}

test "a worker gets --idle-timeout only when it was given" {
    var bufs: [cli.limit_flags.len][24:0]u8 = undefined;
    var argv: [2 * cli.limit_flags.len]?[*:0]const u8 = @splat(null);
    const count = try limitArgs(.{}, &bufs, &argv);
    try std.testing.expectEqual(2 * cli.limit_flags.len - 2, count);
    for (argv[0..count]) |arg| {
        try std.testing.expect(!std.mem.eql(u8, std.mem.span(arg.?), "--idle-timeout"));
    }
    const given: cli.Limits = .{ .idle_timeout_ms = 250, .idle_timeout_given = true };
    try std.testing.expectEqual(2 * cli.limit_flags.len, try limitArgs(given, &bufs, &argv));
    var found = false;
    for (argv, 0..) |arg, i| {
        if (!std.mem.eql(u8, std.mem.span(arg.?), "--idle-timeout")) continue;
        try std.testing.expectEqualStrings("250", std.mem.span(argv[i + 1].?));
        found = true;
    }
    try std.testing.expect(found);
}
