/**
 * The process entry point: the only module that touches `process.argv` and exits the process.
 */
import { invocationOf } from "./invocation.js";
import { runCli } from "./run.js";

const code = await runCli(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  cwd: process.cwd(),
  env: process.env,
  invocation: invocationOf({ script: process.argv[1], env: process.env, cwd: process.cwd() }),
  inheritStdio: true,
});
// Let pending writes to a pipe drain before exiting.
process.stdout.write("", () => process.exit(code));
