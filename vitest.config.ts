import { availableParallelism } from "node:os";
import { defineConfig } from "vitest/config";
import { BaseSequencer, type TestSpecification } from "vitest/node";

/**
 * Files started before all others, whatever vitest's own order (on a fresh clone: the largest
 * file first; later, the slowest of the last run first). `build.test.ts` builds and tests every
 * example with every release under test, one after the other: the longest chain of Zig builds
 * of the suite, and the builds most other files wait for. Started last (it is a small file), it
 * ran alone at the end with one core idle; started first, its builds overlap the other files'
 * waits on sockets and timers, and the files that need an example find it built.
 */
const FIRST = ["test/e2e/build.test.ts"];

class LongestChainFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    const first = (f: TestSpecification) => FIRST.some((name) => f.moduleId.endsWith(name));
    return [...sorted.filter(first), ...sorted.filter((f) => !first(f))];
  }
}

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Makes the per-run scratch folder of the end-to-end tests (test/e2e/); cheap for unit runs.
    globalSetup: ["test/e2e/global-setup.ts"],
    // Two test files at a time even on 2 cores (vitest's default there is one): an end-to-end
    // file spends most of its time waiting (on sockets, signals, timeouts), and one Zig build
    // keeps about one core busy, so a second file overlaps a build with another's waits.
    maxWorkers: Math.max(2, availableParallelism() - 1),
    sequence: { sequencer: LongestChainFirst },
  },
});
