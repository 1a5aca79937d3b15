/**
 * Starting a program the way systemd's socket activation does: its listening sockets already
 * open as descriptors 3, 4, …, named in LISTEN_FDNAMES, with LISTEN_PID set to its own pid.
 *
 * `systemd-socket-activate` (from systemd) does it for real, but waits for the first
 * connection before it executes the program and cannot set SO_REUSEPORT, which a socket unit
 * with `ReusePort=yes` does. For those, a few lines of Python bind real sockets the way
 * systemd does and execute the program in the same process (so LISTEN_PID is its pid).
 */
import { Program } from "./program.js";

export interface ActivatedSocket {
  readonly name: string;
  readonly protocol: "tcp" | "udp";
  readonly host: "127.0.0.1" | "::1";
  readonly port: number;
  /** SO_REUSEPORT before bind (`ReusePort=yes`). */
  readonly reusePort: boolean;
}

const ACTIVATOR = `
import fcntl, os, socket, sys
specs, argv = sys.argv[1:sys.argv.index("--")], sys.argv[sys.argv.index("--") + 1:]
socks = []
for spec in specs:
    name, proto, host, port, reuse = spec.split(",")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    s = socket.socket(family, kind)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse == "1":
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind((host, int(port)))
    if kind == socket.SOCK_STREAM:
        s.listen(128)
    socks.append((name, s))
# Out of the way first, so that moving one to 3+i never closes another still to be moved.
high = [fcntl.fcntl(s.fileno(), fcntl.F_DUPFD, 100) for _, s in socks]
for _, s in socks:
    s.close()
for i, fd in enumerate(high):
    os.dup2(fd, 3 + i, inheritable=True)
    os.close(fd)
os.environ["LISTEN_PID"] = str(os.getpid())
os.environ["LISTEN_FDS"] = str(len(socks))
os.environ["LISTEN_FDNAMES"] = ":".join(name for name, _ in socks)
os.execv(argv[0], argv)
`;

/** Starts `binary ARGS` with `sockets` passed as systemd passes them. */
export function startActivated(
  binary: string,
  sockets: readonly ActivatedSocket[],
  args: readonly string[],
  env: NodeJS.ProcessEnv = {},
): Program {
  const specs = sockets.map(
    (s) => `${s.name},${s.protocol},${s.host},${s.port},${s.reusePort ? 1 : 0}`,
  );
  return Program.start("python3", ["-c", ACTIVATOR, ...specs, "--", binary, ...args], env);
}
