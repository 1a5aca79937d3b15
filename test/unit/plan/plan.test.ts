import { describe, expect, it } from "vitest";
import {
  countActions,
  hasChanges,
  pathsToInspect,
  plan,
  type DiskEntry,
  type PlannedFile,
} from "../../../src/plan/plan.js";
import { MANIFEST_FILE, sha256, type Manifest } from "../../../src/render/manifest.js";

const MANIFEST_TEXT = '{"generator":"gen-reuseport"}\n';

function rendered(files: Record<string, string>): Map<string, string> {
  return new Map([...Object.entries(files), [MANIFEST_FILE, MANIFEST_TEXT]]);
}

function disk(files: Record<string, string | "dir">): Map<string, DiskEntry> {
  return new Map(
    Object.entries(files).map(([p, text]) => [
      p,
      text === "dir" ? { kind: "other" } : { kind: "file", sha256: sha256(text) },
    ]),
  );
}

function manifest(files: Record<string, string>): Manifest {
  const hashes = Object.fromEntries(Object.entries(files).map(([p, t]) => [p, sha256(t)]));
  return { generator: "gen-reuseport", version: "0", spec: "s.json", files: hashes, userFiles: [] };
}

function actions(files: readonly PlannedFile[]): Record<string, string> {
  return Object.fromEntries(
    files.map((f) => [f.path, f.reason ? `${f.action}:${f.reason}` : f.action]),
  );
}

describe("plan", () => {
  it("creates files that are not on disk", () => {
    const p = plan(rendered({ "a.zig": "A" }), disk({}), undefined, { force: false });
    expect(actions(p.files)).toEqual({ "a.zig": "create", [MANIFEST_FILE]: "create" });
    expect(p.files[0]?.content).toBe("A");
  });

  it("leaves files with the same bytes unchanged", () => {
    const p = plan(
      rendered({ "a.zig": "A" }),
      disk({ "a.zig": "A", [MANIFEST_FILE]: MANIFEST_TEXT }),
      manifest({ "a.zig": "A" }),
      { force: false },
    );
    expect(actions(p.files)).toEqual({ "a.zig": "unchanged", [MANIFEST_FILE]: "unchanged" });
    expect(hasChanges(p)).toBe(false);
  });

  it("updates a file still as the last run wrote it", () => {
    const p = plan(
      rendered({ "a.zig": "new" }),
      disk({ "a.zig": "old" }),
      manifest({ "a.zig": "old" }),
      {
        force: false,
      },
    );
    expect(actions(p.files)["a.zig"]).toBe("update");
  });

  it("refuses a hand-edited file as a conflict, and overwrites it with force", () => {
    const args = [
      rendered({ "a.zig": "new" }),
      disk({ "a.zig": "mine" }),
      manifest({ "a.zig": "old" }),
    ] as const;
    expect(actions(plan(...args, { force: false }).files)["a.zig"]).toBe("conflict:edited");
    expect(actions(plan(...args, { force: true }).files)["a.zig"]).toBe("update:edited");
  });

  it("refuses a file it never wrote (no manifest entry) unless forced", () => {
    const args = [rendered({ "a.zig": "new" }), disk({ "a.zig": "theirs" }), undefined] as const;
    expect(actions(plan(...args, { force: false }).files)["a.zig"]).toBe("conflict:unknown");
    expect(actions(plan(...args, { force: true }).files)["a.zig"]).toBe("update:unknown");
  });

  it("removes a stale file that is unchanged since it was written", () => {
    const p = plan(rendered({}), disk({ "old.zig": "O" }), manifest({ "old.zig": "O" }), {
      force: false,
    });
    expect(actions(p.files)["old.zig"]).toBe("remove");
  });

  it("refuses to remove a hand-edited stale file unless forced", () => {
    const args = [
      rendered({}),
      disk({ "old.zig": "edited" }),
      manifest({ "old.zig": "O" }),
    ] as const;
    expect(actions(plan(...args, { force: false }).files)["old.zig"]).toBe("conflict:stale-edited");
    expect(actions(plan(...args, { force: true }).files)["old.zig"]).toBe("remove:stale-edited");
  });

  it("does nothing about a stale file that is already gone", () => {
    const p = plan(rendered({}), disk({}), manifest({ "old.zig": "O" }), { force: false });
    expect(Object.keys(actions(p.files))).toEqual([MANIFEST_FILE]);
  });

  it("keeps an existing user-owned handler, even with force", () => {
    for (const force of [false, true]) {
      const p = plan(
        rendered({ "src/handler.zig": "template" }),
        disk({ "src/handler.zig": "the user's code" }),
        manifest({}),
        { force },
      );
      expect(actions(p.files)["src/handler.zig"]).toBe("keep");
      expect(hasChanges({ files: p.files.filter((f) => f.path !== MANIFEST_FILE) })).toBe(false);
    }
  });

  it("creates the user-owned handler when it does not exist", () => {
    const p = plan(rendered({ "src/handler.zig": "template" }), disk({}), undefined, {
      force: false,
    });
    expect(actions(p.files)["src/handler.zig"]).toBe("create");
  });

  it("never removes a user-owned file, even when the manifest lists it", () => {
    const p = plan(
      rendered({}),
      disk({ "src/handler.zig": "x" }),
      manifest({ "src/handler.zig": "x" }),
      {
        force: true,
      },
    );
    expect(actions(p.files)["src/handler.zig"]).toBeUndefined();
  });

  it("treats a directory in the way as a conflict that force cannot clear", () => {
    const p = plan(rendered({ "a.zig": "A" }), disk({ "a.zig": "dir" }), undefined, {
      force: true,
    });
    expect(actions(p.files)["a.zig"]).toBe("conflict:not-a-file");
  });

  it("sorts files by path and puts the manifest last", () => {
    const p = plan(
      rendered({ "z.zig": "", "a.zig": "", "m/b.zig": "" }),
      disk({}),
      manifest({ "b.zig": "" }),
      {
        force: false,
      },
    );
    expect(p.files.map((f) => f.path)).toEqual(["a.zig", "m/b.zig", "z.zig", MANIFEST_FILE]);
  });

  it("always brings the manifest up to date", () => {
    const p = plan(rendered({}), disk({ [MANIFEST_FILE]: "hand edited" }), undefined, {
      force: false,
    });
    expect(actions(p.files)[MANIFEST_FILE]).toBe("update");
  });

  it("counts actions", () => {
    const p = plan(
      rendered({ "new.zig": "N", "same.zig": "S", "up.zig": "U2" }),
      disk({ "same.zig": "S", "up.zig": "U1", "gone.zig": "G" }),
      manifest({ "up.zig": "U1", "gone.zig": "G" }),
      { force: false },
    );
    expect(countActions(p)).toEqual({
      create: 2,
      update: 1,
      unchanged: 1,
      remove: 1,
      keep: 0,
      conflict: 0,
    });
  });
});

describe("pathsToInspect", () => {
  it("covers rendered files and files of the previous manifest", () => {
    expect(pathsToInspect(rendered({ "a.zig": "" }), manifest({ "old.zig": "" }))).toEqual([
      MANIFEST_FILE,
      "a.zig",
      "old.zig",
    ]);
  });
});
