// The soak's schedule: a seeded PRNG and the actions it deals. Pure: the same seed deals the
// same actions with the same parameters in the same order, so a failing run replays with its
// --seed (the times differ, since each action waits for the service's answer).

/** mulberry32: a small, well-mixed 32-bit PRNG; returns floats in [0, 1). */
export function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * What the soak does to the service. Each kind appears once per deck (kill twice), so a short
 * run covers every kind; the order within a deck is the PRNG's.
 */
export const ACTIONS = {
  restart: "SIGHUP with the same binary on disk: a new generation of workers",
  "hup-during-restart": "SIGHUP, then another once `restarting` is out: queued, one more restart",
  "hup-during-drain": "SIGHUP, then another right after `ready`, while the old generation drains",
  upgrade: "the next spec's binary (a → b → c → a) over the path, then SIGHUP",
  "upgrade-twice":
    "an upgrade, then the next one right after `ready`: the new supervisor waits for its predecessor",
  "hup-during-upgrade":
    "an upgrade, and a second SIGHUP to the old supervisor once `upgrading` is out",
  "hup-after-handover": "an upgrade, then SIGHUP to the old supervisor while it drains: ignored",
  kill: "SIGKILL to a worker of the serving generation: replaced",
  "stop-short": "SIGSTOP to a worker, SIGCONT 200–900 ms later: nothing to report",
  "stop-long": "SIGSTOP to a worker until the watchdog kills it (`worker_hung`): replaced",
  "fail-start": "a binary that says it is another program and exits 1 at start: `error`",
  "never-ready":
    "a binary that says it is another program and never gets ready: `error` after 15 s",
};

const DECK = [...Object.keys(ACTIONS), "kill"];

/** Deals actions: `next()` returns `{ kind, gapMs, worker, stopMs }` from the seeded PRNG. */
export class Schedule {
  constructor(seed) {
    this.random = prng(seed);
    this.deck = [];
  }

  int(below) {
    return Math.floor(this.random() * below);
  }

  next() {
    if (this.deck.length === 0) {
      this.deck = [...DECK];
      // Fisher–Yates with the seeded PRNG.
      for (let i = this.deck.length - 1; i > 0; i -= 1) {
        const j = this.int(i + 1);
        [this.deck[i], this.deck[j]] = [this.deck[j], this.deck[i]];
      }
    }
    const kind = this.deck.pop();
    return {
      kind,
      // A pause under load before the action.
      gapMs: 200 + this.int(1300),
      // Which worker slot a kill or stop hits (modulo the serving generation's size).
      worker: this.int(1 << 16),
      stopMs: 200 + this.int(700),
    };
  }
}
