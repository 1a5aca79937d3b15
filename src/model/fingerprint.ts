/**
 * The `fingerprint` of `build.zig.zon`: `(crc32(name) << 32) | id`, with `id` taken from a hash
 * of the name instead of a random number so that generation stays deterministic. Zig rejects an
 * id of 0 or 0xffffffff, so those two are moved to the nearest allowed value.
 */
import { createHash } from "node:crypto";
import { crc32 } from "node:zlib";

export function zigFingerprint(zigName: string): string {
  const digest = createHash("sha256").update(zigName, "utf8").digest();
  return composeFingerprint(crc32(zigName), digest.readUInt32BE(0));
}

/** `checksum` and `id` are u32; the result is "0x" + 16 lowercase hex digits. */
export function composeFingerprint(checksum: number, id: number): string {
  const safeId = id === 0 ? 1 : id === 0xffffffff ? 0xfffffffe : id;
  const value = (BigInt(checksum >>> 0) << 32n) | BigInt(safeId >>> 0);
  return `0x${value.toString(16).padStart(16, "0")}`;
}
