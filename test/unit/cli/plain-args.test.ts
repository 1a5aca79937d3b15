/**
 * The yargs-free reading of plain generate command lines must never disagree with yargs: for
 * every command line it recognises, yargs gives the same command; everything else is yargs'.
 */
import { describe, expect, it } from "vitest";
import { parseArgs } from "../../../src/cli/args.js";
import { parsePlainGenerate } from "../../../src/cli/plain-args.js";

const WORDS = [
  "http.json",
  "x.json",
  "--dry-run",
  "--check",
  "--force",
  "--build",
  "--test",
  "--json",
  "--out",
  "out",
  "--zig",
  "init",
  "-x",
  "--out=o",
  "--no-force",
  "--help",
  "",
  "12",
];

/** Every command line of up to `n` words from WORDS (18 + 18² + 18³ of them). */
function* commandLines(n: number, prefix: string[] = []): Generator<string[]> {
  if (prefix.length > 0) yield prefix;
  if (prefix.length === n) return;
  for (const word of WORDS) yield* commandLines(n, [...prefix, word]);
}

async function yargsReading(args: readonly string[]): Promise<unknown> {
  try {
    return await parseArgs(args, "0.0.0");
  } catch (error) {
    return { error: (error as Error).message };
  }
}

describe("parsePlainGenerate", () => {
  it("reads the common line the way yargs does", () => {
    expect(parsePlainGenerate(["spec.json", "--out", "svc", "--build", "--json"])).toEqual({
      kind: "generate",
      spec: "spec.json",
      out: "svc",
      dryRun: false,
      check: false,
      force: false,
      build: true,
      test: false,
      zig: undefined,
      json: true,
    });
  });

  it("leaves errors, commands, help and unusual spellings to yargs", () => {
    for (const args of [
      [],
      ["init"],
      ["a.json", "--help"],
      ["a.json", "--out=x"],
      ["a.json", "--check", "--dry-run"],
      ["a.json", "--zig", "z"],
      ["a.json", "b.json"],
      ["a.json", "--out"],
      ["a.json", "--json", "--json"],
    ]) {
      expect(parsePlainGenerate(args), JSON.stringify(args)).toBeUndefined();
    }
  });

  it("agrees with yargs on every command line of up to three words it recognises", async () => {
    let recognised = 0;
    for (const args of commandLines(3)) {
      const plain = parsePlainGenerate(args);
      if (plain === undefined) continue;
      recognised += 1;
      expect(plain, JSON.stringify(args)).toEqual(await yargsReading(args));
    }
    expect(recognised).toBeGreaterThan(100);
  });
});
