//! A worker's counters: what it served, and what its limits and timeouts did. They travel
//! from worker to supervisor as one `stats key=value …` line (unknown keys are ignored, so a
//! supervisor and a worker of different versions still understand each other) and reach
//! operators in the `worker_exit` and `stopped` events.
const std = @import("std");
const compat = @import("../compat.zig");

pub const Timeouts = struct {
    header: u64 = 0,
    body: u64 = 0,
    idle: u64 = 0,
    write: u64 = 0,
    /// Whole requests that outlasted `requestTimeoutMs`.
    request: u64 = 0,
};

/// The statuses a request can be refused with, in the order of `Stats.rejected`.
pub const rejected_statuses = [_]u16{ 400, 413, 414, 417, 431, 501, 505 };

pub const Stats = struct {
    connections: u64 = 0,
    requests: u64 = 0,
    datagrams: u64 = 0,
    timeouts: Timeouts = .{},
    /// Connections closed to make room for new clients at the connection limit: idle ones,
    /// and slow clients cut short mid-request.
    evicted: u64 = 0,
    /// Held requests (an HTTP route's `res.later`) whose client left before the answer.
    abandoned: u64 = 0,
    /// Connections closed for asking more output than `outputLimitBytes` of their client.
    output_limit: u64 = 0,
    rejected: [rejected_statuses.len]u64 = @splat(0),
    /// Request log writes that failed (a full disk, an I/O error, a pipe nobody reads), and
    /// the request lines lost with them (see `access_log.zig`).
    access_log_errors: u64 = 0,
    access_log_dropped: u64 = 0,
    /// UDP replies never sent (`reuseport_udp_reply_drops_total`, every reason).
    udp_reply_drops: u64 = 0,

    pub fn countRejected(self: *Stats, status: u16) void {
        for (rejected_statuses, 0..) |s, i| {
            if (s == status) {
                self.rejected[i] += 1;
                return;
            }
        }
        // Statuses outside the list (a custom handler's) are still counted, as 400s.
        self.rejected[0] += 1;
    }

    pub fn add(self: *Stats, other: Stats) void {
        var theirs = other;
        for (self.entries(), theirs.entries()) |mine, their| mine.value.* += their.value.*;
    }

    /// Every counter by its key in the report line, in a fixed order.
    const Entry = struct { key: []const u8, value: *u64 };

    const plain_entries = 14;

    fn entries(self: *Stats) [plain_entries + rejected_statuses.len]Entry {
        var list: [plain_entries + rejected_statuses.len]Entry = undefined;
        list[0] = .{ .key = "connections", .value = &self.connections };
        list[1] = .{ .key = "requests", .value = &self.requests };
        list[2] = .{ .key = "datagrams", .value = &self.datagrams };
        list[3] = .{ .key = "timeout_header", .value = &self.timeouts.header };
        list[4] = .{ .key = "timeout_body", .value = &self.timeouts.body };
        list[5] = .{ .key = "timeout_idle", .value = &self.timeouts.idle };
        list[6] = .{ .key = "timeout_write", .value = &self.timeouts.write };
        list[7] = .{ .key = "evicted", .value = &self.evicted };
        list[8] = .{ .key = "abandoned", .value = &self.abandoned };
        list[9] = .{ .key = "timeout_request", .value = &self.timeouts.request };
        list[10] = .{ .key = "output_limit", .value = &self.output_limit };
        list[11] = .{ .key = "access_log_errors", .value = &self.access_log_errors };
        list[12] = .{ .key = "access_log_dropped", .value = &self.access_log_dropped };
        list[13] = .{ .key = "udp_reply_drops", .value = &self.udp_reply_drops };
        inline for (rejected_statuses, 0..) |status, i| {
            list[plain_entries + i] = .{
                .key = std.fmt.comptimePrint("rejected_{d}", .{status}),
                .value = &self.rejected[i],
            };
        }
        return list;
    }

    /// The report line, newline included.
    pub fn formatLine(self: Stats, buf: []u8) ![]const u8 {
        var copy = self;
        var len = (try compat.bufPrint(buf, "stats", .{})).len;
        for (copy.entries()) |entry| {
            len += (try compat.bufPrint(buf[len..], " {s}={d}", .{ entry.key, entry.value.* })).len;
        }
        len += (try compat.bufPrint(buf[len..], "\n", .{})).len;
        return buf[0..len];
    }

    /// Parses the fields of a report line (after `stats `); null when a field is malformed.
    pub fn parseFields(text: []const u8) ?Stats {
        var stats: Stats = .{};
        var list = stats.entries();
        var fields = std.mem.tokenizeScalar(u8, text, ' ');
        while (fields.next()) |field| {
            const equals = compat.findScalar(u8, field, '=') orelse return null;
            const value = std.fmt.parseInt(u64, field[equals + 1 ..], 10) catch return null;
            for (&list) |entry| {
                if (std.mem.eql(u8, entry.key, field[0..equals])) entry.value.* = value;
            }
        }
        return stats;
    }
};

test "a report line round-trips, and unknown keys are ignored" {
    var stats: Stats = .{ .connections = 3, .requests = 5, .datagrams = 7, .evicted = 2 };
    stats.access_log_dropped = 11;
    stats.timeouts.header = 4;
    stats.countRejected(431);
    var buf: [512]u8 = undefined;
    const line = try stats.formatLine(&buf);
    try std.testing.expect(std.mem.startsWith(u8, line, "stats connections=3 "));
    const text = line["stats ".len .. line.len - 1];
    const back = Stats.parseFields(text).?;
    try std.testing.expectEqual(stats, back);
    const newer = Stats.parseFields("requests=9 some_future_counter=1").?;
    try std.testing.expectEqual(@as(u64, 9), newer.requests);
    try std.testing.expect(Stats.parseFields("requests=x") == null);
}
