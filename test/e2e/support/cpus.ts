/**
 * CPU locality helpers (`cpuAffinity`): which CPUs a process may run on, and whoami answers of
 * connections made from a shell pinned to one CPU (on loopback the kernel takes a connection's
 * SYN on the client's CPU, which is the CPU the steering program reads).
 */
import { readFileSync } from "node:fs";
import { execa } from "execa";
import { parseWhoami } from "./net.js";

/** A process's allowed CPUs, from the `Cpus_allowed_list` of /proc/PID/status ("0-1,4"). */
export function allowedCpus(pid: number | "self"): number[] {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const list = /^Cpus_allowed_list:\s*(\S+)$/m.exec(status)?.[1] ?? "";
  return list.split(",").flatMap((range) => {
    const [first, last = first] = range.split("-").map(Number);
    return Array.from({ length: last! - first! + 1 }, (_, i) => first! + i);
  });
}

/** The whoami answers of `count` connections made one after another by a shell pinned to `cpu`. */
export async function whoamiFromCpu(cpu: number, port: number, count: number) {
  const script =
    `for i in $(seq ${count}); do exec 3<>/dev/tcp/127.0.0.1/${port} || exit 1; ` +
    "cat <&3; exec 3<&-; done";
  const pinned = ["-c", `${cpu}`, "timeout", "20", "bash", "-c", script];
  const { stdout } = await execa("taskset", pinned);
  return stdout
    .trim()
    .split("\n")
    .map((line) => parseWhoami(`${line}\n`));
}

