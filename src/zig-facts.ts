/**
 * Facts about Zig that every stage shares and that depend on nothing of gen-reuseport: the
 * releases it supports (the spec schema, the model, the toolchain finder and the provisioner
 * read the one list) and the language's keywords (the spec validator refuses them as names, the
 * model maps package names around them). A leaf module: it imports nothing of the project.
 */

/** Releases a spec may name as its minimum (`"zig"`), oldest first. */
export const SUPPORTED_ZIG = ["0.14.1", "0.15.2", "0.16.0", "0.17.0", "0.17.1"] as const;

export type SupportedZig = (typeof SUPPORTED_ZIG)[number];

/** The minimum a spec targets when it names none: the oldest supported release. */
export const DEFAULT_MINIMUM_ZIG: SupportedZig = SUPPORTED_ZIG[0];

/** The release `ensureZig` provisions when asked for none: the newest. */
export const DEFAULT_PROVISIONED_ZIG: SupportedZig = "0.17.1";

/**
 * What `npm run zig:install` provisions without arguments, and what the end-to-end suite (and so
 * CI) runs on: every release in `SUPPORTED_ZIG`, so that each one is backed by a run.
 */
export const PROVISIONED_BY_DEFAULT = SUPPORTED_ZIG;

/** The supported releases as messages name them (0.15.1 is accepted too, not advertised). */
export const SUPPORTED_ZIG_MESSAGE = "0.14.1, 0.15.2, 0.16.x, 0.17.x";

/** A parsed release version `major.minor.patch`; pre-releases and dev builds do not parse. */
export interface ZigVersion {
  readonly major: number;
  readonly minor: number;
  readonly patch: number;
}

export function parseZigVersion(text: string): ZigVersion | undefined {
  const match = /^(\d+)\.(\d+)\.(\d+)$/.exec(text.trim());
  if (match === null) return undefined;
  return { major: Number(match[1]), minor: Number(match[2]), patch: Number(match[3]) };
}

/**
 * Whether a Zig found on the machine can build generated projects: exactly 0.14.1, 0.15.1,
 * 0.15.2, or any 0.16.x / 0.17.x release. Dev builds are not supported.
 */
export function isSupportedZig(text: string): boolean {
  const v = parseZigVersion(text);
  if (v === undefined || v.major !== 0) return false;
  if (v.minor === 14) return v.patch === 1;
  if (v.minor === 15) return v.patch === 1 || v.patch === 2;
  return v.minor === 16 || v.minor === 17;
}

/** Orders two parsed versions: negative when `a` is older than `b`. */
export function compareZigVersions(a: ZigVersion, b: ZigVersion): number {
  return a.major - b.major || a.minor - b.minor || a.patch - b.patch;
}

/**
 * Keywords of every supported release (`std.zig.Token.keywords`): 0.15 to 0.17 dropped
 * `async`, `await` and `usingnamespace`, which 0.14 still reserves.
 */
export const ZIG_KEYWORDS: ReadonlySet<string> = new Set([
  "addrspace", "align", "allowzero", "and", "anyframe", "anytype", "asm", "async", "await",
  "break", "callconv", "catch", "comptime", "const", "continue", "defer", "else", "enum",
  "errdefer", "error", "export", "extern", "fn", "for", "if", "inline", "linksection",
  "noalias", "noinline", "nosuspend", "opaque", "or", "orelse", "packed", "pub", "resume",
  "return", "struct", "suspend", "switch", "test", "threadlocal", "try", "union",
  "unreachable", "usingnamespace", "var", "volatile", "while",
]);
