/**
 * A stand-in for systemd's end of $NOTIFY_SOCKET. Node has no Unix datagram sockets, so a few
 * lines of Python (present wherever Zig is provisioned from PyPI) receive the datagrams.
 */
import { spawn, type ChildProcess } from "node:child_process";
import readline from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";

const RECEIVER = `
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print(json.dumps("bound"), flush=True)
while True:
    print(json.dumps(s.recv(4096).decode()), flush=True)
`;

/** A stand-in for systemd's end of $NOTIFY_SOCKET, collecting every message. */
export class NotifySocket {
  readonly messages: string[] = [];
  private constructor(private readonly child: ChildProcess) {}

  static async bind(socketPath: string): Promise<NotifySocket> {
    const child = spawn("python3", ["-c", RECEIVER, socketPath], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    const receiver = new NotifySocket(child);
    const bound = new Promise<void>((resolve, reject) => {
      child.once("exit", (code) => reject(new Error(`the notify receiver exited (${code})`)));
      readline.createInterface({ input: child.stdout! }).on("line", (line) => {
        const message = JSON.parse(line) as string;
        if (message === "bound") resolve();
        else receiver.messages.push(message);
      });
    });
    await Promise.race([
      bound,
      sleep(5_000).then(() => Promise.reject(new Error("no bind in 5 s"))),
    ]);
    return receiver;
  }

  /** Waits (bounded) until a message matches. */
  async waitFor(pattern: RegExp, timeoutMs = 5_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.messages.find((m) => pattern.test(m));
      if (found !== undefined) return found;
      if (Date.now() > deadline)
        throw new Error(`no ${pattern} in ${JSON.stringify(this.messages)}`);
      await sleep(20);
    }
  }

  close() {
    this.child.kill("SIGKILL");
  }
}
