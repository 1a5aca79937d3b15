//! The listening sockets a supervisor starts with: one per listener per worker slot, opened
//! here, or taken from systemd's socket activation or from the supervisor this one took over
//! from (`activation.Passed`), and, with the fd store on, sent to systemd to keep
//! (see the supervisor's header, supervisor.zig).
const std = @import("std");
const config = @import("../config.zig");
const cli = @import("../cli.zig");
const listener = @import("../net/listener.zig");
const activation = @import("../systemd/activation.zig");
const address = @import("../address.zig");
const events = @import("../events.zig");
const notify = @import("../systemd/notify.zig");
const upgrade = @import("../upgrade/upgrade.zig");
const log = @import("../log.zig");
const sys = @import("../net/sys.zig");
const assert = std.debug.assert;

const listener_count = config.listeners.len;

/// Where the sockets systemd or a predecessor passed come from: the hand-over's listeners
/// that were systemd's are marked in `activated`.
pub fn activationSource(
    handover: ?upgrade.Handover,
    activated: *[listener_count]bool,
) activation.Source {
    const h = handover orelse return .systemd;
    for (&config.listeners, activated) |l, *a| a.* = h.isActivated(l.name);
    return .{ .upgrade = activated };
}

/// What systemd holds matches what this supervisor serves: with the fd store on, the sockets
/// of slots beyond `workers` leave it and every slot's sockets go into it; surplus sockets
/// systemd passed are closed.
pub fn settle(
    notifier: *const notify.Notifier,
    options: cli.Options,
    envp: [*:null]const ?[*:0]const u8,
    passed: activation.Passed,
    opened: Opened,
    workers: u16,
    source: activation.Source,
) void {
    const fd_store = notifier.enabled() and (options.fd_store or notify.fdStoreOffered(envp));
    if (fd_store) dropSurplusFromStore(notifier, passed, workers);
    closeSurplus(passed, workers, source);
    if (fd_store) storeSockets(notifier, opened.sockets, opened.shared, workers);
}

/// Every slot's sockets, where each listener ended up, and which sockets are duplicates of
/// a passed one (slots sharing its queue).
pub const Opened = struct {
    sockets: []sys.Fd,
    shared: []bool,
    endpoints: [listener_count]address.Endpoint,
    ports: [listener_count]u16,
};

/// Opens (or takes from `passed`) one socket per listener per slot. Null after a failure it
/// has logged; nothing it opened is left open then.
pub fn open(
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
    // accident: probed, and refused before any socket is opened. Opening first would make
    // this program's sockets members of the other group for a moment (a UDP socket is one
    // from its bind): what the kernel gave them would be lost when they close.
    for (&config.listeners, 0..) |*l, i| {
        const own = passed.countFor(i) == 0;
        if (options.join or !own) continue;
        switch (listener.portHolder(l, opened.endpoints[i])) {
            .none => continue,
            .group => events.reportHeldPort(l, opened.endpoints[i]),
            .other => events.reportPortInUse(l, opened.endpoints[i]),
        }
        return null;
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
    return opened;
}

/// How many sockets of each listener an old supervisor handed over, and which of them this
/// one serves (`kept`, one flag per passed socket): the rest stay with the old one, to be
/// emptied and closed there.
pub fn handedFlags(
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
