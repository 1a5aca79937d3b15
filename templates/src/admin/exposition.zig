//! `GET /metrics`: the exposition (`metrics/render.zig`) in the format the scraper's `Accept`
//! asks for, rendered straight into the response body.
const server = @import("server.zig");
const render = @import("../metrics/render.zig");

pub fn answer(body: *server.Body, accept: []const u8, view: *const render.View) server.Answer {
    const format = render.formatFor(if (accept.len == 0) null else accept);
    const content_type = render.contentType(format);
    const text = render.render(body.buf[body.len..], format, view) catch {
        // More series than the largest response: the server answers 500.
        body.overflow = true;
        return .{ .status = 500, .content_type = content_type };
    };
    body.len += text.len;
    return .{ .status = 200, .content_type = content_type };
}
