//! Upgrading the whole program: a SIGHUP that finds a binary on disk with another spec or
//! another supervisor (its `--fingerprint` differs) hands the listening sockets to a new
//! supervisor started from that binary, the way nginx's binary upgrade and tableflip do.
//!
//!   old supervisor                          new supervisor (its child, then on its own)
//!   probe: `<exe> --fingerprint` differs
//!   fork; in the child: every slot's socket
//!   moved to 3, 4, …, LISTEN_PID/FDS/FDNAMES
//!   (listener names, slot after slot), and
//!   REUSEPORT_UPGRADE=<old pid>:<generation>:<ready fd>:<activated>; exec the binary
//!                                           takes the passed sockets by name (activation.zig);
//!                                           leaves out those of listeners it does not have or
//!                                           whose address moved, opens what it lacks, starts
//!                                           its workers; once they are ready: writes the pid
//!                                           file, steers new connections away from the
//!                                           sockets it did not keep, and writes
//!                                           "ready <kept>\n" on the ready pipe
//!   `upgraded`, MAINPID=<new pid> + READY=1;
//!   its workers serve what is still queued
//!   on the sockets the new one did not keep,
//!   then the old generation drains and the
//!   old supervisor exits 0 (`stopped`)
//!
//! `<kept>` has one character per passed socket, '1' for the ones the new supervisor serves.
//! `<activated>` names the listeners (comma-separated, maybe none) whose sockets came from
//! systemd: their socket units decide where they listen, also after the upgrade, and their
//! groups are never steered (their sockets may sit anywhere in the group's array).
//! A new binary that cannot be run, exits, or is not ready in time leaves the old supervisor
//! serving as before, with an `error` event; nothing changed on the sockets until it said ready.
const std = @import("std");
const compat = @import("../compat.zig");
const events = @import("../events.zig");
const config = @import("../config.zig");
const sys = @import("../net/sys.zig");
const listener = @import("../net/listener.zig");
const steering = @import("steering.zig");
const locality = @import("../net/locality.zig");
const activation = @import("../systemd/activation.zig");
const log = @import("../log.zig");
const linux = std.os.linux;
const assert = std.debug.assert;

/// The environment variable that tells a supervisor it is taking over from another one.
pub const variable = "REUSEPORT_UPGRADE";

/// What a binary says it is (`--fingerprint`).
pub const Identity = struct {
    spec: [16]u8,
    supervisor: [16]u8,

    pub fn isThisProgram(self: *const Identity) bool {
        return std.mem.eql(u8, &self.spec, config.spec_fingerprint) and
            std.mem.eql(u8, &self.supervisor, config.supervisor_fingerprint);
    }
};

/// Why the binary on disk could not tell its identity, as a phrase.
pub const ProbeFailure = struct {
    buf: [96]u8 = undefined,
    text: []const u8 = "",

    fn set(self: *ProbeFailure, comptime format: []const u8, args: anytype) error{ProbeFailed} {
        self.describe(format, args);
        return error.ProbeFailed;
    }

    fn describe(self: *ProbeFailure, comptime format: []const u8, args: anytype) void {
        self.text = compat.bufPrint(&self.buf, format, args) catch "cannot run it";
    }
};

/// `<exe> --fingerprint`, run without blocking the supervisor's loop: the loop watches its
/// output pipe (`fd`), reaps it with the other children (`onExit`) and gives up on it at
/// `deadline_ms` (`expire`). Its answer is complete once the output reached end of file and
/// its exit status is known.
pub const Probe = struct {
    pid: linux.pid_t,
    /// The read end of its standard output, non-blocking; null once read to the end.
    fd: ?sys.Fd,
    deadline_ms: u64,
    buf: [128]u8 = undefined,
    len: usize = 0,
    /// Its wait status, once reaped.
    status: ?u32 = null,

    /// How long `<exe> --fingerprint` may take: it is a short program that prints one line.
    pub const timeout_ms = 3_000;

    /// Forks and executes `<exe> --fingerprint` with its standard output on a pipe.
    pub fn start(
        exe_path: [*:0]const u8,
        envp: [*:null]const ?[*:0]const u8,
        now_ms: u64,
    ) error{ PipeFailed, ForkFailed }!Probe {
        var out: [2]sys.Fd = undefined;
        const flags: linux.O = .{ .CLOEXEC = true, .NONBLOCK = true };
        if (compat.errno(linux.pipe2(&out, flags)) != .SUCCESS) return error.PipeFailed;
        const argv = [_:null]?[*:0]const u8{ exe_path, "--fingerprint" };
        const rc = linux.fork();
        if (compat.errno(rc) != .SUCCESS) {
            sys.close(out[0]);
            sys.close(out[1]);
            return error.ForkFailed;
        }
        if (rc == 0) {
            // The pipe's write end as standard output, blocking as a program expects it.
            _ = linux.dup3(out[1], 1, 0);
            _ = linux.fcntl(1, linux.F.SETFL, 0);
            _ = linux.execve(exe_path, &argv, envp);
            linux.exit_group(127);
        }
        sys.close(out[1]);
        const pid: linux.pid_t = @intCast(rc);
        assert(pid > 0);
        return .{ .pid = pid, .fd = out[0], .deadline_ms = now_ms + timeout_ms };
    }

    /// Reads what the probe wrote. Returns true when the output is complete (end of file,
    /// or a full buffer: no identity line is that long); the caller then takes `fd` out of
    /// its loop and calls `closeOutput`.
    pub fn onReadable(self: *Probe) bool {
        const fd = self.fd orelse return true;
        while (self.len < self.buf.len) {
            const n = sys.read(fd, self.buf[self.len..]) catch |err| switch (err) {
                error.WouldBlock => return false,
                error.Interrupted => continue,
                else => return true,
            };
            if (n == 0) return true;
            self.len += n;
        }
        assert(self.len == self.buf.len);
        return true;
    }

    pub fn closeOutput(self: *Probe) void {
        const fd = self.fd orelse return;
        sys.close(fd);
        self.fd = null;
    }

    pub fn onExit(self: *Probe, status: u32) void {
        assert(self.status == null);
        self.status = status;
    }

    /// Whether the answer is complete: output read to the end and the exit reaped.
    pub fn done(self: *const Probe) bool {
        return self.fd == null and self.status != null;
    }

    /// At the deadline: the probe is killed (its exit is reaped later, as another child's)
    /// and its output closed; the answer is a failure.
    pub fn expire(self: *Probe, failure: *ProbeFailure) void {
        if (self.status == null) _ = linux.kill(self.pid, linux.SIG.KILL);
        self.closeOutput();
        failure.describe("--fingerprint did not answer in {d} ms", .{timeout_ms});
    }

    /// The identity the probe printed, or why there is none. Only once `done`.
    pub fn result(self: *const Probe, failure: *ProbeFailure) error{ProbeFailed}!Identity {
        assert(self.done());
        return interpret(self.status.?, self.buf[0..self.len], failure);
    }
};

/// What a `--fingerprint` run that exited with wait status `status` after printing `output`
/// says.
fn interpret(status: u32, output: []const u8, failure: *ProbeFailure) error{ProbeFailed}!Identity {
    if (status & 0x7f != 0) return failure.set("--fingerprint was killed by signal {d}", .{
        status & 0x7f,
    });
    const code = (status >> 8) & 0xff;
    if (code == 127 and output.len == 0) {
        return failure.set("cannot execute it (exited with code 127)", .{});
    }
    if (code != 0) return failure.set("--fingerprint exited with code {d}", .{code});
    return parseIdentity(output) orelse failure.set("--fingerprint printed no identity", .{});
}

/// "spec=HEX supervisor=HEX\n".
fn parseIdentity(text: []const u8) ?Identity {
    const line = if (text.len > 0 and text[text.len - 1] == '\n') text[0 .. text.len - 1] else text;
    if (line.len != "spec=".len + 16 + " supervisor=".len + 16) return null;
    if (!std.mem.startsWith(u8, line, "spec=")) return null;
    const rest = line["spec=".len + 16 ..];
    if (!std.mem.startsWith(u8, rest, " supervisor=")) return null;
    var identity: Identity = undefined;
    @memcpy(&identity.spec, line["spec=".len..][0..16]);
    @memcpy(&identity.supervisor, rest[" supervisor=".len..][0..16]);
    return identity;
}

// The old supervisor's side.

/// What the old supervisor hands over.
pub const StartOptions = struct {
    exe_path: [*:0]const u8,
    args: []const [*:0]const u8,
    /// The environment without the variables of an earlier hand-over.
    envp: [*:null]const ?[*:0]const u8,
    /// Every slot's sockets, `config.listeners.len` per slot, in slot order.
    sockets: []const sys.Fd,
    /// The newest generation number this supervisor handed out: the new one continues.
    generation: u32,
    /// The listeners whose sockets came from systemd.
    activated: []const bool,
};

/// A started new supervisor that has not said ready yet.
pub const Successor = struct {
    pid: linux.pid_t,
    /// The read end of the ready pipe, non-blocking.
    ready_fd: sys.Fd,
    buf: [max_ready_line]u8 = undefined,
    len: usize = 0,

    /// Reads what the new supervisor wrote: the kept-socket flags once its line is whole,
    /// `error.EndOfStream` when it closed the pipe (or exited) without one.
    pub fn readReady(self: *Successor) error{ EndOfStream, WouldBlock }![]const u8 {
        var closed = false;
        while (self.len < self.buf.len) {
            const n = sys.read(self.ready_fd, self.buf[self.len..]) catch |err| switch (err) {
                error.WouldBlock => break,
                error.Interrupted => continue,
                else => 0,
            };
            if (n == 0) {
                closed = true;
                break;
            }
            self.len += n;
        }
        const text = self.buf[0..self.len];
        if (compat.findScalar(u8, text, '\n')) |end| {
            if (!std.mem.startsWith(u8, text, "ready ")) return error.EndOfStream;
            return text["ready ".len..end];
        }
        if (closed or self.len == self.buf.len) return error.EndOfStream;
        return error.WouldBlock;
    }
};

/// As many sockets as a new supervisor takes (`activation.max_passed`).
const max_passed = 4096;
const max_ready_line = "ready ".len + max_passed + 1;

/// Starts the binary on disk as the new supervisor, handing it every socket.
pub fn start(allocator: std.mem.Allocator, options: StartOptions) !Successor {
    const n = options.sockets.len;
    assert(n > 0);
    // More workers × listeners than that (up to 1024 × the listener count) cannot be handed
    // over in one piece: the upgrade fails, and this supervisor serves on.
    if (n > max_passed) return error.TooManySocketsToHandOver;
    assert(n % config.listeners.len == 0);
    const names = try fdNames(allocator, n);
    const handover = try handoverVariable(allocator, options, first_fd + n);
    const env = try successorEnv(allocator, options.envp, names, handover);
    const argv = try allocator.allocSentinel(?[*:0]const u8, options.args.len, null);
    for (options.args, 0..) |arg, i| argv[i] = arg;

    var ready: [2]sys.Fd = undefined;
    if (compat.errno(linux.pipe2(&ready, .{ .CLOEXEC = true, .NONBLOCK = true })) != .SUCCESS) {
        return error.PipeFailed;
    }
    const rc = linux.fork();
    if (compat.errno(rc) != .SUCCESS) {
        sys.close(ready[0]);
        sys.close(ready[1]);
        return error.ForkFailed;
    }
    if (rc == 0) becomeSuccessor(options, ready[1], env, argv);
    sys.close(ready[1]);
    return .{ .pid = @intCast(rc), .ready_fd = ready[0] };
}

const first_fd: sys.Fd = 3;

/// REUSEPORT_UPGRADE=<this pid>:<generation>:<ready fd>:<activated listeners>.
fn handoverVariable(
    allocator: std.mem.Allocator,
    options: StartOptions,
    ready_fd: usize,
) ![:0]u8 {
    assert(options.activated.len == config.listeners.len);
    var len: usize = variable.len + 64;
    for (config.listeners) |l| len += l.name.len + 1;
    const text = try allocator.allocSentinel(u8, len, 0);
    var at = (try compat.bufPrint(text, variable ++ "={d}:{d}:{d}:", .{
        linux.getpid(), options.generation, ready_fd,
    })).len;
    var first = true;
    for (config.listeners, options.activated) |l, activated| {
        if (!activated) continue;
        if (!first) {
            text[at] = ',';
            at += 1;
        }
        first = false;
        @memcpy(text[at..][0..l.name.len], l.name);
        at += l.name.len;
    }
    text[at] = 0;
    return text[0..at :0];
}

/// "name:name:…", one listener name per socket in slot order.
fn fdNames(allocator: std.mem.Allocator, n: usize) ![:0]u8 {
    var len: usize = "LISTEN_FDNAMES=".len + n - 1;
    for (0..n) |k| len += config.listeners[k % config.listeners.len].name.len;
    const text = try allocator.allocSentinel(u8, len, 0);
    var at: usize = 0;
    for ("LISTEN_FDNAMES=") |c| {
        text[at] = c;
        at += 1;
    }
    for (0..n) |k| {
        if (k > 0) {
            text[at] = ':';
            at += 1;
        }
        const name = config.listeners[k % config.listeners.len].name;
        @memcpy(text[at..][0..name.len], name);
        at += name.len;
    }
    assert(at == len);
    return text;
}

/// Slots of the new environment filled in by the child, which alone knows its pid.
const child_slots = 3;

/// The environment without WATCHDOG_PID (the child sets its own), with LISTEN_FDNAMES and
/// REUSEPORT_UPGRADE, and room at the end for LISTEN_PID, LISTEN_FDS and WATCHDOG_PID.
fn successorEnv(
    allocator: std.mem.Allocator,
    envp: [*:null]const ?[*:0]const u8,
    names: [:0]const u8,
    handover: [:0]const u8,
) ![:null]?[*:0]const u8 {
    var len: usize = 0;
    while (envp[len] != null) len += 1;
    const env = try allocator.allocSentinel(?[*:0]const u8, len + 2 + child_slots, null);
    @memset(env, null);
    var n: usize = 0;
    for (0..len) |i| {
        const entry = std.mem.span(envp[i].?);
        if (std.mem.startsWith(u8, entry, "WATCHDOG_PID=")) continue;
        env[n] = envp[i];
        n += 1;
    }
    env[n] = names.ptr;
    env[n + 1] = handover.ptr;
    return env;
}

/// The child side of fork: the sockets go to 3, 4, …, the ready pipe right after them, and
/// the binary on disk is executed. Only system calls and formatting into stack buffers.
fn becomeSuccessor(
    options: StartOptions,
    ready: sys.Fd,
    env: [:null]?[*:0]const u8,
    argv: [:null]?[*:0]const u8,
) noreturn {
    const n = options.sockets.len;
    const first = first_fd;
    const ready_target: sys.Fd = first + @as(sys.Fd, @intCast(n));
    // First every descriptor is copied above all sources and targets, so that moving one
    // into place never overwrites another still to be moved.
    var base: sys.Fd = ready_target + 1;
    for (options.sockets) |fd| base = @max(base, fd + 1);
    base = @max(base, ready + 1);
    const f_dupfd: i32 = 0;
    const ready_copy = linux.fcntl(ready, f_dupfd, @intCast(base));
    if (compat.errno(ready_copy) != .SUCCESS) linux.exit_group(126);
    var copies: [max_passed]sys.Fd = undefined;
    for (options.sockets, 0..) |fd, k| {
        const rc = linux.fcntl(fd, f_dupfd, @intCast(base));
        if (compat.errno(rc) != .SUCCESS) linux.exit_group(126);
        copies[k] = @intCast(rc);
    }
    for (copies[0..n], 0..) |copy, k| {
        const target = first + @as(sys.Fd, @intCast(k));
        if (compat.errno(linux.dup3(copy, target, 0)) != .SUCCESS) linux.exit_group(126);
        sys.close(copy);
    }
    if (compat.errno(linux.dup3(@intCast(ready_copy), ready_target, 0)) != .SUCCESS) {
        linux.exit_group(126);
    }
    sys.close(@intCast(ready_copy));

    const pid = linux.getpid();
    var at: usize = 0;
    while (env[at] != null) at += 1;
    var listen_pid: [32:0]u8 = undefined;
    env[at] = formatZ(&listen_pid, "LISTEN_PID={d}", .{pid});
    var listen_fds: [32:0]u8 = undefined;
    env[at + 1] = formatZ(&listen_fds, "LISTEN_FDS={d}", .{n});
    var watchdog_pid: [32:0]u8 = undefined;
    if (sys.getEnv(options.envp, "WATCHDOG_USEC") != null) {
        env[at + 2] = formatZ(&watchdog_pid, "WATCHDOG_PID={d}", .{pid});
    }
    // The signal mask stays blocked across exec, as for workers: a signal that arrives
    // before the new supervisor reads its signalfd waits for it.
    _ = linux.execve(options.exe_path, argv.ptr, env.ptr);
    linux.exit_group(127);
}

fn formatZ(buf: [:0]u8, comptime format: []const u8, args: anytype) [*:0]const u8 {
    const text = compat.bufPrint(buf, format, args) catch unreachable;
    buf[text.len] = 0;
    return buf[0..text.len :0].ptr;
}

/// After the new supervisor said ready: the sockets it did not keep, of listeners it still
/// serves (the surplus slots of an upgrade to fewer workers). Their old workers go on serving
/// them until their queues have stayed empty for `grace_ms` (connections still completing
/// their handshake land there meanwhile), or for at most `wait_ms`; then the old generation
/// retires and they close.
pub const LeftBehind = struct {
    /// One flag per socket of the old supervisor, in slot order.
    leaving: []bool,
    deadline_ms: u64,
    empty_since_ms: ?u64 = null,

    pub const wait_ms = 5_000;
    pub const grace_ms = 200;

    /// Marks the sockets left behind, from the new supervisor's `kept` flags, and takes each
    /// UDP one out of consideration for new datagrams. `leaving` has one entry per socket.
    pub fn init(
        leaving: []bool,
        sockets: []const sys.Fd,
        kept: []const u8,
        activated: []const bool,
        now_ms: u64,
    ) LeftBehind {
        assert(leaving.len == sockets.len);
        const count = config.listeners.len;
        var continues: [config.listeners.len]bool = @splat(false);
        for (0..sockets.len) |p| {
            if (p < kept.len and kept[p] == '1') continues[p % count] = true;
        }
        for (leaving, sockets, 0..) |*left, fd, p| {
            // Listeners with sockets from systemd are not steered (see `steering.zig`):
            // waiting for their queues would not help, and one may be a duplicate of a kept
            // socket.
            const is_kept = p < kept.len and kept[p] == '1';
            left.* = !activated[p % count] and !is_kept and continues[p % count];
            // A UDP socket's last close leaves a moment in which the kernel's lookup can
            // still find it in the port's hash chain, outside its group, and hand it a
            // datagram that is then freed with it. Connected to itself, it no longer matches
            // any other peer: only what is queued reaches it, and its worker reads that
            // before it closes.
            if (left.* and config.listeners[p % count].protocol == .udp) {
                listener.leaveUdpGroup(fd);
            }
        }
        return .{ .leaving = leaving, .deadline_ms = now_ms + wait_ms };
    }

    /// Whether the old generation may retire now.
    pub fn settled(self: *LeftBehind, sockets: []const sys.Fd, now_ms: u64) bool {
        if (self.empty(sockets)) {
            if (self.empty_since_ms == null) self.empty_since_ms = now_ms;
        } else {
            self.empty_since_ms = null;
        }
        if (now_ms >= self.deadline_ms) return true;
        const since = self.empty_since_ms orelse return false;
        return now_ms - since >= grace_ms;
    }

    fn empty(self: *const LeftBehind, sockets: []const sys.Fd) bool {
        for (sockets, self.leaving, 0..) |fd, left, p| {
            if (!left) continue;
            const protocol = config.listeners[p % config.listeners.len].protocol;
            if (!steering.isEmpty(fd, protocol)) return false;
        }
        return true;
    }
};

// The new supervisor's side.

/// What `steerHandedGroups` works on.
pub const Handed = struct {
    sockets: []const sys.Fd,
    /// How many sockets of each listener the old supervisor handed over.
    handed: []const usize,
    activated: []const bool,
    workers: u16,
    /// With `cpuAffinity`: the CPUs the workers are pinned to (see `locality.zig`).
    by_cpu: ?*const locality.Cpus = null,
};

/// Once the new supervisor's first generation is ready: in every group it took over from
/// the old supervisor (`handed[i]` sockets of listener i), new connections go to its own
/// `workers` slots only when it has fewer, to every member otherwise (a program an earlier
/// upgrade attached goes). With `by_cpu`, the CPU program for the first `workers` members
/// does both. Listeners with sockets from systemd are left alone.
pub fn steerHandedGroups(h: Handed) void {
    for (config.listeners, h.handed, h.activated, 0..) |l, n, from_systemd, i| {
        if (n == 0 or from_systemd) continue;
        if (h.by_cpu) |cpus| {
            if (locality.steerByCpu(h.sockets[i], cpus, h.workers)) |_| {
                continue;
            } else |err| reportCpuSteering(l.name, err);
        }
        // The surplus sockets are the highest slots, so the highest indices of the group.
        const members: ?u16 = if (n > h.workers) h.workers else null;
        listener.steerGroup(h.sockets[i], members) catch |err| {
            var text: [192]u8 = undefined;
            const detail = compat.bufPrint(&text, "listener {s}: cannot steer connections " ++
                "away from the sockets left behind ({s}); they are served until they empty", .{
                l.name, @errorName(err),
            }) catch "cannot steer connections away from the sockets left behind";
            events.emitDegraded("steering", detail);
        };
    }
}

/// A group that could not be steered by CPU: its workers stay pinned, and connections are
/// spread as without `cpuAffinity`.
pub fn reportCpuSteering(name: []const u8, err: locality.SteerError) void {
    var text: [256]u8 = undefined;
    const why = switch (err) {
        error.TooManyCpus => "the program would pass the kernel's 4096 instructions",
        error.Unexpected => "the kernel refused the program",
    };
    const detail = compat.bufPrint(&text, "listener {s}: connections are not steered to " ++
        "the worker on their CPU: {s}; workers stay pinned", .{ name, why }) catch
        "connections are not steered to the worker on their CPU";
    events.emitDegraded("cpu_steering", detail);
}

/// What REUSEPORT_UPGRADE told a new supervisor.
pub const Handover = struct {
    from_pid: linux.pid_t,
    /// The old supervisor's newest generation number.
    generation: u32,
    ready_fd: sys.Fd,
    /// The listeners whose sockets came from systemd, comma-separated.
    activated: []const u8,

    /// Whether listener `name`'s sockets came from systemd.
    pub fn isActivated(self: *const Handover, name: []const u8) bool {
        if (self.activated.len == 0) return false;
        var names = std.mem.splitScalar(u8, self.activated, ',');
        while (names.next()) |n| {
            if (std.mem.eql(u8, n, name)) return true;
        }
        return false;
    }

    /// The hand-over meant for this process: the variable comes with LISTEN_PID naming it.
    pub fn fromEnv(envp: [*:null]const ?[*:0]const u8, pid: linux.pid_t) ?Handover {
        const owner_text = sys.getEnv(envp, "LISTEN_PID") orelse return null;
        const owner = std.fmt.parseInt(linux.pid_t, owner_text, 10) catch return null;
        if (owner != pid) return null;
        return parse(sys.getEnv(envp, variable) orelse return null);
    }

    fn parse(text: []const u8) ?Handover {
        var fields = std.mem.splitScalar(u8, text, ':');
        const handover: Handover = .{
            .from_pid = parseField(linux.pid_t, fields.next()) orelse return null,
            .generation = parseField(u32, fields.next()) orelse return null,
            .ready_fd = parseField(sys.Fd, fields.next()) orelse return null,
            .activated = fields.next() orelse return null,
        };
        if (fields.next() != null) return null;
        return handover;
    }

    /// Tells the old supervisor this one serves, and which passed sockets it kept.
    pub fn announceReady(self: *const Handover, kept: []const bool) void {
        var line: [max_ready_line]u8 = undefined;
        const head = "ready ";
        @memcpy(line[0..head.len], head);
        const n = @min(kept.len, max_passed);
        for (kept[0..n], 0..) |k, i| line[head.len + i] = if (k) '1' else '0';
        line[head.len + n] = '\n';
        // A line that cannot be written (the old supervisor is gone) ends the upgrade from
        // the other side: its exit, or its deadline for this one to say ready.
        sys.writeAll(self.ready_fd, line[0 .. head.len + n + 1]) catch {};
        sys.close(self.ready_fd);
    }
};

fn parseField(comptime T: type, text: ?[]const u8) ?T {
    return std.fmt.parseInt(T, text orelse return null, 10) catch null;
}

test "parses an identity line and refuses anything else" {
    const line = "spec=0123456789abcdef supervisor=fedcba9876543210\n";
    const identity = parseIdentity(line).?;
    try std.testing.expectEqualStrings("0123456789abcdef", &identity.spec);
    try std.testing.expectEqualStrings("fedcba9876543210", &identity.supervisor);
    try std.testing.expect(parseIdentity("spec=01 supervisor=02\n") == null);
    try std.testing.expect(parseIdentity("") == null);
}

test "this program's own identity is recognised" {
    var identity: Identity = undefined;
    @memcpy(&identity.spec, config.spec_fingerprint);
    @memcpy(&identity.supervisor, config.supervisor_fingerprint);
    try std.testing.expect(identity.isThisProgram());
    identity.supervisor[0] +%= 1;
    try std.testing.expect(!identity.isThisProgram());
}

test "parses the hand-over variable, for the process LISTEN_PID names only" {
    const h = Handover.parse("41:7:12:who,web").?;
    try std.testing.expectEqual(@as(linux.pid_t, 41), h.from_pid);
    try std.testing.expectEqual(@as(u32, 7), h.generation);
    try std.testing.expectEqual(@as(sys.Fd, 12), h.ready_fd);
    try std.testing.expect(h.isActivated("web"));
    try std.testing.expect(!h.isActivated("we"));
    try std.testing.expect(!Handover.parse("41:7:12:").?.isActivated(""));
    try std.testing.expect(Handover.parse("41:7:12") == null);
    try std.testing.expect(Handover.parse("41:7:12::9") == null);
    const envp = [_:null]?[*:0]const u8{ "LISTEN_PID=5", variable ++ "=41:7:12:" };
    try std.testing.expect(Handover.fromEnv(&envp, 5) != null);
    try std.testing.expect(Handover.fromEnv(&envp, 6) == null);
}

test "names every passed socket after its listener, slot after slot" {
    var arena = std.heap.ArenaAllocator.init(std.testing.allocator);
    defer arena.deinit();
    const text = try fdNames(arena.allocator(), config.listeners.len * 2);
    const first = "LISTEN_FDNAMES=" ++ config.listeners[0].name;
    try std.testing.expect(std.mem.startsWith(u8, text, first));
    const colons = std.mem.count(u8, text, ":");
    try std.testing.expectEqual(config.listeners.len * 2 - 1, colons);
}

test "the hand-over variable names the listeners whose sockets came from systemd" {
    var arena = std.heap.ArenaAllocator.init(std.testing.allocator);
    defer arena.deinit();
    var activated: [config.listeners.len]bool = @splat(false);
    activated[activated.len - 1] = true;
    const no_variables = [_:null]?[*:0]const u8{};
    const options: StartOptions = .{
        .exe_path = "x",
        .args = &.{},
        .envp = &no_variables,
        .sockets = &.{},
        .generation = 3,
        .activated = &activated,
    };
    const text = try handoverVariable(arena.allocator(), options, 9);
    const value = text[variable.len + 1 ..];
    const h = Handover.parse(value).?;
    try std.testing.expectEqual(linux.getpid(), h.from_pid);
    try std.testing.expectEqual(@as(u32, 3), h.generation);
    try std.testing.expectEqual(@as(sys.Fd, 9), h.ready_fd);
    try std.testing.expectEqualStrings(config.listeners[activated.len - 1].name, h.activated);
}

test "what is left behind: sockets not kept, of listeners that stay; settled after the grace" {
    const n = config.listeners.len;
    // No real descriptors: every queue reads as empty.
    var sockets: [2 * n]sys.Fd = @splat(-1);
    var leaving: [2 * n]bool = undefined;
    var kept: [2 * n]u8 = undefined;
    for (0..n) |i| {
        kept[i] = '1';
        kept[n + i] = '0';
    }
    // Listener 0 kept nothing: removed or moved, it has no group left to wait for.
    kept[0] = '0';
    const activated: [n]bool = @splat(false);
    var left = LeftBehind.init(&leaving, &sockets, &kept, &activated, 1000);
    try std.testing.expect(!leaving[0] and !leaving[n]);
    for (1..n) |i| try std.testing.expect(!leaving[i] and leaving[n + i]);
    try std.testing.expect(!left.settled(&sockets, 1000));
    try std.testing.expect(!left.settled(&sockets, 1000 + LeftBehind.grace_ms - 1));
    try std.testing.expect(left.settled(&sockets, 1000 + LeftBehind.grace_ms));
}

test "the ready line carries one flag per passed socket" {
    var pair: [2]sys.Fd = undefined;
    const rc = linux.pipe2(&pair, .{ .CLOEXEC = true, .NONBLOCK = true });
    try std.testing.expect(compat.errno(rc) == .SUCCESS);
    const handover: Handover = .{
        .from_pid = 1,
        .generation = 1,
        .ready_fd = pair[1],
        .activated = "",
    };
    handover.announceReady(&.{ true, false, true });
    var successor: Successor = .{ .pid = 0, .ready_fd = pair[0] };
    defer sys.close(pair[0]);
    try std.testing.expectEqualStrings("101", try successor.readReady());
}

test "a probe's answer: exit statuses and output read as an identity or a reason" {
    var failure: ProbeFailure = .{};
    const line = "spec=0123456789abcdef supervisor=fedcba9876543210\n";
    const identity = try interpret(0, line, &failure);
    try std.testing.expectEqualStrings("0123456789abcdef", &identity.spec);
    try std.testing.expectError(error.ProbeFailed, interpret(9, line, &failure));
    try std.testing.expectEqualStrings("--fingerprint was killed by signal 9", failure.text);
    try std.testing.expectError(error.ProbeFailed, interpret(127 << 8, "", &failure));
    try std.testing.expectEqualStrings("cannot execute it (exited with code 127)", failure.text);
    try std.testing.expectError(error.ProbeFailed, interpret(3 << 8, line, &failure));
    try std.testing.expectEqualStrings("--fingerprint exited with code 3", failure.text);
    try std.testing.expectError(error.ProbeFailed, interpret(0, "hello\n", &failure));
    try std.testing.expectEqualStrings("--fingerprint printed no identity", failure.text);
}

test "a probe runs without blocking: its output and exit arrive in either order" {
    // /bin/echo prints its argument: an answer, but no identity.
    var probe = try Probe.start("/bin/echo", &[_:null]?[*:0]const u8{}, 0);
    try std.testing.expect(!probe.done());
    var complete = false;
    var turns: usize = 0;
    while (!complete and turns < 500) : (turns += 1) {
        var fds = [_]linux.pollfd{.{ .fd = probe.fd.?, .events = linux.POLL.IN, .revents = 0 }};
        _ = linux.poll(&fds, 1, 20);
        complete = probe.onReadable();
    }
    try std.testing.expect(complete);
    probe.closeOutput();
    try std.testing.expect(!probe.done());
    const status = (try compat.waitpid(probe.pid, 0)).?;
    probe.onExit(status.status);
    try std.testing.expect(probe.done());
    var failure: ProbeFailure = .{};
    try std.testing.expectError(error.ProbeFailed, probe.result(&failure));
    try std.testing.expectEqualStrings("--fingerprint printed no identity", failure.text);
    try std.testing.expectEqualStrings("--fingerprint\n", probe.buf[0..probe.len]);
}

test "a probe that does not answer in time is killed" {
    // sleep(1) refuses --fingerprint quickly, but the test gives up on it at once.
    var probe = try Probe.start("/bin/sleep", &[_:null]?[*:0]const u8{}, 0);
    try std.testing.expectEqual(@as(u64, Probe.timeout_ms), probe.deadline_ms);
    var failure: ProbeFailure = .{};
    probe.expire(&failure);
    try std.testing.expectEqualStrings("--fingerprint did not answer in 3000 ms", failure.text);
    try std.testing.expect(probe.fd == null);
    _ = try compat.waitpid(probe.pid, 0);
}
