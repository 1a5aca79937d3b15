// Writes schemas/spec.schema.json from the zod spec schema. Run after `npm run build`.
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { specJsonSchemaText } from "../dist/index.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
await writeFile(path.join(root, "schemas", "spec.schema.json"), specJsonSchemaText());
console.log("wrote schemas/spec.schema.json");
