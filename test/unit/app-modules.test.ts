import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { declaresFunction, generate, prepareGeneration } from "../../src/generate.js";
import { missingRouteLines } from "../../src/cli/report.js";

/** The real templates: the module stub is what this test is about. */
const route = (name: string, method: string, p: string) => ({ name, method, path: p });
function spec(routes: ReturnType<typeof route>[]) {
  return {
    name: "svc",
    listeners: [
      {
        name: "api",
        protocol: "tcp",
        address: "127.0.0.1",
        port: 8080,
        handler: "app",
        app: { module: "notes", http: { routes } },
      },
    ],
  };
}

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), "gen-reuseport-app-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe("application modules", () => {
  it("creates src/app/<module>.zig without the generated header, a stub per route", async () => {
    const first = await generate({
      specFile: "svc.json",
      spec: spec([route("getNote", "GET", "/notes/:id")]),
      outDir: "out",
      cwd: dir,
    });
    const file = path.join(dir, "out/src/app/notes.zig");
    const text = readFileSync(file, "utf8");
    expect(text).not.toMatch(/DO NOT EDIT/);
    expect(text).toContain(
      "pub fn getNote(state: *State, req: *http.Request, res: *http.Response) !void",
    );
    expect(text).toContain('"GET /notes/1 HTTP/1.1\\r\\n"');
    expect(first.plan.files.find((f) => f.path === "src/app/notes.zig")?.action).toBe("create");
    const manifest = JSON.parse(readFileSync(path.join(dir, "out/.gen-reuseport.json"), "utf8"));
    expect(manifest.userFiles).toContain("src/app/notes.zig");
    expect(Object.keys(manifest.files)).not.toContain("src/app/notes.zig");
    const glue = readFileSync(path.join(dir, "out/src/handlers/app.zig"), "utf8");
    expect(glue).toContain('.{ .name = "getNote", .method = .GET, .path = "/notes/:id" }');
  });

  it("keeps the module file when a route is added, and names the function to add", async () => {
    await generate({
      specFile: "svc.json",
      spec: spec([route("getNote", "GET", "/notes/:id")]),
      outDir: "out",
      cwd: dir,
    });
    const file = path.join(dir, "out/src/app/notes.zig");
    writeFileSync(file, `${readFileSync(file, "utf8")}\n// mine\n`);
    const prepared = await prepareGeneration({
      specFile: "svc.json",
      spec: spec([route("getNote", "GET", "/notes/:id"), route("putNote", "PUT", "/notes/:id")]),
      outDir: "out",
      cwd: dir,
    });
    expect(prepared.plan.files.find((f) => f.path === "src/app/notes.zig")?.action).toBe("keep");
    expect(prepared.missingRoutes.map((m) => m.route)).toEqual(["putNote"]);
    expect(missingRouteLines(prepared)).toEqual([
      "out/src/app/notes.zig: add route putNote (PUT /notes/:id): " +
        "pub fn putNote(state: *State, req: *http.Request, res: *http.Response) !void",
    ]);
    await generate({
      specFile: "svc.json",
      spec: spec([route("putNote", "PUT", "/notes/:id")]),
      outDir: "out",
      cwd: dir,
    });
    expect(readFileSync(file, "utf8")).toContain("// mine");
  });

  it("never removes a module file whose module left the spec", async () => {
    const first = spec([route("a", "GET", "/")]);
    await generate({ specFile: "svc.json", spec: first, outDir: "out", cwd: dir });
    const other = spec([route("a", "GET", "/")]);
    other.listeners[0]!.app.module = "other";
    const prepared = await generate({ specFile: "svc.json", spec: other, outDir: "out", cwd: dir });
    expect(prepared.plan.files.some((f) => f.path === "src/app/notes.zig")).toBe(false);
    expect(readFileSync(path.join(dir, "out/src/app/notes.zig"), "utf8")).toContain("pub fn a(");
  });
});

describe("declaresFunction", () => {
  it("finds pub fn declarations only", () => {
    expect(declaresFunction("pub fn getNote(s: *State) !void {}", "getNote")).toBe(true);
    expect(declaresFunction("pub  fn getNote (", "getNote")).toBe(true);
    expect(declaresFunction("fn getNote(", "getNote")).toBe(false);
    expect(declaresFunction("pub fn getNoteX(", "getNote")).toBe(false);
    expect(declaresFunction("pub fn xgetNote(", "getNote")).toBe(false);
  });
});
