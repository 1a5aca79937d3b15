//! The program's entry point: reads the command line and starts the mode it asks for.
const std = @import("std");
const config = @import("config.zig");
const compat = @import("compat.zig");
const cli = @import("cli.zig");
const standalone = @import("standalone.zig");
const supervisor = @import("supervisor.zig");
const worker_process = @import("worker_process.zig");
const sys = @import("sys.zig");

pub const main = compat.Entry(run).main;

fn run(process: compat.Process) u8 {
    var diag: cli.Diagnostic = .{};
    const command = cli.parse(process.args, &diag) catch {
        var buf: [600]u8 = undefined;
        const line = compat.bufPrint(&buf, config.name ++ ": {s}\nRun \"" ++ config.name ++
            " --help\" for usage.\n", .{diag.message}) catch diag.message;
        sys.writeAll(2, line) catch {};
        return 2;
    };
    switch (command) {
        .help => {
            sys.writeAll(1, cli.usage) catch {};
            return 0;
        },
        .version => {
            sys.writeAll(1, config.name ++ " " ++ config.version ++ "\n") catch {};
            return 0;
        },
        .serve => |options| {
            if (options.worker) |role| return worker_process.runWorker(role, options);
            if (options.standalone) return standalone.run(options, process);
            return supervisor.run(options, process);
        },
    }
}

test {
    std.testing.refAllDecls(@This());
    _ = @import("address.zig");
    _ = @import("cli.zig");
    _ = @import("events.zig");
    _ = @import("handlers.zig");
    _ = @import("listener.zig");
    _ = @import("notify.zig");
    _ = @import("worker_link.zig");
    _ = @import("worker_process.zig");
}
