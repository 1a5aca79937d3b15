/**
 * Reading a file the generator did not write (a spec, the output directory's manifest, a file
 * already in the output): opened without blocking, so that a FIFO or a device never hangs the
 * generator, and without following a last symbolic link unless asked; then checked with fstat
 * on the open descriptor (nothing can be swapped in between) to be a regular file no larger
 * than `maxBytes` before anything is read.
 */
import { constants } from "node:fs";
import { open } from "node:fs/promises";

export type RegularFile =
  | { readonly kind: "file"; readonly data: Buffer }
  | { readonly kind: "directory" }
  /** A FIFO, socket or device. */
  | { readonly kind: "special" }
  | { readonly kind: "too-large"; readonly bytes: number };

export interface ReadOptions {
  readonly followLinks: boolean;
  readonly maxBytes?: number;
}

/** Reads `file` when it is a regular file; what it is otherwise. Open errors are thrown. */
export async function readRegularFile(file: string, options: ReadOptions): Promise<RegularFile> {
  const flags =
    constants.O_RDONLY | constants.O_NONBLOCK | (options.followLinks ? 0 : constants.O_NOFOLLOW);
  const handle = await open(file, flags);
  try {
    const stat = await handle.stat();
    if (stat.isDirectory()) return { kind: "directory" };
    if (!stat.isFile()) return { kind: "special" };
    if (options.maxBytes !== undefined && stat.size > options.maxBytes) {
      return { kind: "too-large", bytes: stat.size };
    }
    return { kind: "file", data: await handle.readFile() };
  } finally {
    await handle.close();
  }
}
