/**
 * Work done once per test run although test files run in parallel workers: the first worker to
 * ask takes a mkdir lock, does the work and records its JSON result; the others wait for the
 * record and read it.
 */
import { mkdir, readFile, rmdir, writeFile } from "node:fs/promises";
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
    if (Date.now() > deadline) throw new Error(`timed out waiting for another worker: ${key}`);
    await sleep(POLL_MS);
  }
  try {
    const result = await work();
    await writeFile(record, JSON.stringify(result));
    return result;
  } finally {
    await rmdir(lock).catch(() => undefined);
  }
}

async function readRecord<T>(file: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(file, "utf8")) as T;
  } catch {
    return undefined;
  }
}

async function tryLock(lock: string): Promise<boolean> {
  try {
    await mkdir(lock);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw error;
  }
}
