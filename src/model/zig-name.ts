/**
 * The Zig package name (`.name = .xxx` in `build.zig.zon`) for a service name. The spec allows
 * `^[a-z][a-z0-9-]{0,62}$`; every supported Zig release (0.14.1 to 0.17.1, checked with
 * `zig build --fetch`) wants a bare identifier there: at most 32 bytes, not a keyword (`.const`
 * is a syntax error) and not `@"..."` ("name must be a valid bare zig identifier"). So the name
 * is mapped, deterministically, never refused:
 *
 * 1. hyphens become underscores (`edge-echo` → `edge_echo`);
 * 2. a keyword gets a trailing underscore (`const` → `const_`);
 * 3. a name longer than 32 bytes keeps its first 23 bytes, then `_` and 8 hex digits of the
 *    sha256 of the service name (`..._1a2b3c4d`), so that long names that share a prefix differ.
 */
import { createHash } from "node:crypto";
import { ZIG_KEYWORDS } from "../zig-facts.js";

/** `max_name_len` of Zig's package manifest (the same in every supported release). */
export const ZIG_PACKAGE_NAME_MAX_BYTES = 32;

const HASH_HEX_DIGITS = 8;

/** A bare identifier that `build.zig.zon` accepts as a package name in every release. */
export function isZigPackageName(name: string): boolean {
  return (
    /^[A-Za-z_][A-Za-z0-9_]*$/.test(name) &&
    name.length <= ZIG_PACKAGE_NAME_MAX_BYTES &&
    !ZIG_KEYWORDS.has(name)
  );
}

/** The package name for a valid service name (see the file comment for the rules). */
export function zigPackageName(serviceName: string): string {
  const underscored = serviceName.replaceAll("-", "_");
  if (underscored.length > ZIG_PACKAGE_NAME_MAX_BYTES) {
    const hash = createHash("sha256").update(serviceName, "utf8").digest("hex");
    const keep = ZIG_PACKAGE_NAME_MAX_BYTES - HASH_HEX_DIGITS - 1;
    return `${underscored.slice(0, keep)}_${hash.slice(0, HASH_HEX_DIGITS)}`;
  }
  return ZIG_KEYWORDS.has(underscored) ? `${underscored}_` : underscored;
}
