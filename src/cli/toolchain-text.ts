/**
 * Toolchain problems in words: the only place they are worded. Every "no usable Zig" message
 * names the install command as the user can run it (`invocation`, see invocation.ts).
 */
import type { ToolchainProblem } from "../errors.js";
import { DEFAULT_PROVISIONED_ZIG, SUPPORTED_ZIG_MESSAGE } from "../zig-facts.js";
import { seconds } from "./style.js";

export function installHint(invocation: string): string {
  return `run "${invocation} zig install ${DEFAULT_PROVISIONED_ZIG}" or pass --zig PATH`;
}

export function toolchainText(problem: ToolchainProblem, invocation: string): string {
  const hint = installHint(invocation);
  switch (problem.kind) {
    case "zig-not-found":
      return `zig not found (looked at ${problem.looked.join(", ")}); ${hint}`;
    case "zig-unsupported":
      return (
        `zig ${problem.version} at ${problem.path} is not supported ` +
        `(supported: ${SUPPORTED_ZIG_MESSAGE}); ${hint}`
      );
    case "zig-does-not-run":
      return `zig at ${problem.path} does not run (${problem.reason}); ${hint}`;
    case "zig-too-old":
      return (
        `zig ${problem.version} at ${problem.path} is older than the spec's minimum Zig ` +
        `${problem.minimum}; ${hint}`
      );
    case "release-unsupported":
      return (
        `cannot install zig ${JSON.stringify(problem.version)}: not a supported release ` +
        `(supported: ${SUPPORTED_ZIG_MESSAGE})`
      );
    case "zig-not-installed": {
      const what =
        problem.version === undefined
          ? "no supported Zig is installed"
          : `zig ${problem.version} is not installed`;
      const release = problem.version === undefined ? "" : ` ${problem.version}`;
      const install = `${invocation} zig install${release}`;
      return `${what} (looked in ${problem.searched.join(", ")}); run "${install}"`;
    }
    case "install-failed":
      return (
        `installing zig ${problem.version} with pip failed (${problem.reason})` +
        (problem.output === "" ? "" : `: ${problem.output}`) +
        "; gen-reuseport installs Zig with python3 -m pip: check that pip works and PyPI is " +
        "reachable"
      );
    case "install-locked":
      return (
        `timed out waiting for another install of zig ${problem.version} ` +
        `(lock ${problem.lock})`
      );
    case "install-mismatch":
      return `installed zig reports version ${problem.installed}, expected ${problem.version}`;
    case "step-failed": {
      const { step } = problem;
      const how = step.timedOut
        ? "timed out"
        : step.exitCode !== undefined
          ? `exit code ${step.exitCode}`
          : (step.signal ?? "no exit code");
      return `${step.command} failed in ${step.dir} after ${seconds(step.ms)} (${how})`;
    }
  }
}
