/**
 * Programs the end-to-end tests drive (curl, redis-cli, systemd's tools): installed with apt-get when
 * missing and the run may (as root, on Debian or Ubuntu); a program that stays missing fails
 * the test run, under CI=true as anywhere, rather than skipping it.
 */
import { spawnSync } from "node:child_process";

const APT_TIMEOUT_MS = 300_000;

/** Where `command` is on the PATH; undefined when it is not. */
function where(command: string): string | undefined {
  const found = spawnSync("sh", ["-c", `command -v ${command}`], { encoding: "utf8" });
  return found.status === 0 ? found.stdout.trim() : undefined;
}

/**
 * Makes sure `command` runs, installing Debian's `debianPackage` for it when needed; returns
 * its path. Test files run in parallel processes, so apt-get waits for another one's dpkg lock
 * rather than failing on it.
 */
export function ensureCommand(command: string, debianPackage: string): string {
  const found = where(command);
  if (found !== undefined) return found;
  if (process.getuid?.() === 0) {
    const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
    const options = { stdio: "ignore", env, timeout: APT_TIMEOUT_MS } as const;
    const wait = ["-o", `DPkg::Lock::Timeout=${APT_TIMEOUT_MS / 1000}`];
    spawnSync("apt-get", [...wait, "update", "-q"], options);
    spawnSync("apt-get", [...wait, "install", "-y", "-q", debianPackage], options);
  }
  const installed = where(command);
  if (installed === undefined) {
    throw new Error(
      `${command} is missing and could not be installed (Debian: apt-get install ${debianPackage})`,
    );
  }
  return installed;
}
