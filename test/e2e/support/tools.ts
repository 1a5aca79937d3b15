/**
 * Programs the end-to-end tests drive (curl, redis-cli, systemd's tools): installed with apt-get when
 * missing and the run may (as root, on Debian or Ubuntu); a program that stays missing fails
 * the test run, under CI=true as anywhere, rather than skipping it.
 */
import { spawnSync } from "node:child_process";
import { renameSync, rmSync } from "node:fs";
import path from "node:path";

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

const PIP_TIMEOUT_MS = 300_000;

/**
 * A Python tool from PyPI (`kubernetes-validate`), pinned, installed with `pip install --target`
 * into the checkout's toolchain folder (next to Zig, kept between runs): returns the python to
 * run it with and the environment that finds it. A tool that cannot be installed fails the run.
 */
export function ensurePipTool(
  pypiPackage: string,
  version: string,
  module: string,
  toolchainDir: string,
): { python: string; env: NodeJS.ProcessEnv } {
  const target = path.join(toolchainDir, "pypi", `${pypiPackage}-${version}`);
  const env = { ...process.env, PYTHONPATH: target, PYTHONDONTWRITEBYTECODE: "1" };
  const imports = (python: string) =>
    spawnSync(python, ["-c", `import ${module}`], { stdio: "ignore", env }).status === 0;
  const python = ["python3", "/usr/bin/python3"].find((p) => where(p) !== undefined) ?? "python3";
  if (imports(python)) return { python, env };
  if (spawnSync(python, ["-m", "pip", "--version"], { stdio: "ignore" }).status !== 0) {
    aptInstall("python3-pip");
  }
  const partial = `${target}.partial-${process.pid}`;
  rmSync(partial, { recursive: true, force: true });
  const args = ["-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-input"];
  const pip = spawnSync(python, [...args, "--target", partial, `${pypiPackage}==${version}`], {
    encoding: "utf8",
    timeout: PIP_TIMEOUT_MS,
    env: { ...process.env, PIP_BREAK_SYSTEM_PACKAGES: "1" },
  });
  if (pip.status === 0) {
    rmSync(target, { recursive: true, force: true });
    renameSync(partial, target);
  }
  rmSync(partial, { recursive: true, force: true });
  if (!imports(python)) {
    throw new Error(
      `${pypiPackage} ${version} could not be installed from PyPI into ${target} ` +
        `(python3 -m pip install --target ${target} ${pypiPackage}==${version}):\n` +
        `${pip.stderr ?? ""}${pip.error?.message ?? ""}`,
    );
  }
  return { python, env };
}
