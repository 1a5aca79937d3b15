//! What a standalone process's admin listener answers (`admin/server.zig` speaks HTTP). The
//! process is its own only worker: it is healthy while its loop turns (it is the one
//! answering), ready until a stop (or its shutdown delay) begins.
const std = @import("std");
const config = @import("../config.zig");
const address = @import("../address.zig");
const cli = @import("../cli.zig");
const events = @import("../events.zig");
const sys = @import("../net/sys.zig");
const admin = @import("../admin/server.zig");
const exposition = @import("../admin/exposition.zig");
const metrics_render = @import("../metrics/render.zig");
const metrics_region = @import("../metrics/region.zig");
const Worker = @import("worker.zig").Worker;

/// Where a standalone process's admin listener goes, and what its status names.
pub const Admin = struct {
    endpoint: address.Endpoint,
    origin: admin.Origin,
    /// Where each listener ended up (for /status, and the port collision check).
    endpoints: [config.listeners.len]address.Endpoint,
    /// This process's own counters (one slot, one cell).
    metrics: *const metrics_region.Region,

    pub fn open(
        self: *const Admin,
        epfd: sys.Fd,
        token: *const fn (u32) u64,
        limits: cli.Limits,
        quiet_in_use: bool,
    ) admin.Server.OpenError!admin.Server {
        return admin.start(self.endpoint, self.origin, &self.endpoints, .{
            .epfd = epfd,
            .token = token,
            .header_timeout_ms = limits.header_timeout_ms,
            .write_timeout_ms = limits.write_timeout_ms,
            .max_body_bytes = limits.max_body_bytes,
        }, quiet_in_use);
    }
};

pub fn responder(w: *Worker) admin.Responder {
    return .{ .context = w, .answer = answer };
}

fn answer(context: *anyopaque, request: admin.Request, body: *admin.Body) admin.Answer {
    const w: *Worker = @ptrCast(@alignCast(context));
    const json = "application/json";
    switch (request.path) {
        .healthz => {
            body.write("{\"unhealthy\":[],\"status\":\"ok\",\"workers\":1}\n");
            return .{ .status = 200, .content_type = json };
        },
        .readyz => {
            const ready = w.isReady();
            var line = events.Line.document();
            line.boolean("ready", ready);
            line.int("generation", 1);
            if (!ready) {
                const reason = if (w.stop != null) "stopping" else "shutdown_delay";
                line.string("reason", reason);
            }
            body.write(line.finish());
            return .{ .status = if (ready) 200 else 503, .content_type = json };
        },
        .status => {
            status(w, body);
            return .{ .status = 200, .content_type = json };
        },
        .metrics => {
            const processes = [_]metrics_render.Process{.{ .slot = 0, .pid = w.pid }};
            const draining = w.stop != null;
            const view: metrics_render.View = .{
                .region = w.options.admin.?.metrics,
                .generation = 1,
                .workers = .{
                    .ready = @intFromBool(!draining),
                    .draining = @intFromBool(draining),
                },
                .processes = &processes,
            };
            return exposition.answer(body, request.accept, &view);
        },
    }
}

fn status(w: *const Worker, body: *admin.Body) void {
    const t = sys.monotonicMs();
    var line = events.Line.document();
    events.statusHeader(&line, .standalone, w.pid, 1, t -| w.started_ms);
    line.boolean("ready", w.isReady());
    line.beginArray("workers");
    line.beginObject();
    line.int("slot", 0);
    line.int("pid", w.pid);
    line.int("generation", 1);
    line.string("state", if (w.stop != null) "draining" else "serving");
    line.int("started_unix_ms", sys.realtimeMs() - @as(i64, @intCast(t -| w.started_ms)));
    line.int("restarts", 0);
    line.endObject();
    line.endArray();
    const a = w.options.admin.?;
    var ports: [config.listeners.len]u16 = undefined;
    for (&ports, a.endpoints) |*port, endpoint| port.* = endpoint.port;
    events.listenersField(&line, a.endpoints, &ports);
    line.beginNamedObject("counters");
    line.counters(w.stats());
    line.endObject();
    body.write(line.finish());
}
