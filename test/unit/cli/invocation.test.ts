import { describe, expect, it } from "vitest";
import { invocationOf } from "../../../src/cli/invocation.js";

describe("invocationOf: how hints name gen-reuseport", () => {
  it("says npx gen-reuseport under npx", () => {
    const env = { npm_command: "exec", PATH: "/usr/bin" };
    expect(invocationOf({ script: "/x/node_modules/.bin/gen-reuseport", env, cwd: "/w" })).toBe(
      "npx gen-reuseport",
    );
  });

  it("says gen-reuseport when it was found on PATH", () => {
    const env = { PATH: "/usr/local/bin:/usr/bin" };
    expect(invocationOf({ script: "/usr/local/bin/gen-reuseport", env, cwd: "/w" })).toBe(
      "gen-reuseport",
    );
  });

  it("says npx gen-reuseport for a project's node_modules/.bin that is not on PATH", () => {
    const script = "/w/node_modules/.bin/gen-reuseport";
    expect(invocationOf({ script, env: { PATH: "/usr/bin" }, cwd: "/w" })).toBe(
      "npx gen-reuseport",
    );
  });

  it("says npx gen-reuseport inside an npm script, where node_modules/.bin is on PATH", () => {
    const script = "/w/node_modules/.bin/gen-reuseport";
    const env = { PATH: "/w/node_modules/.bin:/usr/bin", npm_lifecycle_event: "gen" };
    expect(invocationOf({ script, env, cwd: "/w" })).toBe("npx gen-reuseport");
  });

  it("says node and the script's path when run as node bin/gen-reuseport.js", () => {
    const script = "/src/gen-reuseport/bin/gen-reuseport.js";
    expect(invocationOf({ script, env: {}, cwd: "/src/gen-reuseport" })).toBe(
      "node bin/gen-reuseport.js",
    );
    expect(invocationOf({ script, env: {}, cwd: "/elsewhere" })).toBe(`node ${script}`);
  });
});
