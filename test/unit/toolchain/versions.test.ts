import { describe, expect, it } from "vitest";
import {
  DEFAULT_MINIMUM_ZIG,
  isSupportedZig,
  SUPPORTED_ZIG,
} from "../../../src/zig-facts.js";

describe("isSupportedZig", () => {
  it.each(["0.14.1", "0.15.1", "0.15.2", "0.16.0", "0.16.3", "0.17.0", "0.17.1", " 0.17.1\n"])(
    "accepts %j",
    (v) => expect(isSupportedZig(v)).toBe(true),
  );

  it.each([
    "0.12.0",
    "0.13.0",
    "0.14.0",
    "0.15.0",
    "0.15.3",
    "0.18.0",
    "1.0.0",
    "0.16.0-dev.1+abc",
    "zig",
    "",
  ])("rejects %j", (v) => expect(isSupportedZig(v)).toBe(false));

  it("supports every release a spec may name, and defaults the minimum to the oldest", () => {
    for (const v of SUPPORTED_ZIG) expect(isSupportedZig(v)).toBe(true);
    expect(DEFAULT_MINIMUM_ZIG).toBe("0.14.1");
  });
});
