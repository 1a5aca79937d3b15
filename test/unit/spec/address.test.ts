import { describe, expect, it } from "vitest";
import {
  formatIp,
  isIpv6Wildcard,
  parseIp,
  parseIpv4,
  parseIpv6,
} from "../../../src/spec/address.js";

describe("parseIpv4", () => {
  it.each([
    ["0.0.0.0", [0, 0, 0, 0]],
    ["127.0.0.1", [127, 0, 0, 1]],
    ["255.255.255.255", [255, 255, 255, 255]],
  ])("parses %s", (text, bytes) => {
    expect(parseIpv4(text)).toEqual(bytes);
  });

  it.each([
    "256.0.0.1",
    "1.2.3",
    "1.2.3.4.5",
    "01.2.3.4",
    "1.2.3.-4",
    "1.2.3.4 ",
    "",
    "a.b.c.d",
    "1..3.4",
  ])("rejects %j", (text) => {
    expect(parseIpv4(text)).toBeUndefined();
  });
});

describe("parseIpv6", () => {
  it.each([
    ["::", new Array(16).fill(0)],
    ["::1", [...new Array(15).fill(0), 1]],
    ["0:0:0:0:0:0:0:1", [...new Array(15).fill(0), 1]],
    [
      "2001:db8::ff00:42:8329",
      [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0xff, 0, 0, 0x42, 0x83, 0x29],
    ],
    ["::ffff:192.0.2.1", [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1]],
    ["1:2:3:4:5:6:7::", [0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 0]],
    ["FE80::A", [0xfe, 0x80, ...new Array(13).fill(0), 0x0a]],
  ])("parses %s", (text, bytes) => {
    expect(parseIpv6(text)).toEqual(bytes);
  });

  it.each([
    "1::2::3",
    ":::",
    "1:2:3:4:5:6:7:8:9",
    "1:2:3:4:5:6:7",
    "::1:2:3:4:5:6:7:8",
    "12345::",
    "fe80::1%eth0",
    "[::1]",
    "::ffff:256.0.0.1",
    "1.2.3.4::",
    ":1:2:3:4:5:6:7",
    "g::1",
  ])("rejects %j", (text) => {
    expect(parseIpv6(text)).toBeUndefined();
  });
});

describe("formatIp", () => {
  it.each([
    ["0:0:0:0:0:0:0:1", "::1"],
    ["2001:DB8:0:0:1:0:0:1", "2001:db8::1:0:0:1"],
    ["2001:db8:0:0:0:0:2:1", "2001:db8::2:1"],
    ["2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"],
    ["0:0:0:0:0:0:0:0", "::"],
    ["::ffff:c000:0201", "::ffff:192.0.2.1"],
    ["2001:0db8::0001", "2001:db8::1"],
    ["127.0.0.1", "127.0.0.1"],
  ])("writes %s as %s (RFC 5952)", (text, canonical) => {
    const ip = parseIp(text);
    expect(ip).toBeDefined();
    expect(formatIp(ip!)).toBe(canonical);
  });

  it("tells the IPv6 wildcard from other addresses", () => {
    expect(isIpv6Wildcard(parseIp("::")!)).toBe(true);
    expect(isIpv6Wildcard(parseIp("::1")!)).toBe(false);
    expect(isIpv6Wildcard(parseIp("0.0.0.0")!)).toBe(false);
  });
});
