import { describe, expect, it } from "vitest";
import { buildModel } from "../../../src/model/model.js";
import { graceSeconds, workersUnderLimit } from "../../../src/spec/deploy.js";
import { validateSpec } from "../../../src/spec/validate.js";

function validate(raw: Record<string, unknown>) {
  return validateSpec({ name: "edge", listeners: [web], ...raw });
}

function deploy(raw: Record<string, unknown>) {
  const result = validate(raw);
  if (!result.ok) throw new Error(JSON.stringify(result.diagnostics));
  return buildModel(result.spec, { generatorVersion: "9.9.9", specFile: "edge.json" }).deploy;
}

function problems(raw: Record<string, unknown>) {
  const result = validate(raw);
  if (result.ok) throw new Error("the spec was accepted");
  return result.diagnostics.map((d) => ({ path: d.path.join("."), message: d.message }));
}

const web = { name: "web", protocol: "tcp", address: "0.0.0.0", port: 8080, handler: "http" };

describe("deploy model", () => {
  it("defaults: 2 replicas, <name>:<version>, the default admin port, a grace that adds up", () => {
    const d = deploy({});
    expect(d.image).toBe("edge:0.1.0");
    expect(d.replicas).toBe(2);
    expect(d.cpu).toBe("2");
    expect(d.workersPerPod).toBe(2);
    expect(d.adminPort).toBe(9901);
    expect(d.adminDefaulted).toBe(true);
    // 5 s preStop + ceil((0 + 10000 + 1000) / 1000) + 5 s margin.
    expect(d.terminationGracePeriodSeconds).toBe(21);
    expect(d.expose).toBe("8080/tcp 9901/tcp");
    expect(d.bindsPrivilegedPort).toBe(false);
    expect(d.notes.join("\n")).toContain('no "admin" listener');
  });

  it("fixed workers set the CPU; auto workers follow the CPU given", () => {
    expect(deploy({ workers: 3 }).cpu).toBe("3");
    expect(deploy({ workers: 3 }).workersPerPod).toBe(3);
    const auto = deploy({ deploy: { kubernetes: { cpu: "1500m" } } });
    expect(auto.workersPerPod).toBe(2);
    expect(workersUnderLimit("0.5")).toBe(1);
    expect(workersUnderLimit("4")).toBe(4);
  });

  it("one Service port per port and protocol, with names Kubernetes accepts", () => {
    const listeners = [
      { ...web, name: "a_very_long_listener_name_v4" },
      { ...web, name: "a_very_long_listener_name_v6", address: "::", v6Only: true },
      { ...web, name: "a_very_long_listener_name_udp", protocol: "udp", handler: "echo" },
      { ...web, name: "admin", port: 9000 },
    ];
    const d = deploy({ listeners });
    expect(d.ports).toEqual([
      { name: "a-very-long-lis", port: 8080, protocol: "TCP", exposeProtocol: "tcp" },
      { name: "a-very-long-l-2", port: 8080, protocol: "UDP", exposeProtocol: "udp" },
      { name: "admin-2", port: 9000, protocol: "TCP", exposeProtocol: "tcp" },
    ]);
    for (const p of d.ports) {
      expect(p.name).toMatch(/^(?=.*[a-z])[a-z0-9](?:[a-z0-9]|-(?!-)){0,13}[a-z0-9]$/);
    }
  });

  it("the default admin port steps past a listener that holds it", () => {
    const d = deploy({ listeners: [{ ...web, port: 9901 }, { ...web, name: "b", port: 9902 }] });
    expect(d.adminPort).toBe(9903);
    expect(d.adminListen).toBe("0.0.0.0:9903");
  });

  it("a port below 1024 lowers the unprivileged floor to it", () => {
    const d = deploy({ listeners: [{ ...web, port: 80 }] });
    expect(d.bindsPrivilegedPort).toBe(true);
    expect(d.lowestPort).toBe(80);
  });

  it("loopback listeners are named in a note: no Service reaches them", () => {
    const d = deploy({ listeners: [{ ...web, address: "127.0.0.1" }] });
    expect(d.notes.join("\n")).toContain('listener "web" binds 127.0.0.1');
  });

  it("grace: preStop sleep, shutdown delay, drain, kill grace and margin", () => {
    expect(graceSeconds(5, 0, 10000)).toBe(21);
    expect(graceSeconds(0, 2500, 30000)).toBe(39);
    expect(deploy({ deploy: { kubernetes: { preStopSleepSeconds: 0 } } }))
      .toMatchObject({ preStopSleepSeconds: 0, terminationGracePeriodSeconds: 16 });
    const kept = deploy({ deploy: { kubernetes: { terminationGracePeriodSeconds: 60 } } });
    expect(kept.terminationGracePeriodSeconds).toBe(60);
  });
});

describe("deploy rules", () => {
  it("refuses a grace period shorter than the stop the spec asks for, naming both fields", () => {
    const found = problems({
      drainTimeoutMs: 30000,
      deploy: { kubernetes: { terminationGracePeriodSeconds: 20 } },
    });
    expect(found).toHaveLength(1);
    expect(found[0]?.path).toBe("deploy.kubernetes.terminationGracePeriodSeconds");
    expect(found[0]?.message).toContain("41 s");
    expect(found[0]?.message).toContain('"drainTimeoutMs"');
    expect(found[0]?.message).toContain('"shutdownDelayMs"');
  });

  it("refuses a CPU limit below a fixed worker count", () => {
    const found = problems({ workers: 4, deploy: { kubernetes: { cpu: "2500m" } } });
    expect(found).toEqual([
      expect.objectContaining({
        path: "deploy.kubernetes.cpu",
        message: expect.stringContaining('"workers" is 4'),
      }),
    ]);
  });

  it("refuses malformed quantities, images, namespaces and sources, and unknown keys", () => {
    const found = problems({
      deploy: {
        source: "ftp://x",
        kubernetes: {
          cpu: "two",
          memory: "1 GB",
          image: "Bad Image",
          namespace: "Prod",
          replica: 3,
        },
      },
    });
    expect(found.map((f) => f.path).sort()).toEqual([
      "deploy.kubernetes.cpu",
      "deploy.kubernetes.image",
      "deploy.kubernetes.memory",
      "deploy.kubernetes.namespace",
      "deploy.kubernetes.replica",
      "deploy.source",
    ]);
  });

  it("accepts what a user writes", () => {
    const d = deploy({
      deploy: {
        source: "https://example.com/team/edge",
        kubernetes: {
          replicas: 3,
          image: "registry.example.com:5000/team/edge:1.2.3",
          namespace: "edge-prod",
          cpu: "4",
          memory: "1Gi",
        },
      },
    });
    expect(d).toMatchObject({ replicas: 3, namespace: "edge-prod", cpu: "4", memory: "1Gi" });
  });
});
