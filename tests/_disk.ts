/**
 * Freeing space on a small test file system, for the full-disk tests.
 *
 * @module
 */
import { dirname } from "node:path";
import { until } from "./_until.ts";

/** KiB available on the file system holding `dir` (from `df`). */
async function availableKiB(dir: string): Promise<number> {
  const output = await new Deno.Command("df", { args: ["-k", "--output=avail", dir] }).output();
  return Number(new TextDecoder().decode(output.stdout).trim().split("\n").at(-1));
}

/**
 * Removes a file and waits until its space is back. A removed file's space is freed only when its
 * last descriptor closes, and a process that another test thread is spawning holds a copy of every
 * descriptor open at that moment until its program starts: a write right after the removal can
 * still find the disk full.
 */
export async function removeAndWaitForSpace(path: string): Promise<void> {
  const kiB = Math.floor(Deno.statSync(path).size / 1024);
  Deno.removeSync(path);
  await until(
    async () => await availableKiB(dirname(path)) >= kiB,
    `the space of ${path} is free`,
    10_000,
    50,
  );
}
