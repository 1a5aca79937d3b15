/**
 * `npm run zig:install -- [VERSION...]`: provisions Zig releases into `.toolchain/` (all of
 * the default set when none is named). Sets the exit code; does not call process.exit.
 */
import { asExitError } from "../errors.js";
import { PACKAGE_ROOT } from "../package.js";
import { ensureZig } from "./provision.js";
import { PROVISIONED_BY_DEFAULT } from "./versions.js";

async function main(versions: readonly string[]): Promise<number> {
  const wanted = versions.length > 0 ? versions : PROVISIONED_BY_DEFAULT;
  for (const version of wanted) {
    try {
      const zig = await ensureZig(version, {
        root: PACKAGE_ROOT,
        log: (line) => process.stderr.write(`${line}\n`),
      });
      process.stdout.write(`zig ${version}: ${zig}\n`);
    } catch (error) {
      const exit = asExitError(error);
      for (const line of exit.lines()) process.stderr.write(`${line}\n`);
      return exit.exitCode;
    }
  }
  return 0;
}

process.exitCode = await main(process.argv.slice(2));
