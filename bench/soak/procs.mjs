// What the soak reads from /proc about the service's processes: who is in its process group,
// their descriptors (split into connections and the rest), their RSS, and which client ports a
// worker's connections have. Run inside the soak's network namespace, /proc/net/* is that
// namespace's.
import { readdirSync, readFileSync, readlinkSync } from "node:fs";

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
export function groupMembers(pgid) {
  const members = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const fields = statFields(Number(entry));
    if (fields !== undefined && fields[0] !== "Z" && Number(fields[2]) === pgid)
      members.push(Number(entry));
  }
  return members.sort((a, b) => a - b);
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

/** `socket:[123]` → 123; the targets of a process's descriptors. */
function descriptors(pid) {
  const dir = `/proc/${pid}/fd`;
  const targets = [];
  for (const fd of readdirSync(dir)) {
    try {
      targets.push(readlinkSync(`${dir}/${fd}`));
    } catch {
      // Closed between the listing and the read: not one of its descriptors any more.
    }
  }
  return targets;
}

/**
 * The TCP sockets of the namespace that are not listening: inode → { localPort, remotePort }.
 * (A listening socket's row has state 0A; an accepted connection has an inode once a worker
 * holds it.)
 */
function tcpConnections() {
  const rows = new Map();
  for (const file of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text;
    try {
      text = readFileSync(file, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || f[3] === "0A") continue;
      const inode = Number(f[9]);
      if (inode === 0) continue;
      const port = (addr) => parseInt(addr.split(":").at(-1), 16);
      rows.set(inode, { localPort: port(f[1]), remotePort: port(f[2]) });
    }
  }
  return rows;
}

function socketInode(target) {
  const m = /^socket:\[(\d+)\]$/.exec(target);
  return m ? Number(m[1]) : undefined;
}

/**
 * A process's descriptors in two parts: its TCP connections (which come and go with the load)
 * and everything else (listening and UDP sockets, pipes, epoll, signalfd, files), which must
 * not change while the process serves. `kinds` counts the rest by type, for a report.
 */
export function descriptorShape(pid) {
  let targets;
  try {
    targets = descriptors(pid);
  } catch {
    return undefined;
  }
  const connections = tcpConnections();
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
export function clientPortsOf(pid, servicePorts) {
  const connections = tcpConnections();
  const ports = new Set();
  let targets;
  try {
    targets = descriptors(pid);
  } catch {
    return ports;
  }
  for (const target of targets) {
    const row = connections.get(socketInode(target));
    if (row !== undefined && servicePorts.has(row.localPort)) ports.add(row.remotePort);
  }
  return ports;
}
