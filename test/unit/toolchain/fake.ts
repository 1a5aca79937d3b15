import { chmodSync, mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";

/** A shell script that answers `zig version` like the real one. */
export function writeFakeZig(file: string, version: string): string {
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, `#!/bin/sh\n[ "$1" = version ] && echo ${version}\nexit 0\n`);
  chmodSync(file, 0o755);
  return file;
}
