//! Supervisor mode: one supervisor process and N worker processes.
//!
//! The supervisor opens every listening socket itself (one per listener per worker slot, so
//! SO_REUSEPORT shards connections across the workers, as nginx's `reuseport` does) and
//! keeps them open for its whole life. Workers are this same binary started with
//! `--worker`, inheriting their slot's sockets.
//!
//! Why the sockets stay with the supervisor: a listening socket's accept queue belongs to
//! the socket, not to a process. On SIGHUP the new generation of workers inherits the very
//! same sockets, so when an old worker closes its descriptor nothing queued is lost, on any
//! kernel and whatever net.ipv4.tcp_migrate_req says. Closing the last descriptor of a
//! reuseport group member would reset its queue instead. nginx, HAProxy and tableflip
//! restart the same way.
//!
//! No dark slots: a dead, crash-looping or hung worker's sockets stay in the reuseport
//! group (closing them would reset their queues), and the kernel keeps hashing a share of
//! new connections to them. So every worker also holds the sockets of the next
//! `cli.max_ring` slots without watching them, and while a slot is dark (its worker exited
//! and its replacement is not ready, or it missed its heartbeats) the supervisor has a
//! healthy worker of the serving generation adopt it: "adopt SLOT" on that worker's control
//! pipe, "release SLOT" once the slot's own worker is back (`worker_link.zig`). Adoptions
//! end with their generation: a retired adopter drains what it adopted with its own.
//!
//! Watchdog: with `--watchdog MS` > 0, workers beat on their report pipe; a worker silent
//! for `worker_link.adoptAfterMs` has its slot adopted, one silent for the whole watchdog
//! time is killed (`worker_hung`) and replaced like a crashed one.
//!
//! Under systemd the sockets can come from outside (`activation.zig`): slot k of a listener
//! takes the k-th socket passed under its name; the other slots join the passed socket's
//! reuseport group (or share it when it has no SO_REUSEPORT). With the fd store on, every
//! slot's socket is also sent to systemd, which keeps it while this process is gone.
//!
//! A SIGHUP that finds a binary on disk with another spec or supervisor fingerprint upgrades
//! the whole program instead: a new supervisor takes the sockets over (`upgrade.zig`).
//!
//! What the supervisor decides (generations, restarts, upgrades, stops) is decided by a pure
//! state machine, `core.zig`, which this loop feeds with what the kernel says; the simulator
//! (`simulator.zig`) runs the same core through random event orders.
//!
//! How the supervisor starts (its sockets, tables and loop): `start.zig`, and how the listening
//! sockets are opened or taken over then: `listening.zig`. How a worker process is started and
//! talks back: `worker_process.zig`.
const std = @import("std");
const config = @import("../config.zig");
const compat = @import("../compat.zig");
const cli = @import("../cli.zig");
const activation = @import("../systemd/activation.zig");
const address = @import("../address.zig");
const worker_mod = @import("../worker/stop.zig");
const stats_mod = @import("../worker/stats.zig");
const worker_process = @import("worker_process.zig");
const worker_link = @import("worker_link.zig");
const events = @import("../events.zig");
const pid_file = @import("pid_file.zig");
const access_log = @import("../access_log.zig");
const notify = @import("../systemd/notify.zig");
const upgrade = @import("../upgrade/upgrade.zig");
const log = @import("../log.zig");
const sys = @import("../net/sys.zig");
const cpus = @import("cpus.zig");
const locality = @import("../net/locality.zig");
const linux = std.os.linux;
const assert = std.debug.assert;
const core_mod = @import("core.zig");
const admin_server = @import("../admin/server.zig");
const admin_view = @import("admin_view.zig");
const metrics_region = @import("../metrics/region.zig");
const resolve = @import("../net/resolve.zig");

const listener_count = config.listeners.len;
const max_events = 64;
/// How often slots are checked for silence while the watchdog is on or a slot is adopted.
const scan_interval_ms = 50;
/// How long a reaped worker's report pipe may stay open before the core hears of the exit
/// all the same (see `Proc.exit_due_ms`).
const exit_grace_ms = 1000;

pub const Kind = struct {
    pub const signal: u32 = 0;
    const report: u32 = 1;
    const successor: u32 = 2;
    const probe: u32 = 3;
    const admin: u32 = 4;
};

pub fn token(kind: u32, index: u32) u64 {
    return (@as(u64, kind) << 32) | index;
}

/// The process behind one of the core's worker records: its pid and pipes, from the
/// `spawn` action until it has been reaped.
pub const Proc = struct {
    /// 0 while the record holds no process (free, or its start failed).
    pid: linux.pid_t = 0,
    /// The supervisor's end of the control pipe; closed to ask for a graceful stop.
    control_fd: ?sys.Fd = null,
    /// The supervisor's end of the report pipe; closed at end of file.
    report_fd: ?sys.Fd = null,
    /// Why the `spawn` action failed, until the core has heard it.
    spawn_error: ?[]const u8 = null,
    /// Reaped: its last reports are read, a `ready` among them no longer counts.
    exited: bool = false,
    /// Reaped while its report pipe is still open: the core hears of the exit at the pipe's
    /// end, or at this time. An io_uring worker's ring holds the pipe (`Ring.holdUntilGone`)
    /// until the kernel has torn the ring down and closed the connections and listeners its
    /// operations held, which it does some milliseconds after the process was reaped: a
    /// replacement started before that (or a client told of it) would find the killed
    /// worker's connections open, and a keep-alive client's next request reset. An epoll
    /// worker's pipe ends as its process does.
    exit_due_ms: ?u64 = null,
    exit: events.Exit = .{ .code = 0 },
    stats: stats_mod.Stats = .{},
    report_buf: [1024]u8 = undefined,
    report_len: usize = 0,
    /// When it last reported anything (heartbeats included).
    last_beat_ms: u64 = 0,
    /// The watchdog killed it.
    hung: bool = false,
};

/// What the driver keeps per slot: adoption and the counts for `stopped`.
pub const Slot = struct {
    /// The serving generation's non-draining worker of this slot (a record index), as of
    /// the last scan.
    owner: ?u32 = null,
    /// The worker (record index and pid) that adopted this dark slot.
    adopter: ?u32 = null,
    adopter_pid: linux.pid_t = 0,
    totals: stats_mod.Stats = .{},
    last_pid: linux.pid_t = 0,
    last_exit: ?events.Exit = null,
    /// Workers of this slot that exited unexpectedly (crashed, killed, hung).
    restarts: u32 = 0,
};

/// The supervisor's loop: it gathers what the kernel says (signals, children's exits,
/// workers' reports, the identity probe's output, a new supervisor's ready line, the clock),
/// feeds it to the core (`core.zig`), which decides, and performs the actions the core
/// returns. What it decides alone is the watchdog and adoption (`scanSlots`).
pub const Supervisor = struct {
    workers: u16,
    /// How `"workers": "auto"` counted them; null for a fixed count.
    auto_workers: ?cpus.Auto = null,
    options: cli.Options,
    process: compat.Process,
    exe_path: [*:0]const u8,
    pid: linux.pid_t,
    /// sockets[slot * listener_count + listener]; closed when the service stops.
    sockets: []sys.Fd,
    ports: [listener_count]u16,
    /// The decisions; its records and `procs` share indexes.
    core: core_mod.Core,
    /// The workers' counters: one cell per record (see `metrics/region.zig`).
    metrics: metrics_region.Region,
    procs: []Proc,
    slots: []Slot,
    /// Where the core puts the actions of one event.
    actions: core_mod.Actions,
    epfd: sys.Fd,
    sigfd: sys.Fd,
    /// The identity probe under way (the core is `probing`).
    probe: ?upgrade.Probe = null,
    /// What the probe said the binary on disk is, for the `upgrading` event.
    identity: ?upgrade.Identity = null,
    /// The new supervisor that has not said ready yet.
    successor: ?upgrade.Successor = null,
    /// After a hand-over: the sockets the new supervisor did not keep.
    left_behind: ?upgrade.LeftBehind = null,
    /// An answer to an action of the event being handled, fed once all are performed.
    followup: ?core_mod.Event = null,
    notifier: notify.Notifier = .{},
    /// systemd's watchdog (WATCHDOG_USEC): WATCHDOG=1 every this many ms, from this loop.
    systemd_watchdog_ms: ?u64 = null,
    next_systemd_watchdog_ms: u64 = 0,
    /// Something changed that may darken or light a slot: scan at once.
    scan_due: bool = false,
    /// More children may have exited than the last `reap` took: reap again at once.
    reap_due: bool = false,
    next_scan_ms: u64 = 0,
    last_scan_ms: u64 = 0,
    pid_file_written: bool = false,
    exit_code: u8 = 0,
    /// The listeners whose sockets came from systemd (directly, or through the supervisors
    /// this one took over from): their groups are never steered, since their sockets may
    /// sit anywhere in them; in the others slot k is index k (see `steering.zig`).
    activated: [listener_count]bool = @splat(false),
    /// How many sockets of each listener the old supervisor handed over, in an upgrade.
    handed: [listener_count]usize = @splat(0),
    /// This supervisor takes over from an old one: it says so once its first generation is
    /// ready, with which of the handed sockets (`kept`) it serves.
    handover: ?upgrade.Handover = null,
    kept: []const bool = &.{},
    /// One flag per socket, for the left-behind sockets after a hand-over.
    leaving_buf: []bool = &.{},
    /// The admin listener (`admin/server.zig`), when the spec or --admin asks for one.
    admin: ?admin_server.Server = null,
    /// An upgrade's new supervisor whose admin port the old one still holds: it tries
    /// again at this time (until `admin_retry_until_ms`).
    admin_retry_at_ms: ?u64 = null,
    admin_retry_until_ms: u64 = 0,
    started_ms: u64 = 0,
    /// With `cpuAffinity`: the CPUs the workers are pinned to, read once at start.
    locality: ?locality.Cpus = null,

    fn now() u64 {
        return sys.monotonicMs();
    }

    /// systemd's watchdog (WATCHDOG_USEC for this process): WATCHDOG=1 from this loop.
    pub fn armSystemdWatchdog(self: *Supervisor, envp: [*:null]const ?[*:0]const u8) void {
        const interval = notify.watchdogIntervalMs(envp, self.pid) orelse return;
        self.systemd_watchdog_ms = interval;
        self.next_systemd_watchdog_ms = now();
        log.info("systemd watchdog: WATCHDOG=1 every {d} ms", .{interval});
    }

    /// Serves until stopped; returns the process exit code.
    pub fn run(self: *Supervisor) u8 {
        self.started_ms = now();
        if (self.admin) |*a| a.responder = admin_view.responder(self);
        self.feed(.start);
        var list: [max_events]linux.epoll_event = undefined;
        while (!self.core.finished()) {
            self.assertInvariants();
            const n = sys.epollWait(self.epfd, &list, self.waitTimeoutMs()) catch |err| {
                log.err("epoll_wait failed: {s}", .{@errorName(err)});
                self.feed(.{ .signal = .quit });
                return 1;
            };
            for (list[0..n]) |event| {
                const data = event.data.u64;
                switch (@as(u32, @intCast(data >> 32))) {
                    Kind.signal => self.onSignal(),
                    Kind.report => self.onReport(@truncate(data)),
                    Kind.successor => self.onSuccessorReadable(),
                    Kind.probe => self.onProbeReadable(),
                    Kind.admin => if (self.admin) |*a| a.onEvent(@truncate(data), now()),
                    else => unreachable,
                }
            }
            if (self.reap_due) self.reap();
            self.onTimers();
            self.scanSlots();
        }
        self.assertInvariants();
        self.finish();
        return self.exit_code;
    }

    /// What must hold between any two turns of the loop (checked in Debug and ReleaseSafe):
    /// the core's invariants, and the driver's resources match the core's phase.
    fn assertInvariants(self: *const Supervisor) void {
        if (!compat.has_safety) return;
        self.core.assertInvariants();
        assert(self.followup == null);
        assert((self.probe != null) == (self.core.phase == .probing));
        if (self.successor != null) assert(self.core.phase == .upgrading);
        if (self.core.phase == .handed_over) assert(!self.pid_file_written);
        for (self.core.records, self.procs) |maybe, proc| {
            if (maybe == null) assert(proc.pid == 0 and proc.control_fd == null);
            const w = maybe orelse continue;
            assert(proc.spawn_error == null);
            if (w.retired) assert(proc.control_fd == null);
        }
    }

    // The core: events in, actions out.

    /// Has the core decide what `event` calls for and performs it, then feeds what the
    /// actions answered (a fork that failed, a probe or new supervisor that did not start).
    fn feed(self: *Supervisor, event: core_mod.Event) void {
        self.actions.len = 0;
        self.core.handle(now(), event, &self.actions);
        for (self.actions.slice()) |action| self.perform(action);
        for (self.procs, 0..) |*proc, i| {
            const detail = proc.spawn_error orelse continue;
            proc.spawn_error = null;
            self.feed(.{ .spawn_failed = .{ .record = @intCast(i), .detail = detail } });
        }
        if (self.followup) |followup| {
            self.followup = null;
            self.feed(followup);
        }
    }

    fn perform(self: *Supervisor, action: core_mod.Action) void {
        switch (action) {
            .spawn => |s| self.spawn(s.record, s.index, s.generation),
            .retire => |record| self.retire(&self.procs[record]),
            .kill_worker => |k| {
                // A record whose fork failed holds no process; one reaped (its pipe not closed
                // yet) holds a pid that may be another process's by now.
                const proc = &self.procs[k.record];
                if (proc.pid > 0 and !proc.exited) killProcess(proc.pid, k.signal);
            },
            .kill_process => |k| killProcess(k.pid, k.signal),
            .start_probe => self.startProbe(),
            .end_probe => self.endProbe(),
            .start_upgrade => |generation| self.startUpgrade(generation),
            .close_successor => self.closeSuccessorPipe(),
            .restarting => |generation| {
                log.info("starting generation {d}", .{generation});
                self.resolveUpstreamsAgain();
                self.notifier.reloading();
                var line = events.Line.begin("restarting");
                line.int("generation", generation);
                line.emit();
            },
            .ready => |generation| {
                self.scan_due = true;
                self.writePidFileOnce();
                self.announceReady(generation);
            },
            .failed => |f| self.reportFailedRestart(f.generation, f.what, f.detail),
            .upgraded => |generation| self.announceUpgraded(generation),
            .stopping => |kind| self.announceStopping(kind),
            .unready => |delay_ms| self.announceUnready(delay_ms),
            .worker_exit => |e| self.onWorkerGone(e),
            .worker_replaced => |record| {
                const w = self.core.records[record].?;
                var line = events.Line.begin("worker_replaced");
                line.int("generation", w.generation);
                line.int("index", w.index);
                line.int("pid", self.procs[record].pid);
                line.emit();
            },
            .mismatch => |m| {
                const w = self.core.records[m.record].?;
                var message: [256]u8 = undefined;
                var line = events.Line.begin("error");
                line.string("message", compat.bufPrint(&message, "worker {d} not replaced: " ++
                    "{s} ({s})", .{ w.index, m.what, m.detail }) catch m.what);
                line.int("generation", w.generation);
                line.int("index", w.index);
                line.emit();
            },
            .drained => |generation| {
                var line = events.Line.begin("drained");
                line.int("generation", generation);
                line.emit();
            },
            .exit_failure => self.exit_code = 1,
            .reload_failed => {
                // The reload is over, if not as hoped: systemd waits for READY=1 either way.
                self.notifier.sendf("READY=1\nSTATUS=restart failed; generation {d} keeps " ++
                    "serving", .{self.core.generation});
            },
            .note => |note| self.logNote(note),
        }
    }

    fn killProcess(pid: linux.pid_t, signal: core_mod.KillSignal) void {
        assert(pid > 0);
        _ = switch (signal) {
            .term => linux.kill(pid, linux.SIG.TERM),
            .quit => linux.kill(pid, linux.SIG.QUIT),
            .kill => linux.kill(pid, linux.SIG.KILL),
        };
    }

    fn logNote(self: *const Supervisor, note: core_mod.Note) void {
        switch (note) {
            .restart_queued_draining => {
                log.info("restart queued: waiting for draining workers to exit", .{});
            },
            .hup_queued => log.info("SIGHUP during a restart: queued", .{}),
            .hup_already_queued => log.info("SIGHUP: a restart is already queued", .{}),
            .hup_after_handover => |pid| {
                log.info("SIGHUP ignored: pid {d} took over this service; signal it instead", .{
                    pid,
                });
            },
            .hup_during_upgrade => {
                const pid = if (self.successor) |s| s.pid else 0;
                log.info("SIGHUP during an upgrade: ignored until pid {d} is ready or fails", .{
                    pid,
                });
            },
            .hup_awaiting_predecessor => {
                log.info("SIGHUP: the upgrade already waiting reads the binary on disk then", .{});
            },
            .awaiting_predecessor => |pid| {
                log.info("upgrade waits: pid {d}, which this one took over from, still drains", .{
                    pid,
                });
            },
            .upgrade_called_off => {
                const pid = if (self.successor) |s| s.pid else 0;
                log.info("stopping: the upgrade to pid {d} is called off", .{pid});
            },
            .failed_successor_killed => |pid| {
                log.warn("pid {d}, a failed upgrade, did not stop in time: killing it", .{pid});
            },
            .hup_in_shutdown_delay => log.info("SIGHUP ignored: the service is stopping", .{}),
            .shutdown_delay_cut => log.info("second SIGTERM: the shutdown delay ends now", .{}),
        }
    }

    fn waitTimeoutMs(self: *const Supervisor) i32 {
        if (self.scan_due or self.reap_due) return 0;
        var next: ?u64 = self.core.nextDeadlineMs();
        // Polled: a left-behind queue emptying, and the predecessor's exit (getppid).
        const phase = self.core.phase;
        const polled = phase == .handed_over or phase == .awaiting_predecessor;
        if (polled and self.core.stopping == null) next = minOf(next, now() + scan_interval_ms);
        var adopted = false;
        for (self.slots) |slot| {
            if (slot.adopter != null) adopted = true;
        }
        const watched = self.options.limits.watchdog_ms > 0 or adopted;
        if (self.core.stopping == null and watched) next = minOf(next, self.next_scan_ms);
        if (self.systemd_watchdog_ms != null) next = minOf(next, self.next_systemd_watchdog_ms);
        if (self.admin) |*a| if (a.nextDeadlineMs()) |at| {
            next = minOf(next, at);
        };
        if (self.admin_retry_at_ms) |at| next = minOf(next, at);
        for (self.procs) |proc| if (proc.exit_due_ms) |at| {
            next = minOf(next, at);
        };
        const deadline = next orelse return -1;
        const t = now();
        if (deadline <= t) return 0;
        return @intCast(@min(deadline - t, std.math.maxInt(i32)));
    }

    fn minOf(a: ?u64, b: u64) u64 {
        return if (a) |x| @min(x, b) else b;
    }

    // Generations.

    /// The pid file exists before `ready` is announced, so a reader acting on the event
    /// finds it.
    fn writePidFileOnce(self: *Supervisor) void {
        if (self.pid_file_written) return;
        self.pid_file_written = true;
        const path = self.options.pid_file orelse return;
        pid_file.write(path, self.pid) catch |err| {
            log.err("cannot write pid file {s}: {s}", .{ path, @errorName(err) });
        };
    }

    /// The `ready` event, and what the service manager (or the old supervisor) is told.
    fn announceReady(self: *Supervisor, generation: u32) void {
        var pids: [cli.max_workers]i32 = undefined;
        for (self.core.records, self.procs) |maybe, proc| {
            const w = maybe orelse continue;
            if (w.generation == generation) pids[w.index] = proc.pid;
        }
        var endpoints = self.options.endpoints;
        for (&endpoints, self.ports) |*e, port| e.port = port;
        var line: events.Line = undefined;
        const workers = pids[0..self.workers];
        events.readyLine(&line, .supervisor, generation, workers, endpoints, self.ports);
        events.workerIdentity(&line, self.options.drop_to);
        if (self.admin) |a| events.adminField(&line, self.options.admin.?, a.port);
        if (self.auto_workers) |auto| {
            line.beginNamedObject("workers_auto");
            line.string("decided_by", @tagName(auto.decided_by));
            line.int("online_cpus", auto.online_cpus);
            line.int("affinity", auto.affinity);
            if (auto.cpu_quota) |q| line.int("cpu_quota", q);
            line.endObject();
        }
        if (self.handover) |handover| {
            line.int("upgraded_from", handover.from_pid);
            line.emit();
            // READY=1 with MAINPID comes from the old supervisor, the process systemd
            // watches until then (NotifyAccess=main accepts it from no other).
            self.takeOver(handover);
        } else {
            line.emit();
            self.notifier.sendf("READY=1\nMAINPID={d}\nSTATUS=serving generation {d}", .{
                self.pid,
                generation,
            });
        }
    }

    /// A restart from the binary on disk begins with its identity (`upgrade.Probe`): a new
    /// generation of workers when it is this program, a new supervisor when its spec or its
    /// supervisor differs (`finishProbeIfDone`).
    fn startProbe(self: *Supervisor) void {
        assert(self.probe == null);
        const probe = upgrade.Probe.start(self.exe_path, self.process.envp, now()) catch |err| {
            self.followup = .{ .probe_failed = @errorName(err) };
            return;
        };
        self.probe = probe;
        const data = token(Kind.probe, 0);
        const add = linux.EPOLL.CTL_ADD;
        sys.epollCtl(self.epfd, add, probe.fd.?, linux.EPOLL.IN, data) catch |err| {
            // Unwatched, the probe still ends at its deadline.
            log.warn("cannot watch the identity probe: {s}", .{@errorName(err)});
        };
    }

    fn onProbeReadable(self: *Supervisor) void {
        const probe = if (self.probe) |*p| p else return;
        if (!probe.onReadable()) return;
        self.closeProbeOutput(probe);
        self.finishProbeIfDone();
    }

    /// The probe answered (output read and exit reaped): the core decides what follows.
    fn finishProbeIfDone(self: *Supervisor) void {
        const probe = if (self.probe) |*p| p else return;
        if (!probe.done()) return;
        var failure: upgrade.ProbeFailure = .{};
        const answer = probe.result(&failure);
        self.probe = null;
        const identity = answer catch return self.feed(.{ .probe_failed = failure.text });
        self.identity = identity;
        // Whether the predecessor still runs decides between upgrading and waiting.
        self.pollPredecessor();
        const this = identity.isThisProgram();
        self.feed(.{ .probe_answer = if (this) .this_program else .other_program });
    }

    /// The core gave up on the probe (its deadline, or a stop): it is killed if it runs,
    /// its exit is reaped as another child's.
    fn endProbe(self: *Supervisor) void {
        const probe = if (self.probe) |*p| p else return;
        self.closeProbeOutput(probe);
        var failure: upgrade.ProbeFailure = .{};
        probe.expire(&failure);
        self.probe = null;
    }

    /// Takes the probe's output out of the loop and closes it (its exit is still reaped).
    fn closeProbeOutput(self: *Supervisor, probe: *upgrade.Probe) void {
        if (probe.fd) |fd| _ = linux.epoll_ctl(self.epfd, linux.EPOLL.CTL_DEL, fd, null);
        probe.closeOutput();
    }

    /// Tells the core when the supervisor this one took over from has exited: it is this
    /// one's parent until then.
    fn pollPredecessor(self: *Supervisor) void {
        const pid = self.core.predecessor orelse return;
        if (linux.getppid() == pid) return;
        self.feed(.predecessor_gone);
    }

    /// The `error` event of a restart or upgrade that failed; the serving generation, when
    /// there is one, goes on.
    fn reportFailedRestart(
        self: *Supervisor,
        generation: u32,
        what: []const u8,
        detail: []const u8,
    ) void {
        var message: [256]u8 = undefined;
        const text = compat.bufPrint(&message, "generation {d} did not start ({s}: {s})", .{
            generation, what, detail,
        }) catch "a generation did not start";
        var line = events.Line.begin("error");
        line.string("message", text);
        line.int("generation", generation);
        line.int("serving_generation", self.core.generation);
        line.emit();
        if (self.core.generation == 0) {
            log.err("{s}; stopping", .{text});
        } else {
            log.err("{s}; generation {d} keeps serving", .{ text, self.core.generation });
        }
    }

    // Upgrades (upgrade.zig).

    /// Starts the binary on disk as a new supervisor and hands it every socket; this one
    /// serves on until it says ready.
    fn startUpgrade(self: *Supervisor, generation: u32) void {
        assert(self.successor == null);
        const identity = self.identity.?;
        log.info("the binary on disk is another program (spec {s}, supervisor {s}): " ++
            "upgrading to it", .{ &identity.spec, &identity.supervisor });
        self.notifier.reloading();
        var arena = std.heap.ArenaAllocator.init(std.heap.page_allocator);
        defer arena.deinit();
        const successor = upgrade.start(arena.allocator(), .{
            .exe_path = self.exe_path,
            .args = self.process.args,
            .envp = self.process.envp,
            .sockets = self.sockets,
            .generation = self.core.last_generation,
            .activated = &self.activated,
        }) catch |err| {
            self.followup = .{ .upgrade_start_failed = @errorName(err) };
            return;
        };
        const data = token(Kind.successor, 0);
        const add = linux.EPOLL.CTL_ADD;
        sys.epollCtl(self.epfd, add, successor.ready_fd, linux.EPOLL.IN, data) catch |err| {
            // Unwatched, the upgrade still ends: the new supervisor's exit, or the deadline.
            log.warn("cannot watch the new supervisor's ready pipe: {s}", .{@errorName(err)});
        };
        self.successor = successor;
        self.followup = .{ .successor_started = successor.pid };
        var line = events.Line.begin("upgrading");
        line.int("generation", generation);
        line.int("successor", successor.pid);
        line.string("spec_fingerprint", &identity.spec);
        line.string("supervisor_fingerprint", &identity.supervisor);
        line.emit();
    }

    fn onSuccessorReadable(self: *Supervisor) void {
        const successor = if (self.successor) |*s| s else return;
        const kept = successor.readReady() catch |err| switch (err) {
            error.WouldBlock => return,
            // It closed the pipe, most likely by exiting: the exit, reaped next, says how;
            // the deadline stands if it did not exit.
            error.EndOfStream => {
                _ = linux.epoll_ctl(self.epfd, linux.EPOLL.CTL_DEL, successor.ready_fd, null);
                return;
            },
        };
        // `kept` lies in the successor's buffer: read it before the pipe closes. Its
        // workers go on serving what is queued on the sockets the new one did not keep,
        // then retire.
        const buf = self.leaving_buf;
        self.left_behind = upgrade.LeftBehind.init(buf, self.sockets, kept, &self.activated, now());
        self.feed(.successor_ready);
    }

    /// The new supervisor serves: this one steps back.
    fn announceUpgraded(self: *Supervisor, generation: u32) void {
        const pid = self.core.handedOverTo().?;
        // The new supervisor wrote the pid file before it said ready: it is its now.
        self.pid_file_written = false;
        var line = events.Line.begin("upgraded");
        line.int("generation", generation);
        line.int("successor", pid);
        line.int("serving_generation", self.core.generation);
        line.emit();
        log.info("pid {d} took over; generation {d} drains", .{ pid, self.core.generation });
        // The new supervisor binds the admin port now (it retries until it is free).
        if (self.admin) |*a| a.close();
        self.admin = null;
        self.notifier.sendf("MAINPID={d}\nREADY=1\nSTATUS=upgraded: pid {d} serves", .{
            pid, pid,
        });
    }

    fn closeSuccessorPipe(self: *Supervisor) void {
        const successor = self.successor orelse return;
        _ = linux.epoll_ctl(self.epfd, linux.EPOLL.CTL_DEL, successor.ready_fd, null);
        sys.close(successor.ready_fd);
        self.successor = null;
    }

    /// A child that is not a worker exited: the identity probe, or a new supervisor, before
    /// or after it took over.
    fn onOtherChildExit(self: *Supervisor, pid: linux.pid_t, status: u32) void {
        const exit = events.Exit.fromWaitStatus(status);
        var how: [48]u8 = undefined;
        if (self.probe) |*probe| if (probe.pid == pid) {
            probe.onExit(status);
            return self.finishProbeIfDone();
        };
        if (self.core.handedOverTo() == pid) {
            log.warn("pid {d}, which took over, {s}", .{ pid, exit.describe(&how) });
        }
        var detail: [96]u8 = undefined;
        const text = compat.bufPrint(&detail, "pid {d} {s} before it was ready", .{
            pid, exit.describe(&how),
        }) catch "it exited before it was ready";
        self.feed(.{ .process_exit = .{ .pid = pid, .detail = text } });
    }

    /// The new side of an upgrade, once its first generation is ready: the pid file is
    /// written; what the old supervisor's sockets that are not kept would still receive is
    /// steered to the kept ones; and the old supervisor learns which those are.
    fn takeOver(self: *Supervisor, handover: upgrade.Handover) void {
        self.handover = null;
        const by_cpu = if (self.options.join) null else if (self.locality) |*c| c else null;
        upgrade.steerHandedGroups(.{
            .sockets = self.sockets,
            .handed = &self.handed,
            .activated = &self.activated,
            .workers = self.workers,
            .by_cpu = by_cpu,
        });
        handover.announceReady(self.kept);
        log.info("took over from pid {d}", .{handover.from_pid});
    }

    /// With `cpuAffinity`: reads the CPUs workers are pinned to, and steers by CPU every
    /// group this supervisor opened itself (those an old supervisor handed over are steered
    /// once this one takes over, in `steerHandedGroups`). Another program's group (--join)
    /// or systemd's sockets are never steered: their sockets may sit anywhere in the group.
    pub fn setUpLocality(self: *Supervisor) void {
        if (!self.options.cpu_affinity) return;
        self.locality = locality.allowedCpus() orelse {
            events.emitDegraded("cpu_affinity", "cannot read this process's CPU affinity " ++
                "mask (sched_getaffinity); workers are not pinned, connections not steered");
            return;
        };
        if (self.options.join) return;
        for (config.listeners, self.activated, self.handed, 0..) |l, from_systemd, n, i| {
            if (from_systemd or n > 0) continue;
            const cpus_list = &self.locality.?;
            locality.steerByCpu(self.sockets[i], cpus_list, self.workers) catch |err| {
                upgrade.reportCpuSteering(l.name, err);
            };
        }
    }

    /// After an upgrade: once the sockets left behind are empty, this generation retires.
    fn checkLeftBehind(self: *Supervisor, t: u64) void {
        if (self.core.stopping != null or self.core.phase != .handed_over) return;
        const left = if (self.left_behind) |*l| l else return;
        if (left.settled(self.sockets, t)) self.feed(.left_behind_settled);
    }

    // Workers.

    /// A SIGHUP's new generation uses the upstream servers' names as they resolve now; a name
    /// that fails keeps the address it had (an `upstream_unresolved` event says which, and
    /// why), so a nameserver that is down does not take an upstream away.
    fn resolveUpstreamsAgain(self: *Supervisor) void {
        const table = &self.options.upstream_addresses;
        _ = resolve.resolveAll(table, .{}, .{ .keep = &reportUnresolved });
    }

    /// One `upstream_unresolved` event (and a warning) per name that failed on a SIGHUP.
    fn reportUnresolved(failure: resolve.Failure) void {
        log.warn("upstream {s}: server {s}:{d} did not resolve ({s}); keeping its address", .{
            failure.upstream, failure.server, failure.port, failure.reason,
        });
        var line = events.Line.begin("upstream_unresolved");
        line.string("upstream", failure.upstream);
        line.string("server", failure.server);
        line.string("reason", failure.reason);
        line.emit();
    }

    fn spawn(self: *Supervisor, record: u32, index: u16, generation: u32) void {
        const proc = &self.procs[record];
        assert(proc.pid == 0);
        self.metrics.claim(record, index, generation);
        const started = worker_process.start(.{
            .exe_path = self.exe_path,
            .envp = self.process.envp,
            .sockets = self.sockets,
            .workers = self.workers,
            .index = index,
            .generation = generation,
            .limits = self.options.limits,
            .drop_to = self.options.drop_to,
            .metrics_fd = self.metrics.fd,
            .metrics_cell = record,
            .access_log_path = self.options.access_log_path,
            .access_log_format = self.options.access_log_format,
            .upstream_addresses = &self.options.upstream_addresses,
            .pin_to = if (self.locality) |*c| c.forSlot(index) else null,
        }) catch |err| {
            log.err("cannot start worker {d}: {s}", .{ index, @errorName(err) });
            proc.spawn_error = @errorName(err);
            return;
        };
        proc.* = .{
            .pid = started.pid,
            .control_fd = started.control_fd,
            .report_fd = started.report_fd,
        };
        self.slots[index].last_pid = started.pid;
        self.scan_due = true;
        const data = token(Kind.report, record);
        const add = linux.EPOLL.CTL_ADD;
        sys.epollCtl(self.epfd, add, started.report_fd, linux.EPOLL.IN, data) catch |err| {
            // Unheard, it never reports ready: its generation's deadline, or the watchdog,
            // ends it.
            log.warn("cannot watch worker {d}'s reports: {s}", .{ index, @errorName(err) });
        };
    }

    /// Asks a worker to finish gracefully: its control pipe closes.
    fn retire(self: *const Supervisor, proc: *Proc) void {
        _ = self;
        const fd = proc.control_fd orelse return;
        sys.close(fd);
        proc.control_fd = null;
    }

    fn onReport(self: *Supervisor, record: u32) void {
        const proc = &self.procs[record];
        const fd = proc.report_fd orelse return;
        while (true) {
            const n = sys.read(fd, proc.report_buf[proc.report_len..]) catch |err| switch (err) {
                error.WouldBlock => return,
                error.Interrupted => continue,
                else => 0,
            };
            if (n == 0) {
                _ = linux.epoll_ctl(self.epfd, linux.EPOLL.CTL_DEL, fd, null);
                sys.close(fd);
                proc.report_fd = null;
                return self.tellExit(record);
            }
            proc.report_len += n;
            self.parseReports(record);
            // A line too long: drop it.
            if (proc.report_len == proc.report_buf.len) proc.report_len = 0;
        }
    }

    fn parseReports(self: *Supervisor, record: u32) void {
        const proc = &self.procs[record];
        while (compat.findScalar(u8, proc.report_buf[0..proc.report_len], '\n')) |end| {
            proc.last_beat_ms = now();
            if (worker_process.Report.parse(proc.report_buf[0..end])) |report| switch (report) {
                // A worker reaped meanwhile no longer serves, whatever it said before.
                .ready => if (!proc.exited) {
                    self.scan_due = true;
                    self.feed(.{ .worker_ready = record });
                },
                .beat => {},
                .mismatch => |fingerprint| self.onMismatch(record, fingerprint),
                .stats => |stats| proc.stats = stats,
            };
            const rest = proc.report_len - end - 1;
            const buf = &proc.report_buf;
            compat.copyLeft(buf[0..rest], buf[end + 1 .. proc.report_len]);
            proc.report_len = rest;
        }
    }

    /// The worker was built from another spec or has another supervisor: it refused to serve,
    /// and so will every worker the binary on disk starts. Only a new supervisor could run it.
    fn onMismatch(self: *Supervisor, record: u32, identity: []const u8) void {
        const spec_len = config.spec_fingerprint.len;
        const same_spec = identity.len > spec_len and
            std.mem.eql(u8, identity[0..spec_len], config.spec_fingerprint);
        const what = if (same_spec)
            "the binary on disk has another supervisor"
        else
            "the binary on disk was built from another spec";
        var detail: [160]u8 = undefined;
        const text = compat.bufPrint(&detail, "its identity {s}, this supervisor's {s}", .{
            identity[0..@min(identity.len, 48)], config.identity,
        }) catch "another identity";
        self.feed(.{ .worker_mismatch = .{ .record = record, .what = what, .detail = text } });
    }

    // Signals and timers.

    fn onSignal(self: *Supervisor) void {
        var info: linux.signalfd_siginfo = undefined;
        while (true) {
            const n = sys.read(self.sigfd, std.mem.asBytes(&info)) catch return;
            if (n != @sizeOf(linux.signalfd_siginfo)) return;
            const signo = info.signo;
            if (signo == compat.signalNumber(linux.SIG.CHLD)) {
                self.reap();
            } else if (signo == compat.signalNumber(linux.SIG.TERM) or
                signo == compat.signalNumber(linux.SIG.INT))
            {
                self.feed(.{ .signal = .term });
            } else if (signo == compat.signalNumber(linux.SIG.QUIT)) {
                self.feed(.{ .signal = .quit });
            } else if (signo == compat.signalNumber(linux.SIG.HUP)) {
                self.feed(.{ .signal = .hup });
            } else if (signo == compat.signalNumber(linux.SIG.USR1)) {
                self.reopenLogs();
            }
        }
    }

    /// SIGUSR1 (log rotation): the supervisor makes sure the request log's file exists, with
    /// its owner, then every worker, draining ones included, reopens it. The supervisor writes
    /// no file of its own: its events and log lines go to the standard output and error it
    /// was given.
    fn reopenLogs(self: *Supervisor) void {
        if (!access_log.prepareFile(access_log.ownerFor(self.options.drop_to))) {
            log.warn("SIGUSR1: workers keep writing the file they have open", .{});
            return;
        }
        var told: u32 = 0;
        for (self.procs) |proc| {
            if (proc.pid == 0 or proc.exited) continue;
            _ = linux.kill(proc.pid, linux.SIG.USR1);
            told += 1;
        }
        log.info("SIGUSR1: {d} workers reopen the request log", .{told});
    }

    /// The first stop: after an upgrade the service goes on, so systemd must not hear it
    /// stop; the supervisor's copies of the sockets close first, or queues would outlive
    /// every acceptor (workers hold their own and drain what is queued).
    fn announceStopping(self: *Supervisor, kind: core_mod.StopKind) void {
        const successor = self.core.handedOverTo();
        if (successor == null) self.notifier.send("STOPPING=1");
        for (self.sockets) |fd| sys.close(fd);
        var line = events.Line.begin("stopping");
        line.string("mode", @tagName(kind));
        line.int("drain_timeout_ms", self.options.limits.drain_timeout_ms);
        if (successor) |pid| line.int("successor", pid);
        line.emit();
    }

    /// Opens the admin listener, if one is asked for; false after a failure it reported. In
    /// an upgrade the port may still be the old supervisor's: it is retried then.
    pub fn startAdmin(self: *Supervisor, upgrading: bool) bool {
        const endpoints = &self.options.endpoints;
        const admin = openAdmin(self.epfd, self.options, endpoints, upgrading) orelse return false;
        self.admin = admin.server;
        const t = now();
        if (admin.retry) self.admin_retry_at_ms = t + admin_retry_ms;
        const window_ms = self.core.options.upgradeTimeoutMs() + admin_retry_slack_ms;
        self.admin_retry_until_ms = t + window_ms;
        return true;
    }

    /// An upgrade's new supervisor binds the admin port once the old one let it go (when
    /// this one said ready), trying every `admin_retry_ms` for a bounded time.
    fn retryAdmin(self: *Supervisor, t: u64) void {
        self.admin_retry_at_ms = null;
        const endpoint = self.options.admin orelse return;
        const last = t >= self.admin_retry_until_ms;
        const origin: admin_server.Origin = if (self.options.admin_from_flag) .flag else .spec;
        const options = adminOptions(self.epfd, self.options);
        const endpoints = &self.options.endpoints;
        var opened = admin_server.start(endpoint, origin, endpoints, options, !last) catch {
            if (!last) self.admin_retry_at_ms = t + admin_retry_ms;
            return;
        };
        opened.responder = admin_view.responder(self);
        self.admin = opened;
        log.info("admin listener on port {d}", .{opened.port});
    }

    /// A graceful stop begins with its shutdown delay: /readyz answers 503 from now on,
    /// the workers serve on, and the drain (`stopping`) follows when the delay ends.
    fn announceUnready(self: *Supervisor, delay_ms: u64) void {
        self.notifier.sendf("STOPPING=1\nSTATUS=shutdown delay: serving {d} ms more, not " ++
            "ready", .{delay_ms});
        log.info("stopping: not ready; serving {d} ms more before the drain", .{delay_ms});
        var line = events.Line.begin("unready");
        line.int("shutdown_delay_ms", @intCast(delay_ms));
        line.emit();
    }

    fn onTimers(self: *Supervisor) void {
        const t = now();
        if (self.systemd_watchdog_ms) |interval| if (t >= self.next_systemd_watchdog_ms) {
            self.notifier.send("WATCHDOG=1");
            self.next_systemd_watchdog_ms = t + interval;
        };
        if (self.admin) |*a| a.expire(t);
        if (self.admin_retry_at_ms) |at| if (t >= at) self.retryAdmin(t);
        self.tellLateExits(t);
        // Before the deadlines: a predecessor that exited just now lets its upgrade go on.
        self.pollPredecessor();
        self.feed(.tick);
        self.checkLeftBehind(t);
    }

    /// Reaps every child that exited. One SIGCHLD may stand for many exits, so a turn that
    /// reaches its bound (workers, plus the probe and new supervisors) reaps again on the next
    /// turn rather than leave an exit unnoticed until some other child exits.
    fn reap(self: *Supervisor) void {
        self.reap_due = false;
        var reaped: usize = 0;
        while (reaped < self.procs.len + 4) : (reaped += 1) {
            const result = (compat.waitpid(-1, linux.W.NOHANG) catch return) orelse return;
            for (self.procs, 0..) |*proc, i| {
                if (proc.pid == result.pid) {
                    proc.exited = true;
                    proc.exit = events.Exit.fromWaitStatus(result.status);
                    proc.exit_due_ms = now() + exit_grace_ms;
                    // Its last reports, and the pipe's end (which tells the core).
                    self.onReport(@intCast(i));
                    if (proc.report_fd == null) self.tellExit(@intCast(i));
                    break;
                }
            } else self.onOtherChildExit(result.pid, result.status);
        }
        self.reap_due = true;
    }

    /// Tells the core that a reaped worker is gone, once: at its report pipe's end, or when
    /// `exit_grace_ms` passed (see `Proc.exit_due_ms`).
    fn tellExit(self: *Supervisor, record: u32) void {
        const proc = &self.procs[record];
        if (!proc.exited or proc.exit_due_ms == null) return;
        proc.exit_due_ms = null;
        self.feed(.{ .worker_exit = record });
    }

    /// Reaped workers whose report pipe outlived `exit_grace_ms`: the core hears of them.
    fn tellLateExits(self: *Supervisor, t: u64) void {
        for (self.procs, 0..) |proc, i| {
            const at = proc.exit_due_ms orelse continue;
            if (t >= at) self.tellExit(@intCast(i));
        }
    }

    /// The core let a reaped worker go: its pipes close, its counts join its slot's.
    fn onWorkerGone(self: *Supervisor, gone: core_mod.WorkerExit) void {
        const proc = &self.procs[gone.record];
        assert(proc.exited);
        if (proc.report_fd) |fd| {
            _ = linux.epoll_ctl(self.epfd, linux.EPOLL.CTL_DEL, fd, null);
            sys.close(fd);
        }
        if (proc.control_fd) |fd| sys.close(fd);
        self.scan_due = true;

        const slot = &self.slots[gone.index];
        slot.totals.add(proc.stats);
        if (!gone.expected) slot.restarts += 1;
        self.metrics.fold(gone.record, .{ .expected = gone.expected, .hung = proc.hung });
        slot.last_exit = proc.exit;

        var line = events.Line.begin("worker_exit");
        line.int("generation", gone.generation);
        line.int("index", gone.index);
        line.int("pid", proc.pid);
        proc.exit.write(&line);
        line.boolean("expected", gone.expected);
        line.counters(proc.stats);
        line.emit();
        if (self.core.slots[gone.index].respawn_at_ms) |at| if (!gone.expected) {
            var how: [48]u8 = undefined;
            log.warn("worker {d} (pid {d}) {s} unexpectedly; replacing it in {d} ms", .{
                gone.index, proc.pid, proc.exit.describe(&how), at -| self.core.now_ms,
            });
        };
        proc.* = .{};
    }

    // Heartbeats and adoption.

    /// The watchdog, then adoption: finds the dark slots and has a healthy worker adopt
    /// each; releases the slots whose own worker is back. O(records + slots) per scan.
    fn scanSlots(self: *Supervisor) void {
        const t = now();
        if (!self.scan_due and t < self.next_scan_ms) return;
        self.scan_due = false;
        self.next_scan_ms = t + scan_interval_ms;
        const watchdog_ms = self.options.limits.watchdog_ms;
        // A supervisor that was itself not running (stopped, or starved of CPU) has read
        // no heartbeat meanwhile: give every worker a fresh start instead of blaming it.
        const away = t - self.last_scan_ms;
        const stalled = self.last_scan_ms != 0 and away > worker_link.adoptAfterMs(watchdog_ms);
        if (watchdog_ms > 0 and stalled) {
            for (self.procs) |*proc| proc.last_beat_ms = @max(proc.last_beat_ms, t);
        }
        self.last_scan_ms = t;
        if (self.core.stopping != null) return;
        if (watchdog_ms > 0) self.checkWatchdog(t, watchdog_ms);
        if (self.core.generation == 0) return;

        for (self.slots) |*slot| slot.owner = null;
        for (self.core.records, 0..) |maybe, i| {
            const w = maybe orelse continue;
            if (w.generation != self.core.generation or w.retired) continue;
            if (self.procs[i].pid == 0) continue;
            assert(self.slots[w.index].owner == null); // one per slot per generation
            self.slots[w.index].owner = @intCast(i);
        }
        for (self.slots, 0..) |*slot, i| {
            const dark = if (slot.owner) |o| !self.isHealthy(o, t) else true;
            if (slot.adopter) |a| {
                const still = self.adopterRecord(slot) != null and self.isHealthy(a, t);
                if (dark and still) continue;
                self.endAdoption(slot, @intCast(i));
            }
            if (dark) self.adopt(@intCast(i), t);
        }
    }

    /// Kills the workers silent for the whole watchdog time (SIGSTOPped, stuck in a loop
    /// or a blocking call), and those of the serving generation never ready. Their exits
    /// reach the core as any other.
    fn checkWatchdog(self: *Supervisor, t: u64, watchdog_ms: u32) void {
        for (self.core.records, self.procs) |maybe, *proc| {
            const w = maybe orelse continue;
            if (w.retired or proc.hung or proc.exited or proc.pid == 0) continue;
            if (!w.ready) {
                if (w.generation != self.core.generation) continue;
                const limit_ms = self.core.options.ready_timeout_ms;
                if (t - w.started_ms < limit_ms) continue;
                log.warn("worker {d} (pid {d}) not ready in {d} ms: killing it", .{
                    w.index, proc.pid, limit_ms,
                });
                proc.hung = true;
                _ = linux.kill(proc.pid, linux.SIG.KILL);
                continue;
            }
            const silent = t -| proc.last_beat_ms;
            if (silent < watchdog_ms) continue;
            proc.hung = true;
            log.warn("worker {d} (pid {d}) silent for {d} ms: killing it", .{
                w.index, proc.pid, silent,
            });
            _ = linux.kill(proc.pid, linux.SIG.KILL);
            var line = events.Line.begin("worker_hung");
            line.int("generation", w.generation);
            line.int("index", w.index);
            line.int("pid", proc.pid);
            line.int("silent_ms", @intCast(silent));
            line.emit();
        }
    }

    /// Ready, not draining, of the serving generation, and beating.
    fn isHealthy(self: *const Supervisor, record: u32, t: u64) bool {
        const w = self.core.records[record] orelse return false;
        const proc = self.procs[record];
        if (w.generation != self.core.generation or w.retired) return false;
        if (!w.ready or proc.hung or proc.exited or proc.pid == 0) return false;
        const watchdog_ms = self.options.limits.watchdog_ms;
        if (watchdog_ms == 0) return true;
        return t -| proc.last_beat_ms < worker_link.adoptAfterMs(watchdog_ms);
    }

    fn adopterRecord(self: *Supervisor, slot: *const Slot) ?*Proc {
        const a = slot.adopter orelse return null;
        if (self.core.records[a] == null) return null;
        const proc = &self.procs[a];
        // A record index is reused once its worker is reaped: the pid tells them apart.
        return if (proc.pid == slot.adopter_pid) proc else null;
    }

    /// Has a healthy worker among the `ringLength` slots before `index` adopt it (they hold
    /// its sockets, see `worker_process.formatRole`): the one adopting the fewest slots so
    /// far, so that neighbouring dark slots spread over their neighbours, the nearest first.
    fn adopt(self: *Supervisor, index: u16, t: u64) void {
        const slot = &self.slots[index];
        assert(slot.adopter == null);
        var best: ?u32 = null;
        var best_load: usize = std.math.maxInt(usize);
        var distance: u16 = 1;
        while (distance <= worker_process.ringLength(self.workers)) : (distance += 1) {
            const candidate = worker_process.ringSlot(index, self.workers - distance, self.workers);
            const o = self.slots[candidate].owner orelse continue;
            if (!self.isHealthy(o, t)) continue;
            const load = self.adoptionsBy(o);
            if (load < best_load) {
                best = o;
                best_load = load;
            }
        }
        const o = best orelse return;
        const proc = &self.procs[o];
        if (!command(proc, .{ .adopt = index })) return;
        slot.adopter = o;
        slot.adopter_pid = proc.pid;
        const adopter_index = self.core.records[o].?.index;
        log.info("slot {d} is dark: worker {d} (pid {d}) adopts it", .{
            index, adopter_index, proc.pid,
        });
    }

    fn adoptionsBy(self: *const Supervisor, record: u32) usize {
        var count: usize = 0;
        for (self.slots) |slot| {
            if (slot.adopter == record) count += 1;
        }
        return count;
    }

    /// The slot's own worker is back, or its adopter is no longer fit to serve it.
    fn endAdoption(self: *Supervisor, slot: *Slot, index: u16) void {
        if (self.adopterRecord(slot)) |proc| {
            // A retired adopter has no control pipe: it drains what it adopted and exits.
            if (command(proc, .{ .release = index })) {
                const adopter_index = self.core.records[slot.adopter.?].?.index;
                log.info("slot {d} released by worker {d} (pid {d})", .{
                    index, adopter_index, proc.pid,
                });
            }
        }
        slot.adopter = null;
        slot.adopter_pid = 0;
    }

    /// Writes one command on a worker's control pipe; false when it could not be sent.
    fn command(proc: *const Proc, cmd: worker_link.Command) bool {
        const fd = proc.control_fd orelse return false;
        var buf: [32]u8 = undefined;
        const line = cmd.format(&buf);
        // The pipe never holds more than a few commands, far below its capacity: a short
        // or failed write means the worker is gone or stuck, and a later scan moves on.
        const rc = linux.write(fd, line.ptr, line.len);
        return compat.errno(rc) == .SUCCESS and rc == line.len;
    }

    fn finish(self: *Supervisor) void {
        // A new supervisor that failed and still runs (it may ignore SIGTERM, or have it
        // blocked, as the mask this one passed on does) does not outlive this one.
        if (self.core.failed_successor) |f| _ = linux.kill(f.pid, linux.SIG.KILL);
        var reports: [1024]events.WorkerReport = undefined;
        for (self.slots, 0..) |slot, i| {
            reports[i] = .{
                .index = @intCast(i),
                .pid = slot.last_pid,
                .stats = slot.totals,
                .exit = slot.last_exit,
            };
        }
        const reason: worker_mod.StopReason = switch (self.core.stopping orelse .graceful) {
            .graceful => .graceful,
            .immediate => .immediate,
        };
        const workers = reports[0..self.workers];
        events.emitStoppedFor(self.core.generation, reason, workers, self.core.handedOverTo());
        if (self.pid_file_written) {
            if (self.options.pid_file) |path| pid_file.removeIfOwn(path, self.pid);
        }
        if (self.admin) |*a| a.close();
    }
};

/// How often, and for how long past the upgrade's own limit, an upgrade's new supervisor tries
/// to bind the admin port the old one holds until it has handed over (when this one says ready).
const admin_retry_ms = 100;
const admin_retry_slack_ms = 5_000;

const AdminStart = struct { server: ?admin_server.Server = null, retry: bool = false };

/// The admin listener, when one is asked for; null after a failure it has reported. In an
/// upgrade a port in use is the old supervisor's: `retry`.
fn openAdmin(
    epfd: sys.Fd,
    options: cli.Options,
    endpoints: *const [listener_count]address.Endpoint,
    upgrading: bool,
) ?AdminStart {
    const endpoint = options.admin orelse return .{};
    const origin: admin_server.Origin = if (options.admin_from_flag) .flag else .spec;
    const with = adminOptions(epfd, options);
    const server = admin_server.start(endpoint, origin, endpoints, with, upgrading) catch |err| {
        if (upgrading and err == error.AddressInUse) return .{ .retry = true };
        return null;
    };
    return .{ .server = server };
}

fn adminOptions(epfd: sys.Fd, options: cli.Options) admin_server.Options {
    return .{
        .epfd = epfd,
        .token = adminToken,
        .header_timeout_ms = options.limits.header_timeout_ms,
        .write_timeout_ms = options.limits.write_timeout_ms,
        .max_body_bytes = options.limits.max_body_bytes,
    };
}

fn adminToken(index: u32) u64 {
    return token(Kind.admin, index);
}

/// A supervisor with no processes and no descriptors, for tests of what the driver decides
/// alone; the tables are the caller's.
fn testSupervisor(
    records: []?core_mod.Worker,
    procs: []Proc,
    core_slots: []core_mod.Slot,
    slots: []Slot,
    actions: []core_mod.Action,
) Supervisor {
    const no_variables = [_:null]?[*:0]const u8{};
    @memset(procs, .{});
    @memset(slots, .{});
    const workers: u16 = @intCast(slots.len);
    return .{
        .workers = workers,
        .options = .{},
        .process = .{ .args = &.{}, .envp = &no_variables },
        .exe_path = "/nonexistent",
        .pid = 1,
        .sockets = &.{},
        .ports = @splat(0),
        .core = core_mod.Core.init(.{
            .workers = workers,
            .drain_timeout_ms = 1_000,
        }, records, core_slots),
        // Never freed: a test's few pages.
        .metrics = metrics_region.Region.create(
            std.heap.page_allocator,
            workers,
            @intCast(records.len),
        ) catch unreachable,
        .procs = procs,
        .slots = slots,
        .actions = .{ .list = actions },
        .epfd = -1,
        .sigfd = -1,
    };
}

test "every phase has a deadline, and the loop wakes for it" {
    var records: [4]?core_mod.Worker = undefined;
    var procs: [4]Proc = undefined;
    var core_slots: [1]core_mod.Slot = undefined;
    var slots: [1]Slot = undefined;
    var actions: [64]core_mod.Action = undefined;
    var s = testSupervisor(&records, &procs, &core_slots, &slots, &actions);
    s.options.limits.watchdog_ms = 0;
    try std.testing.expectEqual(@as(i32, -1), s.waitTimeoutMs());
    s.core.last_generation = 1;
    const later = sys.monotonicMs() + 60_000;
    s.core.phase = .{ .starting = .{ .generation = 1, .deadline_ms = later } };
    const wait = s.waitTimeoutMs();
    try std.testing.expect(wait > 0 and wait <= 60_000);
    s.core.phase = .{ .starting = .{ .generation = 1, .deadline_ms = 0 } };
    try std.testing.expectEqual(@as(i32, 0), s.waitTimeoutMs());
    s.core.predecessor = 7;
    s.core.phase = .{ .awaiting_predecessor = .{ .deadline_ms = later } };
    // Polled: the predecessor's exit is seen through getppid.
    try std.testing.expect(s.waitTimeoutMs() <= scan_interval_ms);
    s.core.phase = .serving;
    try std.testing.expect(s.core.phase.deadlineMs() == null);
}

test "the driver tells the core when the predecessor is gone" {
    var records: [4]?core_mod.Worker = undefined;
    var procs: [4]Proc = undefined;
    var core_slots: [1]core_mod.Slot = undefined;
    var slots: [1]Slot = undefined;
    var actions: [64]core_mod.Action = undefined;
    var s = testSupervisor(&records, &procs, &core_slots, &slots, &actions);
    // This process's parent plays a predecessor that still runs.
    s.core.predecessor = linux.getppid();
    s.pollPredecessor();
    try std.testing.expect(s.core.predecessor != null);
    s.core.predecessor = linux.getppid() +% 1;
    s.pollPredecessor();
    try std.testing.expect(s.core.predecessor == null);
}

test "the admin listener's health names each slot without a ready, beating worker" {
    var records: [8]?core_mod.Worker = undefined;
    var procs: [8]Proc = undefined;
    var core_slots: [2]core_mod.Slot = undefined;
    var slots: [2]Slot = undefined;
    var actions: [64]core_mod.Action = undefined;
    var s = testSupervisor(&records, &procs, &core_slots, &slots, &actions);
    s.options.limits.watchdog_ms = 1_000;
    s.core.generation = 1;
    s.core.last_generation = 1;
    records[0] = .{ .index = 0, .generation = 1, .started_ms = 0, .ready = true };
    procs[0] = .{ .pid = 10, .last_beat_ms = 1_000 };
    records[1] = .{ .index = 1, .generation = 1, .started_ms = 0 };
    procs[1] = .{ .pid = 11, .last_beat_ms = 1_000 };
    try std.testing.expect(admin_view.slotTrouble(&s, 0, 1_100) == null);
    const Trouble = admin_view.Trouble;
    try std.testing.expectEqual(Trouble.starting, admin_view.slotTrouble(&s, 1, 1_100).?);
    // Silent for as long as it takes to have its slot adopted: hung, before the watchdog.
    const silent = 1_000 + worker_link.adoptAfterMs(1_000);
    try std.testing.expectEqual(Trouble.hung, admin_view.slotTrouble(&s, 0, silent).?);
    // A draining worker of the serving generation still serves its slot.
    records[0].?.retired = true;
    try std.testing.expect(admin_view.slotTrouble(&s, 0, 1_100) == null);
    procs[1].exited = true;
    try std.testing.expectEqual(Trouble.no_worker, admin_view.slotTrouble(&s, 1, 1_100).?);
    // Not ready before the first generation, nor once a stop (or its delay) began.
    try std.testing.expect(s.core.isReady());
    s.core.shutdown_delay_until_ms = 5_000;
    try std.testing.expect(!s.core.isReady());
}
