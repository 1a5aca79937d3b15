/**
 * The rule of the end-to-end matrix (`support/zig.ts`): which releases run every test and which
 * the smoke subset, and how `$GEN_REUSEPORT_MATRIX` and `$GEN_REUSEPORT_ZIG` change it. Needs no
 * Zig: it checks the rule, and that the lists the test files iterate follow it.
 */
import { describe, expect, it } from "vitest";
import { SUPPORTED_ZIG } from "../../src/zig-facts.js";
import {
  FULL_MATRIX_VERSIONS,
  fullMatrixVersions,
  matrixOf,
  ZIG_VERSIONS,
  zigVersionsUnderTest,
} from "./support/zig.js";

describe("the end-to-end matrix", () => {
  it("runs every test on the oldest and newest supported release by default", () => {
    expect(fullMatrixVersions(zigVersionsUnderTest({}), matrixOf({}))).toEqual([
      "0.14.1",
      "0.17.1",
    ]);
    expect(zigVersionsUnderTest({})).toEqual([...SUPPORTED_ZIG]);
  });

  it("runs every test on every release with GEN_REUSEPORT_MATRIX=full", () => {
    const env = { GEN_REUSEPORT_MATRIX: "full" };
    expect(fullMatrixVersions(zigVersionsUnderTest(env), matrixOf(env))).toEqual([
      ...SUPPORTED_ZIG,
    ]);
  });

  it("takes the ends of a narrowed list, whatever its order, and all of one or two", () => {
    expect(fullMatrixVersions(["0.17.0", "0.15.2", "0.16.0"], "reduced")).toEqual([
      "0.17.0",
      "0.15.2",
    ]);
    expect(fullMatrixVersions(["0.16.0"], "reduced")).toEqual(["0.16.0"]);
    expect(fullMatrixVersions(["0.17.1", "0.15.2"], "reduced")).toEqual(["0.17.1", "0.15.2"]);
  });

  it("orders releases by number, not as text (0.9 before 0.14)", () => {
    expect(fullMatrixVersions(["0.14.1", "0.9.0", "0.10.1"], "reduced")).toEqual([
      "0.14.1",
      "0.9.0",
    ]);
  });

  it("accepts reduced or nothing, and refuses any other value", () => {
    expect(matrixOf({ GEN_REUSEPORT_MATRIX: " reduced " })).toBe("reduced");
    expect(matrixOf({ GEN_REUSEPORT_MATRIX: "" })).toBe("reduced");
    expect(() => matrixOf({ GEN_REUSEPORT_MATRIX: "all" })).toThrow(/expected "full"/);
  });

  it("gives the test files a full list inside the releases under test, never empty", () => {
    expect(FULL_MATRIX_VERSIONS.length).toBeGreaterThan(0);
    for (const version of FULL_MATRIX_VERSIONS) expect(ZIG_VERSIONS).toContain(version);
    expect(FULL_MATRIX_VERSIONS).toEqual(fullMatrixVersions(ZIG_VERSIONS, matrixOf()));
  });
});
