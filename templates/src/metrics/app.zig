//! Application modules' own metrics: a module declares them at compile time,
//!
//!     pub const metrics = .{
//!         .notes_created = http.Metric.counter("Notes stored under a new id."),
//!         .notes_held = http.Metric.gauge("Notes this worker holds."),
//!         .note_bytes = http.Metric.histogram("Size of stored notes.", &.{ 64, 1024, 65536 }),
//!     };
//!
//! and updates them through its service declaration (its entry in `handlers/app.zig`):
//! `service.metrics.inc(.notes_created)`, `.add(.x, n)`, `.set(.notes_held, n)`,
//! `.observe(.note_bytes, bytes)`. The values live in the worker's cell of the shared region
//! (`cell.zig`), after the built-in counters, and are exported as `<service>_<name>_total`
//! (counters, by worker), `<service>_<name>` (gauges, by worker) and `<service>_<name>_bucket`,
//! `_sum`, `_count` (histograms, every worker together).
const std = @import("std");
const config = @import("../config.zig");

const app_modules = @import("modules.zig").app_modules;

pub const Kind = enum { counter, gauge, histogram };

/// The type of `.notes_created` (spelt the same on every Zig release).
const Name = @TypeOf(.name);

/// One declared metric.
pub const Metric = struct {
    kind: Kind,
    help: []const u8,
    /// Histograms: upper bounds of the buckets, in the module's own unit, increasing.
    buckets: []const u64 = &.{},

    pub fn counter(comptime help: []const u8) Metric {
        return .{ .kind = .counter, .help = help };
    }

    /// A value the worker sets (`set`); the exposition shows each worker's, summed over the
    /// processes of its slot.
    pub fn gauge(comptime help: []const u8) Metric {
        return .{ .kind = .gauge, .help = help };
    }

    pub fn histogram(comptime help: []const u8, comptime buckets: []const u64) Metric {
        return .{ .kind = .histogram, .help = help, .buckets = buckets };
    }

    /// Values the metric takes in a cell: a count, or the buckets (the last +Inf) and a sum.
    pub fn values(self: Metric) usize {
        return if (self.kind == .histogram) self.buckets.len + 2 else 1;
    }
};

/// A declared metric and where its values start in a cell's `app` values.
pub const Entry = struct {
    module: type,
    /// The name as declared, and as exported (`<service>_<name>`, sanitized).
    name: []const u8,
    exported: []const u8,
    metric: Metric,
    base: usize,
};

/// The service's name as a metric name prefix: Prometheus names take [a-zA-Z0-9_:].
pub const prefix = sanitize(config.name);

fn sanitize(comptime name: []const u8) []const u8 {
    comptime {
        var out: [name.len]u8 = undefined;
        for (name, 0..) |c, i| {
            out[i] = if (std.ascii.isAlphanumeric(c) or c == '_') c else '_';
        }
        const final = out;
        return &final;
    }
}

pub const entries: []const Entry = blk: {
    var list: []const Entry = &.{};
    var base: usize = 0;
    for (app_modules) |M| {
        if (!@hasDecl(M, "metrics")) continue;
        const decls = M.metrics;
        for (std.meta.fieldNames(@TypeOf(decls))) |name| {
            const metric: Metric = @field(decls, name);
            check(name, metric);
            const exported = prefix ++ "_" ++ sanitize(name);
            for (list) |e| {
                if (std.mem.eql(u8, e.exported, exported)) {
                    @compileError("two application metrics are exported as " ++ exported ++
                        "; rename one of them");
                }
            }
            list = list ++ [_]Entry{.{
                .module = M,
                .name = name,
                .exported = exported,
                .metric = metric,
                .base = base,
            }};
            base += metric.values();
        }
    }
    break :blk list;
};

fn check(comptime name: []const u8, comptime metric: Metric) void {
    if (metric.kind == .histogram) {
        if (metric.buckets.len == 0) @compileError("histogram " ++ name ++ " needs buckets");
        for (metric.buckets[1..], 0..) |b, i| {
            if (b <= metric.buckets[i]) {
                @compileError("histogram " ++ name ++ ": buckets must increase");
            }
        }
    }
    if (metric.kind == .counter and std.mem.endsWith(u8, name, "_total")) {
        @compileError("counter " ++ name ++ ": leave out _total, the exposition adds it");
    }
}

pub const value_count: usize = blk: {
    var n: usize = 0;
    for (entries) |e| n += e.metric.values();
    break :blk n;
};

/// Identifies the layout of the `app` values: a worker of a binary whose modules declare
/// other metrics (rebuilt, same identity) keeps its own to itself rather than write into
/// places the supervisor reads as others.
pub const layout_hash: u64 = blk: {
    @setEvalBranchQuota(100_000);
    var h = std.hash.Fnv1a_64.init();
    for (entries) |e| {
        h.update(e.exported);
        h.update(@tagName(e.metric.kind));
        for (e.metric.buckets) |b| h.update(std.mem.asBytes(&b));
    }
    break :blk h.final();
};

/// The metrics API of module `M`, reached as `service.metrics` from the module.
pub fn Metrics(comptime M: type) type {
    return struct {
        fn entryOf(comptime name: Name) Entry {
            for (entries) |e| {
                if (e.module == M and std.mem.eql(u8, e.name, @tagName(name))) return e;
            }
            @compileError("no metric ." ++ @tagName(name) ++ " in this module's " ++
                "`pub const metrics`");
        }

        const cell = @import("cell.zig");

        fn value(i: usize) *u64 {
            return &cell.app_values[i];
        }

        pub fn inc(comptime name: Name) void {
            add(name, 1);
        }

        pub fn add(comptime name: Name, n: u64) void {
            const e = comptime entryOf(name);
            if (e.metric.kind != .counter) @compileError(@tagName(name) ++ " is no counter");
            cell.add(value(e.base), n);
        }

        pub fn set(comptime name: Name, v: i64) void {
            const e = comptime entryOf(name);
            if (e.metric.kind != .gauge) @compileError(@tagName(name) ++ " is no gauge");
            cell.set(value(e.base), @bitCast(v));
        }

        pub fn observe(comptime name: Name, v: u64) void {
            const e = comptime entryOf(name);
            if (e.metric.kind != .histogram) @compileError(@tagName(name) ++ " is no histogram");
            const bucket = for (e.metric.buckets, 0..) |bound, i| {
                if (v <= bound) break i;
            } else e.metric.buckets.len;
            cell.add(value(e.base + bucket), 1);
            cell.add(value(e.base + e.metric.buckets.len + 1), v);
        }
    };
}

/// Adds counters and histograms of `from` into `into`; gauges die with their process.
pub fn fold(into: *[value_count]u64, from: *const [value_count]u64) void {
    inline for (entries) |e| {
        if (e.metric.kind != .gauge) {
            for (e.base..e.base + e.metric.values()) |i| {
                into[i] += @atomicLoad(u64, &from[i], .monotonic);
            }
        }
    }
}
