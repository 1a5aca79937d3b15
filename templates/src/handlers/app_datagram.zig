//! The API of datagram application modules, at the path every module file imports
//! (`const datagram_api = @import("app_datagram.zig");`). Module files are the user's and
//! are never regenerated, so this path stays while the runtime behind it (`app/datagram.zig`
//! and its neighbours) may move: every public declaration of `app/datagram.zig` is here.
const compat = @import("../compat.zig");
const runtime = @import("app/datagram.zig");

pub const Peer = runtime.Peer;
pub const WriteError = runtime.WriteError;
pub const SendError = runtime.SendError;
pub const Datagram = runtime.Datagram;
pub const Module = runtime.Module;
pub const Metric = runtime.Metric;

test "every public declaration of the runtime is reachable from here" {
    inline for (comptime compat.declNames(runtime)) |name| {
        if (!@hasDecl(@This(), name)) @compileError("app_datagram.zig lacks " ++ name);
    }
}
