//! The API of stream application modules, at the path every module file imports
//! (`const stream = @import("app_stream.zig");`). Module files are the user's and
//! are never regenerated, so this path stays while the runtime behind it (`app/stream.zig`
//! and its neighbours) may move: every public declaration of `app/stream.zig` is here.
const compat = @import("../compat.zig");
const runtime = @import("app/stream.zig");

pub const Peer = runtime.Peer;
pub const Framing = runtime.Framing;
pub const FrameBuffers = runtime.FrameBuffers;
pub const reply_reserve_bytes = runtime.reply_reserve_bytes;
pub const WriteError = runtime.WriteError;
pub const Io = runtime.Io;
pub const Module = runtime.Module;
pub const Metric = runtime.Metric;
pub const TestAnswer = runtime.TestAnswer;

test "every public declaration of the runtime is reachable from here" {
    inline for (comptime compat.declNames(runtime)) |name| {
        if (!@hasDecl(@This(), name)) @compileError("app_stream.zig lacks " ++ name);
    }
}
