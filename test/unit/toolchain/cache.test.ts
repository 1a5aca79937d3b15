import path from "node:path";
import { describe, expect, it } from "vitest";
import {
  CHECKOUT_TOOLCHAIN_DIR,
  checkoutToolchainDir,
  toolchainCacheDir,
  toolchainDirs,
} from "../../../src/toolchain/cache.js";
import { PACKAGE_ROOT } from "../../../src/package.js";

describe("the per-user toolchain cache", () => {
  it("is $GEN_REUSEPORT_CACHE, else $XDG_CACHE_HOME/gen-reuseport, else ~/.cache/gen-reuseport", () => {
    const env = { GEN_REUSEPORT_CACHE: "/c", XDG_CACHE_HOME: "/xdg" };
    expect(toolchainCacheDir(env, "/w", "/home/u")).toBe("/c");
    expect(toolchainCacheDir({ XDG_CACHE_HOME: "/xdg" }, "/w", "/home/u")).toBe(
      "/xdg/gen-reuseport",
    );
    expect(toolchainCacheDir({}, "/w", "/home/u")).toBe("/home/u/.cache/gen-reuseport");
  });

  it("resolves a relative $GEN_REUSEPORT_CACHE and ignores a relative $XDG_CACHE_HOME", () => {
    expect(toolchainCacheDir({ GEN_REUSEPORT_CACHE: ".toolchain" }, "/w", "/h")).toBe(
      "/w/.toolchain",
    );
    expect(toolchainCacheDir({ XDG_CACHE_HOME: "rel" }, "/w", "/h")).toBe(
      "/h/.cache/gen-reuseport",
    );
  });

  it("is not inside the package's own folder", () => {
    expect(toolchainCacheDir({}, "/w", "/home/u").startsWith(PACKAGE_ROOT)).toBe(false);
  });

  it("is searched before a checkout's .toolchain, which stays a fallback", () => {
    expect(toolchainDirs({ GEN_REUSEPORT_CACHE: "/c" })).toEqual(["/c", CHECKOUT_TOOLCHAIN_DIR]);
    expect(CHECKOUT_TOOLCHAIN_DIR).toBe(path.join(PACKAGE_ROOT, ".toolchain"));
  });

  it("lets a checkout's scripts and tests use .toolchain unless GEN_REUSEPORT_CACHE says otherwise", () => {
    expect(checkoutToolchainDir({})).toBe(CHECKOUT_TOOLCHAIN_DIR);
    expect(checkoutToolchainDir({ GEN_REUSEPORT_CACHE: "/c" })).toBe("/c");
  });
});
