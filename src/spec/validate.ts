/**
 * Validation: raw JSON → a `Spec` with defaults applied, or every problem at once as
 * `Diagnostic`s in the user's terms (zod's own wording never reaches the user).
 */
import type { z } from "zod";
import { MAX_LISTED_PROBLEMS, type Diagnostic } from "../errors.js";
import { closest } from "../did-you-mean.js";
import { checkRules } from "./rules.js";
import { ALLOWED_KEYS, SpecSchema, type Spec } from "./schema.js";

export type ValidationResult =
  | { readonly ok: true; readonly spec: Spec }
  | { readonly ok: false; readonly diagnostics: readonly Diagnostic[] };

type Path = readonly (string | number)[];

export function validateSpec(raw: unknown): ValidationResult {
  const parsed = SpecSchema.safeParse(raw);
  const shape = parsed.success ? [] : parsed.error.issues.flatMap((i) => translate(i, raw));
  const diagnostics = sortByListener([...shape, ...checkRules(raw)]);
  if (diagnostics.length > 0 || !parsed.success) return { ok: false, diagnostics };
  return { ok: true, spec: parsed.data };
}

function translate(issue: z.core.$ZodIssue, raw: unknown): Diagnostic[] {
  const path = issue.path.filter((p): p is string | number => typeof p !== "symbol");
  if (issue.code === "unrecognized_keys") {
    // Only the first few of an object's unknown keys can be listed (`MAX_LISTED_PROBLEMS`);
    // the rest are counted, so they skip the search for a suggestion.
    return issue.keys.map((key, i) => unknownKey([...path, key], raw, i < MAX_LISTED_PROBLEMS));
  }
  const present = has(raw, path);
  const message = isOwnMessage(issue.message) ? issue.message : fallbackMessage(issue);
  if (!present) return [{ path, message: `missing required key; ${message}` }];
  return [{ path, message, got: valueAt(raw, path) }];
}

function unknownKey(path: Path, raw: unknown, withHint: boolean): Diagnostic {
  if (!withHint) return { path, message: "unknown key", got: valueAt(raw, path) };
  const key = String(path[path.length - 1]);
  const allowed = allowedKeysAt(path.slice(0, -1));
  const suggestion = closest(key, allowed);
  const hint =
    suggestion !== undefined
      ? `did you mean ${JSON.stringify(suggestion)}?`
      : allowedKeysHint(allowed);
  return { path, message: "unknown key", got: valueAt(raw, path), hint };
}

/** Characters of allowed keys a hint lists before it says how many more there are. */
const ALLOWED_KEYS_HINT_CHARS = 200;

/**
 * "allowed keys: a, b, c": the top level has grown past what one line of a message should
 * hold, so a long list is cut, saying how many are left out and where all of them are.
 */
function allowedKeysHint(allowed: readonly string[]): string {
  const shown: string[] = [];
  let length = 0;
  for (const key of allowed) {
    if (shown.length > 0 && length + key.length + 2 > ALLOWED_KEYS_HINT_CHARS) break;
    shown.push(key);
    length += key.length + 2;
  }
  const rest = allowed.length - shown.length;
  const more = rest === 0 ? "" : ` and ${rest} more (gen-reuseport schema lists them all)`;
  return `allowed keys: ${shown.join(", ")}${more}`;
}

function allowedKeysAt(path: Path): readonly string[] {
  const last = path[path.length - 1];
  if (path.length === 0) return ALLOWED_KEYS.spec;
  if (path.length === 1 && last === "admin") return ALLOWED_KEYS.admin;
  if (last === "keepalive") return ALLOWED_KEYS.keepalive;
  if (last === "accessLog" && path.length === 1) return ALLOWED_KEYS.accessLog;
  if (last === "http") {
    return path[path.length - 2] === "app" ? ALLOWED_KEYS.appHttp : ALLOWED_KEYS.http;
  }
  if (last === "app") return ALLOWED_KEYS.app;
  if (last === "proxy") return ALLOWED_KEYS.proxy;
  if (last === "stream") return ALLOWED_KEYS.stream;
  if (last === "line") return ALLOWED_KEYS.line;
  if (last === "length") return ALLOWED_KEYS.length;
  if (last === "datagram") return [];
  if (last === "deploy") return ALLOWED_KEYS.deploy;
  if (last === "kubernetes") return ALLOWED_KEYS.kubernetes;
  if (path[path.length - 2] === "routes") return ALLOWED_KEYS.route;
  if (path[path.length - 2] === "upstreams") return ALLOWED_KEYS.upstream;
  return ALLOWED_KEYS.listener;
}

/** Every schema in `schema.ts` states its own message; zod's defaults start like these. */
function isOwnMessage(message: string): boolean {
  return !/^(Invalid|Too (small|big)|Unrecognized|Expected)\b/.test(message);
}

/** Only reached if a schema lacks its own message; still no zod wording. */
function fallbackMessage(issue: z.core.$ZodIssue): string {
  switch (issue.code) {
    case "invalid_type":
      return `must be ${article(String(issue.expected))}`;
    case "too_small":
      return `must be at least ${String(issue.minimum)}`;
    case "too_big":
      return `must be at most ${String(issue.maximum)}`;
    case "invalid_value":
      return `must be one of ${issue.values.map((v) => JSON.stringify(v)).join(", ")}`;
    default:
      return "is not allowed here";
  }
}

function article(noun: string): string {
  return /^[aeiou]/.test(noun) ? `an ${noun}` : `a ${noun}`;
}

/** Keeps the order of each stage but groups problems of one listener together. */
function sortByListener(diagnostics: Diagnostic[]): Diagnostic[] {
  const rank = (d: Diagnostic) =>
    d.path[0] === "listeners" && typeof d.path[1] === "number" ? d.path[1] : -1;
  return diagnostics
    .map((d, order) => ({ d, order }))
    .sort((a, b) => rank(a.d) - rank(b.d) || a.order - b.order)
    .map(({ d }) => d);
}

function has(raw: unknown, path: Path): boolean {
  let value: unknown = raw;
  for (const segment of path) {
    if (typeof value !== "object" || value === null || !Object.hasOwn(value, segment)) {
      return false;
    }
    value = (value as Record<string | number, unknown>)[segment];
  }
  return true;
}

function valueAt(raw: unknown, path: Path): unknown {
  let value: unknown = raw;
  for (const segment of path) {
    value = (value as Record<string | number, unknown>)[segment];
  }
  return value;
}
