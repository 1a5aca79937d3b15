// What the soak reads from /proc about the service's processes: who is in its process group,
// their descriptors (split into connections and the rest), their RSS, and which client ports a
// worker's connections have. Run inside the soak's network namespace, `ss` sees that
// namespace's sockets.
//
// Everything that may take long is asynchronous: the soak's clients share its event loop, and
// a loop blocked for seconds (reading /proc/net/tcp with tens of thousands of TIME_WAIT rows,
// once per process, did that in a 30-minute run) fires their timeouts late, in a batch, before
// the answers waiting in their sockets are read.
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { readdir, readFile, readlink } from "node:fs/promises";
import { promisify } from "node:util";

const run = promisify(execFile);

/** The fields of /proc/<pid>/stat after the command name, or undefined when it is gone. */
function statFields(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  } catch {
    return undefined;
  }
}

/** Live (non-zombie) members of process group `pgid`: the service's supervisors and workers. */
export async function groupMembers(pgid) {
  const pids = (await readdir("/proc")).filter((e) => /^\d+$/.test(e)).map(Number);
  const stats = await Promise.all(
    pids.map((pid) =>
      readFile(`/proc/${pid}/stat`, "utf8").then(
        (stat) => stat.slice(stat.lastIndexOf(")") + 2).split(" "),
        () => undefined,
      ),
    ),
  );
  return pids
    .filter((_, i) => stats[i] !== undefined && stats[i][0] !== "Z" && Number(stats[i][2]) === pgid)
    .sort((a, b) => a - b);
}

/** Whether `pid` runs (a zombie counts as gone). */
export function alive(pid) {
  const fields = statFields(pid);
  return fields !== undefined && fields[0] !== "Z";
}

export function commandLine(pid) {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ").trim();
  } catch {
    return "(gone)";
  }
}

/** VmRSS in kB, or undefined when the process is gone. */
export function rssKb(pid) {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** The targets of a process's descriptors (`socket:[123]`, `pipe:[45]`, a path, …). */
async function descriptors(pid) {
  const dir = `/proc/${pid}/fd`;
  const fds = await readdir(dir);
  const targets = await Promise.all(fds.map((fd) => readlink(`${dir}/${fd}`).catch(() => null)));
  // null: closed between the listing and the read, not one of its descriptors any more.
  return targets.filter((t) => t !== null);
}

/** Every TCP state a connection a process holds can be in (not LISTEN, not TIME_WAIT). */
const CONNECTED = [
  "established",
  "syn-recv",
  "fin-wait-1",
  "fin-wait-2",
  "close-wait",
  "last-ack",
  "closing",
];

/**
 * The namespace's TCP connections held by a descriptor: inode → { localPort, remotePort }.
 * `ss` filters by state in the kernel, so the thousands of TIME_WAIT sockets of a busy run
 * cost nothing.
 */
export async function tcpConnections() {
  const states = CONNECTED.flatMap((state) => ["state", state]);
  const { stdout } = await run("ss", ["-tnHe", ...states], { maxBuffer: 64 << 20 });
  const rows = new Map();
  for (const line of stdout.split("\n")) {
    const m = /(\S+):(\d+)\s+(\S+):(\d+)\s.*\bino:(\d+)/.exec(line);
    if (m === null || m[5] === "0") continue;
    rows.set(Number(m[5]), { localPort: Number(m[2]), remotePort: Number(m[4]) });
  }
  return rows;
}

function socketInode(target) {
  const m = /^socket:\[(\d+)\]$/.exec(target);
  return m ? Number(m[1]) : undefined;
}

/**
 * A process's descriptors in two parts: its TCP connections (in `connections`, from
 * `tcpConnections()`; they come and go with the load) and everything else (listening and UDP
 * sockets, pipes, epoll, signalfd, files), which must not change while the process serves.
 * `kinds` counts the rest by type, for a report. Undefined when the process is gone.
 */
export async function descriptorShape(pid, connections) {
  let targets;
  try {
    targets = await descriptors(pid);
  } catch {
    return undefined;
  }
  const kinds = {};
  let conns = 0;
  for (const target of targets) {
    const inode = socketInode(target);
    if (inode !== undefined && connections.has(inode)) {
      conns += 1;
      continue;
    }
    const kind = inode !== undefined ? "socket" : target.replace(/[:[].*$/, "");
    kinds[kind] = (kinds[kind] ?? 0) + 1;
  }
  return { total: targets.length, connections: conns, rest: targets.length - conns, kinds };
}

/**
 * The client ports of `pid`'s TCP connections to `servicePorts`: a snapshot taken while the
 * worker is stopped (it accepts nothing meanwhile), so that a client failure can be traced to
 * the worker that held its connection.
 */
export async function clientPortsOf(pid, servicePorts) {
  const connections = await tcpConnections();
  const ports = new Set();
  let targets;
  try {
    targets = await descriptors(pid);
  } catch {
    return ports;
  }
  for (const target of targets) {
    const row = connections.get(socketInode(target));
    if (row !== undefined && servicePorts.has(row.localPort)) ports.add(row.remotePort);
  }
  return ports;
}

/**
 * What `ss` knows of each socket `pid` holds (TCP and UDP in any state, unix), for a report:
 * `inode=state local peer`, or `inode=?` for one no table lists (a TCP socket in CLOSE state).
 */
export async function describeSockets(pid) {
  let targets;
  try {
    targets = await descriptors(pid);
  } catch {
    return "(gone)";
  }
  const { stdout } = await run("ss", ["-tuxaneH"], { maxBuffer: 64 << 20 });
  const known = new Map();
  for (const line of stdout.split("\n")) {
    const inode = /\bino:(\d+)/.exec(line)?.[1] ?? line.trim().split(/\s+/)[6];
    if (inode !== undefined)
      known.set(Number(inode), line.trim().split(/\s+/).slice(0, 7).join(" "));
  }
  return targets
    .map(socketInode)
    .filter((inode) => inode !== undefined)
    .map((inode) => `${inode}=${known.get(inode) ?? "?"}`)
    .join("; ");
}
