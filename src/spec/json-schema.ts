/**
 * The JSON Schema of the spec, exported from the zod schema (committed as
 * `schemas/spec.schema.json` for editors; a test keeps it current).
 */
import { z } from "zod";
import { SpecSchema } from "./schema.js";

/** Where the exported schema is committed, relative to the package root. */
export const JSON_SCHEMA_PATH = "schemas/spec.schema.json";

/** The schema as pretty JSON text with a trailing newline. */
export function specJsonSchemaText(): string {
  const schema = z.toJSONSchema(SpecSchema, {
    target: "draft-2020-12",
    io: "input",
    unrepresentable: "throw",
  });
  const document = { $schema: schema.$schema, title: "gen-reuseport service spec", ...schema };
  return `${JSON.stringify(document, null, 2)}\n`;
}
