import { describe, expect, it } from "vitest";
import {
  isZigPackageName,
  ZIG_PACKAGE_NAME_MAX_BYTES,
  zigPackageName,
} from "../../../src/model/zig-name.js";
import { ZIG_KEYWORDS } from "../../../src/zig-facts.js";

describe("zigPackageName", () => {
  it("turns hyphens into underscores and keeps short names otherwise", () => {
    expect(zigPackageName("edge-echo")).toBe("edge_echo");
    expect(zigPackageName("a")).toBe("a");
    expect(zigPackageName("x".repeat(32))).toBe("x".repeat(32));
  });

  it("maps a Zig keyword to a bare identifier with a trailing underscore", () => {
    expect(zigPackageName("const")).toBe("const_");
    expect(zigPackageName("fn")).toBe("fn_");
    expect(zigPackageName("usingnamespace")).toBe("usingnamespace_");
    for (const keyword of ZIG_KEYWORDS) expect(isZigPackageName(zigPackageName(keyword))).toBe(true);
  });

  it("shortens a name longer than 32 bytes to 32, with a hash that tells long names apart", () => {
    const forty = "service-with-a-rather-long-name-for-zig1";
    expect(forty).toHaveLength(40);
    const mapped = zigPackageName(forty);
    expect(mapped).toBe("service_with_a_rather_l_9c05810b");
    expect(mapped).toHaveLength(ZIG_PACKAGE_NAME_MAX_BYTES);
    expect(zigPackageName(`${forty.slice(0, -1)}2`)).not.toBe(mapped);
    expect(zigPackageName(forty)).toBe(mapped);
    expect(zigPackageName("y".repeat(33))).toHaveLength(32);
  });

  it("always yields a name build.zig.zon accepts, at the length limits too", () => {
    for (const name of ["a", "a-", "a".repeat(63), "a-".repeat(31) + "a", "while", "x".repeat(33)]) {
      expect(isZigPackageName(zigPackageName(name)), name).toBe(true);
    }
  });
});

describe("isZigPackageName", () => {
  it("refuses what Zig refuses: keywords, more than 32 bytes, non-identifiers", () => {
    expect(isZigPackageName("const")).toBe(false);
    expect(isZigPackageName("x".repeat(33))).toBe(false);
    expect(isZigPackageName("a-b")).toBe(false);
    expect(isZigPackageName('@"a"')).toBe(false);
    expect(isZigPackageName("edge_echo")).toBe(true);
  });
});
