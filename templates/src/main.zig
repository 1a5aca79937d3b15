//! The program's entry point: reads the command line and starts the mode it asks for.
const std = @import("std");
const config = @import("config.zig");
const compat = @import("compat.zig");
const cli = @import("cli.zig");
const standalone = @import("worker/standalone.zig");
const supervisor = @import("supervisor/start.zig");
const worker_entry = @import("worker/entry.zig");
const resolve = @import("net/resolve.zig");
const sys = @import("net/sys.zig");
const log = @import("log.zig");
const events = @import("events.zig");
const pid_file = @import("supervisor/pid_file.zig");
const upgrade = @import("upgrade/upgrade.zig");
const privileges = @import("supervisor/privileges.zig");
const access_log = @import("access_log.zig");
const linux = std.os.linux;

pub const main = compat.Entry(run).main;

fn run(process: compat.Process) u8 {
    var diag: cli.Diagnostic = .{};
    const command = cli.parse(process.args, &diag) catch {
        var buf: [600]u8 = undefined;
        const line = compat.bufPrint(&buf, config.name ++ ": {s}\nRun \"" ++ config.name ++
            " --help\" for usage.\n", .{diag.message}) catch diag.message;
        // The exit code says it when standard error cannot.
        sys.writeAll(2, line) catch {};
        return 2;
    };
    switch (command) {
        .help => {
            // Nobody reads standard output: there is no one left to tell.
            sys.writeAll(1, cli.usage) catch {};
            return 0;
        },
        .version => {
            // As for --help.
            sys.writeAll(1, config.name ++ " " ++ config.version ++ "\n") catch {};
            return 0;
        },
        .fingerprint => {
            // A supervisor probing this binary reads no identity and keeps serving as it was.
            sys.writeAll(1, "spec=" ++ config.spec_fingerprint ++ " supervisor=" ++
                config.supervisor_fingerprint ++ "\n") catch {};
            return 0;
        },
        .serve => |parsed| {
            var options = parsed;
            raiseFdLimit(options);
            access_log.configure(options.access_log_path, options.access_log_format);
            if (options.worker) |role| return worker_entry.run(role, options);
            // Before anything is claimed, opened or started: the user to drop to, and the
            // upstream servers given as host names (a name that does not resolve: exit 1).
            options.drop_to = resolveUser(options.privileges) orelse return 1;
            if (!resolve.atStart(&options.upstream_addresses)) return 1;
            // A standalone process's own pool reads them here; workers get them on their
            // command line.
            resolve.current = options.upstream_addresses;
            const path = options.pid_file orelse return serve(options, process);
            if (!claimPidFile(path, options, process)) return 1;
            defer pid_file.releaseClaim(path);
            return serve(options, process);
        },
    }
}

fn serve(options: cli.Options, process: compat.Process) u8 {
    if (options.standalone) return standalone.run(options, process);
    return supervisor.run(options, process);
}

/// The credentials workers drop to (null inside: nothing to drop); null outside after a
/// start-up error it has reported.
fn resolveUser(request: privileges.Request) ??privileges.Credentials {
    var diag: privileges.Diagnostic = .{};
    const credentials = privileges.resolveAtStart(request, &diag) catch {
        log.err("{s}", .{diag.message});
        var line = events.Line.begin("error");
        line.string("phase", "privileges");
        line.string("field", diag.field);
        line.string("message", diag.message);
        line.emit();
        return null;
    };
    return credentials;
}

/// One instance per pid file: a start that finds the file locked by a running instance stops
/// here, naming it. Not claimed by the process that takes over from another with the path
/// held (an upgrade's new supervisor, a --handover successor): it takes the lock over when it
/// writes its pid.
fn claimPidFile(path: [*:0]const u8, options: cli.Options, process: compat.Process) bool {
    if (options.standalone and options.handover != null) return true;
    if (upgrade.Handover.fromEnv(process.envp, linux.getpid()) != null) return true;
    switch (pid_file.claim(path)) {
        .claimed => return true,
        .running => |pid| {
            if (pid) |p| {
                log.err("already running as pid {d} (pid file {s}); stop it first, or " ++
                    "use another --pid-file", .{ p, path });
            } else {
                log.err("another instance is starting with pid file {s}", .{path});
            }
        },
        .failed => |e| log.err("cannot open pid file {s}: {s}", .{ path, @tagName(e) }),
    }
    return false;
}

/// Connections a worker may open to the upstreams, beside its clients'.
const upstream_connections: u64 = blk: {
    var n: u64 = 0;
    for (config.upstreams) |u| n += u.connections_per_worker;
    break :blk n;
};

/// Raises the soft limit on open descriptors to what this service may need: every connection
/// of a worker (to its clients and its upstreams), plus the listening sockets of every worker
/// slot (a supervisor holds them all) and room for pipes, the spare descriptor and files. The
/// usual soft limit, 1024, is below the `maxConnections` of many services; the hard limit is
/// usually far above it.
fn raiseFdLimit(options: cli.Options) void {
    const workers: u64 = if (options.workers == 0) cli.max_workers else options.workers;
    const wanted: u64 = config.max_connections + upstream_connections +
        config.proxy_server_fds + workers * (config.listeners.len + 4) + 64;
    const got = sys.raiseFdLimit(wanted) orelse return;
    // Said once, by the process that starts the others.
    if (got < wanted and options.worker == null) {
        var text: [256]u8 = undefined;
        const detail = compat.bufPrint(&text, "open files are limited to {d} (the hard " ++
            "limit); {d} connections per worker and {d} workers need about {d}: raise it " ++
            "(ulimit -n, LimitNOFILE=, a container's nofile ulimit)", .{
            got, config.max_connections, workers, wanted,
        }) catch "open files are limited below what the limits need";
        events.emitDegraded("open_files", detail);
    }
}

test {
    std.testing.refAllDecls(@This());
    // Every file with tests, listed by the generator (see tests.zig).
    _ = @import("tests.zig");
}
