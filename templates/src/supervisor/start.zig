//! How supervisor mode starts: the program's own path, the sockets (`listening.zig`), the
//! tables, the epoll loop with its signalfd, the metrics region, the admin listener; then
//! the supervisor's loop (`supervisor.zig`) serves until it stops.
const std = @import("std");
const compat = @import("../compat.zig");
const cli = @import("../cli.zig");
const activation = @import("../systemd/activation.zig");
const events = @import("../events.zig");
const access_log = @import("../access_log.zig");
const notify = @import("../systemd/notify.zig");
const upgrade = @import("../upgrade/upgrade.zig");
const log = @import("../log.zig");
const sys = @import("../net/sys.zig");
const config = @import("../config.zig");
const cpus = @import("cpus.zig");
const core_mod = @import("core.zig");
const metrics_region = @import("../metrics/region.zig");
const listening = @import("listening.zig");
const supervisor_mod = @import("supervisor.zig");
const linux = std.os.linux;

const listener_count = config.listeners.len;

/// Supervisor mode's entry: opens every socket, then serves until stopped.
pub fn run(options: cli.Options, process: compat.Process) u8 {
    const allocator = std.heap.page_allocator;
    // Before anything serves: a request log that cannot be opened stops the start here.
    if (!access_log.prepareFile(access_log.ownerFor(options.drop_to))) return 1;
    const auto_workers: ?cpus.Auto = if (options.workers == 0) cpus.autoWorkers() else null;
    const workers = if (auto_workers) |auto| auto.workers else options.workers;
    var exe_buf: [4096:0]u8 = undefined;
    const exe_path = exePath(process.args[0], &exe_buf) orelse {
        log.err("cannot find this program's own path in /proc/self/exe", .{});
        return 1;
    };
    const pid = linux.getpid();
    const handover = handoverFromParent(process.envp, pid);
    var activated: [listener_count]bool = @splat(false);
    const source = listening.activationSource(handover, &activated);
    var diag: activation.Diagnostic = .{};
    const envp = process.envp;
    const asked = &options.endpoints;
    const passed = activation.takeFrom(allocator, envp, pid, asked, source, &diag) catch |err| {
        activation.report(&diag, err);
        return 1;
    };
    const workers_envp = activation.withoutVariables(allocator, process.envp) catch return 1;
    const opened = listening.open(allocator, options, workers, passed, source) orelse return 1;
    const handed = listening.handedFlags(allocator, passed, workers) catch return 1;
    const notifier = notify.Notifier.init(process.envp);
    listening.settle(&notifier, options, process.envp, passed, opened, workers, source);
    const loop = Loop.open() catch return 1;

    const tables = Tables.alloc(allocator, workers, opened.sockets.len) catch return 1;
    const records: u32 = @intCast(tables.records.len);
    const metrics = metrics_region.Region.create(allocator, workers, records) catch |err| {
        log.err("cannot map the metrics region: {s}", .{@errorName(err)});
        return 1;
    };

    events.logMigrationPolicy(.supervisor);
    var supervisor: supervisor_mod.Supervisor = .{
        .workers = workers,
        .auto_workers = auto_workers,
        .options = options,
        .process = .{ .args = process.args, .envp = workers_envp },
        .exe_path = exe_path,
        .pid = pid,
        .sockets = opened.sockets,
        .ports = opened.ports,
        .core = tables.core(workers, options.limits, handover),
        .metrics = metrics,
        .procs = tables.procs,
        .slots = tables.slots,
        .actions = .{ .list = tables.actions },
        .epfd = loop.epfd,
        .sigfd = loop.sigfd,
        .notifier = notifier,
        .handed = if (handover != null) handed.counts else @splat(0),
        .handover = handover,
        .kept = handed.kept,
        .leaving_buf = tables.leaving,
    };
    for (&supervisor.activated, activated, 0..) |*a, from_systemd, i| {
        // A listener an upgrade moved away from its systemd socket is this program's own now.
        a.* = passed.countFor(i) > 0 and (handover == null or from_systemd);
    }
    supervisor.options.endpoints = opened.endpoints;
    supervisor.setUpLocality();
    if (!supervisor.startAdmin(handover != null)) return 1;
    supervisor.armSystemdWatchdog(process.envp);
    return supervisor.run();
}

/// What the supervisor keeps per process (four per slot: one serving, the others draining
/// or starting), per slot, and per socket (left behind after an upgrade).
const Tables = struct {
    records: []?core_mod.Worker,
    procs: []supervisor_mod.Proc,
    core_slots: []core_mod.Slot,
    slots: []supervisor_mod.Slot,
    actions: []core_mod.Action,
    leaving: []bool,

    fn alloc(allocator: std.mem.Allocator, workers: u16, sockets: usize) !Tables {
        const records = @as(usize, workers) * core_mod.records_per_slot;
        const tables: Tables = .{
            .records = try allocator.alloc(?core_mod.Worker, records),
            .procs = try allocator.alloc(supervisor_mod.Proc, records),
            .core_slots = try allocator.alloc(core_mod.Slot, workers),
            .slots = try allocator.alloc(supervisor_mod.Slot, workers),
            .actions = try allocator.alloc(core_mod.Action, core_mod.Actions.capacityFor(workers)),
            .leaving = try allocator.alloc(bool, sockets),
        };
        @memset(tables.procs, .{});
        @memset(tables.slots, .{});
        @memset(tables.leaving, false);
        return tables;
    }

    /// The core, which goes on with the generation numbers of the supervisor this one takes
    /// over from, if any, and waits for it to exit before an upgrade of its own.
    fn core(
        tables: *const Tables,
        workers: u16,
        limits: cli.Limits,
        handover: ?upgrade.Handover,
    ) core_mod.Core {
        const options: core_mod.Options = .{
            .workers = workers,
            .drain_timeout_ms = limits.drain_timeout_ms,
            .shutdown_delay_ms = limits.shutdown_delay_ms,
            .ready_timeout_ms = limits.ready_timeout_ms,
        };
        var decisions = core_mod.Core.init(options, tables.records, tables.core_slots);
        if (handover) |h| {
            decisions.last_generation = h.generation;
            decisions.predecessor = h.from_pid;
        }
        return decisions;
    }
};

/// The hand-over of an upgrading supervisor, when this process is the one it started: it
/// comes from the parent only, since the old supervisor forked this process.
fn handoverFromParent(envp: [*:null]const ?[*:0]const u8, pid: linux.pid_t) ?upgrade.Handover {
    const handover = upgrade.Handover.fromEnv(envp, pid) orelse return null;
    if (handover.from_pid != linux.getppid()) return null;
    _ = linux.fcntl(handover.ready_fd, linux.F.SETFD, linux.FD_CLOEXEC);
    log.info("taking over from pid {d}", .{handover.from_pid});
    return handover;
}

/// The supervisor's epoll instance, with its signals on a signalfd in it.
const Loop = struct {
    epfd: sys.Fd,
    sigfd: sys.Fd,

    fn open() sys.Error!Loop {
        // SIGCHLD ignored by whoever started us survives execve and would have the kernel
        // reap workers behind our back: waitpid would never see them exit.
        sys.resetSignalToDefault(compat.signalNumber(linux.SIG.CHLD));
        var set = compat.emptySigset();
        linux.sigaddset(&set, linux.SIG.TERM);
        linux.sigaddset(&set, linux.SIG.INT);
        linux.sigaddset(&set, linux.SIG.QUIT);
        linux.sigaddset(&set, linux.SIG.HUP);
        linux.sigaddset(&set, linux.SIG.CHLD);
        linux.sigaddset(&set, linux.SIG.PIPE);
        // Reopen the request log (log rotation); blocked from here on, so workers start
        // with it blocked too and never die of one that arrives before they take it.
        linux.sigaddset(&set, linux.SIG.USR1);
        const sigfd = try sys.signalfd(&set);
        const epfd = try sys.epollCreate();
        const data = supervisor_mod.token(supervisor_mod.Kind.signal, 0);
        try sys.epollCtl(epfd, linux.EPOLL.CTL_ADD, sigfd, linux.EPOLL.IN, data);
        return .{ .epfd = epfd, .sigfd = sigfd };
    }
};

/// The path a restart executes: whatever file is there at that time, so deploying is
/// replacing the file (or switching a symlink) and sending SIGHUP. The path the program was
/// started by, when it names one, so that a symlink is followed anew at every restart
/// (`/proc/self/exe` would have resolved it once and for all); the supervisor never changes
/// its working directory, so a relative path stays valid. Otherwise (found through PATH)
/// the binary `/proc/self/exe` names.
fn exePath(argv0: [*:0]const u8, buf: *[4096:0]u8) ?[*:0]const u8 {
    if (compat.findScalar(u8, std.mem.span(argv0), '/') != null) return argv0;
    const rc = linux.readlink("/proc/self/exe", buf, buf.len);
    if (compat.errno(rc) != .SUCCESS or rc == 0 or rc >= buf.len) return null;
    buf[rc] = 0;
    return buf[0..rc :0].ptr;
}
