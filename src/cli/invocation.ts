/**
 * How the user ran gen-reuseport, so that a hint names a command that works where they are:
 * `npx gen-reuseport` under npx, `gen-reuseport` from PATH, `node bin/gen-reuseport.js` in a
 * checkout.
 */
import path from "node:path";

export interface InvocationFacts {
  /** `process.argv[1]`: the script node ran (the bin link's path when started from PATH). */
  readonly script: string | undefined;
  readonly env: NodeJS.ProcessEnv;
  readonly cwd: string;
}

export function invocationOf({ script, env, cwd }: InvocationFacts): string {
  if (env.npm_command === "exec") return "npx gen-reuseport";
  if (script === undefined || script === "") return "gen-reuseport";
  if (path.basename(script) === "gen-reuseport") {
    // A project's own install: on PATH only inside npm scripts, npx finds it from the shell.
    if (script.split(path.sep).slice(-3, -1).join("/") === "node_modules/.bin") {
      return "npx gen-reuseport";
    }
    const dirs = (env.PATH ?? "").split(path.delimiter).filter((d) => d !== "");
    return dirs.some((d) => path.resolve(d) === path.dirname(script))
      ? "gen-reuseport"
      : "npx gen-reuseport";
  }
  const relative = path.relative(cwd, script);
  const shown = relative.startsWith("..") || path.isAbsolute(relative) ? script : relative;
  return `node ${shown.includes(" ") ? JSON.stringify(shown) : shown}`;
}
