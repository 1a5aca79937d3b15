//! The API of HTTP application modules, at the path every module file imports
//! (`const http = @import("app_http.zig");`). Module files are the user's and
//! are never regenerated, so this path stays while the runtime behind it (`app/http.zig`
//! and its neighbours) may move: every public declaration of `app/http.zig` is here.
const compat = @import("../compat.zig");
const runtime = @import("app/http.zig");

pub const header_bytes = runtime.header_bytes;
pub const Method = runtime.Method;
pub const Route = runtime.Route;
pub const Param = runtime.Param;
pub const max_params = runtime.max_params;
pub const Waiter = runtime.Waiter;
pub const wake = runtime.wake;
pub const takeWake = runtime.takeWake;
pub const TestResponse = runtime.TestResponse;
pub const Peer = runtime.Peer;
pub const Request = runtime.Request;
pub const JsonError = runtime.JsonError;
pub const JsonProblem = runtime.JsonProblem;
pub const Response = runtime.Response;
pub const WriteError = runtime.WriteError;
pub const HeaderError = runtime.HeaderError;
pub const Continuation = runtime.Continuation;
pub const BodyWriter = runtime.BodyWriter;
pub const continue_response = runtime.continue_response;
pub const onTimeout = runtime.onTimeout;
/// For the worker: the request log's line of a request that timed out.
pub const logTimeout = runtime.logTimeout;
pub const Access = runtime.Access;
pub const RouterError = runtime.RouterError;
pub const Connection = runtime.Connection;
pub const Module = runtime.Module;
pub const Metric = runtime.Metric;

test "every public declaration of the runtime is reachable from here" {
    inline for (comptime compat.declNames(runtime)) |name| {
        if (!@hasDecl(@This(), name)) @compileError("app_http.zig lacks " ++ name);
    }
}
