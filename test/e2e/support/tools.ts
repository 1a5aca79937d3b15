/**
 * Programs the end-to-end tests drive (curl, redis-cli, systemd's tools): installed with apt-get when
 * missing and the run may (as root, on Debian or Ubuntu); a program that stays missing fails
 * the test run, under CI=true as anywhere, rather than skipping it.
 */
import { spawnSync } from "node:child_process";

const APT_TIMEOUT_MS = 300_000;

/** The first of the PATH's python3 and Debian's that can import `module`; undefined: none. */
function pythonWith(module: string): string | undefined {
  return ["python3", "/usr/bin/python3"].find(
    (python) => spawnSync(python, ["-c", `import ${module}`], { stdio: "ignore" }).status === 0,
  );
}

/** Installs Debian's `debianPackage` when the run may (as root); quiet, bounded in time. */
function aptInstall(debianPackage: string): void {
  if (process.getuid?.() !== 0) return;
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  const options = { stdio: "ignore", env, timeout: APT_TIMEOUT_MS } as const;
  const wait = ["-o", `DPkg::Lock::Timeout=${APT_TIMEOUT_MS / 1000}`];
  spawnSync("apt-get", [...wait, "update", "-q"], options);
  spawnSync("apt-get", [...wait, "install", "-y", "-q", debianPackage], options);
}

/**
 * A python3 that imports `module` (redis-py: `redis`), installing Debian's `debianPackage` for
 * it when needed (Debian's python3 then, when the PATH's is another one); a module that stays
 * missing fails the run, as a missing command does.
 */
export function ensurePythonModule(module: string, debianPackage: string): string {
  const found = pythonWith(module);
  if (found !== undefined) return found;
  aptInstall(debianPackage);
  const installed = pythonWith(module);
  if (installed === undefined) {
    throw new Error(
      `python3 cannot import ${module} and it could not be installed (Debian: apt-get install ` +
        `${debianPackage})`,
    );
  }
  return installed;
}

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
  aptInstall(debianPackage);
  const installed = where(command);
  if (installed === undefined) {
    throw new Error(
      `${command} is missing and could not be installed (Debian: apt-get install ${debianPackage})`,
    );
  }
  return installed;
}
