/**
 * schemas/spec.schema.json must be what the zod schema exports today.
 * Refresh with: npm run gen:schema
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { JSON_SCHEMA_PATH, specJsonSchemaText } from "../src/spec/json-schema.js";

const root = path.join(import.meta.dirname, "..");

describe("JSON Schema export", () => {
  it("schemas/spec.schema.json is current (refresh with: npm run gen:schema)", () => {
    const committed = readFileSync(path.join(root, JSON_SCHEMA_PATH), "utf8");
    expect(committed, "schemas/spec.schema.json is stale: run npm run gen:schema").toBe(
      specJsonSchemaText(),
    );
  });

  it("rejects unknown keys at every level, as the validator does", () => {
    const schema = JSON.parse(specJsonSchemaText());
    const listener = schema.properties.listeners.items;
    expect(schema.additionalProperties).toBe(false);
    expect(listener.additionalProperties).toBe(false);
    expect(listener.properties.http.additionalProperties).toBe(false);
    expect(listener.properties.keepalive.anyOf[1].additionalProperties).toBe(false);
  });

  it("documents the defaults and the required core fields", () => {
    const schema = JSON.parse(specJsonSchemaText());
    expect(schema.required).toEqual(["name", "listeners"]);
    expect(schema.properties.listeners.items.required).toEqual([
      "name",
      "protocol",
      "address",
      "port",
      "handler",
    ]);
    expect(schema.properties.workers.default).toBe("auto");
    expect(schema.properties.listeners.items.properties.backlog.default).toBe(511);
  });
});
