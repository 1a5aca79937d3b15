/**
 * The CLI speaks English whatever the locale: yargs would otherwise translate its part of usage
 * errors and help from LC_ALL / LC_MESSAGES / LANG / LANGUAGE (it reads them from the process
 * environment, so that is what these tests set).
 */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { scratch, type Run } from "./harness.js";

let cli: (...args: string[]) => Promise<Run>;
let cleanup: () => void;
beforeEach(() => {
  ({ cli, cleanup } = scratch());
});
afterEach(() => {
  vi.unstubAllEnvs();
  cleanup();
});

async function under(locale: string, args: readonly string[]): Promise<Run> {
  vi.stubEnv("LC_ALL", "");
  vi.stubEnv("LC_MESSAGES", "");
  vi.stubEnv("LANGUAGE", "");
  vi.stubEnv("LANG", locale);
  return cli(...args);
}

const COMMAND_LINES: readonly (readonly string[])[] = [
  [],
  ["http.json", "--frobnicate"],
  ["http.json", "extra.json"],
  ["http.json", "--out"],
  ["http.json", "--check", "--dry-run"],
  ["zig"],
  ["--help"],
  ["zig", "--help"],
  ["init", "--help"],
];

describe("output under a German or French locale", () => {
  const cases = COMMAND_LINES.map((args) => [args.join(" ") || "(no arguments)", args] as const);
  it.each(cases)("is the English output for `gen-reuseport %s`", async (_, args) => {
    const english = await under("en_US.UTF-8", args);
    expect(await under("de_DE.UTF-8", args)).toEqual(english);
    expect(await under("fr_FR.UTF-8", args)).toEqual(english);
  });

  it("says 'missing the spec file argument' under de_DE, not yargs' German", async () => {
    const run = await under("de_DE.UTF-8", []);
    expect(run.stderr).toBe(
      'gen-reuseport: missing the spec file argument; run "gen-reuseport --help" for usage\n',
    );
  });

  it("prints English help headings under fr_FR", async () => {
    const run = await under("fr_FR.UTF-8", ["--help"]);
    expect(run.stdout).toContain("Commands:");
    expect(run.stdout).toContain("Options:");
    expect(run.stdout).toContain("[boolean]");
    expect(run.stdout).not.toMatch(/Commandes|booléen|Affiche/);
  });
});
