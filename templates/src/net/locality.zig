//! CPU locality (`"cpuAffinity": true`): worker slot i runs on one CPU, the (i mod n)-th of
//! the n CPUs the supervisor may use, and each reuseport group sends a new connection (or a
//! datagram) to a worker pinned to the CPU that received it, so that the packet, the socket
//! and the worker's buffers stay in one CPU's caches (nginx's `worker_cpu_affinity` does the
//! first half; the second half is what `SO_INCOMING_CPU` does for a group of sockets).
//!
//! The steering is a classic BPF program attached to the group (SO_ATTACH_REUSEPORT_CBPF,
//! like `upgrade/steering.zig`, whose header says why slot k is index k of the group): it
//! reads the CPU the kernel runs it on (SKF_AD_CPU), finds that CPU's position j in the set
//! with one comparison per CPU, and returns slot j, or, when several slots share the CPU
//! (more workers than CPUs), one of j, j+n, j+2n… chosen at random (SKF_AD_RANDOM). A CPU
//! outside the set (its mask changed, or a CPU without a worker) gets a random slot.
//!
//! The set is read once, when the supervisor starts; workers it starts later (restarts,
//! replacements) are pinned from the same list, so they match the program attached.
const std = @import("std");
const compat = @import("../compat.zig");
const sys = @import("sys.zig");
const steering = @import("../upgrade/steering.zig");
const linux = std.os.linux;

const Instruction = steering.Instruction;

/// The most CPUs a `cpu_set_t` of the standard size names (and so the most we pin to).
pub const max_cpus = linux.CPU_SETSIZE * 8;
/// BPF_MAXINSNS: the kernel refuses a longer classic program.
pub const max_instructions = 4096;

/// The CPUs a process may run on, in increasing order.
pub const Cpus = struct {
    ids: [max_cpus]u16 = undefined,
    len: u16 = 0,

    pub fn slice(self: *const Cpus) []const u16 {
        return self.ids[0..self.len];
    }

    /// The CPU slot `slot` is pinned to.
    pub fn forSlot(self: *const Cpus, slot: u16) u16 {
        std.debug.assert(self.len > 0);
        return self.ids[slot % self.len];
    }
};

/// This process's affinity mask as a list; null when the kernel refuses to say (a machine
/// with more CPUs than a `cpu_set_t` holds).
pub fn allowedCpus() ?Cpus {
    var set: linux.cpu_set_t = @splat(0);
    const rc = linux.syscall3(.sched_getaffinity, 0, @sizeOf(linux.cpu_set_t), @intFromPtr(&set));
    if (compat.errno(rc) != .SUCCESS) return null;
    var cpus: Cpus = .{};
    for (0..max_cpus) |cpu| {
        const word = set[cpu / @bitSizeOf(usize)];
        if ((word >> @intCast(cpu % @bitSizeOf(usize))) & 1 == 0) continue;
        cpus.ids[cpus.len] = @intCast(cpu);
        cpus.len += 1;
    }
    if (cpus.len == 0) return null;
    return cpus;
}

/// Binds the calling process to `cpu` alone. Only system calls: safe between fork and exec.
pub fn pinTo(cpu: u16) bool {
    var set: linux.cpu_set_t = @splat(0);
    const bits = @bitSizeOf(usize);
    set[cpu / bits] = @as(usize, 1) << @intCast(cpu % bits);
    const rc = linux.syscall3(.sched_setaffinity, 0, @sizeOf(linux.cpu_set_t), @intFromPtr(&set));
    return compat.errno(rc) == .SUCCESS;
}

// Classic BPF opcodes (linux/filter.h and linux/bpf_common.h).
const ld_w_abs: u16 = 0x00 | 0x00 | 0x20; // BPF_LD | BPF_W | BPF_ABS
const jeq_k: u16 = 0x05 | 0x10 | 0x00; // BPF_JMP | BPF_JEQ | BPF_K
const mod_k: u16 = 0x04 | 0x90 | 0x00; // BPF_ALU | BPF_MOD | BPF_K
const mul_k: u16 = 0x04 | 0x20 | 0x00; // BPF_ALU | BPF_MUL | BPF_K
const add_k: u16 = 0x04 | 0x00 | 0x00; // BPF_ALU | BPF_ADD | BPF_K
const ret_k: u16 = 0x06 | 0x00; // BPF_RET | BPF_K
const ret_a: u16 = 0x06 | 0x10; // BPF_RET | BPF_A
/// SKF_AD_OFF + SKF_AD_CPU and + SKF_AD_RANDOM: loads from these read the current CPU's
/// number and a random 32-bit number.
const cpu_offset: u32 = @bitCast(@as(i32, -0x1000 + 36));
const random_offset: u32 = @bitCast(@as(i32, -0x1000 + 56));

fn insn(code: u16, jf: u8, k: u32) Instruction {
    return .{ .code = code, .jt = 0, .jf = jf, .k = k };
}

/// How many of the first `count` slots are pinned to the `j`-th of `n` CPUs.
fn slotsOn(j: usize, n: usize, count: usize) usize {
    if (j >= count) return 0;
    return (count - 1 - j) / n + 1;
}

/// How long the program for `n` CPUs and `count` slots is.
pub fn programLength(n: usize, count: usize) usize {
    var len: usize = 1 + 3;
    for (0..@min(n, count)) |j| len += if (slotsOn(j, n, count) == 1) 2 else 6;
    return len;
}

/// The program that sends a connection received on CPU `cpus[j]` to one of the slots
/// pinned to it, among the first `count` slots only; null when it would be longer than the
/// kernel allows. Layout: load the CPU; per CPU with a slot, a comparison that skips its
/// block when it does not match, and the block (return the slot, or pick one of its slots
/// at random); then the fallback: a random slot below `count`.
pub fn program(cpus: []const u16, count: u16, out: []Instruction) ?[]const Instruction {
    std.debug.assert(cpus.len > 0 and count > 0);
    const n = cpus.len;
    const len = programLength(n, count);
    if (len > max_instructions or len > out.len) return null;
    var at: usize = 0;
    out[at] = insn(ld_w_abs, 0, cpu_offset);
    at += 1;
    for (cpus[0..@min(n, count)], 0..) |cpu, j| {
        const slots = slotsOn(j, n, count);
        if (slots == 1) {
            out[at] = insn(jeq_k, 1, cpu);
            out[at + 1] = insn(ret_k, 0, @intCast(j));
            at += 2;
            continue;
        }
        // A = random % slots * n + j: one of j, j + n, … below count.
        out[at] = insn(jeq_k, 5, cpu);
        out[at + 1] = insn(ld_w_abs, 0, random_offset);
        out[at + 2] = insn(mod_k, 0, @intCast(slots));
        out[at + 3] = insn(mul_k, 0, @intCast(n));
        out[at + 4] = insn(add_k, 0, @intCast(j));
        out[at + 5] = insn(ret_a, 0, 0);
        at += 6;
    }
    out[at] = insn(ld_w_abs, 0, random_offset);
    out[at + 1] = insn(mod_k, 0, count);
    out[at + 2] = insn(ret_a, 0, 0);
    at += 3;
    std.debug.assert(at == len);
    return out[0..at];
}

pub const SteerError = error{ TooManyCpus, Unexpected };

/// From now on the group `fd` belongs to sends each new connection (or datagram) to one of
/// its first `count` members pinned to the CPU that received it.
pub fn steerByCpu(fd: sys.Fd, cpus: *const Cpus, count: u16) SteerError!void {
    var buf: [max_instructions]Instruction = undefined;
    const code = program(cpus.slice(), count, &buf) orelse return error.TooManyCpus;
    steering.attach(fd, code) catch return error.Unexpected;
}

const testing = std.testing;

test "program: one slot per CPU, instruction by instruction" {
    var buf: [64]Instruction = undefined;
    const code = program(&.{ 0, 3 }, 2, &buf).?;
    const expected = [_]Instruction{
        insn(ld_w_abs, 0, cpu_offset),
        insn(jeq_k, 1, 0),
        insn(ret_k, 0, 0),
        insn(jeq_k, 1, 3),
        insn(ret_k, 0, 1),
        insn(ld_w_abs, 0, random_offset),
        insn(mod_k, 0, 2),
        insn(ret_a, 0, 0),
    };
    try testing.expectEqualSlices(Instruction, &expected, code);
}

test "program: more slots than CPUs pick among a CPU's slots at random" {
    var buf: [64]Instruction = undefined;
    // 5 slots on 2 CPUs: CPU 4 has slots 0, 2, 4; CPU 7 has slots 1, 3.
    const code = program(&.{ 4, 7 }, 5, &buf).?;
    try testing.expectEqual(@as(usize, 1 + 6 + 6 + 3), code.len);
    try testing.expectEqual(insn(jeq_k, 5, 4), code[1]);
    try testing.expectEqual(insn(mod_k, 0, 3), code[3]);
    try testing.expectEqual(insn(mul_k, 0, 2), code[4]);
    try testing.expectEqual(insn(add_k, 0, 0), code[5]);
    try testing.expectEqual(insn(jeq_k, 5, 7), code[7]);
    try testing.expectEqual(insn(mod_k, 0, 2), code[9]);
    try testing.expectEqual(insn(add_k, 0, 1), code[11]);
    try testing.expectEqual(insn(mod_k, 0, 5), code[14]);
}

test "program: fewer slots than CPUs; bounded by members; too long refused" {
    var buf: [max_instructions]Instruction = undefined;
    // An upgrade that keeps 1 of 3 members: only CPU 0's block, and the fallback stays below 1.
    const kept = program(&.{ 0, 1, 2 }, 1, &buf).?;
    try testing.expectEqual(@as(usize, 1 + 2 + 3), kept.len);
    try testing.expectEqual(insn(mod_k, 0, 1), kept[4]);
    var many: [max_cpus]u16 = undefined;
    for (&many, 0..) |*cpu, i| cpu.* = @intCast(i);
    try testing.expect(program(&many, 1024, &buf) != null);
    try testing.expectEqual(@as(usize, 4 + 2 * 1024), programLength(1024, 1024));
    // With at most 1024 workers and 1024 CPUs the longest program is 512 CPUs with two slots
    // each (6 per CPU); more slots than workers allow pass the kernel's limit.
    try testing.expectEqual(@as(usize, 4 + 6 * 512), programLength(512, 1024));
    for (1..max_cpus + 1) |n| try testing.expect(programLength(n, 1024) <= 4 + 6 * 512);
    try testing.expect(program(&many, 2048, &buf) == null);
    try testing.expect(program(many[0..682], 1364, &buf) != null);
    try testing.expect(program(many[0..683], 1366, &buf) == null);
}

test "the slot of every CPU position is below count" {
    for (1..9) |n| for (1..20) |count| {
        var total: usize = 0;
        for (0..n) |j| {
            const slots = slotsOn(j, n, count);
            if (slots > 0) try testing.expect((slots - 1) * n + j < count);
            total += slots;
        }
        try testing.expectEqual(count, total);
    };
}

test "allowedCpus on this machine" {
    const cpus = allowedCpus().?;
    try testing.expect(cpus.len >= 1);
    try testing.expectEqual(cpus.ids[0], cpus.forSlot(cpus.len));
}

// The kernel runs the program on the CPU that processes the packet; on loopback that is the
// sender's, so a sender pinned to CPU j reaches slot j.

const address = @import("../address.zig");
const loopback: address.Address = .{ .ip4 = .{ 127, 0, 0, 1 } };

fn udpMember(port: u16) !sys.Fd {
    const kind = linux.SOCK.DGRAM | linux.SOCK.NONBLOCK | linux.SOCK.CLOEXEC;
    const fd = try sys.socket(linux.AF.INET, kind, 0);
    errdefer sys.close(fd);
    try sys.setsockoptInt(fd, linux.SOL.SOCKET, linux.SO.REUSEPORT, 1);
    const sockaddr = address.SockAddr.init(loopback, port);
    try sys.bind(fd, sockaddr.ptr(), sockaddr.len);
    return fd;
}

fn drained(fd: sys.Fd) usize {
    var buf: [16]u8 = undefined;
    var peer: sys.Peer = .{};
    var got: usize = 0;
    while (got < 1000) : (got += 1) _ = sys.recvfrom(fd, &buf, &peer) catch break;
    return got;
}

test "a group steered by CPU delivers a pinned sender's datagrams to that CPU's slot" {
    const cpus = allowedCpus().?;
    if (cpus.len < 2) return error.SkipZigTest;
    const first = try udpMember(0);
    defer sys.close(first);
    var bound: address.SockAddr = .{ .storage = undefined, .len = 0 };
    bound.len = try sys.getsockname(first, &bound.storage);
    const second = try udpMember(bound.port());
    defer sys.close(second);
    try steerByCpu(second, &cpus, 2);
    var original: linux.cpu_set_t = @splat(0);
    const size = @sizeOf(linux.cpu_set_t);
    _ = linux.syscall3(.sched_getaffinity, 0, size, @intFromPtr(&original));
    defer _ = linux.syscall3(.sched_setaffinity, 0, size, @intFromPtr(&original));
    const members = [_]sys.Fd{ first, second };
    for (members, 0..) |fd, j| {
        try testing.expect(pinTo(cpus.ids[j]));
        const client = try sys.socket(linux.AF.INET, linux.SOCK.DGRAM | linux.SOCK.CLOEXEC, 0);
        defer sys.close(client);
        for (0..16) |_| _ = linux.sendto(client, "x", 1, 0, bound.ptr(), bound.len);
        try testing.expectEqual(@as(usize, 16), drained(fd));
        try testing.expectEqual(@as(usize, 0), drained(members[1 - j]));
    }
}
