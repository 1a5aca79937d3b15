//! The metrics exposition of a generated project, rendered by its own renderer
//! (`src/metrics/render.zig`) over a real shared region that its own hot-path functions
//! filled as a supervisor's workers would: two slots, a worker that crashes and is replaced,
//! then a SIGHUP restart. Copied into a generated project's `src/` by metrics.test.ts and run
//! with `zig run src/metrics_dump.zig -- prometheus|openmetrics`; the exposition goes to
//! standard output.
const std = @import("std");
const compat = @import("compat.zig");
const config = @import("config.zig");
const sys = @import("net/sys.zig");
const region_mod = @import("metrics/region.zig");
const render = @import("metrics/render.zig");
const cell = @import("metrics/cell.zig");
const app = @import("metrics/app.zig");

pub const main = compat.Entry(run).main;

fn run(process: compat.Process) u8 {
    const format: render.Format = if (process.args.len > 1 and
        std.mem.eql(u8, std.mem.span(process.args[1]), "openmetrics")) .openmetrics else .prometheus;
    const allocator = std.heap.page_allocator;
    var region = region_mod.Region.create(allocator, 2, 8) catch return 1;
    // Generation 1: slot 0 in record 0, slot 1 in record 1.
    region.claim(0, 0, 1);
    region.claim(1, 1, 1);
    serve(&region, 0, 10);
    serve(&region, 1, 7);
    // Slot 0's worker crashes and is replaced, in generation 1, in record 2.
    region.fold(0, .{ .expected = false });
    region.claim(2, 0, 1);
    serve(&region, 2, 5);
    // SIGHUP: generation 2 starts in records 3 and 4; generation 1 drains and exits.
    region.claim(3, 0, 2);
    region.claim(4, 1, 2);
    serve(&region, 3, 1);
    region.fold(2, .{ .expected = true });
    region.fold(1, .{ .expected = true });
    serve(&region, 4, 2);
    const pid: i32 = @intCast(std.os.linux.getpid());
    const processes = [_]render.Process{
        .{ .slot = null, .pid = pid },
        .{ .slot = 0, .pid = pid },
        .{ .slot = 1, .pid = pid },
    };
    const view: render.View = .{
        .region = &region,
        .generation = 2,
        .workers = .{ .ready = 2 },
        .processes = &processes,
    };
    const buf = allocator.alloc(u8, render.bufferBytes(&view)) catch return 1;
    const text = render.render(buf, format, &view) catch return 1;
    sys.writeAll(1, text) catch return 1;
    return 0;
}

/// A worker's traffic, through the functions the worker's hot path calls: `n` of each kind
/// on every listener, into cell `index`.
fn serve(region: *region_mod.Region, index: u32, n: u64) void {
    if (!region_mod.attach(region.fd, index)) unreachable;
    for (config.listeners, 0..) |l, li| {
        const i: u16 = @intCast(li);
        const counters = cell.at(i);
        switch (l.protocol) {
            .tcp => {
                cell.add(&counters.accepted, n);
                cell.add(&counters.open, 1);
                cell.add(&counters.timeouts[@intFromEnum(cell.TimeoutKind.idle)], 1);
                cell.countRejected(counters, 431);
                cell.add(&counters.evicted, 1);
            },
            .udp => {
                cell.add(&counters.datagrams_received, n);
                cell.add(&counters.datagrams_sent, n);
            },
        }
        for (l.routes, 0..) |_, route| {
            for (0..n) |k| cell.response(i, route, 200, k * 700);
            cell.response(i, route, 404, 20_000_000);
        }
        if (l.routes.len > 0) cell.status(i, 408);
    }
    inline for (app.entries) |e| {
        const values = cell.app_values;
        switch (e.metric.kind) {
            .counter => cell.add(&values[e.base], n),
            .gauge => cell.set(&values[e.base], n),
            .histogram => {
                cell.add(&values[e.base], n);
                cell.add(&values[e.base + e.metric.buckets.len + 1], n * e.metric.buckets[0]);
            },
        }
    }
}
