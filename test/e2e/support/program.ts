/**
 * Starting a generated program and watching it: its stdout JSON events, its stderr log, its
 * exit. Every program started here is tracked and started in its own process group, so that
 * `stopAllPrograms()` (called from afterEach/afterAll) kills it and any worker it forked, even
 * when a test failed half way.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import path from "node:path";
import { createInterface } from "node:readline";

export interface ServiceEvent {
  readonly event: string;
  readonly [key: string]: unknown;
}

export interface ReadyEvent extends ServiceEvent {
  readonly mode: "standalone" | "supervisor";
  readonly generation: number;
  readonly pid: number;
  readonly workers: readonly { index: number; pid: number }[];
  readonly listeners: readonly {
    name: string;
    protocol: string;
    handler: string;
    address: string;
    port: number;
  }[];
}

export interface StoppedEvent extends ServiceEvent {
  readonly generation: number;
  readonly reason: string;
  readonly workers: readonly {
    index: number;
    pid: number;
    connections: number;
    requests: number;
    datagrams: number;
  }[];
}

export interface Exit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

const live = new Set<Program>();

/** Programs the suite starts other programs through; they do not get `--io`. */
const WRAPPERS = new Set([
  "bash",
  "sh",
  "python3",
  "taskset",
  "unshare",
  "nsenter",
  "prlimit",
  "setpriv",
  "env",
  "systemd-socket-activate",
]);

/** `args` with the suite's `--io` mode (`GEN_REUSEPORT_IO`) in front, where it applies. */
export function withSuiteIo(args: readonly string[]): readonly string[] {
  const io = process.env.GEN_REUSEPORT_IO;
  if (io === undefined || io === "") return args;
  if (io !== "epoll" && io !== "io_uring") {
    throw new Error(`GEN_REUSEPORT_IO must be "epoll" or "io_uring" (got "${io}")`);
  }
  const own = ["--io", "--help", "-h", "--version", "--fingerprint", "--worker"];
  if (args.some((a) => own.includes(a))) return args;
  return ["--io", io, ...args];
}

export class Program {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly events: ServiceEvent[] = [];
  /** Lines on stdout that are not JSON objects (the contract says there are none). */
  readonly strayStdout: string[] = [];
  stderr = "";
  exit: Exit | undefined;
  readonly exited: Promise<Exit>;
  /** Every pid this program reported (its own and its workers'). */
  readonly knownPids = new Set<number>();
  private readonly listeners = new Set<() => void>();

  private constructor(
    readonly command: string,
    child: ChildProcess,
  ) {
    this.child = child;
    if (child.pid === undefined) throw new Error(`could not start ${command}`);
    this.pid = child.pid;
    this.knownPids.add(this.pid);
    this.exited = new Promise((resolve) => {
      child.once("exit", (code, signal) => {
        this.exit = { code, signal };
        this.notify();
        resolve(this.exit);
      });
    });
    createInterface({ input: child.stdout! }).on("line", (line) => this.onStdoutLine(line));
    child.stderr!.setEncoding("utf8").on("data", (chunk: string) => {
      this.stderr += chunk;
    });
  }

  /**
   * Starts `binary args…` with stdin closed, stdout and stderr piped. With
   * `GEN_REUSEPORT_IO=io_uring` (or `epoll`) in the environment every program the suite
   * starts gets `--io` too, unless its arguments name one or ask for help, version or
   * fingerprint: the whole suite runs in that mode.
   */
  static start(binary: string, args: readonly string[], env: NodeJS.ProcessEnv = {}): Program {
    // Not through a wrapper (a shell, the activator, taskset…): its arguments are its own.
    if (!WRAPPERS.has(path.basename(binary))) args = withSuiteIo(args);
    const child = spawn(binary, args, {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, ...env },
      detached: true,
    });
    const program = new Program(`${binary} ${args.join(" ")}`, child);
    live.add(program);
    void program.exited.then(() => live.delete(program));
    return program;
  }

  private onStdoutLine(line: string) {
    try {
      const value = JSON.parse(line) as unknown;
      if (typeof value === "object" && value !== null && "event" in value) {
        const event = value as ServiceEvent;
        this.events.push(event);
        for (const pid of reportedPids(event)) this.knownPids.add(pid);
      } else {
        this.strayStdout.push(line);
      }
    } catch {
      this.strayStdout.push(line);
    }
    this.notify();
  }

  private notify() {
    for (const listener of [...this.listeners]) listener();
  }

  /** The first event named `name` (after the `skip` earlier ones) that matches `where`. */
  find<T extends ServiceEvent>(name: string, where: (e: T) => boolean = () => true): T | undefined {
    return this.events.find((e) => e.event === name && where(e as T)) as T | undefined;
  }

  /**
   * Resolves with the first event named `name` (matching `where`); rejects when the program
   * exits without it or when `timeoutMs` passes, with what the program said so far.
   */
  waitForEvent<T extends ServiceEvent = ServiceEvent>(
    name: string,
    timeoutMs: number,
    where: (e: T) => boolean = () => true,
  ): Promise<T> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const found = this.find<T>(name, where);
        if (found !== undefined) return finish(() => resolve(found));
        if (this.exit !== undefined) {
          // Lines written right before exit may still be in the pipe: give them a moment.
          setTimeout(() => {
            const late = this.find<T>(name, where);
            finish(() =>
              late !== undefined ? resolve(late) : reject(this.failure(`exited before "${name}"`)),
            );
          }, 100);
        }
      };
      const timer = setTimeout(
        () => finish(() => reject(this.failure(`no "${name}" event within ${timeoutMs} ms`))),
        timeoutMs,
      );
      const finish = (settle: () => void) => {
        clearTimeout(timer);
        this.listeners.delete(check);
        settle();
      };
      this.listeners.add(check);
      check();
    });
  }

  /** Waits for the program to exit, up to `timeoutMs`. */
  async waitForExit(timeoutMs: number): Promise<Exit> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(this.failure(`did not exit within ${timeoutMs} ms`)),
        timeoutMs,
      );
    });
    try {
      return await Promise.race([this.exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  signal(signal: NodeJS.Signals) {
    this.child.kill(signal);
  }

  /** An error that carries the program's own words, for a failure worth reading. */
  failure(what: string): Error {
    const exit = this.exit === undefined ? "running" : `exit ${this.exit.code ?? this.exit.signal}`;
    const events = this.events.map((e) => JSON.stringify(e)).join("\n  ");
    return new Error(
      `${this.command}: ${what} (${exit})\n events:\n  ${events}\n stderr:\n${this.stderr}`,
    );
  }
}

function reportedPids(event: ServiceEvent): number[] {
  const pids: number[] = [];
  if (typeof event.pid === "number") pids.push(event.pid);
  if (Array.isArray(event.workers)) {
    for (const w of event.workers as { pid?: unknown }[]) {
      if (typeof w.pid === "number") pids.push(w.pid);
    }
  }
  return pids;
}

/** Whether `pid` names a live process (a zombie counts as gone). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

/** Polls (bounded) until none of `pids` is alive; returns those still alive at the end. */
export async function waitUntilGone(pids: Iterable<number>, timeoutMs: number): Promise<number[]> {
  const deadline = Date.now() + timeoutMs;
  let alive = [...pids].filter(isAlive);
  while (alive.length > 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
    alive = alive.filter(isAlive);
  }
  return alive;
}

function killGroup(program: Program) {
  for (const target of [-program.pid, ...program.knownPids]) {
    try {
      process.kill(target, "SIGKILL");
    } catch {
      // Already gone.
    }
  }
}

/**
 * SIGKILLs every program (and process group) still running, waits for them, and throws if
 * any process they reported survives: a leak the suite must not hide.
 */
export async function stopAllPrograms(): Promise<string[]> {
  const programs = [...live];
  const pids = new Set<number>();
  for (const program of programs) {
    for (const pid of program.knownPids) pids.add(pid);
    killGroup(program);
  }
  await Promise.all(programs.map((p) => p.waitForExit(5_000).catch(() => undefined)));
  const survivors = await waitUntilGone(pids, 5_000);
  if (survivors.length > 0)
    throw new Error(`processes left running after SIGKILL: ${survivors.join(", ")}`);
  return programs.map((p) => p.command);
}

process.once("exit", () => {
  for (const program of live) killGroup(program);
});

export const READY_TIMEOUT_MS = 10_000;
export const STOP_TIMEOUT_MS = 10_000;

/** Starts a program and waits for its `ready` event. */
export async function startReady(
  binary: string,
  args: readonly string[],
): Promise<{ program: Program; ready: ReadyEvent }> {
  const program = Program.start(binary, args);
  const ready = await program.waitForEvent<ReadyEvent>("ready", READY_TIMEOUT_MS);
  return { program, ready };
}

/** `--listen NAME=HOST:PORT` for each entry (IPv6 hosts bracketed). */
export function listenArgs(endpoints: Record<string, { host: string; port: number }>): string[] {
  return Object.entries(endpoints).flatMap(([name, { host, port }]) => [
    "--listen",
    `${name}=${host.includes(":") ? `[${host}]` : host}:${port}`,
  ]);
}

/** The port the `ready` event reports for listener `name`. */
export function portOf(ready: ReadyEvent, name: string): number {
  const listener = ready.listeners.find((l) => l.name === name);
  if (listener === undefined) throw new Error(`ready event has no listener "${name}"`);
  return listener.port;
}

/** Whether process `pid` holds an io_uring instance (a worker serving with `--io io_uring`). */
export function holdsIoUring(pid: number): boolean {
  const dir = `/proc/${pid}/fd`;
  return readdirSync(dir).some((fd) => {
    try {
      return readlinkSync(`${dir}/${fd}`).includes("io_uring");
    } catch {
      // Closed between the listing and the read.
      return false;
    }
  });
}
