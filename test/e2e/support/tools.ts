/**
 * Client programs the end-to-end tests drive (curl, redis-cli): installed with apt-get when
 * missing and the run may (as root, on Debian or Ubuntu); a program that stays missing fails
 * the test run, under CI=true as anywhere, rather than skipping it.
 */
import { spawnSync } from "node:child_process";

const APT_TIMEOUT_MS = 300_000;

function has(command: string): boolean {
  return spawnSync("sh", ["-c", `command -v ${command}`]).status === 0;
}

/** Makes sure `command` runs, installing Debian's `debianPackage` for it when needed. */
export function ensureCommand(command: string, debianPackage: string): void {
  if (has(command)) return;
  if (process.getuid?.() === 0) {
    const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
    const options = { stdio: "ignore", env, timeout: APT_TIMEOUT_MS } as const;
    spawnSync("apt-get", ["update", "-q"], options);
    spawnSync("apt-get", ["install", "-y", "-q", debianPackage], options);
  }
  if (!has(command)) {
    throw new Error(
      `${command} is missing and could not be installed (Debian: apt-get install ${debianPackage})`,
    );
  }
}
