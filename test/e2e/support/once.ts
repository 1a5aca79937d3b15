/**
 * Work done once per test run although test files run in parallel workers: the first worker to
 * ask takes a mkdir lock (with its pid inside), does the work and records its JSON result; the
 * others wait for the record and read it. A lock whose worker process is gone (vitest ends a
 * file's worker when the file is done, also when a test timed out while it was building) is
 * taken over, so that the work is done again rather than waited for until the deadline.
 */
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

const WAIT_FOR_OTHER_WORKER_MS = 20 * 60_000;
const POLL_MS = 250;

/** The recorded result of `work` for `key` (a path in the run's folder), doing it if first. */
export async function oncePerRun<T>(key: string, work: () => Promise<T>): Promise<T> {
  const record = `${key}.json`;
  const lock = `${key}.lock`;
  await mkdir(path.dirname(key), { recursive: true });
  const deadline = Date.now() + WAIT_FOR_OTHER_WORKER_MS;
  for (;;) {
    const done = await readRecord<T>(record);
    if (done !== undefined) return done;
    if (await tryLock(lock)) break;
    if (await breakDeadLock(lock)) continue;
    if (Date.now() > deadline) throw new Error(`timed out waiting for another worker: ${key}`);
    await sleep(POLL_MS);
  }
  try {
    const result = await work();
    await writeFile(record, JSON.stringify(result));
    return result;
  } finally {
    await rm(lock, { recursive: true, force: true });
  }
}

async function readRecord<T>(file: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(file, "utf8")) as T;
  } catch {
    return undefined;
  }
}

const OWNER = "pid";

async function tryLock(lock: string): Promise<boolean> {
  try {
    await mkdir(lock);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw error;
  }
  await writeFile(path.join(lock, OWNER), String(process.pid));
  return true;
}

/**
 * Removes `lock` when the process that took it is gone; false while it lives, or while its
 * pid is not written yet (the moment between mkdir and the write).
 */
async function breakDeadLock(lock: string): Promise<boolean> {
  const owner = Number(await readFile(path.join(lock, OWNER), "utf8").catch(() => ""));
  if (!Number.isInteger(owner) || owner <= 0 || isAlive(owner)) return false;
  // What the dead worker left half done (no record was written) is done again from scratch.
  await rm(lock.slice(0, -".lock".length), { recursive: true, force: true });
  await rm(lock, { recursive: true, force: true });
  return true;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}
