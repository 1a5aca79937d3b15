//! What the supervisor's admin listener answers (`admin/server.zig` speaks HTTP): health
//! from the worker records and heartbeats, readiness from the core, the status document.
//!
//! Health is per slot: a slot is healthy while a worker of the serving generation is ready
//! in it, has not been reaped or found hung, and beats (with the watchdog on: it reported
//! within `worker_link.adoptAfterMs`, the time after which its slot is adopted). A draining
//! worker of the serving generation counts, so a stop's drain is not a failed probe.
const std = @import("std");
const config = @import("../config.zig");
const address = @import("../address.zig");
const events = @import("../events.zig");
const sys = @import("../net/sys.zig");
const admin = @import("../admin/server.zig");
const exposition = @import("../admin/exposition.zig");
const metrics_render = @import("../metrics/render.zig");
const core_mod = @import("core.zig");
const stats_mod = @import("../worker/stats.zig");
const worker_link = @import("worker_link.zig");
const Supervisor = @import("supervisor.zig").Supervisor;

pub fn responder(s: *Supervisor) admin.Responder {
    return .{ .context = s, .answer = answer };
}

fn answer(context: *anyopaque, request: admin.Request, body: *admin.Body) admin.Answer {
    const s: *Supervisor = @ptrCast(@alignCast(context));
    const json = "application/json";
    return switch (request.path) {
        .healthz => .{ .status = healthz(s, body), .content_type = json },
        .readyz => .{ .status = readyz(s, body), .content_type = json },
        .status => .{ .status = status(s, body), .content_type = json },
        .metrics => metrics(s, request.accept, body),
    };
}

/// The exposition over the shared counters, with what only the supervisor knows: the
/// serving generation, its workers by state, and its processes (itself first).
fn metrics(s: *const Supervisor, accept: []const u8, body: *admin.Body) admin.Answer {
    var processes: [core_mod.max_records + 1]metrics_render.Process = undefined;
    processes[0] = .{ .slot = null, .pid = s.pid };
    var n: usize = 1;
    var states: metrics_render.WorkerStates = .{};
    for (s.core.records, s.procs) |maybe, proc| {
        const w = maybe orelse continue;
        if (proc.pid == 0 or proc.exited) continue;
        processes[n] = .{ .slot = w.index, .pid = proc.pid };
        n += 1;
        if (w.retired) {
            states.draining += 1;
        } else if (w.ready) {
            states.ready += 1;
        } else states.starting += 1;
    }
    const view: metrics_render.View = .{
        .region = &s.metrics,
        .generation = s.core.generation,
        .workers = states,
        .processes = processes[0..n],
    };
    return exposition.answer(body, accept, &view);
}

/// Why a slot is not healthy; null when it is.
pub const Trouble = enum { no_worker, starting, hung };

pub fn slotTrouble(s: *const Supervisor, slot: u16, now_ms: u64) ?Trouble {
    var trouble: Trouble = .no_worker;
    const watchdog_ms = s.options.limits.watchdog_ms;
    for (s.core.records, s.procs) |maybe, proc| {
        const w = maybe orelse continue;
        if (w.index != slot or w.generation != s.core.generation) continue;
        if (proc.pid == 0 or proc.exited) continue;
        const silent = watchdog_ms > 0 and
            now_ms -| proc.last_beat_ms >= worker_link.adoptAfterMs(watchdog_ms);
        if (proc.hung or silent) {
            trouble = .hung;
        } else if (!w.ready) {
            if (trouble == .no_worker) trouble = .starting;
        } else return null;
    }
    return trouble;
}

fn healthz(s: *const Supervisor, body: *admin.Body) u16 {
    const t = sys.monotonicMs();
    var line = events.Line.document();
    var healthy = s.core.generation > 0;
    line.beginArray("unhealthy");
    var slot: u16 = 0;
    while (slot < s.workers) : (slot += 1) {
        const trouble = slotTrouble(s, slot, t) orelse continue;
        healthy = false;
        line.beginObject();
        line.int("slot", slot);
        line.string("reason", @tagName(trouble));
        line.endObject();
    }
    line.endArray();
    line.string("status", if (healthy) "ok" else "unhealthy");
    line.int("workers", s.workers);
    body.write(line.finish());
    return if (healthy) 200 else 503;
}

fn readyz(s: *const Supervisor, body: *admin.Body) u16 {
    const ready = s.core.isReady();
    var line = events.Line.document();
    line.boolean("ready", ready);
    line.int("generation", s.core.generation);
    if (!ready) line.string("reason", notReadyReason(s));
    body.write(line.finish());
    return if (ready) 200 else 503;
}

fn notReadyReason(s: *const Supervisor) []const u8 {
    if (s.core.stopping != null) return "stopping";
    if (s.core.shutdown_delay_until_ms != null) return "shutdown_delay";
    if (s.core.phase == .handed_over) return "handed_over";
    return "starting";
}

fn status(s: *const Supervisor, body: *admin.Body) u16 {
    const t = sys.monotonicMs();
    var line = events.Line.document();
    events.statusHeader(&line, .supervisor, s.pid, s.core.generation, t -| s.started_ms);
    line.boolean("ready", s.core.isReady());
    line.string("phase", @tagName(s.core.phase));
    writeWorkers(s, &line, t);
    events.listenersField(&line, s.options.endpoints, &s.ports);
    var totals: stats_mod.Stats = .{};
    for (s.slots) |slot| totals.add(slot.totals);
    for (s.procs) |proc| {
        if (proc.pid != 0) totals.add(proc.stats);
    }
    line.beginNamedObject("counters");
    line.counters(totals);
    line.endObject();
    body.write(line.finish());
    return 200;
}

fn writeWorkers(s: *const Supervisor, line: *events.Line, t: u64) void {
    const unix_now = sys.realtimeMs();
    line.beginArray("workers");
    for (s.core.records, s.procs) |maybe, proc| {
        const w = maybe orelse continue;
        if (proc.pid == 0) continue;
        line.beginObject();
        line.int("slot", w.index);
        line.int("pid", proc.pid);
        line.int("generation", w.generation);
        line.string("state", workerState(s, w, proc, t));
        line.int("started_unix_ms", unix_now - @as(i64, @intCast(t -| w.started_ms)));
        line.int("restarts", s.slots[w.index].restarts);
        line.endObject();
    }
    line.endArray();
}

fn workerState(s: *const Supervisor, w: anytype, proc: anytype, t: u64) []const u8 {
    const watchdog_ms = s.options.limits.watchdog_ms;
    const silent = watchdog_ms > 0 and
        t -| proc.last_beat_ms >= worker_link.adoptAfterMs(watchdog_ms);
    if (proc.exited) return "exited";
    if (proc.hung or (silent and w.ready)) return "hung";
    if (w.retired) return "draining";
    if (!w.ready) return "starting";
    return "serving";
}
