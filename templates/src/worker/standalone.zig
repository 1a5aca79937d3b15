//! Standalone mode: this one process opens every listener and serves it, with no
//! supervisor. Several such processes, started independently, share the ports through
//! SO_REUSEPORT; the kernel spreads new connections across them.
//!
//! What a stop costs here: when this process closes its listening sockets, connections
//! still queued on them (accepted by the kernel, not yet by us) are reset, unless
//! net.ipv4.tcp_migrate_req=1 lets the kernel move them to another process of the group.
//! The worker accepts what is queued right before closing, which leaves only the race
//! between that last accept and close. Three ways avoid it entirely: the supervisor mode;
//! systemd socket activation (sockets passed in LISTEN_FDS, `activation.zig`, are served here
//! too, every one of them, and belong to systemd, which keeps them open across restarts);
//! and `--handover PATH` (`handover.zig`), with which the new process takes the old one's
//! sockets instead of adding its own to the group.
const std = @import("std");
const config = @import("../config.zig");
const address = @import("../address.zig");
const cli = @import("../cli.zig");
const listener = @import("../net/listener.zig");
const activation = @import("../systemd/activation.zig");
const handover = @import("../upgrade/handover.zig");
const worker_mod = @import("worker.zig");
const events = @import("../events.zig");
const log = @import("../log.zig");
const access_log = @import("../access_log.zig");
const pid_file = @import("../supervisor/pid_file.zig");
const notify = @import("../systemd/notify.zig");
const compat = @import("../compat.zig");
const sys = @import("../net/sys.zig");
const privileges = @import("../supervisor/privileges.zig");
const output = @import("../output.zig");
const admin_view = @import("admin_view.zig");
const metrics_region = @import("../metrics/region.zig");
const linux = std.os.linux;

pub fn run(options: cli.Options, process: compat.Process) u8 {
    const allocator = std.heap.page_allocator;
    // Before any socket is opened: a request log that cannot be opened stops the start here.
    if (!access_log.prepareFile(access_log.ownerFor(options.drop_to))) return 1;
    var diag: activation.Diagnostic = .{};
    const pid = linux.getpid();
    const asked = &options.endpoints;
    const passed = activation.take(allocator, process.envp, pid, asked, &diag) catch |err| {
        activation.report(&diag, err);
        return 1;
    };
    // With --handover, the listeners systemd did not pass come from the process serving the
    // handover path, if one does, as the very sockets it serves.
    const taken: handover.Taken = if (options.handover) |path|
        handover.take(allocator, path, asked) catch return 1
    else
        .{};
    // Every socket systemd passed is served (several may carry one listener's name); a
    // listener it did not pass is opened here.
    const capacity = config.listeners.len + passed.count();
    const sockets = allocator.alloc(worker_mod.Socket, capacity) catch return 1;
    var endpoints = options.endpoints;
    var ports: [config.listeners.len]u16 = undefined;
    const count = gather(passed, taken, sockets, &endpoints, &ports) orelse return 1;

    logTaken(taken);
    // From here on, PATH answers with this process's sockets.
    const server: ?handover.Server = if (options.handover) |path|
        handover.Server.open(path) catch {
            for (sockets[0..count]) |s| sys.close(s.fd);
            return 1;
        }
    else
        null;
    // What the exposition reads (metrics/render.zig, `View.region`).
    var metrics = ownMetrics(allocator) orelse return 1;
    var w = worker_mod.Worker.init(allocator, .{
        .sockets = sockets[0..count],
        .index = 0,
        .generation = 1,
        .limits = options.limits,
        .handover = if (server) |*s| s else null,
        .admin = adminFor(options, endpoints, ports, &metrics),
    }) catch |err| {
        log.err("cannot start: {s}", .{@errorName(err)});
        return 1;
    };
    // Reported by `admin.start` when it fails.
    w.openAdmin() catch return 1;
    events.logMigrationPolicy(.standalone);
    if (options.pid_file) |path| {
        pid_file.write(path, pid) catch |err| {
            log.err("cannot write pid file {s}: {s}", .{ path, @errorName(err) });
            return 1;
        };
    }
    defer if (options.pid_file) |path| pid_file.removeIfOwn(path, pid);
    if (options.drop_to) |*credentials| {
        if (!dropPrivileges(credentials)) return 1;
    }

    emitReady(&w, options, endpoints, ports);
    const notifier = notify.Notifier.init(process.envp);
    notifier.sendf("READY=1\nMAINPID={d}", .{pid});
    const reason = w.run();
    notifier.send("STOPPING=1");
    const report: events.WorkerReport = .{ .index = 0, .pid = pid, .stats = w.stats() };
    events.emitStopped(1, reason, &.{report});
    return 0;
}

/// With a user named, this one process becomes it once its sockets are open and its pid file
/// written, before it serves: it cannot open a socket on a privileged port after that (it
/// never needs to: it ignores SIGHUP, and a new process replaces it), nor remove a pid file
/// or handover socket in a directory only root may write to.
fn dropPrivileges(credentials: *const privileges.Credentials) bool {
    // Its pipes are reopened while it still may (see `output.prepare`).
    output.prepare();
    privileges.drop(credentials) catch |err| {
        log.err("cannot become uid {d} gid {d} ({s}); not serving", .{
            credentials.uid, credentials.gid, @errorName(err),
        });
        var line = events.Line.begin("error");
        line.string("phase", "privileges");
        line.string("error", @errorName(err));
        line.string("message", "cannot drop privileges");
        line.emit();
        return false;
    };
    return true;
}

fn logTaken(taken: handover.Taken) void {
    if (taken.fds.len == 0) return;
    log.info("handover: serving {d} listening sockets taken from pid {d}", .{
        taken.fds.len, taken.from_pid,
    });
}

fn emitReady(
    w: *const worker_mod.Worker,
    options: cli.Options,
    endpoints: [config.listeners.len]address.Endpoint,
    ports: [config.listeners.len]u16,
) void {
    const pids = [_]i32{w.pid};
    var line: events.Line = undefined;
    events.readyLine(&line, .standalone, 1, &pids, endpoints, ports);
    if (w.admin) |a| events.adminField(&line, options.admin.?, a.port);
    events.workerIdentity(&line, options.drop_to);
    line.emit();
}

/// The admin listener's settings, when the spec or --admin asks for one.
fn adminFor(
    options: cli.Options,
    endpoints: [config.listeners.len]address.Endpoint,
    ports: [config.listeners.len]u16,
    metrics: *const metrics_region.Region,
) ?admin_view.Admin {
    const endpoint = options.admin orelse return null;
    var bound = endpoints;
    for (&bound, ports) |*e, port| e.port = port;
    return .{
        .endpoint = endpoint,
        .origin = if (options.admin_from_flag) .flag else .spec,
        .endpoints = bound,
        .metrics = metrics,
    };
}

/// The process's own metrics region: one slot, one cell, this process's (see
/// metrics/region.zig). Null after a failure it has logged.
fn ownMetrics(allocator: std.mem.Allocator) ?metrics_region.Region {
    var region = metrics_region.Region.create(allocator, 1, 1) catch |err| {
        log.err("cannot map the metrics region: {s}", .{@errorName(err)});
        return null;
    };
    region.claim(0, 0, 1);
    // The region was made by this very binary: its layout is this binary's.
    if (!metrics_region.attach(region.fd, 0)) unreachable;
    return region;
}

/// Fills `sockets` with what this process serves: every socket systemd passed, then per
/// listener the one taken over with --handover or one opened here; `endpoints` and `ports`
/// say where each listener ended up. Null after a failure it has logged.
fn gather(
    passed: activation.Passed,
    taken: handover.Taken,
    sockets: []worker_mod.Socket,
    endpoints: *[config.listeners.len]address.Endpoint,
    ports: *[config.listeners.len]u16,
) ?usize {
    var count: usize = 0;
    for (passed.fds, passed.listeners) |fd, l| {
        // systemd keeps them for the next start: a stop must not take them out of the group.
        sockets[count] = .{ .fd = fd, .listener_index = l, .held_elsewhere = true };
        count += 1;
    }
    for (&config.listeners, 0..) |*l, i| {
        if (passed.nthFor(i, 0)) |fd| {
            if (taken.forListener(i)) |unused| sys.close(unused);
            endpoints[i] = activation.boundEndpoint(fd) catch |err| {
                log.err("listener {s}: cannot read the passed socket's address: {s}", .{
                    l.name, @errorName(err),
                });
                return null;
            };
            ports[i] = endpoints[i].port;
            continue;
        }
        if (taken.forListener(i)) |fd| {
            sockets[count] = .{ .fd = fd, .listener_index = @intCast(i) };
            count += 1;
            endpoints[i] = activation.boundEndpoint(fd) catch endpoints[i];
            ports[i] = endpoints[i].port;
            continue;
        }
        // Independent processes share a port by design: say when the group had members.
        const joined = listener.portHolder(l, endpoints[i]) == .group;
        var failure: listener.Failure = .{};
        const bound = listener.open(l, endpoints[i], &failure) catch {
            events.reportOpenFailure(l, endpoints[i], failure);
            for (sockets[0..count]) |s| sys.close(s.fd);
            return null;
        };
        sockets[count] = .{ .fd = bound.fd, .listener_index = @intCast(i) };
        count += 1;
        ports[i] = bound.port;
        if (joined) events.emitJoined(l, endpoints[i]);
    }
    return count;
}
