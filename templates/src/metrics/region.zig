//! The shared metrics region: one cell (`cell.zig`) per supervisor worker record, in a
//! memory file (memfd) that the supervisor creates before it starts any worker and maps
//! shared. A worker is started with the file's descriptor and its cell's index (the record
//! it runs in, see `cli.WorkerRole`) and maps the same pages: what it counts, the supervisor
//! reads when scraped, with no system call or message per request.
//!
//! A record, and so a cell, belongs to one process at a time: an old and a new worker of
//! the same slot during a restart run in different records, and a record is reused only
//! once its worker has been reaped. When the supervisor lets a reaped worker go, `fold` adds
//! its cell into the retired totals of its slot and frees the cell: the totals of a slot (its
//! retired totals plus its live cells) only grow for the life of the supervisor, across
//! workers killed, crashed, hung and replaced, and SIGHUP restarts. A new supervisor (an
//! upgrade) starts from zero. In `--standalone` the process maps a region of one cell.
//!
//! The file starts with a header that a worker checks before it writes: a region of another
//! layout (which the identity check rules out) or other application metrics (a module edited
//! between two builds) is not written into.
const std = @import("std");
const sys = @import("../net/sys.zig");
const compat = @import("../compat.zig");
const cell_mod = @import("cell.zig");
const app = @import("app.zig");
const linux = std.os.linux;
const assert = std.debug.assert;

pub const Cell = cell_mod.Cell;

const Header = extern struct {
    magic: u64,
    cell_bytes: u64,
    cells: u64,
    app_layout: u64,
};

const magic: u64 = 0x7270_6d65_7472_6963; // "rpmetric"
const header_bytes = 64;
/// Cells are cache-line apart, so that two workers never write the same line.
pub const cell_stride = std.mem.alignForward(usize, @sizeOf(Cell), 64);
const none: u32 = std.math.maxInt(u32);

/// Why workers were replaced (`reuseport_worker_restarts_total{reason}`).
pub const RestartReason = enum { crash, hung, reload };

/// How a reaped worker ended, for the restart counts.
pub const Gone = struct {
    /// The supervisor asked for it (a restart's old generation, a stop).
    expected: bool,
    /// The watchdog killed it.
    hung: bool = false,
};

/// The supervisor's side: the shared cells, and in private memory the retired totals per
/// slot and which slot's worker each cell holds.
pub const Region = struct {
    /// The memory file, passed to workers; -1 once closed.
    fd: sys.Fd,
    base: [*]align(64) u8,
    len: usize,
    cell_count: u32,
    /// Per slot: the counts of its workers that are gone.
    retired: []Cell,
    /// Per cell: the slot of the worker it holds, `none` when free.
    owner: []u32,
    /// Per cell: the next cell of the same slot; per slot: its first live cell.
    next: []u32,
    first: []u32,
    /// Per slot: the generation of its last worker (0: none yet).
    last_generation: []u32,
    restarts: [std.meta.fieldNames(RestartReason).len]u64 = @splat(0),

    /// Maps a region for `slots` slots and `cells` worker records.
    pub fn create(allocator: std.mem.Allocator, slots: u16, cells: u32) !Region {
        assert(slots > 0 and cells >= slots);
        const len = header_bytes + @as(usize, cells) * cell_stride;
        const fd = try memfd(len);
        errdefer sys.close(fd);
        const base = try mapShared(fd, len);
        const header: *Header = @ptrCast(base);
        header.* = .{
            .magic = magic,
            .cell_bytes = @sizeOf(Cell),
            .cells = cells,
            .app_layout = app.layout_hash,
        };
        const region: Region = .{
            .fd = fd,
            .base = base,
            .len = len,
            .cell_count = cells,
            .retired = try allocator.alloc(Cell, slots),
            .owner = try allocator.alloc(u32, cells),
            .next = try allocator.alloc(u32, cells),
            .first = try allocator.alloc(u32, slots),
            .last_generation = try allocator.alloc(u32, slots),
        };
        @memset(std.mem.sliceAsBytes(region.retired), 0);
        @memset(region.owner, none);
        @memset(region.next, none);
        @memset(region.first, none);
        @memset(region.last_generation, 0);
        return region;
    }

    pub fn deinit(self: *Region, allocator: std.mem.Allocator) void {
        _ = linux.munmap(self.base, self.len);
        sys.close(self.fd);
        allocator.free(self.retired);
        allocator.free(self.owner);
        allocator.free(self.next);
        allocator.free(self.first);
        allocator.free(self.last_generation);
        self.* = undefined;
    }

    pub fn slotCount(self: *const Region) u16 {
        return @intCast(self.first.len);
    }

    pub fn cell(self: *const Region, index: u32) *Cell {
        assert(index < self.cell_count);
        return @ptrCast(@alignCast(self.base + header_bytes + @as(usize, index) * cell_stride));
    }

    /// Before a worker of `slot` and `generation` is started in record `index`: its cell
    /// starts from zero and counts for that slot. A worker of a later generation than the
    /// slot's last one replaces it for a restart (SIGHUP).
    pub fn claim(self: *Region, index: u32, slot: u16, generation: u32) void {
        if (self.owner[index] != none) self.release(index);
        @memset(std.mem.asBytes(self.cell(index)), 0);
        self.owner[index] = slot;
        self.next[index] = self.first[slot];
        self.first[slot] = index;
        const last = self.last_generation[slot];
        if (last != 0 and generation > last) {
            self.restarts[compat.enumIndex(RestartReason.reload)] += 1;
        }
        self.last_generation[slot] = @max(last, generation);
    }

    /// The worker of record `index` is gone for good: its counts join its slot's retired
    /// totals, and its cell is free.
    pub fn fold(self: *Region, index: u32, gone: Gone) void {
        const slot = self.owner[index];
        if (slot == none) return;
        cell_mod.fold(&self.retired[slot], self.cell(index));
        self.release(index);
        if (gone.hung) {
            self.restarts[compat.enumIndex(RestartReason.hung)] += 1;
        } else if (!gone.expected) {
            self.restarts[compat.enumIndex(RestartReason.crash)] += 1;
        }
    }

    fn release(self: *Region, index: u32) void {
        const slot = self.owner[index];
        var at = &self.first[slot];
        var steps: usize = 0;
        while (at.* != none and steps < self.cell_count) : (steps += 1) {
            if (at.* == index) {
                at.* = self.next[index];
                break;
            }
            at = &self.next[at.*];
        }
        self.owner[index] = none;
        self.next[index] = none;
        @memset(std.mem.asBytes(self.cell(index)), 0);
    }

    /// The live cells of `slot`.
    pub fn liveCells(self: *const Region, slot: u16) CellIterator {
        return .{ .region = self, .at = self.first[slot] };
    }

    pub fn restartCount(self: *const Region, reason: RestartReason) u64 {
        return self.restarts[compat.enumIndex(reason)];
    }
};

pub const CellIterator = struct {
    region: *const Region,
    at: u32,
    steps: usize = 0,

    pub fn next(self: *CellIterator) ?*const Cell {
        if (self.at == none or self.steps == self.region.cell_count) return null;
        const c = self.region.cell(self.at);
        self.at = self.region.next[self.at];
        self.steps += 1;
        return c;
    }
};

/// The worker's side: maps the region passed as `fd` and makes cell `index` this process's
/// own (`cell.own`). False, and the worker counts in private memory, when the region is not
/// one this binary can write.
pub fn attach(fd: sys.Fd, index: u32) bool {
    const size_rc = linux.lseek(fd, 0, linux.SEEK.END);
    if (compat.errno(size_rc) != .SUCCESS) return false;
    const len: usize = size_rc;
    if (len < header_bytes) return false;
    const base = mapShared(fd, len) catch return false;
    const header: *const Header = @ptrCast(base);
    const fits = header_bytes + (@as(usize, index) + 1) * cell_stride <= len;
    if (header.magic != magic or header.cell_bytes != @sizeOf(Cell) or !fits) {
        _ = linux.munmap(base, len);
        return false;
    }
    const own: *Cell = @ptrCast(@alignCast(base + header_bytes + @as(usize, index) * cell_stride));
    cell_mod.attach(own, header.app_layout == app.layout_hash);
    return true;
}

fn memfd(len: usize) !sys.Fd {
    const MFD_CLOEXEC: u32 = 1;
    const rc = linux.memfd_create("metrics", MFD_CLOEXEC);
    if (compat.errno(rc) != .SUCCESS) return error.MetricsRegion;
    const fd: sys.Fd = @intCast(rc);
    if (compat.errno(linux.syscall2(.ftruncate, rc, len)) != .SUCCESS) {
        sys.close(fd);
        return error.MetricsRegion;
    }
    return fd;
}

fn mapShared(fd: sys.Fd, len: usize) ![*]align(64) u8 {
    const PROT_READ_WRITE: usize = 0x1 | 0x2;
    const MAP_SHARED: usize = 0x01;
    const fd_arg: usize = @bitCast(@as(isize, fd));
    const rc = linux.syscall6(.mmap, 0, len, PROT_READ_WRITE, MAP_SHARED, fd_arg, 0);
    if (compat.errno(rc) != .SUCCESS) return error.MetricsRegion;
    return @ptrFromInt(rc);
}

test "two workers of a slot never share a cell, and folding keeps totals monotonic" {
    var region = try Region.create(std.testing.allocator, 2, 8);
    defer region.deinit(std.testing.allocator);
    region.claim(0, 0, 1);
    region.claim(1, 1, 1);
    cell_mod.add(&region.cell(0).listeners[0].accepted, 5);
    cell_mod.add(&region.cell(0).listeners[0].open, 2);
    // A SIGHUP restart: slot 0's new worker runs in another record while the old drains.
    region.claim(2, 0, 2);
    try std.testing.expect(region.cell(2) != region.cell(0));
    cell_mod.add(&region.cell(2).listeners[0].accepted, 3);
    try std.testing.expectEqual(@as(u64, 8), slotTotal(&region, 0));
    region.fold(0, .{ .expected = true });
    try std.testing.expectEqual(@as(u64, 8), slotTotal(&region, 0));
    try std.testing.expectEqual(@as(u64, 0), region.retired[0].listeners[0].open);
    // A crash of the new one: replaced in record 0, from zero; the slot's total holds.
    region.fold(2, .{ .expected = false });
    region.claim(0, 0, 2);
    try std.testing.expectEqual(@as(u64, 8), slotTotal(&region, 0));
    try std.testing.expectEqual(@as(u64, 1), region.restartCount(.reload));
    try std.testing.expectEqual(@as(u64, 1), region.restartCount(.crash));
    try std.testing.expectEqual(@as(u64, 0), slotTotal(&region, 1));
    // The watchdog's kill is `hung`, not `crash`; a stop's exits count as no restart.
    region.fold(1, .{ .expected = false, .hung = true });
    region.fold(0, .{ .expected = true });
    try std.testing.expectEqual(@as(u64, 1), region.restartCount(.hung));
    try std.testing.expectEqual(@as(u64, 1), region.restartCount(.crash));
    // A freed cell is zero and belongs to no slot.
    try std.testing.expectEqual(@as(u64, 0), region.cell(0).listeners[0].accepted);
    try std.testing.expectEqual(@as(u64, 8), slotTotal(&region, 0));
}

fn slotTotal(region: *const Region, slot: u16) u64 {
    var total = region.retired[slot].listeners[0].accepted;
    var cells = region.liveCells(slot);
    while (cells.next()) |c| total += cell_mod.load(&c.listeners[0].accepted);
    return total;
}

test "a worker attaches to its cell through the descriptor" {
    var region = try Region.create(std.testing.allocator, 1, 4);
    defer region.deinit(std.testing.allocator);
    region.claim(3, 0, 1);
    try std.testing.expect(attach(region.fd, 3));
    defer cell_mod.detach();
    cell_mod.add(&cell_mod.at(0).accepted, 7);
    // Another mapping of the same pages: the supervisor sees it at once.
    try std.testing.expectEqual(@as(u64, 7), cell_mod.load(&region.cell(3).listeners[0].accepted));
    try std.testing.expect(!attach(region.fd, 4));
}
