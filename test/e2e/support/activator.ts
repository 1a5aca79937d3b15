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

const KEEPER = `
import fcntl, os, signal, socket, subprocess, sys, time
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
high = [fcntl.fcntl(s.fileno(), fcntl.F_DUPFD, 100) for _, s in socks]
for _, s in socks:
    s.close()
for i, fd in enumerate(high):
    os.dup2(fd, 3 + i)
    os.close(fd)
env = dict(os.environ, LISTEN_FDS=str(len(socks)), LISTEN_FDNAMES=":".join(n for n, _ in socks))
fds = tuple(range(3, 3 + len(socks)))
# sh sets LISTEN_PID to its own pid, which the program keeps when sh executes it.
command = ["sh", "-c", 'LISTEN_PID=$$ exec "$@"', "sh", *argv]
state = {"restart": False, "stop": False}
signal.signal(signal.SIGUSR1, lambda *_: state.update(restart=True))
signal.signal(signal.SIGTERM, lambda *_: state.update(stop=True))
child = subprocess.Popen(command, pass_fds=fds, env=env)
for _ in range(10 * 60 * 20):
    if state["stop"]:
        break
    if state["restart"]:
        state["restart"] = False
        child.send_signal(signal.SIGTERM)
        child.wait(timeout=20)
        child = subprocess.Popen(command, pass_fds=fds, env=env)
    time.sleep(0.05)
child.send_signal(signal.SIGTERM)
sys.exit(child.wait(timeout=20))
`;

/**
 * Starts `binary ARGS` with `sockets` passed as systemd passes them, from a process that keeps
 * the sockets open as systemd does: SIGUSR1 to it stops the program (SIGTERM) and starts it
 * again with the same sockets; SIGTERM stops the program and then the keeper. The program's
 * events arrive on the keeper's standard output.
 */
export function startKept(
  binary: string,
  sockets: readonly ActivatedSocket[],
  args: readonly string[],
): Program {
  const specs = sockets.map(
    (s) => `${s.name},${s.protocol},${s.host},${s.port},${s.reusePort ? 1 : 0}`,
  );
  return Program.start("python3", ["-c", KEEPER, ...specs, "--", binary, ...args]);
}
