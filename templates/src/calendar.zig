//! Calendar arithmetic shared by the HTTP `Date` header and the timestamps of events and log
//! lines: the proleptic Gregorian date of a Unix time, and RFC 3339 UTC times with
//! milliseconds ("2026-12-07T06:00:43.123Z"), both without allocation.
const std = @import("std");

const assert = std.debug.assert;

pub const seconds_per_day = 86_400;

/// The length of an RFC 3339 time with milliseconds, such as "2026-12-07T06:00:43.123Z".
pub const rfc3339_len = 24;

/// RFC 3339 has four-digit years: times outside 0000-01-01T00:00:00.000Z through
/// 9999-12-31T23:59:59.999Z are clamped to those bounds.
const min_ms: i64 = -62_167_219_200_000;
const max_ms: i64 = 253_402_300_799_999;

/// Writes `unix_ms` (milliseconds since 1970-01-01T00:00:00Z) as an RFC 3339 UTC time.
pub fn formatRfc3339Ms(buf: *[rfc3339_len]u8, unix_ms: i64) void {
    const ms = @max(min_ms, @min(max_ms, unix_ms));
    const seconds = @divFloor(ms, 1000);
    const millisecond: u32 = @intCast(@mod(ms, 1000));
    const days = @divFloor(seconds, seconds_per_day);
    const second_of_day: u32 = @intCast(@mod(seconds, seconds_per_day));
    const date = civilFromDays(days);
    assert(date.year >= 0 and date.year <= 9999);

    writeDigits(buf[0..4], @intCast(date.year));
    buf[4] = '-';
    writeDigits(buf[5..7], date.month);
    buf[7] = '-';
    writeDigits(buf[8..10], date.day);
    buf[10] = 'T';
    writeDigits(buf[11..13], second_of_day / 3600);
    buf[13] = ':';
    writeDigits(buf[14..16], second_of_day / 60 % 60);
    buf[16] = ':';
    writeDigits(buf[17..19], second_of_day % 60);
    buf[19] = '.';
    writeDigits(buf[20..23], millisecond);
    buf[23] = 'Z';
}

pub const Civil = struct { year: i64, month: u32, day: u32 };

/// The proleptic Gregorian date of a day count from 1970-01-01, by counting 400-year eras
/// (146097 days each) from 0000-03-01, so that the leap day is the last day of each year.
pub fn civilFromDays(days: i64) Civil {
    const z = days + 719_468; // Days from 0000-03-01.
    const era = @divFloor(z, 146_097);
    const day_of_era: u32 = @intCast(z - era * 146_097); // [0, 146096]
    // Leap days: one every 4 years, none every 100, one again every 400.
    const year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 -
        day_of_era / 146_096) / 365; // [0, 399]
    const day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    const march_month = (5 * day_of_year + 2) / 153; // [0, 11], 0 = March
    const day = day_of_year - (153 * march_month + 2) / 5 + 1; // [1, 31]
    const month = if (march_month < 10) march_month + 3 else march_month - 9; // [1, 12]
    // The year counted from March: January and February belong to the next calendar year.
    const year = @as(i64, year_of_era) + era * 400 + @as(i64, if (month <= 2) 1 else 0);
    assert(day >= 1 and day <= 31);
    assert(month >= 1 and month <= 12);
    return .{ .year = year, .month = month, .day = day };
}

/// Writes `value` in decimal, zero-padded to fill `out`.
pub fn writeDigits(out: []u8, value: u32) void {
    var rest = value;
    var i = out.len;
    while (i > 0) {
        i -= 1;
        out[i] = '0' + @as(u8, @intCast(rest % 10));
        rest /= 10;
    }
    assert(rest == 0);
}

const testing = std.testing;

fn expectRfc3339(expected: []const u8, unix_ms: i64) !void {
    var buf: [rfc3339_len]u8 = undefined;
    formatRfc3339Ms(&buf, unix_ms);
    try testing.expectEqualStrings(expected, &buf);
}

test "formatRfc3339Ms: known times, milliseconds, before 1970 and clamped years" {
    try expectRfc3339("1970-01-01T00:00:00.000Z", 0);
    try expectRfc3339("1969-12-31T23:59:59.999Z", -1);
    try expectRfc3339("1994-11-06T08:49:37.005Z", 784_111_777_005);
    try expectRfc3339("2000-02-29T23:59:59.999Z", 951_868_799_999);
    try expectRfc3339("2026-12-07T06:00:43.123Z", 1_796_623_243_123);
    try expectRfc3339("9999-12-31T23:59:59.999Z", std.math.maxInt(i64));
    try expectRfc3339("0000-01-01T00:00:00.000Z", std.math.minInt(i64));
}

test "civilFromDays: agrees with a day-by-day walk of the calendar from 1970 to 2500" {
    const month_days = [12]u32{ 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    var year: i64 = 1970;
    var month: u32 = 1;
    var day: u32 = 1;
    var days: i64 = 0;
    while (year < 2500) : (days += 1) {
        const date = civilFromDays(days);
        try testing.expectEqual(year, date.year);
        try testing.expectEqual(month, date.month);
        try testing.expectEqual(day, date.day);
        const leap = @mod(year, 4) == 0 and (@mod(year, 100) != 0 or @mod(year, 400) == 0);
        const length = if (month == 2 and leap) 29 else month_days[month - 1];
        day += 1;
        if (day > length) {
            day = 1;
            month += 1;
            if (month > 12) {
                month = 1;
                year += 1;
            }
        }
    }
}
