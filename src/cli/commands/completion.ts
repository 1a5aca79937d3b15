/**
 * `gen-reuseport completion`: yargs' bash/zsh completion script. The words it completes come
 * from the parser itself (args.ts), which the script calls back with `--get-yargs-completions`.
 */
import { EXIT } from "../../errors.js";
import { completionScript } from "../args.js";
import type { CliContext } from "../types.js";

export async function runCompletion(ctx: CliContext): Promise<number> {
  const text = completionScript();
  ctx.stdout.write(text.endsWith("\n") ? text : `${text}\n`);
  return EXIT.ok;
}
