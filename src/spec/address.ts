/**
 * IP address literals as the spec accepts them: strict parsing to network-order bytes and the
 * canonical text (RFC 5952 for IPv6). No zone ids, no brackets, no leading zeros in IPv4.
 */

export interface IpAddress {
  readonly family: 4 | 6;
  /** 4 or 16 bytes in network order. */
  readonly bytes: readonly number[];
}

const IPV4_OCTET = /^(0|[1-9][0-9]{0,2})$/;
const IPV6_GROUP = /^[0-9A-Fa-f]{1,4}$/;

/** Parses a dotted quad `a.b.c.d` (each 0..255, no leading zeros). */
export function parseIpv4(text: string): number[] | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  const bytes: number[] = [];
  for (const part of parts) {
    if (!IPV4_OCTET.test(part)) return undefined;
    const value = Number(part);
    if (value > 255) return undefined;
    bytes.push(value);
  }
  return bytes;
}

/** Parses an IPv6 literal with optional `::` compression and an optional dotted IPv4 tail. */
export function parseIpv6(text: string): number[] | undefined {
  if (!/^[0-9A-Fa-f:.]+$/.test(text)) return undefined;
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  const head = parseGroups(halves[0] ?? "", halves.length === 1);
  const tail = halves.length === 2 ? parseGroups(halves[1] ?? "", true) : [];
  if (head === undefined || tail === undefined) return undefined;
  const groupCount = head.length + tail.length;
  if (halves.length === 1 && groupCount !== 8) return undefined;
  // `::` stands for at least one zero group.
  if (halves.length === 2 && groupCount > 7) return undefined;
  const groups = [...head, ...new Array<number>(8 - groupCount).fill(0), ...tail];
  return groups.flatMap((g) => [g >> 8, g & 0xff]);
}

/** Groups of one side of `::`; only the last group of the address may be a dotted IPv4 tail. */
function parseGroups(text: string, mayEndWithIpv4: boolean): number[] | undefined {
  if (text === "") return [];
  const parts = text.split(":");
  const groups: number[] = [];
  for (const [i, part] of parts.entries()) {
    const isLast = i === parts.length - 1;
    if (isLast && mayEndWithIpv4 && part.includes(".")) {
      const v4 = parseIpv4(part);
      if (v4 === undefined) return undefined;
      groups.push(((v4[0] ?? 0) << 8) | (v4[1] ?? 0), ((v4[2] ?? 0) << 8) | (v4[3] ?? 0));
    } else {
      if (!IPV6_GROUP.test(part)) return undefined;
      groups.push(parseInt(part, 16));
    }
  }
  return groups;
}

export function parseIp(text: string): IpAddress | undefined {
  const v4 = parseIpv4(text);
  if (v4 !== undefined) return { family: 4, bytes: v4 };
  const v6 = parseIpv6(text);
  if (v6 !== undefined) return { family: 6, bytes: v6 };
  return undefined;
}

/** Canonical text: dotted quad, or RFC 5952 (lowercase, longest zero run as `::`). */
export function formatIp(address: IpAddress): string {
  if (address.family === 4) return address.bytes.join(".");
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2)
    groups.push(((address.bytes[i] ?? 0) << 8) | (address.bytes[i + 1] ?? 0));
  if (isIpv4Mapped(groups)) {
    return `::ffff:${address.bytes.slice(12).join(".")}`;
  }
  const run = longestZeroRun(groups);
  const hex = groups.map((g) => g.toString(16));
  if (run.length < 2) return hex.join(":");
  const head = hex.slice(0, run.start).join(":");
  const tail = hex.slice(run.start + run.length).join(":");
  return `${head}::${tail}`;
}

/** `::ffff:a.b.c.d`: RFC 5952 section 5 keeps the dotted form for IPv4-mapped addresses. */
function isIpv4Mapped(groups: readonly number[]): boolean {
  return groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff;
}

function longestZeroRun(groups: readonly number[]): { start: number; length: number } {
  let best = { start: 0, length: 0 };
  let start = -1;
  for (let i = 0; i <= groups.length; i += 1) {
    if (i < groups.length && groups[i] === 0) {
      if (start < 0) start = i;
      continue;
    }
    if (start >= 0 && i - start > best.length) best = { start, length: i - start };
    start = -1;
  }
  return best;
}

/** True for `::` (the IPv6 wildcard). */
export function isIpv6Wildcard(address: IpAddress): boolean {
  return address.family === 6 && address.bytes.every((b) => b === 0);
}
