//! Every difference between the Zig releases this program supports lives in this file.
//!
//! The rest of the program talks to Linux through `std.os.linux`, the one layer of the
//! standard library that stayed stable from 0.14 to 0.17. What still moved (how errno is
//! read, how `main` receives its arguments, the signal and wait-status types) is bridged
//! here with comptime branches on `builtin.zig_version`, so that the untaken branch is
//! never analysed and every file compiles on every supported release.
const std = @import("std");
const builtin = @import("builtin");
const linux = std.os.linux;

const zig_version = builtin.zig_version;

/// 0.16 passes arguments and environment to `main` in `std.process.Init` and removed
/// `std.os.argv` and `std.os.environ`.
/// A Debug build (0.17 spells the optimize modes in lower case).
pub const is_debug = std.ascii.eqlIgnoreCase(@tagName(builtin.mode), "debug");
/// A build with safety checks (Debug or ReleaseSafe), where invariant walks are worth their cost.
pub const has_safety = is_debug or std.ascii.eqlIgnoreCase(@tagName(builtin.mode), "releasesafe");

pub const has_process_init = zig_version.major > 0 or zig_version.minor >= 16;

/// 0.16 made mmap's protection flags a packed struct.
const prot_is_struct = zig_version.major > 0 or zig_version.minor >= 16;

/// 0.17 changed the status out-parameter of `waitpid` from `u32` to `i32`.
const WaitStatus = if (zig_version.major > 0 or zig_version.minor >= 17) i32 else u32;

/// The arguments and environment of this process, whichever release started it.
pub const Process = struct {
    args: []const [*:0]const u8,
    envp: [*:null]const ?[*:0]const u8,
};

/// The entry point for `run`, in the form the running release's `start.zig` expects.
pub fn Entry(comptime run: fn (Process) u8) type {
    return struct {
        pub const main = if (has_process_init) mainWithInit else mainLegacy;

        fn mainWithInit(init: std.process.Init.Minimal) u8 {
            return run(.{ .args = init.args.vector, .envp = init.environ.block.slice.ptr });
        }

        fn mainLegacy() u8 {
            return run(.{ .args = std.os.argv, .envp = @ptrCast(std.os.environ.ptr) });
        }
    };
}

/// Formats into `buf` (`std.fmt.bufPrint`, which 0.17 moved to `std.mem.print`).
pub const bufPrint = if (@hasDecl(std.mem, "print")) std.mem.print else std.fmt.bufPrint;

/// Writes `value` as JSON into `buf` (std.json's rules, compact) and returns what it wrote;
/// `error.NoSpaceLeft` when it does not fit. 0.15 replaced `std.json.stringify` and its
/// generic writer with `std.json.Stringify` over `std.Io.Writer`; neither allocates.
pub fn jsonPrint(buf: []u8, value: anytype) error{NoSpaceLeft}![]u8 {
    if (@hasDecl(std.json, "Stringify")) {
        var writer: std.Io.Writer = .fixed(buf);
        std.json.Stringify.value(value, .{}, &writer) catch return error.NoSpaceLeft;
        return writer.buffered();
    } else {
        var stream = std.io.fixedBufferStream(buf);
        std.json.stringify(value, .{}, stream.writer()) catch return error.NoSpaceLeft;
        return stream.getWritten();
    }
}

/// Searching slices: 0.16 renamed `indexOf*` to `find*`.
pub const find = if (@hasDecl(std.mem, "find")) std.mem.find else std.mem.indexOf;
pub const findScalar = if (@hasDecl(std.mem, "findScalar"))
    std.mem.findScalar
else
    std.mem.indexOfScalar;
pub const findScalarLast = if (@hasDecl(std.mem, "findScalarLast"))
    std.mem.findScalarLast
else
    std.mem.lastIndexOfScalar;

/// Coverage-guided fuzzing of a function of bytes: `zig build test --fuzz` searches inputs,
/// an ordinary test run tries the corpus (and an empty input) only. 0.14 and 0.15 hand the
/// function the raw input. 0.16 hands it a `std.testing.Smith` instead: the bytes are drawn
/// from it as one slice, which it reads as a 4-byte little-endian length and the bytes, so the
/// corpus entries get that prefix here.
pub fn fuzz(
    context: anytype,
    comptime testOne: fn (context: @TypeOf(context), input: []const u8) anyerror!void,
    comptime corpus: []const []const u8,
) anyerror!void {
    const Context = @TypeOf(context);
    if (comptime @hasDecl(std.testing, "Smith")) {
        const Adapter = struct {
            fn testSmith(ctx: Context, smith: *std.testing.Smith) anyerror!void {
                var input: [fuzz_input_bytes]u8 = undefined;
                const len = smith.slice(&input);
                return testOne(ctx, input[0..len]);
            }
        };
        const prefixed = comptime lengthPrefixed(corpus);
        return std.testing.fuzz(context, Adapter.testSmith, .{ .corpus = prefixed });
    } else {
        return std.testing.fuzz(context, testOne, .{ .corpus = corpus });
    }
}

/// The longest input a fuzz test receives from 0.16's `Smith`.
const fuzz_input_bytes = 4096;

fn lengthPrefixed(comptime corpus: []const []const u8) []const []const u8 {
    var entries: [corpus.len][]const u8 = undefined;
    for (corpus, &entries) |entry, *out| {
        const len: u32 = @min(entry.len, fuzz_input_bytes);
        const prefix = [4]u8{
            @truncate(len),
            @truncate(len >> 8),
            @truncate(len >> 16),
            @truncate(len >> 24),
        };
        out.* = &(prefix ++ entry[0..len].*);
    }
    const final = entries;
    return &final;
}

/// Registers a ring of provided buffers with io_uring (Zig 0.15 added the flags argument).
pub fn setupBufRing(fd: linux.fd_t, entries: u16, group_id: u16) !BufRing {
    const IoUring = linux.IoUring;
    if (zig_version.major == 0 and zig_version.minor < 15) {
        return IoUring.setup_buf_ring(fd, entries, group_id);
    }
    return IoUring.setup_buf_ring(fd, entries, group_id, .{ .inc = false });
}

const setup_buf_ring_info = @typeInfo(@TypeOf(linux.IoUring.setup_buf_ring)).@"fn";
pub const BufRing = @typeInfo(setup_buf_ring_info.return_type.?).error_union.payload;

/// Moves `src` to the start of `dest`, which may overlap it from the left. 0.15 deprecated
/// `std.mem.copyForwards` for `@memmove`, a builtin 0.14 does not know, so the loop is ours.
pub fn copyLeft(dest: []u8, src: []const u8) void {
    moveLeft(u8, dest, src);
}

/// `copyLeft` for any element type.
pub fn moveLeft(comptime T: type, dest: []T, src: []const T) void {
    std.debug.assert(dest.len >= src.len);
    for (dest[0..src.len], src) |*d, s| d.* = s;
}

/// The error number of a raw `std.os.linux` call's return value.
pub fn errno(rc: usize) linux.E {
    if (comptime @hasDecl(linux, "errno")) return linux.errno(rc);
    return linux.E.init(rc);
}

/// The error number of an io_uring completion's negative result. Not `@enumFromInt`, which
/// the `zig fmt` of 0.17 rewrites to a builtin the older releases lack.
pub fn errnoOf(res: i32) linux.E {
    return errno(@bitCast(@as(isize, res)));
}

pub fn emptySigset() linux.sigset_t {
    if (comptime @hasDecl(linux, "sigemptyset")) return linux.sigemptyset();
    return linux.empty_sigset;
}

/// The number of a signal constant (`linux.SIG.TERM`, …), which is an integer before 0.16
/// and an enum from 0.16 on. Derived at compile time through a signal set, so that no
/// enum conversion builtin is needed (their names differ between releases).
pub fn signalNumber(comptime sig: anytype) u32 {
    return comptime blk: {
        var set = emptySigset();
        linux.sigaddset(&set, sig);
        const bits = @bitSizeOf(@TypeOf(set[0]));
        for (set, 0..) |word, i| {
            if (word != 0) break :blk @intCast(i * bits + @ctz(word) + 1);
        }
        unreachable;
    };
}

/// Anonymous memory straight from the kernel. Pages cost nothing until first touched, so
/// a worker can reserve buffers for every connection it may ever hold (the allocator
/// interface would instead fill them with a debug pattern in Debug builds).
pub fn mapMemory(len: usize) error{OutOfMemory}![]u8 {
    return mapWith(len, false);
}

/// `mapMemory` with every page backed at once (`MAP_POPULATE`): for memory used in turn,
/// each part after the other, whose every page is touched soon whatever the load (the
/// provided buffers of an io_uring worker): resident from the start rather than growing.
pub fn mapResident(len: usize) error{OutOfMemory}![]u8 {
    return mapWith(len, true);
}

fn mapWith(len: usize, populate: bool) error{OutOfMemory}![]u8 {
    const prot = if (prot_is_struct)
        linux.PROT{ .READ = true, .WRITE = true }
    else
        linux.PROT.READ | linux.PROT.WRITE;
    const flags: linux.MAP = .{ .TYPE = .PRIVATE, .ANONYMOUS = true, .POPULATE = populate };
    const rc = linux.mmap(null, len, prot, flags, -1, 0);
    if (errno(rc) != .SUCCESS) return error.OutOfMemory;
    const ptr: [*]u8 = @ptrFromInt(rc);
    return ptr[0..len];
}

pub const WaitResult = struct {
    pid: linux.pid_t,
    status: u32,
};

/// `waitpid` that returns null when no child has changed state (with `W.NOHANG`).
pub fn waitpid(pid: linux.pid_t, flags: u32) error{NoChild}!?WaitResult {
    while (true) {
        var status: WaitStatus = 0;
        const rc = linux.waitpid(pid, &status, flags);
        switch (errno(rc)) {
            .SUCCESS => {
                const child: linux.pid_t = @intCast(@as(isize, @bitCast(rc)));
                if (child == 0) return null;
                return .{ .pid = child, .status = @bitCast(status) };
            },
            .INTR => continue,
            else => return error.NoChild,
        }
    }
}

/// The names of the public declarations of the struct `T`: 0.17 lists them as `decl_names`,
/// earlier releases as `decls`, each with a `name`.
pub fn declNames(comptime T: type) []const []const u8 {
    comptime {
        const info = @typeInfo(T).@"struct";
        const names_only = @hasField(@TypeOf(info), "decl_names");
        const len = if (names_only) info.decl_names.len else info.decls.len;
        var names: [len][]const u8 = undefined;
        for (&names, 0..) |*name, i| {
            name.* = if (names_only) info.decl_names[i] else info.decls[i].name;
        }
        const final = names;
        return &final;
    }
}

/// An enum value's position among its type's values: its integer, for the 0-based consecutive
/// enums that index arrays. Not `@intFromEnum`, which the `zig fmt` of 0.17 rewrites to
/// `@backingInt` (a builtin the older releases lack), so a file using it is never fmt-clean
/// on every release at once.
pub fn enumIndex(e: anytype) usize {
    return std.enums.EnumIndexer(@TypeOf(e)).indexOf(e);
}
