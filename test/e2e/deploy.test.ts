/**
 * The `deploy/` recipes every project gets. The Kubernetes manifests of every example validate
 * with kubernetes-validate (PyPI; it ships the schemas, so no cluster is needed) in strict mode;
 * the image built by podman from the generated Containerfile holds everything the program
 * needs: its filesystem, exported, runs the service alone (a chroot in fresh network, PID and
 * mount namespaces, as the image's user, the runtime's /proc mounted as a container runtime
 * would), which answers, reaps an orphan as PID 1, and stops gracefully on SIGTERM within the
 * grace period; a hard limit on open files below what the spec needs is one `degraded` event.
 * Podman builds images here but cannot start containers, hence the chroot.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { afterAll, describe, expect, it } from "vitest";
import { generate, PACKAGE_ROOT } from "../../src/index.js";
import { builtProject, EXAMPLES } from "./support/project.js";
import { ensureCommand, ensurePipTool } from "./support/tools.js";
import { TOOLCHAIN_DIR, ZIG_VERSIONS } from "./support/zig.js";

const KUBERNETES_VALIDATE = "1.37.0";
/** The oldest release the manifests' preStop `sleep` action exists in (beta, on by default). */
const OLDEST_WITH_SLEEP = "1.30.0";
/** The oldest and newest releases kubernetes-validate 1.37.0 ships schemas for. */
const OLDEST = "1.25.0";
const NEWEST = "1.37.0";
const RESOURCES = ["deployment.yaml", "service.yaml", "pdb.yaml"];
const BUILD_TIMEOUT_MS = 15 * 60_000;
/** Open files the pod's hard limit allows in the image test: fewer than the spec's limits need. */
const LOW_NOFILE = 256;

const scratch = mkdtempSync(path.join(tmpdir(), "gen-reuseport-deploy-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function kubernetesValidate(version: string, files: readonly string[]) {
  const tool = ensurePipTool(
    "kubernetes-validate",
    KUBERNETES_VALIDATE,
    "kubernetes_validate",
    TOOLCHAIN_DIR,
  );
  const args = ["-m", "kubernetes_validate", "--strict", "--quiet", "-k", version, ...files];
  const run = spawnSync(tool.python, args, { encoding: "utf8", env: tool.env, timeout: 120_000 });
  return { status: run.status, output: `${run.stdout}${run.stderr}` };
}

describe("Kubernetes manifests", () => {
  it("every example's validate strictly, from the first with the preStop sleep to the newest", () => {
    const files = EXAMPLES.flatMap((example) =>
      RESOURCES.map((f) => path.join(PACKAGE_ROOT, "generated", example, "deploy/kubernetes", f)),
    );
    for (const version of [OLDEST_WITH_SLEEP, NEWEST]) {
      const result = kubernetesValidate(version, files);
      expect(result.output, `kubernetes-validate -k ${version}`).not.toMatch(/ERROR|WARN/);
      expect(result.status).toBe(0);
    }
    // A check that can fail: the sleep action is unknown to 1.25's schema.
    const old = kubernetesValidate(OLDEST, files.slice(0, 1));
    expect(old.status).not.toBe(0);
    expect(old.output).toContain("'sleep' was unexpected");
  }, 300_000);

  it("without the preStop sleep they validate on the oldest; port 80 adds what it needs", async () => {
    const out = path.join(scratch, "edge");
    const web = { protocol: "tcp", port: 80, handler: "http" };
    const spec = {
      name: "edge",
      workers: 3,
      listeners: [
        { ...web, name: "plain_web_listener", address: "0.0.0.0" },
        { ...web, name: "plain_web_listener_v6", address: "::", v6Only: true },
        { name: "dns", protocol: "udp", address: "0.0.0.0", port: 53, handler: "echo" },
        { name: "dns_tcp", protocol: "tcp", address: "0.0.0.0", port: 53, handler: "echo" },
      ],
      deploy: { kubernetes: { preStopSleepSeconds: 0, namespace: "edge-prod", replicas: 3 } },
    };
    await generate({ specFile: "edge.json", spec, outDir: out, cwd: scratch });
    const dir = path.join(out, "deploy", "kubernetes");
    const result = kubernetesValidate(OLDEST, RESOURCES.map((f) => path.join(dir, f)));
    expect(result.output).not.toMatch(/ERROR|WARN/);
    expect(result.status).toBe(0);
    const deployment = readFileSync(path.join(dir, "deployment.yaml"), "utf8");
    expect(deployment).toContain('add: ["NET_BIND_SERVICE"]');
    expect(deployment).toMatch(/name: net\.ipv4\.ip_unprivileged_port_start\n\s+value: "53"/);
    expect(deployment).not.toContain("preStop:");
    expect(deployment).toContain('cpu: "3"');
    const service = readFileSync(path.join(dir, "service.yaml"), "utf8");
    expect(service.match(/^\s+- name: /gm)).toHaveLength(3);
    expect(service).toMatch(/port: 53\n\s+targetPort: dns\n\s+protocol: UDP/);
    expect(service).toMatch(/port: 53\n\s+targetPort: dns-tcp\n\s+protocol: TCP/);
    const kustomization = readFileSync(path.join(dir, "kustomization.yaml"), "utf8");
    expect(kustomization).toContain("namespace: edge-prod");
  }, 300_000);
});

/** The service's lines on standard output, as JSON events. */
function eventsOf(child: ChildProcess): { event: string; [key: string]: unknown }[] {
  const events: { event: string }[] = [];
  createInterface({ input: child.stdout! }).on("line", (line) => {
    try {
      events.push(JSON.parse(line) as { event: string });
    } catch {
      events.push({ event: `(not JSON) ${line}` });
    }
  });
  return events as { event: string; [key: string]: unknown }[];
}

async function until<T>(what: string, timeoutMs: number, probe: () => T | undefined): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The children of `pid` (host pids), from /proc. */
function childrenOf(pid: number): number[] {
  try {
    const text = readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim();
    return text === "" ? [] : text.split(/\s+/).map(Number);
  } catch {
    return [];
  }
}

function statusField(pid: number, field: string): string {
  const line = readFileSync(`/proc/${pid}/status`, "utf8")
    .split("\n")
    .find((l) => l.startsWith(`${field}:`));
  return (line ?? "").slice(field.length + 1).trim();
}

/** Runs `command` in the network and PID namespaces of `pid`. */
function inside(pid: number, command: readonly string[], timeoutMs = 10_000) {
  return spawnSync("nsenter", ["-t", String(pid), "-n", "-p", "--", ...command], {
    encoding: "utf8",
    timeout: timeoutMs,
  });
}

describe("the container image", () => {
  const version = ZIG_VERSIONS[0]!;

  it("holds everything: its filesystem alone serves, as PID 1, and stops on SIGTERM", async () => {
    const podman = ensureCommand("podman", "podman");
    ensureCommand("curl", "curl");
    ensureCommand("ip", "iproute2");
    const project = await builtProject("http", version);
    expect(project.steps.build.ok, project.steps.build.output).toBe(true);
    const tag = `localhost/gen-reuseport-test-${process.pid}:latest`;
    const build = spawnSync(podman, ["build", "-q", "-f", "deploy/Containerfile", "-t", tag, "."], {
      cwd: project.dir,
      encoding: "utf8",
      timeout: 300_000,
    });
    expect(build.status, `${build.stdout}${build.stderr}`).toBe(0);
    const rootfs = path.join(scratch, "rootfs");
    let config: { Entrypoint: string[]; Cmd: string[]; User: string; StopSignal: string };
    try {
      const inspect = spawnSync(podman, ["image", "inspect", tag, "--format", "{{json .Config}}"], {
        encoding: "utf8",
      });
      config = JSON.parse(inspect.stdout) as typeof config;
      const created = spawnSync(podman, ["create", tag], { encoding: "utf8" });
      expect(created.status, created.stderr).toBe(0);
      const id = created.stdout.trim();
      const tar = path.join(scratch, "rootfs.tar");
      const exported = spawnSync(podman, ["export", "-o", tar, id], { encoding: "utf8" });
      spawnSync(podman, ["rm", "-f", id], { stdio: "ignore" });
      expect(exported.status, exported.stderr).toBe(0);
      mkdirSync(rootfs);
      expect(spawnSync("tar", ["-xf", tar, "-C", rootfs]).status).toBe(0);
    } finally {
      spawnSync(podman, ["rmi", "-f", tag], { stdio: "ignore" });
    }
    // The image is the binary alone, owned by root and run as another user.
    expect(readdirSync(rootfs)).toEqual([project.name]);
    expect(config.User).toBe("65534:65534");
    expect(config.StopSignal).toBe("SIGTERM");

    // What a container runtime adds: a /proc mount point (the image has no directories).
    mkdirSync(path.join(rootfs, "proc"));
    const argv = [...config.Entrypoint, ...config.Cmd].map((a) => JSON.stringify(a)).join(" ");
    const script =
      `mount -t proc proc ${JSON.stringify(path.join(rootfs, "proc"))} && ip link set lo up && ` +
      // A container's hard limit on open files below what the spec's limits need.
      `ulimit -n ${LOW_NOFILE} && ` +
      `exec chroot --userspec=${config.User} ${JSON.stringify(rootfs)} ${argv}`;
    const runner = spawn(
      "unshare",
      ["--net", "--pid", "--fork", "--mount", "--propagation", "private", "--kill-child"].concat(
        ["sh", "-c", script],
      ),
      { stdio: ["ignore", "pipe", "pipe"], detached: true },
    );
    let stderr = "";
    runner.stderr!.setEncoding("utf8").on("data", (c: string) => (stderr += c));
    const events = eventsOf(runner);
    try {
      const ready = await until("ready", 20_000, () => events.find((e) => e.event === "ready"));
      const pid1 = childrenOf(runner.pid!)[0]!;
      // The refused limit is one clear event, and the start goes on.
      const degraded = events.filter((e) => e.event === "degraded");
      expect(degraded).toEqual([expect.objectContaining({ feature: "open_files" })]);
      expect(degraded[0]!.detail).toContain(`limited to ${LOW_NOFILE}`);
      expect(statusField(pid1, "NSpid").split(/\s+/).at(-1)).toBe("1");
      expect(statusField(pid1, "Uid").split(/\s+/)).toEqual(["65534", "65534", "65534", "65534"]);
      const workers = childrenOf(pid1);
      expect(workers).toHaveLength((ready.workers as unknown[]).length);

      const port = (ready.listeners as { port: number }[])[0]!.port;
      const answer = inside(pid1, ["curl", "-s", "-m", "5", `http://127.0.0.1:${port}/`]);
      expect(answer.stdout, answer.stderr).toContain("Hello");
      const status = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "5"];
      const readyz = inside(pid1, [...status, "http://127.0.0.1:9901/readyz"]);
      expect(readyz.stdout).toBe("200");

      // An orphan inside the namespace becomes PID 1's child; it must be reaped, not left a zombie.
      // (A zombie stays in its parent's list of children until it is reaped.)
      const others = () => childrenOf(pid1).filter((c) => !workers.includes(c));
      // It lives until the test ends it, however long the machine takes to get there.
      const orphan = inside(pid1, ["sh", "-c", "sleep 60 & exit 0"]);
      expect(orphan.status).toBe(0);
      const adopted = await until("PID 1 adopting the orphan", 10_000, () => others()[0]);
      process.kill(adopted, "SIGKILL");
      await until("the orphan reaped", 10_000, () => (others().length === 0 ? true : undefined));

      const grace = readFileSync(
        path.join(project.dir, "deploy", "kubernetes", "deployment.yaml"),
        "utf8",
      ).match(/terminationGracePeriodSeconds: (\d+)/);
      const termAt = Date.now();
      process.kill(pid1, "SIGTERM");
      const stopped = await until("stopped", 20_000, () => events.find((e) => e.event === "stopped"));
      expect(stopped.reason).toBe("graceful");
      const code = await until("the exit", 10_000, () => runner.exitCode ?? undefined);
      expect(code, stderr).toBe(0);
      expect(Date.now() - termAt).toBeLessThan(Number(grace![1]) * 1000);
    } finally {
      if (runner.exitCode === null) {
        try {
          process.kill(-runner.pid!, "SIGKILL");
        } catch {
          // Gone already.
        }
      }
    }
  }, BUILD_TIMEOUT_MS);
});
