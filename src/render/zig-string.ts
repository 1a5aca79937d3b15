/**
 * The one way a string from the spec reaches Zig source: a double-quoted Zig string literal in
 * which everything but printable ASCII is escaped (`\xNN` per UTF-8 byte).
 */

const NAMED_ESCAPES: Readonly<Record<number, string>> = {
  0x09: "\\t",
  0x0a: "\\n",
  0x0d: "\\r",
  0x22: '\\"',
  0x5c: "\\\\",
};

export function zigString(value: string): string {
  let literal = '"';
  for (const byte of Buffer.from(value, "utf8")) {
    const named = NAMED_ESCAPES[byte];
    if (named !== undefined) literal += named;
    else if (byte >= 0x20 && byte <= 0x7e) literal += String.fromCharCode(byte);
    else literal += `\\x${byte.toString(16).padStart(2, "0")}`;
  }
  return `${literal}"`;
}
