/**
 * The soak's pure parts (bench/soak/): the seeded schedule replays from its seed and covers
 * every action in each deck, and a client failure counts as documented only when it is traced
 * to a worker the soak killed (its connection's client port, or a datagram in flight then).
 */
import { describe, expect, it } from "vitest";

/** What the tests use of the two plain-JavaScript modules (bench/ has no type declarations). */
interface Action {
  readonly kind: string;
  readonly gapMs: number;
  readonly worker: number;
  readonly stopMs: number;
}
interface Kill {
  pid: number;
  index: number;
  stoppedAt: number;
  killedAt: number | undefined;
  ports: Set<number>;
}
interface Failure {
  kind: string;
  localPort?: number | undefined;
  startedAt?: number;
  at?: number;
  sentAt?: number;
}
const schedulePath: string = "../../../bench/soak/schedule.mjs";
const runPath: string = "../../../bench/soak/run.mjs";
const { ACTIONS, Schedule, prng } = (await import(schedulePath)) as {
  ACTIONS: Record<string, string>;
  Schedule: new (seed: number) => { next(): Action };
  prng: (seed: number) => () => number;
};
const { Soak } = (await import(runPath)) as {
  Soak: new (options: { seed: number; minutes: number; binaries: object }) => {
    kills: Kill[];
    causeOf(failure: Failure): string | undefined;
  };
};

const deal = (seed: number, n: number) => {
  const schedule = new Schedule(seed);
  return Array.from({ length: n }, () => schedule.next());
};

describe("the soak's schedule", () => {
  it("deals the same actions with the same parameters for the same seed", () => {
    expect(deal(42, 60)).toEqual(deal(42, 60));
    expect(deal(42, 60)).not.toEqual(deal(43, 60));
  });

  it("deals every action in each deck of 13 (kill twice)", () => {
    const actions = deal(7, 39);
    for (let deck = 0; deck < 3; deck++) {
      const kinds = actions.slice(deck * 13, deck * 13 + 13).map((a) => a.kind);
      expect(new Set(kinds)).toEqual(new Set(Object.keys(ACTIONS)));
      expect(kinds.filter((k) => k === "kill")).toHaveLength(2);
    }
  });

  it("keeps its parameters in range", () => {
    for (const a of deal(1, 500)) {
      expect(a.gapMs).toBeGreaterThanOrEqual(200);
      expect(a.gapMs).toBeLessThan(1500);
      expect(a.stopMs).toBeGreaterThanOrEqual(200);
      expect(a.stopMs).toBeLessThan(900);
    }
    const random = prng(0);
    for (let i = 0; i < 1000; i++) {
      const x = random();
      expect(x >= 0 && x < 1).toBe(true);
    }
  });
});

describe("the soak's failure classification", () => {
  const soak = new Soak({ seed: 1, minutes: 1, binaries: {} });
  const killedAt = 1_000_000;
  soak.kills.push(
    { pid: 11, index: 0, stoppedAt: killedAt - 20, killedAt, ports: new Set([40001]) },
    // Stopped and resumed: never killed, so it explains nothing.
    { pid: 12, index: 1, stoppedAt: killedAt, killedAt: undefined, ports: new Set([40002]) },
  );

  it("documents a connection the killed worker held, and nothing else", () => {
    // Opened before the worker was stopped, failed after.
    const held = { startedAt: killedAt - 500, at: killedAt + 10 };
    expect(soak.causeOf({ kind: "tcp", localPort: 40001, ...held })).toMatch(/killed worker/);
    expect(soak.causeOf({ kind: "long-poll", localPort: 40001, ...held })).toMatch(/killed worker/);
    expect(soak.causeOf({ kind: "tcp", localPort: 40003, ...held })).toBeUndefined();
    expect(soak.causeOf({ kind: "stream", localPort: 40002, ...held })).toBeUndefined();
    expect(soak.causeOf({ kind: "tcp", localPort: undefined, ...held })).toBeUndefined();
    // A later connection that got the same client port again.
    const later = { startedAt: killedAt + 60_000, at: killedAt + 61_000 };
    expect(soak.causeOf({ kind: "tcp", localPort: 40001, ...later })).toBeUndefined();
  });

  it("documents a datagram in flight at a kill, not one sent after it", () => {
    expect(soak.causeOf({ kind: "udp", sentAt: killedAt - 1000 })).toMatch(
      /in flight at a worker.s kill/,
    );
    expect(soak.causeOf({ kind: "udp", sentAt: killedAt + 5000 })).toBeUndefined();
    expect(soak.causeOf({ kind: "udp", sentAt: killedAt - 10_000 })).toBeUndefined();
  });
});
