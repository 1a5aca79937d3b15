//! Worker mode, the entry point of a worker process (`--worker`, see
//! `supervisor/worker_process.zig` for how the supervisor starts one): checks that this binary
//! is the one the supervisor expects, gathers the inherited sockets, serves them with the
//! event loop (`worker.zig`) until asked to stop, and reports its counters as it exits.
const std = @import("std");
const resolve = @import("../net/resolve.zig");
const config = @import("../config.zig");
const cli = @import("../cli.zig");
const worker_mod = @import("worker.zig");
const worker_link = @import("../supervisor/worker_link.zig");
const log = @import("../log.zig");
const compat = @import("../compat.zig");
const sys = @import("../net/sys.zig");
const privileges = @import("../supervisor/privileges.zig");
const events = @import("../events.zig");
const output = @import("../output.zig");
const linux = std.os.linux;
const metrics_region = @import("../metrics/region.zig");

const listener_count = config.listeners.len;

/// Worker mode: serve the inherited sockets until the supervisor asks for a stop.
pub fn run(role: cli.WorkerRole, options: cli.Options) u8 {
    if (!role.matchesIdentity()) {
        // Another spec's binary may disagree about every listener, another supervisor's about
        // the role itself: refuse before touching any inherited descriptor, and say why, so
        // that the supervisor can.
        log.err("this binary's identity is {s}, the supervisor's {s}", .{
            config.identity, role.fingerprint,
        });
        // A supervisor that cannot hear it sees the worker exit 1 before ready all the same.
        sys.writeAll(role.report_fd, "mismatch " ++ config.identity ++ "\n") catch {};
        return 1;
    }
    const own = 1 + @as(usize, role.ring_len);
    var sockets: [(cli.max_ring + 1) * listener_count]worker_mod.Socket = undefined;
    for (0..own) |slot| {
        const fds = if (slot == 0) role.fds else role.ring[slot - 1].fds;
        for (fds, 0..) |fd, i| {
            sockets[slot * listener_count + i] = .{ .fd = fd, .listener_index = @intCast(i) };
        }
    }
    if (role.metrics_fd >= 0) {
        // The mapping outlives the descriptor.
        if (!metrics_region.attach(role.metrics_fd, role.metrics_cell)) {
            log.warn("worker {d}: the metrics region is not this binary's layout; its " ++
                "counters reach only its exit report", .{role.index});
        }
        sys.close(role.metrics_fd);
    }
    // The upstream servers' names as the supervisor resolved them (read by the pool).
    resolve.current = options.upstream_addresses;
    var link = worker_link.Link.init(&role, options.limits.watchdog_ms);
    var w = worker_mod.Worker.init(std.heap.page_allocator, .{
        .sockets = sockets[0 .. own * listener_count],
        .index = role.index,
        .generation = role.generation,
        .limits = options.limits,
        .control_fd = role.control_fd,
        .link = &link,
    }) catch |err| {
        log.err("worker {d} cannot start: {s}", .{ role.index, @errorName(err) });
        return 1;
    };
    if (options.drop_to) |*credentials| {
        if (!dropPrivileges(credentials, role.index)) return 1;
    }
    sys.writeAll(role.report_fd, "ready\n") catch return 1;
    _ = w.run();
    // Room for every counter at its largest (20 keys with 20 digits each take under 700).
    var buf: [1024]u8 = undefined;
    const line = w.stats().formatLine(&buf) catch unreachable;
    // The supervisor is gone or stopped listening: the counters die with the worker.
    sys.writeAll(role.report_fd, line) catch {};
    return 0;
}

/// Becomes the service's user with the sockets in hand, before serving anything; false (and
/// an `error` event) when that fails or can be undone: such a worker never serves, and its
/// supervisor sees it exit before ready.
fn dropPrivileges(credentials: *const privileges.Credentials, index: u16) bool {
    const parent = linux.getppid();
    output.prepare();
    privileges.drop(credentials) catch |err| {
        var buf: [256]u8 = undefined;
        const message = compat.bufPrint(&buf, "worker {d} cannot become uid {d} gid {d} " ++
            "({s}); it does not serve", .{
            index, credentials.uid, credentials.gid, @errorName(err),
        }) catch buf[0..0];
        log.err("{s}", .{message});
        var line = events.Line.begin("error");
        line.string("phase", "privileges");
        line.int("index", index);
        line.string("error", @errorName(err));
        line.string("message", message);
        line.emit();
        return false;
    };
    return privileges.rearmParentDeath(parent);
}
