/**
 * `gen-reuseport schema`: the JSON Schema of the spec on standard output (the same text as
 * `schemas/spec.schema.json` and the file `init` writes).
 */
import { EXIT } from "../../errors.js";
import { specJsonSchemaText } from "../../spec/json-schema.js";
import type { CliContext } from "../types.js";

export async function runSchema(ctx: CliContext): Promise<number> {
  ctx.stdout.write(specJsonSchemaText());
  return EXIT.ok;
}
