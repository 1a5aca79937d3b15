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
//! How a worker process is started and talks back: `worker_process.zig`.
const std = @import("std");
const config = @import("../config.zig");
const compat = @import("../compat.zig");
const cli = @import("../cli.zig");
const listener = @import("../net/listener.zig");
const activation = @import("../systemd/activation.zig");
const address = @import("../address.zig");
const worker_mod = @import("../worker/stop.zig");
const stats_mod = @import("../worker/stats.zig");
const worker_process = @import("worker_process.zig");
const worker_link = @import("worker_link.zig");
const events = @import("../events.zig");
const pid_file = @import("pid_file.zig");
const notify = @import("../systemd/notify.zig");
const upgrade = @import("../upgrade/upgrade.zig");
const log = @import("../log.zig");
const sys = @import("../net/sys.zig");
const cpus = @import("cpus.zig");
const linux = std.os.linux;
const assert = std.debug.assert;

const listener_count = config.listeners.len;
/// How long a new worker may take to report ready before its generation is abandoned.
const ready_timeout_ms = 10_000;
/// Extra time past the drain timeout before a worker that has not exited is killed.
const kill_grace_ms = 1_000;
/// A worker that ran this long before crashing is replaced without delay.
const stable_run_ms = 10_000;
const max_backoff_ms = 10_000;
const max_events = 64;
/// How often slots are checked for silence while the watchdog is on or a slot is adopted.
const scan_interval_ms = 50;
/// How long a new supervisor may take to say ready: its own workers' limit, and its start.
const upgrade_timeout_ms = ready_timeout_ms + 5_000;
/// How long an upgrade waits for the supervisor this one took over from to exit, past what
/// that one's own limits allow it (its left-behind sockets, then its drain and kill grace).
const predecessor_slack_ms = 5_000;

const Kind = struct {
    const signal: u32 = 0;
    const report: u32 = 1;
    const successor: u32 = 2;
    const probe: u32 = 3;
};

fn token(kind: u32, index: u32) u64 {
    return (@as(u64, kind) << 32) | index;
}

/// One worker process, from fork until it has been reaped.
const Record = struct {
    pid: linux.pid_t,
    index: u16,
    generation: u32,
    started_ms: u64,
    /// The supervisor's end of the control pipe; closed to ask for a graceful stop.
    control_fd: ?sys.Fd,
    /// The supervisor's end of the report pipe; closed at end of file.
    report_fd: ?sys.Fd,
    ready: bool = false,
    /// Its generation failed to start and was killed: it never served.
    abandoned: bool = false,
    exited: bool = false,
    exit: events.Exit = .{ .code = 0 },
    stats: stats_mod.Stats = .{},
    /// When set, the worker is killed if it is still running at this time.
    kill_at_ms: ?u64 = null,
    report_buf: [1024]u8 = undefined,
    report_len: usize = 0,
    /// When it last reported anything (heartbeats included).
    last_beat_ms: u64 = 0,
    /// The watchdog killed it.
    hung: bool = false,
};

const Slot = struct {
    crashes: u32 = 0,
    respawn_at_ms: ?u64 = null,
    /// The generation a pending respawn is for: a respawn never outlives its generation.
    respawn_generation: u32 = 0,
    /// The serving generation's non-draining worker of this slot (a record index), as of
    /// the last scan.
    owner: ?u32 = null,
    /// The worker (record index and pid) that adopted this dark slot.
    adopter: ?u32 = null,
    adopter_pid: linux.pid_t = 0,
    totals: stats_mod.Stats = .{},
    last_pid: linux.pid_t = 0,
    last_exit: ?events.Exit = null,
};

const StopKind = enum { graceful, immediate };

/// What a SIGHUP set going, one thing at a time; `serving` when nothing is under way. Every
/// phase but the last has a deadline, and each ends in `serving` (with a `ready` or an
/// `error` event) or, for an upgrade, in `handed_over`: no restart or upgrade can hang.
const Phase = union(enum) {
    /// Nothing under way.
    serving,
    /// Asking the binary on disk who it is (`upgrade.Probe`, its own deadline).
    probing: upgrade.Probe,
    /// A new generation of workers starts: all ready by `deadline_ms`, or abandoned.
    starting: Starting,
    /// An upgrade waits for the supervisor this one took over from to exit: until then its
    /// left-behind sockets are members of the groups, which must not change meanwhile.
    awaiting_predecessor: Awaiting,
    /// A new supervisor runs from the binary on disk and has not said ready.
    upgrading: Upgrading,
    /// A new supervisor took over: this one serves what is left behind, then drains.
    handed_over: HandedOver,

    const Starting = struct { generation: u32, deadline_ms: u64 };
    const Awaiting = struct { pid: linux.pid_t, deadline_ms: u64 };
    const Upgrading = struct { successor: upgrade.Successor, deadline_ms: u64 };
    const HandedOver = struct { pid: linux.pid_t, left_behind: upgrade.LeftBehind };

    /// The deadline of the phase, if it has one.
    fn deadlineMs(self: *const Phase) ?u64 {
        return switch (self.*) {
            .serving, .handed_over => null,
            .probing => |*p| p.deadline_ms,
            .starting => |*s| s.deadline_ms,
            .awaiting_predecessor => |*a| a.deadline_ms,
            .upgrading => |*u| u.deadline_ms,
        };
    }
};

/// A new supervisor that failed: stopped with SIGTERM, then SIGKILL at `kill_at_ms`.
const FailedSuccessor = struct { pid: linux.pid_t, kill_at_ms: u64 };

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
    records: []?Record,
    slots: []Slot,
    epfd: sys.Fd,
    sigfd: sys.Fd,
    /// The generation that serves; 0 before the first is ready.
    generation: u32 = 0,
    /// The newest generation number handed out; a failed generation's number is not reused.
    last_generation: u32 = 0,
    /// What a SIGHUP set going (a restart, an upgrade), or `serving`.
    phase: Phase = .serving,
    /// A SIGHUP that arrived while a restart was under way: one more restart follows it.
    restart_queued: bool = false,
    stopping: ?StopKind = null,
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
    /// The old supervisor this one took over from, while it still drains (it is this one's
    /// parent until it exits). The next upgrade waits for it: until then its left-behind
    /// sockets are still members of the groups, and a group must not change meanwhile.
    predecessor: ?linux.pid_t = null,
    /// A new supervisor whose upgrade failed, until it is gone.
    failed_successor: ?FailedSuccessor = null,
    /// One flag per socket, for `Phase.handed_over`'s left-behind sockets.
    leaving_buf: []bool = &.{},

    fn now() u64 {
        return sys.monotonicMs();
    }

    /// systemd's watchdog (WATCHDOG_USEC for this process): WATCHDOG=1 from this loop.
    fn armSystemdWatchdog(self: *Supervisor, envp: [*:null]const ?[*:0]const u8) void {
        const interval = notify.watchdogIntervalMs(envp, self.pid) orelse return;
        self.systemd_watchdog_ms = interval;
        self.next_systemd_watchdog_ms = now();
        log.info("systemd watchdog: WATCHDOG=1 every {d} ms", .{interval});
    }

    /// Serves until stopped; returns the process exit code.
    pub fn run(self: *Supervisor) u8 {
        self.startGeneration();
        var list: [max_events]linux.epoll_event = undefined;
        while (!self.finished()) {
            self.assertInvariants();
            const n = sys.epollWait(self.epfd, &list, self.waitTimeoutMs()) catch |err| {
                log.err("epoll_wait failed: {s}", .{@errorName(err)});
                self.beginStop(.immediate);
                return 1;
            };
            for (list[0..n]) |event| {
                const data = event.data.u64;
                switch (@as(u32, @intCast(data >> 32))) {
                    Kind.signal => self.onSignal(),
                    Kind.report => self.onReport(@truncate(data)),
                    Kind.successor => self.onSuccessorReadable(),
                    Kind.probe => self.onProbeReadable(),
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

    /// What must hold between any two turns of the loop (checked in Debug and ReleaseSafe).
    fn assertInvariants(self: *const Supervisor) void {
        if (!compat.has_safety) return;
        assert(self.generation <= self.last_generation);
        assert(self.liveCount() <= self.records.len);
        switch (self.phase) {
            .serving => {},
            .probing => |*p| {
                assert(p.pid > 0);
                assert(self.stopping == null);
            },
            .starting => |*s| {
                assert(s.generation > self.generation);
                assert(s.generation <= self.last_generation);
                assert(self.stopping == null);
            },
            .awaiting_predecessor => |*a| {
                assert(self.predecessor == a.pid);
                assert(self.stopping == null);
            },
            .upgrading => |*u| {
                assert(u.successor.pid > 0);
                assert(u.successor.ready_fd >= 0);
                assert(self.stopping == null);
            },
            .handed_over => |*h| {
                assert(h.pid > 0);
                assert(!self.restart_queued);
                assert(!self.pid_file_written);
            },
        }
        if (self.stopping != null) {
            assert(self.phase == .serving or self.phase == .handed_over);
            for (self.slots) |slot| assert(slot.respawn_at_ms == null);
        }
        for (self.slots) |slot| {
            if (slot.respawn_at_ms != null) assert(slot.respawn_generation == self.generation);
        }
        self.assertOneWorkerPerSlot();
    }

    /// At most one worker per slot and generation that has not been asked to stop.
    fn assertOneWorkerPerSlot(self: *const Supervisor) void {
        for (self.records, 0..) |maybe, i| {
            const r = maybe orelse continue;
            assert(r.index < self.workers);
            assert(r.generation <= self.last_generation);
            if (r.control_fd == null) continue;
            for (self.records[i + 1 ..]) |other_maybe| {
                const other = other_maybe orelse continue;
                if (other.control_fd == null) continue;
                assert(!(other.index == r.index and other.generation == r.generation));
            }
        }
    }

    fn finished(self: *const Supervisor) bool {
        return self.stopping != null and self.liveCount() == 0;
    }

    fn freeRecords(self: *const Supervisor) usize {
        return self.records.len - self.liveCount();
    }

    fn liveCount(self: *const Supervisor) usize {
        var count: usize = 0;
        for (self.records) |r| {
            if (r != null) count += 1;
        }
        return count;
    }

    /// The generation being started, if one is.
    fn startingGeneration(self: *const Supervisor) ?u32 {
        return switch (self.phase) {
            .starting => |s| s.generation,
            else => null,
        };
    }

    /// The new supervisor that took over, once one has.
    fn handedOverTo(self: *const Supervisor) ?linux.pid_t {
        return switch (self.phase) {
            .handed_over => |h| h.pid,
            else => null,
        };
    }

    fn waitTimeoutMs(self: *const Supervisor) i32 {
        if (self.scan_due or self.reap_due) return 0;
        var next: ?u64 = self.phase.deadlineMs();
        if (self.failed_successor) |f| next = minOf(next, f.kill_at_ms);
        // Polled: a left-behind queue emptying, and the predecessor's exit (getppid).
        const polled = self.phase == .handed_over or self.phase == .awaiting_predecessor;
        if (polled and self.stopping == null) next = minOf(next, now() + scan_interval_ms);
        var adopted = false;
        for (self.records) |maybe| {
            const r = maybe orelse continue;
            if (r.kill_at_ms) |at| next = minOf(next, at);
        }
        for (self.slots) |slot| {
            if (slot.respawn_at_ms) |at| next = minOf(next, at);
            if (slot.adopter != null) adopted = true;
        }
        if (self.stopping == null and (self.options.limits.watchdog_ms > 0 or adopted)) {
            next = minOf(next, self.next_scan_ms);
        }
        if (self.systemd_watchdog_ms != null) next = minOf(next, self.next_systemd_watchdog_ms);
        const deadline = next orelse return -1;
        const t = now();
        if (deadline <= t) return 0;
        return @intCast(@min(deadline - t, std.math.maxInt(i32)));
    }

    fn minOf(a: ?u64, b: u64) u64 {
        return if (a) |x| @min(x, b) else b;
    }

    // Generations.

    fn startGeneration(self: *Supervisor) void {
        assert(self.phase == .serving);
        assert(self.stopping == null);
        if (self.freeRecords() < self.workers) {
            // Older generations are still draining and hold every process slot: the restart
            // waits for them instead of piling up processes (bounded by the drain timeout).
            self.restart_queued = true;
            log.info("restart queued: waiting for draining workers to exit", .{});
            return;
        }
        self.last_generation += 1;
        const generation = self.last_generation;
        self.phase = .{ .starting = .{
            .generation = generation,
            .deadline_ms = now() + ready_timeout_ms,
        } };
        // A first generation after an upgrade continues the old supervisor's numbers: it is
        // not a restart of this one.
        if (self.generation != 0) {
            log.info("starting generation {d}", .{generation});
            self.notifier.reloading();
            var line = events.Line.begin("restarting");
            line.int("generation", generation);
            line.emit();
        }
        var index: u16 = 0;
        while (index < self.workers) : (index += 1) {
            self.spawn(index, generation) catch |err| {
                self.abandonGeneration("cannot start a worker", @errorName(err));
                return;
            };
        }
    }

    /// Every worker of the starting generation reported ready: it takes over, and the
    /// previous generation drains.
    fn generationReady(self: *Supervisor, generation: u32) void {
        assert(self.startingGeneration() == generation);
        assert(self.generationIsReady(generation));
        const previous = self.generation;
        self.generation = generation;
        self.phase = .serving;
        // The new generation has a worker in every slot: a respawn pending for the old one
        // would be a second worker in a slot.
        for (self.slots) |*slot| slot.respawn_at_ms = null;
        self.scan_due = true;
        self.writePidFileOnce();
        self.announceReady(generation);
        if (previous != 0) self.retireGeneration(previous);
        self.startQueuedRestart();
    }

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
        for (self.records) |maybe| {
            const r = maybe orelse continue;
            if (r.generation == generation) pids[r.index] = r.pid;
        }
        var endpoints = self.options.endpoints;
        for (&endpoints, self.ports) |*e, port| e.port = port;
        var line: events.Line = undefined;
        const workers = pids[0..self.workers];
        events.readyLine(&line, .supervisor, generation, workers, endpoints, self.ports);
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

    /// Starts the restart a SIGHUP queued, once nothing else is under way.
    fn startQueuedRestart(self: *Supervisor) void {
        if (!self.restart_queued or self.stopping != null) return;
        if (self.phase != .serving) return;
        self.restart_queued = false;
        self.restart();
    }

    /// A restart from the binary on disk: first its identity (`upgrade.Probe`), then a new
    /// generation of workers when it is this program, a new supervisor when its spec or its
    /// supervisor differs (`finishProbeIfDone`).
    fn restart(self: *Supervisor) void {
        assert(self.phase == .serving);
        assert(self.stopping == null);
        const probe = upgrade.Probe.start(self.exe_path, self.process.envp, now()) catch |err| {
            return self.probeFailed(@errorName(err));
        };
        self.phase = .{ .probing = probe };
        const data = token(Kind.probe, 0);
        const add = linux.EPOLL.CTL_ADD;
        sys.epollCtl(self.epfd, add, probe.fd.?, linux.EPOLL.IN, data) catch |err| {
            // Unwatched, the probe still ends at its deadline.
            log.warn("cannot watch the identity probe: {s}", .{@errorName(err)});
        };
    }

    fn onProbeReadable(self: *Supervisor) void {
        const probe = switch (self.phase) {
            .probing => |*p| p,
            else => return,
        };
        if (!probe.onReadable()) return;
        self.closeProbeOutput(probe);
        self.finishProbeIfDone();
    }

    /// The probe answered (output read and exit reaped): restart or upgrade accordingly.
    fn finishProbeIfDone(self: *Supervisor) void {
        const probe = switch (self.phase) {
            .probing => |*p| p,
            else => return,
        };
        if (!probe.done()) return;
        var failure: upgrade.ProbeFailure = .{};
        const answer = probe.result(&failure);
        self.phase = .serving;
        const identity = answer catch return self.probeFailed(failure.text);
        if (identity.isThisProgram()) return self.startGeneration();
        if (self.predecessorRunning()) return self.awaitPredecessor();
        self.beginUpgrade(identity);
    }

    /// The probe did not answer in time.
    fn expireProbe(self: *Supervisor) void {
        const probe = switch (self.phase) {
            .probing => |*p| p,
            else => unreachable,
        };
        self.closeProbeOutput(probe);
        var failure: upgrade.ProbeFailure = .{};
        probe.expire(&failure);
        self.phase = .serving;
        self.probeFailed(failure.text);
    }

    /// Takes the probe's output out of the loop and closes it (its exit is still reaped).
    fn closeProbeOutput(self: *Supervisor, probe: *upgrade.Probe) void {
        if (probe.fd) |fd| _ = linux.epoll_ctl(self.epfd, linux.EPOLL.CTL_DEL, fd, null);
        probe.closeOutput();
    }

    /// The restart ends before it began: the binary on disk did not say who it is.
    fn probeFailed(self: *Supervisor, detail: []const u8) void {
        assert(self.phase == .serving);
        self.last_generation += 1;
        const what = "the binary on disk cannot tell its identity";
        self.reportFailedRestart(self.last_generation, what, detail);
    }

    /// An upgrade waits until the old supervisor this one took over from has exited, for as
    /// long as that one's own limits allow it to take.
    fn awaitPredecessor(self: *Supervisor) void {
        const pid = self.predecessor.?;
        const limits = self.options.limits;
        const bound = upgrade.LeftBehind.wait_ms + limits.drain_timeout_ms + kill_grace_ms +
            predecessor_slack_ms;
        self.phase = .{ .awaiting_predecessor = .{ .pid = pid, .deadline_ms = now() + bound } };
        log.info("upgrade waits: pid {d}, which this one took over from, still drains", .{pid});
    }

    /// Polled while an upgrade waits for the predecessor: gone, the restart starts over
    /// (the binary on disk may have changed meanwhile); still there at the deadline, the
    /// upgrade fails.
    fn checkPredecessor(self: *Supervisor, t: u64) void {
        const awaiting = switch (self.phase) {
            .awaiting_predecessor => |a| a,
            else => return,
        };
        if (!self.predecessorRunning()) {
            self.phase = .serving;
            return self.restart();
        }
        if (t < awaiting.deadline_ms) return;
        self.phase = .serving;
        self.last_generation += 1;
        var detail: [96]u8 = undefined;
        const text = compat.bufPrint(&detail, "pid {d}, which this one took over from, " ++
            "still runs", .{awaiting.pid}) catch "the previous supervisor still runs";
        self.reportFailedRestart(self.last_generation, "the upgrade cannot start", text);
    }

    fn predecessorRunning(self: *Supervisor) bool {
        const pid = self.predecessor orelse return false;
        if (linux.getppid() == pid) return true;
        self.predecessor = null;
        return false;
    }

    fn retireGeneration(self: *Supervisor, generation: u32) void {
        for (self.records) |*maybe| {
            if (maybe.*) |*r| {
                if (r.generation <= generation) self.retire(r);
            }
        }
    }

    /// A restart that cannot complete leaves the serving generation alone.
    fn abandonGeneration(self: *Supervisor, what: []const u8, detail: []const u8) void {
        const generation = self.startingGeneration() orelse return;
        self.phase = .serving;
        self.restart_queued = false;
        for (self.records) |*maybe| {
            if (maybe.*) |*r| {
                if (r.generation == generation) {
                    _ = linux.kill(r.pid, linux.SIG.KILL);
                    r.abandoned = true;
                    self.retire(r);
                }
            }
        }
        self.reportFailedRestart(generation, what, detail);
    }

    /// The `error` event of a restart or upgrade that failed; the serving generation, when
    /// there is one, goes on.
    fn reportFailedRestart(
        self: *Supervisor,
        generation: u32,
        what: []const u8,
        detail: []const u8,
    ) void {
        assert(self.phase == .serving);
        var message: [256]u8 = undefined;
        const text = compat.bufPrint(&message, "generation {d} did not start ({s}: {s})", .{
            generation, what, detail,
        }) catch "a generation did not start";
        var line = events.Line.begin("error");
        line.string("message", text);
        line.int("generation", generation);
        line.int("serving_generation", self.generation);
        line.emit();
        if (self.generation == 0) {
            log.err("{s}; stopping", .{text});
            self.exit_code = 1;
            self.beginStop(.immediate);
        } else {
            log.err("{s}; generation {d} keeps serving", .{ text, self.generation });
            // The reload is over, if not as hoped: systemd waits for READY=1 either way.
            self.notifier.sendf("READY=1\nSTATUS=restart failed; generation {d} keeps serving", .{
                self.generation,
            });
        }
    }

    // Upgrades (upgrade.zig).

    /// Starts the binary on disk as a new supervisor and hands it every socket; this one
    /// serves on until it says ready.
    fn beginUpgrade(self: *Supervisor, identity: upgrade.Identity) void {
        assert(self.phase == .serving);
        assert(self.predecessor == null);
        const generation = self.last_generation + 1;
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
            .generation = self.last_generation,
            .activated = &self.activated,
        }) catch |err| {
            self.last_generation = generation;
            const what = "cannot start the new program";
            return self.reportFailedRestart(generation, what, @errorName(err));
        };
        const data = token(Kind.successor, 0);
        const add = linux.EPOLL.CTL_ADD;
        sys.epollCtl(self.epfd, add, successor.ready_fd, linux.EPOLL.IN, data) catch |err| {
            // Unwatched, the upgrade still ends: the new supervisor's exit, or the deadline.
            log.warn("cannot watch the new supervisor's ready pipe: {s}", .{@errorName(err)});
        };
        self.phase = .{ .upgrading = .{
            .successor = successor,
            .deadline_ms = now() + upgrade_timeout_ms,
        } };
        var line = events.Line.begin("upgrading");
        line.int("generation", generation);
        line.int("successor", successor.pid);
        line.string("spec_fingerprint", &identity.spec);
        line.string("supervisor_fingerprint", &identity.supervisor);
        line.emit();
    }

    fn onSuccessorReadable(self: *Supervisor) void {
        const upgrading = switch (self.phase) {
            .upgrading => |*u| u,
            else => return,
        };
        const successor = &upgrading.successor;
        const kept = successor.readReady() catch |err| switch (err) {
            error.WouldBlock => return,
            // It closed the pipe, most likely by exiting: the exit, reaped next, says how;
            // the deadline stands if it did not exit.
            error.EndOfStream => {
                _ = linux.epoll_ctl(self.epfd, linux.EPOLL.CTL_DEL, successor.ready_fd, null);
                return;
            },
        };
        self.commitUpgrade(kept);
    }

    /// The new supervisor serves: this one steps back. Its workers go on serving what is
    /// queued on the sockets the new one did not keep, then retire (`upgrade.LeftBehind`).
    fn commitUpgrade(self: *Supervisor, kept: []const u8) void {
        const successor = self.phase.upgrading.successor;
        // `kept` lies in the successor's buffer: read it before the phase changes.
        const buf = self.leaving_buf;
        const left = upgrade.LeftBehind.init(buf, self.sockets, kept, &self.activated, now());
        self.closeSuccessorPipe(successor);
        self.phase = .{ .handed_over = .{ .pid = successor.pid, .left_behind = left } };
        // The new supervisor wrote the pid file before it said ready: it is its now.
        self.pid_file_written = false;
        self.restart_queued = false;
        var line = events.Line.begin("upgraded");
        line.int("generation", self.last_generation + 1);
        line.int("successor", successor.pid);
        line.int("serving_generation", self.generation);
        line.emit();
        log.info("pid {d} took over; generation {d} drains", .{ successor.pid, self.generation });
        self.notifier.sendf("MAINPID={d}\nREADY=1\nSTATUS=upgraded: pid {d} serves", .{
            successor.pid, successor.pid,
        });
    }

    fn closeSuccessorPipe(self: *Supervisor, successor: upgrade.Successor) void {
        _ = linux.epoll_ctl(self.epfd, linux.EPOLL.CTL_DEL, successor.ready_fd, null);
        sys.close(successor.ready_fd);
    }

    /// The new supervisor exited, or was not ready in time: this one serves on.
    fn abandonUpgrade(self: *Supervisor, detail: []const u8, exited: bool) void {
        const successor = self.phase.upgrading.successor;
        self.closeSuccessorPipe(successor);
        self.phase = .serving;
        self.restart_queued = false;
        if (!exited) self.stopFailedSuccessor(successor.pid);
        self.last_generation += 1;
        self.reportFailedRestart(self.last_generation, "the new program did not take over", detail);
    }

    /// Gracefully: its workers may have accepted connections on the shared sockets.
    fn stopFailedSuccessor(self: *Supervisor, pid: linux.pid_t) void {
        _ = linux.kill(pid, linux.SIG.TERM);
        // One at a time: an earlier one still running is killed now.
        if (self.failed_successor) |f| _ = linux.kill(f.pid, linux.SIG.KILL);
        const limits = self.options.limits;
        self.failed_successor = .{
            .pid = pid,
            .kill_at_ms = now() + limits.drain_timeout_ms + kill_grace_ms,
        };
    }

    /// A child that is not a worker exited: the identity probe, or a new supervisor, before
    /// or after it took over.
    fn onOtherChildExit(self: *Supervisor, pid: linux.pid_t, status: u32) void {
        const exit = events.Exit.fromWaitStatus(status);
        var how: [48]u8 = undefined;
        if (self.failed_successor) |f| if (f.pid == pid) {
            self.failed_successor = null;
        };
        switch (self.phase) {
            .probing => |*probe| if (probe.pid == pid) {
                probe.onExit(status);
                return self.finishProbeIfDone();
            },
            .upgrading => |*u| if (u.successor.pid == pid) {
                var detail: [96]u8 = undefined;
                const text = compat.bufPrint(&detail, "pid {d} {s} before it was ready", .{
                    pid, exit.describe(&how),
                }) catch "it exited before it was ready";
                return self.abandonUpgrade(text, true);
            },
            .handed_over => |h| if (h.pid == pid) {
                log.warn("pid {d}, which took over, {s}", .{ pid, exit.describe(&how) });
            },
            else => {},
        }
    }

    /// The new side of an upgrade, once its first generation is ready: the pid file is
    /// written; what the old supervisor's sockets that are not kept would still receive is
    /// steered to the kept ones; and the old supervisor learns which those are.
    fn takeOver(self: *Supervisor, handover: upgrade.Handover) void {
        self.handover = null;
        upgrade.steerHandedGroups(self.sockets, &self.handed, &self.activated, self.workers);
        handover.announceReady(self.kept);
        log.info("took over from pid {d}", .{handover.from_pid});
    }

    /// After an upgrade: once the sockets left behind are empty, this generation retires.
    fn checkLeftBehind(self: *Supervisor, t: u64) void {
        if (self.stopping != null) return;
        const handed = switch (self.phase) {
            .handed_over => |*h| h,
            else => return,
        };
        if (handed.left_behind.settled(self.sockets, t)) self.beginStop(.graceful);
    }

    // Workers.

    fn spawn(self: *Supervisor, index: u16, generation: u32) !void {
        self.assertNoWorkerIn(index, generation);
        const slot = for (self.records, 0..) |r, i| {
            if (r == null) break i;
        } else return error.TooManyWorkerProcesses;
        const started = try worker_process.start(.{
            .exe_path = self.exe_path,
            .envp = self.process.envp,
            .sockets = self.sockets,
            .workers = self.workers,
            .index = index,
            .generation = generation,
            .limits = self.options.limits,
        });
        self.records[slot] = .{
            .pid = started.pid,
            .index = index,
            .generation = generation,
            .started_ms = now(),
            .control_fd = started.control_fd,
            .report_fd = started.report_fd,
        };
        self.slots[index].last_pid = started.pid;
        self.scan_due = true;
        const data = token(Kind.report, @intCast(slot));
        try sys.epollCtl(self.epfd, linux.EPOLL.CTL_ADD, started.report_fd, linux.EPOLL.IN, data);
    }

    /// The invariant a respawn or a generation start must keep: at most one non-draining
    /// worker per slot per generation.
    fn assertNoWorkerIn(self: *const Supervisor, index: u16, generation: u32) void {
        for (self.records) |maybe| {
            const r = maybe orelse continue;
            assert(!(r.index == index and r.generation == generation and
                r.control_fd != null));
        }
    }

    /// Asks a worker to finish gracefully, and arms the deadline for killing it.
    fn retire(self: *Supervisor, r: *Record) void {
        if (r.control_fd) |fd| {
            sys.close(fd);
            r.control_fd = null;
        }
        if (r.kill_at_ms == null) {
            r.kill_at_ms = now() + self.options.limits.drain_timeout_ms + kill_grace_ms;
        }
    }

    fn onReport(self: *Supervisor, slot: u32) void {
        const r = if (self.records[slot]) |*r| r else return;
        const fd = r.report_fd orelse return;
        while (true) {
            const n = sys.read(fd, r.report_buf[r.report_len..]) catch |err| switch (err) {
                error.WouldBlock => return,
                error.Interrupted => continue,
                else => 0,
            };
            if (n == 0) {
                _ = linux.epoll_ctl(self.epfd, linux.EPOLL.CTL_DEL, fd, null);
                sys.close(fd);
                r.report_fd = null;
                return;
            }
            r.report_len += n;
            self.parseReports(r);
            if (r.report_len == r.report_buf.len) r.report_len = 0; // a line too long: drop it
        }
    }

    fn parseReports(self: *Supervisor, r: *Record) void {
        while (compat.findScalar(u8, r.report_buf[0..r.report_len], '\n')) |end| {
            r.last_beat_ms = now();
            if (worker_process.Report.parse(r.report_buf[0..end])) |report| switch (report) {
                .ready => self.onWorkerReady(r),
                .beat => {},
                .mismatch => |fingerprint| self.onMismatch(r, fingerprint),
                .stats => |stats| r.stats = stats,
            };
            const rest = r.report_len - end - 1;
            compat.copyLeft(r.report_buf[0..rest], r.report_buf[end + 1 .. r.report_len]);
            r.report_len = rest;
        }
    }

    fn onWorkerReady(self: *Supervisor, r: *Record) void {
        r.ready = true;
        self.scan_due = true;
        if (self.stopping != null) return self.retire(r);
        if (self.startingGeneration()) |generation| {
            if (r.generation == generation and self.generationIsReady(generation)) {
                return self.generationReady(generation);
            }
        }
        if (r.generation == self.generation) {
            var line = events.Line.begin("worker_replaced");
            line.int("generation", r.generation);
            line.int("index", r.index);
            line.int("pid", r.pid);
            line.emit();
        }
    }

    /// The worker was built from another spec or has another supervisor: it refused to serve,
    /// and so will every worker the binary on disk starts. Only a new supervisor could run it.
    fn onMismatch(self: *Supervisor, r: *Record, identity: []const u8) void {
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
        if (self.startingGeneration() == r.generation) return self.abandonGeneration(what, text);
        var message: [256]u8 = undefined;
        var line = events.Line.begin("error");
        line.string("message", compat.bufPrint(&message, "worker {d} not replaced: {s} ({s})", .{
            r.index, what, text,
        }) catch what);
        line.int("generation", r.generation);
        line.int("index", r.index);
        line.emit();
    }

    fn generationIsReady(self: *const Supervisor, generation: u32) bool {
        var ready: usize = 0;
        for (self.records) |maybe| {
            const r = maybe orelse continue;
            if (r.generation == generation and r.ready and !r.exited) ready += 1;
        }
        return ready == self.workers;
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
                self.beginStop(.graceful);
            } else if (signo == compat.signalNumber(linux.SIG.QUIT)) {
                self.beginStop(.immediate);
            } else if (signo == compat.signalNumber(linux.SIG.HUP)) {
                self.onRestartSignal();
            }
        }
    }

    /// SIGHUP. During a restart, further SIGHUPs are coalesced into one restart that
    /// starts when the current one completes: the newest binary is picked up without
    /// piling up generations.
    fn onRestartSignal(self: *Supervisor) void {
        if (self.stopping != null) return;
        switch (self.phase) {
            .serving => {},
            .handed_over => |h| {
                log.info("SIGHUP ignored: pid {d} took over this service; signal it instead", .{
                    h.pid,
                });
                return;
            },
            .upgrading => |*u| {
                log.info("SIGHUP during an upgrade: ignored until pid {d} is ready or fails", .{
                    u.successor.pid,
                });
                return;
            },
            .awaiting_predecessor => {
                log.info("SIGHUP: the upgrade already waiting reads the binary on disk then", .{});
                return;
            },
            .probing, .starting => {
                if (!self.restart_queued) log.info("SIGHUP during a restart: queued", .{});
                self.restart_queued = true;
                return;
            },
        }
        if (self.restart_queued) {
            log.info("SIGHUP: a restart is already queued", .{});
            return;
        }
        self.restart();
    }

    fn beginStop(self: *Supervisor, kind: StopKind) void {
        if (self.stopping == .immediate) return;
        const was_stopping = self.stopping != null;
        self.stopping = kind;
        if (!was_stopping) {
            self.callOffChange();
            // After an upgrade the service goes on: systemd must not hear it stop.
            if (self.handedOverTo() == null) self.notifier.send("STOPPING=1");
            // Workers hold their own descriptors and drain what is queued; the
            // supervisor's copies must go first, or queues would outlive every acceptor.
            for (self.sockets) |fd| sys.close(fd);
            var line = events.Line.begin("stopping");
            line.string("mode", @tagName(kind));
            line.int("drain_timeout_ms", self.options.limits.drain_timeout_ms);
            if (self.handedOverTo()) |pid| line.int("successor", pid);
            line.emit();
        }
        assert(self.phase == .serving or self.phase == .handed_over);
        for (self.slots) |*slot| slot.respawn_at_ms = null;
        for (self.records) |*maybe| {
            if (maybe.*) |*r| switch (kind) {
                .graceful => self.retire(r),
                .immediate => {
                    _ = linux.kill(r.pid, linux.SIG.QUIT);
                    r.kill_at_ms = now() + kill_grace_ms;
                },
            };
        }
    }

    /// A stop calls off the restart or upgrade under way: a starting generation's workers
    /// retire with the others; a new supervisor is asked to stop and goes its own way.
    fn callOffChange(self: *Supervisor) void {
        switch (self.phase) {
            .serving, .handed_over => return,
            .starting, .awaiting_predecessor => {},
            .probing => |*probe| {
                self.closeProbeOutput(probe);
                var failure: upgrade.ProbeFailure = .{};
                probe.expire(&failure); // The stop is the answer now.
            },
            .upgrading => |*u| {
                const pid = u.successor.pid;
                log.info("stopping: the upgrade to pid {d} is called off", .{pid});
                _ = linux.kill(pid, linux.SIG.TERM);
                self.closeSuccessorPipe(u.successor);
            },
        }
        self.phase = .serving;
        self.restart_queued = false;
    }

    fn onTimers(self: *Supervisor) void {
        const t = now();
        if (self.systemd_watchdog_ms) |interval| if (t >= self.next_systemd_watchdog_ms) {
            self.notifier.send("WATCHDOG=1");
            self.next_systemd_watchdog_ms = t + interval;
        };
        self.checkPhaseDeadline(t);
        if (self.failed_successor) |f| if (t >= f.kill_at_ms) {
            log.warn("pid {d}, a failed upgrade, did not stop in time: killing it", .{f.pid});
            _ = linux.kill(f.pid, linux.SIG.KILL);
            self.failed_successor = null;
        };
        self.checkLeftBehind(t);
        self.checkPredecessor(t);
        for (self.records) |*maybe| {
            if (maybe.*) |*r| {
                if (r.kill_at_ms) |at| if (t >= at) {
                    log.warn("worker {d} (pid {d}) did not stop in time: killing it", .{
                        r.index, r.pid,
                    });
                    _ = linux.kill(r.pid, linux.SIG.KILL);
                    r.kill_at_ms = null;
                };
            }
        }
        self.respawnDue(t);
    }

    /// The phase under way ran out of time: it ends with an `error` event.
    fn checkPhaseDeadline(self: *Supervisor, t: u64) void {
        const deadline = self.phase.deadlineMs() orelse return;
        if (t < deadline) return;
        switch (self.phase) {
            .serving, .handed_over => unreachable,
            .probing => self.expireProbe(),
            .starting => self.abandonGeneration("workers not ready in time", "timeout"),
            // checkPredecessor decides: the predecessor may have exited just now.
            .awaiting_predecessor => {},
            .upgrading => |*u| {
                var detail: [64]u8 = undefined;
                const text = compat.bufPrint(&detail, "pid {d} not ready in {d} ms", .{
                    u.successor.pid, upgrade_timeout_ms,
                }) catch "not ready in time";
                self.abandonUpgrade(text, false);
            },
        }
    }

    fn respawnDue(self: *Supervisor, t: u64) void {
        for (self.slots, 0..) |*slot, i| {
            const at = slot.respawn_at_ms orelse continue;
            if (t < at) continue;
            slot.respawn_at_ms = null;
            if (slot.respawn_generation != self.generation) continue;
            self.spawn(@intCast(i), self.generation) catch |err| {
                log.err("cannot replace worker {d}: {s}", .{ i, @errorName(err) });
                slot.respawn_at_ms = t + max_backoff_ms;
            };
        }
    }

    /// Reaps every child that exited. One SIGCHLD may stand for many exits, so a turn that
    /// reaches its bound (workers, plus the probe and new supervisors) reaps again on the next
    /// turn rather than leave an exit unnoticed until some other child exits.
    fn reap(self: *Supervisor) void {
        self.reap_due = false;
        var reaped: usize = 0;
        while (reaped < self.records.len + 4) : (reaped += 1) {
            const result = (compat.waitpid(-1, linux.W.NOHANG) catch return) orelse return;
            for (self.records, 0..) |*maybe, i| {
                if (maybe.*) |*r| if (r.pid == result.pid) {
                    r.exited = true;
                    r.exit = events.Exit.fromWaitStatus(result.status);
                    self.onReport(@intCast(i));
                    self.onWorkerExit(i);
                    break;
                };
            } else self.onOtherChildExit(result.pid, result.status);
        }
        self.reap_due = true;
    }

    fn onWorkerExit(self: *Supervisor, record_slot: usize) void {
        const r = self.records[record_slot].?;
        if (r.report_fd) |fd| {
            _ = linux.epoll_ctl(self.epfd, linux.EPOLL.CTL_DEL, fd, null);
            sys.close(fd);
        }
        if (r.control_fd) |fd| sys.close(fd);
        self.records[record_slot] = null;
        self.scan_due = true;

        const slot = &self.slots[r.index];
        slot.totals.add(r.stats);
        slot.last_exit = r.exit;

        const expected = r.kill_at_ms != null or r.control_fd == null or self.stopping != null;
        var line = events.Line.begin("worker_exit");
        line.int("generation", r.generation);
        line.int("index", r.index);
        line.int("pid", r.pid);
        r.exit.write(&line);
        line.boolean("expected", expected);
        line.counters(r.stats);
        line.emit();
        if (expected) {
            if (self.stopping == null and !r.abandoned) self.emitDrainedIfDone(r.generation);
            self.startQueuedRestart();
            return;
        }

        if (self.startingGeneration() == r.generation) {
            // Ready or not, a worker of the starting generation that exits leaves it short.
            var detail: [64]u8 = undefined;
            var how: [48]u8 = undefined;
            const text = compat.bufPrint(&detail, "worker {d} {s}", .{
                r.index, r.exit.describe(&how),
            }) catch "a worker exited";
            return self.abandonGeneration("a new worker failed", text);
        }
        if (r.generation == self.generation) self.scheduleReplacement(r);
    }

    /// A serving worker died: replace it, at once the first time, then backing off while
    /// it keeps crashing.
    fn scheduleReplacement(self: *Supervisor, r: Record) void {
        const slot = &self.slots[r.index];
        const t = now();
        if (t - r.started_ms >= stable_run_ms) slot.crashes = 0;
        const delay: u64 = if (slot.crashes == 0)
            0
        else
            @min(max_backoff_ms, @as(u64, 100) << @intCast(@min(slot.crashes - 1, 10)));
        slot.crashes += 1;
        slot.respawn_at_ms = t + delay;
        slot.respawn_generation = r.generation;
        var how: [48]u8 = undefined;
        log.warn("worker {d} (pid {d}) {s} unexpectedly; replacing it in {d} ms", .{
            r.index, r.pid, r.exit.describe(&how), delay,
        });
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
            for (self.records) |*maybe| if (maybe.*) |*r| {
                r.last_beat_ms = @max(r.last_beat_ms, t);
            };
        }
        self.last_scan_ms = t;
        if (self.stopping != null) return;
        if (watchdog_ms > 0) self.checkWatchdog(t, watchdog_ms);
        if (self.generation == 0) return;

        for (self.slots) |*slot| slot.owner = null;
        for (self.records, 0..) |maybe, i| {
            const r = maybe orelse continue;
            if (r.generation != self.generation or r.control_fd == null) continue;
            assert(self.slots[r.index].owner == null); // one per slot per generation
            self.slots[r.index].owner = @intCast(i);
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
    /// or a blocking call), and those of the serving generation never ready.
    fn checkWatchdog(self: *Supervisor, t: u64, watchdog_ms: u32) void {
        for (self.records) |*maybe| {
            const r = if (maybe.*) |*r| r else continue;
            if (r.control_fd == null or r.hung or r.exited) continue;
            if (!r.ready) {
                if (r.generation != self.generation) continue;
                if (t - r.started_ms < ready_timeout_ms) continue;
                log.warn("worker {d} (pid {d}) not ready in {d} ms: killing it", .{
                    r.index, r.pid, ready_timeout_ms,
                });
                r.hung = true;
                _ = linux.kill(r.pid, linux.SIG.KILL);
                continue;
            }
            const silent = t -| r.last_beat_ms;
            if (silent < watchdog_ms) continue;
            r.hung = true;
            log.warn("worker {d} (pid {d}) silent for {d} ms: killing it", .{
                r.index, r.pid, silent,
            });
            _ = linux.kill(r.pid, linux.SIG.KILL);
            var line = events.Line.begin("worker_hung");
            line.int("generation", r.generation);
            line.int("index", r.index);
            line.int("pid", r.pid);
            line.int("silent_ms", @intCast(silent));
            line.emit();
        }
    }

    /// Ready, not draining, of the serving generation, and beating.
    fn isHealthy(self: *const Supervisor, record_index: u32, t: u64) bool {
        const r = self.records[record_index] orelse return false;
        if (r.generation != self.generation or r.control_fd == null) return false;
        if (!r.ready or r.hung or r.exited) return false;
        const watchdog_ms = self.options.limits.watchdog_ms;
        if (watchdog_ms == 0) return true;
        return t -| r.last_beat_ms < worker_link.adoptAfterMs(watchdog_ms);
    }

    fn adopterRecord(self: *Supervisor, slot: *const Slot) ?*Record {
        const a = slot.adopter orelse return null;
        const r = if (self.records[a]) |*r| r else return null;
        // A record index is reused once its worker is reaped: the pid tells them apart.
        return if (r.pid == slot.adopter_pid) r else null;
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
        const r = &self.records[o].?;
        if (!self.command(r, .{ .adopt = index })) return;
        slot.adopter = o;
        slot.adopter_pid = r.pid;
        log.info("slot {d} is dark: worker {d} (pid {d}) adopts it", .{ index, r.index, r.pid });
    }

    fn adoptionsBy(self: *const Supervisor, record_index: u32) usize {
        var count: usize = 0;
        for (self.slots) |slot| {
            if (slot.adopter == record_index) count += 1;
        }
        return count;
    }

    /// The slot's own worker is back, or its adopter is no longer fit to serve it.
    fn endAdoption(self: *Supervisor, slot: *Slot, index: u16) void {
        if (self.adopterRecord(slot)) |r| {
            // A retired adopter has no control pipe: it drains what it adopted and exits.
            if (self.command(r, .{ .release = index })) {
                log.info("slot {d} released by worker {d} (pid {d})", .{ index, r.index, r.pid });
            }
        }
        slot.adopter = null;
        slot.adopter_pid = 0;
    }

    /// Writes one command on a worker's control pipe; false when it could not be sent.
    fn command(self: *const Supervisor, r: *const Record, cmd: worker_link.Command) bool {
        _ = self;
        const fd = r.control_fd orelse return false;
        var buf: [32]u8 = undefined;
        const line = cmd.format(&buf);
        // The pipe never holds more than a few commands, far below its capacity: a short
        // or failed write means the worker is gone or stuck, and a later scan moves on.
        const rc = linux.write(fd, line.ptr, line.len);
        return compat.errno(rc) == .SUCCESS and rc == line.len;
    }

    fn emitDrainedIfDone(self: *const Supervisor, generation: u32) void {
        if (generation == self.generation) return;
        for (self.records) |maybe| {
            const r = maybe orelse continue;
            if (r.generation == generation) return;
        }
        var line = events.Line.begin("drained");
        line.int("generation", generation);
        line.emit();
    }

    fn finish(self: *Supervisor) void {
        // A new supervisor that failed and still runs (it may ignore SIGTERM, or have it
        // blocked, as the mask this one passed on does) does not outlive this one.
        if (self.failed_successor) |f| _ = linux.kill(f.pid, linux.SIG.KILL);
        var reports: [1024]events.WorkerReport = undefined;
        for (self.slots, 0..) |slot, i| {
            reports[i] = .{
                .index = @intCast(i),
                .pid = slot.last_pid,
                .stats = slot.totals,
                .exit = slot.last_exit,
            };
        }
        const reason: worker_mod.StopReason = switch (self.stopping orelse .graceful) {
            .graceful => .graceful,
            .immediate => .immediate,
        };
        const workers = reports[0..self.workers];
        events.emitStoppedFor(self.generation, reason, workers, self.handedOverTo());
        if (self.pid_file_written) {
            if (self.options.pid_file) |path| pid_file.removeIfOwn(path, self.pid);
        }
    }
};

/// Where sockets may come from: systemd, or in an upgrade the old supervisor, which says
/// (in `activated`) which of its listeners' sockets came from systemd to it.
fn activationSource(
    handover: ?upgrade.Handover,
    activated: *[listener_count]bool,
) activation.Source {
    const h = handover orelse return .systemd;
    for (&config.listeners, activated) |l, *a| a.* = h.isActivated(l.name);
    return .{ .upgrade = activated };
}

/// Supervisor mode's entry: opens every socket, then serves until stopped.
pub fn run(options: cli.Options, process: compat.Process) u8 {
    const allocator = std.heap.page_allocator;
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
    const source = activationSource(handover, &activated);
    var diag: activation.Diagnostic = .{};
    const envp = process.envp;
    const asked = &options.endpoints;
    const passed = activation.takeFrom(allocator, envp, pid, asked, source, &diag) catch |err| {
        activation.report(&diag, err);
        return 1;
    };
    const workers_envp = activation.withoutVariables(allocator, process.envp) catch return 1;
    const opened = openSockets(allocator, options, workers, passed, source) orelse return 1;
    const handed = handedFlags(allocator, passed, workers) catch return 1;
    const notifier = notify.Notifier.init(process.envp);
    const fd_store = notifier.enabled() and
        (options.fd_store or notify.fdStoreOffered(process.envp));
    if (fd_store) dropSurplusFromStore(&notifier, passed, workers);
    closeSurplus(passed, workers, source);
    if (fd_store) storeSockets(&notifier, opened.sockets, opened.shared, workers);
    const loop = Loop.open() catch return 1;

    const tables = Tables.alloc(allocator, workers, opened.sockets.len) catch return 1;

    events.logMigrationPolicy(.supervisor);
    var supervisor: Supervisor = .{
        .workers = workers,
        .auto_workers = auto_workers,
        .options = options,
        .process = .{ .args = process.args, .envp = workers_envp },
        .exe_path = exe_path,
        .pid = pid,
        .sockets = opened.sockets,
        .ports = opened.ports,
        .records = tables.records,
        .slots = tables.slots,
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
    if (handover) |h| {
        supervisor.last_generation = h.generation;
        supervisor.predecessor = h.from_pid;
    }
    supervisor.options.endpoints = opened.endpoints;
    supervisor.armSystemdWatchdog(process.envp);
    return supervisor.run();
}

/// What the supervisor keeps per process (four per slot: one serving, the others draining
/// or starting), per slot, and per socket (left behind after an upgrade).
const Tables = struct {
    records: []?Record,
    slots: []Slot,
    leaving: []bool,

    fn alloc(allocator: std.mem.Allocator, workers: u16, sockets: usize) !Tables {
        const tables: Tables = .{
            .records = try allocator.alloc(?Record, @as(usize, workers) * 4),
            .slots = try allocator.alloc(Slot, workers),
            .leaving = try allocator.alloc(bool, sockets),
        };
        @memset(tables.records, null);
        @memset(tables.slots, .{});
        @memset(tables.leaving, false);
        return tables;
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

/// Every slot's sockets, where each listener ended up, and which sockets are duplicates of
/// a passed one (slots sharing its queue).
const Opened = struct {
    sockets: []sys.Fd,
    shared: []bool,
    endpoints: [listener_count]address.Endpoint,
    ports: [listener_count]u16,
};

/// Opens (or takes from `passed`) one socket per listener per slot. Null after a failure it
/// has logged; nothing it opened is left open then.
fn openSockets(
    allocator: std.mem.Allocator,
    options: cli.Options,
    workers: u16,
    passed: activation.Passed,
    source: activation.Source,
) ?Opened {
    const n = @as(usize, workers) * listener_count;
    var opened: Opened = .{
        .sockets = allocator.alloc(sys.Fd, n) catch return null,
        .shared = allocator.alloc(bool, n) catch return null,
        .endpoints = options.endpoints,
        .ports = undefined,
    };
    for (&config.listeners, 0..) |*l, i| {
        const first = passed.nthFor(i, 0) orelse continue;
        // The socket unit decides where the listener is: --listen and the spec yield.
        opened.endpoints[i] = activation.boundEndpoint(first) catch |err| {
            log.err("listener {s}: cannot read the passed socket's address: {s}", .{
                l.name, @errorName(err),
            });
            return null;
        };
        describeActivated(l, passed.countFor(i), workers, first, source);
    }
    // A port this supervisor opens itself must not join another program's group by
    // accident: probed before, refused after the open succeeded (a socket that does not
    // share the port is the open's own error).
    var held: [listener_count]bool = @splat(false);
    for (&config.listeners, &held, 0..) |*l, *h, i| {
        const own = passed.countFor(i) == 0;
        h.* = !options.join and own and listener.portHeld(l, opened.endpoints[i]);
    }
    var count: usize = 0;
    for (0..workers) |w| {
        for (&config.listeners, 0..) |*l, i| {
            const got = slotSocket(l, i, w, passed, &opened.endpoints[i]) orelse {
                for (opened.sockets[0..count]) |s| sys.close(s);
                return null;
            };
            opened.ports[i] = opened.endpoints[i].port;
            opened.sockets[w * listener_count + i] = got.fd;
            opened.shared[w * listener_count + i] = got.shared;
            count += 1;
        }
    }
    assert(count == n);
    const first_held = compat.findScalar(bool, &held, true) orelse return opened;
    events.reportHeldPort(&config.listeners[first_held], opened.endpoints[first_held]);
    for (opened.sockets) |s| sys.close(s);
    return null;
}

/// How many sockets of each listener an old supervisor handed over, and which of them this
/// one serves (`kept`, one flag per passed socket): the rest stay with the old one, to be
/// emptied and closed there.
fn handedFlags(
    allocator: std.mem.Allocator,
    passed: activation.Passed,
    workers: u16,
) !struct { counts: [listener_count]usize, kept: []bool } {
    const kept = try allocator.alloc(bool, passed.passed);
    @memset(kept, false);
    var counts: [listener_count]usize = @splat(0);
    for (0..listener_count) |i| {
        counts[i] = passed.countFor(i);
        for (0..@min(counts[i], workers)) |w| {
            kept[passed.positionOf(passed.nthFor(i, w).?).?] = true;
        }
    }
    return .{ .counts = counts, .kept = kept };
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
        const sigfd = try sys.signalfd(&set);
        const epfd = try sys.epollCreate();
        try sys.epollCtl(epfd, linux.EPOLL.CTL_ADD, sigfd, linux.EPOLL.IN, token(Kind.signal, 0));
        return .{ .epfd = epfd, .sigfd = sigfd };
    }
};

/// Slot `w`'s socket for listener `i`: the `w`-th one systemd passed for it; else, when
/// systemd passed some, one of ours joined to their reuseport group (or, when the group
/// cannot be joined, a duplicate of a passed one: the slots then share its accept queue);
/// else one of ours at `endpoint`, whose port is updated when the kernel picked it.
fn slotSocket(
    l: *const config.Listener,
    i: usize,
    w: usize,
    passed: activation.Passed,
    endpoint: *address.Endpoint,
) ?SlotSocket {
    if (passed.nthFor(i, w)) |fd| return .{ .fd = fd };
    const from_systemd = passed.countFor(i);
    if (from_systemd > 0) {
        const shared = passed.nthFor(i, w % from_systemd).?;
        if (activation.reusesPort(shared)) {
            var failure: listener.Failure = .{};
            if (listener.open(l, endpoint.*, &failure)) |bound| {
                return .{ .fd = bound.fd };
            } else |_| {}
            // Most likely another effective UID (User= in the unit): the kernel groups
            // only sockets of one UID. Sharing the passed socket still serves everything.
            var why: [512]u8 = undefined;
            log.warn("listener {s}: cannot join the passed socket's group ({s}); slot {d} " ++
                "shares it", .{ l.name, failure.describe(&why), w });
        }
        const fd = activation.duplicate(shared) catch {
            log.err("listener {s}: cannot duplicate the passed socket", .{l.name});
            return null;
        };
        return .{ .fd = fd, .shared = true };
    }
    var failure: listener.Failure = .{};
    const bound = listener.open(l, endpoint.*, &failure) catch {
        events.reportOpenFailure(l, endpoint.*, failure);
        return null;
    };
    // With port 0 the kernel picks a port for the first socket; every other worker's
    // socket joins that one.
    endpoint.port = bound.port;
    return .{ .fd = bound.fd };
}

const SlotSocket = struct {
    fd: sys.Fd,
    /// A duplicate descriptor of a passed socket that other slots use too.
    shared: bool = false,
};

/// Hands every slot's socket to systemd's file-descriptor store under its listener's name
/// (a shared duplicate is the same socket as the one it copies: sent once). systemd keeps
/// them when this process exits or crashes and passes them back at the next start.
fn storeSockets(
    notifier: *const notify.Notifier,
    sockets: []const sys.Fd,
    shared: []const bool,
    workers: u16,
) void {
    var fds: [cli.max_workers]sys.Fd = undefined;
    var total: usize = 0;
    for (&config.listeners, 0..) |l, i| {
        var n: usize = 0;
        for (0..workers) |w| {
            const at = w * listener_count + i;
            if (shared[at]) continue;
            fds[n] = sockets[at];
            n += 1;
        }
        if (!notifier.storeFds(l.name, fds[0..n])) {
            log.warn("listener {s}: cannot send its sockets to the fd store", .{l.name});
        }
        total += n;
    }
    log.info("fd store: {d} listening sockets sent to systemd", .{total});
}

/// Before surplus sockets close, they leave the store too: stored, they would stay in the
/// group with nobody accepting. FDSTOREREMOVE drops every socket of the name; the ones kept
/// are stored again right after.
fn dropSurplusFromStore(
    notifier: *const notify.Notifier,
    passed: activation.Passed,
    workers: u16,
) void {
    for (&config.listeners, 0..) |l, i| {
        if (passed.countFor(i) > workers) notifier.removeStored(l.name);
    }
}

/// Says once per activated listener how its slots get their sockets.
fn describeActivated(
    l: *const config.Listener,
    passed: usize,
    workers: u16,
    fd: sys.Fd,
    source: activation.Source,
) void {
    const from = sourceName(source);
    if (passed >= workers) {
        log.info("listener {s}: {d} socket(s) {s}, one per slot", .{ l.name, passed, from });
    } else if (activation.reusesPort(fd)) {
        log.info("listener {s}: {d} socket(s) {s}; the other slots join their " ++
            "reuseport group", .{ l.name, passed, from });
    } else {
        log.info("listener {s}: {d} socket(s) {s} without SO_REUSEPORT " ++
            "(ReusePort=no): the {d} workers share their accept queues", .{
            l.name, passed, from, workers,
        });
    }
}

/// How a log line says where passed sockets came from.
fn sourceName(source: activation.Source) []const u8 {
    return switch (source) {
        .systemd => "from systemd",
        .upgrade => "handed over",
    };
}

/// Sockets passed beyond one per slot (a store kept by a supervisor with more workers)
/// have no worker to serve them: they leave the group, and what was queued on them is reset
/// unless net.ipv4.tcp_migrate_req=1 moves it to a remaining member. Handed over by an
/// upgrading supervisor, they are only this process's copies: that one empties them.
fn closeSurplus(passed: activation.Passed, workers: u16, source: activation.Source) void {
    const from = sourceName(source);
    for (&config.listeners, 0..) |l, i| {
        var nth: usize = workers;
        while (passed.nthFor(i, nth)) |fd| : (nth += 1) {
            log.warn("listener {s}: socket {d} {s} is beyond the {d} slots; closing it", .{
                l.name, fd, from, workers,
            });
            sys.close(fd);
        }
    }
}

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

/// A supervisor with no processes and no descriptors, for tests of decisions that need no
/// fork; `records` and `slots` are the caller's.
fn testSupervisor(records: []?Record, slots: []Slot) Supervisor {
    const no_variables = [_:null]?[*:0]const u8{};
    return .{
        .workers = @intCast(slots.len),
        .options = .{},
        .process = .{ .args = &.{}, .envp = &no_variables },
        .exe_path = "/nonexistent",
        .pid = 1,
        .sockets = &.{},
        .ports = @splat(0),
        .records = records,
        .slots = slots,
        .epfd = -1,
        .sigfd = -1,
    };
}

test "a SIGHUP is queued or left to the change under way, never lost or doubled" {
    var records: [8]?Record = @splat(null);
    var slots: [2]Slot = @splat(.{});
    var s = testSupervisor(&records, &slots);
    s.generation = 1;
    s.last_generation = 2;
    s.phase = .{ .starting = .{ .generation = 2, .deadline_ms = 10 } };
    s.assertInvariants();
    s.onRestartSignal();
    try std.testing.expect(s.restart_queued);
    s.onRestartSignal();
    try std.testing.expect(s.restart_queued);
    s.assertInvariants();

    // An upgrade waiting for its predecessor reads the binary on disk when it starts.
    s.restart_queued = false;
    s.predecessor = 41;
    s.phase = .{ .awaiting_predecessor = .{ .pid = 41, .deadline_ms = 10 } };
    s.onRestartSignal();
    try std.testing.expect(!s.restart_queued);
    s.assertInvariants();

    // After a hand-over the new supervisor is the one to signal.
    s.predecessor = null;
    const left_behind: upgrade.LeftBehind = .{ .leaving = &.{}, .deadline_ms = 0 };
    s.phase = .{ .handed_over = .{ .pid = 42, .left_behind = left_behind } };
    s.onRestartSignal();
    try std.testing.expect(!s.restart_queued);
    try std.testing.expectEqual(@as(?linux.pid_t, 42), s.handedOverTo());
    s.assertInvariants();
}

test "every phase but serving and handed_over has a deadline, and the loop wakes for it" {
    var records: [4]?Record = @splat(null);
    var slots: [1]Slot = @splat(.{});
    var s = testSupervisor(&records, &slots);
    s.options.limits.watchdog_ms = 0;
    try std.testing.expectEqual(@as(i32, -1), s.waitTimeoutMs());
    s.last_generation = 1;
    s.phase = .{ .starting = .{ .generation = 1, .deadline_ms = sys.monotonicMs() + 60_000 } };
    const wait = s.waitTimeoutMs();
    try std.testing.expect(wait > 0 and wait <= 60_000);
    s.phase = .{ .starting = .{ .generation = 1, .deadline_ms = 0 } };
    try std.testing.expectEqual(@as(i32, 0), s.waitTimeoutMs());
    s.predecessor = 7;
    s.phase = .{ .awaiting_predecessor = .{ .pid = 7, .deadline_ms = sys.monotonicMs() + 60_000 } };
    // Polled: the predecessor's exit is seen through getppid.
    try std.testing.expect(s.waitTimeoutMs() <= scan_interval_ms);
    try std.testing.expect(s.phase.deadlineMs() != null);
    s.phase = .serving;
    try std.testing.expect(s.phase.deadlineMs() == null);
}

test "an upgrade that waits for a predecessor still running gives up at its deadline" {
    var records: [4]?Record = @splat(null);
    var slots: [1]Slot = @splat(.{});
    var s = testSupervisor(&records, &slots);
    s.generation = 3;
    s.last_generation = 3;
    // This process's parent plays the predecessor that never exits.
    s.predecessor = linux.getppid();
    s.awaitPredecessor();
    try std.testing.expect(s.phase == .awaiting_predecessor);
    s.checkPredecessor(sys.monotonicMs());
    try std.testing.expect(s.phase == .awaiting_predecessor);
    s.checkPredecessor(s.phase.deadlineMs().?);
    try std.testing.expect(s.phase == .serving);
    // The failed upgrade used up a generation number; the serving one goes on.
    try std.testing.expectEqual(@as(u32, 4), s.last_generation);
    try std.testing.expectEqual(@as(u32, 3), s.generation);
    s.assertInvariants();
}
