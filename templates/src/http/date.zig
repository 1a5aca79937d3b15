//! The `Date` header value of every HTTP response: IMF-fixdate (RFC 9110 §5.6.7), such as
//! "Sun, 06 Nov 1994 08:49:37 GMT", always 29 bytes, formatted without allocation and cached
//! for the second it names (as nginx does), since every response needs one.
const std = @import("std");
const calendar = @import("../calendar.zig");

const assert = std.debug.assert;

/// The length of an IMF-fixdate.
pub const len = 29;

const seconds_per_day = calendar.seconds_per_day;
const civilFromDays = calendar.civilFromDays;
const writeDigits = calendar.writeDigits;

/// IMF-fixdate has a four-digit year: times outside 0000-01-01T00:00:00Z through
/// 9999-12-31T23:59:59Z (proleptic Gregorian) are clamped to those bounds.
const min_seconds: i64 = -62_167_219_200;
const max_seconds: i64 = 253_402_300_799;

const day_names = [7]*const [3]u8{ "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
const month_names = [12]*const [3]u8{
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
};

/// Writes the IMF-fixdate of `unix_seconds` (seconds since 1970-01-01T00:00:00Z) to `buf`.
pub fn format(buf: *[len]u8, unix_seconds: i64) void {
    const seconds = @max(min_seconds, @min(max_seconds, unix_seconds));
    const days = @divFloor(seconds, seconds_per_day);
    const second_of_day: u32 = @intCast(@mod(seconds, seconds_per_day));
    // 1970-01-01 was a Thursday.
    const weekday: u32 = @intCast(@mod(days + 4, 7));
    const date = civilFromDays(days);
    assert(date.year >= 0 and date.year <= 9999);

    const hour = second_of_day / 3600;
    const minute = second_of_day / 60 % 60;
    const second = second_of_day % 60;

    buf[0..3].* = day_names[weekday].*;
    buf[3..5].* = ", ".*;
    writeDigits(buf[5..7], date.day);
    buf[7] = ' ';
    buf[8..11].* = month_names[date.month - 1].*;
    buf[11] = ' ';
    writeDigits(buf[12..16], @intCast(date.year));
    buf[16] = ' ';
    writeDigits(buf[17..19], hour);
    buf[19] = ':';
    writeDigits(buf[20..22], minute);
    buf[22] = ':';
    writeDigits(buf[23..25], second);
    buf[25..29].* = " GMT".*;
}

/// The formatted date of the current second, formatted again only when the second changes.
pub const Cache = struct {
    text: [len]u8 = undefined,
    second: i64 = 0,
    valid: bool = false,

    pub fn get(self: *Cache, now_s: i64) *const [len]u8 {
        if (!self.valid or self.second != now_s) {
            format(&self.text, now_s);
            self.second = now_s;
            self.valid = true;
        }
        return &self.text;
    }
};

const testing = std.testing;

fn expectDate(expected: []const u8, unix_seconds: i64) !void {
    var buf: [len]u8 = undefined;
    format(&buf, unix_seconds);
    try testing.expectEqualStrings(expected, &buf);
}

test "format: known dates across leap years and centuries" {
    try expectDate("Thu, 01 Jan 1970 00:00:00 GMT", 0);
    try expectDate("Wed, 31 Dec 1969 23:59:59 GMT", -1);
    try expectDate("Sun, 06 Nov 1994 08:49:37 GMT", 784_111_777);
    try expectDate("Thu, 29 Feb 1996 00:00:00 GMT", 825_552_000);
    try expectDate("Tue, 29 Feb 2000 00:00:00 GMT", 951_782_400);
    try expectDate("Wed, 01 Mar 2000 00:00:00 GMT", 951_868_800);
    try expectDate("Thu, 29 Feb 2024 00:00:00 GMT", 1_709_164_800);
    try expectDate("Tue, 19 Jan 2038 03:14:07 GMT", 2_147_483_647);
    // 2100 is not a leap year: February 28 is followed by March 1.
    try expectDate("Sun, 28 Feb 2100 23:59:59 GMT", 4_107_542_399);
    try expectDate("Mon, 01 Mar 2100 00:00:00 GMT", 4_107_542_400);
    try expectDate("Tue, 29 Feb 2400 12:00:00 GMT", 13_574_606_400);
    try expectDate("Mon, 01 Jan 1900 00:00:00 GMT", -2_208_988_800);
    try expectDate("Mon, 01 Jan 0001 00:00:00 GMT", -62_135_596_800);
}

test "format: times beyond four-digit years are clamped" {
    try expectDate("Fri, 31 Dec 9999 23:59:59 GMT", 253_402_300_799);
    try expectDate("Fri, 31 Dec 9999 23:59:59 GMT", std.math.maxInt(i64));
    try expectDate("Sat, 01 Jan 0000 00:00:00 GMT", -62_167_219_200);
    try expectDate("Sat, 01 Jan 0000 00:00:00 GMT", std.math.minInt(i64));
}

test "Cache: formats again only when the second changes" {
    var cache: Cache = .{};
    const first = cache.get(784_111_777);
    try testing.expectEqualStrings("Sun, 06 Nov 1994 08:49:37 GMT", first);
    // The same second: the same text, not formatted again (a mark survives).
    cache.text[0] = 'X';
    try testing.expectEqual(@as(u8, 'X'), cache.get(784_111_777)[0]);
    try testing.expectEqualStrings("Sun, 06 Nov 1994 08:49:38 GMT", cache.get(784_111_778));
    // Zero is a valid time too, not a sentinel.
    var fresh: Cache = .{};
    try testing.expectEqualStrings("Thu, 01 Jan 1970 00:00:00 GMT", fresh.get(0));
}

test "format: the last second of 2499" {
    try expectDate("Thu, 31 Dec 2499 23:59:59 GMT", 16_725_225_599);
}
