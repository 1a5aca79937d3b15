//! How many workers `"workers": "auto"` starts: the smallest of the CPUs online, the CPUs this
//! process may run on (its affinity mask, as `taskset` or a cpuset sets it) and the CPU quota of
//! its cgroup, rounded up (cgroup v2 `cpu.max`; v1 `cpu.cfs_quota_us` over `cpu.cfs_period_us`,
//! where the host has v1). A container limited to 2 CPUs on a 64-core node then starts 2
//! workers, not 64 that the quota would throttle. The quota of every cgroup from the process's
//! own up to the root of the mount applies, so the smallest of them counts.
const std = @import("std");
const compat = @import("../compat.zig");
const sys = @import("../net/sys.zig");
const locality = @import("../net/locality.zig");
const linux = std.os.linux;

/// What decided the count: the first of these that is strictly smaller than those before it.
pub const Limit = enum { online_cpus, affinity, cpu_quota };

pub const Auto = struct {
    workers: u16,
    decided_by: Limit,
    online_cpus: u16,
    affinity: u16,
    /// CPUs the quota allows, rounded up; null without a quota.
    cpu_quota: ?u16,
};

const max_workers = 1024;

pub fn autoWorkers() Auto {
    const online = onlineCpus();
    const affinity = affinityCpus() orelse online;
    const quota = quotaCpus();
    return decide(online, affinity, quota);
}

fn decide(online: u16, affinity: u16, quota: ?u16) Auto {
    var auto: Auto = .{
        .workers = online,
        .decided_by = .online_cpus,
        .online_cpus = online,
        .affinity = affinity,
        .cpu_quota = quota,
    };
    if (affinity < auto.workers) {
        auto.workers = affinity;
        auto.decided_by = .affinity;
    }
    if (quota) |q| if (q < auto.workers) {
        auto.workers = q;
        auto.decided_by = .cpu_quota;
    };
    return auto;
}

fn clampCount(n: u64) u16 {
    return @intCast(@max(1, @min(max_workers, n)));
}

/// CPUs online, from /sys/devices/system/cpu/online ("0-63", "0,2-5"); the affinity mask's
/// count when that file cannot be read.
fn onlineCpus() u16 {
    var buf: [4096]u8 = undefined;
    const text = sys.readSmallFile("/sys/devices/system/cpu/online", &buf) catch
        return affinityCpus() orelse 1;
    return clampCount(countCpuList(text) orelse return affinityCpus() orelse 1);
}

fn affinityCpus() ?u16 {
    const allowed = locality.allowedCpus() orelse return null;
    return clampCount(allowed.len);
}

/// The number of CPUs in a kernel CPU list such as "0-3,8,10-11\n"; null when malformed.
fn countCpuList(text: []const u8) ?u64 {
    const trimmed = std.mem.trim(u8, text, " \n");
    if (trimmed.len == 0) return null;
    var count: u64 = 0;
    var ranges = std.mem.splitScalar(u8, trimmed, ',');
    while (ranges.next()) |range| {
        var ends = std.mem.splitScalar(u8, range, '-');
        const first = std.fmt.parseInt(u32, ends.next() orelse return null, 10) catch return null;
        const last = if (ends.next()) |t| std.fmt.parseInt(u32, t, 10) catch return null else first;
        if (ends.next() != null or last < first) return null;
        count += last - first + 1;
    }
    return count;
}

/// CPUs a quota allows: quota over period, rounded up, at least 1.
fn quotaToCpus(quota_us: u64, period_us: u64) u16 {
    if (period_us == 0) return max_workers;
    return clampCount((quota_us + period_us - 1) / period_us);
}

/// cgroup v2 `cpu.max`: "max 100000" (no quota) or "150000 100000".
fn parseCpuMax(text: []const u8) ?u16 {
    var fields = std.mem.tokenizeAny(u8, text, " \n");
    const quota = fields.next() orelse return null;
    const period = fields.next() orelse return null;
    if (std.mem.eql(u8, quota, "max")) return null;
    const q = std.fmt.parseInt(u64, quota, 10) catch return null;
    const p = std.fmt.parseInt(u64, period, 10) catch return null;
    return quotaToCpus(q, p);
}

/// cgroup v1 `cpu.cfs_quota_us` ("-1" for none) over `cpu.cfs_period_us`.
fn parseCfs(quota_text: []const u8, period_text: []const u8) ?u16 {
    const quota = std.fmt.parseInt(i64, std.mem.trim(u8, quota_text, " \n"), 10) catch return null;
    if (quota <= 0) return null;
    const period = std.fmt.parseInt(u64, std.mem.trim(u8, period_text, " \n"), 10) catch
        return null;
    return quotaToCpus(@intCast(quota), period);
}

const Version = enum { v1, v2 };

/// Where this process's CPU controller is: the mount point, the mount's root inside the cgroup
/// hierarchy, and this process's cgroup path in that hierarchy.
const Place = struct {
    version: Version,
    mount_point: []const u8,
    mount_root: []const u8,
    path: []const u8,
};

var cgroup_buf: [16 * 1024]u8 = undefined;
var mountinfo_buf: [256 * 1024]u8 = undefined;

/// The smallest quota, in CPUs, of this process's cgroup and its ancestors; null without one
/// or when the cgroup files cannot be read (then the quota does not limit anything).
fn quotaCpus() ?u16 {
    const cgroup = sys.readSmallFile("/proc/self/cgroup", &cgroup_buf) catch return null;
    const mountinfo = sys.readSmallFile("/proc/self/mountinfo", &mountinfo_buf) catch
        return null;
    const place = findPlace(cgroup, mountinfo) orelse return null;
    return smallestQuota(place);
}

/// This process's cgroup path for the v1 `cpu` controller, or the v2 path when no v1 `cpu`
/// hierarchy exists; and the mount that shows it.
fn findPlace(cgroup: []const u8, mountinfo: []const u8) ?Place {
    var v1_path: ?[]const u8 = null;
    var v2_path: ?[]const u8 = null;
    var lines = std.mem.splitScalar(u8, cgroup, '\n');
    while (lines.next()) |line| {
        // "hierarchy-id:controller,controller:/path"; v2 is "0::/path".
        var parts = std.mem.splitScalar(u8, line, ':');
        const id = parts.next() orelse continue;
        const controllers = parts.next() orelse continue;
        const path = parts.rest();
        if (path.len == 0) continue;
        if (std.mem.eql(u8, id, "0") and controllers.len == 0) {
            v2_path = path;
        } else if (hasWord(controllers, ',', "cpu")) {
            v1_path = path;
        }
    }
    var mounts = std.mem.splitScalar(u8, mountinfo, '\n');
    var v2_place: ?Place = null;
    while (mounts.next()) |line| {
        // "id parent major:minor root mount-point options [optional...] - fstype source super"
        var fields = std.mem.tokenizeScalar(u8, line, ' ');
        _ = fields.next() orelse continue;
        _ = fields.next() orelse continue;
        _ = fields.next() orelse continue;
        const root = fields.next() orelse continue;
        const mount_point = fields.next() orelse continue;
        while (fields.next()) |field| if (std.mem.eql(u8, field, "-")) break;
        const fstype = fields.next() orelse continue;
        _ = fields.next() orelse continue;
        const super = fields.next() orelse "";
        if (std.mem.eql(u8, fstype, "cgroup")) {
            const path = v1_path orelse continue;
            if (!hasWord(super, ',', "cpu")) continue;
            return .{
                .version = .v1,
                .mount_point = mount_point,
                .mount_root = root,
                .path = path,
            };
        }
        if (std.mem.eql(u8, fstype, "cgroup2") and v2_place == null) {
            const path = v2_path orelse continue;
            v2_place = .{
                .version = .v2,
                .mount_point = mount_point,
                .mount_root = root,
                .path = path,
            };
        }
    }
    if (v1_path != null) return null;
    return v2_place;
}

fn hasWord(list: []const u8, separator: u8, word: []const u8) bool {
    var words = std.mem.splitScalar(u8, list, separator);
    while (words.next()) |w| if (std.mem.eql(u8, w, word)) return true;
    return false;
}

/// Reads the quota of the process's cgroup and of every ancestor the mount shows.
fn smallestQuota(place: Place) ?u16 {
    // The part of the process's path below the mount's root; outside it, nothing is visible.
    const root = if (std.mem.eql(u8, place.mount_root, "/")) "" else place.mount_root;
    if (!std.mem.startsWith(u8, place.path, root)) return null;
    var relative = place.path[root.len..];
    if (relative.len > 0 and relative[0] != '/') return null;
    var smallest: ?u16 = null;
    while (true) {
        if (quotaAt(place, relative)) |q| smallest = @min(q, smallest orelse q);
        if (relative.len == 0 or std.mem.eql(u8, relative, "/")) break;
        const slash = compat.findScalarLast(u8, relative, '/') orelse break;
        relative = relative[0..slash];
    }
    return smallest;
}

fn quotaAt(place: Place, relative: []const u8) ?u16 {
    var path_buf: [4096]u8 = undefined;
    var quota_buf: [64]u8 = undefined;
    var period_buf: [64]u8 = undefined;
    const dir = place.mount_point;
    switch (place.version) {
        .v2 => {
            const path = filePath(&path_buf, dir, relative, "cpu.max") orelse return null;
            return parseCpuMax(sys.readSmallFile(path, &quota_buf) catch return null);
        },
        .v1 => {
            const quota_path = filePath(&path_buf, dir, relative, "cpu.cfs_quota_us") orelse
                return null;
            const quota = sys.readSmallFile(quota_path, &quota_buf) catch return null;
            const period_path = filePath(&path_buf, dir, relative, "cpu.cfs_period_us") orelse
                return null;
            const period = sys.readSmallFile(period_path, &period_buf) catch return null;
            return parseCfs(quota, period);
        },
    }
}

fn filePath(
    buf: []u8,
    mount_point: []const u8,
    relative: []const u8,
    file: []const u8,
) ?[*:0]const u8 {
    const text = compat.bufPrint(buf[0 .. buf.len - 1], "{s}{s}/{s}", .{
        mount_point,
        relative,
        file,
    }) catch return null;
    buf[text.len] = 0;
    return buf[0..text.len :0].ptr;
}

const testing = std.testing;

test "decide: the smallest limit counts, and a tie goes to the broader one" {
    try testing.expectEqual(Limit.online_cpus, decide(8, 8, null).decided_by);
    try testing.expectEqual(@as(u16, 8), decide(8, 8, 8).workers);
    try testing.expectEqual(Limit.online_cpus, decide(8, 8, 8).decided_by);
    const pinned = decide(64, 1, null);
    try testing.expectEqual(@as(u16, 1), pinned.workers);
    try testing.expectEqual(Limit.affinity, pinned.decided_by);
    const quota = decide(64, 64, 2);
    try testing.expectEqual(@as(u16, 2), quota.workers);
    try testing.expectEqual(Limit.cpu_quota, quota.decided_by);
    try testing.expectEqual(Limit.affinity, decide(64, 2, 3).decided_by);
}

test "countCpuList: ranges and single CPUs; malformed lists refused" {
    try testing.expectEqual(@as(?u64, 64), countCpuList("0-63\n"));
    try testing.expectEqual(@as(?u64, 1), countCpuList("0\n"));
    try testing.expectEqual(@as(?u64, 6), countCpuList("0,2-5,7\n"));
    try testing.expectEqual(@as(?u64, null), countCpuList(""));
    try testing.expectEqual(@as(?u64, null), countCpuList("3-1"));
    try testing.expectEqual(@as(?u64, null), countCpuList("0-1-2"));
    try testing.expectEqual(@as(?u64, null), countCpuList("a"));
}

test "parseCpuMax and parseCfs: quotas round up to whole CPUs" {
    try testing.expectEqual(@as(?u16, null), parseCpuMax("max 100000\n"));
    try testing.expectEqual(@as(?u16, 2), parseCpuMax("150000 100000\n"));
    try testing.expectEqual(@as(?u16, 1), parseCpuMax("1000 100000\n"));
    try testing.expectEqual(@as(?u16, 4), parseCpuMax("400000 100000\n"));
    try testing.expectEqual(@as(?u16, null), parseCpuMax("garbage"));
    try testing.expectEqual(@as(?u16, null), parseCfs("-1\n", "100000\n"));
    try testing.expectEqual(@as(?u16, 1), parseCfs("50000\n", "100000\n"));
    try testing.expectEqual(@as(?u16, 3), parseCfs("250000\n", "100000\n"));
}

test "findPlace: v1 cpu hierarchy preferred over v2; v2 alone; a container's mount root" {
    const mountinfo =
        "30 25 0:26 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw\n" ++
        "31 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:10 - " ++
        "cgroup cgroup rw,cpu,cpuacct\n";
    const v1 = findPlace("1:cpu,cpuacct:/svc\n0::/svc\n", mountinfo).?;
    try testing.expectEqual(Version.v1, v1.version);
    try testing.expectEqualStrings("/sys/fs/cgroup/cpu,cpuacct", v1.mount_point);
    try testing.expectEqualStrings("/svc", v1.path);

    const v2_only = "25 1 0:26 /kubepods/pod1 /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
    const v2 = findPlace("0::/kubepods/pod1/c1\n", v2_only).?;
    try testing.expectEqual(Version.v2, v2.version);
    try testing.expectEqualStrings("/kubepods/pod1", v2.mount_root);

    // A v1 cpu path whose hierarchy is not mounted: no quota can be read.
    try testing.expectEqual(@as(?Place, null), findPlace("1:cpu:/a\n", v2_only));
    try testing.expectEqual(@as(?Place, null), findPlace("", mountinfo));
}

test "autoWorkers: at least one worker, never more than the CPUs online" {
    const auto = autoWorkers();
    try testing.expect(auto.workers >= 1);
    try testing.expect(auto.workers <= auto.online_cpus);
    try testing.expect(auto.workers <= auto.affinity);
}
