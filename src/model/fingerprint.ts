/**
 * The `fingerprint` of `build.zig.zon`: `(crc32(name) << 32) | id`, with `id` taken from a hash
 * of the name instead of a random number so that generation stays deterministic. Zig rejects an
 * id of 0 or 0xffffffff, so those two are moved to the nearest allowed value.
 */
import { createHash } from "node:crypto";
import { crc32 } from "node:zlib";

export function zigFingerprint(zigName: string): string {
  const checksum = BigInt(crc32(zigName) >>> 0);
  const digest = createHash("sha256").update(zigName, "utf8").digest();
  let id = digest.readUInt32BE(0);
  if (id === 0) id = 1;
  if (id === 0xffffffff) id = 0xfffffffe;
  const value = (checksum << 32n) | BigInt(id);
  return `0x${value.toString(16).padStart(16, "0")}`;
}
